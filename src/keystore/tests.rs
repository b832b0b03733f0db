//! Key store: ids, sealing, corruption and tampering.
use super::*;

#[test]
fn key_ids() {
    for ok in ["a", "key-1", "A.b_c", &"x".repeat(64)] {
        assert!(validate_key_id(ok).is_ok(), "{ok}");
    }
    for bad in ["", ".hidden", "../etc", "a/b", "a b", "ü", &"x".repeat(65)] {
        assert!(validate_key_id(bad).is_err(), "{bad}");
    }
}

#[test]
fn corrupt_file_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    KeyStore::open(dir.path()).unwrap();
    std::fs::write(dir.path().join("keys/k.json"), b"{\"format_version\": 1").unwrap();
    match KeyStore::open(dir.path()) {
        Err(KeyStoreError::Corrupt { path, .. }) => assert!(path.ends_with("k.json")),
        other => panic!("expected corrupt, got {other:?}"),
    }
}

use frost_ed25519 as frost;
use frost_ed25519::keys::KeyPackage;

fn sample_key(key_id: &str) -> StoredKey {
    let (shares, public) = frost::keys::generate_with_dealer(
        3,
        2,
        frost::keys::IdentifierList::Default,
        rand::rngs::OsRng,
    )
    .unwrap();
    let share = shares.into_values().next().unwrap();
    let key_package = KeyPackage::try_from(share).unwrap();
    StoredKey {
        format_version: KEY_FORMAT_VERSION,
        key_id: key_id.into(),
        session: "00".into(),
        created_at: 0,
        threshold: 2,
        participants: vec![1, 2, 3],
        group_public_key: hex::encode(public.verifying_key().serialize().unwrap()),
        key_package,
        public_key_package: public,
        confirmations: vec![],
        epoch: 0,
        group_commitment: Vec::new(),
    }
}

#[test]
fn sealed_keys_round_trip_and_hide_the_share() {
    let dir = tempfile::tempdir().unwrap();
    let key = sample_key("k");
    let share_hex = hex::encode(key.key_package.signing_share().serialize());
    let mut store = KeyStore::open_with(dir.path(), Some(b"correct horse")).unwrap();
    assert!(store.is_encrypted());
    store.insert(key.clone()).unwrap();
    let on_disk = std::fs::read_to_string(dir.path().join("keys/k.json")).unwrap();
    assert!(
        !on_disk.contains(&share_hex),
        "the share is not on disk in clear"
    );
    assert!(on_disk.contains("\"sealed\""));

    let again = KeyStore::open_with(dir.path(), Some(b"correct horse")).unwrap();
    assert_eq!(
        again.get("k").unwrap().key_package.signing_share(),
        key.key_package.signing_share()
    );
}

#[test]
fn wrong_or_missing_passphrase_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = KeyStore::open_with(dir.path(), Some(b"right")).unwrap();
    store.insert(sample_key("k")).unwrap();
    assert!(matches!(
        KeyStore::open_with(dir.path(), Some(b"wrong")),
        Err(KeyStoreError::Seal(SealError::WrongPassphrase(_)))
    ));
    assert!(matches!(
        KeyStore::open(dir.path()),
        Err(KeyStoreError::Seal(SealError::PassphraseRequired(_)))
    ));
}

#[test]
fn plaintext_keys_are_sealed_when_a_passphrase_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let key = sample_key("old");
    let share_hex = hex::encode(key.key_package.signing_share().serialize());
    KeyStore::open(dir.path()).unwrap().insert(key).unwrap();
    let path = dir.path().join("keys/old.json");
    assert!(std::fs::read_to_string(&path).unwrap().contains(&share_hex));
    let store = KeyStore::open_with(dir.path(), Some(b"now secret")).unwrap();
    assert!(store.get("old").is_some());
    assert!(!std::fs::read_to_string(&path).unwrap().contains(&share_hex));
}

#[test]
fn tampered_sealed_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = KeyStore::open_with(dir.path(), Some(b"p")).unwrap();
    store.insert(sample_key("k")).unwrap();
    let path = dir.path().join("keys/k.json");
    let text = std::fs::read_to_string(&path).unwrap();
    // Flip one hex digit of the ciphertext.
    let at = text.find("\"ciphertext\": \"").unwrap() + 20;
    let mut bytes = text.into_bytes();
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    std::fs::write(&path, bytes).unwrap();
    assert!(matches!(
        KeyStore::open_with(dir.path(), Some(b"p")),
        Err(KeyStoreError::Corrupt { .. })
    ));
}

#[test]
fn a_passphrase_on_a_store_in_clear_needs_the_one_time_migration() {
    let dir = tempfile::tempdir().unwrap();
    KeyStore::open(dir.path())
        .unwrap()
        .insert(sample_key("old"))
        .unwrap();
    let strict = || OpenChecks::default();
    match KeyStore::open_checked(dir.path(), Some(b"pass"), strict()) {
        Err(KeyStoreError::Tampered { message, .. }) => {
            assert!(message.contains("--seal-plaintext-keys"), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(
        !dir.path().join("keys/.keystore.json").exists(),
        "a refusal writes nothing"
    );
    let migrate = OpenChecks {
        seal_plaintext: true,
        ..OpenChecks::default()
    };
    KeyStore::open_checked(dir.path(), Some(b"pass"), migrate).unwrap();
    let store = KeyStore::open_checked(dir.path(), Some(b"pass"), strict()).unwrap();
    assert!(store.get("old").is_some());
}

#[test]
fn a_new_key_never_replaces_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open(dir.path()).unwrap();
    let write = store.prepare(&sample_key("fresh")).unwrap();
    // A file appears under that name after the store was loaded.
    std::fs::write(dir.path().join("keys/fresh.json"), b"someone else's").unwrap();
    assert!(matches!(write.commit(), Err(KeyStoreError::Io { .. })));
    assert_eq!(
        std::fs::read(dir.path().join("keys/fresh.json")).unwrap(),
        b"someone else's"
    );
    // Ids that differ only in case are one id.
    let mut store = KeyStore::open_with(dir.path(), None);
    assert!(store.is_err(), "the foreign file does not load");
    std::fs::remove_file(dir.path().join("keys/fresh.json")).unwrap();
    store = KeyStore::open(dir.path());
    let mut store = store.unwrap();
    store.insert(sample_key("Fresh")).unwrap();
    assert!(store.contains("fresh") && store.contains("FRESH"));
    assert!(matches!(
        store.prepare(&sample_key("fresh")),
        Err(KeyStoreError::Exists(_))
    ));
}

#[test]
fn concurrent_key_writes_all_reach_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = KeyStore::open_with(dir.path(), Some(b"pass")).unwrap();
    let keys: Vec<StoredKey> = (0..8).map(|i| sample_key(&format!("k{i}"))).collect();
    let writes: Vec<KeyWrite> = keys.iter().map(|k| store.prepare(k).unwrap()).collect();
    let threads: Vec<_> = writes
        .into_iter()
        .map(|w| std::thread::spawn(move || w.commit()))
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    for k in keys {
        store.adopt(k).unwrap();
    }
    drop(store);
    let strict = OpenChecks::default();
    let store = KeyStore::open_checked(dir.path(), Some(b"pass"), strict).unwrap();
    assert_eq!(store.keys().count(), 8);
    let sealer = crate::sealing::Sealer::open(&dir.path().join("keys"), Some(b"pass"))
        .unwrap()
        .unwrap();
    let manifest = manifest::Manifest::read(&dir.path().join("keys"), &sealer)
        .unwrap()
        .unwrap();
    assert_eq!(manifest.keys.len(), 8, "every key listed");
}

#[test]
fn a_refused_start_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    KeyStore::open(dir.path())
        .unwrap()
        .insert(sample_key("good"))
        .unwrap();
    std::fs::write(dir.path().join("keys/bad.json"), b"{\"format_version\": 1").unwrap();
    std::fs::write(dir.path().join("keys/good.json.1.2.tmp"), b"half a write").unwrap();
    let before: Vec<_> = std::fs::read_dir(dir.path().join("keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let migrate = OpenChecks {
        seal_plaintext: true,
        ..OpenChecks::default()
    };
    assert!(matches!(
        KeyStore::open_checked(dir.path(), Some(b"pass"), migrate),
        Err(KeyStoreError::Corrupt { .. })
    ));
    let after: Vec<_> = std::fs::read_dir(dir.path().join("keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        before.len(),
        after.len(),
        "no metadata written, no file removed"
    );
    assert!(!dir.path().join("keys/.keystore.json").exists());
}

#[test]
fn a_sealed_file_relabelled_as_another_node_key_or_epoch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = sample_key("k");
    let holder = key.holder().unwrap();
    let mut store = KeyStore::open_with(dir.path(), Some(b"p")).unwrap();
    store.insert(key.clone()).unwrap();
    drop(store);
    let path = dir.path().join("keys/k.json");
    let bytes = std::fs::read(&path).unwrap();
    let original: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(original["format_version"], 2);
    assert_eq!(original["node_id"], holder);
    assert_eq!(original["epoch"], 0);
    let other_key = sample_key("k").group_public_key;
    let relabel: [(&str, serde_json::Value); 3] = [
        ("node_id", (holder % 3 + 1).into()),
        ("group_public_key", other_key.into()),
        ("epoch", 1.into()),
    ];
    for (field, value) in relabel {
        let mut file = original.clone();
        file[field] = value;
        std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
        match KeyStore::open_with(dir.path(), Some(b"p")) {
            Err(KeyStoreError::Corrupt { path: p, .. }) => assert_eq!(p, path, "{field}"),
            other => panic!("{field} relabelled: expected corrupt, got {other:?}"),
        }
    }
    std::fs::write(&path, bytes).unwrap();
    assert!(KeyStore::open_with(dir.path(), Some(b"p")).is_ok());
}

#[test]
fn sealed_files_of_earlier_releases_still_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open_with(dir.path(), Some(b"p")).unwrap();
    let sealer = store.sealer.clone().unwrap();
    drop(store);
    let key = sample_key("old");
    let plain = serde_json::to_vec(&key).unwrap();
    let legacy = serde_json::json!({
        "format_version": 1,
        "key_id": "old",
        "sealed": sealer.seal(b"frostnode/key/v1/old", &plain).unwrap(),
    });
    std::fs::write(
        dir.path().join("keys/old.json"),
        serde_json::to_vec(&legacy).unwrap(),
    )
    .unwrap();
    let store = KeyStore::open_with(dir.path(), Some(b"p")).unwrap();
    assert_eq!(
        store.get("old").unwrap().group_public_key,
        key.group_public_key
    );
}

#[test]
fn a_lost_key_file_is_refused_until_the_operator_forgets_it() {
    let dir = tempfile::tempdir().unwrap();
    let pass = Some(&b"correct horse"[..]);
    let mut store = KeyStore::open_with(dir.path(), pass).unwrap();
    store.insert(sample_key("lost")).unwrap();
    store.insert(sample_key("kept")).unwrap();
    drop(store);
    std::fs::remove_file(dir.path().join("keys/lost.json")).unwrap();
    let err = KeyStore::open_with(dir.path(), pass).unwrap_err();
    assert!(matches!(err, KeyStoreError::Tampered { .. }), "{err}");

    // A wrong passphrase cannot forget anything.
    assert!(KeyStore::forget(dir.path(), Some(b"wrong"), "lost", 7).is_err());
    let done = KeyStore::forget(dir.path(), pass, "lost", 7).unwrap();
    assert_eq!(
        done,
        Forgotten {
            file_deleted: false,
            was_listed: true,
            epoch: Some(0)
        }
    );
    let store = KeyStore::open_with(dir.path(), pass).unwrap();
    assert!(store.get("lost").is_none());
    assert!(store.get("kept").is_some());
    let sealer = crate::sealing::Sealer::open(&dir.path().join("keys"), pass)
        .unwrap()
        .unwrap();
    let manifest = manifest::Manifest::read(&dir.path().join("keys"), &sealer)
        .unwrap()
        .unwrap();
    assert_eq!(manifest.forgotten.get("lost").map(|(at, _)| *at), Some(7));
    assert!(!manifest.keys.contains_key("lost"));

    // A damaged file is deleted by the same command.
    std::fs::write(dir.path().join("keys/kept.json"), b"{ damaged").unwrap();
    let done = KeyStore::forget(dir.path(), pass, "kept", 8).unwrap();
    assert!(done.file_deleted && done.was_listed);
    assert!(KeyStore::open_with(dir.path(), pass)
        .unwrap()
        .get("kept")
        .is_none());
}
