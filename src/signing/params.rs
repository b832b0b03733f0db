//! What a coordinator's session is given (the request, the key, the commitments issued to it
//! ahead of time) and what it gives back (the signatures and who made them).

use std::collections::BTreeMap;

use frost_ed25519::keys::PublicKeyPackage;

use super::presign::Presigned;
use crate::wire::{NodeId, SessionId};

/// What a coordinator needs to know about the request and the key.
#[derive(Clone)]
pub struct SignParams {
    /// The signing session id (unique per request and coordinator).
    pub session: SessionId,
    /// This node.
    pub me: NodeId,
    /// Key name.
    pub key_id: String,
    /// Messages to sign (at least one), in order.
    pub messages: Vec<Vec<u8>>,
    /// Threshold.
    pub threshold: u16,
    /// Every participant of the key.
    pub participants: Vec<NodeId>,
    /// Group public data (verifying shares for cheater detection).
    pub public_key_package: PublicKeyPackage,
    /// Group public key bytes.
    pub group_public_key: [u8; 32],
    /// The epoch of the key's shares the signature is made with.
    pub epoch: u64,
    /// The request id this session derives from.
    pub request_id: SessionId,
    /// The client's token, passed to every signer.
    pub token: Option<String>,
    /// Commitments signers issued to this coordinator ahead of time, one per message: a chosen
    /// signer with them signs in one round ([`crate::wire::Body::SignNow`]); the others commit first. Each
    /// is spent at most once (a retry commits afresh).
    pub presigned: BTreeMap<NodeId, Vec<Presigned>>,
}

/// Finished signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignOutput {
    /// The 64-byte Ed25519 signatures, one per message, in order.
    pub signatures: Vec<[u8; 64]>,
    /// The signers whose shares make it up.
    pub signers: Vec<NodeId>,
    /// Signers caught sending invalid shares (excluded from the retry).
    pub culprits: Vec<NodeId>,
}
