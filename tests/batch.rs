//! Batch signing on real nodes (libp2p swarms on loopback, the HTTP API): a batch of 256
//! messages comes back as 256 signatures in order, each checked by ed25519-dalek's strict
//! verifier; a batch with one message that is not hex is refused whole, naming its index; a
//! client token binds the batch (its messages, their order and their number), so a token for
//! one batch signs no other batch, and a single message's token no batch at all.

mod common;

use common::Cluster;
use frostnode::node::NodeError;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn verify_all(gpk: &str, messages: &[Vec<u8>], signatures: &[Value]) {
    assert_eq!(
        signatures.len(),
        messages.len(),
        "one signature per message"
    );
    let pk: [u8; 32] = hex::decode(gpk).unwrap().try_into().unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk).unwrap();
    for (i, (m, s)) in messages.iter().zip(signatures).enumerate() {
        let sig: [u8; 64] = hex::decode(s.as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        vk.verify_strict(m, &ed25519_dalek::Signature::from_bytes(&sig))
            .unwrap_or_else(|e| panic!("signature {i} does not verify: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_256_comes_back_as_256_signatures_in_order() {
    let (c, gpk) = Cluster::with_key(5, 3).await;
    let messages: Vec<Vec<u8>> = (0..256u32)
        .map(|i| format!("transfer #{i}").into_bytes())
        .collect();
    let http = reqwest::Client::new();
    for via in [1usize, 4] {
        let addr = c.api_addrs()[via - 1];
        let r = http
            .post(format!("http://{addr}/v1/keys/k/sign"))
            .bearer_auth(c.admin().batch_token("k", &messages))
            .json(&json!({ "messages": messages.iter().map(hex::encode).collect::<Vec<_>>() }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["group_public_key"], gpk.as_str());
        assert!(
            v.get("signature").is_none(),
            "a batch answers `signatures`: {v}"
        );
        assert_eq!(v["signers"].as_array().unwrap().len(), 3, "{v}");
        verify_all(&gpk, &messages, v["signatures"].as_array().unwrap());
    }
    // The same batch through the node handle: one session signed it all.
    let signed = c
        .handle(2)
        .sign_batch(
            "k",
            messages.clone(),
            Some(c.admin().batch_token("k", &messages)),
        )
        .await
        .unwrap();
    let sigs: Vec<Value> = signed.signatures.iter().map(|s| json!(s)).collect();
    verify_all(&gpk, &messages, &sigs);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_message_refuses_the_whole_batch_naming_its_index() {
    let c = Cluster::start_with(3, |cfg| cfg.max_message_size = 32 * 1024).await;
    let gpk = c
        .keygen(1, "k", Some(2), None)
        .await
        .unwrap()
        .group_public_key;
    let addr = c.api_addrs()[0];
    let http = reqwest::Client::new();
    let post = |body: Value| {
        http.post(format!("http://{addr}/v1/keys/k/sign"))
            .bearer_auth(c.admin().sign_token("k", b"x"))
            .json(&body)
            .send()
    };
    let cases = [
        (
            json!({ "messages": ["00", "01", "02", "zz", "04"] }),
            "message 3 is not hex",
        ),
        (json!({ "messages": [] }), "empty"),
        (
            json!({ "messages": vec!["00"; 257] }),
            "exceeds the limit of 256",
        ),
        (
            json!({ "message": "00", "messages": ["00"] }),
            "exactly one of",
        ),
        (json!({}), "exactly one of"),
    ];
    for (body, expected) in cases {
        let r = post(body.clone()).await.unwrap();
        assert_eq!(r.status().as_u16(), 400, "{body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["kind"], "bad_request", "{v}");
        let error = v["error"].as_str().unwrap();
        assert!(error.contains(expected), "{body}: {error}");
    }
    // Nothing was signed: no node started a signing session for any of these.
    let started = frostnode::bench::metric_sum_labelled(
        &c,
        "frostnode_sign_requests_total",
        "outcome=\"started\"",
    )
    .await;
    assert_eq!(started, 0, "refused before the node saw them");
    // A batch over 64 KiB in all is refused by the node.
    let big: Vec<Vec<u8>> = (0..3).map(|i| vec![i; 30 * 1024]).collect();
    let err = c
        .handle(1)
        .sign_batch("k", big.clone(), Some(c.admin().batch_token("k", &big)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, NodeError::BadRequest(m) if m.contains("batch of 92160 bytes")),
        "{err:?}"
    );
    // A batch that would not fit the nodes' network messages is refused, saying what fits;
    // a smaller one signs.
    let many: Vec<Vec<u8>> = (0..256u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let err = c
        .handle(2)
        .sign_batch("k", many.clone(), Some(c.admin().batch_token("k", &many)))
        .await
        .unwrap_err();
    let NodeError::BadRequest(m) = &err else {
        panic!("{err:?}");
    };
    assert!(m.contains("max_message_size (32768)"), "{m}");
    let fits: usize = m
        .split("send at most ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{m}"));
    assert!(fits > 10 && fits < 256, "{m}");
    let some = many[..fits].to_vec();
    let signed = c
        .handle(2)
        .sign_batch("k", some.clone(), Some(c.admin().batch_token("k", &some)))
        .await
        .unwrap();
    let sigs: Vec<Value> = signed.signatures.iter().map(|s| json!(s)).collect();
    verify_all(&gpk, &some, &sigs);
    c.shutdown().await;
}

/// The reason of a refused request.
fn refused<T: std::fmt::Debug>(r: Result<T, NodeError>) -> String {
    match r {
        Err(NodeError::Unauthorized(m)) | Err(NodeError::Refused { message: m, .. }) => m,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_binds_its_batch_its_order_and_its_size() {
    let (c, gpk) = Cluster::with_key(3, 2).await;
    let (a, b) = (b"pay alice 5".to_vec(), b"pay bob 7".to_vec());
    let batch = vec![a.clone(), b.clone()];
    let h = c.handle(1);
    // Another order, a part of the batch, or a bigger batch: refused.
    let token = c.admin().batch_token("k", &batch);
    let swapped = vec![b.clone(), a.clone()];
    let m = refused(h.sign_batch("k", swapped, Some(token.clone())).await);
    assert!(m.contains("another message"), "{m}");
    let m = refused(
        h.sign_batch("k", vec![a.clone()], Some(token.clone()))
            .await,
    );
    assert!(m.contains("another message"), "{m}");
    let more = vec![a.clone(), b.clone(), a.clone()];
    let m = refused(h.sign_batch("k", more, Some(token.clone())).await);
    assert!(m.contains("another message"), "{m}");
    // A single message whose SHA-256 equals the batch's digest: the same `msg`, but a token for
    // one message is not a token for a batch, nor the reverse.
    let concatenated: Vec<u8> = [Sha256::digest(&a), Sha256::digest(&b)].concat();
    let single = c.admin().sign_token("k", &concatenated);
    let m = refused(h.sign_batch("k", batch.clone(), Some(single)).await);
    assert!(m.contains("another message"), "{m}");
    let m = refused(h.sign("k", concatenated.clone(), Some(token.clone())).await);
    assert!(m.contains("another message"), "{m}");
    // The right batch signs, once.
    let signed = h
        .sign_batch("k", batch.clone(), Some(token.clone()))
        .await
        .unwrap();
    let sigs: Vec<Value> = signed.signatures.iter().map(|s| json!(s)).collect();
    verify_all(&gpk, &batch, &sigs);
    let m = refused(h.sign_batch("k", batch, Some(token)).await);
    assert!(m.contains("already used"), "{m}");
    c.shutdown().await;
}
