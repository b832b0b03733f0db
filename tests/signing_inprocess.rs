//! Threshold signing across real libp2p swarms on 127.0.0.1, in one process: elected
//! coordinators, failover, stopped and hung nodes, a cheating signer, concurrency, and
//! signatures checked by verifiers outside this crate. Tests that need a given coordinator
//! choose their request ids (`common::request_ids_where`) instead of relying on chance.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::Command;
use std::time::Duration;

use common::{check_signature as check, request_ids_where, wait_gone, Cluster};
use frostnode::node::NodeError;
use rand::Rng;

const ALL: [u16; 5] = [1, 2, 3, 4, 5];

/// Checks (public key, message, signature) triples with Python `cryptography` and with
/// OpenSSL, whichever are installed (at least one must be). Returns the verdicts.
fn external_verify(items: &[(String, Vec<u8>, String)]) -> Vec<bool> {
    let dir = tempfile::tempdir().unwrap();
    let mut python: Option<Vec<bool>> = None;
    let mut openssl: Option<Vec<Option<bool>>> = None;

    let has_python = Command::new("python3")
        .args(["-c", "import cryptography"])
        .status()
        .is_ok_and(|s| s.success());
    if has_python {
        let input = dir.path().join("items.txt");
        let mut f = std::fs::File::create(&input).unwrap();
        for (pk, msg, sig) in items {
            writeln!(f, "{pk} {} {sig}", hex::encode(msg)).unwrap();
        }
        let script = r#"
import sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.exceptions import InvalidSignature
for line in open(sys.argv[1]):
    pk, msg, sig = line.rstrip("\n").split(" ")  # msg may be empty
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(pk)).verify(bytes.fromhex(sig), bytes.fromhex(msg))
        print("valid")
    except InvalidSignature:
        print("invalid")
"#;
        let out = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&input)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        python = Some(
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .map(|l| l == "valid")
                .collect(),
        );
    }

    let has_openssl = Command::new("openssl").arg("version").output().is_ok();
    if has_openssl {
        let mut v = Vec::new();
        for (i, (pk, msg, sig)) in items.iter().enumerate() {
            // OpenSSL 3.0's `pkeyutl -rawin` cannot read an empty input; take Python's verdict.
            if msg.is_empty() {
                v.push(None);
                continue;
            }
            let der = frostnode::client::ed25519_public_key_der(
                &hex::decode(pk).unwrap().try_into().unwrap(),
            );
            let der_path = dir.path().join(format!("pk{i}.der"));
            let msg_path = dir.path().join(format!("m{i}.bin"));
            let sig_path = dir.path().join(format!("s{i}.bin"));
            std::fs::write(&der_path, der).unwrap();
            std::fs::write(&msg_path, msg).unwrap();
            std::fs::write(&sig_path, hex::decode(sig).unwrap()).unwrap();
            let out = Command::new("openssl")
                .args([
                    "pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-rawin", "-inkey",
                ])
                .arg(&der_path)
                .arg("-in")
                .arg(&msg_path)
                .arg("-sigfile")
                .arg(&sig_path)
                .output()
                .unwrap();
            if !out.status.success() {
                eprintln!(
                    "openssl rejects item {i} ({} byte message): {}",
                    msg.len(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            v.push(Some(out.status.success()));
        }
        openssl = Some(v);
    }
    match (python, openssl) {
        (Some(p), Some(o)) => {
            for (i, (pv, ov)) in p.iter().zip(&o).enumerate() {
                if let Some(ov) = ov {
                    assert_eq!(pv, ov, "python and openssl disagree on item {i}");
                }
            }
            p
        }
        (Some(p), None) => p,
        (None, Some(o)) => o.into_iter().map(|v| v.unwrap_or(true)).collect(),
        (None, None) => panic!("python3 with `cryptography` or openssl must be installed"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_messages_through_random_nodes_verify_everywhere() {
    let (c, gpk) = Cluster::with_key(5, 3).await;
    let mut rng = rand::thread_rng();
    let mut items = Vec::new();
    let mut coordinators = BTreeSet::new();
    // Ten request ids electing each node in turn.
    let mut ids = Vec::new();
    for first in ALL {
        ids.extend(request_ids_where(
            &ALL,
            u64::from(first) << 32,
            10,
            |rank| rank[0] == first,
        ));
    }
    for (i, request_id) in ids.into_iter().enumerate() {
        let len = if i == 0 { 0 } else { rng.gen_range(0..300) };
        let message: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let via: u16 = rng.gen_range(1..=5);
        let r = c
            .handle(via)
            .sign_with_request_id("k", message.clone(), request_id, c.token("k", &message))
            .await
            .unwrap_or_else(|e| panic!("request {i} via node {via}: {e}"));
        check(&gpk, &message, &r);
        assert_eq!(r.signers.len(), 3);
        assert_eq!(
            r.coordinator,
            frostnode::signing::election::rank(&request_id.0, &ALL)[0],
            "the highest-ranked node coordinates"
        );
        assert!(
            r.signers.contains(&r.coordinator),
            "the coordinator signs first"
        );
        coordinators.insert(r.coordinator);
        items.push((gpk.clone(), message, r.signature));
    }
    assert_eq!(coordinators.len(), 5, "every node coordinated");

    // A tampered signature must be refused by the same verifiers: they really check.
    let (pk, msg, sig) = items[0].clone();
    let mut bad = hex::decode(&sig).unwrap();
    bad[10] ^= 0x40;
    items.push((pk, msg, hex::encode(bad)));
    let verdicts = external_verify(&items);
    assert_eq!(verdicts.len(), 51);
    assert!(
        verdicts[..50].iter().all(|v| *v),
        "every signature verifies externally"
    );
    assert!(
        !verdicts[50],
        "the tampered signature is rejected externally"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stopped_nodes_still_sign_three_give_503() {
    let (mut c, gpk) = Cluster::with_key(5, 3).await;
    c.stop(4).await;
    c.stop(5).await;
    for id in 1..=3 {
        wait_gone(&c.handle(id), &[4, 5]).await;
    }
    for via in 1..=3 {
        let r = c
            .handle(via)
            .sign("k", b"still here".to_vec(), c.token("k", b"still here"))
            .await
            .unwrap();
        check(&gpk, b"still here", &r);
        assert!(r.signers.iter().all(|s| *s <= 3));
    }
    c.stop(3).await;
    wait_gone(&c.handle(1), &[3]).await;
    let token = c.token("k", b"no quorum");
    match c.handle(1).sign("k", b"no quorum".to_vec(), token).await {
        Err(NodeError::Unavailable { message, missing }) => {
            assert!(
                message.contains("only 2 of 5 participants reachable; 3 are needed"),
                "{message}"
            );
            assert_eq!(missing, vec![3, 4, 5]);
        }
        other => panic!("expected 503, got {other:?}"),
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_node_is_skipped_as_coordinator_and_as_signer() {
    // Short deadlines so that waiting out a hung node takes seconds, not minutes.
    let c = Cluster::start_with(5, |cfg| {
        cfg.request_timeout = Duration::from_secs(4);
        cfg.sign_timeout = Duration::from_millis(2400);
    })
    .await;
    let gpk = c
        .keygen(1, "k", Some(3), None)
        .await
        .unwrap()
        .group_public_key;
    // Node 2 keeps its connections and takes every request, but never answers. Twenty requests
    // elect it as coordinator (they must fail over to the next in the ranking); twenty others
    // rank it second, so their coordinator asks it to sign (it must be replaced).
    c.handle(2).set_unresponsive(true).await.unwrap();
    let elect_2 = request_ids_where(&ALL, 0, 20, |rank| rank[0] == 2);
    let ask_2 = request_ids_where(&ALL, 1 << 40, 20, |rank| rank[1] == 2);
    let mut tasks = Vec::new();
    for (i, request_id) in elect_2.into_iter().chain(ask_2).enumerate() {
        let via = [1u16, 3, 4, 5][i % 4];
        let h = c.handle(via);
        let admin = c.admin().clone();
        tasks.push(tokio::spawn(async move {
            let m = format!("failover {i}").into_bytes();
            let token = Some(admin.sign_token("k", &m));
            let r = h
                .sign_with_request_id("k", m.clone(), request_id, token)
                .await;
            (via, request_id, m, r)
        }));
    }
    for t in tasks {
        let (via, request_id, m, r) = t.await.unwrap();
        let r = r.unwrap_or_else(|e| panic!("request via node {via}: {e}"));
        check(&gpk, &m, &r);
        let rank = frostnode::signing::election::rank(&request_id.0, &ALL);
        let expected = if rank[0] == 2 { rank[1] } else { rank[0] };
        assert_eq!(
            r.coordinator, expected,
            "the best responsive node coordinates"
        );
        assert!(!r.signers.contains(&2));
    }
    assert!(
        c.handle(2).ready_peers().len() == 4,
        "the hung node stayed connected"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_stopped_with_requests_in_flight() {
    let (mut c, gpk) = Cluster::with_key(5, 3).await;
    let h1 = c.handle(1);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let h = h1.clone();
        let admin = c.admin().clone();
        tasks.push(tokio::spawn(async move {
            let m = format!("in flight {i}").into_bytes();
            let token = Some(admin.sign_token("k", &m));
            (m.clone(), h.sign("k", m, token).await)
        }));
    }
    c.stop(2).await;
    let mut ok = 0;
    for t in tasks {
        let (m, r) = t.await.unwrap();
        match r {
            Ok(r) => {
                check(&gpk, &m, &r);
                ok += 1;
            }
            // A clean, typed failure is acceptable; a wrong signature never is.
            Err(NodeError::Unavailable { .. }) | Err(NodeError::Timeout { .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert!(ok > 0, "requests complete through failover");
    for i in 0..10 {
        let m = format!("after {i}").into_bytes();
        let r = h1.sign("k", m.clone(), c.token("k", &m)).await.unwrap();
        check(&gpk, &m, &r);
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_share_is_named_counted_and_signing_succeeds() {
    let (c, gpk) = Cluster::with_key(5, 3).await;
    c.handle(3).corrupt_signature_shares(true).await.unwrap();
    // Node 3 is among the first three of the ranking for every request: each coordinator asks
    // it for a share (node 3 itself when it coordinates) and must catch it.
    let ids = request_ids_where(&ALL, 0, 20, |rank| rank[..3].contains(&3));
    let mut rng = rand::thread_rng();
    for (i, request_id) in ids.into_iter().enumerate() {
        let via = rng.gen_range(1..=5);
        let m = format!("cheat {i}").into_bytes();
        let r = c
            .handle(via)
            .sign_with_request_id("k", m.clone(), request_id, c.token("k", &m))
            .await
            .unwrap();
        check(&gpk, &m, &r);
        assert!(
            !r.signers.contains(&3),
            "the cheater's share is never in a signature"
        );
    }
    let mut caught = 0;
    for h in c.handles() {
        let s = h.status().await.unwrap();
        caught += s.culprits.get(&3).copied().unwrap_or(0);
        assert!(
            s.culprits.keys().all(|id| *id == 3),
            "only node 3 is blamed: {:?}",
            s.culprits
        );
    }
    assert_eq!(caught, 20, "node 3 was caught once per request");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_requests_on_one_key() {
    let (c, gpk) = Cluster::with_key(5, 3).await;
    let mut tasks = Vec::new();
    for i in 0..64u16 {
        let h = c.handle(i % 5 + 1);
        let m = format!("concurrent {i}").into_bytes();
        let token = c.token("k", &m);
        tasks.push(tokio::spawn(async move {
            (m.clone(), h.sign("k", m, token).await)
        }));
    }
    for t in tasks {
        let (m, r) = t.await.unwrap();
        check(&gpk, &m, &r.unwrap());
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_key_and_oversized_message_are_refused() {
    let (c, _) = Cluster::with_key(3, 2).await;
    assert!(matches!(
        c.handle(1)
            .sign("nope", b"m".to_vec(), c.token("nope", b"m"))
            .await,
        Err(NodeError::NotFound(_))
    ));
    assert!(matches!(
        c.handle(1)
            .sign("k", vec![0; 70_000], c.token("k", &[0; 70_000]))
            .await,
        Err(NodeError::BadRequest(_))
    ));
    c.shutdown().await;
}
