//! The policy gate: with a `[policy] command` configured, a signing request waits here for this
//! node's verdict before this node commits nonces for it, as a signer asked by a coordinator or
//! as the coordinator itself. The command runs once per request (and token), off the node task;
//! the verdict is remembered for as long as the token can be used, so the second check before
//! the share leaves, and retries, ask the remembered verdict. Only requests whose client token
//! passed reach the command.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use libp2p::request_response::ResponseChannel;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::checks;
use super::context::Ctx;
use super::coordinator::CoordinateRequest;
use super::error::Refusal;
use super::roles::Roles;
use crate::auth::{MessageBinding, Request, CLOCK_SKEW_SECS, MAX_LIFETIME_SECS};
use crate::policy::{PolicyRequest, PolicyRunner, Verdict};
use crate::signing::election;
use crate::wire::{Body, ErrorKind, NodeId, SessionId};

/// How long a verdict is remembered: as long as a token can be used.
const VERDICT_TTL: Duration = Duration::from_secs(MAX_LIFETIME_SECS + 2 * CLOCK_SKEW_SECS);
/// Most verdicts remembered at once (the oldest go first).
const MAX_VERDICTS: usize = 100_000;
/// Most requests waiting for the command at once; more are refused as busy.
const MAX_PENDING: usize = 1024;
/// Most messages waiting for one request's verdict (retries through other coordinators).
const MAX_WAITING_PER_REQUEST: usize = 8;

/// One request as the policy sees it: its id and the hash of its client token.
pub type GateKey = (SessionId, [u8; 32]);

/// A request waiting for the verdict.
pub enum Held {
    /// A remote coordinator's `CommitRequest` or `SignNow`, answered on `channel`.
    Commit {
        /// The coordinator's session.
        session: SessionId,
        /// The coordinator.
        from: NodeId,
        /// The `CommitRequest`.
        body: Body,
        /// Where the answer goes.
        channel: ResponseChannel<Vec<u8>>,
    },
    /// A request this node is to coordinate (and sign first).
    Coordinate(CoordinateRequest),
}

struct Ask<'a> {
    request_id: SessionId,
    key_id: &'a str,
    messages: &'a [Vec<u8>],
    token: Option<&'a str>,
    /// The group key the coordinator holds, for a remote coordinator's request.
    expected_key: Option<[u8; 32]>,
    /// The remote coordinator, and whether its session is the one its request id derives.
    coordinator: Option<(NodeId, bool)>,
}

impl Held {
    fn ask(&self) -> Option<Ask<'_>> {
        match self {
            Held::Commit {
                session,
                from,
                body:
                    Body::CommitRequest {
                        key_id,
                        group_public_key,
                        messages,
                        request_id,
                        token,
                        ..
                    },
                ..
            } => Some(Ask {
                request_id: *request_id,
                key_id,
                messages,
                token: token.as_deref(),
                expected_key: Some(*group_public_key),
                coordinator: Some((
                    *from,
                    session.0 == election::session_id(&request_id.0, *from),
                )),
            }),
            Held::Commit {
                session,
                from,
                body:
                    Body::SignNow {
                        key_id,
                        group_public_key,
                        messages,
                        request_id,
                        token,
                        ..
                    },
                ..
            } => Some(Ask {
                request_id: *request_id,
                key_id,
                messages,
                token: token.as_deref(),
                expected_key: Some(*group_public_key),
                coordinator: Some((
                    *from,
                    session.0 == election::session_id(&request_id.0, *from),
                )),
            }),
            Held::Commit { .. } => None,
            Held::Coordinate(r) => Some(Ask {
                request_id: r.request,
                key_id: &r.key_id,
                messages: &r.messages,
                token: r.token.as_deref(),
                expected_key: r.expected_key,
                coordinator: None,
            }),
        }
    }
}

/// A verdict, back from the command.
#[derive(Debug)]
pub struct Decided {
    key: GateKey,
    verdict: Verdict,
    client: String,
    key_id: String,
    elapsed: Duration,
}

/// This node's policy verdicts and the requests waiting for one.
pub struct PolicyGate {
    runner: Option<PolicyRunner>,
    verdicts: HashMap<GateKey, Verdict>,
    order: VecDeque<(Instant, GateKey)>,
    pending: HashMap<GateKey, Vec<Held>>,
    decided: mpsc::Sender<Decided>,
}

impl PolicyGate {
    /// A gate that asks `runner` (none: every request passes), reporting on `decided`.
    pub fn new(runner: Option<PolicyRunner>, decided: mpsc::Sender<Decided>) -> Self {
        PolicyGate {
            runner,
            verdicts: HashMap::new(),
            order: VecDeque::new(),
            pending: HashMap::new(),
            decided,
        }
    }

    /// Whether the request with this token may be signed for, as far as the policy goes.
    pub fn check(&self, request_id: SessionId, token: Option<&str>) -> Result<(), Refusal> {
        if self.runner.is_none() {
            return Ok(());
        }
        let Some(token) = token else {
            return Err(Refusal::new(ErrorKind::Unauthorized, "no client token"));
        };
        match self.verdicts.get(&key(request_id, token)) {
            Some(Verdict::Approve) => Ok(()),
            Some(Verdict::Refuse(reason)) => Err(Refusal::new(ErrorKind::Refused, reason.clone())),
            None => Err(Refusal::new(
                ErrorKind::Busy,
                "the policy command has not decided on this request",
            )),
        }
    }

    /// Requests waiting for the command now.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, k)) = self.order.front() {
            if now.saturating_duration_since(*at) < VERDICT_TTL
                && self.verdicts.len() <= MAX_VERDICTS
            {
                break;
            }
            self.verdicts.remove(k);
            self.order.pop_front();
        }
    }
}

fn key(request_id: SessionId, token: &str) -> GateKey {
    (request_id, Sha256::digest(token.as_bytes()).into())
}

/// Lets `held` go on now (returned), or keeps it until the policy command has decided on its
/// request (`None`; it comes back through [`on_decided`]). Requests without a valid token go
/// on at once: the role they go to refuses them, and the command never sees them.
pub fn admit(ctx: &mut Ctx<'_>, held: Held) -> Option<Held> {
    let Some(runner) = ctx.policy.runner.clone() else {
        return Some(held);
    };
    let Some(ask) = held.ask() else {
        return Some(held);
    };
    let Some(token) = ask.token else {
        return Some(held);
    };
    let k = key(ask.request_id, token);
    ctx.policy.expire(ctx.now);
    if ctx.policy.verdicts.contains_key(&k) {
        return Some(held);
    }
    if let Some(waiting) = ctx.policy.pending.get_mut(&k) {
        if waiting.len() >= MAX_WAITING_PER_REQUEST {
            // Refused as busy by its role: one request has no reason to arrive this often.
            return Some(held);
        }
        waiting.push(held);
        return None;
    }
    // The command sees only requests this node would otherwise sign for: the role's own checks
    // (session, key, coordinator, message size) come first, and a refusal goes on at once.
    if ask.coordinator.is_some_and(|(_, session_ok)| !session_ok) {
        return Some(held);
    }
    let checked = checks::signing_key(
        ctx.keystore,
        ctx.config.id,
        ask.key_id,
        ask.expected_key,
        ask.coordinator.map(|(c, _)| c),
        ask.messages,
        None,
    );
    if checked.is_err() {
        return Some(held);
    }
    let binding = MessageBinding::of(ask.messages);
    let request = || Request::sign(ask.key_id, binding, ask.request_id.0);
    let now_unix = ctx.unix_seconds();
    let Ok(client) = checks::authorize(ctx.config, ctx.auth, now_unix, Some(token), request) else {
        return Some(held);
    };
    if ctx.policy.pending.len() >= MAX_PENDING {
        warn!(request = %ask.request_id, "too many requests wait for the policy command; refused as busy");
        return Some(held);
    }
    let doc = PolicyRequest {
        action: "sign".into(),
        node: ctx.me(),
        client: client.clone(),
        key_id: ask.key_id.to_string(),
        message: match ask.messages {
            [one] => Some(hex::encode(one)),
            _ => None,
        },
        messages: ask.messages.iter().map(hex::encode).collect(),
        request_id: hex::encode(ask.request_id.0),
    };
    let tx = ctx.policy.decided.clone();
    let started = ctx.now;
    tokio::spawn(async move {
        let verdict = runner.decide(&doc).await;
        let _ = tx
            .send(Decided {
                key: k,
                verdict,
                client,
                key_id: doc.key_id,
                elapsed: started.elapsed(),
            })
            .await;
    });
    ctx.policy.pending.insert(k, vec![held]);
    None
}

/// Records a verdict and lets the requests that waited for it go on.
pub fn on_decided(ctx: &mut Ctx<'_>, roles: &mut Roles<'_>, d: Decided) {
    let request = d.key.0;
    let elapsed_ms = d.elapsed.as_millis() as u64;
    match &d.verdict {
        Verdict::Approve => {
            info!(%request, client = %d.client, key_id = %d.key_id, elapsed_ms, "policy approved")
        }
        Verdict::Refuse(reason) => {
            warn!(%request, client = %d.client, key_id = %d.key_id, elapsed_ms, %reason, "policy refused")
        }
    }
    ctx.metrics
        .policy_decision(matches!(d.verdict, Verdict::Approve));
    let gate = &mut *ctx.policy;
    gate.expire(ctx.now);
    gate.verdicts.insert(d.key, d.verdict);
    gate.order.push_back((ctx.now, d.key));
    for held in gate.pending.remove(&d.key).unwrap_or_default() {
        release(ctx, roles, held);
    }
}

/// Hands a request that passed the gate to its role.
pub fn release(ctx: &mut Ctx<'_>, roles: &mut Roles<'_>, held: Held) {
    match held {
        Held::Commit {
            session,
            from,
            body,
            channel,
        } => {
            roles.signer.serve(ctx, session, from, body, channel);
        }
        Held::Coordinate(req) => roles.coordinate(ctx, Some(req)),
    }
}
