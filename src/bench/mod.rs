//! Benchmarks on an in-process cluster (`frostnode bench …`): every node on this machine,
//! talking over real libp2p connections on loopback.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::localnet::LocalCluster;

pub mod floor;
mod lifecycle;
mod wan;

pub use lifecycle::{parse_shape, refresh, repair, reshare};

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

/// The DKG timeout of a benchmark cluster: at least 120 s, and 2 s per node beyond that, so
/// that a slow or shared machine measures a large DKG instead of timing it out.
fn bench_dkg_timeout(nodes: u16) -> Duration {
    Duration::from_secs(120).max(Duration::from_secs(2) * u32::from(nodes))
}

async fn start(nodes: u16, dir: &std::path::Path) -> Result<LocalCluster, String> {
    start_with(nodes, dir, Duration::ZERO, |_| {}).await
}

/// Starts `nodes` nodes in `dir`; with a non-zero `rtt`, every connection between two of them
/// goes through a relay that delays it by that round-trip time ([`wan`]).
async fn start_with(
    nodes: u16,
    dir: &std::path::Path,
    rtt: Duration,
    adjust: impl Fn(&mut crate::config::Config),
) -> Result<LocalCluster, String> {
    raise_fd_limit();
    let started = Instant::now();
    let dkg_timeout = bench_dkg_timeout(nodes);
    let route = move |_, addr| {
        if rtt.is_zero() {
            addr
        } else {
            wan::relay(addr, rtt)
        }
    };
    if !rtt.is_zero() {
        println!(
            "every connection between nodes goes through a user-space relay adding {} ms of round-trip time",
            rtt.as_millis()
        );
    }
    let cluster = LocalCluster::start_routed(
        nodes,
        dir,
        |c| {
            c.dkg_timeout = dkg_timeout;
            c.request_timeout = Duration::from_secs(60);
            adjust(c);
        },
        route,
    )
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

/// Every node's `frostnode_dkg_pulls_total`, summed (from each node's `/metrics`).
pub async fn pulls(cluster: &LocalCluster) -> u64 {
    metric_sum(cluster, "frostnode_dkg_pulls_total").await
}

/// Every node's counter `name` (all its labels), summed (from each node's `/metrics`).
pub async fn metric_sum(cluster: &LocalCluster, name: &str) -> u64 {
    metric_sum_labelled(cluster, name, "").await
}

/// Every node's counter `name` with labels starting with `labels` (`key="value"`), summed.
pub async fn metric_sum_labelled(cluster: &LocalCluster, name: &str, labels: &str) -> u64 {
    let prefix = format!("{name}{{{labels}");
    let http = reqwest::Client::new();
    let mut total = 0.0;
    for addr in cluster.api_addrs() {
        let Ok(resp) = http.get(format!("http://{addr}/metrics")).send().await else {
            continue;
        };
        let text = resp.text().await.unwrap_or_default();
        total += text
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    total as u64
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Times `runs` DKGs one after the other.
pub async fn dkg(
    nodes: u16,
    threshold: Option<u16>,
    runs: usize,
    rtt: Duration,
) -> Result<(), String> {
    if nodes < 2 || runs == 0 {
        return Err("need --nodes >= 2 and --runs >= 1".into());
    }
    let t = threshold.unwrap_or_else(|| crate::node::default_threshold(usize::from(nodes)));
    let floor = tokio::task::spawn_blocking(move || floor::measure(nodes, t))
        .await
        .map_err(|e| e.to_string())??;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let cluster_floor = floor.total() * u32::from(nodes) / cores as u32;
    println!(
        "arithmetic floor (frost alone, one participant of n={nodes}, t={t}): {:.0} ms \
         (part1 {:.0}, decoding round 1 {:.0}, part2 {:.0}, part3 {:.0}); \
         {nodes} participants on this machine's {cores} cores: {:.1} s",
        ms(floor.total()),
        ms(floor.part1),
        ms(floor.decode),
        ms(floor.part2),
        ms(floor.part3),
        cluster_floor.as_secs_f64()
    );
    let dir = bench_dir("dkg");
    let cluster = start_with(nodes, &dir, rtt, |_| {}).await?;
    println!(
        "DKG timeout {} s for {nodes} nodes (raised with n so that a slow machine measures rather than times out); missing messages are pulled after {} s",
        bench_dkg_timeout(nodes).as_secs(),
        crate::node::dkg::pull_after(bench_dkg_timeout(nodes)).as_secs_f64()
    );
    let mut times = Vec::with_capacity(runs);
    let bar = crate::progress::bar(runs as u64, "DKGs");
    for i in 0..runs {
        let t0 = Instant::now();
        let r = cluster
            .keygen(1, &format!("bench-{i}"), threshold, None)
            .await
            .map_err(|e| format!("DKG {i} failed: {e}"))?;
        let dt = t0.elapsed();
        times.push(dt);
        crate::progress::println(
            &bar,
            format!(
                "run {:>3}: {:>9.2} ms  (t={}, group key {}…)",
                i + 1,
                ms(dt),
                r.threshold,
                &r.group_public_key[..16]
            ),
        );
        bar.inc(1);
    }
    bar.finish_and_clear();
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "dkg n={nodes}: median {:.2} ms, min {:.2} ms, max {:.2} ms over {runs} runs \
         ({:.2}× the arithmetic floor); {} messages pulled, {} broadcasts dropped by GossipSub",
        ms(median),
        ms(times[0]),
        ms(times[times.len() - 1]),
        median.as_secs_f64() / cluster_floor.as_secs_f64().max(1e-9),
        pulls(&cluster).await,
        metric_sum(&cluster, "frostnode_gossip_dropped_total").await
    );
    cluster.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Signs `requests` random messages through random nodes, `batch` per request, `concurrency`
/// requests at a time.
pub async fn sign(
    nodes: u16,
    threshold: u16,
    requests: usize,
    concurrency: usize,
    presign: bool,
    rtt: Duration,
    batch: usize,
) -> Result<(), String> {
    if nodes < 2 || requests == 0 || concurrency == 0 {
        return Err("need --nodes >= 2, --requests >= 1 and --concurrency >= 1".into());
    }
    if batch == 0 || batch > crate::node::MAX_BATCH {
        return Err(format!("--batch must be 1..={}", crate::node::MAX_BATCH));
    }
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let floors = move || -> Result<(floor::SignFloor, f64), String> {
        let alone = floor::measure_sign(threshold, 300)?;
        let ceiling = floor::measure_ceiling(threshold, cores, 300)?;
        Ok((alone, ceiling))
    };
    let (before, ceiling_before) = tokio::task::spawn_blocking(floors)
        .await
        .map_err(|e| e.to_string())??;
    println!(
        "floors before the run (frost alone, one core, t={threshold}): {:.2} ms of cryptography \
         per signature, {:.2} ms with frost's decoding of what each party receives (the wire \
         floor); {ceiling_before:.0} signatures/s of it on {cores} cores at once",
        ms(before.crypto),
        ms(before.wire)
    );
    let dir = bench_dir("sign");
    let cluster = start_with(nodes, &dir, rtt, |c| {
        if !presign {
            c.presign_per_coordinator = 0;
        }
    })
    .await?;
    cluster
        .keygen(1, "bench", Some(threshold), None)
        .await
        .map_err(|e| format!("DKG failed: {e}"))?;
    let handles = Arc::new(cluster.handles());
    // Warm-up: connections, allocator, caches.
    for i in 0..20 {
        cluster
            .sign(i % nodes + 1, "bench", &[i as u8; 32])
            .await
            .map_err(|e| format!("warm-up failed: {e}"))?;
    }
    // The client's side of each request (a random message and its token) is made before the
    // clock starts: what is timed is the nodes' work, token checks included.
    let minted = Instant::now();
    let work: Vec<(usize, Vec<Vec<u8>>, String)> = {
        let mut rng = rand::thread_rng();
        let mut left = requests;
        let mut work = Vec::new();
        while left > 0 {
            let n = left.min(batch);
            left -= n;
            let msgs: Vec<Vec<u8>> = (0..n).map(|_| rng.gen::<[u8; 32]>().to_vec()).collect();
            let token = cluster.admin().batch_token("bench", &msgs);
            work.push((rng.gen_range(0..handles.len()), msgs, token));
        }
        work
    };
    let calls = work.len();
    println!(
        "{calls} client tokens minted in {:.0} ms (not timed below)",
        ms(minted.elapsed())
    );
    let work = Arc::new(std::sync::Mutex::new(work));
    let bar = crate::progress::bar(requests as u64, "messages signed");
    let t0 = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let handles = handles.clone();
        let work = work.clone();
        let bar = bar.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0usize;
            while let Some((via, msgs, token)) = work.lock().ok().and_then(|mut w| w.pop()) {
                let start = Instant::now();
                let n = msgs.len();
                let signed = if n == 1 {
                    let msg = msgs.into_iter().next().unwrap_or_default();
                    handles[via]
                        .sign("bench", msg, Some(token))
                        .await
                        .map(|_| ())
                } else {
                    let signed = handles[via].sign_batch("bench", msgs, Some(token)).await;
                    signed.map(|_| ())
                };
                match signed {
                    Ok(()) => latencies.push((start.elapsed(), n)),
                    Err(_) => failures += n,
                }
                bar.inc(n as u64);
            }
            (latencies, failures)
        }));
    }
    let mut latencies = Vec::with_capacity(calls);
    let mut failures = 0;
    let mut signed = 0;
    for w in workers {
        let (l, f): (Vec<(Duration, usize)>, usize) = w.await.map_err(|e| e.to_string())?;
        signed += l.iter().map(|(_, n)| n).sum::<usize>();
        latencies.extend(l.into_iter().map(|(d, _)| d));
        failures += f;
    }
    let elapsed = t0.elapsed();
    bar.finish_and_clear();
    latencies.sort();
    if latencies.is_empty() {
        return Err(format!("all {failures} requests failed"));
    }
    let one = metric_sum_labelled(
        &cluster,
        "frostnode_signatures_coordinated_total",
        "rounds=\"one\"",
    )
    .await;
    let two = metric_sum_labelled(
        &cluster,
        "frostnode_signatures_coordinated_total",
        "rounds=\"two\"",
    )
    .await;
    println!("{one} signatures coordinated in one network round, {two} in two (warm-up included)");
    // The machine's speed may drift during a run: the floor is measured again afterwards, and
    // the ratios are to the faster of the two (the harder comparison).
    let (after, ceiling_after) = tokio::task::spawn_blocking(floors)
        .await
        .map_err(|e| e.to_string())??;
    let floor = if after.wire < before.wire {
        after
    } else {
        before
    };
    let ceiling = ceiling_before.max(ceiling_after);
    println!(
        "floors after the run: {:.2} ms, {:.2} ms (wire), {ceiling_after:.0}/s on {cores} cores; \
         ratios below are to the lower wire floor, {:.2} ms, and the higher {cores}-core wire \
         ceiling, {ceiling:.0} signatures/s",
        ms(after.crypto),
        ms(after.wire),
        ms(floor.wire)
    );
    let rate = signed as f64 / elapsed.as_secs_f64();
    println!(
        "{rate:.0} signatures/s = {:.2} × the {cores}-core wire ceiling; p50 per request = {:.2} × \
         the single-core wire cost of one signature",
        rate / ceiling,
        percentile(&latencies, 0.5).as_secs_f64() / floor.wire.as_secs_f64()
    );
    println!(
        "sign n={nodes} t={threshold} requests={requests} batch={batch} concurrency={concurrency}: \
         p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {rate:.0} signatures/s, {failures} failed",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies[latencies.len() - 1]),
    );
    cluster.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
