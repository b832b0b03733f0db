//! What the DKG driver remembers outside its running sessions, each bounded: the ids of ended
//! sessions (so late messages for them are dropped quietly) and the round messages that
//! arrived before their session's `DkgBegin` (and which of those the driver keeps).

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::node::context::Ctx;
use crate::wire::{Body, Envelope, SessionId};

/// How long ended sessions are remembered, so late messages for them are dropped quietly.
pub const FINISHED_MEMORY: Duration = Duration::from_secs(600);
/// Most ended session ids remembered (the oldest go first): a peer that starts and ends
/// sessions as fast as it can does not grow this memory without bound. Forgetting early is
/// harmless: a late message is then logged as for an unknown session, and a setup id reused
/// gets a fresh round id anyway.
pub const MAX_FINISHED: usize = 16_384;
/// Most early round messages kept in all.
pub const MAX_EARLY: usize = 1024;
/// Most early round messages kept from one sender.
pub const MAX_EARLY_PER_PEER: usize = 16;

/// Ended sessions, oldest first, forgotten after [`FINISHED_MEMORY`] or when more than
/// [`MAX_FINISHED`] are remembered.
#[derive(Default)]
pub struct Finished {
    order: VecDeque<(Instant, SessionId)>,
    /// The ids remembered now.
    pub set: HashSet<SessionId>,
}

impl Finished {
    /// Remembers `sid` from `now` on.
    pub fn insert(&mut self, now: Instant, sid: SessionId) {
        if self.set.insert(sid) {
            self.order.push_back((now + FINISHED_MEMORY, sid));
        }
        while self.order.len() > MAX_FINISHED {
            if let Some((_, old)) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    /// Forgets every id remembered for [`FINISHED_MEMORY`].
    pub fn prune(&mut self, now: Instant) {
        while let Some(&(until, sid)) = self.order.front() {
            if until > now {
                break;
            }
            self.order.pop_front();
            self.set.remove(&sid);
        }
    }

    /// When the oldest id is forgotten.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.order.front().map(|(until, _)| *until)
    }
}

/// Round messages that arrived before this node learnt the round id they travel under: a
/// participant that began first may broadcast its round-1 package before the initiator's
/// `DkgBegin` reaches this node. Bounded in all and per sender; entries expire.
#[derive(Default)]
pub struct Early {
    queue: VecDeque<(Instant, Envelope)>,
}

impl Early {
    /// Keeps `env` (received at `now`, kept for `expiry`) unless a bound is reached; returns
    /// whether it was kept.
    pub fn keep(&mut self, now: Instant, expiry: Duration, env: Envelope) -> bool {
        while self
            .queue
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= expiry)
        {
            self.queue.pop_front();
        }
        let from_peer = self
            .queue
            .iter()
            .filter(|(_, e)| e.from == env.from)
            .count();
        if self.queue.len() >= MAX_EARLY || from_peer >= MAX_EARLY_PER_PEER {
            return false;
        }
        self.queue.push_back((now, env));
        true
    }

    /// Takes every kept message for `round`, in arrival order.
    pub fn take(&mut self, round: SessionId) -> Vec<Envelope> {
        let (mine, rest): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.queue)
            .into_iter()
            .partition(|(_, env)| env.session == round);
        self.queue = rest;
        mine.into_iter().map(|(_, env)| env).collect()
    }

    /// Messages kept now.
    pub fn len(&self) -> usize {
        self.queue.len()
    }
}

impl super::DkgDriver {
    /// Keeps a round message that may belong to a session that has not begun here yet: a
    /// round-1 package or an abort from a participant of such a session, within bounds.
    pub(super) fn keep_early(&mut self, ctx: &mut Ctx<'_>, env: &Envelope) -> bool {
        if !matches!(env.body, Body::DkgRound1 { .. } | Body::DkgAbort { .. }) {
            return false;
        }
        let waiting = self.sessions.values().any(|r| {
            r.session.round_id().is_none() && r.session.params().participants.contains(&env.from)
        });
        if !waiting {
            return false;
        }
        self.early
            .keep(ctx.now, ctx.config.dkg_timeout, env.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Body;
    use proptest::prelude::*;

    fn round1(session: u8, from: u16) -> Envelope {
        Envelope::new(
            SessionId([session; 32]),
            from,
            Body::DkgRound1 {
                package: vec![session],
            },
        )
    }

    #[test]
    fn kept_messages_come_back_for_their_round_only_and_expire() {
        let mut early = Early::default();
        let t0 = Instant::now();
        let expiry = Duration::from_secs(30);
        assert!(early.keep(t0, expiry, round1(1, 2)));
        assert!(early.keep(t0, expiry, round1(2, 3)));
        assert!(early.keep(t0 + Duration::from_secs(1), expiry, round1(1, 3)));
        let got = early.take(SessionId([1; 32]));
        assert_eq!(got, vec![round1(1, 2), round1(1, 3)]);
        assert_eq!(early.len(), 1);
        // The round-2 message expires when the next one is kept after its time.
        assert!(early.keep(t0 + expiry, expiry, round1(3, 4)));
        assert!(early.take(SessionId([2; 32])).is_empty());
        assert_eq!(early.take(SessionId([3; 32])).len(), 1);
    }

    #[test]
    fn finished_sessions_are_forgotten_by_age_and_by_count() {
        let mut f = Finished::default();
        let t0 = Instant::now();
        for i in 0..(MAX_FINISHED + 10) as u32 {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            f.insert(t0, SessionId(id));
        }
        assert_eq!(f.set.len(), MAX_FINISHED);
        assert!(
            !f.set.contains(&SessionId([0; 32])),
            "the oldest went first"
        );
        f.prune(t0 + FINISHED_MEMORY);
        assert!(f.set.is_empty() && f.next_expiry().is_none());
    }

    proptest! {
        /// Whatever arrives, from whomever: never more than the bounds, and one sender never
        /// crowds out another beyond its own share.
        #[test]
        fn bounded_in_all_and_per_sender(
            msgs in prop::collection::vec((0u8..4, 1u16..200, 0u64..100), 0..3000)
        ) {
            let mut early = Early::default();
            let t0 = Instant::now();
            let mut now = t0;
            for (session, from, step) in msgs {
                now += Duration::from_millis(step);
                early.keep(now, Duration::from_secs(30), round1(session, from));
                prop_assert!(early.len() <= MAX_EARLY);
                let per = early.queue.iter().filter(|(_, e)| e.from == from).count();
                prop_assert!(per <= MAX_EARLY_PER_PEER);
            }
            // A new sender always finds room while the total is below the bound.
            if early.len() < MAX_EARLY {
                prop_assert!(early.keep(now, Duration::from_secs(30), round1(9, 999)));
            }
        }
    }
}
