//! Arbitrary bytes as a batch of preprocessed commitments into a coordinator's book, and as a
//! one-round signing request (nonce number, run, signing package) into a signer's pools.
#![no_main]

use std::time::Instant;

use frost_ed25519 as frost;
use frostnode::signing::participant::{sign_with_nonces, ShareRef};
use frostnode::signing::presign::{CommitmentBook, NoncePools};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let mut rng = rand::rngs::OsRng;
    // A batch: chunks of (8-byte number, 1-byte length, bytes).
    let mut batch = Vec::new();
    let mut rest = data;
    while rest.len() >= 9 && batch.len() < 300 {
        let seq = u64::from_le_bytes(rest[..8].try_into().unwrap());
        let len = usize::from(rest[8]).min(rest.len() - 9);
        batch.push((seq, rest[9..9 + len].to_vec()));
        rest = &rest[9 + len..];
    }
    let mut book = CommitmentBook::new();
    let boot = [data.first().copied().unwrap_or(0); 16];
    if book.add(now, 2, boot, &batch).is_err() {
        assert_eq!(book.stocked(2), 0);
    }
    while book.take(now, 2).is_some() {}
    // A signer's pools, and a package from the fuzzer.
    let (shares, _) =
        frost::keys::generate_with_dealer(3, 2, frost::keys::IdentifierList::Default, &mut rng)
            .expect("dealer");
    let key = frost::keys::KeyPackage::try_from(
        shares[&frost::Identifier::try_from(1u16).unwrap()].clone(),
    )
    .unwrap();
    let mut pools = NoncePools::new([1; 16], 4, 1);
    pools.refill(now, 2, &mut rng);
    let seq = u64::from(data.get(1).copied().unwrap_or(0) % 6);
    if let Ok((nonces, commitments)) = pools.take(now, 2, boot, seq) {
        if let Ok(package) = frost::SigningPackage::deserialize(rest) {
            let share = ShareRef {
                key: &key,
                participants: &[1, 2, 3],
            };
            let _ = sign_with_nonces(&nonces, commitments, &package, share);
        }
        assert!(pools.take(now, 2, boot, seq).is_err(), "a nonce twice");
    }
});
