//! Local clusters: config files for N nodes (`cluster-config`), and N in-process nodes on
//! loopback (`LocalCluster`) for the quick start, benchmarks and integration tests.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};

use crate::config::{Config, RawConfig, RawPeer, RawTimeouts};
use crate::identity;
use crate::node::{BoundNode, NodeError, NodeHandle, RunningNode, StartError};
use crate::wire::NodeId;

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

/// Writes `out/nodeK/identity.key` and `out/nodeK.toml` for every node; returns the PeerIds.
/// Existing identities are kept, so re-running keeps PeerIds stable.
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
    }
    for k in 1..=layout.nodes {
        let raw = raw_config(layout, k, &peer_ids);
        let text = toml::to_string_pretty(&raw).map_err(|e| e.to_string())?;
        let mut file = String::new();
        let _ = writeln!(
            file,
            "# frostnode config for node {k}, written by `frostnode cluster-config`."
        );
        if layout.docker {
            let _ = writeln!(
                file,
                "# Identities here are throwaway keys for local testing only."
            );
        }
        file.push_str(&text);
        let path = out.join(format!("node{k}.toml"));
        std::fs::write(&path, file).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(peer_ids)
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
        max_message_size: crate::config::DEFAULT_MAX_MESSAGE_SIZE,
        timeouts: RawTimeouts::default(),
        peers,
    }
}

/// N nodes in this process, on 127.0.0.1 with OS-assigned ports.
pub struct LocalCluster {
    nodes: Vec<Option<RunningNode>>,
    base_dir: PathBuf,
}

impl LocalCluster {
    /// Creates identities under `base_dir/nodeK`, binds every node, tells each the others'
    /// addresses and starts them. Call [`LocalCluster::wait_connected`] before using them.
    pub async fn start(n: u16, base_dir: &Path) -> Result<LocalCluster, StartError> {
        Self::start_with(n, base_dir, |_| {}).await
    }

    /// Like [`LocalCluster::start`], with a hook to adjust each node's config.
    pub async fn start_with(
        n: u16,
        base_dir: &Path,
        adjust: impl Fn(&mut Config),
    ) -> Result<LocalCluster, StartError> {
        let mut keys = Vec::new();
        for k in 1..=n {
            let (key, _) = identity::load_or_create(&base_dir.join(format!("node{k}")))?;
            keys.push(key);
        }
        let placeholder: Multiaddr = "/ip4/127.0.0.1/tcp/9".parse().expect("valid multiaddr");
        let mut bound = Vec::new();
        for k in 1..=n {
            let mut config = Config {
                id: k,
                listen: "/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr"),
                api_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                data_dir: base_dir.join(format!("node{k}")),
                max_message_size: crate::config::DEFAULT_MAX_MESSAGE_SIZE,
                dkg_timeout: Duration::from_millis(crate::config::DEFAULT_DKG_TIMEOUT_MS),
                request_timeout: Duration::from_millis(crate::config::DEFAULT_REQUEST_TIMEOUT_MS),
                sign_timeout: Duration::from_millis(crate::config::DEFAULT_SIGN_TIMEOUT_MS),
                peers: (1..=n)
                    .filter(|&j| j != k)
                    .map(|j| crate::config::Peer {
                        id: j,
                        peer_id: keys[usize::from(j - 1)].public().to_peer_id(),
                        addr: placeholder.clone(),
                    })
                    .collect(),
            };
            adjust(&mut config);
            bound.push(BoundNode::bind(config, keys[usize::from(k - 1)].clone()).await?);
        }
        let addrs: Vec<(PeerId, Multiaddr)> = bound
            .iter()
            .map(|b| (b.peer_id(), b.p2p_addr().clone()))
            .collect();
        for b in &mut bound {
            for (pid, addr) in &addrs {
                if *pid != b.peer_id() {
                    b.set_peer_address(*pid, addr.clone());
                }
            }
        }
        let nodes = bound.into_iter().map(|b| Some(b.start())).collect();
        Ok(LocalCluster {
            nodes,
            base_dir: base_dir.to_path_buf(),
        })
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

    /// Freezes node `id`: its protocol logic stops while its connections stay open.
    pub async fn hang(&mut self, id: NodeId) {
        if let Some(n) = self.nodes[usize::from(id - 1)].as_mut() {
            n.hang().await;
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
