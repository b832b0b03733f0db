//! The group's VSS commitment, kept with every key: the coefficient-wise sum of every
//! participant's polynomial commitment (a DKG), updated by every refresh (whose polynomials
//! have a zero constant term, so the first coefficient, the group key, never changes). The
//! verifying share of any identifier follows from it, which is how a repaired or enrolled
//! share is checked. Also the check that names the sender of a bad refresh share, which
//! frost's `refresh_dkg_shares` does not.
//!
//! All arithmetic is frost's own (its `Group` and `Field` for Ed25519, its VSS check).

use std::collections::BTreeSet;

use frost_ed25519::keys::dkg::{round1, round2};
use frost_ed25519::keys::{
    PublicKeyPackage, SecretShare, SigningShare, VerifiableSecretSharingCommitment, VerifyingShare,
};
use frost_ed25519::{Ed25519Group, Ed25519ScalarField, Field, Group, Identifier};

use crate::wire::NodeId;

/// Why a group commitment could not be computed or used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommitmentError {
    /// Commitments of different lengths (thresholds) cannot be summed.
    #[error("commitments of {0} and {1} coefficients cannot be combined")]
    Length(usize, usize),
    /// A coefficient is not a valid point (or the sum is the identity).
    #[error("invalid commitment point: {0}")]
    Point(String),
    /// No commitment is kept with the key (made before commitments were kept).
    #[error("the key has no group commitment (it was made by an older release)")]
    Missing,
}

type Element = <Ed25519Group as Group>::Element;

fn decode(bytes: &[u8]) -> Result<Element, CommitmentError> {
    let array: [u8; 32] = bytes
        .try_into()
        .map_err(|_| CommitmentError::Point(format!("{} bytes, not 32", bytes.len())))?;
    Ed25519Group::deserialize(&array).map_err(|e| CommitmentError::Point(e.to_string()))
}

fn encode(point: &Element) -> Result<[u8; 32], CommitmentError> {
    Ed25519Group::serialize(point).map_err(|e| CommitmentError::Point(e.to_string()))
}

fn coefficients(
    commitment: &VerifiableSecretSharingCommitment,
) -> Result<Vec<Vec<u8>>, CommitmentError> {
    commitment
        .serialize()
        .map_err(|e| CommitmentError::Point(e.to_string()))
}

/// A DKG's group commitment: the sum of every participant's round-1 commitment (own included).
pub fn sum_dkg<'a>(
    commitments: impl IntoIterator<Item = &'a VerifiableSecretSharingCommitment>,
) -> Result<Vec<[u8; 32]>, CommitmentError> {
    let mut sum: Vec<Element> = Vec::new();
    for commitment in commitments {
        let coefficients = coefficients(commitment)?;
        if sum.is_empty() {
            sum = vec![Ed25519Group::identity(); coefficients.len()];
        }
        if coefficients.len() != sum.len() {
            return Err(CommitmentError::Length(sum.len(), coefficients.len()));
        }
        for (acc, c) in sum.iter_mut().zip(&coefficients) {
            *acc += decode(c)?;
        }
    }
    sum.iter().map(encode).collect()
}

/// The group commitment after a refresh: `prior` plus every refresh commitment (each of
/// `t - 1` coefficients: the zero constant term is left out), coefficient by coefficient.
pub fn add_refresh<'a>(
    prior: &[[u8; 32]],
    commitments: impl IntoIterator<Item = &'a VerifiableSecretSharingCommitment>,
) -> Result<Vec<[u8; 32]>, CommitmentError> {
    if prior.is_empty() {
        return Err(CommitmentError::Missing);
    }
    let mut sum: Vec<Element> = prior.iter().map(|c| decode(c)).collect::<Result<_, _>>()?;
    for commitment in commitments {
        let coefficients = coefficients(commitment)?;
        if coefficients.len() + 1 != sum.len() {
            return Err(CommitmentError::Length(sum.len(), coefficients.len() + 1));
        }
        for (acc, c) in sum.iter_mut().skip(1).zip(&coefficients) {
            *acc += decode(c)?;
        }
    }
    sum.iter().map(encode).collect()
}

/// The verifying share the group commitment implies for participant `id`.
pub fn verifying_share_of(
    commitment: &[[u8; 32]],
    id: NodeId,
) -> Result<VerifyingShare, CommitmentError> {
    if commitment.is_empty() {
        return Err(CommitmentError::Missing);
    }
    let vss = VerifiableSecretSharingCommitment::deserialize(commitment.iter())
        .map_err(|e| CommitmentError::Point(e.to_string()))?;
    let ident = Identifier::try_from(id).map_err(|e| CommitmentError::Point(e.to_string()))?;
    let package = PublicKeyPackage::from_commitment(&BTreeSet::from([ident]), &vss)
        .map_err(|e| CommitmentError::Point(e.to_string()))?;
    package
        .verifying_shares()
        .get(&ident)
        .copied()
        .ok_or_else(|| CommitmentError::Point("no verifying share computed".into()))
}

/// Whether `share`, sent to `me` in a refresh, lies on its sender's refresh polynomial
/// (`commitment` holds its coefficients 1..t-1; the constant term is zero). frost's VSS check
/// needs the constant term as a point, and the identity is not one: both sides are shifted by
/// the generator (constant term `G`, share `f(i) + 1`), which leaves the equation unchanged.
pub fn refresh_share_is_valid(
    me: Identifier,
    share: &round2::Package,
    commitment: &round1::Package,
) -> bool {
    let check = || -> Option<bool> {
        let one = Ed25519ScalarField::one();
        let generator = encode(&Ed25519Group::generator()).ok()?;
        let mut shifted = vec![generator.to_vec()];
        shifted.extend(coefficients(commitment.commitment()).ok()?);
        let vss = VerifiableSecretSharingCommitment::deserialize(shifted).ok()?;
        let scalar =
            Ed25519ScalarField::deserialize(&share.signing_share().serialize().try_into().ok()?)
                .ok()?;
        let plus_one =
            SigningShare::deserialize(&Ed25519ScalarField::serialize(&(scalar + one))).ok()?;
        Some(SecretShare::new(me, plus_one, vss).verify().is_ok())
    };
    check().unwrap_or(false)
}
