//! The node's signing driver: elects a coordinator for each request and forwards it there (or
//! coordinates itself), runs the coordinator state machine, and answers as a signer.

use std::collections::VecDeque;

use libp2p::request_response::ResponseChannel;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{Input, Node, NodeError, Session};
use crate::signing::coordinator::{Coordinator, Effect, SignOutput, SignParams};
use crate::signing::{election, SignError};
use crate::wire::{self, Body, Envelope, NodeId, SessionId};

/// Most signing requests one peer may have this node coordinate at once.
const MAX_FORWARDS_PER_PEER: usize = 256;

/// Largest message a node signs.
pub const MAX_SIGN_MESSAGE: usize = 64 * 1024;

/// Answer of a signing request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignResponse {
    /// 64-byte Ed25519 signature, hex.
    pub signature: String,
    /// Group public key, hex.
    pub group_public_key: String,
    /// Signers whose shares make up the signature.
    pub signers: Vec<NodeId>,
    /// The node that coordinated.
    pub coordinator: NodeId,
}

/// Where a coordinated session's result goes.
pub(super) enum Responder {
    /// A request this node received itself (the entry in `forwards` with this id).
    Local(SessionId),
    /// A peer that forwarded the request.
    Peer(ResponseChannel<Vec<u8>>),
}

/// A signing session this node coordinates.
pub(super) struct Coordination {
    pub(super) coordinator: Coordinator,
    pub(super) key_id: String,
    /// The peer that forwarded the request, if any.
    forwarded_by: Option<NodeId>,
    responder: Responder,
    started: Instant,
}

/// A request received by this node, travelling down the coordinator ranking.
pub(super) struct Forward {
    key_id: String,
    message: Vec<u8>,
    candidates: VecDeque<NodeId>,
    reply: Option<oneshot::Sender<Result<SignResponse, NodeError>>>,
    last_error: Option<NodeError>,
    started: Instant,
}

fn session_for(request_id: &SessionId, coordinator: NodeId) -> SessionId {
    let mut h = Sha256::new();
    h.update(b"frostnode/sign-session/v1");
    h.update(request_id.0);
    h.update(coordinator.to_be_bytes());
    SessionId(h.finalize().into())
}

fn refused(kind: &str, reason: impl Into<String>) -> Body {
    Body::Refused {
        kind: kind.into(),
        reason: reason.into(),
    }
}

impl NodeError {
    fn from_refusal(from: NodeId, kind: &str, reason: &str) -> NodeError {
        let message = format!("coordinator {from}: {reason}");
        match kind {
            "not_found" => NodeError::NotFound(message),
            "bad_request" => NodeError::BadRequest(message),
            "unavailable" => NodeError::Unavailable {
                message,
                missing: vec![],
            },
            "timeout" => NodeError::Timeout {
                message,
                missing: vec![],
            },
            _ => NodeError::Aborted {
                message,
                kind: kind.into(),
                culprits: vec![],
            },
        }
    }
}

impl Node {
    pub(super) fn count_culprits(&mut self, culprits: &[NodeId]) {
        for id in culprits {
            *self.culprits.entry(*id).or_default() += 1;
            self.metrics.culprit(*id);
        }
    }

    fn reachable(&self, id: NodeId) -> bool {
        id == self.config.id || self.connected.contains(&id)
    }

    // ----- Receiving node: elect and forward --------------------------------------------

    pub(super) fn start_sign(
        &mut self,
        key_id: String,
        message: Vec<u8>,
        reply: oneshot::Sender<Result<SignResponse, NodeError>>,
    ) {
        self.metrics.sign_started();
        let refuse = |reply: oneshot::Sender<Result<SignResponse, NodeError>>, err: NodeError| {
            self.metrics.sign_ended(Some(&err.kind()), 0.0);
            let _ = reply.send(Err(err));
        };
        let Some(key) = self.keystore.get(&key_id) else {
            let err = NodeError::NotFound(format!("no key {key_id:?} on node {}", self.config.id));
            refuse(reply, err);
            return;
        };
        if message.len() > MAX_SIGN_MESSAGE {
            let err = NodeError::BadRequest(format!(
                "message of {} bytes exceeds the limit of {MAX_SIGN_MESSAGE} bytes",
                message.len()
            ));
            refuse(reply, err);
            return;
        }
        let participants = key.participants.clone();
        let threshold = key.threshold;
        let unreachable: Vec<NodeId> = participants
            .iter()
            .copied()
            .filter(|&id| !self.reachable(id))
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
            refuse(reply, err);
            return;
        }
        let request_id = SessionId(rand::random());
        let candidates: VecDeque<NodeId> = election::rank(&request_id.0, &participants)
            .into_iter()
            .filter(|&id| self.reachable(id))
            .collect();
        debug!(request = %request_id, key_id = %key_id, coordinators = ?candidates, "signing request");
        self.forwards.insert(
            request_id,
            Forward {
                key_id,
                message,
                candidates,
                reply: Some(reply),
                last_error: None,
                started: Instant::now(),
            },
        );
        self.next_coordinator(request_id);
    }

    /// Hands the request to the best remaining coordinator (possibly this node).
    fn next_coordinator(&mut self, rid: SessionId) {
        let Some(fwd) = self.forwards.get_mut(&rid) else {
            return;
        };
        let Some(next) = fwd.candidates.pop_front() else {
            let err = fwd
                .last_error
                .take()
                .unwrap_or_else(|| NodeError::Unavailable {
                    message: "no coordinator could be reached".into(),
                    missing: vec![],
                });
            self.finish_forward(rid, Err(err));
            return;
        };
        let (key_id, message) = (fwd.key_id.clone(), fwd.message.clone());
        if next == self.config.id {
            self.coordinate(rid, key_id, None, message, Responder::Local(rid), None);
            return;
        }
        let Some(group_public_key) = self
            .keystore
            .get(&key_id)
            .and_then(|k| gpk_bytes(&k.group_public_key))
        else {
            self.finish_forward(
                rid,
                Err(NodeError::Internal("stored group key is corrupt".into())),
            );
            return;
        };
        debug!(request = %rid, coordinator = next, "forwarding signing request");
        let body = Body::SignForward {
            key_id,
            group_public_key,
            message,
        };
        self.request(rid, next, body);
    }

    pub(super) fn on_forward_reply(
        &mut self,
        rid: SessionId,
        from: NodeId,
        result: Result<Body, String>,
    ) {
        match result {
            Ok(Body::SignDone {
                signature,
                signers,
                coordinator,
            }) => {
                let Some(fwd) = self.forwards.get(&rid) else {
                    return;
                };
                let gpk = self
                    .keystore
                    .get(&fwd.key_id)
                    .map(|k| k.group_public_key.clone())
                    .unwrap_or_default();
                // Never pass on a signature that does not verify, whoever produced it (our own
                // coordinator already checked its aggregate).
                if from != self.config.id && !verifies(&gpk, &fwd.message, &signature) {
                    warn!(request = %rid, coordinator = from, "coordinator returned an invalid signature");
                    self.count_culprits(&[from]);
                    if let Some(f) = self.forwards.get_mut(&rid) {
                        f.last_error = Some(NodeError::Internal(format!(
                            "coordinator {from} returned an invalid signature"
                        )));
                    }
                    self.next_coordinator(rid);
                    return;
                }
                self.finish_forward(
                    rid,
                    Ok(SignResponse {
                        signature: hex::encode(signature),
                        group_public_key: gpk,
                        signers,
                        coordinator,
                    }),
                );
            }
            Ok(Body::Refused { kind, reason }) => {
                let err = NodeError::from_refusal(from, &kind, &reason);
                if matches!(
                    kind.as_str(),
                    "timeout" | "unavailable" | "not_found" | "key_mismatch" | "busy"
                ) {
                    warn!(request = %rid, coordinator = from, %reason, "coordinator failed; trying the next one");
                    if let Some(f) = self.forwards.get_mut(&rid) {
                        f.last_error = Some(err);
                    }
                    self.next_coordinator(rid);
                } else {
                    self.finish_forward(rid, Err(err));
                }
            }
            Ok(other) => {
                warn!(request = %rid, coordinator = from, kind = other.kind(), "unexpected answer to a signing request");
                self.next_coordinator(rid);
            }
            Err(reason) => {
                warn!(request = %rid, coordinator = from, %reason, "coordinator unreachable; trying the next one");
                if let Some(f) = self.forwards.get_mut(&rid) {
                    f.last_error = Some(NodeError::Unavailable {
                        message: format!("coordinator {from} failed: {reason}"),
                        missing: vec![from],
                    });
                }
                self.next_coordinator(rid);
            }
        }
    }

    fn finish_forward(&mut self, rid: SessionId, result: Result<SignResponse, NodeError>) {
        if let Some(mut fwd) = self.forwards.remove(&rid) {
            let failure = result.as_ref().err().map(NodeError::kind);
            self.metrics
                .sign_ended(failure.as_deref(), fwd.started.elapsed().as_secs_f64());
            if let Some(reply) = fwd.reply.take() {
                let _ = reply.send(result);
            }
        }
    }

    // ----- Coordinator ------------------------------------------------------------------

    pub(super) fn coordinate(
        &mut self,
        rid: SessionId,
        key_id: String,
        expected_key: Option<[u8; 32]>,
        message: Vec<u8>,
        responder: Responder,
        forwarded_by: Option<NodeId>,
    ) {
        let me = self.config.id;
        let sid = session_for(&rid, me);
        if let Some(peer) = forwarded_by {
            let open = self
                .sessions
                .values()
                .filter(|s| matches!(s, Session::Coordinate(c) if c.forwarded_by == Some(peer)))
                .count();
            if open >= MAX_FORWARDS_PER_PEER {
                warn!(
                    peer,
                    open, "too many signing requests from one peer; refused"
                );
                let body = refused(
                    "busy",
                    format!("node {me} coordinates {open} requests for node {peer}"),
                );
                self.respond_to(responder, sid, body);
                return;
            }
        }
        let refusal = match self.keystore.get(&key_id) {
            None => Some(refused(
                "not_found",
                format!("no key {key_id:?} on node {me}"),
            )),
            Some(k) if expected_key.is_some() && gpk_bytes(&k.group_public_key) != expected_key => {
                Some(refused(
                    "key_mismatch",
                    format!("node {me} holds a different group key under {key_id:?}"),
                ))
            }
            Some(_) if message.len() > MAX_SIGN_MESSAGE => {
                Some(refused("bad_request", "message too long"))
            }
            Some(_) if self.sessions.contains_key(&sid) => {
                Some(refused("bad_request", "request already being coordinated"))
            }
            Some(_) => None,
        };
        if let Some(body) = refusal {
            self.respond_to(responder, sid, body);
            return;
        }
        let Some(key) = self.keystore.get(&key_id) else {
            return;
        };
        let Some(group_public_key) = gpk_bytes(&key.group_public_key) else {
            self.respond_to(
                responder,
                sid,
                refused("internal", "stored group key is corrupt"),
            );
            return;
        };
        // This node signs first (no network round trip), then the others in ranking order.
        let mut preference = vec![me];
        preference.extend(
            election::rank(&rid.0, &key.participants)
                .into_iter()
                .filter(|&id| id != me && self.connected.contains(&id)),
        );
        let params = SignParams {
            session: sid,
            me,
            key_id: key_id.clone(),
            message,
            threshold: key.threshold,
            participants: key.participants.clone(),
            public_key_package: key.public_key_package.clone(),
            group_public_key,
        };
        let now = Instant::now();
        let (coordinator, effects) = Coordinator::start(
            params,
            preference,
            now.into_std(),
            // Time for the first signer set and two replacements within the signing deadline.
            self.config.sign_timeout / 3,
            (now + self.config.sign_timeout).into_std(),
        );
        debug!(session = %sid, request = %rid, key_id = %key_id, "coordinating");
        self.sessions.insert(
            sid,
            Session::Coordinate(Box::new(Coordination {
                coordinator,
                key_id,
                forwarded_by,
                responder,
                started: now,
            })),
        );
        self.apply_sign(sid, effects);
    }

    pub(super) fn apply_sign(&mut self, sid: SessionId, effects: Vec<Effect>) {
        let mut queue: VecDeque<Effect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            match effect {
                Effect::Send { to, body } if to == self.config.id => {
                    // Our own share: answered locally, without encoding round trips.
                    queue.extend(self.sign_locally(sid, body));
                }
                Effect::Send { to, body } => self.request(sid, to, body),
                Effect::Done(out) => self.end_coordination(sid, Ok(out)),
                Effect::Failed { error, culprits } => {
                    self.count_culprits(&culprits);
                    self.end_coordination(sid, Err((error, culprits)))
                }
            }
        }
    }

    /// This node's signer answering its own coordinator.
    fn sign_locally(&mut self, sid: SessionId, body: Body) -> Vec<Effect> {
        let me = self.config.id;
        let now = Instant::now().into_std();
        let Some(Session::Coordinate(c)) = self.sessions.get(&sid) else {
            return Vec::new();
        };
        let key = self.keystore.get(&c.key_id);
        let result = match (&body, key) {
            (
                Body::CommitRequest {
                    attempt,
                    key_id,
                    message,
                    ..
                },
                Some(key),
            ) => self
                .signer
                .commit(now, sid, *attempt, me, key_id, message, &key.key_package)
                .map(|commitments| (*attempt, Ok(commitments))),
            (Body::SignRequest { attempt, .. }, Some(key)) => match c.coordinator.signing_package()
            {
                Some(package) => self
                    .signer
                    .sign_package(
                        now,
                        sid,
                        *attempt,
                        me,
                        package,
                        &key.key_package,
                        &key.participants,
                    )
                    .map(|share| (*attempt, Err(share))),
                None => return Vec::new(),
            },
            _ => return Vec::new(),
        };
        let Some(Session::Coordinate(c)) = self.sessions.get_mut(&sid) else {
            return Vec::new();
        };
        match result {
            Ok((attempt, Ok(commitments))) => {
                c.coordinator.on_commitments(now, me, attempt, commitments)
            }
            Ok((attempt, Err(share))) => {
                c.coordinator
                    .on_reply(now, me, Body::Share { attempt, share })
            }
            Err(e) => {
                warn!(session = %sid, error = %e, "this node's own signer refused");
                let attempt = c.coordinator.attempt();
                c.coordinator.on_failure(now, me, attempt)
            }
        }
    }

    fn end_coordination(
        &mut self,
        sid: SessionId,
        result: Result<SignOutput, (SignError, Vec<NodeId>)>,
    ) {
        let Some(Session::Coordinate(c)) = self.sessions.remove(&sid) else {
            return;
        };
        self.signer.forget(self.config.id, sid);
        let elapsed_ms = c.started.elapsed().as_secs_f64() * 1e3;
        let body = match result {
            Ok(out) => {
                if !out.culprits.is_empty() {
                    self.count_culprits(&out.culprits);
                    warn!(
                        session = %sid,
                        key_id = %c.key_id,
                        culprits = ?out.culprits,
                        "signers sent invalid signature shares; signed without them"
                    );
                }
                info!(session = %sid, key_id = %c.key_id, signers = ?out.signers, elapsed_ms, "signed");
                Body::SignDone {
                    signature: out.signature.to_vec(),
                    signers: out.signers,
                    coordinator: self.config.id,
                }
            }
            Err((error, culprits)) => {
                warn!(session = %sid, key_id = %c.key_id, culprits = ?culprits, error = %error, "signing failed");
                refused(error.kind(), error.to_string())
            }
        };
        self.respond_to(c.responder, sid, body);
    }

    fn respond_to(&mut self, responder: Responder, sid: SessionId, body: Body) {
        match responder {
            Responder::Peer(channel) => self.respond(channel, sid, body),
            // Coordinated here for a request received here: same path as a remote answer.
            Responder::Local(rid) => self.on_forward_reply(rid, self.config.id, Ok(body)),
        }
    }

    pub(super) fn on_signer_reply(
        &mut self,
        sid: SessionId,
        from: NodeId,
        result: Result<Body, String>,
    ) {
        let Some(Session::Coordinate(c)) = self.sessions.get_mut(&sid) else {
            return;
        };
        let now = Instant::now().into_std();
        let effects = match result {
            Ok(Body::Refused { kind, reason }) => {
                warn!(session = %sid, signer = from, %kind, %reason, "signer refused");
                let attempt = c.coordinator.attempt();
                c.coordinator.on_failure(now, from, attempt)
            }
            Ok(body) => c.coordinator.on_reply(now, from, body),
            Err(reason) => {
                debug!(session = %sid, signer = from, %reason, "signer request failed");
                let attempt = c.coordinator.attempt();
                c.coordinator.on_failure(now, from, attempt)
            }
        };
        self.apply_sign(sid, effects);
    }

    // ----- Signer -------------------------------------------------------------------------

    /// Answers a coordinator's `CommitRequest` or `SignRequest`.
    pub(super) fn serve_signer(&mut self, sid: SessionId, coordinator: NodeId, body: Body) -> Body {
        let me = self.config.id;
        match body {
            Body::CommitRequest {
                attempt,
                key_id,
                group_public_key,
                message,
            } => {
                let Some(key) = self.keystore.get(&key_id) else {
                    return refused("not_found", format!("no key {key_id:?} on node {me}"));
                };
                if gpk_bytes(&key.group_public_key) != Some(group_public_key) {
                    return refused(
                        "key_mismatch",
                        format!("node {me} holds a different group key under {key_id:?}"),
                    );
                }
                if !key.participants.contains(&coordinator) {
                    return refused(
                        "bad_request",
                        format!("node {coordinator} is not a participant of {key_id:?}"),
                    );
                }
                if message.len() > MAX_SIGN_MESSAGE {
                    return refused("bad_request", "message too long");
                }
                match self.signer.commit(
                    Instant::now().into_std(),
                    sid,
                    attempt,
                    coordinator,
                    &key_id,
                    &message,
                    &key.key_package,
                ) {
                    Ok(commitments) => match commitments.serialize() {
                        Ok(commitments) => Body::Commitment {
                            attempt,
                            commitments,
                        },
                        Err(e) => refused("internal", e.to_string()),
                    },
                    Err(e) => {
                        warn!(session = %sid, coordinator, error = %e, "commit refused");
                        refused("bad_request", e.to_string())
                    }
                }
            }
            Body::SignRequest {
                attempt,
                signing_package,
            } => {
                let key_id = self
                    .signer
                    .key_of(coordinator, sid, attempt)
                    .map(str::to_string);
                let Some(key) = key_id.as_deref().and_then(|k| self.keystore.get(k)) else {
                    warn!(session = %sid, coordinator, attempt, "signing package for an unknown or finished session refused (nonces are single use)");
                    return refused("bad_request", format!("no commitment for session {sid} attempt {attempt}: unknown, expired or already signed"));
                };
                match self.signer.sign(
                    Instant::now().into_std(),
                    sid,
                    attempt,
                    coordinator,
                    &signing_package,
                    &key.key_package,
                    &key.participants,
                ) {
                    Ok(share) => Body::Share { attempt, share },
                    Err(e) => {
                        warn!(session = %sid, coordinator, error = %e, "signing package refused");
                        refused("bad_request", e.to_string())
                    }
                }
            }
            other => refused(
                "bad_request",
                format!("{} is not a signer request", other.kind()),
            ),
        }
    }

    /// Sends a request whose answer comes back as [`Input::Reply`].
    pub(super) fn request(&self, session: SessionId, to: NodeId, body: Body) {
        let Some(&peer) = self.pid_by_id.get(&to) else {
            warn!(session = %session, to, "no such peer");
            return;
        };
        let bytes = match wire::encode(&Envelope::new(session, self.config.id, body)) {
            Ok(b) => b,
            Err(e) => {
                warn!(session = %session, error = %e, "cannot encode request");
                return;
            }
        };
        let net = self.net.clone();
        let inbox = self.inbox.clone();
        let max = self.config.max_message_size;
        tokio::spawn(async move {
            let result = match net.request(peer, bytes).await {
                Ok(resp) => match wire::decode(&resp, max) {
                    Ok(env) if env.from == to => Ok(env.body),
                    Ok(env) => Err(format!("response claims to come from node {}", env.from)),
                    Err(e) => Err(format!("bad response: {e}")),
                },
                Err(e) => Err(e.to_string()),
            };
            let _ = inbox
                .send(Input::Reply {
                    session,
                    from: to,
                    result,
                })
                .await;
        });
    }
}

fn gpk_bytes(hex_key: &str) -> Option<[u8; 32]> {
    hex::decode(hex_key).ok()?.try_into().ok()
}

fn verifies(gpk_hex: &str, message: &[u8], signature: &[u8]) -> bool {
    let (Ok(pk), Ok(sig)) = (
        <[u8; 32]>::try_from(hex::decode(gpk_hex).unwrap_or_default().as_slice()),
        <[u8; 64]>::try_from(signature),
    ) else {
        return false;
    };
    ed25519_dalek::VerifyingKey::from_bytes(&pk)
        .map(|vk| {
            vk.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig))
                .is_ok()
        })
        .unwrap_or(false)
}
