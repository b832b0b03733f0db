//! A signing request's body as the API reads it (`{"message"}` or `{"messages": [...]}`),
//! then a batch's decoding and its token binding: never a panic, at most 256 messages
//! accepted, and a refusal that names the first message that is not hex.
#![no_main]

use frostnode::api::{decode_batch, SignRequest};
use frostnode::auth::MessageBinding;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = serde_json::from_slice::<SignRequest>(data) else {
        return;
    };
    let Some(messages) = req.messages else {
        return;
    };
    match decode_batch(&messages) {
        Ok(decoded) => {
            assert!(!decoded.is_empty() && decoded.len() <= 256);
            assert_eq!(decoded.len(), messages.len());
            let binding = MessageBinding::of(&decoded);
            assert_eq!(binding.batch.is_some(), decoded.len() > 1);
        }
        Err(reason) => {
            if let Some(bad) = messages.iter().position(|m| hex::decode(m.trim()).is_err()) {
                if (1..=256).contains(&messages.len()) {
                    assert!(reason.contains(&format!("message {bad} ")), "{reason}");
                }
            }
        }
    }
});
