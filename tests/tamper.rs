//! A tamper-evident key store: someone who can write a node's data directory but knows no
//! passphrase plants, swaps or alters key files. Each time the node (a real `frostnode run`
//! process) refuses to start with a one-line reason, and leaves every file as it was.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::process::{others, ProcessCluster, BIN};
use frostnode::keystore::{KeyStore, StoredKey};
use serde_json::json;

const PASSPHRASE: &str = "a passphrase for the tamper test";

/// Every file under `dir`, with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

fn restore(dir: &Path, files: &BTreeMap<PathBuf, Vec<u8>>) {
    for path in snapshot(dir).keys() {
        if !files.contains_key(path) {
            std::fs::remove_file(path).unwrap();
        }
    }
    for (path, bytes) in files {
        std::fs::write(path, bytes).unwrap();
    }
}

/// Starts node 1 of `c` (stopped) and expects it to refuse: returns its one-line reason.
fn refuses(c: &ProcessCluster, passphrase: bool) -> String {
    let mut cmd = Command::new(BIN);
    cmd.arg("run")
        .arg("--config")
        .arg(c.dir.path().join("node1.toml"));
    if passphrase {
        cmd.env("FROSTNODE_TAMPER_PASSPHRASE", PASSPHRASE);
    }
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "node 1 started: {err}");
    let line = err
        .lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no one-line reason: {err}"))
        .to_string();
    assert!(!line.contains(PASSPHRASE), "passphrase leaked: {line}");
    line
}

/// Five nodes (with or without a passphrase) and a key `k`; every node stopped again.
async fn cluster_with_a_key(passphrase: bool) -> ProcessCluster {
    if passphrase {
        std::env::set_var("FROSTNODE_TAMPER_PASSPHRASE", PASSPHRASE);
    }
    let mut c = ProcessCluster::with_config(|_, toml| {
        if passphrase {
            toml.push_str("\n[keystore]\npassphrase_env = \"FROSTNODE_TAMPER_PASSPHRASE\"\n");
        }
    });
    for k in 1..=5u16 {
        c.wait_ready(k, &others(u64::from(k))).await;
    }
    let (s, b) = c
        .post(1, "/v1/keys", json!({ "key_id": "k", "threshold": 3 }))
        .await;
    assert_eq!(s, 200, "{b}");
    for k in 1..=5 {
        c.stop(k);
    }
    c
}

fn key_file(c: &ProcessCluster, node: u16) -> PathBuf {
    c.dir.path().join(format!("node{node}/keys/k.json"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_store_refuses_planted_swapped_and_orphaned_files() {
    let c = cluster_with_a_key(true).await;
    let node1 = c.dir.path().join("node1");
    let before = snapshot(&node1);
    let pass = Some(PASSPHRASE.as_bytes());

    // A key file in clear, dropped in place of the sealed one.
    let store = KeyStore::open_with(&node1, pass).unwrap();
    let key: &StoredKey = store.get("k").unwrap();
    std::fs::write(key_file(&c, 1), serde_json::to_vec(key).unwrap()).unwrap();
    drop(store);
    let planted = snapshot(&node1);
    let reason = refuses(&c, true);
    assert!(reason.contains("in clear in a sealed store"), "{reason}");
    assert_eq!(snapshot(&node1), planted, "nothing was rewritten");
    restore(&node1, &before);

    // Another node's (sealed) key file copied over this node's.
    std::fs::copy(key_file(&c, 2), key_file(&c, 1)).unwrap();
    let swapped = snapshot(&node1);
    let reason = refuses(&c, true);
    assert!(reason.contains("does not authenticate"), "{reason}");
    assert_eq!(snapshot(&node1), swapped);
    restore(&node1, &before);

    // The store's metadata deleted: it must not silently become a new, empty store.
    std::fs::remove_file(node1.join("keys/.keystore.json")).unwrap();
    let orphaned = snapshot(&node1);
    let reason = refuses(&c, true);
    assert!(reason.contains(".keystore.json is missing"), "{reason}");
    assert_eq!(snapshot(&node1), orphaned);
    restore(&node1, &before);

    // A key file deleted, or the manifest deleted: both are noticed.
    std::fs::remove_file(key_file(&c, 1)).unwrap();
    let deleted = snapshot(&node1);
    let reason = refuses(&c, true);
    assert!(
        reason.contains("k.json, listed in the manifest, is missing"),
        "{reason}"
    );
    assert_eq!(snapshot(&node1), deleted);
    restore(&node1, &before);
    std::fs::remove_file(node1.join("keys/.manifest.json")).unwrap();
    let reason = refuses(&c, true);
    assert!(reason.contains(".manifest.json is missing"), "{reason}");
    restore(&node1, &before);

    // An older version of a key file put back. A new version is made the only way there is
    // without the passphrase's help: the operator seals a file in clear (with the flag).
    let store = KeyStore::open_with(&node1, pass).unwrap();
    let key: &StoredKey = store.get("k").unwrap();
    std::fs::write(key_file(&c, 1), serde_json::to_vec(key).unwrap()).unwrap();
    drop(store);
    let node = Command::new(BIN)
        .args(["run", "--seal-plaintext-keys", "--config"])
        .arg(c.dir.path().join("node1.toml"))
        .env("FROSTNODE_TAMPER_PASSPHRASE", PASSPHRASE)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Up means its store was checked and written (its API answers only after that).
    let health = c.url(1, "/v1/health");
    let deadline = std::time::Instant::now() + common::WAIT;
    while reqwest::get(&health).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "node 1 did not start");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let _ = Command::new("kill").arg(node.id().to_string()).status();
    assert!(node.wait_with_output().unwrap().status.success());
    assert_ne!(
        std::fs::read(key_file(&c, 1)).unwrap(),
        before[&key_file(&c, 1)],
        "the node wrote a new version"
    );
    std::fs::write(key_file(&c, 1), &before[&key_file(&c, 1)]).unwrap();
    let reason = refuses(&c, true);
    assert!(
        reason.contains("not the version the manifest records"),
        "{reason}"
    );

    // Untouched, it opens.
    restore(&node1, &before);
    let store = KeyStore::open_with(&node1, pass).unwrap();
    assert!(store.get("k").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_in_clear_refuses_altered_certificates_and_other_nodes_shares() {
    let c = cluster_with_a_key(false).await;
    let node1 = c.dir.path().join("node1");
    let before = snapshot(&node1);

    // One byte of one stored confirmation changed.
    let mut key: serde_json::Value =
        serde_json::from_slice(&std::fs::read(key_file(&c, 1)).unwrap()).unwrap();
    let signature = key["confirmations"][2]["signature"]
        .as_str()
        .unwrap()
        .to_string();
    let flipped = if signature.starts_with('0') { "1" } else { "0" };
    key["confirmations"][2]["signature"] = json!(format!("{flipped}{}", &signature[1..]));
    std::fs::write(key_file(&c, 1), serde_json::to_vec(&key).unwrap()).unwrap();
    let altered = snapshot(&node1);
    let reason = refuses(&c, false);
    assert!(
        reason.contains("node 3's confirmation signature does not verify"),
        "{reason}"
    );
    assert_eq!(snapshot(&node1), altered);
    restore(&node1, &before);

    // Node 2's key file (a valid key, a valid certificate, but node 2's share).
    std::fs::copy(key_file(&c, 2), key_file(&c, 1)).unwrap();
    let swapped = snapshot(&node1);
    let reason = refuses(&c, false);
    assert!(
        reason.contains("another participant's share, not node 1's"),
        "{reason}"
    );
    assert_eq!(snapshot(&node1), swapped);
    restore(&node1, &before);

    // Two key ids that differ only in case.
    std::fs::copy(key_file(&c, 1), node1.join("keys/K.json")).unwrap();
    let mut twin: serde_json::Value =
        serde_json::from_slice(&std::fs::read(node1.join("keys/K.json")).unwrap()).unwrap();
    twin["key_id"] = json!("K");
    std::fs::write(
        node1.join("keys/K.json"),
        serde_json::to_vec(&twin).unwrap(),
    )
    .unwrap();
    let reason = refuses(&c, false);
    assert!(reason.contains("differ only in case"), "{reason}");
    restore(&node1, &before);

    // The identity file readable by others, or by a group of a file root does not own:
    // refused, whatever it holds.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let identity = node1.join("identity.key");
    let mode = |m| std::fs::set_permissions(&identity, std::fs::Permissions::from_mode(m));
    let owner = std::fs::metadata(&identity).unwrap().uid();
    for m in [0o644, 0o604, 0o660] {
        mode(m).unwrap();
        let reason = refuses(&c, false);
        assert!(reason.contains("identity.key is readable by"), "{reason}");
        assert!(reason.contains("chmod 600"), "{reason}");
    }
    if owner == 0 {
        std::os::unix::fs::chown(&identity, Some(12345), None).unwrap();
    }
    mode(0o640).unwrap();
    let reason = refuses(&c, false);
    assert!(reason.contains("readable by its group"), "{reason}");
    std::os::unix::fs::chown(&identity, Some(owner), None).unwrap();
    mode(0o600).unwrap();
    assert_eq!(snapshot(&node1), before);

    let store = KeyStore::open(&node1).unwrap();
    assert!(store.get("k").is_some());
}
