//! The peer book: who the configured peers are (node id ↔ PeerId), which of them are connected
//! and subscribed to broadcasts right now, and the authentication of every message's sender.
//! A message is accepted only when its envelope's `from` is the node configured for the PeerId
//! that sent it (request-response) or signed it (GossipSub). The set of ready peers is
//! published on a watch channel for callers that wait for the cluster to form. The book also
//! remembers when each peer was last seen and its last ping round trip, for operators.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::context::WallClock;
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

/// What this node knows of one configured peer (`GET /v1/peers`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Node id.
    pub id: NodeId,
    /// libp2p identity.
    pub peer_id: String,
    /// Configured dial address.
    pub address: String,
    /// A connection is open.
    pub connected: bool,
    /// Connected and subscribed to broadcasts (ready for a DKG).
    pub ready: bool,
    /// When the peer was last seen (connected, pinged, subscribed or disconnected), seconds
    /// since the Unix epoch; absent if never.
    pub last_seen: Option<u64>,
    /// The last ping's round trip, milliseconds.
    pub ping_rtt_ms: Option<f64>,
    /// This is the node answering (listed first, always connected).
    #[serde(default)]
    pub this_node: bool,
}

#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    at: Option<Instant>,
    rtt: Option<Duration>,
}

/// Configured peers and their live state.
pub struct PeerBook {
    me: NodeId,
    max_message_size: usize,
    by_pid: HashMap<PeerId, NodeId>,
    connected: BTreeSet<NodeId>,
    subscribed: BTreeSet<NodeId>,
    seen: HashMap<NodeId, Seen>,
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
            seen: HashMap::new(),
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
        self.seen.retain(|id, _| listed.contains(id));
        let ready = self.ready();
        self.ready_tx.send_replace(ready);
    }

    /// This node's id.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// Applies a connection, subscription or ping event seen at `now` and republishes the
    /// ready set.
    pub fn on_event(&mut self, event: &net::Event, now: Instant) -> PeerChange {
        if let net::Event::Pinged { peer, rtt } = event {
            if let Some(&id) = self.by_pid.get(peer) {
                let seen = self.seen.entry(id).or_default();
                seen.at = Some(now);
                seen.rtt = Some(*rtt);
            }
            return PeerChange::None;
        }
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
        self.seen.entry(id).or_default().at = Some(now);
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

    /// This node (`own`: its PeerId and the address it listens on), then every configured
    /// peer of `config` as this node sees it, by id; `wall` dates the moments it last saw them.
    pub fn infos(
        &self,
        config: &Config,
        own: (PeerId, &libp2p::Multiaddr),
        now: Instant,
        wall: WallClock,
    ) -> Vec<PeerInfo> {
        let me = PeerInfo {
            id: self.me,
            peer_id: own.0.to_string(),
            address: own.1.to_string(),
            connected: true,
            ready: true,
            last_seen: Some(wall.unix_seconds(now)),
            ping_rtt_ms: None,
            this_node: true,
        };
        let mut peers: Vec<PeerInfo> = config
            .peers
            .iter()
            .filter(|p| p.id != self.me)
            .map(|p| {
                let seen = self.seen.get(&p.id).copied().unwrap_or_default();
                PeerInfo {
                    id: p.id,
                    peer_id: p.peer_id.to_string(),
                    address: p.addr.to_string(),
                    connected: self.connected.contains(&p.id),
                    ready: self.connected.contains(&p.id) && self.subscribed.contains(&p.id),
                    last_seen: seen.at.map(|at| {
                        // `at` is no later than `now`: date it back from the present.
                        let ago = now.saturating_duration_since(at);
                        wall.unix_seconds(now).saturating_sub(ago.as_secs())
                    }),
                    ping_rtt_ms: seen.rtt.map(|d| d.as_secs_f64() * 1000.0),
                    this_node: false,
                }
            })
            .collect();
        peers.sort_by_key(|p| p.id);
        peers.insert(0, me);
        peers
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
