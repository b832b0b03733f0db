//! The composed `NetworkBehaviour`: connection limits, allow-list, GossipSub, request-response
//! with a bounded byte codec, identify and ping.

use std::io;
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    allow_block_list, connection_limits, gossipsub, identify, identity::Keypair, ping,
    request_response, StreamProtocol,
};

use crate::wire::RPC_PROTOCOL;

/// Connections still in their handshake at once: beyond, new incoming ones are closed at once
/// (a flood of half-open connections from anywhere cannot exhaust the node; configured peers
/// are connected already, and reconnect once the handshakes in progress time out).
pub const MAX_PENDING_INCOMING: u32 = 64;
/// Established connections with one peer (one each way at most).
pub const MAX_PER_PEER: u32 = 2;

/// Time between two pings on a connection. A crashed or restarted peer is noticed at once (its
/// connection closes); pings find the silent failures (a cut network, a frozen host), which
/// the event loop turns into a closed connection after two failures in a row: within about
/// 20–35 s. Each ping wakes the connection at both ends; at 5 s, pings were three quarters of
/// an idle 100-node cluster's CPU (0.36 of a core when all run on one machine, 0.08 at 30 s).
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// How long a ping may go unanswered before it counts as failed.
pub const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// Every protocol a node speaks.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Bounds connections: pending incoming, per peer and in total (first, so a connection
    /// over a limit costs nothing more).
    pub limits: connection_limits::Behaviour,
    /// Refuses connections from PeerIds not in the config (before any protocol sees them).
    pub allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    /// Broadcasts (DKG round 1, echoes, confirmations).
    pub gossipsub: gossipsub::Behaviour,
    /// Unicasts (DKG round 2, session control, signing).
    pub rpc: request_response::Behaviour<RpcCodec>,
    /// Exchanges protocol and address information.
    pub identify: identify::Behaviour,
    /// Liveness: a connection whose pings fail is closed.
    pub ping: ping::Behaviour,
}

/// How GossipSub queues a node's outgoing broadcasts (`[gossip]` in the config file).
///
/// Every broadcast goes into one queue per connected peer. A queue that is full, or a message
/// that waited longer than its timeout, drops the message for that peer (counted in
/// `frostnode_gossip_dropped_total`); a DKG then pulls it from its sender. The defaults suit
/// clusters of up to a few hundred directly connected peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GossipSettings {
    /// Messages waiting on one connection. A broadcast adds one message per peer, and a DKG
    /// broadcasts four per session (round 1, echo, confirmation, certificate) plus the copies
    /// it forwards: 5,000 (libp2p's default) holds hundreds of concurrent sessions' worth, so
    /// it fills only when the peer stopped reading.
    pub queue_len: usize,
    /// How long this node's own broadcast may wait on a connection. A DKG message is still
    /// useful until the session's deadline, and a node busy with a large DKG's arithmetic may
    /// not write for seconds, so 30 s (libp2p's default is 5 s, which dropped broadcasts at
    /// n = 100 on a loaded machine).
    pub publish_timeout: Duration,
    /// How long a forwarded copy may wait. Every node publishes to every peer directly (flood
    /// publishing), so a forwarded copy is a spare and is worth little after a second (libp2p's
    /// default).
    pub forward_timeout: Duration,
}

impl Default for GossipSettings {
    fn default() -> Self {
        GossipSettings {
            queue_len: 5_000,
            publish_timeout: Duration::from_secs(30),
            forward_timeout: Duration::from_secs(1),
        }
    }
}

/// Builds the GossipSub config for a cluster of `peers + 1` nodes.
///
/// Every node of a cluster connects to every other and flood-publishes, so each broadcast
/// reaches each peer directly; the mesh and lazy gossip (IHAVE) are only a fallback. Mesh
/// sizes are therefore small and satisfy `outbound_min <= n_low <= n <= n_high` and
/// `2 * outbound_min <= n`; lazy gossip and IDONTWANT are off.
pub fn gossipsub_config(
    peers: usize,
    max_transmit: usize,
    settings: GossipSettings,
) -> Result<gossipsub::Config, String> {
    let mesh_n = peers.clamp(2, 3);
    gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .max_transmit_size(max_transmit)
        .mesh_n(mesh_n)
        .mesh_n_low(1)
        .mesh_n_high(mesh_n * 2)
        .mesh_outbound_min(1)
        .gossip_lazy(0)
        .gossip_factor(0.0)
        // IDONTWANT saves relays in large meshes; here it would only add control traffic.
        .idontwant_message_size_threshold(max_transmit)
        .heartbeat_interval(Duration::from_secs(1))
        .flood_publish(true)
        .connection_handler_queue_len(settings.queue_len)
        .publish_queue_duration(settings.publish_timeout)
        .forward_queue_duration(settings.forward_timeout)
        .build()
        .map_err(|e| format!("gossipsub config: {e}"))
}

impl Behaviour {
    /// Creates the behaviour for one node.
    pub fn new(
        key: &Keypair,
        peers: usize,
        max_message_size: usize,
        request_timeout: Duration,
        gossip: GossipSettings,
    ) -> Result<Self, String> {
        let gossipsub = gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Signed(key.clone()),
            gossipsub_config(peers, max_message_size + 1024, gossip)?,
        )
        .map_err(|e| format!("gossipsub: {e}"))?;
        let rpc = request_response::Behaviour::with_codec(
            RpcCodec {
                max_size: max_message_size,
            },
            [(
                StreamProtocol::new(RPC_PROTOCOL),
                request_response::ProtocolSupport::Full,
            )],
            request_response::Config::default()
                .with_request_timeout(request_timeout)
                .with_max_concurrent_streams(256),
        );
        let peers_u32 = u32::try_from(peers).unwrap_or(u32::MAX / 4);
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_pending_incoming(Some(MAX_PENDING_INCOMING))
            .with_max_pending_outgoing(Some(peers_u32.saturating_mul(2).saturating_add(8)))
            .with_max_established_per_peer(Some(MAX_PER_PEER))
            .with_max_established(Some(
                peers_u32.saturating_mul(MAX_PER_PEER).saturating_add(8),
            ));
        Ok(Self {
            limits: connection_limits::Behaviour::new(limits),
            allow: allow_block_list::Behaviour::default(),
            gossipsub,
            rpc,
            identify: identify::Behaviour::new(identify::Config::new(
                "/frostnode/1.0.0".into(),
                key.public(),
            )),
            ping: ping::Behaviour::new(
                ping::Config::new()
                    .with_interval(PING_INTERVAL)
                    .with_timeout(PING_TIMEOUT),
            ),
        })
    }
}

/// Request-response codec: each request and response is one bounded blob of bytes on its own
/// stream. Decoding into messages happens above, where errors can name the peer.
#[derive(Clone, Debug)]
pub struct RpcCodec {
    /// Largest accepted message.
    pub max_size: usize,
}

impl RpcCodec {
    async fn read_bounded<T>(&self, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let mut buf = Vec::new();
        io.take(self.max_size as u64 + 1)
            .read_to_end(&mut buf)
            .await?;
        if buf.len() > self.max_size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("message exceeds {} bytes", self.max_size),
            ));
        }
        Ok(buf)
    }

    async fn write_all<T>(io: &mut T, data: Vec<u8>) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        io.write_all(&data).await?;
        io.close().await
    }
}

impl request_response::Codec for RpcCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        self.read_bounded(io).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let buf = self.read_bounded(io).await?;
        if buf.is_empty() {
            // The remote closed the stream without answering.
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no response"));
        }
        Ok(buf)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        Self::write_all(io, req).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        Self::write_all(io, res).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gossipsub_config_is_valid_for_every_cluster_size() {
        for peers in 1..200 {
            gossipsub_config(peers, 1 << 20, GossipSettings::default()).unwrap();
        }
    }
}
