//! The signer's side of a signing session (sans-IO).
//!
//! `commit` makes fresh nonces for one (coordinator, session, attempt) and keeps them in memory
//! only; `sign` takes them *out* of the table before using them, so a second signing package
//! for the same session finds none: a nonce signs at most once. Nonces are never written
//! anywhere and expire if the coordinator does not come back. Each coordinator has its own
//! quota, so one participant cannot fill the table for the others.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use frost_ed25519::keys::KeyPackage;
use frost_ed25519::round1::{self, SigningCommitments, SigningNonces};
use frost_ed25519::{round2, Identifier, SigningPackage};
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

use crate::wire::{NodeId, SessionId};

/// How long unused nonces are kept.
pub const NONCE_TTL: Duration = Duration::from_secs(60);
/// Most sessions a signer holds nonces for at once, all coordinators together.
pub const MAX_PENDING: usize = 4096;
/// Most sessions a signer holds nonces for on behalf of one coordinator.
pub const MAX_PENDING_PER_COORDINATOR: usize = 1024;

/// Why a signer refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignerError {
    /// No nonces for this session from this coordinator: it never committed, already signed,
    /// or the nonces expired.
    #[error("no commitment for session {session} attempt {attempt}: unknown, expired or already signed (nonces are single use)")]
    UnknownSession {
        /// Session.
        session: SessionId,
        /// Attempt.
        attempt: u8,
    },
    /// A second commit for the same session with other parameters.
    #[error("session {0} is already committed with other parameters")]
    Conflict(SessionId),
    /// The signing package's message differs from the committed one.
    #[error("signing package message differs from the message committed to")]
    MessageMismatch,
    /// The signing package lacks our commitment or carries another one.
    #[error("signing package does not contain this signer's commitment")]
    CommitmentMismatch,
    /// The signing package names signers that are not participants of the key.
    #[error("signing package names signers outside the key's participants")]
    UnknownSigners,
    /// The signing package does not decode.
    #[error("malformed signing package")]
    Malformed,
    /// Too many sessions in flight.
    #[error("too many signing sessions in flight")]
    Busy,
    /// frost refused to sign.
    #[error("frost: {0}")]
    Frost(String),
}

struct Pending {
    nonces: SigningNonces,
    commitments: SigningCommitments,
    message_hash: [u8; 32],
    key_id: String,
    expires: Instant,
}

type Slot = (NodeId, SessionId, u8);

/// Nonces this node has committed to, by (coordinator, session, attempt).
#[derive(Default)]
pub struct Signer {
    pending: HashMap<Slot, Pending>,
    per_coordinator: HashMap<NodeId, usize>,
    #[cfg(feature = "fault-injection")]
    corrupt_shares: bool,
    /// Every nonce made, for tests that check no nonce ever leaks (fault-injection builds).
    #[cfg(feature = "fault-injection")]
    nonce_log: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("pending", &self.pending.len())
            .finish()
    }
}

fn digest(message: &[u8]) -> [u8; 32] {
    Sha256::digest(message).into()
}

impl Signer {
    /// An empty signer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sessions with nonces waiting.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// When the oldest nonces expire, if any are held.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.expires).min()
    }

    /// The nonces made since the last call (fault-injection builds only, for leak tests).
    #[cfg(feature = "fault-injection")]
    pub fn take_nonce_log(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.nonce_log)
    }

    /// Makes this signer return corrupted shares (fault-injection builds only).
    #[cfg(feature = "fault-injection")]
    pub fn set_corrupt_shares(&mut self, on: bool) {
        self.corrupt_shares = on;
    }

    fn take(&mut self, slot: &Slot) -> Option<Pending> {
        let p = self.pending.remove(slot)?;
        if let Some(n) = self.per_coordinator.get_mut(&slot.0) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_coordinator.remove(&slot.0);
            }
        }
        Some(p)
    }

    /// Round 1: fresh nonces for `(coordinator, session, attempt)`; returns the commitments.
    /// Repeating the same request returns the same commitments (the coordinator may retry).
    #[allow(clippy::too_many_arguments)]
    pub fn commit(
        &mut self,
        now: Instant,
        session: SessionId,
        attempt: u8,
        coordinator: NodeId,
        key_id: &str,
        message: &[u8],
        key: &KeyPackage,
    ) -> Result<SigningCommitments, SignerError> {
        self.expire(now);
        let slot = (coordinator, session, attempt);
        let message_hash = digest(message);
        if let Some(p) = self.pending.get(&slot) {
            if p.message_hash == message_hash && p.key_id == key_id {
                return Ok(p.commitments);
            }
            return Err(SignerError::Conflict(session));
        }
        let mine = self.per_coordinator.get(&coordinator).copied().unwrap_or(0);
        if self.pending.len() >= MAX_PENDING || mine >= MAX_PENDING_PER_COORDINATOR {
            return Err(SignerError::Busy);
        }
        let (nonces, commitments) = round1::commit(key.signing_share(), &mut OsRng);
        #[cfg(feature = "fault-injection")]
        {
            self.nonce_log.push(nonces.hiding().serialize());
            self.nonce_log.push(nonces.binding().serialize());
        }
        self.pending.insert(
            slot,
            Pending {
                nonces,
                commitments,
                message_hash,
                key_id: key_id.to_string(),
                expires: now + NONCE_TTL,
            },
        );
        *self.per_coordinator.entry(coordinator).or_default() += 1;
        Ok(commitments)
    }

    /// The key a pending session is for, if any.
    pub fn key_of(&self, coordinator: NodeId, session: SessionId, attempt: u8) -> Option<&str> {
        self.pending
            .get(&(coordinator, session, attempt))
            .map(|p| p.key_id.as_str())
    }

    /// Round 2: signs the serialized package with the nonces of `(coordinator, session,
    /// attempt)`, which are consumed whatever the outcome. `participants` are the key's.
    #[allow(clippy::too_many_arguments)]
    pub fn sign(
        &mut self,
        now: Instant,
        session: SessionId,
        attempt: u8,
        coordinator: NodeId,
        package: &[u8],
        key: &KeyPackage,
        participants: &[NodeId],
    ) -> Result<Vec<u8>, SignerError> {
        let pending = self.take_live(now, (coordinator, session, attempt))?;
        let package = SigningPackage::deserialize(package).map_err(|_| SignerError::Malformed)?;
        self.sign_with(pending, &package, key, participants)
    }

    /// Round 2 with an already decoded package (this node coordinates: no encoding round trip).
    #[allow(clippy::too_many_arguments)]
    pub fn sign_package(
        &mut self,
        now: Instant,
        session: SessionId,
        attempt: u8,
        coordinator: NodeId,
        package: &SigningPackage,
        key: &KeyPackage,
        participants: &[NodeId],
    ) -> Result<Vec<u8>, SignerError> {
        let pending = self.take_live(now, (coordinator, session, attempt))?;
        self.sign_with(pending, package, key, participants)
    }

    fn take_live(&mut self, now: Instant, slot: Slot) -> Result<Pending, SignerError> {
        let unknown = SignerError::UnknownSession {
            session: slot.1,
            attempt: slot.2,
        };
        let pending = self.take(&slot).ok_or(unknown.clone())?;
        if pending.expires <= now {
            return Err(unknown);
        }
        Ok(pending)
    }

    fn sign_with(
        &self,
        pending: Pending,
        package: &SigningPackage,
        key: &KeyPackage,
        participants: &[NodeId],
    ) -> Result<Vec<u8>, SignerError> {
        if digest(package.message()) != pending.message_hash {
            return Err(SignerError::MessageMismatch);
        }
        let allowed: Vec<Identifier> = participants
            .iter()
            .filter_map(|&id| Identifier::try_from(id).ok())
            .collect();
        let commitments = package.signing_commitments();
        if commitments.len() > allowed.len() || commitments.keys().any(|i| !allowed.contains(i)) {
            return Err(SignerError::UnknownSigners);
        }
        if package.signing_commitment(key.identifier()) != Some(pending.commitments) {
            return Err(SignerError::CommitmentMismatch);
        }
        let share = round2::sign(package, &pending.nonces, key)
            .map_err(|e| SignerError::Frost(e.to_string()))?;
        #[allow(unused_mut)]
        let mut bytes = share.serialize();
        #[cfg(feature = "fault-injection")]
        if self.corrupt_shares {
            // A valid scalar that is not this signer's share.
            bytes = round2::SignatureShare::deserialize(&[3u8; 32])
                .map(|s| s.serialize())
                .unwrap_or(bytes);
        }
        Ok(bytes)
    }

    /// Drops nonces whose time is up.
    pub fn expire(&mut self, now: Instant) {
        let expired: Vec<Slot> = self
            .pending
            .iter()
            .filter(|(_, p)| p.expires <= now)
            .map(|(s, _)| *s)
            .collect();
        for slot in expired {
            self.take(&slot);
        }
    }

    /// Drops every nonce a coordinator holds for a session (all attempts), when it is over.
    pub fn forget(&mut self, coordinator: NodeId, session: SessionId) {
        let done: Vec<Slot> = self
            .pending
            .keys()
            .filter(|(c, s, _)| *c == coordinator && *s == session)
            .copied()
            .collect();
        for slot in done {
            self.take(&slot);
        }
    }
}
