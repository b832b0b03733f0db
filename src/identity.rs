//! The node's libp2p identity: an Ed25519 keypair in `data_dir/identity.key` (mode 0600: a
//! file others can read is refused), sealed with the key store's passphrase when one is
//! configured.
//!
//! The PeerId derived from it is what peers list in their configs, so it must survive restarts.

use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;

use crate::securefile;

/// File name of the identity key inside the data directory.
pub const IDENTITY_FILE: &str = "identity.key";

/// Errors loading or creating an identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// No identity file yet.
    #[error("no identity at {0}; create one with `frostnode init --data-dir <dir>`")]
    Missing(PathBuf),
    /// Reading or writing failed.
    #[error("identity file {path}: {source}")]
    Io {
        /// File path.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file does not hold a valid key.
    #[error("identity file {0} is not a valid libp2p key")]
    Invalid(PathBuf),
    /// The file is sealed and no passphrase is configured.
    #[error("identity file {0} is sealed: configure [keystore] passphrase_env or passphrase_file")]
    PassphraseRequired(PathBuf),
    /// The file can be read by others than its owner.
    #[error("identity file {0}")]
    Exposed(String),
    /// The passphrase does not open the sealed file (or the file was tampered with).
    #[error("identity file {0} does not open with the configured passphrase (wrong passphrase, or the file was altered)")]
    WrongPassphrase(PathBuf),
}

/// Associated data binding a sealed identity to its purpose.
const SEAL_AAD: &[u8] = b"frostnode/identity/v1";

/// Loads the node's identity from a key file; a file others can read is refused
/// ([`securefile::exposed`]). A sealed file needs `passphrase`; a file in clear is
/// sealed in place when a passphrase is given (if the file cannot be rewritten, say a
/// read-only mount, it is used as it is and the returned flag says so).
pub fn load_file_sealed(
    path: &Path,
    passphrase: Option<&[u8]>,
) -> Result<(Keypair, Sealing), IdentityError> {
    let io = |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(problem) = securefile::exposed(path) {
        return Err(IdentityError::Exposed(problem));
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => zeroize::Zeroizing::new(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(IdentityError::Missing(path.to_path_buf()))
        }
        Err(source) => return Err(io(source)),
    };
    if crate::sealing::is_standalone(&bytes) {
        let Some(pass) = passphrase else {
            return Err(IdentityError::PassphraseRequired(path.to_path_buf()));
        };
        let plain = crate::sealing::open_standalone(pass, SEAL_AAD, &bytes)
            .map_err(|_| IdentityError::WrongPassphrase(path.to_path_buf()))?;
        let key = Keypair::from_protobuf_encoding(&plain)
            .map_err(|_| IdentityError::Invalid(path.to_path_buf()))?;
        return Ok((key, Sealing::Sealed));
    }
    let key = Keypair::from_protobuf_encoding(&bytes)
        .map_err(|_| IdentityError::Invalid(path.to_path_buf()))?;
    let Some(pass) = passphrase else {
        return Ok((key, Sealing::Clear));
    };
    let sealed = crate::sealing::seal_standalone(pass, SEAL_AAD, &bytes)
        .map_err(|e| io(std::io::Error::other(e.to_string())))?;
    match securefile::write_private_atomic(path, &sealed) {
        Ok(()) => Ok((key, Sealing::SealedNow)),
        Err(e) => Ok((key, Sealing::CannotSeal(e.to_string()))),
    }
}

/// How the identity file is kept, as [`load_file_sealed`] found (and left) it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sealing {
    /// Sealed with the passphrase.
    Sealed,
    /// It was in clear and is sealed now.
    SealedNow,
    /// In clear, and no passphrase is configured.
    Clear,
    /// In clear, and it could not be rewritten sealed (the reason).
    CannotSeal(String),
}

/// Path of the identity file in a data directory.
pub fn identity_path(data_dir: &Path) -> PathBuf {
    data_dir.join(IDENTITY_FILE)
}

/// Loads the identity from a data directory.
pub fn load(data_dir: &Path) -> Result<Keypair, IdentityError> {
    load_file(&identity_path(data_dir))
}

/// Loads the identity from a key file in clear (a sealed one needs [`load_file_sealed`]).
pub fn load_file(path: &Path) -> Result<Keypair, IdentityError> {
    let path = path.to_path_buf();
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(IdentityError::Missing(path))
        }
        Err(source) => return Err(IdentityError::Io { path, source }),
    };
    if crate::sealing::is_standalone(&bytes) {
        return Err(IdentityError::PassphraseRequired(path));
    }
    Keypair::from_protobuf_encoding(&bytes).map_err(|_| IdentityError::Invalid(path))
}

/// Loads the identity, or creates and saves a new one if none exists. Returns the key and
/// whether it was newly created.
pub fn load_or_create(data_dir: &Path) -> Result<(Keypair, bool), IdentityError> {
    match load(data_dir) {
        Ok(k) => Ok((k, false)),
        Err(IdentityError::Missing(_)) => {
            let key = Keypair::generate_ed25519();
            save(data_dir, &key)?;
            Ok((key, true))
        }
        Err(e) => Err(e),
    }
}

/// Saves an identity into a data directory (creating it, mode 0700).
pub fn save(data_dir: &Path, key: &Keypair) -> Result<(), IdentityError> {
    let path = identity_path(data_dir);
    let io = |source| IdentityError::Io {
        path: path.clone(),
        source,
    };
    securefile::create_private_dir(data_dir).map_err(io)?;
    let bytes = key
        .to_protobuf_encoding()
        .map_err(|_| IdentityError::Invalid(path.clone()))?;
    securefile::write_private_atomic(&path, &bytes).map_err(io)
}

/// This node's identity key and every configured peer's public key: what a DKG session
/// signs its confirmation with and checks the others' against.
pub struct NodeKeys {
    keypair: Keypair,
    peers: std::collections::BTreeMap<crate::wire::NodeId, libp2p::identity::PublicKey>,
}

impl NodeKeys {
    /// Keys for a node holding `keypair`, with its peers' public keys by node id.
    pub fn new(
        keypair: Keypair,
        peers: std::collections::BTreeMap<crate::wire::NodeId, libp2p::identity::PublicKey>,
    ) -> Self {
        Self { keypair, peers }
    }
}

impl std::fmt::Debug for NodeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKeys")
            .field("peer_id", &self.keypair.public().to_peer_id())
            .field("peers", &self.peers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl crate::dkg::ConfirmationKeys for NodeKeys {
    fn sign(&self, message: &[u8]) -> Option<Vec<u8>> {
        self.keypair.sign(message).ok()
    }

    fn verify(&self, node: crate::wire::NodeId, message: &[u8], signature: &[u8]) -> bool {
        self.peers
            .get(&node)
            .is_some_and(|k| k.verify(message, signature))
    }

    fn knows(&self, node: crate::wire::NodeId) -> bool {
        self.peers.contains_key(&node)
    }

    fn identity(&self, node: crate::wire::NodeId) -> Option<String> {
        self.peers.get(&node).map(|k| k.to_peer_id().to_string())
    }
}

/// The Ed25519 public key embedded in an Ed25519 PeerId.
pub fn peer_public_key(peer_id: &libp2p::PeerId) -> Option<libp2p::identity::PublicKey> {
    let mh = peer_id.as_ref();
    if mh.code() != 0 {
        return None;
    }
    libp2p::identity::PublicKey::try_decode_protobuf(mh.digest()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passphrase_seals_the_identity_and_only_it_opens_it() {
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = load_or_create(dir.path()).unwrap();
        let path = identity_path(dir.path());
        let pid = key.public().to_peer_id();
        let (k, how) = load_file_sealed(&path, None).unwrap();
        assert_eq!((k.public().to_peer_id(), how), (pid, Sealing::Clear));
        let (k, how) = load_file_sealed(&path, Some(b"pass")).unwrap();
        assert_eq!((k.public().to_peer_id(), how), (pid, Sealing::SealedNow));
        let bytes = std::fs::read(&path).unwrap();
        assert!(crate::sealing::is_standalone(&bytes));
        let secret = key.to_protobuf_encoding().unwrap();
        assert!(
            !bytes
                .windows(32)
                .any(|w| secret.windows(32).any(|s| s == w)),
            "no part of the key in clear"
        );
        let (k, how) = load_file_sealed(&path, Some(b"pass")).unwrap();
        assert_eq!((k.public().to_peer_id(), how), (pid, Sealing::Sealed));
        assert!(matches!(
            load_file_sealed(&path, None),
            Err(IdentityError::PassphraseRequired(_))
        ));
        assert!(matches!(
            load_file_sealed(&path, Some(b"other")),
            Err(IdentityError::WrongPassphrase(_))
        ));
        // A flipped byte in the ciphertext: refused, never a different key.
        let mut text = String::from_utf8(bytes).unwrap();
        let at = text.find("\"ciphertext\": \"").unwrap() + 20;
        let flipped = if &text[at..at + 1] == "0" { "1" } else { "0" };
        text.replace_range(at..at + 1, flipped);
        std::fs::write(&path, text).unwrap();
        assert!(matches!(
            load_file_sealed(&path, Some(b"pass")),
            Err(IdentityError::WrongPassphrase(_))
        ));
    }

    #[test]
    fn create_then_load_gives_the_same_peer_id() {
        let dir = tempfile::tempdir().unwrap();
        let (a, created) = load_or_create(dir.path()).unwrap();
        assert!(created);
        let (b, created) = load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        std::fs::write(identity_path(dir.path()), b"garbage").unwrap();
        assert!(matches!(load(dir.path()), Err(IdentityError::Invalid(_))));
    }
}
