//! Prometheus metrics (`GET /metrics`): protocol sessions by outcome, signing latency,
//! connected peers, culprits caught, and libp2p's own swarm metrics.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::wire::NodeId;

/// Labels of a session counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `started`, `succeeded` or `failed`.
    pub outcome: String,
    /// Failure class (`timeout`, `unavailable`, `invalid_shares`, …); empty otherwise.
    pub reason: String,
}

/// Labels of the culprit counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CulpritLabels {
    /// The misbehaving node.
    pub node: String,
}

/// Labels of the counter of network events the node could not take in time.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DroppedLabels {
    /// `gossip` or `request`.
    pub kind: String,
}

/// Labels of the DKG pull counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PullLabels {
    /// The step whose message was asked for (`begin`, `round1`, `round2`, `echo`, `confirm`).
    pub step: String,
}

/// Labels of the worker-pool time counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkLabels {
    /// What ran (`decode`, `part2`, `part3`).
    pub kind: String,
}

/// Counter of network events dropped because the node's queue was full.
pub type DroppedEvents = Family<DroppedLabels, Counter>;

/// The node's metric handles (cheap to clone; all share one registry).
#[derive(Clone)]
pub struct Metrics {
    dkg: Family<OutcomeLabels, Counter>,
    sign: Family<OutcomeLabels, Counter>,
    sign_seconds: Histogram,
    dkg_seconds: Histogram,
    peers: Gauge,
    culprits: Family<CulpritLabels, Counter>,
    dropped: DroppedEvents,
    policy: Family<OutcomeLabels, Counter>,
    pulls: Family<PullLabels, Counter>,
    work_seconds: Family<WorkLabels, Counter<f64, AtomicU64>>,
    work_pending: Gauge,
    gossip_dropped: DroppedEvents,
    signed_rounds: Family<RoundsLabels, Counter>,
}

/// Labels of `frostnode_signatures_coordinated`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoundsLabels {
    /// `one` (every other signer used a preprocessed nonce) or `two`.
    pub rounds: String,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn labels(outcome: &str, reason: &str) -> OutcomeLabels {
    OutcomeLabels {
        outcome: outcome.into(),
        reason: reason.into(),
    }
}

impl Metrics {
    /// Registers the node's metrics under the `frostnode_` prefix.
    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            dkg: Family::default(),
            sign: Family::default(),
            // 0.25 ms .. ~8 s
            sign_seconds: Histogram::new(exponential_buckets(0.000_25, 2.0, 16)),
            // 1 ms .. ~65 s
            dkg_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            peers: Gauge::default(),
            culprits: Family::default(),
            dropped: Family::default(),
            policy: Family::default(),
            pulls: Family::default(),
            work_seconds: Family::default(),
            work_pending: Gauge::default(),
            gossip_dropped: Family::default(),
            signed_rounds: Family::default(),
        };
        registry.register(
            "dkg_sessions",
            "DKG sessions on this node, by outcome and failure reason",
            m.dkg.clone(),
        );
        registry.register(
            "dkg_duration_seconds",
            "Time from joining a DKG to storing the key",
            m.dkg_seconds.clone(),
        );
        registry.register(
            "sign_requests",
            "Signing requests received by this node, by outcome and failure reason",
            m.sign.clone(),
        );
        registry.register(
            "sign_duration_seconds",
            "Signing request latency at the node that received it",
            m.sign_seconds.clone(),
        );
        registry.register(
            "connected_peers",
            "Configured peers with an open connection",
            m.peers.clone(),
        );
        registry.register(
            "culprits",
            "Misbehaviour detected (invalid shares, equivocation, bad packages), by node",
            m.culprits.clone(),
        );
        registry.register(
            "net_events_dropped",
            "Network messages dropped because the node task was behind, by kind",
            m.dropped.clone(),
        );
        registry.register(
            "policy_decisions",
            "Verdicts of the operator's policy command on signing requests, by outcome",
            m.policy.clone(),
        );
        registry.register(
            "dkg_pulls",
            "DKG messages this node asked their sender for directly because the broadcast (or \
             share) had not arrived in time, by step",
            m.pulls.clone(),
        );
        registry.register(
            "work_seconds",
            "Thread time this node's protocol arithmetic took on the worker pool, by kind \
             (DKG: decode, part2, part3)",
            m.work_seconds.clone(),
        );
        registry.register(
            "gossip_dropped",
            "Broadcasts GossipSub dropped on their way to a peer that did not take them in \
             time, by queue: `priority` (this node's own broadcasts and control messages, \
             queue full) or `other` (forwarded copies, or any broadcast past its timeout)",
            m.gossip_dropped.clone(),
        );
        registry.register(
            "signatures_coordinated",
            "Signatures this node coordinated, by network rounds: `one` when every other signer \
             signed with a nonce it had preprocessed for this node, `two` otherwise",
            m.signed_rounds.clone(),
        );
        registry.register(
            "work_pending",
            "Jobs of this node waiting for or running on the worker pool",
            m.work_pending.clone(),
        );
        m
    }

    /// A signature this node coordinated, in one network round or two.
    pub fn signed_in(&self, one_round: bool) {
        let rounds = if one_round { "one" } else { "two" };
        self.signed_rounds
            .get_or_create(&RoundsLabels {
                rounds: rounds.into(),
            })
            .inc();
    }

    /// `delta` jobs joined (positive) or left (negative) the worker pool.
    pub fn work_queued(&self, delta: i64) {
        self.work_pending.inc_by(delta);
    }

    /// A job of `kind` took `seconds` on a worker thread.
    pub fn work_done(&self, kind: &str, seconds: f64) {
        self.work_seconds
            .get_or_create(&WorkLabels { kind: kind.into() })
            .inc_by(seconds);
    }

    /// This node asked a participant for its message of `step`.
    pub fn dkg_pull(&self, step: &str) {
        self.pulls
            .get_or_create(&PullLabels { step: step.into() })
            .inc();
    }

    /// The policy command approved (`true`) or refused a request.
    pub fn policy_decision(&self, approved: bool) {
        let outcome = if approved { "approved" } else { "refused" };
        self.policy.get_or_create(&labels(outcome, "")).inc();
    }

    /// The counter of broadcasts GossipSub dropped on their way out.
    pub fn gossip_dropped(&self) -> DroppedEvents {
        self.gossip_dropped.clone()
    }

    /// The counter the network event loop increments when it drops an event.
    pub fn dropped_events(&self) -> DroppedEvents {
        self.dropped.clone()
    }

    /// A DKG session started on this node.
    pub fn dkg_started(&self) {
        self.dkg.get_or_create(&labels("started", "")).inc();
    }

    /// A DKG session ended on this node.
    pub fn dkg_ended(&self, failure: Option<&str>, seconds: f64) {
        match failure {
            None => {
                self.dkg.get_or_create(&labels("succeeded", "")).inc();
                self.dkg_seconds.observe(seconds);
            }
            Some(reason) => {
                self.dkg.get_or_create(&labels("failed", reason)).inc();
            }
        }
    }

    /// A signing request arrived at this node.
    pub fn sign_started(&self) {
        self.sign.get_or_create(&labels("started", "")).inc();
    }

    /// A signing request received by this node was answered.
    pub fn sign_ended(&self, failure: Option<&str>, seconds: f64) {
        match failure {
            None => {
                self.sign.get_or_create(&labels("succeeded", "")).inc();
                self.sign_seconds.observe(seconds);
            }
            Some(reason) => {
                self.sign.get_or_create(&labels("failed", reason)).inc();
            }
        }
    }

    /// The number of connected configured peers.
    pub fn set_peers(&self, n: usize) {
        self.peers.set(n as i64);
    }

    /// Starts every configured peer's culprit count at zero, so the first culprit is an
    /// increase Prometheus sees (a series born at 1 has no increase).
    pub fn known_peers(&self, nodes: impl IntoIterator<Item = NodeId>) {
        for node in nodes {
            drop(self.culprits.get_or_create(&CulpritLabels {
                node: node.to_string(),
            }));
        }
    }

    /// A peer was caught misbehaving.
    pub fn culprit(&self, node: NodeId) {
        self.culprits
            .get_or_create(&CulpritLabels {
                node: node.to_string(),
            })
            .inc();
    }
}

/// A finished registry, shared with the HTTP API for encoding.
pub type SharedRegistry = Arc<Registry>;

/// Encodes every metric in the Prometheus text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}
