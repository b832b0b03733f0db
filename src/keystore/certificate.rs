//! A stored key's certificate, checked again at load: every participant's confirmation, signed
//! by that participant's identity key, over the key's session, transcript, group key and public
//! key package. A key file that was altered, or written by anyone who could not make every
//! participant sign, does not pass.
//!
//! A participant's identity may change after the certificate was made (its disk was replaced,
//! and the operators configured its new `peer_id`): its confirmation is then checked against
//! the identity recorded with it, and the change is logged; the next refresh or repair
//! certifies the key with the new identity. This node's own confirmation is always checked
//! against its own identity: nobody without this node's identity key can make a file pass.

use sha2::{Digest, Sha256};

use super::{StoredConfirmation, StoredKey};
use crate::dkg::{confirmation_message, ConfirmationKeys};
use crate::wire::{Confirmation, NodeId, SessionId};

fn bytes32(what: &str, hex_value: &str) -> Result<[u8; 32], String> {
    hex::decode(hex_value)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| format!("{what} is not 32 bytes of hex"))
}

/// Whether `c` is signed by the identity recorded with it, and that identity is not the one
/// configured now (`configured`): the participant's identity changed.
fn verifies_as_recorded(
    c: &StoredConfirmation,
    configured: Option<String>,
    message: &[u8],
) -> bool {
    let Some(recorded) = &c.peer_id else {
        return false;
    };
    if configured.as_ref() == Some(recorded) {
        return false;
    }
    let key = recorded
        .parse::<libp2p::PeerId>()
        .ok()
        .and_then(|p| crate::identity::peer_public_key(&p));
    let signature = hex::decode(&c.signature).unwrap_or_default();
    key.is_some_and(|k| k.verify(message, &signature))
}

/// Checks `key`'s certificate with `keys`, which must know every participant's identity key,
/// this node's own (node `me`) included.
pub fn verify(key: &StoredKey, keys: &dyn ConfirmationKeys, me: NodeId) -> Result<(), String> {
    let session = SessionId(bytes32("session", &key.session)?);
    let group_public_key = bytes32("group key", &key.group_public_key)?;
    let package = key
        .public_key_package
        .serialize()
        .map_err(|e| format!("public key package: {e}"))?;
    let package_hash: [u8; 32] = Sha256::digest(&package).into();
    let signers: Vec<_> = key.confirmations.iter().map(|c| c.node_id).collect();
    if signers != key.participants {
        return Err(format!(
            "the certificate is signed by nodes {signers:?}, not by every participant {:?}",
            key.participants
        ));
    }
    let mut transcript = None;
    for c in &key.confirmations {
        let node = c.node_id;
        let t = bytes32("transcript", &c.transcript)?;
        if *transcript.get_or_insert(t) != t {
            return Err(format!(
                "node {node}'s confirmation is for another transcript"
            ));
        }
        let hash = bytes32("public key package hash", &c.public_key_package_hash)?;
        if hash != package_hash {
            return Err(format!(
                "node {node}'s confirmation is for another public key package"
            ));
        }
        let signature =
            hex::decode(&c.signature).map_err(|_| format!("node {node}'s signature is not hex"))?;
        let confirmation = Confirmation {
            transcript: t,
            group_public_key,
            public_key_package_hash: hash,
            signature,
        };
        let message = confirmation_message(&session, &confirmation);
        if keys.verify(node, &message, &confirmation.signature) {
            continue;
        }
        if node != me && verifies_as_recorded(c, keys.identity(node), &message) {
            tracing::warn!(key_id = %key.key_id, node, "node {node}'s identity changed since this epoch was certified; a refresh or repair certifies it with the new one");
            continue;
        }
        return Err(format!(
            "node {node}'s confirmation signature does not verify"
        ));
    }
    Ok(())
}
