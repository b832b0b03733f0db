//! The `frostnode` command line's grammar: every subcommand and its options (clap). The
//! binary parses it and dispatches; what each command does lives with the part of the crate
//! it drives.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::localnet;
use crate::wire::NodeId;

/// A key and one node of it, for `repair` and `enrol`.
#[derive(clap::Args)]
pub struct NodeOfKey {
    /// API URL of a node that holds the key (not the node repaired or enrolled).
    #[arg(long, default_value = "http://127.0.0.1:8001")]
    pub api: String,
    /// The key.
    #[arg(long)]
    pub key_id: String,
    /// The node whose share is rebuilt (repair) or made (enrol).
    #[arg(long)]
    pub node: NodeId,
    /// Client private key (PKCS#8 PEM) that signs the request's token.
    #[arg(long, env = "FROSTNODE_CLIENT_KEY")]
    pub client_key: PathBuf,
    /// Client name, as the nodes' `[[clients]]` list it.
    #[arg(long, env = "FROSTNODE_CLIENT", default_value = localnet::ADMIN_CLIENT)]
    pub client: String,
}

/// The `frostnode` command line.
#[derive(Parser)]
#[command(
    name = "frostnode",
    version,
    about = "Threshold Ed25519 (FROST) signing node with distributed key generation"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How the daemon logs.
#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Run the node daemon.
    Run {
        /// Config file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Log format.
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
        /// Seal key files found in clear (once, after configuring a passphrase for a store
        /// that had none); without it such a file stops the node.
        #[arg(long)]
        seal_plaintext_keys: bool,
        /// The config, read before the runtime starts.
        #[arg(skip)]
        prepared: Option<Box<Config>>,
    },
    /// Create the node identity in a data directory and print its PeerId.
    Init {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Write identities and configs for a cluster of N nodes.
    ClusterConfig {
        /// Number of nodes.
        #[arg(long)]
        nodes: u16,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Address the nodes listen on and dial.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Node k uses libp2p port BASE+k and API port BASE+1000+k.
        #[arg(long, default_value_t = 7000)]
        base_port: u16,
        /// Write configs for the docker-compose cluster instead.
        #[arg(long)]
        docker: bool,
    },
    /// Ask a node to run a DKG for a new key.
    Keygen {
        /// Node API URL.
        #[arg(long, default_value = "http://127.0.0.1:8001")]
        api: String,
        /// Name of the key.
        #[arg(long)]
        key_id: String,
        /// Signing threshold (default floor(2n/3)+1).
        #[arg(long)]
        threshold: Option<u16>,
        /// Participant ids, comma separated (default: every node).
        #[arg(long, value_delimiter = ',')]
        participants: Option<Vec<NodeId>>,
        /// Client private key (PKCS#8 PEM) that signs the request's token (`cluster-config`
        /// writes one: DIR/client.key).
        #[arg(long, env = "FROSTNODE_CLIENT_KEY")]
        client_key: PathBuf,
        /// Client name, as the nodes' `[[clients]]` list it.
        #[arg(long, env = "FROSTNODE_CLIENT", default_value = localnet::ADMIN_CLIENT)]
        client: String,
    },
    /// Ask a node to refresh a key: new shares of the same group key (the next epoch); with
    /// --participants, the members left out are removed from the key.
    Refresh {
        /// Node API URL.
        #[arg(long, default_value = "http://127.0.0.1:8001")]
        api: String,
        /// The key.
        #[arg(long)]
        key_id: String,
        /// Who holds the new shares, comma separated (default: every current participant).
        #[arg(long, value_delimiter = ',')]
        participants: Option<Vec<NodeId>>,
        /// Client private key (PKCS#8 PEM) that signs the request's token.
        #[arg(long, env = "FROSTNODE_CLIENT_KEY")]
        client_key: PathBuf,
        /// Client name, as the nodes' `[[clients]]` list it.
        #[arg(long, env = "FROSTNODE_CLIENT", default_value = localnet::ADMIN_CLIENT)]
        client: String,
    },
    /// Ask a node to reshare a key: the same group key under a new threshold and a new set of
    /// participants (new nodes get shares, current ones left out delete theirs). Send it to a
    /// node that holds the key and stays.
    Reshare {
        /// Node API URL.
        #[arg(long, default_value = "http://127.0.0.1:8001")]
        api: String,
        /// The key.
        #[arg(long)]
        key_id: String,
        /// The new threshold.
        #[arg(long)]
        threshold: u16,
        /// The new participants, comma separated.
        #[arg(long, value_delimiter = ',', required = true)]
        participants: Vec<NodeId>,
        /// Client private key (PKCS#8 PEM) that signs the request's token.
        #[arg(long, env = "FROSTNODE_CLIENT_KEY")]
        client_key: PathBuf,
        /// Client name, as the nodes' `[[clients]]` list it.
        #[arg(long, env = "FROSTNODE_CLIENT", default_value = localnet::ADMIN_CLIENT)]
        client: String,
    },
    /// Ask a node to rebuild the share of a participant that lost it (its key file or its whole
    /// disk): helpers holding the key rebuild it on the key's polynomial, and it is checked
    /// against the key's public data before it is stored.
    Repair(NodeOfKey),
    /// Ask a node to give a new node (configured on every participant) a share of a key.
    Enrol(NodeOfKey),
    /// Ask a running node to read its config file again and take its [[peers]] and
    /// [[clients]] (as `kill -HUP` does).
    Reload {
        /// Node API URL.
        #[arg(long, default_value = "http://127.0.0.1:8001")]
        api: String,
    },
    /// Ask a node for a signature.
    Sign {
        /// Node API URL.
        #[arg(long, default_value = "http://127.0.0.1:8001")]
        api: String,
        /// Key to sign with.
        #[arg(long)]
        key_id: String,
        /// Message, hex.
        #[arg(
            long,
            conflicts_with_all = ["message_file", "batch_file"],
            required_unless_present_any = ["message_file", "batch_file"]
        )]
        message: Option<String>,
        /// File whose bytes are the message.
        #[arg(long, conflicts_with = "batch_file")]
        message_file: Option<PathBuf>,
        /// File with one hex message per line (blank lines skipped): the messages are signed
        /// in one session and the signatures printed in the same order.
        #[arg(long)]
        batch_file: Option<PathBuf>,
        /// Client private key (PKCS#8 PEM) that signs the request's token (`cluster-config`
        /// writes one: DIR/client.key).
        #[arg(long, env = "FROSTNODE_CLIENT_KEY")]
        client_key: PathBuf,
        /// Client name, as the nodes' `[[clients]]` list it.
        #[arg(long, env = "FROSTNODE_CLIENT", default_value = localnet::ADMIN_CLIENT)]
        client: String,
    },
    /// Write a new client private key (PKCS#8 PEM, mode 0600) and print its public key.
    ClientKey {
        /// Where to write the key (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a client token for one request (for curl and other HTTP clients).
    Token {
        /// Client private key (PKCS#8 PEM).
        #[arg(long, env = "FROSTNODE_CLIENT_KEY")]
        client_key: PathBuf,
        /// Client name.
        #[arg(long, env = "FROSTNODE_CLIENT", default_value = localnet::ADMIN_CLIENT)]
        client: String,
        /// `sign`, `keygen`, `refresh`, `reshare`, `repair` or `enrol`.
        #[arg(long)]
        act: String,
        /// The key.
        #[arg(long)]
        key_id: String,
        /// For `sign`: the message, hex.
        #[arg(long)]
        message: Option<String>,
        /// For `keygen`: fix the threshold; for `reshare`: the new threshold.
        #[arg(long)]
        threshold: Option<u16>,
        /// For `keygen` and `refresh`: fix the participants; for `reshare`: the new ones
        /// (comma separated).
        #[arg(long, value_delimiter = ',')]
        participants: Option<Vec<NodeId>>,
        /// For `repair` and `enrol`: the node.
        #[arg(long)]
        node: Option<NodeId>,
        /// Lifetime in seconds (at most 300).
        #[arg(long, default_value_t = 120)]
        ttl: u64,
    },
    /// Start N nodes on loopback, generate a key, sign and verify a message, then serve.
    Localnet {
        /// Number of nodes.
        #[arg(long, default_value_t = 5)]
        nodes: u16,
        /// Signing threshold.
        #[arg(long, default_value_t = 3)]
        threshold: u16,
        /// Keep identities and keys here (default: a temporary directory, removed at exit).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Node k serves its API on 127.0.0.1:(BASE+k); 0 picks free ports.
        #[arg(long, default_value_t = 8000)]
        api_base_port: u16,
        /// Stop after the demo instead of serving until Ctrl-C.
        #[arg(long)]
        exit: bool,
    },
    /// Exit 0 if a node's API answers its health check (for container healthchecks).
    Health {
        /// Node API URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        api: String,
    },
    /// Show a node's status.
    Status {
        /// Node API URL.
        #[arg(long, default_value = "http://127.0.0.1:8001")]
        api: String,
    },
    /// Check an Ed25519 signature offline.
    Verify {
        /// Group public key, hex (32 bytes).
        #[arg(long)]
        public_key: String,
        /// Message, hex.
        #[arg(long)]
        message: String,
        /// Signature, hex (64 bytes).
        #[arg(long)]
        signature: String,
    },
    /// Benchmarks on an in-process cluster.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// The node's key store, with the node stopped.
    Keys {
        #[command(subcommand)]
        what: KeysCommand,
    },
}

/// What `keys` does.
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Declare a key's share on this node lost (its file is gone or damaged): deletes what is
    /// left of the file and records the loss in the sealed manifest, so the node starts
    /// without it; then ask another participant to repair it (`frostnode repair`).
    Forget {
        /// The key.
        key_id: String,
        /// The node's config file.
        #[arg(long)]
        config: PathBuf,
    },
}

/// What `bench` measures.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Time distributed key generations.
    Dkg {
        /// Number of nodes.
        #[arg(long, default_value_t = 5)]
        nodes: u16,
        /// Threshold (default floor(2n/3)+1).
        #[arg(long)]
        threshold: Option<u16>,
        /// Number of DKGs to time.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Round-trip time added to every connection between nodes (a user-space relay), ms.
        #[arg(long, default_value_t = 0)]
        rtt_ms: u64,
    },
    /// Time refreshes of one key (against the DKG that made it).
    Refresh {
        /// Number of nodes.
        #[arg(long, default_value_t = 5)]
        nodes: u16,
        /// Threshold (default floor(2n/3)+1).
        #[arg(long)]
        threshold: Option<u16>,
        /// Number of refreshes to time.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Time reshares of a key from one threshold and participant set to another, and back.
    Reshare {
        /// The key's shape before: T/N (threshold T of nodes 1..=N).
        #[arg(long, default_value = "3/5")]
        from: String,
        /// The shape after: T/N.
        #[arg(long, default_value = "5/9")]
        to: String,
        /// Number of round trips to time.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Time repairs of a node that lost its key file (against the DKG that made the key).
    Repair {
        /// Number of nodes.
        #[arg(long, default_value_t = 5)]
        nodes: u16,
        /// Threshold (default floor(2n/3)+1).
        #[arg(long)]
        threshold: Option<u16>,
        /// Number of repairs to time.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Time signing requests through random nodes.
    Sign {
        /// Number of nodes.
        #[arg(long, default_value_t = 5)]
        nodes: u16,
        /// Threshold.
        #[arg(long, default_value_t = 3)]
        threshold: u16,
        /// Number of messages signed (with `--batch N`, N per request).
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Preprocessed nonces (one network round per signature): `on` or `off`.
        #[arg(long, default_value = "on", value_parser = ["on", "off"])]
        presign: String,
        /// Round-trip time added to every connection between nodes (a user-space relay), ms.
        #[arg(long, default_value_t = 0)]
        rtt_ms: u64,
        /// Messages per request (a batch signed in one session), 1 to 256.
        #[arg(long, default_value_t = 1)]
        batch: usize,
    },
}
