//! The protocol steps of a [`DkgSession`] that run once a phase's inputs are complete:
//! `part2` with the echo, `part3` with the signed confirmation, and the final agreement check.
//! `part2` and `part3` go out as [`Work`]; their results come back through
//! [`DkgSession::computed`].

use std::collections::BTreeMap;

use frost_ed25519::keys::dkg::round1;
use frost_ed25519::Identifier;
use sha2::{Digest, Sha256};

use super::error::DkgError;
use super::phase::Phase;
use super::session::{Completion, DkgSession};
use super::types::{confirmation_message, DkgOutput, Effect, PriorKey, TRANSCRIPT_DOMAIN};
use super::work::{Done, Outcome, Part2Output, Part3Error, Part3Output, Pending, Work};
use crate::wire::{Body, Confirmation, NodeId, SecretBytes};

impl DkgSession {
    /// Advances through every phase whose inputs are complete.
    pub(super) fn progress(&mut self) -> Vec<Effect> {
        let mut effects = Vec::new();
        loop {
            if self.pending.is_some() {
                return effects;
            }
            let reshare = self.params.reshare.is_some();
            let step = match self.phase {
                Phase::Round1 if reshare => {
                    if self.deal_commitments.len() < self.round1_senders().len() {
                        return effects;
                    }
                    self.reshare_echo()
                }
                Phase::Round2 if reshare => {
                    let senders = self.unicast_senders();
                    if self.echoes.len() < self.others().count()
                        || senders.iter().any(|s| !self.round2_raw.contains_key(s))
                    {
                        return effects;
                    }
                    self.start_reshare()
                }
                Phase::Round1 if self.round1_packages.len() == self.others().count() => {
                    self.start_part2()
                }
                Phase::Round2 if self.params.repair.is_some() => {
                    if self.round2_raw.len() < self.unicast_senders().len() {
                        return effects;
                    }
                    self.repair_step()
                }
                Phase::Round2
                    if self.round2_raw.len() == self.others().count()
                        && self.echoes.len() == self.others().count() =>
                {
                    self.start_part3()
                }
                Phase::Confirming if self.confirmations.len() == self.others().count() => {
                    self.finish()
                }
                _ => return effects,
            };
            let stop = ends(&step);
            effects.extend(step);
            if stop {
                return effects;
            }
        }
    }

    fn frost_packages(&self) -> BTreeMap<Identifier, round1::Package> {
        self.round1_packages
            .iter()
            .map(|(&id, p)| (self.ident(id), p.clone()))
            .collect()
    }

    fn blame(&self, error: frost_ed25519::Error) -> DkgError {
        let culprit = error
            .culprits()
            .first()
            .and_then(|ident| self.ident_to_id.get(ident).copied());
        match (error, culprit) {
            (frost_ed25519::Error::InvalidProofOfKnowledge { .. }, Some(culprit)) => {
                DkgError::InvalidProofOfKnowledge { culprit }
            }
            (frost_ed25519::Error::InvalidSecretShare { .. }, Some(culprit)) => {
                DkgError::InvalidSecretShare { culprit }
            }
            (other, _) => DkgError::Frost(other.to_string()),
        }
    }

    /// Hands the arithmetic of [`DkgSession::computed`]'s result back to the step it belongs
    /// to; a result for a session that ended or moved on meanwhile is dropped.
    pub fn computed(&mut self, done: Done) -> Vec<Effect> {
        if self.is_finished() {
            return Vec::new();
        }
        match done.0 {
            Outcome::Decoded { from, package } => self.round1_decoded(from, package.map(|p| *p)),
            Outcome::Part2(result) if self.pending == Some(Pending::Part2) => {
                self.pending = None;
                let effects = self.part2_done(result);
                self.then_progress(effects)
            }
            Outcome::Part3(result) if self.pending == Some(Pending::Part3) => {
                self.pending = None;
                let effects = self.part3_done(result);
                self.then_progress(effects)
            }
            Outcome::Dealt { from, result } => self.dealt(from, result),
            Outcome::Reshared(result) if self.pending == Some(Pending::Reshare) => {
                self.pending = None;
                let effects = self.reshared(result);
                self.then_progress(effects)
            }
            Outcome::Part2(_) | Outcome::Part3(_) | Outcome::Reshared(_) => Vec::new(),
        }
    }

    /// `effects` of a finished step, and whatever the next phase can do at once.
    fn then_progress(&mut self, mut effects: Vec<Effect>) -> Vec<Effect> {
        if !ends(&effects) {
            effects.extend(self.progress());
        }
        effects
    }

    fn start_part2(&mut self) -> Vec<Effect> {
        let Some(secret) = self.round1_secret.take() else {
            return self.fail(DkgError::Frost("round-1 secret missing".into()), true);
        };
        self.pending = Some(Pending::Part2);
        let refresh = self.is_refresh();
        vec![Effect::Compute(Work::part2(
            secret,
            self.frost_packages(),
            refresh,
        ))]
    }

    fn part2_done(&mut self, result: Result<Part2Output, frost_ed25519::Error>) -> Vec<Effect> {
        let Part2Output { secret, packages } = match result {
            Ok(v) => v,
            Err(frost_ed25519::Error::IncorrectNumberOfCommitments) => {
                let culprit = self.wrong_length_commitment().unwrap_or(self.me);
                return self.fail(
                    DkgError::Malformed {
                        culprit,
                        what: "round-1 package (wrong threshold)",
                    },
                    true,
                );
            }
            Err(e) => {
                let err = self.blame(e);
                return self.fail(err, true);
            }
        };
        let mut effects = Vec::with_capacity(packages.len() + 1);
        for (ident, package) in packages {
            let Some(&to) = self.ident_to_id.get(&ident) else {
                continue;
            };
            match package {
                Ok(bytes) => {
                    let package = SecretBytes(bytes);
                    self.sent_round2.insert(to, package.clone());
                    effects.push(Effect::Send {
                        to,
                        body: Body::DkgRound2 { package },
                    })
                }
                Err(e) => return self.fail(DkgError::Frost(e.to_string()), true),
            }
        }
        self.round2_secret = Some(*secret);
        let echo: Vec<(NodeId, [u8; 32])> =
            self.round1_hashes.iter().map(|(&k, &v)| (k, v)).collect();
        self.own_echo = Some(echo.clone());
        effects.push(Effect::Broadcast(Body::DkgEcho {
            round1_hashes: echo,
        }));
        self.phase = Phase::Round2;
        effects
    }

    /// The first sender whose commitment does not have `threshold` coefficients (slow: only
    /// called after `part2` reported a mismatch).
    fn wrong_length_commitment(&self) -> Option<NodeId> {
        let len = self.commitment_len();
        self.round1_packages
            .iter()
            .find(|(_, p)| p.commitment().serialize().map_or(true, |c| c.len() != len))
            .map(|(&id, _)| id)
    }

    pub(super) fn check_echoes(&self) -> Result<(), DkgError> {
        for (&reporter, hashes) in &self.echoes {
            for (sender, hash) in hashes {
                if self.round1_hashes.get(sender) != Some(hash) {
                    // About our own package we know the truth: the reporter is lying.
                    if *sender == self.me {
                        return Err(DkgError::Equivocation {
                            culprit: reporter,
                            what: "echo of our round-1 package",
                            reported_by: self.me,
                        });
                    }
                    return Err(DkgError::EchoMismatch {
                        sender: *sender,
                        reporter,
                    });
                }
            }
        }
        Ok(())
    }

    fn transcript(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(TRANSCRIPT_DOMAIN);
        h.update(self.wire_session().0);
        h.update((self.params.key_id.len() as u32).to_be_bytes());
        h.update(self.params.key_id.as_bytes());
        h.update(self.params.threshold.to_be_bytes());
        for (id, hash) in &self.round1_hashes {
            h.update(id.to_be_bytes());
            h.update(hash);
        }
        h.finalize().into()
    }

    fn start_part3(&mut self) -> Vec<Effect> {
        if let Err(e) = self.check_echoes() {
            return self.fail(e, true);
        }
        let Some(secret) = self.round2_secret.take() else {
            return self.fail(DkgError::Frost("round-2 secret missing".into()), true);
        };
        let round2 = self
            .round2_raw
            .iter()
            .map(|(&from, raw)| (from, self.ident(from), raw.clone()))
            .collect();
        self.pending = Some(Pending::Part3);
        let t = usize::from(self.params.threshold);
        // The refresh needs the shares it renews once more; they stay here until it ends.
        let prior = self.prior.as_ref().map(|p| {
            Box::new(PriorKey {
                key_package: p.key_package.clone(),
                public_key_package: p.public_key_package.clone(),
                group_commitment: p.group_commitment.clone(),
            })
        });
        vec![Effect::Compute(Work::part3(
            secret,
            self.frost_packages(),
            round2,
            t,
            prior,
        ))]
    }

    fn part3_done(&mut self, result: Result<Box<Part3Output>, Part3Error>) -> Vec<Effect> {
        let out = match result {
            Ok(out) => *out,
            Err(Part3Error::Malformed(culprit)) => {
                return self.fail(
                    DkgError::Malformed {
                        culprit,
                        what: "round-2 package",
                    },
                    true,
                )
            }
            Err(Part3Error::Frost(e)) => {
                let err = self.blame(e);
                return self.fail(err, true);
            }
            Err(Part3Error::Encoding(e)) => return self.fail(DkgError::Frost(e), true),
        };
        self.round2_raw.clear();
        self.confirm_output(out)
    }

    /// Confirms what `part3` (or a reshare) computed.
    pub(super) fn confirm_output(&mut self, out: Part3Output) -> Vec<Effect> {
        let Part3Output {
            key_package,
            public_key_package,
            group_public_key,
            public_key_package_hash,
            group_commitment,
        } = out;
        let completion = Completion {
            key_package,
            public_key_package,
            group_commitment,
        };
        self.confirm(completion, group_public_key, public_key_package_hash)
    }

    /// Signs and broadcasts this node's confirmation of `completion` and waits for everyone
    /// else's. A session that starts from an existing key refuses any other group key.
    pub(super) fn confirm(
        &mut self,
        completion: Completion,
        group_public_key: [u8; 32],
        public_key_package_hash: [u8; 32],
    ) -> Vec<Effect> {
        if let Some(refresh) = self.params.refresh {
            if group_public_key != refresh.group_public_key {
                return self.fail(
                    DkgError::Frost("the session changed the group key".into()),
                    true,
                );
            }
        }
        let mut confirmation = Confirmation {
            transcript: self.transcript(),
            group_public_key,
            public_key_package_hash,
            signature: Vec::new(),
        };
        match self
            .keys
            .sign(&confirmation_message(&self.wire_session(), &confirmation))
        {
            Some(sig) => confirmation.signature = sig,
            None => return self.fail(DkgError::Frost("cannot sign the confirmation".into()), true),
        }
        self.result = Some(completion);
        self.prior = None;
        self.own_confirmation = Some(confirmation.clone());
        self.phase = Phase::Confirming;
        vec![Effect::Broadcast(Body::DkgConfirm(confirmation))]
    }

    fn finish(&mut self) -> Vec<Effect> {
        let Some(own) = self.own_confirmation.clone() else {
            return self.fail(DkgError::Frost("own confirmation missing".into()), true);
        };
        let same = |c: &Confirmation| {
            c.transcript == own.transcript
                && c.group_public_key == own.group_public_key
                && c.public_key_package_hash == own.public_key_package_hash
        };
        let differing: Vec<NodeId> = self
            .confirmations
            .iter()
            .filter(|(_, c)| !same(c))
            .map(|(&id, _)| id)
            .collect();
        if !differing.is_empty() {
            // This node's confirmation is out, so it does not abort (the others may complete):
            // a differing confirmation is replaced by the certificate's, if that one agrees, or
            // dropped, and the session waits for an agreeing one until its deadline.
            for id in differing {
                let agreeing = self
                    .certificate
                    .as_ref()
                    .and_then(|cert| cert.get(&id))
                    .filter(|c| same(c))
                    .cloned();
                match agreeing {
                    Some(c) => {
                        self.confirmations.insert(id, c);
                    }
                    None => {
                        self.confirmations.remove(&id);
                        self.disagreeing.insert(id);
                    }
                }
            }
            if self.confirmations.len() < self.others().count() {
                return Vec::new();
            }
        }
        let Some(Completion {
            key_package,
            public_key_package,
            group_commitment,
        }) = self.result.take()
        else {
            return self.fail(DkgError::Frost("result missing".into()), true);
        };
        let mut confirmations = self.confirmations.clone();
        confirmations.insert(self.me, own.clone());
        self.phase = Phase::Done;
        self.sent_round2.clear();
        let certificate = confirmations
            .iter()
            .map(|(&id, c)| (id, c.clone()))
            .collect();
        let outcome = match key_package {
            Some(key_package) => Effect::Completed(Box::new(DkgOutput {
                key_package,
                public_key_package,
                group_public_key: own.group_public_key,
                confirmations,
                group_commitment,
                epoch: self.epoch(),
            })),
            None => Effect::Left {
                epoch: self.epoch(),
                group_public_key: own.group_public_key,
            },
        };
        // Whoever missed a confirmation activates the key with this proof.
        vec![
            Effect::Broadcast(Body::DkgCertificate(certificate)),
            outcome,
        ]
    }
}

/// Whether `effects` end the session (it completed or failed): nothing may follow them.
fn ends(effects: &[Effect]) -> bool {
    effects.iter().any(|e| {
        matches!(
            e,
            Effect::Failed(_) | Effect::Completed(_) | Effect::Left { .. }
        )
    })
}
