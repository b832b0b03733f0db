//! frostnode: a peer-to-peer daemon for threshold Ed25519 signatures (FROST) with distributed
//! key generation.
//!
//! Protocol logic ([`dkg`]) is sans-IO; [`net`] moves bytes over libp2p; [`node`] wires the
//! two to the [`keystore`] and the HTTP [`api`].

pub mod api;
pub mod bench;
pub mod client;
pub mod config;
pub mod dkg;
pub mod identity;
pub mod keystore;
pub mod localnet;
pub mod metrics;
pub mod net;
pub mod node;
pub mod sealing;
pub mod securefile;
pub mod signing;
pub mod wire;
