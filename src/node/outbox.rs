//! The outbox: the one place where the node encodes messages and hands them to the network.
//! Broadcasts go to GossipSub, one-way messages and requests to request-response, answers to
//! the request they answer. Every request is sent with a [`ReplyTag`] naming the component that
//! takes its answer, and the answer comes back as a [`Reply`] carrying that tag: nothing has to
//! guess where a reply belongs.
//!
//! The command queue towards the network is bounded. When it is full, commands wait here in
//! order, and the node flushes them (waiting for room) before it takes its next input. Tests
//! can install an [`Interceptor`] that sees every message before it leaves.

use std::collections::{HashMap, VecDeque};

use libp2p::gossipsub::{MessageAcceptance, MessageId};
use libp2p::request_response::ResponseChannel;
use libp2p::PeerId;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::net::{Client, Command, TryCommandError};
use crate::wire::{self, Body, Envelope, NodeId, SessionId};

/// Which component takes the answer to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyTag {
    /// A `DkgStart` this node sent as a DKG initiator.
    DkgStart,
    /// A `DkgPull` for a message this node lacks.
    DkgPull,
    /// A `SignForward` to an elected coordinator.
    Forward,
    /// A `CommitRequest` or `SignRequest` of a coordination.
    Signer,
}

/// The answer (or failure) of a request this node sent.
#[derive(Debug)]
pub struct Reply {
    /// The component the request was sent for.
    pub tag: ReplyTag,
    /// The envelope's session.
    pub session: SessionId,
    /// The node that was asked.
    pub from: NodeId,
    /// Its answer, or why there is none.
    pub result: Result<Body, String>,
}

/// Sees every message before it leaves this node (installed by tests to make a node
/// misbehave; a running node has none unless a test installs one).
pub trait Interceptor: Send {
    /// A message about to be sent to `to` (`None`: broadcast), including answers to requests
    /// and this node's answers to itself. Returns what to send instead: usually `[body]`.
    fn outgoing(&mut self, session: SessionId, to: Option<NodeId>, body: Body) -> Vec<Body>;

    /// An inbound request. Returns the channel to serve the request, or keeps it to leave
    /// the request unanswered.
    fn inbound(&mut self, channel: ResponseChannel<Vec<u8>>) -> Option<ResponseChannel<Vec<u8>>>;

    /// A broadcast about to be published: `Some(nodes)` sends it to those nodes alone, by
    /// request-response, instead (a node that shows a message to some participants only).
    fn narrow(&mut self, _session: SessionId, _body: &Body) -> Option<Vec<NodeId>> {
        None
    }

    /// A broadcast that arrived: `true` drops it as if it never came (lossy delivery).
    fn drops_gossip(&mut self, _body: &Body) -> bool {
        false
    }
}

/// Encodes and sends everything the node sends.
pub struct Outbox {
    me: NodeId,
    net: Client,
    peers: HashMap<NodeId, PeerId>,
    replies: mpsc::Sender<Reply>,
    max_message_size: usize,
    backlog: VecDeque<Command>,
    interceptor: Option<Box<dyn Interceptor>>,
}

impl Outbox {
    /// Takes the peers of a reloaded config.
    pub fn set_peers(&mut self, peers: HashMap<NodeId, PeerId>) {
        self.peers = peers;
    }

    /// The network layer's handle.
    pub fn net(&self) -> &Client {
        &self.net
    }

    /// An outbox for node `me`, sending through `net` to `peers`; answers to requests go to
    /// `replies`.
    pub fn new(
        me: NodeId,
        net: Client,
        peers: HashMap<NodeId, PeerId>,
        replies: mpsc::Sender<Reply>,
        max_message_size: usize,
        interceptor: Option<Box<dyn Interceptor>>,
    ) -> Outbox {
        Outbox {
            me,
            net,
            peers,
            replies,
            max_message_size,
            backlog: VecDeque::new(),
            interceptor,
        }
    }

    fn intercept(&mut self, session: SessionId, to: Option<NodeId>, body: Body) -> Vec<Body> {
        match self.interceptor.as_mut() {
            Some(i) => i.outgoing(session, to, body),
            None => vec![body],
        }
    }

    fn encode(&self, session: SessionId, body: Body) -> Option<Vec<u8>> {
        let kind = body.kind();
        match wire::encode(&Envelope::new(session, self.me, body)) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                warn!(%session, kind, error = %e, "cannot encode message");
                None
            }
        }
    }

    fn push(&mut self, cmd: Command) {
        if !self.backlog.is_empty() {
            self.backlog.push_back(cmd);
            return;
        }
        match self.net.try_command(cmd) {
            Ok(()) => {}
            Err(TryCommandError::Full(cmd)) => {
                debug!("network command queue full; holding commands");
                self.backlog.push_back(*cmd);
            }
            Err(TryCommandError::Stopped) => debug!("network stopped; command dropped"),
        }
    }

    /// Whether commands are waiting for room in the network's queue.
    pub fn has_backlog(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Hands every waiting command to the network, waiting for room.
    pub async fn flush(&mut self) {
        while let Some(cmd) = self.backlog.pop_front() {
            if self.net.command(cmd).await.is_err() {
                self.backlog.clear();
            }
        }
    }

    /// Publishes `body` to every participant (GossipSub).
    pub fn broadcast(&mut self, session: SessionId, body: Body) {
        for body in self.intercept(session, None, body) {
            let narrowed = self
                .interceptor
                .as_mut()
                .and_then(|i| i.narrow(session, &body));
            if let Some(nodes) = narrowed {
                for to in nodes {
                    self.deliver(session, to, body.clone());
                }
                continue;
            }
            if let Some(data) = self.encode(session, body) {
                self.push(Command::Publish { data });
            }
        }
    }

    /// Sends `body` to `to` by request-response; a failure is only logged.
    pub fn send(&mut self, session: SessionId, to: NodeId, body: Body) {
        for body in self.intercept(session, Some(to), body) {
            self.deliver(session, to, body);
        }
    }

    fn deliver(&mut self, session: SessionId, to: NodeId, body: Body) {
        let kind = body.kind();
        let Some((peer, data)) = self.prepare(session, to, body) else {
            return;
        };
        let net = self.net.clone();
        tokio::spawn(async move {
            if let Err(e) = net.request(peer, data).await {
                warn!(%session, to, kind, error = %e, "delivery failed");
            }
        });
    }

    /// Sends a request whose answer comes back as a [`Reply`] tagged `tag`.
    pub fn request(&mut self, session: SessionId, to: NodeId, body: Body, tag: ReplyTag) {
        for body in self.intercept(session, Some(to), body) {
            let Some((peer, data)) = self.prepare(session, to, body) else {
                continue;
            };
            let net = self.net.clone();
            let replies = self.replies.clone();
            let max = self.max_message_size;
            tokio::spawn(async move {
                let result = match net.request(peer, data).await {
                    Ok(resp) => match wire::decode(&resp, max) {
                        Ok(env) if env.from == to => Ok(env.body),
                        Ok(env) => Err(format!("response claims to come from node {}", env.from)),
                        Err(e) => Err(format!("bad response: {e}")),
                    },
                    Err(e) => Err(e.to_string()),
                };
                let reply = Reply {
                    tag,
                    session,
                    from: to,
                    result,
                };
                let _ = replies.send(reply).await;
            });
        }
    }

    fn prepare(&self, session: SessionId, to: NodeId, body: Body) -> Option<(PeerId, Vec<u8>)> {
        let Some(&peer) = self.peers.get(&to) else {
            warn!(%session, to, "no such peer");
            return None;
        };
        Some((peer, self.encode(session, body)?))
    }

    /// Answers an inbound request from `to`.
    pub fn respond(
        &mut self,
        channel: ResponseChannel<Vec<u8>>,
        session: SessionId,
        to: NodeId,
        body: Body,
    ) {
        let Some(body) = self.intercept(session, Some(to), body).into_iter().next() else {
            return;
        };
        if let Some(data) = self.encode(session, body) {
            self.push(Command::Respond { channel, data });
        }
    }

    /// Answers a request from an unauthenticated sender (no interception: it is not a node).
    pub fn refuse_unauthenticated(&mut self, channel: ResponseChannel<Vec<u8>>, body: Body) {
        if let Some(data) = self.encode(SessionId([0; 32]), body) {
            self.push(Command::Respond { channel, data });
        }
    }

    /// This node's own answer to itself (its signer answering its coordinator), passed
    /// through the interceptor like any answer.
    pub fn answer_self(&mut self, session: SessionId, body: Body) -> Option<Body> {
        let me = self.me;
        self.intercept(session, Some(me), body).into_iter().next()
    }

    /// Whether the interceptor drops this arriving broadcast (lossy delivery in tests).
    pub fn drops_gossip(&mut self, body: &Body) -> bool {
        self.interceptor
            .as_mut()
            .is_some_and(|i| i.drops_gossip(body))
    }

    /// Reports the verdict on a gossip message.
    pub fn validate(&mut self, message_id: MessageId, via: PeerId, acceptance: MessageAcceptance) {
        self.push(Command::Validate {
            message_id,
            propagation_source: via,
            acceptance,
        });
    }

    /// Lets the interceptor keep an inbound request unanswered.
    pub fn admit_request(
        &mut self,
        channel: ResponseChannel<Vec<u8>>,
    ) -> Option<ResponseChannel<Vec<u8>>> {
        match self.interceptor.as_mut() {
            Some(i) => i.inbound(channel),
            None => Some(channel),
        }
    }
}
