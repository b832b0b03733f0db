//! A coordinator's last step (sans-IO, and self-contained so it runs on any thread): every
//! message's shares aggregated by frost, which verifies each aggregate against the group key and,
//! when one does not verify, names the signers whose shares are wrong.

use std::collections::{BTreeMap, BTreeSet};

use frost_ed25519::keys::PublicKeyPackage;
use frost_ed25519::round2::SignatureShare;
use frost_ed25519::{Identifier, SigningPackage};

use super::SignError;
use crate::wire::NodeId;

/// The aggregation of one attempt's shares: self-contained, so it can run on any thread.
pub struct AggregateJob {
    attempt: u8,
    packages: Vec<SigningPackage>,
    /// Per message, every signer's share.
    shares: Vec<BTreeMap<Identifier, SignatureShare>>,
    public_key_package: PublicKeyPackage,
    id_of: BTreeMap<Identifier, NodeId>,
}

impl std::fmt::Debug for AggregateJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateJob")
            .field("attempt", &self.attempt)
            .field("messages", &self.packages.len())
            .finish()
    }
}

/// What an [`AggregateJob`] found.
#[derive(Debug)]
pub struct Aggregated {
    pub(super) attempt: u8,
    pub(super) outcome: Result<Vec<[u8; 64]>, AggregateError>,
}

#[derive(Debug)]
pub(super) enum AggregateError {
    /// frost's cheater detection named these signers.
    Culprits(Vec<NodeId>),
    /// Anything else.
    Failed(SignError),
}

impl AggregateJob {
    /// The aggregation of attempt `attempt`: `packages` (one per message) and each signer's
    /// shares, one per message.
    pub fn new(
        attempt: u8,
        packages: Vec<SigningPackage>,
        by_signer: &BTreeMap<NodeId, Vec<SignatureShare>>,
        public_key_package: PublicKeyPackage,
    ) -> Self {
        let ident = |id: NodeId| Identifier::try_from(id).ok();
        let id_of = by_signer
            .keys()
            .filter_map(|&id| ident(id).map(|i| (i, id)))
            .collect();
        let shares = (0..packages.len())
            .map(|k| {
                by_signer
                    .iter()
                    .filter_map(|(&id, s)| Some((ident(id)?, *s.get(k)?)))
                    .collect()
            })
            .collect();
        AggregateJob {
            attempt,
            packages,
            shares,
            public_key_package,
            id_of,
        }
    }

    /// Aggregates every message's shares. frost verifies each aggregate against the group key
    /// (and, when one does not verify, every share of it, naming the culprits).
    pub fn run(self) -> Aggregated {
        let mut signatures = Vec::with_capacity(self.packages.len());
        let mut named = BTreeSet::new();
        for (package, shares) in self.packages.iter().zip(&self.shares) {
            match frost_ed25519::aggregate_custom(
                package,
                shares,
                &self.public_key_package,
                frost_ed25519::CheaterDetection::AllCheaters,
            ) {
                Ok(sig) => match sig.serialize().ok().and_then(|b| b.try_into().ok()) {
                    Some(bytes) => signatures.push(bytes),
                    None => return self.failed(SignError::BadSignature),
                },
                Err(frost_ed25519::Error::InvalidSignatureShare { culprits }) => {
                    let these: Vec<NodeId> = culprits
                        .iter()
                        .filter_map(|i| self.id_of.get(i))
                        .copied()
                        .collect();
                    if these.is_empty() {
                        let e = SignError::Frost("invalid share from an unknown signer".into());
                        return self.failed(e);
                    }
                    named.extend(these);
                }
                Err(e) => return self.failed(SignError::Frost(e.to_string())),
            }
        }
        let outcome = if named.is_empty() {
            Ok(signatures)
        } else {
            Err(AggregateError::Culprits(named.into_iter().collect()))
        };
        Aggregated {
            attempt: self.attempt,
            outcome,
        }
    }

    fn failed(&self, error: SignError) -> Aggregated {
        Aggregated {
            attempt: self.attempt,
            outcome: Err(AggregateError::Failed(error)),
        }
    }
}
