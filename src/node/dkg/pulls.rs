//! Pulling what did not arrive: a DKG participant whose current phase has lasted an eighth of
//! the DKG timeout (at most 10 s) asks each participant whose message it still lacks (the initiator's
//! `DkgBegin`, a round-1 package, a round-2 share, an echo, a confirmation) for it directly, by
//! request-response, and asks again after twice, four and eight times that interval while the
//! phase lasts (a sender still computing answers "not sent yet": asking it less often saves
//! those requests, while a lost message is still asked for early). The answer goes through the
//! session exactly like the broadcast would have (a sender that answers with another package
//! than it broadcast is caught by the echo round). A session that broadcast on gossip thus
//! never depends on every gossip delivery arriving.

use std::collections::VecDeque;
use std::time::Duration;

use tracing::{debug, info};

use super::{DkgDriver, Timer};
use crate::node::context::Ctx;
use crate::node::outbox::ReplyTag;
use crate::wire::{Body, Confirmation, DkgStep, Envelope, ErrorKind, NodeId, SessionId};

/// Certificates of sessions completed here, kept to answer late confirmation pulls.
const MAX_COMPLETED: usize = 64;

/// How long a phase may last before its missing messages are pulled (and then the interval
/// between pulls): an eighth of the DKG timeout, between 1 s and 10 s. Every phase can be
/// pulled several times before the deadline; a pull that comes too early (the sender is still
/// computing) costs one refused request. At n = 100 on two cores, 10 s completed the DKG in
/// 77 s and a sixth of its 200 s timeout (33 s) in 95 s: lost messages are better asked for
/// soon.
pub fn pull_after(dkg_timeout: Duration) -> Duration {
    (dkg_timeout / 8).clamp(Duration::from_secs(1), Duration::from_secs(10))
}

/// The certificates of the sessions completed here lately, by round id.
#[derive(Default)]
pub struct Completed {
    list: VecDeque<(SessionId, Vec<(NodeId, Confirmation)>)>,
}

impl Completed {
    /// Keeps the certificate of the session with round id `round`.
    pub fn remember(&mut self, round: SessionId, certificate: Vec<(NodeId, Confirmation)>) {
        if self.list.len() >= MAX_COMPLETED {
            self.list.pop_front();
        }
        self.list.push_back((round, certificate));
    }

    fn get(&self, round: &SessionId) -> Option<&Vec<(NodeId, Confirmation)>> {
        self.list
            .iter()
            .find_map(|(r, c)| (r == round).then_some(c))
    }
}

impl DkgDriver {
    /// Notes a phase change of `sid` and arms its pull timer for when the phase has lasted
    /// [`pull_after`].
    pub(super) fn track_phase(&mut self, ctx: &mut Ctx<'_>, sid: SessionId) {
        let Some(run) = self.sessions.get_mut(&sid) else {
            ctx.timers.set(Timer::DkgPull(sid), None);
            return;
        };
        if run.session.is_finished() {
            ctx.timers.set(Timer::DkgPull(sid), None);
            return;
        }
        let phase = run.session.phase();
        if phase != run.phase {
            run.phase = phase;
            run.phase_since = ctx.now;
            run.pulled = 0;
            let at = ctx.now + pull_after(ctx.config.dkg_timeout);
            ctx.timers.set(Timer::DkgPull(sid), Some(at));
        } else if ctx.timers.get(Timer::DkgPull(sid)).is_none() {
            let at = run.phase_since + pull_after(ctx.config.dkg_timeout);
            ctx.timers.set(Timer::DkgPull(sid), Some(at));
        }
    }

    /// `sid`'s pull timer: asks for every message its current phase still lacks.
    pub(super) fn pull(&mut self, ctx: &mut Ctx<'_>, sid: SessionId) {
        let Some(run) = self.sessions.get_mut(&sid) else {
            return;
        };
        if run.session.is_finished() {
            return;
        }
        run.pulled += 1;
        let next = pull_after(ctx.config.dkg_timeout) * (1 << run.pulled.min(3));
        let wanted = run.session.pulls();
        let round = run.session.wire_session();
        for &(peer, step) in &wanted {
            // `DkgBegin` belongs to the setup id; everything after it to the round id.
            let session = if step == DkgStep::Begin { sid } else { round };
            ctx.metrics.dkg_pull(step.as_str());
            let body = Body::DkgPull { want: step };
            ctx.outbox.request(session, peer, body, ReplyTag::DkgPull);
        }
        if !wanted.is_empty() {
            let mut from: Vec<NodeId> = wanted.iter().map(|(n, _)| *n).collect();
            from.dedup();
            info!(session = %sid, phase = %run.phase, waited_ms = ctx.now.saturating_duration_since(run.phase_since).as_millis() as u64, asked = wanted.len(), nodes = ?from, "DKG messages missing; asking their senders directly");
        }
        ctx.timers.set(Timer::DkgPull(sid), Some(ctx.now + next));
    }

    /// A participant asks for this node's message of `want` in the session `wire` names.
    pub fn on_pull(
        &mut self,
        ctx: &mut Ctx<'_>,
        wire: SessionId,
        from: NodeId,
        want: DkgStep,
    ) -> Body {
        let not_here = |why: &str| Body::refused(ErrorKind::Unavailable, why.to_string());
        let Some(sid) = self.running(wire) else {
            // Completed here: the certificate holds this node's confirmation (and everyone's).
            return match (want, self.completed.get(&wire)) {
                (DkgStep::Confirm, Some(list)) => Body::DkgCertificate(list.clone()),
                _ => not_here("no such running session here"),
            };
        };
        let Some(run) = self.sessions.get(&sid) else {
            return not_here("no such running session here");
        };
        let expected = if want == DkgStep::Begin {
            Some(sid)
        } else {
            run.session.round_id()
        };
        if expected != Some(wire) {
            crate::peer_warn!(ctx.limits.nodes, from, ctx.now, session = %wire, peer = from, step = want.as_str(), "pull under the wrong session id refused");
            return Body::refused(
                ErrorKind::BadRequest,
                format!(
                    "{} is asked under the {} id",
                    want.as_str(),
                    if want == DkgStep::Begin {
                        "setup"
                    } else {
                        "round"
                    }
                ),
            );
        }
        match run.session.pulled(want, from) {
            Some(body) => {
                debug!(session = %sid, peer = from, step = want.as_str(), "answering a pull");
                body
            }
            None => not_here("not sent yet"),
        }
    }

    /// The answer to one of this node's pulls: handled exactly like the message it replaces.
    pub fn on_pull_reply(
        &mut self,
        ctx: &mut Ctx<'_>,
        session: SessionId,
        from: NodeId,
        result: Result<Body, String>,
    ) {
        match result {
            Ok(
                body @ (Body::DkgBegin { .. }
                | Body::DkgRound1 { .. }
                | Body::DkgRound2 { .. }
                | Body::DkgEcho { .. }
                | Body::DkgConfirm(_)
                | Body::DkgCertificate(_)),
            ) => {
                self.on_message(ctx, Envelope::new(session, from, body));
            }
            Ok(Body::Refused { reason, .. }) => {
                debug!(%session, peer = from, %reason, "pull not answered");
            }
            Ok(other) => {
                crate::peer_warn!(ctx.limits.nodes, from, ctx.now, %session, peer = from, kind = other.kind(), "pull answered with an unrelated message; ignored");
            }
            Err(error) => debug!(%session, peer = from, %error, "pull failed"),
        }
    }
}
