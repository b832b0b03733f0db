//! Benchmarks on an in-process cluster (`frostnode bench …`): every node on this machine,
//! talking over real libp2p connections on loopback.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::localnet::LocalCluster;
use crate::node::KeygenRequest;

fn raise_fd_limit() {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("warning: cannot raise the open-file limit: {e}");
    }
}

fn bench_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("frostnode-bench-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

async fn start(nodes: u16, dir: &std::path::Path) -> Result<LocalCluster, String> {
    raise_fd_limit();
    let started = Instant::now();
    let cluster = LocalCluster::start_with(nodes, dir, |c| {
        c.dkg_timeout = Duration::from_secs(120);
        c.request_timeout = Duration::from_secs(60);
    })
    .await
    .map_err(|e| e.to_string())?;
    cluster
        .wait_connected(Duration::from_secs(120))
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "{nodes} nodes connected in {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(cluster)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Times `runs` DKGs one after the other.
pub async fn dkg(nodes: u16, threshold: Option<u16>, runs: usize) -> Result<(), String> {
    if nodes < 2 || runs == 0 {
        return Err("need --nodes >= 2 and --runs >= 1".into());
    }
    let dir = bench_dir("dkg");
    let cluster = start(nodes, &dir).await?;
    let h = cluster.handle(1);
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs {
        let t0 = Instant::now();
        let r = h
            .keygen(KeygenRequest {
                key_id: format!("bench-{i}"),
                threshold,
                participants: None,
                token: None,
            })
            .await
            .map_err(|e| format!("DKG {i} failed: {e}"))?;
        let dt = t0.elapsed();
        times.push(dt);
        println!(
            "run {:>3}: {:>9.2} ms  (t={}, group key {}…)",
            i + 1,
            ms(dt),
            r.threshold,
            &r.group_public_key[..16]
        );
    }
    times.sort();
    println!(
        "dkg n={nodes}: median {:.2} ms, min {:.2} ms, max {:.2} ms over {runs} runs",
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
    cluster.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Signs `requests` random messages through random nodes, `concurrency` at a time.
pub async fn sign(
    nodes: u16,
    threshold: u16,
    requests: usize,
    concurrency: usize,
) -> Result<(), String> {
    if nodes < 2 || requests == 0 || concurrency == 0 {
        return Err("need --nodes >= 2, --requests >= 1 and --concurrency >= 1".into());
    }
    let dir = bench_dir("sign");
    let cluster = start(nodes, &dir).await?;
    let key = cluster
        .handle(1)
        .keygen(KeygenRequest {
            key_id: "bench".into(),
            threshold: Some(threshold),
            participants: None,
            token: None,
        })
        .await
        .map_err(|e| format!("DKG failed: {e}"))?;
    let handles = Arc::new(cluster.handles());
    // Warm-up: connections, allocator, caches.
    for i in 0..20 {
        handles[i % handles.len()]
            .sign("bench", vec![i as u8; 32])
            .await
            .map_err(|e| format!("warm-up failed: {e}"))?;
    }
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let handles = handles.clone();
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0usize;
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < requests {
                let (via, msg) = {
                    let mut rng = rand::thread_rng();
                    (
                        rng.gen_range(0..handles.len()),
                        rng.gen::<[u8; 32]>().to_vec(),
                    )
                };
                let start = Instant::now();
                match handles[via].sign("bench", msg).await {
                    Ok(_) => latencies.push(start.elapsed()),
                    Err(_) => failures += 1,
                }
            }
            (latencies, failures)
        }));
    }
    let mut latencies = Vec::with_capacity(requests);
    let mut failures = 0;
    for w in workers {
        let (l, f) = w.await.map_err(|e| e.to_string())?;
        latencies.extend(l);
        failures += f;
    }
    let elapsed = t0.elapsed();
    latencies.sort();
    if latencies.is_empty() {
        return Err(format!("all {failures} requests failed"));
    }
    println!(
        "sign n={nodes} t={threshold} requests={requests} concurrency={concurrency}: \
         p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {:.0} signatures/s, {failures} failed",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies[latencies.len() - 1]),
        latencies.len() as f64 / elapsed.as_secs_f64()
    );
    let _ = key;
    cluster.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
