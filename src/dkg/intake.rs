//! A [`DkgSession`]'s intake of round messages: round-1 packages (hashed at once, decoded off
//! the message path), round-2 packages (kept raw until `part3`; in a repair, the helpers'
//! values and sums) and echoes. A second, different message from one sender is equivocation
//! and aborts the session naming it; a repeat of the same one is ignored.

use frost_ed25519::keys::dkg::round1;

use super::error::DkgError;
use super::phase::Phase;
use super::session::DkgSession;
use super::types::{sha256, Effect};
use super::work::Work;
use crate::wire::{NodeId, SecretBytes};

impl DkgSession {
    pub(super) fn on_round1(&mut self, from: NodeId, bytes: Vec<u8>) -> Vec<Effect> {
        let hash = sha256(&bytes);
        if let Some(existing) = self.round1_hashes.get(&from) {
            if *existing == hash {
                return Vec::new();
            }
            return self.fail(
                DkgError::Equivocation {
                    culprit: from,
                    what: "round-1 packages",
                    reported_by: self.me,
                },
                true,
            );
        }
        if self.params.reshare.is_some() {
            if !self.params.is_dealer(from) {
                let what = "round-1 package (it does not deal in this reshare)";
                return self.fail(
                    DkgError::Malformed {
                        culprit: from,
                        what,
                    },
                    true,
                );
            }
            // Decoded and checked against the dealer's part of the key off the message path
            // ([`DkgSession::dealt`]).
            self.round1_hashes.insert(from, hash);
            let expected = self.deal_expected.get(&from).copied();
            let len = usize::from(self.params.threshold);
            return vec![Effect::Compute(Work::deal(from, bytes, len, expected))];
        }
        // Decoding checks every point (the costly part of round 1: it runs as work off the
        // message path, see [`DkgSession::round1_decoded`]); the commitment length is checked
        // by `part2`, which names no culprit, so `part2_done` finds it.
        self.round1_hashes.insert(from, hash);
        vec![Effect::Compute(Work::decode(
            from,
            bytes,
            self.commitment_len(),
        ))]
    }

    /// A round-1 package came back decoded (or not: its sender is named).
    pub(super) fn round1_decoded(
        &mut self,
        from: NodeId,
        package: Option<round1::Package>,
    ) -> Vec<Effect> {
        if self.phase != Phase::Round1 || self.pending.is_some() {
            return Vec::new();
        }
        let Some(package) = package else {
            return self.fail(
                DkgError::Malformed {
                    culprit: from,
                    what: "round-1 package",
                },
                true,
            );
        };
        self.round1_packages.insert(from, package);
        self.progress()
    }

    pub(super) fn on_round2(&mut self, from: NodeId, bytes: SecretBytes) -> Vec<Effect> {
        if let Some(existing) = self.round2_raw.get(&from) {
            if *existing == bytes {
                return Vec::new();
            }
            return self.fail(
                DkgError::Equivocation {
                    culprit: from,
                    what: "round-2 packages",
                    reported_by: self.me,
                },
                true,
            );
        }
        if self.phase == Phase::Confirming {
            // Part 3 already ran with a package from this sender.
            return Vec::new();
        }
        if !self.unicast_senders().contains(&from) {
            // In a repair only helpers send, and only to helpers and the target; in a reshare
            // only dealers, and only to members.
            return Vec::new();
        }
        self.round2_raw.insert(from, bytes);
        self.progress()
    }

    pub(super) fn on_echo(&mut self, from: NodeId, hashes: Vec<(NodeId, [u8; 32])>) -> Vec<Effect> {
        let ids: Vec<NodeId> = hashes.iter().map(|(id, _)| *id).collect();
        if ids != self.round1_senders() {
            return self.fail(
                DkgError::Malformed {
                    culprit: from,
                    what: "echo",
                },
                true,
            );
        }
        if let Some(existing) = self.echoes.get(&from) {
            if *existing == hashes {
                return Vec::new();
            }
            return self.fail(
                DkgError::Equivocation {
                    culprit: from,
                    what: "echoes",
                    reported_by: self.me,
                },
                true,
            );
        }
        self.echoes.insert(from, hashes);
        self.progress()
    }
}
