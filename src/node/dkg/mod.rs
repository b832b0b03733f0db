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

mod ending;
mod lifecycle;
mod memory;
mod pulls;
mod work;

use memory::{Early, Finished, FINISHED_MEMORY};
pub use pulls::pull_after;

use super::checks;
use super::context::Ctx;
use super::error::NodeError;
use super::initiator::{self, kind_name, Initiations, KeygenReply, StartProgress};
use super::outbox::ReplyTag;
use super::requests::KeygenRequest;
use super::timers::Timer;
use crate::dkg::{ConfirmationKeys, DkgError, DkgParams, DkgSession, Effect};
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
        // The target of a repair or enrolment, or a node a reshare adds, holds nothing yet;
        // everyone else in a session that starts from a key hands it its shares.
        let target = params.repair.as_ref().is_some_and(|r| r.target == ctx.me())
            || (params.reshare.is_some() && !ctx.keystore.contains(&params.key_id));
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
            reshare: start.reshare.clone(),
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
        self.supersede(ctx, from, &start.key_id);
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
            reshare: start.reshare.clone(),
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

    /// `from` asks this node to join a new session for `key_id`: a session of its for the same
    /// key that has not begun here is dead (an initiator runs one session per key at a time;
    /// its call-off may still be on its way, or lost), so it is aborted rather than holding
    /// the key id busy until its deadline.
    fn supersede(&mut self, ctx: &mut Ctx<'_>, from: NodeId, key_id: &str) {
        let stale: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, r)| {
                let p = r.session.params();
                p.initiator == from
                    && r.session.round_id().is_none()
                    && p.key_id.eq_ignore_ascii_case(key_id)
            })
            .map(|(sid, _)| *sid)
            .collect();
        for sid in stale {
            debug!(session = %sid, initiator = from, "superseded by a new session of its initiator");
            if let Some(run) = self.sessions.get_mut(&sid) {
                let error = DkgError::InvalidParams(
                    "superseded: its initiator started another session for this key".into(),
                );
                let effects = run.session.abort(error);
                self.apply(ctx, sid, effects);
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
                Effect::Left {
                    epoch,
                    group_public_key,
                } => self.leave(ctx, sid, epoch, group_public_key),
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
}
