//! The node: one task that owns all protocol state and routes each event to the component it
//! belongs to. Network events, caller requests, answers to requests this node sent, finished
//! key writes and deadlines are taken one at a time; the clock is read once per event and lent,
//! with the rest of the shared state, to the component in a [`context::Ctx`].
//!
//! Components, one file each: [`peers`] (who is who, sender authentication), [`outbox`]
//! (encoding and sending, replies routed by tag), [`timers`] (deadlines), [`dkg`] and
//! [`initiator`] (DKG sessions), [`forwarder`], [`coordinator`] and [`signer`] (the three
//! signing roles), [`checks`] (the admission and key checks every role shares), [`policy`] (the
//! operator's verdicts, which signing requests wait for). The node never
//! waits on the network: requests run in small tasks whose answers come back as [`outbox::Reply`];
//! nor on arithmetic: a DKG's costly steps run on the worker pool ([`crate::workers`]) and come
//! back as [`context::Computed`].

pub mod checks;
pub mod context;
pub mod coordinator;
pub mod dkg;
pub mod error;
#[cfg(feature = "fault-injection")]
pub mod faults;
pub mod forwarder;
pub mod handle;
mod inbound;
pub mod initiator;
pub mod journal;
pub mod offload;
pub mod outbox;
pub mod peers;
pub mod policy;
pub mod ratelimit;
mod reload;
pub mod requests;
mod roles;
pub mod shares;
pub mod signer;
pub mod timers;

use std::collections::HashMap;
use std::sync::Arc;

use libp2p::identity::Keypair;
use libp2p::PeerId;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::debug;

use crate::config::Config;
use crate::dkg::ConfirmationKeys;
use crate::keystore::KeyStore;
use crate::metrics::Metrics;
use crate::net::{self, Client};
use crate::rng::SecureRng;
use crate::signing::participant::NonceObserver;

use context::{Computed, Ctx, Culprits, Shared, Stored, WallClock};
use coordinator::CoordinatorDriver;
use dkg::DkgDriver;
use forwarder::Forwarder;
use outbox::{Interceptor, Outbox, Reply, ReplyTag};
use peers::{PeerBook, PeerChange};
use roles::Roles;
use signer::SignerDriver;
use timers::Timers;

pub use error::{NodeError, Refusal};
#[cfg(feature = "fault-injection")]
pub use faults::DkgFaults;
pub use forwarder::SignInput;
pub use handle::NodeHandle;
pub use reload::ReloadReport;
pub use requests::{
    default_threshold, BatchSignResponse, KeygenRequest, RefreshRequest, RepairRequest,
    ReshareRequest, SignResponse, StatusInfo, MAX_BATCH, MAX_SIGN_MESSAGE,
};

/// Capacity of the queues into the node.
const QUEUE: usize = 1024;

/// Everything a node is made of, built by the composition root.
pub struct NodeParts {
    /// Configuration.
    pub config: Arc<Config>,
    /// Identity (its PeerId and the confirmation signatures of DKGs).
    pub keypair: Keypair,
    /// The libp2p address the node listens on, port resolved (for operators).
    pub listening: libp2p::Multiaddr,
    /// Confirmation signing and checking for DKG sessions.
    pub confirmation_keys: Arc<dyn ConfirmationKeys>,
    /// Loaded key store.
    pub keystore: KeyStore,
    /// Network client.
    pub net: Client,
    /// Network events.
    pub events: mpsc::Receiver<net::Event>,
    /// Metrics.
    pub metrics: Metrics,
    /// Randomness for protocol steps and request ids.
    pub rng: Box<dyn SecureRng>,
    /// Test-only: sees every outgoing message.
    pub interceptor: Option<Box<dyn Interceptor>>,
    /// Test-only: sees every signing nonce.
    pub nonce_observer: Option<NonceObserver>,
    /// Test-only: sees every preprocessed signing nonce.
    pub pool_observer: Option<NonceObserver>,
    /// Test-only switches, shared with the handle.
    #[cfg(feature = "fault-injection")]
    pub faults: faults::Faults,
}

struct Node {
    peer_id: PeerId,
    listening: libp2p::Multiaddr,
    /// This node's identity (a reload builds the DKG's confirmation keys with it).
    keypair: libp2p::identity::Keypair,
    shared: Shared,
    dkg: DkgDriver,
    forwarder: Forwarder,
    coordinator: CoordinatorDriver,
    signer: SignerDriver,
}

/// One thing for the node to handle.
enum Event {
    Input(handle::Input),
    Reply(Reply),
    Stored(Stored),
    Computed(Computed),
    Finished(offload::Finished),
    Policy(policy::Decided),
    Net(net::Event),
    Timers,
}

/// The queues into the node task.
struct Queues {
    inputs: mpsc::Receiver<handle::Input>,
    replies: mpsc::Receiver<Reply>,
    stored: mpsc::Receiver<Stored>,
    computed: mpsc::Receiver<Computed>,
    finished: mpsc::Receiver<offload::Finished>,
    decided: mpsc::Receiver<policy::Decided>,
    events: mpsc::Receiver<net::Event>,
}

/// Spawns the node task; returns its handle and the task.
pub fn spawn(parts: NodeParts) -> (NodeHandle, JoinHandle<()>) {
    let (input_tx, input_rx) = mpsc::channel(QUEUE);
    let (reply_tx, reply_rx) = mpsc::channel(QUEUE);
    let (stored_tx, stored_rx) = mpsc::channel(QUEUE);
    let (policy_tx, policy_rx) = mpsc::channel(QUEUE);
    let (computed_tx, computed_rx) = mpsc::channel(QUEUE);
    let (finished_tx, finished_rx) = mpsc::channel(QUEUE);
    let (peers, ready) = PeerBook::new(&parts.config);
    let peer_id = parts.keypair.public().to_peer_id();
    let handle = NodeHandle {
        tx: input_tx,
        id: parts.config.id,
        peer_id,
        ready,
        #[cfg(feature = "fault-injection")]
        faults: parts.faults,
    };
    let pids: HashMap<_, _> = parts
        .config
        .peers
        .iter()
        .map(|p| (p.id, p.peer_id))
        .collect();
    let shared_presign = parts.config.presign_per_coordinator;
    let outbox = Outbox::new(
        parts.config.id,
        parts.net,
        pids,
        reply_tx,
        parts.config.max_message_size,
        parts.interceptor,
    );
    parts
        .metrics
        .known_peers(parts.config.peers.iter().map(|p| p.id));
    let shared = Shared {
        peers,
        outbox,
        keystore: parts.keystore,
        metrics: parts.metrics,
        culprits: Culprits::default(),
        timers: Timers::new(),
        rng: parts.rng,
        stored: stored_tx,
        workers: crate::workers::Workers::shared(),
        computed: computed_tx,
        finished: finished_tx,
        wall: WallClock::new(
            std::time::Instant::now(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default(),
        ),
        auth: crate::auth::Authorizer::new(parts.config.clients.clone()),
        limits: ratelimit::PeerLimits::new(parts.config.peer_requests_per_second),
        journal: journal::Journal::default(),
        policy: policy::PolicyGate::new(
            parts
                .config
                .policy
                .clone()
                .map(crate::policy::PolicyRunner::new),
            policy_tx,
        ),
        config: parts.config,
    };
    let node = Node {
        peer_id,
        listening: parts.listening,
        keypair: parts.keypair.clone(),
        shared,
        dkg: DkgDriver::new(parts.confirmation_keys),
        forwarder: Forwarder::default(),
        coordinator: CoordinatorDriver::default(),
        signer: SignerDriver::new(
            parts.nonce_observer,
            parts.pool_observer,
            rand::random(),
            shared_presign,
        ),
    };
    let queues = Queues {
        inputs: input_rx,
        replies: reply_rx,
        stored: stored_rx,
        computed: computed_rx,
        finished: finished_rx,
        decided: policy_rx,
        events: parts.events,
    };
    let task = tokio::spawn(node.run(queues));
    (handle, task)
}

impl Node {
    async fn run(mut self, mut q: Queues) {
        loop {
            if self.shared.outbox.has_backlog() {
                self.shared.outbox.flush().await;
            }
            let deadline = self.shared.timers.next_deadline();
            let event = tokio::select! {
                input = q.inputs.recv() => match input {
                    Some(i) => Event::Input(i),
                    None => break,
                },
                Some(reply) = q.replies.recv() => Event::Reply(reply),
                Some(s) = q.stored.recv() => Event::Stored(s),
                Some(c) = q.computed.recv() => Event::Computed(c),
                Some(f) = q.finished.recv() => Event::Finished(f),
                Some(d) = q.decided.recv() => Event::Policy(d),
                event = q.events.recv() => match event {
                    Some(e) => Event::Net(e),
                    None => break,
                },
                _ = sleep_until(deadline) => Event::Timers,
            };
            self.handle(event);
        }
        debug!("node loop stopped");
    }

    /// Handles one event at one moment.
    fn handle(&mut self, event: Event) {
        let event = match event {
            Event::Input(handle::Input::Reload { config, reply }) => {
                let _ = reply.send(self.reload(config.map(|c| *c)));
                return;
            }
            other => other,
        };
        let now = std::time::Instant::now();
        let change = match &event {
            Event::Net(e) => {
                let shared = &mut self.shared;
                let change = shared.peers.on_event(e, now);
                shared.metrics.set_peers(shared.peers.connected_count());
                change
            }
            _ => PeerChange::None,
        };
        let me = (self.peer_id, &self.listening);
        let dkg = &mut self.dkg;
        let mut ctx = self.shared.at(now);
        let mut roles = Roles {
            forwarder: &mut self.forwarder,
            coordinator: &mut self.coordinator,
            signer: &mut self.signer,
        };
        match event {
            Event::Input(input) => on_input(&mut ctx, dkg, &mut roles, input, me),
            Event::Reply(reply) => match reply.tag {
                ReplyTag::DkgStart => {
                    dkg.on_start_reply(&mut ctx, reply.session, reply.from, reply.result)
                }
                ReplyTag::DkgPull => {
                    dkg.on_pull_reply(&mut ctx, reply.session, reply.from, reply.result)
                }
                ReplyTag::Forward => {
                    let next =
                        roles
                            .forwarder
                            .on_reply(&mut ctx, reply.session, reply.from, reply.result);
                    roles.coordinate(&mut ctx, next);
                }
                ReplyTag::Signer => {
                    let answer = roles.coordinator.on_reply(
                        &mut ctx,
                        roles.signer,
                        reply.session,
                        reply.from,
                        reply.result,
                    );
                    roles.answered(&mut ctx, answer);
                }
            },
            Event::Stored(s) => dkg.on_stored(&mut ctx, s),
            Event::Computed(c) => dkg.on_computed(&mut ctx, c),
            Event::Finished(f) => roles.on_finished(&mut ctx, f),
            Event::Policy(d) => policy::on_decided(&mut ctx, &mut roles, d),
            Event::Net(e) => {
                match change {
                    PeerChange::Lost(node) => {
                        dkg.on_peer_lost(&mut ctx, node);
                        roles.signer.on_peer_lost(node);
                        roles.coordinator.on_peer_lost(node);
                    }
                    PeerChange::Connected(node) => roles.signer.on_peer_ready(&mut ctx, node),
                    PeerChange::None => {}
                }
                inbound::on_net(&mut ctx, dkg, &mut roles, e);
            }
            Event::Timers => {
                for timer in ctx.timers.due(now) {
                    match timer {
                        timers::Timer::Coordination(sid) => {
                            let answer = roles.coordinator.on_timer(&mut ctx, roles.signer, sid);
                            roles.answered(&mut ctx, answer);
                        }
                        timers::Timer::Forward(rid) => roles.forwarder.on_timer(&mut ctx, rid),
                        timers::Timer::Nonces => roles.signer.on_timer(&mut ctx),
                        other => dkg.on_timer(&mut ctx, other),
                    }
                }
            }
        }
    }
}

fn on_input(
    ctx: &mut Ctx<'_>,
    dkg: &mut DkgDriver,
    roles: &mut Roles<'_>,
    input: handle::Input,
    (peer_id, listening): (PeerId, &libp2p::Multiaddr),
) {
    use handle::Input;
    match input {
        Input::Keygen { req, reply } => dkg.start_keygen(ctx, req, reply),
        Input::Refresh { req, reply } => dkg.start_refresh(ctx, req, reply),
        Input::Reshare { req, reply } => dkg.start_reshare(ctx, req, reply),
        Input::Repair { req, reply } => dkg.start_repair(ctx, req, reply),
        // Handled by the node itself, before any component borrows the shared state.
        Input::Reload { reply, .. } => {
            let _ = reply.send(Err(NodeError::Internal("reload not handled".into())));
        }
        Input::Status { reply } => {
            let _ = reply.send(StatusInfo {
                id: ctx.me(),
                peer_id: peer_id.to_string(),
                connected_peers: ctx.peers.connected(),
                ready_peers: ctx.peers.ready().into_iter().collect(),
                keys: ctx.keystore.keys().map(|k| k.key_id.clone()).collect(),
                active_sessions: dkg.active() + roles.coordinator.active(),
                culprits: ctx.culprits.tally(),
                presigned_nonces: roles.signer.presigned(),
                presigned_commitments: roles.coordinator.stocked(),
            });
        }
        Input::Peers { reply } => {
            let _ =
                reply.send(
                    ctx.peers
                        .infos(ctx.config, (peer_id, listening), ctx.now, ctx.wall),
                );
        }
        Input::Sessions { reply } => {
            let _ = reply.send(ctx.journal.sessions());
        }
        Input::Latency { reply } => {
            let _ = reply.send(ctx.journal.latency(ctx.unix_seconds()));
        }
        Input::ListKeys { reply } => {
            let _ = reply.send(ctx.keystore.keys().map(|k| k.info()).collect());
        }
        Input::GetKey { key_id, reply } => {
            let _ = reply.send(ctx.keystore.get(&key_id).map(|k| k.info()));
        }
        Input::Sign { req, reply } => {
            let next = roles.forwarder.start(ctx, req, reply);
            roles.coordinate(ctx, next);
        }
    }
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}
