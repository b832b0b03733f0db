//! The node's deadlines in one structure: each component sets (or clears) the deadline of each
//! of its sessions when it changes, and the node sleeps until the earliest one. Nothing scans
//! every session on every event. Superseded entries stay in the heap and are skipped when they
//! come up.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

use crate::wire::SessionId;

/// What a deadline belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// A DKG session this node takes part in.
    Dkg(SessionId),
    /// A DKG session's next look for messages to pull.
    DkgPull(SessionId),
    /// A DKG this node started, waiting for every participant's result.
    Initiation(SessionId),
    /// A signing session this node coordinates.
    Coordination(SessionId),
    /// A signing request this node received, travelling down the coordinator ranking.
    Forward(SessionId),
    /// The signer's oldest unused nonces.
    Nonces,
    /// Forgetting ended sessions.
    Finished,
    /// Retiring key epochs replaced by a refresh.
    Retire,
}

/// Deadlines by [`Timer`].
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Timer)>>,
    current: HashMap<Timer, Instant>,
}

impl Timers {
    /// No deadlines.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `timer` to fire at `at`, or clears it (`None`).
    pub fn set(&mut self, timer: Timer, at: Option<Instant>) {
        match at {
            Some(at) => {
                if self.current.insert(timer, at) != Some(at) {
                    self.heap.push(Reverse((at, timer)));
                }
            }
            None => {
                self.current.remove(&timer);
            }
        }
    }

    /// When `timer` fires, if it is set.
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.current.get(&timer).copied()
    }

    fn is_live(&self, at: Instant, timer: &Timer) -> bool {
        self.current.get(timer) == Some(&at)
    }

    /// The earliest live deadline.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, timer))) = self.heap.peek() {
            if self.is_live(*at, timer) {
                return Some(*at);
            }
            self.heap.pop();
        }
        None
    }

    /// Removes and returns every timer due at `now`.
    pub fn due(&mut self, now: Instant) -> Vec<Timer> {
        let mut due = Vec::new();
        while let Some(Reverse((at, timer))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            if self.is_live(at, &timer) {
                self.current.remove(&timer);
                due.push(timer);
            }
        }
        due
    }

    /// Live deadlines.
    pub fn len(&self) -> usize {
        self.current.len()
    }

    /// Whether no deadline is set.
    pub fn is_empty(&self) -> bool {
        self.current.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fires_in_order_and_skips_superseded_and_cleared_entries() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let (a, b) = (SessionId([1; 32]), SessionId([2; 32]));
        let mut timers = Timers::new();
        timers.set(Timer::Dkg(a), Some(at(30)));
        timers.set(Timer::Dkg(b), Some(at(10)));
        timers.set(Timer::Nonces, Some(at(20)));
        timers.set(Timer::Dkg(a), Some(at(5))); // moved earlier
        timers.set(Timer::Nonces, None); // cleared
        assert_eq!(timers.next_deadline(), Some(at(5)));
        assert_eq!(timers.due(at(1)), vec![]);
        assert_eq!(timers.due(at(15)), vec![Timer::Dkg(a), Timer::Dkg(b)]);
        assert_eq!(
            timers.next_deadline(),
            None,
            "the superseded 30 ms entry is skipped"
        );
        assert!(timers.is_empty());
    }
}
