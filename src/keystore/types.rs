//! What a key file holds ([`StoredKey`], with its certificate) and what the API shows of it
//! ([`KeyInfo`]), and the consistency check every loaded key passes.

use std::collections::BTreeMap;
use std::fmt;

use frost_ed25519::keys::{KeyPackage, PublicKeyPackage};
use serde::{Deserialize, Serialize};

use super::{validate_key_id, KEY_FORMAT_VERSION};
use crate::wire::NodeId;

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
    /// The signer's identity (PeerId) when it signed, for another participant's confirmation:
    /// if that participant's identity changes later (a new disk), the certificate still reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<String>,
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
    /// How many times the shares were renewed since the DKG (0: the DKG's own shares).
    #[serde(default)]
    pub epoch: u64,
    /// The group's VSS commitment, hex points (empty for keys made before it was kept): the
    /// verifying share of any identifier follows from it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_commitment: Vec<String>,
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
    /// Seconds since the Unix epoch when this node stored the key (this epoch of it).
    pub created_at: u64,
    /// The epoch of the shares: 0 after the DKG, one more after each refresh.
    #[serde(default)]
    pub epoch: u64,
}

impl StoredKey {
    /// The participant whose share this is (the participant id matching the key package's
    /// identifier).
    pub fn holder(&self) -> Option<NodeId> {
        self.participants.iter().copied().find(|&id| {
            frost_ed25519::Identifier::try_from(id).ok().as_ref()
                == Some(self.key_package.identifier())
        })
    }

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
            epoch: self.epoch,
        }
    }

    /// The group commitment as points, if the key keeps one.
    pub fn group_commitment(&self) -> Result<Vec<[u8; 32]>, String> {
        self.group_commitment
            .iter()
            .map(|c| {
                hex::decode(c)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| "group commitment point is not 32 bytes of hex".to_string())
            })
            .collect()
    }

    /// Internal consistency: the share belongs to the group key it claims.
    pub(super) fn check(&self) -> Result<(), String> {
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
        let commitment = self.group_commitment()?;
        if commitment
            .first()
            .is_some_and(|c| hex::encode(c) != self.group_public_key)
        {
            return Err("group commitment does not match the group key".into());
        }
        if !commitment.is_empty() && commitment.len() != usize::from(self.threshold) {
            return Err("group commitment does not have threshold coefficients".into());
        }
        Ok(())
    }
}
