//! Property tests: arbitrary bytes and arbitrary messages thrown at every entry point that
//! network input reaches (the envelope decoder, the DKG state machine, the signer, the
//! coordinator). None may panic; honest sessions survive the noise.

use std::sync::Arc;
use std::time::{Duration, Instant};

use frost_ed25519 as frost;
use frostnode::dkg::{DkgParams, DkgSession, Effect};
use frostnode::identity::NodeKeys;
use frostnode::signing::coordinator::{Coordinator, SignParams};
use frostnode::signing::participant::{Commit, ShareRef, Signer, Slot};
use frostnode::wire::{
    self, Body, Confirmation, DkgOutcome, DkgStart, DkgStep, Envelope, ErrorKind, SecretBytes,
    SessionId,
};
use libp2p::identity::Keypair;
use proptest::prelude::*;

fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..300)
}

fn arb_body() -> impl Strategy<Value = Body> {
    prop_oneof![
        Just(Body::DkgBegin {
            contributions: vec![(1, [7; 32]), (2, [8; 32])]
        }),
        Just(Body::Ack),
        any::<[u8; 32]>().prop_map(|contribution| Body::DkgJoin { contribution }),
        prop_oneof![
            Just(DkgStep::Begin),
            Just(DkgStep::Round1),
            Just(DkgStep::Round2),
            Just(DkgStep::Echo),
            Just(DkgStep::Confirm)
        ]
        .prop_map(|want| Body::DkgPull { want }),
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
                    threshold,
                    token: None,
                    refresh: None,
                    repair: None,
                    reshare: None,
                })
            ),
        any::<[u8; 32]>().prop_map(|g| Body::DkgResult(DkgOutcome::Stored {
            group_public_key: g
        })),
        (any::<u8>(), prop::collection::vec(arb_bytes(), 0..3)).prop_map(
            |(attempt, commitments)| Body::Commitment {
                attempt,
                commitments
            }
        ),
        (any::<u8>(), prop::collection::vec(arb_bytes(), 0..3))
            .prop_map(|(attempt, shares)| Body::Share { attempt, shares }),
        (any::<u8>(), prop::collection::vec(arb_bytes(), 0..3)).prop_map(
            |(attempt, signing_packages)| Body::SignRequest {
                attempt,
                signing_packages
            }
        ),
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
        refresh: None,
        repair: None,
        reshare: None,
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

    /// Whatever a session went through, a pull is answered only for a participant other than
    /// this node, and only with the kind of message asked for.
    #[test]
    fn pulls_are_answered_only_to_participants_with_what_was_asked(
        msgs in prop::collection::vec((0u16..6, arb_body()), 0..16),
        begin in any::<bool>(),
        asks in prop::collection::vec((0u16..6, 0usize..5), 1..16),
    ) {
        let (mut s, session) = dkg_session(1);
        let own = s.contribution(&mut rand::rngs::OsRng);
        if begin {
            let _ = s.begin(&[(1, own), (2, [2; 32]), (3, [3; 32])], &mut rand::rngs::OsRng);
        }
        for (from, body) in msgs {
            if let Ok(effects) = s.handle(Envelope::new(s.wire_session(), from, body), &mut rand::rngs::OsRng) {
                let _ = s.settle(effects);
            }
        }
        let _ = session;
        let steps = [DkgStep::Begin, DkgStep::Round1, DkgStep::Round2, DkgStep::Echo, DkgStep::Confirm];
        for (asker, step) in asks {
            let answer = s.pulled(steps[step], asker);
            if asker == 1 || !(1..=3).contains(&asker) {
                prop_assert!(answer.is_none());
            }
            let fits = matches!(
                (&answer, steps[step]),
                (None, _)
                    | (Some(Body::DkgBegin { .. }), DkgStep::Begin)
                    | (Some(Body::DkgRound1 { .. }), DkgStep::Round1)
                    | (Some(Body::DkgRound2 { .. }), DkgStep::Round2)
                    | (Some(Body::DkgEcho { .. }), DkgStep::Echo)
                    | (Some(Body::DkgConfirm(_)), DkgStep::Confirm)
            );
            prop_assert!(fits, "{:?} answered with {:?}", steps[step], answer);
        }
        for (peer, _) in s.pulls() {
            prop_assert!(peer != 1 && (1..=3).contains(&peer));
        }
    }

    #[test]
    fn dkg_session_survives_arbitrary_messages(msgs in prop::collection::vec((0u16..6, arb_body(), any::<bool>()), 1..24)) {
        let (mut s, session) = dkg_session(2);
        for (from, body, right_session) in msgs {
            let sid = if right_session { session } else { SessionId([9; 32]) };
            if let Ok(effects) = s.handle(Envelope::new(sid, from, body), &mut rand::rngs::OsRng) {
                // Arithmetic handed out (decoding a round-1 package, part2, part3) runs too.
                prop_assert!(s.settle(effects).iter().all(|e| !matches!(e, Effect::Compute(_))));
            }
        }
        let _ = s.on_timeout(Instant::now() + Duration::from_secs(61));
        prop_assert!(s.is_finished());
    }

    #[test]
    fn signer_survives_arbitrary_packages(packages in prop::collection::vec(arb_bytes(), 0..3), attempt in any::<u8>(), coordinator in any::<u16>()) {
        let (shares, _) = frost::keys::generate_with_dealer(3, 2, frost::keys::IdentifierList::Default, rand::rngs::OsRng).unwrap();
        let key = frost::keys::KeyPackage::try_from(shares.into_values().next().unwrap()).unwrap();
        let mut signer = Signer::new();
        let now = Instant::now();
        let sid = SessionId([4; 32]);
        let slot = Slot { coordinator, session: sid, attempt };
        signer.commit(now, slot, Commit { key_id: "k", epoch: 0, messages: &[b"m".to_vec()], key: &key }, None, &mut rand::rngs::OsRng).unwrap();
        let share = ShareRef { key: &key, participants: &[1, 2, 3] };
        prop_assert!(signer.sign(now, slot, &packages, share).is_err());
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
            messages: vec![b"m".to_vec()],
            threshold: 3,
            participants: vec![1, 2, 3, 4, 5],
            public_key_package: public,
            group_public_key: gpk,
            epoch: 0,
            request_id: SessionId([0; 32]),
            token: None,
            presigned: Default::default(),
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
        Envelope::new(
            SessionId([8; 32]),
            1,
            Body::DkgBegin {
                contributions: vec![],
            },
        ),
        &mut rand::rngs::OsRng,
    );
    assert!(r.is_err());
    assert!(!s.is_finished());
}

/// A node with peers 2 and 3, for the sender-authentication properties.
fn peer_book() -> (frostnode::node::peers::PeerBook, Vec<libp2p::PeerId>) {
    let pids: Vec<libp2p::PeerId> = (0..3)
        .map(|_| Keypair::generate_ed25519().public().to_peer_id())
        .collect();
    let peers = [2u16, 3]
        .into_iter()
        .zip(&pids)
        .map(|(id, &peer_id)| frostnode::config::Peer {
            id,
            peer_id,
            addr: "/ip4/127.0.0.1/tcp/9".parse().unwrap(),
        })
        .collect();
    let config = frostnode::localnet::loopback_config(1, "/nonexistent".into(), peers);
    (frostnode::node::peers::PeerBook::new(&config).0, pids)
}

/// Tracks a DKG initiated by node 1 over nodes 1..=4 and returns the caller's receiver.
fn initiation(
    own: Result<[u8; 32], frostnode::dkg::DkgError>,
    store: &frostnode::keystore::KeyStore,
) -> (
    frostnode::node::initiator::Initiations,
    SessionId,
    tokio::sync::oneshot::Receiver<
        Result<frostnode::keystore::KeyInfo, frostnode::node::NodeError>,
    >,
) {
    let params = DkgParams {
        session: SessionId([6; 32]),
        key_id: "k".into(),
        participants: vec![1, 2, 3, 4],
        threshold: 3,
        initiator: 1,
        refresh: None,
        repair: None,
        reshare: None,
    };
    let mut inits = frostnode::node::initiator::Initiations::default();
    let (tx, rx) = tokio::sync::oneshot::channel();
    inits.insert(
        &params,
        1,
        [0; 32],
        tx,
        Instant::now() + Duration::from_secs(60),
    );
    inits.on_own_end(params.session, own, store);
    (inits, params.session, rx)
}

fn arb_outcome() -> impl Strategy<Value = DkgOutcome> {
    prop_oneof![
        any::<[u8; 32]>().prop_map(|g| DkgOutcome::Stored {
            group_public_key: g
        }),
        (
            ".{0,20}",
            prop::collection::vec(any::<u16>(), 0..4),
            prop::collection::vec(any::<u16>(), 0..4)
        )
            .prop_map(|(reason, culprits, missing)| DkgOutcome::Failed {
                reason,
                culprits,
                missing
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn sender_authentication_accepts_only_the_configured_sender(
        sender in 0usize..3, from in 0u16..6, body in arb_body(), garbage in arb_bytes()
    ) {
        let (book, pids) = peer_book();
        let peer = pids[sender];
        let listed_as = [Some(2u16), Some(3), None][sender];
        let bytes = wire::encode(&Envelope::new(SessionId([1; 32]), from, body.clone())).unwrap();
        match book.authenticate(peer, &bytes) {
            Ok(env) => {
                prop_assert_eq!(Some(env.from), listed_as);
                prop_assert_eq!(env.body, body);
            }
            Err(_) => prop_assert_ne!(Some(from), listed_as),
        }
        prop_assert!(book.authenticate(peer, &garbage).map(|e| Some(e.from) == listed_as).unwrap_or(true));
    }

    #[test]
    fn no_report_turns_a_confirmed_dkg_into_a_failure(
        reports in prop::collection::vec((0u16..7, arb_outcome()), 0..12)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = keystore_with_k(dir.path());
        let gpk = hex::decode(&store.get("k").unwrap().group_public_key).unwrap().try_into().unwrap();
        let (mut inits, sid, mut rx) = initiation(Ok(gpk), &store);
        for (from, outcome) in reports {
            inits.on_report(sid, from, outcome, &store);
        }
        // Whatever they said first, every participant has now reported.
        for from in 2..=4 {
            inits.on_report(sid, from, DkgOutcome::Stored { group_public_key: gpk }, &store);
        }
        let answer = rx.try_recv().expect("answered once every participant reported");
        prop_assert_eq!(answer.unwrap().group_public_key, hex::encode(gpk));
    }

    #[test]
    fn only_own_evidence_names_culprits(
        reports in prop::collection::vec((0u16..7, arb_outcome()), 0..12), saw_it in any::<bool>()
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = frostnode::keystore::KeyStore::open(dir.path()).unwrap();
        // This node caught node 3 itself, or only followed node 2's abort blaming node 3.
        let (own, expected) = if saw_it {
            (frostnode::dkg::DkgError::InvalidSecretShare { culprit: 3 }, vec![3])
        } else {
            let by = frostnode::dkg::DkgError::PeerAborted { by: 2, reason: "x".into(), culprits: vec![3] };
            (by, vec![])
        };
        let (mut inits, sid, mut rx) = initiation(Err(own), &store);
        for (from, outcome) in reports {
            inits.on_report(sid, from, outcome, &store);
        }
        inits.on_timeout(sid, &store);
        match rx.try_recv().expect("answered") {
            Err(frostnode::node::NodeError::Aborted { culprits, .. }) => prop_assert_eq!(culprits, expected),
            other => prop_assert!(false, "expected an abort naming node 3, got {:?}", other),
        }
    }
}

/// A key store holding a dealer-made key "k" over nodes 1..=4, held by node 1.
fn keystore_with_k(dir: &std::path::Path) -> frostnode::keystore::KeyStore {
    let (shares, public) = frost::keys::generate_with_dealer(
        4,
        3,
        frost::keys::IdentifierList::Default,
        rand::rngs::OsRng,
    )
    .unwrap();
    let one = frost::Identifier::try_from(1u16).unwrap();
    let key_package = frost::keys::KeyPackage::try_from(shares[&one].clone()).unwrap();
    let mut store = frostnode::keystore::KeyStore::open(dir).unwrap();
    store
        .insert(frostnode::keystore::StoredKey {
            format_version: frostnode::keystore::KEY_FORMAT_VERSION,
            key_id: "k".into(),
            session: "00".into(),
            created_at: 0,
            threshold: 3,
            participants: vec![1, 2, 3, 4],
            group_public_key: hex::encode(public.verifying_key().serialize().unwrap()),
            key_package,
            public_key_package: public,
            confirmations: vec![],
            epoch: 0,
            group_commitment: Vec::new(),
        })
        .unwrap();
    store
}

#[test]
fn a_confirmed_dkg_whose_participant_never_reports_times_out_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = keystore_with_k(dir.path());
    let gpk = hex::decode(&store.get("k").unwrap().group_public_key)
        .unwrap()
        .try_into()
        .unwrap();
    let (mut inits, sid, mut rx) = initiation(Ok(gpk), &store);
    for from in [2, 3] {
        let outcome = DkgOutcome::Stored {
            group_public_key: gpk,
        };
        inits.on_report(sid, from, outcome, &store);
    }
    assert!(rx.try_recv().is_err(), "no answer before node 4 reports");
    inits.on_timeout(sid, &store);
    match rx.try_recv().unwrap() {
        Err(frostnode::node::NodeError::Timeout { missing, .. }) => assert_eq!(missing, vec![4]),
        other => panic!("expected a timeout naming node 4, got {other:?}"),
    }
}
