//! What every component of the node works with while it handles one event: the moment the
//! event is handled at (one clock read per event), the configuration, the peer book, the outbox,
//! the key store, metrics, the culprit tally, the deadlines, the random number generator, the
//! client tokens seen, the policy verdicts and the journal of recent sessions.
//! Components own their sessions; everything they share is lent to them here, for the length
//! of one event.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::warn;

use super::journal::Journal;
use super::offload::Finished;
use super::outbox::Outbox;
use super::peers::PeerBook;
use super::policy::PolicyGate;
use super::ratelimit::PeerLimits;
use super::timers::Timers;
use crate::auth::Authorizer;
use crate::config::Config;
use crate::dkg::{Done, Work};
use crate::keystore::{KeyStore, StoredKey};
use crate::metrics::Metrics;
use crate::rng::SecureRng;
use crate::wire::{NodeId, SessionId};
use crate::workers::Workers;

/// A key file written off the node task, coming back to be kept in memory.
#[derive(Debug)]
pub struct Stored {
    /// The DKG session that produced the key.
    pub session: SessionId,
    /// The key.
    pub key: Box<StoredKey>,
    /// Whether the write succeeded (the reason if not).
    pub result: Result<(), String>,
}

/// A DKG session's arithmetic, done on the worker pool, coming back to its session.
#[derive(Debug)]
pub struct Computed {
    /// The session (setup id) the work belongs to.
    pub session: SessionId,
    /// The result.
    pub done: Done,
}

/// How often each peer was caught misbehaving.
#[derive(Debug, Default)]
pub struct Culprits(BTreeMap<NodeId, u64>);

impl Culprits {
    /// Counts (and exports) each of `culprits` once.
    pub fn count(&mut self, culprits: &[NodeId], metrics: &Metrics) {
        for id in culprits {
            *self.0.entry(*id).or_default() += 1;
            metrics.culprit(*id);
        }
    }

    /// The tally.
    pub fn tally(&self) -> BTreeMap<NodeId, u64> {
        self.0.clone()
    }
}

/// Wall-clock time derived from the monotonic clock: one clock read per event serves both.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    at: Instant,
    unix: Duration,
}

impl WallClock {
    /// Pairs the monotonic instant `at` with the Unix time `unix` read at the same moment.
    pub fn new(at: Instant, unix: Duration) -> Self {
        WallClock { at, unix }
    }

    /// Seconds since the Unix epoch at `now`.
    pub fn unix_seconds(&self, now: Instant) -> u64 {
        (self.unix + now.saturating_duration_since(self.at)).as_secs()
    }
}

/// What the node's components share, owned by the node between events.
pub struct Shared {
    /// This node's configuration.
    pub config: std::sync::Arc<Config>,
    /// Peers and their state.
    pub peers: PeerBook,
    /// Where messages leave.
    pub outbox: Outbox,
    /// Stored keys.
    pub keystore: KeyStore,
    /// Metrics.
    pub metrics: Metrics,
    /// Misbehaviour tally.
    pub culprits: Culprits,
    /// Deadlines.
    pub timers: Timers,
    /// Randomness for protocol steps and ids.
    pub rng: Box<dyn SecureRng>,
    /// Where finished key writes report.
    pub stored: mpsc::Sender<Stored>,
    /// The pool that runs protocol arithmetic off the node task.
    pub workers: Workers,
    /// Where finished arithmetic reports.
    pub computed: mpsc::Sender<Computed>,
    /// Where finished signing arithmetic reports.
    pub finished: mpsc::Sender<Finished>,
    /// The wall clock.
    pub wall: WallClock,
    /// Client tokens, checked against this node's own clients.
    pub auth: Authorizer,
    /// The operator's policy verdicts.
    pub policy: PolicyGate,
    /// Per-peer request rates and warnings.
    pub limits: PeerLimits,
    /// Recent sessions and signing latency, for operators.
    pub journal: Journal,
}

impl Shared {
    /// Lends the shared state to the components for one event handled at `now`.
    pub fn at(&mut self, now: Instant) -> Ctx<'_> {
        Ctx {
            now,
            wall: self.wall,
            config: &self.config,
            peers: &self.peers,
            outbox: &mut self.outbox,
            keystore: &mut self.keystore,
            metrics: &self.metrics,
            culprits: &mut self.culprits,
            timers: &mut self.timers,
            rng: &mut *self.rng,
            stored: &self.stored,
            workers: &self.workers,
            computed: &self.computed,
            finished: &self.finished,
            auth: &mut self.auth,
            policy: &mut self.policy,
            limits: &mut self.limits,
            journal: &mut self.journal,
        }
    }
}

/// The node's shared state, lent to a component for one event.
pub struct Ctx<'a> {
    /// When the event is handled.
    pub now: Instant,
    /// The wall clock, for timestamps that are stored.
    pub wall: WallClock,
    /// This node's configuration.
    pub config: &'a Config,
    /// Peers and their state.
    pub peers: &'a PeerBook,
    /// Where messages leave.
    pub outbox: &'a mut Outbox,
    /// Stored keys.
    pub keystore: &'a mut KeyStore,
    /// Metrics.
    pub metrics: &'a Metrics,
    /// Misbehaviour tally.
    pub culprits: &'a mut Culprits,
    /// Deadlines.
    pub timers: &'a mut Timers,
    /// Randomness for protocol steps and ids.
    pub rng: &'a mut dyn SecureRng,
    /// Where finished key writes report.
    pub stored: &'a mpsc::Sender<Stored>,
    /// The pool that runs protocol arithmetic off the node task.
    pub workers: &'a Workers,
    /// Where finished arithmetic reports.
    pub computed: &'a mpsc::Sender<Computed>,
    /// Where finished signing arithmetic reports.
    pub finished: &'a mpsc::Sender<Finished>,
    /// Client tokens.
    pub auth: &'a mut Authorizer,
    /// The operator's policy verdicts.
    pub policy: &'a mut PolicyGate,
    /// Per-peer request rates and warnings.
    pub limits: &'a mut PeerLimits,
    /// Recent sessions and signing latency, for operators.
    pub journal: &'a mut Journal,
}

impl Ctx<'_> {
    /// This node's id.
    pub fn me(&self) -> NodeId {
        self.config.id
    }

    /// Seconds since the Unix epoch, now.
    pub fn unix_seconds(&self) -> u64 {
        self.wall.unix_seconds(self.now)
    }

    /// Counts misbehaviour.
    pub fn blame(&mut self, culprits: &[NodeId]) {
        self.culprits.count(culprits, self.metrics);
    }

    /// Writes a new key file (a DKG's, or a repaired or enrolled node's first share), or a
    /// held key's next epoch over its current one, on a blocking thread (fsync must not stall
    /// the node); the outcome comes back as [`Stored`]. Fails at once if the key cannot be
    /// encoded or a next epoch does not follow the current one.
    pub fn persist(&mut self, session: SessionId, key: StoredKey) -> Result<(), String> {
        let write = if self.keystore.contains(&key.key_id) {
            self.keystore.prepare_next(&key)
        } else {
            self.keystore.prepare(&key)
        };
        let write = write.map_err(|e| e.to_string())?;
        let tx = self.stored.clone();
        tokio::spawn(async move {
            let result = match tokio::task::spawn_blocking(move || write.commit()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(format!("key write task failed: {e}")),
            };
            if let Err(e) = &result {
                warn!(%session, error = %e, "key file not written");
            }
            let _ = tx
                .send(Stored {
                    session,
                    key: Box::new(key),
                    result,
                })
                .await;
        });
        Ok(())
    }

    /// Runs a session's arithmetic on the worker pool; the result comes back as [`Computed`].
    pub fn compute(&mut self, session: SessionId, work: Work) {
        let kind = work.kind();
        let workers = self.workers.clone();
        let tx = self.computed.clone();
        let metrics = self.metrics.clone();
        metrics.work_queued(1);
        tokio::spawn(async move {
            let done = workers
                .run(move || {
                    let started = Instant::now();
                    let done = work.run();
                    (done, started.elapsed())
                })
                .await;
            metrics.work_queued(-1);
            match done {
                Some((done, took)) => {
                    metrics.work_done(kind, took.as_secs_f64());
                    let _ = tx.send(Computed { session, done }).await;
                }
                // The session waits until its deadline, which names the phase.
                None => warn!(%session, kind, "DKG arithmetic did not finish"),
            }
        });
    }

    /// Runs signing arithmetic (`kind` names it in the metrics) on the worker pool; what it
    /// returns comes back to the node task as a [`Finished`]. A job that panics reports
    /// nothing: its session times out or its requester sees the request fail.
    pub fn offload(&mut self, kind: &'static str, job: impl FnOnce() -> Finished + Send + 'static) {
        let tx = self.finished.clone();
        let metrics = self.metrics.clone();
        metrics.work_queued(1);
        let queued = self.workers.spawn(move || {
            let started = Instant::now();
            let finished = job();
            metrics.work_queued(-1);
            metrics.work_done(kind, started.elapsed().as_secs_f64());
            // A worker thread is no runtime thread: it may wait for room in the node's queue.
            if let Err(mpsc::error::TrySendError::Full(f)) = tx.try_send(finished) {
                let _ = tx.blocking_send(f);
            }
        });
        if !queued {
            self.metrics.work_queued(-1);
            warn!(kind, "no worker pool: signing arithmetic dropped");
        }
    }
}
