//! The arithmetic of a DKG session, handed out as [`Work`] so that the driver can run it off
//! the task that moves messages (decoding a round-1 package, `part2`, `part3` are the costly
//! steps: at n = 100, t = 67 about 7 ms, 20 ms and 1.1 s of one core per participant). The
//! result comes back as [`Done`] through [`DkgSession::computed`]; [`DkgSession::settle`] runs
//! the work in place, for tools and tests that drive a session without a worker pool.
//!
//! A [`Work`] is pure: it holds its inputs (secret ones included, so its `Debug` shows only
//! its kind) and touches nothing else, so it may run on any thread, late, or never (a session
//! that ended meanwhile ignores its result).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use frost_ed25519::keys::dkg::{self, round1, round2};
use frost_ed25519::keys::{
    refresh, KeyPackage, PublicKeyPackage, VerifiableSecretSharingCommitment,
};
use frost_ed25519::Identifier;

use super::commitment;
use super::error::DkgError;
use super::session::DkgSession;
use super::types::{sha256, Effect, PriorKey};
use crate::wire::{NodeId, SecretBytes};

/// A step of a session's arithmetic, to be run anywhere by [`Work::run`].
pub struct Work {
    job: Job,
    /// About how many variable-base scalar multiplications it costs.
    points: usize,
}

enum Job {
    /// Decode (and so check every point of) one participant's round-1 package.
    Decode { from: NodeId, bytes: Vec<u8> },
    /// `part2` (or the refresh's) over every other participant's round-1 package.
    Part2 {
        secret: Box<round1::SecretPackage>,
        packages: BTreeMap<Identifier, round1::Package>,
        refresh: bool,
    },
    /// Decode one reshare dealer's commitment and check its constant term.
    Deal {
        from: NodeId,
        bytes: Vec<u8>,
        len: usize,
        expected: Option<[u8; 32]>,
    },
    /// Check and sum a reshare's sub-shares and commitments.
    Reshare(Box<super::reshare::ReshareInput>),
    /// Decode every round-2 package addressed to this node and run `part3` (or, with the
    /// shares a refresh starts from, `refresh_dkg_shares`).
    Part3 {
        secret: Box<round2::SecretPackage>,
        packages: BTreeMap<Identifier, round1::Package>,
        round2: Vec<(NodeId, Identifier, SecretBytes)>,
        prior: Option<Box<PriorKey>>,
    },
}

/// The result of a [`Work`], for [`DkgSession::computed`].
pub struct Done(pub(super) Outcome);

pub(super) enum Outcome {
    /// A round-1 package, or `None` if its bytes do not decode.
    Decoded {
        from: NodeId,
        package: Option<Box<round1::Package>>,
    },
    Part2(Result<Part2Output, frost_ed25519::Error>),
    Part3(Result<Box<Part3Output>, Part3Error>),
    /// A reshare dealer's commitment, or why it is refused.
    Dealt {
        from: NodeId,
        result: Result<Box<VerifiableSecretSharingCommitment>, DkgError>,
    },
    Reshared(Result<Box<Part3Output>, DkgError>),
}

/// What `part2` produced: the secret for `part3` and each recipient's encoded package.
pub(super) struct Part2Output {
    pub secret: Box<round2::SecretPackage>,
    pub packages: Vec<(Identifier, Result<Vec<u8>, frost_ed25519::Error>)>,
}

/// What `part3` (or a reshare) produced, with the encodings the confirmation signs.
pub(super) struct Part3Output {
    /// None for a participant a reshare leaves out.
    pub key_package: Option<KeyPackage>,
    pub public_key_package: PublicKeyPackage,
    pub group_public_key: [u8; 32],
    pub public_key_package_hash: [u8; 32],
    pub group_commitment: Vec<[u8; 32]>,
}

/// Why `part3` produced nothing.
pub(super) enum Part3Error {
    /// This participant's round-2 package does not decode.
    Malformed(NodeId),
    /// frost refused (a bad share names its sender).
    Frost(frost_ed25519::Error),
    /// The result could not be encoded.
    Encoding(String),
}

/// The step a session waits for while its [`Work`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pending {
    Part2,
    Part3,
    Reshare,
}

impl Work {
    pub(super) fn decode(from: NodeId, bytes: Vec<u8>, threshold: usize) -> Self {
        Work {
            job: Job::Decode { from, bytes },
            // One torsion check per commitment point.
            points: threshold,
        }
    }

    pub(super) fn deal(
        from: NodeId,
        bytes: Vec<u8>,
        len: usize,
        expected: Option<[u8; 32]>,
    ) -> Self {
        Work {
            // One torsion check per point, one multiplication for the constant term.
            points: len + 1,
            job: Job::Deal {
                from,
                bytes,
                len,
                expected,
            },
        }
    }

    pub(super) fn reshare(input: super::reshare::ReshareInput) -> Self {
        Work {
            points: input.points(),
            job: Job::Reshare(Box::new(input)),
        }
    }

    pub(super) fn part2(
        secret: round1::SecretPackage,
        packages: BTreeMap<Identifier, round1::Package>,
        refresh: bool,
    ) -> Self {
        Work {
            // Two per proof of knowledge checked (a refresh checks none).
            points: if refresh { 0 } else { 2 * packages.len() },
            job: Job::Part2 {
                secret: Box::new(secret),
                packages,
                refresh,
            },
        }
    }

    pub(super) fn part3(
        secret: round2::SecretPackage,
        packages: BTreeMap<Identifier, round1::Package>,
        round2: Vec<(NodeId, Identifier, SecretBytes)>,
        threshold: usize,
        prior: Option<Box<PriorKey>>,
    ) -> Self {
        Work {
            // Each share checked against its sender's commitment (t points), and every
            // participant's verifying share (t points each).
            points: (2 * packages.len() + 1) * threshold,
            job: Job::Part3 {
                secret: Box::new(secret),
                packages,
                round2,
                prior,
            },
        }
    }

    /// About how many variable-base scalar multiplications the work costs (a few tens of
    /// microseconds each): a driver may run small work in place rather than hand it to another
    /// thread.
    pub fn points(&self) -> usize {
        self.points
    }

    /// What this work is, for logs and metrics: `decode`, `part2` or `part3`.
    pub fn kind(&self) -> &'static str {
        match self.job {
            Job::Decode { .. } => "decode",
            Job::Part2 { .. } => "part2",
            Job::Part3 { .. } => "part3",
            Job::Deal { .. } => "deal",
            Job::Reshare(_) => "reshare",
        }
    }

    /// Does the work (CPU only: no I/O, no clock, no shared state).
    pub fn run(self) -> Done {
        Done(match self.job {
            Job::Decode { from, bytes } => Outcome::Decoded {
                from,
                package: round1::Package::deserialize(&bytes).ok().map(Box::new),
            },
            Job::Part2 {
                secret,
                packages,
                refresh,
            } => {
                let part2 = if refresh {
                    refresh::refresh_dkg_part2(*secret, &packages)
                } else {
                    dkg::part2(*secret, &packages)
                };
                Outcome::Part2(part2.map(|(secret, out)| {
                    Part2Output {
                        secret: Box::new(secret),
                        packages: out
                            .into_iter()
                            .map(|(ident, p)| (ident, p.serialize()))
                            .collect(),
                    }
                }))
            }
            Job::Part3 {
                secret,
                packages,
                round2,
                prior,
            } => Outcome::Part3(run_part3(&secret, &packages, round2, prior).map(Box::new)),
            Job::Deal {
                from,
                bytes,
                len,
                expected,
            } => Outcome::Dealt {
                from,
                result: super::reshare::decode_deal(from, &bytes, len, expected).map(Box::new),
            },
            Job::Reshare(input) => Outcome::Reshared(input.run().map(Box::new)),
        })
    }
}

fn run_part3(
    secret: &round2::SecretPackage,
    packages: &BTreeMap<Identifier, round1::Package>,
    raw: Vec<(NodeId, Identifier, SecretBytes)>,
    prior: Option<Box<PriorKey>>,
) -> Result<Part3Output, Part3Error> {
    let mut round2 = BTreeMap::new();
    for (from, ident, bytes) in raw {
        let package =
            round2::Package::deserialize(&bytes.0).map_err(|_| Part3Error::Malformed(from))?;
        round2.insert(ident, package);
    }
    let commitments = packages
        .values()
        .map(|p| p.commitment())
        .chain(std::iter::once(secret.commitment()));
    let (key_package, public_key_package, group_commitment) = match prior {
        None => {
            let (kp, pkp) = dkg::part3(secret, packages, &round2).map_err(Part3Error::Frost)?;
            let sum = commitment::sum_dkg(commitments)
                .map_err(|e| Part3Error::Encoding(e.to_string()))?;
            (kp, pkp, sum)
        }
        Some(prior) => {
            let refreshed = refresh::refresh_dkg_shares(
                secret,
                packages,
                &round2,
                prior.public_key_package.clone(),
                prior.key_package.clone(),
            );
            let (kp, pkp) = refreshed.map_err(|e| refresh_blame(e, secret, packages, &round2))?;
            // Keys from releases that kept no group commitment get none after a refresh either.
            let sum = if prior.group_commitment.is_empty() {
                Vec::new()
            } else {
                commitment::add_refresh(&prior.group_commitment, commitments)
                    .map_err(|e| Part3Error::Encoding(e.to_string()))?
            };
            (kp, pkp, sum)
        }
    };
    let encoding = |e: frost_ed25519::Error| Part3Error::Encoding(e.to_string());
    let gpk = public_key_package
        .verifying_key()
        .serialize()
        .map_err(encoding)?;
    let pkp = public_key_package.serialize().map_err(encoding)?;
    let group_public_key = <[u8; 32]>::try_from(gpk.as_slice())
        .map_err(|_| Part3Error::Encoding("the group key is not 32 bytes".into()))?;
    if group_commitment
        .first()
        .is_some_and(|c| *c != group_public_key)
    {
        return Err(Part3Error::Encoding(
            "the group commitment does not start with the group key".into(),
        ));
    }
    Ok(Part3Output {
        key_package: Some(key_package),
        public_key_package,
        group_public_key,
        public_key_package_hash: sha256(&pkp),
        group_commitment,
    })
}

/// frost's refresh names no culprit for a bad share: find the sender whose share does not lie
/// on its refresh polynomial.
fn refresh_blame(
    error: frost_ed25519::Error,
    secret: &round2::SecretPackage,
    packages: &BTreeMap<Identifier, round1::Package>,
    round2: &BTreeMap<Identifier, round2::Package>,
) -> Part3Error {
    if !matches!(error, frost_ed25519::Error::InvalidSecretShare { .. }) {
        return Part3Error::Frost(error);
    }
    let me = *secret.identifier();
    let culprit = round2.iter().find_map(|(from, share)| {
        let valid = packages
            .get(from)
            .is_some_and(|c| commitment::refresh_share_is_valid(me, share, c));
        (!valid).then_some(*from)
    });
    Part3Error::Frost(frost_ed25519::Error::InvalidSecretShare { culprit })
}

impl fmt::Debug for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The inputs hold secret polynomials and shares: only the kind is shown.
        f.debug_tuple("Work").field(&self.kind()).finish()
    }
}

impl fmt::Debug for Done {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.0 {
            Outcome::Decoded { .. } => "decode",
            Outcome::Part2(_) => "part2",
            Outcome::Part3(_) => "part3",
            Outcome::Dealt { .. } => "deal",
            Outcome::Reshared(_) => "reshare",
        };
        f.debug_tuple("Done").field(&kind).finish()
    }
}

impl DkgSession {
    /// Runs every [`Effect::Compute`] in `effects` here and now, hands each result back
    /// ([`DkgSession::computed`]) and does the same with what that returns, until no work is
    /// left; returns the other effects in the order they would have come.
    pub fn settle(&mut self, effects: Vec<Effect>) -> Vec<Effect> {
        let mut queue: VecDeque<Effect> = effects.into();
        let mut out = Vec::new();
        while let Some(effect) = queue.pop_front() {
            match effect {
                Effect::Compute(work) => {
                    for e in self.computed(work.run()).into_iter().rev() {
                        queue.push_front(e);
                    }
                }
                other => out.push(other),
            }
        }
        out
    }
}
