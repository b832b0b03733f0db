//! DKGs over real swarms that lose broadcasts: every participant pulls what it lacks from the
//! sender by request-response, so a DKG no longer depends on every gossip delivery. A sender
//! that answers a pull with another package than it broadcast is named by the echo round.

mod common;

use std::time::Duration;

use common::Cluster;
use frostnode::node::{DkgFaults, NodeError};

/// The pulls every node of `c` made, from its `/metrics`.
async fn pulls(c: &Cluster) -> u64 {
    frostnode::bench::pulls(c).await
}

async fn assert_everyone_holds(c: &Cluster, key_id: &str, gpk: &str) {
    for h in c.handles() {
        let stored = h.get_key(key_id).await.unwrap();
        assert_eq!(
            stored.map(|k| k.group_public_key),
            Some(gpk.to_string()),
            "node {}",
            h.id()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dkg_that_loses_30_percent_of_its_broadcasts_completes_through_pulls() {
    let c = Cluster::start_with(7, |cfg| {
        cfg.dkg_timeout = Duration::from_secs(40);
    })
    .await;
    for h in c.handles() {
        h.set_dkg_faults(DkgFaults {
            drop_gossip_percent: 30,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let key = c.keygen(1, "lossy", Some(4), None).await.unwrap();
    assert_everyone_holds(&c, "lossy", &key.group_public_key).await;
    let pulled = pulls(&c).await;
    eprintln!("7 nodes, 30 % of broadcasts dropped: {pulled} pulls");
    assert!(pulled > 0, "messages were lost, so some were pulled");
    let r = c.sign(3, "lossy", b"after loss").await.unwrap();
    common::check_signature(&key.group_public_key, b"after loss", &r);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round1_broadcast_that_reaches_nobody_is_pulled() {
    let c = Cluster::start_with(4, |cfg| {
        cfg.dkg_timeout = Duration::from_secs(20);
    })
    .await;
    c.handle(3)
        .set_dkg_faults(DkgFaults {
            round1_only_to: Some(vec![]),
            ..Default::default()
        })
        .await
        .unwrap();
    let key = c.keygen(1, "unheard", Some(3), None).await.unwrap();
    assert_everyone_holds(&c, "unheard", &key.group_public_key).await;
    assert!(
        pulls(&c).await >= 3,
        "each other node pulled node 3's package"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_that_answers_pulls_with_another_package_is_named() {
    let c = Cluster::start_with(4, |cfg| {
        cfg.dkg_timeout = Duration::from_secs(20);
    })
    .await;
    // Node 4 shows its round-1 package to node 2 only, and hands every puller another one.
    c.handle(4)
        .set_dkg_faults(DkgFaults {
            round1_only_to: Some(vec![2]),
            equivocate_pulls: true,
            ..Default::default()
        })
        .await
        .unwrap();
    match c.keygen(1, "two-faced", Some(3), None).await {
        Err(NodeError::Aborted {
            culprits,
            reported_by,
            ..
        }) => {
            // The initiator names node 4 on its own evidence, or passes on the accusation of
            // the participant whose echo check caught it first.
            let named = culprits.contains(&4) || reported_by.values().any(|c| c.contains(&4));
            assert!(named, "node 4 named: {culprits:?}, {reported_by:?}");
            assert!(!culprits.contains(&1) && !culprits.contains(&3));
        }
        other => panic!("expected the DKG to abort naming node 4, got {other:?}"),
    }
    for h in c.handles() {
        assert!(h.get_key("two-faced").await.unwrap().is_none());
    }
    c.shutdown().await;
}
