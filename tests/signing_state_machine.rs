//! Coordinator and signer state machines driven in memory: replies delivered, dropped or
//! tampered with by the test, time passed in by hand.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use frost_ed25519 as frost;
use frostnode::signing::coordinator::{Coordinator, Effect, SignParams};
use frostnode::signing::participant::{Commit, ShareRef, Signer, SignerError, Slot};
use frostnode::signing::SignError;
use frostnode::wire::{Body, NodeId, SessionId};

/// The nonce slot of `coordinator`'s `session`, attempt `attempt`.
fn slot(session: SessionId, attempt: u8, coordinator: NodeId) -> Slot {
    Slot {
        coordinator,
        session,
        attempt,
    }
}

fn share<'a>(key: &'a frost::keys::KeyPackage, participants: &'a [NodeId]) -> ShareRef<'a> {
    ShareRef { key, participants }
}

struct Keys {
    packages: BTreeMap<NodeId, frost::keys::KeyPackage>,
    public: frost::keys::PublicKeyPackage,
    gpk: [u8; 32],
}

fn keys(n: u16, t: u16) -> Keys {
    let (shares, public) = frost::keys::generate_with_dealer(
        n,
        t,
        frost::keys::IdentifierList::Default,
        rand::rngs::OsRng,
    )
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

fn params(k: &Keys, t: u16, message: &[u8]) -> SignParams {
    batch_params(k, t, &[message])
}

fn batch_params(k: &Keys, t: u16, messages: &[&[u8]]) -> SignParams {
    SignParams {
        session: SessionId(rand::random()),
        me: 1,
        key_id: "k".into(),
        messages: messages.iter().map(|m| m.to_vec()).collect(),
        threshold: t,
        participants: k.packages.keys().copied().collect(),
        public_key_package: k.public.clone(),
        group_public_key: k.gpk,
        epoch: 0,
        request_id: SessionId([0; 32]),
        token: None,
        presigned: Default::default(),
    }
}

/// Delivery decision for one request.
enum Fate {
    Answer,
    Silence,
    CorruptShare,
}

/// Runs a session to the end; `fate(signer, request)` decides what happens to each request.
fn run(
    k: &Keys,
    p: SignParams,
    reachable: Vec<NodeId>,
    mut fate: impl FnMut(NodeId, &Body) -> Fate,
) -> (
    Result<frostnode::signing::coordinator::SignOutput, SignError>,
    Vec<NodeId>,
) {
    let mut now = Instant::now();
    let session = p.session;
    let messages = p.messages.clone();
    let mut signers: BTreeMap<NodeId, Signer> =
        k.packages.keys().map(|&id| (id, Signer::new())).collect();
    let (mut c, first) = Coordinator::start(
        p,
        reachable,
        now,
        Duration::from_secs(1),
        now + Duration::from_secs(30),
    );
    let mut queue: VecDeque<Effect> = first.into();
    loop {
        while let Some(effect) = queue.pop_front() {
            match effect {
                Effect::Aggregate(job) => queue.extend(c.on_aggregated(now, job.run())),
                Effect::Done(out) => return (Ok(out.clone()), out.culprits),
                Effect::Failed { error, culprits } => return (Err(error), culprits),
                Effect::Send { to, body } => {
                    let action = fate(to, &body);
                    if matches!(action, Fate::Silence) {
                        continue;
                    }
                    let key = &k.packages[&to];
                    let signer = signers.get_mut(&to).unwrap();
                    let reply = match body {
                        Body::CommitRequest {
                            attempt,
                            messages: m,
                            ..
                        } => {
                            assert_eq!(m, messages);
                            let c = signer
                                .commit(
                                    now,
                                    slot(session, attempt, 1),
                                    Commit {
                                        key_id: "k",
                                        epoch: 0,
                                        messages: &m,
                                        key,
                                    },
                                    None,
                                    &mut rand::rngs::OsRng,
                                )
                                .unwrap();
                            Body::Commitment {
                                attempt,
                                commitments: c.iter().map(|c| c.serialize().unwrap()).collect(),
                            }
                        }
                        Body::SignRequest {
                            attempt,
                            signing_packages,
                        } => {
                            let participants: Vec<NodeId> = k.packages.keys().copied().collect();
                            let mut shares = signer
                                .sign(
                                    now,
                                    slot(session, attempt, 1),
                                    &signing_packages,
                                    share(key, &participants),
                                )
                                .unwrap();
                            if matches!(action, Fate::CorruptShare) {
                                // Only the last message's share is wrong.
                                *shares.last_mut().unwrap() =
                                    frost::round2::SignatureShare::deserialize(&[5u8; 32])
                                        .unwrap()
                                        .serialize();
                            }
                            Body::Share { attempt, shares }
                        }
                        other => panic!("unexpected request {other:?}"),
                    };
                    queue.extend(c.on_reply(now, to, reply));
                }
            }
        }
        // Nothing in flight answers any more: let time pass to the next deadline.
        now = c.deadline().expect("a running session has a deadline");
        queue.extend(c.on_timeout(now));
    }
}

fn verify(k: &Keys, msg: &[u8], sig: &[u8; 64]) {
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&k.gpk).unwrap();
    vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig))
        .expect("signature verifies");
}

#[test]
fn three_of_five_signs() {
    let k = keys(5, 3);
    let (out, _) = run(&k, params(&k, 3, b"hello"), vec![1, 2, 3, 4, 5], |_, _| {
        Fate::Answer
    });
    let out = out.unwrap();
    assert_eq!(
        out.signers,
        vec![1, 2, 3],
        "the first t reachable, in preference order"
    );
    verify(&k, b"hello", &out.signatures[0]);
}

#[test]
fn silent_signer_is_replaced_during_commitments() {
    let k = keys(5, 3);
    let (out, _) = run(&k, params(&k, 3, b"m"), vec![1, 2, 3, 4, 5], |to, _| {
        if to == 2 {
            Fate::Silence
        } else {
            Fate::Answer
        }
    });
    let out = out.unwrap();
    assert_eq!(out.signers, vec![1, 3, 4]);
    verify(&k, b"m", &out.signatures[0]);
}

#[test]
fn signer_silent_after_committing_triggers_a_fresh_attempt() {
    let k = keys(5, 3);
    let (out, _) = run(&k, params(&k, 3, b"m"), vec![1, 2, 3, 4, 5], |to, body| {
        if to == 3 && matches!(body, Body::SignRequest { .. }) {
            Fate::Silence
        } else {
            Fate::Answer
        }
    });
    let out = out.unwrap();
    assert!(!out.signers.contains(&3));
    verify(&k, b"m", &out.signatures[0]);
}

#[test]
fn corrupted_share_names_its_signer_and_signing_succeeds_without_it() {
    let k = keys(5, 3);
    let (out, culprits) = run(&k, params(&k, 3, b"m"), vec![1, 2, 3, 4, 5], |to, body| {
        if to == 2 && matches!(body, Body::SignRequest { .. }) {
            Fate::CorruptShare
        } else {
            Fate::Answer
        }
    });
    let out = out.unwrap();
    assert_eq!(culprits, vec![2]);
    assert!(!out.signers.contains(&2));
    verify(&k, b"m", &out.signatures[0]);
}

#[test]
fn a_batch_is_one_session_and_a_bad_share_in_it_names_its_signer() {
    let k = keys(5, 3);
    let messages: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 10 + usize::from(i)]).collect();
    let refs: Vec<&[u8]> = messages.iter().map(|m| m.as_slice()).collect();
    let mut asked = BTreeMap::<NodeId, usize>::new();
    let (out, culprits) = run(
        &k,
        batch_params(&k, 3, &refs),
        vec![1, 2, 3, 4, 5],
        |to, body| {
            *asked.entry(to).or_default() += 1;
            match body {
                Body::CommitRequest { messages: m, .. } => assert_eq!(m.len(), 5),
                Body::SignRequest {
                    signing_packages, ..
                } => assert_eq!(signing_packages.len(), 5),
                _ => {}
            }
            // What the forwarder's size check assumes bounds what goes on the wire.
            let bytes = frostnode::wire::encode(&frostnode::wire::Envelope::new(
                SessionId([0; 32]),
                1,
                body.clone(),
            ))
            .unwrap();
            assert!(bytes.len() <= frostnode::node::checks::batch_wire_bytes(&messages, 3));
            // Signer 2's share for the last message is wrong, the other four are right.
            if to == 2 && matches!(body, Body::SignRequest { .. }) {
                Fate::CorruptShare
            } else {
                Fate::Answer
            }
        },
    );
    let out = out.unwrap();
    assert_eq!(culprits, vec![2]);
    assert!(!out.signers.contains(&2));
    assert_eq!(out.signatures.len(), 5);
    for (m, sig) in messages.iter().zip(&out.signatures) {
        verify(&k, m, sig);
    }
    // Two requests per signer and attempt, whatever the batch's size.
    assert_eq!(asked[&3], 4, "commit and sign, in each of the two attempts");
}

#[test]
fn too_few_reachable_fails_saying_how_many() {
    let k = keys(5, 3);
    let (out, _) = run(&k, params(&k, 3, b"m"), vec![1, 4], |_, _| Fate::Answer);
    assert_eq!(
        out.unwrap_err(),
        SignError::NotEnoughSigners {
            reachable: 2,
            needed: 3,
            participants: 5
        }
    );
}

#[test]
fn everyone_silent_times_out() {
    let k = keys(3, 2);
    let (out, _) = run(&k, params(&k, 2, b"m"), vec![1, 2, 3], |_, _| Fate::Silence);
    assert!(matches!(
        out,
        Err(SignError::NotEnoughSigners { .. }) | Err(SignError::Timeout { .. })
    ));
}

/// A valid signing package for signer `id` over `message`, as a coordinator would build it.
fn package_for(
    k: &Keys,
    signer: &mut Signer,
    session: SessionId,
    message: &[u8],
    id: NodeId,
) -> Vec<Vec<u8>> {
    let now = Instant::now();
    let mine = signer
        .commit(
            now,
            slot(session, 0, 9),
            Commit {
                key_id: "k",
                epoch: 0,
                messages: &[message.to_vec()],
                key: &k.packages[&id],
            },
            None,
            &mut rand::rngs::OsRng,
        )
        .unwrap();
    let mut commitments = BTreeMap::new();
    commitments.insert(frost::Identifier::try_from(id).unwrap(), mine[0]);
    let other = frost::round1::commit(k.packages[&2].signing_share(), &mut rand::rngs::OsRng).1;
    commitments.insert(frost::Identifier::try_from(2u16).unwrap(), other);
    vec![frost::SigningPackage::new(commitments, message)
        .serialize()
        .unwrap()]
}

const P: &[NodeId] = &[1, 2, 3];

#[test]
fn nonces_sign_once_and_replays_are_refused() {
    let k = keys(3, 2);
    let mut s = Signer::new();
    let now = Instant::now();
    let session = SessionId([1; 32]);
    let pkg = package_for(&k, &mut s, session, b"msg", 1);
    assert_eq!(s.pending(), 1);
    s.sign(now, slot(session, 0, 9), &pkg, share(&k.packages[&1], P))
        .unwrap();
    assert_eq!(s.pending(), 0, "nonces are gone after use");
    assert_eq!(
        s.sign(now, slot(session, 0, 9), &pkg, share(&k.packages[&1], P))
            .unwrap_err(),
        SignerError::UnknownSession {
            session,
            attempt: 0
        }
    );
}

#[test]
fn signer_checks_message_commitment_signers_and_coordinator() {
    let k = keys(3, 2);
    let key = &k.packages[&1];
    let mut s = Signer::new();
    let now = Instant::now();

    // A package over another message than the one committed to.
    let a = SessionId([2; 32]);
    let _ = package_for(&k, &mut s, a, b"agreed", 1);
    let mut other = Signer::new();
    let forged = package_for(&k, &mut other, a, b"something else", 1);
    assert_eq!(
        s.sign(now, slot(a, 0, 9), &forged, share(key, P))
            .unwrap_err(),
        SignerError::MessageMismatch
    );
    assert_eq!(s.pending(), 0, "a refused package still burns the nonces");

    // A package that carries someone else's commitment in our place.
    let b = SessionId([3; 32]);
    let _ = package_for(&k, &mut s, b, b"m", 1);
    let mut third = Signer::new();
    let foreign = package_for(&k, &mut third, b, b"m", 1);
    assert_eq!(
        s.sign(now, slot(b, 0, 9), &foreign, share(key, P))
            .unwrap_err(),
        SignerError::CommitmentMismatch
    );

    // Another participant (8) cannot use or burn the nonces committed to coordinator 9.
    let c = SessionId([4; 32]);
    let pkg = package_for(&k, &mut s, c, b"m", 1);
    assert!(matches!(
        s.sign(now, slot(c, 0, 8), &pkg, share(key, P)),
        Err(SignerError::UnknownSession { .. })
    ));
    s.sign(now, slot(c, 0, 9), &pkg, share(key, P))
        .expect("the real coordinator still gets its share");

    // Signers outside the key.
    let e = SessionId([6; 32]);
    let pkg = package_for(&k, &mut s, e, b"m", 1);
    assert_eq!(
        s.sign(now, slot(e, 0, 9), &pkg, share(key, &[1, 3]))
            .unwrap_err(),
        SignerError::UnknownSigners
    );

    // Garbage.
    let d = SessionId([5; 32]);
    let _ = package_for(&k, &mut s, d, b"m", 1);
    assert_eq!(
        s.sign(now, slot(d, 0, 9), &[b"junk".to_vec()], share(key, P))
            .unwrap_err(),
        SignerError::Malformed
    );
}

#[test]
fn commit_is_idempotent_and_nonces_expire() {
    let k = keys(3, 2);
    let key = &k.packages[&1];
    let mut s = Signer::new();
    let now = Instant::now();
    let sid = SessionId([6; 32]);
    let a = s
        .commit(
            now,
            slot(sid, 0, 9),
            Commit {
                key_id: "k",
                epoch: 0,
                messages: &[b"m".to_vec()],
                key,
            },
            None,
            &mut rand::rngs::OsRng,
        )
        .unwrap();
    let b = s
        .commit(
            now,
            slot(sid, 0, 9),
            Commit {
                key_id: "k",
                epoch: 0,
                messages: &[b"m".to_vec()],
                key,
            },
            None,
            &mut rand::rngs::OsRng,
        )
        .unwrap();
    assert_eq!(a, b, "a retried commit request gets the same commitments");
    assert!(matches!(
        s.commit(
            now,
            slot(sid, 0, 9),
            Commit {
                key_id: "k",
                epoch: 0,
                messages: &[b"other".to_vec()],
                key
            },
            None,
            &mut rand::rngs::OsRng
        ),
        Err(SignerError::Conflict(_))
    ));
    let later = now + frostnode::signing::participant::NONCE_TTL + Duration::from_secs(1);
    assert_eq!(
        s.next_expiry(),
        Some(now + frostnode::signing::participant::NONCE_TTL)
    );
    s.expire(later);
    assert_eq!(s.pending(), 0);

    // A package that arrives after the nonces' time is refused even before a sweep.
    let late = SessionId([7; 32]);
    let pkg = package_for(&k, &mut s, late, b"m", 1);
    assert!(matches!(
        s.sign(
            Instant::now() + frostnode::signing::participant::NONCE_TTL,
            slot(late, 0, 9),
            &pkg,
            share(key, P)
        ),
        Err(SignerError::UnknownSession { .. })
    ));
}

#[test]
fn one_coordinator_cannot_fill_the_nonce_table() {
    use frostnode::signing::participant::MAX_PENDING_PER_COORDINATOR;
    let k = keys(3, 2);
    let key = &k.packages[&1];
    let mut s = Signer::new();
    let now = Instant::now();
    for i in 0..MAX_PENDING_PER_COORDINATOR {
        let mut sid = [0u8; 32];
        sid[..8].copy_from_slice(&(i as u64).to_be_bytes());
        s.commit(
            now,
            slot(SessionId(sid), 0, 9),
            Commit {
                key_id: "k",
                epoch: 0,
                messages: &[b"m".to_vec()],
                key,
            },
            None,
            &mut rand::rngs::OsRng,
        )
        .unwrap();
    }
    assert_eq!(
        s.commit(
            now,
            slot(SessionId([0xee; 32]), 0, 9),
            Commit {
                key_id: "k",
                epoch: 0,
                messages: &[b"m".to_vec()],
                key
            },
            None,
            &mut rand::rngs::OsRng
        )
        .unwrap_err(),
        SignerError::Busy
    );
    s.commit(
        now,
        slot(SessionId([0xee; 32]), 0, 8),
        Commit {
            key_id: "k",
            epoch: 0,
            messages: &[b"m".to_vec()],
            key,
        },
        None,
        &mut rand::rngs::OsRng,
    )
    .expect("another coordinator still gets commitments");
}

#[test]
fn used_nonces_leave_the_expiry_queue() {
    let k = keys(3, 2);
    let key = &k.packages[&1];
    let mut s = Signer::new();
    let t0 = Instant::now();
    let (a, b) = (SessionId([0xa; 32]), SessionId([0xb; 32]));
    let pkg = package_for(&k, &mut s, a, b"m", 1);
    let later = t0 + Duration::from_secs(1);
    s.commit(
        later,
        slot(b, 0, 9),
        Commit {
            key_id: "k",
            epoch: 0,
            messages: &[b"m".to_vec()],
            key,
        },
        None,
        &mut rand::rngs::OsRng,
    )
    .unwrap();
    let first = s.next_expiry().unwrap();
    s.sign(later, slot(a, 0, 9), &pkg, share(key, P)).unwrap();
    let next = s.next_expiry().unwrap();
    assert!(next > first, "the used nonce's deadline is gone");
    assert_eq!(next, later + frostnode::signing::participant::NONCE_TTL);
}
