//! Arbitrary decoded envelopes, and arbitrary bytes as a dealer's commitment and sub-share,
//! into a reshare of a 2-of-3 key to 3-of-4, seen by a dealer, by a holder that does not deal
//! and by a new member (first byte picks which).
#![no_main]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use frost_ed25519 as frost;
use frostnode::dkg::{DkgParams, DkgSession, PriorKey};
use frostnode::identity::NodeKeys;
use frostnode::wire::{Body, Envelope, RefreshOf, ReshareOf, SecretBytes, SessionId};
use libfuzzer_sys::fuzz_target;
use libp2p::identity::Keypair;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, data)) = data.split_first() else {
        return;
    };
    let mut rng = rand::rngs::OsRng;
    let (shares, pkp) =
        frost::keys::generate_with_dealer(3, 2, frost::keys::IdentifierList::Default, &mut rng)
            .expect("dealer");
    let me: u16 = match kind % 3 {
        0 => 1,
        1 => 3,
        _ => 4,
    };
    let gpk: [u8; 32] = pkp.verifying_key().serialize().unwrap().try_into().unwrap();
    let keys: BTreeMap<u16, Keypair> = (1..=4).map(|id| (id, Keypair::generate_ed25519())).collect();
    let peers = keys
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
    let mut s = DkgSession::new(
        params,
        me,
        Arc::new(NodeKeys::new(keys[&me].clone(), peers)),
        Instant::now() + Duration::from_secs(60),
    )
    .expect("valid parameters");
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
            key_package: frost::keys::KeyPackage::try_from(own).unwrap(),
            public_key_package: pkp,
            group_commitment,
        };
        s = s.with_prior(prior).expect("the shares match the session");
    }
    let mine = s.contribution(&mut rng);
    let contributions: Vec<(u16, [u8; 32])> = (1..=4)
        .map(|id| (id, if id == me { mine } else { [id as u8; 32] }))
        .collect();
    let effects = s.begin(&contributions, &mut rng).expect("own contribution begins");
    let _ = s.settle(effects);
    // Dealer 2's commitment and sub-share as raw bytes, then length-prefixed envelopes.
    let (raw, mut rest) = data.split_at(data.len().min(96));
    let (commitment, sub_share) = raw.split_at(raw.len().min(64));
    for body in [
        Body::DkgRound1 {
            package: commitment.to_vec(),
        },
        Body::DkgRound2 {
            package: SecretBytes(sub_share.to_vec()),
        },
    ] {
        if let Ok(effects) = s.handle(Envelope::new(s.wire_session(), 2, body), &mut rng) {
            let _ = s.settle(effects);
        }
    }
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let (chunk, tail) = rest[2..].split_at(len);
        rest = tail;
        if let Ok(mut env) = frostnode::wire::decode(chunk, 1 << 20) {
            env.session = s.wire_session();
            if let Ok(effects) = s.handle(env, &mut rng) {
                let _ = s.settle(effects);
            }
        }
    }
    let _ = s.on_timeout(Instant::now() + Duration::from_secs(61));
    assert!(s.is_finished());
});
