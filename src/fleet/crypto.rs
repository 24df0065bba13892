//! The fleet key, and the sealing of secrets (private keys, the ACME account) before they
//! reach etcd, which keeps values in clear in its database and snapshots.
//!
//! AES-256-GCM with a random 96-bit nonce per message (a fleet seals a few values per
//! renewal, far below the 2^32 messages where random nonces start to risk a collision). The
//! associated data binds each ciphertext to the etcd key it is stored under and to its
//! generation, so that a ciphertext copied to another certificate's key, or an old
//! generation's key replayed under the current one, fails to open instead of installing a key
//! that belongs elsewhere.

use std::fmt;
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Bytes of a fleet key.
pub const KEY_LEN: usize = 32;
/// First bytes of every sealed value: the format, so that a later one can be told apart.
const MAGIC: &[u8; 4] = b"EVF1";
/// Domain separation from any other use of the same key.
const AAD_LABEL: &[u8] = b"evercert-fleet-v1";
/// A key file is a line of base64; anything much larger is not one.
const KEY_FILE_MAX: u64 = 1024;

/// Why a fleet key could not be loaded, or a sealed value not opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    #[error(
        "cannot read the fleet key {path}: {message}; create it with `evercert cluster keygen` and copy the same file to every host"
    )]
    KeyFile { path: PathBuf, message: String },
    #[error(
        "the fleet key {path} is readable by other users (mode {mode:04o}); chmod 600 it (it decrypts every private key of the fleet)"
    )]
    KeyMode { path: PathBuf, mode: u32 },
    #[error(
        "the fleet key {path} is not 32 bytes of base64 ({message}); write the output of `evercert cluster keygen` into it"
    )]
    KeyFormat { path: PathBuf, message: String },
    /// Tampered with, damaged, stored under another key or generation, or sealed with
    /// another fleet key.
    #[error(
        "the value at {etcd_key} (generation {generation}) does not decrypt with this host's fleet key: it was tampered with, damaged, moved, or sealed with another fleet key; check that every host has the same secret_key_file"
    )]
    Refused { etcd_key: String, generation: u64 },
}

/// The fleet key. Its `Debug` never shows the key.
pub struct FleetKey {
    key: LessSafeKey,
}

impl fmt::Debug for FleetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FleetKey(<redacted>)")
    }
}

impl FleetKey {
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        // AES-256 accepts any 32 bytes: the only error is a wrong length, excluded by the type.
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).unwrap_or_else(|_| unreachable!());
        Self {
            key: LessSafeKey::new(unbound),
        }
    }

    /// Reads the key file: a regular file, not readable by group or others, holding the
    /// base64 of 32 bytes (surrounding white space ignored).
    pub fn load(path: &Path) -> Result<Self, CryptoError> {
        use std::os::unix::fs::PermissionsExt;
        let key_file_error = |message: String| CryptoError::KeyFile {
            path: path.to_owned(),
            message,
        };
        let text = crate::fsread::read_to_string(path, KEY_FILE_MAX)
            .map_err(|err| key_file_error(err.problem.to_string()))?;
        let mode = std::fs::metadata(path)
            .map_err(|err| key_file_error(err.to_string()))?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(CryptoError::KeyMode {
                path: path.to_owned(),
                mode,
            });
        }
        Self::parse(text.trim()).map_err(|message| CryptoError::KeyFormat {
            path: path.to_owned(),
            message,
        })
    }

    fn parse(text: &str) -> Result<Self, String> {
        let bytes = STANDARD
            .decode(text)
            .map_err(|err| format!("not base64: {err}"))?;
        let bytes: [u8; KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| format!("{} bytes", bytes.len()))?;
        Ok(Self::from_bytes(&bytes))
    }

    /// Seals `plaintext` for storage at `etcd_key` as generation `generation`.
    pub fn seal(&self, etcd_key: &str, generation: u64, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0_u8; NONCE_LEN];
        // A failing system RNG leaves nothing safe to do.
        aws_lc_rs::rand::fill(&mut nonce).unwrap_or_else(|_| panic!("the system RNG failed"));
        let mut sealed = Vec::with_capacity(MAGIC.len() + NONCE_LEN + plaintext.len() + 16);
        sealed.extend_from_slice(MAGIC);
        sealed.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(etcd_key, generation)),
                &mut body,
            )
            // Only fails for messages beyond GCM's 64 GiB limit.
            .unwrap_or_else(|_| unreachable!());
        sealed.extend_from_slice(&body);
        sealed
    }

    /// Opens what [`seal`](Self::seal) made for the same key and generation.
    pub fn open(
        &self,
        etcd_key: &str,
        generation: u64,
        sealed: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let refused = || CryptoError::Refused {
            etcd_key: etcd_key.to_owned(),
            generation,
        };
        let rest = sealed.strip_prefix(MAGIC.as_slice()).ok_or_else(refused)?;
        if rest.len() < NONCE_LEN {
            return Err(refused());
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| refused())?;
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad(etcd_key, generation)), &mut body)
            .map_err(|_| refused())?;
        Ok(plain.to_vec())
    }
}

/// A new fleet key, as the base64 line `evercert cluster keygen` prints.
pub fn generate() -> String {
    let mut bytes = [0_u8; KEY_LEN];
    aws_lc_rs::rand::fill(&mut bytes).unwrap_or_else(|_| panic!("the system RNG failed"));
    STANDARD.encode(bytes)
}

fn aad(etcd_key: &str, generation: u64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_LABEL.len() + etcd_key.len() + 10);
    aad.extend_from_slice(AAD_LABEL);
    aad.push(0);
    aad.extend_from_slice(etcd_key.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&generation.to_be_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> FleetKey {
        FleetKey::parse(&generate()).unwrap()
    }

    #[test]
    fn sealed_values_open_only_at_their_key_and_generation() {
        let fleet = key();
        let sealed = fleet.seal("/p/certs/shop/7/key", 7, b"-----BEGIN PRIVATE KEY-----");
        assert!(!sealed.windows(5).any(|w| w == b"BEGIN"), "sealed in clear");
        assert_eq!(
            fleet.open("/p/certs/shop/7/key", 7, &sealed).unwrap(),
            b"-----BEGIN PRIVATE KEY-----"
        );
        // Moved to another certificate, or replayed as another generation.
        for (etcd_key, generation) in [("/p/certs/blog/7/key", 7), ("/p/certs/shop/7/key", 8)] {
            assert_eq!(
                fleet.open(etcd_key, generation, &sealed),
                Err(CryptoError::Refused {
                    etcd_key: etcd_key.to_owned(),
                    generation
                })
            );
        }
        // Another fleet's key.
        assert!(key().open("/p/certs/shop/7/key", 7, &sealed).is_err());
    }

    #[test]
    fn every_flipped_bit_and_every_truncation_is_refused() {
        let fleet = key();
        let sealed = fleet.seal("/k", 1, b"secret");
        for index in 0..sealed.len() {
            for bit in 0..8 {
                let mut tampered = sealed.clone();
                tampered[index] ^= 1 << bit;
                assert!(fleet.open("/k", 1, &tampered).is_err(), "byte {index}");
            }
        }
        for len in 0..sealed.len() {
            assert!(fleet.open("/k", 1, &sealed[..len]).is_err(), "len {len}");
        }
        // Nonces are fresh: the same plaintext seals differently.
        assert_ne!(sealed, fleet.seal("/k", 1, b"secret"));
    }

    #[test]
    fn key_files_are_checked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.key");
        std::fs::write(&path, format!("{}\n", generate())).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = FleetKey::load(&path).unwrap_err();
        assert!(
            matches!(err, CryptoError::KeyMode { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        FleetKey::load(&path).unwrap();
        std::fs::write(&path, "c2hvcnQ=\n").unwrap();
        let err = FleetKey::load(&path).unwrap_err();
        assert!(err.to_string().contains("5 bytes"), "{err}");
        let err = FleetKey::load(&dir.path().join("missing")).unwrap_err();
        assert!(err.to_string().contains("evercert cluster keygen"), "{err}");
        assert_eq!(format!("{:?}", key()), "FleetKey(<redacted>)");
    }
}
