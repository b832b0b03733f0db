//! A flood of connections from an address that is no configured peer: 2,000 TCP connections
//! held open on a node's libp2p port and 2,000 on its HTTP port. The node keeps signing with
//! its honest peers, and its memory stays bounded.

mod common;

use std::time::Duration;

use common::{check_signature, Cluster, WAIT};
use tokio::net::TcpStream;

/// Resident memory of this process (every node of the cluster), in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Opens `n` TCP connections to `addr` and keeps them (connections the node refuses or closes
/// are simply counted as closed).
async fn hold(addr: std::net::SocketAddr, n: usize) -> (Vec<TcpStream>, usize) {
    let mut held = Vec::with_capacity(n);
    let mut refused = 0;
    for _ in 0..n {
        match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => held.push(s),
            _ => refused += 1,
        }
    }
    (held, refused)
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_stranger_connections_do_not_stop_signing() {
    // Two sides of 4,000 connections live in this process.
    if let Err(e) = rlimit::increase_nofile_limit(20_000) {
        eprintln!("cannot raise the open-file limit: {e}");
    }
    let (c, gpk) = Cluster::with_key(3, 2).await;
    let before = rss_kib();
    let p2p: std::net::SocketAddr = {
        let addr = c.p2p_addrs()[0].to_string();
        let port: u16 = addr.rsplit('/').next().unwrap().parse().unwrap();
        ([127, 0, 0, 1], port).into()
    };
    let api = c.api_addrs()[0];
    let (p2p_conns, p2p_refused) = hold(p2p, 2000).await;
    let (api_conns, api_refused) = hold(api, 2000).await;
    eprintln!(
        "held {} libp2p connections ({p2p_refused} refused), {} HTTP connections ({api_refused} refused)",
        p2p_conns.len(),
        api_conns.len()
    );
    // Signing through the flooded node, and through the others, goes on.
    for i in 0..20u16 {
        let via = i % 3 + 1;
        let m = format!("under a flood {i}").into_bytes();
        let r = tokio::time::timeout(WAIT, c.sign(via, "k", &m))
            .await
            .expect("signing answers during the flood")
            .unwrap_or_else(|e| panic!("signing via node {via}: {e}"));
        check_signature(&gpk, &m, &r);
    }
    assert_eq!(c.handle(1).ready_peers().len(), 2, "node 1 kept its peers");
    let during = rss_kib();
    eprintln!(
        "RSS of the 3-node process: {} MiB before the flood, {} MiB with 4,000 connections held",
        before / 1024,
        during / 1024
    );
    assert!(
        during < before + 512 * 1024,
        "memory stays bounded: {before} KiB -> {during} KiB"
    );
    drop(p2p_conns);
    drop(api_conns);
    // After the flood, the API answers again.
    let r = tokio::time::timeout(WAIT, reqwest::get(format!("http://{api}/v1/health")))
        .await
        .expect("the API answers after the flood")
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    c.shutdown().await;
}
