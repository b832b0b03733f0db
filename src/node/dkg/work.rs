//! A DKG session's arithmetic coming back from the worker pool ([`Computed`]) to its session.

use tracing::debug;

use super::DkgDriver;
use crate::node::context::{Computed, Ctx};

impl DkgDriver {
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
