//! Arbitrary DKG result reports into an initiator whose own session confirmed the key: the
//! answer is the key, whatever participants (or strangers) report.
#![no_main]

use std::time::{Duration, Instant};

use frostnode::dkg::DkgParams;
use frostnode::keystore::KeyStore;
use frostnode::node::initiator::Initiations;
use frostnode::wire::{self, Body, SessionId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("frostnode-fuzz-{}", std::process::id()));
    let store = KeyStore::open(&dir).expect("key store");
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
    let mut inits = Initiations::default();
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    inits.insert(
        &params,
        1,
        [1; 32],
        tx,
        Instant::now() + Duration::from_secs(60),
    );
    // This node's own session failed on its own evidence against node 3.
    let own = frostnode::dkg::DkgError::InvalidSecretShare { culprit: 3 };
    inits.on_own_end(params.session, Err(own), &store);
    // The input is a sequence of length-prefixed envelopes carrying reports.
    let mut rest = data;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let (chunk, tail) = rest[2..].split_at(len);
        rest = tail;
        if let Ok(env) = wire::decode(chunk, 1 << 20) {
            if let Body::DkgResult(outcome) = env.body {
                inits.on_report(params.session, env.from, outcome, &store);
            }
        }
    }
    inits.on_timeout(params.session, &store);
    match rx.try_recv() {
        Ok(Err(frostnode::node::NodeError::Aborted { culprits, .. })) => {
            assert_eq!(
                culprits,
                vec![3],
                "only this node's evidence names culprits"
            )
        }
        other => panic!("expected the abort this node saw, got {other:?}"),
    }
});
