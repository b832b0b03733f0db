//! Arbitrary bytes into the envelope decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = frostnode::wire::decode(data, 1 << 20) {
        // Whatever decodes must encode again.
        let _ = frostnode::wire::encode(&env).expect("a decoded envelope re-encodes");
    }
});
