//! Key lifecycle at the state-machine level: a key made by the DKG machine is refreshed
//! (frost's DKG-based refresh), repaired and extended to a new participant (frost's repairable
//! threshold scheme) by the same machine, over an in-memory bus that can tamper with messages.
//! The group key never changes, every new share signs, a member left out of a refresh holds a
//! share that combines with none of the new ones, and bad values name their senders.

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::frost_sign as sign;
use frost_ed25519 as frost;
use frost_ed25519::keys::{KeyPackage, PublicKeyPackage};
use frostnode::dkg::{
    verifying_share_of, DkgError, DkgOutput, DkgParams, DkgSession, Effect, PriorKey,
};
use frostnode::identity::NodeKeys;
use frostnode::wire::{
    Body, Envelope, NodeId, RefreshOf, RepairOf, RepairSigma, SecretBytes, SessionId,
};
use libp2p::identity::Keypair;
use proptest::prelude::*;
use rand::{rngs::StdRng, SeedableRng};

type Outcomes = BTreeMap<NodeId, Result<Box<DkgOutput>, DkgError>>;

/// Identity keys of nodes `1..=n`.
fn identities(n: u16) -> BTreeMap<NodeId, Keypair> {
    (1..=n)
        .map(|id| (id, Keypair::generate_ed25519()))
        .collect()
}

/// Runs one session (a DKG, or a refresh when `prior` gives each node its shares) among
/// `participants` to its end, delivering every message in order through `tamper`.
fn run(
    ids: &BTreeMap<NodeId, Keypair>,
    participants: &[NodeId],
    threshold: u16,
    refresh: Option<RefreshOf>,
    prior: BTreeMap<NodeId, PriorKey>,
    tamper: &mut dyn FnMut(NodeId, NodeId, Body) -> Body,
    seed: u64,
) -> Outcomes {
    run_with(
        ids,
        participants,
        threshold,
        refresh,
        None,
        prior,
        tamper,
        seed,
    )
}

/// Like [`run`], for a repair or enrolment too.
#[allow(clippy::too_many_arguments)]
fn run_with(
    ids: &BTreeMap<NodeId, Keypair>,
    participants: &[NodeId],
    threshold: u16,
    refresh: Option<RefreshOf>,
    repair: Option<RepairOf>,
    mut prior: BTreeMap<NodeId, PriorKey>,
    tamper: &mut dyn FnMut(NodeId, NodeId, Body) -> Body,
    seed: u64,
) -> Outcomes {
    let mut rng = StdRng::seed_from_u64(seed);
    let params = DkgParams {
        session: SessionId([seed as u8; 32]),
        key_id: "k".into(),
        participants: participants.to_vec(),
        threshold,
        initiator: participants[0],
        refresh,
        repair,
        reshare: None,
    };
    let now = Instant::now();
    let mut nodes: BTreeMap<NodeId, DkgSession> = BTreeMap::new();
    for &me in participants {
        let peers = ids
            .iter()
            .filter(|(&id, _)| id != me)
            .map(|(&id, k)| (id, k.public()))
            .collect();
        let keys = Arc::new(NodeKeys::new(ids[&me].clone(), peers));
        let mut s =
            DkgSession::new(params.clone(), me, keys, now + Duration::from_secs(60)).unwrap();
        if let Some(p) = prior.remove(&me) {
            s = s.with_prior(p).unwrap();
        }
        nodes.insert(me, s);
    }
    let contributions: Vec<(NodeId, [u8; 32])> = nodes
        .iter_mut()
        .map(|(&id, s)| (id, s.contribution(&mut rng)))
        .collect();
    let mut queue: VecDeque<(NodeId, NodeId, Body)> = VecDeque::new();
    let mut outcomes = Outcomes::new();
    let mut out = |from: NodeId, effects: Vec<Effect>, queue: &mut VecDeque<_>| {
        for e in effects {
            match e {
                Effect::Broadcast(body) => {
                    for &to in participants.iter().filter(|&&to| to != from) {
                        queue.push_back((from, to, body.clone()));
                    }
                }
                Effect::Send { to, body } => queue.push_back((from, to, body)),
                Effect::Completed(o) => {
                    outcomes.insert(from, Ok(o));
                }
                Effect::Failed(err) => {
                    outcomes.entry(from).or_insert(Err(err));
                }
                Effect::Compute(_) => unreachable!("settled"),
                Effect::Left { .. } => unreachable!("only a reshare leaves members out"),
            }
        }
    };
    for (&id, s) in nodes.iter_mut() {
        let effects = s.begin(&contributions, &mut rng).unwrap();
        out(id, s.settle(effects), &mut queue);
    }
    while let Some((from, to, body)) = queue.pop_front() {
        let body = tamper(from, to, body);
        let s = nodes.get_mut(&to).unwrap();
        let env = Envelope::new(s.wire_session(), from, body);
        if let Ok(effects) = s.handle(env, &mut rng) {
            let effects = s.settle(effects);
            out(to, effects, &mut queue);
        }
    }
    outcomes
}

fn keep(_: NodeId, _: NodeId, body: Body) -> Body {
    body
}

/// Every node's output, or a panic naming the first failure.
fn completed(outcomes: Outcomes) -> BTreeMap<NodeId, Box<DkgOutput>> {
    outcomes
        .into_iter()
        .map(|(id, o)| (id, o.unwrap_or_else(|e| panic!("node {id} failed: {e}"))))
        .collect()
}

fn priors(
    outputs: &BTreeMap<NodeId, Box<DkgOutput>>,
    who: &[NodeId],
) -> BTreeMap<NodeId, PriorKey> {
    who.iter()
        .map(|id| {
            let o = &outputs[id];
            let prior = PriorKey {
                key_package: o.key_package.clone(),
                public_key_package: o.public_key_package.clone(),
                group_commitment: o.group_commitment.clone(),
            };
            (*id, prior)
        })
        .collect()
}

fn refresh_of(outputs: &BTreeMap<NodeId, Box<DkgOutput>>) -> RefreshOf {
    let o = outputs.values().next().unwrap();
    RefreshOf {
        group_public_key: o.group_public_key,
        epoch: o.epoch,
    }
}

fn verifies(group_public_key: [u8; 32], message: &[u8], signature: &frost::Signature) -> bool {
    let key = ed25519_dalek::VerifyingKey::from_bytes(&group_public_key).unwrap();
    let bytes: [u8; 64] = signature.serialize().unwrap().try_into().unwrap();
    key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&bytes))
        .is_ok()
}

/// Every participant's verifying share is the one the group commitment implies.
fn commitment_matches(o: &DkgOutput) {
    for (ident, share) in o.public_key_package.verifying_shares() {
        let id = (1..=u16::MAX)
            .find(|&id| frost::Identifier::try_from(id).ok().as_ref() == Some(ident))
            .unwrap();
        assert_eq!(
            verifying_share_of(&o.group_commitment, id).unwrap(),
            *share,
            "node {id}'s verifying share"
        );
    }
}

#[test]
fn refresh_keeps_the_group_key_and_renews_every_share() {
    let ids = identities(5);
    let all: Vec<NodeId> = (1..=5).collect();
    let dkg = completed(run(&ids, &all, 3, None, BTreeMap::new(), &mut keep, 1));
    commitment_matches(&dkg[&1]);
    assert_eq!(dkg[&1].group_commitment.len(), 3);
    let refresh = refresh_of(&dkg);
    let new = completed(run(
        &ids,
        &all,
        3,
        Some(refresh),
        priors(&dkg, &all),
        &mut keep,
        2,
    ));
    assert_eq!(new.len(), 5);
    for (id, o) in &new {
        assert_eq!(o.epoch, 1);
        assert_eq!(
            o.group_public_key, dkg[id].group_public_key,
            "the group key never changes"
        );
        assert_ne!(
            o.key_package.signing_share(),
            dkg[id].key_package.signing_share(),
            "node {id}'s share was renewed"
        );
        assert_eq!(o.public_key_package, new[&1].public_key_package);
        assert_eq!(o.group_commitment, new[&1].group_commitment);
    }
    commitment_matches(&new[&1]);
    assert_eq!(new[&1].group_commitment[0], refresh.group_public_key);
    let pkp = &new[&1].public_key_package;
    let message = b"after the refresh";
    let signature = sign(
        &[
            &new[&2].key_package,
            &new[&4].key_package,
            &new[&5].key_package,
        ],
        pkp,
        message,
    )
    .unwrap();
    assert!(verifies(refresh.group_public_key, message, &signature));
    // Shares of two epochs never make a signature.
    assert!(sign(
        &[
            &dkg[&1].key_package,
            &new[&2].key_package,
            &new[&3].key_package
        ],
        pkp,
        message
    )
    .is_err());
}

#[test]
fn a_member_left_out_of_a_refresh_holds_a_share_that_combines_with_no_new_one() {
    let ids = identities(5);
    let all: Vec<NodeId> = (1..=5).collect();
    let dkg = completed(run(&ids, &all, 3, None, BTreeMap::new(), &mut keep, 3));
    let kept: Vec<NodeId> = (1..=4).collect();
    let refresh = refresh_of(&dkg);
    let new = completed(run(
        &ids,
        &kept,
        3,
        Some(refresh),
        priors(&dkg, &kept),
        &mut keep,
        4,
    ));
    let pkp = &new[&1].public_key_package;
    let five = frost::Identifier::try_from(5u16).unwrap();
    assert!(
        !pkp.verifying_shares().contains_key(&five),
        "node 5 is no participant"
    );
    // Node 5's old share with the new shares of any two others: the public package that would
    // have to accept it (old verifying share for 5, new ones for the rest) yields no signature.
    let mut shares = pkp.verifying_shares().clone();
    shares.insert(
        five,
        *dkg[&5]
            .public_key_package
            .verifying_shares()
            .get(&five)
            .unwrap(),
    );
    let mixed = PublicKeyPackage::new(shares, *pkp.verifying_key(), Some(3));
    let message = b"node 5 tries";
    for (a, b) in [(1, 2), (1, 3), (2, 4), (3, 4)] {
        let result = sign(
            &[
                &dkg[&5].key_package,
                &new[&a].key_package,
                &new[&b].key_package,
            ],
            &mixed,
            message,
        );
        assert!(
            result.is_err(),
            "old share of 5 with new shares of {a} and {b} signed"
        );
    }
    // The others sign without it.
    let signature = sign(
        &[
            &new[&1].key_package,
            &new[&3].key_package,
            &new[&4].key_package,
        ],
        pkp,
        message,
    )
    .unwrap();
    assert!(verifies(refresh.group_public_key, message, &signature));
}

#[test]
fn a_bad_refresh_share_names_its_sender() {
    let ids = identities(4);
    let all: Vec<NodeId> = (1..=4).collect();
    let dkg = completed(run(&ids, &all, 3, None, BTreeMap::new(), &mut keep, 5));
    // Node 2's share for node 4 is swapped for the one it sent node 3: a well-formed share,
    // on node 2's polynomial, at the wrong point.
    let mut to_three = None;
    let mut tamper = |from: NodeId, to: NodeId, body: Body| match (&body, from, to) {
        (Body::DkgRound2 { package }, 2, 3) => {
            to_three = Some(package.clone());
            body
        }
        (Body::DkgRound2 { .. }, 2, 4) => match &to_three {
            Some(package) => Body::DkgRound2 {
                package: package.clone(),
            },
            None => body,
        },
        _ => body,
    };
    let outcomes = run(
        &ids,
        &all,
        3,
        Some(refresh_of(&dkg)),
        priors(&dkg, &all),
        &mut tamper,
        6,
    );
    match &outcomes[&4] {
        Err(DkgError::InvalidSecretShare { culprit }) => assert_eq!(*culprit, 2),
        other => panic!("node 4: {other:?}"),
    }
    assert!(
        outcomes.values().all(|o| o.is_err()),
        "nobody moves to the new epoch"
    );
}

#[test]
fn a_refresh_commitment_of_the_wrong_length_names_its_sender() {
    let ids = identities(4);
    let all: Vec<NodeId> = (1..=4).collect();
    let dkg = completed(run(&ids, &all, 3, None, BTreeMap::new(), &mut keep, 7));
    // Node 4 sends a DKG round-1 package (t coefficients, a constant term of its choosing)
    // where a refresh package (t - 1 coefficients) belongs.
    let mut rng = StdRng::seed_from_u64(8);
    let ident = frost::Identifier::try_from(4u16).unwrap();
    let (_, wrong) = frost::keys::dkg::part1(ident, 4, 3, &mut rng).unwrap();
    let wrong = wrong.serialize().unwrap();
    let mut tamper = |from: NodeId, _: NodeId, body: Body| match body {
        Body::DkgRound1 { .. } if from == 4 => Body::DkgRound1 {
            package: wrong.clone(),
        },
        other => other,
    };
    let outcomes = run(
        &ids,
        &all,
        3,
        Some(refresh_of(&dkg)),
        priors(&dkg, &all),
        &mut tamper,
        9,
    );
    for id in 1..=3 {
        match &outcomes[&id] {
            Err(DkgError::Malformed { culprit, .. }) => assert_eq!(*culprit, 4),
            other => panic!("node {id}: {other:?}"),
        }
    }
}

#[test]
fn a_session_refuses_shares_of_another_key_or_threshold() {
    let ids = identities(3);
    let all: Vec<NodeId> = (1..=3).collect();
    let dkg = completed(run(&ids, &all, 2, None, BTreeMap::new(), &mut keep, 10));
    let other = completed(run(&ids, &all, 2, None, BTreeMap::new(), &mut keep, 11));
    let params = |refresh: Option<RefreshOf>, threshold| DkgParams {
        session: SessionId([1; 32]),
        key_id: "k".into(),
        participants: all.clone(),
        threshold,
        initiator: 1,
        refresh,
        repair: None,
        reshare: None,
    };
    let keys = || {
        let peers = ids.iter().map(|(&id, k)| (id, k.public())).collect();
        Arc::new(NodeKeys::new(ids[&1].clone(), peers))
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let session = |p| DkgSession::new(p, 1, keys(), deadline).unwrap();
    let prior = |o: &BTreeMap<NodeId, Box<DkgOutput>>| priors(o, &[1]).remove(&1).unwrap();
    // Shares of another key.
    let refresh = Some(refresh_of(&dkg));
    assert!(session(params(refresh, 2))
        .with_prior(prior(&other))
        .is_err());
    // Another threshold.
    assert!(session(params(refresh, 3)).with_prior(prior(&dkg)).is_err());
    // A DKG takes no shares.
    assert!(session(params(None, 2)).with_prior(prior(&dkg)).is_err());
    assert!(session(params(refresh, 2)).with_prior(prior(&dkg)).is_ok());
}

fn repair_of(target: NodeId, helpers: &[NodeId], enrol: bool) -> Option<RepairOf> {
    Some(RepairOf {
        target,
        helpers: helpers.to_vec(),
        enrol,
    })
}

#[test]
fn a_lost_share_is_rebuilt_on_the_same_polynomial() {
    let ids = identities(5);
    let all: Vec<NodeId> = (1..=5).collect();
    let dkg = completed(run(&ids, &all, 3, None, BTreeMap::new(), &mut keep, 12));
    let holders = [1, 2, 4, 5];
    let outcomes = run_with(
        &ids,
        &all,
        3,
        Some(refresh_of(&dkg)),
        repair_of(3, &[1, 2, 4], false),
        priors(&dkg, &holders),
        &mut keep,
        13,
    );
    let next = completed(outcomes);
    assert_eq!(next.len(), 5);
    assert_eq!(
        next[&3].key_package.signing_share(),
        dkg[&3].key_package.signing_share(),
        "node 3 holds its share again"
    );
    for (id, o) in &next {
        assert_eq!(o.epoch, 1);
        assert_eq!(
            o.public_key_package, dkg[&1].public_key_package,
            "node {id}"
        );
        assert_eq!(o.key_package, dkg[id].key_package, "node {id}");
    }
}

#[test]
fn a_new_participant_gets_a_share_that_signs_with_old_ones() {
    let ids = identities(6);
    let old: Vec<NodeId> = (1..=5).collect();
    let all: Vec<NodeId> = (1..=6).collect();
    let dkg = completed(run(&ids, &old, 3, None, BTreeMap::new(), &mut keep, 14));
    let next = completed(run_with(
        &ids,
        &all,
        3,
        Some(refresh_of(&dkg)),
        repair_of(6, &[2, 3, 5], true),
        priors(&dkg, &old),
        &mut keep,
        15,
    ));
    assert_eq!(next.len(), 6);
    let pkp = &next[&6].public_key_package;
    let six = frost::Identifier::try_from(6u16).unwrap();
    assert_eq!(
        pkp.verifying_shares().get(&six),
        Some(next[&6].key_package.verifying_share())
    );
    for o in next.values() {
        assert_eq!(
            &o.public_key_package, pkp,
            "every participant holds the same public data"
        );
        assert_eq!(o.group_public_key, dkg[&1].group_public_key);
    }
    commitment_matches(&next[&6]);
    let message = b"six signs";
    let signature = sign(
        &[
            &next[&6].key_package,
            &next[&1].key_package,
            &next[&4].key_package,
        ],
        pkp,
        message,
    )
    .unwrap();
    assert!(verifies(dkg[&1].group_public_key, message, &signature));
}

#[test]
fn a_wrong_repair_value_is_refused_naming_the_helpers() {
    let ids = identities(5);
    let all: Vec<NodeId> = (1..=5).collect();
    let dkg = completed(run(&ids, &all, 3, None, BTreeMap::new(), &mut keep, 16));
    // Helper 2 sends the target a sum that is off by one value: well formed, wrong.
    let mut tamper = |from: NodeId, to: NodeId, body: Body| match body {
        Body::DkgRound2 { package } if from == 2 && to == 3 => {
            let mut sigma = RepairSigma::decode(&package.0).unwrap();
            sigma.sigma = frost::keys::repairable::Sigma::deserialize(&[7; 32])
                .unwrap()
                .serialize();
            Body::DkgRound2 {
                package: SecretBytes(sigma.encode().unwrap()),
            }
        }
        other => other,
    };
    let outcomes = run_with(
        &ids,
        &all,
        3,
        Some(refresh_of(&dkg)),
        repair_of(3, &[1, 2, 4], false),
        priors(&dkg, &[1, 2, 4, 5]),
        &mut tamper,
        17,
    );
    match &outcomes[&3] {
        Err(e @ DkgError::RepairMismatch { target, helpers }) => {
            assert_eq!((*target, helpers.as_slice()), (3, &[1, 2, 4][..]));
            assert!(e.to_string().contains("[1, 2, 4]"), "{e}");
        }
        other => panic!("node 3: {other:?}"),
    }
    assert!(
        outcomes.values().all(|o| o.is_err()),
        "nobody moves to the next epoch"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Any key (2 <= t <= n <= 6), refreshed for any subset of at least t participants,
    /// keeps its group key, and any t of the new shares sign.
    #[test]
    fn any_refresh_keeps_the_key_and_signs(
        n in 2u16..=6,
        t_frac in 0.0f64..1.0,
        drop_mask in any::<u8>(),
        seed in any::<u64>(),
    ) {
        let t = 2 + ((f64::from(n - 2) + 0.999) * t_frac) as u16;
        let t = t.min(n);
        let ids = identities(n);
        let all: Vec<NodeId> = (1..=n).collect();
        let dkg = completed(run(&ids, &all, t, None, BTreeMap::new(), &mut keep, seed));
        let mut kept: Vec<NodeId> = all
            .iter()
            .copied()
            .filter(|id| drop_mask & (1 << (id - 1)) == 0)
            .collect();
        for id in &all {
            if kept.len() >= usize::from(t) {
                break;
            }
            if !kept.contains(id) {
                kept.push(*id);
            }
        }
        kept.sort_unstable();
        let refresh = refresh_of(&dkg);
        let new = completed(run(
            &ids,
            &kept,
            t,
            Some(refresh),
            priors(&dkg, &kept),
            &mut keep,
            seed ^ 1,
        ));
        let first = &new[&kept[0]];
        prop_assert_eq!(first.group_public_key, refresh.group_public_key);
        let holders: BTreeSet<_> = first.public_key_package.verifying_shares().keys().copied().collect();
        prop_assert_eq!(holders.len(), kept.len());
        let signers: Vec<&KeyPackage> = kept
            .iter()
            .rev()
            .take(usize::from(t))
            .map(|id| &new[id].key_package)
            .collect();
        let signature = sign(&signers, &first.public_key_package, b"m").unwrap();
        prop_assert!(verifies(refresh.group_public_key, b"m", &signature));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Any key (2 <= t <= n <= 6): any participant's share, rebuilt by any t others, is the
    /// share it had; a new participant enrolled by any t of them signs with any t-1 others.
    #[test]
    fn any_repair_or_enrolment_rebuilds_a_share_that_signs(
        n in 3u16..=6,
        t_pick in any::<u16>(),
        target_pick in any::<u16>(),
        helper_seed in any::<u64>(),
        enrol in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let t = 2 + t_pick % (n - 1);
        let t = t.min(n - 1).max(2);
        let ids = identities(n + 1);
        let old: Vec<NodeId> = (1..=n).collect();
        let dkg = completed(run(&ids, &old, t, None, BTreeMap::new(), &mut keep, seed));
        let target = if enrol { n + 1 } else { 1 + target_pick % n };
        let mut pool: Vec<NodeId> = old.iter().copied().filter(|&id| id != target).collect();
        let mut r = StdRng::seed_from_u64(helper_seed);
        rand::seq::SliceRandom::shuffle(&mut pool[..], &mut r);
        let mut helpers: Vec<NodeId> = pool.into_iter().take(usize::from(t)).collect();
        helpers.sort_unstable();
        let holders: Vec<NodeId> = old.iter().copied().filter(|&id| id != target).collect();
        let mut participants = old.clone();
        if enrol {
            participants.push(target);
        }
        let next = completed(run_with(
            &ids,
            &participants,
            t,
            Some(refresh_of(&dkg)),
            repair_of(target, &helpers, enrol),
            priors(&dkg, &holders),
            &mut keep,
            seed ^ 2,
        ));
        prop_assert_eq!(next.len(), participants.len());
        let rebuilt = &next[&target];
        if !enrol {
            prop_assert_eq!(rebuilt.key_package.signing_share(), dkg[&target].key_package.signing_share());
        }
        let mut signers: Vec<&KeyPackage> = vec![&rebuilt.key_package];
        signers.extend(holders.iter().take(usize::from(t) - 1).map(|id| &next[id].key_package));
        let signature = sign(&signers, &rebuilt.public_key_package, b"m").unwrap();
        prop_assert!(verifies(dkg[&1].group_public_key, b"m", &signature));
    }

    /// A helper's repair sum decodes from its own encoding and from nothing else silently:
    /// arbitrary bytes are refused or decode to a value that encodes back to them.
    #[test]
    fn repair_sums_decode_exactly(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(sum) = RepairSigma::decode(&bytes) {
            prop_assert_eq!(sum.encode().unwrap(), bytes);
        }
    }
}
