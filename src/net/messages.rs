//! What crosses the network layer's boundary: [`NetParams`] to start it, [`Command`]s from the
//! node (through a `Client`) and [`Event`]s back to it. Payloads may hold secret
//! shares, so `Debug` shows their sizes only.

use std::time::Duration;

use libp2p::gossipsub::{MessageAcceptance, MessageId};
use libp2p::request_response::ResponseChannel;
use libp2p::{identity::Keypair, Multiaddr, PeerId};
use tokio::sync::oneshot;

use super::error::NetError;

/// Default capacity of the event queue towards the node: messages beyond it are dropped
/// (and counted) rather than stalling the swarm.
pub const DEFAULT_EVENT_QUEUE: usize = 4096;

/// What the network layer needs to start.
#[derive(Clone, Debug)]
pub struct NetParams {
    /// Node identity.
    pub keypair: Keypair,
    /// Listen address.
    pub listen: Multiaddr,
    /// Allow-listed peers and where to dial them.
    pub peers: Vec<(PeerId, Multiaddr)>,
    /// Largest message.
    pub max_message_size: usize,
    /// Outbound request deadline.
    pub request_timeout: Duration,
    /// Capacity of the event queue towards the node ([`DEFAULT_EVENT_QUEUE`]).
    pub event_queue: usize,
    /// GossipSub's send queues.
    pub gossip: super::GossipSettings,
}

/// Instructions from a `Client`.
pub enum Command {
    /// Broadcast on the DKG topic.
    Publish {
        /// Bytes.
        data: Vec<u8>,
    },
    /// Send a request.
    Request {
        /// Recipient.
        peer: PeerId,
        /// Bytes.
        data: Vec<u8>,
        /// Where the response (or failure) goes.
        reply: oneshot::Sender<Result<Vec<u8>, NetError>>,
    },
    /// Answer an inbound request.
    Respond {
        /// The request's channel.
        channel: ResponseChannel<Vec<u8>>,
        /// Bytes.
        data: Vec<u8>,
    },
    /// Verdict on a gossip message.
    Validate {
        /// Message id.
        message_id: MessageId,
        /// The peer that forwarded it.
        propagation_source: PeerId,
        /// Accept (forward), reject (penalise) or ignore.
        acceptance: MessageAcceptance,
    },
    /// Set a peer's dial address.
    SetPeerAddress {
        /// Peer.
        peer: PeerId,
        /// Address without `/p2p`.
        addr: Multiaddr,
    },
    /// Replace the allow-listed peers (a config reload): new ones are dialled, removed ones
    /// disconnected and refused from now on; a peer whose address changed is dialled there.
    SetPeers {
        /// Every allow-listed peer and its dial address.
        peers: Vec<(PeerId, Multiaddr)>,
    },
    /// Stop.
    Shutdown,
}

/// What the network reports to the node.
pub enum Event {
    /// A gossip message, awaiting validation via `Client::validate`.
    Gossip {
        /// The signed originator.
        source: PeerId,
        /// The peer that forwarded it.
        propagation_source: PeerId,
        /// Id for the validation report.
        message_id: MessageId,
        /// Bytes.
        data: Vec<u8>,
    },
    /// An inbound request; answer with `Client::respond`.
    Request {
        /// Authenticated sender.
        peer: PeerId,
        /// Bytes.
        data: Vec<u8>,
        /// Channel for the response.
        channel: ResponseChannel<Vec<u8>>,
    },
    /// First connection to a peer established.
    Connected(PeerId),
    /// Last connection to a peer closed.
    Disconnected(PeerId),
    /// A peer subscribed to the DKG topic.
    Subscribed(PeerId),
    /// A peer unsubscribed from the DKG topic.
    Unsubscribed(PeerId),
    /// A ping to a peer came back.
    Pinged {
        /// The peer.
        peer: PeerId,
        /// Its round trip.
        rtt: Duration,
    },
}

// Payloads may hold secret shares: `Debug` shows sizes only.
impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Publish { data } => write!(f, "Publish({} bytes)", data.len()),
            Command::Request { peer, data, .. } => {
                write!(f, "Request(to {peer}, {} bytes)", data.len())
            }
            Command::Respond { data, .. } => write!(f, "Respond({} bytes)", data.len()),
            Command::Validate { message_id, .. } => write!(f, "Validate({message_id})"),
            Command::SetPeerAddress { peer, addr } => write!(f, "SetPeerAddress({peer}, {addr})"),
            Command::SetPeers { peers } => write!(f, "SetPeers({} peers)", peers.len()),
            Command::Shutdown => f.write_str("Shutdown"),
        }
    }
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Gossip { source, data, .. } => {
                write!(f, "Gossip(from {source}, {} bytes)", data.len())
            }
            Event::Request { peer, data, .. } => {
                write!(f, "Request(from {peer}, {} bytes)", data.len())
            }
            Event::Connected(p) => write!(f, "Connected({p})"),
            Event::Disconnected(p) => write!(f, "Disconnected({p})"),
            Event::Subscribed(p) => write!(f, "Subscribed({p})"),
            Event::Unsubscribed(p) => write!(f, "Unsubscribed({p})"),
            Event::Pinged { peer, rtt } => write!(f, "Pinged({peer}, {rtt:?})"),
        }
    }
}
