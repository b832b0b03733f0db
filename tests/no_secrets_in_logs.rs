//! Runs a DKG and signings with every log at TRACE level (ours and libp2p's) and checks that no
//! key share appears in the logs or in any API answer, in hex or base64.

use frostnode::config::PassphraseSource;
use frostnode::keystore::KeyStore;

mod common;

use common::{Captured, Cluster};

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_share_in_trace_logs_or_api_answers() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let passphrase = "a passphrase that must never be logged";
    std::env::set_var("FROSTNODE_LEAK_TEST_PASSPHRASE", passphrase);
    let c = Cluster::start_with(3, |cfg| {
        cfg.passphrase = PassphraseSource::Env("FROSTNODE_LEAK_TEST_PASSPHRASE".into());
    })
    .await;
    let mut answers = Vec::new();
    let key = c.keygen(1, "s", Some(2), None).await.unwrap();
    answers.push(serde_json::to_string(&key).unwrap());
    for i in 0..5u8 {
        let h = c.handle(u16::from(i % 3) + 1);
        let r = h
            .sign("s", vec![i; 16], c.token("s", &[i; 16]))
            .await
            .unwrap();
        answers.push(serde_json::to_string(&r).unwrap());
        answers.push(serde_json::to_string(&h.status().await.unwrap()).unwrap());
        answers.push(serde_json::to_string(&h.list_keys().await.unwrap()).unwrap());
    }
    let mut nonces = Vec::new();
    for h in c.handles() {
        nonces.extend(h.take_nonce_log().await.unwrap());
    }
    assert!(
        nonces.len() >= 5 * 2 * 2,
        "nonces were recorded: {}",
        nonces.len()
    );
    let dir = c.shutdown().await;

    let logs = captured.text();
    assert!(
        logs.len() > 10_000,
        "trace logging was captured ({} bytes)",
        logs.len()
    );
    assert!(logs.contains("DKG complete"));
    let haystack = format!("{logs}\n{}", answers.join("\n"));
    assert!(!haystack.contains(passphrase), "the passphrase leaked");
    for n in &nonces {
        for needle in [hex::encode(n), base64(n)] {
            assert!(!haystack.contains(&needle), "a nonce leaked as {needle}");
        }
    }
    for k in 1..=3 {
        let store = KeyStore::open_with(
            &dir.path().join(format!("node{k}")),
            Some(passphrase.as_bytes()),
        )
        .unwrap();
        let stored = store.get("s").unwrap().clone();
        let share = stored.key_package.signing_share().serialize();
        for needle in [
            hex::encode(&share),
            hex::encode_upper(&share),
            base64(&share),
        ] {
            assert!(
                !haystack.contains(&needle),
                "node {k}'s share leaked as {needle}"
            );
        }
        // The Debug form of the key package must not print it either.
        let debug = format!("{:?} {:?}", stored, stored.key_package);
        assert!(
            !debug.contains(&hex::encode(&share)),
            "Debug prints the share"
        );
    }
}
