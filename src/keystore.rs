//! The key store: one JSON file per key under `data_dir/keys/<key_id>.json`.
//!
//! Files are written atomically with mode 0600 and carry a format version, so later formats
//! (encryption at rest, refreshed shares) can be read next to old ones. A key enters the store
//! only after every DKG participant confirmed the same group key; the signed confirmations are
//! kept with it as its certificate.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use frost_ed25519::keys::{KeyPackage, PublicKeyPackage};
use serde::{Deserialize, Serialize};

use crate::securefile;
use crate::wire::NodeId;

/// Current key file format.
pub const KEY_FORMAT_VERSION: u32 = 1;
/// Longest allowed key id.
pub const MAX_KEY_ID_LEN: usize = 64;

/// Errors of the key store.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// A key id that cannot name a file.
    #[error("invalid key id {0:?}: use 1-64 characters of [A-Za-z0-9_.-], not starting with '.'")]
    InvalidKeyId(String),
    /// The id is taken.
    #[error("key {0:?} already exists")]
    Exists(String),
    /// Disk trouble.
    #[error("key store {path}: {source}")]
    Io {
        /// File or directory.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A key file that cannot be used. The node refuses to start rather than run without it.
    #[error("key file {path} is unreadable: {message}")]
    Corrupt {
        /// File path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Checks that a key id is safe to use as a file name.
pub fn validate_key_id(key_id: &str) -> Result<(), KeyStoreError> {
    let ok = !key_id.is_empty()
        && key_id.len() <= MAX_KEY_ID_LEN
        && !key_id.starts_with('.')
        && key_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(KeyStoreError::InvalidKeyId(key_id.to_string()))
    }
}

/// One participant's signed confirmation, as stored with the key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredConfirmation {
    /// The confirming node.
    pub node_id: NodeId,
    /// Transcript digest, hex.
    pub transcript: String,
    /// Public key package hash, hex.
    pub public_key_package_hash: String,
    /// Signature by the node's identity key, hex.
    pub signature: String,
}

/// A key share and its public data, as held on disk.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredKey {
    /// File format version ([`KEY_FORMAT_VERSION`]).
    pub format_version: u32,
    /// Key name.
    pub key_id: String,
    /// DKG session that produced the key, hex.
    pub session: String,
    /// Seconds since the Unix epoch when the key was stored.
    pub created_at: u64,
    /// Signing threshold.
    pub threshold: u16,
    /// Participant ids, sorted.
    pub participants: Vec<NodeId>,
    /// Group public key, hex.
    pub group_public_key: String,
    /// This node's share (secret).
    pub key_package: KeyPackage,
    /// Everyone's verifying shares and the group key.
    pub public_key_package: PublicKeyPackage,
    /// Every participant's signed confirmation of this key.
    pub confirmations: Vec<StoredConfirmation>,
}

impl fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredKey")
            .field("key_id", &self.key_id)
            .field("threshold", &self.threshold)
            .field("participants", &self.participants)
            .field("group_public_key", &self.group_public_key)
            .field("key_package", &"<redacted>")
            .finish()
    }
}

/// Public information about a key: what the API shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// Key name.
    pub key_id: String,
    /// Group public key, hex (32 bytes).
    pub group_public_key: String,
    /// Signing threshold.
    pub threshold: u16,
    /// Participant ids.
    pub participants: Vec<NodeId>,
    /// Each participant's verifying share, hex.
    pub verifying_shares: BTreeMap<NodeId, String>,
    /// Seconds since the Unix epoch when this node stored the key.
    pub created_at: u64,
}

impl StoredKey {
    /// The public view of this key.
    pub fn info(&self) -> KeyInfo {
        let mut verifying_shares = BTreeMap::new();
        for id in &self.participants {
            let Ok(ident) = frost_ed25519::Identifier::try_from(*id) else {
                continue;
            };
            if let Some(share) = self.public_key_package.verifying_shares().get(&ident) {
                if let Ok(bytes) = share.serialize() {
                    verifying_shares.insert(*id, hex::encode(bytes));
                }
            }
        }
        KeyInfo {
            key_id: self.key_id.clone(),
            group_public_key: self.group_public_key.clone(),
            threshold: self.threshold,
            participants: self.participants.clone(),
            verifying_shares,
            created_at: self.created_at,
        }
    }

    /// Internal consistency: the share belongs to the group key it claims.
    fn check(&self) -> Result<(), String> {
        if self.format_version != KEY_FORMAT_VERSION {
            return Err(format!(
                "format version {} is not supported (expected {KEY_FORMAT_VERSION})",
                self.format_version
            ));
        }
        validate_key_id(&self.key_id).map_err(|e| e.to_string())?;
        let gpk = self
            .public_key_package
            .verifying_key()
            .serialize()
            .map_err(|e| e.to_string())?;
        if hex::encode(gpk) != self.group_public_key
            || self.key_package.verifying_key() != self.public_key_package.verifying_key()
        {
            return Err("group public key does not match the key package".into());
        }
        let own = self
            .public_key_package
            .verifying_shares()
            .get(self.key_package.identifier());
        if own != Some(self.key_package.verifying_share()) {
            return Err("verifying share does not match the public key package".into());
        }
        Ok(())
    }
}

/// The key files of one node, loaded in memory.
#[derive(Debug)]
pub struct KeyStore {
    dir: PathBuf,
    keys: BTreeMap<String, StoredKey>,
}

impl KeyStore {
    /// Opens (creating if needed) `data_dir/keys` and loads every key. A file that does not
    /// parse or is inconsistent is an error: a node must not silently run without a key.
    pub fn open(data_dir: &Path) -> Result<KeyStore, KeyStoreError> {
        let dir = data_dir.join("keys");
        let io = |source| KeyStoreError::Io {
            path: dir.clone(),
            source,
        };
        securefile::create_private_dir(&dir).map_err(io)?;
        let removed = securefile::remove_stale_temp_files(&dir).map_err(io)?;
        if removed > 0 {
            tracing::warn!(dir = %dir.display(), removed, "removed unfinished key writes left by a crash");
        }
        let mut keys = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let key = Self::read_key(&path)?;
            let expected = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            if key.key_id != expected {
                return Err(KeyStoreError::Corrupt {
                    path,
                    message: format!("holds key {:?}, not {expected:?}", key.key_id),
                });
            }
            keys.insert(key.key_id.clone(), key);
        }
        Ok(KeyStore { dir, keys })
    }

    fn read_key(path: &Path) -> Result<StoredKey, KeyStoreError> {
        let bytes = std::fs::read(path).map_err(|source| KeyStoreError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let key: StoredKey =
            serde_json::from_slice(&bytes).map_err(|e| KeyStoreError::Corrupt {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        key.check().map_err(|message| KeyStoreError::Corrupt {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(key)
    }

    /// Directory holding the key files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether a key id is taken.
    pub fn contains(&self, key_id: &str) -> bool {
        self.keys.contains_key(key_id)
    }

    /// A key by id.
    pub fn get(&self, key_id: &str) -> Option<&StoredKey> {
        self.keys.get(key_id)
    }

    /// All keys, by id.
    pub fn keys(&self) -> impl Iterator<Item = &StoredKey> {
        self.keys.values()
    }

    /// Writes a new key to disk (atomically) and then keeps it in memory.
    pub fn insert(&mut self, key: StoredKey) -> Result<(), KeyStoreError> {
        validate_key_id(&key.key_id)?;
        if self.keys.contains_key(&key.key_id) {
            return Err(KeyStoreError::Exists(key.key_id));
        }
        let path = self.dir.join(format!("{}.json", key.key_id));
        let json = serde_json::to_vec_pretty(&key).map_err(|e| KeyStoreError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        securefile::write_private_atomic(&path, &json)
            .map_err(|source| KeyStoreError::Io { path, source })?;
        self.keys.insert(key.key_id.clone(), key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
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
}
