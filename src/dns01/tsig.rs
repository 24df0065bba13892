//! The TSIG secret: read from `key_secret_file` only when an update is sent, refused when
//! other users could read it, and never shown (its `Debug` says `[redacted]`).

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use base64::Engine;

use super::{Dns01Error, KeyAlgorithm};

/// A key file is one line of base64 or a short BIND `key { … };` clause.
const KEY_FILE_MAX: u64 = 64 << 10;

/// The decoded HMAC key.
#[derive(Clone)]
pub struct Secret {
    bytes: Vec<u8>,
    /// The `algorithm` of a BIND key clause, to catch a mismatch with `key_algorithm`.
    pub algorithm_in_file: Option<String>,
}

impl Secret {
    pub(super) fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Reads and checks the key file: a regular file of at most 64 KiB, not readable or
/// writable by others (nor writable by its group), holding either the base64 secret alone
/// or what `tsig-keygen` prints (`key "NAME" { algorithm …; secret "…"; };`).
pub fn load_secret(path: &Path) -> Result<Secret, Dns01Error> {
    let error = |message: String| Dns01Error::KeyFile {
        path: path.to_owned(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|err| {
        error(format!(
            "{err}; create it with `tsig-keygen -a hmac-sha256 evercert. > {}` and chmod 600 it",
            path.display()
        ))
    })?;
    let mode = meta.mode() & 0o777;
    if mode & 0o027 != 0 {
        return Err(error(format!(
            "mode {mode:04o} lets other users read or change the TSIG secret; run: chmod 600 {}",
            path.display()
        )));
    }
    let text =
        crate::fsread::read_to_string(path, KEY_FILE_MAX).map_err(|err| error(err.to_string()))?;
    parse_key_file(&text).map_err(error)
}

fn parse_key_file(text: &str) -> Result<Secret, String> {
    let (encoded, algorithm_in_file) = if text.contains("secret") {
        let quoted = |keyword: &str| -> Option<String> {
            let after = &text[text.find(keyword)? + keyword.len()..];
            let after = after.trim_start();
            // `secret "…";` in BIND; `algorithm hmac-sha256;` is not quoted.
            let value = after.strip_prefix('"').map_or_else(
                || after.split(|c: char| c == ';' || c.is_whitespace()).next(),
                |rest| rest.split('"').next(),
            )?;
            Some(value.trim().to_owned())
        };
        let secret =
            quoted("secret").ok_or("has a `secret` keyword but no quoted value after it")?;
        (secret, quoted("algorithm"))
    } else {
        (text.trim().to_owned(), None)
    };
    if encoded.is_empty() {
        return Err("is empty; put the base64 secret (or tsig-keygen's output) in it".into());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.as_bytes())
        .map_err(|_| {
            "does not hold a base64 secret; put the `secret` value tsig-keygen printed in it (or its whole output)"
                .to_owned()
        })?;
    if bytes.len() < 16 {
        return Err(format!(
            "holds a {}-byte secret, too short for HMAC; generate one with tsig-keygen",
            bytes.len()
        ));
    }
    Ok(Secret {
        bytes,
        algorithm_in_file,
    })
}

/// The file's `algorithm` must be the configured one: a mismatch fails at the server as a
/// bad signature, which is much harder to diagnose.
pub(super) fn check_algorithm(
    secret: &Secret,
    configured: KeyAlgorithm,
    path: &Path,
) -> Result<(), Dns01Error> {
    match &secret.algorithm_in_file {
        Some(algorithm) if KeyAlgorithm::parse(algorithm) != Some(configured) => {
            Err(Dns01Error::KeyFile {
                path: path.to_owned(),
                message: format!(
                    "says algorithm {algorithm}, but key_algorithm = \"{configured}\"; make them the same"
                ),
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_base64_and_bind_key_clauses_are_read() {
        let bare = parse_key_file("c2VjcmV0LXNlY3JldC1zZWNyZXQ=\n").unwrap();
        assert_eq!(bare.bytes(), b"secret-secret-secret");
        assert_eq!(bare.algorithm_in_file, None);
        let clause = "key \"evercert.\" {\n\talgorithm hmac-sha512;\n\tsecret \"c2VjcmV0LXNlY3JldC1zZWNyZXQ=\";\n};\n";
        let parsed = parse_key_file(clause).unwrap();
        assert_eq!(parsed.bytes(), b"secret-secret-secret");
        assert_eq!(parsed.algorithm_in_file.as_deref(), Some("hmac-sha512"));
        assert!(
            check_algorithm(&parsed, KeyAlgorithm::HmacSha256, Path::new("k"))
                .unwrap_err()
                .to_string()
                .contains("key_algorithm")
        );
        assert!(check_algorithm(&parsed, KeyAlgorithm::HmacSha512, Path::new("k")).is_ok());
    }

    #[test]
    fn bad_secrets_say_what_to_put_there_and_never_echo_it() {
        assert!(parse_key_file("").unwrap_err().contains("empty"));
        let err = parse_key_file("not base64 at all!").unwrap_err();
        assert!(err.contains("base64") && !err.contains("at all"), "{err}");
        assert!(
            parse_key_file("c2hvcnQ=")
                .unwrap_err()
                .contains("too short")
        );
        let secret = parse_key_file("c2VjcmV0LXNlY3JldC1zZWNyZXQ=").unwrap();
        assert_eq!(format!("{secret:?}"), "Secret([redacted])");
    }

    #[test]
    fn a_key_file_others_can_read_is_refused_with_the_chmod() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tsig.key");
        std::fs::write(&path, "c2VjcmV0LXNlY3JldC1zZWNyZXQ=").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_secret(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600") && err.contains("0644"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(load_secret(&path).is_ok());
        let missing = load_secret(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("tsig-keygen"), "{missing}");
    }
}
