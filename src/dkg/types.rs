//! The vocabulary of a DKG session: its parameters, phases, effects and output, the identity
//! keys it signs confirmations with, and the bytes a confirmation signature covers.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use frost_ed25519::keys::{KeyPackage, PublicKeyPackage};
use sha2::{Digest, Sha256};

use super::error::DkgError;
use crate::wire::{Body, Confirmation, NodeId, RefreshOf, RepairOf, ReshareOf, SessionId};

/// Signs this node's DKG confirmation and checks the other participants' (their node
/// identity keys). The node implements it over its libp2p identity (`identity::NodeKeys`).
pub trait ConfirmationKeys: Send + Sync {
    /// Signs `message` with this node's identity key.
    fn sign(&self, message: &[u8]) -> Option<Vec<u8>>;
    /// Whether `signature` is `node`'s signature over `message`.
    fn verify(&self, node: NodeId, message: &[u8], signature: &[u8]) -> bool;
    /// Whether `node`'s identity key is known.
    fn knows(&self, node: NodeId) -> bool;
    /// `node`'s identity as a libp2p PeerId string (kept with a stored confirmation, so that a
    /// certificate still reads after a participant's identity changed).
    fn identity(&self, _node: NodeId) -> Option<String> {
        None
    }
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
    /// Set when the session starts from an existing key's epoch: a refresh (its participants
    /// then hold that key's shares of this epoch, and the threshold is the key's own), or with
    /// `repair` a repair or enrolment.
    pub refresh: Option<RefreshOf>,
    /// Set for a repair or enrolment (with `refresh` naming the key and epoch).
    pub repair: Option<RepairOf>,
    /// Set for a reshare (with `refresh` naming the key and epoch; `threshold` is the new
    /// one).
    pub reshare: Option<ReshareOf>,
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
        if let Some(repair) = &self.repair {
            let helpers: BTreeSet<NodeId> = repair.helpers.iter().copied().collect();
            let problem = if self.refresh.is_none() {
                Some("a repair names the key epoch it starts from".to_string())
            } else if !unique.contains(&repair.target) {
                Some(format!("target {} is not a participant", repair.target))
            } else if helpers.contains(&repair.target) {
                Some(format!(
                    "target {} cannot help repair itself",
                    repair.target
                ))
            } else if helpers.len() != usize::from(self.threshold)
                || helpers.len() != repair.helpers.len()
            {
                Some(format!(
                    "a repair needs exactly {} distinct helpers, got {:?}",
                    self.threshold, repair.helpers
                ))
            } else if !helpers.is_subset(&unique) {
                Some("every helper must be a participant".to_string())
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(DkgError::InvalidParams(problem));
            }
        }
        if let Some(reshare) = &self.reshare {
            self.validate_reshare(&unique, reshare)?;
        }
        let n = self
            .reshare
            .as_ref()
            .map_or(unique.len(), |r| r.members.len());
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

impl DkgParams {
    /// A reshare starts from a key's epoch (no repair at once), with distinct dealers and
    /// members who are all participants (the other participants are holders it removes: they
    /// confirm, then delete their share).
    fn validate_reshare(
        &self,
        participants: &BTreeSet<NodeId>,
        reshare: &ReshareOf,
    ) -> Result<(), DkgError> {
        let dealers: BTreeSet<NodeId> = reshare.dealers.iter().copied().collect();
        let members: BTreeSet<NodeId> = reshare.members.iter().copied().collect();
        let problem = if self.refresh.is_none() || self.repair.is_some() {
            Some("a reshare names the key epoch it starts from, and repairs nobody".to_string())
        } else if dealers.len() != reshare.dealers.len() || members.len() != reshare.members.len() {
            Some("dealers or members contain duplicates".to_string())
        } else if dealers.len() < 2 {
            Some(format!(
                "a reshare needs at least 2 dealers, got {dealers:?}"
            ))
        } else if !dealers.is_subset(participants) || !members.is_subset(participants) {
            Some("every dealer and member must be a participant".to_string())
        } else {
            None
        };
        match problem {
            Some(problem) => Err(DkgError::InvalidParams(problem)),
            None => Ok(()),
        }
    }

    /// Whether `id` deals in this reshare.
    pub fn is_dealer(&self, id: NodeId) -> bool {
        self.reshare
            .as_ref()
            .is_some_and(|r| r.dealers.contains(&id))
    }

    /// Whether `id` holds a share of the epoch this session makes: every participant, except
    /// in a reshare (its members only).
    pub fn is_member(&self, id: NodeId) -> bool {
        match &self.reshare {
            Some(r) => r.members.contains(&id),
            None => self.participants.contains(&id),
        }
    }

    /// The participants of the epoch this session makes.
    pub fn members(&self) -> Vec<NodeId> {
        match &self.reshare {
            Some(r) => r.members.clone(),
            None => self.participants.clone(),
        }
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
    /// The key (or its new epoch) is confirmed by all: store it.
    Completed(Box<DkgOutput>),
    /// The next epoch is confirmed by all and this node holds no share of it (a reshare left
    /// it out): delete its share of the key.
    Left {
        /// The epoch this node leaves the key at (its share of the one before is deleted).
        epoch: u64,
        /// The group key.
        group_public_key: [u8; 32],
    },
    /// The session aborted.
    Failed(DkgError),
    /// Run this arithmetic (anywhere, off the message path) and hand the result to
    /// [`DkgSession::computed`](super::DkgSession::computed).
    Compute(super::work::Work),
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
    /// The group's VSS commitment (the sum of every participant's polynomial commitment,
    /// each coefficient a compressed point): the verifying share of any identifier follows
    /// from it.
    pub group_commitment: Vec<[u8; 32]>,
    /// The key's epoch these shares belong to (0 for a DKG, the refreshed epoch + 1 for a
    /// refresh).
    pub epoch: u64,
}

/// The shares a refresh starts from: this node's share of the key's current epoch, the
/// epoch's public data and its group commitment.
pub struct PriorKey {
    /// This node's share of the current epoch.
    pub key_package: KeyPackage,
    /// The current epoch's public key package.
    pub public_key_package: PublicKeyPackage,
    /// The current epoch's group commitment.
    pub group_commitment: Vec<[u8; 32]>,
}

impl fmt::Debug for PriorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PriorKey")
            .field("key_package", &"<redacted>")
            .finish()
    }
}

impl fmt::Debug for DkgOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DkgOutput")
            .field("group_public_key", &hex::encode(self.group_public_key))
            .field("key_package", &"<redacted>")
            .finish()
    }
}

/// Domain separator of the round id.
const ROUND_DOMAIN: &[u8] = b"frostnode/dkg-round/v1";

/// The id a DKG's round messages travel under: the setup id and parameters together with every
/// participant's random contribution. As long as one participant's contribution is fresh, no
/// message signed for any earlier session carries it.
pub fn round_id(params: &DkgParams, contributions: &[(NodeId, [u8; 32])]) -> SessionId {
    let mut h = Sha256::new();
    h.update(ROUND_DOMAIN);
    h.update(params.session.0);
    h.update((params.key_id.len() as u32).to_be_bytes());
    h.update(params.key_id.as_bytes());
    h.update(params.threshold.to_be_bytes());
    h.update(params.initiator.to_be_bytes());
    if let Some(refresh) = &params.refresh {
        // A refresh's messages can never pass for a DKG's, or for another epoch's refresh.
        h.update(b"refresh");
        h.update(refresh.group_public_key);
        h.update(refresh.epoch.to_be_bytes());
    }
    if let Some(repair) = &params.repair {
        h.update(b"repair");
        h.update(repair.target.to_be_bytes());
        h.update([u8::from(repair.enrol)]);
        for id in &repair.helpers {
            h.update(id.to_be_bytes());
        }
    }
    if let Some(reshare) = &params.reshare {
        h.update(b"reshare");
        for list in [&reshare.dealers, &reshare.members] {
            h.update((list.len() as u32).to_be_bytes());
            for id in list {
                h.update(id.to_be_bytes());
            }
        }
    }
    for (id, c) in contributions {
        h.update(id.to_be_bytes());
        h.update(c);
    }
    SessionId(h.finalize().into())
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
