//! What can go wrong in the network layer.

/// Network-layer errors.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The event loop is gone (node shutting down).
    #[error("network event loop has stopped")]
    Stopped,
    /// The command queue towards the event loop is full.
    #[error("network command queue is full")]
    Busy,
    /// libp2p transport or configuration trouble at start.
    #[error("network setup: {0}")]
    Setup(String),
    /// Could not listen on the configured address.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// Listen address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// An outbound request failed (timeout, closed connection, dial failure …).
    #[error("request to {peer} failed: {reason}")]
    Request {
        /// Remote PeerId.
        peer: libp2p::PeerId,
        /// Why.
        reason: String,
    },
}
