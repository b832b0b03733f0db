//! Replacing what a node holds, as an operator does it with processes, config files and the
//! command line: a node whose whole disk is replaced comes back under a new identity (other
//! nodes' configs updated and reloaded, by `SIGHUP` and by `frostnode reload`) and is
//! repaired; a node that lost only a key file in a sealed store is refused a silent start,
//! forgotten by `frostnode keys forget`, and repaired; a key in sealed stores is reshared by
//! `frostnode reshare`, and the nodes it removed restart cleanly without it.

mod common;

use std::process::Command;

use common::process::{others, ProcessCluster, BIN};
use serde_json::{json, Value};

fn run_cli(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "frostnode {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn all_ready(c: &ProcessCluster) {
    for k in 1..=5u16 {
        c.wait_ready(k, &others(u64::from(k))).await;
    }
}

/// Signs through `via` and checks the signature; returns the signers.
async fn sign(c: &ProcessCluster, via: u16, gpk: &str, text: &str) -> Vec<u64> {
    let message = hex::encode(text);
    let (s, sig) = c
        .post(via, "/v1/keys/k/sign", json!({ "message": message }))
        .await;
    assert_eq!(s, 200, "{sig}");
    assert_eq!(sig["group_public_key"], gpk);
    let signature = sig["signature"].as_str().unwrap();
    run_cli(&[
        "verify",
        "--public-key",
        gpk,
        "--message",
        &message,
        "--signature",
        signature,
    ]);
    sig["signers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_u64)
        .collect()
}

async fn keygen(c: &ProcessCluster) -> String {
    let (s, body) = c
        .post(1, "/v1/keys", json!({ "key_id": "k", "threshold": 3 }))
        .await;
    assert_eq!(s, 200, "{body}");
    body["group_public_key"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_disk_is_replaced_is_repaired_under_its_new_identity() {
    let mut c = ProcessCluster::new();
    all_ready(&c).await;
    let gpk = keygen(&c).await;

    // Node 3's disk is replaced: a new data directory, a new identity.
    c.stop(3);
    let data = c.dir.path().join("node3");
    std::fs::remove_dir_all(&data).unwrap();
    let new_id = run_cli(&["init", "--data-dir", data.to_str().unwrap()])
        .trim()
        .to_string();
    let old_id = {
        let text = std::fs::read_to_string(c.dir.path().join("node1.toml")).unwrap();
        let at = text.find("id = 3\npeer_id = \"").unwrap() + "id = 3\npeer_id = \"".len();
        text[at..at + new_id.len()].to_string()
    };
    assert_ne!(old_id, new_id);
    for k in [1, 2, 4, 5] {
        let path = c.dir.path().join(format!("node{k}.toml"));
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace(&old_id, &new_id)).unwrap();
    }
    // Nodes 1 and 2 reload on SIGHUP, 4 and 5 through the command line.
    for k in [1, 2] {
        let pid = c.pid(k).to_string();
        assert!(Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success());
    }
    for k in [4, 5] {
        let api = c.url(k, "");
        let report = run_cli(&["reload", "--api", api.trim_end_matches('/')]);
        assert!(report.contains("\"changed\""), "{report}");
    }
    // A node restarted before the repair still reads its key (node 3's old confirmation is
    // checked against the identity recorded with it).
    c.stop(2);
    c.start(2);
    c.start(3);
    all_ready(&c).await;
    assert!(c.log(2).contains("identity changed"), "{}", c.log(2));

    let (s, info) = c.post(1, "/v1/keys/k/repair", json!({ "node": 3 })).await;
    assert_eq!(s, 200, "{info}\nnode 3 log:\n{}", c.log(3));
    assert_eq!(info["group_public_key"], gpk.as_str());
    assert_eq!(info["epoch"], 1);
    let (s, key) = c.get(3, "/v1/keys/k").await;
    assert_eq!(s, 200);
    assert_eq!(key["epoch"], 1);

    // Signer sets that include node 3: with 4 and 5 gone, every one does.
    c.stop(4);
    c.stop(5);
    for via in [1, 3] {
        let signers = sign(&c, via, &gpk, &format!("node 3 is back, via {via}")).await;
        assert_eq!(signers, vec![1, 2, 3]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_key_file_is_forgotten_then_repaired() {
    let mut c = ProcessCluster::with_setup(
        |_, text| text.push_str("\n[keystore]\npassphrase_file = \"pass.txt\"\n"),
        |dir| {
            use std::os::unix::fs::PermissionsExt;
            let pass = dir.join("pass.txt");
            std::fs::write(&pass, "a passphrase for the test").unwrap();
            std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
        },
    );
    all_ready(&c).await;
    let gpk = keygen(&c).await;

    c.stop(4);
    std::fs::remove_file(c.dir.path().join("node4/keys/k.json")).unwrap();
    // The sealed store refuses to start without the file it lists.
    let config = c.dir.path().join("node4.toml");
    let out = Command::new(BIN)
        .args(["run", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("missing"), "{stderr}");

    let said = run_cli(&["keys", "forget", "k", "--config", config.to_str().unwrap()]);
    assert!(said.contains("forgotten on node 4"), "{said}");
    c.start(4);
    all_ready(&c).await;
    let (s, info) = c.post(2, "/v1/keys/k/repair", json!({ "node": 4 })).await;
    assert_eq!(s, 200, "{info}\nnode 4 log:\n{}", c.log(4));
    assert_eq!(info["epoch"], 1);
    c.stop(1);
    c.stop(5);
    let signers = sign(&c, 4, &gpk, "node 4 is back").await;
    assert_eq!(signers, vec![2, 3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reshare_by_the_command_line_removes_nodes_that_then_restart_without_the_key() {
    let mut c = ProcessCluster::with_setup(
        |_, text| text.push_str("\n[keystore]\npassphrase_file = \"pass.txt\"\n"),
        |dir| {
            use std::os::unix::fs::PermissionsExt;
            let pass = dir.join("pass.txt");
            std::fs::write(&pass, "a passphrase for the test").unwrap();
            std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
        },
    );
    all_ready(&c).await;
    let gpk = keygen(&c).await;
    // 3-of-5 becomes 2-of-3 over nodes 1, 2 and 3.
    let api = c.url(2, "");
    let client_key = c.dir.path().join("client.key");
    let out = run_cli(&[
        "reshare",
        "--api",
        api.trim_end_matches('/'),
        "--key-id",
        "k",
        "--threshold",
        "2",
        "--participants",
        "1,2,3",
        "--client-key",
        client_key.to_str().unwrap(),
    ]);
    let info: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(info["group_public_key"], gpk.as_str());
    assert_eq!(
        (info["epoch"].as_u64(), info["threshold"].as_u64()),
        (Some(1), Some(2))
    );
    for k in [4, 5] {
        assert!(
            !c.dir.path().join(format!("node{k}/keys/k.json")).exists(),
            "node {k} keeps its share"
        );
    }
    // Nodes 4 and 5 start again: their sealed manifests no longer list the key. Node 2 starts
    // again with the new epoch: its certificate (the new participants' confirmations) checks.
    for k in [2, 4, 5] {
        c.stop(k);
        c.start(k);
    }
    all_ready(&c).await;
    let (s, key) = c.get(2, "/v1/keys/k").await;
    assert_eq!((s, key["epoch"].as_u64()), (200, Some(1)), "{key}");
    for k in [4, 5] {
        let (s, _) = c.get(k, "/v1/keys/k").await;
        assert_eq!(s, 404, "node {k} still holds the key");
    }
    // Two of the three sign.
    c.stop(1);
    let signers = sign(&c, 3, &gpk, "2-of-3 now").await;
    assert_eq!(signers, vec![2, 3]);
}
