//! Keys that outlive their shares, on real nodes: a key is refreshed while signatures are
//! requested without pause, and a member is removed by a refresh without it. The group key
//! never changes; the old epoch's files are gone from every store.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::Cluster;
use frost_ed25519 as frost;
use frostnode::keystore::StoredKey;
use frostnode::localnet::LocalCluster;
use frostnode::node::NodeError;
use frostnode::wire::{ErrorKind, NodeId};

/// Node `id`'s key file for `key_id`, read from its data directory.
fn key_file(dir: &Path, id: NodeId, key_id: &str) -> StoredKey {
    let path = dir.join(format!("node{id}/keys/{key_id}.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// Whether a failed signing request is one a client should simply retry.
fn retryable(e: &NodeError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Busy
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_refreshed_while_signing_keeps_signing_under_the_same_group_key() {
    let (cluster, gpk) = Cluster::with_key(5, 3).await;
    let cluster = Arc::new(cluster);
    let before: Vec<StoredKey> = (1..=5)
        .map(|id| key_file(cluster.dir.path(), id, "k"))
        .collect();
    assert!(before
        .iter()
        .all(|k| k.epoch == 0 && k.group_commitment.len() == 3));

    const REQUESTS: usize = 200;
    const CONCURRENCY: usize = 8;
    let done = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (cluster, done, next, gpk) = (cluster.clone(), done.clone(), next.clone(), gpk.clone());
        workers.push(tokio::spawn(async move {
            let mut results = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= REQUESTS {
                    return results;
                }
                let message = format!("payment {i}").into_bytes();
                let via = (i % 5) as NodeId + 1;
                let result = cluster.sign(via, "k", &message).await;
                if let Ok(r) = &result {
                    common::check_signature(&gpk, &message, r);
                }
                done.fetch_add(1, Ordering::SeqCst);
                results.push((i, result.map(|r| r.coordinator)));
            }
        }));
    }
    // Refresh once signing is well under way.
    while done.load(Ordering::SeqCst) < 20 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let refreshed = cluster.refresh(2, "k", None).await.unwrap();
    let during = done.load(Ordering::SeqCst);
    assert_eq!(
        refreshed.group_public_key, gpk,
        "the group key never changes"
    );
    assert_eq!(refreshed.epoch, 1);
    assert_eq!(refreshed.participants, vec![1, 2, 3, 4, 5]);

    let mut failures = Vec::new();
    let mut ok = 0;
    for w in workers {
        for (i, result) in w.await.unwrap() {
            match result {
                Ok(_) => ok += 1,
                Err(e) => failures.push((i, e)),
            }
        }
    }
    eprintln!(
        "{ok} signed, {} failed, refresh done after {during}",
        failures.len()
    );
    for (i, e) in &failures {
        assert!(
            retryable(e),
            "request {i} failed with a non-retryable error: {e}"
        );
    }
    assert!(
        during < REQUESTS,
        "the refresh ended after every signature ({during} done): it did not overlap signing"
    );
    assert!(
        ok >= REQUESTS * 9 / 10,
        "{ok} of {REQUESTS} signed; failures: {failures:?}"
    );

    // Every store holds epoch 1 alone: the old shares are gone from disk.
    for id in 1..=5 {
        let after = key_file(cluster.dir.path(), id, "k");
        assert_eq!(after.epoch, 1, "node {id}");
        assert_eq!(after.group_public_key, gpk);
        assert_ne!(
            after.key_package.signing_share(),
            before[usize::from(id) - 1].key_package.signing_share(),
            "node {id}'s share was renewed"
        );
        let info = cluster.handle(id).get_key("k").await.unwrap().unwrap();
        assert_eq!(info.epoch, 1);
    }
    // And the new epoch signs through every node.
    for via in 1..=5 {
        let message = format!("after the refresh, via {via}").into_bytes();
        let r = cluster.sign(via, "k", &message).await.unwrap();
        common::check_signature(&gpk, &message, &r);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_removed_by_a_refresh_cannot_sign_with_the_others() {
    let (cluster, gpk) = Cluster::with_key(5, 3).await;
    let old_five = key_file(cluster.dir.path(), 5, "k");
    let info = cluster
        .refresh(1, "k", Some(vec![1, 2, 3, 4]))
        .await
        .unwrap();
    assert_eq!(info.participants, vec![1, 2, 3, 4]);
    assert_eq!(info.group_public_key, gpk);
    assert!(!info.verifying_shares.contains_key(&5));

    // Node 5's old share with the new shares of any two others yields no signature.
    let new: BTreeMap<NodeId, StoredKey> = (1..=4)
        .map(|id| (id, key_file(cluster.dir.path(), id, "k")))
        .collect();
    let five = frost::Identifier::try_from(5u16).unwrap();
    let pkp = &new[&1].public_key_package;
    let mut shares = pkp.verifying_shares().clone();
    shares.insert(five, *old_five.key_package.verifying_share());
    let mixed = frost::keys::PublicKeyPackage::new(shares, *pkp.verifying_key(), Some(3));
    let message = b"node 5 tries";
    for (a, b) in [(1, 2), (1, 4), (2, 3), (3, 4)] {
        let signers = [
            &old_five.key_package,
            &new[&a].key_package,
            &new[&b].key_package,
        ];
        assert!(
            common::frost_sign(&signers, &mixed, message).is_err(),
            "old share of 5 with new shares of {a} and {b} made a signature"
        );
    }

    // The cluster signs without node 5, through every remaining node.
    for via in 1..=4 {
        let message = format!("without node 5, via {via}").into_bytes();
        let r = cluster.sign(via, "k", &message).await.unwrap();
        common::check_signature(&gpk, &message, &r);
        assert!(!r.signers.contains(&5), "{:?}", r.signers);
    }
    // A refresh that names a node holding no share is refused before anything runs.
    let err = cluster
        .refresh(1, "k", Some(vec![1, 2, 3, 5]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadRequest, "{err}");
    assert!(err.to_string().contains("5"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_key_file_is_repaired_and_its_node_signs_again() {
    let (mut cluster, gpk) = Cluster::with_key(5, 3).await;
    let before = key_file(cluster.dir.path(), 3, "k");
    cluster.stop(3).await;
    std::fs::remove_file(cluster.dir.path().join("node3/keys/k.json")).unwrap();
    cluster.restart(3).await.unwrap();
    cluster.wait_connected(common::WAIT).await.unwrap();
    assert!(cluster.handle(3).get_key("k").await.unwrap().is_none());

    // A node cannot repair itself, and a repair needs every participant of the key: node 2's
    // share cannot be rebuilt while node 3 holds none.
    let err = cluster.repair(3, "k", 3, false).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let err = cluster
        .repair(1, "k", 2, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no key \"k\" on node 3") || err.contains("node 2 holds a share"),
        "{err}"
    );

    let info = cluster.repair(1, "k", 3, false).await.unwrap();
    assert_eq!(info.epoch, 1);
    assert_eq!(info.group_public_key, gpk);
    assert_eq!(info.participants, vec![1, 2, 3, 4, 5]);
    let after = key_file(cluster.dir.path(), 3, "k");
    assert_eq!(
        after.key_package.signing_share(),
        before.key_package.signing_share(),
        "node 3 holds the share it lost"
    );
    for id in 1..=5 {
        assert_eq!(key_file(cluster.dir.path(), id, "k").epoch, 1, "node {id}");
    }
    // A node that holds its share has nothing to repair.
    let err = cluster.repair(1, "k", 2, false).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    // With nodes 4 and 5 stopped, every signature needs node 3.
    cluster.stop(4).await;
    cluster.stop(5).await;
    for via in 1..=3 {
        let message = format!("node 3 is back, via {via}").into_bytes();
        let r = cluster.sign(via, "k", &message).await.unwrap();
        common::check_signature(&gpk, &message, &r);
        assert_eq!(r.signers, vec![1, 2, 3]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_configured_later_is_picked_up_by_reload_enrolled_and_signs() {
    // Nodes 1-5 do not know node 6 yet; node 6 knows them (and is refused until they do).
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start_with(6, dir.path(), |c| {
        if c.id <= 5 {
            c.peers.retain(|p| p.id != 6);
        }
    })
    .await
    .unwrap();
    for id in 1..=5 {
        let others: Vec<NodeId> = (1..=5).filter(|&o| o != id).collect();
        cluster
            .handle(id)
            .wait_ready_where(|r| others.iter().all(|o| r.contains(o)), common::WAIT)
            .await
            .unwrap();
    }
    let gpk = cluster
        .keygen(1, "k", Some(3), Some(vec![1, 2, 3, 4, 5]))
        .await
        .unwrap()
        .group_public_key;
    // An enrolment before the others know node 6 is refused.
    let err = cluster.repair(2, "k", 6, true).await.unwrap_err();
    assert!(err.to_string().contains('6'), "{err}");

    let six = frostnode::config::Peer {
        id: 6,
        peer_id: cluster.handle(6).peer_id(),
        addr: cluster.p2p_addrs()[5].clone(),
    };
    for id in 1..=5 {
        let mut config = cluster.config(id).clone();
        config.peers.push(six.clone());
        let report = cluster.handle(id).reload(Some(config)).await.unwrap();
        assert_eq!(report.added, vec![6], "node {id}");
        assert!(report.removed.is_empty() && report.changed.is_empty());
    }
    cluster.wait_connected(common::WAIT).await.unwrap();

    let info = cluster.repair(2, "k", 6, true).await.unwrap();
    assert_eq!(info.participants, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(info.group_public_key, gpk);
    let share = info
        .verifying_shares
        .get(&6)
        .expect("node 6's verifying share")
        .clone();
    for id in 1..=6 {
        let k = cluster.handle(id).get_key("k").await.unwrap().unwrap();
        assert_eq!(k.epoch, 1, "node {id}");
        assert_eq!(k.verifying_shares.get(&6), Some(&share), "node {id}");
    }
    for id in [3, 4, 5] {
        cluster.stop(id).await;
    }
    let message = b"node 6 signs with 1 and 2";
    let r = cluster.sign(6, "k", message).await.unwrap();
    common::check_signature(&gpk, message, &r);
    assert_eq!(r.signers, vec![1, 2, 6]);

    // A peer removed by a reload is disconnected and refused.
    let mut config = cluster.config(1).clone();
    config.peers.retain(|p| p.id != 2);
    config.peers.push(six);
    let report = cluster.handle(1).reload(Some(config)).await.unwrap();
    assert_eq!(report.removed, vec![2]);
    common::wait_gone(&cluster.handle(1), &[2]).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_repair_value_is_refused_and_nothing_is_written() {
    let (mut cluster, gpk) = Cluster::with_key(4, 3).await;
    cluster.stop(4).await;
    std::fs::remove_file(cluster.dir.path().join("node4/keys/k.json")).unwrap();
    cluster.restart(4).await.unwrap();
    cluster.wait_connected(common::WAIT).await.unwrap();
    // The helpers are nodes 1-3 (t = 3 of the 3 others); node 2 lies to the target.
    let lie = frostnode::node::DkgFaults {
        corrupt_repair: true,
        ..Default::default()
    };
    cluster.handle(2).set_dkg_faults(lie).await.unwrap();
    let err = cluster.repair(1, "k", 4, false).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("[1, 2, 3]"),
        "the error names the helpers: {text}"
    );
    assert!(
        !cluster.dir.path().join("node4/keys/k.json").exists(),
        "no file written"
    );
    for id in 1..=3 {
        let k = key_file(cluster.dir.path(), id, "k");
        assert_eq!(k.epoch, 0, "node {id} stays at epoch 0");
        assert_eq!(k.group_public_key, gpk);
    }
    // Honest helpers repair it.
    cluster
        .handle(2)
        .set_dkg_faults(Default::default())
        .await
        .unwrap();
    let info = cluster.repair(1, "k", 4, false).await.unwrap();
    assert_eq!(info.epoch, 1);
    assert!(cluster.dir.path().join("node4/keys/k.json").exists());
}
