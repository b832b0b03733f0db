//! Nonce preprocessing at the state-machine level: signers' pools and a coordinator's book of
//! commitments driving the coordinator machine with real frost. A signature takes one round
//! when the other signers issued commitments ahead of time; a commitment is spent once, only
//! by the coordinator it was issued to and only in the signer's run that issued it; a
//! coordinator holding stale commitments falls back to two rounds and still signs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use frost_ed25519 as frost;
use frostnode::signing::coordinator::{Coordinator, Effect, SignParams};
use frostnode::signing::participant::{
    decode_packages, sign_all, sign_with_nonces, Commit, ShareRef, Signer, SignerError, Slot,
};
use frostnode::signing::presign::{CommitmentBook, NoncePools, PresignError};
use frostnode::wire::{Body, NodeId, SessionId};
use proptest::prelude::*;
use rand::rngs::OsRng;

struct Keys {
    packages: BTreeMap<NodeId, frost::keys::KeyPackage>,
    public: frost::keys::PublicKeyPackage,
    gpk: [u8; 32],
}

fn keys(n: u16, t: u16) -> Keys {
    let (shares, public) =
        frost::keys::generate_with_dealer(n, t, frost::keys::IdentifierList::Default, OsRng)
            .unwrap();
    let packages = shares
        .into_iter()
        .map(|(ident, share)| {
            let id = (1..=n)
                .find(|&i| frost::Identifier::try_from(i).unwrap() == ident)
                .unwrap();
            (id, frost::keys::KeyPackage::try_from(share).unwrap())
        })
        .collect();
    let gpk = public
        .verifying_key()
        .serialize()
        .unwrap()
        .try_into()
        .unwrap();
    Keys {
        packages,
        public,
        gpk,
    }
}

/// Signers `1..=n`, each with its pools (one run each) and its two-round signer.
struct Signers {
    pools: BTreeMap<NodeId, NoncePools>,
    two_round: BTreeMap<NodeId, Signer>,
    /// Signers that go silent at their next `SignRequest` (after committing).
    silent_at_sign: BTreeSet<NodeId>,
}

impl Signers {
    fn new(n: u16) -> Self {
        Signers {
            pools: (1..=n)
                .map(|id| (id, NoncePools::new([id as u8; 16], 8, 4)))
                .collect(),
            two_round: (1..=n).map(|id| (id, Signer::new())).collect(),
            silent_at_sign: BTreeSet::new(),
        }
    }

    /// Every signer but `coordinator` issues it a batch; the book takes them in.
    fn stock(&mut self, now: Instant, coordinator: NodeId, book: &mut CommitmentBook) {
        for (&id, pools) in self.pools.iter_mut() {
            if id == coordinator {
                continue;
            }
            let batch: Vec<(u64, Vec<u8>)> = pools
                .refill(now, coordinator, &mut OsRng)
                .into_iter()
                .map(|(seq, c)| (seq, c.serialize().unwrap()))
                .collect();
            if !batch.is_empty() {
                book.add(now, id, pools.boot(), &batch).unwrap();
            }
        }
    }
}

fn params(
    k: &Keys,
    me: NodeId,
    message: &[u8],
    book: &mut CommitmentBook,
    now: Instant,
) -> SignParams {
    batch_params(k, me, &[message.to_vec()], book, now)
}

fn batch_params(
    k: &Keys,
    me: NodeId,
    messages: &[Vec<u8>],
    book: &mut CommitmentBook,
    now: Instant,
) -> SignParams {
    let t = usize::from(*k.packages[&me].min_signers());
    let order = preference(k, me);
    let presigned = order
        .iter()
        .take(t)
        .filter(|&&id| id != me)
        .filter_map(|&id| book.take_n(now, id, messages.len()).map(|p| (id, p)))
        .collect();
    SignParams {
        session: SessionId([me as u8; 32]),
        me,
        key_id: "k".into(),
        messages: messages.to_vec(),
        threshold: t as u16,
        participants: k.packages.keys().copied().collect(),
        public_key_package: k.public.clone(),
        group_public_key: k.gpk,
        epoch: 0,
        request_id: SessionId([9; 32]),
        token: None,
        presigned,
    }
}

fn preference(k: &Keys, me: NodeId) -> Vec<NodeId> {
    std::iter::once(me)
        .chain(k.packages.keys().copied().filter(|&id| id != me))
        .collect()
}

/// What a run saw: the result, and the kinds of request each signer got.
struct Seen {
    result: Result<Vec<[u8; 64]>, frostnode::signing::SignError>,
    requests: BTreeMap<NodeId, Vec<&'static str>>,
}

/// Runs coordinator `me`'s session to its end, every signer answering honestly from its
/// pools (one round) or its two-round signer.
fn run(k: &Keys, signers: &mut Signers, p: SignParams, now: Instant) -> Seen {
    let me = p.me;
    let session = p.session;
    let participants: Vec<NodeId> = k.packages.keys().copied().collect();
    let (mut c, first) = Coordinator::start(
        p,
        preference(k, me),
        now,
        Duration::from_secs(1),
        now + Duration::from_secs(30),
    );
    let mut requests: BTreeMap<NodeId, Vec<&'static str>> = BTreeMap::new();
    let mut queue: VecDeque<Effect> = first.into();
    while let Some(effect) = queue.pop_front() {
        let (to, body) = match effect {
            Effect::Aggregate(job) => {
                queue.extend(c.on_aggregated(now, job.run()));
                continue;
            }
            Effect::Done(out) => {
                return Seen {
                    result: Ok(out.signatures),
                    requests,
                }
            }
            Effect::Failed { error, .. } => {
                return Seen {
                    result: Err(error),
                    requests,
                }
            }
            Effect::Send { to, body } => (to, body),
        };
        requests.entry(to).or_default().push(body.kind());
        let key = &k.packages[&to];
        let share = ShareRef {
            key,
            participants: &participants,
        };
        let slot = |attempt| Slot {
            coordinator: me,
            session,
            attempt,
        };
        let reply = match body {
            Body::CommitRequest {
                attempt, messages, ..
            } => {
                let what = Commit {
                    key_id: "k",
                    epoch: 0,
                    messages: &messages,
                    key,
                };
                let signer = signers.two_round.get_mut(&to).unwrap();
                let commitments = signer
                    .commit(now, slot(attempt), what, None, &mut OsRng)
                    .unwrap();
                Ok(Body::Commitment {
                    attempt,
                    commitments: commitments.iter().map(|c| c.serialize().unwrap()).collect(),
                })
            }
            Body::SignRequest { attempt, .. } if signers.silent_at_sign.remove(&to) => {
                queue.extend(c.on_failure(now, to, attempt));
                continue;
            }
            Body::SignRequest {
                attempt,
                signing_packages,
            } => {
                let signer = signers.two_round.get_mut(&to).unwrap();
                let shares = signer
                    .sign(now, slot(attempt), &signing_packages, share)
                    .unwrap();
                Ok(Body::Share { attempt, shares })
            }
            Body::SignNow {
                attempt,
                boot,
                seqs,
                signing_packages,
                ..
            } => {
                let pools = signers.pools.get_mut(&to).unwrap();
                match pools.take_all(now, me, boot, &seqs) {
                    Ok(nonces) => {
                        let packages = decode_packages(&signing_packages).unwrap();
                        let shares = sign_all(&nonces, &packages, share).unwrap();
                        Ok(Body::Share { attempt, shares })
                    }
                    Err(e) => Err((attempt, e)),
                }
            }
            other => panic!("unexpected request {other:?}"),
        };
        let effects = match reply {
            Ok(reply) => c.on_reply(now, to, reply),
            Err((attempt, _refused)) => c.on_stale_nonce(now, to, attempt),
        };
        queue.extend(effects);
    }
    panic!("the session neither finished nor failed");
}

fn verifies(k: &Keys, message: &[u8], signature: &[u8; 64]) -> bool {
    ed25519_dalek::VerifyingKey::from_bytes(&k.gpk)
        .unwrap()
        .verify_strict(message, &ed25519_dalek::Signature::from_bytes(signature))
        .is_ok()
}

#[test]
fn with_preprocessed_commitments_a_signature_takes_one_round() {
    let k = keys(5, 3);
    let now = Instant::now();
    let mut signers = Signers::new(5);
    let mut book = CommitmentBook::new();
    signers.stock(now, 1, &mut book);
    for i in 0..20u8 {
        let message = [i; 40];
        let p = params(&k, 1, &message, &mut book, now);
        assert_eq!(p.presigned.len(), 2, "two other signers stocked");
        let seen = run(&k, &mut signers, p, now);
        let signature = seen.result.unwrap()[0];
        assert!(verifies(&k, &message, &signature));
        // Node 1 commits locally; nodes 2 and 3 get one request each, the signing package.
        assert_eq!(seen.requests[&2], vec!["SignNow"]);
        assert_eq!(seen.requests[&3], vec!["SignNow"]);
        assert_eq!(seen.requests[&1], vec!["CommitRequest", "SignRequest"]);
        // Pools are refilled as they run low.
        signers.stock(now, 1, &mut book);
        assert!(signers.pools[&2].held(1) > 0 && signers.pools[&2].held(1) <= 8);
    }
}

#[test]
fn a_batch_takes_one_round_when_every_signer_stocked_enough_commitments() {
    let k = keys(5, 3);
    let now = Instant::now();
    let mut signers = Signers::new(5);
    let mut book = CommitmentBook::new();
    signers.stock(now, 1, &mut book);
    // Pools of 8: a batch of 6 is preprocessed, a batch of 12 (more than any pool) is not.
    let six: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 20]).collect();
    let p = batch_params(&k, 1, &six, &mut book, now);
    assert_eq!(p.presigned.len(), 2);
    let seen = run(&k, &mut signers, p, now);
    let sigs = seen.result.unwrap();
    assert_eq!(sigs.len(), 6);
    for (m, s) in six.iter().zip(&sigs) {
        assert!(verifies(&k, m, s));
    }
    assert_eq!(seen.requests[&2], vec!["SignNow"]);
    assert_eq!(seen.requests[&3], vec!["SignNow"]);
    assert_eq!(signers.pools[&2].held(1), 2, "six nonces of eight used");
    signers.stock(now, 1, &mut book);
    let twelve: Vec<Vec<u8>> = (0..12u8).map(|i| vec![i; 20]).collect();
    let stocked = book.stocked(2);
    let p = batch_params(&k, 1, &twelve, &mut book, now);
    assert!(p.presigned.is_empty(), "no signer holds twelve");
    assert_eq!(
        book.stocked(2),
        stocked,
        "the book keeps what it could not use"
    );
    let seen = run(&k, &mut signers, p, now);
    let sigs = seen.result.unwrap();
    for (m, s) in twelve.iter().zip(&sigs) {
        assert!(verifies(&k, m, s));
    }
    assert_eq!(seen.requests[&2], vec!["CommitRequest", "SignRequest"]);
}

#[test]
fn a_restarted_signer_is_refused_its_old_commitments_and_the_coordinator_signs_in_two_rounds() {
    let k = keys(4, 3);
    let now = Instant::now();
    let mut signers = Signers::new(4);
    let mut book = CommitmentBook::new();
    signers.stock(now, 1, &mut book);
    // Node 2 restarts: a new run, no nonces; the book still holds its old commitments.
    signers.pools.insert(2, NoncePools::new([0xee; 16], 8, 4));
    let p = params(&k, 1, b"after a restart", &mut book, now);
    let seen = run(&k, &mut signers, p, now);
    let signature = seen.result.unwrap()[0];
    assert!(verifies(&k, b"after a restart", &signature));
    // The stale commitment was tried, then every signer committed first (node 2 was not
    // excluded: it did nothing wrong).
    assert_eq!(
        seen.requests[&2],
        vec!["SignNow", "CommitRequest", "SignRequest"]
    );
    // Its new run's batch replaces the old one in the book: one round again.
    signers.stock(now, 1, &mut book);
    let p = params(&k, 1, b"again", &mut book, now);
    let seen = run(&k, &mut signers, p, now);
    assert!(verifies(&k, b"again", &seen.result.unwrap()[0]));
    assert_eq!(seen.requests[&2], vec!["SignNow"]);
}

#[test]
fn an_attempt_spent_on_a_stale_nonce_does_not_count_against_the_retries() {
    let k = keys(5, 3);
    let now = Instant::now();
    let mut signers = Signers::new(5);
    let mut book = CommitmentBook::new();
    signers.stock(now, 1, &mut book);
    // Node 2 restarted (its commitment is stale); then nodes 3 and 4 each go silent after
    // committing, one attempt after the other: four attempts in all.
    signers.pools.insert(2, NoncePools::new([0xee; 16], 8, 4));
    signers.silent_at_sign.extend([3, 4]);
    let p = params(&k, 1, b"three retries", &mut book, now);
    let seen = run(&k, &mut signers, p, now);
    let signature = seen.result.expect("signed in the fourth attempt")[0];
    assert!(verifies(&k, b"three retries", &signature));
    assert_eq!(
        seen.requests[&3],
        vec!["SignNow", "CommitRequest", "SignRequest"]
    );
    assert!(signers.silent_at_sign.is_empty(), "both went silent");
}

#[test]
fn a_commitment_is_spent_once_and_only_by_its_coordinator() {
    let k = keys(3, 2);
    let now = Instant::now();
    let mut pools = NoncePools::new([7; 16], 4, 1);
    let issued = pools.refill(now, 1, &mut OsRng);
    let issued_to_3 = pools.refill(now, 3, &mut OsRng);
    let (seq, commitments) = issued[0];
    // Coordinator 3 presents coordinator 1's number: nothing.
    assert_eq!(
        pools.take(now, 3, [7; 16], seq).unwrap_err(),
        PresignError::Unknown {
            coordinator: 3,
            seq
        }
    );
    // Its own nonce does not sign a package that carries another commitment for this signer.
    let (other, other_commitments) = pools.take(now, 3, [7; 16], issued_to_3[0].0).unwrap();
    assert_ne!(other_commitments, commitments);
    let two: BTreeMap<frost::Identifier, _> = [
        (*k.packages[&2].identifier(), commitments),
        (
            *k.packages[&1].identifier(),
            frost::round1::commit(k.packages[&1].signing_share(), &mut OsRng).1,
        ),
    ]
    .into();
    let package = frost::SigningPackage::new(two, b"m");
    let participants = [1, 2, 3];
    let share = ShareRef {
        key: &k.packages[&2],
        participants: &participants,
    };
    assert_eq!(
        sign_with_nonces(&other, other_commitments, &package, share).unwrap_err(),
        SignerError::CommitmentMismatch
    );
    // Coordinator 1 spends it once; a replay finds nothing.
    let (nonces, c) = pools.take(now, 1, [7; 16], seq).unwrap();
    sign_with_nonces(&nonces, c, &package, share).unwrap();
    assert_eq!(
        pools.take(now, 1, [7; 16], seq).unwrap_err(),
        PresignError::Unknown {
            coordinator: 1,
            seq
        }
    );
    // A node that was never issued any gets nothing.
    assert!(pools.take(now, 2, [7; 16], 1).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever coordinators present, in any order, with any number and run: a nonce is
    /// handed out at most once, only to the coordinator it was issued to, and no pool ever
    /// holds more than its size.
    #[test]
    fn nonces_are_handed_out_once_to_their_coordinator_within_bounds(
        ops in prop::collection::vec((0u8..4, 1u16..=4, 0u64..40, any::<bool>()), 1..200),
    ) {
        let now = Instant::now();
        let mut pools = NoncePools::new([3; 16], 8, 3);
        let mut issued: BTreeSet<(NodeId, u64)> = BTreeSet::new();
        let mut spent: BTreeSet<(NodeId, u64)> = BTreeSet::new();
        for (op, coordinator, seq, right_boot) in ops {
            match op {
                0 | 1 => {
                    for (s, _) in pools.refill(now, coordinator, &mut OsRng) {
                        prop_assert!(issued.insert((coordinator, s)), "number reused");
                    }
                }
                2 => {
                    let boot = if right_boot { [3; 16] } else { [4; 16] };
                    if pools.take(now, coordinator, boot, seq).is_ok() {
                        prop_assert!(right_boot);
                        prop_assert!(issued.contains(&(coordinator, seq)), "never issued");
                        prop_assert!(spent.insert((coordinator, seq)), "handed out twice");
                    }
                }
                _ => pools.drop_coordinator(coordinator),
            }
            for c in 1..=4 {
                prop_assert!(pools.held(c) <= 8);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary batches never panic a coordinator's book, and a batch with anything that does
    /// not decode stocks nothing.
    #[test]
    fn arbitrary_batches_stock_only_valid_commitments(
        batch in prop::collection::vec((any::<u64>(), prop::collection::vec(any::<u8>(), 0..80)), 0..20),
    ) {
        let now = Instant::now();
        let mut book = CommitmentBook::new();
        match book.add(now, 3, [1; 16], &batch) {
            Ok(n) => prop_assert!(n <= batch.len()),
            Err(PresignError::Malformed { signer, .. }) => {
                prop_assert_eq!(signer, 3);
                prop_assert_eq!(book.stocked(3), 0);
            }
            Err(e) => prop_assert!(false, "{e}"),
        }
    }

    /// Arbitrary signing packages presented with a real nonce never panic the signer, and the
    /// nonce is gone afterwards whatever happened.
    #[test]
    fn arbitrary_one_round_packages_never_panic_and_burn_the_nonce(
        package in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        let k = keys(3, 2);
        let now = Instant::now();
        let mut pools = NoncePools::new([1; 16], 2, 0);
        pools.refill(now, 2, &mut OsRng);
        let (nonces, commitments) = pools.take(now, 2, [1; 16], 0).unwrap();
        if let Ok(package) = frost::SigningPackage::deserialize(&package) {
            let participants = [1, 2, 3];
            let share = ShareRef { key: &k.packages[&1], participants: &participants };
            let _ = sign_with_nonces(&nonces, commitments, &package, share);
        }
        prop_assert!(pools.take(now, 2, [1; 16], 0).is_err());
    }
}

#[test]
fn with_every_other_signer_restarted_an_n_of_n_key_still_signs() {
    let k = keys(3, 3);
    let now = Instant::now();
    let mut signers = Signers::new(3);
    let mut book = CommitmentBook::new();
    signers.stock(now, 1, &mut book);
    // Both other signers restart: both stale commitments are refused, the second after the
    // retry began; neither is excluded (with 3 of 3 nobody could replace them).
    signers.pools.insert(2, NoncePools::new([0xe2; 16], 8, 4));
    signers.pools.insert(3, NoncePools::new([0xe3; 16], 8, 4));
    let p = params(&k, 1, b"3 of 3", &mut book, now);
    assert_eq!(p.presigned.len(), 2);
    let seen = run(&k, &mut signers, p, now);
    assert!(verifies(&k, b"3 of 3", &seen.result.unwrap()[0]));
    for id in [2, 3] {
        assert_eq!(
            seen.requests[&id],
            vec!["SignNow", "CommitRequest", "SignRequest"]
        );
    }
}
