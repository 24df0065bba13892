//! Writing the new configuration file: never over an existing one.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use super::WriteError;
use super::translate::file_name;

/// Writes `contents` to a new file `path` (mode 0600) atomically: a temporary file in the
/// same directory, fsynced, then linked into place without replacing anything, and the
/// directory fsynced. An existing `path` is never touched.
pub fn write_new_file(path: &Path, contents: &str) -> Result<(), WriteError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io_error = |source: io::Error| WriteError::Io {
        path: path.to_owned(),
        source,
    };
    if std::fs::symlink_metadata(path).is_ok() {
        return Err(WriteError::Exists {
            path: path.to_owned(),
        });
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        file_name(path),
        std::process::id(),
        rand::random::<u32>()
    ));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()
    })();
    if let Err(err) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_error(err));
    }
    // link(2) fails with EEXIST instead of replacing: no window where a file appearing at
    // `path` meanwhile is overwritten.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            return Err(WriteError::Exists {
                path: path.to_owned(),
            });
        }
        Err(err) => return Err(io_error(err)),
    }
    std::fs::File::open(&dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error)
}
