//! What the configured paths resolve through, and the repair of a broken `live/NAME` link.
//!
//! A managed pair is served through two links: `cert_path` → `STATE/live/NAME/fullchain.pem`
//! (absolute), and `live/NAME` → `../archive/NAME/VERSION` (relative). A person can break the
//! second one — a rollback by hand with a mistyped version, a version directory removed — and
//! then the web server finds nothing, while every file evercert itself looks at through
//! `cert_path` reads as simply "missing". So the chain is inspected link by link and each
//! problem is named along it ("cert_path → live/shop → archive/shop/X: missing").
//!
//! A broken `live/NAME` is repaired by pointing it at the newest complete version whose key
//! matches its certificate: the archive already holds a pair that worked, and ordering a new
//! one would spend an issuance on a typo. A path that is no longer evercert's link (a symlink
//! to somewhere else) is reported, never changed: someone chose it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::CertificateSettings;
use crate::inventory;
use crate::store::{CertStore, FsStore, StoreError, Target, VersionId};

/// The files of a complete version, as the store writes them (`meta.json` last).
const VERSION_FILES: [&str; 3] = ["privkey.pem", "fullchain.pem", "meta.json"];

/// How the configured paths of one certificate resolve, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Every path is evercert's link and resolves to a complete version.
    Ok,
    /// evercert has not made this certificate live yet (plain files, a certbot link, nothing):
    /// the first renewal takes the paths over.
    Unmanaged,
    /// `live/NAME` points at nothing usable: the web server reads nothing.
    Broken,
    /// `live/NAME` is fine, but a configured path no longer leads to it.
    Foreign,
}

/// One problem along the chain of links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    /// The chain in the operator's words: `cert_path → live/shop → archive/shop/X: missing`.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// `live/NAME` is gone while the paths still point through it.
    LiveMissing,
    /// `live/NAME` points at a version that does not exist.
    VersionMissing,
    /// `live/NAME` points at a version without all of its files.
    VersionIncomplete,
    /// `live/NAME` is not a symlink, or points outside `archive/NAME/`.
    LiveNotOurs,
    /// A configured path is a symlink to somewhere other than `live/NAME`.
    ForeignLink,
    /// A configured path is a plain file where evercert's link was.
    PlainFile,
}

/// The layout of one certificate's links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layout {
    pub health: Health,
    /// The version `live/NAME` names, whether or not it exists.
    pub live_version: Option<String>,
    pub problems: Vec<Problem>,
}

impl Layout {
    /// Whether the agent may repair it: `live/NAME` is a symlink to a version that is gone or
    /// incomplete (or is gone itself), and the configured paths are all evercert's links.
    pub fn repairable(&self) -> bool {
        self.health == Health::Broken
            && self.problems.iter().all(|problem| {
                matches!(
                    problem.kind,
                    ProblemKind::LiveMissing
                        | ProblemKind::VersionMissing
                        | ProblemKind::VersionIncomplete
                )
            })
    }

    /// The first problem's message, for one-line reports.
    pub fn summary(&self) -> Option<String> {
        match self.problems.as_slice() {
            [] => None,
            [one] => Some(one.message.clone()),
            [first, rest @ ..] => Some(format!(
                "{} (and {} more problem{})",
                first.message,
                rest.len(),
                if rest.len() == 1 { "" } else { "s" }
            )),
        }
    }
}

/// The store's view of a certificate's files.
pub fn target(cert: &CertificateSettings) -> Target<'_> {
    Target {
        name: &cert.name,
        cert_path: &cert.cert_path,
        key_path: &cert.key_path,
        key_mode: cert.key_mode,
        owner: cert.owner.as_deref(),
        group: cert.group.as_deref(),
        bundle_path: cert.bundle_path.as_deref(),
    }
}

/// The configured paths with their config key and the file in `live/NAME/` they should name.
fn paths(cert: &CertificateSettings) -> Vec<(&'static str, &Path, &'static str)> {
    let mut paths = vec![
        ("cert_path", cert.cert_path.as_path(), "fullchain.pem"),
        ("key_path", cert.key_path.as_path(), "privkey.pem"),
    ];
    if let Some(bundle) = &cert.bundle_path {
        paths.push(("bundle_path", bundle.as_path(), "bundle.pem"));
    }
    paths
}

/// Inspects the links of `cert` under `state_dir`: a few `lstat`s and `readlink`s, no reads.
pub fn inspect(state_dir: &Path, cert: &CertificateSettings) -> Layout {
    let store = FsStore::new(state_dir);
    let name = &cert.name;
    let live_link = store.state_dir().join("live").join(name);
    let live_rel = format!("live/{name}");
    let mut problems = Vec::new();
    let mut ours = Vec::new();
    for (key, path, file) in paths(cert) {
        let expected = store.live_file(name, file);
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => match fs::read_link(path) {
                Ok(points_to) if points_to == expected => ours.push(key),
                Ok(points_to) => problems.push(Problem {
                    kind: ProblemKind::ForeignLink,
                    message: format!(
                        "{key} {} → {}: no longer evercert's link to {live_rel}/{file}; the web server reads that file, not the version evercert keeps live",
                        path.display(),
                        points_to.display()
                    ),
                }),
                Err(_) => {}
            },
            Ok(meta) if meta.is_file() => problems.push(Problem {
                kind: ProblemKind::PlainFile,
                message: format!(
                    "{key} {} is a plain file, no longer evercert's link to {live_rel}/{file}; the next renewal archives it and links it again",
                    path.display()
                ),
            }),
            _ => {}
        }
    }
    let live = fs::symlink_metadata(&live_link);
    let managed = live.is_ok() || !ours.is_empty();
    if !managed {
        // Never installed here: plain files or a certbot link are the normal starting point.
        return Layout {
            health: Health::Unmanaged,
            live_version: None,
            problems: Vec::new(),
        };
    }
    let through = ours.first().copied().unwrap_or("cert_path");
    let mut live_version = None;
    let mut broken = None;
    match live {
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            broken = Some(Problem {
                kind: ProblemKind::LiveMissing,
                message: format!("{through} → {live_rel}: missing"),
            });
        }
        Err(err) => {
            broken = Some(Problem {
                kind: ProblemKind::LiveNotOurs,
                message: format!("{through} → {live_rel}: cannot be inspected ({err})"),
            });
        }
        Ok(meta) if !meta.file_type().is_symlink() => {
            broken = Some(Problem {
                kind: ProblemKind::LiveNotOurs,
                message: format!(
                    "{through} → {live_rel}: is {}, not evercert's symlink to a version; move it away and run `evercert renew {name} --force`",
                    crate::fsread::describe(meta.file_type())
                ),
            });
        }
        Ok(_) => {
            let points_to = fs::read_link(&live_link).unwrap_or_default();
            let version = points_to
                .file_name()
                .map(|version| version.to_string_lossy().into_owned());
            let expected_parent = Path::new("..").join("archive").join(name);
            live_version.clone_from(&version);
            let shown = points_to.display().to_string();
            let shown = shown.strip_prefix("../").unwrap_or(&shown);
            match version {
                Some(version) if points_to.parent() == Some(expected_parent.as_path()) => {
                    let dir = store.state_dir().join("archive").join(name).join(&version);
                    match fs::symlink_metadata(&dir) {
                        Ok(meta) if meta.is_dir() => {
                            let missing: Vec<&str> = VERSION_FILES
                                .into_iter()
                                .filter(|file| {
                                    !fs::symlink_metadata(dir.join(file))
                                        .is_ok_and(|meta| meta.is_file())
                                })
                                .collect();
                            if !missing.is_empty() {
                                broken = Some(Problem {
                                    kind: ProblemKind::VersionIncomplete,
                                    message: format!(
                                        "{through} → {live_rel} → {shown}: incomplete (no {})",
                                        missing.join(", ")
                                    ),
                                });
                            }
                        }
                        _ => {
                            broken = Some(Problem {
                                kind: ProblemKind::VersionMissing,
                                message: format!("{through} → {live_rel} → {shown}: missing"),
                            });
                        }
                    }
                }
                _ => {
                    broken = Some(Problem {
                        kind: ProblemKind::LiveNotOurs,
                        message: format!(
                            "{through} → {live_rel} → {}: not a version in archive/{name}/",
                            points_to.display()
                        ),
                    });
                }
            }
        }
    }
    let health = if broken.is_some() && !ours.is_empty() {
        Health::Broken
    } else if !problems.is_empty() {
        Health::Foreign
    } else if broken.is_some() {
        // Nothing points through the broken link any more: what is served does not depend
        // on it, and the next renewal replaces it.
        Health::Foreign
    } else {
        Health::Ok
    };
    problems.extend(broken);
    Layout {
        health,
        live_version,
        problems,
    }
}

/// The newest complete version of `name` whose key matches its certificate, leaving out
/// `skip` (a version issued but never deployed: its reload or verification failed).
pub fn newest_good_version(
    store: &FsStore,
    name: &str,
    skip: Option<&str>,
) -> Result<Option<VersionId>, StoreError> {
    let archive = store.state_dir().join("archive").join(name);
    for version in store.versions(name)?.into_iter().rev() {
        if skip == Some(version.0.as_str()) {
            continue;
        }
        let dir = archive.join(&version.0);
        let complete = VERSION_FILES
            .iter()
            .all(|file| fs::symlink_metadata(dir.join(file)).is_ok_and(|meta| meta.is_file()));
        if !complete {
            continue;
        }
        let chain = dir.join("fullchain.pem");
        let Ok(file) = inventory::read_cert_file(&chain) else {
            continue;
        };
        if inventory::check_key_file(&dir.join("privkey.pem"), &chain, &file.leaf).is_ok() {
            return Ok(Some(version));
        }
    }
    Ok(None)
}

/// What a repair did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// `live/NAME` now names this version.
    Repointed(VersionId),
    /// No version in the archive can be served: the renewal orders a new certificate.
    NoGoodVersion,
}

/// Points a broken `live/NAME` at the newest good version (see [`newest_good_version`]).
/// The caller holds the certificate's renewal lock.
pub fn repair(
    state_dir: &Path,
    cert: &CertificateSettings,
    skip: Option<&str>,
) -> Result<Repair, StoreError> {
    let store = FsStore::new(state_dir);
    let Some(version) = newest_good_version(&store, &cert.name, skip)? else {
        return Ok(Repair::NoGoodVersion);
    };
    store.rollback(&target(cert), &version)?;
    Ok(Repair::Repointed(version))
}

/// The directories whose entries make up the chain: `live/`, `archive/NAME/`, and the live
/// version's directory. A change in any of them is a reason to look again.
pub fn watched_dirs(state_dir: &Path, cert: &CertificateSettings) -> Vec<PathBuf> {
    let store = FsStore::new(state_dir);
    let archive = store.state_dir().join("archive").join(&cert.name);
    let mut dirs = vec![store.state_dir().join("live"), archive.clone()];
    if let Ok(Some(version)) = store.current(&cert.name) {
        dirs.push(archive.join(version.0));
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewPair;

    fn cert(dir: &Path) -> CertificateSettings {
        let text = format!(
            r#"state_dir = "{dir}/state"
[[certificate]]
name = "shop"
domains = ["shop.example.test"]
cert_path = "{dir}/tls/fullchain.pem"
key_path = "{dir}/tls/privkey.pem"
[certificate.http01]
listen = "127.0.0.1:1"
"#,
            dir = dir.display()
        );
        let config = crate::config::parse(&text, &dir.join("evercert.toml")).unwrap();
        config.certificates[0].clone()
    }

    fn install(dir: &Path, cert: &CertificateSettings, serial: &str) -> VersionId {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(cert.domains.clone()).unwrap();
        let issued = params.self_signed(&key).unwrap();
        let store = FsStore::new(dir.join("state"));
        let (key_pem, chain_pem) = (key.serialize_pem(), issued.pem());
        let pair = NewPair {
            key_pem: key_pem.as_bytes(),
            chain_pem: chain_pem.as_bytes(),
            serial,
            not_after: time::OffsetDateTime::now_utc() + time::Duration::days(90),
            domains: &cert.domains,
            issued_at: time::OffsetDateTime::now_utc(),
        };
        store.install(&target(cert), &pair).unwrap().version
    }

    fn point_live_at(dir: &Path, to: &str) {
        let live = dir.join("state/live");
        let tmp = live.join("shop.new");
        std::os::unix::fs::symlink(to, &tmp).unwrap();
        fs::rename(&tmp, live.join("shop")).unwrap();
    }

    #[test]
    fn a_fresh_install_is_ok_and_plain_files_are_unmanaged() {
        let dir = tempfile::tempdir().unwrap();
        let cert = cert(dir.path());
        assert_eq!(
            inspect(&dir.path().join("state"), &cert).health,
            Health::Unmanaged
        );
        let version = install(dir.path(), &cert, "01");
        let layout = inspect(&dir.path().join("state"), &cert);
        assert_eq!(layout.health, Health::Ok, "{layout:?}");
        assert_eq!(layout.live_version.as_deref(), Some(version.0.as_str()));
        assert!(layout.problems.is_empty());
    }

    #[test]
    fn a_mistyped_rollback_is_named_along_the_chain_and_repaired_to_the_newest_good_version() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let cert = cert(dir.path());
        let _first = install(dir.path(), &cert, "01");
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let second = install(dir.path(), &cert, "02");
        point_live_at(dir.path(), "../archive/shop/20261130T000000Z-typo");
        let layout = inspect(&state, &cert);
        assert_eq!(layout.health, Health::Broken);
        assert!(layout.repairable());
        assert_eq!(
            layout.summary().unwrap(),
            "cert_path → live/shop → archive/shop/20261130T000000Z-typo: missing"
        );
        // The newest version's key is swapped for another: it must not be chosen.
        let other = rcgen::KeyPair::generate().unwrap().serialize_pem();
        fs::write(
            state
                .join("archive/shop")
                .join(&second.0)
                .join("privkey.pem"),
            other,
        )
        .unwrap();
        let repaired = repair(&state, &cert, None).unwrap();
        let Repair::Repointed(version) = repaired else {
            panic!("not repaired: {repaired:?}");
        };
        assert_ne!(
            version, second,
            "a version whose key does not match was chosen"
        );
        assert_eq!(inspect(&state, &cert).health, Health::Ok);
        assert!(inventory::read_cert_file(&cert.cert_path).is_ok());
    }

    #[test]
    fn incomplete_foreign_and_plain_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let cert = cert(dir.path());
        let version = install(dir.path(), &cert, "01");
        fs::remove_file(
            state
                .join("archive/shop")
                .join(&version.0)
                .join("meta.json"),
        )
        .unwrap();
        let layout = inspect(&state, &cert);
        assert_eq!(layout.problems[0].kind, ProblemKind::VersionIncomplete);
        assert!(
            layout.problems[0]
                .message
                .ends_with(": incomplete (no meta.json)"),
            "{layout:?}"
        );
        // Nothing complete left: nothing to repair with.
        assert_eq!(repair(&state, &cert, None).unwrap(), Repair::NoGoodVersion);

        fs::remove_file(&cert.key_path).unwrap();
        std::os::unix::fs::symlink("/etc/ssl/private/other.pem", &cert.key_path).unwrap();
        fs::remove_file(&cert.cert_path).unwrap();
        fs::write(&cert.cert_path, "plain").unwrap();
        let layout = inspect(&state, &cert);
        assert_eq!(layout.health, Health::Foreign, "{layout:?}");
        assert!(!layout.repairable());
        let kinds: Vec<ProblemKind> = layout.problems.iter().map(|p| p.kind).collect();
        assert_eq!(
            kinds,
            [
                ProblemKind::PlainFile,
                ProblemKind::ForeignLink,
                ProblemKind::VersionIncomplete
            ]
        );
    }
}
