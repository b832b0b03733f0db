//! The DKG driver: owns every DKG session this node takes part in, the DKGs it initiated
//! ([`Initiations`]) and the memory of ended sessions. It admits sessions (as initiator and as
//! participant, through one check), routes messages to them by setup id or round id (holding
//! round messages that arrive before their `DkgBegin`), carries out their effects through the
//! outbox, has confirmed keys written off the node task, and reports each session's end to its
//! initiator.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use libp2p::gossipsub::MessageAcceptance;
use tracing::{debug, info, warn};

mod lifecycle;
mod memory;
mod pulls;
mod work;

use memory::{Early, Finished, FINISHED_MEMORY};
pub use pulls::pull_after;

use super::checks;
use super::context::{Ctx, Stored};
use super::error::NodeError;
use super::initiator::{self, kind_name, Initiations, KeygenReply, StartProgress};
use super::outbox::ReplyTag;
use super::requests::KeygenRequest;
use super::timers::Timer;
use crate::dkg::{ConfirmationKeys, DkgError, DkgOutput, DkgParams, DkgSession, Effect};
use crate::keystore::{self, StoredConfirmation, StoredKey};
use crate::wire::{Body, DkgOutcome, DkgStart, Envelope, ErrorKind, NodeId, SessionId};

/// How long a participant whose confirmation is out keeps waiting for a certificate after
/// another participant aborted.
const ABORT_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Most DKG sessions one initiator may run with this node at once.
const MAX_DKG_PER_INITIATOR: usize = 8;
/// Sessions that timed out after this node confirmed, kept for a late certificate.
const MAX_LATE: usize = 64;

struct Run {
    session: Box<DkgSession>,
    started: Instant,
    /// The session's phase, and since when (its messages are pulled when it lasts).
    phase: crate::dkg::Phase,
    phase_since: Instant,
    /// Pull rounds made in this phase (each waits twice as long as the one before).
    pulled: u32,
}

/// Every DKG on this node.
pub struct DkgDriver {
    keys: Arc<dyn ConfirmationKeys>,
    sessions: HashMap<SessionId, Run>,
    initiations: Initiations,
    finished: Finished,
    /// Sessions that timed out after this node confirmed (oldest first): a certificate that
    /// arrives within [`FINISHED_MEMORY`] still completes them.
    late: VecDeque<(Instant, SessionId, Run)>,
    /// Round id → setup id of every running session that has begun.
    rounds: HashMap<SessionId, SessionId>,
    /// Round-1 packages (and aborts) that arrived before this node's `DkgBegin`: a participant
    /// that began first may broadcast before the initiator's `DkgBegin` reaches this node.
    early: Early,
    /// Certificates of the sessions completed here lately, by round id: they answer a
    /// participant that still asks for this node's confirmation.
    completed: pulls::Completed,
    /// Epochs replaced by a refresh, kept in memory for the signing sessions that began on
    /// them, and when each is retired (oldest first).
    retiring: VecDeque<(Instant, String, u64)>,
}

impl DkgDriver {
    /// A driver whose sessions sign and check confirmations with `keys`.
    pub fn new(keys: Arc<dyn ConfirmationKeys>) -> Self {
        DkgDriver {
            keys,
            sessions: HashMap::new(),
            initiations: Initiations::default(),
            finished: Finished::default(),
            late: VecDeque::new(),
            rounds: HashMap::new(),
            early: Early::default(),
            completed: pulls::Completed::default(),
            retiring: VecDeque::new(),
        }
    }

    /// Checks confirmations of sessions opened from now on with `keys` (a config reload may
    /// add peers or change their identity; running sessions keep the keys they began with).
    pub fn set_keys(&mut self, keys: Arc<dyn ConfirmationKeys>) {
        self.keys = keys;
    }

    /// Sessions running now.
    pub fn active(&self) -> usize {
        self.sessions.len()
    }

    fn busy(&self, key_id: &str) -> bool {
        // Ids that differ only in case are one id (they name one file on some file systems).
        self.sessions
            .values()
            .any(|r| r.session.params().key_id.eq_ignore_ascii_case(key_id))
    }

    /// Opens a session; returns this node's contribution to its round id.
    fn open(&mut self, ctx: &mut Ctx<'_>, params: DkgParams) -> Result<[u8; 32], DkgError> {
        let deadline = ctx.now + ctx.config.dkg_timeout;
        let sid = params.session;
        // The target of a repair or enrolment holds nothing yet; everyone else in a session that
        // starts from a key hands it its shares.
        let target = params.repair.as_ref().is_some_and(|r| r.target == ctx.me());
        let prior = match params.refresh {
            Some(_) if !target => Some(lifecycle::prior_key(ctx.keystore, &params)?),
            _ => None,
        };
        let mut session = DkgSession::new(params, ctx.me(), self.keys.clone(), deadline)?;
        if let Some(prior) = prior {
            session = session.with_prior(prior)?;
        }
        let contribution = session.contribution(&mut ctx.rng);
        self.sessions.insert(
            sid,
            Run {
                phase: session.phase(),
                session: Box::new(session),
                started: ctx.now,
                phase_since: ctx.now,
                pulled: 0,
            },
        );
        ctx.metrics.dkg_started();
        ctx.timers.set(Timer::Dkg(sid), Some(deadline));
        let pull_at = ctx.now + pulls::pull_after(ctx.config.dkg_timeout);
        ctx.timers.set(Timer::DkgPull(sid), Some(pull_at));
        Ok(contribution)
    }

    // ----- Initiator ---------------------------------------------------------------------

    /// Starts a DKG with this node as initiator; `reply` gets the answer.
    pub fn start_keygen(&mut self, ctx: &mut Ctx<'_>, req: KeygenRequest, reply: KeygenReply) {
        let start = initiator::resolve(&req, ctx.config.all_ids());
        self.initiate(ctx, start, reply);
    }

    /// Starts the session `start` (a DKG or a refresh) with this node as initiator.
    fn initiate(&mut self, ctx: &mut Ctx<'_>, start: DkgStart, reply: KeygenReply) {
        let me = ctx.me();
        let busy = self.busy(&start.key_id);
        let sid = initiator::session_id(&start, me, ctx.rng);
        if let Err(refusal) = checks::admit_dkg(ctx, sid, &start, me, busy) {
            info!(reason = %refusal.reason, "key generation refused");
            let _ = reply.send(Err(refusal.into_error(me)));
            return;
        }
        let params = DkgParams {
            session: sid,
            key_id: start.key_id.clone(),
            participants: start.participants.clone(),
            threshold: start.threshold,
            initiator: me,
            refresh: start.refresh,
            repair: start.repair.clone(),
        };
        let own = match self.open(ctx, params.clone()) {
            Ok(own) => own,
            Err(e) => {
                let _ = reply.send(Err(NodeError::BadRequest(e.to_string())));
                return;
            }
        };
        info!(
            session = %sid,
            key_id = %params.key_id,
            participants = ?params.participants,
            threshold = params.threshold,
            refresh_of_epoch = params.refresh.map(|r| r.epoch),
            "starting {}", kind_name(&params)
        );
        let deadline = ctx.now + ctx.config.dkg_timeout + ctx.config.request_timeout;
        self.initiations.insert(&params, me, own, reply, deadline);
        ctx.timers.set(Timer::Initiation(sid), Some(deadline));
        for &to in params.participants.iter().filter(|&&id| id != me) {
            let body = Body::DkgStart(start.clone());
            ctx.outbox.request(sid, to, body, ReplyTag::DkgStart);
        }
    }

    /// A participant answered this node's `DkgStart`.
    pub fn on_start_reply(
        &mut self,
        ctx: &mut Ctx<'_>,
        sid: SessionId,
        from: NodeId,
        result: Result<Body, String>,
    ) {
        match self.initiations.on_start_reply(sid, from, result) {
            StartProgress::Waiting => {}
            StartProgress::Begin(contributions) => {
                debug!(session = %sid, "every participant joined; beginning round 1");
                let Some(run) = self.sessions.get_mut(&sid) else {
                    return;
                };
                match run.session.begin(&contributions, &mut ctx.rng) {
                    Ok(effects) => {
                        ctx.outbox.broadcast(sid, Body::DkgBegin { contributions });
                        self.begun(ctx, sid, effects);
                    }
                    Err(e) => {
                        warn!(session = %sid, error = %e, "cannot begin own DKG");
                        let effects = run.session.abort(DkgError::InvalidParams(e.to_string()));
                        self.apply(ctx, sid, effects);
                    }
                }
            }
            StartProgress::Stale => self.call_off(ctx, sid, &[from], "the session was called off"),
            StartProgress::Off(err, joined) => {
                // Those that joined would otherwise wait for `DkgBegin` until their deadline,
                // holding the key id busy.
                self.call_off(ctx, sid, &joined, &err.to_string());
                ctx.timers.set(Timer::Initiation(sid), None);
                if let Some(run) = self.sessions.get_mut(&sid) {
                    let effects = run.session.abort(DkgError::InvalidParams(err.to_string()));
                    self.apply(ctx, sid, effects);
                }
            }
        }
    }

    /// Tells `nodes` directly that the session `sid` they joined will not begin.
    fn call_off(&mut self, ctx: &mut Ctx<'_>, sid: SessionId, nodes: &[NodeId], reason: &str) {
        for &to in nodes {
            let body = Body::DkgAbort {
                reason: format!("the initiator called the session off: {reason}"),
                culprits: Vec::new(),
            };
            ctx.outbox.send(sid, to, body);
        }
    }

    /// A participant reports how the session ended there.
    pub fn on_report(
        &mut self,
        ctx: &mut Ctx<'_>,
        sid: SessionId,
        from: NodeId,
        outcome: DkgOutcome,
    ) {
        if !self.initiations.contains(&sid) {
            debug!(session = %sid, from, "result for a session this node no longer tracks");
            return;
        }
        self.initiations.on_report(sid, from, outcome, ctx.keystore);
        self.initiation_timer(ctx, sid);
    }

    fn initiation_timer(&self, ctx: &mut Ctx<'_>, sid: SessionId) {
        ctx.timers
            .set(Timer::Initiation(sid), self.initiations.deadline(&sid));
    }

    // ----- Participant -------------------------------------------------------------------

    /// Another node asks this one to join a DKG; the answer is `DkgJoin` (with this node's
    /// contribution to the round id) or a refusal.
    pub fn on_dkg_start(
        &mut self,
        ctx: &mut Ctx<'_>,
        sid: SessionId,
        from: NodeId,
        start: DkgStart,
    ) -> Body {
        if self.sessions.contains_key(&sid) || self.finished.set.contains(&sid) {
            return Body::refused(
                ErrorKind::Conflict,
                format!("session {sid} is already known"),
            );
        }
        let running = self
            .sessions
            .values()
            .filter(|r| r.session.params().initiator == from)
            .count();
        if running >= MAX_DKG_PER_INITIATOR {
            warn!(
                peer = from,
                running, "too many DKG sessions from one initiator; refused"
            );
            return Body::refused(
                ErrorKind::Busy,
                format!(
                    "node {from} already runs {running} DKGs with node {}",
                    ctx.me()
                ),
            );
        }
        let busy = self.busy(&start.key_id);
        if let Err(refusal) = checks::admit_dkg(ctx, sid, &start, from, busy) {
            warn!(session = %sid, peer = from, kind = %refusal.kind, reason = %refusal.reason, "DkgStart refused");
            return refusal.to_body();
        }
        let params = DkgParams {
            session: sid,
            key_id: start.key_id,
            participants: start.participants,
            threshold: start.threshold,
            initiator: from,
            refresh: start.refresh,
            repair: start.repair.clone(),
        };
        let key_id = params.key_id.clone();
        let kind = kind_name(&params);
        match self.open(ctx, params) {
            Ok(contribution) => {
                info!(session = %sid, key_id = %key_id, initiator = from, "joining {kind}");
                Body::DkgJoin { contribution }
            }
            Err(e) => Body::refused(ErrorKind::BadRequest, e.to_string()),
        }
    }

    /// A DKG message (broadcast or round-2 share) for one of this node's sessions, under its
    /// setup id (`DkgBegin`, early aborts) or its round id (everything else).
    pub fn on_message(&mut self, ctx: &mut Ctx<'_>, env: Envelope) -> MessageAcceptance {
        let (wire, from, kind) = (env.session, env.from, env.body.kind());
        if let Some(at) = self
            .late
            .iter()
            .position(|(_, s, run)| *s == wire || run.session.round_id() == Some(wire))
        {
            return self.on_late(ctx, at, env);
        }
        let Some(sid) = self.running(wire) else {
            if self.finished.set.contains(&wire) {
                debug!(session = %wire, peer = from, kind, "message for a finished session dropped");
            } else if self.keep_early(ctx, &env) {
                debug!(session = %wire, peer = from, kind, kept = self.early.len(), "message kept until its session begins here");
            } else {
                crate::peer_warn!(ctx.limits.nodes, from, ctx.now, session = %wire, peer = from, kind, "message for an unknown session dropped");
            }
            return MessageAcceptance::Ignore;
        };
        let Some(run) = self.sessions.get_mut(&sid) else {
            return MessageAcceptance::Ignore;
        };
        let before = run.session.phase();
        match run.session.handle(env, &mut ctx.rng) {
            Ok(effects) => {
                let after = run.session.phase();
                if after != before {
                    debug!(session = %sid, phase = %after, "DKG phase");
                }
                if kind == "DkgAbort" && run.session.is_confirmed() && !run.session.is_finished() {
                    // Not a reason to abort (the others may hold the key), but a reason not to
                    // wait the whole deadline: whoever completed sends its certificate at once.
                    info!(session = %sid, peer = from, grace_ms = ABORT_GRACE.as_millis() as u64, "participant aborted after this node confirmed; waiting briefly for a certificate");
                    run.session.shorten_deadline(ctx.now + ABORT_GRACE);
                }
                if before == crate::dkg::Phase::Prepared && run.session.round_id().is_some() {
                    self.begun(ctx, sid, effects);
                } else {
                    self.apply(ctx, sid, effects);
                }
                MessageAcceptance::Accept
            }
            Err(rejection) => {
                crate::peer_warn!(ctx.limits.nodes, from, ctx.now, session = %sid, peer = from, kind, reason = %rejection, "message refused");
                MessageAcceptance::Reject
            }
        }
    }

    /// The setup id of the running session that `wire` names, by its setup id or its round id.
    fn running(&self, wire: SessionId) -> Option<SessionId> {
        if self.sessions.contains_key(&wire) {
            Some(wire)
        } else {
            self.rounds.get(&wire).copied()
        }
    }

    /// `sid` fixed its round id and ran round 1 (`effects`): route the round id to it and hand
    /// it the round messages that arrived first.
    fn begun(&mut self, ctx: &mut Ctx<'_>, sid: SessionId, effects: Vec<Effect>) {
        let round = self.sessions.get(&sid).and_then(|r| r.session.round_id());
        if let Some(round) = round {
            debug!(session = %sid, round = %round, "DKG round id fixed");
            self.rounds.insert(round, sid);
        }
        self.apply(ctx, sid, effects);
        let Some(round) = round else {
            return;
        };
        for env in self.early.take(round) {
            self.on_message(ctx, env);
        }
    }

    /// A participant's last connection closed: its DKG sessions cannot finish here; abort them
    /// now rather than at the deadline (a session whose confirmation is out waits a few
    /// seconds for a certificate instead: the others may hold the key).
    pub fn on_peer_lost(&mut self, ctx: &mut Ctx<'_>, node: NodeId) {
        let affected: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, r)| {
                r.session.params().participants.contains(&node) && !r.session.is_finished()
            })
            .map(|(sid, _)| *sid)
            .collect();
        for sid in affected {
            if let Some(run) = self.sessions.get_mut(&sid) {
                if run.session.is_confirmed() {
                    // The others may hold the key: wait briefly for their certificate rather
                    // than the whole deadline (the lost node cannot confirm any more).
                    run.session.shorten_deadline(ctx.now + ABORT_GRACE);
                }
                let effects = run.session.abort(DkgError::Disconnected { node });
                self.apply(ctx, sid, effects);
            }
        }
        self.initiations.on_peer_lost(node, ctx.keystore);
    }

    /// A deadline of this driver passed.
    pub fn on_timer(&mut self, ctx: &mut Ctx<'_>, timer: Timer) {
        match timer {
            Timer::Dkg(sid) => {
                if let Some(run) = self.sessions.get_mut(&sid) {
                    let effects = run.session.on_timeout(ctx.now);
                    self.apply(ctx, sid, effects);
                }
            }
            Timer::DkgPull(sid) => self.pull(ctx, sid),
            Timer::Retire => self.retire_due(ctx),
            Timer::Initiation(sid) => self.initiations.on_timeout(sid, ctx.keystore),
            Timer::Finished => {
                self.finished.prune(ctx.now);
                while self.late.front().is_some_and(|(at, _, _)| {
                    ctx.now.saturating_duration_since(*at) >= FINISHED_MEMORY
                }) {
                    self.late.pop_front();
                }
                ctx.timers.set(Timer::Finished, self.finished.next_expiry());
            }
            _ => {}
        }
    }

    fn apply(&mut self, ctx: &mut Ctx<'_>, sid: SessionId, effects: Vec<Effect>) {
        let wire = self
            .sessions
            .get(&sid)
            .map_or(sid, |r| r.session.wire_session());
        for effect in effects {
            match effect {
                Effect::Broadcast(body) => {
                    if let Body::DkgCertificate(list) = &body {
                        self.completed.remember(wire, list.clone());
                    }
                    ctx.outbox.broadcast(wire, body)
                }
                Effect::Send { to, body } => ctx.outbox.send(wire, to, body),
                Effect::Compute(work) => self.compute(ctx, sid, work),
                Effect::Completed(out) => self.store(ctx, sid, *out),
                Effect::Failed(err) => {
                    warn!(
                        session = %sid,
                        kind = err.kind(),
                        culprits = ?err.culprits(),
                        missing = ?err.missing(),
                        error = %err,
                        "DKG failed"
                    );
                    ctx.blame(&err.culprits());
                    self.end_session(ctx, sid, Err(err));
                }
            }
        }
        let deadline = self.sessions.get(&sid).and_then(|r| r.session.deadline());
        ctx.timers.set(Timer::Dkg(sid), deadline);
        self.track_phase(ctx, sid);
    }

    /// Every participant confirmed: write the key (off the node task).
    fn store(&mut self, ctx: &mut Ctx<'_>, sid: SessionId, out: DkgOutput) {
        let Some(run) = self.sessions.get(&sid) else {
            return;
        };
        let params = run.session.params();
        let key = StoredKey {
            format_version: keystore::KEY_FORMAT_VERSION,
            key_id: params.key_id.clone(),
            // The id the confirmations sign: the round id.
            session: run.session.wire_session().to_hex(),
            created_at: ctx.unix_seconds(),
            threshold: params.threshold,
            participants: params.participants.clone(),
            group_public_key: hex::encode(out.group_public_key),
            key_package: out.key_package,
            public_key_package: out.public_key_package,
            confirmations: out
                .confirmations
                .iter()
                .map(|(&node_id, c)| StoredConfirmation {
                    node_id,
                    transcript: hex::encode(c.transcript),
                    public_key_package_hash: hex::encode(c.public_key_package_hash),
                    signature: hex::encode(&c.signature),
                    peer_id: self.keys.identity(node_id),
                })
                .collect(),
            epoch: out.epoch,
            group_commitment: out.group_commitment.iter().map(hex::encode).collect(),
        };
        if let Err(e) = ctx.persist(sid, key) {
            warn!(session = %sid, error = %e, "cannot store the new key");
            self.end_session(ctx, sid, Err(DkgError::Storage(e)));
        }
    }

    /// A key file was written (or not).
    pub fn on_stored(&mut self, ctx: &mut Ctx<'_>, stored: Stored) {
        let sid = stored.session;
        let key_id = stored.key.key_id.clone();
        let group_key = checks::group_key_bytes(&stored.key.group_public_key);
        let epoch = stored.key.epoch;
        // A next epoch replaces a held one; a new key, or the first share of a repaired or
        // enrolled node, is new here.
        let next = ctx.keystore.contains(&key_id);
        let result = stored.result.and_then(|()| {
            let key = *stored.key;
            let adopted = if next {
                ctx.keystore.adopt_next(key)
            } else {
                ctx.keystore.adopt(key)
            };
            adopted.map_err(|e| e.to_string())
        });
        match (result, group_key) {
            (Ok(()), Some(gpk)) if epoch > 0 => {
                let kind = self
                    .sessions
                    .get(&sid)
                    .map_or("refresh", |r| kind_name(r.session.params()));
                if next {
                    info!(session = %sid, key_id = %key_id, epoch, group_public_key = %hex::encode(gpk), "{kind} complete; epoch {epoch} stored, the old one deleted from disk");
                    self.retire_later(ctx, key_id, epoch - 1);
                } else {
                    info!(session = %sid, key_id = %key_id, epoch, group_public_key = %hex::encode(gpk), "{kind} complete; this node holds a share of the key (epoch {epoch})");
                }
                self.end_session(ctx, sid, Ok(gpk));
            }
            (Ok(()), Some(gpk)) => {
                info!(session = %sid, key_id = %key_id, group_public_key = %hex::encode(gpk), "DKG complete; key stored");
                self.end_session(ctx, sid, Ok(gpk));
            }
            (Err(e), _) => {
                warn!(session = %sid, key_id = %key_id, error = %e, "cannot store the new key");
                self.end_session(ctx, sid, Err(DkgError::Storage(e)));
            }
            (Ok(()), None) => {
                self.end_session(ctx, sid, Err(DkgError::Storage("corrupt group key".into())));
            }
        }
    }

    fn end_session(
        &mut self,
        ctx: &mut Ctx<'_>,
        sid: SessionId,
        result: Result<[u8; 32], DkgError>,
    ) {
        let Some(run) = self.sessions.remove(&sid) else {
            return;
        };
        ctx.timers.set(Timer::Dkg(sid), None);
        if let Some(round) = run.session.round_id() {
            self.rounds.remove(&round);
            self.finished.insert(ctx.now, round);
        }
        let seconds = ctx.now.saturating_duration_since(run.started).as_secs_f64();
        let failure = result.as_ref().err().map(|e| {
            if !e.culprits().is_empty() {
                "misbehaviour"
            } else if !e.missing().is_empty() {
                "timeout"
            } else {
                "aborted"
            }
        });
        ctx.metrics.dkg_ended(failure, seconds);
        self.finished.insert(ctx.now, sid);
        ctx.timers.set(Timer::Finished, self.finished.next_expiry());
        let initiator = run.session.params().initiator;
        if initiator == ctx.me() {
            self.initiations.on_own_end(sid, result, ctx.keystore);
            // Participants already gone will never report: answer without waiting for them.
            let gone: Vec<NodeId> = run
                .session
                .params()
                .participants
                .iter()
                .copied()
                .filter(|&id| id != ctx.me() && !ctx.peers.is_connected(id))
                .collect();
            for node in gone {
                self.initiations.on_peer_lost(node, ctx.keystore);
            }
            self.initiation_timer(ctx, sid);
        } else {
            let outcome = match result {
                Ok(group_public_key) => DkgOutcome::Stored { group_public_key },
                Err(e) => DkgOutcome::Failed {
                    reason: e.to_string(),
                    culprits: e.culprits(),
                    missing: e.missing(),
                },
            };
            ctx.outbox.send(sid, initiator, Body::DkgResult(outcome));
        }
        if run.session.can_complete_late() {
            if self.late.len() >= MAX_LATE {
                self.late.pop_front();
            }
            self.late.push_back((ctx.now, sid, run));
        }
    }

    /// A message for a session that timed out after this node confirmed: only a certificate
    /// matters; if it proves everyone confirmed, the session completes after all.
    fn on_late(&mut self, ctx: &mut Ctx<'_>, at: usize, env: Envelope) -> MessageAcceptance {
        let from = env.from;
        let Body::DkgCertificate(list) = env.body else {
            return MessageAcceptance::Ignore;
        };
        let Some((_, sid, mut run)) = self.late.remove(at) else {
            return MessageAcceptance::Ignore;
        };
        match run.session.late_certificate(from, list) {
            Ok(effects) if effects.iter().any(|e| matches!(e, Effect::Completed(_))) => {
                info!(session = %sid, peer = from, "a certificate arrived after this node's deadline; completing the key");
                if let Some(round) = run.session.round_id() {
                    self.rounds.insert(round, sid);
                }
                self.sessions.insert(sid, run);
                self.apply(ctx, sid, effects);
                MessageAcceptance::Accept
            }
            Ok(_) => {
                self.late.push_back((ctx.now, sid, run));
                MessageAcceptance::Ignore
            }
            Err(rejection) => {
                crate::peer_warn!(ctx.limits.nodes, from, ctx.now, session = %sid, peer = from, reason = %rejection, "late certificate refused");
                self.late.push_back((ctx.now, sid, run));
                MessageAcceptance::Reject
            }
        }
    }
}
