//! Refusing to run on a configuration or state directory that other users can change.
//!
//! evercert usually runs as root and executes the commands its configuration names (reload,
//! dns-01 and alert hooks): whoever can write the configuration can run commands as root.
//! Whoever can write `state_dir` can point `live/NAME` at a key of their own, or swap the ACME
//! account. So, like OpenSSH's `StrictModes`, evercert checks the file, `state_dir`, and every
//! directory above them: none may be writable by group or others, and each must belong to root
//! or to the user evercert runs as. A directory with the sticky bit (`/tmp`) is fine above
//! them: others may add entries there but cannot replace ours. A `state_dir` that does not
//! exist yet is fine; evercert creates it (see [`ensure_state_dir`]).

use std::collections::HashSet;
use std::fs::{self, DirBuilder, Metadata, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use crate::config::Config;

/// `state_dir`'s mode when evercert creates it: others may traverse it to reach the `live/`
/// links a web server reads, but not list it; `accounts/` inside is 0700.
pub const STATE_DIR_MODE: u32 = 0o711;

/// The directories evercert keeps in `state_dir`.
const STATE_SUBDIRS: [&str; 5] = ["accounts", "archive", "live", "locks", "state"];

const STICKY: u32 = 0o1000;
const GROUP_WRITE: u32 = 0o020;
const OTHER_WRITE: u32 = 0o002;

/// What a checked path is, for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    ConfigFile,
    AboveConfig,
    StateDir,
    AboveStateDir,
    InStateDir,
    HookScript,
    AboveHookScript,
    CertDir,
    AboveCertDir,
}

impl Role {
    fn describe(self) -> &'static str {
        match self {
            Self::ConfigFile => "the configuration file",
            Self::AboveConfig => "a directory holding the configuration file",
            Self::StateDir => "state_dir",
            Self::AboveStateDir => "a directory holding state_dir",
            Self::InStateDir => "a directory of evercert's state",
            Self::HookScript => "the script of a reload, dns-01 or alert hook",
            Self::AboveHookScript => "a directory holding a hook's script",
            Self::CertDir => "the directory of a cert_path, key_path or bundle_path",
            Self::AboveCertDir => "a directory holding a certificate's directory",
        }
    }

    fn risk(self, user: &str) -> String {
        match self {
            Self::ConfigFile | Self::AboveConfig => format!(
                "whoever can change it can make evercert run any command (reload, hooks) as {user}"
            ),
            Self::StateDir | Self::AboveStateDir | Self::InStateDir => {
                "whoever can change it can replace the keys and certificates evercert serves, or its ACME account"
                    .to_owned()
            }
            Self::HookScript | Self::AboveHookScript => format!(
                "whoever can change it can make evercert run any command as {user}"
            ),
            Self::CertDir | Self::AboveCertDir => {
                "whoever can change it can swap the certificate or key your server loads".to_owned()
            }
        }
    }

    /// The sticky bit protects entries of others' in a directory above ours, not the
    /// contents of `state_dir` itself.
    fn sticky_is_enough(self) -> bool {
        matches!(
            self,
            Self::AboveConfig | Self::AboveStateDir | Self::AboveHookScript | Self::AboveCertDir
        )
    }
}

/// Checks that neither the configuration file nor `state_dir` (nor a directory above either)
/// can be changed by a user other than root and the one evercert runs as. The error holds one
/// line per problem, each naming the path and the `chmod`/`chown` that fixes it.
pub fn check_permissions(config_path: &Path, config: &Config) -> Result<(), String> {
    let euid = rustix::process::geteuid().as_raw();
    let mut checker = Checker {
        euid,
        seen: HashSet::new(),
        problems: Vec::new(),
    };

    let given = std::path::absolute(config_path).unwrap_or_else(|_| config_path.to_owned());
    let mut config_paths = vec![given.clone()];
    // Through a symlink, both the link's directories and the real file's matter.
    if let Ok(real) = fs::canonicalize(config_path)
        && real != given
    {
        config_paths.push(real);
    }
    for path in &config_paths {
        checker.inspect(path, Role::ConfigFile);
        checker.inspect_ancestors(path, Role::AboveConfig);
    }

    let state_dir =
        std::path::absolute(&config.state_dir).unwrap_or_else(|_| config.state_dir.clone());
    let mut state_paths = vec![state_dir.clone()];
    if let Ok(real) = fs::canonicalize(&state_dir)
        && real != state_dir
    {
        state_paths.push(real);
    }
    for path in &state_paths {
        // Missing: nothing to check yet, but the directories it will be created in matter.
        checker.inspect(path, Role::StateDir);
        checker.inspect_ancestors(path, Role::AboveStateDir);
    }
    // evercert creates these with fixed modes; one opened up later is as bad as state_dir.
    for dir in STATE_SUBDIRS {
        checker.inspect(&state_dir.join(dir), Role::InStateDir);
    }

    if checker.problems.is_empty() {
        Ok(())
    } else {
        Err(checker
            .problems
            .iter()
            .map(|problem| format!("error: refusing to run: {problem}"))
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

/// What `config check` warns about without refusing to run: hook scripts (the first word of
/// a reload, dns-01 or alert command, when it is an absolute path) and certificate
/// directories that a user other than root and the one evercert runs as can change, each
/// with the fix. Not an error: a group-writable web directory may be deliberate, and the
/// check cannot see every path a command runs.
pub fn hook_and_directory_warnings(config: &Config) -> Vec<String> {
    let mut checker = Checker {
        euid: rustix::process::geteuid().as_raw(),
        seen: HashSet::new(),
        problems: Vec::new(),
    };
    let mut commands: Vec<&str> = Vec::new();
    for cert in &config.certificates {
        commands.extend(cert.reload.as_deref());
        if let crate::config::ChallengeSettings::Dns01 { hook, .. } = &cert.challenge {
            commands.push(hook);
        }
    }
    commands.extend(config.alerts.command.as_deref());
    for command in commands {
        if let Some(script) = script_of(command) {
            for path in with_real_path(script) {
                checker.inspect(&path, Role::HookScript);
                checker.inspect_ancestors(&path, Role::AboveHookScript);
            }
        }
    }
    for cert in &config.certificates {
        let files = [
            Some(&cert.cert_path),
            Some(&cert.key_path),
            cert.bundle_path.as_ref(),
        ];
        for dir in files.into_iter().flatten().filter_map(|file| file.parent()) {
            for path in with_real_path(dir) {
                checker.inspect(&path, Role::CertDir);
                checker.inspect_ancestors(&path, Role::AboveCertDir);
            }
        }
    }
    checker
        .problems
        .into_iter()
        .map(|problem| format!("warning: {problem}"))
        .collect()
}

/// The script a shell command runs: its first word, when that is an absolute path.
fn script_of(command: &str) -> Option<&Path> {
    let first = command.split_whitespace().next()?;
    let first = first.trim_matches(|c| c == '"' || c == '\'');
    first.starts_with('/').then(|| Path::new(first))
}

/// `path`, and where it really is when a symlink is on the way (both can be swapped).
fn with_real_path(path: &Path) -> Vec<std::path::PathBuf> {
    let mut paths = vec![path.to_owned()];
    if let Ok(real) = fs::canonicalize(path)
        && real != path
    {
        paths.push(real);
    }
    paths
}

struct Checker {
    euid: u32,
    /// (device, inode, sticky allowed): a directory above both the config and `state_dir` is
    /// reported once, but one that is also `state_dir` itself is held to the stricter rule.
    seen: HashSet<(u64, u64, bool)>,
    problems: Vec<String>,
}

impl Checker {
    fn inspect_ancestors(&mut self, path: &Path, role: Role) {
        for dir in path.ancestors().skip(1) {
            if !dir.as_os_str().is_empty() {
                self.inspect(dir, role);
            }
        }
    }

    fn inspect(&mut self, path: &Path, role: Role) {
        // Missing or unreadable: the command itself reports what it cannot open.
        let Ok(meta) = fs::metadata(path) else {
            return;
        };
        if !self
            .seen
            .insert((meta.dev(), meta.ino(), role.sticky_is_enough()))
        {
            return;
        }
        if let Some(problem) = problem(path, &meta, role, self.euid) {
            self.problems.push(problem);
        }
    }
}

fn user_name(uid: u32) -> String {
    if uid == 0 {
        "root".to_owned()
    } else {
        format!("uid {uid}")
    }
}

fn problem(path: &Path, meta: &Metadata, role: Role, euid: u32) -> Option<String> {
    let mode = meta.mode() & 0o7777;
    let user = user_name(euid);
    let path_text = path.display();
    let owner = meta.uid();
    if owner != 0 && owner != euid {
        return Some(format!(
            "{path_text} ({what}) belongs to uid {owner}, who is neither root nor the user evercert runs as ({user}); {risk}. Fix: chown {fix} {path_text}",
            what = role.describe(),
            risk = role.risk(&user),
            fix = if euid == 0 {
                "root".to_owned()
            } else {
                euid.to_string()
            },
        ));
    }
    let writable = mode & (GROUP_WRITE | OTHER_WRITE);
    let sticky_dir = meta.is_dir() && mode & STICKY != 0 && role.sticky_is_enough();
    if writable == 0 || sticky_dir {
        return None;
    }
    let who = match (writable & GROUP_WRITE != 0, writable & OTHER_WRITE != 0) {
        (true, true) => "its group and all other users",
        (true, false) => "its group",
        _ => "all other users",
    };
    Some(format!(
        "{path_text} ({what}) is writable by {who} (mode {mode:04o}); {risk}. Fix: chmod go-w {path_text}",
        what = role.describe(),
        risk = role.risk(&user),
    ))
}

/// Creates `state_dir` if it is missing, with exactly [`STATE_DIR_MODE`] whatever the umask
/// (missing parents 0755). An existing `state_dir` is left as it is.
pub fn ensure_state_dir(state_dir: &Path) -> Result<(), String> {
    let fail = |path: &Path, err: &io::Error| {
        format!(
            "error: cannot create state_dir {}: {err} (at {}); create it with `install -d -m 0711 {}` or fix state_dir in the configuration",
            state_dir.display(),
            path.display(),
            state_dir.display()
        )
    };
    match fs::metadata(state_dir) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(fail(
                state_dir,
                &io::Error::new(io::ErrorKind::NotADirectory, "a file is in the way"),
            ));
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(fail(state_dir, &err)),
    }
    if let Some(parent) = state_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::store::ensure_dir(parent).map_err(|(path, err)| fail(&path, &err))?;
    }
    match DirBuilder::new().mode(STATE_DIR_MODE).create(state_dir) {
        Ok(()) => {}
        // Someone (another evercert) made it meanwhile: theirs stands, like any existing one.
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(err) => return Err(fail(state_dir, &err)),
    }
    fs::set_permissions(state_dir, Permissions::from_mode(STATE_DIR_MODE))
        .map_err(|err| fail(state_dir, &err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::chown;

    fn config_in(dir: &Path, state_dir: &Path) -> (std::path::PathBuf, Config) {
        let path = dir.join("evercert.toml");
        fs::write(
            &path,
            format!(
                "state_dir = \"{}\"\n[acme]\ncontact = [\"mailto:ops@example.com\"]\n",
                state_dir.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        let config = crate::config::load(&path).unwrap();
        (path, config)
    }

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_private_setup_passes_and_a_missing_state_dir_is_fine() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let (path, config) = config_in(tmp.path(), &state);
        assert_eq!(check_permissions(&path, &config), Ok(()));
        fs::create_dir(&state).unwrap();
        chmod(&state, 0o711);
        assert_eq!(check_permissions(&path, &config), Ok(()));
        chmod(&state, 0o700);
        assert_eq!(check_permissions(&path, &config), Ok(()));
    }

    #[test]
    fn a_config_writable_by_others_is_refused_with_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let (path, config) = config_in(tmp.path(), &tmp.path().join("state"));
        for (mode, who) in [
            (0o666, "its group and all other users"),
            (0o660, "its group"),
            (0o602, "all other users"),
        ] {
            chmod(&path, mode);
            let message = check_permissions(&path, &config).unwrap_err();
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(message.contains("the configuration file"), "{message}");
            assert!(
                message.contains(&format!("writable by {who} ")),
                "{message}"
            );
            assert!(message.contains(&format!("(mode {mode:04o})")), "{message}");
            assert!(
                message.contains(&format!("Fix: chmod go-w {}", path.display())),
                "{message}"
            );
            assert_eq!(message.lines().count(), 1, "{message}");
        }
    }

    #[test]
    fn a_state_dir_or_a_directory_above_writable_by_others_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let parent = tmp.path().join("var");
        let state = parent.join("state");
        fs::create_dir_all(&state).unwrap();
        let (path, config) = config_in(tmp.path(), &state);

        chmod(&state, 0o777);
        let message = check_permissions(&path, &config).unwrap_err();
        assert!(
            message.contains(&format!("{} (state_dir)", state.display())),
            "{message}"
        );
        assert!(message.contains("chmod go-w"), "{message}");
        // Sticky does not make state_dir itself safe: its entries are ours to protect.
        chmod(&state, 0o1777);
        assert!(check_permissions(&path, &config).is_err());
        chmod(&state, 0o711);

        chmod(&parent, 0o777);
        let message = check_permissions(&path, &config).unwrap_err();
        assert!(
            message.contains(&format!(
                "{} (a directory holding state_dir)",
                parent.display()
            )),
            "{message}"
        );
        // Above state_dir, sticky is enough (like /tmp).
        chmod(&parent, 0o1777);
        assert_eq!(check_permissions(&path, &config), Ok(()));

        // A missing state_dir in a world-writable, non-sticky directory: someone else could
        // create it first.
        chmod(&parent, 0o777);
        fs::remove_dir(&state).unwrap();
        assert!(check_permissions(&path, &config).is_err());
        chmod(&parent, 0o755);
        assert_eq!(check_permissions(&path, &config), Ok(()));

        // A directory inside state_dir opened up later.
        fs::create_dir(&state).unwrap();
        let live = state.join("live");
        fs::create_dir(&live).unwrap();
        chmod(&live, 0o757);
        let message = check_permissions(&path, &config).unwrap_err();
        assert!(
            message.contains(&format!(
                "{} (a directory of evercert's state) is writable by all other users",
                live.display()
            )),
            "{message}"
        );
        chmod(&live, 0o755);
        assert_eq!(check_permissions(&path, &config), Ok(()));
    }

    #[test]
    fn the_directory_of_the_config_counts_and_every_problem_is_listed() {
        let tmp = tempfile::tempdir().unwrap();
        let etc = tmp.path().join("etc");
        fs::create_dir(&etc).unwrap();
        let state = tmp.path().join("state");
        fs::create_dir(&state).unwrap();
        let (path, config) = config_in(&etc, &state);
        chmod(&etc, 0o775);
        chmod(&state, 0o770);
        let message = check_permissions(&path, &config).unwrap_err();
        assert_eq!(message.lines().count(), 2, "{message}");
        assert!(
            message.contains(&format!(
                "{} (a directory holding the configuration file)",
                etc.display()
            )),
            "{message}"
        );
        assert!(message.contains("(state_dir)"), "{message}");
        chmod(&etc, 0o755);
        chmod(&state, 0o700);
    }

    #[test]
    fn a_config_reached_through_a_symlink_is_checked_where_it_really_is() {
        let tmp = tempfile::tempdir().unwrap();
        let real_dir = tmp.path().join("real");
        fs::create_dir(&real_dir).unwrap();
        let (real, _) = config_in(&real_dir, &tmp.path().join("state"));
        let link = tmp.path().join("evercert.toml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let config = crate::config::load(&link).unwrap();
        assert_eq!(check_permissions(&link, &config), Ok(()));
        chmod(&real_dir, 0o777);
        let message = check_permissions(&link, &config).unwrap_err();
        assert!(
            message.contains(&real_dir.display().to_string()),
            "{message}"
        );
        chmod(&real_dir, 0o755);
    }

    #[test]
    fn files_of_another_non_root_user_are_refused_with_chown() {
        // Handing a file to another user needs root; as anyone else only the
        // ownership rule's other half (root-owned is fine) can be shown.
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        fs::create_dir(&state).unwrap();
        let (path, config) = config_in(tmp.path(), &state);
        if !rustix::process::geteuid().is_root() {
            assert_eq!(check_permissions(&path, &config), Ok(()));
            return;
        }
        chown(&path, Some(65534), None).unwrap();
        let message = check_permissions(&path, &config).unwrap_err();
        assert!(message.contains("belongs to uid 65534"), "{message}");
        assert!(
            message.contains(&format!("Fix: chown root {}", path.display())),
            "{message}"
        );
        chown(&path, Some(0), None).unwrap();
        chown(&state, Some(65534), None).unwrap();
        let message = check_permissions(&path, &config).unwrap_err();
        assert!(
            message.contains("(state_dir) belongs to uid 65534"),
            "{message}"
        );
        // Root-owned, and another user's group, are fine as long as nobody else can write.
        chown(&state, Some(0), Some(65534)).unwrap();
        assert_eq!(check_permissions(&path, &config), Ok(()));
    }

    #[test]
    fn ensure_state_dir_creates_it_0711_and_leaves_existing_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("var/lib/evercert");
        ensure_state_dir(&state).unwrap();
        let mode = fs::metadata(&state).unwrap().mode() & 0o7777;
        assert_eq!(mode, STATE_DIR_MODE);
        let parent = fs::metadata(state.parent().unwrap()).unwrap().mode() & 0o7777;
        assert_eq!(parent, 0o755);

        chmod(&state, 0o700);
        ensure_state_dir(&state).unwrap();
        assert_eq!(fs::metadata(&state).unwrap().mode() & 0o7777, 0o700);

        let file = tmp.path().join("file");
        fs::write(&file, "").unwrap();
        let message = ensure_state_dir(&file).unwrap_err();
        assert!(message.contains(&file.display().to_string()), "{message}");
        assert!(message.contains("install -d -m 0711"), "{message}");
    }
}
