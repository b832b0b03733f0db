//! The peer book: who the configured peers are (node id ↔ PeerId), which of them are connected
//! and subscribed to broadcasts right now, and the authentication of every message's sender.
//! A message is accepted only when its envelope's `from` is the node configured for the PeerId
//! that sent it (request-response) or signed it (GossipSub). The set of ready peers is
//! published on a watch channel for callers that wait for the cluster to form.

use std::collections::{BTreeSet, HashMap};

use libp2p::PeerId;
use tokio::sync::watch;

use crate::config::Config;
use crate::net;
use crate::wire::{self, Envelope, NodeId, WireError};

/// Why a message was not accepted as coming from a configured peer.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The PeerId is not in the config.
    #[error("unlisted peer {0}")]
    Unlisted(PeerId),
    /// The bytes are not a valid envelope.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The envelope names another sender than the authenticated one.
    #[error("envelope claims to come from node {claimed} but was sent by node {actual} ({peer})")]
    Impersonation {
        /// The envelope's `from`.
        claimed: NodeId,
        /// The node configured for the PeerId.
        actual: NodeId,
        /// The authenticated PeerId.
        peer: PeerId,
    },
}

/// A change in a peer's state, as the node's components need to hear it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerChange {
    /// Nothing a component cares about.
    None,
    /// The last connection to this node closed.
    Lost(NodeId),
    /// A connection to this node opened.
    Connected(NodeId),
}

/// Configured peers and their live state.
pub struct PeerBook {
    me: NodeId,
    max_message_size: usize,
    by_pid: HashMap<PeerId, NodeId>,
    connected: BTreeSet<NodeId>,
    subscribed: BTreeSet<NodeId>,
    ready_tx: watch::Sender<BTreeSet<NodeId>>,
}

impl PeerBook {
    /// The peers of `config`, none connected yet; returns the book and a receiver of the set of
    /// ready peers.
    pub fn new(config: &Config) -> (PeerBook, watch::Receiver<BTreeSet<NodeId>>) {
        let (ready_tx, ready_rx) = watch::channel(BTreeSet::new());
        let book = PeerBook {
            me: config.id,
            max_message_size: config.max_message_size,
            by_pid: config.peers.iter().map(|p| (p.peer_id, p.id)).collect(),
            connected: BTreeSet::new(),
            subscribed: BTreeSet::new(),
            ready_tx,
        };
        (book, ready_rx)
    }

    /// Takes the peers of a reloaded `config`: removed peers (and the old identity of a peer
    /// whose PeerId changed) are forgotten, with their connection state.
    pub fn set_peers(&mut self, config: &Config) {
        self.by_pid = config.peers.iter().map(|p| (p.peer_id, p.id)).collect();
        let listed: BTreeSet<NodeId> = self.by_pid.values().copied().collect();
        self.connected.retain(|id| listed.contains(id));
        self.subscribed.retain(|id| listed.contains(id));
        let ready = self.ready();
        self.ready_tx.send_replace(ready);
    }

    /// This node's id.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// Applies a connection or subscription event and republishes the ready set.
    pub fn on_event(&mut self, event: &net::Event) -> PeerChange {
        let (net::Event::Connected(pid)
        | net::Event::Disconnected(pid)
        | net::Event::Subscribed(pid)
        | net::Event::Unsubscribed(pid)) = event
        else {
            return PeerChange::None;
        };
        let Some(&id) = self.by_pid.get(pid) else {
            return PeerChange::None;
        };
        let result = match event {
            net::Event::Connected(_) => {
                self.connected.insert(id);
                PeerChange::Connected(id)
            }
            net::Event::Disconnected(_) => {
                self.connected.remove(&id);
                self.subscribed.remove(&id);
                PeerChange::Lost(id)
            }
            net::Event::Subscribed(_) => {
                tracing::debug!(peer = id, "peer ready for broadcasts");
                self.subscribed.insert(id);
                PeerChange::None
            }
            _ => {
                self.subscribed.remove(&id);
                PeerChange::None
            }
        };
        let ready = self.ready();
        self.ready_tx.send_if_modified(|current| {
            let changed = *current != ready;
            if changed {
                *current = ready;
            }
            changed
        });
        result
    }

    /// Decodes `data` and checks that it comes from the node configured for `peer`.
    pub fn authenticate(&self, peer: PeerId, data: &[u8]) -> Result<Envelope, AuthError> {
        let Some(&actual) = self.by_pid.get(&peer) else {
            return Err(AuthError::Unlisted(peer));
        };
        let env = wire::decode(data, self.max_message_size)?;
        if env.from != actual {
            return Err(AuthError::Impersonation {
                claimed: env.from,
                actual,
                peer,
            });
        }
        Ok(env)
    }

    /// Whether `id` is this node or a connected peer.
    pub fn reachable(&self, id: NodeId) -> bool {
        id == self.me || self.connected.contains(&id)
    }

    /// Whether `id` is connected.
    pub fn is_connected(&self, id: NodeId) -> bool {
        self.connected.contains(&id)
    }

    /// Connected peers, sorted.
    pub fn connected(&self) -> Vec<NodeId> {
        self.connected.iter().copied().collect()
    }

    /// How many peers are connected.
    pub fn connected_count(&self) -> usize {
        self.connected.len()
    }

    /// Peers that are connected and subscribed to broadcasts.
    pub fn ready(&self) -> BTreeSet<NodeId> {
        self.connected
            .intersection(&self.subscribed)
            .copied()
            .collect()
    }

    /// The members of `participants` other than this node that are not ready.
    pub fn not_ready(&self, participants: &[NodeId]) -> Vec<NodeId> {
        participants
            .iter()
            .copied()
            .filter(|&id| {
                id != self.me && !(self.connected.contains(&id) && self.subscribed.contains(&id))
            })
            .collect()
    }
}
