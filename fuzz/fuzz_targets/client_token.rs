//! Arbitrary bytes as a client token: never a panic, never a pass.
#![no_main]

use frostnode::auth::{Action, Authorizer, Client, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
    let mut a = Authorizer::new(vec![Client {
        name: "c".into(),
        public_key: key.verifying_key().to_bytes(),
        allow: vec!["*".parse().expect("rule")],
        max_per_minute: Some(10),
    }]);
    let token = String::from_utf8_lossy(data);
    let request = Request {
        act: Action::Sign,
        key_id: "k",
        message_hash: Some([0; 32]),
        batch: None,
        threshold: None,
        participants: None,
        binding: [0; 32],
    };
    assert!(a.verify(&token, 1_800_000_000, &request).is_err());
});
