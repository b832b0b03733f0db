//! Encryption of key files at rest. A 256-bit key is derived from the operator's passphrase
//! with Argon2id (salt and parameters kept in `keys/.keystore.json`, together with a sealed
//! check value that tells a wrong passphrase apart at start); every key file is then sealed
//! with XChaCha20-Poly1305 under a fresh random nonce, its key id bound as associated data.

use std::fmt;
use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::securefile;

/// File (in the keys directory) holding the KDF parameters; not a valid key id, so it can
/// never collide with a key file.
pub const META_FILE: &str = ".keystore.json";
const CHECK_AAD: &[u8] = b"frostnode/keystore-check/v1";
/// Argon2id parameters for new stores and sealed files: 64 MiB, 3 passes, 1 lane (stores made
/// before keep the parameters they recorded).
const KDF_PARAMS: (u32, u32, u32) = (64 * 1024, 3, 1);
const CHECK_PLAINTEXT: &[u8] = b"frostnode key store";
/// The check value of a store that keeps a sealed manifest of its keys: once it says so, a
/// missing manifest is tampering, not an old store.
const CHECK_WITH_MANIFEST: &[u8] = b"frostnode key store/manifest";

/// Errors of the sealing layer.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The passphrase does not open this key store.
    #[error("wrong passphrase for the key store in {0}")]
    WrongPassphrase(String),
    /// The key store is encrypted but no passphrase was configured.
    #[error(
        "the key store in {0} is encrypted: configure [keystore] passphrase_env or passphrase_file"
    )]
    PassphraseRequired(String),
    /// A sealed file that does not open (tampered or truncated).
    #[error("sealed data does not authenticate (tampered, truncated or for another key)")]
    Unauthentic,
    /// Bad metadata or I/O.
    #[error("key store metadata {path}: {message}")]
    Meta {
        /// File.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// Ciphertext and nonce, hex in JSON.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SealedBlob {
    /// 24-byte XChaCha20 nonce, hex.
    pub nonce: String,
    /// Ciphertext with the Poly1305 tag, hex.
    pub ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    format_version: u32,
    kdf: String,
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
    salt: String,
    check: SealedBlob,
}

/// Seals and opens key files with the key derived from the passphrase.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    manifest_required: bool,
    /// A new store's metadata, written by [`Sealer::write_new_meta`] once the store is
    /// known to be usable (a refused start writes nothing).
    new_meta: Option<Vec<u8>>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer(<redacted>)")
    }
}

fn derive(passphrase: &[u8], salt: &[u8], m: u32, t: u32, p: u32) -> Result<Sealer, String> {
    let params = Params::new(m, t, p, Some(32)).map_err(|e| e.to_string())?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase, salt, key.as_mut())
        .map_err(|e| e.to_string())?;
    let cipher = XChaCha20Poly1305::new_from_slice(key.as_ref()).map_err(|e| e.to_string())?;
    Ok(Sealer {
        cipher,
        manifest_required: false,
        new_meta: None,
    })
}

impl Sealer {
    /// Opens the sealing layer of a keys directory.
    ///
    /// With a passphrase: checks it against the stored check value, or prepares a new store's
    /// metadata on first use (written by [`Sealer::write_new_meta`]). Without one: `None` if
    /// the store was never encrypted, an error otherwise.
    pub fn open(dir: &Path, passphrase: Option<&[u8]>) -> Result<Option<Sealer>, SealError> {
        let path = dir.join(META_FILE);
        let shown = dir.display().to_string();
        let meta_err = |message: String| SealError::Meta {
            path: path.display().to_string(),
            message,
        };
        let existing = match std::fs::read(&path) {
            Ok(bytes) => {
                Some(serde_json::from_slice::<Meta>(&bytes).map_err(|e| meta_err(e.to_string()))?)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(meta_err(e.to_string())),
        };
        match (existing, passphrase) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(SealError::PassphraseRequired(shown)),
            (Some(meta), Some(pass)) => {
                if meta.kdf != "argon2id" || meta.format_version != 1 {
                    return Err(meta_err(format!("unsupported KDF {:?}", meta.kdf)));
                }
                let salt = hex::decode(&meta.salt).map_err(|e| meta_err(e.to_string()))?;
                let sealer = derive(pass, &salt, meta.m_cost_kib, meta.t_cost, meta.p_cost)
                    .map_err(meta_err)?;
                let mut sealer = sealer;
                match sealer.open_blob(CHECK_AAD, &meta.check) {
                    Ok(v) if v.as_slice() == CHECK_PLAINTEXT => Ok(Some(sealer)),
                    Ok(v) if v.as_slice() == CHECK_WITH_MANIFEST => {
                        sealer.manifest_required = true;
                        Ok(Some(sealer))
                    }
                    _ => Err(SealError::WrongPassphrase(shown)),
                }
            }
            (None, Some(pass)) => {
                let salt: [u8; 16] = rand::random();
                let (m, t, p) = KDF_PARAMS;
                let sealer = derive(pass, &salt, m, t, p).map_err(meta_err)?;
                let meta = Meta {
                    format_version: 1,
                    kdf: "argon2id".into(),
                    m_cost_kib: m,
                    t_cost: t,
                    p_cost: p,
                    salt: hex::encode(salt),
                    check: sealer.seal(CHECK_AAD, CHECK_PLAINTEXT)?,
                };
                let json = serde_json::to_vec_pretty(&meta).map_err(|e| meta_err(e.to_string()))?;
                let mut sealer = sealer;
                sealer.new_meta = Some(json);
                Ok(Some(sealer))
            }
        }
    }

    /// Writes a new store's metadata, if this sealer set one up (see [`Sealer::open`]).
    pub fn write_new_meta(&mut self, dir: &Path) -> Result<(), SealError> {
        if let Some(json) = self.new_meta.take() {
            let path = dir.join(META_FILE);
            securefile::write_private_atomic(&path, &json).map_err(|e| SealError::Meta {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// Whether this store keeps a sealed manifest (a missing one is then tampering).
    pub fn manifest_required(&self) -> bool {
        self.manifest_required
    }

    /// Records in the store's metadata that it keeps a manifest from now on.
    pub fn require_manifest(&mut self, dir: &Path) -> Result<(), SealError> {
        let path = dir.join(META_FILE);
        let meta_err = |message: String| SealError::Meta {
            path: path.display().to_string(),
            message,
        };
        let bytes = std::fs::read(&path).map_err(|e| meta_err(e.to_string()))?;
        let mut meta: Meta = serde_json::from_slice(&bytes).map_err(|e| meta_err(e.to_string()))?;
        meta.check = self.seal(CHECK_AAD, CHECK_WITH_MANIFEST)?;
        let json = serde_json::to_vec_pretty(&meta).map_err(|e| meta_err(e.to_string()))?;
        securefile::write_private_atomic(&path, &json).map_err(|e| meta_err(e.to_string()))?;
        self.manifest_required = true;
        Ok(())
    }

    /// Encrypts `plaintext`, binding `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<SealedBlob, SealError> {
        let nonce_bytes: [u8; 24] = rand::random();
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce_bytes),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| SealError::Unauthentic)?;
        Ok(SealedBlob {
            nonce: hex::encode(nonce_bytes),
            ciphertext: hex::encode(ciphertext),
        })
    }

    /// Decrypts a blob sealed with the same `aad`.
    pub fn open_blob(
        &self,
        aad: &[u8],
        blob: &SealedBlob,
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let nonce = hex::decode(&blob.nonce).map_err(|_| SealError::Unauthentic)?;
        let ciphertext = hex::decode(&blob.ciphertext).map_err(|_| SealError::Unauthentic)?;
        if nonce.len() != 24 {
            return Err(SealError::Unauthentic);
        }
        self.cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::Unauthentic)
    }
}

/// Format tag of a self-contained sealed file.
const STANDALONE_FORMAT: &str = "frostnode-sealed-file/v1";

/// A secret sealed on its own (the node identity): its KDF salt and parameters travel with it,
/// so it opens wherever it is stored.
#[derive(Serialize, Deserialize)]
struct Standalone {
    format: String,
    kdf: String,
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
    salt: String,
    sealed: SealedBlob,
}

/// Seals `plaintext` with a key derived from `passphrase` (Argon2id, fresh salt), binding
/// `aad`; returns the file's bytes (JSON).
pub fn seal_standalone(
    passphrase: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let meta_err = |message: String| SealError::Meta {
        path: "sealed file".into(),
        message,
    };
    let salt: [u8; 16] = rand::random();
    let (m, t, p) = KDF_PARAMS;
    let sealer = derive(passphrase, &salt, m, t, p).map_err(meta_err)?;
    let file = Standalone {
        format: STANDALONE_FORMAT.into(),
        kdf: "argon2id".into(),
        m_cost_kib: m,
        t_cost: t,
        p_cost: p,
        salt: hex::encode(salt),
        sealed: sealer.seal(aad, plaintext)?,
    };
    serde_json::to_vec_pretty(&file).map_err(|e| meta_err(e.to_string()))
}

/// Whether `bytes` are a file written by [`seal_standalone`].
pub fn is_standalone(bytes: &[u8]) -> bool {
    serde_json::from_slice::<Standalone>(bytes).is_ok_and(|f| f.format == STANDALONE_FORMAT)
}

/// Opens a file written by [`seal_standalone`] with the same `aad`. A wrong passphrase and a
/// tampered file are both [`SealError::Unauthentic`]: the file alone cannot tell them apart.
pub fn open_standalone(
    passphrase: &[u8],
    aad: &[u8],
    bytes: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let meta_err = |message: String| SealError::Meta {
        path: "sealed file".into(),
        message,
    };
    let file: Standalone = serde_json::from_slice(bytes).map_err(|e| meta_err(e.to_string()))?;
    if file.format != STANDALONE_FORMAT || file.kdf != "argon2id" {
        return Err(meta_err(format!("unsupported format {:?}", file.format)));
    }
    // Bounded KDF parameters: a planted file must not make the node allocate gigabytes.
    if file.m_cost_kib > 1024 * 1024 || file.t_cost > 16 || file.p_cost > 16 {
        return Err(meta_err("KDF parameters out of range".into()));
    }
    let salt = hex::decode(&file.salt).map_err(|e| meta_err(e.to_string()))?;
    let sealer =
        derive(passphrase, &salt, file.m_cost_kib, file.t_cost, file.p_cost).map_err(meta_err)?;
    sealer.open_blob(aad, &file.sealed)
}
