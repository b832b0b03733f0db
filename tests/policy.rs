//! The operator's policy command: every signer asks its own before it commits nonces. Real
//! swarms on loopback, a real command per node (a shell script), every signature checked by
//! ed25519-dalek.
#![cfg(unix)]

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::{check_signature, Cluster};
use frostnode::node::NodeError;
use frostnode::policy::{PolicyCommand, PolicyRequest};

/// What the script of node k does (nodes not listed approve).
#[derive(Clone, Copy)]
enum Rule {
    Refuse,
    Hang,
}

/// Writes a policy script that records what it read in `dir/asked-<node>-<pid>.json`, then
/// refuses (saying why on stderr) or hangs as `rules` say for its node (its first argument),
/// or approves.
fn script(dir: &Path, rules: &[(u16, Rule)]) -> PolicyCommand {
    let mut cases = String::new();
    for (node, rule) in rules {
        let action = match rule {
            Rule::Refuse => "echo \"amount over node $1's limit\" >&2; exit 3",
            Rule::Hang => "exec sleep 30",
        };
        cases.push_str(&format!("  {node}) {action} ;;\n"));
    }
    let body = format!(
        "#!/bin/sh\nenv > \"{d}/env-$1\"\ncat > \"{d}/asked-$1-$$.json\"\ncase \"$1\" in\n{cases}  *) exit 0 ;;\nesac\n",
        d = dir.display()
    );
    let path = dir.join("approve.sh");
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    PolicyCommand {
        program: path,
        args: Vec::new(),
        timeout: Duration::from_millis(500),
    }
}

/// Five nodes with a 3-of-5 key; node k runs the policy with argument k.
async fn cluster(dir: &Path, rules: &[(u16, Rule)]) -> (Cluster, String) {
    let command = script(dir, rules);
    let c = Cluster::start_with(5, move |cfg| {
        let mut command = command.clone();
        command.args = vec![cfg.id.to_string()];
        cfg.policy = Some(command);
    })
    .await;
    let gpk = c
        .keygen(1, "k", Some(3), None)
        .await
        .unwrap()
        .group_public_key;
    (c, gpk)
}

fn asked_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("asked-")
        })
        .count()
}

fn asked(dir: &Path) -> Vec<(u16, PolicyRequest)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if let Some(rest) = name.strip_prefix("asked-") {
            let node: u16 = rest.split('-').next().unwrap().parse().unwrap();
            let text = std::fs::read_to_string(dir.join(&name)).unwrap();
            out.push((node, serde_json::from_str(&text).unwrap()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_refusing_policies_of_five_still_leave_three_yeses() {
    // The node's environment (where a key store passphrase may live) stays with the node.
    std::env::set_var("FROSTNODE_POLICY_TEST_SECRET", "never shown to the policy");
    let dir = tempfile::tempdir().unwrap();
    let (c, gpk) = cluster(dir.path(), &[(4, Rule::Refuse), (5, Rule::Refuse)]).await;
    for via in 1..=5u16 {
        let m = format!("pay 10 coins, via {via}").into_bytes();
        let r = c.sign(via, "k", &m).await.unwrap();
        check_signature(&gpk, &m, &r);
        let signers: BTreeSet<u16> = r.signers.iter().copied().collect();
        assert_eq!(
            signers,
            BTreeSet::from([1, 2, 3]),
            "only approving nodes sign"
        );
    }
    // Each policy read one JSON document about the request it was asked for.
    let asked = asked(dir.path());
    assert!(!asked.is_empty());
    for (node, req) in &asked {
        assert_eq!(req.node, *node);
        assert_eq!(req.action, "sign");
        assert_eq!(req.client, "admin");
        assert_eq!(req.key_id, "k");
        let message =
            String::from_utf8(hex::decode(req.message.as_deref().unwrap()).unwrap()).unwrap();
        assert!(message.starts_with("pay 10 coins, via "), "{message}");
        assert_eq!(req.request_id.len(), 64);
    }
    // One request id is asked about once per node at most.
    let mut seen = BTreeSet::new();
    for (node, req) in &asked {
        assert!(seen.insert((*node, req.request_id.clone())), "asked twice");
    }
    // A request without a valid token never reaches a policy command.
    let unauthorized = c.handle(1).sign("k", b"no token".to_vec(), None).await;
    assert!(matches!(unauthorized, Err(NodeError::Unauthorized(_))));
    let forged = c.admin().sign_token("k", b"another message");
    let r = c
        .handle(4)
        .sign("k", b"no token".to_vec(), Some(forged))
        .await;
    assert!(matches!(r, Err(NodeError::Refused { .. })), "{r:?}");
    assert_eq!(asked_count(dir.path()), asked.len());
    let env = std::fs::read_to_string(dir.path().join("env-1")).unwrap();
    assert!(!env.contains("FROSTNODE_POLICY_TEST_SECRET"), "{env}");
    assert!(env.lines().any(|l| l.starts_with("PATH=")), "{env}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_refusing_policies_of_five_are_named_in_a_403() {
    let dir = tempfile::tempdir().unwrap();
    let rules = [(3, Rule::Refuse), (4, Rule::Refuse), (5, Rule::Refuse)];
    let (c, _) = cluster(dir.path(), &rules).await;
    for via in [1u16, 3] {
        match c.sign(via, "k", b"pay 1000 coins").await {
            Err(NodeError::Refused { refused_by, .. }) => {
                let who: Vec<u16> = refused_by.keys().copied().collect();
                assert_eq!(who, vec![3, 4, 5], "{refused_by:?}");
                for (node, reason) in &refused_by {
                    assert!(
                        reason.contains(&format!("amount over node {node}'s limit"))
                            && reason.contains("exit status 3"),
                        "{reason}"
                    );
                }
            }
            other => panic!("expected 403, got {other:?}"),
        }
    }
    // The same over HTTP: 403 with the refusers and their reasons; bad tokens are a 401.
    let api = format!("http://{}/v1/keys/k/sign", c.api_addrs()[1]);
    let http = reqwest::Client::new();
    let body = serde_json::json!({ "message": hex::encode(b"pay 1000 coins") });
    let r = http
        .post(&api)
        .bearer_auth(c.admin().sign_token("k", b"pay 1000 coins"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["kind"], "refused", "{v}");
    let who: Vec<&String> = v["refused_by"].as_object().unwrap().keys().collect();
    assert_eq!(who, ["3", "4", "5"], "{v}");
    let stranger =
        frostnode::client::ClientKey::new("admin", ed25519_dalek::SigningKey::from_bytes(&[7; 32]));
    for bad in [
        None,
        Some("garbage".to_string()),
        Some(stranger.sign_token("k", b"pay 1000 coins")),
    ] {
        let mut req = http.post(&api).json(&body);
        if let Some(t) = &bad {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{bad:?}");
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_that_hangs_refuses_after_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // One hanging node of five: signing goes on without it.
    let (c, gpk) = cluster(dir.path(), &[(2, Rule::Hang)]).await;
    for via in [1u16, 2] {
        let m = format!("via {via}").into_bytes();
        let r = c.sign(via, "k", &m).await.unwrap();
        check_signature(&gpk, &m, &r);
        assert!(!r.signers.contains(&2));
    }
    c.shutdown().await;

    // Three hanging nodes of five: each is named, with its timeout as the reason.
    let dir = tempfile::tempdir().unwrap();
    let rules = [(1, Rule::Hang), (4, Rule::Hang), (5, Rule::Hang)];
    let (c, _) = cluster(dir.path(), &rules).await;
    match c.sign(2, "k", b"nobody answers").await {
        Err(NodeError::Refused { refused_by, .. }) => {
            let who: Vec<u16> = refused_by.keys().copied().collect();
            assert_eq!(who, vec![1, 4, 5], "{refused_by:?}");
            assert!(
                refused_by
                    .values()
                    .all(|r| r.contains("did not answer within 500 ms")),
                "{refused_by:?}"
            );
        }
        other => panic!("expected 403, got {other:?}"),
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_that_cannot_start_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-program");
    let c = Cluster::start_with(3, |cfg| {
        if cfg.id == 3 {
            cfg.policy = Some(PolicyCommand {
                program: missing.clone(),
                args: Vec::new(),
                timeout: Duration::from_millis(500),
            });
        }
    })
    .await;
    let gpk = c
        .keygen(1, "k", Some(3), None)
        .await
        .unwrap()
        .group_public_key;
    match c.sign(1, "k", b"m").await {
        Err(NodeError::Refused { refused_by, .. }) => {
            assert!(
                refused_by[&3].contains("could not be started"),
                "{refused_by:?}"
            );
        }
        other => panic!("expected 403, got {other:?}"),
    }
    // A 2-of-3 key signs without node 3.
    let k2 = c
        .keygen(1, "k2", Some(2), None)
        .await
        .unwrap()
        .group_public_key;
    let r = c.sign(3, "k2", b"m").await.unwrap();
    check_signature(&k2, b"m", &r);
    assert!(!r.signers.contains(&3));
    assert_ne!(gpk, k2);
    c.shutdown().await;
}

mod reason {
    use frostnode::policy::reason_from_output;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a policy command prints, the reason quoted in a refusal is one bounded,
        /// printable, non-empty line, taken from the command's first line with content.
        #[test]
        fn any_output_gives_a_bounded_printable_reason(output in proptest::collection::vec(any::<u8>(), 0..2000)) {
            if let Some(reason) = reason_from_output(&output) {
                prop_assert!(reason.chars().count() <= 200);
                prop_assert!(!reason.chars().any(char::is_control));
                prop_assert!(!reason.trim().is_empty());
            }
        }

        #[test]
        fn the_first_line_with_content_is_quoted(first in "[a-z ]{0,5}[a-z][a-z ]{0,40}", rest in "[a-z\\n]{0,40}") {
            let output = format!("\n  \n{first}\n{rest}");
            prop_assert_eq!(reason_from_output(output.as_bytes()), Some(first.trim().to_string()));
        }
    }

    #[test]
    fn blank_output_quotes_nothing() {
        assert_eq!(reason_from_output(b""), None);
        assert_eq!(reason_from_output(b"\n \t\n\x1b\n"), None);
        assert_eq!(reason_from_output(&[b'x'; 1000]).unwrap().len(), 200);
    }
}
