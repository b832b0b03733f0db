//! What the node answers its callers with: [`NodeError`] (one variant per HTTP status class),
//! and [`Refusal`], the typed reason a check refuses a request, which travels to peers as
//! `Body::Refused` and to local callers as a `NodeError`.

use std::collections::BTreeMap;

use crate::wire::{Body, ErrorKind, NodeId};

/// Errors a node reports to its API callers. Each maps to one HTTP status.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum NodeError {
    /// The request is invalid (400).
    #[error("{0}")]
    BadRequest(String),
    /// No such key (404).
    #[error("{0}")]
    NotFound(String),
    /// The key id is taken or a session for it is running (409).
    #[error("{0}")]
    Conflict(String),
    /// Participants cannot be reached (503).
    #[error("{message}")]
    Unavailable {
        /// What happened.
        message: String,
        /// The unreachable participants.
        missing: Vec<NodeId>,
    },
    /// Participants did not answer in time (504).
    #[error("{message}")]
    Timeout {
        /// What happened.
        message: String,
        /// The participants that did not answer.
        missing: Vec<NodeId>,
    },
    /// The protocol aborted (500).
    #[error("{message}")]
    Aborted {
        /// What happened.
        message: String,
        /// Machine-readable class.
        kind: ErrorKind,
        /// Participants this node itself caught misbehaving.
        culprits: Vec<NodeId>,
        /// Accusations other participants reported, by reporter: what they claim, not what
        /// this node saw.
        reported_by: BTreeMap<NodeId, Vec<NodeId>>,
    },
    /// No valid client token (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Nodes refused the request by their clients or policy (403).
    #[error("{message}")]
    Refused {
        /// What happened.
        message: String,
        /// Each refusing node and its reason.
        refused_by: BTreeMap<NodeId, String>,
    },
    /// Anything else (500).
    #[error("{0}")]
    Internal(String),
}

impl NodeError {
    /// Machine-readable class for API errors.
    pub fn kind(&self) -> ErrorKind {
        match self {
            NodeError::BadRequest(_) => ErrorKind::BadRequest,
            NodeError::NotFound(_) => ErrorKind::NotFound,
            NodeError::Conflict(_) => ErrorKind::Conflict,
            NodeError::Unavailable { .. } => ErrorKind::Unavailable,
            NodeError::Timeout { .. } => ErrorKind::Timeout,
            NodeError::Aborted { kind, .. } => *kind,
            NodeError::Internal(_) => ErrorKind::Internal,
            NodeError::Unauthorized(_) => ErrorKind::Unauthorized,
            NodeError::Refused { .. } => ErrorKind::Refused,
        }
    }

    /// The node task is gone.
    pub fn stopped() -> Self {
        NodeError::Internal("node is shutting down".into())
    }

    /// An abort of `kind` with no culprits.
    pub fn aborted(kind: ErrorKind, message: impl Into<String>) -> Self {
        NodeError::Aborted {
            message: message.into(),
            kind,
            culprits: Vec::new(),
            reported_by: BTreeMap::new(),
        }
    }
}

/// Why a check refused a request: a typed kind, a reason for humans, and for
/// [`ErrorKind::Unavailable`] the participants that could not be reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Class of the refusal.
    pub kind: ErrorKind,
    /// Human-readable reason.
    pub reason: String,
    /// Unreachable participants, if that is the reason.
    pub missing: Vec<NodeId>,
}

impl Refusal {
    /// A refusal without unreachable participants.
    pub fn new(kind: ErrorKind, reason: impl Into<String>) -> Self {
        Refusal {
            kind,
            reason: reason.into(),
            missing: Vec::new(),
        }
    }

    /// The participants in `missing` cannot be reached.
    pub fn unavailable(reason: impl Into<String>, missing: Vec<NodeId>) -> Self {
        Refusal {
            kind: ErrorKind::Unavailable,
            reason: reason.into(),
            missing,
        }
    }

    /// The refusal as this node's caller sees it, `me` being this node.
    pub fn into_error(self, me: NodeId) -> NodeError {
        match self.kind {
            ErrorKind::Refused => NodeError::Refused {
                message: format!("node {me} refused: {}", self.reason),
                refused_by: BTreeMap::from([(me, self.reason)]),
            },
            _ => self.into(),
        }
    }

    /// The refusal as a wire answer.
    pub fn to_body(&self) -> Body {
        Body::refused(self.kind, self.reason.clone())
    }
}

impl From<Refusal> for NodeError {
    fn from(r: Refusal) -> Self {
        match r.kind {
            ErrorKind::BadRequest => NodeError::BadRequest(r.reason),
            ErrorKind::NotFound => NodeError::NotFound(r.reason),
            ErrorKind::Conflict => NodeError::Conflict(r.reason),
            ErrorKind::Unavailable | ErrorKind::Busy => NodeError::Unavailable {
                message: r.reason,
                missing: r.missing,
            },
            ErrorKind::Timeout => NodeError::Timeout {
                message: r.reason,
                missing: r.missing,
            },
            ErrorKind::Internal => NodeError::Internal(r.reason),
            ErrorKind::Unauthorized => NodeError::Unauthorized(r.reason),
            kind => NodeError::aborted(kind, r.reason),
        }
    }
}
