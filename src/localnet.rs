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
            .map(|b| (b.peer_id(), b.p2p_addr().clone()))
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

/// Options of `frostnode localnet`.
#[derive(Clone, Debug)]
pub struct LocalnetOptions {
    /// Number of nodes.
    pub nodes: u16,
    /// Signing threshold.
    pub threshold: u16,
    /// Where the nodes keep identities and keys; a fresh temporary directory if `None`.
    pub data_dir: Option<PathBuf>,
    /// Node k serves its API on `127.0.0.1:(api_base_port + k)`; 0 picks free ports.
    pub api_base_port: u16,
    /// Stop after the demo instead of serving until Ctrl-C.
    pub exit: bool,
}

/// The message signed by the demo.
pub const DEMO_MESSAGE: &[u8] = b"hello from frostnode";

/// `frostnode localnet`: starts the nodes, generates a key, signs a message through a node
/// that is not the coordinator, checks the signature, prints everything, then serves.
pub async fn demo(opts: LocalnetOptions) -> Result<(), String> {
    if opts.nodes < 2 || opts.threshold < 2 || opts.threshold > opts.nodes {
        return Err(format!(
            "need 2 <= --threshold <= --nodes (got {} of {})",
            opts.threshold, opts.nodes
        ));
    }
    let temp = opts.data_dir.is_none();
    let dir = match opts.data_dir.clone() {
        Some(d) => d,
        None => {
            // A fresh, private directory with an unguessable name: nobody else on this machine
            // can have put a client key or an identity there first.
            let d = std::env::temp_dir().join(format!(
                "frostnode-localnet-{}",
                hex::encode(rand::random::<[u8; 8]>())
            ));
            crate::securefile::create_new_private_dir(&d)
                .map_err(|e| format!("cannot create {}: {e}", d.display()))?;
            d
        }
    };
    let base = opts.api_base_port;
    if base != 0 && u32::from(base) + u32::from(opts.nodes) > 65535 {
        return Err("--api-base-port is too high for that many nodes".into());
    }
    let cluster = LocalCluster::start_with(opts.nodes, &dir, |c| {
        if base != 0 {
            c.api_listen = SocketAddr::from(([127, 0, 0, 1], base + c.id));
        }
    })
    .await
    .map_err(|e| format!("{e} (is another localnet running? try --api-base-port 0)"))?;
    let result = run_demo(&cluster, &opts, &dir).await;
    if result.is_ok() && !opts.exit {
        println!("\nServing until Ctrl-C …");
        let _ = tokio::signal::ctrl_c().await;
    }
    cluster.shutdown().await;
    if temp {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn run_demo(
    cluster: &LocalCluster,
    opts: &LocalnetOptions,
    dir: &Path,
) -> Result<(), String> {
    use std::time::Instant;
    cluster
        .wait_connected(Duration::from_secs(60))
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "frostnode localnet: {} nodes, threshold {}, data in {}",
        opts.nodes,
        opts.threshold,
        dir.display()
    );
    for (h, api) in cluster.handles().iter().zip(cluster.api_addrs()) {
        println!("  node {}  api http://{api}  peer {}", h.id(), h.peer_id());
    }
    let first = cluster.handle(1);
    let t0 = Instant::now();
    let key = match first.get_key("demo").await.map_err(|e| e.to_string())? {
        Some(k) => {
            println!("\nkey \"demo\" already exists (from an earlier run)");
            k
        }
        None => {
            let k = cluster
                .keygen(1, "demo", Some(opts.threshold), None)
                .await
                .map_err(|e| format!("DKG failed: {e}"))?;
            println!(
                "\nDKG: key \"demo\" generated by all {} nodes in {:.1} ms",
                opts.nodes,
                t0.elapsed().as_secs_f64() * 1e3
            );
            k
        }
    };
    println!("group public key  {}", key.group_public_key);

    // Sign through a node that is not the elected coordinator, to show the forwarding.
    let mut signed = None;
    for attempt in 0..20u16 {
        let via = attempt % opts.nodes + 1;
        let t0 = Instant::now();
        let r = cluster
            .sign(via, "demo", DEMO_MESSAGE)
            .await
            .map_err(|e| format!("signing failed: {e}"))?;
        if r.coordinator != via {
            signed = Some((via, r, t0.elapsed()));
            break;
        }
    }
    let (via, r, took) = signed.ok_or("every request was coordinated by its receiving node")?;
    println!(
        "\nsigned {:?} (hex {})",
        String::from_utf8_lossy(DEMO_MESSAGE),
        hex::encode(DEMO_MESSAGE)
    );
    println!("  received by node  {via}");
    println!("  coordinator       node {}", r.coordinator);
    println!("  signers           {:?}", r.signers);
    println!("  time              {:.2} ms", took.as_secs_f64() * 1e3);
    println!("  signature         {}", r.signature);

    let pk = crate::client::decode_hex::<32>("group key", &r.group_public_key)?;
    let sig = crate::client::decode_hex::<64>("signature", &r.signature)?;
    crate::client::verify(&pk, DEMO_MESSAGE, &sig)?;
    println!("\nverified with ed25519-dalek (strict): OK");
    let files = dir.join("demo-verify");
    std::fs::create_dir_all(&files).map_err(|e| e.to_string())?;
    let (pk_path, msg_path, sig_path) = (
        files.join("pk.der"),
        files.join("message.bin"),
        files.join("signature.bin"),
    );
    let write = |p: &Path, b: &[u8]| std::fs::write(p, b).map_err(|e| e.to_string());
    write(&pk_path, &crate::client::ed25519_public_key_der(&pk))?;
    write(&msg_path, DEMO_MESSAGE)?;
    write(&sig_path, &sig)?;
    let cmd = format!(
        "openssl pkeyutl -verify -pubin -keyform DER -inkey {} -rawin -in {} -sigfile {}",
        pk_path.display(),
        msg_path.display(),
        sig_path.display()
    );
    let openssl = std::process::Command::new("openssl")
        .args(["pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-inkey"])
        .arg(&pk_path)
        .arg("-rawin")
        .arg("-in")
        .arg(&msg_path)
        .arg("-sigfile")
        .arg(&sig_path)
        .output();
    match openssl {
        Ok(out) if out.status.success() => println!(
            "verified with OpenSSL: {}",
            String::from_utf8_lossy(&out.stdout).trim()
        ),
        Ok(out) => {
            return Err(format!(
                "OpenSSL rejected the signature: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
        Err(_) => println!("(OpenSSL not found; check it elsewhere with:)"),
    }
    println!("  {cmd}");
    let api = cluster.api_addrs()[0];
    let message = hex::encode(b"any message");
    println!("\nTry it (every request that signs or makes keys carries a token of client {ADMIN_CLIENT:?}):");
    println!("  curl -s http://{api}/v1/status");
    println!(
        "  export FROSTNODE_CLIENT_KEY={}",
        dir.join(CLIENT_KEY_FILE).display()
    );
    println!(
        "  curl -s -X POST http://{api}/v1/keys/demo/sign -H 'content-type: application/json' \\\n       -H \"Authorization: Bearer $(frostnode token --act sign --key-id demo --message {message})\" \\\n       -d '{{\"message\":\"{message}\"}}'"
    );
    println!("  frostnode sign --api http://{api} --key-id demo --message {message}");
    Ok(())
}
