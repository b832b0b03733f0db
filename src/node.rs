//! The node: the one place where the network, the protocol state machines, timers and the key
//! store meet.
//!
//! A single task owns all session state and processes, in order, network events, API requests
//! and the results of requests it sent. It never waits on the network itself: outbound
//! requests run in small spawned tasks whose answers come back through the inbox.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libp2p::gossipsub::{MessageAcceptance, MessageId};
use libp2p::identity::{Keypair, PublicKey};
use libp2p::request_response::ResponseChannel;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::dkg::{DkgError, DkgOutput, DkgParams, DkgSession, Effect};
use crate::keystore::{self, KeyInfo, KeyStore, KeyStoreError, StoredConfirmation, StoredKey};
use crate::net::{self, Client, EventLoop, NetParams};
use crate::wire::{self, Body, DkgOutcome, DkgStart, Envelope, NodeId, SessionId};

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
    StartReply {
        session: SessionId,
        from: NodeId,
        result: Result<Body, String>,
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
}

impl BoundNode {
    /// Loads the key store, opens the libp2p listener and the API socket.
    pub async fn bind(config: Config, keypair: Keypair) -> Result<BoundNode, StartError> {
        let keystore = KeyStore::open(&config.data_dir)?;
        let mut peer_keys = BTreeMap::new();
        for p in &config.peers {
            let key = peer_public_key(&p.peer_id).ok_or(StartError::PeerKey(p.id))?;
            peer_keys.insert(p.id, key);
        }
        let (client, events, mut event_loop) = EventLoop::new(NetParams {
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
            finished: HashMap::new(),
            inbox: tx,
            ready_tx,
        };
        let node_task = tokio::spawn(node.run(rx, self.events));
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let router = crate::api::router(handle.clone());
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

/// Bookkeeping of a DKG this node started.
struct Initiation {
    key_id: String,
    participants: Vec<NodeId>,
    threshold: u16,
    acks: BTreeSet<NodeId>,
    begun: bool,
    reports: BTreeMap<NodeId, DkgOutcome>,
    reply: Option<oneshot::Sender<Result<KeyInfo, NodeError>>>,
    deadline: Instant,
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
    sessions: HashMap<SessionId, DkgSession>,
    initiations: HashMap<SessionId, Initiation>,
    finished: HashMap<SessionId, Instant>,
    inbox: mpsc::Sender<Input>,
    ready_tx: watch::Sender<BTreeSet<NodeId>>,
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
        let sessions = self
            .sessions
            .values()
            .filter_map(|s| s.deadline().map(Instant::from_std));
        let inits = self.initiations.values().map(|i| i.deadline);
        sessions.chain(inits).min()
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        let expired: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.deadline().is_some_and(|d| Instant::from_std(d) <= now))
            .map(|(id, _)| *id)
            .collect();
        for sid in expired {
            if let Some(s) = self.sessions.get_mut(&sid) {
                let effects = s.on_timeout(now.into_std());
                self.apply(sid, effects);
            }
        }
        let overdue: Vec<SessionId> = self
            .initiations
            .iter()
            .filter(|(_, i)| i.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for sid in overdue {
            if let Some(init) = self.initiations.remove(&sid) {
                let missing: Vec<NodeId> = init
                    .participants
                    .iter()
                    .copied()
                    .filter(|id| !init.reports.contains_key(id))
                    .collect();
                let err = NodeError::Timeout {
                    message: format!(
                        "DKG for key {:?} timed out waiting for results from nodes {missing:?}",
                        init.key_id
                    ),
                    missing,
                };
                warn!(session = %sid, key_id = %init.key_id, error = %err, "DKG timed out");
                if let Some(reply) = init.reply {
                    let _ = reply.send(Err(err));
                }
            }
        }
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
            Input::StartReply {
                session,
                from,
                result,
            } => self.on_start_reply(session, from, result),
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
        }
    }

    fn ready_peers(&self) -> BTreeSet<NodeId> {
        self.connected
            .intersection(&self.subscribed)
            .copied()
            .collect()
    }

    fn key_busy(&self, key_id: &str) -> bool {
        self.sessions.values().any(|s| s.params().key_id == key_id)
    }

    // ----- DKG: initiator side -------------------------------------------------------------

    fn start_keygen(
        &mut self,
        req: KeygenRequest,
        reply: oneshot::Sender<Result<KeyInfo, NodeError>>,
    ) {
        let params = match self.check_keygen(req) {
            Ok(p) => p,
            Err(e) => {
                info!(error = %e, "key generation refused");
                let _ = reply.send(Err(e));
                return;
            }
        };
        let sid = params.session;
        let deadline = Instant::now() + self.config.dkg_timeout;
        let session = match DkgSession::new(
            params.clone(),
            self.config.id,
            self.keypair.clone(),
            self.peer_keys.clone(),
            deadline.into_std(),
        ) {
            Ok(s) => s,
            Err(e) => {
                let _ = reply.send(Err(NodeError::BadRequest(e.to_string())));
                return;
            }
        };
        info!(
            session = %sid,
            key_id = %params.key_id,
            participants = ?params.participants,
            threshold = params.threshold,
            "starting DKG"
        );
        self.sessions.insert(sid, session);
        self.initiations.insert(
            sid,
            Initiation {
                key_id: params.key_id.clone(),
                participants: params.participants.clone(),
                threshold: params.threshold,
                acks: BTreeSet::from([self.config.id]),
                begun: false,
                reports: BTreeMap::new(),
                reply: Some(reply),
                deadline: deadline + self.config.request_timeout,
            },
        );
        let start = Body::DkgStart(DkgStart {
            key_id: params.key_id.clone(),
            participants: params.participants.clone(),
            threshold: params.threshold,
        });
        for &to in params
            .participants
            .iter()
            .filter(|&&id| id != self.config.id)
        {
            self.request_with_reply(sid, to, start.clone());
        }
    }

    fn check_keygen(&self, req: KeygenRequest) -> Result<DkgParams, NodeError> {
        keystore::validate_key_id(&req.key_id).map_err(|e| NodeError::BadRequest(e.to_string()))?;
        if self.keystore.contains(&req.key_id) {
            return Err(NodeError::Conflict(format!(
                "key {:?} already exists",
                req.key_id
            )));
        }
        if self.key_busy(&req.key_id) {
            return Err(NodeError::Conflict(format!(
                "a DKG for key {:?} is already running",
                req.key_id
            )));
        }
        let all = self.config.all_ids();
        let mut participants = req.participants.unwrap_or_else(|| all.clone());
        participants.sort_unstable();
        let before = participants.len();
        participants.dedup();
        if participants.len() != before {
            return Err(NodeError::BadRequest(
                "participants contain duplicates".into(),
            ));
        }
        let unknown: Vec<NodeId> = participants
            .iter()
            .copied()
            .filter(|id| !all.contains(id))
            .collect();
        if !unknown.is_empty() {
            return Err(NodeError::BadRequest(format!(
                "unknown participants {unknown:?}: configured nodes are {all:?}"
            )));
        }
        if !participants.contains(&self.config.id) {
            return Err(NodeError::BadRequest(format!(
                "this node ({}) must be among the participants; send the request to one of {participants:?}",
                self.config.id
            )));
        }
        let n = participants.len();
        if n < 2 {
            return Err(NodeError::BadRequest(
                "a key needs at least 2 participants".into(),
            ));
        }
        let threshold = req.threshold.unwrap_or_else(|| default_threshold(n));
        if threshold < 2 || usize::from(threshold) > n {
            return Err(NodeError::BadRequest(format!(
                "threshold must satisfy 2 <= threshold <= participants ({n}), got {threshold}"
            )));
        }
        let ready = self.ready_peers();
        let missing: Vec<NodeId> = participants
            .iter()
            .copied()
            .filter(|&id| id != self.config.id && !ready.contains(&id))
            .collect();
        if !missing.is_empty() {
            return Err(NodeError::Unavailable {
                message: format!(
                    "participants {missing:?} are not reachable from node {}",
                    self.config.id
                ),
                missing,
            });
        }
        let mut h = Sha256::new();
        h.update(b"frostnode/dkg-session/v1");
        h.update(req.key_id.as_bytes());
        for id in &participants {
            h.update(id.to_be_bytes());
        }
        h.update(threshold.to_be_bytes());
        h.update(self.config.id.to_be_bytes());
        h.update(rand::random::<[u8; 32]>());
        Ok(DkgParams {
            session: SessionId(h.finalize().into()),
            key_id: req.key_id,
            participants,
            threshold,
            initiator: self.config.id,
        })
    }

    fn request_with_reply(&self, session: SessionId, to: NodeId, body: Body) {
        let Some(&peer) = self.pid_by_id.get(&to) else {
            return;
        };
        let bytes = match wire::encode(&Envelope::new(session, self.config.id, body)) {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "cannot encode request");
                return;
            }
        };
        let net = self.net.clone();
        let inbox = self.inbox.clone();
        let max = self.config.max_message_size;
        tokio::spawn(async move {
            let result = match net.request(peer, bytes).await {
                Ok(resp) => wire::decode(&resp, max)
                    .map(|env| env.body)
                    .map_err(|e| format!("bad response: {e}")),
                Err(e) => Err(e.to_string()),
            };
            let _ = inbox
                .send(Input::StartReply {
                    session,
                    from: to,
                    result,
                })
                .await;
        });
    }

    fn on_start_reply(&mut self, sid: SessionId, from: NodeId, result: Result<Body, String>) {
        let Some(init) = self.initiations.get_mut(&sid) else {
            return;
        };
        if init.begun {
            return;
        }
        let refusal = match result {
            Ok(Body::Ack) => {
                init.acks.insert(from);
                if init.acks.len() == init.participants.len() {
                    init.begun = true;
                    debug!(session = %sid, "every participant accepted; beginning round 1");
                    self.broadcast(sid, Body::DkgBegin);
                    if let Some(s) = self.sessions.get_mut(&sid) {
                        let effects = s.begin();
                        self.apply(sid, effects);
                    }
                }
                return;
            }
            Ok(Body::Refused { kind, reason }) => match kind.as_str() {
                "conflict" => NodeError::Conflict(format!("node {from} refused: {reason}")),
                "unavailable" => NodeError::Unavailable {
                    message: format!("node {from} refused: {reason}"),
                    missing: vec![from],
                },
                _ => NodeError::BadRequest(format!("node {from} refused: {reason}")),
            },
            Ok(other) => NodeError::Internal(format!(
                "node {from} answered DkgStart with {}",
                other.kind()
            )),
            Err(reason) => NodeError::Unavailable {
                message: format!("node {from} did not accept the DKG: {reason}"),
                missing: vec![from],
            },
        };
        warn!(session = %sid, error = %refusal, "DKG not started");
        if let Some(mut init) = self.initiations.remove(&sid) {
            if let Some(reply) = init.reply.take() {
                let _ = reply.send(Err(refusal.clone()));
            }
        }
        if let Some(s) = self.sessions.get_mut(&sid) {
            let effects = s.abort(DkgError::InvalidParams(refusal.to_string()));
            self.apply(sid, effects);
        }
    }

    fn on_report(&mut self, sid: SessionId, from: NodeId, outcome: DkgOutcome) {
        let Some(init) = self.initiations.get_mut(&sid) else {
            debug!(session = %sid, from, "result for a session this node no longer tracks");
            return;
        };
        if !init.participants.contains(&from) {
            return;
        }
        if let DkgOutcome::Failed { reason, .. } = &outcome {
            warn!(session = %sid, node = from, %reason, "participant reports DKG failure");
        }
        init.reports.insert(from, outcome);
        let failed = |o: &DkgOutcome| matches!(o, DkgOutcome::Failed { .. });
        // Answer once everyone reported, or as soon as a failure is known and our own
        // session has ended too (it will have seen the abort).
        let all_in = init.reports.len() == init.participants.len();
        let own_in = init.reports.contains_key(&self.config.id);
        if !(all_in || (own_in && init.reports.values().any(failed))) {
            return;
        }
        let Some(mut init) = self.initiations.remove(&sid) else {
            return;
        };
        let result = self.conclude(&init);
        if let Some(reply) = init.reply.take() {
            let _ = reply.send(result);
        }
    }

    fn conclude(&self, init: &Initiation) -> Result<KeyInfo, NodeError> {
        // Our own failure explains the most; otherwise the first participant's failure.
        let mut failures: Vec<(&NodeId, &DkgOutcome)> = init
            .reports
            .iter()
            .filter(|(_, o)| matches!(o, DkgOutcome::Failed { .. }))
            .collect();
        failures.sort_by_key(|(id, _)| **id != self.config.id);
        if let Some((
            id,
            DkgOutcome::Failed {
                reason,
                culprits,
                missing,
            },
        )) = failures.first()
        {
            let message = if **id == self.config.id {
                format!("DKG for key {:?} failed: {reason}", init.key_id)
            } else {
                format!(
                    "DKG for key {:?} failed on node {id}: {reason}",
                    init.key_id
                )
            };
            if !missing.is_empty() && culprits.is_empty() {
                return Err(NodeError::Timeout {
                    message,
                    missing: missing.clone(),
                });
            }
            return Err(NodeError::Aborted {
                message,
                kind: "dkg_failed".into(),
                culprits: culprits.clone(),
            });
        }
        let keys: BTreeSet<[u8; 32]> = init
            .reports
            .values()
            .filter_map(|o| match o {
                DkgOutcome::Stored { group_public_key } => Some(*group_public_key),
                _ => None,
            })
            .collect();
        if keys.len() != 1 {
            return Err(NodeError::Aborted {
                message: format!(
                    "participants stored different group keys for {:?}",
                    init.key_id
                ),
                kind: "inconsistent".into(),
                culprits: Vec::new(),
            });
        }
        match self.keystore.get(&init.key_id) {
            Some(k) => {
                debug_assert_eq!(k.threshold, init.threshold);
                Ok(k.info())
            }
            None => Err(NodeError::Internal("key missing after DKG".into())),
        }
    }

    // ----- DKG: participant side ----------------------------------------------------------

    fn on_dkg_start(&mut self, sid: SessionId, from: NodeId, start: DkgStart) -> Body {
        let refuse = |kind: &str, reason: String| Body::Refused {
            kind: kind.into(),
            reason,
        };
        if let Err(e) = keystore::validate_key_id(&start.key_id) {
            return refuse("bad_request", e.to_string());
        }
        if self.sessions.contains_key(&sid) || self.finished.contains_key(&sid) {
            return refuse("conflict", format!("session {sid} is already known"));
        }
        if self.keystore.contains(&start.key_id) {
            return refuse(
                "conflict",
                format!(
                    "key {:?} already exists on node {}",
                    start.key_id, self.config.id
                ),
            );
        }
        if self.key_busy(&start.key_id) {
            return refuse(
                "conflict",
                format!(
                    "a DKG for key {:?} is already running on node {}",
                    start.key_id, self.config.id
                ),
            );
        }
        let all = self.config.all_ids();
        if let Some(unknown) = start.participants.iter().find(|id| !all.contains(id)) {
            return refuse(
                "bad_request",
                format!(
                    "participant {unknown} is not configured on node {}",
                    self.config.id
                ),
            );
        }
        if !start.participants.contains(&from) {
            return refuse("bad_request", "the initiator must be a participant".into());
        }
        let ready = self.ready_peers();
        let missing: Vec<NodeId> = start
            .participants
            .iter()
            .copied()
            .filter(|&id| id != self.config.id && !ready.contains(&id))
            .collect();
        if !missing.is_empty() {
            return refuse(
                "unavailable",
                format!(
                    "node {} cannot reach participants {missing:?}",
                    self.config.id
                ),
            );
        }
        let params = DkgParams {
            session: sid,
            key_id: start.key_id,
            participants: start.participants,
            threshold: start.threshold,
            initiator: from,
        };
        let deadline = Instant::now() + self.config.dkg_timeout;
        match DkgSession::new(
            params.clone(),
            self.config.id,
            self.keypair.clone(),
            self.peer_keys.clone(),
            deadline.into_std(),
        ) {
            Ok(s) => {
                info!(session = %sid, key_id = %params.key_id, initiator = from, "joining DKG");
                self.sessions.insert(sid, s);
                Body::Ack
            }
            Err(e) => refuse("bad_request", e.to_string()),
        }
    }

    fn apply(&mut self, sid: SessionId, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Broadcast(body) => self.broadcast(sid, body),
                Effect::Send { to, body } => self.send_oneway(sid, to, body),
                Effect::Completed(out) => {
                    let outcome = self.store(sid, *out);
                    self.end_session(sid, outcome);
                }
                Effect::Failed(err) => {
                    warn!(
                        session = %sid,
                        kind = err.kind(),
                        culprits = ?err.culprits(),
                        missing = ?err.missing(),
                        error = %err,
                        "DKG failed"
                    );
                    let outcome = DkgOutcome::Failed {
                        reason: err.to_string(),
                        culprits: err.culprits(),
                        missing: err.missing(),
                    };
                    self.end_session(sid, outcome);
                }
            }
        }
    }

    fn store(&mut self, sid: SessionId, out: DkgOutput) -> DkgOutcome {
        let Some(session) = self.sessions.get(&sid) else {
            return DkgOutcome::Failed {
                reason: "session vanished".into(),
                culprits: vec![],
                missing: vec![],
            };
        };
        let params = session.params().clone();
        let key = StoredKey {
            format_version: keystore::KEY_FORMAT_VERSION,
            key_id: params.key_id.clone(),
            session: sid.to_hex(),
            created_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            threshold: params.threshold,
            participants: params.participants.clone(),
            group_public_key: hex::encode(out.group_public_key),
            key_package: out.key_package,
            public_key_package: out.public_key_package,
            confirmations: out
                .confirmations
                .iter()
                .map(|(&node_id, c)| StoredConfirmation {
                    node_id,
                    transcript: hex::encode(c.transcript),
                    public_key_package_hash: hex::encode(c.public_key_package_hash),
                    signature: hex::encode(&c.signature),
                })
                .collect(),
        };
        match self.keystore.insert(key) {
            Ok(()) => {
                info!(
                    session = %sid,
                    key_id = %params.key_id,
                    group_public_key = %hex::encode(out.group_public_key),
                    "DKG complete; key stored"
                );
                DkgOutcome::Stored {
                    group_public_key: out.group_public_key,
                }
            }
            Err(e) => {
                warn!(session = %sid, key_id = %params.key_id, error = %e, "cannot store the new key");
                DkgOutcome::Failed {
                    reason: format!("node {} could not store the key: {e}", self.config.id),
                    culprits: vec![],
                    missing: vec![],
                }
            }
        }
    }

    fn end_session(&mut self, sid: SessionId, outcome: DkgOutcome) {
        let Some(session) = self.sessions.remove(&sid) else {
            return;
        };
        let now = Instant::now();
        self.finished
            .retain(|_, at| now.duration_since(*at) < FINISHED_MEMORY);
        self.finished.insert(sid, now);
        let initiator = session.params().initiator;
        if initiator == self.config.id {
            self.on_report(sid, self.config.id, outcome);
        } else {
            self.send_oneway(sid, initiator, Body::DkgResult(outcome));
        }
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
                }
            }
            net::Event::Disconnected(pid) => {
                if let Some(&id) = self.peer_by_pid.get(&pid) {
                    self.connected.remove(&id);
                    self.subscribed.remove(&id);
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
            Body::DkgStart(start) => self.on_dkg_start(sid, from, start),
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
        let Some(session) = self.sessions.get_mut(&sid) else {
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

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
