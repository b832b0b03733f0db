//! What the CLI's client commands do: talk JSON to a node's HTTP API (with a client token when
//! one is given), make client keys and tokens, and check signatures offline.

use std::time::Duration;

use serde_json::Value;

/// Calls a node's API; a non-2xx answer becomes `Err("<status>: <error message>")`.
pub async fn http(
    method: reqwest::Method,
    api: &str,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> Result<Value, String> {
    let url = format!("{}{path}", api.trim_end_matches('/'));
    let client = reqwest::Client::new();
    let mut req = client
        .request(method, &url)
        .timeout(Duration::from_secs(120));
    if let Some(b) = body {
        req = req.json(&b);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
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

/// Writes a new client private key (PKCS#8 PEM, mode 0600) to `path`, which must not exist;
/// returns the public key, hex, for the nodes' `[[clients]]`.
pub fn write_client_key(path: &std::path::Path) -> Result<String, String> {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    if path.exists() {
        return Err(format!("{} exists; not overwriting a key", path.display()));
    }
    let key = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let pem = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| format!("cannot encode the key: {e}"))?;
    crate::securefile::write_private_atomic(path, pem.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(hex::encode(key.verifying_key().to_bytes()))
}

/// Reads a client private key written by [`write_client_key`] (or `openssl genpkey -algorithm
/// ed25519`).
pub fn load_client_key(path: &std::path::Path) -> Result<ed25519_dalek::SigningKey, String> {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    let pem = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read client key {}: {e}", path.display()))?;
    ed25519_dalek::SigningKey::from_pkcs8_pem(&pem)
        .map_err(|e| format!("{} is not an Ed25519 PKCS#8 key: {e}", path.display()))
}

/// Posts `body` to `path` on the node at `api` with a fresh token for `what`, signed by the
/// client key at `client_key` under the name `client`; returns the node's JSON answer.
pub async fn post_authorized(
    api: &str,
    path: &str,
    body: Value,
    (client_key, client): (&std::path::Path, &str),
    what: TokenFor,
) -> Result<Value, String> {
    let key = load_client_key(client_key)?;
    let token = make_token(&key, client, what, 120)?;
    http(reqwest::Method::POST, api, path, Some(body), Some(&token)).await
}

/// What a token is for.
#[derive(Clone, Debug)]
pub enum TokenFor {
    /// Signing `messages` (one, or a batch) with `key_id`.
    Sign {
        /// The key.
        key_id: String,
        /// The message, or the batch's messages in order.
        messages: Vec<Vec<u8>>,
    },
    /// Generating `key_id`, optionally fixing the threshold and participants.
    Keygen {
        /// The key.
        key_id: String,
        /// The threshold, if fixed.
        threshold: Option<u16>,
        /// The participants, if fixed.
        participants: Option<Vec<crate::wire::NodeId>>,
    },
    /// Repairing (`enrol: false`) or enrolling `node` in `key_id`.
    Repair {
        /// The key.
        key_id: String,
        /// The node whose share is rebuilt or made.
        node: crate::wire::NodeId,
        /// A new participant.
        enrol: bool,
    },
    /// Refreshing `key_id`, optionally fixing who holds the new shares.
    Refresh {
        /// The key.
        key_id: String,
        /// The participants, if fixed.
        participants: Option<Vec<crate::wire::NodeId>>,
    },
    /// Resharing `key_id` to `threshold` and `participants`.
    Reshare {
        /// The key.
        key_id: String,
        /// The new threshold.
        threshold: u16,
        /// The new participants.
        participants: Vec<crate::wire::NodeId>,
    },
}

/// A fresh token from `client` (signed with `key`) for one request, valid for `ttl_secs`.
pub fn make_token(
    key: &ed25519_dalek::SigningKey,
    client: &str,
    what: TokenFor,
    ttl_secs: u64,
) -> Result<String, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let jti = hex::encode(rand::random::<[u8; 16]>());
    let mut batch = None;
    let (act, key_id, msg, threshold, participants) = match what {
        TokenFor::Sign { key_id, messages } => {
            let binding = crate::auth::MessageBinding::of(&messages);
            batch = binding.batch;
            (
                crate::auth::Action::Sign,
                key_id,
                Some(hex::encode(binding.digest)),
                None,
                None,
            )
        }
        TokenFor::Keygen {
            key_id,
            threshold,
            participants,
        } => (
            crate::auth::Action::Keygen,
            key_id,
            None,
            threshold,
            participants,
        ),
        TokenFor::Repair {
            key_id,
            node,
            enrol,
        } => (
            if enrol {
                crate::auth::Action::Enrol
            } else {
                crate::auth::Action::Repair
            },
            key_id,
            None,
            None,
            Some(vec![node]),
        ),
        TokenFor::Refresh {
            key_id,
            participants,
        } => (
            crate::auth::Action::Refresh,
            key_id,
            None,
            None,
            participants,
        ),
        TokenFor::Reshare {
            key_id,
            threshold,
            participants,
        } => (
            crate::auth::Action::Reshare,
            key_id,
            None,
            Some(threshold),
            Some(participants),
        ),
    };
    let claims = crate::auth::Claims {
        iss: client.to_string(),
        iat: now,
        exp: now + ttl_secs.min(crate::auth::MAX_LIFETIME_SECS),
        jti,
        act,
        key_id,
        msg,
        batch,
        threshold,
        participants,
    };
    crate::auth::mint(key, &claims).map_err(|e| e.to_string())
}

/// A client's name and private key: what mints its tokens.
#[derive(Clone)]
pub struct ClientKey {
    /// The name the nodes list it under (the tokens' `iss`).
    pub name: String,
    key: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKey")
            .field("name", &self.name)
            .field("public_key", &self.public_key_hex())
            .finish_non_exhaustive()
    }
}

impl ClientKey {
    /// The client `name` with `key`.
    pub fn new(name: impl Into<String>, key: ed25519_dalek::SigningKey) -> Self {
        ClientKey {
            name: name.into(),
            key,
        }
    }

    /// Reads `path` (PKCS#8 PEM) if it exists; otherwise writes a new key there (mode 0600).
    pub fn load_or_create(name: &str, path: &std::path::Path) -> Result<Self, String> {
        if !path.exists() {
            write_client_key(path)?;
        }
        Ok(ClientKey::new(name, load_client_key(path)?))
    }

    /// Its public key, hex, as `[[clients]]` lists it.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    /// This client as a node lists it, allowed `allow` (rules such as `"*"`, `"sign:pay*"`).
    pub fn listed(&self, allow: &[&str]) -> crate::auth::Client {
        crate::auth::Client {
            name: self.name.clone(),
            public_key: self.key.verifying_key().to_bytes(),
            allow: allow
                .iter()
                .map(|r| r.parse().expect("valid allow rule"))
                .collect(),
            max_per_minute: None,
        }
    }

    /// A fresh token for one request, valid for two minutes.
    pub fn token(&self, what: TokenFor) -> String {
        make_token(&self.key, &self.name, what, 120).expect("an Ed25519 key signs any claims")
    }

    /// A fresh token to sign `message` with `key_id`.
    pub fn sign_token(&self, key_id: &str, message: &[u8]) -> String {
        self.token(TokenFor::Sign {
            key_id: key_id.into(),
            messages: vec![message.to_vec()],
        })
    }

    /// A fresh token to sign the batch `messages` with `key_id`.
    pub fn batch_token(&self, key_id: &str, messages: &[Vec<u8>]) -> String {
        self.token(TokenFor::Sign {
            key_id: key_id.into(),
            messages: messages.to_vec(),
        })
    }

    /// A fresh token to repair (or, with `enrol`, enrol) `node` in `key_id`.
    pub fn repair_token(&self, key_id: &str, node: crate::wire::NodeId, enrol: bool) -> String {
        self.token(TokenFor::Repair {
            key_id: key_id.into(),
            node,
            enrol,
        })
    }

    /// A fresh token to refresh `key_id` (for exactly `participants` when given).
    pub fn refresh_token(
        &self,
        key_id: &str,
        participants: Option<Vec<crate::wire::NodeId>>,
    ) -> String {
        self.token(TokenFor::Refresh {
            key_id: key_id.into(),
            participants,
        })
    }

    /// A fresh token to reshare `key_id` to `threshold` and `participants`.
    pub fn reshare_token(
        &self,
        key_id: &str,
        threshold: u16,
        participants: Vec<crate::wire::NodeId>,
    ) -> String {
        self.token(TokenFor::Reshare {
            key_id: key_id.into(),
            threshold,
            participants,
        })
    }

    /// A fresh token to generate `key_id` (with exactly `threshold` and `participants` when
    /// given).
    pub fn keygen_token(
        &self,
        key_id: &str,
        threshold: Option<u16>,
        participants: Option<Vec<crate::wire::NodeId>>,
    ) -> String {
        self.token(TokenFor::Keygen {
            key_id: key_id.into(),
            threshold,
            participants,
        })
    }
}
