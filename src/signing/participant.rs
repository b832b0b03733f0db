//! The signer's side of a signing session (sans-IO).
//!
//! `commit` makes fresh nonces for one (session, attempt) and keeps them in memory only;
//! `sign` takes them *out* of the table before using them, so a second signing package for the
//! same session finds none: a nonce signs at most once. Nonces are never written anywhere and
//! expire if the coordinator does not come back.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use frost_ed25519::keys::KeyPackage;
use frost_ed25519::round1::{self, SigningCommitments, SigningNonces};
use frost_ed25519::{round2, SigningPackage};
use rand::rngs::OsRng;

use crate::wire::{NodeId, SessionId};

/// How long unused nonces are kept.
pub const NONCE_TTL: Duration = Duration::from_secs(60);
/// Most sessions a signer holds nonces for at once.
pub const MAX_PENDING: usize = 4096;

/// Why a signer refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignerError {
    /// No nonces for this session: it never committed, already signed, or expired.
    #[error("no commitment for session {session} attempt {attempt} (nonces are single use)")]
    UnknownSession {
        /// Session.
        session: SessionId,
        /// Attempt.
        attempt: u8,
    },
    /// A second commit for the same session with other parameters.
    #[error("session {0} is already committed with other parameters")]
    Conflict(SessionId),
    /// The request comes from another coordinator than the commitment.
    #[error("node {got} is not the coordinator ({expected}) of this session")]
    WrongCoordinator {
        /// The session's coordinator.
        expected: NodeId,
        /// The sender.
        got: NodeId,
    },
    /// The signing package's message differs from the committed one.
    #[error("signing package message differs from the message committed to")]
    MessageMismatch,
    /// The signing package lacks our commitment or carries another one.
    #[error("signing package does not contain this signer's commitment")]
    CommitmentMismatch,
    /// The signing package does not decode.
    #[error("malformed signing package")]
    Malformed,
    /// Too many sessions in flight.
    #[error("too many signing sessions in flight ({MAX_PENDING})")]
    Busy,
    /// frost refused to sign.
    #[error("frost: {0}")]
    Frost(String),
}

struct Pending {
    nonces: SigningNonces,
    commitments: SigningCommitments,
    message: Vec<u8>,
    key_id: String,
    coordinator: NodeId,
    expires: Instant,
}

/// Nonces this node has committed to, by (session, attempt).
#[derive(Default)]
pub struct Signer {
    pending: HashMap<(SessionId, u8), Pending>,
    #[cfg(feature = "fault-injection")]
    corrupt_shares: bool,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("pending", &self.pending.len())
            .finish()
    }
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

    /// Makes this signer return corrupted shares (fault-injection builds only).
    #[cfg(feature = "fault-injection")]
    pub fn set_corrupt_shares(&mut self, on: bool) {
        self.corrupt_shares = on;
    }

    /// Round 1: fresh nonces for `(session, attempt)`; returns the commitments.
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
        if let Some(p) = self.pending.get(&(session, attempt)) {
            if p.coordinator == coordinator && p.message == message && p.key_id == key_id {
                return Ok(p.commitments);
            }
            return Err(SignerError::Conflict(session));
        }
        if self.pending.len() >= MAX_PENDING {
            return Err(SignerError::Busy);
        }
        let (nonces, commitments) = round1::commit(key.signing_share(), &mut OsRng);
        self.pending.insert(
            (session, attempt),
            Pending {
                nonces,
                commitments,
                message: message.to_vec(),
                key_id: key_id.to_string(),
                coordinator,
                expires: now + NONCE_TTL,
            },
        );
        Ok(commitments)
    }

    /// The key a pending session is for, if any.
    pub fn key_of(&self, session: SessionId, attempt: u8) -> Option<&str> {
        self.pending
            .get(&(session, attempt))
            .map(|p| p.key_id.as_str())
    }

    /// Round 2: signs the serialized package with the nonces of `(session, attempt)`, which
    /// are consumed whatever the outcome.
    pub fn sign(
        &mut self,
        session: SessionId,
        attempt: u8,
        coordinator: NodeId,
        package: &[u8],
        key: &KeyPackage,
    ) -> Result<Vec<u8>, SignerError> {
        let pending = self
            .pending
            .remove(&(session, attempt))
            .ok_or(SignerError::UnknownSession { session, attempt })?;
        let package = SigningPackage::deserialize(package).map_err(|_| SignerError::Malformed)?;
        self.sign_with(pending, coordinator, &package, key)
    }

    /// Round 2 with an already decoded package (this node coordinates: no encoding round trip).
    pub fn sign_package(
        &mut self,
        session: SessionId,
        attempt: u8,
        coordinator: NodeId,
        package: &SigningPackage,
        key: &KeyPackage,
    ) -> Result<Vec<u8>, SignerError> {
        let pending = self
            .pending
            .remove(&(session, attempt))
            .ok_or(SignerError::UnknownSession { session, attempt })?;
        self.sign_with(pending, coordinator, package, key)
    }

    fn sign_with(
        &self,
        pending: Pending,
        coordinator: NodeId,
        package: &SigningPackage,
        key: &KeyPackage,
    ) -> Result<Vec<u8>, SignerError> {
        if pending.coordinator != coordinator {
            return Err(SignerError::WrongCoordinator {
                expected: pending.coordinator,
                got: coordinator,
            });
        }
        if package.message() != &pending.message {
            return Err(SignerError::MessageMismatch);
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
        self.pending.retain(|_, p| p.expires > now);
    }

    /// Drops every nonce of a session (all attempts), e.g. when it is known to be over.
    pub fn forget(&mut self, session: SessionId) {
        self.pending.retain(|(s, _), _| *s != session);
    }
}
