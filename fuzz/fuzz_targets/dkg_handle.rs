//! Arbitrary decoded envelopes into a DKG session, and pulls asked of it.
#![no_main]

use std::sync::Arc;
use std::time::{Duration, Instant};

use frostnode::dkg::{DkgParams, DkgSession};
use frostnode::identity::NodeKeys;
use frostnode::wire::SessionId;
use libfuzzer_sys::fuzz_target;
use libp2p::identity::Keypair;

fuzz_target!(|data: &[u8]| {
    let keys: Vec<Keypair> = (0..3).map(|_| Keypair::generate_ed25519()).collect();
    let peers = [(1u16, keys[0].public()), (3u16, keys[2].public())]
        .into_iter()
        .collect();
    let params = DkgParams {
        session: SessionId([3; 32]),
        key_id: "f".into(),
        participants: vec![1, 2, 3],
        threshold: 2,
        initiator: 1,
        refresh: None,
        repair: None,
        reshare: None,
    };
    let mut s = DkgSession::new(
        params,
        2,
        Arc::new(NodeKeys::new(keys[1].clone(), peers)),
        Instant::now() + Duration::from_secs(60),
    )
    .expect("valid parameters");
    // An odd first byte begins the session (as a valid `DkgBegin` would), so that round
    // messages reach it; envelopes of even length are put under the session's current id.
    let own = s.contribution(&mut rand::rngs::OsRng);
    if data.first().is_some_and(|b| b % 2 == 1) {
        let contributions = vec![(1, [1; 32]), (2, own), (3, [3; 32])];
        let effects = s
            .begin(&contributions, &mut rand::rngs::OsRng)
            .expect("own contribution begins");
        let _ = s.settle(effects);
    }
    // The input is a sequence of length-prefixed envelopes.
    let mut rest = data;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let (chunk, tail) = rest[2..].split_at(len);
        rest = tail;
        if let Ok(mut env) = frostnode::wire::decode(chunk, 1 << 20) {
            if len % 2 == 0 {
                env.session = s.wire_session();
            }
            if let frostnode::wire::Body::DkgPull { want } = env.body {
                // What the session would answer a participant that asks.
                let _ = s.pulled(want, env.from);
                let _ = s.pulls();
            }
            if let Ok(effects) = s.handle(env, &mut rand::rngs::OsRng) {
                // Arithmetic the message hands out (decoding, part2, part3) runs here.
                let _ = s.settle(effects);
            }
        }
    }
    let _ = s.on_timeout(Instant::now() + Duration::from_secs(61));
    assert!(s.is_finished());
});
