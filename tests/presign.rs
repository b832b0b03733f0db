//! Preprocessed nonces on real nodes (libp2p swarms on loopback): signatures through random
//! nodes, each checked by an independent verifier, most of them made in one network round;
//! pools and books within their bounds afterwards and throughout a minute of load; a signer restarted mid-run (its pools gone
//! with it) and the others carry on, every failure a retryable one; and the same cluster with
//! preprocessing off signs in two rounds.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Cluster;
use frostnode::localnet::LocalCluster;
use frostnode::node::NodeError;
use frostnode::wire::{ErrorKind, NodeId};

/// Signatures the cluster's nodes coordinated in one round and in two.
async fn rounds(cluster: &LocalCluster) -> (u64, u64) {
    let one = frostnode::bench::metric_sum_labelled(
        cluster,
        "frostnode_signatures_coordinated_total",
        "rounds=\"one\"",
    )
    .await;
    let two = frostnode::bench::metric_sum_labelled(
        cluster,
        "frostnode_signatures_coordinated_total",
        "rounds=\"two\"",
    )
    .await;
    (one, two)
}

/// Signs `count` messages labelled `label` through random nodes among `via`, `concurrency` at
/// a time; every signature is checked; returns the failures.
async fn sign_many(
    cluster: &Arc<Cluster>,
    gpk: &str,
    via: &[NodeId],
    count: usize,
    label: &str,
) -> Vec<(usize, NodeError)> {
    const CONCURRENCY: usize = 8;
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (cluster, next, gpk) = (cluster.clone(), next.clone(), gpk.to_string());
        let (via, label) = (via.to_vec(), label.to_string());
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= count {
                    return failures;
                }
                let message = format!("{label} {i}").into_bytes();
                let node = via[rand::random::<usize>() % via.len()];
                match cluster.sign(node, "k", &message).await {
                    Ok(r) => common::check_signature(&gpk, &message, &r),
                    Err(e) => failures.push((i, e)),
                }
            }
        }));
    }
    let mut failures = Vec::new();
    for w in workers {
        failures.extend(w.await.unwrap());
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_signatures_through_random_nodes_mostly_in_one_round() {
    let (cluster, gpk) = Cluster::with_key(5, 3).await;
    let cluster = Arc::new(cluster);
    let all: Vec<NodeId> = (1..=5).collect();
    let failures = sign_many(&cluster, &gpk, &all, 500, "payment").await;
    assert!(failures.is_empty(), "{failures:?}");
    let (one, two) = rounds(&cluster).await;
    eprintln!("{one} signatures in one round, {two} in two");
    assert_eq!(one + two, 500, "every signature counted once");
    assert!(
        one >= 400,
        "{one} of 500 in one round: preprocessed commitments were not used"
    );
    // Pools and books stay within their bounds: 32 per coordinator, and per signer.
    for id in 1..=5 {
        let status = cluster.handle(id).status().await.unwrap();
        assert!(
            status.presigned_nonces <= 4 * 32,
            "node {id} holds {} nonces",
            status.presigned_nonces
        );
        assert!(
            status.presigned_commitments.values().all(|&n| n <= 256),
            "node {id}: {:?}",
            status.presigned_commitments
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_and_books_stay_within_their_bounds_under_a_minute_of_load() {
    const LOAD: Duration = Duration::from_secs(60);
    let (cluster, gpk) = Cluster::with_key(5, 3).await;
    let cluster = Arc::new(cluster);
    let started = Instant::now();
    let load = {
        let (cluster, gpk) = (cluster.clone(), gpk.clone());
        tokio::spawn(async move {
            let all: Vec<NodeId> = (1..=5).collect();
            let mut signed = 0;
            let mut round = 0;
            while started.elapsed() < LOAD {
                let label = format!("load {round}");
                let failures = sign_many(&cluster, &gpk, &all, 64, &label).await;
                assert!(failures.is_empty(), "{failures:?}");
                signed += 64;
                round += 1;
            }
            signed
        })
    };
    // Every half second, each node's pools (nonces it issued, 32 per coordinator, 4 of them)
    // and book (commitments issued to it, at most what each signer's pool holds for it).
    let mut samples = 0;
    let mut most = (0, 0);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    while !load.is_finished() {
        tick.tick().await;
        for id in 1..=5 {
            let status = cluster.handle(id).status().await.unwrap();
            assert!(
                status.presigned_nonces <= 4 * 32,
                "node {id} holds {} nonces after {:?}",
                status.presigned_nonces,
                started.elapsed()
            );
            let book = status.presigned_commitments.values().max().copied();
            assert!(
                book.unwrap_or(0) <= 32,
                "node {id} holds {:?} after {:?}",
                status.presigned_commitments,
                started.elapsed()
            );
            most.0 = most.0.max(status.presigned_nonces);
            most.1 = most.1.max(book.unwrap_or(0));
        }
        samples += 1;
    }
    let signed = load.await.unwrap();
    let (one, two) = rounds(&cluster).await;
    eprintln!(
        "{signed} signatures in {:?} ({one} in one round, {two} in two); {samples} samples, \
         at most {} nonces in a node's pools and {} commitments of one signer in a book",
        started.elapsed(),
        most.0,
        most.1
    );
    assert!(samples >= 100, "sampled throughout the minute");
    assert!(one * 5 >= signed * 4, "{one} of {signed} in one round");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_signer_loses_its_pools_and_signing_carries_on() {
    let (cluster, gpk) = Cluster::with_key(5, 3).await;
    let failures = {
        let cluster = Arc::new(cluster);
        let failures = sign_many(&cluster, &gpk, &[1, 3, 4, 5], 60, "before").await;
        assert!(failures.is_empty(), "{failures:?}");
        Arc::try_unwrap(cluster).ok().expect("no other holder")
    };
    let mut cluster = failures;
    cluster.stop(2).await;
    cluster.restart(2).await.unwrap();
    cluster.wait_connected(common::WAIT).await.unwrap();
    let cluster = Arc::new(cluster);
    let failures = sign_many(&cluster, &gpk, &[1, 2, 3, 4, 5], 120, "after").await;
    for (i, e) in &failures {
        assert!(
            matches!(
                e.kind(),
                ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Busy
            ),
            "request {i} failed with a non-retryable error: {e}"
        );
    }
    assert!(
        failures.len() <= 12,
        "{} of 120 failed: {failures:?}",
        failures.len()
    );
    // The restarted node signs again: with its fresh pools, through itself.
    let r = cluster.sign(2, "k", b"node 2 is back").await.unwrap();
    common::check_signature(&gpk, b"node 2 is back", &r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_preprocessing_off_every_signature_takes_two_rounds() {
    let cluster = Cluster::start_with(3, |c| c.presign_per_coordinator = 0).await;
    let gpk = cluster
        .keygen(1, "k", Some(2), None)
        .await
        .unwrap()
        .group_public_key;
    let cluster = Arc::new(cluster);
    let failures = sign_many(&cluster, &gpk, &[1, 2, 3], 30, "two rounds").await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(rounds(&cluster).await, (0, 30));
    for id in 1..=3 {
        let status = cluster.handle(id).status().await.unwrap();
        assert_eq!(status.presigned_nonces, 0);
        assert!(status.presigned_commitments.is_empty());
    }
}
