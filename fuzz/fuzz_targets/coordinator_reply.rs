//! Arbitrary replies into a signing coordinator.
#![no_main]

use std::time::{Duration, Instant};

use frost_ed25519 as frost;
use frostnode::signing::coordinator::{Coordinator, SignParams};
use frostnode::wire::SessionId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (_, public) = frost::keys::generate_with_dealer(
        5,
        3,
        frost::keys::IdentifierList::Default,
        rand::rngs::OsRng,
    )
    .expect("dealer");
    let gpk = public
        .verifying_key()
        .serialize()
        .expect("key")
        .try_into()
        .expect("32 bytes");
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
    let (mut c, _) = Coordinator::start(
        params,
        vec![1, 2, 3, 4, 5],
        now,
        Duration::from_secs(1),
        now + Duration::from_secs(5),
    );
    let mut rest = data;
    while rest.len() >= 3 {
        let from = u16::from(rest[0] % 6);
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let (chunk, tail) = rest[3..].split_at(len);
        rest = tail;
        if let Ok(env) = frostnode::wire::decode(chunk, 1 << 20) {
            let _ = c.on_reply(now, from, env.body);
        }
    }
    let _ = c.on_timeout(now + Duration::from_secs(6));
    assert!(c.is_finished());
});
