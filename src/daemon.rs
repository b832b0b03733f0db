//! The composition root: builds a node from its configuration and identity. It opens the key
//! store, registers the metrics, builds the swarm, spawns the network event loop, the node task
//! and the HTTP server, and owns shutdown. Nothing else in the crate knows how these pieces fit
//! together; `main.rs` and the in-process clusters of `localnet` go through here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::Config;
use crate::identity::{peer_public_key, NodeKeys};
use crate::keystore::{KeyStore, KeyStoreError};
use crate::metrics::{Metrics, SharedRegistry};
use crate::net::{self, Client, EventLoop, NetParams};
use crate::node::{self, NodeHandle, NodeParts};
use crate::wire::NodeId;

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
    /// The client key of a local cluster cannot be read or written.
    #[error("client key: {0}")]
    ClientKey(String),
    /// A configured peer id that does not carry an Ed25519 public key.
    #[error("peer {0}'s PeerId does not embed an Ed25519 public key")]
    PeerKey(NodeId),
}

/// A node whose sockets are open but whose tasks are not running yet.
pub struct BoundNode {
    config: Arc<Config>,
    keypair: Keypair,
    keys: NodeKeys,
    keystore: KeyStore,
    client: Client,
    events: mpsc::Receiver<net::Event>,
    event_loop: EventLoop,
    p2p_addr: Multiaddr,
    api_listener: tokio::net::TcpListener,
    api_addr: SocketAddr,
    metrics: Metrics,
    registry: SharedRegistry,
    api_allowed_hosts: Vec<String>,
    api_max_in_flight: usize,
    api_read_token: Option<String>,
    api_request_timeout: std::time::Duration,
}

impl BoundNode {
    /// Loads the key store, opens the libp2p listener and the API socket.
    pub async fn bind(config: Config, keypair: Keypair) -> Result<BoundNode, StartError> {
        let passphrase = config.read_passphrase()?;
        let mut peer_keys = BTreeMap::new();
        for p in &config.peers {
            let key = peer_public_key(&p.peer_id).ok_or(StartError::PeerKey(p.id))?;
            peer_keys.insert(p.id, key);
        }
        // Every stored key's certificate is checked against the identities in the config.
        let mut all_keys = peer_keys.clone();
        all_keys.insert(config.id, keypair.public());
        let certificates = NodeKeys::new(keypair.clone(), all_keys);
        let checks = crate::keystore::OpenChecks {
            seal_plaintext: config.seal_plaintext_keys,
            certificates: Some(&certificates),
            node_id: Some(config.id),
        };
        let keystore = KeyStore::open_checked(
            &config.data_dir,
            passphrase.as_ref().map(|p| p.as_slice()),
            checks,
        )?;
        drop(passphrase);
        if keystore.is_encrypted() {
            info!(dir = %keystore.dir().display(), "key store encrypted at rest (Argon2id + XChaCha20-Poly1305)");
        } else {
            warn!(
                dir = %keystore.dir().display(),
                "KEY SHARES ARE STORED UNENCRYPTED: set [keystore] passphrase_env or passphrase_file"
            );
        }
        if let Some(p) = &config.policy {
            info!(
                command = %p.program.display(),
                timeout_ms = p.timeout.as_millis() as u64,
                "every signing request needs the approval of the policy command"
            );
        }
        if config.clients.is_empty() {
            warn!(
                "NO [[clients]] CONFIGURED: this node refuses every signing and key generation request; list the clients it serves (see `frostnode client-key`)"
            );
        } else {
            info!(
                clients = config.clients.len(),
                "signing and key generation require a client token accepted by this node's [[clients]]"
            );
        }
        let keys = NodeKeys::new(keypair.clone(), peer_keys);
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
            event_queue: crate::net::DEFAULT_EVENT_QUEUE,
            gossip: config.gossip,
        })?;
        let mut event_loop = event_loop
            .with_metrics(p2p_metrics)
            .with_drop_counter(metrics.dropped_events())
            .with_gossip_drop_counter(metrics.gossip_dropped());
        let p2p_addr = event_loop.wait_listening(Duration::from_secs(10)).await?;
        let api_error = |source| StartError::Api {
            addr: config.api_listen,
            source,
        };
        let api_listener = tokio::net::TcpListener::bind(config.api_listen)
            .await
            .map_err(api_error)?;
        let api_addr = api_listener.local_addr().map_err(api_error)?;
        Ok(BoundNode {
            api_allowed_hosts: config.api_allowed_hosts.clone(),
            api_max_in_flight: config.api_max_in_flight,
            api_read_token: config.api_read_token.clone(),
            // Longer than anything the node bounds itself: a DKG, or a forwarded signature.
            api_request_timeout: config.dkg_timeout.max(2 * config.request_timeout)
                + std::time::Duration::from_secs(10),
            config: Arc::new(config),
            keypair,
            keys,
            keystore,
            client,
            events,
            event_loop,
            p2p_addr,
            api_listener,
            api_addr,
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
        if let Some(p) = Arc::make_mut(&mut self.config)
            .peers
            .iter_mut()
            .find(|p| p.peer_id == peer)
        {
            p.addr = addr.clone();
        }
        self.event_loop.set_peer_address(peer, addr);
    }

    /// Spawns the network, node and API tasks.
    pub fn start(self) -> RunningNode {
        let net_task = tokio::spawn(self.event_loop.run());
        info!(
            id = self.config.id,
            peer_id = %self.keypair.public().to_peer_id(),
            p2p = %self.p2p_addr,
            api = %self.api_addr,
            keys = self.keystore.keys().count(),
            "node started"
        );
        #[cfg(feature = "fault-injection")]
        let faults = node::faults::Faults::new(self.config.id);
        let parts = NodeParts {
            config: self.config,
            keypair: self.keypair,
            listening: self.p2p_addr.clone(),
            confirmation_keys: Arc::new(self.keys),
            keystore: self.keystore,
            net: self.client.clone(),
            events: self.events,
            metrics: self.metrics,
            rng: Box::new(rand::rngs::OsRng),
            #[cfg(feature = "fault-injection")]
            interceptor: Some(faults.interceptor()),
            #[cfg(not(feature = "fault-injection"))]
            interceptor: None,
            #[cfg(feature = "fault-injection")]
            nonce_observer: Some(faults.nonce_observer()),
            #[cfg(not(feature = "fault-injection"))]
            nonce_observer: None,
            #[cfg(feature = "fault-injection")]
            pool_observer: Some(faults.nonce_observer()),
            #[cfg(not(feature = "fault-injection"))]
            pool_observer: None,
            #[cfg(feature = "fault-injection")]
            faults,
        };
        let (handle, node_task) = node::spawn(parts);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let mut limits = crate::api::ApiLimits::for_address(
            self.api_addr,
            &self.api_allowed_hosts,
            self.api_max_in_flight,
        );
        limits.read_token = self.api_read_token;
        limits.request_timeout = self.api_request_timeout;
        let router = crate::api::router(handle.clone(), self.registry, limits);
        let api_listener = self.api_listener;
        let api_task = tokio::spawn(async move {
            crate::httpserver::serve(api_listener, router, async move {
                let _ = stop_rx.await;
            })
            .await;
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
