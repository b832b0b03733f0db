//! The node's DKG driver: starts sessions as initiator, joins them as participant, carries
//! out the state machine's effects and stores confirmed keys.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{default_threshold, KeygenRequest, Node, NodeError, Session, FINISHED_MEMORY};

/// Most DKG sessions one initiator may run with this node at once.
const MAX_DKG_PER_INITIATOR: usize = 8;
use crate::dkg::{DkgError, DkgOutput, DkgParams, DkgSession, Effect};
use crate::keystore::{self, KeyInfo, StoredConfirmation, StoredKey};
use crate::wire::{Body, DkgOutcome, DkgStart, NodeId, SessionId};

/// Bookkeeping of a DKG this node started.
pub(super) struct Initiation {
    pub(super) key_id: String,
    pub(super) participants: Vec<NodeId>,
    pub(super) threshold: u16,
    pub(super) acks: BTreeSet<NodeId>,
    pub(super) begun: bool,
    pub(super) reports: BTreeMap<NodeId, DkgOutcome>,
    pub(super) reply: Option<oneshot::Sender<Result<KeyInfo, NodeError>>>,
    pub(super) deadline: Instant,
}

impl Node {
    // ----- DKG: initiator side -------------------------------------------------------------

    pub(super) fn start_keygen(
        &mut self,
        req: KeygenRequest,
        reply: oneshot::Sender<Result<KeyInfo, NodeError>>,
    ) {
        let params = match self.check_keygen(req) {
            Ok(p) => p,
            Err(e) => {
                info!(error = %e, "key generation refused");
                let _ = reply.send(Err(e));
                return;
            }
        };
        let sid = params.session;
        let deadline = Instant::now() + self.config.dkg_timeout;
        let session = match DkgSession::new(
            params.clone(),
            self.config.id,
            self.keypair.clone(),
            self.peer_keys.clone(),
            deadline.into_std(),
        ) {
            Ok(s) => s,
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
            "starting DKG"
        );
        self.sessions.insert(sid, Session::Dkg(Box::new(session)));
        self.metrics.dkg_started();
        self.dkg_started.insert(sid, Instant::now());
        self.initiations.insert(
            sid,
            Initiation {
                key_id: params.key_id.clone(),
                participants: params.participants.clone(),
                threshold: params.threshold,
                acks: BTreeSet::from([self.config.id]),
                begun: false,
                reports: BTreeMap::new(),
                reply: Some(reply),
                deadline: deadline + self.config.request_timeout,
            },
        );
        let start = Body::DkgStart(DkgStart {
            key_id: params.key_id.clone(),
            participants: params.participants.clone(),
            threshold: params.threshold,
        });
        for &to in params
            .participants
            .iter()
            .filter(|&&id| id != self.config.id)
        {
            self.request(sid, to, start.clone());
        }
    }

    fn check_keygen(&self, req: KeygenRequest) -> Result<DkgParams, NodeError> {
        keystore::validate_key_id(&req.key_id).map_err(|e| NodeError::BadRequest(e.to_string()))?;
        if self.keystore.contains(&req.key_id) {
            return Err(NodeError::Conflict(format!(
                "key {:?} already exists",
                req.key_id
            )));
        }
        if self.key_busy(&req.key_id) {
            return Err(NodeError::Conflict(format!(
                "a DKG for key {:?} is already running",
                req.key_id
            )));
        }
        let all = self.config.all_ids();
        let mut participants = req.participants.unwrap_or_else(|| all.clone());
        participants.sort_unstable();
        let before = participants.len();
        participants.dedup();
        if participants.len() != before {
            return Err(NodeError::BadRequest(
                "participants contain duplicates".into(),
            ));
        }
        let unknown: Vec<NodeId> = participants
            .iter()
            .copied()
            .filter(|id| !all.contains(id))
            .collect();
        if !unknown.is_empty() {
            return Err(NodeError::BadRequest(format!(
                "unknown participants {unknown:?}: configured nodes are {all:?}"
            )));
        }
        if !participants.contains(&self.config.id) {
            return Err(NodeError::BadRequest(format!(
                "this node ({}) must be among the participants; send the request to one of {participants:?}",
                self.config.id
            )));
        }
        let n = participants.len();
        if n < 2 {
            return Err(NodeError::BadRequest(
                "a key needs at least 2 participants".into(),
            ));
        }
        let threshold = req.threshold.unwrap_or_else(|| default_threshold(n));
        if threshold < 2 || usize::from(threshold) > n {
            return Err(NodeError::BadRequest(format!(
                "threshold must satisfy 2 <= threshold <= participants ({n}), got {threshold}"
            )));
        }
        let ready = self.ready_peers();
        let missing: Vec<NodeId> = participants
            .iter()
            .copied()
            .filter(|&id| id != self.config.id && !ready.contains(&id))
            .collect();
        if !missing.is_empty() {
            return Err(NodeError::Unavailable {
                message: format!(
                    "participants {missing:?} are not reachable from node {}",
                    self.config.id
                ),
                missing,
            });
        }
        let mut h = Sha256::new();
        h.update(b"frostnode/dkg-session/v1");
        h.update(req.key_id.as_bytes());
        for id in &participants {
            h.update(id.to_be_bytes());
        }
        h.update(threshold.to_be_bytes());
        h.update(self.config.id.to_be_bytes());
        h.update(rand::random::<[u8; 32]>());
        Ok(DkgParams {
            session: SessionId(h.finalize().into()),
            key_id: req.key_id,
            participants,
            threshold,
            initiator: self.config.id,
        })
    }

    pub(super) fn on_start_reply(
        &mut self,
        sid: SessionId,
        from: NodeId,
        result: Result<Body, String>,
    ) {
        let Some(init) = self.initiations.get_mut(&sid) else {
            return;
        };
        if init.begun {
            return;
        }
        let refusal = match result {
            Ok(Body::Ack) => {
                init.acks.insert(from);
                if init.acks.len() == init.participants.len() {
                    init.begun = true;
                    debug!(session = %sid, "every participant accepted; beginning round 1");
                    self.broadcast(sid, Body::DkgBegin);
                    if let Some(Session::Dkg(s)) = self.sessions.get_mut(&sid) {
                        let effects = s.begin();
                        self.apply(sid, effects);
                    }
                }
                return;
            }
            Ok(Body::Refused { kind, reason }) => match kind.as_str() {
                "conflict" => NodeError::Conflict(format!("node {from} refused: {reason}")),
                "unavailable" | "busy" => NodeError::Unavailable {
                    message: format!("node {from} refused: {reason}"),
                    missing: vec![from],
                },
                _ => NodeError::BadRequest(format!("node {from} refused: {reason}")),
            },
            Ok(other) => NodeError::Internal(format!(
                "node {from} answered DkgStart with {}",
                other.kind()
            )),
            Err(reason) => NodeError::Unavailable {
                message: format!("node {from} did not accept the DKG: {reason}"),
                missing: vec![from],
            },
        };
        warn!(session = %sid, error = %refusal, "DKG not started");
        if let Some(mut init) = self.initiations.remove(&sid) {
            if let Some(reply) = init.reply.take() {
                let _ = reply.send(Err(refusal.clone()));
            }
        }
        if let Some(Session::Dkg(s)) = self.sessions.get_mut(&sid) {
            let effects = s.abort(DkgError::InvalidParams(refusal.to_string()));
            self.apply(sid, effects);
        }
    }

    pub(super) fn on_report(&mut self, sid: SessionId, from: NodeId, outcome: DkgOutcome) {
        let Some(init) = self.initiations.get_mut(&sid) else {
            debug!(session = %sid, from, "result for a session this node no longer tracks");
            return;
        };
        if !init.participants.contains(&from) {
            return;
        }
        if let DkgOutcome::Failed { reason, .. } = &outcome {
            warn!(session = %sid, node = from, %reason, "participant reports DKG failure");
        }
        init.reports.insert(from, outcome);
        // A failure that explains itself: it names culprits, or who went missing.
        let explained = |o: &DkgOutcome| {
            matches!(o, DkgOutcome::Failed { culprits, missing, .. }
                if !culprits.is_empty() || !missing.is_empty())
        };
        // Answer once everyone reported, or once our own session has ended and some report
        // explains the failure. A node that merely followed another's abort waits for the
        // aborting node's own report, so the answer names the culprit it found.
        let all_in = init.reports.len() == init.participants.len();
        let own_in = init.reports.contains_key(&self.config.id);
        if !(all_in || (own_in && init.reports.values().any(explained))) {
            return;
        }
        let Some(mut init) = self.initiations.remove(&sid) else {
            return;
        };
        let result = self.conclude(&init);
        if let Some(reply) = init.reply.take() {
            let _ = reply.send(result);
        }
    }

    fn conclude(&self, init: &Initiation) -> Result<KeyInfo, NodeError> {
        // The report that names culprits explains the most (ours first), then any failure.
        let mut failures: Vec<(&NodeId, &DkgOutcome)> = init
            .reports
            .iter()
            .filter(|(_, o)| matches!(o, DkgOutcome::Failed { .. }))
            .collect();
        failures.sort_by_key(|(id, o)| {
            let blames = matches!(o, DkgOutcome::Failed { culprits, .. } if !culprits.is_empty());
            (!blames, **id != self.config.id)
        });
        if let Some((
            id,
            DkgOutcome::Failed {
                reason,
                culprits,
                missing,
            },
        )) = failures.first()
        {
            let message = if **id == self.config.id {
                format!("DKG for key {:?} failed: {reason}", init.key_id)
            } else {
                format!(
                    "DKG for key {:?} failed; node {id} reports: {reason}",
                    init.key_id
                )
            };
            if !missing.is_empty() && culprits.is_empty() {
                return Err(NodeError::Timeout {
                    message,
                    missing: missing.clone(),
                });
            }
            return Err(NodeError::Aborted {
                message,
                kind: "dkg_failed".into(),
                culprits: culprits.clone(),
            });
        }
        let keys: BTreeSet<[u8; 32]> = init
            .reports
            .values()
            .filter_map(|o| match o {
                DkgOutcome::Stored { group_public_key } => Some(*group_public_key),
                _ => None,
            })
            .collect();
        if keys.len() != 1 {
            return Err(NodeError::Aborted {
                message: format!(
                    "participants stored different group keys for {:?}",
                    init.key_id
                ),
                kind: "inconsistent".into(),
                culprits: Vec::new(),
            });
        }
        match self.keystore.get(&init.key_id) {
            Some(k) => {
                debug_assert_eq!(k.threshold, init.threshold);
                Ok(k.info())
            }
            None => Err(NodeError::Internal("key missing after DKG".into())),
        }
    }

    // ----- DKG: participant side ----------------------------------------------------------

    pub(super) fn on_dkg_start(&mut self, sid: SessionId, from: NodeId, start: DkgStart) -> Body {
        let refuse = |kind: &str, reason: String| Body::Refused {
            kind: kind.into(),
            reason,
        };
        if let Err(e) = keystore::validate_key_id(&start.key_id) {
            return refuse("bad_request", e.to_string());
        }
        if self.sessions.contains_key(&sid) || self.finished.contains_key(&sid) {
            return refuse("conflict", format!("session {sid} is already known"));
        }
        let running = self
            .sessions
            .values()
            .filter(|s| matches!(s, Session::Dkg(d) if d.params().initiator == from))
            .count();
        if running >= MAX_DKG_PER_INITIATOR {
            warn!(
                peer = from,
                running, "too many DKG sessions from one initiator; refused"
            );
            return refuse(
                "busy",
                format!(
                    "node {from} already runs {running} DKGs with node {}",
                    self.config.id
                ),
            );
        }
        if self.keystore.contains(&start.key_id) {
            return refuse(
                "conflict",
                format!(
                    "key {:?} already exists on node {}",
                    start.key_id, self.config.id
                ),
            );
        }
        if self.key_busy(&start.key_id) {
            return refuse(
                "conflict",
                format!(
                    "a DKG for key {:?} is already running on node {}",
                    start.key_id, self.config.id
                ),
            );
        }
        let all = self.config.all_ids();
        if let Some(unknown) = start.participants.iter().find(|id| !all.contains(id)) {
            return refuse(
                "bad_request",
                format!(
                    "participant {unknown} is not configured on node {}",
                    self.config.id
                ),
            );
        }
        if !start.participants.contains(&from) {
            return refuse("bad_request", "the initiator must be a participant".into());
        }
        let ready = self.ready_peers();
        let missing: Vec<NodeId> = start
            .participants
            .iter()
            .copied()
            .filter(|&id| id != self.config.id && !ready.contains(&id))
            .collect();
        if !missing.is_empty() {
            return refuse(
                "unavailable",
                format!(
                    "node {} cannot reach participants {missing:?}",
                    self.config.id
                ),
            );
        }
        let params = DkgParams {
            session: sid,
            key_id: start.key_id,
            participants: start.participants,
            threshold: start.threshold,
            initiator: from,
        };
        let deadline = Instant::now() + self.config.dkg_timeout;
        match DkgSession::new(
            params.clone(),
            self.config.id,
            self.keypair.clone(),
            self.peer_keys.clone(),
            deadline.into_std(),
        ) {
            Ok(s) => {
                info!(session = %sid, key_id = %params.key_id, initiator = from, "joining DKG");
                self.sessions.insert(sid, Session::Dkg(Box::new(s)));
                self.metrics.dkg_started();
                self.dkg_started.insert(sid, Instant::now());
                Body::Ack
            }
            Err(e) => refuse("bad_request", e.to_string()),
        }
    }

    pub(super) fn apply(&mut self, sid: SessionId, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Broadcast(body) => {
                    #[cfg(feature = "fault-injection")]
                    let body = self.inject_round1_fault(sid, body);
                    self.broadcast(sid, body)
                }
                Effect::Send { to, body } => {
                    #[cfg(feature = "fault-injection")]
                    let body = self.inject_round2_fault(body);
                    self.send_oneway(sid, to, body)
                }
                Effect::Completed(out) => {
                    let outcome = self.store(sid, *out);
                    self.end_session(sid, outcome);
                }
                Effect::Failed(err) => {
                    warn!(
                        session = %sid,
                        kind = err.kind(),
                        culprits = ?err.culprits(),
                        missing = ?err.missing(),
                        error = %err,
                        "DKG failed"
                    );
                    if !matches!(err, DkgError::PeerAborted { .. }) {
                        self.count_culprits(&err.culprits());
                    }
                    let outcome = DkgOutcome::Failed {
                        reason: err.to_string(),
                        culprits: err.culprits(),
                        missing: err.missing(),
                    };
                    self.end_session(sid, outcome);
                }
            }
        }
    }

    fn store(&mut self, sid: SessionId, out: DkgOutput) -> DkgOutcome {
        let Some(Session::Dkg(session)) = self.sessions.get(&sid) else {
            return DkgOutcome::Failed {
                reason: "session vanished".into(),
                culprits: vec![],
                missing: vec![],
            };
        };
        let params = session.params().clone();
        let key = StoredKey {
            format_version: keystore::KEY_FORMAT_VERSION,
            key_id: params.key_id.clone(),
            session: sid.to_hex(),
            created_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
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
                })
                .collect(),
        };
        match self.keystore.insert(key) {
            Ok(()) => {
                info!(
                    session = %sid,
                    key_id = %params.key_id,
                    group_public_key = %hex::encode(out.group_public_key),
                    "DKG complete; key stored"
                );
                DkgOutcome::Stored {
                    group_public_key: out.group_public_key,
                }
            }
            Err(e) => {
                warn!(session = %sid, key_id = %params.key_id, error = %e, "cannot store the new key");
                DkgOutcome::Failed {
                    reason: format!("node {} could not store the key: {e}", self.config.id),
                    culprits: vec![],
                    missing: vec![],
                }
            }
        }
    }

    fn end_session(&mut self, sid: SessionId, outcome: DkgOutcome) {
        let Some(Session::Dkg(session)) = self.sessions.remove(&sid) else {
            return;
        };
        let seconds = self
            .dkg_started
            .remove(&sid)
            .map_or(0.0, |t| t.elapsed().as_secs_f64());
        let failure = match &outcome {
            DkgOutcome::Stored { .. } => None,
            DkgOutcome::Failed {
                culprits, missing, ..
            } => Some(if !culprits.is_empty() {
                "misbehaviour"
            } else if !missing.is_empty() {
                "timeout"
            } else {
                "aborted"
            }),
        };
        self.metrics.dkg_ended(failure, seconds);
        let now = Instant::now();
        self.finished
            .retain(|_, at| now.duration_since(*at) < FINISHED_MEMORY);
        self.finished.insert(sid, now);
        let initiator = session.params().initiator;
        if initiator == self.config.id {
            self.on_report(sid, self.config.id, outcome);
        } else {
            self.send_oneway(sid, initiator, Body::DkgResult(outcome));
        }
    }

    /// Equivocation (fault-injection builds): after the real round-1 package, broadcast
    /// another one for the same identifier.
    #[cfg(feature = "fault-injection")]
    fn inject_round1_fault(&self, sid: SessionId, body: Body) -> Body {
        if self.faults.equivocate_round1 {
            if let (Body::DkgRound1 { .. }, Some(Session::Dkg(s))) =
                (&body, self.sessions.get(&sid))
            {
                let p = s.params();
                let other = frost_ed25519::Identifier::try_from(self.config.id)
                    .ok()
                    .and_then(|id| {
                        frost_ed25519::keys::dkg::part1(
                            id,
                            p.participants.len() as u16,
                            p.threshold,
                            rand::rngs::OsRng,
                        )
                        .ok()
                    })
                    .and_then(|(_, pkg)| pkg.serialize().ok());
                if let Some(package) = other {
                    self.broadcast(sid, body);
                    return Body::DkgRound1 { package };
                }
            }
        }
        body
    }

    /// A wrong but well-formed round-2 share (fault-injection builds).
    #[cfg(feature = "fault-injection")]
    fn inject_round2_fault(&self, body: Body) -> Body {
        if !self.faults.corrupt_round2 || !matches!(body, Body::DkgRound2 { .. }) {
            return body;
        }
        frost_ed25519::keys::SigningShare::deserialize(&[7u8; 32])
            .map(frost_ed25519::keys::dkg::round2::Package::new)
            .ok()
            .and_then(|p| p.serialize().ok())
            .map(|bytes| Body::DkgRound2 {
                package: crate::wire::SecretBytes(bytes),
            })
            .unwrap_or(body)
    }

    /// A participant's last connection closed: its DKG sessions cannot finish, abort them now
    /// rather than at the deadline.
    pub(super) fn on_peer_lost(&mut self, node: NodeId) {
        let affected: Vec<SessionId> = self
            .sessions
            .iter()
            .filter_map(|(sid, s)| match s {
                Session::Dkg(d) if d.params().participants.contains(&node) && !d.is_finished() => {
                    Some(*sid)
                }
                _ => None,
            })
            .collect();
        for sid in affected {
            if let Some(Session::Dkg(s)) = self.sessions.get_mut(&sid) {
                let effects = s.abort(DkgError::Disconnected { node });
                self.apply(sid, effects);
            }
        }
    }

    /// Answers initiations whose participants did not all report in time.
    pub(super) fn expire_initiations(&mut self, now: Instant) {
        let overdue: Vec<SessionId> = self
            .initiations
            .iter()
            .filter(|(_, i)| i.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for sid in overdue {
            if let Some(init) = self.initiations.remove(&sid) {
                let missing: Vec<NodeId> = init
                    .participants
                    .iter()
                    .copied()
                    .filter(|id| !init.reports.contains_key(id))
                    .collect();
                let err = NodeError::Timeout {
                    message: format!(
                        "DKG for key {:?} timed out waiting for results from nodes {missing:?}",
                        init.key_id
                    ),
                    missing,
                };
                warn!(session = %sid, key_id = %init.key_id, error = %err, "DKG timed out");
                if let Some(reply) = init.reply {
                    let _ = reply.send(Err(err));
                }
            }
        }
    }
}
