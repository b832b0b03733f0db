//! The key store: one JSON file per key under `data_dir/keys/<key_id>.json`.
//!
//! Files are written atomically with mode 0600 and carry a format version, so later formats
//! (encryption at rest, refreshed shares) can be read next to old ones. A key enters the store
//! only after every DKG participant confirmed the same group key; the signed confirmations are
//! kept with it as its certificate.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use zeroize::Zeroizing;

use crate::sealing::{SealError, SealedBlob, Sealer};

mod certificate;
mod epochs;
pub mod manifest;
mod types;

pub use epochs::Forgotten;
pub use types::{KeyInfo, StoredConfirmation, StoredKey};

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
    /// Passphrase trouble (wrong, missing) or sealing failure.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// A key file that cannot be used. The node refuses to start rather than run without it.
    #[error("key file {path} is unreadable: {message}")]
    Corrupt {
        /// File path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The store was changed behind the node's back (a file planted, removed or altered).
    #[error("key store {path} was tampered with: {message}")]
    Tampered {
        /// File or directory.
        path: PathBuf,
        /// What was found.
        message: String,
    },
}

/// What [`KeyStore::open_checked`] checks besides the passphrase.
#[derive(Default)]
pub struct OpenChecks<'a> {
    /// Seal key files found in clear in a store with a passphrase (the one-time migration when
    /// a passphrase is first configured). Without it such a file refuses the start: anyone who
    /// can write the directory could have planted it.
    pub seal_plaintext: bool,
    /// Every participant's identity key, this node's own included: each key's certificate
    /// (every participant's signed confirmation) is verified at load.
    pub certificates: Option<&'a dyn crate::dkg::ConfirmationKeys>,
    /// This node's id: every share must be this node's (not a file copied from another node).
    pub node_id: Option<NodeId>,
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

/// Format of sealed key files: 2 binds node, key id, group key and epoch; 1 (earlier
/// releases, still read) bound the key id alone.
const SEALED_FORMAT_VERSION: u32 = 2;

/// A key file sealed with the store's passphrase: what identifies the key is readable, and
/// bound to the sealed content as associated data, so a file cannot pass for another node's,
/// another key's or another epoch's without the passphrase.
#[derive(Serialize, Deserialize)]
struct SealedKeyFile {
    format_version: u32,
    key_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node_id: Option<NodeId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group_public_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    epoch: Option<u64>,
    sealed: SealedBlob,
}

impl SealedKeyFile {
    /// The associated data the content is sealed with.
    fn aad(&self) -> Result<Vec<u8>, String> {
        match (
            self.format_version,
            self.node_id,
            &self.group_public_key,
            self.epoch,
        ) {
            (1, ..) => Ok(format!("frostnode/key/v1/{}", self.key_id).into_bytes()),
            (SEALED_FORMAT_VERSION, Some(node), Some(gpk), Some(epoch)) => {
                let mut aad = b"frostnode/sealed-key/v2".to_vec();
                aad.extend_from_slice(&node.to_be_bytes());
                aad.extend_from_slice(&(self.key_id.len() as u32).to_be_bytes());
                aad.extend_from_slice(self.key_id.as_bytes());
                aad.extend_from_slice(&(gpk.len() as u32).to_be_bytes());
                aad.extend_from_slice(gpk.as_bytes());
                aad.extend_from_slice(&epoch.to_be_bytes());
                Ok(aad)
            }
            (SEALED_FORMAT_VERSION, ..) => {
                Err("sealed key file lacks its node, group key or epoch".into())
            }
            (v, ..) => Err(format!("sealed key file format {v} is not supported")),
        }
    }

    /// Whether the opened `key` is the one the readable fields name.
    fn names(&self, key: &StoredKey) -> Result<(), String> {
        if self.key_id != key.key_id {
            return Err(format!(
                "sealed content is key {:?}, not {:?}",
                key.key_id, self.key_id
            ));
        }
        if self.format_version == 1 {
            return Ok(());
        }
        if self.node_id != key.holder()
            || self.group_public_key.as_deref() != Some(key.group_public_key.as_str())
            || self.epoch != Some(key.epoch)
        {
            return Err(
                "sealed content does not match the node, group key or epoch it is labelled with"
                    .into(),
            );
        }
        Ok(())
    }
}

/// The key files of one node, loaded in memory.
#[derive(Debug)]
pub struct KeyStore {
    dir: PathBuf,
    keys: BTreeMap<String, StoredKey>,
    /// The epoch each key had before its latest renewal, kept in memory only (its file is
    /// gone) for signing sessions that started on it, until the node retires it.
    previous: BTreeMap<String, StoredKey>,
    sealer: Option<Sealer>,
    /// With a sealer: the writer of the manifest, shared with the key writes in flight.
    manifest: Option<std::sync::Arc<manifest::Writer>>,
}

impl KeyStore {
    /// Opens (creating if needed) an unencrypted key store in `data_dir/keys`.
    pub fn open(data_dir: &Path) -> Result<KeyStore, KeyStoreError> {
        Self::open_with(data_dir, None)
    }

    /// Opens (creating if needed) `data_dir/keys` and loads every key, decrypting with the
    /// passphrase if one is given and sealing key files found in clear (tools and tests; a
    /// node opens its store with [`KeyStore::open_checked`]).
    pub fn open_with(
        data_dir: &Path,
        passphrase: Option<&[u8]>,
    ) -> Result<KeyStore, KeyStoreError> {
        let checks = OpenChecks {
            seal_plaintext: true,
            ..OpenChecks::default()
        };
        Self::open_checked(data_dir, passphrase, checks)
    }

    /// Opens (creating if needed) `data_dir/keys` and loads every key, decrypting with the
    /// passphrase if one is given. A file that does not parse, does not decrypt, is
    /// inconsistent or whose certificate does not verify is an error, and so is a wrong or
    /// missing passphrase, a key file in clear in a sealed store (unless `checks` says to seal
    /// it), sealed key files without the store's metadata, and two key ids that differ only in
    /// case: a node must not run with part of its keys, or with keys it did not make.
    pub fn open_checked(
        data_dir: &Path,
        passphrase: Option<&[u8]>,
        checks: OpenChecks<'_>,
    ) -> Result<KeyStore, KeyStoreError> {
        let dir = data_dir.join("keys");
        let io = |source| KeyStoreError::Io {
            path: dir.clone(),
            source,
        };
        securefile::create_private_dir(&dir).map_err(io)?;
        if passphrase.is_some() && !dir.join(crate::sealing::META_FILE).exists() {
            // Checked before the metadata is created, so a refusal changes nothing on disk.
            let (sealed, clear) = Self::key_files(&dir)?;
            if let Some(sealed) = sealed.first() {
                // A sealed store without its metadata would silently become a new, empty one.
                return Err(KeyStoreError::Tampered {
                    path: dir.clone(),
                    message: format!(
                        "{} is sealed but {} is missing",
                        sealed.display(),
                        crate::sealing::META_FILE
                    ),
                });
            }
            if let (Some(path), false) = (clear.first(), checks.seal_plaintext) {
                return Err(KeyStoreError::Tampered {
                    path: path.clone(),
                    message: "a key file in clear, and a passphrase is configured (if the file is yours, from before the passphrase was set, start once with --seal-plaintext-keys)".into(),
                });
            }
        }
        let sealer = Sealer::open(&dir, passphrase)?;
        let mut store = KeyStore {
            dir: dir.clone(),
            keys: BTreeMap::new(),
            previous: BTreeMap::new(),
            sealer,
            manifest: None,
        };
        let mut plaintext = Vec::new();
        let mut found = BTreeMap::new();
        for path in Self::key_paths(&dir)? {
            let (key, was_sealed, digest) = store.read_key(&path)?;
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
            if !was_sealed {
                if store.sealer.is_some() && !checks.seal_plaintext {
                    return Err(KeyStoreError::Tampered {
                        path,
                        message: "a key file in clear in a sealed store (if it is yours, from before the passphrase was set, start once with --seal-plaintext-keys)".into(),
                    });
                }
                plaintext.push(key.key_id.clone());
            }
            if let Some(me) = checks.node_id {
                let ours = frost_ed25519::Identifier::try_from(me).ok();
                if ours.as_ref() != Some(key.key_package.identifier()) {
                    return Err(KeyStoreError::Tampered {
                        path,
                        message: format!("it holds another participant's share, not node {me}'s"),
                    });
                }
            }
            if let Some(keys) = checks.certificates {
                certificate::verify(&key, keys, checks.node_id.unwrap_or(0)).map_err(
                    |message| KeyStoreError::Tampered {
                        path: path.clone(),
                        message: format!("its certificate does not verify: {message}"),
                    },
                )?;
            }
            if let Some(other) = store
                .keys
                .keys()
                .find(|k| k.eq_ignore_ascii_case(&key.key_id))
            {
                return Err(KeyStoreError::Tampered {
                    path,
                    message: format!("key ids {other:?} and {:?} differ only in case", key.key_id),
                });
            }
            found.insert(key.key_id.clone(), digest);
            store.keys.insert(key.key_id.clone(), key);
        }
        // Every file checked: from here on the store is usable, and may be written.
        let removed = securefile::remove_stale_temp_files(&dir).map_err(io)?;
        if removed > 0 {
            tracing::warn!(dir = %dir.display(), removed, "removed unfinished key writes left by a crash");
        }
        if let Some(sealer) = store.sealer.as_mut() {
            sealer.write_new_meta(&dir)?;
        }
        let mut sealed_now = Vec::new();
        if store.sealer.is_some() {
            // Keys written before a passphrase was configured are sealed now.
            for key_id in plaintext {
                let digest = store.write(&key_id)?;
                found.insert(key_id.clone(), digest);
                tracing::info!(key_id = %key_id, "key file encrypted with the configured passphrase");
                sealed_now.push(key_id);
            }
        }
        store.check_manifest(&found, &sealed_now)?;
        Ok(store)
    }

    /// Whether key files are encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.sealer.is_some()
    }

    fn corrupt(path: &Path, message: impl Into<String>) -> KeyStoreError {
        KeyStoreError::Corrupt {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    /// Reads one file; returns the key, whether the file was sealed, and its digest.
    fn read_key(&self, path: &Path) -> Result<(StoredKey, bool, String), KeyStoreError> {
        let bytes = std::fs::read(path).map_err(|source| KeyStoreError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let digest = manifest::digest(&bytes);
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| Self::corrupt(path, e.to_string()))?;
        let (key, sealed): (StoredKey, bool) = if value.get("sealed").is_some() {
            let file: SealedKeyFile =
                serde_json::from_value(value).map_err(|e| Self::corrupt(path, e.to_string()))?;
            let Some(sealer) = &self.sealer else {
                return Err(KeyStoreError::Seal(SealError::PassphraseRequired(
                    self.dir.display().to_string(),
                )));
            };
            let aad = file.aad().map_err(|e| Self::corrupt(path, e))?;
            let plain = sealer
                .open_blob(&aad, &file.sealed)
                .map_err(|e| Self::corrupt(path, e.to_string()))?;
            let key: StoredKey =
                serde_json::from_slice(&plain).map_err(|e| Self::corrupt(path, e.to_string()))?;
            file.names(&key).map_err(|e| Self::corrupt(path, e))?;
            (key, true)
        } else {
            let key =
                serde_json::from_value(value).map_err(|e| Self::corrupt(path, e.to_string()))?;
            (key, false)
        };
        key.check()
            .map_err(|message| Self::corrupt(path, message))?;
        Ok((key, sealed, digest))
    }

    /// Directory holding the key files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether a key id is taken (ids that differ only in case are the same id: they name
    /// the same file on some file systems).
    pub fn contains(&self, key_id: &str) -> bool {
        self.keys.keys().any(|k| k.eq_ignore_ascii_case(key_id))
    }

    /// The paths of the key files in `dir` (`<key_id>.json`; dot files are the store's own).
    fn key_paths(dir: &Path) -> Result<Vec<PathBuf>, KeyStoreError> {
        let io = |source| KeyStoreError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if !name.starts_with('.') && path.extension().and_then(|e| e.to_str()) == Some("json") {
                paths.push(path);
            }
        }
        Ok(paths)
    }

    /// The key files in `dir`: sealed ones, and the others.
    fn key_files(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>), KeyStoreError> {
        let (mut sealed, mut clear) = (Vec::new(), Vec::new());
        for path in Self::key_paths(dir)? {
            let is_sealed = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .is_some_and(|v| v.get("sealed").is_some());
            if is_sealed {
                sealed.push(path);
            } else {
                clear.push(path);
            }
        }
        Ok((sealed, clear))
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
        self.prepare(&key)?.commit()?;
        self.adopt(key)
    }

    /// Encodes (and seals) a new key's file without touching the disk, so that the slow part,
    /// [`KeyWrite::commit`], can run off the caller's task. Refuses invalid or taken ids.
    pub fn prepare(&self, key: &StoredKey) -> Result<KeyWrite, KeyStoreError> {
        validate_key_id(&key.key_id)?;
        if self.contains(&key.key_id) {
            return Err(KeyStoreError::Exists(key.key_id.clone()));
        }
        let mut write = self.encode(key)?;
        write.create_new = true;
        if let Some(writer) = &self.manifest {
            // Listed in the manifest once its file is written.
            let entry = manifest::Entry {
                group_public_key: key.group_public_key.clone(),
                epoch: key.epoch,
                digest: manifest::digest(&write.bytes),
            };
            write.manifest = Some((writer.clone(), key.key_id.clone(), entry));
        }
        Ok(write)
    }

    /// Keeps a key whose file [`KeyWrite::commit`] wrote.
    pub fn adopt(&mut self, key: StoredKey) -> Result<(), KeyStoreError> {
        if self.contains(&key.key_id) {
            return Err(KeyStoreError::Exists(key.key_id));
        }
        self.keys.insert(key.key_id.clone(), key);
        Ok(())
    }

    /// Rewrites a stored key's file; returns the new file's digest.
    fn write(&self, key_id: &str) -> Result<String, KeyStoreError> {
        let Some(key) = self.keys.get(key_id) else {
            return Ok(String::new());
        };
        let write = self.encode(key)?;
        let digest = manifest::digest(&write.bytes);
        write.commit()?;
        Ok(digest)
    }

    fn encode(&self, key: &StoredKey) -> Result<KeyWrite, KeyStoreError> {
        let key_id = key.key_id.as_str();
        let path = self.dir.join(format!("{key_id}.json"));
        let plain = Zeroizing::new(
            serde_json::to_vec_pretty(key).map_err(|e| Self::corrupt(&path, e.to_string()))?,
        );
        let bytes = match &self.sealer {
            None => plain,
            Some(sealer) => {
                let mut file = SealedKeyFile {
                    format_version: SEALED_FORMAT_VERSION,
                    key_id: key_id.to_string(),
                    node_id: key.holder(),
                    group_public_key: Some(key.group_public_key.clone()),
                    epoch: Some(key.epoch),
                    sealed: SealedBlob {
                        nonce: String::new(),
                        ciphertext: String::new(),
                    },
                };
                let aad = file.aad().map_err(|e| Self::corrupt(&path, e))?;
                file.sealed = sealer.seal(&aad, &plain)?;
                Zeroizing::new(
                    serde_json::to_vec_pretty(&file)
                        .map_err(|e| Self::corrupt(&path, e.to_string()))?,
                )
            }
        };
        Ok(KeyWrite {
            path,
            bytes,
            create_new: false,
            manifest: None,
        })
    }
}

/// A key file ready to be written: encoded and, with a passphrase, sealed.
pub struct KeyWrite {
    path: PathBuf,
    bytes: Zeroizing<Vec<u8>>,
    /// A new key: never replace an existing file.
    create_new: bool,
    /// The manifest entry to add once the key file is written.
    manifest: Option<(std::sync::Arc<manifest::Writer>, String, manifest::Entry)>,
}

impl fmt::Debug for KeyWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyWrite({})", self.path.display())
    }
}

impl KeyWrite {
    /// Writes the file atomically (temporary file, fsync, then rename, or for a new key a
    /// link that fails if the file exists; mode 0600). Blocking.
    pub fn commit(self) -> Result<(), KeyStoreError> {
        let write = if self.create_new {
            securefile::write_private_new(&self.path, &self.bytes)
        } else {
            securefile::write_private_atomic(&self.path, &self.bytes)
        };
        write.map_err(|source| KeyStoreError::Io {
            path: self.path.clone(),
            source,
        })?;
        if let Some((writer, key_id, entry)) = self.manifest {
            writer.add(&key_id, entry)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
