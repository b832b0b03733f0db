//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use frostnode::localnet::LocalCluster;
use frostnode::net::{Client, EventLoop, NetParams};
use frostnode::wire::NodeId;

/// Generous wait for anything a loaded 2-core machine might be slow at.
pub const WAIT: Duration = Duration::from_secs(60);

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
