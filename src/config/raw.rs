//! The config file's schema as written: TOML sections and their defaults, before validation
//! turns them into a [`super::Config`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{
    DEFAULT_DKG_TIMEOUT_MS, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_REQUEST_TIMEOUT_MS,
    DEFAULT_SIGN_TIMEOUT_MS,
};

/// The config file as written (strings, not yet validated).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// This node's id, `1..=65535`.
    pub id: u32,
    /// libp2p listen multiaddr, e.g. `/ip4/0.0.0.0/tcp/7000`.
    pub listen: String,
    /// HTTP API socket address, loopback by default.
    #[serde(default = "default_api_listen")]
    pub api_listen: String,
    /// Directory holding the identity key and the key store (relative to the config file).
    pub data_dir: PathBuf,
    /// The identity key file, if not `data_dir/identity.key` (relative to the config file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<PathBuf>,
    /// Maximum size of one network message in bytes.
    #[serde(default = "default_max_message_size")]
    pub max_message_size: usize,
    /// Timeouts.
    #[serde(default)]
    pub timeouts: RawTimeouts,
    /// Encryption of key files at rest.
    #[serde(default, skip_serializing_if = "RawKeystore::is_empty")]
    pub keystore: RawKeystore,
    /// HTTP API limits.
    #[serde(default, skip_serializing_if = "RawApi::is_default")]
    pub api: RawApi,
    /// Every other node of the cluster.
    #[serde(default)]
    pub peers: Vec<RawPeer>,
    /// The clients this node's operator accepts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<RawClient>,
    /// The operator's signing policy command, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<crate::policy::RawPolicy>,
    /// What one peer may ask of this node.
    #[serde(default, skip_serializing_if = "RawLimits::is_default")]
    pub limits: RawLimits,
    /// GossipSub's send queues.
    #[serde(default, skip_serializing_if = "RawGossip::is_default")]
    pub gossip: RawGossip,
}

/// `[gossip]` section: GossipSub's send queues (see [`crate::net::GossipSettings`] for what
/// each value does and why its default is what it is).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawGossip {
    /// Messages waiting on one connection.
    #[serde(default = "default_gossip_queue_len")]
    pub queue_len: usize,
    /// How long this node's own broadcast may wait on a connection, in milliseconds.
    #[serde(default = "default_gossip_publish_ms")]
    pub publish_timeout_ms: u64,
    /// How long a forwarded copy may wait on a connection, in milliseconds.
    #[serde(default = "default_gossip_forward_ms")]
    pub forward_timeout_ms: u64,
}

fn default_gossip_queue_len() -> usize {
    crate::net::GossipSettings::default().queue_len
}

fn default_gossip_publish_ms() -> u64 {
    crate::net::GossipSettings::default()
        .publish_timeout
        .as_millis() as u64
}

fn default_gossip_forward_ms() -> u64 {
    crate::net::GossipSettings::default()
        .forward_timeout
        .as_millis() as u64
}

impl Default for RawGossip {
    fn default() -> Self {
        RawGossip {
            queue_len: default_gossip_queue_len(),
            publish_timeout_ms: default_gossip_publish_ms(),
            forward_timeout_ms: default_gossip_forward_ms(),
        }
    }
}

impl RawGossip {
    fn is_default(&self) -> bool {
        *self == RawGossip::default()
    }

    /// The settings, checked: a queue of 16 to 1,000,000 messages, timeouts of 100 ms to 10 min.
    pub fn settings(&self) -> Result<crate::net::GossipSettings, super::ConfigError> {
        let bad = |field: &str, message: &str| super::ConfigError::Field {
            field: field.to_string(),
            message: message.to_string(),
        };
        if !(16..=1_000_000).contains(&self.queue_len) {
            return Err(bad("gossip.queue_len", "must be between 16 and 1000000"));
        }
        let timeout = |field: &str, ms: u64| {
            if (100..=600_000).contains(&ms) {
                Ok(std::time::Duration::from_millis(ms))
            } else {
                Err(bad(field, "must be between 100 and 600000 milliseconds"))
            }
        };
        Ok(crate::net::GossipSettings {
            queue_len: self.queue_len,
            publish_timeout: timeout("gossip.publish_timeout_ms", self.publish_timeout_ms)?,
            forward_timeout: timeout("gossip.forward_timeout_ms", self.forward_timeout_ms)?,
        })
    }
}

/// Default requests per second one listed peer may send (sustained; bursts of twice as many).
pub const DEFAULT_PEER_REQUESTS_PER_SECOND: u32 = 5_000;

/// `[limits]` section: what one peer may ask of this node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Requests per second one listed peer may send, sustained (a burst may be twice as many);
    /// the excess is refused unread. A signer serves a coordinator about two requests per
    /// signature, so the default leaves room for over 2,000 signatures a second per peer.
    #[serde(default = "default_peer_requests_per_second")]
    pub peer_requests_per_second: u32,
    /// Nonces this node commits to ahead of time for each coordinator (refilled when half are
    /// used), so that a signature takes one network round; 0 turns preprocessing off.
    #[serde(default = "default_presign_per_coordinator")]
    pub presign_per_coordinator: u16,
}

fn default_peer_requests_per_second() -> u32 {
    DEFAULT_PEER_REQUESTS_PER_SECOND
}

/// Default of `[limits] presign_per_coordinator`.
pub const DEFAULT_PRESIGN_PER_COORDINATOR: u16 = 32;

fn default_presign_per_coordinator() -> u16 {
    DEFAULT_PRESIGN_PER_COORDINATOR
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            peer_requests_per_second: DEFAULT_PEER_REQUESTS_PER_SECOND,
            presign_per_coordinator: DEFAULT_PRESIGN_PER_COORDINATOR,
        }
    }
}

impl RawLimits {
    fn is_default(&self) -> bool {
        *self == RawLimits::default()
    }
}

/// A `[[clients]]` entry: an application or operator key and what it may ask of this node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    /// The name its tokens carry as `iss`.
    pub name: String,
    /// Its Ed25519 public key, 64 hex characters.
    pub public_key: String,
    /// Allow rules: `action:key-pattern` (`sign:payments`, `sign:treasury-*`, `keygen:*`) or `*`.
    pub allow: Vec<String>,
    /// Most requests per minute on this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_minute: Option<u32>,
}

/// Timeouts section of the config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    /// Whole-DKG deadline in milliseconds.
    #[serde(default = "default_dkg_timeout")]
    pub dkg_ms: u64,
    /// Per-request deadline in milliseconds.
    #[serde(default = "default_request_timeout")]
    pub request_ms: u64,
    /// Per-signature deadline at the coordinator in milliseconds.
    #[serde(default = "default_sign_timeout")]
    pub sign_ms: u64,
}

impl Default for RawTimeouts {
    fn default() -> Self {
        Self {
            dkg_ms: DEFAULT_DKG_TIMEOUT_MS,
            request_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            sign_ms: DEFAULT_SIGN_TIMEOUT_MS,
        }
    }
}

/// Default number of signing and key generation requests the API serves at once.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// `[api]` section: limits of the HTTP API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    /// `Host` header values the API answers (e.g. `"signer1.example:8080"`). Empty: the API
    /// address itself when it is on loopback (which defeats DNS rebinding), anything otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    /// Signing and key generation requests served at once; more get 429.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// If set, reads (`/v1/status`, `/v1/keys`, `/metrics`) need `Authorization: Bearer` with
    /// this value (for an API exposed beyond loopback). `/v1/health` stays open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_token: Option<String>,
}

fn default_max_in_flight() -> usize {
    DEFAULT_MAX_IN_FLIGHT
}

impl Default for RawApi {
    fn default() -> Self {
        RawApi {
            allowed_hosts: Vec::new(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            read_token: None,
        }
    }
}

impl RawApi {
    fn is_default(&self) -> bool {
        *self == RawApi::default()
    }
}

/// `[keystore]` section: where the passphrase that encrypts key files comes from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeystore {
    /// Name of an environment variable holding the passphrase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_env: Option<String>,
    /// A file holding the passphrase (relative to the config file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_file: Option<PathBuf>,
}

impl RawKeystore {
    fn is_empty(&self) -> bool {
        self.passphrase_env.is_none() && self.passphrase_file.is_none()
    }
}

/// One `[[peers]]` entry as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeer {
    /// The peer's node id.
    pub id: u32,
    /// The peer's libp2p PeerId (base58).
    pub peer_id: String,
    /// Where to dial it, e.g. `/ip4/10.0.0.2/tcp/7000` or `/dns4/node2/tcp/7000`.
    pub addr: String,
}

fn default_api_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_max_message_size() -> usize {
    DEFAULT_MAX_MESSAGE_SIZE
}
fn default_dkg_timeout() -> u64 {
    DEFAULT_DKG_TIMEOUT_MS
}
fn default_request_timeout() -> u64 {
    DEFAULT_REQUEST_TIMEOUT_MS
}
fn default_sign_timeout() -> u64 {
    DEFAULT_SIGN_TIMEOUT_MS
}
