//! The one helper module of the integration tests: clusters of real nodes on loopback (started,
//! connected, optionally with a key), the waits tests need, signature checks, forced coordinator
//! elections, signing with frost directly (no node), an in-memory log writer, and a raw swarm
//! speaking with a listed node's identity.
#![allow(dead_code)]

pub mod process;

use std::io::Write;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use frostnode::config::Config;
use frostnode::keystore::KeyInfo;
use frostnode::localnet::LocalCluster;
use frostnode::net::{Client, EventLoop, NetParams};
use frostnode::node::{KeygenRequest, NodeError, NodeHandle, SignResponse};
use frostnode::signing::election;
use frostnode::wire::{NodeId, SessionId};

/// Generous wait for anything a loaded 2-core machine might be slow at.
pub const WAIT: Duration = Duration::from_secs(60);

/// An in-process cluster with its data directory; derefs to the [`LocalCluster`].
pub struct Cluster {
    /// Where the nodes keep their identities and keys (deleted on drop).
    pub dir: tempfile::TempDir,
    cluster: LocalCluster,
}

impl Deref for Cluster {
    type Target = LocalCluster;
    fn deref(&self) -> &LocalCluster {
        &self.cluster
    }
}

impl DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut LocalCluster {
        &mut self.cluster
    }
}

impl Cluster {
    /// `n` nodes, every one connected to every other.
    pub async fn start(n: u16) -> Cluster {
        Self::start_with(n, |_| {}).await
    }

    /// Like [`Cluster::start`], with each node's config adjusted first.
    pub async fn start_with(n: u16, adjust: impl Fn(&mut Config)) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let cluster = LocalCluster::start_with(n, dir.path(), adjust)
            .await
            .unwrap();
        cluster.wait_connected(WAIT).await.unwrap();
        Cluster { dir, cluster }
    }

    /// `n` nodes and a `t`-of-`n` key `"k"` over all of them; returns the group key too.
    pub async fn with_key(n: u16, t: u16) -> (Cluster, String) {
        let c = Self::start(n).await;
        let gpk = c
            .keygen(1, "k", Some(t), None)
            .await
            .unwrap()
            .group_public_key;
        (c, gpk)
    }

    /// A fresh token of the admin client (which every node serves) to sign `message`.
    pub fn token(&self, key_id: &str, message: &[u8]) -> Option<String> {
        Some(self.admin().sign_token(key_id, message))
    }

    /// Runs a DKG through node `via` with a client token.
    pub async fn keygen_with_token(
        &self,
        via: NodeId,
        key_id: &str,
        threshold: Option<u16>,
        participants: Option<Vec<NodeId>>,
        token: Option<String>,
    ) -> Result<KeyInfo, NodeError> {
        self.handle(via)
            .keygen(KeygenRequest {
                key_id: key_id.into(),
                threshold,
                participants,
                token,
            })
            .await
    }

    /// Stops node `node` and speaks with its identity to node `target` (see [`take_over`]).
    pub async fn take_over(
        &mut self,
        node: NodeId,
        target: NodeId,
        max_message_size: usize,
    ) -> Client {
        take_over(
            &mut self.cluster,
            self.dir.path(),
            node,
            target,
            max_message_size,
        )
        .await
    }

    /// Stops every node; returns the data directory for tests that inspect it afterwards.
    pub async fn shutdown(self) -> tempfile::TempDir {
        self.cluster.shutdown().await;
        self.dir
    }
}

/// Signs with exactly these key packages (frost directly, no node) and aggregates under `pkp`.
pub fn frost_sign(
    signers: &[&frost_ed25519::keys::KeyPackage],
    pkp: &frost_ed25519::keys::PublicKeyPackage,
    message: &[u8],
) -> Result<frost_ed25519::Signature, frost_ed25519::Error> {
    let mut rng = rand::rngs::OsRng;
    let mut nonces = std::collections::BTreeMap::new();
    let mut commitments = std::collections::BTreeMap::new();
    for kp in signers {
        let (n, c) = frost_ed25519::round1::commit(kp.signing_share(), &mut rng);
        nonces.insert(*kp.identifier(), n);
        commitments.insert(*kp.identifier(), c);
    }
    let package = frost_ed25519::SigningPackage::new(commitments, message);
    let mut shares = std::collections::BTreeMap::new();
    for kp in signers {
        let share = frost_ed25519::round2::sign(&package, &nonces[kp.identifier()], kp)?;
        shares.insert(*kp.identifier(), share);
    }
    frost_ed25519::aggregate(&package, &shares, pkp)
}

/// Checks a signing answer with ed25519-dalek's strict verifier.
pub fn check_signature(gpk: &str, message: &[u8], r: &SignResponse) {
    assert_eq!(r.group_public_key, gpk);
    let pk: [u8; 32] = hex::decode(gpk).unwrap().try_into().unwrap();
    let sig: [u8; 64] = hex::decode(&r.signature).unwrap().try_into().unwrap();
    ed25519_dalek::VerifyingKey::from_bytes(&pk)
        .unwrap()
        .verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig))
        .expect("ed25519-dalek verify_strict accepts the signature");
}

/// Waits until `h` no longer sees any of `gone` as a ready peer.
pub async fn wait_gone(h: &NodeHandle, gone: &[NodeId]) {
    h.wait_ready_where(|r| gone.iter().all(|g| !r.contains(g)), WAIT)
        .await
        .unwrap();
}

/// Request ids (numbered from `from`) whose coordinator ranking over `participants` satisfies
/// `pred`: the way a test chooses who coordinates and who is asked first.
pub fn request_ids_where(
    participants: &[NodeId],
    from: u64,
    count: usize,
    pred: impl Fn(&[NodeId]) -> bool,
) -> Vec<SessionId> {
    (from..)
        .map(|i| {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&i.to_be_bytes());
            SessionId(id)
        })
        .filter(|id| pred(&election::rank(&id.0, participants)))
        .take(count)
        .collect()
}

/// A log writer that keeps everything in memory, for tests that read the logs.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Stops node `node` of the cluster and speaks with its identity through a raw swarm
/// connected to node `target`: a listed participant under the test's control. Returns once
/// `target` sees the impostor connected and subscribed.
pub async fn take_over(
    cluster: &mut LocalCluster,
    dir: &Path,
    node: NodeId,
    target: NodeId,
    max_message_size: usize,
) -> Client {
    let handle = cluster.handle(target);
    let target_addr = cluster.p2p_addrs()[usize::from(target - 1)].clone();
    cluster.stop(node).await;
    handle
        .wait_ready_where(|r| !r.contains(&node), WAIT)
        .await
        .unwrap();
    let identity = frostnode::identity::load(&dir.join(format!("node{node}"))).unwrap();
    let (client, _events, mut event_loop) = EventLoop::new(NetParams {
        keypair: identity,
        listen: "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
        peers: vec![(handle.peer_id(), target_addr)],
        max_message_size,
        request_timeout: Duration::from_secs(10),
        event_queue: frostnode::net::DEFAULT_EVENT_QUEUE,
        gossip: Default::default(),
    })
    .unwrap();
    event_loop.wait_listening(WAIT).await.unwrap();
    tokio::spawn(event_loop.run());
    handle
        .wait_ready_where(|r| r.contains(&node), WAIT)
        .await
        .unwrap();
    client
}
