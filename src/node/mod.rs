//! The node: the one place where the network, the protocol state machines, timers and the key
//! store meet.
//!
//! A single task owns all session state and processes, in order, network events, API requests
//! and the results of requests it sent. It never waits on the network itself: outbound
//! requests run in small spawned tasks whose answers come back through the inbox.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use libp2p::gossipsub::{MessageAcceptance, MessageId};
use libp2p::identity::{Keypair, PublicKey};
use libp2p::request_response::ResponseChannel;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::dkg::DkgSession;
use crate::keystore::{KeyInfo, KeyStore, KeyStoreError};
use crate::metrics::{Metrics, SharedRegistry};
use crate::net::{self, Client, EventLoop, NetParams};
use crate::signing::participant::Signer;
use crate::wire::{self, Body, Envelope, NodeId, SessionId};

mod dkg;
mod signing;

use dkg::Initiation;
pub use signing::SignResponse;
use signing::{Coordination, Forward};

/// How long ended sessions are remembered, so late messages for them are dropped quietly.
const FINISHED_MEMORY: Duration = Duration::from_secs(600);

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
    /// The protocol aborted, usually naming culprits (500).
    #[error("{message}")]
    Aborted {
        /// What happened.
        message: String,
        /// Machine-readable class.
        kind: String,
        /// Blamed participants.
        culprits: Vec<NodeId>,
    },
    /// Anything else (500).
    #[error("{0}")]
    Internal(String),
}

impl NodeError {
    /// Machine-readable class for API errors.
    pub fn kind(&self) -> String {
        match self {
            NodeError::BadRequest(_) => "bad_request".into(),
            NodeError::NotFound(_) => "not_found".into(),
            NodeError::Conflict(_) => "conflict".into(),
            NodeError::Unavailable { .. } => "unavailable".into(),
            NodeError::Timeout { .. } => "timeout".into(),
            NodeError::Aborted { kind, .. } => kind.clone(),
            NodeError::Internal(_) => "internal".into(),
        }
    }

    fn stopped() -> Self {
        NodeError::Internal("node is shutting down".into())
    }
}

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
}

/// Default threshold for `n` participants: `floor(2n/3) + 1`, at least 2.
pub fn default_threshold(n: usize) -> u16 {
    ((2 * n / 3 + 1).max(2)).min(n) as u16
}

enum Input {
    Keygen {
        req: KeygenRequest,
        reply: oneshot::Sender<Result<KeyInfo, NodeError>>,
    },
    Status {
        reply: oneshot::Sender<StatusInfo>,
    },
    ListKeys {
        reply: oneshot::Sender<Vec<KeyInfo>>,
    },
    GetKey {
        key_id: String,
        reply: oneshot::Sender<Option<KeyInfo>>,
    },
    Sign {
        key_id: String,
        message: Vec<u8>,
        reply: oneshot::Sender<Result<SignResponse, NodeError>>,
    },
    /// The answer (or failure) of a request this node sent.
    Reply {
        session: SessionId,
        from: NodeId,
        result: Result<Body, String>,
    },
    #[cfg(feature = "fault-injection")]
    CorruptShares(bool),
    #[cfg(feature = "fault-injection")]
    Unresponsive(bool),
    #[cfg(feature = "fault-injection")]
    DkgFaults(DkgFaults),
    #[cfg(feature = "fault-injection")]
    TakeNonceLog {
        reply: oneshot::Sender<Vec<Vec<u8>>>,
    },
}

/// Cloneable handle for talking to a running node (used by the API and tests).
#[derive(Clone, Debug)]
pub struct NodeHandle {
    tx: mpsc::Sender<Input>,
    id: NodeId,
    peer_id: PeerId,
    ready: watch::Receiver<BTreeSet<NodeId>>,
}

impl NodeHandle {
    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// This node's PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Peers that are connected and subscribed to broadcasts right now.
    pub fn ready_peers(&self) -> BTreeSet<NodeId> {
        self.ready.borrow().clone()
    }

    /// Waits until the set of ready peers satisfies `pred`, or the timeout.
    pub async fn wait_ready_where(
        &self,
        pred: impl Fn(&BTreeSet<NodeId>) -> bool,
        timeout: Duration,
    ) -> Result<(), NodeError> {
        let mut rx = self.ready.clone();
        match tokio::time::timeout(timeout, async {
            rx.wait_for(|r| pred(r)).await.map(|_| ())
        })
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(NodeError::stopped()),
            Err(_) => Err(NodeError::Timeout {
                message: format!("node {}: peer condition not met after {timeout:?}", self.id),
                missing: vec![],
            }),
        }
    }

    /// Waits until every id in `peers` is ready (connected and subscribed), or the timeout.
    pub async fn wait_for_peers(
        &self,
        peers: &[NodeId],
        timeout: Duration,
    ) -> Result<(), NodeError> {
        let mut rx = self.ready.clone();
        let waited = tokio::time::timeout(timeout, async {
            rx.wait_for(|ready| peers.iter().all(|p| ready.contains(p)))
                .await
                .map(|_| ())
        })
        .await;
        match waited {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(NodeError::stopped()),
            Err(_) => {
                let ready = self.ready_peers();
                let missing: Vec<NodeId> = peers
                    .iter()
                    .copied()
                    .filter(|p| !ready.contains(p))
                    .collect();
                Err(NodeError::Unavailable {
                    message: format!(
                        "node {}: peers {missing:?} not ready after {timeout:?}",
                        self.id
                    ),
                    missing,
                })
            }
        }
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Input) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| NodeError::stopped())?;
        rx.await.map_err(|_| NodeError::stopped())
    }

    /// Runs a DKG with this node as initiator; answers once every participant stored the key
    /// or the session failed.
    pub async fn keygen(&self, req: KeygenRequest) -> Result<KeyInfo, NodeError> {
        self.ask(|reply| Input::Keygen { req, reply }).await?
    }

    /// Signs `message` with key `key_id` through the coordinator elected for this request.
    pub async fn sign(&self, key_id: &str, message: Vec<u8>) -> Result<SignResponse, NodeError> {
        let key_id = key_id.to_string();
        self.ask(|reply| Input::Sign {
            key_id,
            message,
            reply,
        })
        .await?
    }

    /// Makes this node's signer return corrupted signature shares (test builds only).
    #[cfg(feature = "fault-injection")]
    pub async fn corrupt_signature_shares(&self, on: bool) -> Result<(), NodeError> {
        self.tx
            .send(Input::CorruptShares(on))
            .await
            .map_err(|_| NodeError::stopped())
    }

    /// Makes this node take requests and never answer them, while its connections stay up
    /// (test builds only): a hung node, from its peers' view.
    #[cfg(feature = "fault-injection")]
    pub async fn set_unresponsive(&self, on: bool) -> Result<(), NodeError> {
        self.tx
            .send(Input::Unresponsive(on))
            .await
            .map_err(|_| NodeError::stopped())
    }

    /// Every signing nonce this node made since the last call (test builds only: for tests
    /// that check nonces never leak).
    #[cfg(feature = "fault-injection")]
    pub async fn take_nonce_log(&self) -> Result<Vec<Vec<u8>>, NodeError> {
        self.ask(|reply| Input::TakeNonceLog { reply }).await
    }

    /// Makes this node misbehave in DKGs (test builds only).
    #[cfg(feature = "fault-injection")]
    pub async fn set_dkg_faults(&self, faults: DkgFaults) -> Result<(), NodeError> {
        self.tx
            .send(Input::DkgFaults(faults))
            .await
            .map_err(|_| NodeError::stopped())
    }

    /// Node status.
    pub async fn status(&self) -> Result<StatusInfo, NodeError> {
        self.ask(|reply| Input::Status { reply }).await
    }

    /// Public info of every key.
    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>, NodeError> {
        self.ask(|reply| Input::ListKeys { reply }).await
    }

    /// Public info of one key.
    pub async fn get_key(&self, key_id: &str) -> Result<Option<KeyInfo>, NodeError> {
        let key_id = key_id.to_string();
        self.ask(|reply| Input::GetKey { key_id, reply }).await
    }
}

/// Errors starting a node.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Identity trouble.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    /// Key store trouble.
    #[error(transparent)]
    KeyStore(#[from] KeyStoreError),
    /// Configuration trouble found at start (e.g. the passphrase cannot be read).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Network trouble.
    #[error(transparent)]
    Net(#[from] net::NetError),
    /// The API socket.
    #[error("cannot bind the API on {addr}: {source}")]
    Api {
        /// Address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A configured peer id that does not carry an Ed25519 public key.
    #[error("peer {0}'s PeerId does not embed an Ed25519 public key")]
    PeerKey(NodeId),
}

/// A node whose sockets are open but whose tasks are not running yet.
pub struct BoundNode {
    config: Arc<Config>,
    keypair: Keypair,
    keystore: KeyStore,
    client: Client,
    events: mpsc::Receiver<net::Event>,
    event_loop: EventLoop,
    p2p_addr: Multiaddr,
    api_listener: tokio::net::TcpListener,
    api_addr: SocketAddr,
    peer_keys: BTreeMap<NodeId, PublicKey>,
    metrics: Metrics,
    registry: SharedRegistry,
}

impl BoundNode {
    /// Loads the key store, opens the libp2p listener and the API socket.
    pub async fn bind(config: Config, keypair: Keypair) -> Result<BoundNode, StartError> {
        let passphrase = config.read_passphrase()?;
        let keystore =
            KeyStore::open_with(&config.data_dir, passphrase.as_ref().map(|p| p.as_slice()))?;
        if keystore.is_encrypted() {
            info!(dir = %keystore.dir().display(), "key store encrypted at rest (Argon2id + XChaCha20-Poly1305)");
        } else {
            warn!(
                dir = %keystore.dir().display(),
                "KEY SHARES ARE STORED UNENCRYPTED: set [keystore] passphrase_env or passphrase_file"
            );
        }
        let mut peer_keys = BTreeMap::new();
        for p in &config.peers {
            let key = peer_public_key(&p.peer_id).ok_or(StartError::PeerKey(p.id))?;
            peer_keys.insert(p.id, key);
        }
        let mut registry = prometheus_client::registry::Registry::with_prefix("frostnode");
        let metrics = Metrics::register(&mut registry);
        let p2p_metrics = libp2p::metrics::Metrics::new(&mut registry);
        let (client, events, event_loop) = EventLoop::new(NetParams {
            keypair: keypair.clone(),
            listen: config.listen.clone(),
            peers: config
                .peers
                .iter()
                .map(|p| (p.peer_id, p.addr.clone()))
                .collect(),
            max_message_size: config.max_message_size,
            request_timeout: config.request_timeout,
        })?;
        let mut event_loop = event_loop.with_metrics(p2p_metrics);
        let p2p_addr = event_loop.wait_listening(Duration::from_secs(10)).await?;
        let api_listener = tokio::net::TcpListener::bind(config.api_listen)
            .await
            .map_err(|source| StartError::Api {
                addr: config.api_listen,
                source,
            })?;
        let api_addr = api_listener
            .local_addr()
            .map_err(|source| StartError::Api {
                addr: config.api_listen,
                source,
            })?;
        Ok(BoundNode {
            config: Arc::new(config),
            keypair,
            keystore,
            client,
            events,
            event_loop,
            p2p_addr,
            api_listener,
            api_addr,
            peer_keys,
            metrics,
            registry: Arc::new(registry),
        })
    }

    /// The libp2p address the node listens on (port resolved).
    pub fn p2p_addr(&self) -> &Multiaddr {
        &self.p2p_addr
    }

    /// The API address (port resolved).
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// This node's PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.keypair.public().to_peer_id()
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// Overrides where a configured peer is dialled (its port may only be known now).
    pub fn set_peer_address(&mut self, peer: PeerId, addr: Multiaddr) {
        self.event_loop.set_peer_address(peer, addr);
    }

    /// Spawns the network, node and API tasks.
    pub fn start(self) -> RunningNode {
        let (tx, rx) = mpsc::channel(1024);
        let (ready_tx, ready_rx) = watch::channel(BTreeSet::new());
        let handle = NodeHandle {
            tx: tx.clone(),
            id: self.config.id,
            peer_id: self.keypair.public().to_peer_id(),
            ready: ready_rx,
        };
        let net_task = tokio::spawn(self.event_loop.run());
        let mut peer_by_pid = HashMap::new();
        let mut pid_by_id = HashMap::new();
        for p in &self.config.peers {
            peer_by_pid.insert(p.peer_id, p.id);
            pid_by_id.insert(p.id, p.peer_id);
        }
        info!(
            id = self.config.id,
            peer_id = %handle.peer_id,
            p2p = %self.p2p_addr,
            api = %self.api_addr,
            keys = self.keystore.keys().count(),
            "node started"
        );
        let node = Node {
            config: self.config.clone(),
            keypair: self.keypair,
            net: self.client.clone(),
            keystore: self.keystore,
            peer_keys: self.peer_keys,
            peer_by_pid,
            pid_by_id,
            connected: HashSet::new(),
            subscribed: HashSet::new(),
            sessions: HashMap::new(),
            initiations: HashMap::new(),
            forwards: HashMap::new(),
            signer: Signer::new(),
            culprits: BTreeMap::new(),
            finished: HashMap::new(),
            inbox: tx,
            ready_tx,
            metrics: self.metrics,
            dkg_started: HashMap::new(),
            #[cfg(feature = "fault-injection")]
            faults: Faults::default(),
        };
        let node_task = tokio::spawn(node.run(rx, self.events));
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let router = crate::api::router(handle.clone(), self.registry);
        let api_listener = self.api_listener;
        let api_task = tokio::spawn(async move {
            let serve = axum::serve(api_listener, router).with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            });
            if let Err(e) = serve.await {
                warn!(error = %e, "API server stopped");
            }
        });
        RunningNode {
            handle,
            client: self.client,
            api_addr: self.api_addr,
            p2p_addr: self.p2p_addr,
            stop_api: Some(stop_tx),
            tasks: vec![net_task, node_task, api_task],
        }
    }
}

/// A node whose tasks run; dropping it does not stop them, call [`RunningNode::shutdown`].
pub struct RunningNode {
    handle: NodeHandle,
    client: Client,
    api_addr: SocketAddr,
    p2p_addr: Multiaddr,
    stop_api: Option<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningNode {
    /// Handle for requests.
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// API address.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// libp2p listen address.
    pub fn p2p_addr(&self) -> &Multiaddr {
        &self.p2p_addr
    }

    /// Stops the API (finishing answers in flight), then the node and the network.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop_api.take() {
            let _ = stop.send(());
        }
        let mut tasks = std::mem::take(&mut self.tasks);
        if let Some(api) = tasks.pop() {
            let _ = tokio::time::timeout(Duration::from_secs(5), api).await;
        }
        self.client.shutdown();
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
    }

    /// Waits until the node stops by itself (it does not, unless its tasks fail).
    pub async fn wait(mut self) {
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }
}

/// The Ed25519 public key embedded in an Ed25519 PeerId.
pub fn peer_public_key(peer_id: &PeerId) -> Option<PublicKey> {
    let mh = peer_id.as_ref();
    if mh.code() != 0 {
        return None;
    }
    PublicKey::try_decode_protobuf(mh.digest()).ok()
}

/// Every protocol session this node runs, by kind. New kinds (key refresh, repair,
/// preprocessing) are new variants here.
enum Session {
    /// A distributed key generation this node participates in.
    Dkg(Box<DkgSession>),
    /// A signing request this node coordinates.
    Coordinate(Box<Coordination>),
}

impl Session {
    fn deadline(&self) -> Option<Instant> {
        match self {
            Session::Dkg(s) => s.deadline().map(Instant::from_std),
            Session::Coordinate(c) => c.coordinator.deadline().map(Instant::from_std),
        }
    }

    fn key_id(&self) -> &str {
        match self {
            Session::Dkg(s) => &s.params().key_id,
            Session::Coordinate(c) => &c.key_id,
        }
    }
}

struct Node {
    config: Arc<Config>,
    keypair: Keypair,
    net: Client,
    keystore: KeyStore,
    peer_keys: BTreeMap<NodeId, PublicKey>,
    peer_by_pid: HashMap<PeerId, NodeId>,
    pid_by_id: HashMap<NodeId, PeerId>,
    connected: HashSet<NodeId>,
    subscribed: HashSet<NodeId>,
    sessions: HashMap<SessionId, Session>,
    initiations: HashMap<SessionId, Initiation>,
    forwards: HashMap<SessionId, Forward>,
    signer: Signer,
    culprits: BTreeMap<NodeId, u64>,
    finished: HashMap<SessionId, Instant>,
    inbox: mpsc::Sender<Input>,
    ready_tx: watch::Sender<BTreeSet<NodeId>>,
    metrics: Metrics,
    /// When each DKG session started here, for the duration metric.
    dkg_started: HashMap<SessionId, Instant>,
    #[cfg(feature = "fault-injection")]
    faults: Faults,
}

/// Test-only misbehaviour of this node.
#[cfg(feature = "fault-injection")]
#[derive(Default)]
struct Faults {
    /// Take requests and never answer.
    unresponsive: bool,
    /// The requests taken and not answered.
    held: Vec<ResponseChannel<Vec<u8>>>,
    /// Send every DKG recipient a wrong (well-formed) round-2 share.
    corrupt_round2: bool,
    /// Broadcast a second, different round-1 package in every DKG.
    equivocate_round1: bool,
}

/// Test-only DKG misbehaviour (fault-injection builds only).
#[cfg(feature = "fault-injection")]
#[derive(Clone, Copy, Debug, Default)]
pub struct DkgFaults {
    /// Send every recipient a wrong (well-formed) round-2 share.
    pub corrupt_round2: bool,
    /// Broadcast a second, different round-1 package.
    pub equivocate_round1: bool,
}

impl Node {
    async fn run(
        mut self,
        mut inbox: mpsc::Receiver<Input>,
        mut events: mpsc::Receiver<net::Event>,
    ) {
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                input = inbox.recv() => match input {
                    Some(i) => self.on_input(i),
                    None => break,
                },
                event = events.recv() => match event {
                    Some(e) => self.on_net_event(e),
                    None => break,
                },
                _ = sleep_until(deadline) => self.on_timers(),
            }
        }
        debug!("node loop stopped");
    }

    fn next_deadline(&self) -> Option<Instant> {
        let sessions = self.sessions.values().filter_map(Session::deadline);
        let inits = self.initiations.values().map(|i| i.deadline);
        // Unused nonces are dropped on time even when nothing else is going on.
        let nonces = self.signer.next_expiry().map(Instant::from_std);
        sessions.chain(inits).chain(nonces).min()
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        let expired: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.deadline().is_some_and(|d| d <= now))
            .map(|(id, _)| *id)
            .collect();
        for sid in expired {
            match self.sessions.get_mut(&sid) {
                Some(Session::Dkg(s)) => {
                    let effects = s.on_timeout(now.into_std());
                    self.apply(sid, effects);
                }
                Some(Session::Coordinate(c)) => {
                    let effects = c.coordinator.on_timeout(now.into_std());
                    self.apply_sign(sid, effects);
                }
                None => {}
            }
        }
        self.signer.expire(now.into_std());
        self.expire_initiations(now);
        self.finished
            .retain(|_, at| now.duration_since(*at) < FINISHED_MEMORY);
    }

    fn on_input(&mut self, input: Input) {
        match input {
            Input::Keygen { req, reply } => self.start_keygen(req, reply),
            Input::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Input::ListKeys { reply } => {
                let _ = reply.send(self.keystore.keys().map(|k| k.info()).collect());
            }
            Input::GetKey { key_id, reply } => {
                let _ = reply.send(self.keystore.get(&key_id).map(|k| k.info()));
            }
            Input::Sign {
                key_id,
                message,
                reply,
            } => self.start_sign(key_id, message, reply),
            Input::Reply {
                session,
                from,
                result,
            } => {
                if self.initiations.contains_key(&session) {
                    self.on_start_reply(session, from, result);
                } else if self.forwards.contains_key(&session) {
                    self.on_forward_reply(session, from, result);
                } else {
                    self.on_signer_reply(session, from, result);
                }
            }
            #[cfg(feature = "fault-injection")]
            Input::CorruptShares(on) => self.signer.set_corrupt_shares(on),
            #[cfg(feature = "fault-injection")]
            Input::TakeNonceLog { reply } => {
                let _ = reply.send(self.signer.take_nonce_log());
            }
            #[cfg(feature = "fault-injection")]
            Input::DkgFaults(f) => {
                self.faults.corrupt_round2 = f.corrupt_round2;
                self.faults.equivocate_round1 = f.equivocate_round1;
            }
            #[cfg(feature = "fault-injection")]
            Input::Unresponsive(on) => {
                self.faults.unresponsive = on;
                if !on {
                    self.faults.held.clear();
                }
            }
        }
    }

    fn status(&self) -> StatusInfo {
        let mut connected: Vec<NodeId> = self.connected.iter().copied().collect();
        connected.sort_unstable();
        let mut ready: Vec<NodeId> = self.ready_peers().into_iter().collect();
        ready.sort_unstable();
        StatusInfo {
            id: self.config.id,
            peer_id: self.keypair.public().to_peer_id().to_string(),
            connected_peers: connected,
            ready_peers: ready,
            keys: self.keystore.keys().map(|k| k.key_id.clone()).collect(),
            active_sessions: self.sessions.len(),
            culprits: self.culprits.clone(),
        }
    }

    fn ready_peers(&self) -> BTreeSet<NodeId> {
        self.connected
            .intersection(&self.subscribed)
            .copied()
            .collect()
    }

    fn key_busy(&self, key_id: &str) -> bool {
        self.sessions
            .values()
            .any(|s| matches!(s, Session::Dkg(_)) && s.key_id() == key_id)
    }

    fn broadcast(&self, sid: SessionId, body: Body) {
        let kind = body.kind();
        match wire::encode(&Envelope::new(sid, self.config.id, body)) {
            Ok(bytes) => {
                if self.net.publish(bytes).is_err() {
                    warn!(session = %sid, kind, "network stopped; broadcast dropped");
                }
            }
            Err(e) => warn!(session = %sid, kind, error = %e, "cannot encode broadcast"),
        }
    }

    fn send_oneway(&self, sid: SessionId, to: NodeId, body: Body) {
        let Some(&peer) = self.pid_by_id.get(&to) else {
            warn!(session = %sid, to, "no such peer");
            return;
        };
        let kind = body.kind();
        let bytes = match wire::encode(&Envelope::new(sid, self.config.id, body)) {
            Ok(b) => b,
            Err(e) => {
                warn!(session = %sid, kind, error = %e, "cannot encode message");
                return;
            }
        };
        let net = self.net.clone();
        tokio::spawn(async move {
            if let Err(e) = net.request(peer, bytes).await {
                warn!(session = %sid, to, kind, error = %e, "delivery failed");
            }
        });
    }

    // ----- Network input -----------------------------------------------------------------

    fn on_net_event(&mut self, event: net::Event) {
        match event {
            net::Event::Connected(pid) => {
                if let Some(&id) = self.peer_by_pid.get(&pid) {
                    self.connected.insert(id);
                    self.metrics.set_peers(self.connected.len());
                }
            }
            net::Event::Disconnected(pid) => {
                if let Some(&id) = self.peer_by_pid.get(&pid) {
                    self.connected.remove(&id);
                    self.subscribed.remove(&id);
                    self.metrics.set_peers(self.connected.len());
                    self.on_peer_lost(id);
                }
            }
            net::Event::Subscribed(pid) => {
                if let Some(&id) = self.peer_by_pid.get(&pid) {
                    debug!(peer = id, "peer ready for broadcasts");
                    self.subscribed.insert(id);
                }
            }
            net::Event::Unsubscribed(pid) => {
                if let Some(&id) = self.peer_by_pid.get(&pid) {
                    self.subscribed.remove(&id);
                }
            }
            net::Event::Gossip {
                source,
                propagation_source,
                message_id,
                data,
            } => self.on_gossip(source, propagation_source, message_id, data),
            net::Event::Request {
                peer,
                data,
                channel,
            } => self.on_request(peer, data, channel),
        }
        let ready = self.ready_peers();
        self.ready_tx.send_if_modified(|current| {
            if *current != ready {
                *current = ready;
                true
            } else {
                false
            }
        });
    }

    /// Decodes and authenticates a message: the envelope's `from` must be the id configured
    /// for the PeerId that signed (gossip) or sent (request) it.
    fn authenticate(&self, peer: PeerId, data: &[u8]) -> Result<Envelope, String> {
        let Some(&id) = self.peer_by_pid.get(&peer) else {
            return Err(format!("unlisted peer {peer}"));
        };
        let env = wire::decode(data, self.config.max_message_size).map_err(|e| e.to_string())?;
        if env.from != id {
            return Err(format!(
                "envelope claims to come from node {} but was sent by node {id} ({peer})",
                env.from
            ));
        }
        Ok(env)
    }

    fn on_gossip(&mut self, source: PeerId, via: PeerId, message_id: MessageId, data: Vec<u8>) {
        let verdict = match self.authenticate(source, &data) {
            Err(reason) => {
                warn!(peer = %source, %reason, "broadcast rejected");
                MessageAcceptance::Reject
            }
            Ok(env) if !is_broadcast(&env.body) => {
                warn!(peer = %source, kind = env.body.kind(), "message type not allowed as a broadcast; rejected");
                MessageAcceptance::Reject
            }
            // Valid messages are not relayed: every participant is directly connected to every
            // other (checked before a session starts) and flood publishing reaches each of
            // them directly, so a relay would only cost bandwidth and CPU.
            Ok(env) => match self.route(env) {
                MessageAcceptance::Accept => MessageAcceptance::Ignore,
                verdict => verdict,
            },
        };
        let _ = self.net.validate(message_id, via, verdict);
    }

    fn on_request(&mut self, peer: PeerId, data: Vec<u8>, channel: ResponseChannel<Vec<u8>>) {
        #[cfg(feature = "fault-injection")]
        if self.faults.unresponsive {
            self.faults.held.push(channel);
            return;
        }
        let env = match self.authenticate(peer, &data) {
            Ok(env) => env,
            Err(reason) => {
                warn!(%peer, %reason, "request rejected");
                self.respond(
                    channel,
                    SessionId([0; 32]),
                    Body::Refused {
                        kind: "bad_request".into(),
                        reason,
                    },
                );
                return;
            }
        };
        let sid = env.session;
        let from = env.from;
        let reply = match env.body {
            Body::SignForward {
                key_id,
                group_public_key,
                message,
            } => {
                // Answered when the signature is done.
                let responder = signing::Responder::Peer(channel);
                let expected = Some(group_public_key);
                self.coordinate(sid, key_id, expected, message, responder, Some(from));
                return;
            }
            body @ (Body::CommitRequest { .. } | Body::SignRequest { .. }) => {
                self.serve_signer(sid, from, body)
            }
            Body::DkgStart(start) => {
                let reply = self.on_dkg_start(sid, from, start);
                if let Body::Refused { kind, reason } = &reply {
                    warn!(session = %sid, peer = from, %kind, %reason, "DkgStart refused");
                }
                reply
            }
            Body::DkgResult(outcome) => {
                self.on_report(sid, from, outcome);
                Body::Ack
            }
            Body::DkgRound2 { .. } => match self.route(env) {
                MessageAcceptance::Reject => Body::Refused {
                    kind: "bad_request".into(),
                    reason: "message refused".into(),
                },
                _ => Body::Ack,
            },
            other => {
                warn!(session = %sid, peer = from, kind = other.kind(), "unexpected request");
                Body::Refused {
                    kind: "bad_request".into(),
                    reason: format!("{} is not a request", other.kind()),
                }
            }
        };
        self.respond(channel, sid, reply);
    }

    fn respond(&self, channel: ResponseChannel<Vec<u8>>, sid: SessionId, body: Body) {
        match wire::encode(&Envelope::new(sid, self.config.id, body)) {
            Ok(bytes) => {
                let _ = self.net.respond(channel, bytes);
            }
            Err(e) => warn!(error = %e, "cannot encode response"),
        }
    }

    /// Hands a session message to its state machine.
    fn route(&mut self, env: Envelope) -> MessageAcceptance {
        let sid = env.session;
        let from = env.from;
        let kind = env.body.kind();
        let Some(Session::Dkg(session)) = self.sessions.get_mut(&sid) else {
            if self.finished.contains_key(&sid) {
                debug!(session = %sid, peer = from, kind, "message for a finished session dropped");
            } else {
                warn!(session = %sid, peer = from, kind, "message for an unknown session dropped");
            }
            return MessageAcceptance::Ignore;
        };
        let before = session.phase();
        match session.handle(env) {
            Ok(effects) => {
                let after = session.phase();
                if after != before {
                    debug!(session = %sid, phase = %after, "DKG phase");
                }
                self.apply(sid, effects);
                MessageAcceptance::Accept
            }
            Err(rejection) => {
                warn!(session = %sid, peer = from, kind, reason = %rejection, "message refused");
                MessageAcceptance::Reject
            }
        }
    }
}

/// Bodies that may travel by GossipSub. Everything else (secret shares above all) is unicast.
fn is_broadcast(body: &Body) -> bool {
    matches!(
        body,
        Body::DkgBegin
            | Body::DkgRound1 { .. }
            | Body::DkgEcho { .. }
            | Body::DkgConfirm(_)
            | Body::DkgAbort { .. }
    )
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
