//! The forwarder: signing requests this node received from its caller. It draws the request
//! id, ranks the key's participants for it (rendezvous hashing), and hands the request to the
//! best reachable coordinator: over the network, or to this node's own coordinator. When a
//! coordinator fails, the next in the ranking takes over. It checks the signature it gets back
//! before its caller sees it, and answers by a deadline whatever the coordinators do.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Instant;

use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::checks;
use super::context::Ctx;
use super::coordinator::{CoordinateRequest, Responder};
use super::error::NodeError;
use super::journal::{Role, SessionRecord};
use super::outbox::ReplyTag;
use super::requests::BatchSignResponse;
use super::timers::Timer;
use crate::auth;
use crate::signing::{election, SignError};
use crate::wire::{Body, ErrorKind, NodeId, SessionId};

/// A signing request from this node's caller.
#[derive(Debug)]
pub struct SignInput {
    /// The key.
    pub key_id: String,
    /// The messages (one, or a batch), signed in one session.
    pub messages: Vec<Vec<u8>>,
    /// A fixed request id, or none for a fresh one.
    pub request_id: Option<SessionId>,
    /// The client's token.
    pub token: Option<String>,
}

/// Where a signing request's caller gets its answer.
pub type SignReply = oneshot::Sender<Result<BatchSignResponse, NodeError>>;

/// A request received by this node, travelling down the coordinator ranking.
struct Forward {
    key_id: String,
    messages: Vec<Vec<u8>>,
    token: Option<String>,
    group_public_key: [u8; 32],
    candidates: VecDeque<NodeId>,
    current: Option<NodeId>,
    reply: SignReply,
    last_error: Option<NodeError>,
    started: Instant,
}

/// Signing requests this node received and has not answered yet.
#[derive(Default)]
pub struct Forwarder {
    forwards: HashMap<SessionId, Forward>,
}

/// The error for a coordinator's refusal.
fn from_refusal(from: NodeId, kind: ErrorKind, reason: &str) -> NodeError {
    let message = format!("coordinator {from}: {reason}");
    match kind {
        ErrorKind::NotFound => NodeError::NotFound(message),
        ErrorKind::BadRequest => NodeError::BadRequest(message),
        ErrorKind::Unavailable => NodeError::Unavailable {
            message,
            missing: vec![],
        },
        ErrorKind::Timeout => NodeError::Timeout {
            message,
            missing: vec![],
        },
        kind => NodeError::aborted(kind, message),
    }
}

/// Whether a coordinator's refusal is its own trouble, so the next one should try.
fn next_may_succeed(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::Timeout
            | ErrorKind::Unavailable
            | ErrorKind::NotFound
            | ErrorKind::KeyMismatch
            | ErrorKind::Busy
    )
}

impl Forwarder {
    /// Takes a signing request from this node's caller, after checking its client token
    /// against this node's own clients. `request_id` fixes the request id (and so the
    /// coordinator ranking); otherwise a fresh one is drawn. Returns the request if this node
    /// is to coordinate it.
    pub fn start(
        &mut self,
        ctx: &mut Ctx<'_>,
        req: SignInput,
        reply: SignReply,
    ) -> Option<CoordinateRequest> {
        let SignInput {
            key_id,
            messages,
            request_id,
            token,
        } = req;
        ctx.metrics.sign_started();
        let me = ctx.me();
        let count = messages.len();
        // Requests refused before the client is known are counted, not journaled: strangers
        // cannot push the operators' history out of the journal.
        let refuse = |ctx: &mut Ctx<'_>, rid: Option<SessionId>, reply: SignReply, err| {
            ctx.metrics
                .sign_ended(Some(NodeError::kind(&err).as_str()), 0.0);
            let result = Err(err);
            if let Some(rid) = rid {
                journal_sign(ctx, rid, &key_id, count, None, ctx.now, &result);
            }
            let _ = reply.send(result);
            None
        };
        // Who is asking comes first: an unauthorized caller learns nothing about keys.
        let request_id = request_id.unwrap_or_else(|| {
            let mut id = [0u8; 32];
            ctx.rng.fill_bytes(&mut id);
            SessionId(id)
        });
        if let Err(r) = checks::batch_size(&messages) {
            return refuse(ctx, None, reply, r.into());
        }
        let binding = auth::MessageBinding::of(&messages);
        let request = || auth::Request::sign(&key_id, binding, request_id.0);
        let now_unix = ctx.unix_seconds();
        if let Err(r) = checks::authorize(ctx.config, ctx.auth, now_unix, token.as_deref(), request)
        {
            warn!(request = %request_id, key_id = %key_id, reason = %r.reason, "signing request refused");
            return refuse(ctx, None, reply, r.into_error(me));
        }
        let (key, group_public_key) =
            match checks::signing_key(ctx.keystore, me, &key_id, None, None, &messages, None) {
                Ok(found) => found,
                Err(r) => return refuse(ctx, Some(request_id), reply, r.into()),
            };
        let participants = key.participants.clone();
        let threshold = key.threshold;
        let wire = checks::batch_wire_bytes(&messages, threshold);
        if wire > ctx.config.max_message_size {
            let per_message = (wire - checks::BATCH_WIRE_FIXED).div_ceil(messages.len());
            let room = ctx
                .config
                .max_message_size
                .saturating_sub(checks::BATCH_WIRE_FIXED);
            let fits = room / per_message.max(1);
            let err = NodeError::BadRequest(format!(
                "a batch of {} messages for a {threshold}-of-{} key takes about {wire} bytes on \
                 the wire, more than max_message_size ({}): send at most {fits} per request",
                messages.len(),
                participants.len(),
                ctx.config.max_message_size
            ));
            return refuse(ctx, Some(request_id), reply, err);
        }
        let unreachable: Vec<NodeId> = participants
            .iter()
            .copied()
            .filter(|&id| !ctx.peers.reachable(id))
            .collect();
        let reachable = participants.len() - unreachable.len();
        if reachable < usize::from(threshold) {
            let err = SignError::NotEnoughSigners {
                reachable,
                needed: threshold,
                participants: participants.len(),
            };
            warn!(key_id = %key_id, error = %err, unreachable = ?unreachable, "signing refused");
            let err = NodeError::Unavailable {
                message: format!("{err}; unreachable: {unreachable:?}"),
                missing: unreachable,
            };
            return refuse(ctx, Some(request_id), reply, err);
        }
        if self.forwards.contains_key(&request_id) {
            let err = NodeError::Conflict(format!("request {request_id} is already running"));
            return refuse(ctx, Some(request_id), reply, err);
        }
        let candidates: VecDeque<NodeId> = election::rank(&request_id.0, &participants)
            .into_iter()
            .filter(|&id| ctx.peers.reachable(id))
            .collect();
        debug!(request = %request_id, key_id = %key_id, coordinators = ?candidates, "signing request");
        // Failover needs room for one coordinator that never answers (request_ms) and a
        // complete signature by the next (sign_ms < request_ms).
        let deadline = ctx.now + 2 * ctx.config.request_timeout;
        ctx.timers.set(Timer::Forward(request_id), Some(deadline));
        self.forwards.insert(
            request_id,
            Forward {
                key_id,
                messages,
                token,
                group_public_key,
                candidates,
                current: None,
                reply,
                last_error: None,
                started: ctx.now,
            },
        );
        self.next_coordinator(ctx, request_id)
    }

    /// Hands the request to the best remaining coordinator (possibly this node).
    fn next_coordinator(&mut self, ctx: &mut Ctx<'_>, rid: SessionId) -> Option<CoordinateRequest> {
        let fwd = self.forwards.get_mut(&rid)?;
        let Some(next) = fwd.candidates.pop_front() else {
            let err = fwd
                .last_error
                .take()
                .unwrap_or_else(|| NodeError::Unavailable {
                    message: "no coordinator could be reached".into(),
                    missing: vec![],
                });
            self.finish(ctx, rid, Err(err));
            return None;
        };
        fwd.current = Some(next);
        if next == ctx.me() {
            return Some(CoordinateRequest {
                request: rid,
                key_id: fwd.key_id.clone(),
                expected_key: None,
                messages: fwd.messages.clone(),
                token: fwd.token.clone(),
                responder: Responder::Local(rid),
            });
        }
        debug!(request = %rid, coordinator = next, "forwarding signing request");
        let body = Body::SignForward {
            key_id: fwd.key_id.clone(),
            group_public_key: fwd.group_public_key,
            messages: fwd.messages.clone(),
            token: fwd.token.clone(),
        };
        ctx.outbox.request(rid, next, body, ReplyTag::Forward);
        None
    }

    /// A coordinator answered (or failed); `from` is this node for its own coordinator.
    pub fn on_reply(
        &mut self,
        ctx: &mut Ctx<'_>,
        rid: SessionId,
        from: NodeId,
        result: Result<Body, String>,
    ) -> Option<CoordinateRequest> {
        let fwd = self.forwards.get_mut(&rid)?;
        if fwd.current != Some(from) {
            debug!(request = %rid, coordinator = from, "late answer from a replaced coordinator");
            return None;
        }
        match result {
            Ok(Body::SignDone {
                signatures,
                signers,
                coordinator,
            }) => {
                // A remote coordinator is one node: it could return anything, and this node
                // answers its caller for what it passes on, so each signature is checked here
                // against the group key (strictly). This node's own coordinator needs no second
                // check: frost verified every aggregate it made.
                let valid = from == ctx.me()
                    || (signatures.len() == fwd.messages.len()
                        && signatures
                            .iter()
                            .zip(&fwd.messages)
                            .all(|(s, m)| verifies(&fwd.group_public_key, m, s)));
                if !valid {
                    warn!(request = %rid, coordinator = from, "coordinator returned an invalid signature");
                    fwd.last_error = Some(NodeError::Internal(format!(
                        "coordinator {from} returned an invalid signature"
                    )));
                    ctx.blame(&[from]);
                    return self.next_coordinator(ctx, rid);
                }
                let response = BatchSignResponse {
                    signatures: signatures.iter().map(hex::encode).collect(),
                    group_public_key: hex::encode(fwd.group_public_key),
                    signers,
                    coordinator,
                };
                self.finish(ctx, rid, Ok(response));
                None
            }
            Ok(Body::SignRefused { refused_by }) => {
                let refused_by: BTreeMap<NodeId, String> = refused_by.into_iter().collect();
                let err = NodeError::Refused {
                    message: format!(
                        "fewer than the threshold of signers approved the request; refused by nodes {:?}",
                        refused_by.keys().collect::<Vec<_>>()
                    ),
                    refused_by,
                };
                self.finish(ctx, rid, Err(err));
                None
            }
            Ok(Body::Refused { kind, reason }) => {
                let err = from_refusal(from, kind, &reason);
                if next_may_succeed(kind) {
                    warn!(request = %rid, coordinator = from, %reason, "coordinator failed; trying the next one");
                    fwd.last_error = Some(err);
                    self.next_coordinator(ctx, rid)
                } else {
                    self.finish(ctx, rid, Err(err));
                    None
                }
            }
            Ok(other) => {
                warn!(request = %rid, coordinator = from, kind = other.kind(), "unexpected answer to a signing request");
                self.next_coordinator(ctx, rid)
            }
            Err(reason) => {
                warn!(request = %rid, coordinator = from, %reason, "coordinator unreachable; trying the next one");
                fwd.last_error = Some(NodeError::Unavailable {
                    message: format!("coordinator {from} failed: {reason}"),
                    missing: vec![from],
                });
                self.next_coordinator(ctx, rid)
            }
        }
    }

    /// The request's deadline passed.
    pub fn on_timer(&mut self, ctx: &mut Ctx<'_>, rid: SessionId) {
        let Some(fwd) = self.forwards.get(&rid) else {
            return;
        };
        let missing: Vec<NodeId> = fwd.current.into_iter().collect();
        let err = NodeError::Timeout {
            message: format!(
                "no signature within {:?}; coordinator {missing:?} did not answer",
                2 * ctx.config.request_timeout
            ),
            missing,
        };
        warn!(request = %rid, error = %err, "signing request timed out");
        self.finish(ctx, rid, Err(err));
    }

    fn finish(
        &mut self,
        ctx: &mut Ctx<'_>,
        rid: SessionId,
        result: Result<BatchSignResponse, NodeError>,
    ) {
        let Some(fwd) = self.forwards.remove(&rid) else {
            return;
        };
        ctx.timers.set(Timer::Forward(rid), None);
        let failure = result.as_ref().err().map(|e| e.kind().as_str());
        let seconds = ctx.now.saturating_duration_since(fwd.started).as_secs_f64();
        ctx.metrics.sign_ended(failure, seconds);
        // As `frostnode_sign_duration_seconds`: requests answered with signatures.
        if result.is_ok() {
            let unix = ctx.unix_seconds();
            ctx.journal.sign_latency(unix, seconds);
        }
        let (key_id, count) = (&fwd.key_id, fwd.messages.len());
        journal_sign(ctx, rid, key_id, count, fwd.current, fwd.started, &result);
        let _ = fwd.reply.send(result);
    }
}

/// Keeps a signing request this node received, as it ended, in the journal.
fn journal_sign(
    ctx: &mut Ctx<'_>,
    rid: SessionId,
    key_id: &str,
    messages: usize,
    coordinator: Option<NodeId>,
    started: Instant,
    result: &Result<BatchSignResponse, NodeError>,
) {
    let (mut culprits, mut missing) = (Vec::new(), Vec::new());
    let (coordinator, nodes) = match result {
        Ok(r) => (Some(r.coordinator), r.signers.clone()),
        Err(e) => {
            match e {
                NodeError::Aborted { culprits: c, .. } => culprits = c.clone(),
                NodeError::Unavailable { missing: m, .. }
                | NodeError::Timeout { missing: m, .. } => missing = m.clone(),
                _ => {}
            }
            (coordinator, Vec::new())
        }
    };
    let took = ctx.now.saturating_duration_since(started);
    let record = SessionRecord {
        coordinator,
        nodes,
        messages: Some(messages),
        outcome: result
            .as_ref()
            .err()
            .map_or("ok", |e| e.kind().as_str())
            .to_string(),
        error: result.as_ref().err().map(|e| e.to_string()),
        culprits,
        missing,
        ..SessionRecord::ended(
            "sign",
            Role::Received,
            &rid.0,
            key_id,
            ctx.unix_seconds(),
            took,
        )
    };
    ctx.journal.record(record);
}

fn verifies(group_key: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    let Ok(sig) = <[u8; 64]>::try_from(signature) else {
        return false;
    };
    ed25519_dalek::VerifyingKey::from_bytes(group_key)
        .map(|vk| {
            vk.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig))
                .is_ok()
        })
        .unwrap_or(false)
}
