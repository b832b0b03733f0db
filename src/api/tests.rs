//! The API's own tests: error bodies, and batch decoding and binding as properties.

use super::*;
use crate::node::MAX_BATCH;
use proptest::prelude::*;

proptest! {
    /// A batch decodes whole, or is refused naming its first message that is not hex.
    #[test]
    fn batches_decode_whole_or_name_the_first_bad_message(
        messages in prop::collection::vec(prop_oneof![
            "[0-9a-f]{0,8}".prop_map(|s| if s.len() % 2 == 1 { format!("{s}0") } else { s }),
            ".{0,6}",
        ], 0..300)
    ) {
        let first_bad = messages.iter().position(|m| hex::decode(m.trim()).is_err());
        match decode_batch(&messages) {
            Ok(decoded) => {
                prop_assert!(first_bad.is_none());
                prop_assert!((1..=MAX_BATCH).contains(&decoded.len()));
                for (d, m) in decoded.iter().zip(&messages) {
                    prop_assert_eq!(&hex::encode(d), m.trim());
                }
            }
            Err(reason) if messages.is_empty() || messages.len() > MAX_BATCH => {
                prop_assert!(reason.contains("empty") || reason.contains("limit"), "{}", reason);
            }
            Err(reason) => {
                let bad = first_bad.expect("refused for a bad message");
                let named = format!("message {bad} is not hex");
                prop_assert!(reason.contains(&named), "{}", reason);
            }
        }
    }

    /// A batch's token binding depends on every message and their order, and never equals
    /// a single message's.
    #[test]
    fn the_batch_binding_covers_order_and_count(
        a in prop::collection::vec(any::<u8>(), 0..40),
        b in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        use crate::auth::MessageBinding;
        let ab = MessageBinding::of(&[a.clone(), b.clone()]);
        prop_assert_eq!(ab.batch, Some(2));
        if a != b {
            prop_assert_ne!(ab, MessageBinding::of(&[b.clone(), a.clone()]));
        }
        prop_assert_ne!(ab, MessageBinding::of(&[a.clone(), b.clone(), a.clone()]));
        let concatenated: Vec<u8> = {
            use sha2::{Digest, Sha256};
            [Sha256::digest(&a), Sha256::digest(&b)].concat()
        };
        let single = MessageBinding::of(&[concatenated]);
        prop_assert_eq!(single.digest, ab.digest, "the digest alone would collide");
        prop_assert_ne!(single, ab, "the count does not");
    }
}

#[tokio::test]
async fn abort_errors_carry_culprits_and_reports_apart() {
    let err = NodeError::Aborted {
        message: "DKG failed".into(),
        kind: crate::wire::ErrorKind::DkgFailed,
        culprits: vec![],
        reported_by: BTreeMap::from([(2, vec![3])]),
    };
    let resp = ApiError::from(err).into_response();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["kind"], "dkg_failed");
    assert_eq!(v["reported_by"], json!({ "2": [3] }));
    assert!(v.get("culprits").is_none(), "{v}");
}
