//! Resharing in a [`DkgSession`] ([`DkgParams::reshare`](super::DkgParams)): the same group
//! key under a new threshold `t'` and a new set of members, built from frost's own
//! primitives (its Lagrange coefficients, `keys::split`, its VSS check).
//!
//! 1. Each of the `t` dealers (holders of the current epoch) takes `a_i = λ_i · s_i`, its share
//!    weighted by its Lagrange coefficient over the dealer set (so the `a_i` add up to the
//!    group secret), and splits it with a fresh polynomial of degree `t' - 1` over the members'
//!    identifiers: it broadcasts the polynomial's commitment (as a `DkgRound1`) and sends each
//!    member its sub-share privately (as a `DkgRound2`).
//! 2. Every holder of the current epoch checks each dealer's commitment against public data:
//!    its constant term must be `λ_i · Y_i` (a dealer that deals anything else is named). Every
//!    participant echoes the hashes of the commitments it received, as in the DKG, so a dealer
//!    that shows different commitments to different participants is caught.
//! 3. Each member checks every sub-share against its dealer's commitment (a bad one names the
//!    dealer) and sums them: its new share. Everyone sums the commitments: the new group
//!    commitment, whose constant term must be the group key (a new member, which holds no
//!    verifying shares, checks this), and the new public key package.
//! 4. Every participant confirms, as in the DKG. A participant that is not a member holds no
//!    share of the new epoch: once the certificate proves everyone confirmed, it deletes its
//!    old share ([`Effect::Left`]).

use std::collections::{BTreeMap, BTreeSet};

use frost_ed25519::keys::{
    IdentifierList, KeyPackage, PublicKeyPackage, SecretShare, SigningShare,
    VerifiableSecretSharingCommitment,
};
use frost_ed25519::{Ed25519Group, Ed25519Sha512, Group, Identifier, SigningKey};
use rand::{CryptoRng, RngCore};

use super::commitment;
use super::error::DkgError;
use super::phase::Phase;
use super::session::DkgSession;
use super::types::{sha256, Effect, PriorKey};
use super::work::{Part3Output, Pending, Work};
use crate::wire::{Body, NodeId, SecretBytes};

type Scalar = frost_core::Scalar<Ed25519Sha512>;

fn frost(e: frost_ed25519::Error) -> DkgError {
    DkgError::Frost(e.to_string())
}

impl DkgSession {
    /// Dealer `id`'s Lagrange coefficient over the dealer set (at zero).
    fn lagrange(&self, id: NodeId) -> Result<Scalar, DkgError> {
        let dealers: BTreeSet<Identifier> = self
            .params
            .reshare
            .iter()
            .flat_map(|r| r.dealers.iter())
            .map(|&d| self.ident(d))
            .collect();
        frost_core::compute_lagrange_coefficient(&dealers, None, self.ident(id)).map_err(frost)
    }

    /// The constant term each dealer's commitment must have, `λ_i · Y_i`, from the current
    /// epoch's verifying shares.
    pub(super) fn expected_constants(
        &self,
        prior: &PriorKey,
    ) -> Result<BTreeMap<NodeId, [u8; 32]>, DkgError> {
        let mut expected = BTreeMap::new();
        for &dealer in self.params.reshare.iter().flat_map(|r| r.dealers.iter()) {
            let Some(share) = prior
                .public_key_package
                .verifying_shares()
                .get(&self.ident(dealer))
            else {
                return Err(DkgError::InvalidParams(format!(
                    "dealer {dealer} holds no share of the key's current epoch"
                )));
            };
            let point = share.to_element() * self.lagrange(dealer)?;
            let bytes = Ed25519Group::serialize(&point)
                .map_err(|e| DkgError::Frost(format!("dealer {dealer}'s part: {e}")))?;
            expected.insert(dealer, bytes);
        }
        Ok(expected)
    }

    /// Round id fixed: a dealer deals; everyone then waits for every dealer's commitment.
    pub(super) fn begin_reshare<R: RngCore + CryptoRng>(&mut self, rng: &mut R) -> Vec<Effect> {
        self.phase = Phase::Round1;
        let mut effects = Vec::new();
        if self.params.is_dealer(self.me) {
            match self.deal(rng) {
                Ok(dealt) => effects = dealt,
                Err(e) => return self.fail(e, true),
            }
        }
        effects.extend(self.progress());
        effects
    }

    /// Splits `λ_i · s_i` among the members: the commitment to everyone, each sub-share to its
    /// member alone.
    fn deal<R: RngCore + CryptoRng>(&mut self, rng: &mut R) -> Result<Vec<Effect>, DkgError> {
        let members: Vec<Identifier> = self
            .params
            .members()
            .iter()
            .map(|&m| self.ident(m))
            .collect();
        let lambda = self.lagrange(self.me)?;
        let Some(prior) = self.prior.as_ref() else {
            return Err(DkgError::InvalidParams(
                "a reshare dealer without its share".into(),
            ));
        };
        let part = SigningKey::from_scalar(prior.key_package.signing_share().to_scalar() * lambda)
            .map_err(frost)?;
        let (shares, _) = frost_ed25519::keys::split(
            &part,
            members.len() as u16,
            self.params.threshold,
            IdentifierList::Custom(&members),
            rng,
        )
        .map_err(frost)?;
        let Some(commitment) = shares.values().next().map(|s| s.commitment().clone()) else {
            return Err(DkgError::InvalidParams("a reshare without members".into()));
        };
        let bytes = encode_commitment(&commitment)?;
        self.round1_hashes.insert(self.me, sha256(&bytes));
        self.own_round1 = Some(bytes.clone());
        self.deal_commitments.insert(self.me, commitment);
        let mut effects = vec![Effect::Broadcast(Body::DkgRound1 { package: bytes })];
        for (ident, share) in shares {
            let Some(&to) = self.ident_to_id.get(&ident) else {
                continue;
            };
            let value = SecretBytes(share.signing_share().serialize());
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
        Ok(effects)
    }

    /// A dealer's commitment came back decoded and checked (or refused, naming the dealer).
    pub(super) fn dealt(
        &mut self,
        from: NodeId,
        result: Result<Box<VerifiableSecretSharingCommitment>, DkgError>,
    ) -> Vec<Effect> {
        if self.phase != Phase::Round1 {
            return Vec::new();
        }
        match result {
            Ok(commitment) => {
                self.deal_commitments.insert(from, *commitment);
                self.progress()
            }
            Err(e) => self.fail(e, true),
        }
    }

    /// Every dealer's commitment is in: echo their hashes.
    pub(super) fn reshare_echo(&mut self) -> Vec<Effect> {
        let echo: Vec<(NodeId, [u8; 32])> =
            self.round1_hashes.iter().map(|(&k, &v)| (k, v)).collect();
        self.own_echo = Some(echo.clone());
        self.phase = Phase::Round2;
        vec![Effect::Broadcast(Body::DkgEcho {
            round1_hashes: echo,
        })]
    }

    /// Every echo (and, for a member, every sub-share) is in: check and sum, off the message
    /// path.
    pub(super) fn start_reshare(&mut self) -> Vec<Effect> {
        if let Err(e) = self.check_echoes() {
            return self.fail(e, true);
        }
        let Some(refresh) = self.params.refresh else {
            return self.fail(DkgError::InvalidParams("a reshare of no key".into()), true);
        };
        let member = self.params.is_member(self.me);
        // The sub-shares stay until the result is in (so none is asked for again meanwhile).
        let mut shares: Vec<(NodeId, SecretBytes)> = self
            .round2_raw
            .iter()
            .map(|(&from, share)| (from, share.clone()))
            .collect();
        if let Some(own) = &self.own_value {
            shares.push((self.me, own.clone()));
        }
        let input = ReshareInput {
            me: self.ident(self.me),
            member,
            members: self
                .params
                .members()
                .iter()
                .map(|&m| self.ident(m))
                .collect(),
            commitments: self.deal_commitments.clone(),
            shares,
            group_public_key: refresh.group_public_key,
        };
        self.pending = Some(Pending::Reshare);
        vec![Effect::Compute(Work::reshare(input))]
    }

    /// The new epoch is computed (or a dealer is named): confirm it.
    pub(super) fn reshared(&mut self, result: Result<Box<Part3Output>, DkgError>) -> Vec<Effect> {
        self.round2_raw.clear();
        self.own_value = None;
        self.deal_commitments.clear();
        match result {
            Ok(out) => self.confirm_output(*out),
            Err(e) => self.fail(e, true),
        }
    }
}

/// A commitment on the wire: its coefficients, 32 bytes each.
fn encode_commitment(c: &VerifiableSecretSharingCommitment) -> Result<Vec<u8>, DkgError> {
    Ok(c.serialize().map_err(frost)?.concat())
}

/// Decodes dealer `from`'s commitment (`len` coefficients, every point checked) and, where
/// `expected` is known, checks its constant term.
pub(super) fn decode_deal(
    from: NodeId,
    bytes: &[u8],
    len: usize,
    expected: Option<[u8; 32]>,
) -> Result<VerifiableSecretSharingCommitment, DkgError> {
    let malformed = DkgError::Malformed {
        culprit: from,
        what: "reshare commitment",
    };
    if bytes.len() != 32 * len {
        return Err(malformed);
    }
    let commitment = VerifiableSecretSharingCommitment::deserialize(bytes.chunks(32))
        .map_err(|_| malformed.clone())?;
    if let Some(expected) = expected {
        if bytes[..32] != expected {
            return Err(DkgError::InvalidDealing { culprit: from });
        }
    }
    Ok(commitment)
}

/// What the last step of a reshare needs: the dealers' commitments, this node's sub-shares
/// (a member's), the members and the group key.
pub(super) struct ReshareInput {
    me: Identifier,
    member: bool,
    members: BTreeSet<Identifier>,
    commitments: BTreeMap<NodeId, VerifiableSecretSharingCommitment>,
    shares: Vec<(NodeId, SecretBytes)>,
    group_public_key: [u8; 32],
}

impl ReshareInput {
    /// About how many variable-base multiplications it costs: each sub-share's check and each
    /// member's verifying share, `t'` points each.
    pub(super) fn points(&self) -> usize {
        let t = self
            .commitments
            .values()
            .next()
            .map_or(0, |c| c.coefficients().len());
        t * (self.shares.len() + self.members.len())
    }

    /// Checks every sub-share against its dealer's commitment, sums them and the commitments,
    /// checks the group key and builds the new epoch's packages.
    pub(super) fn run(self) -> Result<Part3Output, DkgError> {
        let mut share: Option<Scalar> = None;
        if self.member {
            for (from, bytes) in &self.shares {
                let Ok(sub) = SigningShare::deserialize(&bytes.0) else {
                    let what = "reshare sub-share";
                    return Err(DkgError::Malformed {
                        culprit: *from,
                        what,
                    });
                };
                let Some(commitment) = self.commitments.get(from) else {
                    return Err(DkgError::Frost(format!("no commitment of dealer {from}")));
                };
                SecretShare::new(self.me, sub, commitment.clone())
                    .verify()
                    .map_err(|_| DkgError::InvalidSecretShare { culprit: *from })?;
                let scalar = sub.to_scalar();
                share = Some(share.map_or(scalar, |s| s + scalar));
            }
            if self.shares.len() != self.commitments.len() {
                return Err(DkgError::Frost("a sub-share is missing".into()));
            }
        }
        let group_commitment = commitment::sum_dkg(self.commitments.values())
            .map_err(|e| DkgError::Frost(e.to_string()))?;
        if group_commitment.first() != Some(&self.group_public_key) {
            return Err(DkgError::DealingMismatch {
                dealers: self.commitments.keys().copied().collect(),
            });
        }
        let vss = VerifiableSecretSharingCommitment::deserialize(group_commitment.iter())
            .map_err(frost)?;
        let public_key_package =
            PublicKeyPackage::from_commitment(&self.members, &vss).map_err(frost)?;
        let key_package = match share {
            Some(scalar) => {
                let secret = SecretShare::new(self.me, SigningShare::new(scalar), vss);
                Some(KeyPackage::try_from(secret).map_err(frost)?)
            }
            None => None,
        };
        let pkp = public_key_package.serialize().map_err(frost)?;
        Ok(Part3Output {
            key_package,
            public_key_package,
            group_public_key: self.group_public_key,
            public_key_package_hash: sha256(&pkp),
            group_commitment,
        })
    }
}
