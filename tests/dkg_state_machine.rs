//! The DKG state machine over an in-memory bus: no network, full control over which messages
//! are delivered, dropped, duplicated, reordered or tampered with.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use frost_ed25519 as frost;
use frostnode::dkg::{DkgError, DkgOutput, DkgParams, DkgSession, Effect, Rejection, Work};
use frostnode::identity::NodeKeys;
use frostnode::wire::{Body, Envelope, NodeId, SecretBytes, SessionId};
use libp2p::identity::Keypair;
use rand::{rngs::StdRng, Rng, SeedableRng};

/// What the bus does with one message.
enum Action {
    Deliver,
    Drop,
    Duplicate,
    Replace(Body),
    /// Deliver this first, then the original.
    Precede(Body),
    /// Deliver this, under another session id, first; then the original.
    PrecedeUnder(SessionId, Body),
}

type Filter = Box<dyn FnMut(NodeId, NodeId, &Body) -> Action>;

struct Bus {
    /// The setup id (`DkgStart`, `DkgBegin`); round messages travel under each sender's
    /// round id.
    session: SessionId,
    /// Every node's contribution to the round id, in participant order.
    contributions: Vec<(NodeId, [u8; 32])>,
    /// Every node's identity key (a test may sign as one of them).
    keys: BTreeMap<NodeId, Keypair>,
    nodes: BTreeMap<NodeId, DkgSession>,
    queue: VecDeque<(NodeId, NodeId, SessionId, Body)>,
    /// Round messages that reached a node before its `DkgBegin`.
    early: Vec<(NodeId, NodeId, SessionId, Body)>,
    outcomes: BTreeMap<NodeId, Result<Box<DkgOutput>, DkgError>>,
    /// Messages a node refused without changing its session: (recipient, why).
    rejections: Vec<(NodeId, Rejection)>,
    filter: Filter,
    shuffle: Option<StdRng>,
    /// Arithmetic handed out and not yet done (only while shuffling: otherwise it is done at
    /// once), so that messages also arrive while `part2` or `part3` is out.
    work: Vec<(NodeId, Work)>,
    /// Arithmetic is handed out and kept, never done (until the test does it).
    hold_work: bool,
    /// The nodes' protocol randomness: seeded, so every run of a test is the same run.
    rng: StdRng,
    start: Instant,
}

impl Bus {
    fn new(n: u16, t: u16) -> Bus {
        Bus::with(
            n,
            t,
            SessionId(rand::random()),
            u64::from(n) << 8 | u64::from(t),
        )
    }

    /// A bus whose initiator chose setup id `session`; the nodes' randomness comes from `seed`.
    fn with(n: u16, t: u16, session: SessionId, seed: u64) -> Bus {
        let ids: Vec<NodeId> = (1..=n).collect();
        let keys: BTreeMap<NodeId, Keypair> = ids
            .iter()
            .map(|&id| (id, Keypair::generate_ed25519()))
            .collect();
        let params = DkgParams {
            session,
            key_id: "test-key".into(),
            participants: ids.clone(),
            threshold: t,
            initiator: 1,
            refresh: None,
            repair: None,
            reshare: None,
        };
        let start = Instant::now();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut nodes: BTreeMap<NodeId, DkgSession> = ids
            .iter()
            .map(|&me| {
                let peer_keys = keys
                    .iter()
                    .filter(|(&id, _)| id != me)
                    .map(|(&id, k)| (id, k.public()))
                    .collect();
                let s = DkgSession::new(
                    params.clone(),
                    me,
                    Arc::new(NodeKeys::new(keys[&me].clone(), peer_keys)),
                    start + Duration::from_secs(60),
                )
                .unwrap();
                (me, s)
            })
            .collect();
        let contributions = nodes
            .iter_mut()
            .map(|(&id, s)| (id, s.contribution(&mut rng)))
            .collect();
        Bus {
            session,
            contributions,
            keys,
            nodes,
            queue: VecDeque::new(),
            early: Vec::new(),
            outcomes: BTreeMap::new(),
            rejections: Vec::new(),
            filter: Box::new(|_, _, _| Action::Deliver),
            shuffle: None,
            work: Vec::new(),
            hold_work: false,
            rng,
            start,
        }
    }

    fn apply(&mut self, from: NodeId, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Broadcast(body) => {
                    let to: Vec<NodeId> = self
                        .nodes
                        .keys()
                        .copied()
                        .filter(|&id| id != from)
                        .collect();
                    for id in to {
                        self.enqueue(from, id, body.clone());
                    }
                }
                Effect::Send { to, body } => self.enqueue(from, to, body),
                Effect::Completed(out) => {
                    assert!(self.outcomes.insert(from, Ok(out)).is_none());
                }
                Effect::Failed(e) => {
                    assert!(self.outcomes.insert(from, Err(e)).is_none());
                }
                Effect::Left { .. } => panic!("a DKG leaves nobody out"),
                Effect::Compute(work) if self.shuffle.is_some() || self.hold_work => {
                    self.work.push((from, work))
                }
                Effect::Compute(work) => {
                    let more = self.nodes.get_mut(&from).unwrap().computed(work.run());
                    self.apply(from, more);
                }
            }
        }
    }

    fn enqueue(&mut self, from: NodeId, to: NodeId, body: Body) {
        // `DkgBegin` travels under the setup id, everything else under the sender's round id.
        let session = match body {
            Body::DkgBegin { .. } => self.session,
            _ => self.nodes[&from].wire_session(),
        };
        match (self.filter)(from, to, &body) {
            Action::Deliver => self.queue.push_back((from, to, session, body)),
            Action::Drop => {}
            Action::Duplicate => {
                self.queue.push_back((from, to, session, body.clone()));
                self.queue.push_back((from, to, session, body));
            }
            Action::Replace(b) => self.queue.push_back((from, to, session, b)),
            Action::Precede(b) => {
                self.queue.push_back((from, to, session, b));
                self.queue.push_back((from, to, session, body));
            }
            Action::PrecedeUnder(other, b) => {
                self.queue.push_back((from, to, other, b));
                self.queue.push_back((from, to, session, body));
            }
        }
    }

    /// The initiator begins, the others get `DkgBegin`, then messages flow until none are left.
    fn run(&mut self) {
        let contributions = self.contributions.clone();
        let effects = self
            .nodes
            .get_mut(&1)
            .unwrap()
            .begin(&contributions, &mut self.rng)
            .unwrap();
        self.apply(1, effects);
        let others: Vec<NodeId> = self.nodes.keys().copied().filter(|&id| id != 1).collect();
        for id in others {
            let begin = Body::DkgBegin {
                contributions: contributions.clone(),
            };
            self.enqueue(1, id, begin);
        }
        self.run_queue();
    }

    /// Delivers queued messages until none are left.
    fn run_queue(&mut self) {
        while !self.queue.is_empty() || (!self.work.is_empty() && !self.hold_work) {
            if let (Some(rng), false) = (&mut self.shuffle, self.hold_work) {
                // Now and then, some arithmetic finishes instead of a message arriving.
                let pick = rng.gen_range(0..self.queue.len() + self.work.len());
                if pick >= self.queue.len() {
                    let (node, work) = self.work.swap_remove(pick - self.queue.len());
                    let more = self.nodes.get_mut(&node).unwrap().computed(work.run());
                    self.apply(node, more);
                    continue;
                }
            }
            let idx = match &mut self.shuffle {
                Some(rng) => rng.gen_range(0..self.queue.len()),
                None => 0,
            };
            let (from, to, session, body) = self.queue.remove(idx).unwrap();
            let node = self.nodes.get_mut(&to).unwrap();
            if node.round_id().is_none() && session != self.session {
                // Like the node's driver: a round message that arrives before `DkgBegin`
                // waits until the round id is known.
                self.early.push((from, to, session, body));
                continue;
            }
            let env = Envelope::new(session, from, body);
            let begun = node.round_id().is_none();
            match node.handle(env, &mut self.rng) {
                Ok(effects) => self.apply(to, effects),
                Err(r) => self.rejections.push((to, r)),
            }
            if begun && self.nodes[&to].round_id().is_some() {
                let (now, later) = std::mem::take(&mut self.early)
                    .into_iter()
                    .partition(|m| m.1 == to);
                self.early = later;
                for m in now {
                    self.queue.push_front(m);
                }
            }
        }
    }

    fn expire(&mut self) {
        let later = self.start + Duration::from_secs(61);
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            let effects = self.nodes.get_mut(&id).unwrap().on_timeout(later);
            self.apply(id, effects);
        }
    }

    fn assert_all_agree(&self) -> [u8; 32] {
        assert_eq!(
            self.outcomes.len(),
            self.nodes.len(),
            "every node finishes; rejections: {:?}",
            self.rejections
        );
        let mut gpk = None;
        for (id, outcome) in &self.outcomes {
            let out = outcome
                .as_ref()
                .unwrap_or_else(|e| panic!("node {id} failed: {e}"));
            assert_eq!(
                *gpk.get_or_insert(out.group_public_key),
                out.group_public_key
            );
            assert_eq!(out.confirmations.len(), self.nodes.len());
            let ident = frost::Identifier::try_from(*id).unwrap();
            assert_eq!(
                out.public_key_package.verifying_shares().get(&ident),
                Some(out.key_package.verifying_share()),
                "node {id}'s verifying share matches its key package"
            );
        }
        gpk.unwrap()
    }

    fn failures(&self) -> BTreeMap<NodeId, DkgError> {
        self.outcomes
            .iter()
            .filter_map(|(id, o)| o.as_ref().err().map(|e| (*id, e.clone())))
            .collect()
    }
}

/// Whom an outcome blames: the node's own finding, or what the aborting peer said.
fn blamed(e: &DkgError) -> Vec<NodeId> {
    match e {
        DkgError::PeerAborted { culprits, .. } => culprits.clone(),
        other => other.culprits(),
    }
}

/// Signs with the first `t` key packages and checks the result with ed25519-dalek.
fn sign_and_verify(bus: &Bus, t: u16) {
    let outs: Vec<&DkgOutput> = bus
        .outcomes
        .values()
        .take(usize::from(t))
        .map(|o| o.as_ref().unwrap().as_ref())
        .collect();
    let message = b"frostnode state machine test";
    let mut rng = rand::rngs::OsRng;
    let mut nonces = BTreeMap::new();
    let mut commitments = BTreeMap::new();
    for o in &outs {
        let (n, c) = frost::round1::commit(o.key_package.signing_share(), &mut rng);
        nonces.insert(*o.key_package.identifier(), n);
        commitments.insert(*o.key_package.identifier(), c);
    }
    let package = frost::SigningPackage::new(commitments, message);
    let mut shares = BTreeMap::new();
    for o in &outs {
        let id = *o.key_package.identifier();
        let share = frost::round2::sign(&package, &nonces[&id], &o.key_package).unwrap();
        shares.insert(id, share);
    }
    let sig = frost::aggregate(&package, &shares, &outs[0].public_key_package).unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&outs[0].group_public_key).unwrap();
    let sig_bytes: [u8; 64] = sig.serialize().unwrap().try_into().unwrap();
    vk.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig_bytes))
        .expect("threshold signature verifies under the DKG group key");
}

#[test]
fn happy_path_for_two_to_seven_participants() {
    for n in 2..=7u16 {
        let t = (2 * n / 3 + 1).clamp(2, n);
        let mut bus = Bus::new(n, t);
        bus.run();
        bus.assert_all_agree();
        sign_and_verify(&bus, t);
    }
}

#[test]
fn duplicates_and_reordering_give_the_same_key() {
    for seed in 0..5u64 {
        let mut bus = Bus::new(5, 3);
        bus.shuffle = Some(StdRng::seed_from_u64(seed));
        bus.filter = Box::new(|_, _, _| Action::Duplicate);
        bus.run();
        bus.assert_all_agree();
        sign_and_verify(&bus, 3);
    }
}

#[test]
fn round2_before_round1_is_buffered() {
    // Deliver in reverse order of arrival: round-2 packages overtake round-1 packages.
    let mut bus = Bus::new(4, 3);
    bus.shuffle = Some(StdRng::seed_from_u64(99));
    bus.run();
    bus.assert_all_agree();
}

#[test]
fn dropped_sender_times_out_naming_it() {
    let mut bus = Bus::new(4, 3);
    bus.filter = Box::new(|from, _, _| {
        if from == 3 {
            Action::Drop
        } else {
            Action::Deliver
        }
    });
    bus.run();
    assert!(bus.outcomes.is_empty(), "nobody finishes without node 3");
    bus.expire();
    for (id, err) in bus.failures() {
        if id == 3 {
            continue;
        }
        match err {
            DkgError::Timeout { missing, .. } => assert_eq!(missing, vec![3], "node {id}"),
            DkgError::PeerAborted { .. } => {}
            other => panic!("node {id}: unexpected {other}"),
        }
    }
    // Node 1 and 2 both time out on their own clocks and name node 3.
    assert!(
        matches!(&bus.failures()[&1], DkgError::Timeout { missing, .. } if missing == &vec![3])
    );
}

#[test]
fn dropped_round2_share_times_out_naming_its_sender() {
    let mut bus = Bus::new(3, 2);
    bus.filter = Box::new(|from, to, body| match body {
        Body::DkgRound2 { .. } if from == 2 && to == 1 => Action::Drop,
        _ => Action::Deliver,
    });
    bus.run();
    assert!(!bus.outcomes.contains_key(&1));
    bus.expire();
    match &bus.failures()[&1] {
        DkgError::Timeout { missing, .. } => assert_eq!(missing, &vec![2]),
        other => panic!("unexpected {other}"),
    }
    assert!(
        bus.outcomes.values().all(|o| o.is_err()),
        "no node keeps a key"
    );
}

#[test]
fn equivocating_round1_sender_is_named() {
    let mut bus = Bus::new(4, 3);
    // Node 2 shows node 4 a different (well-formed) round-1 package than everyone else.
    let other = frost::keys::dkg::part1(
        frost::Identifier::try_from(2u16).unwrap(),
        4,
        3,
        rand::rngs::OsRng,
    )
    .unwrap()
    .1
    .serialize()
    .unwrap();
    bus.filter = Box::new(move |from, to, body| match body {
        Body::DkgRound1 { .. } if from == 2 && to == 4 => Action::Replace(Body::DkgRound1 {
            package: other.clone(),
        }),
        _ => Action::Deliver,
    });
    bus.run();
    let failures = bus.failures();
    assert_eq!(failures.len(), 4, "everyone aborts, nobody stores a key");
    for id in [1, 3, 4] {
        assert!(
            blamed(&failures[&id]).contains(&2),
            "node {id} blames node 2: {}",
            failures[&id]
        );
    }
}

#[test]
fn corrupted_round2_share_is_named() {
    let mut bus = Bus::new(4, 3);
    let bogus = frost::keys::dkg::round2::Package::new(
        frost::keys::SigningShare::deserialize(&[7u8; 32][..]).unwrap(),
    )
    .serialize()
    .unwrap();
    bus.filter = Box::new(move |from, to, body| match body {
        Body::DkgRound2 { .. } if from == 3 && to == 1 => Action::Replace(Body::DkgRound2 {
            package: SecretBytes(bogus.clone()),
        }),
        _ => Action::Deliver,
    });
    bus.run();
    bus.expire();
    let failures = bus.failures();
    assert_eq!(failures.len(), 4, "everyone aborts, nobody stores a key");
    assert_eq!(failures[&1], DkgError::InvalidSecretShare { culprit: 3 });
    // The others follow node 1's abort, or, when their confirmation was already out, wait for
    // node 1's confirmation (which never comes) until their deadline.
    for (id, e) in &failures {
        let waited = matches!(e, DkgError::Timeout { missing, .. } if missing == &vec![1]);
        assert!(
            blamed(e).contains(&3) || waited,
            "node {id} blames node 3: {e}"
        );
    }
}

#[test]
fn garbage_round1_package_is_named() {
    let mut bus = Bus::new(3, 2);
    bus.filter = Box::new(|from, _, body| match body {
        Body::DkgRound1 { .. } if from == 3 => Action::Replace(Body::DkgRound1 {
            package: vec![1, 2, 3],
        }),
        _ => Action::Deliver,
    });
    bus.run();
    let failures = bus.failures();
    assert!(matches!(
        failures[&1],
        DkgError::Malformed { culprit: 3, .. }
    ));
}

#[test]
fn wrong_session_stranger_and_self_are_rejected() {
    let mut bus = Bus::new(3, 2);
    let setup = bus.session;
    let contributions = bus.contributions.clone();
    let node = bus.nodes.get_mut(&1).unwrap();
    let rng = &mut StdRng::seed_from_u64(1);
    let other = SessionId([9; 32]);
    let abort = || Body::DkgAbort {
        reason: "x".into(),
        culprits: vec![],
    };
    let r = node.handle(Envelope::new(other, 2, abort()), rng);
    assert!(matches!(r, Err(Rejection::WrongSession { .. })));
    // Before `DkgBegin` no round message is valid under the setup id.
    let r = node.handle(
        Envelope::new(setup, 2, Body::DkgRound1 { package: vec![] }),
        rng,
    );
    assert!(matches!(r, Err(Rejection::WrongSession { .. })));
    let r = node.handle(Envelope::new(setup, 9, abort()), rng);
    assert_eq!(r.unwrap_err(), Rejection::NotParticipant(9));
    let r = node.handle(Envelope::new(setup, 1, abort()), rng);
    assert_eq!(r.unwrap_err(), Rejection::FromSelf);
    // DkgBegin from a non-initiator is refused.
    let begin = Body::DkgBegin { contributions };
    let r = node.handle(Envelope::new(setup, 2, begin), rng);
    assert!(matches!(r, Err(Rejection::Unexpected { from: 2, .. })));
    // The session was not disturbed.
    bus.run();
    bus.assert_all_agree();
}

/// A `DkgBegin` that does not carry a participant's own fresh contribution (a stale one from
/// an earlier session with the same setup id, or a forged one) is refused: the round id it
/// would fix could be one an earlier session used.
#[test]
fn a_begin_without_the_nodes_own_contribution_is_refused() {
    let mut bus = Bus::new(3, 2);
    let setup = bus.session;
    let mut stale = bus.contributions.clone();
    stale[1].1[0] ^= 1;
    let mut short = bus.contributions.clone();
    short.pop();
    let rng = &mut StdRng::seed_from_u64(2);
    let node = bus.nodes.get_mut(&2).unwrap();
    for contributions in [stale, short] {
        let r = node.handle(
            Envelope::new(setup, 1, Body::DkgBegin { contributions }),
            rng,
        );
        assert!(
            matches!(r, Err(Rejection::BadBegin { from: 1, .. })),
            "{r:?}"
        );
        assert_eq!(node.round_id(), None);
    }
    bus.run();
    bus.assert_all_agree();
}

/// A malicious initiator reuses an earlier session's setup id (or the nodes restarted and
/// forgot it) and replays an honest node's signed round-1 broadcast from that session. Before
/// round ids this made the honest node look like an equivocator; now the replay travels under
/// the earlier round id, which no participant of the new session accepts.
#[test]
fn a_round1_package_replayed_from_an_earlier_session_blames_no_one() {
    let setup = SessionId([5; 32]);
    let recorded = std::rc::Rc::new(std::cell::RefCell::new(None));
    let mut first = Bus::with(3, 2, setup, 1);
    let tap = recorded.clone();
    first.filter = Box::new(move |from, _, body| {
        if from == 2 && matches!(body, Body::DkgRound1 { .. }) {
            *tap.borrow_mut() = Some(body.clone());
        }
        Action::Deliver
    });
    first.run();
    first.assert_all_agree();
    let old_round = first.nodes[&2].round_id().unwrap();
    let replay = recorded.borrow().clone().unwrap();

    let mut second = Bus::with(3, 2, setup, 2);
    let injected = replay.clone();
    second.filter = Box::new(move |from, to, body| match body {
        Body::DkgRound1 { .. } if from == 2 && to == 3 => {
            Action::PrecedeUnder(old_round, injected.clone())
        }
        _ => Action::Deliver,
    });
    // Before node 3 has begun, too: the replay cannot reach the session.
    second.queue.push_back((2, 3, old_round, replay));
    second.run();
    let gpk = second.assert_all_agree();
    assert_ne!(gpk, first.assert_all_agree());
    assert_ne!(second.nodes[&3].round_id(), Some(old_round));
    assert_eq!(second.rejections.len(), 2, "{:?}", second.rejections);
    for (node, rejection) in &second.rejections {
        assert_eq!(*node, 3);
        assert!(
            matches!(rejection, Rejection::WrongSession { got, .. } if *got == old_round),
            "{rejection:?}"
        );
    }
}

/// A participant that signs a confirmation of another result (and never of ours) is named at
/// the deadline for what it signed, not merely as missing.
#[test]
fn a_signed_confirmation_of_another_result_names_its_signer() {
    let mut bus = Bus::new(3, 2);
    // Node 1 gets nothing from node 3 but what the test sends below.
    bus.filter = Box::new(|from, to, body| match body {
        Body::DkgConfirm(_) if from == 3 && to == 1 => Action::Drop,
        Body::DkgCertificate(_) if to == 1 => Action::Drop,
        _ => Action::Deliver,
    });
    bus.run();
    assert!(bus.nodes[&1].is_confirmed() && !bus.nodes[&1].is_finished());
    let round = bus.nodes[&1].round_id().unwrap();
    let signer = NodeKeys::new(bus.keys[&3].clone(), BTreeMap::new());
    let mut other = frostnode::wire::Confirmation {
        transcript: [1; 32],
        group_public_key: [2; 32],
        public_key_package_hash: [3; 32],
        signature: vec![],
    };
    other.signature = frostnode::dkg::ConfirmationKeys::sign(
        &signer,
        &frostnode::dkg::confirmation_message(&round, &other),
    )
    .unwrap();
    let rng = &mut StdRng::seed_from_u64(3);
    let env = Envelope::new(round, 3, Body::DkgConfirm(other));
    assert!(bus
        .nodes
        .get_mut(&1)
        .unwrap()
        .handle(env, rng)
        .unwrap()
        .is_empty());
    bus.expire();
    match &bus.outcomes[&1] {
        Err(DkgError::ConfirmationMismatch { culprits }) => assert_eq!(culprits, &vec![3]),
        other => panic!("expected node 3 named, got {:?}", other.as_ref().err()),
    }
    // Without the forged confirmation the same silence is a timeout naming no culprit.
    let mut quiet = Bus::new(3, 2);
    quiet.filter = Box::new(|from, to, body| match body {
        Body::DkgConfirm(_) if from == 3 && to == 1 => Action::Drop,
        Body::DkgCertificate(_) if to == 1 => Action::Drop,
        _ => Action::Deliver,
    });
    quiet.run();
    quiet.expire();
    assert!(matches!(
        &quiet.outcomes[&1],
        Err(DkgError::Timeout { missing, .. }) if missing == &vec![3]
    ));
}

#[test]
fn forged_confirmation_signature_aborts_naming_sender() {
    let mut bus = Bus::new(3, 2);
    bus.filter = Box::new(|from, _, body| match body {
        Body::DkgConfirm(c) if from == 2 => {
            let mut c = c.clone();
            c.signature[0] ^= 1;
            Action::Replace(Body::DkgConfirm(c))
        }
        // Its certificate would hold its genuine confirmation.
        Body::DkgCertificate(_) if from == 2 => Action::Drop,
        _ => Action::Deliver,
    });
    bus.run();
    bus.expire();
    // The honest nodes never store the key; the forger's own outcome does not matter. A node
    // that had not confirmed yet aborts naming the forger; one whose confirmation was out
    // refuses the forgery and waits, then times out naming the forger as missing.
    let failures = bus.failures();
    for id in [1, 3] {
        match &failures[&id] {
            DkgError::InvalidConfirmation { culprit: 2 } => {}
            DkgError::Timeout { missing, .. } => {
                assert_eq!(missing, &vec![2]);
                assert!(bus
                    .rejections
                    .iter()
                    .any(|(to, r)| *to == id
                        && matches!(r, Rejection::BadConfirmation { from: 2, .. })));
            }
            other => panic!("node {id}: {other}"),
        }
    }
}

#[test]
fn a_withheld_confirmation_completes_through_a_certificate() {
    for n in [3u16, 5, 7] {
        let mut bus = Bus::new(n, 2);
        // Node n shows its confirmation to node n-1 only and sends no certificate.
        bus.filter = Box::new(move |from, to, body| match body {
            Body::DkgConfirm(_) if from == n && to != n - 1 => Action::Drop,
            Body::DkgCertificate(_) if from == n => Action::Drop,
            _ => Action::Deliver,
        });
        bus.run();
        let gpk = bus.assert_all_agree();
        sign_and_verify(&bus, 2);
        assert_ne!(gpk, [0; 32]);
    }
}

#[test]
fn after_confirming_a_node_ignores_aborts_and_refuses_forged_certificates() {
    let mut bus = Bus::new(5, 3);
    // Node 5 withholds its confirmation from node 1 and, once node 1 has confirmed, sends it
    // an abort; node 4's certificate reaches node 1 first with one signature forged, then
    // genuine (nodes 2 and 3 send node 1 none).
    bus.filter = Box::new(|from, to, body| match body {
        Body::DkgConfirm(_) if from == 5 && to == 1 => Action::Drop,
        Body::DkgCertificate(_) if from == 5 && to == 1 => Action::Replace(Body::DkgAbort {
            reason: "made up".into(),
            culprits: vec![2],
        }),
        Body::DkgCertificate(list) if from == 4 && to == 1 => {
            let mut list = list.clone();
            list[1].1.signature[3] ^= 1;
            Action::Precede(Body::DkgCertificate(list))
        }
        Body::DkgCertificate(_) if to == 1 && (from == 2 || from == 3) => Action::Drop,
        _ => Action::Deliver,
    });
    bus.run();
    bus.assert_all_agree();
    assert!(bus
        .rejections
        .iter()
        .any(|(to, r)| *to == 1 && matches!(r, Rejection::BadCertificate { from: 4, .. })));
}

#[test]
fn a_certificate_that_proves_nothing_is_refused() {
    let mut bus = Bus::new(3, 2);
    // Node 3's certificate reaches node 1 with node 2's entry missing, or out of order.
    bus.filter = Box::new(|from, to, body| match body {
        Body::DkgConfirm(_) if from == 3 && to == 1 => Action::Drop,
        Body::DkgCertificate(list) if from == 3 && to == 1 => {
            let mut list = list.clone();
            list.reverse();
            Action::Replace(Body::DkgCertificate(list))
        }
        Body::DkgCertificate(_) if from == 2 && to == 1 => Action::Drop,
        _ => Action::Deliver,
    });
    bus.run();
    bus.expire();
    match &bus.failures()[&1] {
        DkgError::Timeout { missing, .. } => assert_eq!(missing, &vec![3]),
        other => panic!("node 1: {other}"),
    }
    assert!(bus
        .rejections
        .iter()
        .any(|(to, r)| *to == 1 && matches!(r, Rejection::BadCertificate { from: 3, .. })));
}

#[test]
fn invalid_parameters_are_refused() {
    let params = |participants: Vec<NodeId>, threshold| DkgParams {
        session: SessionId([0; 32]),
        key_id: "k".into(),
        participants,
        threshold,
        initiator: 1,
        refresh: None,
        repair: None,
        reshare: None,
    };
    assert!(params(vec![1, 2, 3], 1).validate().is_err());
    assert!(params(vec![1, 2, 3], 4).validate().is_err());
    assert!(params(vec![1], 1).validate().is_err());
    assert!(params(vec![1, 1, 2], 2).validate().is_err());
    assert!(params(vec![1, 2, 3], 3).validate().is_ok());
}

#[test]
fn round1_package_with_wrong_threshold_is_named() {
    let mut bus = Bus::new(4, 3);
    // Node 4 commits to a polynomial of the wrong degree (threshold 2 instead of 3).
    let wrong = frost::keys::dkg::part1(
        frost::Identifier::try_from(4u16).unwrap(),
        4,
        2,
        rand::rngs::OsRng,
    )
    .unwrap()
    .1
    .serialize()
    .unwrap();
    bus.filter = Box::new(move |from, _, body| match body {
        Body::DkgRound1 { .. } if from == 4 => Action::Replace(Body::DkgRound1 {
            package: wrong.clone(),
        }),
        _ => Action::Deliver,
    });
    bus.run();
    let failures = bus.failures();
    for id in [1, 2, 3] {
        assert!(
            blamed(&failures[&id]).contains(&4),
            "node {id}: {}",
            failures[&id]
        );
    }
}

#[test]
fn after_confirming_a_late_conflicting_round1_or_echo_changes_nothing() {
    let mut bus = Bus::new(4, 3);
    // Node 4 withholds its confirmation from node 1 and, in place of its certificate, sends
    // node 1 a second round-1 package and a garbled echo (once node 1 has confirmed); node 1
    // must neither abort nor blame anyone, and completes with the others' certificates.
    bus.filter = Box::new(|from, to, body| match body {
        Body::DkgConfirm(_) if from == 4 && to == 1 => Action::Drop,
        Body::DkgCertificate(_) if from == 4 && to == 1 => Action::Replace(Body::DkgRound1 {
            package: vec![9; 40],
        }),
        Body::DkgCertificate(_) if from == 3 && to == 1 => Action::Precede(Body::DkgEcho {
            round1_hashes: vec![(1, [0; 32])],
        }),
        _ => Action::Deliver,
    });
    bus.run();
    bus.assert_all_agree();
}

#[test]
fn a_certificate_after_the_deadline_still_completes_a_confirmed_node() {
    use std::sync::{Arc as StdArc, Mutex};
    let held: StdArc<Mutex<Option<Body>>> = StdArc::default();
    let keep = held.clone();
    let mut bus = Bus::new(4, 3);
    // Node 4 withholds its confirmation from node 1, and every certificate to node 1 is held
    // back until node 1's deadline has passed.
    bus.filter = Box::new(move |from, to, body| match body {
        Body::DkgConfirm(_) if from == 4 && to == 1 => Action::Drop,
        Body::DkgCertificate(_) if to == 1 => {
            if from == 2 {
                *keep.lock().unwrap() = Some(body.clone());
            }
            Action::Drop
        }
        _ => Action::Deliver,
    });
    bus.run();
    bus.expire();
    assert!(
        matches!(bus.failures()[&1], DkgError::Timeout { .. }),
        "node 1 timed out"
    );
    let node1 = bus.nodes.get_mut(&1).unwrap();
    assert!(node1.can_complete_late());
    // A certificate that does not verify changes nothing; the genuine one completes the key.
    let Some(Body::DkgCertificate(list)) = held.lock().unwrap().clone() else {
        panic!("node 2 sent a certificate");
    };
    let mut forged = list.clone();
    forged[3].1.signature[0] ^= 1;
    assert!(node1.late_certificate(2, forged).is_err());
    assert!(node1.can_complete_late());
    let effects = node1.late_certificate(2, list).unwrap();
    let completed = effects.iter().find_map(|e| match e {
        Effect::Completed(out) => Some(out.group_public_key),
        _ => None,
    });
    let others = bus.outcomes[&2].as_ref().unwrap().group_public_key;
    assert_eq!(completed, Some(others), "the same key as the others");
}

/// A node that lost a sender's round-1 package asks for it (`pulls`), and the sender's answer
/// (`pulled`) completes the DKG through the normal intake; nobody hands out another node's
/// share or answers strangers.
#[test]
fn a_lost_message_is_pulled_from_its_sender() {
    let mut bus = Bus::new(4, 3);
    bus.filter = Box::new(|from, to, body| match body {
        Body::DkgRound1 { .. } if from == 3 && to == 1 => Action::Drop,
        _ => Action::Deliver,
    });
    bus.run();
    assert!(bus.outcomes.is_empty(), "everyone waits for node 1");
    assert_eq!(
        bus.nodes[&1].pulls(),
        vec![(3, frostnode::wire::DkgStep::Round1)]
    );
    let answer = bus.nodes[&3]
        .pulled(frostnode::wire::DkgStep::Round1, 1)
        .expect("node 3 has its package");
    // Round-2 shares go to their recipient only; nothing goes to strangers or to oneself.
    assert!(bus.nodes[&3]
        .pulled(frostnode::wire::DkgStep::Round2, 9)
        .is_none());
    assert!(bus.nodes[&3]
        .pulled(frostnode::wire::DkgStep::Round1, 3)
        .is_none());
    assert!(
        bus.nodes[&2]
            .pulled(frostnode::wire::DkgStep::Begin, 1)
            .is_none(),
        "only the initiator answers for DkgBegin"
    );
    bus.filter = Box::new(|_, _, _| Action::Deliver);
    bus.enqueue(3, 1, answer);
    bus.run_queue();
    bus.assert_all_agree();
}

#[test]
fn arithmetic_done_after_the_session_ended_changes_nothing() {
    let mut bus = Bus::new(3, 2);
    bus.hold_work = true;
    bus.run();
    // Every node handed out the decoding of the others' round-1 packages and waits for it.
    assert!(bus.outcomes.is_empty());
    for id in 1..=3 {
        let decodes = bus
            .work
            .iter()
            .filter(|(node, w)| *node == id && w.kind() == "decode");
        assert_eq!(decodes.count(), 2, "node {id}");
        assert_eq!(bus.nodes[&id].phase(), frostnode::dkg::Phase::Round1);
    }
    bus.expire();
    for (id, outcome) in &bus.outcomes {
        assert!(
            matches!(outcome, Err(DkgError::Timeout { .. })),
            "node {id}: {outcome:?}"
        );
    }
    for (node, work) in std::mem::take(&mut bus.work) {
        let effects = bus.nodes.get_mut(&node).unwrap().computed(work.run());
        assert!(effects.is_empty(), "node {node}: {effects:?}");
        assert!(bus.nodes[&node].is_finished());
    }
}
