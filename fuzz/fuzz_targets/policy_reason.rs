//! Arbitrary output of a policy command: never a panic; the quoted reason is bounded and
//! printable.
#![no_main]

use frostnode::policy::reason_from_output;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(reason) = reason_from_output(data) {
        assert!(reason.chars().count() <= 200);
        assert!(!reason.chars().any(char::is_control));
        assert!(!reason.trim().is_empty());
    }
});
