//! A listed participant acting as a malicious coordinator over a real connection, holding a
//! genuine client token (say, one it saw pass): it gets a signature share for a signing
//! package, then replays the same package. The node must refuse: its nonces for that session
//! are gone. (Without a token it gets nothing at all: `tests/client_auth.rs`.)

use std::collections::BTreeMap;

use frost_ed25519 as frost;
use frostnode::keystore::StoredKey;
use frostnode::wire::{self, Body, Envelope, ErrorKind, SessionId};

mod common;

use common::{Cluster, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_signing_package_is_refused() {
    let mut cluster = Cluster::start(3).await;
    let key = cluster.keygen(1, "k", Some(2), None).await.unwrap();
    let target = cluster.handle(1);
    let target_pid = target.peer_id();

    // Node 3 goes away; its identity and key share now speak through a raw swarm.
    let client = cluster.take_over(3, 1, 1 << 20).await;
    let stored: StoredKey = serde_json::from_slice(
        &std::fs::read(cluster.dir.path().join("node3/keys/k.json")).unwrap(),
    )
    .unwrap();

    // The coordinator's session id derives from the request id, as every signer checks.
    let request_id = SessionId([0x5a; 32]);
    let session = SessionId(frostnode::signing::election::session_id(&request_id.0, 3));
    let ask = |body: Body| {
        let client = client.clone();
        async move {
            let bytes = wire::encode(&Envelope::new(session, 3, body)).unwrap();
            let answer = client.request(target_pid, bytes).await.unwrap();
            wire::decode(&answer, 1 << 20).unwrap().body
        }
    };

    let gpk: [u8; 32] = hex::decode(&key.group_public_key)
        .unwrap()
        .try_into()
        .unwrap();

    // A listed peer may not speak for another node: the envelope must carry its own id.
    let impersonated = wire::encode(&Envelope::new(
        session,
        2,
        Body::CommitRequest {
            attempt: 0,
            key_id: "k".into(),
            group_public_key: gpk,
            epoch: 0,
            messages: vec![b"x".to_vec()],
            request_id,
            token: None,
        },
    ))
    .unwrap();
    let answer = client.request(target_pid, impersonated).await.unwrap();
    match wire::decode(&answer, 1 << 20).unwrap().body {
        Body::Refused { reason, .. } => {
            assert!(reason.contains("claims to come from node 2"), "{reason}")
        }
        other => panic!("impersonation must be refused, got {other:?}"),
    }
    // A commitment request for another group key under the same id is refused.
    match ask(Body::CommitRequest {
        attempt: 0,
        key_id: "k".into(),
        group_public_key: [9; 32],
        epoch: 0,
        messages: vec![b"x".to_vec()],
        request_id,
        token: cluster.token("k", b"x"),
    })
    .await
    {
        Body::Refused { kind, .. } => assert_eq!(kind, ErrorKind::KeyMismatch),
        other => panic!("expected a key mismatch, got {other:?}"),
    }

    let message = b"pay 1 coin".to_vec();
    let token = cluster.token("k", &message);
    let theirs = match ask(Body::CommitRequest {
        attempt: 0,
        key_id: "k".into(),
        group_public_key: gpk,
        epoch: 0,
        messages: vec![message.clone()],
        request_id,
        token: token.clone(),
    })
    .await
    {
        Body::Commitment { commitments, .. } => {
            frost::round1::SigningCommitments::deserialize(&commitments[0]).unwrap()
        }
        other => panic!("expected commitments, got {other:?}"),
    };
    let (_nonces, ours) =
        frost::round1::commit(stored.key_package.signing_share(), &mut rand::rngs::OsRng);
    let mut commitments = BTreeMap::new();
    commitments.insert(frost::Identifier::try_from(1u16).unwrap(), theirs);
    commitments.insert(frost::Identifier::try_from(3u16).unwrap(), ours);
    let package = frost::SigningPackage::new(commitments, &message)
        .serialize()
        .unwrap();
    let sign = Body::SignRequest {
        attempt: 0,
        signing_packages: vec![package],
    };

    match ask(sign.clone()).await {
        Body::Share { shares, .. } => {
            assert_eq!(shares.len(), 1);
            frost::round2::SignatureShare::deserialize(&shares[0]).unwrap();
        }
        other => panic!("expected a share, got {other:?}"),
    }
    match ask(sign).await {
        Body::Refused { reason, .. } => {
            assert!(reason.contains("already signed"), "{reason}");
        }
        other => panic!("a replay must be refused, got {other:?}"),
    }

    // A signing package for a message other than the committed one is refused as well.
    let _ = ask(Body::CommitRequest {
        attempt: 1,
        key_id: "k".into(),
        group_public_key: gpk,
        epoch: 0,
        messages: vec![b"pay 1 coin".to_vec()],
        request_id,
        token,
    })
    .await;
    let mut swapped = BTreeMap::new();
    swapped.insert(frost::Identifier::try_from(1u16).unwrap(), theirs);
    swapped.insert(frost::Identifier::try_from(3u16).unwrap(), ours);
    let forged = frost::SigningPackage::new(swapped, b"pay 1000 coins")
        .serialize()
        .unwrap();
    match ask(Body::SignRequest {
        attempt: 1,
        signing_packages: vec![forged],
    })
    .await
    {
        Body::Refused { reason, .. } => {
            assert!(
                reason.contains("differs") || reason.contains("commitment"),
                "{reason}"
            )
        }
        other => panic!("a package for another message must be refused, got {other:?}"),
    }
    client.shutdown();
    target
        .wait_ready_where(|r| !r.contains(&3), WAIT)
        .await
        .unwrap();

    // The two honest nodes still sign.
    let token = cluster.token("k", b"after");
    let r = target.sign("k", b"after".to_vec(), token).await.unwrap();
    assert_eq!(r.group_public_key, key.group_public_key);
    assert_eq!(r.signers, vec![1, 2]);
    cluster.shutdown().await;
}
