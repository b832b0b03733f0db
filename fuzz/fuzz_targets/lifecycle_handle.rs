//! Arbitrary decoded envelopes into a session that starts from an existing key: a refresh,
//! or a repair seen by its target, by a helper and by a bystander (first byte picks which);
//! and arbitrary bytes as a helper's repair sum.
#![no_main]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use frost_ed25519 as frost;
use frostnode::dkg::{DkgParams, DkgSession, PriorKey};
use frostnode::identity::NodeKeys;
use frostnode::wire::{RefreshOf, RepairOf, RepairSigma, SessionId};
use libfuzzer_sys::fuzz_target;
use libp2p::identity::Keypair;

fuzz_target!(|data: &[u8]| {
    let _ = RepairSigma::decode(data);
    let Some((&kind, data)) = data.split_first() else {
        return;
    };
    let mut rng = rand::rngs::OsRng;
    // A 2-of-4 key from a dealer: every share, the public data and the group commitment.
    let (shares, pkp) =
        frost::keys::generate_with_dealer(4, 2, frost::keys::IdentifierList::Default, &mut rng)
            .expect("dealer");
    let me = 2u16;
    let own = shares[&frost::Identifier::try_from(me).unwrap()].clone();
    let group_commitment: Vec<[u8; 32]> = own
        .commitment()
        .serialize()
        .unwrap()
        .into_iter()
        .map(|c| c.try_into().unwrap())
        .collect();
    let gpk: [u8; 32] = pkp.verifying_key().serialize().unwrap().try_into().unwrap();
    let repair = |target, helpers: Vec<u16>| {
        Some(RepairOf {
            target,
            helpers,
            enrol: false,
        })
    };
    let (participants, repair, holds) = match kind % 4 {
        0 => (vec![1, 2, 3], None, true),
        1 => (vec![1, 2, 3, 4], repair(2, vec![1, 3]), false),
        2 => (vec![1, 2, 3, 4], repair(4, vec![2, 3]), true),
        _ => (vec![1, 2, 3, 4], repair(4, vec![1, 3]), true),
    };
    let keys: BTreeMap<u16, Keypair> = (1..=4).map(|id| (id, Keypair::generate_ed25519())).collect();
    let peers = keys
        .iter()
        .filter(|(&id, _)| id != me)
        .map(|(&id, k)| (id, k.public()))
        .collect();
    let params = DkgParams {
        session: SessionId([5; 32]),
        key_id: "f".into(),
        participants: participants.clone(),
        threshold: 2,
        initiator: 1,
        refresh: Some(RefreshOf {
            group_public_key: gpk,
            epoch: 0,
        }),
        repair,
        reshare: None,
    };
    let mut s = DkgSession::new(
        params,
        me,
        Arc::new(NodeKeys::new(keys[&me].clone(), peers)),
        Instant::now() + Duration::from_secs(60),
    )
    .expect("valid parameters");
    if holds {
        let prior = PriorKey {
            key_package: frost::keys::KeyPackage::try_from(own).unwrap(),
            public_key_package: pkp,
            group_commitment,
        };
        s = s.with_prior(prior).expect("the shares match the session");
    }
    let mine = s.contribution(&mut rng);
    let contributions: Vec<(u16, [u8; 32])> = participants
        .iter()
        .map(|&id| (id, if id == me { mine } else { [id as u8; 32] }))
        .collect();
    let effects = s.begin(&contributions, &mut rng).expect("own contribution begins");
    let _ = s.settle(effects);
    // The input is a sequence of length-prefixed envelopes, put under the session's id.
    let mut rest = data;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let (chunk, tail) = rest[2..].split_at(len);
        rest = tail;
        if let Ok(mut env) = frostnode::wire::decode(chunk, 1 << 20) {
            env.session = s.wire_session();
            if let frostnode::wire::Body::DkgPull { want } = env.body {
                let _ = s.pulled(want, env.from);
                let _ = s.pulls();
            }
            if let Ok(effects) = s.handle(env, &mut rng) {
                let _ = s.settle(effects);
            }
        }
    }
    let _ = s.on_timeout(Instant::now() + Duration::from_secs(61));
    assert!(s.is_finished());
});
