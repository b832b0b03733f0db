//! The DKG session state machine (sans-IO): FROST distributed key generation over
//! `frost_ed25519::keys::dkg::{part1, part2, part3}`, plus the checks that make it safe on a
//! real network.
//!
//! Steps (one [`DkgSession`] per participant and session):
//! 1. `Prepared`: created on `DkgStart`; messages that arrive early are kept.
//! 2. `Round1`: on `DkgBegin`, run `part1` and broadcast the round-1 package.
//! 3. `Round2`: with every other round-1 package, run `part2`, send each round-2 package to its
//!    recipient alone, and broadcast an *echo*: the hash of every round-1 package used. An echo
//!    that disagrees with ours exposes a sender that showed different packages to different
//!    peers.
//! 4. `Confirming`: with every round-2 package and every echo, run `part3`, then broadcast a
//!    confirmation signed with the node identity key over (session, transcript, group key,
//!    public key package hash).
//! 5. `Done`: every participant confirmed the same result. Only now is the key handed out to
//!    be stored.
//!
//! The machine takes messages and time as arguments and returns [`Effect`]s; it never touches
//! the network, clocks or disk.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Instant;

use frost_ed25519::keys::dkg::{self, round1, round2};
use frost_ed25519::keys::{KeyPackage, PublicKeyPackage};
use frost_ed25519::Identifier;
use libp2p::identity::{Keypair, PublicKey};
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

use crate::wire::{Body, Confirmation, Envelope, NodeId, SecretBytes, SessionId};

/// Parameters every participant of one DKG agrees on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DkgParams {
    /// The session id.
    pub session: SessionId,
    /// Name of the key to create.
    pub key_id: String,
    /// Participant ids (any order; kept sorted).
    pub participants: Vec<NodeId>,
    /// Signing threshold.
    pub threshold: u16,
    /// The node that started the session.
    pub initiator: NodeId,
}

impl DkgParams {
    /// Checks `2 <= t <= n`, at least two distinct participants, no id 0.
    pub fn validate(&self) -> Result<(), DkgError> {
        let unique: BTreeSet<NodeId> = self.participants.iter().copied().collect();
        if unique.len() != self.participants.len() {
            return Err(DkgError::InvalidParams(
                "participants contain duplicates".into(),
            ));
        }
        if unique.contains(&0) {
            return Err(DkgError::InvalidParams("node id 0 is not valid".into()));
        }
        let n = unique.len();
        if n < 2 {
            return Err(DkgError::InvalidParams(
                "a DKG needs at least 2 participants".into(),
            ));
        }
        let t = usize::from(self.threshold);
        if t < 2 || t > n {
            return Err(DkgError::InvalidParams(format!(
                "threshold must satisfy 2 <= t <= n (n = {n}), got {t}"
            )));
        }
        Ok(())
    }
}

/// Where a session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Created, waiting for `DkgBegin`.
    Prepared,
    /// Own round-1 package sent, collecting the others'.
    Round1,
    /// Round-2 packages sent, collecting shares and echoes.
    Round2,
    /// Own confirmation sent, collecting the others'.
    Confirming,
    /// Every participant confirmed the key.
    Done,
    /// Aborted.
    Failed,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Phase::Prepared => "waiting to begin",
            Phase::Round1 => "round 1",
            Phase::Round2 => "round 2",
            Phase::Confirming => "confirmation",
            Phase::Done => "done",
            Phase::Failed => "failed",
        };
        f.write_str(s)
    }
}

/// Why a session aborted. Every variant caused by a participant names it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DkgError {
    /// Bad session parameters.
    #[error("invalid DKG parameters: {0}")]
    InvalidParams(String),
    /// A package that does not decode or has the wrong shape.
    #[error("node {culprit} sent a malformed {what}")]
    Malformed {
        /// Sender.
        culprit: NodeId,
        /// What was malformed.
        what: &'static str,
    },
    /// frost rejected a round-1 proof of knowledge.
    #[error("node {culprit} sent an invalid proof of knowledge")]
    InvalidProofOfKnowledge {
        /// Sender.
        culprit: NodeId,
    },
    /// frost rejected a round-2 share.
    #[error("node {culprit} sent an invalid secret share")]
    InvalidSecretShare {
        /// Sender.
        culprit: NodeId,
    },
    /// A participant sent conflicting packages (to us twice, or different ones to different peers).
    #[error("node {culprit} equivocated: conflicting {what} (reported by node {reported_by})")]
    Equivocation {
        /// The equivocating sender.
        culprit: NodeId,
        /// Which message.
        what: &'static str,
        /// Who noticed.
        reported_by: NodeId,
    },
    /// Another participant's echo disagrees with ours about a third participant's round-1
    /// package: either the sender showed different packages to different peers, or the
    /// reporter lies about what it received. Both are suspects.
    #[error("node {reporter} reports a different round-1 package from node {sender} than this node received (one of them is lying)")]
    EchoMismatch {
        /// Whose package is disputed.
        sender: NodeId,
        /// Who reported the other version.
        reporter: NodeId,
    },
    /// A confirmation whose signature does not verify.
    #[error("node {culprit} sent a confirmation with an invalid signature")]
    InvalidConfirmation {
        /// Sender.
        culprit: NodeId,
    },
    /// Participants confirmed a different result than ours.
    #[error("nodes {culprits:?} confirmed a different group key or transcript")]
    ConfirmationMismatch {
        /// Those that disagree with us.
        culprits: Vec<NodeId>,
    },
    /// Another participant aborted the session.
    #[error("node {by} aborted the session: {reason} (it blames {culprits:?})")]
    PeerAborted {
        /// Who aborted.
        by: NodeId,
        /// Their reason.
        reason: String,
        /// Whom they blamed.
        culprits: Vec<NodeId>,
    },
    /// The deadline passed.
    #[error("timed out in {phase} waiting for nodes {missing:?}")]
    Timeout {
        /// Phase at the deadline.
        phase: Phase,
        /// Participants we were still waiting for.
        missing: Vec<NodeId>,
    },
    /// A participant's connection dropped mid-session: the DKG cannot complete without it.
    #[error("participant {node} disconnected during the DKG")]
    Disconnected {
        /// The lost participant.
        node: NodeId,
    },
    /// Any other frost error.
    #[error("frost: {0}")]
    Frost(String),
}

impl DkgError {
    /// The participants this error blames.
    pub fn culprits(&self) -> Vec<NodeId> {
        match self {
            DkgError::Malformed { culprit, .. }
            | DkgError::InvalidProofOfKnowledge { culprit }
            | DkgError::InvalidSecretShare { culprit }
            | DkgError::Equivocation { culprit, .. }
            | DkgError::InvalidConfirmation { culprit } => vec![*culprit],
            DkgError::EchoMismatch { sender, reporter } => vec![*sender, *reporter],
            DkgError::ConfirmationMismatch { culprits } => culprits.clone(),
            // Another node's accusation is not evidence: it is in the message, not here.
            _ => Vec::new(),
        }
    }

    /// The participants that did not answer, for a timeout.
    pub fn missing(&self) -> Vec<NodeId> {
        match self {
            DkgError::Timeout { missing, .. } => missing.clone(),
            DkgError::Disconnected { node } => vec![*node],
            _ => Vec::new(),
        }
    }

    /// Short machine-readable class, used in metrics and API errors.
    pub fn kind(&self) -> &'static str {
        match self {
            DkgError::InvalidParams(_) => "invalid_params",
            DkgError::Malformed { .. } => "malformed",
            DkgError::InvalidProofOfKnowledge { .. } => "invalid_proof_of_knowledge",
            DkgError::InvalidSecretShare { .. } => "invalid_secret_share",
            DkgError::Equivocation { .. } => "equivocation",
            DkgError::EchoMismatch { .. } => "equivocation",
            DkgError::InvalidConfirmation { .. } => "invalid_confirmation",
            DkgError::ConfirmationMismatch { .. } => "confirmation_mismatch",
            DkgError::PeerAborted { .. } => "peer_aborted",
            DkgError::Timeout { .. } => "timeout",
            DkgError::Disconnected { .. } => "disconnected",
            DkgError::Frost(_) => "frost",
        }
    }
}

/// A message the machine refused without changing its state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The envelope belongs to another session.
    #[error("message for session {got}, not {expected}")]
    WrongSession {
        /// This session.
        expected: SessionId,
        /// The envelope's.
        got: SessionId,
    },
    /// The sender is not a participant.
    #[error("node {0} is not a participant of this session")]
    NotParticipant(NodeId),
    /// The message claims to come from this node.
    #[error("message claims to come from this node")]
    FromSelf,
    /// A message that has no place in a DKG from this sender.
    #[error("unexpected {kind} from node {from}")]
    Unexpected {
        /// Sender.
        from: NodeId,
        /// Message kind.
        kind: &'static str,
    },
}

/// What the driver must do after a transition.
#[derive(Debug)]
pub enum Effect {
    /// Publish to every participant (GossipSub).
    Broadcast(Body),
    /// Send to one participant only (request-response).
    Send {
        /// Recipient.
        to: NodeId,
        /// Message.
        body: Body,
    },
    /// The key is confirmed by all: store it.
    Completed(Box<DkgOutput>),
    /// The session aborted.
    Failed(DkgError),
}

/// A confirmed key.
pub struct DkgOutput {
    /// This node's share.
    pub key_package: KeyPackage,
    /// Everyone's public data.
    pub public_key_package: PublicKeyPackage,
    /// Group public key bytes.
    pub group_public_key: [u8; 32],
    /// Every participant's verified confirmation.
    pub confirmations: BTreeMap<NodeId, Confirmation>,
}

impl fmt::Debug for DkgOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DkgOutput")
            .field("group_public_key", &hex::encode(self.group_public_key))
            .field("key_package", &"<redacted>")
            .finish()
    }
}

/// Domain separator of the confirmation signature.
const CONFIRM_DOMAIN: &[u8] = b"frostnode/dkg-confirm/v1";
/// Domain separator of the transcript digest.
const TRANSCRIPT_DOMAIN: &[u8] = b"frostnode/dkg-transcript/v1";

/// The bytes a confirmation signature covers.
pub fn confirmation_message(session: &SessionId, c: &Confirmation) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONFIRM_DOMAIN.len() + 128);
    m.extend_from_slice(CONFIRM_DOMAIN);
    m.extend_from_slice(&session.0);
    m.extend_from_slice(&c.transcript);
    m.extend_from_slice(&c.group_public_key);
    m.extend_from_slice(&c.public_key_package_hash);
    m
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// One participant's DKG session.
pub struct DkgSession {
    params: DkgParams,
    me: NodeId,
    identity: Keypair,
    peer_keys: BTreeMap<NodeId, PublicKey>,
    ident_to_id: BTreeMap<Identifier, NodeId>,
    phase: Phase,
    deadline: Instant,
    round1_secret: Option<round1::SecretPackage>,
    round2_secret: Option<round2::SecretPackage>,
    /// Raw round-1 bytes hash per participant, own included.
    round1_hashes: BTreeMap<NodeId, [u8; 32]>,
    /// Decoded round-1 packages of the others.
    round1_packages: BTreeMap<NodeId, round1::Package>,
    /// Raw round-2 packages of the others, decoded only for `part3`.
    round2_raw: BTreeMap<NodeId, SecretBytes>,
    echoes: BTreeMap<NodeId, Vec<(NodeId, [u8; 32])>>,
    confirmations: BTreeMap<NodeId, Confirmation>,
    own_confirmation: Option<Confirmation>,
    result: Option<(KeyPackage, PublicKeyPackage)>,
}

impl fmt::Debug for DkgSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DkgSession")
            .field("session", &self.params.session)
            .field("key_id", &self.params.key_id)
            .field("me", &self.me)
            .field("phase", &self.phase)
            .finish()
    }
}

impl DkgSession {
    /// Creates a session in [`Phase::Prepared`].
    ///
    /// `peer_keys` maps every other participant to its identity public key (for confirmations);
    /// `deadline` bounds the whole session.
    pub fn new(
        params: DkgParams,
        me: NodeId,
        identity: Keypair,
        peer_keys: BTreeMap<NodeId, PublicKey>,
        deadline: Instant,
    ) -> Result<Self, DkgError> {
        let mut params = params;
        params.validate()?;
        params.participants.sort_unstable();
        if !params.participants.contains(&me) {
            return Err(DkgError::InvalidParams(format!(
                "this node ({me}) is not among the participants {:?}",
                params.participants
            )));
        }
        let mut ident_to_id = BTreeMap::new();
        for &id in &params.participants {
            let ident = Identifier::try_from(id).map_err(|e| DkgError::Frost(e.to_string()))?;
            ident_to_id.insert(ident, id);
            if id != me && !peer_keys.contains_key(&id) {
                return Err(DkgError::InvalidParams(format!(
                    "no identity key known for participant {id}"
                )));
            }
        }
        Ok(Self {
            params,
            me,
            identity,
            peer_keys,
            ident_to_id,
            phase: Phase::Prepared,
            deadline,
            round1_secret: None,
            round2_secret: None,
            round1_hashes: BTreeMap::new(),
            round1_packages: BTreeMap::new(),
            round2_raw: BTreeMap::new(),
            echoes: BTreeMap::new(),
            confirmations: BTreeMap::new(),
            own_confirmation: None,
            result: None,
        })
    }

    /// Session parameters.
    pub fn params(&self) -> &DkgParams {
        &self.params
    }

    /// Current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the session has ended (done or failed).
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Done | Phase::Failed)
    }

    /// When [`DkgSession::on_timeout`] must be called, if the session is still running.
    pub fn deadline(&self) -> Option<Instant> {
        (!self.is_finished()).then_some(self.deadline)
    }

    fn others(&self) -> impl Iterator<Item = NodeId> + '_ {
        let me = self.me;
        self.params
            .participants
            .iter()
            .copied()
            .filter(move |&id| id != me)
    }

    /// Runs round 1: generates this node's polynomial and broadcasts its commitment.
    pub fn begin(&mut self) -> Vec<Effect> {
        if self.phase != Phase::Prepared {
            return Vec::new();
        }
        let n = self.params.participants.len() as u16;
        let ident = self.ident(self.me);
        let (secret, package) = match dkg::part1(ident, n, self.params.threshold, OsRng) {
            Ok(v) => v,
            Err(e) => return self.fail(DkgError::Frost(e.to_string()), true),
        };
        let bytes = match package.serialize() {
            Ok(b) => b,
            Err(e) => return self.fail(DkgError::Frost(e.to_string()), true),
        };
        self.round1_hashes.insert(self.me, sha256(&bytes));
        self.round1_secret = Some(secret);
        self.phase = Phase::Round1;
        let mut effects = vec![Effect::Broadcast(Body::DkgRound1 { package: bytes })];
        effects.extend(self.progress());
        effects
    }

    /// Handles one message from an authenticated sender.
    ///
    /// `Err` means the message was refused and the session is unchanged; aborts come out as
    /// [`Effect::Failed`].
    pub fn handle(&mut self, envelope: Envelope) -> Result<Vec<Effect>, Rejection> {
        let from = envelope.from;
        if envelope.session != self.params.session {
            return Err(Rejection::WrongSession {
                expected: self.params.session,
                got: envelope.session,
            });
        }
        if from == self.me {
            return Err(Rejection::FromSelf);
        }
        if !self.params.participants.contains(&from) {
            return Err(Rejection::NotParticipant(from));
        }
        if self.is_finished() {
            return Ok(Vec::new());
        }
        match envelope.body {
            Body::DkgBegin if from == self.params.initiator => Ok(self.begin()),
            Body::DkgRound1 { package } => Ok(self.on_round1(from, package)),
            Body::DkgRound2 { package } => Ok(self.on_round2(from, package)),
            Body::DkgEcho { round1_hashes } => Ok(self.on_echo(from, round1_hashes)),
            Body::DkgConfirm(c) => Ok(self.on_confirm(from, c)),
            Body::DkgAbort { reason, culprits } => Ok(self.fail(
                DkgError::PeerAborted {
                    by: from,
                    reason,
                    culprits,
                },
                false,
            )),
            other => Err(Rejection::Unexpected {
                from,
                kind: other.kind(),
            }),
        }
    }

    /// Aborts with a timeout if the deadline has passed.
    pub fn on_timeout(&mut self, now: Instant) -> Vec<Effect> {
        if self.is_finished() || now < self.deadline {
            return Vec::new();
        }
        let phase = self.phase;
        let missing = self.missing();
        self.fail(DkgError::Timeout { phase, missing }, true)
    }

    /// Aborts the session from outside (e.g. the initiator gave up); tells the others.
    pub fn abort(&mut self, error: DkgError) -> Vec<Effect> {
        if self.is_finished() {
            return Vec::new();
        }
        self.fail(error, true)
    }

    /// Participants whose messages for the current phase have not arrived.
    pub fn missing(&self) -> Vec<NodeId> {
        match self.phase {
            Phase::Prepared => vec![self.params.initiator],
            Phase::Round1 => self
                .others()
                .filter(|id| !self.round1_packages.contains_key(id))
                .collect(),
            Phase::Round2 => self
                .others()
                .filter(|id| !self.round2_raw.contains_key(id) || !self.echoes.contains_key(id))
                .collect(),
            Phase::Confirming => self
                .others()
                .filter(|id| !self.confirmations.contains_key(id))
                .collect(),
            Phase::Done | Phase::Failed => Vec::new(),
        }
    }

    fn ident(&self, id: NodeId) -> Identifier {
        // Every participant id was converted successfully in `new`.
        self.ident_to_id
            .iter()
            .find_map(|(ident, &i)| (i == id).then_some(*ident))
            .unwrap_or_else(|| Identifier::try_from(1u16).expect("1 is a valid identifier"))
    }

    fn fail(&mut self, error: DkgError, tell_others: bool) -> Vec<Effect> {
        self.phase = Phase::Failed;
        self.round1_secret = None;
        self.round2_secret = None;
        self.round2_raw.clear();
        self.result = None;
        let mut effects = Vec::new();
        if tell_others {
            effects.push(Effect::Broadcast(Body::DkgAbort {
                reason: error.to_string(),
                culprits: error.culprits(),
            }));
        }
        effects.push(Effect::Failed(error));
        effects
    }

    fn on_round1(&mut self, from: NodeId, bytes: Vec<u8>) -> Vec<Effect> {
        let hash = sha256(&bytes);
        if let Some(existing) = self.round1_hashes.get(&from) {
            if *existing == hash {
                return Vec::new();
            }
            return self.fail(
                DkgError::Equivocation {
                    culprit: from,
                    what: "round-1 packages",
                    reported_by: self.me,
                },
                true,
            );
        }
        // Decoding checks every point; the commitment length is checked by `part2`, which
        // names no culprit, so `run_part2` finds it (see `wrong_length_commitments`).
        let Ok(package) = round1::Package::deserialize(&bytes) else {
            return self.fail(
                DkgError::Malformed {
                    culprit: from,
                    what: "round-1 package",
                },
                true,
            );
        };
        self.round1_hashes.insert(from, hash);
        self.round1_packages.insert(from, package);
        self.progress()
    }

    fn on_round2(&mut self, from: NodeId, bytes: SecretBytes) -> Vec<Effect> {
        if let Some(existing) = self.round2_raw.get(&from) {
            if *existing == bytes {
                return Vec::new();
            }
            return self.fail(
                DkgError::Equivocation {
                    culprit: from,
                    what: "round-2 packages",
                    reported_by: self.me,
                },
                true,
            );
        }
        if self.phase == Phase::Confirming {
            // Part 3 already ran with a package from this sender.
            return Vec::new();
        }
        self.round2_raw.insert(from, bytes);
        self.progress()
    }

    fn on_echo(&mut self, from: NodeId, hashes: Vec<(NodeId, [u8; 32])>) -> Vec<Effect> {
        let ids: Vec<NodeId> = hashes.iter().map(|(id, _)| *id).collect();
        if ids != self.params.participants {
            return self.fail(
                DkgError::Malformed {
                    culprit: from,
                    what: "echo",
                },
                true,
            );
        }
        if let Some(existing) = self.echoes.get(&from) {
            if *existing == hashes {
                return Vec::new();
            }
            return self.fail(
                DkgError::Equivocation {
                    culprit: from,
                    what: "echoes",
                    reported_by: self.me,
                },
                true,
            );
        }
        self.echoes.insert(from, hashes);
        self.progress()
    }

    fn on_confirm(&mut self, from: NodeId, c: Confirmation) -> Vec<Effect> {
        let valid = self.peer_keys.get(&from).is_some_and(|k| {
            k.verify(
                &confirmation_message(&self.params.session, &c),
                &c.signature,
            )
        });
        if !valid {
            return self.fail(DkgError::InvalidConfirmation { culprit: from }, true);
        }
        if let Some(existing) = self.confirmations.get(&from) {
            if *existing == c {
                return Vec::new();
            }
            return self.fail(
                DkgError::Equivocation {
                    culprit: from,
                    what: "confirmations",
                    reported_by: self.me,
                },
                true,
            );
        }
        self.confirmations.insert(from, c);
        self.progress()
    }

    /// Advances through every phase whose inputs are complete.
    fn progress(&mut self) -> Vec<Effect> {
        let mut effects = Vec::new();
        loop {
            let step = match self.phase {
                Phase::Round1 if self.round1_packages.len() == self.others().count() => {
                    self.run_part2()
                }
                Phase::Round2
                    if self.round2_raw.len() == self.others().count()
                        && self.echoes.len() == self.others().count() =>
                {
                    self.run_part3()
                }
                Phase::Confirming if self.confirmations.len() == self.others().count() => {
                    self.finish()
                }
                _ => return effects,
            };
            let stop = step
                .iter()
                .any(|e| matches!(e, Effect::Failed(_) | Effect::Completed(_)));
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

    fn run_part2(&mut self) -> Vec<Effect> {
        let Some(secret) = self.round1_secret.take() else {
            return self.fail(DkgError::Frost("round-1 secret missing".into()), true);
        };
        let (secret2, packages) = match dkg::part2(secret, &self.frost_packages()) {
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
            match package.serialize() {
                Ok(bytes) => effects.push(Effect::Send {
                    to,
                    body: Body::DkgRound2 {
                        package: SecretBytes(bytes),
                    },
                }),
                Err(e) => return self.fail(DkgError::Frost(e.to_string()), true),
            }
        }
        self.round2_secret = Some(secret2);
        effects.push(Effect::Broadcast(Body::DkgEcho {
            round1_hashes: self.round1_hashes.iter().map(|(&k, &v)| (k, v)).collect(),
        }));
        self.phase = Phase::Round2;
        effects
    }

    /// The first sender whose commitment does not have `threshold` coefficients (slow: only
    /// called after `part2` reported a mismatch).
    fn wrong_length_commitment(&self) -> Option<NodeId> {
        let t = usize::from(self.params.threshold);
        self.round1_packages
            .iter()
            .find(|(_, p)| p.commitment().serialize().map_or(true, |c| c.len() != t))
            .map(|(&id, _)| id)
    }

    fn check_echoes(&self) -> Result<(), DkgError> {
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
        h.update(self.params.session.0);
        h.update((self.params.key_id.len() as u32).to_be_bytes());
        h.update(self.params.key_id.as_bytes());
        h.update(self.params.threshold.to_be_bytes());
        for (id, hash) in &self.round1_hashes {
            h.update(id.to_be_bytes());
            h.update(hash);
        }
        h.finalize().into()
    }

    fn run_part3(&mut self) -> Vec<Effect> {
        if let Err(e) = self.check_echoes() {
            return self.fail(e, true);
        }
        let mut round2 = BTreeMap::new();
        for (&from, raw) in &self.round2_raw {
            match round2::Package::deserialize(&raw.0) {
                Ok(p) => {
                    round2.insert(self.ident(from), p);
                }
                Err(_) => {
                    return self.fail(
                        DkgError::Malformed {
                            culprit: from,
                            what: "round-2 package",
                        },
                        true,
                    )
                }
            }
        }
        let Some(secret) = self.round2_secret.take() else {
            return self.fail(DkgError::Frost("round-2 secret missing".into()), true);
        };
        let (key_package, public_key_package) =
            match dkg::part3(&secret, &self.frost_packages(), &round2) {
                Ok(v) => v,
                Err(e) => {
                    let err = self.blame(e);
                    return self.fail(err, true);
                }
            };
        self.round2_raw.clear();
        let (gpk, pkp_bytes) = match (
            public_key_package.verifying_key().serialize(),
            public_key_package.serialize(),
        ) {
            (Ok(g), Ok(p)) => (g, p),
            _ => {
                return self.fail(
                    DkgError::Frost("cannot serialize the group key".into()),
                    true,
                )
            }
        };
        let Ok(group_public_key) = <[u8; 32]>::try_from(gpk.as_slice()) else {
            return self.fail(DkgError::Frost("group key is not 32 bytes".into()), true);
        };
        let mut confirmation = Confirmation {
            transcript: self.transcript(),
            group_public_key,
            public_key_package_hash: sha256(&pkp_bytes),
            signature: Vec::new(),
        };
        match self
            .identity
            .sign(&confirmation_message(&self.params.session, &confirmation))
        {
            Ok(sig) => confirmation.signature = sig,
            Err(e) => return self.fail(DkgError::Frost(format!("signing failed: {e}")), true),
        }
        self.result = Some((key_package, public_key_package));
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
        let culprits: Vec<NodeId> = self
            .confirmations
            .iter()
            .filter(|(_, c)| !same(c))
            .map(|(&id, _)| id)
            .collect();
        if !culprits.is_empty() {
            return self.fail(DkgError::ConfirmationMismatch { culprits }, true);
        }
        let Some((key_package, public_key_package)) = self.result.take() else {
            return self.fail(DkgError::Frost("result missing".into()), true);
        };
        let mut confirmations = self.confirmations.clone();
        confirmations.insert(self.me, own.clone());
        self.phase = Phase::Done;
        vec![Effect::Completed(Box::new(DkgOutput {
            key_package,
            public_key_package,
            group_public_key: own.group_public_key,
            confirmations,
        }))]
    }
}
