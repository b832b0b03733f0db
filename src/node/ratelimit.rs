//! Per-peer limits on what one listed peer can make this node do, and say: requests beyond a
//! rate are refused before they are decoded, and warnings about one peer are logged at most a
//! few times per window (the rest are counted and reported in one line), so a peer that floods
//! the node can neither starve the others nor fill its logs.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A burst may hold this many seconds' worth of requests.
pub const BURST_SECONDS: f64 = 2.0;
/// Warnings logged about one peer per window.
pub const LOG_LINES_PER_WINDOW: u32 = 10;
/// The logging window.
pub const LOG_WINDOW: Duration = Duration::from_secs(10);
/// Peers tracked at once (configured peers are far fewer; a bound all the same).
const MAX_TRACKED: usize = 4096;

struct Bucket {
    tokens: f64,
    at: Instant,
}

struct Window {
    started: Instant,
    logged: u32,
    suppressed: u64,
}

/// The limiters of one node: by PeerId before a message is authenticated, by node id after.
pub struct PeerLimits {
    /// By connection peer.
    pub peers: Limiter<libp2p::PeerId>,
    /// By authenticated node id.
    pub nodes: Limiter<crate::wire::NodeId>,
}

impl PeerLimits {
    /// Limiters that admit `per_second` requests per peer, sustained.
    pub fn new(per_second: u32) -> Self {
        PeerLimits {
            peers: Limiter::new(per_second),
            nodes: Limiter::new(per_second),
        }
    }
}

/// What to do with a warning about a peer.
#[derive(Debug, PartialEq, Eq)]
pub enum LogVerdict {
    /// Log it.
    Log,
    /// Log it, and say that this many were left out in the window before.
    LogAfterSuppressing(u64),
    /// Count it, do not log it.
    Suppress,
}

/// Request buckets and log windows, by peer.
pub struct Limiter<K> {
    rate: f64,
    burst: f64,
    buckets: HashMap<K, Bucket>,
    windows: HashMap<K, Window>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// A limiter that admits `per_second` requests per peer, sustained, and bursts of
    /// [`BURST_SECONDS`] times as many.
    pub fn new(per_second: u32) -> Self {
        let rate = f64::from(per_second.max(1));
        Limiter {
            rate,
            burst: rate * BURST_SECONDS,
            buckets: HashMap::new(),
            windows: HashMap::new(),
        }
    }

    /// Whether `peer` may have one more request served at `now`.
    pub fn admit(&mut self, peer: &K, now: Instant) -> bool {
        if self.buckets.len() >= MAX_TRACKED && !self.buckets.contains_key(peer) {
            self.buckets.clear();
        }
        let bucket = self.buckets.entry(peer.clone()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.at = bucket.at.max(now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether a warning about `peer` is logged at `now`.
    pub fn log(&mut self, peer: &K, now: Instant) -> LogVerdict {
        if self.windows.len() >= MAX_TRACKED && !self.windows.contains_key(peer) {
            self.windows.clear();
        }
        let w = self.windows.entry(peer.clone()).or_insert(Window {
            started: now,
            logged: 0,
            suppressed: 0,
        });
        let mut left_out = 0;
        if now.saturating_duration_since(w.started) >= LOG_WINDOW {
            left_out = w.suppressed;
            *w = Window {
                started: now,
                logged: 0,
                suppressed: 0,
            };
        }
        if w.logged < LOG_LINES_PER_WINDOW {
            w.logged += 1;
            if left_out > 0 {
                LogVerdict::LogAfterSuppressing(left_out)
            } else {
                LogVerdict::Log
            }
        } else {
            w.suppressed += 1;
            LogVerdict::Suppress
        }
    }
}

/// Logs a warning about a peer through `limiter` (at most a few per window; then one line
/// counting what was left out).
#[macro_export]
macro_rules! peer_warn {
    ($limiter:expr, $peer:expr, $now:expr, $($arg:tt)+) => {
        match $limiter.log(&$peer, $now) {
            $crate::node::ratelimit::LogVerdict::Log => ::tracing::warn!($($arg)+),
            $crate::node::ratelimit::LogVerdict::LogAfterSuppressing(n) => {
                ::tracing::warn!(peer = ?$peer, suppressed = n, "earlier warnings about this peer were left out");
                ::tracing::warn!($($arg)+)
            }
            $crate::node::ratelimit::LogVerdict::Suppress => {}
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_beyond_the_burst_wait_for_the_rate() {
        let mut l = Limiter::<u16>::new(5_000);
        let t = Instant::now();
        let admitted = (0..20_000).filter(|_| l.admit(&1, t)).count();
        assert_eq!(admitted as f64, 5_000.0 * BURST_SECONDS);
        assert!(l.admit(&2, t), "other peers have their own bucket");
        assert!(!l.admit(&1, t));
        let later = t + Duration::from_millis(100);
        let refill = (0..20_000).filter(|_| l.admit(&1, later)).count();
        assert_eq!(refill, 500);
    }

    #[test]
    fn warnings_are_bounded_per_window_and_the_rest_counted() {
        let mut l = Limiter::<u16>::new(5_000);
        let t = Instant::now();
        let logged = (0..1000)
            .filter(|_| l.log(&7, t) != LogVerdict::Suppress)
            .count();
        assert_eq!(logged, LOG_LINES_PER_WINDOW as usize);
        assert_eq!(l.log(&8, t), LogVerdict::Log, "per peer");
        assert_eq!(
            l.log(&7, t + LOG_WINDOW),
            LogVerdict::LogAfterSuppressing(1000 - u64::from(LOG_LINES_PER_WINDOW))
        );
    }
}
