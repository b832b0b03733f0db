//! A signature needs `t` independent yeses: every signer checks the client's token against its
//! own list before committing nonces and before releasing a share, and every DKG participant
//! before joining (a node that lists no clients serves no one). Real swarms on loopback; tokens minted
//! with the client's key; every signature checked by ed25519-dalek.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{check_signature, Cluster};
use ed25519_dalek::SigningKey;
use frostnode::auth::{mint, Action, Claims, Client};
use frostnode::node::NodeError;
use frostnode::wire::{self, Body, Envelope, ErrorKind, SessionId};
use sha2::{Digest, Sha256};

fn client_key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

/// The client "app", allowed `allow` on the nodes in `on`, and nothing on the others.
fn client(allow: &[&str], max_per_minute: Option<u32>) -> Client {
    Client {
        name: "app".into(),
        public_key: client_key().verifying_key().to_bytes(),
        allow: allow.iter().map(|r| r.parse().unwrap()).collect(),
        max_per_minute,
    }
}

/// `n` nodes; node k serves `allow(k)` to the client "app".
async fn cluster(n: u16, allow: impl Fn(u16) -> Vec<&'static str>) -> Cluster {
    Cluster::start_with(n, |cfg| {
        let rules = allow(cfg.id);
        cfg.clients = vec![client(
            if rules.is_empty() {
                &["keygen:none"]
            } else {
                &rules
            },
            None,
        )];
    })
    .await
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(act: Action, key_id: &str, message: Option<&[u8]>, jti: &str) -> String {
    let claims = Claims {
        iss: "app".into(),
        iat: now(),
        exp: now() + 120,
        jti: jti.into(),
        act,
        key_id: key_id.into(),
        msg: message.map(|m| hex::encode(Sha256::digest(m))),
        batch: None,
        threshold: None,
        participants: None,
    };
    mint(&client_key(), &claims).unwrap()
}

async fn keygen(c: &Cluster, key_id: &str) -> String {
    let t = token(Action::Keygen, key_id, None, &format!("kg-{key_id}"));
    c.keygen_with_token(1, key_id, Some(3), None, Some(t))
        .await
        .unwrap()
        .group_public_key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_valid_token_for_this_request_gets_a_signature() {
    let c = cluster(5, |_| vec!["*"]).await;
    let gpk = keygen(&c, "k").await;
    let h = c.handle(2);
    let m = b"pay 1 coin".to_vec();
    let good = token(Action::Sign, "k", Some(&m), "s1");
    let r = h.sign("k", m.clone(), Some(good.clone())).await.unwrap();
    check_signature(&gpk, &m, &r);

    // No token, garbage, a stranger's signature: 401.
    for bad in [
        None,
        Some("x.y.z".to_string()),
        Some(
            mint(
                &SigningKey::from_bytes(&[7; 32]),
                &Claims {
                    jti: "s2".into(),
                    ..serde_claims(&good)
                },
            )
            .unwrap(),
        ),
    ] {
        match h.sign("k", m.clone(), bad).await {
            Err(NodeError::Unauthorized(_)) => {}
            other => panic!("expected 401, got {other:?}"),
        }
    }
    // Without a token nothing is learned about keys: no 404 for one that does not exist.
    assert!(matches!(
        h.sign("no-such-key", m.clone(), None).await,
        Err(NodeError::Unauthorized(_))
    ));
    // The same token again (a replay), or a token for another message: 403 from this node.
    for (bad, message) in [
        (good, m.clone()),
        (token(Action::Sign, "k", Some(b"pay 2"), "s3"), m.clone()),
    ] {
        match h.sign("k", message, Some(bad)).await {
            Err(NodeError::Refused { refused_by, .. }) => {
                assert_eq!(refused_by.keys().copied().collect::<Vec<_>>(), vec![2]);
            }
            other => panic!("expected 403, got {other:?}"),
        }
    }
    c.shutdown().await;
}

/// The claims inside a token (for re-signing them with another key).
fn serde_claims(token: &str) -> Claims {
    jsonwebtoken::dangerous::insecure_decode::<Claims>(token)
        .unwrap()
        .claims
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_minus_one_approvals_are_refused_and_t_sign() {
    // Keys are made by everyone; signing "k" is allowed on nodes 1 and 2 only (t - 1 = 2),
    // and "k2" on nodes 1, 2 and 3 (t = 3).
    let c = cluster(5, |id| match id {
        1 | 2 => vec!["keygen:*", "sign:k", "sign:k2"],
        3 => vec!["keygen:*", "sign:k2"],
        _ => vec!["keygen:*"],
    })
    .await;
    let _ = keygen(&c, "k").await;
    let gpk2 = keygen(&c, "k2").await;
    let m = b"transfer".to_vec();
    match c
        .handle(1)
        .sign(
            "k",
            m.clone(),
            Some(token(Action::Sign, "k", Some(&m), "a")),
        )
        .await
    {
        Err(NodeError::Refused {
            refused_by,
            message,
        }) => {
            assert_eq!(
                refused_by.keys().copied().collect::<Vec<_>>(),
                vec![3, 4, 5],
                "{message}"
            );
            assert!(
                refused_by.values().all(|r| r.contains("may not sign")),
                "{refused_by:?}"
            );
        }
        other => panic!("expected 403 naming nodes 3, 4 and 5, got {other:?}"),
    }
    let r = c
        .handle(1)
        .sign(
            "k2",
            m.clone(),
            Some(token(Action::Sign, "k2", Some(&m), "b")),
        )
        .await
        .unwrap();
    check_signature(&gpk2, &m, &r);
    let mut signers = r.signers.clone();
    signers.sort_unstable();
    assert_eq!(signers, vec![1, 2, 3], "only the approving nodes signed");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_that_does_not_allow_the_keygen_refuses_it() {
    let c = cluster(4, |id| if id == 3 { vec!["sign:*"] } else { vec!["*"] }).await;
    let t = token(Action::Keygen, "squat", None, "q");
    match c
        .keygen_with_token(1, "squat", Some(3), None, Some(t))
        .await
    {
        Err(NodeError::Refused { refused_by, .. }) => {
            assert_eq!(refused_by.keys().copied().collect::<Vec<_>>(), vec![3]);
        }
        other => panic!("expected node 3 to refuse, got {other:?}"),
    }
    for h in c.handles() {
        assert!(
            h.get_key("squat").await.unwrap().is_none(),
            "node {}",
            h.id()
        );
    }
    // Without a token no node creates keys on its own.
    assert!(matches!(
        c.keygen_with_token(2, "mine", Some(3), None, None).await,
        Err(NodeError::Unauthorized(_))
    ));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lists_no_clients_serves_no_one() {
    // Node 3's operator lists no clients: it joins no DKG and signs nothing, whoever asks.
    let c = Cluster::start_with(3, |cfg| {
        if cfg.id == 3 {
            cfg.clients.clear();
        }
    })
    .await;
    match c.keygen(1, "all", Some(2), None).await {
        Err(NodeError::Refused { refused_by, .. }) => {
            assert!(
                refused_by[&3].contains("lists no [[clients]]"),
                "{refused_by:?}"
            );
        }
        other => panic!("expected node 3 to refuse, got {other:?}"),
    }
    match c.keygen(3, "via-3", Some(2), None).await {
        Err(NodeError::Unauthorized(reason)) => {
            assert!(reason.contains("lists no [[clients]]"), "{reason}")
        }
        other => panic!("expected 401 from node 3, got {other:?}"),
    }
    // A key of nodes 1 and 2 signs through them, never with node 3.
    let gpk = c
        .keygen(1, "pair", Some(2), Some(vec![1, 2]))
        .await
        .unwrap()
        .group_public_key;
    let r = c.sign(2, "pair", b"m").await.unwrap();
    check_signature(&gpk, b"m", &r);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_rate_limit_are_refused_by_that_node() {
    let c = Cluster::start_with(3, |cfg| {
        // Three requests a minute on node 1: the key generation and two signatures.
        let limit = (cfg.id == 1).then_some(3);
        cfg.clients = vec![client(&["*"], limit)];
    })
    .await;
    let t = token(Action::Keygen, "k", None, "kg");
    let gpk = c
        .keygen_with_token(2, "k", Some(2), None, Some(t))
        .await
        .unwrap()
        .group_public_key;
    for i in 0..2 {
        let m = format!("m{i}").into_bytes();
        let t = token(Action::Sign, "k", Some(&m), &format!("r{i}"));
        let r = c.handle(1).sign("k", m.clone(), Some(t)).await.unwrap();
        check_signature(&gpk, &m, &r);
    }
    let m = b"one too many".to_vec();
    let t = token(Action::Sign, "k", Some(&m), "r2");
    match c.handle(1).sign("k", m, Some(t)).await {
        Err(NodeError::Refused { refused_by, .. }) => {
            assert!(refused_by[&1].contains("rate limit"), "{refused_by:?}")
        }
        other => panic!("expected node 1 to refuse, got {other:?}"),
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_participant_gets_no_commitment_without_the_clients_token() {
    let mut c = cluster(3, |_| vec!["*"]).await;
    let t = token(Action::Keygen, "k", None, "kg");
    let info = c
        .keygen_with_token(1, "k", Some(2), None, Some(t))
        .await
        .unwrap();
    let gpk: [u8; 32] = hex::decode(&info.group_public_key)
        .unwrap()
        .try_into()
        .unwrap();
    let target = c.handle(1).peer_id();
    // Node 3's identity in the hands of an attacker, asking node 1 to commit.
    let client = c.take_over(3, 1, 1 << 20).await;
    let message = b"pay the attacker".to_vec();
    let request_id = SessionId([0x77; 32]);
    let session = SessionId(frostnode::signing::election::session_id(&request_id.0, 3));
    let other = token(Action::Sign, "k", Some(b"something else"), "x1");
    let expired = mint(
        &client_key(),
        &Claims {
            iat: now() - 400,
            exp: now() - 300,
            jti: "x2".into(),
            ..serde_claims(&token(Action::Sign, "k", Some(&message), "x2"))
        },
    )
    .unwrap();
    let stranger = mint(
        &SigningKey::from_bytes(&[9; 32]),
        &serde_claims(&token(Action::Sign, "k", Some(&message), "x3")),
    )
    .unwrap();
    let used = token(Action::Sign, "k", Some(&message), "x4");
    // A token already used for another request (node 1 served it as a signer of request 0x66).
    let _ = c
        .handle(1)
        .sign("k", message.clone(), Some(used.clone()))
        .await;
    for (what, tok) in [
        ("no token", None),
        ("another message", Some(other)),
        ("expired", Some(expired)),
        ("unknown key", Some(stranger)),
        ("replayed", Some(used)),
    ] {
        let body = Body::CommitRequest {
            attempt: 0,
            key_id: "k".into(),
            group_public_key: gpk,
            epoch: 0,
            messages: vec![message.clone()],
            request_id,
            token: tok,
        };
        let bytes = wire::encode(&Envelope::new(session, 3, body)).unwrap();
        let answer = client.request(target, bytes).await.unwrap();
        match wire::decode(&answer, 1 << 20).unwrap().body {
            Body::Refused { kind, .. } => assert!(
                matches!(kind, ErrorKind::Unauthorized | ErrorKind::Refused),
                "{what}: {kind}"
            ),
            other => panic!("{what}: expected a refusal, got {other:?}"),
        }
    }
    c.shutdown().await;
}
