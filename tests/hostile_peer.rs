//! A listed peer gone bad, over a real connection: truncated, oversized, random, wrong-version,
//! wrong-session, out-of-step and impersonating messages, by request and by broadcast. The node
//! refuses each with a log line naming the peer, never panics, and afterwards still runs a DKG
//! and signs with the honest nodes.

use frostnode::wire::{self, Body, DkgStart, Envelope, SecretBytes, SessionId};

mod common;

use common::{wait_gone, Captured, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_listed_peer_is_refused_and_the_cluster_carries_on() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("frostnode=debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let mut c = Cluster::start(3).await;
    let target = c.handle(1);
    let target_pid = target.peer_id();

    // Node 3 turns hostile: its identity now speaks through a raw swarm. Its message limit is
    // larger than the node's, so oversized messages really are sent.
    let hostile_pid = frostnode::identity::load(&c.dir.path().join("node3"))
        .unwrap()
        .public()
        .to_peer_id();
    let client = c.take_over(3, 1, 4 << 20).await;

    let env = |session: SessionId, from: u16, body: Body| {
        wire::encode(&Envelope::new(session, from, body)).unwrap()
    };
    let valid = env(SessionId([1; 32]), 3, Body::Ack);
    let mut wrong_version = valid.clone();
    wrong_version[0] = 9;
    let random: Vec<u8> = (0..200).map(|_| rand::random()).collect();
    let requests: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", valid[..valid.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("random", random.clone()),
        ("wrong version", wrong_version),
        (
            "oversized",
            env(
                SessionId([1; 32]),
                3,
                Body::DkgRound1 {
                    package: vec![0; 300_000],
                },
            ),
        ),
        (
            "wrong session",
            env(
                SessionId([2; 32]),
                3,
                Body::DkgRound2 {
                    package: SecretBytes(vec![1; 40]),
                },
            ),
        ),
        (
            "out of step",
            env(
                SessionId([3; 32]),
                3,
                Body::SignRequest {
                    attempt: 0,
                    signing_packages: vec![vec![1, 2, 3]],
                },
            ),
        ),
        (
            "not a request",
            env(
                SessionId([4; 32]),
                3,
                Body::DkgConfirm(frostnode::wire::Confirmation {
                    transcript: [0; 32],
                    group_public_key: [0; 32],
                    public_key_package_hash: [0; 32],
                    signature: vec![],
                }),
            ),
        ),
        (
            "impersonation",
            env(
                SessionId([5; 32]),
                2,
                Body::DkgStart(DkgStart {
                    key_id: "x".into(),
                    participants: vec![1, 2],
                    threshold: 2,
                    token: None,
                    refresh: None,
                    repair: None,
                    reshare: None,
                }),
            ),
        ),
        (
            "bad key id",
            env(
                SessionId([6; 32]),
                3,
                Body::DkgStart(DkgStart {
                    key_id: "../../etc/passwd".into(),
                    participants: vec![1, 3],
                    threshold: 2,
                    token: None,
                    refresh: None,
                    repair: None,
                    reshare: None,
                }),
            ),
        ),
    ];
    for (what, bytes) in requests {
        // Refused in the answer, or the stream is reset (oversized messages are not even read).
        if let Ok(answer) = client.request(target_pid, bytes).await {
            match wire::decode(&answer, 1 << 20).map(|e| e.body) {
                Ok(Body::Refused { .. }) | Ok(Body::Ack) => {}
                other => panic!("{what}: unexpected answer {other:?}"),
            }
        }
    }
    // Broadcast garbage too.
    for bytes in [
        random,
        env(
            SessionId([7; 32]),
            2,
            Body::DkgBegin {
                contributions: vec![],
            },
        ),
        env(
            SessionId([8; 32]),
            3,
            Body::DkgRound2 {
                package: SecretBytes(vec![0; 8]),
            },
        ),
    ] {
        client.publish(bytes).unwrap();
    }
    // A round trip after the garbage proves the node processed all of it.
    let probe = client
        .request(target_pid, env(SessionId([9; 32]), 3, Body::Ack))
        .await
        .unwrap();
    assert!(matches!(
        wire::decode(&probe, 1 << 20).unwrap().body,
        Body::Refused { .. }
    ));
    assert_eq!(
        target.status().await.unwrap().active_sessions,
        0,
        "no session was opened"
    );

    let logs = captured.text();
    let hostile = hostile_pid.to_string();
    for reason in [
        "malformed message",
        "unsupported wire version 9",
        "claims to come from node 2",
        "invalid key id",
        "unexpected request",
    ] {
        assert!(
            logs.lines()
                .any(|l| l.contains(reason) && (l.contains(&hostile) || l.contains("peer=3"))),
            "no log line names the peer for {reason:?}:\n{logs}"
        );
    }
    client.shutdown();
    wait_gone(&target, &[3]).await;

    // The honest nodes carry on.
    let key = c
        .keygen(1, "after", Some(2), Some(vec![1, 2]))
        .await
        .unwrap();
    let sig = c
        .handle(2)
        .sign(
            "after",
            b"still fine".to_vec(),
            c.token("after", b"still fine"),
        )
        .await
        .unwrap();
    assert_eq!(sig.group_public_key, key.group_public_key);
    c.shutdown().await;
}
