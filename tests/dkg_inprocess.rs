//! DKG across real libp2p swarms on 127.0.0.1 (port 0), in one process.

mod common;

use common::{Cluster, WAIT};
use frostnode::node::NodeError;

async fn dkg_on_cluster(n: u16) {
    let cluster = Cluster::start(n).await;
    let info = tokio::time::timeout(WAIT, cluster.keygen(1, "main", None, None))
        .await
        .expect("DKG finishes in time")
        .expect("DKG succeeds");
    assert_eq!(info.participants, (1..=n).collect::<Vec<_>>());
    assert_eq!(
        info.threshold,
        frostnode::node::default_threshold(usize::from(n))
    );

    // The answer comes after every participant stored the key: no waiting needed here.
    for h in cluster.handles() {
        let k = h
            .get_key("main")
            .await
            .unwrap()
            .expect("key stored on every node");
        assert_eq!(k.group_public_key, info.group_public_key, "node {}", h.id());
        assert_eq!(k.verifying_shares, info.verifying_shares, "node {}", h.id());
    }
    // Each node's own share matches the verifying share everyone else recorded for it.
    for k in 1..=n {
        let path = cluster.dir.path().join(format!("node{k}/keys/main.json"));
        let stored: frostnode::keystore::StoredKey =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let share = hex::encode(stored.key_package.verifying_share().serialize().unwrap());
        assert_eq!(info.verifying_shares[&k], share, "node {k}");
        assert_eq!(stored.confirmations.len(), usize::from(n));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "key file mode");
        }
    }

    // The same id again is a conflict; a second key from another node works.
    let again = cluster.keygen(2, "main", None, None).await;
    assert!(matches!(again, Err(NodeError::Conflict(_))), "{again:?}");
    let second = cluster
        .keygen(n, "second", Some(2), Some(vec![1, n]))
        .await
        .unwrap();
    assert_ne!(second.group_public_key, info.group_public_key);
    assert!(cluster.handle(2).get_key("second").await.unwrap().is_none());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_agree_on_a_group_key() {
    dkg_on_cluster(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_agree_on_a_group_key() {
    dkg_on_cluster(5).await;
}
