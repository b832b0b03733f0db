//! The sealed manifest of a key store with a passphrase: every key id with its group key, epoch
//! and the SHA-256 of its file, under a counter, sealed like the key files. At start it tells
//! a deleted key file, or one replaced by another version, from an intact store; without the
//! passphrase nobody can write a manifest the node accepts. Also the store's check of its key
//! files against the manifest when it opens ([`KeyStore::check_manifest`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{KeyStore, KeyStoreError, StoredKey};
use crate::sealing::{SealedBlob, Sealer};

/// File of the manifest, in the keys directory (not a valid key id).
pub const MANIFEST_FILE: &str = ".manifest.json";
const AAD: &[u8] = b"frostnode/manifest/v1";

/// What the manifest records of one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Group public key, hex.
    pub group_public_key: String,
    /// The key's epoch (0 until keys can be refreshed).
    pub epoch: u64,
    /// SHA-256 of the key file's bytes, hex.
    pub digest: String,
}

/// Every key of the store, as last written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Incremented at every write.
    pub counter: u64,
    /// Keys by id.
    pub keys: BTreeMap<String, Entry>,
    /// Keys the operator declared lost (`frostnode keys forget`), with when: the entry they
    /// had, kept for the record.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub forgotten: BTreeMap<String, (u64, Entry)>,
}

/// SHA-256 of a key file's bytes, hex.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn path(dir: &Path) -> PathBuf {
    dir.join(MANIFEST_FILE)
}

fn tampered(dir: &Path, message: impl Into<String>) -> KeyStoreError {
    KeyStoreError::Tampered {
        path: dir.to_path_buf(),
        message: message.into(),
    }
}

impl Manifest {
    /// Reads and opens the manifest of the store in `dir`, if there is one.
    pub fn read(dir: &Path, sealer: &Sealer) -> Result<Option<Manifest>, KeyStoreError> {
        let bytes = match std::fs::read(path(dir)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(KeyStoreError::Io {
                    path: path(dir),
                    source,
                })
            }
        };
        let blob: SealedBlob = serde_json::from_slice(&bytes).map_err(|e| {
            tampered(
                dir,
                format!("{MANIFEST_FILE} is not a sealed manifest: {e}"),
            )
        })?;
        let plain = sealer
            .open_blob(AAD, &blob)
            .map_err(|_| tampered(dir, format!("{MANIFEST_FILE} does not authenticate")))?;
        serde_json::from_slice(&plain)
            .map(Some)
            .map_err(|e| tampered(dir, format!("{MANIFEST_FILE} does not parse: {e}")))
    }

    /// The sealed bytes of this manifest.
    pub fn seal(&self, sealer: &Sealer) -> Result<Vec<u8>, KeyStoreError> {
        let plain = serde_json::to_vec(self).map_err(|e| tampered(Path::new(""), e.to_string()))?;
        let blob = sealer.seal(AAD, &plain)?;
        serde_json::to_vec_pretty(&blob).map_err(|e| tampered(Path::new(""), e.to_string()))
    }

    /// Writes this manifest to `dir` (atomically).
    pub fn write(&self, dir: &Path, sealer: &Sealer) -> Result<(), KeyStoreError> {
        let bytes = self.seal(sealer)?;
        crate::securefile::write_private_atomic(&path(dir), &bytes).map_err(|source| {
            KeyStoreError::Io {
                path: path(dir),
                source,
            }
        })
    }

    /// Checks the key files found (`found`: key id → digest of its file) against this
    /// manifest: a listed key whose file is gone, or whose file is not the version recorded,
    /// is tampering. Keys found but not listed are returned (a crash between writing a key
    /// file and the manifest leaves one; it passed every other check).
    pub fn check(
        &self,
        dir: &Path,
        found: &BTreeMap<String, String>,
    ) -> Result<Vec<String>, KeyStoreError> {
        for (key_id, entry) in &self.keys {
            match found.get(key_id) {
                None => {
                    return Err(tampered(
                        dir,
                        format!("key file {key_id}.json, listed in the manifest, is missing"),
                    ))
                }
                Some(d) if *d != entry.digest => {
                    return Err(tampered(
                        dir,
                        format!(
                            "key file {key_id}.json is not the version the manifest records (altered or rolled back)"
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(found
            .keys()
            .filter(|k| !self.keys.contains_key(*k))
            .cloned()
            .collect())
    }
}

/// The one writer of a store's manifest: each new key is added to the manifest as it is at
/// that moment, under a lock, so concurrent key writes never lose each other's entries.
pub struct Writer {
    dir: PathBuf,
    sealer: Sealer,
    state: Mutex<Manifest>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "manifest::Writer({})", self.dir.display())
    }
}

impl Writer {
    /// The writer of the manifest `state` of the store in `dir`.
    pub fn new(dir: PathBuf, sealer: Sealer, state: Manifest) -> Self {
        Writer {
            dir,
            sealer,
            state: Mutex::new(state),
        }
    }

    /// Adds (or replaces) `key_id`'s entry and writes the manifest. Blocking.
    pub fn add(&self, key_id: &str, entry: Entry) -> Result<(), KeyStoreError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.keys.insert(key_id.to_string(), entry);
        state.counter += 1;
        state.write(&self.dir, &self.sealer)
    }

    /// Stops listing `key_id` (its entry moves to the record of keys this node no longer
    /// holds, dated `now`) and writes the manifest. Blocking.
    pub fn remove(&self, key_id: &str, now: u64) -> Result<(), KeyStoreError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = state.keys.remove(key_id) else {
            return Ok(());
        };
        state.forgotten.insert(key_id.to_string(), (now, entry));
        state.counter += 1;
        state.write(&self.dir, &self.sealer)
    }
}

impl KeyStore {
    /// Compares the key files found (id → digest) with the sealed manifest, and keeps the
    /// manifest up to date; a store from before manifests gets one now. Files the operator had
    /// sealed now (`sealed_now`) are new versions by their say-so.
    pub(super) fn check_manifest(
        &mut self,
        found: &BTreeMap<String, String>,
        sealed_now: &[String],
    ) -> Result<(), KeyStoreError> {
        let Some(sealer) = self.sealer.as_mut() else {
            return Ok(());
        };
        let entry = |key: &StoredKey, digest: &String| Entry {
            group_public_key: key.group_public_key.clone(),
            epoch: key.epoch,
            digest: digest.clone(),
        };
        let mut manifest = match Manifest::read(&self.dir, sealer)? {
            Some(m) => m,
            None if sealer.manifest_required() => {
                return Err(KeyStoreError::Tampered {
                    path: self.dir.clone(),
                    message: format!("{} is missing", MANIFEST_FILE),
                })
            }
            None => Manifest::default(),
        };
        for key_id in sealed_now {
            manifest.keys.remove(key_id);
        }
        let mut unlisted = manifest.check(&self.dir, found)?;
        // A file the manifest records as left (or forgotten) in exactly this version: the node
        // stopped between writing the manifest and deleting the file. Finish the deletion.
        unlisted.retain(|key_id| {
            let left = manifest
                .forgotten
                .get(key_id)
                .is_some_and(|(_, e)| found.get(key_id) == Some(&e.digest));
            if left {
                let path = self.dir.join(format!("{key_id}.json"));
                if crate::securefile::remove_durably(&path).is_ok() {
                    tracing::warn!(key_id = %key_id, "deleted the share of a key this node had left (the deletion was interrupted)");
                    self.keys.remove(key_id);
                    return false;
                }
            }
            true
        });
        if !unlisted.is_empty() || !sealer.manifest_required() {
            for key_id in &unlisted {
                if manifest.counter > 0 && !sealed_now.contains(key_id) {
                    tracing::warn!(key_id = %key_id, "key file not in the manifest (a write the process did not finish); added");
                }
                if let (Some(key), Some(d)) = (self.keys.get(key_id), found.get(key_id)) {
                    manifest.keys.insert(key_id.clone(), entry(key, d));
                }
            }
            manifest.counter += 1;
            manifest.write(&self.dir, sealer)?;
            if !sealer.manifest_required() {
                sealer.require_manifest(&self.dir)?;
                tracing::info!(dir = %self.dir.display(), "key store manifest created: deleted or replaced key files are detected from now on");
            }
        }
        self.manifest = Some(std::sync::Arc::new(Writer::new(
            self.dir.clone(),
            sealer.clone(),
            manifest,
        )));
        Ok(())
    }
}
