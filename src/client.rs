//! What the CLI's client commands do: talk JSON to a node's HTTP API, and check signatures
//! offline.

use std::time::Duration;

use serde_json::Value;

/// Calls a node's API; a non-2xx answer becomes `Err("<status>: <error message>")`.
pub async fn http(
    method: reqwest::Method,
    api: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let url = format!("{}{path}", api.trim_end_matches('/'));
    let client = reqwest::Client::new();
    let mut req = client
        .request(method, &url)
        .timeout(Duration::from_secs(120));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    let status = resp.status();
    let v: Value = resp
        .json()
        .await
        .map_err(|e| format!("{url} answered {status} with a body that is not JSON: {e}"))?;
    if status.is_success() {
        Ok(v)
    } else {
        let msg = v
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown error");
        Err(format!("{status}: {msg}"))
    }
}

/// Decodes hex of exactly `N` bytes.
pub fn decode_hex<const N: usize>(what: &str, s: &str) -> Result<[u8; N], String> {
    let bytes = hex::decode(s.trim()).map_err(|e| format!("{what} is not hex: {e}"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("{what} must be {N} bytes, got {}", b.len()))
}

/// Strict Ed25519 verification (rejects non-canonical encodings and small-order keys).
pub fn verify(public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> Result<(), String> {
    let vk = ed25519_dalek::VerifyingKey::from_bytes(public_key)
        .map_err(|_| "public key is not a valid Ed25519 point".to_string())?;
    vk.verify_strict(message, &ed25519_dalek::Signature::from_bytes(signature))
        .map_err(|_| "signature is NOT valid for this key and message".to_string())
}

/// The same check with hex arguments, as `frostnode verify` takes them.
pub fn verify_hex(public_key: &str, message: &str, signature: &str) -> Result<(), String> {
    let pk = decode_hex::<32>("public key", public_key)?;
    let sig = decode_hex::<64>("signature", signature)?;
    let msg = hex::decode(message.trim()).map_err(|e| format!("message is not hex: {e}"))?;
    verify(&pk, &msg, &sig)
}

/// DER (SubjectPublicKeyInfo) form of an Ed25519 public key, as OpenSSL reads it.
pub fn ed25519_public_key_der(public_key: &[u8; 32]) -> Vec<u8> {
    const PREFIX: [u8; 12] = [
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    [&PREFIX[..], &public_key[..]].concat()
}
