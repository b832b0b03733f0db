//! The parts of the wire protocol that start a session from an existing key: the epoch it
//! starts from ([`RefreshOf`]), a repair or enrolment ([`RepairOf`], [`RepairSigma`]) and a
//! reshare to a new threshold and participant set ([`ReshareOf`]).

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use super::{bincode_config, NodeId, WireError};

/// A repair or enrolment: `helpers` (exactly `t` holders of the key's current epoch) rebuild
/// the share of `target` on the key's polynomial (frost's repairable threshold scheme), and every
/// participant then confirms the next epoch, whose public data includes `target`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RepairOf {
    /// The participant whose share is rebuilt.
    pub target: NodeId,
    /// The helpers, sorted.
    pub helpers: Vec<NodeId>,
    /// `true`: `target` is a new participant (enrolment); `false`: it lost its share (repair).
    pub enrol: bool,
}

/// What each helper sends the target of a repair (inside [`Body::DkgRound2`]): its sum of
/// the helpers' values, and the key's public data as it holds it (every helper must send the
/// same).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairSigma {
    /// frost serialization of the helper's `Sigma` (secret).
    pub sigma: Vec<u8>,
    /// frost serialization of the current epoch's public key package.
    pub public_key_package: Vec<u8>,
    /// The key's group commitment.
    pub group_commitment: Vec<[u8; 32]>,
    /// The current epoch's participants.
    pub participants: Vec<NodeId>,
}

impl Drop for RepairSigma {
    fn drop(&mut self) {
        self.sigma.zeroize();
    }
}

impl RepairSigma {
    /// Encodes it for a [`Body::DkgRound2`].
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        bincode::serde::encode_to_vec(self, bincode_config())
            .map_err(|e| WireError::Encode(e.to_string()))
    }

    /// Decodes one, refusing trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let (value, used): (Self, usize) =
            bincode::serde::decode_from_slice(bytes, bincode_config())
                .map_err(|e| WireError::Malformed(e.to_string()))?;
        if used != bytes.len() {
            return Err(WireError::Trailing(bytes.len() - used));
        }
        Ok(value)
    }
}

/// The key a refresh session renews: its group key and the epoch whose shares it starts
/// from. Every participant must hold exactly this epoch of this key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RefreshOf {
    /// The key's group public key (unchanged by the refresh).
    pub group_public_key: [u8; 32],
    /// The epoch refreshed; the session produces `epoch + 1`.
    pub epoch: u64,
}

/// A reshare from the key's current threshold `t` and participants to `threshold` and
/// `members`: `dealers` (exactly `t` holders of the current epoch) each deal their
/// Lagrange-weighted share to the members with a fresh polynomial of degree `threshold - 1`.
/// Session participants that are not members hold the current epoch and delete their share
/// once the next epoch is certified.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReshareOf {
    /// The dealers, sorted.
    pub dealers: Vec<NodeId>,
    /// The participants of the next epoch, sorted.
    pub members: Vec<NodeId>,
}
