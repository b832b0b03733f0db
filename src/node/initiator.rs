//! The DKG initiator's bookkeeping: the node that received `POST /v1/keys` resolves the
//! request's defaults, draws the setup session id, asks every participant to join
//! (`DkgStart`), collects their contributions to the round id (`DkgJoin`), begins round 1 once
//! all joined, then collects every participant's `DkgResult` and answers
//! its caller.
//!
//! The answer rests on this node's own evidence. A DKG whose every confirmation this node
//! verified is a success, whatever another participant reports; only misbehaviour this node saw
//! itself names culprits. What other participants report is passed on as `reported_by`: their
//! claim, not a verdict.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::error::NodeError;
use super::requests::{default_threshold, KeygenRequest};
use crate::dkg::{DkgError, DkgParams};
use crate::keystore::{KeyInfo, KeyStore};
use crate::rng::SecureRng;
use crate::wire::{Body, DkgOutcome, DkgStart, ErrorKind, NodeId, SessionId};

/// Where an initiator's caller gets its answer.
pub type KeygenReply = oneshot::Sender<Result<KeyInfo, NodeError>>;

/// What an initiation waits for next, after an answer to `DkgStart`.
pub enum StartProgress {
    /// More answers to come.
    Waiting,
    /// Every participant joined: begin round 1 with these contributions (participant order).
    Begin(Vec<(NodeId, [u8; 32])>),
    /// A participant refused or failed: the session is off (the caller has its answer); the
    /// participants that had joined must be told.
    Off(NodeError, Vec<NodeId>),
    /// A participant joined a session this node no longer runs: it must be told.
    Stale,
}

/// One DKG this node started.
struct Initiation {
    me: NodeId,
    /// "DKG", "refresh", "repair", "enrolment" or "reshare".
    kind: &'static str,
    key_id: String,
    participants: Vec<NodeId>,
    /// Every participant's contribution to the round id so far, this node's own included.
    joined: BTreeMap<NodeId, [u8; 32]>,
    begun: bool,
    /// How this node's own session ended: the group key, or the error it saw itself.
    own: Option<Result<[u8; 32], DkgError>>,
    reports: BTreeMap<NodeId, DkgOutcome>,
    reply: Option<KeygenReply>,
    deadline: Instant,
}

/// Every DKG this node started and has not answered yet.
#[derive(Default)]
pub struct Initiations {
    map: HashMap<SessionId, Initiation>,
}

/// Resolves a keygen request's defaults into the `DkgStart` every participant gets.
pub fn resolve(req: &KeygenRequest, all: Vec<NodeId>) -> DkgStart {
    let mut participants = req.participants.clone().unwrap_or(all);
    participants.sort_unstable();
    let threshold = req
        .threshold
        .unwrap_or_else(|| default_threshold(participants.len()));
    DkgStart {
        key_id: req.key_id.clone(),
        participants,
        threshold,
        token: req.token.clone(),
        refresh: None,
        repair: None,
        reshare: None,
    }
}

/// What a session does, for logs and answers: "DKG", "refresh", "repair", "enrolment" or
/// "reshare".
pub fn kind_name(params: &DkgParams) -> &'static str {
    if params.reshare.is_some() {
        return "reshare";
    }
    match (&params.refresh, &params.repair) {
        (None, _) => "DKG",
        (Some(_), None) => "refresh",
        (Some(_), Some(r)) if r.enrol => "enrolment",
        (Some(_), Some(_)) => "repair",
    }
}

/// A fresh session id for `start` initiated by `me`.
pub fn session_id(start: &DkgStart, me: NodeId, rng: &mut dyn SecureRng) -> SessionId {
    let mut nonce = [0u8; 32];
    rng.fill_bytes(&mut nonce);
    let mut h = Sha256::new();
    h.update(b"frostnode/dkg-session/v1");
    h.update(start.key_id.as_bytes());
    for id in &start.participants {
        h.update(id.to_be_bytes());
    }
    h.update(start.threshold.to_be_bytes());
    h.update(me.to_be_bytes());
    h.update(nonce);
    SessionId(h.finalize().into())
}

impl Initiations {
    /// Tracks a DKG started by this node, which contributes `own` to its round id; `deadline`
    /// bounds the wait for every result.
    pub fn insert(
        &mut self,
        params: &DkgParams,
        me: NodeId,
        own: [u8; 32],
        reply: KeygenReply,
        deadline: Instant,
    ) {
        self.map.insert(
            params.session,
            Initiation {
                me,
                kind: kind_name(params),
                key_id: params.key_id.clone(),
                participants: params.participants.clone(),
                joined: BTreeMap::from([(me, own)]),
                begun: false,
                own: None,
                reports: BTreeMap::new(),
                reply: Some(reply),
                deadline,
            },
        );
    }

    /// Whether this node started `session` and still tracks it.
    pub fn contains(&self, session: &SessionId) -> bool {
        self.map.contains_key(session)
    }

    /// The deadline of `session`'s initiation.
    pub fn deadline(&self, session: &SessionId) -> Option<Instant> {
        self.map.get(session).map(|i| i.deadline)
    }

    /// A participant answered `DkgStart` (or the request failed).
    pub fn on_start_reply(
        &mut self,
        session: SessionId,
        from: NodeId,
        result: Result<Body, String>,
    ) -> StartProgress {
        let Some(init) = self.map.get_mut(&session) else {
            if matches!(result, Ok(Body::DkgJoin { .. })) {
                return StartProgress::Stale;
            }
            return StartProgress::Waiting;
        };
        if init.begun {
            return StartProgress::Waiting;
        }
        let refusal = match result {
            Ok(Body::DkgJoin { contribution }) => {
                init.joined.insert(from, contribution);
                if init.joined.len() == init.participants.len() {
                    init.begun = true;
                    return StartProgress::Begin(
                        init.joined.iter().map(|(&id, &c)| (id, c)).collect(),
                    );
                }
                return StartProgress::Waiting;
            }
            Ok(Body::Refused { kind, reason }) => {
                let message = format!("node {from} refused: {reason}");
                match kind {
                    kind if kind.is_refusal() => NodeError::Refused {
                        message,
                        refused_by: BTreeMap::from([(from, reason)]),
                    },
                    ErrorKind::Conflict => NodeError::Conflict(message),
                    ErrorKind::Unavailable | ErrorKind::Busy => NodeError::Unavailable {
                        message,
                        missing: vec![from],
                    },
                    _ => NodeError::BadRequest(message),
                }
            }
            Ok(other) => NodeError::Internal(format!(
                "node {from} answered DkgStart with {}",
                other.kind()
            )),
            Err(reason) => NodeError::Unavailable {
                message: format!("node {from} did not accept the DKG: {reason}"),
                missing: vec![from],
            },
        };
        warn!(%session, error = %refusal, "DKG not started");
        let mut joined = Vec::new();
        if let Some(mut init) = self.map.remove(&session) {
            if let Some(reply) = init.reply.take() {
                let _ = reply.send(Err(refusal.clone()));
            }
            joined = init
                .joined
                .keys()
                .copied()
                .filter(|&id| id != init.me)
                .collect();
        }
        StartProgress::Off(refusal, joined)
    }

    /// This node's own session ended; answers the caller if nothing else is needed.
    pub fn on_own_end(
        &mut self,
        session: SessionId,
        result: Result<[u8; 32], DkgError>,
        keystore: &KeyStore,
    ) {
        let Some(init) = self.map.get_mut(&session) else {
            return;
        };
        init.own = Some(result);
        self.maybe_answer(session, keystore, false);
    }

    /// A participant's report of how the session ended there.
    pub fn on_report(
        &mut self,
        session: SessionId,
        from: NodeId,
        outcome: DkgOutcome,
        keystore: &KeyStore,
    ) {
        let Some(init) = self.map.get_mut(&session) else {
            return;
        };
        if from == init.me || !init.participants.contains(&from) || init.reports.contains_key(&from)
        {
            return;
        }
        if let DkgOutcome::Failed {
            reason, culprits, ..
        } = &outcome
        {
            warn!(%session, node = from, %reason, blames = ?culprits, "participant reports DKG failure");
        }
        init.reports.insert(from, outcome);
        self.maybe_answer(session, keystore, false);
    }

    /// A participant's last connection closed: initiations that still wait for its report
    /// after this node's own session ended will not get it (its sessions abort when it loses
    /// us); answer them now.
    pub fn on_peer_lost(&mut self, node: NodeId, keystore: &KeyStore) {
        let waiting: Vec<SessionId> = self
            .map
            .iter()
            .filter(|(_, i)| {
                i.own.is_some() && i.participants.contains(&node) && !i.reports.contains_key(&node)
            })
            .map(|(sid, _)| *sid)
            .collect();
        for sid in waiting {
            self.maybe_answer(sid, keystore, true);
        }
    }

    /// The deadline of `session` passed: answer with what is known.
    pub fn on_timeout(&mut self, session: SessionId, keystore: &KeyStore) {
        self.maybe_answer(session, keystore, true);
    }

    fn maybe_answer(&mut self, session: SessionId, keystore: &KeyStore, deadline: bool) {
        let Some(init) = self.map.get(&session) else {
            return;
        };
        let others = init.participants.len() - 1;
        let all_in = init.reports.len() == others;
        let ready = match &init.own {
            // The answer promises the key is on every participant: wait for every report (a
            // participant that never reports makes it a timeout).
            Some(Ok(_)) => all_in || deadline,
            // Our own evidence explains the failure: nothing a peer says changes it.
            Some(Err(e)) if !matches!(e, DkgError::PeerAborted { .. }) => true,
            // We only followed another node's abort: collect the reports, then answer.
            Some(Err(_)) => all_in || deadline,
            None => deadline,
        };
        if !ready {
            return;
        }
        let Some(mut init) = self.map.remove(&session) else {
            return;
        };
        let result = conclude(&init, keystore, all_in);
        match &result {
            Ok(_) => {
                info!(%session, key_id = %init.key_id, kind = init.kind, "answered: key stored")
            }
            Err(e) => {
                warn!(%session, key_id = %init.key_id, kind = init.kind, error = %e, "answered: failed")
            }
        }
        if let Some(reply) = init.reply.take() {
            let _ = reply.send(result);
        }
    }
}

fn conclude(init: &Initiation, keystore: &KeyStore, all_in: bool) -> Result<KeyInfo, NodeError> {
    let reported_by: BTreeMap<NodeId, Vec<NodeId>> = init
        .reports
        .iter()
        .filter_map(|(&id, o)| match o {
            DkgOutcome::Failed { culprits, .. } if !culprits.is_empty() => {
                Some((id, culprits.clone()))
            }
            _ => None,
        })
        .collect();
    match &init.own {
        Some(Ok(group_key)) if !all_in => {
            let missing: Vec<NodeId> = init
                .participants
                .iter()
                .copied()
                .filter(|&id| id != init.me && !init.reports.contains_key(&id))
                .collect();
            let mut holders: Vec<NodeId> = init
                .reports
                .iter()
                .filter(|(_, o)| matches!(o, DkgOutcome::Stored { group_public_key } if group_public_key == group_key))
                .map(|(&id, _)| id)
                .collect();
            holders.push(init.me);
            holders.sort_unstable();
            Err(NodeError::Timeout {
                message: format!(
                    "{} of key {:?}: every participant confirmed it; nodes {holders:?} hold it, nodes {missing:?} did not report storing it in time",
                    init.kind, init.key_id
                ),
                missing,
            })
        }
        Some(Ok(group_key)) => {
            let dissent: Vec<NodeId> = init
                .reports
                .iter()
                .filter(|(_, o)| !matches!(o, DkgOutcome::Stored { group_public_key } if group_public_key == group_key))
                .map(|(&id, _)| id)
                .collect();
            if !dissent.is_empty() {
                warn!(key_id = %init.key_id, nodes = ?dissent, "participants that confirmed the key report another outcome");
            }
            keystore
                .get(&init.key_id)
                .map(|k| k.info())
                .ok_or_else(|| NodeError::Internal("key missing after DKG".into()))
        }
        Some(Err(own)) => {
            let mut reported_by = reported_by;
            if let DkgError::PeerAborted { by, culprits, .. } = own {
                if !culprits.is_empty() {
                    reported_by.entry(*by).or_insert_with(|| culprits.clone());
                }
            }
            let mut message = format!("{} of key {:?} failed: {own}", init.kind, init.key_id);
            // A participant this node waited for may say why it never confirmed.
            for id in own.missing() {
                if let Some(DkgOutcome::Failed { reason, .. }) = init.reports.get(&id) {
                    message.push_str(&format!("; node {id} reports: {reason}"));
                }
            }
            let culprits = own.culprits();
            let missing = own.missing();
            // A timeout with nobody accused is a timeout; when a participant reported whom it
            // caught (this node waited for a certificate after that node's abort), the report
            // is the better explanation.
            if culprits.is_empty() && !missing.is_empty() && reported_by.is_empty() {
                return Err(NodeError::Timeout { message, missing });
            }
            Err(NodeError::Aborted {
                message,
                kind: ErrorKind::DkgFailed,
                culprits,
                reported_by,
            })
        }
        None => {
            let missing: Vec<NodeId> = init
                .participants
                .iter()
                .copied()
                .filter(|id| !init.reports.contains_key(id))
                .collect();
            let missing: Vec<NodeId> = missing.into_iter().filter(|&id| id != init.me).collect();
            Err(NodeError::Timeout {
                message: format!(
                    "{} of key {:?} timed out waiting for results from nodes {missing:?}",
                    init.kind, init.key_id
                ),
                missing,
            })
        }
    }
}
