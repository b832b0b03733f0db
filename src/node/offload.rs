//! Signing arithmetic off the node task. A signer's shares for a remote coordinator, this
//! node's own shares and a coordinator's aggregation run on the worker pool
//! ([`crate::workers`]); what they produce comes back to the node task as a [`Finished`], which
//! answers the remote coordinator or feeds the coordinator's state machine. Everything a job
//! needs is moved into it (nonces already taken out of their table, the key package, the
//! packages), so the node task goes on moving messages meanwhile.

use libp2p::request_response::ResponseChannel;

use super::error::Refusal;
use super::signer::Asking;
use crate::signing::coordinator::Aggregated;
use crate::signing::participant::SignerError;
use crate::wire::{Body, NodeId, SessionId};

/// Arithmetic that finished on the worker pool, back on the node task.
pub enum Finished {
    /// This node's answer to a remote coordinator's signing request.
    Reply {
        /// The coordinator's session.
        session: SessionId,
        /// The coordinator.
        to: NodeId,
        /// Its request's channel.
        channel: ResponseChannel<Vec<u8>>,
        /// The shares, or why there are none.
        result: Result<Body, Refusal>,
        /// The request, for the journal.
        asking: Option<Box<Asking>>,
    },
    /// This node's shares for a session it coordinates.
    OwnShares {
        /// The session.
        session: SessionId,
        /// Its attempt.
        attempt: u8,
        /// One share per message, or why there are none.
        result: Result<Vec<Vec<u8>>, SignerError>,
    },
    /// A session's aggregation.
    Aggregated {
        /// The session.
        session: SessionId,
        /// What the aggregation found.
        done: Aggregated,
    },
}

impl std::fmt::Debug for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finished::Reply { session, to, .. } => write!(f, "Reply({session} to {to})"),
            Finished::OwnShares { session, .. } => write!(f, "OwnShares({session})"),
            Finished::Aggregated { session, .. } => write!(f, "Aggregated({session})"),
        }
    }
}
