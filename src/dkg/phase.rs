//! Where a DKG session is: the [`Phase`] it reports in logs and timeouts.

use std::fmt;

/// Where a session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Created, waiting for `DkgBegin`.
    Prepared,
    /// Own round-1 package sent, collecting the others'.
    Round1,
    /// Round-2 packages sent, collecting shares and echoes.
    Round2,
    /// Own confirmation sent, collecting the others'.
    Confirming,
    /// Every participant confirmed the key.
    Done,
    /// Aborted.
    Failed,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Phase::Prepared => "waiting to begin",
            Phase::Round1 => "round 1",
            Phase::Round2 => "round 2",
            Phase::Confirming => "confirmation",
            Phase::Done => "done",
            Phase::Failed => "failed",
        };
        f.write_str(s)
    }
}
