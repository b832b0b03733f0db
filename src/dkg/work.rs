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
use frost_ed25519::keys::{KeyPackage, PublicKeyPackage};
use frost_ed25519::Identifier;

use super::session::DkgSession;
use super::types::{sha256, Effect};
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
    /// `part2` over every other participant's round-1 package.
    Part2 {
        secret: Box<round1::SecretPackage>,
        packages: BTreeMap<Identifier, round1::Package>,
    },
    /// Decode every round-2 package addressed to this node and run `part3`.
    Part3 {
        secret: Box<round2::SecretPackage>,
        packages: BTreeMap<Identifier, round1::Package>,
        round2: Vec<(NodeId, Identifier, SecretBytes)>,
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
}

/// What `part2` produced: the secret for `part3` and each recipient's encoded package.
pub(super) struct Part2Output {
    pub secret: Box<round2::SecretPackage>,
    pub packages: Vec<(Identifier, Result<Vec<u8>, frost_ed25519::Error>)>,
}

/// What `part3` produced, with the encodings the confirmation signs.
pub(super) struct Part3Output {
    pub key_package: KeyPackage,
    pub public_key_package: PublicKeyPackage,
    pub group_public_key: [u8; 32],
    pub public_key_package_hash: [u8; 32],
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
}

impl Work {
    pub(super) fn decode(from: NodeId, bytes: Vec<u8>, threshold: usize) -> Self {
        Work {
            job: Job::Decode { from, bytes },
            // One torsion check per commitment point.
            points: threshold,
        }
    }

    pub(super) fn part2(
        secret: round1::SecretPackage,
        packages: BTreeMap<Identifier, round1::Package>,
    ) -> Self {
        Work {
            // Two per proof of knowledge checked.
            points: 2 * packages.len(),
            job: Job::Part2 {
                secret: Box::new(secret),
                packages,
            },
        }
    }

    pub(super) fn part3(
        secret: round2::SecretPackage,
        packages: BTreeMap<Identifier, round1::Package>,
        round2: Vec<(NodeId, Identifier, SecretBytes)>,
        threshold: usize,
    ) -> Self {
        Work {
            // Each share checked against its sender's commitment (t points), and every
            // participant's verifying share (t points each).
            points: (2 * packages.len() + 1) * threshold,
            job: Job::Part3 {
                secret: Box::new(secret),
                packages,
                round2,
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
        }
    }

    /// Does the work (CPU only: no I/O, no clock, no shared state).
    pub fn run(self) -> Done {
        Done(match self.job {
            Job::Decode { from, bytes } => Outcome::Decoded {
                from,
                package: round1::Package::deserialize(&bytes).ok().map(Box::new),
            },
            Job::Part2 { secret, packages } => {
                Outcome::Part2(dkg::part2(*secret, &packages).map(|(secret, out)| {
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
            } => Outcome::Part3(run_part3(&secret, &packages, round2).map(Box::new)),
        })
    }
}

fn run_part3(
    secret: &round2::SecretPackage,
    packages: &BTreeMap<Identifier, round1::Package>,
    raw: Vec<(NodeId, Identifier, SecretBytes)>,
) -> Result<Part3Output, Part3Error> {
    let mut round2 = BTreeMap::new();
    for (from, ident, bytes) in raw {
        let package =
            round2::Package::deserialize(&bytes.0).map_err(|_| Part3Error::Malformed(from))?;
        round2.insert(ident, package);
    }
    let (key_package, public_key_package) =
        dkg::part3(secret, packages, &round2).map_err(Part3Error::Frost)?;
    let encoding = |e: frost_ed25519::Error| Part3Error::Encoding(e.to_string());
    let gpk = public_key_package
        .verifying_key()
        .serialize()
        .map_err(encoding)?;
    let pkp = public_key_package.serialize().map_err(encoding)?;
    let group_public_key = <[u8; 32]>::try_from(gpk.as_slice())
        .map_err(|_| Part3Error::Encoding("the group key is not 32 bytes".into()))?;
    Ok(Part3Output {
        key_package,
        public_key_package,
        group_public_key,
        public_key_package_hash: sha256(&pkp),
    })
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
