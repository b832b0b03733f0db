//! Test-only misbehaviour (built with the `fault-injection` feature, which only the tests
//! enable): an [`Interceptor`] that tests switch on and off at run time to make a node corrupt
//! its signature shares, DKG shares or reshare dealing, equivocate, withhold its DKG confirmation from some
//! participants, forge its DKG report, or hang; and a log of
//! every signing nonce, for the tests that check nonces never leak.

use std::sync::{Arc, Mutex, MutexGuard};

use libp2p::request_response::ResponseChannel;

use super::outbox::Interceptor;
use crate::wire::{Body, DkgOutcome, NodeId, SecretBytes, SessionId};

/// Test-only DKG misbehaviour.
#[derive(Clone, Debug, Default)]
pub struct DkgFaults {
    /// Send wrong (well-formed) round-2 shares: to every recipient, or only to `only_to`.
    pub corrupt_round2: bool,
    /// Broadcast a second, different round-1 package.
    pub equivocate_round1: bool,
    /// Report a failure to the initiator that blames this node, even after storing the key.
    pub forge_failure_blaming: Option<NodeId>,
    /// Limits `corrupt_round2` to this recipient.
    pub only_to: Option<NodeId>,
    /// Shows this node's confirmation to these participants only (by request-response),
    /// withholding it from the others.
    pub confirm_only_to: Option<Vec<NodeId>>,
    /// Shows this node's round-1 package to these participants only (by request-response;
    /// empty: to nobody); the others must pull it.
    pub round1_only_to: Option<Vec<NodeId>>,
    /// Answers pulls of its round-1 package with another valid package than it broadcast.
    pub equivocate_pulls: bool,
    /// Drops this share (in percent) of the DKG broadcasts arriving at this node, at random.
    pub drop_gossip_percent: u8,
    /// As a repair helper, sends the target a wrong (well-formed) sum.
    pub corrupt_repair: bool,
    /// As a reshare dealer, broadcasts a commitment (of valid points) whose constant term is
    /// not its part of the key.
    pub corrupt_deal: bool,
}

/// What a node is told to do wrong.
#[derive(Default)]
pub struct FaultState {
    /// Corrupt every signature share.
    pub corrupt_shares: bool,
    /// Take requests and never answer them.
    pub unresponsive: bool,
    /// DKG misbehaviour.
    pub dkg: DkgFaults,
    /// Every signing nonce made (hiding and binding, serialized).
    pub nonce_log: Vec<Vec<u8>>,
    held: Vec<ResponseChannel<Vec<u8>>>,
}

/// Shared switch board between a node's handle (tests) and its interceptor.
#[derive(Clone)]
pub struct Faults {
    me: NodeId,
    state: Arc<Mutex<FaultState>>,
}

impl Faults {
    /// Behaves until told otherwise; `me` is the node's id.
    pub fn new(me: NodeId) -> Self {
        Faults {
            me,
            state: Arc::default(),
        }
    }

    /// The state, for reading or changing it.
    pub fn lock(&self) -> MutexGuard<'_, FaultState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The interceptor to install in the node's outbox.
    pub fn interceptor(&self) -> Box<dyn Interceptor> {
        Box::new(self.clone())
    }

    /// The observer to install in the node's signer.
    pub fn nonce_observer(&self) -> crate::signing::participant::NonceObserver {
        let faults = self.clone();
        Box::new(move |nonces| {
            let mut s = faults.lock();
            s.nonce_log.push(nonces.hiding().serialize());
            s.nonce_log.push(nonces.binding().serialize());
        })
    }
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Faults(node {})", self.me)
    }
}

impl Interceptor for Faults {
    fn outgoing(&mut self, _session: SessionId, to: Option<NodeId>, body: Body) -> Vec<Body> {
        let s = self.lock();
        match body {
            Body::Share { attempt, shares } if s.corrupt_shares => {
                // A valid scalar that is not this signer's share, for every message.
                let share = frost_ed25519::round2::SignatureShare::deserialize(&[3u8; 32])
                    .map(|s| s.serialize())
                    .unwrap_or_default();
                let shares = vec![share; shares.len()];
                vec![Body::Share { attempt, shares }]
            }
            Body::DkgRound2 { package } if s.dkg.corrupt_repair => {
                let wrong = crate::wire::RepairSigma::decode(&package.0)
                    .ok()
                    .and_then(|mut r| {
                        let sigma = frost_ed25519::keys::repairable::Sigma::deserialize(&[7u8; 32]);
                        r.sigma = sigma.ok()?.serialize();
                        r.encode().ok()
                    });
                vec![Body::DkgRound2 {
                    package: wrong.map_or(package, SecretBytes),
                }]
            }
            Body::DkgRound2 { package }
                if s.dkg.corrupt_round2 && s.dkg.only_to.is_none_or(|t| Some(t) == to) =>
            {
                let wrong = frost_ed25519::keys::SigningShare::deserialize(&[7u8; 32])
                    .map(frost_ed25519::keys::dkg::round2::Package::new)
                    .ok()
                    .and_then(|p| p.serialize().ok());
                match wrong {
                    Some(bytes) => vec![Body::DkgRound2 {
                        package: SecretBytes(bytes),
                    }],
                    None => vec![Body::DkgRound2 { package }],
                }
            }
            Body::DkgRound1 { mut package } if s.dkg.corrupt_deal && package.len() >= 64 => {
                // The second coefficient in the place of the first.
                let second: [u8; 32] = package[32..64].try_into().unwrap_or([0; 32]);
                package[..32].copy_from_slice(&second);
                vec![Body::DkgRound1 { package }]
            }
            Body::DkgRound1 { package } if s.dkg.equivocate_pulls && to.is_some() => {
                // Only a pull's answer travels to one node.
                let other = second_round1_package(self.me, &package);
                vec![Body::DkgRound1 {
                    package: other.unwrap_or(package),
                }]
            }
            Body::DkgRound1 { package } if s.dkg.equivocate_round1 => {
                let other = second_round1_package(self.me, &package);
                let mut out = vec![Body::DkgRound1 { package }];
                out.extend(other.map(|package| Body::DkgRound1 { package }));
                out
            }
            Body::DkgResult(DkgOutcome::Stored { .. }) if s.dkg.forge_failure_blaming.is_some() => {
                let culprit = s.dkg.forge_failure_blaming.unwrap_or_default();
                vec![Body::DkgResult(DkgOutcome::Failed {
                    reason: format!("node {culprit} sent an invalid secret share"),
                    culprits: vec![culprit],
                    missing: vec![],
                })]
            }
            body => vec![body],
        }
    }

    fn narrow(&mut self, _session: SessionId, body: &Body) -> Option<Vec<NodeId>> {
        match body {
            Body::DkgConfirm(_) => self.lock().dkg.confirm_only_to.clone(),
            Body::DkgRound1 { .. } => self.lock().dkg.round1_only_to.clone(),
            // Its certificate would give the withheld confirmation away.
            Body::DkgCertificate(_) => self.lock().dkg.confirm_only_to.as_ref().map(|_| Vec::new()),
            _ => None,
        }
    }

    fn drops_gossip(&mut self, _body: &Body) -> bool {
        let percent = self.lock().dkg.drop_gossip_percent;
        percent > 0 && rand::random::<u8>() % 100 < percent
    }

    fn inbound(&mut self, channel: ResponseChannel<Vec<u8>>) -> Option<ResponseChannel<Vec<u8>>> {
        let mut s = self.lock();
        if s.unresponsive {
            s.held.push(channel);
            return None;
        }
        s.held.clear();
        Some(channel)
    }
}

/// Another valid round-1 package from the same sender: same identifier, same threshold.
fn second_round1_package(me: NodeId, package: &[u8]) -> Option<Vec<u8>> {
    use frost_ed25519::keys::dkg;
    let original = dkg::round1::Package::deserialize(package).ok()?;
    let t = original.commitment().coefficients().len() as u16;
    let ident = frost_ed25519::Identifier::try_from(me).ok()?;
    let (_, other) = dkg::part1(ident, t, t, rand::rngs::OsRng).ok()?;
    other.serialize().ok()
}
