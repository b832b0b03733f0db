//! How a session ends on this node: a confirmed key (or epoch) is written off the node task
//! and then kept, the end is counted and reported to the initiator (or, here, answers it),
//! and a session that timed out after this node confirmed is kept a while for a late
//! certificate that still completes it. Every end is kept in the node's journal.

use libp2p::gossipsub::MessageAcceptance;
use tracing::{info, warn};

use super::{kind_name, DkgDriver, MAX_LATE};
use crate::dkg::{DkgError, DkgOutput, DkgParams, Effect};
use crate::keystore::{self, StoredConfirmation, StoredKey};
use crate::node::checks;
use crate::node::context::{Ctx, Stored};
use crate::node::journal::{Role, SessionRecord};
use crate::node::timers::Timer;
use crate::wire::{Body, DkgOutcome, Envelope, NodeId, SessionId};

impl DkgDriver {
    /// Every participant confirmed: write the key (off the node task).
    pub(super) fn store(&mut self, ctx: &mut Ctx<'_>, sid: SessionId, out: DkgOutput) {
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
            participants: params.members(),
            group_public_key: hex::encode(out.group_public_key),
            key_package: out.key_package,
            public_key_package: out.public_key_package,
            // The key's certificate: the confirmations of its participants (a reshare's other
            // participants confirmed too, but hold no share of it and may leave the config).
            confirmations: out
                .confirmations
                .iter()
                .filter(|(&node_id, _)| params.is_member(node_id))
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

    /// A reshare this node took part in left it out of the key's next epoch `epoch`, which
    /// every participant certified: its share of the epoch before is deleted from disk now and
    /// from memory once the signing sessions that may use it are over.
    pub(super) fn leave(
        &mut self,
        ctx: &mut Ctx<'_>,
        sid: SessionId,
        epoch: u64,
        group_public_key: [u8; 32],
    ) {
        let Some(key_id) = self
            .sessions
            .get(&sid)
            .map(|r| r.session.params().key_id.clone())
        else {
            return;
        };
        let now = ctx.unix_seconds();
        match ctx.keystore.leave(&key_id, epoch - 1, now) {
            Ok(()) => {
                info!(session = %sid, key_id = %key_id, epoch, "reshare complete; this node holds no share of epoch {epoch}: its share of epoch {} is deleted", epoch - 1);
                self.retire_later(ctx, key_id, epoch - 1);
                self.end_session(ctx, sid, Ok(group_public_key));
            }
            Err(e) => {
                warn!(session = %sid, key_id = %key_id, error = %e, "cannot delete the share a reshare replaced");
                self.end_session(ctx, sid, Err(DkgError::Storage(e.to_string())));
            }
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

    pub(super) fn end_session(
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
        journal_dkg(ctx, sid, run.session.params(), seconds, &result);
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
    pub(super) fn on_late(
        &mut self,
        ctx: &mut Ctx<'_>,
        at: usize,
        env: Envelope,
    ) -> MessageAcceptance {
        let from = env.from;
        let Body::DkgCertificate(list) = env.body else {
            return MessageAcceptance::Ignore;
        };
        let Some((_, sid, mut run)) = self.late.remove(at) else {
            return MessageAcceptance::Ignore;
        };
        match run.session.late_certificate(from, list) {
            Ok(effects)
                if effects
                    .iter()
                    .any(|e| matches!(e, Effect::Completed(_) | Effect::Left { .. })) =>
            {
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

/// Keeps a DKG or lifecycle session, as it ended here, in the journal.
fn journal_dkg(
    ctx: &mut Ctx<'_>,
    sid: SessionId,
    params: &DkgParams,
    seconds: f64,
    result: &Result<[u8; 32], DkgError>,
) {
    let kind = if params.reshare.is_some() {
        "reshare"
    } else if let Some(repair) = &params.repair {
        if repair.enrol {
            "enrol"
        } else {
            "repair"
        }
    } else if params.refresh.is_some() {
        "refresh"
    } else {
        "dkg"
    };
    let (culprits, missing) = match result {
        Ok(_) => (Vec::new(), Vec::new()),
        Err(e) => (e.culprits(), e.missing()),
    };
    let role = if params.initiator == ctx.me() {
        Role::Initiator
    } else {
        Role::Participant
    };
    let took = std::time::Duration::from_secs_f64(seconds);
    let record = SessionRecord {
        coordinator: Some(params.initiator),
        nodes: params.participants.clone(),
        outcome: match result {
            Ok(_) => "ok".into(),
            Err(e) => e.kind().to_string(),
        },
        error: result.as_ref().err().map(|e| e.to_string()),
        culprits,
        missing,
        ..SessionRecord::ended(kind, role, &sid.0, &params.key_id, ctx.unix_seconds(), took)
    };
    ctx.journal.record(record);
}
