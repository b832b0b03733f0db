//! Arbitrary signing packages into a signer that committed.
#![no_main]

use std::time::Instant;

use frost_ed25519 as frost;
use frostnode::signing::participant::{Commit, ShareRef, Signer, Slot};
use frostnode::wire::SessionId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (shares, _) = frost::keys::generate_with_dealer(
        3,
        2,
        frost::keys::IdentifierList::Default,
        rand::rngs::OsRng,
    )
    .expect("dealer");
    let key = frost::keys::KeyPackage::try_from(shares.into_values().next().expect("a share"))
        .expect("key package");
    let mut signer = Signer::new();
    let now = Instant::now();
    let slot = Slot {
        coordinator: 2,
        session: SessionId([4; 32]),
        attempt: 0,
    };
    signer
        .commit(
            now,
            slot,
            Commit {
                key_id: "k",
                epoch: 0,
                messages: &[b"m".to_vec()],
                key: &key,
            },
            None,
            &mut rand::rngs::OsRng,
        )
        .expect("commit");
    let share = ShareRef {
        key: &key,
        participants: &[1, 2, 3],
    };
    let _ = signer.sign(now, slot, &[data.to_vec()], share);
    assert_eq!(
        signer.pending(),
        0,
        "nonces are consumed whatever the package"
    );
});
