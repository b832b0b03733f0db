//! The coordinator driver: the signing sessions this node coordinates, for requests it
//! received itself or that a peer forwarded to it. It checks the key (the check the signers
//! run too), starts a sans-IO [`Coordinator`], sends its requests through the outbox, answers
//! its own requests through this node's signer without encoding round trips, and returns the
//! signature (or the refusal) to whoever asked.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use libp2p::request_response::ResponseChannel;
use tracing::{debug, info, warn};

use super::checks;
use super::context::Ctx;
use super::error::Refusal;
use super::journal::{Role, SessionRecord};
use super::offload::Finished;
use super::outbox::ReplyTag;
use super::signer::{CommitAsk, SignerDriver};
use super::timers::Timer;
use crate::signing::coordinator::{Aggregated, Coordinator, Effect, SignOutput, SignParams};
use crate::signing::participant::{SignerError, Slot};
use crate::signing::presign::{BootId, CommitmentBook};
use crate::signing::{election, SignError};
use crate::wire::{Body, ErrorKind, NodeId, SessionId};

/// Most signing requests one peer may have this node coordinate at once.
const MAX_FORWARDS_PER_PEER: usize = 256;

/// Where a coordinated session's result goes.
pub enum Responder {
    /// A request this node received itself: the forwarder's entry with this request id.
    Local(SessionId),
    /// A peer that forwarded the request.
    Peer {
        /// Its request's channel.
        channel: ResponseChannel<Vec<u8>>,
        /// The peer.
        to: NodeId,
    },
}

/// A request to coordinate.
pub struct CoordinateRequest {
    /// The request id (the coordinator's session id is derived from it).
    pub request: SessionId,
    /// Key to sign with.
    pub key_id: String,
    /// The group key the requester holds under `key_id`, if it said.
    pub expected_key: Option<[u8; 32]>,
    /// Messages to sign (one, or a batch).
    pub messages: Vec<Vec<u8>>,
    /// The client's token, passed to every signer.
    pub token: Option<String>,
    /// Where the answer goes.
    pub responder: Responder,
}

/// The answer to a request this node received itself, for the forwarder.
pub struct LocalAnswer {
    /// The request id.
    pub request: SessionId,
    /// `SignDone` or `Refused`.
    pub body: Body,
}

struct Coordination {
    coordinator: Coordinator,
    key_id: String,
    /// The client's request (the id its receiving node knows it by).
    request: SessionId,
    responder: Responder,
    started: Instant,
}

/// The signing sessions this node coordinates.
#[derive(Default)]
pub struct CoordinatorDriver {
    sessions: HashMap<SessionId, Coordination>,
    per_peer: HashMap<NodeId, usize>,
    /// Commitments signers issued to this node ahead of time.
    book: CommitmentBook,
}

/// The coordinator's session id for a request.
fn session_for(request_id: &SessionId, coordinator: NodeId) -> SessionId {
    SessionId(election::session_id(&request_id.0, coordinator))
}

impl CoordinatorDriver {
    /// Sessions running now.
    pub fn active(&self) -> usize {
        self.sessions.len()
    }

    /// A signer issued this node commitments ahead of time (`reset`: its pool for this node
    /// starts afresh).
    pub fn on_presign(
        &mut self,
        ctx: &mut Ctx<'_>,
        from: NodeId,
        boot: BootId,
        reset: bool,
        commitments: &[(u64, Vec<u8>)],
    ) -> Body {
        let added = if reset {
            self.book.restock(ctx.now, from, boot, commitments)
        } else {
            self.book.add(ctx.now, from, boot, commitments)
        };
        match added {
            Ok(stocked) => {
                debug!(
                    signer = from,
                    added = commitments.len(),
                    stocked,
                    "preprocessed commitments"
                );
                Body::Ack
            }
            Err(e) => {
                crate::peer_warn!(ctx.limits.nodes, from, ctx.now, peer = from, error = %e, "preprocessed commitments refused");
                Body::refused(ErrorKind::BadRequest, e.to_string())
            }
        }
    }

    /// Commitments stocked here, by the signer that issued them.
    pub fn stocked(&self) -> std::collections::BTreeMap<NodeId, usize> {
        self.book.stocked_all()
    }

    /// A signer's last connection closed: what it issued may be gone with it.
    pub fn on_peer_lost(&mut self, node: NodeId) {
        self.book.forget(node);
    }

    /// Starts coordinating `req`, unless the key check or a limit refuses it.
    pub fn start(
        &mut self,
        ctx: &mut Ctx<'_>,
        signer: &mut SignerDriver,
        req: CoordinateRequest,
    ) -> Option<LocalAnswer> {
        let me = ctx.me();
        let sid = session_for(&req.request, me);
        if let Responder::Peer { to, .. } = &req.responder {
            let open = self.per_peer.get(to).copied().unwrap_or(0);
            if open >= MAX_FORWARDS_PER_PEER {
                warn!(
                    peer = to,
                    open, "too many signing requests from one peer; refused"
                );
                let body = Body::refused(
                    ErrorKind::Busy,
                    format!("node {me} coordinates {open} requests for node {to}"),
                );
                return respond(ctx, req.responder, sid, body);
            }
        }
        let checked = checks::signing_key(
            ctx.keystore,
            me,
            &req.key_id,
            req.expected_key,
            None,
            &req.messages,
            None,
        );
        let (key, group_public_key) = match checked {
            Ok(k) if !self.sessions.contains_key(&sid) => k,
            Ok(_) => {
                let body =
                    Body::refused(ErrorKind::BadRequest, "request already being coordinated");
                return respond(ctx, req.responder, sid, body);
            }
            Err(refusal) => return respond(ctx, req.responder, sid, refusal.to_body()),
        };
        // This node signs first (no network round trip), then the others in ranking order.
        let mut preference = vec![me];
        preference.extend(
            election::rank(&req.request.0, &key.participants)
                .into_iter()
                .filter(|&id| id != me && ctx.peers.is_connected(id)),
        );
        // The first signers chosen that issued this node a commitment per message ahead of time
        // sign in one round (this node commits itself, locally).
        let t = usize::from(key.threshold);
        let n = req.messages.len();
        let presigned = preference
            .iter()
            .take(t)
            .filter(|&&id| id != me)
            .filter_map(|&id| self.book.take_n(ctx.now, id, n).map(|p| (id, p)))
            .collect();
        let params = SignParams {
            session: sid,
            me,
            key_id: req.key_id.clone(),
            messages: req.messages,
            threshold: key.threshold,
            participants: key.participants.clone(),
            public_key_package: key.public_key_package.clone(),
            group_public_key,
            epoch: key.epoch,
            request_id: req.request,
            token: req.token,
            presigned,
        };
        let (coordinator, effects) = Coordinator::start(
            params,
            preference,
            ctx.now,
            // Time for the first signer set and two replacements within the signing deadline.
            ctx.config.sign_timeout / 3,
            ctx.now + ctx.config.sign_timeout,
        );
        debug!(session = %sid, request = %req.request, key_id = %req.key_id, "coordinating");
        let request = req.request;
        if let Responder::Peer { to, .. } = &req.responder {
            *self.per_peer.entry(*to).or_default() += 1;
        }
        self.sessions.insert(
            sid,
            Coordination {
                coordinator,
                key_id: req.key_id,
                request,
                responder: req.responder,
                started: ctx.now,
            },
        );
        self.apply(ctx, signer, sid, effects)
    }

    /// A signer answered (or its request failed).
    pub fn on_reply(
        &mut self,
        ctx: &mut Ctx<'_>,
        signer: &mut SignerDriver,
        sid: SessionId,
        from: NodeId,
        result: Result<Body, String>,
    ) -> Option<LocalAnswer> {
        let c = self.sessions.get_mut(&sid)?;
        let now = ctx.now;
        let attempt = c.coordinator.attempt();
        let effects = match result {
            Ok(Body::Refused { kind, reason })
                if kind == ErrorKind::Conflict && c.coordinator.sent_one_round(from) =>
            {
                debug!(session = %sid, signer = from, %reason, "preprocessed nonce gone; signing in two rounds");
                c.coordinator.on_stale_nonce(now, from, attempt)
            }
            Ok(Body::Refused { kind, reason }) if kind.is_refusal() => {
                warn!(session = %sid, signer = from, %reason, "signer refused the request");
                c.coordinator.on_refusal(now, from, attempt, reason)
            }
            Ok(Body::Refused { kind, reason }) => {
                warn!(session = %sid, signer = from, %kind, %reason, "signer refused");
                c.coordinator.on_failure(now, from, attempt)
            }
            Ok(body) => c.coordinator.on_reply(now, from, body),
            Err(reason) => {
                debug!(session = %sid, signer = from, %reason, "signer request failed");
                c.coordinator.on_failure(now, from, attempt)
            }
        };
        self.apply(ctx, signer, sid, effects)
    }

    /// This node's own shares for a session it coordinates, made on the worker pool.
    pub fn on_own_shares(
        &mut self,
        ctx: &mut Ctx<'_>,
        signer: &mut SignerDriver,
        sid: SessionId,
        attempt: u8,
        result: Result<Vec<Vec<u8>>, SignerError>,
    ) -> Option<LocalAnswer> {
        let me = ctx.me();
        let c = self.sessions.get_mut(&sid)?;
        let effects = match result {
            // Through the outbox's interceptor, as a remote signer's shares would come.
            Ok(shares) => match ctx.outbox.answer_self(sid, Body::Share { attempt, shares }) {
                Some(reply) => c.coordinator.on_reply(ctx.now, me, reply),
                None => Vec::new(),
            },
            Err(e) => {
                warn!(session = %sid, error = %e, "this node's own signer failed");
                c.coordinator.on_failure(ctx.now, me, attempt)
            }
        };
        self.apply(ctx, signer, sid, effects)
    }

    /// A session's aggregation finished on the worker pool.
    pub fn on_aggregated(
        &mut self,
        ctx: &mut Ctx<'_>,
        signer: &mut SignerDriver,
        sid: SessionId,
        done: Aggregated,
    ) -> Option<LocalAnswer> {
        let c = self.sessions.get_mut(&sid)?;
        let effects = c.coordinator.on_aggregated(ctx.now, done);
        self.apply(ctx, signer, sid, effects)
    }

    /// A signer's or the session's deadline passed.
    pub fn on_timer(
        &mut self,
        ctx: &mut Ctx<'_>,
        signer: &mut SignerDriver,
        sid: SessionId,
    ) -> Option<LocalAnswer> {
        let c = self.sessions.get_mut(&sid)?;
        let effects = c.coordinator.on_timeout(ctx.now);
        self.apply(ctx, signer, sid, effects)
    }

    fn apply(
        &mut self,
        ctx: &mut Ctx<'_>,
        signer: &mut SignerDriver,
        sid: SessionId,
        effects: Vec<Effect>,
    ) -> Option<LocalAnswer> {
        let me = ctx.me();
        let mut queue: VecDeque<Effect> = effects.into();
        let mut answer = None;
        while let Some(effect) = queue.pop_front() {
            match effect {
                Effect::Send { to, body } if to == me => {
                    queue.extend(self.answer_self(ctx, signer, sid, body));
                }
                Effect::Send { to, body } => ctx.outbox.request(sid, to, body, ReplyTag::Signer),
                Effect::Aggregate(job) => ctx.offload("aggregate", move || Finished::Aggregated {
                    session: sid,
                    done: job.run(),
                }),
                Effect::Done(out) => answer = self.end(ctx, signer, sid, Ok(out)),
                Effect::Failed { error, culprits } => {
                    ctx.blame(&culprits);
                    answer = self.end(ctx, signer, sid, Err((error, culprits)));
                }
            }
        }
        let deadline = self
            .sessions
            .get(&sid)
            .and_then(|c| c.coordinator.deadline());
        ctx.timers.set(Timer::Coordination(sid), deadline);
        answer
    }

    /// This node's signer answering its own coordinator.
    fn answer_self(
        &mut self,
        ctx: &mut Ctx<'_>,
        signer: &mut SignerDriver,
        sid: SessionId,
        body: Body,
    ) -> Vec<Effect> {
        let me = ctx.me();
        let Some(c) = self.sessions.get_mut(&sid) else {
            return Vec::new();
        };
        let slot = |attempt| Slot {
            coordinator: me,
            session: sid,
            attempt,
        };
        let now = ctx.now;
        match body {
            Body::CommitRequest {
                attempt,
                key_id,
                epoch,
                messages,
                request_id,
                token,
                ..
            } => {
                let ask = CommitAsk {
                    key_id: &key_id,
                    epoch,
                    expected_key: None,
                    messages: &messages,
                    request_id,
                    token,
                };
                match signer.commit(ctx, slot(attempt), ask) {
                    Ok(commitments) => c.coordinator.on_commitments(now, me, attempt, commitments),
                    Err(r) => own_refusal(&mut c.coordinator, sid, now, me, attempt, r),
                }
            }
            Body::SignRequest { attempt, .. } => match signer.prepare_sign(ctx, slot(attempt)) {
                Ok(signing) => {
                    let packages = c.coordinator.signing_packages().to_vec();
                    ctx.offload("sign", move || Finished::OwnShares {
                        session: sid,
                        attempt,
                        result: signing.decoded(&packages),
                    });
                    Vec::new()
                }
                Err(r) => own_refusal(&mut c.coordinator, sid, now, me, attempt, r),
            },
            _ => Vec::new(),
        }
    }

    fn end(
        &mut self,
        ctx: &mut Ctx<'_>,
        signer: &mut SignerDriver,
        sid: SessionId,
        result: Result<SignOutput, (SignError, Vec<NodeId>)>,
    ) -> Option<LocalAnswer> {
        let c = self.sessions.remove(&sid)?;
        ctx.timers.set(Timer::Coordination(sid), None);
        if let Responder::Peer { to, .. } = &c.responder {
            if let Some(n) = self.per_peer.get_mut(to) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_peer.remove(to);
                }
            }
        }
        signer.forget(ctx.me(), sid, c.coordinator.attempt());
        let elapsed = ctx.now.saturating_duration_since(c.started);
        let elapsed_ms = elapsed.as_secs_f64() * 1e3;
        // A request another node received is kept here too; this node's own requests are
        // kept by its forwarder.
        let mut record = match &c.responder {
            Responder::Peer { to, .. } => Some(SessionRecord {
                coordinator: Some(ctx.me()),
                received_from: Some(*to),
                ..SessionRecord::ended(
                    "sign",
                    Role::Coordinator,
                    &c.request.0,
                    &c.key_id,
                    ctx.unix_seconds(),
                    elapsed,
                )
            }),
            Responder::Local(_) => None,
        };
        let body = match result {
            Ok(out) => {
                if let Some(r) = &mut record {
                    r.nodes = out.signers.clone();
                    r.messages = Some(out.signatures.len());
                    r.culprits = out.culprits.clone();
                }
                let me = ctx.me();
                let others = out.signers.iter().filter(|&&s| s != me).count();
                let one_round = c.coordinator.one_round_signers().count();
                ctx.metrics.signed_in(others > 0 && one_round == others);
                if !out.culprits.is_empty() {
                    ctx.blame(&out.culprits);
                    warn!(
                        session = %sid,
                        key_id = %c.key_id,
                        culprits = ?out.culprits,
                        "signers sent invalid signature shares; signed without them"
                    );
                }
                let messages = out.signatures.len();
                info!(session = %sid, key_id = %c.key_id, signers = ?out.signers, messages, elapsed_ms, "signed");
                Body::SignDone {
                    signatures: out.signatures.iter().map(|s| s.to_vec()).collect(),
                    signers: out.signers,
                    coordinator: ctx.me(),
                }
            }
            Err((SignError::Refused { refused_by }, _)) => {
                warn!(session = %sid, key_id = %c.key_id, refused_by = ?refused_by, "signing refused by signers");
                if let Some(r) = &mut record {
                    r.outcome = ErrorKind::Refused.as_str().into();
                    let by: Vec<NodeId> = refused_by.iter().map(|(id, _)| *id).collect();
                    r.error = Some(format!("refused by {by:?}"));
                }
                Body::SignRefused { refused_by }
            }
            Err((error, culprits)) => {
                warn!(session = %sid, key_id = %c.key_id, culprits = ?culprits, error = %error, "signing failed");
                if let Some(r) = &mut record {
                    r.outcome = error.kind().as_str().into();
                    r.error = Some(error.to_string());
                    r.culprits = culprits;
                }
                Body::refused(error.kind(), error.to_string())
            }
        };
        if let Some(r) = record {
            ctx.journal.record(r);
        }
        respond(ctx, c.responder, sid, body)
    }
}

/// This node's own signer declined: a refusal of the request (named in `refused_by`) or a
/// failure, as for any signer.
fn own_refusal(
    coordinator: &mut Coordinator,
    sid: SessionId,
    now: Instant,
    me: NodeId,
    attempt: u8,
    r: Refusal,
) -> Vec<Effect> {
    if r.kind.is_refusal() {
        warn!(session = %sid, reason = %r.reason, "this node refuses the request");
        coordinator.on_refusal(now, me, attempt, r.reason)
    } else {
        warn!(session = %sid, reason = %r.reason, "this node's own signer refused");
        coordinator.on_failure(now, me, attempt)
    }
}

/// Sends the answer to a peer, or hands it back for this node's forwarder.
fn respond(
    ctx: &mut Ctx<'_>,
    responder: Responder,
    sid: SessionId,
    body: Body,
) -> Option<LocalAnswer> {
    match responder {
        Responder::Peer { channel, to } => {
            ctx.outbox.respond(channel, sid, to, body);
            None
        }
        Responder::Local(request) => Some(LocalAnswer { request, body }),
    }
}
