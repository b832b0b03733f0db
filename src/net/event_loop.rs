//! The event loop that owns the `Swarm`: executes [`Command`]s, turns swarm events into
//! [`Event`]s, keeps every configured peer dialled (with backoff while it is down) and retries
//! broadcasts that found no subscribed peer yet.
//!
//! The loop never stops polling the swarm to wait for the node: when the node's queue is full,
//! a gossip message or an inbound request is dropped (counted in
//! `frostnode_net_events_dropped_total` and logged), and connection and subscription changes,
//! which must not be lost, wait in order in a small backlog.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use super::dialing::{dial_delay, Redial, REDIAL_MIN};
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageId};
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr, PeerId, Swarm};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::behaviour::{Behaviour, BehaviourEvent};
use super::client::Client;
use super::error::NetError;
use super::messages::{Command, Event, NetParams};
use crate::metrics::{DroppedEvents, DroppedLabels};
use crate::wire::DKG_TOPIC;

/// How long a broadcast is retried while no peer is subscribed.
const PUBLISH_RETRY_FOR: Duration = Duration::from_secs(10);
/// Capacity of the command channel from the node's clients.
const COMMAND_QUEUE: usize = 4096;
/// Consecutive failed pings ([`super::behaviour::PING_INTERVAL`] apart) that close a
/// connection: one ping lost to a busy moment does not cut a healthy connection.
const PING_FAILURES_TO_CLOSE: u32 = 2;
/// Least time between two warnings about dropped events.
const DROP_WARN_EVERY: Duration = Duration::from_secs(5);

/// Owns the swarm; run it with [`EventLoop::run`].
pub struct EventLoop {
    pub(super) swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    /// Peer state events waiting for room in the node's queue, oldest first.
    backlog: VecDeque<Event>,
    dropped: Option<DroppedEvents>,
    gossip_dropped: Option<DroppedEvents>,
    dropped_since_warning: u64,
    last_drop_warning: Option<Instant>,
    topic: IdentTopic,
    pub(super) peers: HashMap<PeerId, Multiaddr>,
    pub(super) redial: HashMap<PeerId, Redial>,
    pending_requests: HashMap<OutboundRequestId, oneshot::Sender<Result<Vec<u8>, NetError>>>,
    pending_publish: VecDeque<(Vec<u8>, Instant)>,
    /// Consecutive ping failures by connection.
    ping_failures: HashMap<libp2p::swarm::ConnectionId, u32>,
    listen_addrs: Vec<Multiaddr>,
    metrics: Option<libp2p::metrics::Metrics>,
}

impl EventLoop {
    /// Builds the swarm and starts listening. Returns the client, the event receiver and the
    /// loop (not yet running: call [`EventLoop::wait_listening`] then spawn [`EventLoop::run`]).
    pub fn new(params: NetParams) -> Result<(Client, mpsc::Receiver<Event>, EventLoop), NetError> {
        let setup = |e: &dyn std::fmt::Display| NetError::Setup(e.to_string());
        let peer_count = params.peers.len();
        let max = params.max_message_size;
        let timeout = params.request_timeout;
        let gossip = params.gossip;
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(params.keypair.clone())
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| setup(&e))?
            .with_dns()
            .map_err(|e| setup(&e))?
            .with_behaviour(|key| {
                Behaviour::new(key, peer_count, max, timeout, gossip)
                    .map_err(Box::<dyn std::error::Error + Send + Sync>::from)
            })
            .map_err(|e| setup(&e))?
            .with_swarm_config(|c| {
                c.with_idle_connection_timeout(Duration::from_secs(3600))
                    // Every peer is a frostnode speaking the same protocols: a new substream
                    // names its protocol and sends its request at once, rather than waiting a
                    // round trip for the protocol to be confirmed (one round trip saved per
                    // request, which is what a signature costs on a WAN).
                    .with_substream_upgrade_protocol_override(
                        libp2p::core::upgrade::Version::V1Lazy,
                    )
            })
            .build();
        let topic = IdentTopic::new(DKG_TOPIC);
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&topic)
            .map_err(|e| setup(&e))?;
        let mut peers = HashMap::new();
        for (peer, addr) in params.peers {
            swarm.behaviour_mut().allow.allow_peer(peer);
            peers.insert(peer, addr);
        }
        swarm
            .listen_on(params.listen.clone())
            .map_err(|e| NetError::Listen {
                addr: params.listen.to_string(),
                reason: e.to_string(),
            })?;
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        let (ev_tx, ev_rx) = mpsc::channel(params.event_queue.max(1));
        let now = Instant::now();
        let me = *swarm.local_peer_id();
        let redial = peers
            .keys()
            .map(|p| {
                (
                    *p,
                    Redial {
                        at: now + dial_delay(me, *p, Duration::ZERO),
                        backoff: REDIAL_MIN,
                    },
                )
            })
            .collect();
        let event_loop = EventLoop {
            swarm,
            commands: cmd_rx,
            events: ev_tx,
            backlog: VecDeque::new(),
            dropped: None,
            gossip_dropped: None,
            dropped_since_warning: 0,
            last_drop_warning: None,
            topic,
            peers,
            redial,
            pending_requests: HashMap::new(),
            pending_publish: VecDeque::new(),
            ping_failures: HashMap::new(),
            listen_addrs: Vec::new(),
            metrics: None,
        };
        Ok((Client { tx: cmd_tx }, ev_rx, event_loop))
    }

    /// Drives the swarm until the listener reports its address (port 0 resolved).
    pub async fn wait_listening(&mut self, limit: Duration) -> Result<Multiaddr, NetError> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(a) = self.listen_addrs.first() {
                return Ok(a.clone());
            }
            let event = tokio::time::timeout_at(deadline, self.swarm.select_next_some())
                .await
                .map_err(|_| NetError::Setup("listener did not start in time".into()))?;
            match event {
                SwarmEvent::NewListenAddr { address, .. } => self.listen_addrs.push(address),
                SwarmEvent::ListenerError { error, .. } => {
                    return Err(NetError::Setup(format!("listener failed: {error}")))
                }
                SwarmEvent::ListenerClosed { reason, .. } => {
                    return Err(NetError::Setup(format!("listener closed: {reason:?}")))
                }
                _ => {}
            }
        }
    }

    /// Records libp2p's swarm, gossipsub, identify and ping metrics.
    pub fn with_metrics(mut self, metrics: libp2p::metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Counts the events dropped because the node's queue was full.
    pub fn with_drop_counter(mut self, counter: DroppedEvents) -> Self {
        self.dropped = Some(counter);
        self
    }

    /// Counts the broadcasts GossipSub dropped on their way to a slow peer.
    pub fn with_gossip_drop_counter(mut self, counter: DroppedEvents) -> Self {
        self.gossip_dropped = Some(counter);
        self
    }

    /// Sets a peer's dial address before the loop runs (for clusters whose ports are only
    /// known once every node listens).
    pub fn set_peer_address(&mut self, peer: PeerId, addr: Multiaddr) {
        self.swarm.behaviour_mut().allow.allow_peer(peer);
        self.peers.insert(peer, addr);
        let me = *self.swarm.local_peer_id();
        self.redial.insert(
            peer,
            Redial {
                at: Instant::now() + dial_delay(me, peer, Duration::ZERO),
                backoff: REDIAL_MIN,
            },
        );
    }

    /// This node's PeerId.
    pub fn local_peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Runs until [`Command::Shutdown`] or until every client handle is dropped.
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let backlog_tx = (!self.backlog.is_empty()).then(|| self.events.clone());
            tokio::select! {
                permit = reserve(backlog_tx.as_ref()) => match permit {
                    Ok(permit) => {
                        if let Some(event) = self.backlog.pop_front() {
                            permit.send(event);
                        }
                    }
                    Err(_) => self.backlog.clear(),
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(c) => self.on_command(c),
                },
                _ = tick.tick() => {
                    self.dial_due();
                    self.retry_publish();
                }
            }
        }
        for (_, reply) in self.pending_requests.drain() {
            let _ = reply.send(Err(NetError::Stopped));
        }
        tracing::debug!("network event loop stopped");
    }

    fn retry_publish(&mut self) {
        let now = Instant::now();
        let mut remaining = VecDeque::new();
        while let Some((data, until)) = self.pending_publish.pop_front() {
            match self
                .swarm
                .behaviour_mut()
                .gossipsub
                .publish(self.topic.clone(), data.clone())
            {
                Ok(_) => {}
                Err(gossipsub::PublishError::NoPeersSubscribedToTopic)
                | Err(gossipsub::PublishError::AllQueuesFull(_))
                    if until > now =>
                {
                    remaining.push_back((data, until))
                }
                Err(e) => tracing::warn!(error = %e, "broadcast dropped"),
            }
        }
        self.pending_publish = remaining;
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish { data } => {
                let r = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(self.topic.clone(), data.clone());
                match r {
                    Ok(_) => {}
                    Err(gossipsub::PublishError::NoPeersSubscribedToTopic)
                    | Err(gossipsub::PublishError::AllQueuesFull(_)) => {
                        tracing::debug!("no subscribed peer yet; broadcast will be retried");
                        self.pending_publish
                            .push_back((data, Instant::now() + PUBLISH_RETRY_FOR));
                    }
                    Err(e) => tracing::warn!(error = %e, "broadcast failed"),
                }
            }
            Command::Request { peer, data, reply } => {
                let id = self.swarm.behaviour_mut().rpc.send_request(&peer, data);
                self.pending_requests.insert(id, reply);
            }
            Command::Respond { channel, data } => {
                if self
                    .swarm
                    .behaviour_mut()
                    .rpc
                    .send_response(channel, data)
                    .is_err()
                {
                    tracing::debug!("response not sent: the requester is gone");
                }
            }
            Command::Validate {
                message_id,
                propagation_source,
                acceptance,
            } => {
                self.judge(&message_id, &propagation_source, acceptance);
            }
            Command::SetPeerAddress { peer, addr } => {
                self.set_peer_address(peer, addr);
                self.dial_due();
            }
            Command::SetPeers { peers } => {
                self.set_peers(peers);
                self.dial_due();
            }
            Command::Shutdown => {}
        }
    }

    /// Reports the verdict on a gossip message (only accepted ones would be forwarded).
    fn judge(&mut self, message_id: &MessageId, via: &PeerId, acceptance: MessageAcceptance) {
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(message_id, via, acceptance);
    }

    /// Hands an event to the node without waiting. Peer state events queue up behind each
    /// other when the node is behind; messages are dropped instead.
    fn emit(&mut self, event: Event) {
        let is_state = matches!(
            event,
            Event::Connected(_)
                | Event::Disconnected(_)
                | Event::Subscribed(_)
                | Event::Unsubscribed(_)
        );
        if is_state && !self.backlog.is_empty() {
            self.backlog.push_back(event);
            return;
        }
        match self.events.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Closed(_)) => {
                tracing::debug!("node stopped listening to network events");
            }
            // A round trip for the operators' view: the next ping brings another.
            Err(TrySendError::Full(Event::Pinged { .. })) => {}
            Err(TrySendError::Full(event)) if is_state => self.backlog.push_back(event),
            Err(TrySendError::Full(event)) => self.drop_event(event),
        }
    }

    fn drop_event(&mut self, event: Event) {
        let kind = match event {
            Event::Gossip {
                message_id,
                propagation_source,
                ..
            } => {
                // Nothing will judge it: let gossipsub forget it now.
                self.judge(&message_id, &propagation_source, MessageAcceptance::Ignore);
                "gossip"
            }
            // Dropping the channel closes the stream: the requester sees a failure at once.
            Event::Request { .. } => "request",
            _ => "state",
        };
        if let Some(c) = &self.dropped {
            c.get_or_create(&DroppedLabels { kind: kind.into() }).inc();
        }
        self.dropped_since_warning += 1;
        let now = Instant::now();
        if self
            .last_drop_warning
            .is_none_or(|at| now.duration_since(at) >= DROP_WARN_EVERY)
        {
            tracing::warn!(
                dropped = self.dropped_since_warning,
                kind,
                "node is behind: network messages dropped"
            );
            self.dropped_since_warning = 0;
            self.last_drop_warning = Some(now);
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        if let SwarmEvent::ConnectionClosed { connection_id, .. } = &event {
            self.ping_failures.remove(connection_id);
        }
        if let Some(m) = &self.metrics {
            use libp2p::metrics::Recorder;
            m.record(&event);
            match &event {
                SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => m.record(e),
                SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => m.record(e),
                SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => m.record(e),
                _ => {}
            }
        }
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                self.listen_addrs.push(address);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                endpoint,
                ..
            } => {
                self.redial.remove(&peer_id);
                if num_established.get() == 1 {
                    tracing::info!(peer = %peer_id, addr = %endpoint.get_remote_address(), "peer connected");
                    self.emit(Event::Connected(peer_id));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                cause,
                ..
            } => {
                let cause = cause
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "closed".into());
                tracing::info!(peer = %peer_id, %cause, "peer disconnected");
                self.schedule_redial(peer_id);
                self.emit(Event::Disconnected(peer_id));
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } => {
                tracing::debug!(%peer, error = %error, "dial failed");
                if !self.swarm.is_connected(&peer) {
                    self.schedule_redial(peer);
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                tracing::debug!(addr = %send_back_addr, error = %error, "incoming connection refused");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(ev)) => self.on_gossip(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Rpc(ev)) => self.on_rpc(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ev)) => match ev.result {
                Ok(rtt) => {
                    self.ping_failures.remove(&ev.connection);
                    self.emit(Event::Pinged { peer: ev.peer, rtt });
                }
                Err(e) => {
                    let failures = self.ping_failures.entry(ev.connection).or_default();
                    *failures += 1;
                    if *failures >= PING_FAILURES_TO_CLOSE {
                        tracing::info!(peer = %ev.peer, error = %e, failures = *failures, "pings failed; closing connection");
                        self.ping_failures.remove(&ev.connection);
                        self.swarm.close_connection(ev.connection);
                    } else {
                        tracing::debug!(peer = %ev.peer, error = %e, failures = *failures, "ping failed");
                    }
                }
            },
            _ => {}
        }
    }

    fn on_gossip(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => match message.source {
                Some(source) => self.emit(Event::Gossip {
                    source,
                    propagation_source,
                    message_id,
                    data: message.data,
                }),
                None => self.judge(&message_id, &propagation_source, MessageAcceptance::Reject),
            },
            gossipsub::Event::Subscribed { peer_id, topic } if topic == self.topic.hash() => {
                self.emit(Event::Subscribed(peer_id));
                if !self.pending_publish.is_empty() {
                    self.retry_publish();
                }
            }
            gossipsub::Event::Unsubscribed { peer_id, topic } if topic == self.topic.hash() => {
                self.emit(Event::Unsubscribed(peer_id))
            }
            gossipsub::Event::SlowPeer {
                peer_id,
                failed_messages,
            } => {
                // A DKG pulls what a peer missed; this says where it went.
                tracing::debug!(peer = %peer_id, priority = failed_messages.priority, other = failed_messages.non_priority, "broadcasts dropped on their way to a slow peer");
                if let Some(counter) = &self.gossip_dropped {
                    for (queue, n) in [
                        ("priority", failed_messages.priority),
                        ("other", failed_messages.non_priority),
                    ] {
                        if n > 0 {
                            counter
                                .get_or_create(&DroppedLabels { kind: queue.into() })
                                .inc_by(n as u64);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn on_rpc(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.emit(Event::Request {
                    peer,
                    data: request,
                    channel,
                }),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.pending_requests.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(reply) = self.pending_requests.remove(&request_id) {
                    let _ = reply.send(Err(NetError::Request {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, error = %error, "inbound request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}

/// Room for one event in the node's queue; never ready without a sender.
async fn reserve(
    tx: Option<&mpsc::Sender<Event>>,
) -> Result<mpsc::Permit<'_, Event>, mpsc::error::SendError<()>> {
    match tx {
        Some(tx) => tx.reserve().await,
        None => std::future::pending().await,
    }
}
