//! Reading files that someone else put there: certificates, keys, `[[monitor]]` paths, the
//! configuration, state and account files.
//!
//! `std::fs::read` trusts the path: a FIFO blocks the open forever, `/dev/zero` or a 2 GB
//! file fills memory, and a directory gives a confusing error. Here only regular files are
//! read: the path is checked before it is opened (so a device is never even opened), opened
//! with `O_NONBLOCK | O_NOCTTY` (a FIFO swapped in meanwhile cannot block the open), checked
//! again on the open descriptor, and read up to a size cap. Each refusal names the path and
//! what it found there.

use std::fmt;
use std::fs::{File, FileType, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;

/// Certificates, keys, chains, state and account files: real ones are a few KiB.
pub const SMALL_FILE_MAX: u64 = 1 << 20;
/// The configuration: ten thousand `[[certificate]]` tables are a few MiB.
pub const CONFIG_FILE_MAX: u64 = 16 << 20;

/// What was wrong with a file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    NotFound,
    PermissionDenied,
    /// Not a regular file: what it is instead (`a FIFO (named pipe)`, `a directory`, …).
    NotRegular(&'static str),
    TooLarge {
        size: u64,
        max: u64,
    },
    Io {
        kind: io::ErrorKind,
        message: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound => f.write_str("not found"),
            Self::PermissionDenied => f.write_str("permission denied"),
            Self::NotRegular(what) => write!(
                f,
                "is {what}, not a regular file; evercert reads only regular files, point the path at one"
            ),
            Self::TooLarge { size, max } => write!(
                f,
                "is {} (more than the {} such a file can be); point the path at the right file",
                human_size(*size),
                human_size(*max)
            ),
            Self::Io { message, .. } => f.write_str(message),
        }
    }
}

/// A file that could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct ReadError {
    pub path: PathBuf,
    pub problem: Problem,
}

impl ReadError {
    fn new(path: &Path, problem: Problem) -> Self {
        Self {
            path: path.to_owned(),
            problem,
        }
    }

    fn io(path: &Path, err: &io::Error) -> Self {
        let problem = match err.kind() {
            io::ErrorKind::NotFound => Problem::NotFound,
            io::ErrorKind::PermissionDenied => Problem::PermissionDenied,
            kind => Problem::Io {
                kind,
                message: err.to_string(),
            },
        };
        Self::new(path, problem)
    }

    /// As an `io::ErrorKind`, for callers that sort errors that way.
    pub fn kind(&self) -> io::ErrorKind {
        match &self.problem {
            Problem::NotFound => io::ErrorKind::NotFound,
            Problem::PermissionDenied => io::ErrorKind::PermissionDenied,
            Problem::NotRegular(_) | Problem::TooLarge { .. } => io::ErrorKind::InvalidInput,
            Problem::Io { kind, .. } => *kind,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.problem == Problem::NotFound
    }
}

/// Reads the regular file at `path` (through symlinks), at most `max` bytes of it.
pub fn read(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    // Checked before opening: opening a device can have effects of its own (a tape rewinds,
    // a watchdog arms), and a FIFO's open would wait for a writer.
    let meta = std::fs::metadata(path).map_err(|err| ReadError::io(path, &err))?;
    check_type(path, meta.file_type())?;
    let file = open_nonblocking(path).map_err(|err| ReadError::io(path, &err))?;
    // Again on what was opened: the path may have been swapped since.
    let meta = file.metadata().map_err(|err| ReadError::io(path, &err))?;
    check_type(path, meta.file_type())?;
    if meta.len() > max {
        return Err(too_large(path, meta.len(), max));
    }
    // Regular files ignore O_NONBLOCK, but some network file systems do not: clear it.
    let _ = rustix::fs::fcntl_setfl(&file, OFlags::empty());
    let capacity = usize::try_from(meta.len()).unwrap_or(0);
    let mut bytes = Vec::with_capacity(capacity);
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|err| ReadError::io(path, &err))?;
    // It grew while being read.
    if bytes.len() as u64 > max {
        return Err(too_large(path, bytes.len() as u64, max));
    }
    Ok(bytes)
}

/// Like [`read`], as UTF-8 text.
pub fn read_to_string(path: &Path, max: u64) -> Result<String, ReadError> {
    let bytes = read(path, max)?;
    String::from_utf8(bytes).map_err(|_| {
        ReadError::new(
            path,
            Problem::Io {
                kind: io::ErrorKind::InvalidData,
                message: "is not UTF-8 text".to_owned(),
            },
        )
    })
}

/// [`read`], with `Ok(None)` when there is nothing at `path`.
pub fn read_if_present(path: &Path, max: u64) -> Result<Option<Vec<u8>>, ReadError> {
    match read(path, max) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.is_not_found() => Ok(None),
        Err(err) => Err(err),
    }
}

fn open_nonblocking(path: &Path) -> io::Result<File> {
    let flags = OFlags::NONBLOCK | OFlags::NOCTTY;
    OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
}

fn check_type(path: &Path, file_type: FileType) -> Result<(), ReadError> {
    if file_type.is_file() {
        return Ok(());
    }
    Err(ReadError::new(
        path,
        Problem::NotRegular(describe(file_type)),
    ))
}

/// What a non-regular file is, in words.
pub fn describe(file_type: FileType) -> &'static str {
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO (named pipe)"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_file() {
        "a regular file"
    } else {
        "a special file"
    }
}

fn too_large(path: &Path, size: u64, max: u64) -> ReadError {
    ReadError::new(path, Problem::TooLarge { size, max })
}

fn human_size(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    const KIB: u64 = 1 << 10;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    } else if bytes >= KIB {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn reads_a_regular_file_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cert.pem");
        std::fs::write(&file, b"hello").unwrap();
        let link = dir.path().join("link.pem");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read(&link, 5).unwrap(), b"hello");
        assert_eq!(read_to_string(&file, 5).unwrap(), "hello");
        let missing = dir.path().join("missing");
        assert!(read(&missing, 5).unwrap_err().is_not_found());
        assert_eq!(read_if_present(&missing, 5).unwrap(), None);
    }

    #[test]
    fn refuses_fifos_devices_directories_and_big_files_promptly() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let big = dir.path().join("big");
        File::create(&big).unwrap().set_len(2 << 30).unwrap();
        let started = Instant::now();
        for (path, expected) in [
            (&fifo, "is a FIFO (named pipe), not a regular file"),
            (&zero, "is a character device"),
            (&dir.path().to_owned(), "is a directory"),
            (&big, "is 2048 MiB (more than the 1 MiB"),
        ] {
            let err = read(path, SMALL_FILE_MAX).unwrap_err();
            let message = err.to_string();
            assert!(
                message.starts_with(&path.display().to_string()),
                "{message}"
            );
            assert!(message.contains(expected), "{message}");
        }
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_file_over_the_cap_is_refused_even_when_it_grows() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, vec![b'a'; 11]).unwrap();
        let err = read(&file, 10).unwrap_err();
        assert!(matches!(
            err.problem,
            Problem::TooLarge { size: 11, max: 10 }
        ));
        assert_eq!(read(&file, 11).unwrap().len(), 11);
    }
}
