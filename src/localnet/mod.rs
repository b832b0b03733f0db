//! Local clusters: config files for N nodes (`cluster-config`), and N in-process nodes on
//! loopback (`LocalCluster`) for the quick start, benchmarks and integration tests.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};

use crate::client::ClientKey;
use crate::config::{Config, RawConfig, RawPeer, RawTimeouts};
use crate::daemon::{BoundNode, RunningNode, StartError};
use crate::identity;
use crate::keystore::KeyInfo;
use crate::node::{KeygenRequest, NodeError, NodeHandle, SignResponse};
use crate::wire::NodeId;

mod demo;

pub use demo::{demo, LocalnetOptions, DEMO_MESSAGE};

/// How `cluster-config` lays out the nodes.
#[derive(Clone, Debug)]
pub struct ClusterLayout {
    /// Number of nodes.
    pub nodes: u16,
    /// Host (IP) the nodes listen on and dial, for a local cluster.
    pub host: String,
    /// Node k listens on `base_port + k` and serves its API on `base_port + 1000 + k`.
    pub base_port: u16,
    /// Compose layout: service `nodeK`, libp2p port 7000, API `0.0.0.0:8080`, data in `/data`.
    pub docker: bool,
}

/// Writes `out/nodeK/identity.key` and `out/nodeK.toml` for every node, and one client key,
/// `out/client.key`, that every node serves as client `admin` (allowed everything); returns
/// the PeerIds. Existing identities and client key are kept, so re-running keeps them stable.
pub fn write_cluster_config(layout: &ClusterLayout, out: &Path) -> Result<Vec<PeerId>, String> {
    if layout.nodes < 2 {
        return Err("a cluster needs at least 2 nodes".into());
    }
    if !layout.docker && u32::from(layout.base_port) + 1000 + u32::from(layout.nodes) > 65535 {
        return Err("--base-port is too high for that many nodes".into());
    }
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut peer_ids = Vec::new();
    for k in 1..=layout.nodes {
        let dir = out.join(format!("node{k}"));
        let (key, _) = identity::load_or_create(&dir).map_err(|e| e.to_string())?;
        peer_ids.push(key.public().to_peer_id());
        if layout.docker {
            // Bind-mounted into a container that runs as another user: readable by the group
            // the compose file adds to the container (FROSTNODE_GID), never by everyone. The
            // node accepts that only from a file owned by root.
            make_group_readable(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
    }
    let admin = ClientKey::load_or_create(ADMIN_CLIENT, &out.join(CLIENT_KEY_FILE))?;
    for k in 1..=layout.nodes {
        let mut raw = raw_config(layout, k, &peer_ids);
        raw.clients.push(crate::config::RawClient {
            name: admin.name.clone(),
            public_key: admin.public_key_hex(),
            allow: vec!["*".into()],
            max_per_minute: None,
        });
        let text = toml::to_string_pretty(&raw).map_err(|e| e.to_string())?;
        let mut file = String::new();
        let _ = writeln!(
            file,
            "# frostnode config for node {k}, written by `frostnode cluster-config`."
        );
        if layout.docker {
            let _ = writeln!(
                file,
                "# For docker-compose: node{k}/identity.key is mounted at /etc/frostnode/identity.key\n\
                 # (mode 0640, owned by root: run compose with FROSTNODE_GID set to its group)."
            );
        }
        file.push_str(&text);
        let path = out.join(format!("node{k}.toml"));
        std::fs::write(&path, file).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(peer_ids)
}

#[cfg(unix)]
fn make_group_readable(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))?;
    std::fs::set_permissions(
        identity::identity_path(dir),
        std::fs::Permissions::from_mode(0o640),
    )
}

#[cfg(not(unix))]
fn make_group_readable(_: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Whether `path` is owned by root (a group-readable identity is accepted only then).
pub fn owned_by_root(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).is_ok_and(|m| m.uid() == 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        true
    }
}

fn raw_config(layout: &ClusterLayout, k: u16, peer_ids: &[PeerId]) -> RawConfig {
    let (listen, api_listen, data_dir) = if layout.docker {
        (
            "/ip4/0.0.0.0/tcp/7000".to_string(),
            "0.0.0.0:8080".to_string(),
            PathBuf::from("/data"),
        )
    } else {
        (
            format!("/ip4/{}/tcp/{}", layout.host, layout.base_port + k),
            format!("127.0.0.1:{}", layout.base_port + 1000 + k),
            PathBuf::from(format!("node{k}")),
        )
    };
    let peers = (1..=layout.nodes)
        .filter(|&j| j != k)
        .map(|j| RawPeer {
            id: u32::from(j),
            peer_id: peer_ids[usize::from(j - 1)].to_string(),
            addr: if layout.docker {
                format!("/dns4/node{j}/tcp/7000")
            } else {
                format!("/ip4/{}/tcp/{}", layout.host, layout.base_port + j)
            },
        })
        .collect();
    RawConfig {
        id: u32::from(k),
        listen,
        api_listen,
        data_dir,
        identity_file: layout
            .docker
            .then(|| PathBuf::from("/etc/frostnode/identity.key")),
        max_message_size: crate::config::DEFAULT_MAX_MESSAGE_SIZE,
        timeouts: RawTimeouts::default(),
        // The compose file sets this variable (a throwaway passphrase for local testing).
        keystore: crate::config::RawKeystore {
            passphrase_env: layout.docker.then(|| "FROSTNODE_PASSPHRASE".to_string()),
            passphrase_file: None,
        },
        peers,
        clients: Vec::new(),
        api: Default::default(),
        policy: None,
        limits: Default::default(),
        gossip: Default::default(),
    }
}

/// The configuration of node `id` of an in-process cluster: loopback, OS-assigned ports,
/// default timeouts and limits, no passphrase.
pub fn loopback_config(id: NodeId, data_dir: PathBuf, peers: Vec<crate::config::Peer>) -> Config {
    Config {
        id,
        listen: "/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr"),
        api_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir,
        identity_file: None,
        max_message_size: crate::config::DEFAULT_MAX_MESSAGE_SIZE,
        dkg_timeout: Duration::from_millis(crate::config::DEFAULT_DKG_TIMEOUT_MS),
        request_timeout: Duration::from_millis(crate::config::DEFAULT_REQUEST_TIMEOUT_MS),
        sign_timeout: Duration::from_millis(crate::config::DEFAULT_SIGN_TIMEOUT_MS),
        passphrase: crate::config::PassphraseSource::None,
        peers,
        clients: Vec::new(),
        api_allowed_hosts: Vec::new(),
        api_max_in_flight: crate::config::DEFAULT_MAX_IN_FLIGHT,
        api_read_token: None,
        policy: None,
        peer_requests_per_second: crate::config::DEFAULT_PEER_REQUESTS_PER_SECOND,
        presign_per_coordinator: usize::from(crate::config::DEFAULT_PRESIGN_PER_COORDINATOR),
        gossip: Default::default(),
        seal_plaintext_keys: false,
        source: None,
    }
}

/// File, in a cluster's directory, of the client key every node of the cluster serves.
pub const CLIENT_KEY_FILE: &str = "client.key";

/// Name of the client every node of a local cluster serves, allowed everything.
pub const ADMIN_CLIENT: &str = "admin";

/// N nodes in this process, on 127.0.0.1 with OS-assigned ports, serving one client,
/// [`ADMIN_CLIENT`], whose key is `base_dir/client.key`.
pub struct LocalCluster {
    nodes: Vec<Option<RunningNode>>,
    /// Each node's config and identity, to start it again.
    configs: Vec<(Config, libp2p::identity::Keypair)>,
    base_dir: PathBuf,
    admin: ClientKey,
}

impl LocalCluster {
    /// Creates identities under `base_dir/nodeK`, binds every node, tells each the others'
    /// addresses and starts them. Call [`LocalCluster::wait_connected`] before using them.
    pub async fn start(n: u16, base_dir: &Path) -> Result<LocalCluster, StartError> {
        Self::start_with(n, base_dir, |_| {}).await
    }

    /// Like [`LocalCluster::start`], with a hook to adjust each node's config (which lists the
    /// admin client when the hook is called).
    pub async fn start_with(
        n: u16,
        base_dir: &Path,
        adjust: impl Fn(&mut Config),
    ) -> Result<LocalCluster, StartError> {
        Self::start_routed(n, base_dir, adjust, |_, addr| addr).await
    }

    /// Like [`LocalCluster::start_with`], telling the nodes each other's addresses through
    /// `route` (node id, its listen address → the address its peers dial), for example a
    /// delaying relay in front of each node.
    pub async fn start_routed(
        n: u16,
        base_dir: &Path,
        adjust: impl Fn(&mut Config),
        route: impl Fn(NodeId, Multiaddr) -> Multiaddr,
    ) -> Result<LocalCluster, StartError> {
        std::fs::create_dir_all(base_dir)
            .map_err(|e| StartError::ClientKey(format!("{}: {e}", base_dir.display())))?;
        let admin = ClientKey::load_or_create(ADMIN_CLIENT, &base_dir.join(CLIENT_KEY_FILE))
            .map_err(StartError::ClientKey)?;
        let mut keys = Vec::new();
        for k in 1..=n {
            let (key, _) = identity::load_or_create(&base_dir.join(format!("node{k}")))?;
            keys.push(key);
        }
        let placeholder: Multiaddr = "/ip4/127.0.0.1/tcp/9".parse().expect("valid multiaddr");
        let mut bound = Vec::new();
        let mut configs = Vec::new();
        for k in 1..=n {
            let peers = (1..=n)
                .filter(|&j| j != k)
                .map(|j| crate::config::Peer {
                    id: j,
                    peer_id: keys[usize::from(j - 1)].public().to_peer_id(),
                    addr: placeholder.clone(),
                })
                .collect();
            let mut config = loopback_config(k, base_dir.join(format!("node{k}")), peers);
            config.clients.push(admin.listed(&["*"]));
            adjust(&mut config);
            let keypair = keys[usize::from(k - 1)].clone();
            configs.push((config.clone(), keypair.clone()));
            bound.push(BoundNode::bind(config, keypair).await?);
        }
        let addrs: Vec<(PeerId, Multiaddr)> = bound
            .iter()
            .zip(1..=n)
            .map(|(b, k)| (b.peer_id(), route(k, b.p2p_addr().clone())))
            .collect();
        for (b, (config, _)) in bound.iter_mut().zip(configs.iter_mut()) {
            config.listen = b.p2p_addr().clone();
            for (pid, addr) in &addrs {
                // Only the peers this node's config lists (a test may leave some out).
                if config.peers.iter().any(|p| p.peer_id == *pid) {
                    b.set_peer_address(*pid, addr.clone());
                }
            }
            for peer in &mut config.peers {
                if let Some((_, addr)) = addrs.iter().find(|(pid, _)| *pid == peer.peer_id) {
                    peer.addr = addr.clone();
                }
            }
        }
        let nodes = bound.into_iter().map(|b| Some(b.start())).collect();
        Ok(LocalCluster {
            nodes,
            configs,
            base_dir: base_dir.to_path_buf(),
            admin,
        })
    }

    /// Node `id`'s config as it runs (its peers at their real addresses).
    pub fn config(&self, id: NodeId) -> &Config {
        &self.configs[usize::from(id - 1)].0
    }

    /// Starts node `id` again (after [`LocalCluster::stop`]) with its config, identity and
    /// data directory, on the address it had: the others reconnect as to any restarted peer.
    pub async fn restart(&mut self, id: NodeId) -> Result<(), StartError> {
        let index = usize::from(id - 1);
        self.stop(id).await;
        let (config, keypair) = self.configs[index].clone();
        let node = BoundNode::bind(config, keypair).await?.start();
        self.nodes[index] = Some(node);
        Ok(())
    }

    /// The client every node serves.
    pub fn admin(&self) -> &ClientKey {
        &self.admin
    }

    /// Signs `message` with `key_id` through node `via`, with a fresh admin token.
    pub async fn sign(
        &self,
        via: NodeId,
        key_id: &str,
        message: &[u8],
    ) -> Result<SignResponse, NodeError> {
        let token = self.admin.sign_token(key_id, message);
        self.handle(via)
            .sign(key_id, message.to_vec(), Some(token))
            .await
    }

    /// Runs a DKG through node `via`, with a fresh admin token.
    pub async fn keygen(
        &self,
        via: NodeId,
        key_id: &str,
        threshold: Option<u16>,
        participants: Option<Vec<NodeId>>,
    ) -> Result<KeyInfo, NodeError> {
        let token = self
            .admin
            .keygen_token(key_id, threshold, participants.clone());
        self.handle(via)
            .keygen(KeygenRequest {
                key_id: key_id.into(),
                threshold,
                participants,
                token: Some(token),
            })
            .await
    }

    /// Refreshes `key_id` through node `via` (for `participants`, or every current one), with a
    /// fresh admin token.
    pub async fn refresh(
        &self,
        via: NodeId,
        key_id: &str,
        participants: Option<Vec<NodeId>>,
    ) -> Result<KeyInfo, NodeError> {
        let token = self.admin.refresh_token(key_id, participants.clone());
        self.handle(via)
            .refresh(crate::node::RefreshRequest {
                key_id: key_id.into(),
                participants,
                token: Some(token),
            })
            .await
    }

    /// Reshares `key_id` through node `via` to `threshold` and `participants`, with a fresh
    /// admin token.
    pub async fn reshare(
        &self,
        via: NodeId,
        key_id: &str,
        threshold: u16,
        participants: Vec<NodeId>,
    ) -> Result<KeyInfo, NodeError> {
        let token = self
            .admin
            .reshare_token(key_id, threshold, participants.clone());
        self.handle(via)
            .reshare(crate::node::ReshareRequest {
                key_id: key_id.into(),
                threshold,
                participants,
                token: Some(token),
            })
            .await
    }

    /// Repairs (or, with `enrol`, enrols) node `node`'s share of `key_id` through node `via`,
    /// with a fresh admin token.
    pub async fn repair(
        &self,
        via: NodeId,
        key_id: &str,
        node: NodeId,
        enrol: bool,
    ) -> Result<KeyInfo, NodeError> {
        let token = self.admin.repair_token(key_id, node, enrol);
        self.handle(via)
            .repair(crate::node::RepairRequest {
                key_id: key_id.into(),
                node,
                enrol,
                token: Some(token),
            })
            .await
    }

    /// Waits until every node sees every other node connected and subscribed.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), NodeError> {
        let ids: Vec<NodeId> = self.running().map(|n| n.handle().id()).collect();
        for node in self.running() {
            let h = node.handle();
            let others: Vec<NodeId> = ids.iter().copied().filter(|&i| i != h.id()).collect();
            h.wait_for_peers(&others, timeout).await?;
        }
        Ok(())
    }

    fn running(&self) -> impl Iterator<Item = &RunningNode> {
        self.nodes.iter().flatten()
    }

    /// Handle of node `id` (1-based). Panics if the node was stopped.
    pub fn handle(&self, id: NodeId) -> NodeHandle {
        self.nodes[usize::from(id - 1)]
            .as_ref()
            .expect("node is running")
            .handle()
    }

    /// Handles of the running nodes, in id order.
    pub fn handles(&self) -> Vec<NodeHandle> {
        self.running().map(|n| n.handle()).collect()
    }

    /// API addresses of the running nodes, in id order.
    pub fn api_addrs(&self) -> Vec<SocketAddr> {
        self.running().map(|n| n.api_addr()).collect()
    }

    /// libp2p listen addresses of the running nodes, in id order.
    pub fn p2p_addrs(&self) -> Vec<Multiaddr> {
        self.running().map(|n| n.p2p_addr().clone()).collect()
    }

    /// Stops node `id` (its connections close).
    pub async fn stop(&mut self, id: NodeId) {
        if let Some(n) = self.nodes[usize::from(id - 1)].take() {
            n.shutdown().await;
        }
    }

    /// Where the nodes keep their data.
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// Stops every node.
    pub async fn shutdown(self) {
        for n in self.nodes.into_iter().flatten() {
            n.shutdown().await;
        }
    }
}
