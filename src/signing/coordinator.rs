//! The coordinator's session (sans-IO): pick `t` signers, collect their commitments, hand out
//! the signing packages, collect shares, aggregate, verify. A session signs a batch of
//! messages (often one): every signer commits to a nonce pair per message, and the signer set,
//! rounds and retries are the batch's.
//!
//! A signer that does not answer in time, or refuses, is replaced by the next reachable
//! participant while commitments are being gathered; once the signing package is out, a
//! missing or invalid share starts a fresh attempt without that signer (nonces are single
//! use, so every attempt gathers new commitments). An invalid share is caught by frost's
//! cheater detection and its signer named. frost's aggregation verifies each signature against
//! the group key before it is returned; that is the one check: every point it involves was
//! checked to be in the prime-order subgroup when decoded (commitments, shares, group key), so
//! frost's cofactored equation and a strict verifier's cofactorless one agree.
//!
//! A signer that issued this coordinator a commitment ahead of time
//! ([`SignParams::presigned`]) skips the commit round: with such commitments for every chosen
//! signer but this node (which commits locally), a signature takes one network round.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use frost_ed25519::round1::SigningCommitments;
use frost_ed25519::round2::SignatureShare;
use frost_ed25519::{Identifier, SigningPackage};

use super::aggregate::AggregateError;
pub use super::aggregate::{AggregateJob, Aggregated};
pub use super::params::{SignOutput, SignParams};
use super::SignError;
use crate::wire::{Body, NodeId, SessionId};

/// Attempts per request: the first, plus retries after failed or invalid shares.
pub const MAX_ATTEMPTS: u8 = 3;

/// What the driver must do.
#[derive(Debug)]
pub enum Effect {
    /// Send a request to a signer (possibly this node itself); feed its answer back with
    /// [`Coordinator::on_reply`] or [`Coordinator::on_failure`].
    Send {
        /// Signer.
        to: NodeId,
        /// `CommitRequest` or `SignRequest`.
        body: Body,
    },
    /// Aggregate the shares: run the job (on a worker thread, say) and feed its result back
    /// with [`Coordinator::on_aggregated`].
    Aggregate(AggregateJob),
    /// Finished with valid signatures.
    Done(SignOutput),
    /// Gave up.
    Failed {
        /// Why.
        error: SignError,
        /// Signers caught sending invalid shares along the way.
        culprits: Vec<NodeId>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Commit,
    Sign,
    /// Every share is in; the aggregation runs.
    Aggregate,
    Finished,
}

/// One signing request, seen from its coordinator.
pub struct Coordinator {
    params: SignParams,
    phase: Phase,
    attempt: u8,
    /// Reachable participants in preference order, not yet excluded.
    candidates: Vec<NodeId>,
    excluded: BTreeSet<NodeId>,
    culprits: Vec<NodeId>,
    /// Signers that refused the request, with their reasons.
    refused: BTreeMap<NodeId, String>,
    signers: BTreeSet<NodeId>,
    /// Outstanding requests and their deadlines.
    waiting: BTreeMap<NodeId, Instant>,
    /// Each signer's commitments, one per message.
    commitments: BTreeMap<NodeId, Vec<SigningCommitments>>,
    /// The signers of this attempt that sign with preprocessed nonces: their run and numbers.
    one_round: BTreeMap<NodeId, ([u8; 16], Vec<u64>)>,
    /// Every signer sent a one-round request in any attempt (a refusal of its nonce may
    /// arrive after a retry began).
    sent_one_round: BTreeSet<NodeId>,
    /// Whether an attempt was started over because a signer's preprocessed nonce was gone:
    /// that attempt is not counted against [`MAX_ATTEMPTS`] (it happens once at most, the
    /// following attempts commit first).
    stale_retried: bool,
    /// The signing packages of this attempt, one per message.
    packages: Vec<SigningPackage>,
    /// Each signer's shares, one per message.
    shares: BTreeMap<NodeId, Vec<SignatureShare>>,
    signer_timeout: Duration,
    deadline: Instant,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("session", &self.params.session)
            .field("key_id", &self.params.key_id)
            .field("attempt", &self.attempt)
            .field("phase", &self.phase)
            .field("signers", &self.signers)
            .finish()
    }
}

fn ident(id: NodeId) -> Option<Identifier> {
    Identifier::try_from(id).ok()
}

impl Coordinator {
    /// Starts a session. `reachable` lists the participants that can be asked, in preference
    /// order (put this node first if it holds a share).
    pub fn start(
        params: SignParams,
        reachable: Vec<NodeId>,
        now: Instant,
        signer_timeout: Duration,
        deadline: Instant,
    ) -> (Coordinator, Vec<Effect>) {
        let mut seen = BTreeSet::new();
        let candidates: Vec<NodeId> = reachable
            .into_iter()
            .filter(|id| params.participants.contains(id) && seen.insert(*id))
            .collect();
        let mut c = Coordinator {
            params,
            phase: Phase::Commit,
            attempt: 0,
            candidates,
            excluded: BTreeSet::new(),
            culprits: Vec::new(),
            refused: BTreeMap::new(),
            signers: BTreeSet::new(),
            waiting: BTreeMap::new(),
            commitments: BTreeMap::new(),
            one_round: BTreeMap::new(),
            sent_one_round: BTreeSet::new(),
            stale_retried: false,
            packages: Vec::new(),
            shares: BTreeMap::new(),
            signer_timeout,
            deadline,
        };
        let effects = c.begin_attempt(now);
        (c, effects)
    }

    /// The session id.
    pub fn session(&self) -> SessionId {
        self.params.session
    }

    /// The current attempt number (replies for older attempts are ignored).
    pub fn attempt(&self) -> u8 {
        self.attempt
    }

    /// Whether the session is over.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// The earliest moment [`Coordinator::on_timeout`] has something to do.
    pub fn deadline(&self) -> Option<Instant> {
        if self.is_finished() {
            return None;
        }
        let next = self.waiting.values().min().copied();
        Some(next.map_or(self.deadline, |n| n.min(self.deadline)))
    }

    fn fail(&mut self, error: SignError) -> Vec<Effect> {
        self.phase = Phase::Finished;
        self.waiting.clear();
        vec![Effect::Failed {
            error,
            culprits: self.culprits.clone(),
        }]
    }

    fn usable(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.candidates
            .iter()
            .copied()
            .filter(|id| !self.excluded.contains(id))
    }

    fn not_enough(&self) -> SignError {
        if !self.culprits.is_empty() {
            return SignError::InvalidShares {
                culprits: self.culprits.clone(),
            };
        }
        if !self.refused.is_empty() {
            return SignError::Refused {
                refused_by: self.refused.clone().into_iter().collect(),
            };
        }
        SignError::NotEnoughSigners {
            reachable: self.usable().count(),
            needed: self.params.threshold,
            participants: self.params.participants.len(),
        }
    }

    fn commit_request(&self) -> Body {
        Body::CommitRequest {
            attempt: self.attempt,
            key_id: self.params.key_id.clone(),
            group_public_key: self.params.group_public_key,
            epoch: self.params.epoch,
            messages: self.params.messages.clone(),
            request_id: self.params.request_id,
            token: self.params.token.clone(),
        }
    }

    /// How many messages the session signs.
    pub fn batch(&self) -> usize {
        self.params.messages.len()
    }

    fn begin_attempt(&mut self, now: Instant) -> Vec<Effect> {
        let t = usize::from(self.params.threshold);
        let chosen: Vec<NodeId> = self.usable().take(t).collect();
        if chosen.len() < t {
            let err = self.not_enough();
            return self.fail(err);
        }
        self.phase = Phase::Commit;
        self.signers = chosen.iter().copied().collect();
        self.commitments.clear();
        self.one_round.clear();
        self.shares.clear();
        self.packages.clear();
        self.waiting.clear();
        let body = self.commit_request();
        let mut effects = Vec::new();
        let n = self.batch();
        for to in chosen {
            if let Some(p) = self.params.presigned.remove(&to) {
                if p.len() == n && p.iter().all(|q| q.boot == p[0].boot) {
                    let boot = p[0].boot;
                    self.commitments
                        .insert(to, p.iter().map(|q| q.commitments).collect());
                    self.one_round
                        .insert(to, (boot, p.iter().map(|q| q.seq).collect()));
                    continue;
                }
            }
            self.waiting.insert(to, now + self.signer_timeout);
            effects.push(Effect::Send {
                to,
                body: body.clone(),
            });
        }
        if self.waiting.is_empty() {
            effects.extend(self.maybe_send_package(now));
        }
        effects
    }

    /// The signers of the current attempt that sign in one round.
    pub fn one_round_signers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.one_round.keys().copied()
    }

    /// A signer dropped out: during the commit phase replace it, afterwards start over.
    fn drop_signer(&mut self, now: Instant, id: NodeId) -> Vec<Effect> {
        self.excluded.insert(id);
        self.waiting.remove(&id);
        match self.phase {
            Phase::Commit => {
                self.signers.remove(&id);
                self.commitments.remove(&id);
                self.one_round.remove(&id);
                let replacement = self.usable().find(|c| !self.signers.contains(c));
                match replacement {
                    Some(r) => {
                        self.signers.insert(r);
                        self.waiting.insert(r, now + self.signer_timeout);
                        vec![Effect::Send {
                            to: r,
                            body: self.commit_request(),
                        }]
                    }
                    None => {
                        let err = self.not_enough();
                        self.fail(err)
                    }
                }
            }
            Phase::Sign => self.retry(now),
            Phase::Aggregate | Phase::Finished => Vec::new(),
        }
    }

    fn retry(&mut self, now: Instant) -> Vec<Effect> {
        if self.attempt + 1 >= MAX_ATTEMPTS + u8::from(self.stale_retried) {
            let err = if self.culprits.is_empty() {
                SignError::Timeout {
                    missing: self.waiting.keys().copied().collect(),
                }
            } else {
                SignError::InvalidShares {
                    culprits: self.culprits.clone(),
                }
            };
            return self.fail(err);
        }
        self.attempt += 1;
        self.begin_attempt(now)
    }

    /// A request to `from` failed (network error, timeout or refusal).
    pub fn on_failure(&mut self, now: Instant, from: NodeId, attempt: u8) -> Vec<Effect> {
        if self.is_finished() || attempt != self.attempt || !self.waiting.contains_key(&from) {
            return Vec::new();
        }
        self.drop_signer(now, from)
    }

    /// A signer no longer holds the preprocessed nonce this attempt used (it restarted, or the
    /// nonce expired): not its fault, so it is not excluded; the session starts a fresh
    /// attempt in which every signer commits first.
    pub fn on_stale_nonce(&mut self, now: Instant, from: NodeId, attempt: u8) -> Vec<Effect> {
        if self.is_finished()
            || attempt != self.attempt
            || self.phase != Phase::Sign
            || !self.one_round.contains_key(&from)
            || !self.waiting.contains_key(&from)
        {
            // A refusal of a nonce an earlier attempt used: that attempt is over already.
            return Vec::new();
        }
        self.params.presigned.clear();
        // The attempt was spent on nonces that no longer exist: it does not count.
        self.stale_retried = true;
        self.retry(now)
    }

    /// Whether `from` was sent a one-round request in this session (so a refusal of its
    /// preprocessed nonce is to be taken by [`Coordinator::on_stale_nonce`]).
    pub fn sent_one_round(&self, from: NodeId) -> bool {
        self.sent_one_round.contains(&from)
    }

    /// A signer refused the request (its config or policy does not allow it): it is replaced
    /// like a silent one, and named if too few signers approve.
    pub fn on_refusal(
        &mut self,
        now: Instant,
        from: NodeId,
        attempt: u8,
        reason: String,
    ) -> Vec<Effect> {
        if self.is_finished() || attempt != self.attempt || !self.waiting.contains_key(&from) {
            return Vec::new();
        }
        self.refused.insert(from, reason);
        self.drop_signer(now, from)
    }

    /// An answer from a signer.
    pub fn on_reply(&mut self, now: Instant, from: NodeId, body: Body) -> Vec<Effect> {
        if self.is_finished() || !self.waiting.contains_key(&from) {
            return Vec::new();
        }
        match body {
            Body::Commitment {
                attempt,
                commitments,
            } if attempt == self.attempt && self.phase == Phase::Commit => {
                let decoded: Option<Vec<SigningCommitments>> = commitments
                    .iter()
                    .map(|c| SigningCommitments::deserialize(c).ok())
                    .collect();
                match decoded {
                    Some(c) if c.len() == self.batch() => {
                        self.on_commitments(now, from, attempt, c)
                    }
                    _ => self.drop_signer(now, from),
                }
            }
            Body::Share { attempt, shares }
                if attempt == self.attempt && self.phase == Phase::Sign =>
            {
                let decoded: Option<Vec<SignatureShare>> = shares
                    .iter()
                    .map(|s| SignatureShare::deserialize(s).ok())
                    .collect();
                match decoded {
                    Some(s) if s.len() == self.batch() => {
                        self.waiting.remove(&from);
                        self.shares.insert(from, s);
                        self.maybe_aggregate()
                    }
                    _ => {
                        self.culprits.push(from);
                        self.drop_signer(now, from)
                    }
                }
            }
            Body::Commitment { attempt, .. } | Body::Share { attempt, .. }
                if attempt != self.attempt =>
            {
                Vec::new()
            }
            _ => self.drop_signer(now, from),
        }
    }

    /// Already decoded commitments, one per message (from this node's own signer: no
    /// encoding round trip).
    pub fn on_commitments(
        &mut self,
        now: Instant,
        from: NodeId,
        attempt: u8,
        commitments: Vec<SigningCommitments>,
    ) -> Vec<Effect> {
        if self.is_finished()
            || attempt != self.attempt
            || self.phase != Phase::Commit
            || !self.waiting.contains_key(&from)
        {
            return Vec::new();
        }
        if commitments.len() != self.batch() {
            return self.drop_signer(now, from);
        }
        self.waiting.remove(&from);
        self.commitments.insert(from, commitments);
        self.maybe_send_package(now)
    }

    /// The signing packages of the current attempt (one per message), once built.
    pub fn signing_packages(&self) -> &[SigningPackage] {
        &self.packages
    }

    /// Replaces signers whose time is up; fails at the session deadline.
    pub fn on_timeout(&mut self, now: Instant) -> Vec<Effect> {
        if self.is_finished() {
            return Vec::new();
        }
        if now >= self.deadline {
            let missing = self.waiting.keys().copied().collect();
            return self.fail(SignError::Timeout { missing });
        }
        let late: Vec<NodeId> = self
            .waiting
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(id, _)| *id)
            .collect();
        let mut effects = Vec::new();
        for id in late {
            if self.is_finished() {
                break;
            }
            // A retry may already have replaced the whole signer set.
            if self.waiting.contains_key(&id) {
                effects.extend(self.drop_signer(now, id));
            }
        }
        effects
    }

    fn maybe_send_package(&mut self, now: Instant) -> Vec<Effect> {
        if self.commitments.len() < usize::from(self.params.threshold) || !self.waiting.is_empty() {
            return Vec::new();
        }
        let mut packages = Vec::with_capacity(self.batch());
        let mut encoded = Vec::with_capacity(self.batch());
        for (k, message) in self.params.messages.iter().enumerate() {
            let mut by_ident = BTreeMap::new();
            for (&id, c) in &self.commitments {
                if let (Some(i), Some(c)) = (ident(id), c.get(k)) {
                    by_ident.insert(i, *c);
                }
            }
            let package = SigningPackage::new(by_ident, message);
            match package.serialize() {
                Ok(b) => encoded.push(b),
                Err(e) => return self.fail(SignError::Frost(e.to_string())),
            }
            packages.push(package);
        }
        self.packages = packages;
        self.phase = Phase::Sign;
        let signers: Vec<NodeId> = self.commitments.keys().copied().collect();
        self.waiting = signers
            .iter()
            .map(|&id| (id, now + self.signer_timeout))
            .collect();
        self.sent_one_round.extend(self.one_round.keys().copied());
        signers
            .into_iter()
            .map(|to| {
                let body = match self.one_round.get(&to) {
                    Some((boot, seqs)) => Body::SignNow {
                        attempt: self.attempt,
                        key_id: self.params.key_id.clone(),
                        group_public_key: self.params.group_public_key,
                        epoch: self.params.epoch,
                        messages: self.params.messages.clone(),
                        request_id: self.params.request_id,
                        token: self.params.token.clone(),
                        boot: *boot,
                        seqs: seqs.clone(),
                        signing_packages: encoded.clone(),
                    },
                    None => Body::SignRequest {
                        attempt: self.attempt,
                        signing_packages: encoded.clone(),
                    },
                };
                Effect::Send { to, body }
            })
            .collect()
    }

    fn maybe_aggregate(&mut self) -> Vec<Effect> {
        if !self.waiting.is_empty() || self.shares.len() < usize::from(self.params.threshold) {
            return Vec::new();
        }
        if self.packages.len() != self.batch() {
            return self.fail(SignError::Frost("signing packages missing".into()));
        }
        self.phase = Phase::Aggregate;
        vec![Effect::Aggregate(AggregateJob::new(
            self.attempt,
            self.packages.clone(),
            &self.shares,
            self.params.public_key_package.clone(),
        ))]
    }

    /// The aggregation of the current attempt finished: the signatures, or a fresh attempt
    /// without the signers frost caught.
    pub fn on_aggregated(&mut self, now: Instant, done: Aggregated) -> Vec<Effect> {
        if self.phase != Phase::Aggregate || done.attempt != self.attempt {
            return Vec::new();
        }
        match done.outcome {
            Ok(signatures) => {
                self.phase = Phase::Finished;
                vec![Effect::Done(SignOutput {
                    signatures,
                    signers: self.shares.keys().copied().collect(),
                    culprits: self.culprits.clone(),
                })]
            }
            Err(AggregateError::Culprits(named)) => {
                for id in named {
                    self.excluded.insert(id);
                    if !self.culprits.contains(&id) {
                        self.culprits.push(id);
                    }
                }
                self.retry(now)
            }
            Err(AggregateError::Failed(error)) => self.fail(error),
        }
    }
}
