//! Malicious DKG participants over real swarms: a node that hands out bad round-2 shares, a
//! node that equivocates in round 1, a node that completes the DKG honestly but forges a
//! failure report, and a node that shows its confirmation to some participants only (every
//! honest node still ends with the key, through the certificate). Misbehaviour the initiator sees itself aborts the DKG naming the culprit in
//! the API error, the culprit is counted, and no honest node keeps a key from the aborted
//! session; a forged report changes nothing.

mod common;

use common::Cluster;
use frostnode::localnet::LocalCluster;
use frostnode::node::{DkgFaults, NodeError};

async fn assert_no_key_anywhere(c: &LocalCluster, key_id: &str) {
    for h in c.handles() {
        assert!(
            h.get_key(key_id).await.unwrap().is_none(),
            "node {} kept a key from an aborted DKG",
            h.id()
        );
    }
}

/// Waits until no node runs a DKG or signing session (nodes are polled: no event says so).
async fn wait_idle(c: &LocalCluster) {
    tokio::time::timeout(common::WAIT, async {
        loop {
            let mut busy = 0;
            for h in c.handles() {
                busy += h.status().await.unwrap().active_sessions;
            }
            if busy == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("every session ends");
}

async fn caught(c: &LocalCluster, culprit: u16) -> u64 {
    let mut n = 0;
    for h in c.handles() {
        if h.id() != culprit {
            n += h
                .status()
                .await
                .unwrap()
                .culprits
                .get(&culprit)
                .copied()
                .unwrap_or(0);
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_round2_shares_abort_naming_the_sender() {
    let c = Cluster::start(4).await;
    // Node 3 hands the initiator (node 1) a bad share: node 1 catches it itself, the others
    // follow its abort.
    c.handle(3)
        .set_dkg_faults(DkgFaults {
            corrupt_round2: true,
            only_to: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    match c.keygen(1, "bad-shares", Some(3), None).await {
        Err(NodeError::Aborted {
            culprits, message, ..
        }) => {
            assert_eq!(culprits, vec![3], "{message}");
            assert!(
                message.contains("node 3 sent an invalid secret share"),
                "{message}"
            );
        }
        other => panic!("expected an abort naming node 3, got {other:?}"),
    }
    assert_no_key_anywhere(&c, "bad-shares").await;
    assert!(
        caught(&c, 3).await >= 1,
        "the detecting nodes counted node 3"
    );

    // Once node 3 behaves, the same key id works, as soon as every node has let the failed
    // session go (a node whose confirmation was out waits a moment for a certificate).
    c.handle(3)
        .set_dkg_faults(DkgFaults::default())
        .await
        .unwrap();
    wait_idle(&c).await;
    c.keygen(1, "bad-shares", Some(3), None).await.unwrap();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round1_equivocation_aborts_naming_the_sender() {
    let c = Cluster::start(4).await;
    c.handle(2)
        .set_dkg_faults(DkgFaults {
            equivocate_round1: true,
            ..Default::default()
        })
        .await
        .unwrap();
    // The initiator (node 4) and the equivocator are the only participants, so the initiator
    // sees both of node 2's packages itself.
    match c.keygen(4, "two-faced", Some(2), Some(vec![2, 4])).await {
        Err(NodeError::Aborted {
            culprits, message, ..
        }) => {
            assert!(culprits.contains(&2), "{message}");
            assert!(message.contains("equivocated"), "{message}");
        }
        other => panic!("expected an abort naming node 2, got {other:?}"),
    }
    assert_no_key_anywhere(&c, "two-faced").await;
    assert!(caught(&c, 2).await >= 1);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_failure_report_does_not_fail_a_confirmed_dkg() {
    let c = Cluster::start(4).await;
    // Node 2 takes part honestly, stores the key, then tells the initiator the DKG failed
    // because node 3 cheated.
    c.handle(2)
        .set_dkg_faults(DkgFaults {
            forge_failure_blaming: Some(3),
            ..Default::default()
        })
        .await
        .unwrap();
    let info = c
        .keygen(1, "forged", Some(3), None)
        .await
        .expect("the initiator verified every confirmation: the DKG succeeded");
    for h in c.handles() {
        let k = h.get_key("forged").await.unwrap();
        assert_eq!(
            k.map(|k| k.group_public_key),
            Some(info.group_public_key.clone()),
            "node {} holds the key",
            h.id()
        );
    }
    assert_eq!(
        caught(&c, 3).await,
        0,
        "nobody counts node 3 on node 2's word"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_abort_names_no_culprit_but_says_who_reported_it() {
    let c = Cluster::start(4).await;
    // Node 3 hands node 2 (not the initiator) a bad share: node 2 aborts naming node 3, and the
    // initiator, which only saw node 2's abort, passes that on as node 2's report.
    c.handle(3)
        .set_dkg_faults(DkgFaults {
            corrupt_round2: true,
            only_to: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    match c.keygen(1, "hearsay", Some(3), None).await {
        Err(NodeError::Aborted {
            culprits,
            reported_by,
            message,
            ..
        }) => {
            assert!(culprits.is_empty(), "{message}");
            assert_eq!(reported_by.get(&2), Some(&vec![3]), "{message}");
        }
        other => panic!("expected an abort reported by node 2, got {other:?}"),
    }
    assert_no_key_anywhere(&c, "hearsay").await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withheld_confirmation_still_leaves_the_key_on_every_honest_node() {
    // Short deadlines: without the certificate the withheld nodes would time out, not hang.
    let c = Cluster::start_with(5, |cfg| {
        cfg.dkg_timeout = std::time::Duration::from_secs(15);
    })
    .await;
    // Node 5 shows its confirmation to nodes 3 and 4 only, and sends no certificate: nodes 1
    // and 2 (node 1 initiates) never see it directly.
    c.handle(5)
        .set_dkg_faults(DkgFaults {
            confirm_only_to: Some(vec![3, 4]),
            ..Default::default()
        })
        .await
        .unwrap();
    let key = c.keygen(1, "all-or-none", Some(3), None).await.unwrap();
    for h in c.handles() {
        let stored = h.get_key("all-or-none").await.unwrap();
        let stored = stored.unwrap_or_else(|| panic!("node {} has no key", h.id()));
        assert_eq!(
            stored.group_public_key,
            key.group_public_key,
            "node {}",
            h.id()
        );
    }
    // The key signs through the nodes that only saw node 5's confirmation in a certificate.
    let r = c.sign(2, "all-or-none", b"complete").await.unwrap();
    common::check_signature(&key.group_public_key, b"complete", &r);

    // Shown to node 4 alone: every honest node still ends with the key.
    c.handle(5)
        .set_dkg_faults(DkgFaults {
            confirm_only_to: Some(vec![4]),
            ..Default::default()
        })
        .await
        .unwrap();
    let key = c.keygen(2, "all-or-none-2", Some(3), None).await.unwrap();
    for id in 1..=4u16 {
        let stored = c.handle(id).get_key("all-or-none-2").await.unwrap();
        assert_eq!(
            stored.map(|k| k.group_public_key),
            Some(key.group_public_key.clone()),
            "node {id}"
        );
    }
    c.shutdown().await;
}
