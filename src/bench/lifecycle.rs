//! `frostnode bench refresh` and `bench repair`: the key lifecycle on an in-process cluster,
//! each measured against the DKG that made the key (same nodes, same threshold, same run).

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
