//! The signer's side of a signing session (sans-IO).
//!
//! `commit` makes fresh nonces for one [`Slot`] (coordinator, session, attempt), a pair per
//! message of the session's batch, and keeps them in memory only; `sign` takes them *out* of the table before using them, so a second signing
//! package for the same session finds none: a nonce signs at most once. Nonces are never
//! written anywhere and expire if the coordinator does not come back. Each coordinator has its
//! own quota, so one participant cannot fill the table for the others. Time and randomness come
//! from the caller.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use frost_ed25519::keys::KeyPackage;
use frost_ed25519::round1::{self, SigningCommitments, SigningNonces};
use frost_ed25519::{round2, Identifier, SigningPackage};
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

use crate::auth::MessageBinding;
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
    /// A signing package's message differs from the committed one.
    #[error("signing package message differs from the message committed to")]
    MessageMismatch,
    /// Not one signing package per message committed to.
    #[error("{got} signing packages for {want} messages")]
    WrongCount {
        /// Packages received.
        got: usize,
        /// Messages committed to.
        want: usize,
    },
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

/// One use of a signer's nonces: which coordinator asked, for which session and attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Slot {
    /// The coordinator that asked (authenticated by the transport).
    pub coordinator: NodeId,
    /// The signing session.
    pub session: SessionId,
    /// The attempt within the session.
    pub attempt: u8,
}

/// What a signer commits nonces for: the key, the message, this node's share.
#[derive(Clone, Copy)]
pub struct Commit<'a> {
    /// Key name.
    pub key_id: &'a str,
    /// The epoch of the key's shares.
    pub epoch: u64,
    /// The messages that will be signed.
    pub messages: &'a [Vec<u8>],
    /// This node's key package.
    pub key: &'a KeyPackage,
}

/// The client authorization a commitment was made under, kept with the nonces so the signer's
/// driver can check it again before it releases a share.
#[derive(Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The request the token is bound to.
    pub request_id: SessionId,
    /// The client's token.
    pub token: String,
}

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Authorization(request {})", self.request_id)
    }
}

/// What a pending slot was committed for.
#[derive(Clone, Copy, Debug)]
pub struct Committed<'a> {
    /// The key.
    pub key_id: &'a str,
    /// The epoch of the key's shares the signature must be made with.
    pub epoch: u64,
    /// What a client token must bind of the messages.
    pub messages: MessageBinding,
    /// The client authorization, if one was given.
    pub authorization: Option<&'a Authorization>,
}

/// The key a signer signs with: its share and the key's participants.
#[derive(Clone, Copy)]
pub struct ShareRef<'a> {
    /// This node's key package.
    pub key: &'a KeyPackage,
    /// Every participant of the key.
    pub participants: &'a [NodeId],
}

/// Sees every nonce pair a signer makes (installed by leak tests; nothing installs one in a
/// running node unless a test asks for it).
pub type NonceObserver = Box<dyn FnMut(&SigningNonces) + Send>;

struct Pending {
    /// A nonce pair and its commitments per message.
    nonces: Vec<(SigningNonces, SigningCommitments)>,
    /// SHA-256 of each message.
    message_hashes: Vec<[u8; 32]>,
    binding: MessageBinding,
    key_id: String,
    epoch: u64,
    authorization: Option<Authorization>,
    expires: Instant,
}

/// Nonces this node has committed to, by [`Slot`].
#[derive(Default)]
pub struct Signer {
    pending: HashMap<Slot, Pending>,
    per_coordinator: HashMap<NodeId, usize>,
    /// Slots in the order they expire (every slot lives [`NONCE_TTL`]); entries whose slot is
    /// already gone are skipped.
    expiries: VecDeque<(Instant, Slot)>,
    observer: Option<NonceObserver>,
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

    /// Calls `observer` with every nonce pair made from now on.
    pub fn observe_nonces(&mut self, observer: NonceObserver) {
        self.observer = Some(observer);
    }

    /// Sessions with nonces waiting.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// When the oldest nonces expire, if any are held.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.expiries.front().map(|(at, _)| *at)
    }

    fn take(&mut self, slot: &Slot) -> Option<Pending> {
        let p = self.pending.remove(slot)?;
        if let Some(n) = self.per_coordinator.get_mut(&slot.coordinator) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_coordinator.remove(&slot.coordinator);
            }
        }
        // Nonces are mostly used in the order they were made: forget the expiry entries of
        // used ones at the front, so the queue stays as small as the table.
        while let Some((_, front)) = self.expiries.front() {
            if self.pending.contains_key(front) {
                break;
            }
            self.expiries.pop_front();
        }
        Some(p)
    }

    /// Round 1: fresh nonces for `slot`, a pair per message; returns the commitments in message
    /// order. Repeating the same request returns the same commitments (the coordinator may
    /// retry).
    pub fn commit<R: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        slot: Slot,
        what: Commit<'_>,
        authorization: Option<Authorization>,
        rng: &mut R,
    ) -> Result<Vec<SigningCommitments>, SignerError> {
        self.expire(now);
        let Commit {
            key_id,
            epoch,
            messages,
            key,
        } = what;
        let message_hashes: Vec<[u8; 32]> = messages.iter().map(|m| digest(m)).collect();
        if let Some(p) = self.pending.get(&slot) {
            if p.message_hashes == message_hashes && p.key_id == key_id && p.epoch == epoch {
                return Ok(p.nonces.iter().map(|(_, c)| *c).collect());
            }
            return Err(SignerError::Conflict(slot.session));
        }
        let mine = self
            .per_coordinator
            .get(&slot.coordinator)
            .copied()
            .unwrap_or(0);
        if self.pending.len() >= MAX_PENDING || mine >= MAX_PENDING_PER_COORDINATOR {
            return Err(SignerError::Busy);
        }
        let nonces: Vec<(SigningNonces, SigningCommitments)> = messages
            .iter()
            .map(|_| round1::commit(key.signing_share(), rng))
            .collect();
        if let Some(observe) = self.observer.as_mut() {
            for (n, _) in &nonces {
                observe(n);
            }
        }
        let commitments = nonces.iter().map(|(_, c)| *c).collect();
        let expires = now + NONCE_TTL;
        self.pending.insert(
            slot,
            Pending {
                nonces,
                binding: MessageBinding::of(messages),
                message_hashes,
                key_id: key_id.to_string(),
                epoch,
                authorization,
                expires,
            },
        );
        self.expiries.push_back((expires, slot));
        *self.per_coordinator.entry(slot.coordinator).or_default() += 1;
        Ok(commitments)
    }

    /// What a pending slot was committed for, if it is pending.
    pub fn committed(&self, slot: &Slot) -> Option<Committed<'_>> {
        self.pending.get(slot).map(|p| Committed {
            key_id: &p.key_id,
            epoch: p.epoch,
            messages: p.binding,
            authorization: p.authorization.as_ref(),
        })
    }

    /// Round 2: signs the serialized packages (one per message) with the nonces of `slot`,
    /// which are consumed whatever the outcome; returns the shares in message order.
    pub fn sign(
        &mut self,
        now: Instant,
        slot: Slot,
        packages: &[Vec<u8>],
        share: ShareRef<'_>,
    ) -> Result<Vec<Vec<u8>>, SignerError> {
        self.take_nonces(now, slot)?.sign_encoded(packages, share)
    }

    /// Round 2, first half: takes the nonces of `slot` out of the table (they are gone whatever
    /// follows), to sign with where the arithmetic runs.
    pub fn take_nonces(&mut self, now: Instant, slot: Slot) -> Result<Taken, SignerError> {
        self.take_live(now, slot).map(|p| Taken(Box::new(p)))
    }

    fn take_live(&mut self, now: Instant, slot: Slot) -> Result<Pending, SignerError> {
        let unknown = SignerError::UnknownSession {
            session: slot.session,
            attempt: slot.attempt,
        };
        let pending = self.take(&slot).ok_or(unknown.clone())?;
        if pending.expires <= now {
            return Err(unknown);
        }
        Ok(pending)
    }

    /// Drops nonces whose time is up.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(at, slot)) = self.expiries.front() {
            if at > now {
                break;
            }
            self.expiries.pop_front();
            if self.pending.get(&slot).is_some_and(|p| p.expires <= now) {
                self.take(&slot);
            }
        }
    }

    /// Drops every nonce a coordinator holds for a session (all attempts), when it is over.
    pub fn forget(&mut self, coordinator: NodeId, session: SessionId, attempts: u8) {
        for attempt in 0..=attempts {
            self.take(&Slot {
                coordinator,
                session,
                attempt,
            });
        }
    }
}

/// A slot's nonces, out of the signer's table: they sign once, on any thread.
pub struct Taken(Box<Pending>);

impl std::fmt::Debug for Taken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Taken({} nonce pairs)", self.0.nonces.len())
    }
}

impl Taken {
    /// Signs the serialized packages (one per message).
    pub fn sign_encoded(
        self,
        packages: &[Vec<u8>],
        share: ShareRef<'_>,
    ) -> Result<Vec<Vec<u8>>, SignerError> {
        let packages = decode_packages(packages)?;
        sign_with(*self.0, &packages, share)
    }

    /// Signs already decoded packages (this node coordinates: no encoding round trip).
    pub fn sign_decoded(
        self,
        packages: &[SigningPackage],
        share: ShareRef<'_>,
    ) -> Result<Vec<Vec<u8>>, SignerError> {
        sign_with(*self.0, packages, share)
    }
}

/// Decodes signing packages (every point checked by frost).
pub fn decode_packages(packages: &[Vec<u8>]) -> Result<Vec<SigningPackage>, SignerError> {
    packages
        .iter()
        .map(|p| SigningPackage::deserialize(p).map_err(|_| SignerError::Malformed))
        .collect()
}

fn sign_with(
    pending: Pending,
    packages: &[SigningPackage],
    share: ShareRef<'_>,
) -> Result<Vec<Vec<u8>>, SignerError> {
    if packages.len() != pending.nonces.len() {
        return Err(SignerError::WrongCount {
            got: packages.len(),
            want: pending.nonces.len(),
        });
    }
    if packages
        .iter()
        .zip(&pending.message_hashes)
        .any(|(p, h)| digest(p.message()) != *h)
    {
        return Err(SignerError::MessageMismatch);
    }
    sign_all(&pending.nonces, packages, share)
}

/// Signs each package with the nonce pair of the same index (see [`sign_with_nonces`]).
pub fn sign_all(
    nonces: &[(SigningNonces, SigningCommitments)],
    packages: &[SigningPackage],
    share: ShareRef<'_>,
) -> Result<Vec<Vec<u8>>, SignerError> {
    if packages.len() != nonces.len() {
        return Err(SignerError::WrongCount {
            got: packages.len(),
            want: nonces.len(),
        });
    }
    nonces
        .iter()
        .zip(packages)
        .map(|((n, c), p)| sign_with_nonces(n, *c, p, share))
        .collect()
}

/// Signs `package` with `nonces` (whose commitments are `commitments`), after checking that
/// it names only participants of the key and carries this signer's commitments: the last
/// step of both the two-round and the preprocessed path.
pub fn sign_with_nonces(
    nonces: &SigningNonces,
    commitments: SigningCommitments,
    package: &SigningPackage,
    share: ShareRef<'_>,
) -> Result<Vec<u8>, SignerError> {
    let allowed: Vec<Identifier> = share
        .participants
        .iter()
        .filter_map(|&id| Identifier::try_from(id).ok())
        .collect();
    let named = package.signing_commitments();
    if named.len() > allowed.len() || named.keys().any(|i| !allowed.contains(i)) {
        return Err(SignerError::UnknownSigners);
    }
    if package.signing_commitment(share.key.identifier()) != Some(commitments) {
        return Err(SignerError::CommitmentMismatch);
    }
    let signature_share =
        round2::sign(package, nonces, share.key).map_err(|e| SignerError::Frost(e.to_string()))?;
    Ok(signature_share.serialize())
}
