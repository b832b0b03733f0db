//! Threshold signing: coordinator election, the coordinator's session and the signer's side.
//!
//! Both state machines are sans-IO: they take replies and time, and return the requests to
//! send. A request reaches any node; the node ranks the key's participants for that request
//! ([`election`]), forwards it to the highest-ranked reachable one, which runs a
//! [`coordinator::Coordinator`]: commitments from `t` signers, the signing package, signature
//! shares, aggregation with cheater detection, and a final check of the signature.

pub mod aggregate;
pub mod coordinator;
pub mod election;
pub mod params;
pub mod participant;
pub mod presign;

use crate::wire::{ErrorKind, NodeId};

/// Why a signing session failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// Fewer than `t` participants can be reached.
    #[error("only {reachable} of {participants} participants reachable; {needed} are needed")]
    NotEnoughSigners {
        /// Reachable participants (the coordinator included).
        reachable: usize,
        /// The threshold.
        needed: u16,
        /// All participants of the key.
        participants: usize,
    },
    /// Signers sent invalid shares and no honest replacement was left.
    #[error("invalid signature shares from nodes {culprits:?}")]
    InvalidShares {
        /// The signers whose shares failed verification.
        culprits: Vec<NodeId>,
    },
    /// The session deadline passed.
    #[error("signing timed out waiting for nodes {missing:?}")]
    Timeout {
        /// Signers that had not answered.
        missing: Vec<NodeId>,
    },
    /// Fewer than `t` signers approved the request.
    #[error("the request was refused by nodes {refused_by:?}")]
    Refused {
        /// Each refusing signer and its reason.
        refused_by: Vec<(NodeId, String)>,
    },
    /// The aggregate did not verify under the group key (should be impossible).
    #[error("aggregated signature does not verify under the group key")]
    BadSignature,
    /// Any other frost error.
    #[error("frost: {0}")]
    Frost(String),
}

impl SignError {
    /// Short machine-readable class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SignError::NotEnoughSigners { .. } => ErrorKind::Unavailable,
            SignError::InvalidShares { .. } => ErrorKind::InvalidShares,
            SignError::Timeout { .. } => ErrorKind::Timeout,
            SignError::Refused { .. } => ErrorKind::Refused,
            SignError::BadSignature => ErrorKind::BadSignature,
            SignError::Frost(_) => ErrorKind::Frost,
        }
    }
}
