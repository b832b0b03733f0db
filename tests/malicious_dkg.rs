//! Malicious DKG participants over real swarms: a node that equivocates in round 1 and a node
//! that hands out bad round-2 shares. The DKG aborts naming the culprit in the API error, the
//! culprit is counted, and no honest node keeps a key from the aborted session.

use std::time::Duration;

use frostnode::localnet::LocalCluster;
use frostnode::node::{DkgFaults, KeygenRequest, NodeError};

const WAIT: Duration = Duration::from_secs(60);

async fn keygen(c: &LocalCluster, via: u16, key_id: &str) -> Result<(), NodeError> {
    c.handle(via)
        .keygen(KeygenRequest {
            key_id: key_id.into(),
            threshold: Some(3),
            participants: None,
        })
        .await
        .map(|_| ())
}

async fn assert_no_key_anywhere(c: &LocalCluster, key_id: &str) {
    for h in c.handles() {
        assert!(
            h.get_key(key_id).await.unwrap().is_none(),
            "node {} kept a key from an aborted DKG",
            h.id()
        );
    }
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
    let dir = tempfile::tempdir().unwrap();
    let c = LocalCluster::start(4, dir.path()).await.unwrap();
    c.wait_connected(WAIT).await.unwrap();
    c.handle(3)
        .set_dkg_faults(DkgFaults {
            corrupt_round2: true,
            ..Default::default()
        })
        .await
        .unwrap();
    match keygen(&c, 1, "bad-shares").await {
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

    // Once node 3 behaves, the same key id works.
    c.handle(3)
        .set_dkg_faults(DkgFaults::default())
        .await
        .unwrap();
    keygen(&c, 1, "bad-shares").await.unwrap();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round1_equivocation_aborts_naming_the_sender() {
    let dir = tempfile::tempdir().unwrap();
    let c = LocalCluster::start(4, dir.path()).await.unwrap();
    c.wait_connected(WAIT).await.unwrap();
    c.handle(2)
        .set_dkg_faults(DkgFaults {
            equivocate_round1: true,
            ..Default::default()
        })
        .await
        .unwrap();
    match keygen(&c, 4, "two-faced").await {
        Err(NodeError::Aborted {
            culprits, message, ..
        }) => {
            assert!(culprits.contains(&2), "{message}");
            // Seen directly (two packages from node 2) or through another node's echo.
            assert!(
                message.contains("equivocated") || message.contains("different round-1 package"),
                "{message}"
            );
        }
        other => panic!("expected an abort naming node 2, got {other:?}"),
    }
    assert_no_key_anywhere(&c, "two-faced").await;
    assert!(caught(&c, 2).await >= 1);
    c.shutdown().await;
}
