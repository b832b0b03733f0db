//! One participant's [`DkgSession`]: its state, construction, the routing of each message
//! and aborts. Round messages are taken in by `intake.rs`; the protocol steps that run once a
//! phase's inputs are complete are in `rounds.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use frost_ed25519::keys::dkg::{self, round1, round2};
use frost_ed25519::keys::{
    refresh, KeyPackage, PublicKeyPackage, VerifiableSecretSharingCommitment,
};
use frost_ed25519::Identifier;
use rand::{CryptoRng, RngCore};

use super::error::DkgError;
use super::error::Rejection;
use super::phase::Phase;
use super::types::{round_id, sha256, ConfirmationKeys, DkgParams, Effect, PriorKey};
use super::work::Pending;
use crate::wire::{Body, Confirmation, Envelope, NodeId, SecretBytes, SessionId};

/// One participant's DKG session.
pub struct DkgSession {
    pub(super) params: DkgParams,
    pub(super) me: NodeId,
    pub(super) keys: Arc<dyn ConfirmationKeys>,
    pub(super) ident_to_id: BTreeMap<Identifier, NodeId>,
    pub(super) phase: Phase,
    pub(super) deadline: Instant,
    /// This node's random contribution to the round id, drawn when it joined.
    pub(super) contribution: Option<[u8; 32]>,
    /// The id every round message travels under, fixed by `DkgBegin`.
    pub(super) round: Option<SessionId>,
    /// The contributions that fixed the round id (the initiator answers pulls of `DkgBegin`).
    pub(super) contributions: Vec<(NodeId, [u8; 32])>,
    /// What this node broadcast or sent, kept to answer pulls: its round-1 package, its
    /// round-2 package for each recipient (secret: dropped when the session ends) and its echo.
    pub(super) own_round1: Option<Vec<u8>>,
    pub(super) sent_round2: BTreeMap<NodeId, SecretBytes>,
    pub(super) own_echo: Option<Vec<(NodeId, [u8; 32])>>,
    pub(super) round1_secret: Option<round1::SecretPackage>,
    pub(super) round2_secret: Option<round2::SecretPackage>,
    /// Raw round-1 bytes hash per participant, own included.
    pub(super) round1_hashes: BTreeMap<NodeId, [u8; 32]>,
    /// Decoded round-1 packages of the others (a package is decoded off the message path:
    /// its hash is here before the package is).
    pub(super) round1_packages: BTreeMap<NodeId, round1::Package>,
    /// The step whose [`Work`] is out, if any: nothing advances until it comes back.
    pub(super) pending: Option<Pending>,
    /// Raw round-2 packages of the others, decoded only for `part3`.
    pub(super) round2_raw: BTreeMap<NodeId, SecretBytes>,
    pub(super) echoes: BTreeMap<NodeId, Vec<(NodeId, [u8; 32])>>,
    pub(super) confirmations: BTreeMap<NodeId, Confirmation>,
    pub(super) own_confirmation: Option<Confirmation>,
    /// The latest certificate received whose every signature verified (own entry excluded).
    pub(super) certificate: Option<BTreeMap<NodeId, Confirmation>>,
    /// Participants whose validly signed confirmation is of another result than ours, and who
    /// have not (yet) confirmed ours: their own signature is the evidence against them.
    pub(super) disagreeing: BTreeSet<NodeId>,
    pub(super) result: Option<Completion>,
    /// For a refresh, repair or enrolment: the shares it starts from (dropped when the session
    /// ends; the target of a repair has none).
    pub(super) prior: Option<Box<PriorKey>>,
    /// A repair helper's or reshare dealer's own value for itself (secret).
    pub(super) own_value: Option<SecretBytes>,
    /// In a reshare: every dealer's decoded commitment (own included), and for a holder of
    /// the current epoch the constant term each dealer's must have (`λ_i · Y_i`).
    pub(super) deal_commitments: BTreeMap<NodeId, VerifiableSecretSharingCommitment>,
    pub(super) deal_expected: BTreeMap<NodeId, [u8; 32]>,
}

/// What `part3` (or the refresh's last step) produced, waiting for every confirmation.
pub(super) struct Completion {
    /// This node's share of the result (none for a participant a reshare leaves out).
    pub key_package: Option<KeyPackage>,
    pub public_key_package: PublicKeyPackage,
    pub group_commitment: Vec<[u8; 32]>,
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
    /// `keys` signs this node's confirmation and checks every other participant's;
    /// `deadline` bounds the whole session.
    pub fn new(
        params: DkgParams,
        me: NodeId,
        keys: Arc<dyn ConfirmationKeys>,
        deadline: Instant,
    ) -> Result<Self, DkgError> {
        let mut params = params;
        params.validate()?;
        params.participants.sort_unstable();
        if let Some(reshare) = &mut params.reshare {
            reshare.dealers.sort_unstable();
            reshare.members.sort_unstable();
        }
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
            if id != me && !keys.knows(id) {
                return Err(DkgError::InvalidParams(format!(
                    "no identity key known for participant {id}"
                )));
            }
        }
        Ok(Self {
            params,
            me,
            keys,
            ident_to_id,
            phase: Phase::Prepared,
            deadline,
            contribution: None,
            round: None,
            contributions: Vec::new(),
            own_round1: None,
            sent_round2: BTreeMap::new(),
            own_echo: None,
            round1_secret: None,
            round2_secret: None,
            round1_hashes: BTreeMap::new(),
            round1_packages: BTreeMap::new(),
            pending: None,
            round2_raw: BTreeMap::new(),
            echoes: BTreeMap::new(),
            confirmations: BTreeMap::new(),
            own_confirmation: None,
            certificate: None,
            disagreeing: BTreeSet::new(),
            result: None,
            prior: None,
            own_value: None,
            deal_commitments: BTreeMap::new(),
            deal_expected: BTreeMap::new(),
        })
    }

    /// Gives a refresh session the shares it starts from: this node's share of the epoch
    /// named in [`DkgParams::refresh`], of the same group key and threshold.
    pub fn with_prior(mut self, prior: PriorKey) -> Result<Self, DkgError> {
        let Some(refresh) = self.params.refresh else {
            return Err(DkgError::InvalidParams(
                "a DKG creates a key: it starts from no shares".into(),
            ));
        };
        let gpk = prior
            .public_key_package
            .verifying_key()
            .serialize()
            .map_err(|e| DkgError::Frost(e.to_string()))?;
        if gpk.as_slice() != refresh.group_public_key {
            return Err(DkgError::InvalidParams(
                "the shares held are of another group key than the refresh names".into(),
            ));
        }
        match &self.params.reshare {
            Some(r) if usize::from(*prior.key_package.min_signers()) != r.dealers.len() => {
                return Err(DkgError::InvalidParams(format!(
                    "a reshare of a key of threshold {} needs as many dealers, got {:?}",
                    prior.key_package.min_signers(),
                    r.dealers
                )));
            }
            None if *prior.key_package.min_signers() != self.params.threshold => {
                return Err(DkgError::InvalidParams(format!(
                    "a refresh keeps the threshold ({}), got {}",
                    prior.key_package.min_signers(),
                    self.params.threshold
                )));
            }
            _ => {}
        }
        let unknown: Vec<NodeId> = self
            .params
            .participants
            .iter()
            .copied()
            .filter(|&id| {
                let enrolled = self
                    .params
                    .repair
                    .as_ref()
                    .is_some_and(|r| r.enrol && r.target == id);
                // A reshare may give shares to new nodes (which deal nothing).
                let joining = self.params.is_member(id) && !self.params.is_dealer(id);
                let new_allowed = enrolled || (self.params.reshare.is_some() && joining);
                !new_allowed
                    && !prior
                        .public_key_package
                        .verifying_shares()
                        .contains_key(&self.ident(id))
            })
            .collect();
        if !unknown.is_empty() {
            return Err(DkgError::InvalidParams(format!(
                "nodes {unknown:?} hold no share of this key: a refresh renews existing shares only"
            )));
        }
        if self.params.reshare.is_some() {
            self.deal_expected = self.expected_constants(&prior)?;
        }
        self.prior = Some(Box::new(prior));
        Ok(self)
    }

    /// Whether the session refreshes an existing key (new shares for everyone).
    pub fn is_refresh(&self) -> bool {
        self.params.refresh.is_some()
            && self.params.repair.is_none()
            && self.params.reshare.is_none()
    }

    /// The epoch the session produces.
    pub(super) fn epoch(&self) -> u64 {
        self.params.refresh.map_or(0, |r| r.epoch + 1)
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

    pub(super) fn others(&self) -> impl Iterator<Item = NodeId> + '_ {
        let me = self.me;
        self.params
            .participants
            .iter()
            .copied()
            .filter(move |&id| id != me)
    }

    /// This node's random contribution to the round id: drawn once, sent in its answer to
    /// `DkgStart` (or, for the initiator, put into `DkgBegin` itself).
    pub fn contribution<R: RngCore + CryptoRng>(&mut self, rng: &mut R) -> [u8; 32] {
        *self.contribution.get_or_insert_with(|| {
            let mut c = [0u8; 32];
            rng.fill_bytes(&mut c);
            c
        })
    }

    /// The id round messages travel under, once `DkgBegin` fixed it.
    pub fn round_id(&self) -> Option<SessionId> {
        self.round
    }

    /// The id this node's messages go out under now: the round id once fixed, before that the
    /// setup id.
    pub fn wire_session(&self) -> SessionId {
        self.round.unwrap_or(self.params.session)
    }

    /// Fixes the round id from every participant's contribution and runs round 1: generates
    /// this node's polynomial (from `rng`) and broadcasts its commitment.
    ///
    /// `contributions` must hold exactly one entry per participant, in participant order, this
    /// node's own among them unchanged: a `DkgBegin` from an earlier session with the same
    /// setup id does not hold this node's fresh contribution and is refused.
    pub fn begin<R: RngCore + CryptoRng>(
        &mut self,
        contributions: &[(NodeId, [u8; 32])],
        rng: &mut R,
    ) -> Result<Vec<Effect>, Rejection> {
        if self.phase != Phase::Prepared {
            return Ok(Vec::new());
        }
        let bad = |reason: String| Rejection::BadBegin {
            from: self.params.initiator,
            reason,
        };
        let ids: Vec<NodeId> = contributions.iter().map(|(id, _)| *id).collect();
        if ids != self.params.participants {
            return Err(bad(
                "its contributions do not list every participant once, in order".into(),
            ));
        }
        let own = contributions
            .iter()
            .find_map(|(id, c)| (*id == self.me).then_some(*c));
        if self.contribution.is_none() || own != self.contribution {
            return Err(bad(format!(
                "it does not carry node {}'s contribution to this session",
                self.me
            )));
        }
        self.round = Some(round_id(&self.params, contributions));
        self.contributions = contributions.to_vec();
        if self.params.repair.is_some() {
            let effects = self.begin_repair(rng);
            return Ok(effects);
        }
        if self.params.reshare.is_some() {
            return Ok(self.begin_reshare(rng));
        }
        let n = self.params.participants.len() as u16;
        let ident = self.ident(self.me);
        let t = self.params.threshold;
        let part1 = match (self.is_refresh(), &self.prior) {
            (false, _) => dkg::part1(ident, n, t, &mut *rng),
            (true, Some(_)) => refresh::refresh_dkg_part1(ident, n, t, &mut *rng),
            (true, None) => {
                let e = DkgError::InvalidParams("a refresh without the shares it renews".into());
                return Ok(self.fail(e, true));
            }
        };
        let (secret, package) = match part1 {
            Ok(v) => v,
            Err(e) => return Ok(self.fail(DkgError::Frost(e.to_string()), true)),
        };
        let bytes = match package.serialize() {
            Ok(b) => b,
            Err(e) => return Ok(self.fail(DkgError::Frost(e.to_string()), true)),
        };
        self.round1_hashes.insert(self.me, sha256(&bytes));
        self.round1_secret = Some(secret);
        self.phase = Phase::Round1;
        self.own_round1 = Some(bytes.clone());
        let mut effects = vec![Effect::Broadcast(Body::DkgRound1 { package: bytes })];
        effects.extend(self.progress());
        Ok(effects)
    }

    /// Handles one message from an authenticated sender.
    ///
    /// `Err` means the message was refused and the session is unchanged; aborts come out as
    /// [`Effect::Failed`].
    pub fn handle<R: RngCore + CryptoRng>(
        &mut self,
        envelope: Envelope,
        rng: &mut R,
    ) -> Result<Vec<Effect>, Rejection> {
        let from = envelope.from;
        let setup = self.params.session;
        // Before `DkgBegin` only the setup id is valid (for `DkgBegin` itself and aborts);
        // after it every message travels under the round id, and late setup messages are
        // ignored.
        let setup_kind = matches!(envelope.body, Body::DkgBegin { .. } | Body::DkgAbort { .. });
        match self.round {
            None if envelope.session == setup && setup_kind => {}
            Some(round) if envelope.session == round => {}
            Some(_) if envelope.session == setup && setup_kind => return Ok(Vec::new()),
            _ => {
                return Err(Rejection::WrongSession {
                    expected: self.wire_session(),
                    got: envelope.session,
                })
            }
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
        if self.confirmed()
            && !matches!(envelope.body, Body::DkgConfirm(_) | Body::DkgCertificate(_))
        {
            // Once this node's confirmation is out the others may complete: nothing but a
            // confirmation or a certificate can change this session any more (a late round-1
            // package or echo, even a conflicting one, cannot make it abort).
            return Ok(Vec::new());
        }
        match envelope.body {
            Body::DkgBegin { contributions } if from == self.params.initiator => {
                self.begin(&contributions, rng)
            }
            Body::DkgRound1 { package } => Ok(self.on_round1(from, package)),
            Body::DkgRound2 { package } => Ok(self.on_round2(from, package)),
            Body::DkgEcho { round1_hashes } => Ok(self.on_echo(from, round1_hashes)),
            Body::DkgConfirm(c) => self.on_confirm(from, c),
            Body::DkgCertificate(list) => self.on_certificate(from, list),
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
        // A node whose confirmation is out keeps its result: the others may complete after
        // this deadline, and their certificate still activates the key here
        // ([`DkgSession::late_certificate`]).
        let kept = if self.confirmed() {
            self.result.take()
        } else {
            None
        };
        // A participant that signed a confirmation of another result is named for it, not
        // merely as missing.
        let culprits: Vec<NodeId> = missing
            .iter()
            .copied()
            .filter(|id| self.disagreeing.contains(id))
            .collect();
        let error = if culprits.is_empty() {
            DkgError::Timeout { phase, missing }
        } else {
            DkgError::ConfirmationMismatch { culprits }
        };
        let effects = self.fail(error, true);
        self.result = kept;
        effects
    }

    /// Whether a certificate can still complete this session after it timed out.
    pub fn can_complete_late(&self) -> bool {
        self.phase == Phase::Failed && self.result.is_some() && self.confirmed()
    }

    /// A certificate for a session that timed out after this node confirmed: if it proves
    /// every participant confirmed this node's result, the key is completed after all.
    pub fn late_certificate(
        &mut self,
        from: NodeId,
        list: Vec<(NodeId, Confirmation)>,
    ) -> Result<Vec<Effect>, Rejection> {
        if !self.can_complete_late() {
            return Ok(Vec::new());
        }
        self.phase = Phase::Confirming;
        let outcome = self.on_certificate(from, list);
        if self.phase == Phase::Confirming {
            self.phase = Phase::Failed;
        }
        outcome
    }

    /// Aborts the session from outside (a participant disconnected); tells the others. A
    /// session whose confirmation is out does not abort (see [`DkgSession::is_confirmed`]): it
    /// waits for the certificate or its deadline.
    pub fn abort(&mut self, error: DkgError) -> Vec<Effect> {
        if self.is_finished() || self.confirmed() {
            return Vec::new();
        }
        self.fail(error, true)
    }

    /// Whether this node's confirmation is out (from then on, only a completed certificate or
    /// the deadline ends the session).
    pub fn is_confirmed(&self) -> bool {
        self.confirmed()
    }

    /// Brings the deadline forward to `at` if it is later (a participant aborted after this
    /// node confirmed: a certificate, if anyone completed, comes within moments).
    pub fn shorten_deadline(&mut self, at: Instant) {
        if at < self.deadline {
            self.deadline = at;
        }
    }

    /// Participants whose messages for the current phase have not arrived.
    pub fn missing(&self) -> Vec<NodeId> {
        match self.phase {
            Phase::Prepared => vec![self.params.initiator],
            Phase::Round1 => self
                .round1_senders()
                .into_iter()
                .filter(|&id| id != self.me && !self.round1_hashes.contains_key(&id))
                .collect(),
            Phase::Round2 if self.params.repair.is_some() => self
                .unicast_senders()
                .into_iter()
                .filter(|id| !self.round2_raw.contains_key(id))
                .collect(),
            Phase::Round2 => {
                let senders = self.unicast_senders();
                self.others()
                    .filter(|id| {
                        (senders.contains(id) && !self.round2_raw.contains_key(id))
                            || !self.echoes.contains_key(id)
                    })
                    .collect()
            }
            Phase::Confirming => self
                .others()
                .filter(|id| !self.confirmations.contains_key(id))
                .collect(),
            Phase::Done | Phase::Failed => Vec::new(),
        }
    }

    pub(super) fn ident(&self, id: NodeId) -> Identifier {
        // Every participant id was converted successfully in `new`.
        self.ident_to_id
            .iter()
            .find_map(|(ident, &i)| (i == id).then_some(*ident))
            .unwrap_or_else(|| Identifier::try_from(1u16).expect("1 is a valid identifier"))
    }

    pub(super) fn fail(&mut self, error: DkgError, tell_others: bool) -> Vec<Effect> {
        self.phase = Phase::Failed;
        self.pending = None;
        self.round1_secret = None;
        self.round2_secret = None;
        self.round2_raw.clear();
        self.sent_round2.clear();
        self.result = None;
        self.prior = None;
        self.own_value = None;
        self.deal_commitments.clear();
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

    /// Who broadcasts a round-1 package: every participant, or in a reshare its dealers.
    pub(super) fn round1_senders(&self) -> Vec<NodeId> {
        match &self.params.reshare {
            Some(r) => r.dealers.clone(),
            None => self.params.participants.clone(),
        }
    }

    /// How many coefficients every round-1 commitment has: `t`, or `t - 1` in a refresh (its
    /// zero constant term is not sent).
    pub(super) fn commitment_len(&self) -> usize {
        usize::from(self.params.threshold) - usize::from(self.is_refresh())
    }

    /// Whether this node's confirmation is out: from then on the others may complete, so
    /// nothing one participant sends makes this node abort (it could leave the key on some
    /// honest nodes and not on others); only its deadline ends the wait.
    pub(super) fn confirmed(&self) -> bool {
        self.own_confirmation.is_some()
    }
}
