//! The node's recent history, kept for its operators (`GET /v1/sessions`, `GET /v1/latency`
//! and the console): the last sessions it took part in (signing requests it received or
//! coordinated for another node, DKGs and key lifecycle sessions) and its signing latency over the last minutes, counted in the
//! buckets of the `frostnode_sign_seconds` histogram. Both are bounded; the oldest entries go
//! first. Nothing secret is kept: ids, node ids, outcomes, durations and error messages only.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::wire::NodeId;

/// How many sessions the journal keeps.
pub const SESSIONS_KEPT: usize = 200;
/// Length of one latency interval, seconds.
pub const LATENCY_INTERVAL_SECS: u64 = 10;
/// How many latency intervals are kept (ten minutes).
pub const LATENCY_INTERVALS: usize = 60;

/// Upper bounds of the latency buckets, seconds: those of `frostnode_sign_seconds`
/// (0.25 ms doubling sixteen times), then everything above.
fn bucket_bounds() -> [f64; BUCKETS] {
    let mut bounds = [0.0; BUCKETS];
    let mut b = 0.000_25;
    for slot in bounds.iter_mut() {
        *slot = b;
        b *= 2.0;
    }
    bounds
}
const BUCKETS: usize = 16;

/// What this node did in a session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A client asked this node for the signature.
    #[default]
    Received,
    /// This node coordinated the signature for another node that received the request.
    Coordinator,
    /// This node was asked for its share by a remote coordinator: the record is its own
    /// answer (a share, or why it refused).
    Signer,
    /// This node started the DKG or lifecycle session.
    Initiator,
    /// This node took part in another node's DKG or lifecycle session.
    Participant,
}

/// One session as this node saw it end.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// `sign`, `dkg`, `refresh`, `reshare`, `repair` or `enrol`.
    pub kind: String,
    /// What this node did in it.
    #[serde(default)]
    pub role: Role,
    /// The session (for signing: the request) id, hex.
    pub session: String,
    /// The key.
    pub key_id: String,
    /// The signing coordinator, or the DKG's initiator; absent when none was reached.
    pub coordinator: Option<NodeId>,
    /// The signers whose shares made the signature, or the DKG's participants.
    pub nodes: Vec<NodeId>,
    /// Messages signed in the session (signing only).
    pub messages: Option<usize>,
    /// `ok`, or the kind of error (`timeout`, `unavailable`, `unauthorized`, …).
    pub outcome: String,
    /// What went wrong, as the caller was told.
    pub error: Option<String>,
    /// Nodes found misbehaving.
    pub culprits: Vec<NodeId>,
    /// Nodes that did not answer.
    pub missing: Vec<NodeId>,
    /// When the session started, seconds since the Unix epoch.
    pub started_at: u64,
    /// How long it took, milliseconds.
    pub duration_ms: f64,
    /// For a signature this node coordinated for another node: the node that received the
    /// client's request and forwarded it here.
    #[serde(default)]
    pub received_from: Option<NodeId>,
}

impl SessionRecord {
    /// A `kind` session (id `session`, key `key_id`) this node took part in as `role`, ended
    /// at `now_unix` after `took`: outcome `ok`, nobody named; callers fill in the rest.
    pub fn ended(
        kind: &str,
        role: Role,
        session: &[u8; 32],
        key_id: &str,
        now_unix: u64,
        took: std::time::Duration,
    ) -> Self {
        SessionRecord {
            kind: kind.into(),
            role,
            session: hex::encode(session),
            key_id: key_id.into(),
            coordinator: None,
            nodes: Vec::new(),
            messages: None,
            outcome: "ok".into(),
            error: None,
            culprits: Vec::new(),
            missing: Vec::new(),
            started_at: now_unix.saturating_sub(took.as_secs()),
            duration_ms: took.as_secs_f64() * 1000.0,
            received_from: None,
        }
    }
}

/// Signing latency in one interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyPoint {
    /// Start of the interval, seconds since the Unix epoch.
    pub at: u64,
    /// Signing requests answered with signatures in the interval.
    pub count: u64,
    /// Median, milliseconds (estimated within its bucket, as Prometheus does); absent when
    /// nothing ended.
    pub p50_ms: Option<f64>,
    /// 99th percentile, milliseconds.
    pub p99_ms: Option<f64>,
}

/// Signing latency over the last minutes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyView {
    /// Length of each interval, seconds.
    pub interval_seconds: u64,
    /// The intervals, oldest first, ending with the current one.
    pub points: Vec<LatencyPoint>,
}

#[derive(Debug)]
struct Interval {
    start: u64,
    counts: [u64; BUCKETS + 1],
}

/// The bounded record of recent sessions and latency.
#[derive(Debug, Default)]
pub struct Journal {
    sessions: VecDeque<SessionRecord>,
    latency: VecDeque<Interval>,
}

impl Journal {
    /// Keeps `record`, forgetting the oldest session when full. A session that ends a
    /// second time (a DKG that timed out here, then completed by a late certificate)
    /// replaces its first record.
    pub fn record(&mut self, record: SessionRecord) {
        if let Some(at) = self.sessions.iter().position(|r| {
            r.session == record.session && r.kind == record.kind && r.role == record.role
        }) {
            self.sessions.remove(at);
        }
        if self.sessions.len() == SESSIONS_KEPT {
            self.sessions.pop_front();
        }
        self.sessions.push_back(record);
    }

    /// The sessions kept, newest first.
    pub fn sessions(&self) -> Vec<SessionRecord> {
        self.sessions.iter().rev().cloned().collect()
    }

    /// Counts a signing request answered at `at_unix` after `seconds`.
    pub fn sign_latency(&mut self, at_unix: u64, seconds: f64) {
        let start = at_unix - at_unix % LATENCY_INTERVAL_SECS;
        if self.latency.back().is_none_or(|i| i.start < start) {
            if self.latency.len() == LATENCY_INTERVALS {
                self.latency.pop_front();
            }
            self.latency.push_back(Interval {
                start,
                counts: [0; BUCKETS + 1],
            });
        }
        // A clock stepped back counts in the newest interval.
        let Some(interval) = self.latency.back_mut() else {
            return;
        };
        let bounds = bucket_bounds();
        let slot = bounds.iter().position(|&b| seconds <= b).unwrap_or(BUCKETS);
        interval.counts[slot] += 1;
    }

    /// Latency for the last [`LATENCY_INTERVALS`] intervals up to `now_unix`, empty
    /// intervals included, oldest first.
    pub fn latency(&self, now_unix: u64) -> LatencyView {
        let current = now_unix - now_unix % LATENCY_INTERVAL_SECS;
        let first = current.saturating_sub(LATENCY_INTERVAL_SECS * (LATENCY_INTERVALS as u64 - 1));
        let points = (0..LATENCY_INTERVALS as u64)
            .map(|i| first + i * LATENCY_INTERVAL_SECS)
            .filter(|&at| at <= current)
            .map(|at| match self.latency.iter().find(|i| i.start == at) {
                Some(interval) => point(at, &interval.counts),
                None => point(at, &[0; BUCKETS + 1]),
            })
            .collect();
        LatencyView {
            interval_seconds: LATENCY_INTERVAL_SECS,
            points,
        }
    }
}

fn point(at: u64, counts: &[u64; BUCKETS + 1]) -> LatencyPoint {
    let count = counts.iter().sum();
    LatencyPoint {
        at,
        count,
        p50_ms: quantile(counts, 0.5).map(|s| s * 1000.0),
        p99_ms: quantile(counts, 0.99).map(|s| s * 1000.0),
    }
}

/// The `q` quantile of bucketed counts, interpolated linearly within its bucket (as
/// Prometheus's `histogram_quantile`); in the open top bucket, the highest bound.
fn quantile(counts: &[u64; BUCKETS + 1], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let bounds = bucket_bounds();
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        if c > 0 && (below + c) as f64 >= rank {
            let Some(&upper) = bounds.get(i) else {
                return Some(bounds[BUCKETS - 1]);
            };
            let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
            let within = ((rank - below as f64) / c as f64).clamp(0.0, 1.0);
            return Some(lower + (upper - lower) * within);
        }
        below += c;
    }
    Some(bounds[BUCKETS - 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(i: usize) -> SessionRecord {
        SessionRecord {
            kind: "sign".into(),
            role: Role::Received,
            session: format!("{i:064x}"),
            key_id: "k".into(),
            coordinator: Some(1),
            nodes: vec![1, 2],
            messages: Some(1),
            outcome: "ok".into(),
            error: None,
            culprits: vec![],
            missing: vec![],
            started_at: i as u64,
            duration_ms: 1.0,
            received_from: None,
        }
    }

    #[test]
    fn keeps_the_newest_sessions_newest_first() {
        let mut j = Journal::default();
        for i in 0..SESSIONS_KEPT + 25 {
            j.record(record(i));
        }
        let kept = j.sessions();
        assert_eq!(kept.len(), SESSIONS_KEPT);
        assert_eq!(kept[0].started_at, (SESSIONS_KEPT + 24) as u64);
        assert_eq!(kept[SESSIONS_KEPT - 1].started_at, 25);
    }

    #[test]
    fn a_session_ending_again_replaces_its_record() {
        let mut j = Journal::default();
        let mut first = record(7);
        first.kind = "dkg".into();
        first.outcome = "timeout".into();
        j.record(first.clone());
        j.record(record(8));
        // The same request, as this node's signer answered it: a record of its own.
        let mut signed = record(8);
        signed.role = Role::Signer;
        j.record(signed);
        let mut again = first;
        again.outcome = "ok".into();
        j.record(again);
        let kept = j.sessions();
        assert_eq!(kept.len(), 3);
        assert_eq!(
            (kept[0].kind.as_str(), kept[0].outcome.as_str()),
            ("dkg", "ok")
        );
        assert_eq!((kept[1].role, kept[2].role), (Role::Signer, Role::Received));
    }

    #[test]
    fn quantiles_fall_in_the_right_buckets() {
        let mut j = Journal::default();
        // 98 fast (≤ 1 ms bucket: 0.5–1 ms), 2 slow (64–128 ms).
        for _ in 0..98 {
            j.sign_latency(1_000, 0.0008);
        }
        for _ in 0..2 {
            j.sign_latency(1_005, 0.1);
        }
        let view = j.latency(1_009);
        let last = view.points.last().unwrap();
        assert_eq!(last.at, 1_000);
        assert_eq!(last.count, 100);
        let p50 = last.p50_ms.unwrap();
        assert!((0.5..=1.0).contains(&p50), "p50 {p50}");
        let p99 = last.p99_ms.unwrap();
        assert!((64.0..=128.0).contains(&p99), "p99 {p99}");
        assert_eq!(view.points.len(), LATENCY_INTERVALS);
        assert!(view.points[..LATENCY_INTERVALS - 1]
            .iter()
            .all(|p| p.count == 0 && p.p50_ms.is_none()));
    }

    #[test]
    fn old_intervals_are_forgotten() {
        let mut j = Journal::default();
        j.sign_latency(0, 0.001);
        for i in 1..=LATENCY_INTERVALS as u64 + 5 {
            j.sign_latency(i * LATENCY_INTERVAL_SECS, 0.001);
        }
        assert_eq!(j.latency.len(), LATENCY_INTERVALS);
        let now = (LATENCY_INTERVALS as u64 + 5) * LATENCY_INTERVAL_SECS;
        let view = j.latency(now);
        assert!(view.points.iter().all(|p| p.count == 1));
    }

    proptest! {
        #[test]
        fn latency_is_bounded_and_ordered(samples in proptest::collection::vec((0u64..100_000, 0.0f64..100.0), 0..300)) {
            let mut j = Journal::default();
            let mut now = 0;
            for (dt, s) in samples {
                now += dt % 50;
                j.sign_latency(now, s);
            }
            prop_assert!(j.latency.len() <= LATENCY_INTERVALS);
            let view = j.latency(now);
            prop_assert!(view.points.len() <= LATENCY_INTERVALS);
            for p in &view.points {
                if let (Some(a), Some(b)) = (p.p50_ms, p.p99_ms) {
                    prop_assert!(a <= b && b <= 8192.0 + 1e-9, "p50 {} p99 {}", a, b);
                }
            }
        }
    }
}
