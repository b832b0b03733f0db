//! A DKG session's arithmetic: small work runs in place, the rest on the worker pool, whence
//! it comes back ([`Computed`]) to its session.

use tracing::debug;

use super::DkgDriver;
use crate::dkg::{Done, Work};
use crate::node::context::{Computed, Ctx};
use crate::wire::SessionId;

/// Work up to this many point multiplications (about a millisecond) runs on the node task: a
/// trip through the pool would cost more than the step. That covers decoding round-1 packages
/// up to t = 16 (a cluster of about 20); anything larger, each of which adds up over the n − 1
/// packages a node decodes, goes to the pool (at n = 100, t = 67, `part3` is about 13,000
/// multiplications, 1.2 s).
const IN_PLACE_POINTS: usize = 16;

impl DkgDriver {
    /// Runs `work` of session `sid`: in place if it is small, else on the worker pool.
    pub(super) fn compute(&mut self, ctx: &mut Ctx<'_>, sid: SessionId, work: Work) {
        if work.points() > IN_PLACE_POINTS {
            ctx.compute(sid, work);
            return;
        }
        let done: Done = work.run();
        self.on_computed(ctx, Computed { session: sid, done });
    }

    /// A session's arithmetic finished: hand the result to the session and carry out what it
    /// does next. A result for a session that has ended is dropped.
    pub fn on_computed(&mut self, ctx: &mut Ctx<'_>, computed: Computed) {
        let sid = computed.session;
        let Some(run) = self.sessions.get_mut(&sid) else {
            debug!(session = %sid, work = ?computed.done, "arithmetic for an ended DKG dropped");
            return;
        };
        let before = run.session.phase();
        let effects = run.session.computed(computed.done);
        let after = run.session.phase();
        if after != before {
            debug!(session = %sid, phase = %after, "DKG phase");
        }
        self.apply(ctx, sid, effects);
    }
}
