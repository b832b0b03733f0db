//! Keeping every configured peer dialled: a peer that is not connected is dialled again with
//! a growing delay (250 ms up to 5 s), and of two peers the one with the lower PeerId dials
//! first, so that a pair has one connection rather than two. A config reload replaces the
//! allow-list: removed peers are disconnected, new ones dialled.

use tokio::time::{Duration, Instant};

use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId};

use super::event_loop::EventLoop;

/// First and largest redial delay.
pub(super) const REDIAL_MIN: Duration = Duration::from_millis(250);
const REDIAL_MAX: Duration = Duration::from_secs(5);

/// How long the end with the higher PeerId waits for the other end's dial before it dials
/// itself. Both ends dialling at once leaves two connections per pair (twice the sockets,
/// pings and wake-ups: ~9,900 connections instead of 4,950 at 100 nodes); this way the lower
/// PeerId dials and the higher one only steps in when that dial does not come (its address
/// for us is wrong, or it is down).
const SECOND_DIAL_AFTER: Duration = Duration::from_secs(10);

/// When a peer is dialled next, and the delay after that.
pub(super) struct Redial {
    pub(super) at: Instant,
    pub(super) backoff: Duration,
}

impl EventLoop {
    pub(super) fn dial_due(&mut self) {
        let now = Instant::now();
        let due: Vec<PeerId> = self
            .redial
            .iter()
            .filter(|(_, r)| r.at <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            if self.swarm.is_connected(&peer) {
                self.redial.remove(&peer);
                continue;
            }
            let Some(addr) = self.peers.get(&peer).cloned() else {
                self.redial.remove(&peer);
                continue;
            };
            if let Some(r) = self.redial.get_mut(&peer) {
                r.at = now + r.backoff;
                r.backoff = (r.backoff * 2).min(REDIAL_MAX);
            }
            let opts = DialOpts::peer_id(peer)
                .addresses(vec![addr.clone()])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(%peer, %addr, error = %e, "dial not started");
            }
        }
    }

    /// Replaces the allow-list: peers no longer listed are disconnected and refused, new ones
    /// (and ones whose address changed) dialled.
    pub(super) fn set_peers(&mut self, peers: Vec<(PeerId, Multiaddr)>) {
        let listed: std::collections::HashSet<PeerId> = peers.iter().map(|(p, _)| *p).collect();
        let gone: Vec<PeerId> = self
            .peers
            .keys()
            .copied()
            .filter(|p| !listed.contains(p))
            .collect();
        for peer in gone {
            tracing::info!(%peer, "peer removed from the configuration: disconnected and refused");
            self.peers.remove(&peer);
            self.redial.remove(&peer);
            self.swarm.behaviour_mut().allow.disallow_peer(peer);
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        for (peer, addr) in peers {
            if self.peers.get(&peer) != Some(&addr) {
                tracing::info!(%peer, %addr, "peer added to the configuration (or moved): dialling");
                self.set_peer_address(peer, addr);
            }
        }
    }

    pub(super) fn schedule_redial(&mut self, peer: PeerId) {
        if self.peers.contains_key(&peer) && !self.redial.contains_key(&peer) {
            let me = *self.swarm.local_peer_id();
            self.redial.insert(
                peer,
                Redial {
                    at: Instant::now() + dial_delay(me, peer, REDIAL_MIN),
                    backoff: REDIAL_MIN,
                },
            );
        }
    }
}

/// When `me` dials `peer` (after `base`): the lower PeerId at once, the higher one only after
/// [`SECOND_DIAL_AFTER`], if the other end has not dialled by then.
pub(super) fn dial_delay(me: PeerId, peer: PeerId, base: Duration) -> Duration {
    if me < peer {
        base
    } else {
        base.max(SECOND_DIAL_AFTER)
    }
}
