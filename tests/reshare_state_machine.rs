//! Resharing at the state-machine level: a key made by the DKG machine is reshared to new
//! thresholds and participant sets (2-of-3 → 3-of-5 → 5-of-9 → 2-of-3, and random cases) over
//! an in-memory bus that can tamper with messages. The group key never changes, every
//! threshold-sized set of new shares signs and no smaller one does, shares of removed members
//! combine with none of the new ones, and a dealer that deals anything but its share of the key
//! is named, with nobody moving to the new epoch.

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::frost_sign as sign;
use frost_ed25519 as frost;
use frost_ed25519::keys::{KeyPackage, PublicKeyPackage};
use frostnode::dkg::{DkgError, DkgOutput, DkgParams, DkgSession, Effect, PriorKey};
use frostnode::identity::NodeKeys;
use frostnode::wire::{Body, Envelope, NodeId, RefreshOf, ReshareOf, SecretBytes, SessionId};
use libp2p::identity::Keypair;
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{rngs::StdRng, SeedableRng};

/// How a session ended on one node.
enum End {
    /// It holds a share of the new key or epoch.
    Key(Box<DkgOutput>),
    /// A reshare left it out; it deletes its share.
    Left {
        epoch: u64,
        group_public_key: [u8; 32],
    },
}

type Outcomes = BTreeMap<NodeId, Result<End, DkgError>>;
type Tamper<'a> = &'a mut dyn FnMut(NodeId, NodeId, Body) -> Body;

/// Identity keys of nodes `1..=n`.
fn identities(n: u16) -> BTreeMap<NodeId, Keypair> {
    (1..=n)
        .map(|id| (id, Keypair::generate_ed25519()))
        .collect()
}

/// Runs one session among `params.participants` to its end, delivering every message in
/// order through `tamper`; `prior` gives the nodes that hold the key their shares.
fn run(
    ids: &BTreeMap<NodeId, Keypair>,
    params: DkgParams,
    mut prior: BTreeMap<NodeId, PriorKey>,
    tamper: Tamper<'_>,
    seed: u64,
) -> Outcomes {
    let mut rng = StdRng::seed_from_u64(seed);
    let participants = params.participants.clone();
    let now = Instant::now();
    let mut nodes: BTreeMap<NodeId, DkgSession> = BTreeMap::new();
    for &me in &participants {
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
                    assert!(outcomes.insert(from, Ok(End::Key(o))).is_none());
                }
                Effect::Left {
                    epoch,
                    group_public_key,
                } => {
                    let left = End::Left {
                        epoch,
                        group_public_key,
                    };
                    assert!(outcomes.insert(from, Ok(left)).is_none());
                }
                Effect::Failed(err) => {
                    assert!(outcomes.insert(from, Err(err)).is_none());
                }
                Effect::Compute(_) => unreachable!("settled"),
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

/// The shares a key's holders have: node id → its output.
type Holders = BTreeMap<NodeId, Box<DkgOutput>>;

fn dkg(ids: &BTreeMap<NodeId, Keypair>, participants: &[NodeId], t: u16, seed: u64) -> Holders {
    let params = DkgParams {
        session: SessionId([seed as u8; 32]),
        key_id: "k".into(),
        participants: participants.to_vec(),
        threshold: t,
        initiator: participants[0],
        refresh: None,
        repair: None,
        reshare: None,
    };
    run(ids, params, BTreeMap::new(), &mut keep, seed)
        .into_iter()
        .map(|(id, o)| match o {
            Ok(End::Key(k)) => (id, k),
            Ok(End::Left { .. }) => panic!("node {id} left a DKG"),
            Err(e) => panic!("node {id} failed the DKG: {e}"),
        })
        .collect()
}

/// The parameters of a reshare of `holders`' key to `t` and `members`, dealt by `dealers`:
/// every holder and every member takes part.
fn reshare_params(holders: &Holders, dealers: &[NodeId], t: u16, members: &[NodeId]) -> DkgParams {
    let any = holders.values().next().unwrap();
    let participants: BTreeSet<NodeId> = holders.keys().chain(members).copied().collect();
    DkgParams {
        session: SessionId([0xa5; 32]),
        key_id: "k".into(),
        participants: participants.into_iter().collect(),
        threshold: t,
        initiator: dealers[0],
        refresh: Some(RefreshOf {
            group_public_key: any.group_public_key,
            epoch: any.epoch,
        }),
        repair: None,
        reshare: Some(ReshareOf {
            dealers: dealers.to_vec(),
            members: members.to_vec(),
        }),
    }
}

fn priors(holders: &Holders) -> BTreeMap<NodeId, PriorKey> {
    holders
        .iter()
        .map(|(&id, o)| {
            let prior = PriorKey {
                key_package: o.key_package.clone(),
                public_key_package: o.public_key_package.clone(),
                group_commitment: o.group_commitment.clone(),
            };
            (id, prior)
        })
        .collect()
}

/// Reshares `holders`' key to `t` and `members` with honest dealers: every member holds the
/// next epoch of the same key, every other participant left.
fn reshare(
    ids: &BTreeMap<NodeId, Keypair>,
    holders: &Holders,
    dealers: &[NodeId],
    t: u16,
    members: &[NodeId],
    seed: u64,
) -> Holders {
    let params = reshare_params(holders, dealers, t, members);
    let any = holders.values().next().unwrap();
    let mut next = Holders::new();
    for (id, o) in run(ids, params, priors(holders), &mut keep, seed) {
        match o {
            Ok(End::Key(k)) => {
                assert!(members.contains(&id), "node {id} is no member");
                assert_eq!(k.group_public_key, any.group_public_key, "group key");
                assert_eq!(k.epoch, any.epoch + 1);
                assert_eq!(*k.key_package.min_signers(), t);
                next.insert(id, k);
            }
            Ok(End::Left {
                epoch,
                group_public_key,
            }) => {
                assert!(!members.contains(&id), "member {id} left");
                assert_eq!(
                    (epoch, group_public_key),
                    (any.epoch + 1, any.group_public_key)
                );
            }
            Err(e) => panic!("node {id} failed the reshare: {e}"),
        }
    }
    let got: Vec<NodeId> = next.keys().copied().collect();
    assert_eq!(got, members, "every member holds the new epoch");
    next
}

fn verifies(group_public_key: [u8; 32], message: &[u8], signature: &frost::Signature) -> bool {
    let key = ed25519_dalek::VerifyingKey::from_bytes(&group_public_key).unwrap();
    let bytes: [u8; 64] = signature.serialize().unwrap().try_into().unwrap();
    key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&bytes))
        .is_ok()
}

/// `kp` with a lower threshold, so that frost lets fewer shares sign: what they produce must
/// still not verify.
fn lowered(kp: &KeyPackage, t: u16) -> KeyPackage {
    KeyPackage::new(
        *kp.identifier(),
        *kp.signing_share(),
        *kp.verifying_share(),
        *kp.verifying_key(),
        t,
    )
}

fn lowered_pkp(pkp: &PublicKeyPackage, t: u16) -> PublicKeyPackage {
    PublicKeyPackage::new(
        pkp.verifying_shares().clone(),
        *pkp.verifying_key(),
        Some(t),
    )
}

/// Every `t`-sized set of `holders` signs a message an independent verifier accepts (`limit`
/// sets at most, in a fixed order); `t - 1` of them cannot, not even past frost's count check.
fn threshold_holds(holders: &Holders, t: u16, limit: usize) {
    let any = holders.values().next().unwrap();
    let (gpk, pkp) = (any.group_public_key, &any.public_key_package);
    let ids: Vec<NodeId> = holders.keys().copied().collect();
    let message = b"reshared";
    for set in subsets(&ids, usize::from(t)).into_iter().take(limit) {
        let kps: Vec<&KeyPackage> = set.iter().map(|id| &holders[id].key_package).collect();
        let sig = sign(&kps, pkp, message).unwrap_or_else(|e| panic!("{set:?} cannot sign: {e}"));
        assert!(
            verifies(gpk, message, &sig),
            "{set:?} signed a bad signature"
        );
    }
    let few: Vec<&KeyPackage> = ids[..usize::from(t) - 1]
        .iter()
        .map(|id| &holders[id].key_package)
        .collect();
    assert!(sign(&few, pkp, message).is_err(), "t - 1 shares signed");
    if t > 2 {
        let few: Vec<KeyPackage> = few.iter().map(|kp| lowered(kp, t - 1)).collect();
        let few: Vec<&KeyPackage> = few.iter().collect();
        let forged = sign(&few, &lowered_pkp(pkp, t - 1), message);
        assert!(
            forged.map_or(true, |s| !verifies(gpk, message, &s)),
            "t - 1 shares made a valid signature"
        );
    }
}

/// Every `k`-sized subset of `ids`, in lexicographic order.
fn subsets(ids: &[NodeId], k: usize) -> Vec<Vec<NodeId>> {
    if k == 0 {
        return vec![Vec::new()];
    }
    let mut all = Vec::new();
    for (i, &first) in ids.iter().enumerate() {
        for mut rest in subsets(&ids[i + 1..], k - 1) {
            rest.insert(0, first);
            all.push(rest);
        }
    }
    all
}

/// A share of epoch `old` (node `removed`) together with `t - 1` shares of epoch `new` makes
/// no valid signature.
fn old_share_does_not_combine(old: &DkgOutput, removed: NodeId, new: &Holders, t: u16) {
    let any = new.values().next().unwrap();
    let ident = frost::Identifier::try_from(removed).unwrap();
    let mut shares = any.public_key_package.verifying_shares().clone();
    shares.insert(ident, *old.key_package.verifying_share());
    let pkp = PublicKeyPackage::new(shares, *any.public_key_package.verifying_key(), Some(t));
    let mut kps = vec![lowered(&old.key_package, t)];
    kps.extend(
        new.values()
            .take(usize::from(t) - 1)
            .map(|o| lowered(&o.key_package, t)),
    );
    let refs: Vec<&KeyPackage> = kps.iter().collect();
    let sig = sign(&refs, &pkp, b"mixed");
    assert!(
        sig.map_or(true, |s| !verifies(any.group_public_key, b"mixed", &s)),
        "node {removed}'s old share combined with new ones"
    );
}

#[test]
fn reshare_2of3_to_3of5_to_5of9_and_back_to_2of3_keeps_the_key() {
    let ids = identities(9);
    let dkg_out = dkg(&ids, &[1, 2, 3], 2, 1);
    let gpk = dkg_out[&1].group_public_key;
    threshold_holds(&dkg_out, 2, usize::MAX);

    let five: Vec<NodeId> = (1..=5).collect();
    let e1 = reshare(&ids, &dkg_out, &[1, 3], 3, &five, 2);
    threshold_holds(&e1, 3, usize::MAX);

    let nine: Vec<NodeId> = (1..=9).collect();
    let e2 = reshare(&ids, &e1, &[2, 4, 5], 5, &nine, 3);
    threshold_holds(&e2, 5, usize::MAX);

    let e3 = reshare(&ids, &e2, &[1, 3, 6, 8, 9], 2, &[2, 5, 9], 4);
    threshold_holds(&e3, 2, usize::MAX);
    for epoch in [&e1, &e2, &e3] {
        assert!(epoch.values().all(|o| o.group_public_key == gpk));
    }
    // Nodes 1, 3, 4, 6, 7 and 8 were removed: their shares of epoch 2 combine with none of
    // epoch 3's.
    for removed in [1, 3, 4, 6, 7, 8] {
        old_share_does_not_combine(&e2[&removed], removed, &e3, 2);
    }
    // Every epoch's public data agrees among its members.
    for epoch in [&e1, &e2, &e3] {
        let first = epoch.values().next().unwrap();
        assert!(epoch
            .values()
            .all(|o| o.public_key_package == first.public_key_package
                && o.group_commitment == first.group_commitment));
    }
}

/// The result of a reshare in which someone misbehaved: nobody holds a new epoch, and every
/// honest node that saw the fault itself names `culprit` (whose own machine is honest here:
/// the bus forges its messages, so what it concludes is not evidence).
fn aborts_naming(outcomes: &Outcomes, culprit: NodeId) -> Vec<DkgError> {
    let mut own = Vec::new();
    for (id, o) in outcomes {
        match o {
            Ok(_) => panic!("node {id} moved to the new epoch"),
            Err(_) if *id == culprit => {}
            Err(DkgError::PeerAborted { culprits, .. }) => {
                assert!(
                    culprits.is_empty() || culprits.contains(&culprit),
                    "node {id} was told of culprits {culprits:?}"
                );
            }
            Err(e) => {
                assert!(
                    e.culprits().contains(&culprit)
                        || matches!(e, DkgError::DealingMismatch { .. }),
                    "node {id} failed with {e}, not naming {culprit}"
                );
                own.push(e.clone());
            }
        }
    }
    assert!(!own.is_empty(), "somebody saw the fault itself");
    own
}

/// The commitment bytes of a `DkgRound1` with coefficient `i` replaced by coefficient `j`.
fn swap_coefficient(body: Body, i: usize, j: usize) -> Body {
    match body {
        Body::DkgRound1 { mut package } => {
            let from: [u8; 32] = package[32 * j..32 * (j + 1)].try_into().unwrap();
            package[32 * i..32 * (i + 1)].copy_from_slice(&from);
            Body::DkgRound1 { package }
        }
        other => other,
    }
}

fn old_key_still_signs(holders: &Holders, t: u16) {
    threshold_holds(holders, t, 3);
}

#[test]
fn a_dealer_whose_constant_term_is_wrong_is_named_and_nobody_moves() {
    let ids = identities(5);
    let holders = dkg(&ids, &[1, 2, 3], 2, 11);
    let params = reshare_params(&holders, &[1, 2], 3, &[1, 2, 3, 4, 5]);
    let mut tamper = |from, _to, body| {
        if from == 2 {
            swap_coefficient(body, 0, 1)
        } else {
            body
        }
    };
    let outcomes = run(&ids, params, priors(&holders), &mut tamper, 12);
    let own = aborts_naming(&outcomes, 2);
    assert!(
        own.contains(&DkgError::InvalidDealing { culprit: 2 }),
        "a holder of the key named the dealer: {own:?}"
    );
    old_key_still_signs(&holders, 2);
}

#[test]
fn a_dealer_that_sends_one_member_a_bad_sub_share_is_named_and_nobody_moves() {
    let ids = identities(5);
    let holders = dkg(&ids, &[1, 2, 3], 2, 21);
    let params = reshare_params(&holders, &[2, 3], 3, &[1, 2, 3, 4, 5]);
    let mut tamper = |from, to, body| match body {
        Body::DkgRound2 { package } if from == 3 && to == 5 => {
            let mut bytes = package.0.clone();
            bytes[0] ^= 1;
            Body::DkgRound2 {
                package: SecretBytes(bytes),
            }
        }
        other => other,
    };
    let outcomes = run(&ids, params, priors(&holders), &mut tamper, 22);
    let own = aborts_naming(&outcomes, 3);
    assert_eq!(own, vec![DkgError::InvalidSecretShare { culprit: 3 }]);
    old_key_still_signs(&holders, 2);
}

#[test]
fn a_dealer_that_equivocates_on_its_commitment_is_named_and_nobody_moves() {
    let ids = identities(6);
    let holders = dkg(&ids, &[1, 2, 3, 4], 3, 31);
    let params = reshare_params(&holders, &[1, 2, 4], 3, &[1, 2, 3, 4, 5, 6]);
    // Dealer 4 shows nodes 5 and 6 a commitment with another (valid) second coefficient: its
    // constant term is right, so only the echo tells.
    let mut tamper = |from, to, body| {
        if from == 4 && to >= 5 {
            swap_coefficient(body, 1, 2)
        } else {
            body
        }
    };
    let outcomes = run(&ids, params, priors(&holders), &mut tamper, 32);
    aborts_naming(&outcomes, 4);
    old_key_still_signs(&holders, 3);
}

#[test]
fn a_participant_that_is_no_dealer_cannot_deal() {
    let ids = identities(4);
    let holders = dkg(&ids, &[1, 2, 3], 2, 41);
    let params = reshare_params(&holders, &[1, 2], 2, &[1, 2, 4]);
    // Node 3 (a holder, not a dealer) sends new member 4 a commitment of its own: refused,
    // naming it.
    let peers = ids
        .iter()
        .filter(|(&id, _)| id != 4)
        .map(|(&id, k)| (id, k.public()))
        .collect();
    let keys = Arc::new(NodeKeys::new(ids[&4].clone(), peers));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut s = DkgSession::new(params, 4, keys, deadline).unwrap();
    let mut rng = StdRng::seed_from_u64(43);
    let own = s.contribution(&mut rng);
    let contributions: Vec<(NodeId, [u8; 32])> = [1, 2, 3, 4]
        .iter()
        .map(|&id| (id, if id == 4 { own } else { [id as u8; 32] }))
        .collect();
    let _ = s.begin(&contributions, &mut rng).unwrap();
    let env = Envelope::new(
        s.wire_session(),
        3,
        Body::DkgRound1 {
            package: vec![0; 64],
        },
    );
    let effects = s.handle(env, &mut rng).unwrap();
    let failed = effects.iter().find_map(|e| match e {
        Effect::Failed(e) => Some(e.clone()),
        _ => None,
    });
    assert!(
        matches!(failed, Some(DkgError::Malformed { culprit: 3, .. })),
        "{failed:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any (t, n) → (t', n') with 2 ≤ t ≤ n ≤ 10 and 2 ≤ t' ≤ n' ≤ 10: the group key stays,
    /// a t'-set of the new members signs, t' - 1 of them cannot.
    #[test]
    fn any_reshare_keeps_the_key_and_the_new_threshold(
        n in 2u16..=10,
        t_seed in 0u16..100,
        n2 in 2u16..=10,
        t2_seed in 0u16..100,
        seed in 0u64..1_000_000,
    ) {
        let t = 2 + t_seed % (n - 1);
        let t2 = 2 + t2_seed % (n2 - 1);
        let ids = identities(14);
        let mut rng = StdRng::seed_from_u64(seed);
        let old: Vec<NodeId> = (1..=n).collect();
        let holders = dkg(&ids, &old, t, seed);
        let mut pool: Vec<NodeId> = (1..=14).collect();
        pool.shuffle(&mut rng);
        let mut members: Vec<NodeId> = pool[..usize::from(n2)].to_vec();
        members.sort_unstable();
        let mut dealers: Vec<NodeId> = old.clone();
        dealers.shuffle(&mut rng);
        dealers.truncate(usize::from(t));
        dealers.sort_unstable();
        let next = reshare(&ids, &holders, &dealers, t2, &members, seed + 1);
        prop_assert!(next.values().all(|o| o.group_public_key == holders[&1].group_public_key));
        threshold_holds(&next, t2, 2);
    }
}

/// A reshare session of a 2-of-3 key to 3-of-4 (dealers 1 and 2) as node `me` sees it: a
/// dealer (1), a holder that does not deal (3) or a new member (4); begun.
fn lone_reshare_session(me: NodeId, rng: &mut StdRng) -> DkgSession {
    let (shares, pkp) =
        frost::keys::generate_with_dealer(3, 2, frost::keys::IdentifierList::Default, &mut *rng)
            .unwrap();
    let gpk: [u8; 32] = pkp.verifying_key().serialize().unwrap().try_into().unwrap();
    let ids = identities(4);
    let peers = ids
        .iter()
        .filter(|(&id, _)| id != me)
        .map(|(&id, k)| (id, k.public()))
        .collect();
    let params = DkgParams {
        session: SessionId([6; 32]),
        key_id: "f".into(),
        participants: vec![1, 2, 3, 4],
        threshold: 3,
        initiator: 1,
        refresh: Some(RefreshOf {
            group_public_key: gpk,
            epoch: 0,
        }),
        repair: None,
        reshare: Some(ReshareOf {
            dealers: vec![1, 2],
            members: vec![1, 2, 3, 4],
        }),
    };
    let keys = Arc::new(NodeKeys::new(ids[&me].clone(), peers));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut s = DkgSession::new(params, me, keys, deadline).unwrap();
    if me != 4 {
        let own = shares[&frost::Identifier::try_from(me).unwrap()].clone();
        let group_commitment = own
            .commitment()
            .serialize()
            .unwrap()
            .into_iter()
            .map(|c| c.try_into().unwrap())
            .collect();
        let prior = PriorKey {
            key_package: KeyPackage::try_from(own).unwrap(),
            public_key_package: pkp,
            group_commitment,
        };
        s = s.with_prior(prior).unwrap();
    }
    let mine = s.contribution(&mut *rng);
    let contributions: Vec<(NodeId, [u8; 32])> = (1..=4)
        .map(|id| (id, if id == me { mine } else { [id as u8; 32] }))
        .collect();
    let effects = s.begin(&contributions, &mut *rng).unwrap();
    let _ = s.settle(effects);
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary commitments, sub-shares, echoes and raw envelopes from any participant never
    /// make a reshare panic or complete (nobody's confirmation can be forged), and its
    /// deadline always ends it.
    #[test]
    fn arbitrary_reshare_messages_never_panic_nor_complete(
        role in 0u8..3,
        messages in prop::collection::vec(
            (1u16..=4, 0u8..4, prop::collection::vec(any::<u8>(), 0..200)),
            0..12,
        ),
        seed in any::<u64>(),
    ) {
        let me = [1, 3, 4][usize::from(role)];
        let mut rng = StdRng::seed_from_u64(seed);
        let mut s = lone_reshare_session(me, &mut rng);
        for (from, kind, bytes) in messages {
            let body = match kind {
                0 => Body::DkgRound1 { package: bytes },
                1 => Body::DkgRound2 { package: SecretBytes(bytes) },
                2 => Body::DkgEcho {
                    round1_hashes: bytes
                        .chunks(32)
                        .enumerate()
                        .map(|(i, c)| {
                            let mut h = [0u8; 32];
                            h[..c.len()].copy_from_slice(c);
                            (i as NodeId + 1, h)
                        })
                        .collect(),
                },
                _ => match frostnode::wire::decode(&bytes, 1 << 16) {
                    Ok(env) => env.body,
                    Err(_) => continue,
                },
            };
            if let Ok(effects) = s.handle(Envelope::new(s.wire_session(), from, body), &mut rng) {
                let effects = s.settle(effects);
                let ended = effects
                    .iter()
                    .any(|e| matches!(e, Effect::Completed(_) | Effect::Left { .. }));
                prop_assert!(!ended, "a forged reshare completed");
            }
        }
        let _ = s.on_timeout(Instant::now() + Duration::from_secs(61));
        prop_assert!(s.is_finished());
    }
}
