//! The cheap, cloneable handle through which the node talks to the network event loop.

use libp2p::gossipsub::{MessageAcceptance, MessageId};
use libp2p::request_response::ResponseChannel;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

use super::error::NetError;
use super::messages::Command;

/// Why [`Client::try_command`] did not queue a command.
#[derive(Debug)]
pub enum TryCommandError {
    /// The queue is full; here is the command back.
    Full(Box<Command>),
    /// The event loop is gone.
    Stopped,
}

/// Handle to a running network event loop.
#[derive(Clone, Debug)]
pub struct Client {
    pub(super) tx: mpsc::Sender<Command>,
}

impl Client {
    fn send(&self, cmd: Command) -> Result<(), NetError> {
        self.tx.try_send(cmd).map_err(|e| match e {
            TrySendError::Full(_) => NetError::Busy,
            TrySendError::Closed(_) => NetError::Stopped,
        })
    }

    /// Queues a command without waiting; a full queue hands it back.
    pub fn try_command(&self, cmd: Command) -> Result<(), TryCommandError> {
        self.tx.try_send(cmd).map_err(|e| match e {
            TrySendError::Full(cmd) => TryCommandError::Full(Box::new(cmd)),
            TrySendError::Closed(_) => TryCommandError::Stopped,
        })
    }

    /// Queues a command, waiting for room in the queue.
    pub async fn command(&self, cmd: Command) -> Result<(), NetError> {
        self.tx.send(cmd).await.map_err(|_| NetError::Stopped)
    }

    /// Broadcasts on the DKG topic (fails with [`NetError::Busy`] when the command queue is
    /// full). Retried inside the event loop while no peer is subscribed
    /// yet, for up to the publish deadline.
    pub fn publish(&self, data: Vec<u8>) -> Result<(), NetError> {
        self.send(Command::Publish { data })
    }

    /// Sends a request and waits for the response (bounded by the request timeout).
    pub async fn request(&self, peer: PeerId, data: Vec<u8>) -> Result<Vec<u8>, NetError> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::Request { peer, data, reply }).await?;
        rx.await.map_err(|_| NetError::Stopped)?
    }

    /// Answers an inbound request.
    pub fn respond(
        &self,
        channel: ResponseChannel<Vec<u8>>,
        data: Vec<u8>,
    ) -> Result<(), NetError> {
        self.send(Command::Respond { channel, data })
    }

    /// Reports the application's verdict on a gossip message: only accepted ones are forwarded.
    pub fn validate(
        &self,
        message_id: MessageId,
        propagation_source: PeerId,
        acceptance: MessageAcceptance,
    ) -> Result<(), NetError> {
        self.send(Command::Validate {
            message_id,
            propagation_source,
            acceptance,
        })
    }

    /// Sets (or replaces) the address a configured peer is dialled at, and dials it.
    pub fn set_peer_address(&self, peer: PeerId, addr: Multiaddr) -> Result<(), NetError> {
        self.send(Command::SetPeerAddress { peer, addr })
    }

    /// Replaces the allow-listed peers and their addresses (see [`Command::SetPeers`]).
    pub fn set_peers(&self, peers: Vec<(PeerId, Multiaddr)>) -> Result<(), NetError> {
        self.send(Command::SetPeers { peers })
    }

    /// Stops the event loop; connections are closed.
    pub fn shutdown(&self) {
        if let Err(TrySendError::Full(cmd)) = self.tx.try_send(Command::Shutdown) {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(cmd).await;
            });
        }
    }
}
