//! One signer's shares, ready to run on any thread: the nonces already out of their table,
//! the key package and the packages to sign ([`Signing`]). The signer driver prepares them on
//! the node task; the worker pool does the arithmetic.

use frost_ed25519::keys::KeyPackage;
use frost_ed25519::round1::{SigningCommitments, SigningNonces};
use frost_ed25519::SigningPackage;

use super::error::Refusal;
use super::signer::refusal;
use crate::signing::participant::{self, ShareRef, SignerError};
use crate::wire::{Body, NodeId};

/// Nonces out of their table and what they sign with: the arithmetic of one signer's shares,
/// ready to run on any thread.
pub struct Signing {
    pub(super) taken: Taken,
    pub(super) key_package: KeyPackage,
    pub(super) participants: Vec<NodeId>,
}

/// The nonces a signature uses.
pub(super) enum Taken {
    /// Committed in a first round (the signer's table checks each package's message).
    Pool(participant::Taken),
    /// Preprocessed: the packages must carry these messages.
    Preprocessed {
        nonces: Vec<(SigningNonces, SigningCommitments)>,
        messages: Vec<Vec<u8>>,
    },
}

impl Signing {
    /// The shares for packages decoded here (this node coordinates).
    pub fn decoded(self, packages: &[SigningPackage]) -> Result<Vec<Vec<u8>>, SignerError> {
        let share = ShareRef {
            key: &self.key_package,
            participants: &self.participants,
        };
        match self.taken {
            Taken::Pool(taken) => taken.sign_decoded(packages, share),
            Taken::Preprocessed { nonces, messages } => {
                if packages.len() != messages.len()
                    || packages
                        .iter()
                        .zip(&messages)
                        .any(|(p, m)| p.message() != m.as_slice())
                {
                    return Err(SignerError::MessageMismatch);
                }
                participant::sign_all(&nonces, packages, share)
            }
        }
    }

    /// The answer to a remote coordinator: its packages decoded (every point checked) and
    /// signed.
    pub(super) fn encoded(self, attempt: u8, packages: &[Vec<u8>]) -> Result<Body, Refusal> {
        participant::decode_packages(packages)
            .and_then(|p| self.decoded(&p))
            .map(|shares| Body::Share { attempt, shares })
            .map_err(|e| refusal(&e))
    }
}
