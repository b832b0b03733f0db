//! frostnode: a peer-to-peer daemon for threshold Ed25519 signatures (FROST) with distributed
//! key generation.
//!
//! Protocol logic ([`dkg`], [`signing`]) is sans-IO; [`net`] moves bytes over libp2p; [`node`]
//! routes events between them, the [`keystore`] and its callers; [`daemon`] builds the whole
//! process and serves the HTTP [`api`].

pub mod api;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod dkg;
pub mod httpserver;
pub mod identity;
pub mod keystore;
pub mod localnet;
pub mod metrics;
pub mod net;
pub mod node;
pub mod policy;
pub mod progress;
pub mod rng;
pub mod sealing;
pub mod securefile;
pub mod signing;
pub mod wire;
pub mod workers;
