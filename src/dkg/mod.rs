//! The DKG session state machine (sans-IO): FROST distributed key generation over
//! `frost_ed25519::keys::dkg::{part1, part2, part3}`, plus the checks that make it safe on a
//! real network.
//!
//! Steps (one [`DkgSession`] per participant and session):
//! 1. `Prepared`: created on `DkgStart`; messages that arrive early are kept.
//! 2. `Round1`: on `DkgBegin`, run `part1` and broadcast the round-1 package.
//! 3. `Round2`: with every other round-1 package, run `part2`, send each round-2 package to its
//!    recipient alone, and broadcast an *echo*: the hash of every round-1 package used. An echo
//!    that disagrees with ours exposes a sender that showed different packages to different
//!    peers.
//! 4. `Confirming`: with every round-2 package and every echo, run `part3`, then broadcast a
//!    confirmation signed with the node identity key over (session, transcript, group key,
//!    public key package hash).
//! 5. `Done`: every participant confirmed the same result. Only now is the key handed out to
//!    be stored.
//!
//! The machine takes messages, time and randomness as arguments and returns [`Effect`]s; it
//! never touches the network, clocks or disk. Confirmations are signed and checked through
//! [`ConfirmationKeys`], so the machine knows nothing of how node identities are kept.

mod error;
mod rounds;
mod session;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use frost_ed25519::keys::{KeyPackage, PublicKeyPackage};
use sha2::{Digest, Sha256};

use crate::wire::{Body, Confirmation, NodeId, SessionId};

pub use error::{DkgError, Rejection};
pub use session::DkgSession;

/// Signs this node's DKG confirmation and checks the other participants' (their node
/// identity keys). The node implements it over its libp2p identity (`identity::NodeKeys`).
pub trait ConfirmationKeys: Send + Sync {
    /// Signs `message` with this node's identity key.
    fn sign(&self, message: &[u8]) -> Option<Vec<u8>>;
    /// Whether `signature` is `node`'s signature over `message`.
    fn verify(&self, node: NodeId, message: &[u8], signature: &[u8]) -> bool;
    /// Whether `node`'s identity key is known.
    fn knows(&self, node: NodeId) -> bool;
}

/// Parameters every participant of one DKG agrees on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DkgParams {
    /// The session id.
    pub session: SessionId,
    /// Name of the key to create.
    pub key_id: String,
    /// Participant ids (any order; kept sorted).
    pub participants: Vec<NodeId>,
    /// Signing threshold.
    pub threshold: u16,
    /// The node that started the session.
    pub initiator: NodeId,
}

impl DkgParams {
    /// Checks `2 <= t <= n`, at least two distinct participants, no id 0.
    pub fn validate(&self) -> Result<(), DkgError> {
        let unique: BTreeSet<NodeId> = self.participants.iter().copied().collect();
        if unique.len() != self.participants.len() {
            return Err(DkgError::InvalidParams(
                "participants contain duplicates".into(),
            ));
        }
        if unique.contains(&0) {
            return Err(DkgError::InvalidParams("node id 0 is not valid".into()));
        }
        let n = unique.len();
        if n < 2 {
            return Err(DkgError::InvalidParams(
                "a DKG needs at least 2 participants".into(),
            ));
        }
        let t = usize::from(self.threshold);
        if t < 2 || t > n {
            return Err(DkgError::InvalidParams(format!(
                "threshold must satisfy 2 <= t <= n (n = {n}), got {t}"
            )));
        }
        Ok(())
    }
}

/// Where a session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Created, waiting for `DkgBegin`.
    Prepared,
    /// Own round-1 package sent, collecting the others'.
    Round1,
    /// Round-2 packages sent, collecting shares and echoes.
    Round2,
    /// Own confirmation sent, collecting the others'.
    Confirming,
    /// Every participant confirmed the key.
    Done,
    /// Aborted.
    Failed,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Phase::Prepared => "waiting to begin",
            Phase::Round1 => "round 1",
            Phase::Round2 => "round 2",
            Phase::Confirming => "confirmation",
            Phase::Done => "done",
            Phase::Failed => "failed",
        };
        f.write_str(s)
    }
}

/// What the driver must do after a transition.
#[derive(Debug)]
pub enum Effect {
    /// Publish to every participant (GossipSub).
    Broadcast(Body),
    /// Send to one participant only (request-response).
    Send {
        /// Recipient.
        to: NodeId,
        /// Message.
        body: Body,
    },
    /// The key is confirmed by all: store it.
    Completed(Box<DkgOutput>),
    /// The session aborted.
    Failed(DkgError),
}

/// A confirmed key.
pub struct DkgOutput {
    /// This node's share.
    pub key_package: KeyPackage,
    /// Everyone's public data.
    pub public_key_package: PublicKeyPackage,
    /// Group public key bytes.
    pub group_public_key: [u8; 32],
    /// Every participant's verified confirmation.
    pub confirmations: BTreeMap<NodeId, Confirmation>,
}

impl fmt::Debug for DkgOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DkgOutput")
            .field("group_public_key", &hex::encode(self.group_public_key))
            .field("key_package", &"<redacted>")
            .finish()
    }
}

/// Domain separator of the confirmation signature.
const CONFIRM_DOMAIN: &[u8] = b"frostnode/dkg-confirm/v1";
/// Domain separator of the transcript digest.
pub(crate) const TRANSCRIPT_DOMAIN: &[u8] = b"frostnode/dkg-transcript/v1";

/// The bytes a confirmation signature covers.
pub fn confirmation_message(session: &SessionId, c: &Confirmation) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONFIRM_DOMAIN.len() + 128);
    m.extend_from_slice(CONFIRM_DOMAIN);
    m.extend_from_slice(&session.0);
    m.extend_from_slice(&c.transcript);
    m.extend_from_slice(&c.group_public_key);
    m.extend_from_slice(&c.public_key_package_hash);
    m
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}
