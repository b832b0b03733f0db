//! Five `frostnode run` processes from `frostnode cluster-config`, driven over HTTP: the way an
//! operator runs them.

mod common;

use common::process::{free_base_port, others, ProcessCluster as Cluster, BIN};
use common::WAIT;
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_processes_generate_a_key_survive_a_stopped_node_and_restart() {
    let mut c = Cluster::new();
    for k in 1..=5u16 {
        c.wait_ready(k, &others(u64::from(k))).await;
    }

    let (status, body) = c.post(1, "/v1/keys", json!({ "key_id": "k1" })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["threshold"], 4);
    assert_eq!(body["participants"], json!([1, 2, 3, 4, 5]));
    let gpk = body["group_public_key"].as_str().unwrap().to_string();
    assert_eq!(gpk.len(), 64);
    for k in 1..=5 {
        let (status, key) = c.get(k, "/v1/keys/k1").await;
        assert_eq!(status, 200);
        assert_eq!(key["group_public_key"], gpk.as_str(), "node {k}");
        assert_eq!(key["verifying_shares"].as_object().unwrap().len(), 5);
    }
    let (_, list) = c.get(3, "/v1/keys").await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Sign over HTTP through a node, check with the CLI's offline verifier.
    let (s, sig) = c
        .post(
            2,
            "/v1/keys/k1/sign",
            json!({ "message": hex::encode(b"over http") }),
        )
        .await;
    assert_eq!(s, 200, "{sig}");
    assert_eq!(sig["group_public_key"], gpk.as_str());
    assert_eq!(sig["signers"].as_array().unwrap().len(), 4);
    let verify = Command::new(BIN)
        .args(["verify", "--public-key", &gpk, "--message"])
        .arg(hex::encode(b"over http"))
        .arg("--signature")
        .arg(sig["signature"].as_str().unwrap())
        .output()
        .unwrap();
    assert!(verify.status.success());
    // And with the CLI client.
    let out = Command::new(BIN)
        .args([
            "sign",
            "--api",
            &c.url(4, ""),
            "--key-id",
            "k1",
            "--message",
            "00ff",
        ])
        .env("FROSTNODE_CLIENT_KEY", c.dir.path().join("client.key"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["signature"].as_str().unwrap().len(), 128);
    // A batch from a file, one hex message per line: signatures in the file's order.
    let batch = c.dir.path().join("batch.txt");
    let lines = ["00", "", "0102", "  abcdef  ", "ff"];
    std::fs::write(&batch, lines.join("\n")).unwrap();
    let cli_sign_batch = |file: &std::path::Path| {
        Command::new(BIN)
            .args([
                "sign",
                "--api",
                &c.url(4, ""),
                "--key-id",
                "k1",
                "--batch-file",
            ])
            .arg(file)
            .env("FROSTNODE_CLIENT_KEY", c.dir.path().join("client.key"))
            .output()
            .unwrap()
    };
    let out = cli_sign_batch(&batch);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let signatures = v["signatures"].as_array().unwrap();
    let messages = ["00", "0102", "abcdef", "ff"];
    assert_eq!(
        signatures.len(),
        messages.len(),
        "blank lines are skipped: {v}"
    );
    for (m, s) in messages.iter().zip(signatures) {
        let verify = Command::new(BIN)
            .args([
                "verify",
                "--public-key",
                &gpk,
                "--message",
                m,
                "--signature",
            ])
            .arg(s.as_str().unwrap())
            .output()
            .unwrap();
        assert!(verify.status.success(), "signature of {m}");
    }
    std::fs::write(&batch, "00\n0g\n").unwrap();
    let out = cli_sign_batch(&batch);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("message 1 is not hex"), "{stderr}");
    let (s, b) = c
        .post(1, "/v1/keys/k1/sign", json!({ "message": "xyz" }))
        .await;
    assert_eq!(s, 400, "{b}");
    assert!(b["error"].as_str().unwrap().contains("hex"), "{b}");
    let (s, _) = c.post(1, "/v1/keys/k1/sign", json!({ "msg": "00" })).await;
    assert_eq!(s, 400);
    let (s, b) = c
        .post(1, "/v1/keys/none/sign", json!({ "message": "00" }))
        .await;
    assert_eq!(s, 404, "{b}");

    // Prometheus metrics, ours and libp2p's.
    let text = c.get_text(2, "/metrics").await;
    for needle in [
        "frostnode_sign_requests_total{outcome=\"succeeded\",reason=\"\"} 1",
        "frostnode_dkg_sessions_total{outcome=\"succeeded\",reason=\"\"} 1",
        "frostnode_connected_peers 4",
        "frostnode_sign_duration_seconds_count 1",
        "frostnode_libp2p_swarm_connections_established_total",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }

    // Bad input is refused with the right status and a reason.
    let (s, b) = c.post_raw(1, "/v1/keys", "{not json").await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["kind"], "bad_request");
    let (s, b) = c
        .post(1, "/v1/keys", json!({ "key_id": "k2", "threshold": 1 }))
        .await;
    assert_eq!(s, 400);
    assert!(
        b["error"].as_str().unwrap().contains("2 <= threshold"),
        "{b}"
    );
    let (s, b) = c
        .post(1, "/v1/keys", json!({ "key_id": "k2", "threshold": 6 }))
        .await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = c.post(2, "/v1/keys", json!({ "key_id": "k1" })).await;
    assert_eq!(s, 409, "{b}");
    let (s, b) = c
        .post(
            1,
            "/v1/keys",
            json!({ "key_id": "k2", "participants": [1, 2, 9] }),
        )
        .await;
    assert_eq!(s, 400);
    assert!(b["error"].as_str().unwrap().contains('9'), "{b}");
    let (s, _) = c.post(1, "/v1/keys", json!({ "key_id": "../evil" })).await;
    assert_eq!(s, 400);
    let (s, b) = c.get(1, "/v1/keys/nope").await;
    assert_eq!(s, 404, "{b}");

    // Node 5 stops: a DKG that needs it fails fast, naming it.
    c.stop(5);
    c.wait_status(1, "node 5 gone", |v| {
        !v["ready_peers"].as_array().unwrap().contains(&json!(5))
    })
    .await;
    let t0 = Instant::now();
    let (s, b) = c.post(1, "/v1/keys", json!({ "key_id": "k2" })).await;
    assert_eq!(s, 503, "{b}");
    assert_eq!(b["missing"], json!([5]));
    assert!(b["error"].as_str().unwrap().contains('5'), "{b}");
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "fails fast, not by timeout"
    );
    // Four of five are still enough for the 4-of-5 key.
    let (s, b) = c
        .post(3, "/v1/keys/k1/sign", json!({ "message": "abcd" }))
        .await;
    assert_eq!(s, 200, "{b}");
    assert!(!b["signers"].as_array().unwrap().contains(&json!(5)));
    // Without node 5 a smaller key still works.
    let (s, b) = c
        .post(
            2,
            "/v1/keys",
            json!({ "key_id": "k4", "participants": [1, 2, 3, 4], "threshold": 3 }),
        )
        .await;
    assert_eq!(s, 200, "{b}");

    // Node 5 restarts with its key, and takes part in a new DKG.
    c.start(5);
    c.wait_ready(5, &others(5)).await;
    for k in 1..=4 {
        c.wait_ready(k, &[5]).await;
    }
    let (s, key) = c.get(5, "/v1/keys/k1").await;
    assert_eq!(s, 200);
    assert_eq!(key["group_public_key"], gpk.as_str());
    let (s, b) = c.post(5, "/v1/keys", json!({ "key_id": "k3" })).await;
    assert_eq!(s, 200, "{b}\nnode 5 log:\n{}", c.log(5));
    let k3 = b["group_public_key"].as_str().unwrap().to_string();
    for k in 1..=5 {
        let (s, key) = c.get(k, "/v1/keys/k3").await;
        assert_eq!(s, 200, "node {k} stored k3");
        assert_eq!(key["group_public_key"], k3.as_str());
    }
}

#[test]
fn bad_config_exits_non_zero_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("id = 0\nlisten = \"/ip4/127.0.0.1/tcp/0\"\ndata_dir = \"d\"\n", "`id`"),
        ("id = 1\nlisten = \"nonsense\"\ndata_dir = \"d\"\n", "`listen`"),
        (
            "id = 1\nlisten = \"/ip4/127.0.0.1/tcp/0\"\ndata_dir = \"d\"\n[[peers]]\nid = 2\npeer_id = \"xyz\"\naddr = \"/ip4/127.0.0.1/tcp/1\"\n",
            "peers[0].peer_id",
        ),
        ("id = 1\nlisten = = 3\n", "invalid config"),
    ];
    for (i, (text, expect)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("c{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = Command::new(BIN)
            .arg("run")
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success(), "case {i} must fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "case {i}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one-line reason: {err}");
    }
    let missing = Command::new(BIN)
        .args(["run", "--config"])
        .arg(dir.path().join("absent.toml"))
        .output()
        .unwrap();
    assert!(!missing.status.success());
}

#[test]
fn verify_command_accepts_good_and_rejects_bad_signatures() {
    use ed25519_dalek::Signer;
    let key = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let msg = b"hello";
    let sig = key.sign(msg);
    let run = |sig: &[u8]| {
        Command::new(BIN)
            .args(["verify", "--public-key"])
            .arg(hex::encode(key.verifying_key().to_bytes()))
            .arg("--message")
            .arg(hex::encode(msg))
            .arg("--signature")
            .arg(hex::encode(sig))
            .output()
            .unwrap()
    };
    assert!(run(&sig.to_bytes()).status.success());
    let mut bad = sig.to_bytes();
    bad[3] ^= 1;
    assert!(!run(&bad).status.success());
    assert!(!run(&bad[..10]).status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_passphrase_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_base_port();
    let out = Command::new(BIN)
        .args(["cluster-config", "--nodes", "2", "--base-port"])
        .arg(base.to_string())
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let config = dir.path().join("node1.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[keystore]\npassphrase_env = \"FROSTNODE_TEST_PASSPHRASE\"\n");
    std::fs::write(&config, text).unwrap();

    // First start with the passphrase: the key store is set up encrypted.
    let node = Command::new(BIN)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env("FROSTNODE_TEST_PASSPHRASE", "right one")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let health = format!("http://127.0.0.1:{}/v1/health", base + 1001);
    let deadline = Instant::now() + WAIT;
    while reqwest::get(&health).await.is_err() {
        assert!(Instant::now() < deadline, "node did not come up");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let _ = Command::new("kill").arg(node.id().to_string()).status();
    let out = node.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("encrypted at rest"), "{log}");
    assert!(dir.path().join("node1/keys/.keystore.json").exists());
    // The identity, written in clear by cluster-config, is sealed with the same passphrase.
    assert!(
        log.contains("sealed it with the key store passphrase"),
        "{log}"
    );
    let identity = std::fs::read_to_string(dir.path().join("node1/identity.key")).unwrap();
    assert!(identity.contains("frostnode-sealed-file/v1"), "{identity}");

    for (env, expect) in [
        (Some("wrong one"), "wrong passphrase"),
        (None, "FROSTNODE_TEST_PASSPHRASE is not set"),
    ] {
        let mut cmd = Command::new(BIN);
        cmd.arg("run").arg("--config").arg(&config);
        cmd.env_remove("FROSTNODE_TEST_PASSPHRASE");
        if let Some(v) = env {
            cmd.env("FROSTNODE_TEST_PASSPHRASE", v);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "must refuse to start");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{err}");
        assert!(
            !err.contains("right one") && !err.contains("wrong one"),
            "passphrase leaked: {err}"
        );
    }
    // Without any passphrase configured, the sealed identity is named as the reason.
    let text = std::fs::read_to_string(&config).unwrap();
    let cut = text.find("\n[keystore]").unwrap();
    std::fs::write(&config, &text[..cut]).unwrap();
    let out = Command::new(BIN)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success(), "must refuse to start");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("identity file") && err.contains("is sealed"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_bursts_loses_nothing_confirmed() {
    let mut c = Cluster::new();
    for k in 1..=5u16 {
        c.wait_ready(k, &others(u64::from(k))).await;
    }
    let (s, _) = c
        .post(1, "/v1/keys", json!({ "key_id": "base", "threshold": 3 }))
        .await;
    assert_eq!(s, 200);
    let mut confirmed: Vec<(String, String)> = Vec::new();
    let signed: &'static std::sync::atomic::AtomicUsize =
        Box::leak(Box::new(std::sync::atomic::AtomicUsize::new(0)));
    for round in 0..4u16 {
        let victim = round % 5 + 1;
        // A key confirmed before the burst.
        let key_id = format!("pre{round}");
        let (s, b) = c
            .post(
                victim,
                "/v1/keys",
                json!({ "key_id": key_id, "threshold": 3 }),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        confirmed.push((key_id, b["group_public_key"].as_str().unwrap().to_string()));
        // A burst of key generations and signatures through the other nodes.
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..3u16 {
            let via = (victim + i) % 5 + 1;
            let url = c.url(via, "/v1/keys");
            let http = c.http.clone();
            let key_id = format!("r{round}k{i}");
            let token = c.admin.keygen_token(&key_id, Some(3), None);
            tasks.spawn(async move {
                let r = http
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({ "key_id": key_id, "threshold": 3 }))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => {
                        let v: Value = r.json().await.unwrap();
                        Some((key_id, v["group_public_key"].as_str().unwrap().to_string()))
                    }
                    _ => None,
                }
            });
        }
        for i in 0..8u16 {
            let via = (victim + i % 4) % 5 + 1;
            let url = c.url(via, "/v1/keys/base/sign");
            let http = c.http.clone();
            let message = format!("{round:02x}{i:02x}");
            let token = c.admin.sign_token("base", &hex::decode(&message).unwrap());
            tasks.spawn(async move {
                let r = http
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({ "message": message }))
                    .send()
                    .await;
                if r.is_ok_and(|r| r.status() == 200) {
                    signed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                None
            });
        }
        // Kill a node in the middle of the burst: as soon as the first request has finished.
        let t0 = Instant::now();
        if let Some(first) = tasks.join_next().await {
            confirmed.extend(first.unwrap());
        }
        c.crash(victim);
        let t1 = Instant::now();
        while let Some(r) = tasks.join_next().await {
            confirmed.extend(r.unwrap());
        }
        let t2 = Instant::now();
        c.start(victim);
        for k in 1..=5u16 {
            c.wait_ready(k, &others(u64::from(k))).await;
        }
        eprintln!(
            "round {round}: first answer {:?}, the rest {:?}, back {:?}",
            t1 - t0,
            t2 - t1,
            t2.elapsed()
        );
    }

    // The bursts did real work (with valid tokens), not just 401s.
    let signed = signed.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        confirmed.len() > 4 || signed > 0,
        "no burst request succeeded: {confirmed:?}"
    );
    assert!(confirmed.len() >= 4, "{confirmed:?}");
    // Every key confirmed to a client is on every node, with the same group key, and signs.
    for (key_id, gpk) in &confirmed {
        for k in 1..=5 {
            let (s, key) = c.get(k, &format!("/v1/keys/{key_id}")).await;
            assert_eq!(s, 200, "node {k} lost confirmed key {key_id}");
            assert_eq!(key["group_public_key"], gpk.as_str());
        }
    }
    for (key_id, gpk) in confirmed
        .iter()
        .chain([("base".to_string(), String::new())].iter())
    {
        let (s, sig) = c
            .post(
                2,
                &format!("/v1/keys/{key_id}/sign"),
                json!({ "message": "c0ffee" }),
            )
            .await;
        assert_eq!(s, 200, "{key_id}: {sig}");
        if !gpk.is_empty() {
            assert_eq!(sig["group_public_key"], gpk.as_str());
        }
    }

    // Stopped, every node's key store loads completely: no torn file anywhere.
    for k in 1..=5 {
        c.stop(k);
        let store = frostnode::keystore::KeyStore::open(&c.dir.path().join(format!("node{k}")))
            .unwrap_or_else(|e| panic!("node {k}'s key store: {e}"));
        assert!(store.get("base").is_some());
    }
}

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_keys_and_tokens_from_the_cli() {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("client.key");
    let key_path = key_file.to_str().unwrap();
    let (ok, public_key, err) = cli(&["client-key", "--out", key_path]);
    assert!(ok, "{err}");
    let public_key = public_key.trim().to_string();
    assert_eq!(hex::decode(&public_key).unwrap().len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let (ok, _, err) = cli(&["client-key", "--out", key_path]);
    assert!(!ok && err.contains("not overwriting"), "{err}");

    let c = Cluster::with_config(|_, toml| {
        toml.push_str(&format!(
            "\n[[clients]]\nname = \"cli\"\npublic_key = \"{public_key}\"\nallow = [\"*\"]\n"
        ));
    });
    for k in 1..=5u16 {
        c.wait_ready(k, &others(u64::from(k))).await;
    }
    let api = |k: u16| c.url(k, "");
    let client = ["--client-key", key_path, "--client", "cli"];
    let (ok, out, err) = cli(&[
        &[
            "keygen",
            "--api",
            &api(1),
            "--key-id",
            "k",
            "--threshold",
            "3",
        ],
        &client[..],
    ]
    .concat());
    assert!(ok, "{err}");
    let gpk = serde_json::from_str::<Value>(&out).unwrap()["group_public_key"]
        .as_str()
        .unwrap()
        .to_string();
    let (ok, out, err) = cli(&[
        &[
            "sign",
            "--api",
            &api(2),
            "--key-id",
            "k",
            "--message",
            "6869",
        ],
        &client[..],
    ]
    .concat());
    assert!(ok, "{err}");
    let sig = serde_json::from_str::<Value>(&out).unwrap()["signature"]
        .as_str()
        .unwrap()
        .to_string();
    let (ok, _, err) = cli(&[
        "verify",
        "--public-key",
        &gpk,
        "--message",
        "6869",
        "--signature",
        &sig,
    ]);
    assert!(ok, "{err}");

    // Without a token: 401. With one from `frostnode token`, as curl would send it: 200.
    let (status, body) = c
        .post_with(3, "/v1/keys/k/sign", json!({ "message": "6869" }), None)
        .await;
    assert_eq!(status, 401, "{body}");
    let (ok, token, err) = cli(&[
        &[
            "token",
            "--act",
            "sign",
            "--key-id",
            "k",
            "--message",
            "6869",
        ],
        &client[..],
    ]
    .concat());
    assert!(ok, "{err}");
    let r = c
        .http
        .post(c.url(3, "/v1/keys/k/sign"))
        .bearer_auth(token.trim())
        .json(&json!({ "message": "6869" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}
