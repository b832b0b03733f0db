//! Messages that did not arrive, seen from one [`DkgSession`]: which ones it lacks for its
//! current phase and whom to ask ([`DkgSession::pulls`]), and what it answers a participant
//! that asks it ([`DkgSession::pulled`]). The driver sends the asks by request-response and
//! hands the answers to [`DkgSession::handle`] like the broadcasts they replace.

use super::phase::Phase;
use super::session::DkgSession;
use crate::wire::{Body, DkgStep, NodeId};

impl DkgSession {
    /// The messages this node lacks for its current phase, and whom to ask for each: the
    /// initiator's `DkgBegin`, then each other participant's round-1 package, round-2 package,
    /// echo and confirmation. The answers go through [`DkgSession::handle`] like the originals.
    pub fn pulls(&self) -> Vec<(NodeId, DkgStep)> {
        match self.phase {
            Phase::Prepared if self.me != self.params.initiator => {
                vec![(self.params.initiator, DkgStep::Begin)]
            }
            Phase::Round1 => self
                .round1_senders()
                .into_iter()
                .filter(|&id| id != self.me && !self.round1_hashes.contains_key(&id))
                .map(|id| (id, DkgStep::Round1))
                .collect(),
            Phase::Round2 => {
                let mut wanted = Vec::new();
                let senders = self.unicast_senders();
                // Every participant echoes, except in a repair (which has no round 1).
                let echoes = self.params.repair.is_none();
                for id in self.others() {
                    if senders.contains(&id) && !self.round2_raw.contains_key(&id) {
                        wanted.push((id, DkgStep::Round2));
                    }
                    if echoes && !self.echoes.contains_key(&id) {
                        wanted.push((id, DkgStep::Echo));
                    }
                }
                wanted
            }
            Phase::Confirming => self
                .others()
                .filter(|id| !self.confirmations.contains_key(id))
                .map(|id| (id, DkgStep::Confirm))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// This node's message of `step`, for participant `asker` who lacks it; `None` when there
    /// is none (not sent yet, not this node's to give, or not for `asker`).
    pub fn pulled(&self, step: DkgStep, asker: NodeId) -> Option<Body> {
        if asker == self.me || !self.params.participants.contains(&asker) {
            return None;
        }
        match step {
            DkgStep::Begin => {
                (self.me == self.params.initiator && self.round.is_some()).then(|| Body::DkgBegin {
                    contributions: self.contributions.clone(),
                })
            }
            DkgStep::Round1 => self
                .own_round1
                .clone()
                .map(|package| Body::DkgRound1 { package }),
            DkgStep::Round2 => self
                .sent_round2
                .get(&asker)
                .map(|p| Body::DkgRound2 { package: p.clone() }),
            DkgStep::Echo => self
                .own_echo
                .clone()
                .map(|round1_hashes| Body::DkgEcho { round1_hashes }),
            DkgStep::Confirm => self.own_confirmation.clone().map(Body::DkgConfirm),
        }
    }
}
