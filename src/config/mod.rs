//! Node configuration: the TOML file an operator writes, parsed and validated into a [`Config`].
//!
//! Every validation error names the offending field (`peers[2].peer_id`), so a bad file fails
//! at start with a message that says what to fix.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};

use crate::wire::NodeId;

mod raw;

pub use raw::{
    RawApi, RawClient, RawConfig, RawGossip, RawKeystore, RawLimits, RawPeer, RawTimeouts,
    DEFAULT_MAX_IN_FLIGHT, DEFAULT_PEER_REQUESTS_PER_SECOND, DEFAULT_PRESIGN_PER_COORDINATOR,
};

/// Default maximum size of one network message (a batch of 256 signatures of a 3-of-n key
/// takes about 100 KiB; one of a 30-of-n key most of this).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1024 * 1024;
/// Default time a whole DKG may take.
pub const DEFAULT_DKG_TIMEOUT_MS: u64 = 30_000;
/// Default time a coordinator may take for one signature.
/// (Its third, the time a coordinator waits for a silent signer, is above the policy command's
/// default timeout, so a slow policy refuses instead of looking like a silent node.)
pub const DEFAULT_SIGN_TIMEOUT_MS: u64 = 8_000;
/// Default time one request may wait for its response (longer than a signature plus the
/// coordinator's own policy verdict, which it waits for before it starts).
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 12_000;

/// Errors reading or validating a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// File path.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config {path}: {message}")]
    Parse {
        /// File path.
        path: PathBuf,
        /// Parser message (names the line and field).
        message: String,
    },
    /// A field has a bad value.
    #[error("invalid config field `{field}`: {message}")]
    Field {
        /// Dotted field path, e.g. `peers[1].peer_id`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

fn parse_clients(raw: &[RawClient]) -> Result<Vec<crate::auth::Client>, ConfigError> {
    let mut names = BTreeSet::new();
    let mut clients = Vec::with_capacity(raw.len());
    for (i, c) in raw.iter().enumerate() {
        let at = |f: &str| format!("clients[{i}].{f}");
        let valid = |ch: char| ch.is_ascii_alphanumeric() || "_.-".contains(ch);
        if c.name.is_empty() || c.name.len() > 64 || !c.name.chars().all(valid) {
            return Err(field_err(
                at("name"),
                format!(
                    "must be 1-64 characters of [A-Za-z0-9_.-], got {:?}",
                    c.name
                ),
            ));
        }
        if !names.insert(c.name.clone()) {
            return Err(field_err(
                at("name"),
                format!("client {:?} is listed twice", c.name),
            ));
        }
        let public_key: [u8; 32] = hex::decode(c.public_key.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .filter(|b| ed25519_dalek::VerifyingKey::from_bytes(b).is_ok())
            .ok_or_else(|| {
                field_err(
                    at("public_key"),
                    "must be an Ed25519 public key, 64 hex characters",
                )
            })?;
        if c.allow.is_empty() {
            return Err(field_err(at("allow"), "must list at least one rule"));
        }
        let allow = c
            .allow
            .iter()
            .map(|r| r.parse())
            .collect::<Result<Vec<crate::auth::Rule>, String>>()
            .map_err(|e| field_err(at("allow"), e))?;
        if c.max_per_minute == Some(0) {
            return Err(field_err(at("max_per_minute"), "must be positive"));
        }
        clients.push(crate::auth::Client {
            name: c.name.clone(),
            public_key,
            allow,
            max_per_minute: c.max_per_minute,
        });
    }
    Ok(clients)
}

fn field_err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        field: field.into(),
        message: message.into(),
    }
}

/// Where the key store passphrase comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassphraseSource {
    /// Key files are stored unencrypted.
    None,
    /// An environment variable.
    Env(String),
    /// A file (its content, without a trailing newline).
    File(PathBuf),
    /// Already read (from the variable or file the config names, see
    /// [`Config::take_passphrase`]).
    Read(Passphrase),
}

/// A passphrase in memory: wiped when dropped, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Passphrase(zeroize::Zeroizing<Vec<u8>>);

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// A validated peer entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Node id.
    pub id: NodeId,
    /// libp2p identity.
    pub peer_id: PeerId,
    /// Dial address (without the `/p2p/` suffix).
    pub addr: Multiaddr,
}

/// A validated node configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// This node's id.
    pub id: NodeId,
    /// libp2p listen address.
    pub listen: Multiaddr,
    /// HTTP API address.
    pub api_listen: SocketAddr,
    /// Data directory (absolute, or relative to the working directory).
    pub data_dir: PathBuf,
    /// Identity key file; `None` means `data_dir/identity.key`.
    pub identity_file: Option<PathBuf>,
    /// Maximum size of one network message.
    pub max_message_size: usize,
    /// Whole-DKG deadline.
    pub dkg_timeout: Duration,
    /// Per-request deadline.
    pub request_timeout: Duration,
    /// Per-signature deadline at the coordinator.
    pub sign_timeout: Duration,
    /// Passphrase for key files at rest.
    pub passphrase: PassphraseSource,
    /// The other nodes, sorted by id.
    pub peers: Vec<Peer>,
    /// The clients this node serves.
    pub clients: Vec<crate::auth::Client>,
    /// `Host` values the API answers (empty: see [`RawApi::allowed_hosts`]).
    pub api_allowed_hosts: Vec<String>,
    /// Signing and key generation requests served at once.
    pub api_max_in_flight: usize,
    /// Token that reads (`/v1/status`, `/v1/keys`, `/metrics`) must carry, if set.
    pub api_read_token: Option<String>,
    /// The operator's policy command, asked about every signing request.
    pub policy: Option<crate::policy::PolicyCommand>,
    /// Requests per second one listed peer may send (`[limits] peer_requests_per_second`).
    pub peer_requests_per_second: u32,
    /// Nonces preprocessed per coordinator (`[limits] presign_per_coordinator`; 0: off).
    pub presign_per_coordinator: usize,
    /// GossipSub's send queues (`[gossip]`).
    pub gossip: crate::net::GossipSettings,
    /// Seal key files found in clear in a store with a passphrase, once (`run
    /// --seal-plaintext-keys`; not a file setting).
    pub seal_plaintext_keys: bool,
    /// The file this config was read from: a reload (`SIGHUP`, `POST /v1/reload`) reads it
    /// again.
    pub source: Option<PathBuf>,
}

impl Config {
    /// Reads and validates a config file; a relative `data_dir` is taken relative to the file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let raw: RawConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        let mut config = Config::from_raw(raw)?;
        config.source = Some(path.to_path_buf());
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        if config.data_dir.is_relative() {
            config.data_dir = base.join(&config.data_dir);
        }
        if let Some(f) = config.identity_file.as_mut() {
            if f.is_relative() {
                *f = base.join(&*f);
            }
        }
        if let PassphraseSource::File(f) = &mut config.passphrase {
            if f.is_relative() {
                *f = base.join(&*f);
            }
        }
        if let Some(p) = config.policy.as_mut() {
            p.resolve(base);
        }
        Ok(config)
    }

    /// Validates a parsed config.
    pub fn from_raw(raw: RawConfig) -> Result<Config, ConfigError> {
        let id = parse_id("id", raw.id)?;
        let listen: Multiaddr = raw
            .listen
            .parse()
            .map_err(|e| field_err("listen", format!("not a multiaddr ({e}): {:?}", raw.listen)))?;
        let api_listen: SocketAddr = raw.api_listen.parse().map_err(|e| {
            field_err(
                "api_listen",
                format!("not a socket address ({e}): {:?}", raw.api_listen),
            )
        })?;
        if raw.data_dir.as_os_str().is_empty() {
            return Err(field_err("data_dir", "must not be empty"));
        }
        if !(1024..=64 * 1024 * 1024).contains(&raw.max_message_size) {
            return Err(field_err(
                "max_message_size",
                "must be between 1024 and 67108864 bytes",
            ));
        }
        if raw.timeouts.dkg_ms == 0 {
            return Err(field_err("timeouts.dkg_ms", "must be positive"));
        }
        if raw.timeouts.request_ms == 0 {
            return Err(field_err("timeouts.request_ms", "must be positive"));
        }
        if raw.timeouts.sign_ms == 0 {
            return Err(field_err("timeouts.sign_ms", "must be positive"));
        }
        if raw.timeouts.sign_ms >= raw.timeouts.request_ms {
            return Err(field_err(
                "timeouts.sign_ms",
                "must be shorter than timeouts.request_ms (a forwarded request waits for the signature)",
            ));
        }
        let passphrase = match (&raw.keystore.passphrase_env, &raw.keystore.passphrase_file) {
            (Some(_), Some(_)) => {
                return Err(field_err(
                    "keystore",
                    "set passphrase_env or passphrase_file, not both",
                ))
            }
            (Some(v), None) if v.is_empty() => {
                return Err(field_err("keystore.passphrase_env", "must not be empty"))
            }
            (Some(v), None) => PassphraseSource::Env(v.clone()),
            (None, Some(f)) => PassphraseSource::File(f.clone()),
            (None, None) => PassphraseSource::None,
        };
        let mut seen_ids = BTreeSet::new();
        let mut seen_peer_ids = BTreeSet::new();
        let mut peers = Vec::with_capacity(raw.peers.len());
        for (i, p) in raw.peers.iter().enumerate() {
            let at = |f: &str| format!("peers[{i}].{f}");
            let pid = parse_id(&at("id"), p.id)?;
            if pid == id {
                return Err(field_err(
                    at("id"),
                    format!("{pid} is this node's own id; list only the other nodes"),
                ));
            }
            if !seen_ids.insert(pid) {
                return Err(field_err(at("id"), format!("duplicate peer id {pid}")));
            }
            let peer_id: PeerId = p.peer_id.parse().map_err(|e| {
                field_err(
                    at("peer_id"),
                    format!("not a PeerId ({e}): {:?}", p.peer_id),
                )
            })?;
            if !seen_peer_ids.insert(peer_id) {
                return Err(field_err(
                    at("peer_id"),
                    format!("PeerId {peer_id} is listed twice"),
                ));
            }
            let addr: Multiaddr = p.addr.parse().map_err(|e| {
                field_err(at("addr"), format!("not a multiaddr ({e}): {:?}", p.addr))
            })?;
            peers.push(Peer {
                id: pid,
                peer_id,
                addr,
            });
        }
        peers.sort_by_key(|p| p.id);
        let clients = parse_clients(&raw.clients)?;
        if raw.api.max_in_flight == 0 {
            return Err(field_err("api.max_in_flight", "must be positive"));
        }
        if usize::from(raw.limits.presign_per_coordinator) > crate::signing::presign::MAX_BATCH {
            return Err(field_err(
                "limits.presign_per_coordinator",
                "must be at most 256",
            ));
        }
        if !(1..=1_000_000).contains(&raw.limits.peer_requests_per_second) {
            return Err(field_err(
                "limits.peer_requests_per_second",
                "must be between 1 and 1000000",
            ));
        }
        if let Some(bad) = raw
            .api
            .allowed_hosts
            .iter()
            .find(|h| h.is_empty() || h.contains(char::is_whitespace) || h.contains('/'))
        {
            return Err(field_err(
                "api.allowed_hosts",
                format!("{bad:?} is not a host[:port]"),
            ));
        }
        let policy = parse_policy(raw.policy.as_ref(), &raw.timeouts)?;
        if raw
            .api
            .read_token
            .as_ref()
            .is_some_and(|t| t.len() < 16 || !t.is_ascii() || t.contains(char::is_whitespace))
        {
            return Err(field_err(
                "api.read_token",
                "must be at least 16 printable ASCII characters without spaces",
            ));
        }
        Ok(Config {
            id,
            listen,
            api_listen,
            data_dir: raw.data_dir,
            identity_file: raw.identity_file,
            max_message_size: raw.max_message_size,
            dkg_timeout: Duration::from_millis(raw.timeouts.dkg_ms),
            request_timeout: Duration::from_millis(raw.timeouts.request_ms),
            sign_timeout: Duration::from_millis(raw.timeouts.sign_ms),
            passphrase,
            peers,
            clients,
            api_allowed_hosts: raw
                .api
                .allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            api_max_in_flight: raw.api.max_in_flight,
            api_read_token: raw.api.read_token,
            policy,
            peer_requests_per_second: raw.limits.peer_requests_per_second,
            presign_per_coordinator: usize::from(raw.limits.presign_per_coordinator),
            gossip: raw.gossip.settings()?,
            seal_plaintext_keys: false,
            source: None,
        })
    }

    /// Reads the passphrase now and keeps it in memory only: an environment variable that held
    /// it is removed from the process environment (call this before any other thread runs, as
    /// `frostnode run` does before its runtime starts).
    pub fn take_passphrase(&mut self) -> Result<(), ConfigError> {
        if let Some(p) = self.read_passphrase()? {
            if let PassphraseSource::Env(var) = &self.passphrase {
                std::env::remove_var(var);
            }
            self.passphrase = PassphraseSource::Read(Passphrase(p));
        }
        Ok(())
    }

    /// Reads the key store passphrase, if one is configured. A passphrase file must be
    /// readable by its owner only.
    pub fn read_passphrase(&self) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, ConfigError> {
        let text = match &self.passphrase {
            PassphraseSource::None => return Ok(None),
            PassphraseSource::Read(p) => return Ok(Some(p.0.clone())),
            PassphraseSource::Env(var) => std::env::var(var).map_err(|_| {
                field_err(
                    "keystore.passphrase_env",
                    format!("environment variable {var} is not set"),
                )
            })?,
            PassphraseSource::File(path) => {
                if let Some(problem) = crate::securefile::exposed(path) {
                    return Err(field_err("keystore.passphrase_file", problem));
                }
                std::fs::read_to_string(path).map_err(|e| {
                    field_err(
                        "keystore.passphrase_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?
            }
        };
        let text = zeroize::Zeroizing::new(text);
        let pass = text.trim_end_matches(['\n', '\r']);
        if pass.is_empty() {
            return Err(field_err("keystore", "the passphrase is empty"));
        }
        Ok(Some(zeroize::Zeroizing::new(pass.as_bytes().to_vec())))
    }

    /// Where the identity key is read from.
    pub fn identity_path(&self) -> PathBuf {
        self.identity_file
            .clone()
            .unwrap_or_else(|| crate::identity::identity_path(&self.data_dir))
    }

    /// Every node id of the cluster, this node included, sorted.
    pub fn all_ids(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self.peers.iter().map(|p| p.id).collect();
        ids.push(self.id);
        ids.sort_unstable();
        ids
    }

    /// The peer entry with this node id.
    pub fn peer(&self, id: NodeId) -> Option<&Peer> {
        self.peers.iter().find(|p| p.id == id)
    }

    /// The node id configured for this PeerId.
    pub fn id_of(&self, peer_id: &PeerId) -> Option<NodeId> {
        self.peers
            .iter()
            .find(|p| &p.peer_id == peer_id)
            .map(|p| p.id)
    }
}

/// Room left for the network when a policy verdict must arrive before a deadline.
const POLICY_MARGIN_MS: u64 = 500;

fn parse_policy(
    raw: Option<&crate::policy::RawPolicy>,
    timeouts: &RawTimeouts,
) -> Result<Option<crate::policy::PolicyCommand>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    if raw.command.as_os_str().is_empty() {
        return Err(field_err("policy.command", "must not be empty"));
    }
    let replaced_after = timeouts.sign_ms / 3;
    if raw.timeout_ms == 0 || raw.timeout_ms + POLICY_MARGIN_MS > replaced_after {
        return Err(field_err(
            "policy.timeout_ms",
            format!(
                "must be positive and at most timeouts.sign_ms / 3 - {POLICY_MARGIN_MS} ({} ms): a coordinator replaces a signer that has not answered by sign_ms / 3",
                replaced_after.saturating_sub(POLICY_MARGIN_MS)
            ),
        ));
    }
    if timeouts.sign_ms + raw.timeout_ms + POLICY_MARGIN_MS > timeouts.request_ms {
        return Err(field_err(
            "policy.timeout_ms",
            format!(
                "timeouts.sign_ms + policy.timeout_ms + {POLICY_MARGIN_MS} must not exceed timeouts.request_ms ({} ms): a coordinator asks its own policy before the signature starts, and the node that forwarded the request waits request_ms",
                timeouts.request_ms
            ),
        ));
    }
    Ok(Some(crate::policy::PolicyCommand {
        program: raw.command.clone(),
        args: raw.args.clone(),
        timeout: Duration::from_millis(raw.timeout_ms),
    }))
}

fn parse_id(field: &str, v: u32) -> Result<NodeId, ConfigError> {
    match NodeId::try_from(v) {
        Ok(0) => Err(field_err(
            field,
            "node ids start at 1 (0 is not a valid FROST identifier)",
        )),
        Ok(id) => Ok(id),
        Err(_) => Err(field_err(
            field,
            format!("{v} is above the largest node id 65535"),
        )),
    }
}

#[cfg(test)]
mod tests;
