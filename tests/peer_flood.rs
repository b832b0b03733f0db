//! A listed peer (a real swarm with node 3's identity) that floods node 1 with requests it must
//! refuse, as fast as it can for ten seconds (above the per-peer rate limit): node 1 keeps
//! signing with node 2, refuses the excess unread, and its log holds a bounded number of lines
//! about node 3.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{check_signature, Captured, Cluster};
use frostnode::node::ratelimit::{BURST_SECONDS, LOG_LINES_PER_WINDOW};
use frostnode::wire::{self, Body, Envelope, ErrorKind, SessionId};

/// How long node 3 floods.
const FLOOD: Duration = Duration::from_secs(10);
/// Requests node 3 keeps in flight.
const LANES: u8 = 32;
/// Node 1's limit per peer: below what the flood reaches even on a slow machine, so the test
/// sees the excess refused (the default, 5,000/s, is more than a debug build on two shared
/// cores can send).
const LIMIT: u32 = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_peer_neither_starves_the_others_nor_fills_the_log() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let mut c = Cluster::start_with(3, |cfg| {
        if cfg.id == 1 {
            cfg.peer_requests_per_second = LIMIT;
        }
    })
    .await;
    let key = c.keygen(1, "k", Some(2), Some(vec![1, 2])).await.unwrap();
    let target = c.handle(1).peer_id();
    let flooder = c.take_over(3, 1, 1 << 20).await;
    let before = captured.text().lines().count();

    // Commitment requests without a client token: each one is refused (and would be logged).
    let sent = Arc::new(AtomicU64::new(0));
    let limited = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + FLOOD;
    let mut floods = Vec::new();
    for lane in 0..LANES {
        let flooder = flooder.clone();
        let sent = sent.clone();
        let limited = limited.clone();
        floods.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < until {
                let request_id = SessionId([lane; 32]);
                let session = SessionId(frostnode::signing::election::session_id(&request_id.0, 3));
                let body = Body::CommitRequest {
                    attempt: (i % 200) as u8,
                    key_id: "k".into(),
                    group_public_key: [0; 32],
                    epoch: 0,
                    messages: vec![i.to_be_bytes().to_vec()],
                    request_id,
                    token: None,
                };
                let bytes = wire::encode(&Envelope::new(session, 3, body)).unwrap();
                let answer = flooder.request(target, bytes).await;
                let rate_limited = answer.ok().and_then(|b| wire::decode(&b, 1 << 20).ok()).is_some_and(|env| {
                    matches!(env.body, Body::Refused { kind: ErrorKind::Busy, ref reason } if reason.contains("rate"))
                });
                if rate_limited {
                    limited.fetch_add(1, Ordering::Relaxed);
                }
                sent.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    // Meanwhile node 1 signs with node 2, through either node.
    let mut signed = 0;
    while Instant::now() < until {
        let via = signed % 2 + 1;
        let m = format!("during the flood {signed}").into_bytes();
        let r = tokio::time::timeout(common::WAIT, c.sign(via, "k", &m))
            .await
            .expect("signing answers during the flood")
            .unwrap_or_else(|e| panic!("signing via node {via}: {e}"));
        check_signature(&key.group_public_key, &m, &r);
        signed += 1;
    }
    for f in floods {
        f.await.unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    let sent = sent.load(Ordering::Relaxed);
    let limited = limited.load(Ordering::Relaxed);
    let text = captured.text();
    let about_3: Vec<&str> = text
        .lines()
        .skip(before)
        .filter(|l| l.contains("coordinator=3") || l.contains("peer=3"))
        .collect();
    eprintln!(
        "{sent} requests from node 3 in {seconds:.1} s ({:.0}/s), {limited} refused by the rate limit, \
         {signed} signatures meanwhile, {} log lines about node 3",
        sent as f64 / seconds,
        about_3.len()
    );
    // Everything beyond the burst and the steady rate was refused unread.
    let allowed = f64::from(LIMIT) * (BURST_SECONDS + seconds);
    assert!(
        sent as f64 > 1.2 * allowed,
        "the flood was a flood: {sent} requests, {allowed:.0} allowed"
    );
    assert!(signed > 0);
    assert!(
        limited as f64 >= sent as f64 - allowed * 1.1,
        "{sent} requests in {seconds:.1} s, at most {allowed:.0} allowed, only {limited} refused by the limit"
    );
    // Two windows (10 s) of at most LOG_LINES_PER_WINDOW lines per kind of warning, and
    // their summaries.
    assert!(
        about_3.len() <= 2 * (2 * LOG_LINES_PER_WINDOW as usize + 2),
        "{} lines about node 3:\n{}",
        about_3.len(),
        about_3.join("\n")
    );
    flooder.shutdown();
    c.shutdown().await;
}
