//! Property tests: arbitrary bytes and arbitrary messages thrown at every entry point that
//! network input reaches (the envelope decoder, the DKG state machine, the signer, the
//! coordinator). None may panic; honest sessions survive the noise.

use std::sync::Arc;
use std::time::{Duration, Instant};

use frost_ed25519 as frost;
use frostnode::dkg::{DkgParams, DkgSession};
use frostnode::identity::NodeKeys;
use frostnode::signing::coordinator::{Coordinator, SignParams};
use frostnode::signing::participant::{ShareRef, Signer, Slot};
use frostnode::wire::{
    self, Body, Confirmation, DkgOutcome, DkgStart, Envelope, ErrorKind, SecretBytes, SessionId,
};
use libp2p::identity::Keypair;
use proptest::prelude::*;

fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..300)
}

fn arb_body() -> impl Strategy<Value = Body> {
    prop_oneof![
        Just(Body::DkgBegin),
        Just(Body::Ack),
        arb_bytes().prop_map(|package| Body::DkgRound1 { package }),
        arb_bytes().prop_map(|p| Body::DkgRound2 {
            package: SecretBytes(p)
        }),
        prop::collection::vec((any::<u16>(), any::<[u8; 32]>()), 0..8)
            .prop_map(|round1_hashes| Body::DkgEcho { round1_hashes }),
        (
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
            arb_bytes()
        )
            .prop_map(
                |(transcript, group_public_key, public_key_package_hash, signature)| {
                    Body::DkgConfirm(Confirmation {
                        transcript,
                        group_public_key,
                        public_key_package_hash,
                        signature,
                    })
                }
            ),
        (".{0,40}", prop::collection::vec(any::<u16>(), 0..4))
            .prop_map(|(reason, culprits)| Body::DkgAbort { reason, culprits }),
        (
            "[a-z]{0,8}",
            prop::collection::vec(any::<u16>(), 0..6),
            any::<u16>()
        )
            .prop_map(
                |(key_id, participants, threshold)| Body::DkgStart(DkgStart {
                    key_id,
                    participants,
                    threshold
                })
            ),
        any::<[u8; 32]>().prop_map(|g| Body::DkgResult(DkgOutcome::Stored {
            group_public_key: g
        })),
        (any::<u8>(), arb_bytes()).prop_map(|(attempt, commitments)| Body::Commitment {
            attempt,
            commitments
        }),
        (any::<u8>(), arb_bytes()).prop_map(|(attempt, share)| Body::Share { attempt, share }),
        (any::<u8>(), arb_bytes()).prop_map(|(attempt, signing_package)| Body::SignRequest {
            attempt,
            signing_package
        }),
        (prop::sample::select(ErrorKind::ALL.to_vec()), ".{0,40}")
            .prop_map(|(kind, reason)| Body::Refused { kind, reason }),
    ]
}

fn dkg_session(me: u16) -> (DkgSession, SessionId) {
    let keys: Vec<Keypair> = (0..3).map(|_| Keypair::generate_ed25519()).collect();
    let session = SessionId([3; 32]);
    let peers = (1..=3u16)
        .filter(|&i| i != me)
        .map(|i| (i, keys[usize::from(i - 1)].public()))
        .collect();
    let params = DkgParams {
        session,
        key_id: "p".into(),
        participants: vec![1, 2, 3],
        threshold: 2,
        initiator: 1,
    };
    let s = DkgSession::new(
        params,
        me,
        Arc::new(NodeKeys::new(keys[usize::from(me - 1)].clone(), peers)),
        Instant::now() + Duration::from_secs(60),
    )
    .unwrap();
    (s, session)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = wire::decode(&bytes, 1 << 20);
    }

    #[test]
    fn decoding_mutated_envelopes_never_panics(body in arb_body(), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let mut bytes = wire::encode(&Envelope::new(SessionId([1; 32]), 2, body.clone())).unwrap();
        prop_assert_eq!(wire::decode(&bytes, 1 << 20).unwrap().body, body);
        for (at, x) in flips {
            let i = at % bytes.len();
            bytes[i] ^= x;
        }
        let _ = wire::decode(&bytes, 1 << 20);
        let _ = wire::decode(&bytes[..cut % (bytes.len() + 1)], 1 << 20);
    }

    #[test]
    fn dkg_session_survives_arbitrary_messages(msgs in prop::collection::vec((0u16..6, arb_body(), any::<bool>()), 1..24)) {
        let (mut s, session) = dkg_session(2);
        for (from, body, right_session) in msgs {
            let sid = if right_session { session } else { SessionId([9; 32]) };
            let _ = s.handle(Envelope::new(sid, from, body), &mut rand::rngs::OsRng);
        }
        let _ = s.on_timeout(Instant::now() + Duration::from_secs(61));
        prop_assert!(s.is_finished());
    }

    #[test]
    fn signer_survives_arbitrary_packages(package in arb_bytes(), attempt in any::<u8>(), coordinator in any::<u16>()) {
        let (shares, _) = frost::keys::generate_with_dealer(3, 2, frost::keys::IdentifierList::Default, rand::rngs::OsRng).unwrap();
        let key = frost::keys::KeyPackage::try_from(shares.into_values().next().unwrap()).unwrap();
        let mut signer = Signer::new();
        let now = Instant::now();
        let sid = SessionId([4; 32]);
        let slot = Slot { coordinator, session: sid, attempt };
        signer.commit(now, slot, "k", b"m", &key, &mut rand::rngs::OsRng).unwrap();
        let share = ShareRef { key: &key, participants: &[1, 2, 3] };
        prop_assert!(signer.sign(now, slot, &package, share).is_err());
        prop_assert_eq!(signer.pending(), 0);
    }

    #[test]
    fn coordinator_survives_arbitrary_replies(replies in prop::collection::vec((1u16..6, arb_body()), 1..20)) {
        let (_, public) = frost::keys::generate_with_dealer(5, 3, frost::keys::IdentifierList::Default, rand::rngs::OsRng).unwrap();
        let gpk = public.verifying_key().serialize().unwrap().try_into().unwrap();
        let params = SignParams {
            session: SessionId([5; 32]),
            me: 1,
            key_id: "k".into(),
            message: b"m".to_vec(),
            threshold: 3,
            participants: vec![1, 2, 3, 4, 5],
            public_key_package: public,
            group_public_key: gpk,
        };
        let now = Instant::now();
        let (mut c, _) = Coordinator::start(params, vec![1, 2, 3, 4, 5], now, Duration::from_secs(1), now + Duration::from_secs(5));
        for (from, body) in replies {
            let _ = c.on_reply(now, from, body);
        }
        let _ = c.on_timeout(now + Duration::from_secs(6));
        prop_assert!(c.is_finished());
    }
}

#[test]
fn garbage_from_strangers_and_other_sessions_is_refused() {
    // Garbage from non-participants and for other sessions is refused and does not end a session.
    let (mut s, session) = dkg_session(2);
    for from in [0u16, 7, 9] {
        let r = s.handle(
            Envelope::new(session, from, Body::DkgRound1 { package: vec![1] }),
            &mut rand::rngs::OsRng,
        );
        assert!(r.is_err());
    }
    let r = s.handle(
        Envelope::new(SessionId([8; 32]), 1, Body::DkgBegin),
        &mut rand::rngs::OsRng,
    );
    assert!(r.is_err());
    assert!(!s.is_finished());
}
