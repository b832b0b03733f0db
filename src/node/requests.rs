//! The requests a node takes from its callers and the answers it gives: key generation,
//! signing and status, as the HTTP API and the CLI see them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::wire::NodeId;

/// Largest message a node signs; also the most bytes a batch's messages hold in all.
pub const MAX_SIGN_MESSAGE: usize = 64 * 1024;
/// Most messages one signing request (a batch) carries.
pub const MAX_BATCH: usize = 256;

/// A request to generate a key.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct KeygenRequest {
    /// Name of the new key.
    pub key_id: String,
    /// Threshold; default `floor(2n/3) + 1`.
    #[serde(default)]
    pub threshold: Option<u16>,
    /// Participants; default every configured node.
    #[serde(default)]
    pub participants: Option<Vec<NodeId>>,
    /// The client's keygen token (from the `Authorization` header, not the body).
    #[serde(skip)]
    pub token: Option<String>,
}

/// A request to refresh a key: new shares of the same key for `participants` (default: every
/// current participant), a new epoch.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The key.
    #[serde(skip)]
    pub key_id: String,
    /// Who holds the new epoch's shares: a subset of the current participants of at least the
    /// threshold. Members left out are removed from the key.
    #[serde(default)]
    pub participants: Option<Vec<NodeId>>,
    /// The client's refresh token (from the `Authorization` header, not the body).
    #[serde(skip)]
    pub token: Option<String>,
}

/// A request to reshare a key: the same group key under a new threshold and a new set of
/// participants (the next epoch).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReshareRequest {
    /// The key.
    #[serde(skip)]
    pub key_id: String,
    /// The new threshold.
    pub threshold: u16,
    /// Who holds the new epoch's shares: any configured nodes, current participants or not.
    /// Current participants left out delete their share once the new epoch is certified.
    pub participants: Vec<NodeId>,
    /// The client's reshare token (from the `Authorization` header, not the body).
    #[serde(skip)]
    pub token: Option<String>,
}

/// A request to rebuild a node's share (repair: it lost it) or make one for a new node
/// (enrolment), on the key's polynomial; answered with the key's next epoch.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepairRequest {
    /// The key.
    #[serde(skip)]
    pub key_id: String,
    /// The node whose share is rebuilt or made.
    pub node: NodeId,
    /// `true` for a new participant (set by the endpoint, not the body).
    #[serde(skip)]
    pub enrol: bool,
    /// The client's token (from the `Authorization` header, not the body).
    #[serde(skip)]
    pub token: Option<String>,
}

/// Answer of a signing request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignResponse {
    /// 64-byte Ed25519 signature, hex.
    pub signature: String,
    /// Group public key, hex.
    pub group_public_key: String,
    /// Signers whose shares make up the signature.
    pub signers: Vec<NodeId>,
    /// The node that coordinated.
    pub coordinator: NodeId,
}

/// The answer to a batch: `POST /v1/keys/{key_id}/sign` with `messages`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BatchSignResponse {
    /// One 64-byte Ed25519 signature per message, hex, in the messages' order.
    pub signatures: Vec<String>,
    /// Group public key, hex.
    pub group_public_key: String,
    /// Signers whose shares make up the signatures.
    pub signers: Vec<NodeId>,
    /// The node that coordinated.
    pub coordinator: NodeId,
}

impl BatchSignResponse {
    /// The answer for a single message (the batch's only signature).
    pub fn single(self) -> SignResponse {
        SignResponse {
            signature: self.signatures.into_iter().next().unwrap_or_default(),
            group_public_key: self.group_public_key,
            signers: self.signers,
            coordinator: self.coordinator,
        }
    }
}

/// What `GET /v1/status` shows.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatusInfo {
    /// This node's id.
    pub id: NodeId,
    /// This node's PeerId.
    pub peer_id: String,
    /// Ids of peers with an open connection.
    pub connected_peers: Vec<NodeId>,
    /// Ids of peers that are connected and subscribed to the broadcast topic (ready for a DKG).
    pub ready_peers: Vec<NodeId>,
    /// Key ids in the store.
    pub keys: Vec<String>,
    /// Sessions running now.
    pub active_sessions: usize,
    /// How often each peer was caught misbehaving (invalid shares, equivocation, …).
    pub culprits: BTreeMap<NodeId, u64>,
    /// Nonces this node holds preprocessed for other coordinators (all together).
    #[serde(default)]
    pub presigned_nonces: usize,
    /// Commitments other signers issued this node ahead of time, by signer.
    #[serde(default)]
    pub presigned_commitments: BTreeMap<NodeId, usize>,
}

/// Default threshold for `n` participants: `floor(2n/3) + 1`, at least 2.
pub fn default_threshold(n: usize) -> u16 {
    ((2 * n / 3 + 1).max(2)).min(n) as u16
}
