//! Client tokens: who may ask this node to sign or to create keys, checked against this node's
//! own list of clients.
//!
//! A client is an Ed25519 key that the node's operator lists, with the actions it may take
//! (`sign:payments`, `sign:treasury-*`, `keygen:*`, `*`) and an optional rate limit. Every
//! state-changing request carries a JWT (RFC 7519) that the client signed with `alg` `EdDSA`
//! (RFC 8037), whose claims name the client (`iss`), its lifetime (`iat`, `exp`, at most five
//! minutes), a unique id (`jti`), the action (`act`), the key (`key_id`) and, for a signature, the
//! hex SHA-256 of the message (`msg`); for a key generation, optionally the threshold and the
//! participants. [`Authorizer::verify`] checks a token against one concrete request: signature,
//! lifetime (with a small clock-skew allowance), the client's allow rules, that the token is
//! about *this* request, that its `jti` was not used for another request, and the rate limit.
//! Parsing and signature checks are `jsonwebtoken`'s; nothing here parses a token by hand.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::str::FromStr;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::wire::NodeId;

mod rules;

pub use rules::Rule;

/// Longest token lifetime accepted (`exp - iat`), in seconds.
pub const MAX_LIFETIME_SECS: u64 = 300;
/// Clock difference tolerated between a client and a node, in seconds.
pub const CLOCK_SKEW_SECS: u64 = 30;
/// Most token ids remembered at once (each for at most its lifetime).
pub const MAX_REMEMBERED: usize = 200_000;

/// What a token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Sign a message with a key.
    Sign,
    /// Generate a key.
    Keygen,
    /// Refresh a key's shares.
    Refresh,
    /// Add a node to a key.
    Enrol,
    /// Rebuild a node's lost share.
    Repair,
    /// Change a key's threshold and participants.
    Reshare,
}

impl Action {
    /// The claim value (`sign`, `keygen`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Sign => "sign",
            Action::Keygen => "keygen",
            Action::Refresh => "refresh",
            Action::Enrol => "enrol",
            Action::Repair => "repair",
            Action::Reshare => "reshare",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sign" => Ok(Action::Sign),
            "keygen" => Ok(Action::Keygen),
            "refresh" => Ok(Action::Refresh),
            "enrol" => Ok(Action::Enrol),
            "repair" => Ok(Action::Repair),
            "reshare" => Ok(Action::Reshare),
            other => Err(format!("unknown action {other:?}")),
        }
    }
}

/// The claims of a client token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The client's name, as the node's config lists it.
    pub iss: String,
    /// Issued at (seconds since the Unix epoch).
    pub iat: u64,
    /// Expires at (seconds since the Unix epoch), at most [`MAX_LIFETIME_SECS`] after `iat`.
    pub exp: u64,
    /// Unique per request.
    pub jti: String,
    /// The action.
    pub act: Action,
    /// The key acted on.
    pub key_id: String,
    /// For `sign`: lowercase hex SHA-256 of the message; for a batch, of the concatenation of
    /// the messages' SHA-256 digests, in order ([`MessageBinding`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg: Option<String>,
    /// For a batch `sign`: how many messages (absent for a single message, so a token for one
    /// message never passes for a batch whose digests concatenate to it, nor the reverse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u16>,
    /// For `keygen`: the threshold, when the client fixes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u16>,
    /// For `keygen`: the participants, when the client fixes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participants: Option<Vec<NodeId>>,
}

/// A client this node serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    /// Its name (the tokens' `iss`).
    pub name: String,
    /// Its Ed25519 public key.
    pub public_key: [u8; 32],
    /// What it may do.
    pub allow: Vec<Rule>,
    /// Most requests per minute on this node, if limited.
    pub max_per_minute: Option<u32>,
}

/// The request a token must be about.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The action asked for.
    pub act: Action,
    /// The key.
    pub key_id: &'a str,
    /// For signatures: SHA-256 of the message, or the batch digest ([`MessageBinding`]).
    pub message_hash: Option<[u8; 32]>,
    /// For a batch of signatures: how many messages.
    pub batch: Option<u16>,
    /// For key generation: the threshold the DKG runs with.
    pub threshold: Option<u16>,
    /// For key generation: the participants the DKG runs with.
    pub participants: Option<&'a [NodeId]>,
    /// What one use of a token is bound to (the request id): checking the same token again for
    /// the same request is not a replay.
    pub binding: [u8; 32],
}

impl<'a> Request<'a> {
    /// Signatures of the messages `message` binds with `key_id`, for the request `binding`
    /// (its request id).
    pub fn sign(key_id: &'a str, message: MessageBinding, binding: [u8; 32]) -> Self {
        Request {
            act: Action::Sign,
            key_id,
            message_hash: Some(message.digest),
            batch: message.batch,
            threshold: None,
            participants: None,
            binding,
        }
    }
}

/// What a signing token binds of the messages: SHA-256 of a single message; for a batch of
/// several, SHA-256 of the concatenation of the messages' SHA-256 digests, in order, and their
/// number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageBinding {
    /// The `msg` claim's value.
    pub digest: [u8; 32],
    /// The `batch` claim's value: the number of messages of a batch of more than one.
    pub batch: Option<u16>,
}

impl MessageBinding {
    /// The binding of `messages` (one message, or a batch).
    pub fn of(messages: &[impl AsRef<[u8]>]) -> Self {
        use sha2::{Digest, Sha256};
        match messages {
            [one] => MessageBinding {
                digest: Sha256::digest(one.as_ref()).into(),
                batch: None,
            },
            many => {
                let mut outer = Sha256::new();
                for m in many {
                    outer.update(Sha256::digest(m.as_ref()));
                }
                MessageBinding {
                    digest: outer.finalize().into(),
                    batch: Some(u16::try_from(many.len()).unwrap_or(u16::MAX)),
                }
            }
        }
    }
}

/// A token that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The client.
    pub client: String,
    /// The token's id.
    pub jti: String,
    /// When it expires.
    pub exp: u64,
}

/// Why a token was refused. [`AuthError::is_authentication`] separates "who are you?" (401)
/// from "not allowed" (403).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Not a well-formed EdDSA JWT with the expected claims.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The `iss` is not a client of this node.
    #[error("unknown client {0:?}")]
    UnknownClient(String),
    /// The signature does not verify under the client's key.
    #[error("token of client {0:?} has an invalid signature")]
    BadSignature(String),
    /// Past `exp`.
    #[error("token expired at {exp} (now {now})")]
    Expired {
        /// Expiry.
        exp: u64,
        /// Now.
        now: u64,
    },
    /// `iat` in the future.
    #[error("token issued in the future ({iat}, now {now})")]
    NotYetValid {
        /// Issued at.
        iat: u64,
        /// Now.
        now: u64,
    },
    /// `exp - iat` too long, or negative.
    #[error("token lifetime must be between 0 and {MAX_LIFETIME_SECS} s")]
    Lifetime,
    /// The token is for another action.
    #[error("token is for {token}, not {request}")]
    WrongAction {
        /// In the token.
        token: Action,
        /// Asked for.
        request: Action,
    },
    /// The token is for another key.
    #[error("token is for key {token:?}, not {request:?}")]
    WrongKey {
        /// In the token.
        token: String,
        /// Asked for.
        request: String,
    },
    /// The token is for another message.
    #[error("token is for another message")]
    WrongMessage,
    /// The token fixes another threshold or participant set.
    #[error("token fixes other DKG parameters")]
    WrongParameters,
    /// A reshare token that does not fix the new threshold and participants (a reshare can
    /// lower a key's threshold: a token allows one reshare, not any).
    #[error("a reshare token must fix the new threshold and participants")]
    UnboundReshare,
    /// The client's rules do not allow this.
    #[error("client {client:?} may not {act} key {key_id:?} on this node")]
    NotAllowed {
        /// The client.
        client: String,
        /// The action.
        act: Action,
        /// The key.
        key_id: String,
    },
    /// The `jti` was used for another request.
    #[error("token {0:?} was already used for another request")]
    Replayed(String),
    /// The client is over its rate limit on this node.
    #[error("client {0:?} is over its rate limit on this node")]
    RateLimited(String),
    /// Too many tokens are live to remember another.
    #[error("too many live tokens; try again shortly")]
    Busy,
}

impl AuthError {
    /// Whether the token fails to say who sent it (401), rather than asking for something
    /// that is not allowed (403).
    pub fn is_authentication(&self) -> bool {
        matches!(
            self,
            AuthError::Malformed(_)
                | AuthError::UnknownClient(_)
                | AuthError::BadSignature(_)
                | AuthError::Expired { .. }
                | AuthError::NotYetValid { .. }
                | AuthError::Lifetime
        )
    }
}

/// A token bucket: `capacity` requests, refilled at `capacity` per minute.
#[derive(Clone, Debug)]
struct Bucket {
    capacity: f64,
    tokens: f64,
    at: u64,
}

impl Bucket {
    fn new(per_minute: u32, now: u64) -> Self {
        Bucket {
            capacity: f64::from(per_minute),
            tokens: f64::from(per_minute),
            at: now,
        }
    }

    fn take(&mut self, now: u64) -> bool {
        let elapsed = now.saturating_sub(self.at) as f64;
        self.tokens = (self.tokens + elapsed * self.capacity / 60.0).min(self.capacity);
        self.at = self.at.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Known {
    client: Client,
    key: DecodingKey,
    bucket: Option<Bucket>,
}

/// What a token id is bound to: the request it was first used for, and the SHA-256 of the
/// token this node verified (the same id in other bytes is another token: a replay).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Bound {
    binding: [u8; 32],
    token: [u8; 32],
}

/// Token ids in use, each bound to the request it was first used for, until it expires.
#[derive(Default)]
struct Replays {
    bound: HashMap<(String, String), Bound>,
    expiries: BinaryHeap<Reverse<(u64, String, String)>>,
}

impl Replays {
    fn forget_expired(&mut self, now: u64) {
        while let Some(Reverse((exp, _, _))) = self.expiries.peek() {
            if exp.saturating_add(CLOCK_SKEW_SECS) >= now {
                break;
            }
            if let Some(Reverse((_, iss, jti))) = self.expiries.pop() {
                self.bound.remove(&(iss, jti));
            }
        }
    }
}

/// Checks client tokens against this node's clients; remembers used token ids and rates.
pub struct Authorizer {
    clients: HashMap<String, Known>,
    replays: Replays,
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorizer")
            .field("clients", &self.clients.keys().collect::<Vec<_>>())
            .field("remembered", &self.replays.bound.len())
            .finish()
    }
}

impl Authorizer {
    /// Replaces the clients served (a config reload); tokens already seen stay remembered, so
    /// none can be replayed across the reload.
    pub fn set_clients(&mut self, clients: Vec<Client>) {
        let replays = std::mem::take(&mut self.replays);
        *self = Authorizer::new(clients);
        self.replays = replays;
    }

    /// An authorizer for `clients`.
    pub fn new(clients: Vec<Client>) -> Self {
        let clients = clients
            .into_iter()
            .map(|c| {
                let key = DecodingKey::from_ed_der(&c.public_key);
                let known = Known {
                    client: c,
                    key,
                    bucket: None,
                };
                (known.client.name.clone(), known)
            })
            .collect();
        Authorizer {
            clients,
            replays: Replays::default(),
        }
    }

    /// Token ids remembered now.
    pub fn remembered(&self) -> usize {
        self.replays.bound.len()
    }

    /// Checks `token` for `request` at `now` (seconds since the Unix epoch). A first use of a
    /// token id binds it to `request.binding` and counts against the client's rate limit;
    /// checking it again for the same binding (the signer checks before committing and before
    /// signing) costs nothing more.
    pub fn verify(
        &mut self,
        token: &str,
        now: u64,
        request: &Request<'_>,
    ) -> Result<Verified, AuthError> {
        self.replays.forget_expired(now);
        let malformed = |e: jsonwebtoken::errors::Error| AuthError::Malformed(e.to_string());
        // The issuer picks the key; the claims are trusted only once that key verified them.
        let unverified: Claims = jsonwebtoken::dangerous::insecure_decode(token)
            .map_err(malformed)?
            .claims;
        let known = self
            .clients
            .get_mut(&unverified.iss)
            .ok_or_else(|| AuthError::UnknownClient(unverified.iss.clone()))?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let id = (unverified.iss.clone(), unverified.jti.clone());
        // A token whose exact bytes this node already verified for this request (the signer
        // checks before committing and again before signing) needs no second signature check.
        let seen = self
            .replays
            .bound
            .get(&id)
            .is_some_and(|b| b.binding == request.binding && b.token == digest);
        let claims = if seen {
            unverified
        } else {
            let mut validation = Validation::new(Algorithm::EdDSA);
            validation.required_spec_claims.clear();
            validation.validate_exp = false;
            validation.validate_aud = false;
            match jsonwebtoken::decode::<Claims>(token, &known.key, &validation) {
                Ok(data) => data.claims,
                Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) => {
                    return Err(AuthError::BadSignature(unverified.iss));
                }
                Err(e) => return Err(malformed(e)),
            }
        };
        check_time(&claims, now)?;
        check_request(&claims, request)?;
        let client = &known.client;
        if !client
            .allow
            .iter()
            .any(|r| r.allows(request.act, request.key_id))
        {
            return Err(AuthError::NotAllowed {
                client: client.name.clone(),
                act: request.act,
                key_id: request.key_id.to_string(),
            });
        }
        match self.replays.bound.get(&id) {
            Some(b) if b.binding == request.binding && b.token == digest => {}
            Some(_) => return Err(AuthError::Replayed(claims.jti)),
            None => {
                if self.replays.bound.len() >= MAX_REMEMBERED {
                    return Err(AuthError::Busy);
                }
                if let Some(per_minute) = client.max_per_minute {
                    let bucket = known
                        .bucket
                        .get_or_insert_with(|| Bucket::new(per_minute, now));
                    if !bucket.take(now) {
                        return Err(AuthError::RateLimited(claims.iss));
                    }
                }
                self.replays.bound.insert(
                    id,
                    Bound {
                        binding: request.binding,
                        token: digest,
                    },
                );
                self.replays.expiries.push(Reverse((
                    claims.exp,
                    claims.iss.clone(),
                    claims.jti.clone(),
                )));
            }
        }
        Ok(Verified {
            client: claims.iss,
            jti: claims.jti,
            exp: claims.exp,
        })
    }
}

fn check_time(claims: &Claims, now: u64) -> Result<(), AuthError> {
    if claims.exp < claims.iat || claims.exp - claims.iat > MAX_LIFETIME_SECS {
        return Err(AuthError::Lifetime);
    }
    if claims.iat > now.saturating_add(CLOCK_SKEW_SECS) {
        return Err(AuthError::NotYetValid {
            iat: claims.iat,
            now,
        });
    }
    if claims.exp.saturating_add(CLOCK_SKEW_SECS) < now {
        return Err(AuthError::Expired {
            exp: claims.exp,
            now,
        });
    }
    Ok(())
}

fn check_request(claims: &Claims, request: &Request<'_>) -> Result<(), AuthError> {
    if claims.act != request.act {
        return Err(AuthError::WrongAction {
            token: claims.act,
            request: request.act,
        });
    }
    if claims.key_id != request.key_id {
        return Err(AuthError::WrongKey {
            token: claims.key_id.clone(),
            request: request.key_id.to_string(),
        });
    }
    if let Some(hash) = request.message_hash {
        if claims.msg.as_deref() != Some(hex::encode(hash).as_str())
            || claims.batch != request.batch
        {
            return Err(AuthError::WrongMessage);
        }
    }
    if claims.act == Action::Reshare
        && (claims.threshold.is_none() || claims.participants.is_none())
    {
        return Err(AuthError::UnboundReshare);
    }
    if claims
        .threshold
        .is_some_and(|t| Some(t) != request.threshold)
    {
        return Err(AuthError::WrongParameters);
    }
    if let Some(fixed) = &claims.participants {
        let mut fixed = fixed.clone();
        fixed.sort_unstable();
        let mut actual = request.participants.map(<[NodeId]>::to_vec);
        if let Some(a) = actual.as_mut() {
            a.sort_unstable();
        }
        if actual.as_ref() != Some(&fixed) {
            return Err(AuthError::WrongParameters);
        }
    }
    Ok(())
}

/// Signs `claims` with a client's key: the token a client sends (used by the CLI and tests).
pub fn mint(key: &ed25519_dalek::SigningKey, claims: &Claims) -> Result<String, AuthError> {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let der = key
        .to_pkcs8_der()
        .map_err(|e| AuthError::Malformed(e.to_string()))?;
    let encoding = EncodingKey::from_ed_der(der.as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, &encoding)
        .map_err(|e| AuthError::Malformed(e.to_string()))
}
