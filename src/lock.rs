//! One renewal per certificate at a time, across processes.
//!
//! An advisory `flock` on `STATE_DIR/locks/NAME.lock`. The kernel drops it when the holder's
//! file is closed, also when the process is killed, so a crashed run never leaves a stale lock
//! behind. The holder writes its pid into the file only so that a waiting run can name it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::store;

const POLL: Duration = Duration::from_millis(100);

/// Serialises renewals of one certificate: a file lock on one host, an etcd lock bound to a
/// lease in a fleet (`fleet::lock`).
pub trait RenewLock: Send + Sync {
    /// Takes the lock for `name`, waiting up to `wait` for another holder to finish.
    fn acquire(&self, name: &str, wait: Duration) -> Result<LockGuard, LockError>;
}

/// Holds the lock until dropped.
pub struct LockGuard {
    file: Option<File>,
    name: String,
    /// How another backend (the fleet's etcd lock) lets go.
    release: Option<Box<dyn FnOnce() + Send>>,
    /// What the backend did on taking it (the fleet installed its current version).
    note: Option<String>,
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl LockGuard {
    /// A lock held by another backend; `release` runs when the guard is dropped.
    pub fn held_elsewhere(name: &str, release: Box<dyn FnOnce() + Send>) -> Self {
        Self {
            file: None,
            name: name.to_owned(),
            release: Some(release),
            note: None,
        }
    }

    /// The lock, with what the backend did on taking it: the pipeline reports it and looks
    /// at the certificate again.
    #[must_use]
    pub fn with_note(mut self, note: String) -> Self {
        self.note = Some(note);
        self
    }

    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Closing the file releases it too; unlocking first just makes the order explicit.
        if let Some(file) = &self.file {
            let _ = file.unlock();
        }
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

/// Why the lock was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    #[error(
        "certificate \"{name}\" is being renewed by another evercert{}; waited {} — try again when it finishes",
        holder(*.holder_pid),
        waited_for(*.waited)
    )]
    Busy {
        name: String,
        holder_pid: Option<u32>,
        waited: Duration,
    },
    #[error(
        "certificate name {name:?} cannot be used as a file name; use {}",
        crate::names::RULE
    )]
    InvalidName { name: String },
    /// The fleet's lock could not be asked for (etcd unreachable, without quorum).
    #[error("certificate \"{name}\": cannot take the fleet's renewal lock: {message}")]
    Fleet { name: String, message: String },
    #[error(
        "certificate \"{name}\": cannot {action} the lock file {path}: {message}; give evercert write access to its directory (systemd: ReadWritePaths=)"
    )]
    Io {
        name: String,
        action: &'static str,
        path: PathBuf,
        message: String,
    },
}

fn holder(pid: Option<u32>) -> String {
    pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
}

fn waited_for(waited: Duration) -> String {
    if waited >= Duration::from_secs(1) {
        format!("{}s", waited.as_secs())
    } else {
        format!("{}ms", waited.as_millis())
    }
}

/// Lock files in one directory, usually `STATE_DIR/locks`.
#[derive(Debug, Clone)]
pub struct FileLock {
    dir: PathBuf,
}

impl FileLock {
    /// `dir` is the lock directory itself (`STATE_DIR/locks`); it is created on first use.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.lock"))
    }

    fn open(&self, name: &str, path: &Path) -> Result<File, LockError> {
        let io_error = |action, path: &Path, err: io::Error| LockError::Io {
            name: name.to_owned(),
            action,
            path: path.to_owned(),
            message: err.to_string(),
        };
        store::ensure_dir(&self.dir)
            .map_err(|(dir, err)| io_error("create the directory of", &dir, err))?;
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            // A symlink planted at the lock's name must not make us write the pid elsewhere.
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
            .map_err(|err| io_error("open", path, err))
    }
}

impl RenewLock for FileLock {
    fn acquire(&self, name: &str, wait: Duration) -> Result<LockGuard, LockError> {
        if store::check_name(name).is_err() {
            return Err(LockError::InvalidName {
                name: name.to_owned(),
            });
        }
        let path = self.path(name);
        let file = self.open(name, &path)?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    let waited = started.elapsed();
                    if waited >= wait {
                        return Err(LockError::Busy {
                            name: name.to_owned(),
                            holder_pid: read_pid(&file),
                            waited,
                        });
                    }
                    std::thread::sleep(POLL.min(wait - waited));
                }
                Err(TryLockError::Error(err)) => {
                    return Err(LockError::Io {
                        name: name.to_owned(),
                        action: "lock",
                        path,
                        message: err.to_string(),
                    });
                }
            }
        }
        // Only informative, so a failure to record the pid does not fail the renewal.
        let pid = format!("{}\n", std::process::id());
        let _ = file
            .set_len(0)
            .and_then(|()| file.write_all_at(pid.as_bytes(), 0));
        Ok(LockGuard {
            file: Some(file),
            name: name.to_owned(),
            release: None,
            note: None,
        })
    }
}

fn read_pid(file: &File) -> Option<u32> {
    let mut buf = [0_u8; 32];
    let len = file.read_at(&mut buf, 0).ok()?;
    std::str::from_utf8(&buf[..len]).ok()?.trim().parse().ok()
}

/// The file a running agent holds locked for its whole life, in the lock directory. A
/// certificate's name never starts with a dot, so it cannot collide with a renewal's lock.
const AGENT_LOCK: &str = ".agent.lock";

/// A running agent, as `status` sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AgentInfo {
    pub pid: Option<u32>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub since: Option<time::OffsetDateTime>,
}

/// Held by `evercert run` until it exits: tells `status` (and a second agent) that an
/// agent looks after this state directory. The kernel drops it with the process.
#[derive(Debug)]
pub struct AgentLock {
    _file: File,
}

/// Why the agent lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum AgentLockError {
    #[error(
        "another evercert agent{} already runs for this state directory (its lock: {path}); stop it first, or give this configuration its own state_dir",
        crate::lock::holder(.holder.pid)
    )]
    Busy { path: PathBuf, holder: AgentInfo },
    #[error(
        "cannot take the agent lock {path}: {message}; give evercert write access to its directory (systemd: ReadWritePaths=)"
    )]
    Io { path: PathBuf, message: String },
}

/// Holds the lock under which an account at one CA is looked up and, when none is stored,
/// registered. Two connections in one state_dir (the agent's ARI poll and its first renewal,
/// or the agent and a one-shot `renew`) would otherwise both find no account and both
/// register, leaving an unused account at the CA. Blocks until the lock is free: the holder's
/// registration is bounded by the ACME client's own deadlines, and the wait by `wait` (a
/// holder that is stopped or hung must not stall every renewal behind it). `account` is the
/// account's directory name; the leading dot keeps the file apart from certificate locks.
pub fn hold_registration(state_dir: &Path, account: &str, wait: Duration) -> Result<File, String> {
    let locks = FileLock::new(state_dir.join("locks"));
    let path = locks.dir.join(format!(".account-{account}.lock"));
    let failed = |message: String| {
        format!(
            "cannot take the account lock {}: {message}; give evercert write access to its directory (systemd: ReadWritePaths=)",
            path.display()
        )
    };
    let file = locks.open(account, &path).map_err(|err| match err {
        LockError::Io { message, .. } => failed(message),
        other => failed(other.to_string()),
    })?;
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) if started.elapsed() < wait => {
                std::thread::sleep(POLL.min(wait.saturating_sub(started.elapsed())));
            }
            Err(TryLockError::WouldBlock) => {
                return Err(failed(format!(
                    "another evercert process{} has been registering the account for {}s",
                    holder(read_pid(&file)),
                    wait.as_secs()
                )));
            }
            Err(TryLockError::Error(err)) => return Err(failed(err.to_string())),
        }
    }
}

fn agent_lock_path(state_dir: &Path) -> PathBuf {
    state_dir.join("locks").join(AGENT_LOCK)
}

/// Takes the agent lock of `state_dir` and records this process and `since` in it.
pub fn hold_agent(
    state_dir: &Path,
    since: time::OffsetDateTime,
) -> Result<AgentLock, AgentLockError> {
    let path = agent_lock_path(state_dir);
    let io = |err: io::Error| AgentLockError::Io {
        path: path.clone(),
        message: err.to_string(),
    };
    let file = FileLock::new(state_dir.join("locks"))
        .open("agent", &path)
        .map_err(|err| AgentLockError::Io {
            path: path.clone(),
            message: err.to_string(),
        })?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(AgentLockError::Busy {
                holder: read_agent(&file),
                path,
            });
        }
        Err(TryLockError::Error(err)) => return Err(io(err)),
    }
    let text = format!("{}\n{}\n", std::process::id(), crate::units::rfc3339(since));
    file.set_len(0)
        .and_then(|()| file.write_all_at(text.as_bytes(), 0))
        .map_err(io)?;
    Ok(AgentLock { _file: file })
}

/// The agent running for `state_dir`, if one holds its lock.
pub fn running_agent(state_dir: &Path) -> Option<AgentInfo> {
    held_by(&agent_lock_path(state_dir)).map(|file| read_agent(&file))
}

/// The pid of the process renewing `name` right now, if one holds its lock (`Some(None)` when
/// the pid cannot be read).
pub fn renewing(state_dir: &Path, name: &str) -> Option<Option<u32>> {
    if store::check_name(name).is_err() {
        return None;
    }
    held_by(&FileLock::new(state_dir.join("locks")).path(name)).map(|file| read_pid(&file))
}

/// The lock file at `path`, when another process holds it. Opened read-only and never
/// created: looking must not change the state directory.
fn held_by(path: &Path) -> Option<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .ok()?;
    match file.try_lock_shared() {
        Err(TryLockError::WouldBlock) => Some(file),
        // Free (released at once by closing), or a file system without locks: no holder.
        _ => None,
    }
}

fn read_agent(file: &File) -> AgentInfo {
    let mut buf = [0_u8; 128];
    let len = file.read_at(&mut buf, 0).unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..len]);
    let mut lines = text.lines();
    let pid = lines.next().and_then(|line| line.trim().parse().ok());
    let since = lines.next().and_then(|line| {
        time::OffsetDateTime::parse(line.trim(), &time::format_description::well_known::Rfc3339)
            .ok()
    });
    AgentInfo { pid, since }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    const WAIT: Duration = Duration::from_secs(10);

    #[test]
    fn a_second_registration_waits_until_the_first_is_done() {
        let tmp = tempfile::tempdir().unwrap();
        let first = hold_registration(tmp.path(), "ca.test-1", WAIT).unwrap();
        let (sent, received) = std::sync::mpsc::channel();
        let state_dir = tmp.path().to_owned();
        let waiter = std::thread::spawn(move || {
            let second = hold_registration(&state_dir, "ca.test-1", WAIT);
            sent.send(second.is_ok()).unwrap();
        });
        // Another CA's account is not held up by this one.
        drop(hold_registration(tmp.path(), "other.test-1", WAIT).unwrap());
        assert!(received.recv_timeout(Duration::from_millis(300)).is_err());
        drop(first);
        assert_eq!(received.recv_timeout(Duration::from_secs(10)), Ok(true));
        waiter.join().unwrap();
        assert!(tmp.path().join("locks/.account-ca.test-1.lock").is_file());
        // A holder that never lets go stalls the next one only for the wait.
        let _stuck = hold_registration(tmp.path(), "ca.test-1", WAIT).unwrap();
        let err =
            hold_registration(tmp.path(), "ca.test-1", Duration::from_millis(200)).unwrap_err();
        assert!(err.contains("has been registering the account"), "{err}");
    }

    #[test]
    fn a_second_holder_in_one_process_gets_busy_after_the_wait() {
        let tmp = tempfile::tempdir().unwrap();
        let locks = FileLock::new(tmp.path().join("state/locks"));
        let first = locks.acquire("shop", Duration::ZERO).unwrap();
        assert_eq!(first.name(), "shop");

        let started = Instant::now();
        let err = locks
            .acquire("shop", Duration::from_millis(300))
            .unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(300));
        match &err {
            LockError::Busy {
                name,
                holder_pid,
                waited,
            } => {
                assert_eq!(name, "shop");
                assert_eq!(*holder_pid, Some(std::process::id()));
                assert!(*waited >= Duration::from_millis(300));
            }
            other => panic!("expected Busy, got {other}"),
        }
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "certificate \"shop\" is being renewed by another evercert (pid {})",
                std::process::id()
            )),
            "{message}"
        );
        assert!(message.contains("try again when it finishes"), "{message}");

        // Other certificates are not held up.
        let _other = locks.acquire("blog", Duration::ZERO).unwrap();
        drop(first);
        let _again = locks.acquire("shop", Duration::ZERO).unwrap();
    }

    #[test]
    fn a_lock_held_by_a_killed_process_does_not_block() {
        let tmp = tempfile::tempdir().unwrap();
        let locks = FileLock::new(tmp.path().join("locks"));
        std::fs::create_dir_all(tmp.path().join("locks")).unwrap();
        let path = locks.path("shop");
        // bash holds fd 9 (and its flock) across `exec sleep`, so the child's pid is the holder.
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(r#"exec 9>>"$0"; flock 9; echo $$ >&9; echo locked; exec sleep 60"#)
            .arg(&path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked");

        let err = locks
            .acquire("shop", Duration::from_millis(150))
            .unwrap_err();
        assert!(
            matches!(err, LockError::Busy { holder_pid: Some(pid), .. } if pid == child.id()),
            "{err}"
        );

        child.kill().unwrap();
        child.wait().unwrap();
        let guard = locks.acquire("shop", Duration::from_secs(2)).unwrap();
        let recorded = std::fs::read_to_string(&path).unwrap();
        assert_eq!(recorded.trim(), std::process::id().to_string());
        drop(guard);
    }

    #[test]
    fn the_agent_lock_names_the_running_agent_and_is_exclusive() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(running_agent(tmp.path()), None);
        let since = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let held = hold_agent(tmp.path(), since).unwrap();
        let info = running_agent(tmp.path()).unwrap();
        assert_eq!(info.pid, Some(std::process::id()));
        assert_eq!(info.since, Some(since));
        let err = hold_agent(tmp.path(), since).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "another evercert agent (pid {}) already runs",
                std::process::id()
            )),
            "{err}"
        );
        drop(held);
        assert_eq!(running_agent(tmp.path()), None);
        // A renewal's lock is seen the same way, and a name that is no file name is none.
        let locks = FileLock::new(tmp.path().join("locks"));
        assert_eq!(renewing(tmp.path(), "shop"), None);
        let guard = locks.acquire("shop", Duration::ZERO).unwrap();
        assert_eq!(renewing(tmp.path(), "shop"), Some(Some(std::process::id())));
        drop(guard);
        assert_eq!(renewing(tmp.path(), "shop"), None);
        assert_eq!(renewing(tmp.path(), "../x"), None);
    }

    #[test]
    fn bad_names_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let locks = FileLock::new(tmp.path());
        for bad in ["", "../shop", ".hidden", "a/b"] {
            assert!(
                matches!(
                    locks.acquire(bad, Duration::ZERO),
                    Err(LockError::InvalidName { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_symlink_planted_at_the_lock_name_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let locks = FileLock::new(tmp.path().join("locks"));
        std::fs::create_dir_all(tmp.path().join("locks")).unwrap();
        std::os::unix::fs::symlink(&victim, locks.path("shop")).unwrap();
        let err = locks.acquire("shop", Duration::ZERO).unwrap_err();
        assert!(matches!(err, LockError::Io { .. }), "{err}");
        assert!(err.to_string().contains("shop.lock"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    }
}
