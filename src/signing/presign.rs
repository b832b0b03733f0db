//! Nonce preprocessing (FROST's preprocessing stage, sans-IO): a signer commits to nonces
//! ahead of time, for one coordinator each, so that a signing request needs one network round.
//!
//! The signer side is [`NoncePools`]: for every coordinator a bounded pool of nonces (secret,
//! in memory only), each numbered and tagged with the signer's boot id, refilled in batches
//! when it runs low, expiring unused. [`NoncePools::take`] removes a nonce before it is used:
//! a nonce signs at most once, and only for the coordinator it was issued to (the coordinator
//! is the transport-authenticated sender). A restarted signer has a new boot id and no pool;
//! whatever a coordinator still holds of its old commitments is refused.
//!
//! The coordinator side is [`CommitmentBook`]: for every signer the commitments it issued to
//! this node, decoded and checked when they arrive (not per signature), spent at most once,
//! dropped when they grow old, when the signer's boot id changes or when it disconnects.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use frost_ed25519::keys::SigningShare;
use frost_ed25519::round1::{self, SigningCommitments, SigningNonces};
use frost_ed25519::{Ed25519ScalarField, Field};
use rand::{CryptoRng, RngCore};

use crate::wire::NodeId;

/// How long an issued nonce waits for its coordinator.
pub const POOL_TTL: Duration = Duration::from_secs(300);
/// How much sooner a coordinator stops spending a commitment than its signer forgets the
/// nonce (clocks of the two nodes run apart by the transit time at most).
pub const SPEND_MARGIN: Duration = Duration::from_secs(30);
/// How long before its newest nonces expire a signer issues a coordinator fresh ones, so
/// that the coordinator never runs out of commitments young enough to spend while idle
/// (it stops spending them [`SPEND_MARGIN`] before they expire).
pub const RENEW_BEFORE: Duration = Duration::from_secs(2 * SPEND_MARGIN.as_secs());
/// Most commitments one batch carries.
pub const MAX_BATCH: usize = 256;

/// A signer's boot id: drawn at start, carried with every commitment it issues.
pub type BootId = [u8; 16];

/// Why a preprocessed nonce or commitment was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PresignError {
    /// The commitment was issued before this signer restarted.
    #[error("commitment of an earlier run of this signer (it restarted): its nonce is gone")]
    StaleBoot,
    /// No such nonce for this coordinator: never issued to it, already used, or expired.
    #[error("no nonce {seq} issued to node {coordinator}: never issued to it, already used or expired (nonces are single use)")]
    Unknown {
        /// The coordinator that presented it.
        coordinator: NodeId,
        /// The commitment's number.
        seq: u64,
    },
    /// A batch of commitments that does not decode or is too large.
    #[error("node {signer} sent a malformed batch of commitments: {what}")]
    Malformed {
        /// The signer.
        signer: NodeId,
        /// What is wrong.
        what: String,
    },
}

struct Entry {
    nonces: SigningNonces,
    commitments: SigningCommitments,
    expires: Instant,
}

#[derive(Default)]
struct Pool {
    entries: HashMap<u64, Entry>,
    /// Numbers in the order they expire.
    order: VecDeque<(Instant, u64)>,
    /// When the newest batch expires.
    newest: Option<Instant>,
}

impl Pool {
    /// When the pool is renewed: [`RENEW_BEFORE`] its newest batch expires.
    fn renew_at(&self) -> Option<Instant> {
        self.newest.map(|at| at - RENEW_BEFORE)
    }
}

impl Pool {
    fn expire(&mut self, now: Instant) {
        while let Some(&(at, seq)) = self.order.front() {
            if at > now && self.entries.contains_key(&seq) {
                break;
            }
            self.order.pop_front();
            if at <= now {
                self.entries.remove(&seq);
            }
        }
    }
}

/// A signer's nonces, issued ahead of time to each coordinator.
pub struct NoncePools {
    boot: BootId,
    size: usize,
    low_water: usize,
    /// The next nonce's number: never reused in a run, whichever coordinator it goes to.
    next_seq: u64,
    pools: HashMap<NodeId, Pool>,
    observer: Option<super::participant::NonceObserver>,
}

impl std::fmt::Debug for NoncePools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the nonces.
        f.debug_struct("NoncePools")
            .field("coordinators", &self.pools.len())
            .field("held", &self.held_total())
            .finish()
    }
}

impl NoncePools {
    /// Pools of at most `size` nonces per coordinator, refilled once `low_water` or fewer are
    /// left; `boot` identifies this run of the signer. A `size` of 0 turns preprocessing off.
    pub fn new(boot: BootId, size: usize, low_water: usize) -> Self {
        let size = size.min(MAX_BATCH);
        NoncePools {
            boot,
            size,
            low_water: low_water.min(size.saturating_sub(1)),
            next_seq: 0,
            pools: HashMap::new(),
            observer: None,
        }
    }

    /// Calls `observer` with every nonce pair made from now on (leak tests).
    pub fn observe_nonces(&mut self, observer: super::participant::NonceObserver) {
        self.observer = Some(observer);
    }

    /// This run's boot id.
    pub fn boot(&self) -> BootId {
        self.boot
    }

    /// Whether preprocessing is on.
    pub fn enabled(&self) -> bool {
        self.size > 0
    }

    /// Unused nonces issued to `coordinator`.
    pub fn held(&self, coordinator: NodeId) -> usize {
        self.pools.get(&coordinator).map_or(0, |p| p.entries.len())
    }

    /// Unused nonces issued to all coordinators.
    pub fn held_total(&self) -> usize {
        self.pools.values().map(|p| p.entries.len()).sum()
    }

    /// New nonces for `coordinator` when its pool is at or below the low-water mark, or when
    /// its newest nonces expire within [`RENEW_BEFORE`]: as many as bring the nonces that
    /// outlive that window back to the pool's size (a pool holds at most twice its size, the
    /// older half expiring); nothing otherwise. The commitments go to the coordinator,
    /// numbered.
    pub fn refill<R: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        coordinator: NodeId,
        rng: &mut R,
    ) -> Vec<(u64, SigningCommitments)> {
        if self.size == 0 {
            return Vec::new();
        }
        let pool = self.pools.entry(coordinator).or_default();
        pool.expire(now);
        let renew = pool.renew_at().is_some_and(|at| at <= now);
        if pool.entries.len() > self.low_water && !renew {
            return Vec::new();
        }
        let lasting = pool
            .entries
            .values()
            .filter(|e| e.expires > now + RENEW_BEFORE)
            .count();
        let want = self.size.saturating_sub(lasting);
        let expires = now + POOL_TTL;
        pool.newest = Some(expires);
        let mut issued = Vec::with_capacity(want);
        for _ in 0..want {
            // frost mixes a secret into the nonce with fresh randomness; these nonces serve
            // any key, so the secret is a random scalar of its own.
            let mixing = SigningShare::new(Ed25519ScalarField::random(&mut *rng));
            let (nonces, commitments) = round1::commit(&mixing, &mut *rng);
            if let Some(observe) = self.observer.as_mut() {
                observe(&nonces);
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            pool.entries.insert(
                seq,
                Entry {
                    nonces,
                    commitments,
                    expires,
                },
            );
            pool.order.push_back((expires, seq));
            issued.push((seq, commitments));
        }
        issued
    }

    /// Takes nonce `seq` of run `boot` issued to `coordinator` out of its pool (it is gone
    /// whatever happens next), with its commitments.
    pub fn take(
        &mut self,
        now: Instant,
        coordinator: NodeId,
        boot: BootId,
        seq: u64,
    ) -> Result<(SigningNonces, SigningCommitments), PresignError> {
        if boot != self.boot {
            return Err(PresignError::StaleBoot);
        }
        let unknown = PresignError::Unknown { coordinator, seq };
        let pool = self.pools.get_mut(&coordinator).ok_or(unknown.clone())?;
        let entry = pool.entries.remove(&seq).ok_or(unknown.clone())?;
        pool.expire(now);
        if pool.order.len() > 4 * self.size.max(1) {
            // Taken out of order: forget the expiry entries of nonces already gone.
            let entries = &pool.entries;
            pool.order.retain(|(_, s)| entries.contains_key(s));
        }
        if entry.expires <= now {
            return Err(unknown);
        }
        Ok((entry.nonces, entry.commitments))
    }

    /// Takes nonces `seqs` (one per message of a batch) like [`NoncePools::take`]: every one
    /// named leaves its pool, and if any is unknown the batch is refused (naming the first).
    pub fn take_all(
        &mut self,
        now: Instant,
        coordinator: NodeId,
        boot: BootId,
        seqs: &[u64],
    ) -> Result<Vec<(SigningNonces, SigningCommitments)>, PresignError> {
        let taken: Vec<_> = seqs
            .iter()
            .map(|&seq| self.take(now, coordinator, boot, seq))
            .collect();
        taken.into_iter().collect()
    }

    /// The coordinators this signer holds a pool for.
    pub fn coordinators(&self) -> Vec<NodeId> {
        self.pools.keys().copied().collect()
    }

    /// Forgets the pool of a coordinator that disconnected (it may come back without the
    /// commitments it held: it is sent a fresh batch then).
    pub fn drop_coordinator(&mut self, coordinator: NodeId) {
        self.pools.remove(&coordinator);
    }

    /// Drops expired nonces.
    pub fn expire(&mut self, now: Instant) {
        for pool in self.pools.values_mut() {
            pool.expire(now);
        }
    }

    /// When the next thing is due after `now`: the oldest issued nonce expires, or a pool is
    /// renewed.
    pub fn next_expiry(&self, now: Instant) -> Option<Instant> {
        self.pools
            .values()
            .flat_map(|p| {
                let expiry = p.order.front().map(|(at, _)| *at);
                expiry
                    .into_iter()
                    .chain(p.renew_at().filter(|&at| at > now))
            })
            .min()
    }
}

/// A commitment a signer issued to this coordinator, ready to be spent once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Presigned {
    /// The signer's run.
    pub boot: BootId,
    /// The commitment's number.
    pub seq: u64,
    /// The commitments (decoded and checked when they arrived).
    pub commitments: SigningCommitments,
}

struct Shelf {
    boot: BootId,
    queue: VecDeque<(Instant, Presigned)>,
}

/// The commitments signers issued to this coordinator.
#[derive(Debug, Default)]
pub struct CommitmentBook {
    shelves: HashMap<NodeId, Shelf>,
}

impl std::fmt::Debug for Shelf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shelf({})", self.queue.len())
    }
}

impl CommitmentBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes in a batch `signer` issued in run `boot`: every commitment is decoded (every
    /// point checked) now; a batch with one bad commitment is refused whole. A new boot id
    /// replaces what the signer issued before. At most `MAX_BATCH` are kept per signer (the
    /// oldest go first). Returns how many are stocked for the signer.
    pub fn add(
        &mut self,
        now: Instant,
        signer: NodeId,
        boot: BootId,
        batch: &[(u64, Vec<u8>)],
    ) -> Result<usize, PresignError> {
        if batch.len() > MAX_BATCH {
            return Err(PresignError::Malformed {
                signer,
                what: format!("{} commitments, more than {MAX_BATCH}", batch.len()),
            });
        }
        let mut decoded = Vec::with_capacity(batch.len());
        for (seq, bytes) in batch {
            let commitments =
                SigningCommitments::deserialize(bytes).map_err(|e| PresignError::Malformed {
                    signer,
                    what: format!("commitment {seq}: {e}"),
                })?;
            decoded.push(Presigned {
                boot,
                seq: *seq,
                commitments,
            });
        }
        let shelf = self.shelves.entry(signer).or_insert_with(|| Shelf {
            boot,
            queue: VecDeque::new(),
        });
        if shelf.boot != boot {
            shelf.boot = boot;
            shelf.queue.clear();
        }
        for p in decoded {
            if shelf.queue.iter().any(|(_, q)| q.seq == p.seq) {
                continue;
            }
            shelf.queue.push_back((now, p));
        }
        while shelf.queue.len() > MAX_BATCH {
            shelf.queue.pop_front();
        }
        Ok(shelf.queue.len())
    }

    /// Like [`CommitmentBook::add`], for a batch that starts the signer's pool afresh: what
    /// the book held of the signer is dropped first (it reconnected, its old nonces are gone).
    pub fn restock(
        &mut self,
        now: Instant,
        signer: NodeId,
        boot: BootId,
        batch: &[(u64, Vec<u8>)],
    ) -> Result<usize, PresignError> {
        self.shelves.remove(&signer);
        self.add(now, signer, boot, batch)
    }

    /// One unspent commitment of `signer`, young enough that its nonce is still held; it is
    /// gone from the book.
    pub fn take(&mut self, now: Instant, signer: NodeId) -> Option<Presigned> {
        self.take_n(now, signer, 1)?.pop()
    }

    /// `n` unspent commitments of `signer` (one per message of a batch), if it has that many
    /// young enough; they are gone from the book. With fewer, the book keeps them and the
    /// batch is signed in two rounds by that signer.
    pub fn take_n(&mut self, now: Instant, signer: NodeId, n: usize) -> Option<Vec<Presigned>> {
        let shelf = self.shelves.get_mut(&signer)?;
        let usable = POOL_TTL.saturating_sub(SPEND_MARGIN);
        while shelf
            .queue
            .front()
            .is_some_and(|(received, _)| now.saturating_duration_since(*received) >= usable)
        {
            shelf.queue.pop_front();
        }
        if n == 0 || shelf.queue.len() < n {
            return None;
        }
        Some(shelf.queue.drain(..n).map(|(_, p)| p).collect())
    }

    /// Commitments stocked for `signer`.
    pub fn stocked(&self, signer: NodeId) -> usize {
        self.shelves.get(&signer).map_or(0, |s| s.queue.len())
    }

    /// Commitments stocked, by signer.
    pub fn stocked_all(&self) -> std::collections::BTreeMap<NodeId, usize> {
        self.shelves
            .iter()
            .map(|(&id, s)| (id, s.queue.len()))
            .collect()
    }

    /// Forgets what `signer` issued (it disconnected: if it restarts, its nonces are gone).
    pub fn forget(&mut self, signer: NodeId) {
        self.shelves.remove(&signer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;

    fn encoded(batch: &[(u64, SigningCommitments)]) -> Vec<(u64, Vec<u8>)> {
        batch
            .iter()
            .map(|(seq, c)| (*seq, c.serialize().unwrap()))
            .collect()
    }

    #[test]
    fn pools_refill_at_the_low_water_mark_and_stay_bounded() {
        let now = Instant::now();
        let mut pools = NoncePools::new([1; 16], 8, 3);
        assert_eq!(pools.refill(now, 2, &mut OsRng).len(), 8);
        assert!(pools.refill(now, 2, &mut OsRng).is_empty(), "full");
        for seq in 0..5 {
            pools.take(now, 2, [1; 16], seq).unwrap();
        }
        assert_eq!(pools.held(2), 3);
        let more = pools.refill(now, 2, &mut OsRng);
        assert_eq!(more.len(), 5, "back to the pool's size");
        assert_eq!(more[0].0, 8, "numbers are never reused");
        assert_eq!(
            pools.refill(now, 3, &mut OsRng)[0].0,
            13,
            "nor shared between coordinators"
        );
        assert_eq!(pools.held(2), 8);
        // Expired nonces are gone, and then refilled.
        let later = now + POOL_TTL;
        assert_eq!(pools.refill(later, 2, &mut OsRng).len(), 8);
        assert!(pools.take(later, 2, [1; 16], 1).is_err());
    }

    #[test]
    fn an_idle_coordinator_always_holds_a_commitment_it_can_spend() {
        let start = Instant::now();
        let (size, me) = (8, 9);
        // No low-water refills: every batch after the first is a renewal.
        let mut pools = NoncePools::new([1; 16], size, 0);
        let mut book = CommitmentBook::new();
        let mut now = start;
        let mut renewals = 0;
        // The signer's timer: whenever something is due, expire and refill; the coordinator
        // looks for a commitment it may spend just before each such moment.
        while now < start + 5 * POOL_TTL {
            let batch = pools.refill(now, me, &mut OsRng);
            if !batch.is_empty() {
                renewals += 1;
                book.add(now, 1, [1; 16], &encoded(&batch)).unwrap();
            }
            assert!(pools.held(me) <= 2 * size, "{} held", pools.held(me));
            let next = pools.next_expiry(now).expect("something is always due");
            assert!(next > now, "the timer moves on");
            for probe in [now + (next - now) / 2, next - Duration::from_millis(1)] {
                let spent = book.take(probe, 1).expect("a commitment young enough");
                pools.take(probe, me, [1; 16], spent.seq).unwrap();
            }
            now = next;
            pools.expire(now);
        }
        // One batch at the start, then one for every renewal window.
        let windows = (5 * POOL_TTL).as_secs() / (POOL_TTL - RENEW_BEFORE).as_secs();
        assert_eq!(renewals, 1 + windows as usize);
    }

    #[test]
    fn a_nonce_is_taken_once_by_its_coordinator_of_this_run_only() {
        let now = Instant::now();
        let mut pools = NoncePools::new([1; 16], 4, 1);
        let issued = pools.refill(now, 2, &mut OsRng);
        pools.refill(now, 3, &mut OsRng);
        let (_, c) = pools.take(now, 2, [1; 16], 0).unwrap();
        assert_eq!(c, issued[0].1);
        assert_eq!(
            pools.take(now, 2, [1; 16], 0).unwrap_err(),
            PresignError::Unknown {
                coordinator: 2,
                seq: 0
            }
        );
        // Node 3 cannot take node 2's number 1; node 2 can, node 3 its own.
        assert!(pools.take(now, 3, [1; 16], 1).is_err());
        assert!(pools.take(now, 2, [1; 16], 1).is_ok());
        pools.take(now, 3, [1; 16], 4).unwrap();
        assert!(pools.take(now, 4, [1; 16], 2).is_err());
        assert_eq!(
            pools.take(now, 2, [9; 16], 2).unwrap_err(),
            PresignError::StaleBoot
        );
        pools.drop_coordinator(2);
        assert!(pools.take(now, 2, [1; 16], 2).is_err());
    }

    #[test]
    fn a_book_spends_each_commitment_once_and_drops_an_earlier_run() {
        let now = Instant::now();
        let mut pools = NoncePools::new([1; 16], 4, 1);
        let batch = encoded(&pools.refill(now, 7, &mut OsRng));
        let mut book = CommitmentBook::new();
        assert_eq!(book.add(now, 2, [1; 16], &batch).unwrap(), 4);
        // A repeated batch adds nothing.
        assert_eq!(book.add(now, 2, [1; 16], &batch).unwrap(), 4);
        let first = book.take(now, 2).unwrap();
        assert_eq!((first.boot, first.seq), ([1; 16], 0));
        assert_eq!(book.stocked(2), 3);
        // The signer restarted: its new run replaces the old one.
        let mut restarted = NoncePools::new([2; 16], 4, 1);
        let batch = encoded(&restarted.refill(now, 7, &mut OsRng));
        assert_eq!(book.add(now, 2, [2; 16], &batch).unwrap(), 4);
        assert_eq!(book.take(now, 2).unwrap().boot, [2; 16]);
        // A batch that restarts the signer's pool replaces the shelf, whatever the run.
        let fresh = encoded(&restarted.refill(now, 8, &mut OsRng));
        assert_eq!(book.restock(now, 2, [2; 16], &fresh).unwrap(), 4);
        assert_eq!(book.take(now, 2).unwrap().seq, fresh[0].0);
        // Commitments too old to spend are skipped.
        let late = now + POOL_TTL - SPEND_MARGIN;
        assert!(book.take(late, 2).is_none());
        assert!(book.take(now, 5).is_none());
    }

    #[test]
    fn a_malformed_batch_is_refused_whole_naming_the_signer() {
        let now = Instant::now();
        let mut pools = NoncePools::new([1; 16], 2, 0);
        let mut batch = encoded(&pools.refill(now, 7, &mut OsRng));
        batch[1].1.truncate(10);
        let mut book = CommitmentBook::new();
        match book.add(now, 4, [1; 16], &batch) {
            Err(PresignError::Malformed { signer: 4, .. }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(book.stocked(4), 0);
        let huge = vec![(0u64, vec![0u8; 4]); MAX_BATCH + 1];
        assert!(book.add(now, 4, [1; 16], &huge).is_err());
    }
}
