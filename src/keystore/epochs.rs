//! A key's epochs in the store: the next epoch replaces the current one's file in one atomic
//! write (the old share is gone from disk the moment the new one is there), and the epoch it
//! replaced stays in memory until the node retires it, for signing sessions that began on it.

use super::{KeyStore, KeyStoreError, KeyWrite, StoredKey};

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

    /// Forgets `key_id`'s previous epoch `epoch` (its share is gone from this node).
    pub fn retire(&mut self, key_id: &str, epoch: u64) -> bool {
        if self.previous.get(key_id).is_some_and(|k| k.epoch == epoch) {
            self.previous.remove(key_id);
            return true;
        }
        false
    }
}
