//! The envelope's encoding: round trips, refusals of bad input, redacted secrets.

use super::*;

fn sample() -> Envelope {
    Envelope::new(
        SessionId([7; 32]),
        3,
        Body::DkgStart(DkgStart {
            key_id: "k1".into(),
            participants: vec![1, 2, 3],
            threshold: 2,
            token: None,
            refresh: None,
            repair: None,
            reshare: None,
        }),
    )
}

#[test]
fn round_trip() {
    let bytes = encode(&sample()).unwrap();
    assert_eq!(decode(&bytes, 1024).unwrap(), sample());
}

#[test]
fn rejects_oversized_truncated_trailing_and_wrong_version() {
    let bytes = encode(&sample()).unwrap();
    assert!(matches!(
        decode(&bytes, bytes.len() - 1),
        Err(WireError::TooLarge { .. })
    ));
    assert!(matches!(
        decode(&bytes[..bytes.len() - 2], 1024),
        Err(WireError::Malformed(_))
    ));
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(decode(&long, 1024), Err(WireError::Trailing(1)));
    let mut v2 = bytes.clone();
    v2[0] = 2;
    assert_eq!(decode(&v2, 1024), Err(WireError::UnsupportedVersion(2)));
    assert!(matches!(decode(&[], 1024), Err(WireError::Malformed(_))));
}

#[test]
fn huge_length_prefix_does_not_allocate_or_panic() {
    // version, session (32 bytes), from, body tag DkgRound1, then a length prefix claiming ~2^60 bytes.
    let mut bytes = vec![WIRE_VERSION];
    bytes.extend_from_slice(&[0; 32]);
    bytes.push(1);
    bytes.push(2);
    bytes.extend_from_slice(&[0xff, 0, 0, 0, 0, 0, 0, 0, 0x10]);
    assert!(decode(&bytes, 1024).is_err());
}

#[test]
fn secrets_are_redacted_in_debug() {
    let body = Body::DkgRound2 {
        package: SecretBytes(vec![0xab; 40]),
    };
    let text = format!("{body:?}");
    assert!(!text.contains("171"), "{text}");
    assert!(text.contains("redacted"));
}
