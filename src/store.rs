//! Where issued certificates are kept, and how a new one goes live.
//!
//! Every issued key+chain is a version in `STATE_DIR/archive/NAME/VERSION/`. One relative
//! symlink, `STATE_DIR/live/NAME`, says which version is live, and it is replaced with a single
//! rename; the configured `cert_path` and `key_path` are symlinks into it. So the key and the
//! chain flip together: a crash at any instant leaves the old or the new pair, never a new key
//! beside an old chain (two renames of two plain files could).
//!
//! Directories are 0755, not 0700: the web server must traverse them to read through the
//! symlinks. Secrecy rests on the key file's own mode (0600, or `key_mode` with a group), which
//! it has from its creation, before its first byte is written.
//!
//! Test-only: when `EVERCERT_TEST_STORE_DELAY_MS` is set, `install` sleeps that many
//! milliseconds between its steps so crash tests can kill the process mid-way. Never set it in
//! production.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::{fsread, inventory};

const KEY_FILE: &str = "privkey.pem";
const CHAIN_FILE: &str = "fullchain.pem";
const BUNDLE_FILE: &str = "bundle.pem";
const META_FILE: &str = "meta.json";
const DIR_MODE: u32 = 0o755;
const CHAIN_MODE: u32 = 0o644;
const STAGING_PREFIX: &str = ".tmp-";
/// The start of the name of the empty file [`check_writable`] creates and removes.
const PROBE_PREFIX: &str = ".evercert-probe-";
const PATH_TEMP_SUFFIX: &str = ".evercert-tmp";
const DELAY_ENV: &str = "EVERCERT_TEST_STORE_DELAY_MS";

/// A freshly issued key and chain, as the ACME order produced them.
pub struct NewPair<'a> {
    pub key_pem: &'a [u8],
    pub chain_pem: &'a [u8],
    pub serial: &'a str,
    pub not_after: OffsetDateTime,
    pub domains: &'a [String],
    /// When it is stored: the archive's version name and `issued_at` (the caller's clock;
    /// the store reads none).
    pub issued_at: OffsetDateTime,
}

// By hand, so that the key never reaches a log through `{:?}`.
impl fmt::Debug for NewPair<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewPair")
            .field("key_pem", &"<redacted>")
            .field("chain_pem_len", &self.chain_pem.len())
            .field("serial", &self.serial)
            .field("not_after", &self.not_after)
            .field("domains", &self.domains)
            .field("issued_at", &self.issued_at)
            .finish()
    }
}

/// One managed certificate and where the web server reads it.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub name: &'a str,
    pub cert_path: &'a Path,
    pub key_path: &'a Path,
    pub key_mode: u32,
    pub owner: Option<&'a str>,
    pub group: Option<&'a str>,
    /// Key and full chain in one file (HAProxy), flipped together with the other two.
    pub bundle_path: Option<&'a Path>,
}

impl<'a> Target<'a> {
    /// Every path the web server reads: certificate, key, and the bundle when there is one.
    fn files(&self) -> impl Iterator<Item = &'a Path> + use<'a> {
        [Some(self.cert_path), Some(self.key_path), self.bundle_path]
            .into_iter()
            .flatten()
    }
}

/// A version directory under `archive/NAME/`; names sort by the second they were made.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VersionId(pub String);

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What `install` made live, and what was live just before (the rollback target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub version: VersionId,
    pub previous: Option<VersionId>,
}

/// Why the store could not do its job; each message names the path and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error(
        "certificate name {name:?} cannot be used as a directory name; use {}",
        crate::names::RULE
    )]
    InvalidName { name: String },
    #[error(
        "certificate \"{name}\": key_mode {mode:04o} would let other users read the private key; use 0600, or 0640 with `group`"
    )]
    KeyMode { name: String, mode: u32 },
    #[error(
        "certificate \"{name}\": {kind} {who:?} is not in {file}; create it, or give a numeric id"
    )]
    UnknownOwner {
        name: String,
        kind: &'static str,
        who: String,
        file: &'static str,
    },
    #[error("certificate \"{name}\": {path}: {reason}")]
    BadTarget {
        name: String,
        path: PathBuf,
        reason: &'static str,
    },
    /// What is at a configured path may not be archived or replaced.
    #[error("certificate \"{name}\": {path} {reason}")]
    Refused {
        name: String,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "certificate \"{name}\": version {version:?} is not a complete version in {path}; pick one of the versions listed there"
    )]
    UnknownVersion {
        name: String,
        version: String,
        path: PathBuf,
    },
    #[error(
        "certificate \"{name}\": {path} does not point into {live}, so a rollback would change nothing served; renew once so evercert manages it"
    )]
    NotManaged {
        name: String,
        path: PathBuf,
        live: PathBuf,
    },
    /// The fleet (etcd) refused or could not take the new version.
    #[error("certificate \"{name}\": {message}")]
    Fleet { name: String, message: String },
    #[error("{}cannot {action} {path}: {message}; {hint}", cert_prefix(.name))]
    Io {
        /// The certificate, or empty for files that belong to none (account credentials).
        name: String,
        action: &'static str,
        path: PathBuf,
        message: String,
        hint: String,
    },
}

fn cert_prefix(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!("certificate \"{name}\": ")
    }
}

fn io_error(name: &str, action: &'static str, path: &Path, err: &io::Error) -> StoreError {
    use io::ErrorKind as Kind;
    let dir = parent_dir(path);
    let hint = match err.kind() {
        Kind::PermissionDenied | Kind::ReadOnlyFilesystem if action.starts_with("read") => {
            format!("give evercert read access to {}", path.display())
        }
        // Under systemd's ProtectSystem=strict every path not in ReadWritePaths= is a
        // read-only mount: that, not the file's permissions, is then what to fix.
        Kind::ReadOnlyFilesystem => format!(
            "{} is on a read-only file system; if evercert runs under systemd, add the directory \
             to ReadWritePaths= in the unit (systemctl edit evercert), otherwise remount it read-write",
            dir.display()
        ),
        Kind::PermissionDenied => format!(
            "permission denied: give evercert's user write access to {} (under systemd also check \
             ReadWritePaths= and the unit's User=)",
            dir.display()
        ),
        Kind::NotADirectory => format!(
            "a parent of {} is a file, not a directory; fix the path in the configuration",
            path.display()
        ),
        Kind::StorageFull | Kind::QuotaExceeded => {
            format!("free disk space on the file system of {}", dir.display())
        }
        Kind::NotFound => "check that the path exists and is spelled right".to_owned(),
        _ => "check the path, its permissions and its file system".to_owned(),
    };
    StoreError::Io {
        name: name.to_owned(),
        action,
        path: path.to_owned(),
        message: err.to_string(),
        hint,
    }
}

/// Where versions are kept and which one is live. The fleet's store (`fleet::store`)
/// publishes to etcd first, then installs through this one.
pub trait CertStore: Send + Sync {
    /// Removes temp files of a crashed run for this target; idempotent.
    fn recover(&self, target: &Target<'_>) -> Result<(), StoreError>;
    /// Writes a new version and makes it live (migrating plain files first). Nothing live
    /// changes if it fails before the flip.
    fn install(&self, target: &Target<'_>, pair: &NewPair<'_>) -> Result<Installed, StoreError>;
    /// Makes an earlier version live again.
    fn rollback(&self, target: &Target<'_>, to: &VersionId) -> Result<(), StoreError>;
    /// The live version, if any.
    fn current(&self, name: &str) -> Result<Option<VersionId>, StoreError>;
    /// Every stored version, oldest first.
    fn versions(&self, name: &str) -> Result<Vec<VersionId>, StoreError>;
    /// Proves, before anything is ordered, that `install` can do its job: every directory it
    /// writes is writable (a file is created and removed in each), and what is at the
    /// configured paths may be archived and replaced. A sandbox mistake then costs no
    /// issuance against the CA's limits.
    fn preflight(&self, target: &Target<'_>) -> Result<(), StoreError>;
    /// Removes the oldest versions (their keys with them) beyond the newest `keep`, never the
    /// live one nor the rollback target; returns what was removed.
    fn prune(
        &self,
        name: &str,
        keep: usize,
        installed: &Installed,
    ) -> Result<Vec<VersionId>, StoreError>;
    /// The chain and key PEM of a stored version (to deploy a version issued earlier).
    fn read_version(
        &self,
        name: &str,
        version: &VersionId,
    ) -> Result<(Vec<u8>, Vec<u8>), StoreError>;
}

/// The store on the local file system, under `state_dir`.
#[derive(Debug, Clone)]
pub struct FsStore {
    state_dir: PathBuf,
    step_delay: Option<Duration>,
}

impl FsStore {
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        let state_dir = state_dir.into();
        // The cert/key symlinks are absolute, so a relative state_dir must not leak into them.
        let state_dir = std::path::absolute(&state_dir).unwrap_or(state_dir);
        let step_delay = std::env::var(DELAY_ENV)
            .ok()
            .and_then(|ms| ms.trim().parse::<u64>().ok())
            .map(Duration::from_millis);
        Self {
            state_dir,
            step_delay,
        }
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Where `cert_path` (`CHAIN_FILE`) or `key_path` (`KEY_FILE`) point once managed.
    pub fn live_file(&self, name: &str, file: &str) -> PathBuf {
        self.live_dir().join(name).join(file)
    }

    fn archive_dir(&self) -> PathBuf {
        self.state_dir.join("archive")
    }

    fn versions_dir(&self, name: &str) -> PathBuf {
        self.archive_dir().join(name)
    }

    fn live_dir(&self) -> PathBuf {
        self.state_dir.join("live")
    }

    fn pause(&self) {
        if let Some(delay) = self.step_delay {
            std::thread::sleep(delay);
        }
    }

    fn check_target(&self, target: &Target<'_>) -> Result<(), StoreError> {
        let name = target.name;
        check_name(name)?;
        if target.key_mode & !0o777 != 0 || target.key_mode & 0o007 != 0 {
            return Err(StoreError::KeyMode {
                name: name.to_owned(),
                mode: target.key_mode,
            });
        }
        if target.cert_path == target.key_path {
            return Err(bad_target(
                name,
                target.key_path,
                "cert_path and key_path are the same file; give the key its own file",
            ));
        }
        if let Some(bundle) = target.bundle_path
            && (bundle == target.cert_path || bundle == target.key_path)
        {
            return Err(bad_target(
                name,
                bundle,
                "bundle_path is the same file as cert_path or key_path; give the bundle its own file",
            ));
        }
        for path in target.files() {
            if path.file_name().is_none() {
                return Err(bad_target(
                    name,
                    path,
                    "not a file path; give a path that ends in a file name",
                ));
            }
            let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
            if path.starts_with(self.live_dir()) || path.starts_with(self.archive_dir()) {
                return Err(bad_target(
                    name,
                    &path,
                    "lies inside evercert's own state directory; point the web server at a path outside it",
                ));
            }
        }
        Ok(())
    }

    /// Creates the state layout (0755 so the web server can traverse it).
    fn ensure_layout(&self, name: &str) -> Result<(), StoreError> {
        for dir in [self.versions_dir(name), self.live_dir()] {
            ensure_dir(&dir)
                .map_err(|(path, err)| io_error(name, "create directory", &path, &err))?;
        }
        Ok(())
    }

    /// Writes one version into a staging directory, then renames it into place. Invisible to
    /// the web server until `flip_live`.
    fn store_version(
        &self,
        name: &str,
        owner: Ownership,
        key_mode: u32,
        content: &VersionContent<'_>,
    ) -> Result<VersionId, StoreError> {
        let versions_dir = self.versions_dir(name);
        let staging = create_staging_dir(name, &versions_dir)?;
        let stored = self.fill_and_commit(name, owner, key_mode, content, &staging);
        if stored.is_err() {
            // Best effort: `recover` removes it otherwise.
            let _ = fs::remove_dir_all(&staging);
        }
        stored
    }

    fn fill_and_commit(
        &self,
        name: &str,
        owner: Ownership,
        key_mode: u32,
        content: &VersionContent<'_>,
        staging: &Path,
    ) -> Result<VersionId, StoreError> {
        let key_path = staging.join(KEY_FILE);
        let key = create_key_file(&key_path, owner, key_mode)
            .map_err(|err| io_error(name, "create the key file", &key_path, &err))?;
        write_and_sync(key, content.key_pem)
            .map_err(|err| io_error(name, "write", &key_path, &err))?;
        self.pause();

        let chain_path = staging.join(CHAIN_FILE);
        let chain = create_new_file(&chain_path, CHAIN_MODE)
            .and_then(|file| {
                file.set_permissions(Permissions::from_mode(CHAIN_MODE))?;
                owner.apply(&file)?;
                Ok(file)
            })
            .map_err(|err| io_error(name, "create", &chain_path, &err))?;
        write_and_sync(chain, content.chain_pem)
            .map_err(|err| io_error(name, "write", &chain_path, &err))?;
        self.pause();

        // Key and chain in one file for servers that want that (HAProxy): a secret, so it is
        // made like the key file. Every version has one, so any version can be rolled back to.
        let bundle_path = staging.join(BUNDLE_FILE);
        let mut bundle = content.key_pem.to_vec();
        if !bundle.ends_with(b"\n") {
            bundle.push(b'\n');
        }
        bundle.extend_from_slice(content.chain_pem);
        let file = create_key_file(&bundle_path, owner, key_mode)
            .map_err(|err| io_error(name, "create the bundle file", &bundle_path, &err))?;
        write_and_sync(file, &bundle).map_err(|err| io_error(name, "write", &bundle_path, &err))?;

        // Last, so a version with meta.json is known to be complete.
        let meta_path = staging.join(META_FILE);
        let meta = serde_json::to_vec_pretty(&content.meta).unwrap_or_default();
        create_new_file(&meta_path, CHAIN_MODE)
            .and_then(|file| {
                file.set_permissions(Permissions::from_mode(CHAIN_MODE))?;
                write_and_sync(file, &meta)
            })
            .map_err(|err| io_error(name, "write", &meta_path, &err))?;
        sync_dir(staging).map_err(|err| io_error(name, "fsync directory", staging, &err))?;
        self.pause();

        let versions_dir = parent_dir(staging);
        let version = unique_version(&versions_dir, &content.version_base)
            .map_err(|err| io_error(name, "list", &versions_dir, &err))?;
        let final_dir = versions_dir.join(&version.0);
        fs::rename(staging, &final_dir)
            .map_err(|err| io_error(name, "rename a staged version to", &final_dir, &err))?;
        self.pause();
        sync_dir(&versions_dir)
            .map_err(|err| io_error(name, "fsync directory", &versions_dir, &err))?;
        Ok(version)
    }

    /// The one atomic step: `live/NAME` now names `version`.
    fn flip_live(&self, name: &str, version: &VersionId) -> Result<(), StoreError> {
        let live_dir = self.live_dir();
        let link = live_dir.join(name);
        let points_to = Path::new("..").join("archive").join(name).join(&version.0);
        let tmp = create_temp_symlink(&points_to, || {
            live_dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()))
        })
        .map_err(|(path, err)| io_error(name, "create symlink", &path, &err))?;
        self.pause();
        if let Err(err) = fs::rename(&tmp, &link) {
            let _ = fs::remove_file(&tmp);
            return Err(io_error(name, "replace symlink", &link, &err));
        }
        self.pause();
        sync_dir(&live_dir).map_err(|err| io_error(name, "fsync directory", &live_dir, &err))
    }

    /// Replaces `path` (a plain file, a foreign symlink, or nothing) with an absolute symlink
    /// to `live/NAME/file`.
    fn point_at_live(&self, name: &str, path: &Path, file: &str) -> Result<(), StoreError> {
        let dir = parent_dir(path);
        let tmp = path_temp(path);
        // Only a temp that is there is removed: unlink() of a missing name on a read-only file
        // system fails with EROFS, which must not be blamed on a "stale temp" that is not there.
        match fs::symlink_metadata(&tmp) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(io_error(name, "inspect", &tmp, &err)),
            Ok(_) => fs::remove_file(&tmp)
                .map_err(|err| io_error(name, "remove the stale temp", &tmp, &err))?,
        }
        // symlink() never follows anything planted at `tmp`: it fails with EEXIST instead.
        std::os::unix::fs::symlink(self.live_file(name, file), &tmp)
            .map_err(|err| io_error(name, "create symlink", &tmp, &err))?;
        self.pause();
        if let Err(err) = fs::rename(&tmp, path) {
            let _ = fs::remove_file(&tmp);
            return Err(io_error(name, "replace", path, &err));
        }
        self.pause();
        sync_dir(&dir).map_err(|err| io_error(name, "fsync directory", &dir, &err))
    }

    /// Brings plain files or foreign symlinks under management without changing, at any
    /// instant, what the pair resolves to: the existing pair is archived and made live first.
    fn migrate(
        &self,
        target: &Target<'_>,
        owner: Ownership,
        cert_state: PathState,
        key_state: PathState,
        existing: Option<ExistingPair>,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let name = target.name;
        if let Some(ExistingPair { key, chain }) = existing {
            let imported = match self.version_holding(name, &key, &chain)? {
                Some(version) => version,
                None => {
                    let content = imported_content(target.cert_path, &key, &chain, now);
                    self.store_version(name, owner, target.key_mode, &content)?
                }
            };
            if self.current(name)?.as_ref() != Some(&imported) {
                self.flip_live(name, &imported)?;
            }
        }
        if key_state != PathState::Ours {
            self.point_at_live(name, target.key_path, KEY_FILE)?;
        }
        if cert_state != PathState::Ours {
            self.point_at_live(name, target.cert_path, CHAIN_FILE)?;
        }
        if let Some(bundle) = target.bundle_path
            && self.classify(name, bundle, BUNDLE_FILE)? != PathState::Ours
        {
            self.point_at_live(name, bundle, BUNDLE_FILE)?;
        }
        Ok(())
    }

    /// The live or newest version if it already holds exactly this pair (a crash mid-migration
    /// must not import the same pair again).
    fn version_holding(
        &self,
        name: &str,
        key: &[u8],
        chain: &[u8],
    ) -> Result<Option<VersionId>, StoreError> {
        let candidates = [self.current(name)?, self.versions(name)?.pop()];
        for version in candidates.into_iter().flatten() {
            let dir = self.versions_dir(name).join(&version.0);
            let same = |file: &str, bytes: &[u8]| {
                fsread::read(&dir.join(file), fsread::SMALL_FILE_MAX).is_ok_and(|b| b == bytes)
            };
            if same(KEY_FILE, key) && same(CHAIN_FILE, chain) {
                return Ok(Some(version));
            }
        }
        Ok(None)
    }

    fn classify(&self, name: &str, path: &Path, file: &str) -> Result<PathState, StoreError> {
        match fs::symlink_metadata(path) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(PathState::Missing),
            Err(err) => Err(io_error(name, "inspect", path, &err)),
            Ok(meta) if meta.file_type().is_symlink() => {
                let points_to = fs::read_link(path)
                    .map_err(|err| io_error(name, "read symlink", path, &err))?;
                if points_to == self.live_file(name, file) {
                    Ok(PathState::Ours)
                } else {
                    Ok(PathState::Other)
                }
            }
            Ok(meta) if meta.is_file() => Ok(PathState::Other),
            Ok(meta) => Err(refused(
                name,
                path,
                format!(
                    "is {}, not a certificate or key file; move it away or fix the path",
                    fsread::describe(meta.file_type())
                ),
            )),
        }
    }
}

impl CertStore for FsStore {
    fn recover(&self, target: &Target<'_>) -> Result<(), StoreError> {
        let name = target.name;
        check_name(name)?;
        let versions_dir = self.versions_dir(name);
        for entry in read_dir_names(name, &versions_dir)? {
            if entry.to_string_lossy().starts_with(STAGING_PREFIX) {
                remove_entry(name, &versions_dir.join(&entry))?;
            }
        }
        let live_dir = self.live_dir();
        for entry in read_dir_names(name, &live_dir)? {
            if is_live_temp(name, &entry.to_string_lossy()) {
                remove_entry(name, &live_dir.join(&entry))?;
            }
        }
        for path in target.files() {
            let tmp = path_temp(path);
            match fs::symlink_metadata(&tmp) {
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(io_error(name, "inspect", &tmp, &err)),
                Ok(_) => remove_entry(name, &tmp)?,
            }
        }
        // A run killed inside `preflight` leaves its empty write probe behind: in the archive
        // it would be listed as a version, beside the web server's files it is litter.
        let mut dirs = vec![versions_dir, live_dir];
        dirs.extend(target.files().map(parent_dir));
        dirs.sort();
        dirs.dedup();
        for dir in dirs {
            for entry in read_dir_names(name, &dir)? {
                let probe = dir.join(&entry);
                // Only a plain file is ours; another run may be removing its own right now.
                if is_probe(&entry.to_string_lossy())
                    && fs::symlink_metadata(&probe).is_ok_and(|meta| meta.is_file())
                    && let Err(err) = fs::remove_file(&probe)
                    && err.kind() != io::ErrorKind::NotFound
                {
                    return Err(io_error(name, "remove the stale temp", &probe, &err));
                }
            }
        }
        Ok(())
    }

    fn install(&self, target: &Target<'_>, pair: &NewPair<'_>) -> Result<Installed, StoreError> {
        self.check_target(target)?;
        let name = target.name;
        let owner = Ownership::resolve(name, target.owner, target.group)?;
        // Every directory that will be written must exist before anything changes.
        self.ensure_layout(name)?;
        for path in target.files() {
            ensure_dir(&parent_dir(path))
                .map_err(|(dir, err)| io_error(name, "create directory", &dir, &err))?;
        }
        let cert_state = self.classify(name, target.cert_path, CHAIN_FILE)?;
        let key_state = self.classify(name, target.key_path, KEY_FILE)?;
        let bundle_ours = match target.bundle_path {
            Some(bundle) => self.classify(name, bundle, BUNDLE_FILE)? == PathState::Ours,
            None => true,
        };

        let migrating =
            cert_state != PathState::Ours || key_state != PathState::Ours || !bundle_ours;
        // Judged before anything is written: a refused pair leaves the archive untouched.
        let existing = if migrating {
            existing_pair(target, cert_state, key_state)?
        } else {
            None
        };

        let issued_at = pair.issued_at;
        let content = VersionContent {
            key_pem: pair.key_pem,
            chain_pem: pair.chain_pem,
            version_base: version_base(issued_at, pair.serial, None),
            meta: Meta {
                serial: Some(pair.serial.to_owned()),
                not_after: Some(crate::units::rfc3339(pair.not_after)),
                issued_at: Some(crate::units::rfc3339(issued_at)),
                domains: pair.domains.to_vec(),
                imported: false,
            },
        };
        let version = self.store_version(name, owner, target.key_mode, &content)?;

        if migrating {
            self.migrate(target, owner, cert_state, key_state, existing, issued_at)?;
        }
        let previous = self.current(name)?;
        self.flip_live(name, &version)?;
        Ok(Installed { version, previous })
    }

    fn rollback(&self, target: &Target<'_>, to: &VersionId) -> Result<(), StoreError> {
        let name = target.name;
        check_name(name)?;
        let versions_dir = self.versions_dir(name);
        let dir = versions_dir.join(&to.0);
        let complete = is_component(&to.0)
            && [KEY_FILE, CHAIN_FILE, META_FILE]
                .iter()
                .all(|file| fs::symlink_metadata(dir.join(file)).is_ok_and(|m| m.is_file()));
        if !complete {
            return Err(StoreError::UnknownVersion {
                name: name.to_owned(),
                version: to.0.clone(),
                path: versions_dir,
            });
        }
        for (path, file) in [(target.cert_path, CHAIN_FILE), (target.key_path, KEY_FILE)] {
            if self.classify(name, path, file)? != PathState::Ours {
                return Err(StoreError::NotManaged {
                    name: name.to_owned(),
                    path: path.to_owned(),
                    live: self.live_file(name, file),
                });
            }
        }
        self.flip_live(name, to)
    }

    fn current(&self, name: &str) -> Result<Option<VersionId>, StoreError> {
        check_name(name)?;
        let link = self.live_dir().join(name);
        match fs::read_link(&link) {
            Ok(points_to) => Ok(points_to
                .file_name()
                .map(|version| VersionId(version.to_string_lossy().into_owned()))),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(io_error(name, "read symlink", &link, &err)),
        }
    }

    fn versions(&self, name: &str) -> Result<Vec<VersionId>, StoreError> {
        check_name(name)?;
        let dir = self.versions_dir(name);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(io_error(name, "list", &dir, &err)),
        };
        let mut versions = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|err| io_error(name, "list", &dir, &err))?;
            let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
            if let Ok(version) = entry.file_name().into_string()
                && is_dir
                && !version.starts_with('.')
            {
                // Names carry the second; within one second (forced renewals) the time
                // meta.json was written, the version's last file, tells the order.
                let written = fs::symlink_metadata(dir.join(&version).join(META_FILE))
                    .and_then(|meta| meta.modified())
                    .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
                let second = version.split('-').next().unwrap_or_default().to_owned();
                versions.push((second, written, VersionId(version)));
            }
        }
        versions.sort();
        Ok(versions
            .into_iter()
            .map(|(_, _, version)| version)
            .collect())
    }

    fn preflight(&self, target: &Target<'_>) -> Result<(), StoreError> {
        self.check_target(target)?;
        let name = target.name;
        Ownership::resolve(name, target.owner, target.group)?;
        self.ensure_layout(name)?;
        check_writable(name, &self.versions_dir(name))?;
        check_writable(name, &self.live_dir())?;
        for path in target.files() {
            let dir = parent_dir(path);
            ensure_dir(&dir)
                .map_err(|(dir, err)| io_error(name, "create directory", &dir, &err))?;
            check_writable(name, &dir)?;
        }
        let cert_state = self.classify(name, target.cert_path, CHAIN_FILE)?;
        let key_state = self.classify(name, target.key_path, KEY_FILE)?;
        if let Some(bundle) = target.bundle_path {
            self.classify(name, bundle, BUNDLE_FILE)?;
        }
        if cert_state != PathState::Ours || key_state != PathState::Ours {
            existing_pair(target, cert_state, key_state)?;
        }
        Ok(())
    }

    fn prune(
        &self,
        name: &str,
        keep: usize,
        installed: &Installed,
    ) -> Result<Vec<VersionId>, StoreError> {
        let versions = self.versions(name)?;
        let live = self.current(name)?;
        let protected = [
            Some(&installed.version),
            installed.previous.as_ref(),
            live.as_ref(),
        ];
        let newest = versions.len().saturating_sub(keep);
        let versions_dir = self.versions_dir(name);
        let mut removed = Vec::new();
        for version in &versions[..newest] {
            if protected.contains(&Some(version)) {
                continue;
            }
            // Renamed to a staging name first, so it vanishes at once: a crash while its files
            // are deleted leaves a staging directory `recover` removes, not half a version.
            let doomed =
                versions_dir.join(format!("{STAGING_PREFIX}{:016x}", rand::random::<u64>()));
            let from = versions_dir.join(&version.0);
            fs::rename(&from, &doomed)
                .map_err(|err| io_error(name, "remove the old version", &from, &err))?;
            fs::remove_dir_all(&doomed)
                .map_err(|err| io_error(name, "remove the old version", &doomed, &err))?;
            removed.push(version.clone());
        }
        if !removed.is_empty() {
            sync_dir(&versions_dir)
                .map_err(|err| io_error(name, "fsync directory", &versions_dir, &err))?;
        }
        Ok(removed)
    }

    fn read_version(
        &self,
        name: &str,
        version: &VersionId,
    ) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
        check_name(name)?;
        if !is_component(&version.0) {
            return Err(StoreError::UnknownVersion {
                name: name.to_owned(),
                version: version.0.clone(),
                path: self.versions_dir(name),
            });
        }
        let dir = self.versions_dir(name).join(&version.0);
        let read = |file: &str| -> Result<Vec<u8>, StoreError> {
            let path = dir.join(file);
            fsread::read(&path, fsread::SMALL_FILE_MAX).map_err(|err| {
                let io = io::Error::new(err.kind(), err.problem.to_string());
                io_error(name, "read", &path, &io)
            })
        };
        Ok((read(CHAIN_FILE)?, read(KEY_FILE)?))
    }
}

/// Proves `dir` writable by creating and removing a file in it; an error says why not
/// (a read-only file system, permissions) and what to do.
pub fn check_writable(name: &str, dir: &Path) -> Result<(), StoreError> {
    let (probe, file) = loop {
        let probe = dir.join(format!("{PROBE_PREFIX}{:016x}", rand::random::<u64>()));
        match create_new_file(&probe, 0o600) {
            Ok(file) => break (probe, file),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(io_error(name, "create a file in", dir, &err)),
        }
    };
    drop(file);
    match fs::remove_file(&probe) {
        // Another run's `recover` (a certificate sharing the directory) took it: the file was
        // created, which is what this proves.
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            Err(io_error(name, "remove a file in", dir, &err))
        }
        _ => Ok(()),
    }
}

/// `.evercert-probe-<16 hex>`: a probe [`check_writable`] left when its run was killed.
fn is_probe(entry: &str) -> bool {
    entry
        .strip_prefix(PROBE_PREFIX)
        .is_some_and(|random| random.len() == 16 && random.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The http-01 webroot (or the token directory below it, where it exists) is writable.
pub fn check_webroot(name: &str, webroot: &Path) -> Result<(), StoreError> {
    let well_known = webroot.join(".well-known");
    let tokens = well_known.join("acme-challenge");
    let deepest = [tokens.as_path(), well_known.as_path(), webroot]
        .into_iter()
        .find(|dir| fs::metadata(dir).is_ok_and(|meta| meta.is_dir()))
        .unwrap_or(webroot);
    check_writable(name, deepest)
}

/// A private scratch directory for a dry run: `STATE_DIR/.dry-run-<random>`, mode 0700, made
/// fresh with mkdir (which never follows a planted symlink and fails if the name exists, so
/// nothing is reused), removed with everything in it when dropped.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    pub fn create(state_dir: &Path) -> Result<Self, StoreError> {
        loop {
            let path = state_dir.join(format!(".dry-run-{:016x}", rand::random::<u64>()));
            match DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(Self { path }),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                Err(err) => {
                    return Err(io_error(
                        "",
                        "create a scratch directory in",
                        state_dir,
                        &err,
                    ));
                }
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Writes `bytes` to `path` atomically (temp file beside it with `mode`, O_EXCL|O_NOFOLLOW,
/// fsync, rename, fsync dir). Used for account credentials (0600) too.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StoreError> {
    let Some(file_name) = path.file_name() else {
        return Err(io_error(
            "",
            "write",
            path,
            &io::Error::new(io::ErrorKind::InvalidInput, "not a file path"),
        ));
    };
    let dir = parent_dir(path);
    let (tmp, file) = loop {
        let mut tmp_name = OsString::from(".");
        tmp_name.push(file_name);
        tmp_name.push(format!(".{:016x}.tmp", rand::random::<u64>()));
        let tmp = dir.join(tmp_name);
        match create_new_file(&tmp, mode) {
            Ok(file) => break (tmp, file),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(io_error("", "create a temp file in", &dir, &err)),
        }
    };
    let written = file
        .set_permissions(Permissions::from_mode(mode))
        .and_then(|()| write_and_sync(file, bytes))
        .map_err(|err| io_error("", "write", &tmp, &err))
        .and_then(|()| fs::rename(&tmp, path).map_err(|err| io_error("", "replace", path, &err)));
    if let Err(err) = written {
        let _ = fs::remove_file(&tmp);
        return Err(err);
    }
    sync_dir(&dir).map_err(|err| io_error("", "fsync directory", &dir, &err))
}

/// A certificate name becomes a directory name: it must be one plain path component.
pub(crate) fn check_name(name: &str) -> Result<(), StoreError> {
    if is_component(name) {
        Ok(())
    } else {
        Err(StoreError::InvalidName {
            name: name.to_owned(),
        })
    }
}

fn is_component(name: &str) -> bool {
    crate::names::is_valid(name)
}

/// Creates `dir` and its missing parents with mode 0755 (exactly, whatever the umask), and
/// fsyncs each parent. Existing directories are left as they are.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), (PathBuf, io::Error)> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => {
            return Err((
                dir.to_owned(),
                io::Error::new(io::ErrorKind::NotADirectory, "a file is in the way"),
            ));
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err((dir.to_owned(), err)),
    }
    let parent = parent_dir(dir);
    if parent != dir {
        ensure_dir(&parent)?;
    }
    match DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(err) => return Err((dir.to_owned(), err)),
    }
    fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
        .map_err(|err| (dir.to_owned(), err))?;
    sync_dir(&parent).map_err(|err| (parent, err))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        Some(_) => PathBuf::from("."),
        None => path.to_owned(),
    }
}

fn bad_target(name: &str, path: &Path, reason: &'static str) -> StoreError {
    StoreError::BadTarget {
        name: name.to_owned(),
        path: path.to_owned(),
        reason,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathState {
    Missing,
    /// Already our symlink into `live/NAME`.
    Ours,
    /// A plain file or someone else's symlink.
    Other,
}

/// What goes into one version directory.
struct VersionContent<'a> {
    key_pem: &'a [u8],
    chain_pem: &'a [u8],
    version_base: String,
    meta: Meta,
}

#[derive(Debug, Serialize)]
struct Meta {
    serial: Option<String>,
    not_after: Option<String>,
    issued_at: Option<String>,
    domains: Vec<String>,
    /// True for a pair that was on disk before evercert managed it.
    imported: bool,
}

/// `20261122T103000Z-1a2b3c4d[-suffix]`: sorts by time, and names the serial for humans.
fn version_base(at: OffsetDateTime, serial: &str, suffix: Option<&str>) -> String {
    let stamp = crate::units::compact_stamp(at);
    let serial: String = serial
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let mut base = stamp;
    for part in [Some(serial.as_str()), suffix].into_iter().flatten() {
        if !part.is_empty() {
            base.push('-');
            base.push_str(part);
        }
    }
    base
}

/// `base`, or `base-2`, `base-3`, … whichever is free. Callers hold the renewal lock, so
/// nobody else picks a name for this certificate meanwhile.
fn unique_version(versions_dir: &Path, base: &str) -> io::Result<VersionId> {
    let mut candidate = base.to_owned();
    for n in 2.. {
        match fs::symlink_metadata(versions_dir.join(&candidate)) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => break,
            Err(err) => return Err(err),
            Ok(_) => candidate = format!("{base}-{n}"),
        }
    }
    Ok(VersionId(candidate))
}

/// Facts for the meta.json of a pair found on disk; what cannot be parsed stays null.
/// `now` is the moment of the install that archives it.
fn imported_content<'a>(
    cert_path: &Path,
    key: &'a [u8],
    chain: &'a [u8],
    now: OffsetDateTime,
) -> VersionContent<'a> {
    let facts = leaf_facts(chain);
    let modified = fs::metadata(cert_path)
        .and_then(|meta| meta.modified())
        .ok()
        .map(OffsetDateTime::from);
    // Older than anything `install` is about to store, so it sorts before the new version.
    let stamp = [facts.as_ref().and_then(|f| f.not_before), modified]
        .into_iter()
        .flatten()
        .chain([now - time::Duration::SECOND])
        .min()
        .unwrap_or(now);
    let serial = facts.as_ref().map(|f| f.serial.clone());
    VersionContent {
        key_pem: key,
        chain_pem: chain,
        version_base: version_base(stamp, serial.as_deref().unwrap_or(""), Some("imported")),
        meta: Meta {
            serial,
            not_after: facts
                .as_ref()
                .and_then(|f| f.not_after)
                .map(crate::units::rfc3339),
            issued_at: facts
                .as_ref()
                .and_then(|f| f.not_before)
                .map(crate::units::rfc3339),
            domains: facts.map(|f| f.domains).unwrap_or_default(),
            imported: true,
        },
    }
}

struct LeafFacts {
    serial: String,
    not_before: Option<OffsetDateTime>,
    not_after: Option<OffsetDateTime>,
    domains: Vec<String>,
}

fn leaf_facts(chain_pem: &[u8]) -> Option<LeafFacts> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(chain_pem).ok()?;
    let cert = pem.parse_x509().ok()?;
    let serial = cert
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let at =
        |t: &x509_parser::time::ASN1Time| OffsetDateTime::from_unix_timestamp(t.timestamp()).ok();
    let domains = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                x509_parser::extensions::GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Some(LeafFacts {
        serial,
        not_before: at(&cert.validity().not_before),
        not_after: at(&cert.validity().not_after),
        domains,
    })
}

/// The pair at `cert_path`/`key_path` that is archived before they are replaced, if both
/// hold one (see [`importable`]).
fn existing_pair(
    target: &Target<'_>,
    cert_state: PathState,
    key_state: PathState,
) -> Result<Option<ExistingPair>, StoreError> {
    let chain = importable(target.name, target.cert_path, Held::Chain, cert_state)?;
    let key = importable(target.name, target.key_path, Held::Key, key_state)?;
    Ok(key
        .zip(chain)
        .map(|(key, chain)| ExistingPair { key, chain }))
}

/// A key and chain found at the configured paths, fit to be archived.
struct ExistingPair {
    key: Vec<u8>,
    chain: Vec<u8>,
}

/// What a configured path should hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    Chain,
    Key,
}

/// The content at `path` (through any symlink) if it may go into the archive: the archive is
/// served to the web server's user, so only a certificate chain (mode 0644) or a private key
/// (written like a new key) is ever copied there — never whatever a planted symlink points at.
///
/// `None`: nothing there, or a plain file (or evercert's own link) holding nothing usable
/// (emptied, garbage), which a renewal repairs by replacing it. An error, and nothing is replaced: what it resolves to is
/// not a regular file or is too large, a symlink leads to something that is not a chain or key
/// (someone else's file, not ours to copy or to judge), or cert_path holds a private key.
fn importable(
    name: &str,
    path: &Path,
    held: Held,
    state: PathState,
) -> Result<Option<Vec<u8>>, StoreError> {
    let foreign_symlink = match fs::symlink_metadata(path) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(io_error(name, "inspect", path, &err)),
        // Our own link into `live/` leads to what evercert wrote.
        Ok(meta) => meta.file_type().is_symlink() && state != PathState::Ours,
    };
    let bytes = match fsread::read(path, fsread::SMALL_FILE_MAX) {
        Ok(bytes) => bytes,
        // A dangling symlink: nothing to keep.
        Err(err) if err.is_not_found() => return Ok(None),
        // Permission or I/O trouble: say what to fix, like every other failed read.
        Err(fsread::ReadError {
            problem: fsread::Problem::PermissionDenied,
            ..
        }) => {
            let denied = io::Error::from(io::ErrorKind::PermissionDenied);
            return Err(io_error(
                name,
                "read (to archive it before it is replaced)",
                path,
                &denied,
            ));
        }
        Err(fsread::ReadError {
            problem: fsread::Problem::Io { kind, message },
            ..
        }) => {
            return Err(io_error(
                name,
                "read (to archive it before it is replaced)",
                path,
                &io::Error::new(kind, message),
            ));
        }
        Err(err) => {
            return Err(refused(
                name,
                path,
                format!(
                    "cannot be archived before it is replaced: it {}",
                    err.problem
                ),
            ));
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let (usable, what) = match held {
        Held::Chain => (
            inventory::holds_only_certificates(&bytes),
            "certificate chain",
        ),
        Held::Key => (
            inventory::public_key_of_pem(&bytes).is_some(),
            "private key",
        ),
    };
    if usable {
        return Ok(Some(bytes));
    }
    if held == Held::Chain && inventory::holds_private_key(&bytes) {
        return Err(refused(
            name,
            path,
            "holds a private key; cert_path must hold only certificates (evercert would \
             otherwise copy the key into its archive, readable by all): move the key to key_path \
             or fix the paths in the configuration"
                .to_owned(),
        ));
    }
    if foreign_symlink {
        let points_to = fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        return Err(refused(
            name,
            path,
            format!(
                "is a symlink to {}, which is not a {what}; evercert archives only the pair it \
                 replaces: point the symlink at the {what}, or remove it",
                points_to.display()
            ),
        ));
    }
    Ok(None)
}

fn refused(name: &str, path: &Path, reason: String) -> StoreError {
    StoreError::Refused {
        name: name.to_owned(),
        path: path.to_owned(),
        reason,
    }
}

fn create_staging_dir(name: &str, versions_dir: &Path) -> Result<PathBuf, StoreError> {
    loop {
        let staging = versions_dir.join(format!("{STAGING_PREFIX}{:016x}", rand::random::<u64>()));
        match DirBuilder::new().mode(DIR_MODE).create(&staging) {
            Ok(()) => {
                fs::set_permissions(&staging, Permissions::from_mode(DIR_MODE))
                    .map_err(|err| io_error(name, "set the mode of", &staging, &err))?;
                return Ok(staging);
            }
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => {
                return Err(io_error(
                    name,
                    "create a staging directory in",
                    versions_dir,
                    &err,
                ));
            }
        }
    }
}

/// A new file that did not exist before (O_EXCL) and is not reached through a symlink
/// (O_NOFOLLOW), with at most `mode` from its creation.
fn create_new_file(path: &Path, mode: u32) -> io::Result<File> {
    let nofollow = rustix::fs::OFlags::NOFOLLOW.bits() as i32;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(nofollow)
        .open(path)
}

/// The key file: 0600 at creation, then `key_mode`, then handed to its owner/group — all
/// before the first secret byte. The mode is set while we still own the file, so changing it
/// needs no CAP_FOWNER; until the chown its group is ours, so nobody else gains access early.
fn create_key_file(path: &Path, owner: Ownership, key_mode: u32) -> io::Result<File> {
    let file = create_new_file(path, 0o600)?;
    file.set_permissions(Permissions::from_mode(key_mode))?;
    owner.apply(&file)?;
    Ok(file)
}

fn write_and_sync(mut file: File, bytes: &[u8]) -> io::Result<()> {
    file.write_all(bytes)?;
    file.sync_all()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A new symlink at a fresh name from `next_name`; never replaces what is there.
fn create_temp_symlink(
    points_to: &Path,
    mut next_name: impl FnMut() -> PathBuf,
) -> Result<PathBuf, (PathBuf, io::Error)> {
    loop {
        let tmp = next_name();
        match std::os::unix::fs::symlink(points_to, &tmp) {
            Ok(()) => return Ok(tmp),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err((tmp, err)),
        }
    }
}

/// `.fullchain.pem.evercert-tmp` beside `fullchain.pem`.
fn path_temp(path: &Path) -> PathBuf {
    let mut tmp_name = OsString::from(".");
    tmp_name.push(path.file_name().unwrap_or_default());
    tmp_name.push(PATH_TEMP_SUFFIX);
    parent_dir(path).join(tmp_name)
}

/// `.NAME.<16 hex>.tmp` in `live/`, and not another certificate's (`shop` vs `shop.x`).
fn is_live_temp(name: &str, entry: &str) -> bool {
    entry
        .strip_prefix('.')
        .and_then(|rest| rest.strip_prefix(name))
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|rest| rest.strip_suffix(".tmp"))
        .is_some_and(|random| random.len() == 16 && random.chars().all(|c| c.is_ascii_hexdigit()))
}

fn read_dir_names(name: &str, dir: &Path) -> Result<Vec<OsString>, StoreError> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map_err(|err| io_error(name, "list", dir, &err)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(err) => Err(io_error(name, "list", dir, &err)),
    }
}

/// Removes a file, symlink (not its target) or directory tree.
fn remove_entry(name: &str, path: &Path) -> Result<(), StoreError> {
    let removed = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err),
    };
    removed.map_err(|err| io_error(name, "remove the stale temp", path, &err))
}

/// Who should own the key and certificate files; None leaves evercert's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Ownership {
    uid: Option<u32>,
    gid: Option<u32>,
}

impl Ownership {
    fn resolve(name: &str, owner: Option<&str>, group: Option<&str>) -> Result<Self, StoreError> {
        let uid = owner
            .map(|who| resolve_id(name, "user", who, "/etc/passwd"))
            .transpose()?;
        let gid = group
            .map(|who| resolve_id(name, "group", who, "/etc/group"))
            .transpose()?;
        Ok(Self { uid, gid })
    }

    fn apply(self, file: &File) -> io::Result<()> {
        if self.uid.is_none() && self.gid.is_none() {
            return Ok(());
        }
        std::os::unix::fs::fchown(file, self.uid, self.gid)
    }
}

/// A numeric id, or a name looked up in the local passwd/group file (not NSS: keep service
/// accounts local).
fn resolve_id(
    name: &str,
    kind: &'static str,
    who: &str,
    file: &'static str,
) -> Result<u32, StoreError> {
    if let Ok(id) = who.parse::<u32>() {
        return Ok(id);
    }
    let text = fsread::read_to_string(Path::new(file), fsread::CONFIG_FILE_MAX).map_err(|err| {
        let err = io::Error::new(err.kind(), err.problem.to_string());
        io_error(name, "read", Path::new(file), &err)
    })?;
    lookup_id(&text, who).ok_or_else(|| StoreError::UnknownOwner {
        name: name.to_owned(),
        kind,
        who: who.to_owned(),
        file,
    })
}

/// The third field of the line whose first field is `who` (`name:x:id:…`).
fn lookup_id(text: &str, who: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == who).then_some(())?;
        fields.nth(1)?.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Fixture {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        store: FsStore,
        cert_path: PathBuf,
        key_path: PathBuf,
    }

    impl Fixture {
        fn new() -> Self {
            let tmp = tempfile::tempdir().unwrap();
            let root = tmp.path().to_owned();
            let store = FsStore::new(root.join("state"));
            Self {
                cert_path: root.join("tls/shop/fullchain.pem"),
                key_path: root.join("tls/shop/privkey.pem"),
                _tmp: tmp,
                root,
                store,
            }
        }

        fn target(&self) -> Target<'_> {
            Target {
                name: "shop",
                cert_path: &self.cert_path,
                key_path: &self.key_path,
                key_mode: 0o600,
                owner: None,
                group: None,
                bundle_path: None,
            }
        }

        /// Installs a pair with recognisable content and checks it is served as a whole.
        fn install(&self, target: &Target<'_>, tag: &str) -> Installed {
            let key = format!("KEY {tag}\n");
            let chain = format!("CHAIN {tag}\n");
            let installed = self
                .store
                .install(target, &pair(&key, &chain, tag))
                .unwrap();
            assert_served(target, key.as_bytes(), chain.as_bytes());
            assert_eq!(
                self.store.current("shop").unwrap(),
                Some(installed.version.clone())
            );
            installed
        }
    }

    /// A test clock: a fixed start, a minute later at every call, so versions installed one
    /// after the other get increasing names without reading the wall clock.
    fn tick() -> OffsetDateTime {
        static MINUTES: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
        let minutes = MINUTES.fetch_add(1, Ordering::Relaxed);
        time::macros::datetime!(2026-03-01 08:00 UTC) + time::Duration::minutes(minutes)
    }

    fn pair<'a>(key: &'a str, chain: &'a str, serial: &'a str) -> NewPair<'a> {
        let issued_at = tick();
        NewPair {
            key_pem: key.as_bytes(),
            chain_pem: chain.as_bytes(),
            serial,
            not_after: issued_at + time::Duration::days(90),
            domains: &[],
            issued_at,
        }
    }

    /// Key and chain read through the configured paths are the pair written together.
    fn assert_served(target: &Target<'_>, key: &[u8], chain: &[u8]) {
        assert_eq!(
            fs::read(target.key_path).unwrap(),
            key,
            "key through key_path"
        );
        assert_eq!(
            fs::read(target.cert_path).unwrap(),
            chain,
            "chain through cert_path"
        );
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o7777
    }

    fn is_symlink(path: &Path) -> bool {
        fs::symlink_metadata(path).unwrap().file_type().is_symlink()
    }

    #[test]
    fn install_on_missing_files_creates_version_live_link_and_symlinks() {
        let fx = Fixture::new();
        let target = fx.target();
        let installed = fx.install(&target, "a1b2c3d4e5");
        assert_eq!(installed.previous, None);
        assert!(
            installed.version.0.ends_with("-a1b2c3d4"),
            "{}",
            installed.version
        );
        assert_eq!(
            fx.store.versions("shop").unwrap(),
            vec![installed.version.clone()]
        );

        assert_eq!(
            fs::read_link(&fx.cert_path).unwrap(),
            fx.store.state_dir().join("live/shop/fullchain.pem")
        );
        assert_eq!(
            fs::read_link(&fx.key_path).unwrap(),
            fx.store.state_dir().join("live/shop/privkey.pem")
        );
        assert_eq!(
            fs::read_link(fx.store.state_dir().join("live/shop")).unwrap(),
            Path::new("../archive/shop").join(&installed.version.0)
        );
        let version_dir = fx
            .store
            .state_dir()
            .join("archive/shop")
            .join(&installed.version.0);
        let meta: serde_json::Value =
            serde_json::from_slice(&fs::read(version_dir.join(META_FILE)).unwrap()).unwrap();
        assert_eq!(meta["serial"], "a1b2c3d4e5");
        assert_eq!(meta["imported"], false);
        assert!(meta["not_after"].as_str().unwrap().ends_with('Z'));
        for dir in ["archive", "archive/shop", "live"] {
            assert_eq!(mode(&fx.store.state_dir().join(dir)), 0o755, "{dir}");
        }
        assert_eq!(mode(&version_dir), 0o755);
    }

    #[test]
    fn install_migrates_plain_files_by_importing_them_first() {
        let fx = Fixture::new();
        let certified =
            rcgen::generate_simple_self_signed(vec!["shop.example.com".to_owned()]).unwrap();
        let old_chain = certified.cert.pem();
        let old_key = certified.signing_key.serialize_pem();
        fs::create_dir_all(fx.cert_path.parent().unwrap()).unwrap();
        fs::write(&fx.cert_path, &old_chain).unwrap();
        fs::write(&fx.key_path, &old_key).unwrap();

        let target = fx.target();
        let installed = fx.install(&target, "0f0f0f0f");
        assert!(is_symlink(&fx.cert_path) && is_symlink(&fx.key_path));

        let imported = installed.previous.clone().unwrap();
        assert!(imported.0.ends_with("-imported"), "{imported}");
        assert_eq!(
            fx.store.versions("shop").unwrap(),
            vec![imported.clone(), installed.version.clone()],
            "imported sorts before the new version"
        );
        let imported_dir = fx.store.state_dir().join("archive/shop").join(&imported.0);
        assert_eq!(
            fs::read(imported_dir.join(KEY_FILE)).unwrap(),
            old_key.as_bytes()
        );
        assert_eq!(
            fs::read(imported_dir.join(CHAIN_FILE)).unwrap(),
            old_chain.as_bytes()
        );
        assert_eq!(mode(&imported_dir.join(KEY_FILE)), 0o600);
        let meta: serde_json::Value =
            serde_json::from_slice(&fs::read(imported_dir.join(META_FILE)).unwrap()).unwrap();
        assert_eq!(meta["imported"], true);
        assert_eq!(meta["domains"][0], "shop.example.com");
        assert!(!meta["serial"].as_str().unwrap().is_empty());
        assert!(
            !fx.cert_path
                .with_file_name(".fullchain.pem.evercert-tmp")
                .exists()
        );
    }

    #[test]
    fn install_over_evercert_symlinks_flips_only_the_live_link() {
        let fx = Fixture::new();
        let target = fx.target();
        let first = fx.install(&target, "11111111");
        let cert_link_before = fs::symlink_metadata(&fx.cert_path).unwrap().ino();
        let second = fx.install(&target, "22222222");
        assert_eq!(second.previous, Some(first.version.clone()));
        assert_eq!(
            fs::symlink_metadata(&fx.cert_path).unwrap().ino(),
            cert_link_before
        );
        assert_eq!(
            fx.store.versions("shop").unwrap(),
            vec![first.version, second.version]
        );
    }

    #[test]
    fn install_imports_a_foreign_symlink_like_certbots() {
        let fx = Fixture::new();
        let certbot = fx.root.join("letsencrypt/archive/shop");
        fs::create_dir_all(&certbot).unwrap();
        let (chain, key) = self_signed();
        fs::write(certbot.join("fullchain1.pem"), &chain).unwrap();
        fs::write(certbot.join("privkey1.pem"), &key).unwrap();
        fs::create_dir_all(fx.cert_path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(certbot.join("fullchain1.pem"), &fx.cert_path).unwrap();
        std::os::unix::fs::symlink(certbot.join("privkey1.pem"), &fx.key_path).unwrap();

        let target = fx.target();
        let installed = fx.install(&target, "33333333");
        let imported = installed.previous.unwrap();
        assert!(imported.0.ends_with("-imported"));
        let dir = fx.store.state_dir().join("archive/shop").join(&imported.0);
        assert_eq!(fs::read(dir.join(CHAIN_FILE)).unwrap(), chain.as_bytes());
        assert_eq!(fs::read(dir.join(KEY_FILE)).unwrap(), key.as_bytes());
        assert_eq!(
            fs::read(certbot.join("privkey1.pem")).unwrap(),
            key.as_bytes()
        );
        // Written like a newly issued pair: the key and the bundle private from the start.
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
        assert_eq!(mode(&dir.join(BUNDLE_FILE)), 0o600);
        assert_eq!(mode(&dir.join(CHAIN_FILE)), 0o644);
    }

    /// A certificate and its key in PEM.
    fn self_signed() -> (String, String) {
        let certified =
            rcgen::generate_simple_self_signed(vec!["shop.example.com".to_owned()]).unwrap();
        (certified.cert.pem(), certified.signing_key.serialize_pem())
    }

    fn archive_is_empty(fx: &Fixture) -> bool {
        fs::read_dir(fx.store.state_dir().join("archive/shop"))
            .map(|entries| entries.count() == 0)
            .unwrap_or(true)
    }

    #[test]
    fn a_symlink_to_a_secret_is_refused_before_and_at_install() {
        let fx = Fixture::new();
        let (chain, key) = self_signed();
        let secret = fx.root.join("shadow");
        fs::write(&secret, "root:$6$secret-hash:19000:0:99999:7:::\n").unwrap();
        fs::set_permissions(&secret, Permissions::from_mode(0o600)).unwrap();
        fs::create_dir_all(fx.cert_path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&secret, &fx.cert_path).unwrap();
        fs::write(&fx.key_path, &key).unwrap();
        let target = fx.target();
        for result in [
            fx.store.preflight(&target),
            fx.store
                .install(&target, &pair(&key, &chain, "01"))
                .map(|_| ()),
        ] {
            let message = result.unwrap_err().to_string();
            assert!(
                message.contains(&fx.cert_path.display().to_string()),
                "{message}"
            );
            assert!(
                message.contains("which is not a certificate chain"),
                "{message}"
            );
        }
        assert!(archive_is_empty(&fx));
        assert!(is_symlink(&fx.cert_path));

        // The same through key_path, and a private key at cert_path.
        fs::remove_file(&fx.cert_path).unwrap();
        fs::write(&fx.cert_path, &chain).unwrap();
        fs::remove_file(&fx.key_path).unwrap();
        std::os::unix::fs::symlink(&secret, &fx.key_path).unwrap();
        let message = fx.store.preflight(&target).unwrap_err().to_string();
        assert!(message.contains("which is not a private key"), "{message}");
        fs::remove_file(&fx.key_path).unwrap();
        fs::write(&fx.cert_path, format!("{chain}{key}")).unwrap();
        fs::write(&fx.key_path, &key).unwrap();
        let message = fx.store.preflight(&target).unwrap_err().to_string();
        assert!(message.contains("holds a private key"), "{message}");
        assert!(archive_is_empty(&fx));
    }

    #[test]
    fn special_or_huge_files_behind_the_paths_are_refused() {
        let fx = Fixture::new();
        let (_, key) = self_signed();
        fs::create_dir_all(fx.cert_path.parent().unwrap()).unwrap();
        fs::write(&fx.key_path, &key).unwrap();
        let big = fx.root.join("big.pem");
        File::create(&big).unwrap().set_len(2 << 30).unwrap();
        for (points_to, expected) in [
            (Path::new("/dev/zero"), "a character device"),
            (big.as_path(), "2048 MiB"),
            (fx.root.as_path(), "a directory"),
        ] {
            let _ = fs::remove_file(&fx.cert_path);
            std::os::unix::fs::symlink(points_to, &fx.cert_path).unwrap();
            let message = fx.store.preflight(&fx.target()).unwrap_err().to_string();
            assert!(message.contains(expected), "{message}");
            assert!(
                message.contains(&fx.cert_path.display().to_string()),
                "{message}"
            );
        }
        assert!(archive_is_empty(&fx));
    }

    #[test]
    fn plain_garbage_is_replaced_without_being_archived() {
        let fx = Fixture::new();
        let (_, key) = self_signed();
        fs::create_dir_all(fx.cert_path.parent().unwrap()).unwrap();
        fs::write(&fx.cert_path, "garbage, not a certificate").unwrap();
        fs::write(&fx.key_path, &key).unwrap();
        let target = fx.target();
        fx.store.preflight(&target).unwrap();
        let installed = fx.install(&target, "02");
        assert_eq!(installed.previous, None);
        assert_eq!(fx.store.versions("shop").unwrap(), vec![installed.version]);
    }

    #[test]
    fn preflight_proves_the_directories_writable_and_leaves_nothing() {
        let fx = Fixture::new();
        let target = fx.target();
        fx.store.preflight(&target).unwrap();
        let tls = fx.cert_path.parent().unwrap();
        assert_eq!(fs::read_dir(tls).unwrap().count(), 0);
        assert!(archive_is_empty(&fx));
        // A file where the directory should be: named, with what to do.
        let fx = Fixture::new();
        fs::write(fx.root.join("tls"), "in the way").unwrap();
        let message = fx.store.preflight(&fx.target()).unwrap_err().to_string();
        assert!(
            message.contains("fix the path in the configuration"),
            "{message}"
        );
    }

    #[test]
    fn read_only_and_permission_errors_say_what_they_are() {
        let dir = Path::new("/etc/evercert-test/tls");
        let rofs = io::Error::from_raw_os_error(30);
        let message = io_error("shop", "create a file in", dir, &rofs).to_string();
        assert!(message.contains("read-only file system"), "{message}");
        assert!(message.contains("ReadWritePaths="), "{message}");
        let denied = io::Error::from_raw_os_error(13);
        let message = io_error("shop", "create a file in", dir, &denied).to_string();
        assert!(message.contains("permission denied"), "{message}");
    }

    #[test]
    fn prune_keeps_the_newest_and_never_the_live_or_previous() {
        let fx = Fixture::new();
        let target = fx.target();
        let mut all = Vec::new();
        for n in 0..6 {
            all.push(fx.install(&target, &format!("{n:08x}")));
        }
        let last = all.last().unwrap().clone();
        // Keeping 3: the three newest stay, the others go with their keys.
        let removed = fx.store.prune("shop", 3, &last).unwrap();
        let versions: Vec<VersionId> = all.iter().map(|i| i.version.clone()).collect();
        assert_eq!(removed, versions[..3].to_vec());
        assert_eq!(fx.store.versions("shop").unwrap(), versions[3..].to_vec());
        for gone in &removed {
            assert!(
                !fx.store
                    .state_dir()
                    .join("archive/shop")
                    .join(&gone.0)
                    .exists()
            );
        }
        // After a rollback to an old version, that one stays whatever its age.
        fx.store.rollback(&target, &versions[3]).unwrap();
        let newer = fx.install(&target, "000000aa");
        assert_eq!(newer.previous.as_ref(), Some(&versions[3]));
        let removed = fx.store.prune("shop", 2, &newer).unwrap();
        assert_eq!(removed, vec![versions[4].clone()]);
        assert_eq!(
            fx.store.versions("shop").unwrap(),
            vec![
                versions[3].clone(),
                versions[5].clone(),
                newer.version.clone()
            ]
        );
        assert_eq!(fx.store.current("shop").unwrap(), Some(newer.version));
        // Nothing left behind: no staging directory.
        let names: Vec<String> = fs::read_dir(fx.store.state_dir().join("archive/shop"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    }

    #[test]
    fn scratch_dirs_are_fresh_private_and_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let first = ScratchDir::create(tmp.path()).unwrap();
        let second = ScratchDir::create(tmp.path()).unwrap();
        assert_ne!(first.path(), second.path());
        assert!(first.path().starts_with(tmp.path()));
        let meta = fs::symlink_metadata(first.path()).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.mode() & 0o777, 0o700);
        let path = first.path().to_owned();
        fs::write(path.join("privkey.pem"), "x").unwrap();
        drop(first);
        assert!(!path.exists());
    }

    #[test]
    fn a_crash_between_the_two_symlink_swaps_does_not_import_twice() {
        let fx = Fixture::new();
        let target = fx.target();
        let first = fx.install(&target, "44444444");
        // As if a migration had swapped key_path and died before cert_path.
        let chain = fs::read(&fx.cert_path).unwrap();
        fs::remove_file(&fx.cert_path).unwrap();
        fs::write(&fx.cert_path, &chain).unwrap();

        let second = fx.install(&target, "55555555");
        assert_eq!(second.previous, Some(first.version.clone()));
        assert_eq!(
            fx.store.versions("shop").unwrap(),
            vec![first.version, second.version]
        );
        assert!(is_symlink(&fx.cert_path));
    }

    #[test]
    fn the_same_serial_twice_in_one_second_gets_a_distinct_version() {
        let fx = Fixture::new();
        let target = fx.target();
        let first = fx.install(&target, "66666666");
        let second = fx.install(&target, "66666666");
        assert_ne!(first.version, second.version);
        let versions = fx.store.versions("shop").unwrap();
        assert_eq!(versions.len(), 2);
        assert_eq!(versions.last(), Some(&second.version));
    }

    #[test]
    fn key_and_chain_modes_and_ownership() {
        let fx = Fixture::new();
        let mut target = fx.target();
        fx.install(&target, "77777777");
        let version_dir = fx.store.state_dir().join("live/shop");
        assert_eq!(mode(&version_dir.join(KEY_FILE)), 0o600);
        assert_eq!(mode(&version_dir.join(CHAIN_FILE)), 0o644);
        assert_eq!(mode(&version_dir.join(META_FILE)), 0o644);

        // Tests run as root here, so handing the files to nobody:nogroup works.
        target.key_mode = 0o640;
        target.owner = Some("65534");
        target.group = Some("65534");
        fx.install(&target, "88888888");
        let key = fs::metadata(version_dir.join(KEY_FILE)).unwrap();
        assert_eq!(key.mode() & 0o7777, 0o640);
        if rustix::process::geteuid().is_root() {
            assert_eq!((key.uid(), key.gid()), (65534, 65534));
            let chain = fs::metadata(version_dir.join(CHAIN_FILE)).unwrap();
            assert_eq!((chain.uid(), chain.gid()), (65534, 65534));
        }
    }

    #[test]
    fn key_file_is_0600_before_its_first_byte() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(KEY_FILE);
        let file = create_new_file(&path, 0o600).unwrap();
        assert_eq!(file.metadata().unwrap().mode() & 0o7777, 0o600);
        assert_eq!(file.metadata().unwrap().len(), 0);

        let path = tmp.path().join("group.pem");
        let file = create_key_file(&path, Ownership::default(), 0o640).unwrap();
        assert_eq!(file.metadata().unwrap().mode() & 0o7777, 0o640);
        assert_eq!(
            file.metadata().unwrap().len(),
            0,
            "mode is final before any byte"
        );
    }

    #[test]
    fn a_staged_key_is_never_wider_than_key_mode() {
        let fx = Fixture::new();
        let store = FsStore {
            step_delay: Some(Duration::from_millis(30)),
            ..fx.store.clone()
        };
        let archive = store.state_dir().join("archive/shop");
        let done = Arc::new(AtomicBool::new(false));
        let watcher = {
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    for entry in fs::read_dir(&archive).into_iter().flatten().flatten() {
                        if let Ok(meta) = fs::metadata(entry.path().join(KEY_FILE)) {
                            seen.push((meta.mode() & 0o7777, meta.len()));
                        }
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                seen
            })
        };
        let mut target = fx.target();
        target.key_mode = 0o640;
        store
            .install(&target, &pair("SECRET", "CHAIN", "99999999"))
            .unwrap();
        done.store(true, Ordering::Relaxed);
        let seen = watcher.join().unwrap();
        assert!(!seen.is_empty(), "the watcher saw the staged key");
        for (mode, _len) in seen {
            assert_eq!(mode & !0o640, 0, "mode {mode:o} is wider than 0640");
        }
    }

    #[test]
    fn a_dangling_symlink_at_cert_path_is_replaced_like_a_missing_file() {
        let fx = Fixture::new();
        fs::create_dir_all(fx.cert_path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink("/nonexistent/evercert/fullchain.pem", &fx.cert_path).unwrap();
        let installed = fx
            .store
            .install(&fx.target(), &pair("KEY\n", "CHAIN\n", "01"))
            .unwrap();
        assert_eq!(installed.previous, None);
        assert!(is_symlink(&fx.cert_path));
        assert_eq!(fs::read_to_string(&fx.cert_path).unwrap(), "CHAIN\n");
        assert_eq!(fs::read_to_string(&fx.key_path).unwrap(), "KEY\n");
    }

    #[test]
    fn a_bundle_path_flips_with_the_pair() {
        let fx = Fixture::new();
        let bundle = fx.root.join("tls/shop/bundle.pem");
        let target = Target {
            bundle_path: Some(&bundle),
            ..fx.target()
        };
        for tag in ["one", "two"] {
            let key = format!("KEY {tag}\n");
            let chain = format!("CHAIN {tag}\n");
            fx.store.install(&target, &pair(&key, &chain, tag)).unwrap();
            assert!(is_symlink(&bundle));
            assert_eq!(
                fs::read_to_string(&bundle).unwrap(),
                format!("{key}{chain}")
            );
            assert_eq!(mode(&fs::canonicalize(&bundle).unwrap()), 0o600);
        }
    }

    #[test]
    fn rollback_makes_an_earlier_version_live() {
        let fx = Fixture::new();
        let target = fx.target();
        let first = fx.install(&target, "aaaaaaaa");
        let second = fx.install(&target, "bbbbbbbb");
        fx.store.rollback(&target, &first.version).unwrap();
        assert_eq!(
            fx.store.current("shop").unwrap(),
            Some(first.version.clone())
        );
        assert_served(&target, b"KEY aaaaaaaa\n", b"CHAIN aaaaaaaa\n");
        fx.store.rollback(&target, &second.version).unwrap();
        assert_served(&target, b"KEY bbbbbbbb\n", b"CHAIN bbbbbbbb\n");

        for bad in ["nope", "../shop", ".tmp-0123456789abcdef", ""] {
            let err = fx
                .store
                .rollback(&target, &VersionId(bad.to_owned()))
                .unwrap_err();
            assert!(
                matches!(err, StoreError::UnknownVersion { .. }),
                "{bad}: {err}"
            );
        }
        assert_eq!(fx.store.current("shop").unwrap(), Some(second.version));
    }

    #[test]
    fn rollback_refuses_paths_evercert_does_not_manage() {
        let fx = Fixture::new();
        let target = fx.target();
        let first = fx.install(&target, "aaaaaaaa");
        fx.install(&target, "bbbbbbbb");
        fs::remove_file(&fx.cert_path).unwrap();
        fs::write(&fx.cert_path, "HAND MADE").unwrap();
        let err = fx.store.rollback(&target, &first.version).unwrap_err();
        assert!(matches!(err, StoreError::NotManaged { .. }), "{err}");
    }

    #[test]
    fn recover_removes_stale_temps_and_nothing_else() {
        let fx = Fixture::new();
        let target = fx.target();
        let installed = fx.install(&target, "cccccccc");
        let state = fx.store.state_dir();
        let staging = state.join("archive/shop/.tmp-00000000deadbeef");
        fs::create_dir(&staging).unwrap();
        fs::write(staging.join(KEY_FILE), "HALF").unwrap();
        let live_tmp = state.join("live/.shop.0123456789abcdef.tmp");
        std::os::unix::fs::symlink("../archive/shop/x", &live_tmp).unwrap();
        let other_cert_tmp = state.join("live/.shop.x.0123456789abcdef.tmp");
        std::os::unix::fs::symlink("../archive/shop.x/x", &other_cert_tmp).unwrap();
        let cert_tmp = path_temp(&fx.cert_path);
        std::os::unix::fs::symlink("/nowhere", &cert_tmp).unwrap();
        let key_tmp = path_temp(&fx.key_path);
        fs::write(&key_tmp, "stale").unwrap();
        // Write probes of runs killed in `preflight`, in every directory it probes.
        let probes = [
            state.join("archive/shop/.evercert-probe-00000000deadbeef"),
            state.join("live/.evercert-probe-0123456789abcdef"),
            parent_dir(&fx.cert_path).join(".evercert-probe-fedcba9876543210"),
        ];
        for probe in &probes {
            fs::write(probe, "").unwrap();
        }
        let not_a_probe = parent_dir(&fx.cert_path).join(".evercert-probe-notours");
        fs::write(&not_a_probe, "").unwrap();

        fx.store.recover(&target).unwrap();
        fx.store.recover(&target).unwrap();
        assert!(
            not_a_probe.is_file(),
            "only names check_writable makes are removed"
        );
        fs::remove_file(&not_a_probe).unwrap();
        for gone in [&staging, &live_tmp, &cert_tmp, &key_tmp]
            .into_iter()
            .chain(&probes)
        {
            assert!(
                fs::symlink_metadata(gone).is_err(),
                "{} is gone",
                gone.display()
            );
        }
        assert!(
            fs::symlink_metadata(&other_cert_tmp).is_ok(),
            "another certificate's temp stays"
        );
        assert_eq!(fx.store.versions("shop").unwrap(), vec![installed.version]);
        assert_served(&target, b"KEY cccccccc\n", b"CHAIN cccccccc\n");

        // On a fresh state dir there is nothing to do, and that is fine.
        let empty = Fixture::new();
        empty.store.recover(&empty.target()).unwrap();
    }

    #[test]
    fn a_symlink_planted_at_a_temp_name_is_not_followed() {
        let fx = Fixture::new();
        let victim = fx.root.join("victim");
        fs::write(&victim, "precious").unwrap();
        fs::create_dir_all(fx.cert_path.parent().unwrap()).unwrap();
        for path in [&fx.cert_path, &fx.key_path] {
            std::os::unix::fs::symlink(&victim, path_temp(path)).unwrap();
        }
        let target = fx.target();
        fx.install(&target, "dddddddd");
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert!(
            !fs::symlink_metadata(&victim)
                .unwrap()
                .file_type()
                .is_symlink()
        );

        let planted = fx.root.join("planted.tmp");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        assert!(create_new_file(&planted, 0o600).is_err());
        assert!(create_key_file(&planted, Ownership::default(), 0o600).is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn an_unwritable_target_directory_fails_before_anything_goes_live() {
        let fx = Fixture::new();
        let target = fx.target();
        let first = fx.install(&target, "eeeeeeee");
        // Root ignores modes, so a file where a directory should be forces the failure.
        let blocker = fx.root.join("blocker");
        fs::write(&blocker, "").unwrap();
        let bad_cert = blocker.join("shop/fullchain.pem");
        let bad = Target {
            cert_path: &bad_cert,
            ..target
        };
        let err = fx
            .store
            .install(&bad, &pair("KEY new", "CHAIN new", "ffffffff"))
            .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("certificate \"shop\""), "{message}");
        assert!(
            message.contains(&blocker.display().to_string()),
            "{message}"
        );
        assert!(message.contains("fix the path"), "{message}");
        assert_eq!(
            fx.store.current("shop").unwrap(),
            Some(first.version.clone())
        );
        assert_eq!(fx.store.versions("shop").unwrap(), vec![first.version]);
        assert_served(&target, b"KEY eeeeeeee\n", b"CHAIN eeeeeeee\n");
    }

    #[test]
    fn bad_targets_are_refused_before_any_write() {
        let fx = Fixture::new();
        let mut target = fx.target();
        target.key_mode = 0o644;
        let err = fx.store.install(&target, &pair("K", "C", "1")).unwrap_err();
        assert!(matches!(err, StoreError::KeyMode { .. }), "{err}");

        let target = Target {
            name: "../etc",
            ..fx.target()
        };
        assert!(matches!(
            fx.store.install(&target, &pair("K", "C", "1")),
            Err(StoreError::InvalidName { .. })
        ));

        let target = Target {
            key_path: &fx.cert_path,
            ..fx.target()
        };
        assert!(matches!(
            fx.store.install(&target, &pair("K", "C", "1")),
            Err(StoreError::BadTarget { .. })
        ));

        let inside = fx.store.live_file("shop", CHAIN_FILE);
        let target = Target {
            cert_path: &inside,
            ..fx.target()
        };
        assert!(matches!(
            fx.store.install(&target, &pair("K", "C", "1")),
            Err(StoreError::BadTarget { .. })
        ));

        let target = Target {
            owner: Some("no-such-user-evercert"),
            ..fx.target()
        };
        let err = fx.store.install(&target, &pair("K", "C", "1")).unwrap_err();
        assert!(err.to_string().contains("/etc/passwd"), "{err}");
        assert!(!fx.store.state_dir().exists(), "nothing was written");
    }

    #[test]
    fn write_atomic_replaces_with_the_given_mode_and_leaves_no_temp() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("account.json");
        write_atomic(&path, b"first", 0o600).unwrap();
        write_atomic(&path, b"second", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert_eq!(mode(&path), 0o600);
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("account.json")]);

        let err = write_atomic(&tmp.path().join("missing/dir/x"), b"x", 0o600).unwrap_err();
        assert!(err.to_string().contains("missing/dir"), "{err}");
    }

    #[test]
    fn live_temp_names_are_matched_per_certificate() {
        assert!(is_live_temp("shop", ".shop.0123456789abcdef.tmp"));
        assert!(!is_live_temp("shop", ".shop.x.0123456789abcdef.tmp"));
        assert!(!is_live_temp("shop", "shop"));
        assert!(!is_live_temp("shop", ".shop.short.tmp"));
    }

    #[test]
    fn ids_are_looked_up_by_name_or_number() {
        let passwd =
            "root:x:0:0:root:/root:/bin/bash\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n";
        assert_eq!(lookup_id(passwd, "www-data"), Some(33));
        assert_eq!(lookup_id(passwd, "www"), None);
        assert_eq!(lookup_id("ssl-cert:x:110:\n", "ssl-cert"), Some(110));
        assert_eq!(
            resolve_id("shop", "user", "1234", "/nonexistent").unwrap(),
            1234
        );
        assert_eq!(
            resolve_id("shop", "user", "root", "/etc/passwd").unwrap(),
            0
        );
    }

    #[test]
    fn version_names_sort_by_time_and_name_the_serial() {
        let at = time::macros::datetime!(2026-11-22 10:30:00 UTC);
        assert_eq!(
            version_base(at, "0A:1B:2C:3D:4E", None),
            "20261122T103000Z-0a1b2c3d"
        );
        assert_eq!(
            version_base(at, "", Some("imported")),
            "20261122T103000Z-imported"
        );
        let later = version_base(at + time::Duration::SECOND, "00", None);
        assert!(version_base(at, "ff", None) < later);
    }
}
