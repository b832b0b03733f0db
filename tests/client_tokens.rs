//! Client tokens (EdDSA JWTs) checked against a node's own client list: what passes, what is
//! refused and why, replays, rate limits, and arbitrary input.

use ed25519_dalek::SigningKey;
use frostnode::auth::{
    mint, Action, AuthError, Authorizer, Claims, Client, Request, Rule, CLOCK_SKEW_SECS,
};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

const NOW: u64 = 1_800_000_000;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn client(name: &str, seed: u8, allow: &[&str], max_per_minute: Option<u32>) -> Client {
    Client {
        name: name.into(),
        public_key: key(seed).verifying_key().to_bytes(),
        allow: allow.iter().map(|r| r.parse().unwrap()).collect(),
        max_per_minute,
    }
}

fn authorizer() -> Authorizer {
    Authorizer::new(vec![
        client("payments", 1, &["sign:payments", "sign:treasury-*"], None),
        client("ops", 2, &["keygen:*"], Some(3)),
    ])
}

fn sign_claims(iss: &str, jti: &str, key_id: &str, message: &[u8]) -> Claims {
    Claims {
        iss: iss.into(),
        iat: NOW,
        exp: NOW + 120,
        jti: jti.into(),
        act: Action::Sign,
        key_id: key_id.into(),
        msg: Some(hex::encode(Sha256::digest(message))),
        batch: None,
        threshold: None,
        participants: None,
    }
}

fn sign_request<'a>(key_id: &'a str, message: &[u8], binding: u8) -> Request<'a> {
    Request {
        act: Action::Sign,
        key_id,
        message_hash: Some(Sha256::digest(message).into()),
        batch: None,
        threshold: None,
        participants: None,
        binding: [binding; 32],
    }
}

#[test]
fn a_valid_token_passes_and_may_be_checked_again_for_the_same_request() {
    let mut a = authorizer();
    let token = mint(
        &key(1),
        &sign_claims("payments", "t1", "payments", b"pay 1"),
    )
    .unwrap();
    let req = sign_request("payments", b"pay 1", 7);
    let v = a.verify(&token, NOW + 5, &req).unwrap();
    assert_eq!(v.client, "payments");
    // Before committing and again before signing: the same request, not a replay.
    a.verify(&token, NOW + 6, &req).unwrap();
    // Wildcard rules.
    let t2 = mint(&key(1), &sign_claims("payments", "t2", "treasury-eu", b"x")).unwrap();
    a.verify(&t2, NOW, &sign_request("treasury-eu", b"x", 8))
        .unwrap();
}

#[test]
fn every_mismatch_is_refused_with_its_reason() {
    let mut a = authorizer();
    let good = sign_claims("payments", "t", "payments", b"pay 1");
    let req = sign_request("payments", b"pay 1", 1);
    let refuse = |a: &mut Authorizer, claims: &Claims, signer: u8, req: &Request<'_>| {
        a.verify(&mint(&key(signer), claims).unwrap(), NOW, req)
            .unwrap_err()
    };
    // Signed by another key.
    assert!(matches!(
        refuse(&mut a, &good, 9, &req),
        AuthError::BadSignature(_)
    ));
    // A client this node does not know.
    let stranger = Claims {
        iss: "stranger".into(),
        ..good.clone()
    };
    assert!(matches!(
        refuse(&mut a, &stranger, 1, &req),
        AuthError::UnknownClient(_)
    ));
    // Another message, another key, another action.
    let other_msg = sign_request("payments", b"pay 1000", 1);
    assert_eq!(
        refuse(&mut a, &good, 1, &other_msg),
        AuthError::WrongMessage
    );
    let other_key = sign_request("treasury-eu", b"pay 1", 1);
    assert!(matches!(
        refuse(&mut a, &good, 1, &other_key),
        AuthError::WrongKey { .. }
    ));
    let keygen = Request {
        act: Action::Keygen,
        ..req
    };
    assert!(matches!(
        refuse(&mut a, &good, 1, &keygen),
        AuthError::WrongAction { .. }
    ));
    // Allowed elsewhere, not here: a key outside the client's rules.
    let vault = sign_claims("payments", "v", "vault", b"pay 1");
    let r = refuse(&mut a, &vault, 1, &sign_request("vault", b"pay 1", 1));
    assert!(matches!(r, AuthError::NotAllowed { .. }), "{r}");
    assert!(!r.is_authentication(), "not allowed is a 403");
    // Expired, from the future, too long-lived.
    let old = Claims {
        iat: NOW - 400,
        exp: NOW - 100,
        ..good.clone()
    };
    assert!(matches!(
        refuse(&mut a, &old, 1, &req),
        AuthError::Expired { .. }
    ));
    let future = Claims {
        iat: NOW + CLOCK_SKEW_SECS + 60,
        exp: NOW + CLOCK_SKEW_SECS + 120,
        ..good.clone()
    };
    assert!(matches!(
        refuse(&mut a, &future, 1, &req),
        AuthError::NotYetValid { .. }
    ));
    let long = Claims {
        exp: NOW + 3600,
        ..good.clone()
    };
    assert_eq!(refuse(&mut a, &long, 1, &req), AuthError::Lifetime);
    assert!(
        AuthError::Lifetime.is_authentication(),
        "bad tokens are a 401"
    );
    // Not a token at all.
    assert!(matches!(
        a.verify("not.a.token", NOW, &req).unwrap_err(),
        AuthError::Malformed(_)
    ));
}

#[test]
fn a_token_serves_one_request_only() {
    let mut a = authorizer();
    let token = mint(&key(1), &sign_claims("payments", "once", "payments", b"m")).unwrap();
    a.verify(&token, NOW, &sign_request("payments", b"m", 1))
        .unwrap();
    assert_eq!(
        a.verify(&token, NOW, &sign_request("payments", b"m", 2))
            .unwrap_err(),
        AuthError::Replayed("once".into())
    );
    // Another token under the same id, even for the same request, is another token: refused
    // (only the exact bytes verified before may be checked again without a signature check).
    let twin = Claims {
        exp: NOW + 100,
        ..sign_claims("payments", "once", "payments", b"m")
    };
    let twin = mint(&key(1), &twin).unwrap();
    assert_eq!(
        a.verify(&twin, NOW, &sign_request("payments", b"m", 1))
            .unwrap_err(),
        AuthError::Replayed("once".into())
    );
    // The bytes verified before, with their signature broken: a second check for the same
    // request must still see that they are not the bytes it verified.
    let mut forged = token.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert!(a
        .verify(&forged, NOW, &sign_request("payments", b"m", 1))
        .is_err());
    // Checked again with its request's binding, it still passes every other check: a
    // different message is refused even for the very bytes verified before.
    assert_eq!(
        a.verify(&token, NOW, &sign_request("payments", b"other", 1))
            .unwrap_err(),
        AuthError::WrongMessage
    );
    a.verify(&token, NOW, &sign_request("payments", b"m", 1))
        .unwrap();
    // Forgotten once it has expired (it could not be used then anyway).
    assert_eq!(a.remembered(), 1);
    let fresh = mint(&key(1), &sign_claims("payments", "later", "payments", b"m")).unwrap();
    let later = NOW + 120 + CLOCK_SKEW_SECS + 1;
    let _ = a.verify(&fresh, later, &sign_request("payments", b"m", 3));
    assert_eq!(a.remembered(), 0);
}

#[test]
fn keygen_tokens_bind_the_parameters_they_fix_and_rates_are_limited() {
    let mut a = authorizer();
    let claims = |jti: &str, threshold, participants| Claims {
        iss: "ops".into(),
        iat: NOW,
        exp: NOW + 60,
        jti: jti.into(),
        act: Action::Keygen,
        key_id: "new-key".into(),
        msg: None,
        batch: None,
        threshold,
        participants,
    };
    let req = |threshold, participants: &'static [u16], binding| Request {
        act: Action::Keygen,
        key_id: "new-key",
        message_hash: None,
        batch: None,
        threshold: Some(threshold),
        participants: Some(participants),
        binding: [binding; 32],
    };
    let fixed = mint(&key(2), &claims("k1", Some(3), Some(vec![3, 1, 2, 4]))).unwrap();
    a.verify(&fixed, NOW, &req(3, &[1, 2, 3, 4], 1)).unwrap();
    let fixed2 = mint(&key(2), &claims("k2", Some(3), Some(vec![1, 2, 3, 4]))).unwrap();
    assert_eq!(
        a.verify(&fixed2, NOW, &req(2, &[1, 2, 3, 4], 2))
            .unwrap_err(),
        AuthError::WrongParameters
    );
    let open = mint(&key(2), &claims("k3", None, None)).unwrap();
    a.verify(&open, NOW, &req(2, &[1, 2, 3], 3)).unwrap();
    // Three per minute: k1 and k3 used two; one more passes, the next is refused.
    let k4 = mint(&key(2), &claims("k4", None, None)).unwrap();
    a.verify(&k4, NOW, &req(2, &[1, 2, 3], 4)).unwrap();
    let k5 = mint(&key(2), &claims("k5", None, None)).unwrap();
    assert_eq!(
        a.verify(&k5, NOW, &req(2, &[1, 2, 3], 5)).unwrap_err(),
        AuthError::RateLimited("ops".into())
    );
    // A minute later the bucket has refilled.
    a.verify(&k5, NOW + 60, &req(2, &[1, 2, 3], 5)).unwrap();
}

#[test]
fn allow_rules_parse_and_match() {
    let rule = |s: &str| s.parse::<Rule>().unwrap();
    assert!(rule("*").allows(Action::Reshare, "anything"));
    assert!(rule("sign:treasury-*").allows(Action::Sign, "treasury-"));
    assert!(!rule("sign:treasury-*").allows(Action::Sign, "treasur"));
    assert!(!rule("sign:treasury-*").allows(Action::Keygen, "treasury-1"));
    assert!(rule("*:a*b*c").allows(Action::Keygen, "a-x-b-y-c"));
    assert!(!rule("*:a*b*c").allows(Action::Keygen, "a-c-b"));
    for bad in ["", "sign", "sign:", "bogus:x", "sign:a/b", "sign:ü"] {
        assert!(bad.parse::<Rule>().is_err(), "{bad:?}");
    }
    assert_eq!(rule("keygen:*").to_string(), "keygen:*");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_tokens_never_panic_or_pass(token in ".{0,300}") {
        let mut a = authorizer();
        prop_assert!(a.verify(&token, NOW, &sign_request("payments", b"m", 1)).is_err());
    }

    #[test]
    fn any_altered_token_is_refused(at in any::<usize>(), to in any::<u8>()) {
        let mut a = authorizer();
        let token = mint(&key(1), &sign_claims("payments", "p", "payments", b"m")).unwrap();
        let mut bytes = token.clone().into_bytes();
        let i = at % bytes.len();
        prop_assume!(bytes[i] != to);
        bytes[i] = to;
        let altered = String::from_utf8_lossy(&bytes).into_owned();
        prop_assume!(altered != token);
        prop_assert!(a.verify(&altered, NOW, &sign_request("payments", b"m", 1)).is_err());
    }

    #[test]
    fn globs_agree_with_a_reference_matcher(pattern in "[ab*]{1,6}", text in "[ab]{0,6}") {
        // Reference: a regular expression built from the pattern.
        let re = format!("^{}$", pattern.replace('*', ".*"));
        let expected = regex_lite_match(&re, &text);
        let rule: Rule = format!("sign:{pattern}").parse().unwrap();
        prop_assert_eq!(rule.allows(Action::Sign, &text), expected);
    }
}

/// A tiny backtracking matcher for `^…$` patterns over `a`, `b` and `.*`.
fn regex_lite_match(re: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match p {
            [] => t.is_empty(),
            [b'.', b'*', rest @ ..] => (0..=t.len()).any(|i| go(rest, &t[i..])),
            [c, rest @ ..] => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    let inner = &re[1..re.len() - 1];
    go(inner.as_bytes(), text.as_bytes())
}

/// The README's Python client, run as written: its tokens pass.
#[test]
fn the_readme_python_client_makes_tokens_that_pass() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("```python\n").expect("a python example") + "```python\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let script = format!(
        "{}\nkey = Ed25519PrivateKey.from_private_bytes(bytes([1] * 32))\nprint(token(key, 'payments', 'payments', b'pay 1'))\n",
        &readme[start..end]
    );
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("python3 (with the cryptography package) is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let v = authorizer()
        .verify(token.trim(), now, &sign_request("payments", b"pay 1", 1))
        .unwrap();
    assert_eq!(v.client, "payments");
}

#[test]
fn reshare_tokens_must_fix_the_new_threshold_and_participants() {
    let mut a = Authorizer::new(vec![client("ops", 2, &["reshare:*"], None)]);
    let claims = |jti: &str, threshold, participants| Claims {
        iss: "ops".into(),
        iat: NOW,
        exp: NOW + 60,
        jti: jti.into(),
        act: Action::Reshare,
        key_id: "k".into(),
        msg: None,
        batch: None,
        threshold,
        participants,
    };
    let req = |binding| Request {
        act: Action::Reshare,
        key_id: "k",
        message_hash: None,
        batch: None,
        threshold: Some(2),
        participants: Some(&[1, 2, 3]),
        binding: [binding; 32],
    };
    for (i, (t, p)) in [(None, None), (Some(2), None), (None, Some(vec![1, 2, 3]))]
        .into_iter()
        .enumerate()
    {
        let open = mint(&key(2), &claims(&format!("r{i}"), t, p)).unwrap();
        assert_eq!(
            a.verify(&open, NOW, &req(i as u8)).unwrap_err(),
            AuthError::UnboundReshare
        );
    }
    let other = mint(&key(2), &claims("r8", Some(3), Some(vec![1, 2, 3]))).unwrap();
    assert_eq!(
        a.verify(&other, NOW, &req(8)).unwrap_err(),
        AuthError::WrongParameters
    );
    let fixed = mint(&key(2), &claims("r9", Some(2), Some(vec![3, 2, 1]))).unwrap();
    a.verify(&fixed, NOW, &req(9)).unwrap();
}
