//! `frostnode bench refresh`, `bench repair` and `bench reshare`: the key lifecycle on an
//! in-process cluster, each measured against the DKG that made the key (same run).

use std::time::{Duration, Instant};

use super::{bench_dir, ms, start};

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Makes the key the lifecycle runs on; returns how long its DKG took.
async fn key(
    cluster: &crate::localnet::LocalCluster,
    threshold: Option<u16>,
) -> Result<Duration, String> {
    let t0 = Instant::now();
    let info = cluster
        .keygen(1, "bench", threshold, None)
        .await
        .map_err(|e| format!("DKG failed: {e}"))?;
    let dkg = t0.elapsed();
    println!(
        "DKG of the key: {:.2} ms (t={}, {} participants)",
        ms(dkg),
        info.threshold,
        info.participants.len()
    );
    Ok(dkg)
}

/// Times `runs` refreshes of one key (every participant, new shares, the next epoch).
pub async fn refresh(nodes: u16, threshold: Option<u16>, runs: usize) -> Result<(), String> {
    if nodes < 2 || runs == 0 {
        return Err("need --nodes >= 2 and --runs >= 1".into());
    }
    let dir = bench_dir("refresh");
    let cluster = start(nodes, &dir).await?;
    let dkg = key(&cluster, threshold).await?;
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs {
        let t0 = Instant::now();
        let info = cluster
            .refresh(1 + (i as u16 % nodes), "bench", None)
            .await
            .map_err(|e| format!("refresh {i} failed: {e}"))?;
        let dt = t0.elapsed();
        println!(
            "run {:>3}: {:>9.2} ms  (epoch {})",
            i + 1,
            ms(dt),
            info.epoch
        );
        times.push(dt);
    }
    let m = median(&mut times);
    println!(
        "refresh n={nodes}: median {:.2} ms, min {:.2} ms, max {:.2} ms over {runs} runs ({:.2}× the DKG)",
        ms(m),
        ms(times[0]),
        ms(times[times.len() - 1]),
        m.as_secs_f64() / dkg.as_secs_f64().max(1e-9)
    );
    cluster.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Times `runs` repairs: each time the last node loses its key file (stopped, file deleted,
/// started again) and is repaired; only the repair is timed.
pub async fn repair(nodes: u16, threshold: Option<u16>, runs: usize) -> Result<(), String> {
    if nodes < 3 || runs == 0 {
        return Err("need --nodes >= 3 and --runs >= 1".into());
    }
    let dir = bench_dir("repair");
    let mut cluster = start(nodes, &dir).await?;
    let dkg = key(&cluster, threshold).await?;
    let target = nodes;
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs {
        cluster.stop(target).await;
        let file = dir.join(format!("node{target}/keys/bench.json"));
        std::fs::remove_file(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        cluster.restart(target).await.map_err(|e| e.to_string())?;
        cluster
            .wait_connected(Duration::from_secs(120))
            .await
            .map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        let info = cluster
            .repair(1, "bench", target, false)
            .await
            .map_err(|e| format!("repair {i} failed: {e}"))?;
        let dt = t0.elapsed();
        println!(
            "run {:>3}: {:>9.2} ms  (epoch {})",
            i + 1,
            ms(dt),
            info.epoch
        );
        times.push(dt);
    }
    let m = median(&mut times);
    println!(
        "repair n={nodes}: median {:.2} ms, min {:.2} ms, max {:.2} ms over {runs} runs ({:.3}× the DKG)",
        ms(m),
        ms(times[0]),
        ms(times[times.len() - 1]),
        m.as_secs_f64() / dkg.as_secs_f64().max(1e-9)
    );
    cluster.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A `t/n` argument of `bench reshare`.
pub fn parse_shape(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{s:?} is not T/N (for example 3/5)");
    let (t, n) = s.split_once('/').ok_or_else(bad)?;
    let (t, n): (u16, u16) = (
        t.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if t < 2 || t > n {
        return Err(format!("{s}: need 2 <= T <= N"));
    }
    Ok((t, n))
}

/// Times `runs` reshares of a `from` key (t-of-n over nodes 1..=n) to `to` (over nodes
/// 1..=n') and back, on one in-process cluster of as many nodes as the larger set.
pub async fn reshare(from: (u16, u16), to: (u16, u16), runs: usize) -> Result<(), String> {
    if runs == 0 {
        return Err("need --runs >= 1".into());
    }
    let nodes = from.1.max(to.1);
    let dir = bench_dir("reshare");
    let cluster = start(nodes, &dir).await?;
    let t0 = Instant::now();
    cluster
        .keygen(1, "bench", Some(from.0), Some((1..=from.1).collect()))
        .await
        .map_err(|e| format!("DKG failed: {e}"))?;
    let dkg = t0.elapsed();
    println!(
        "DKG of the key: {:.2} ms ({}-of-{})",
        ms(dkg),
        from.0,
        from.1
    );
    let (mut forth, mut back) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for i in 0..runs {
        for ((t, n), times) in [(to, &mut forth), (from, &mut back)] {
            let t0 = Instant::now();
            let info = cluster
                .reshare(1, "bench", t, (1..=n).collect())
                .await
                .map_err(|e| format!("reshare {i} to {t}-of-{n} failed: {e}"))?;
            let dt = t0.elapsed();
            println!(
                "run {:>3}: {:>9.2} ms  to {t}-of-{n} (epoch {})",
                i + 1,
                ms(dt),
                info.epoch
            );
            times.push(dt);
        }
    }
    let (f, b) = (median(&mut forth), median(&mut back));
    println!(
        "reshare {}/{} -> {}/{}: median {:.2} ms, back {:.2} ms, over {runs} runs ({:.2}× and {:.2}× the DKG)",
        from.0,
        from.1,
        to.0,
        to.1,
        ms(f),
        ms(b),
        f.as_secs_f64() / dkg.as_secs_f64().max(1e-9),
        b.as_secs_f64() / dkg.as_secs_f64().max(1e-9)
    );
    cluster.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
