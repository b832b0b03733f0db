//! Repair and enrolment in a [`DkgSession`] ([`DkgParams::repair`](super::DkgParams)): `t`
//! helpers rebuild the share of a target participant on the key's polynomial with frost's
//! repairable threshold scheme, and every participant then confirms the key's next epoch.
//!
//! 1. Each helper splits its part of the target's share (`repair_share_part1`) into one value
//!    per helper and sends each helper its value (request-response, like a DKG round-2 share).
//! 2. With every helper's value, a helper sums them (`repair_share_part2`) and sends the sum to
//!    the target, with the key's public data as it holds it; then it confirms.
//! 3. The target needs every helper's sum and the same public data from each; it rebuilds its
//!    share (`repair_share_part3`, which checks nothing) and checks it against the verifying
//!    share the public data implies (the public key package for a repair, the group
//!    commitment for a new participant). A wrong share is refused, naming the helpers, and
//!    nothing is confirmed, so nobody moves to the next epoch.
//! 4. Everyone else confirms at once: their shares do not change; the next epoch's public key
//!    package adds the new participant's verifying share, which each computes itself from the
//!    group commitment.

use std::collections::BTreeSet;

use frost_ed25519::keys::repairable::{self, Delta, Sigma};
use frost_ed25519::keys::{KeyPackage, PublicKeyPackage};
use frost_ed25519::Identifier;
use rand::{CryptoRng, RngCore};

use super::commitment;
use super::error::DkgError;
use super::phase::Phase;
use super::session::{Completion, DkgSession};
use super::types::{sha256, Effect};
use crate::wire::{Body, NodeId, RepairSigma, SecretBytes};

impl DkgSession {
    /// The nodes this node expects a `DkgRound2` from in the current session: every other
    /// participant in a DKG or refresh; in a repair, the other helpers (for a helper) or every
    /// helper (for the target), nobody otherwise; in a reshare, the other dealers (for a
    /// member), nobody otherwise.
    pub(super) fn unicast_senders(&self) -> BTreeSet<NodeId> {
        let me = self.me;
        if let Some(reshare) = &self.params.reshare {
            if !reshare.members.contains(&me) {
                return BTreeSet::new();
            }
            return reshare
                .dealers
                .iter()
                .copied()
                .filter(|&d| d != me)
                .collect();
        }
        let Some(repair) = &self.params.repair else {
            return self.others().collect();
        };
        if repair.helpers.contains(&me) || repair.target == me {
            repair
                .helpers
                .iter()
                .copied()
                .filter(|&h| h != me)
                .collect()
        } else {
            BTreeSet::new()
        }
    }

    fn helper_idents(&self) -> Vec<Identifier> {
        self.params
            .repair
            .iter()
            .flat_map(|r| r.helpers.iter())
            .map(|&h| self.ident(h))
            .collect()
    }

    /// Round id fixed: a helper sends each other helper its value; a bystander confirms.
    pub(super) fn begin_repair<R: RngCore + CryptoRng>(&mut self, rng: &mut R) -> Vec<Effect> {
        let Some(repair) = self.params.repair.clone() else {
            return Vec::new();
        };
        if repair.target == self.me {
            self.phase = Phase::Round2;
            return self.progress();
        }
        let Some(prior) = self.prior.as_ref() else {
            let e = DkgError::InvalidParams("a repair helper without its share".into());
            return self.fail(e, true);
        };
        if !repair.helpers.contains(&self.me) {
            let (kp, pkp, commitment) = (
                prior.key_package.clone(),
                prior.public_key_package.clone(),
                prior.group_commitment.clone(),
            );
            return self.confirm_next_epoch(kp, pkp, commitment);
        }
        let target = self.ident(repair.target);
        let deltas = match repairable::repair_share_part1::<frost_ed25519::Ed25519Sha512, _>(
            &self.helper_idents(),
            &prior.key_package,
            rng,
            target,
        ) {
            Ok(d) => d,
            Err(e) => return self.fail(DkgError::Frost(e.to_string()), true),
        };
        let mut effects = Vec::new();
        for (ident, delta) in deltas {
            let Some(&to) = self.ident_to_id.get(&ident) else {
                continue;
            };
            let value = SecretBytes(delta.serialize());
            if to == self.me {
                self.own_value = Some(value);
                continue;
            }
            self.sent_round2.insert(to, value.clone());
            effects.push(Effect::Send {
                to,
                body: Body::DkgRound2 { package: value },
            });
        }
        self.phase = Phase::Round2;
        effects.extend(self.progress());
        effects
    }

    /// Every value this node waits for arrived: a helper sums and sends to the target, the
    /// target rebuilds its share.
    pub(super) fn repair_step(&mut self) -> Vec<Effect> {
        let Some(repair) = self.params.repair.clone() else {
            return Vec::new();
        };
        if repair.target == self.me {
            return self.rebuild();
        }
        let mut deltas = Vec::with_capacity(repair.helpers.len());
        if let Some(own) = &self.own_value {
            match Delta::deserialize(&own.0) {
                Ok(d) => deltas.push(d),
                Err(e) => return self.fail(DkgError::Frost(e.to_string()), true),
            }
        }
        for (&from, raw) in &self.round2_raw {
            match Delta::deserialize(&raw.0) {
                Ok(d) => deltas.push(d),
                Err(_) => {
                    let e = DkgError::Malformed {
                        culprit: from,
                        what: "repair value",
                    };
                    return self.fail(e, true);
                }
            }
        }
        self.round2_raw.clear();
        self.own_value = None;
        let sigma = repairable::repair_share_part2(&deltas);
        let Some(prior) = self.prior.as_ref() else {
            return self.fail(
                DkgError::InvalidParams("repair helper without share".into()),
                true,
            );
        };
        let payload = prior.public_key_package.serialize().map(|pkp| RepairSigma {
            sigma: sigma.serialize(),
            public_key_package: pkp,
            group_commitment: prior.group_commitment.clone(),
            participants: prior_participants(&prior.public_key_package, &self.ident_to_id),
        });
        let bytes = match payload.map(|p| p.encode()) {
            Ok(Ok(b)) => SecretBytes(b),
            Ok(Err(e)) => return self.fail(DkgError::Frost(e.to_string()), true),
            Err(e) => return self.fail(DkgError::Frost(e.to_string()), true),
        };
        self.sent_round2.insert(repair.target, bytes.clone());
        let (kp, pkp, commitment) = (
            prior.key_package.clone(),
            prior.public_key_package.clone(),
            prior.group_commitment.clone(),
        );
        let mut effects = vec![Effect::Send {
            to: repair.target,
            body: Body::DkgRound2 { package: bytes },
        }];
        effects.extend(self.confirm_next_epoch(kp, pkp, commitment));
        effects
    }

    /// The target: every helper's sum is in. Rebuild, check, confirm (or refuse).
    fn rebuild(&mut self) -> Vec<Effect> {
        let Some(repair) = self.params.repair.clone() else {
            return Vec::new();
        };
        let mut sigmas = Vec::new();
        let mut public: Option<(Vec<u8>, Vec<[u8; 32]>)> = None;
        for (&from, raw) in &self.round2_raw {
            let malformed = DkgError::Malformed {
                culprit: from,
                what: "repair sum",
            };
            let Ok(payload) = RepairSigma::decode(&raw.0) else {
                return self.fail(malformed, true);
            };
            let Ok(sigma) = Sigma::deserialize(&payload.sigma) else {
                return self.fail(malformed, true);
            };
            sigmas.push(sigma);
            let theirs = (
                payload.public_key_package.clone(),
                payload.group_commitment.clone(),
            );
            match &public {
                None => public = Some(theirs),
                Some(first) if *first == theirs => {}
                Some(_) => return self.fail(self.mismatch(&repair.helpers), true),
            }
        }
        self.round2_raw.clear();
        let Some((pkp_bytes, group_commitment)) = public else {
            return self.fail(self.mismatch(&repair.helpers), true);
        };
        let Ok(pkp) = PublicKeyPackage::deserialize(&pkp_bytes) else {
            return self.fail(self.mismatch(&repair.helpers), true);
        };
        let target = self.ident(repair.target);
        let gpk = pkp.verifying_key().serialize().ok();
        let expected = if repair.enrol {
            commitment::verifying_share_of(&group_commitment, repair.target).ok()
        } else {
            pkp.verifying_shares().get(&target).copied()
        };
        let key_package = repairable::repair_share_part3(&sigmas, target, &pkp).ok();
        let genuine = self
            .params
            .refresh
            .is_some_and(|r| gpk.as_deref() == Some(&r.group_public_key[..]))
            && group_commitment
                .first()
                .is_none_or(|c| Some(&c[..]) == gpk.as_deref());
        match (key_package, expected) {
            (Some(kp), Some(expected)) if genuine && *kp.verifying_share() == expected => {
                self.confirm_next_epoch(kp, pkp, group_commitment)
            }
            _ => self.fail(self.mismatch(&repair.helpers), true),
        }
    }

    fn mismatch(&self, helpers: &[NodeId]) -> DkgError {
        DkgError::RepairMismatch {
            target: self.params.repair.as_ref().map_or(0, |r| r.target),
            helpers: helpers.to_vec(),
        }
    }

    /// Confirms the next epoch: this node's share `kp` (unchanged, or rebuilt for the target)
    /// under the current public data plus the target's verifying share when it is new.
    fn confirm_next_epoch(
        &mut self,
        key_package: KeyPackage,
        prior: PublicKeyPackage,
        group_commitment: Vec<[u8; 32]>,
    ) -> Vec<Effect> {
        let Some(repair) = self.params.repair.clone() else {
            return Vec::new();
        };
        let mut shares = prior.verifying_shares().clone();
        if repair.enrol {
            match commitment::verifying_share_of(&group_commitment, repair.target) {
                Ok(share) => {
                    shares.insert(self.ident(repair.target), share);
                }
                Err(e) => return self.fail(DkgError::InvalidParams(e.to_string()), true),
            }
        }
        let public_key_package =
            PublicKeyPackage::new(shares, *prior.verifying_key(), prior.min_signers());
        let encoded = public_key_package
            .serialize()
            .and_then(|p| Ok((p, public_key_package.verifying_key().serialize()?)));
        let (pkp_bytes, gpk) = match encoded {
            Ok(v) => v,
            Err(e) => return self.fail(DkgError::Frost(e.to_string()), true),
        };
        let Ok(group_public_key) = <[u8; 32]>::try_from(gpk.as_slice()) else {
            return self.fail(DkgError::Frost("group key is not 32 bytes".into()), true);
        };
        let completion = Completion {
            key_package: Some(key_package),
            public_key_package,
            group_commitment,
        };
        self.confirm(completion, group_public_key, sha256(&pkp_bytes))
    }
}

/// The participant ids a public key package holds shares for.
fn prior_participants(
    pkp: &PublicKeyPackage,
    ident_to_id: &std::collections::BTreeMap<Identifier, NodeId>,
) -> Vec<NodeId> {
    pkp.verifying_shares()
        .keys()
        .filter_map(|i| ident_to_id.get(i).copied())
        .collect()
}
