//! A key's epochs in the store: the next epoch replaces the current one's file in one atomic
//! write (the old share is gone from disk the moment the new one is there), and the epoch it
//! replaced stays in memory until the node retires it, for signing sessions that began on it.
//! Also the operator's acknowledgement that a key file is lost ([`KeyStore::forget`]), which
//! a store with a manifest needs before the node starts without it (and is repaired).

use std::path::Path;

use super::manifest::Manifest;
use super::{validate_key_id, KeyStore, KeyStoreError, KeyWrite, StoredKey};
use crate::sealing::Sealer;

/// What [`KeyStore::forget`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forgotten {
    /// The key file existed and was deleted.
    pub file_deleted: bool,
    /// The manifest listed the key (and now records it as forgotten).
    pub was_listed: bool,
    /// The epoch the manifest recorded, if it listed the key.
    pub epoch: Option<u64>,
}

impl KeyStore {
    /// `key_id` at `epoch`: the current epoch, or the one before it while it is kept.
    pub fn get_epoch(&self, key_id: &str, epoch: u64) -> Option<&StoredKey> {
        [self.keys.get(key_id), self.previous.get(key_id)]
            .into_iter()
            .flatten()
            .find(|k| k.epoch == epoch)
    }

    /// Encodes (and seals) the next epoch of a stored key; its [`KeyWrite::commit`] replaces
    /// the current epoch's file (and manifest entry) in one atomic rename. Refuses anything
    /// but the next epoch of the same group key.
    pub fn prepare_next(&self, key: &StoredKey) -> Result<KeyWrite, KeyStoreError> {
        let Some(current) = self.keys.get(&key.key_id) else {
            return Err(KeyStoreError::Corrupt {
                path: self.dir.join(format!("{}.json", key.key_id)),
                message: "no current epoch to renew".into(),
            });
        };
        if current.group_public_key != key.group_public_key || current.epoch + 1 != key.epoch {
            return Err(KeyStoreError::Corrupt {
                path: self.dir.join(format!("{}.json", key.key_id)),
                message: format!(
                    "epoch {} of another group key cannot follow epoch {}",
                    key.epoch, current.epoch
                ),
            });
        }
        let mut write = self.encode(key)?;
        if let Some(writer) = &self.manifest {
            let entry = super::manifest::Entry {
                group_public_key: key.group_public_key.clone(),
                epoch: key.epoch,
                digest: super::manifest::digest(&write.bytes),
            };
            write.manifest = Some((writer.clone(), key.key_id.clone(), entry));
        }
        Ok(write)
    }

    /// Keeps the next epoch whose file [`KeyStore::prepare_next`]'s write put in place; the
    /// epoch it replaces stays usable in memory until [`KeyStore::retire`].
    pub fn adopt_next(&mut self, key: StoredKey) -> Result<(), KeyStoreError> {
        let current = self.keys.get(&key.key_id);
        if current.is_none_or(|c| c.epoch + 1 != key.epoch) {
            return Err(KeyStoreError::Corrupt {
                path: self.dir.join(format!("{}.json", key.key_id)),
                message: format!("epoch {} does not follow the current one", key.epoch),
            });
        }
        if let Some(old) = self.keys.insert(key.key_id.clone(), key) {
            self.previous.insert(old.key_id.clone(), old);
        }
        Ok(())
    }

    /// Deletes this node's share of `key_id` at `epoch`: a reshare left the node out of the
    /// next epoch, which every participant certified. The manifest (if any) stops listing the
    /// key first, then the file is deleted durably; the share stays in memory, as the epoch
    /// before the current one, until [`KeyStore::retire`], for signing sessions that began on
    /// it. `now` (seconds since the Unix epoch) dates the manifest's record.
    pub fn leave(&mut self, key_id: &str, epoch: u64, now: u64) -> Result<(), KeyStoreError> {
        let path = self.dir.join(format!("{key_id}.json"));
        match self.keys.get(key_id) {
            Some(key) if key.epoch == epoch => {}
            other => {
                return Err(KeyStoreError::Corrupt {
                    path,
                    message: format!(
                        "cannot leave epoch {epoch}: the store holds {:?}",
                        other.map(|k| k.epoch)
                    ),
                })
            }
        }
        if let Some(writer) = &self.manifest {
            writer.remove(key_id, now)?;
        }
        crate::securefile::remove_durably(&path).map_err(|source| KeyStoreError::Io {
            path: path.clone(),
            source,
        })?;
        if let Some(old) = self.keys.remove(key_id) {
            self.previous.insert(old.key_id.clone(), old);
        }
        Ok(())
    }

    /// Forgets `key_id`'s previous epoch `epoch` (its share is gone from this node).
    pub fn retire(&mut self, key_id: &str, epoch: u64) -> bool {
        if self.previous.get(key_id).is_some_and(|k| k.epoch == epoch) {
            self.previous.remove(key_id);
            return true;
        }
        false
    }

    /// Declares `key_id`'s share on this node lost, with the node stopped: deletes its key
    /// file if one is left, and in a store with a manifest moves the key's entry to the
    /// manifest's record of forgotten keys, so the node starts without it (and can then be
    /// repaired). `now` (seconds since the Unix epoch) dates the record.
    pub fn forget(
        data_dir: &Path,
        passphrase: Option<&[u8]>,
        key_id: &str,
        now: u64,
    ) -> Result<Forgotten, KeyStoreError> {
        validate_key_id(key_id)?;
        let dir = data_dir.join("keys");
        let file = dir.join(format!("{key_id}.json"));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| KeyStoreError::Io { path, source }
        };
        let sealer = if dir.join(crate::sealing::META_FILE).exists() {
            Sealer::open(&dir, passphrase)?
        } else {
            None
        };
        let manifest = match &sealer {
            Some(s) => Manifest::read(&dir, s)?,
            None => None,
        };
        let file_deleted = match std::fs::remove_file(&file) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(io(&file)(e)),
        };
        let mut result = Forgotten {
            file_deleted,
            was_listed: false,
            epoch: None,
        };
        if let (Some(sealer), Some(mut manifest)) = (sealer, manifest) {
            if let Some(entry) = manifest.keys.remove(key_id) {
                result.was_listed = true;
                result.epoch = Some(entry.epoch);
                manifest.forgotten.insert(key_id.to_string(), (now, entry));
                manifest.counter += 1;
                manifest.write(&dir, &sealer)?;
            }
        }
        Ok(result)
    }
}
