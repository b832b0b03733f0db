//! [`NodeHandle`]: the cloneable way into a running node, for the HTTP API, the CLI's
//! in-process clusters and the tests. Each call becomes an [`Input`] on the node's queue and
//! waits for the node's answer.

use std::collections::BTreeSet;
use std::time::Duration;

use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot, watch};

use super::error::NodeError;
use super::forwarder::SignInput;
use super::requests::{
    BatchSignResponse, KeygenRequest, RefreshRequest, RepairRequest, ReshareRequest, SignResponse,
    StatusInfo,
};
use crate::keystore::KeyInfo;
use crate::wire::{NodeId, SessionId};

/// A request from the node's callers.
pub enum Input {
    /// Run a DKG with this node as initiator.
    Keygen {
        /// The request.
        req: KeygenRequest,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<KeyInfo, NodeError>>,
    },
    /// Refresh a key with this node as initiator.
    Refresh {
        /// The request.
        req: RefreshRequest,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<KeyInfo, NodeError>>,
    },
    /// Reshare a key with this node as initiator.
    Reshare {
        /// The request.
        req: ReshareRequest,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<KeyInfo, NodeError>>,
    },
    /// Repair or enrol a node with this node as initiator.
    Repair {
        /// The request.
        req: RepairRequest,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<KeyInfo, NodeError>>,
    },
    /// Re-read the peers and clients: from this config, or from the node's config file.
    Reload {
        /// The new config (tests and tools), or `None` to read the file again.
        config: Option<Box<crate::config::Config>>,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<super::ReloadReport, NodeError>>,
    },
    /// Report status.
    Status {
        /// Where the answer goes.
        reply: oneshot::Sender<StatusInfo>,
    },
    /// Every configured peer as this node sees it.
    Peers {
        /// Where the answer goes.
        reply: oneshot::Sender<Vec<super::peers::PeerInfo>>,
    },
    /// The recent sessions, newest first.
    Sessions {
        /// Where the answer goes.
        reply: oneshot::Sender<Vec<super::journal::SessionRecord>>,
    },
    /// Signing latency over the last minutes.
    Latency {
        /// Where the answer goes.
        reply: oneshot::Sender<super::journal::LatencyView>,
    },
    /// List the keys.
    ListKeys {
        /// Where the answer goes.
        reply: oneshot::Sender<Vec<KeyInfo>>,
    },
    /// One key's public info.
    GetKey {
        /// The key.
        key_id: String,
        /// Where the answer goes.
        reply: oneshot::Sender<Option<KeyInfo>>,
    },
    /// Sign a message, or a batch.
    Sign {
        /// The request.
        req: SignInput,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<BatchSignResponse, NodeError>>,
    },
}

/// Cloneable handle for talking to a running node (used by the API and tests).
#[derive(Clone, Debug)]
pub struct NodeHandle {
    pub(super) tx: mpsc::Sender<Input>,
    pub(super) id: NodeId,
    pub(super) peer_id: PeerId,
    pub(super) ready: watch::Receiver<BTreeSet<NodeId>>,
    #[cfg(feature = "fault-injection")]
    pub(super) faults: super::faults::Faults,
}

impl NodeHandle {
    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// This node's PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Peers that are connected and subscribed to broadcasts right now.
    pub fn ready_peers(&self) -> BTreeSet<NodeId> {
        self.ready.borrow().clone()
    }

    /// Waits until the set of ready peers satisfies `pred`, or the timeout.
    pub async fn wait_ready_where(
        &self,
        pred: impl Fn(&BTreeSet<NodeId>) -> bool,
        timeout: Duration,
    ) -> Result<(), NodeError> {
        let mut rx = self.ready.clone();
        match tokio::time::timeout(timeout, async {
            rx.wait_for(|r| pred(r)).await.map(|_| ())
        })
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(NodeError::stopped()),
            Err(_) => Err(NodeError::Timeout {
                message: format!("node {}: peer condition not met after {timeout:?}", self.id),
                missing: vec![],
            }),
        }
    }

    /// Waits until every id in `peers` is ready (connected and subscribed), or the timeout.
    pub async fn wait_for_peers(
        &self,
        peers: &[NodeId],
        timeout: Duration,
    ) -> Result<(), NodeError> {
        let all_ready = |ready: &BTreeSet<NodeId>| peers.iter().all(|p| ready.contains(p));
        match self.wait_ready_where(all_ready, timeout).await {
            Err(NodeError::Timeout { .. }) => {
                let ready = self.ready_peers();
                let missing: Vec<NodeId> = peers
                    .iter()
                    .copied()
                    .filter(|p| !ready.contains(p))
                    .collect();
                Err(NodeError::Unavailable {
                    message: format!(
                        "node {}: peers {missing:?} not ready after {timeout:?}",
                        self.id
                    ),
                    missing,
                })
            }
            other => other,
        }
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Input) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| NodeError::stopped())?;
        rx.await.map_err(|_| NodeError::stopped())
    }

    /// Runs a DKG with this node as initiator; answers once every participant stored the key
    /// or the session failed.
    pub async fn keygen(&self, req: KeygenRequest) -> Result<KeyInfo, NodeError> {
        self.ask(|reply| Input::Keygen { req, reply }).await?
    }

    /// Refreshes a key with this node as initiator (new shares, the next epoch, the same
    /// group key); answers once every participant stored the new epoch or the session failed.
    pub async fn refresh(&self, req: RefreshRequest) -> Result<KeyInfo, NodeError> {
        self.ask(|reply| Input::Refresh { req, reply }).await?
    }

    /// Reshares a key with this node as initiator (the same group key, a new threshold and
    /// participants, the next epoch); answers once every participant stored the new epoch (or
    /// deleted its share) or the session failed.
    pub async fn reshare(&self, req: ReshareRequest) -> Result<KeyInfo, NodeError> {
        self.ask(|reply| Input::Reshare { req, reply }).await?
    }

    /// Rebuilds (repair) or makes (enrolment) a node's share of a key, with this node as
    /// initiator; answers once every participant stored the key's next epoch or it failed.
    pub async fn repair(&self, req: RepairRequest) -> Result<KeyInfo, NodeError> {
        self.ask(|reply| Input::Repair { req, reply }).await?
    }

    /// Takes the `[[peers]]` and `[[clients]]` of `config` (or, with `None`, of the node's
    /// config file read again): new peers are dialled and allowed, removed ones disconnected
    /// and refused, clients replaced. Other settings need a restart.
    pub async fn reload(
        &self,
        config: Option<crate::config::Config>,
    ) -> Result<super::ReloadReport, NodeError> {
        let config = config.map(Box::new);
        self.ask(|reply| Input::Reload { config, reply }).await?
    }

    /// Signs `message` with key `key_id` through the coordinator elected for this request,
    /// carrying the client's token (every node refuses a request without a valid one).
    pub async fn sign(
        &self,
        key_id: &str,
        message: Vec<u8>,
        token: Option<String>,
    ) -> Result<SignResponse, NodeError> {
        let signed = self
            .submit(SignInput {
                key_id: key_id.to_string(),
                messages: vec![message],
                request_id: None,
                token,
            })
            .await?;
        Ok(signed.single())
    }

    /// Signs a batch of messages with key `key_id` in one session (one signature per message,
    /// in order); the token binds the batch ([`crate::auth::MessageBinding`]).
    pub async fn sign_batch(
        &self,
        key_id: &str,
        messages: Vec<Vec<u8>>,
        token: Option<String>,
    ) -> Result<BatchSignResponse, NodeError> {
        self.submit(SignInput {
            key_id: key_id.to_string(),
            messages,
            request_id: None,
            token,
        })
        .await
    }

    /// Submits a signing request.
    pub async fn submit(&self, req: SignInput) -> Result<BatchSignResponse, NodeError> {
        self.ask(|reply| Input::Sign { req, reply }).await?
    }

    /// Like [`NodeHandle::sign`], with a chosen request id: the coordinator ranking is
    /// `signing::election::rank(request_id, participants)`, so a caller (a test) can pick
    /// which node coordinates. Two requests in flight must not share an id.
    pub async fn sign_with_request_id(
        &self,
        key_id: &str,
        message: Vec<u8>,
        request_id: SessionId,
        token: Option<String>,
    ) -> Result<SignResponse, NodeError> {
        let signed = self
            .submit(SignInput {
                key_id: key_id.to_string(),
                messages: vec![message],
                request_id: Some(request_id),
                token,
            })
            .await?;
        Ok(signed.single())
    }

    /// Node status.
    pub async fn status(&self) -> Result<StatusInfo, NodeError> {
        self.ask(|reply| Input::Status { reply }).await
    }

    /// Every configured peer as this node sees it, by id.
    pub async fn peers(&self) -> Result<Vec<super::peers::PeerInfo>, NodeError> {
        self.ask(|reply| Input::Peers { reply }).await
    }

    /// The sessions this node took part in recently, newest first.
    pub async fn sessions(&self) -> Result<Vec<super::journal::SessionRecord>, NodeError> {
        self.ask(|reply| Input::Sessions { reply }).await
    }

    /// Signing latency over the last minutes.
    pub async fn latency(&self) -> Result<super::journal::LatencyView, NodeError> {
        self.ask(|reply| Input::Latency { reply }).await
    }

    /// Public info of every key.
    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>, NodeError> {
        self.ask(|reply| Input::ListKeys { reply }).await
    }

    /// Public info of one key.
    pub async fn get_key(&self, key_id: &str) -> Result<Option<KeyInfo>, NodeError> {
        let key_id = key_id.to_string();
        self.ask(|reply| Input::GetKey { key_id, reply }).await
    }
}

/// Switches for test-only misbehaviour (`fault-injection` builds only).
#[cfg(feature = "fault-injection")]
impl NodeHandle {
    /// Makes this node's signer return corrupted signature shares.
    pub async fn corrupt_signature_shares(&self, on: bool) -> Result<(), NodeError> {
        self.faults.lock().corrupt_shares = on;
        Ok(())
    }

    /// Makes this node take requests and never answer them, while its connections stay up:
    /// a hung node, from its peers' view.
    pub async fn set_unresponsive(&self, on: bool) -> Result<(), NodeError> {
        self.faults.lock().unresponsive = on;
        Ok(())
    }

    /// Every signing nonce this node made since the last call.
    pub async fn take_nonce_log(&self) -> Result<Vec<Vec<u8>>, NodeError> {
        Ok(std::mem::take(&mut self.faults.lock().nonce_log))
    }

    /// Makes this node misbehave in DKGs.
    pub async fn set_dkg_faults(&self, faults: super::faults::DkgFaults) -> Result<(), NodeError> {
        self.faults.lock().dkg = faults;
        Ok(())
    }
}
