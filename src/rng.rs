//! The randomness the node hands to its protocol state machines and drivers: one
//! cryptographically secure source, chosen by the caller (the operating system's in a running
//! node), so that the machines themselves never reach for a global generator.

use rand::{CryptoRng, RngCore};

/// A cryptographically secure random number generator that can be used as a trait object.
pub trait SecureRng: RngCore + CryptoRng + Send {}

impl<R: RngCore + CryptoRng + Send> SecureRng for R {}
