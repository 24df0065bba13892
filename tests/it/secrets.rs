//! Secrets stay secret: private keys are never readable by others, not even while staged;
//! account credentials are private; no private key, account key or EAB HMAC key reaches any
//! output (logs at trace level, errors, hook environments, `status`, `account show`, the
//! agent); and evercert refuses to run on a configuration or `state_dir` that other users can
//! change.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use notify::Watcher as _;

use crate::support::certs::{self, KeyType};
use crate::support::pebble::PebbleOptions;
use crate::support::setup::{CertSpec, Setup, toml_string};

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().mode() & 0o7777
}

/// Every entry of `dir` (none if it does not exist).
fn entries(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
        .unwrap_or_default()
}

/// One look at a key file: where, its mode, its size.
type Sighting = (PathBuf, u32, u64);

/// Watches `archive` for key files, by inotify (through `notify`) and by polling every
/// millisecond, and records the mode of each one seen.
struct KeyWatcher {
    done: Arc<AtomicBool>,
    poller: Option<std::thread::JoinHandle<()>>,
    _inotify: notify::RecommendedWatcher,
    seen: Arc<Mutex<Vec<Sighting>>>,
}

impl KeyWatcher {
    fn start(state_dir: &Path) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = {
            let seen = seen.clone();
            move |path: &Path| {
                if path.file_name().is_some_and(|name| name == "privkey.pem")
                    && let Ok(meta) = fs::symlink_metadata(path)
                    && meta.is_file()
                {
                    seen.lock()
                        .unwrap()
                        .push((path.to_owned(), meta.mode() & 0o7777, meta.len()));
                }
            }
        };
        let on_event = record.clone();
        let mut inotify =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if let Ok(event) = event {
                    for path in &event.paths {
                        on_event(path);
                    }
                }
            })
            .unwrap();
        inotify
            .watch(state_dir, notify::RecursiveMode::Recursive)
            .unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let archive = state_dir.join("archive");
        let poller = {
            let done = done.clone();
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    for name_dir in entries(&archive) {
                        for version in entries(&name_dir) {
                            record(&version.join("privkey.pem"));
                        }
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        Self {
            done,
            poller: Some(poller),
            _inotify: inotify,
            seen,
        }
    }

    fn stop(mut self) -> Vec<Sighting> {
        self.done.store(true, Ordering::Relaxed);
        if let Some(poller) = self.poller.take() {
            poller.join().unwrap();
        }
        self.seen.lock().unwrap().clone()
    }
}

#[test]
fn keys_are_private_from_their_first_byte_and_account_files_are_private() {
    let setup = Setup::new();
    setup.write_config(&[CertSpec::new("shop")]);
    // Created as evercert would (0711), so that inotify can watch it from the start.
    fs::create_dir(setup.state_dir()).unwrap();
    fs::set_permissions(setup.state_dir(), fs::Permissions::from_mode(0o711)).unwrap();

    let watcher = KeyWatcher::start(&setup.state_dir());
    // The first issuance, with every store step slowed down so the staged key sits there.
    let first = setup
        .command(&["renew"])
        .env("EVERCERT_TEST_STORE_DELAY_MS", "60")
        .output()
        .unwrap();
    assert!(first.status.success(), "{first:?}");
    // An operator's pair with a careless 0644 key, migrated: the archived copy is 0600.
    let (not_before, not_after) = certs::days_left(10);
    let leaf = certs::TestCa::new().leaf(
        &["shop.example.test"],
        not_before,
        not_after,
        KeyType::EcdsaP256,
    );
    fs::remove_file(setup.cert_path("shop")).unwrap();
    fs::remove_file(setup.key_path("shop")).unwrap();
    leaf.write_fullchain(&setup.cert_path("shop"));
    leaf.write_key(&setup.key_path("shop"));
    fs::set_permissions(setup.key_path("shop"), fs::Permissions::from_mode(0o644)).unwrap();
    let second = setup
        .command(&["renew", "--force"])
        .env("EVERCERT_TEST_STORE_DELAY_MS", "60")
        .output()
        .unwrap();
    assert!(second.status.success(), "{second:?}");
    let seen = watcher.stop();

    let staged: Vec<_> = seen
        .iter()
        .filter(|(path, ..)| path.to_string_lossy().contains("/.tmp-"))
        .collect();
    assert!(
        !staged.is_empty(),
        "the watcher never saw a staged key ({} other sightings), so it proves nothing",
        seen.len()
    );
    let mut wide: Vec<String> = seen
        .iter()
        .filter(|(_, mode, _)| mode & 0o077 != 0)
        .map(|(path, mode, len)| format!("{} mode {mode:04o}, {len} bytes", path.display()))
        .collect();
    wide.dedup();
    assert!(
        wide.is_empty(),
        "{} sightings of key files readable by others, e.g. {:?}",
        wide.len(),
        &wide[..wide.len().min(3)]
    );
    println!(
        "watched {} sightings of key files ({} while staged), all 0600",
        seen.len(),
        staged.len()
    );

    // Every archived key, including the imported one whose original was 0644.
    let archive = setup.state_dir().join("archive/shop");
    let versions = entries(&archive);
    assert_eq!(versions.len(), 3, "{versions:?}");
    assert!(
        versions
            .iter()
            .any(|v| v.to_string_lossy().ends_with("-imported"))
    );
    for version in &versions {
        assert_eq!(mode(&version.join("privkey.pem")), 0o600, "{version:?}");
    }
    assert_eq!(mode(&setup.key_path("shop")), 0o600);

    // Account credentials: the directories 0700, the files 0600.
    let accounts = setup.state_dir().join("accounts");
    assert_eq!(mode(&accounts), 0o700);
    let account_dirs = entries(&accounts);
    assert_eq!(account_dirs.len(), 1, "{account_dirs:?}");
    for dir in &account_dirs {
        assert_eq!(mode(dir), 0o700, "{dir:?}");
        let files = entries(dir);
        assert!(
            files.iter().any(|f| f.ends_with("credentials.json")),
            "{files:?}"
        );
        for file in files {
            assert_eq!(mode(&file), 0o600, "{file:?}");
        }
    }
    let state_mode = mode(&setup.state_dir());
    assert_eq!(state_mode & 0o022, 0, "state_dir is {state_mode:04o}");
}

/// The state_dir a first run creates by itself must not be open to other users either.
#[test]
fn a_state_dir_created_by_evercert_is_not_writable_by_others() {
    let setup = Setup::new();
    setup.write_config(&[CertSpec::new("shop")]);
    assert!(!setup.state_dir().exists());
    let run = setup.run(&["renew"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let state_mode = mode(&setup.state_dir());
    println!("state_dir created with mode {state_mode:04o}");
    assert_eq!(state_mode & 0o022, 0, "state_dir is {state_mode:04o}");
    assert_eq!(state_mode & 0o777, 0o711, "state_dir is {state_mode:04o}");
    for dir in ["archive", "live"] {
        assert_eq!(mode(&setup.state_dir().join(dir)) & 0o022, 0, "{dir}");
    }
    // The next run is not refused by the permission check because of what it created.
    let status = setup.run(&["status"]);
    assert_eq!(status.code, 0, "{}", status.all());
}

// ---------------------------------------------------------------------------------------------
// Nothing secret in any output

/// Byte strings that must not appear anywhere, each with a label for the failure message.
#[derive(Default)]
struct Secrets {
    needles: Vec<(String, Vec<u8>)>,
}

impl Secrets {
    fn add(&mut self, label: impl Into<String>, needle: impl Into<Vec<u8>>) {
        let needle = needle.into();
        // Short fragments could match by chance; every real secret here is far longer.
        if needle.len() >= 16 {
            self.needles.push((label.into(), needle));
        }
    }

    /// A DER secret in every form a log could show it: raw, base64 (one line, and PEM's
    /// 64-column lines), base64url and hex.
    fn add_der(&mut self, label: &str, der: &[u8]) {
        self.add(format!("{label} (raw)"), der);
        self.add(format!("{label} (base64url)"), URL_SAFE_NO_PAD.encode(der));
        let standard = STANDARD.encode(der);
        self.add(format!("{label} (base64)"), standard.as_bytes());
        for (index, line) in standard.as_bytes().chunks(64).enumerate() {
            self.add(format!("{label} (PEM line {index})"), line);
        }
        let hex: String = der.iter().map(|byte| format!("{byte:02x}")).collect();
        self.add(format!("{label} (hex)"), hex);
    }

    /// A PEM private key: each base64 line of its body, and its DER in every form.
    fn add_pem_key(&mut self, label: &str, pem: &str) {
        let mut body = String::new();
        for line in pem.lines().filter(|line| !line.starts_with("-----")) {
            self.add(format!("{label} (body line)"), line.trim());
            body.push_str(line.trim());
        }
        let der = STANDARD.decode(body).unwrap();
        self.add_der(label, &der);
    }

    /// The labels of the secrets found in `haystack`.
    fn found_in(&self, haystack: &[u8]) -> Vec<&str> {
        self.needles
            .iter()
            .filter(|(_, needle)| {
                haystack
                    .windows(needle.len())
                    .any(|w| w == needle.as_slice())
            })
            .map(|(label, _)| label.as_str())
            .collect()
    }
}

/// Everything the runs printed or wrote for an operator to read, by source.
#[derive(Default)]
struct Transcript {
    outputs: Vec<(String, Vec<u8>)>,
}

impl Transcript {
    /// Runs `evercert ARGS` at trace level and keeps stdout and stderr.
    fn run(&mut self, setup: &Setup, args: &[&str]) -> i32 {
        let output = setup
            .command(args)
            .env("EVERCERT_LOG", "trace")
            .output()
            .unwrap();
        let label = args.join(" ");
        self.outputs
            .push((format!("`{label}` stdout"), output.stdout.clone()));
        self.outputs
            .push((format!("`{label}` stderr"), output.stderr.clone()));
        assert!(
            !output.stderr.is_empty() || !output.stdout.is_empty(),
            "`{label}` printed nothing"
        );
        output.status.code().unwrap_or(-1)
    }

    fn add_file(&mut self, label: &str, path: &Path) {
        self.outputs
            .push((label.to_owned(), fs::read(path).unwrap_or_default()));
    }

    fn text(&self, label_start: &str) -> String {
        self.outputs
            .iter()
            .filter(|(label, _)| label.starts_with(label_start))
            .map(|(_, bytes)| String::from_utf8_lossy(bytes).into_owned())
            .collect()
    }

    fn bytes(&self) -> usize {
        self.outputs.iter().map(|(_, bytes)| bytes.len()).sum()
    }
}

fn account_key(setup: &Setup) -> String {
    let accounts = setup.state_dir().join("accounts");
    let dir = entries(&accounts)
        .into_iter()
        .find(|dir| dir.join("credentials.json").is_file())
        .unwrap();
    let credentials: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("credentials.json")).unwrap()).unwrap();
    credentials["key_pkcs8"]
        .as_str()
        .expect("credentials.json has key_pkcs8")
        .to_owned()
}

/// How often the reload hook ran for `shop` alone.
fn shop_reloads(setup: &Setup) -> usize {
    fs::read_to_string(setup.path().join("hook-env.txt"))
        .unwrap_or_default()
        .matches("EVERCERT_NAME=shop\n")
        .count()
}

/// The agent at trace level until `shop` is issued again, then SIGTERM; returns its output.
fn agent_reissues(setup: &Setup) -> Vec<u8> {
    let reloads_before = shop_reloads(setup);
    let mut child = setup
        .command(&["run"])
        .env("EVERCERT_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let sink = Arc::new(Mutex::new(Vec::new()));
    let mut readers = Vec::new();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let sink = sink.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stream).split(b'\n').map_while(Result::ok) {
                let mut sink = sink.lock().unwrap();
                sink.extend_from_slice(&line);
                sink.push(b'\n');
            }
        }));
    }
    let started = Instant::now();
    let reissued = loop {
        let pair = setup.cert_path("shop").exists() && setup.key_path("shop").exists();
        if pair && shop_reloads(setup) > reloads_before {
            break true;
        }
        if started.elapsed() > Duration::from_secs(60) || child.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    let stopped = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if stopped.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for reader in readers {
        reader.join().unwrap();
    }
    let log = sink.lock().unwrap().clone();
    assert!(
        reissued,
        "the agent did not reissue shop:\n{}",
        String::from_utf8_lossy(&log)
    );
    log
}

#[test]
fn no_key_eab_hmac_or_account_key_appears_in_any_output() {
    let hmac: [u8; 32] = rand::random();
    let hmac_b64 = URL_SAFE_NO_PAD.encode(hmac);
    let kid = "evercert-secrets-test";
    let mut setup = Setup::with(PebbleOptions {
        eab_required: true,
        eab_keys: vec![(kid.to_owned(), hmac_b64.clone())],
        domain_blocklist: vec!["blocked.example.test".to_owned()],
        ..PebbleOptions::default()
    });
    setup.acme_extra = format!("eab = {{ kid = \"{kid}\", hmac_key = \"{hmac_b64}\" }}\n");
    let hook_env = setup.path().join("hook-env.txt");
    let dump_env = format!("env >> {}", hook_env.display());
    setup.write_config(&[
        CertSpec::new("shop").reload(&dump_env),
        // Refused by the CA: an order error.
        CertSpec::new("bad").domains(&["bad.blocked.example.test"]),
        // Issued, but its reload hook fails: the rollback path and its messages.
        CertSpec::new("flaky").reload(&format!("{dump_env}; echo reload refused >&2; exit 3")),
    ]);
    // A certificate evercert monitors but does not manage.
    let (not_before, not_after) = certs::days_left(20);
    let monitored = certs::leaf(
        &["partner.example.test"],
        not_before,
        not_after,
        KeyType::Rsa2048,
    );
    let partner = monitored.write_fullchain(&setup.path().join("partner/bundle.pem"));
    let partner_key = monitored.write_key(&setup.path().join("partner/key.pem"));
    let mut config = fs::read_to_string(setup.config_path()).unwrap();
    config.push_str(&format!(
        "\n[[monitor]]\npath = {}\n",
        toml_string(&partner.display().to_string())
    ));
    fs::write(setup.config_path(), config).unwrap();

    let mut transcript = Transcript::default();
    assert_eq!(transcript.run(&setup, &["config", "check"]), 0);
    assert_eq!(
        transcript.run(&setup, &["renew"]),
        1,
        "{}",
        transcript.text("`renew`")
    );
    let first_account_key = account_key(&setup);
    assert_eq!(transcript.run(&setup, &["renew", "shop", "--force"]), 0);
    assert_eq!(transcript.run(&setup, &["renew", "shop", "--dry-run"]), 0);
    assert_eq!(transcript.run(&setup, &["status"]), 0);
    assert_eq!(transcript.run(&setup, &["status", "--json"]), 0);
    transcript.run(&setup, &["check"]);
    transcript.run(&setup, &["check", "--json"]);
    let shop_cert = setup.cert_path("shop").display().to_string();
    transcript.run(&setup, &["check", &shop_cert]);
    assert_eq!(transcript.run(&setup, &["account", "show"]), 0);
    assert_eq!(transcript.run(&setup, &["account", "rollover"]), 0);
    let second_account_key = account_key(&setup);
    assert_ne!(
        first_account_key, second_account_key,
        "rollover changed nothing"
    );
    assert_eq!(transcript.run(&setup, &["renew", "shop", "--force"]), 0);
    // Unknown names and revocation errors are errors an operator reads too.
    assert_eq!(transcript.run(&setup, &["renew", "nope"]), 2);
    assert_eq!(
        transcript.run(&setup, &["revoke", "flaky", "--reason", "bogus"]),
        2
    );
    // The agent re-issues a certificate whose files were deleted, running the hook.
    fs::remove_file(setup.cert_path("shop")).unwrap();
    fs::remove_file(setup.key_path("shop")).unwrap();
    let agent_log = agent_reissues(&setup);
    transcript
        .outputs
        .push(("`run` (agent)".to_owned(), agent_log));
    assert_eq!(
        transcript.run(&setup, &["revoke", "shop", "--reason", "superseded"]),
        0
    );
    assert_eq!(transcript.run(&setup, &["status", "--json"]), 0);
    transcript.add_file("reload hook environments", &hook_env);
    for history in entries(&setup.state_dir().join("state")) {
        transcript.add_file(&format!("history {}", history.display()), &history);
    }

    // The flows really happened, so the outputs cover them.
    let renew_out = transcript.text("`renew`");
    assert!(renew_out.contains("bad: failed at order"), "{renew_out}");
    assert!(renew_out.contains("reload hook failed"), "{renew_out}");
    let env_dump = transcript.text("reload hook");
    assert!(env_dump.contains("EVERCERT_KEY_PATH="), "{env_dump}");
    assert!(env_dump.contains("EVERCERT_NAME=flaky"), "{env_dump}");
    assert!(
        transcript.text("`run`").contains("TRACE") || transcript.text("`run`").contains("DEBUG")
    );

    let mut secrets = Secrets::default();
    secrets.add("EAB HMAC key (raw)", hmac.to_vec());
    secrets.add("EAB HMAC key (base64url)", hmac_b64.as_bytes());
    secrets.add("EAB HMAC key (base64)", STANDARD.encode(hmac));
    secrets.add(
        "EAB HMAC key (hex)",
        hmac.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    );
    for (label, key) in [
        ("first account key", &first_account_key),
        ("rolled-over account key", &second_account_key),
    ] {
        secrets.add(format!("{label} (key_pkcs8)"), key.as_bytes());
        secrets.add_der(
            label,
            &URL_SAFE_NO_PAD.decode(key.trim_end_matches('=')).unwrap(),
        );
    }
    let mut private_keys = 0;
    for name_dir in entries(&setup.state_dir().join("archive")) {
        for version in entries(&name_dir) {
            let pem = fs::read_to_string(version.join("privkey.pem")).unwrap();
            secrets.add_pem_key(&format!("private key {}", version.display()), &pem);
            private_keys += 1;
        }
    }
    secrets.add_pem_key(
        "monitored certificate's key",
        &fs::read_to_string(&partner_key).unwrap(),
    );
    assert!(private_keys >= 5, "{private_keys} keys archived");

    // The search does find secrets where they are.
    let live_key = fs::read(setup.key_path("shop")).unwrap();
    assert!(
        !secrets.found_in(&live_key).is_empty(),
        "the search cannot find a key"
    );
    assert!(!secrets.found_in(hmac_b64.as_bytes()).is_empty());
    assert!(!secrets.found_in(first_account_key.as_bytes()).is_empty());

    let mut leaks = Vec::new();
    for (source, bytes) in &transcript.outputs {
        for secret in secrets.found_in(bytes) {
            leaks.push(format!("{secret} in {source}"));
        }
    }
    println!(
        "scanned {} outputs ({} bytes) for {} secret forms ({private_keys} private keys, 2 account keys, 1 EAB key): {} found",
        transcript.outputs.len(),
        transcript.bytes(),
        secrets.needles.len(),
        leaks.len()
    );
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Refusing a configuration or state_dir others can change

/// A configuration with no CA contact needed: `status` and `config check` work offline.
fn offline_config(dir: &Path) -> (PathBuf, PathBuf) {
    let state = dir.join("state");
    let config = dir.join("evercert.toml");
    fs::write(
        &config,
        format!(
            "state_dir = {}\n\n[acme]\ncontact = [\"mailto:ops@example.test\"]\n",
            toml_string(&state.display().to_string())
        ),
    )
    .unwrap();
    fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).unwrap();
    (config, state)
}

fn evercert(config: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_evercert"))
        .env_remove("EVERCERT_CONFIG")
        .env("EVERCERT_LOG", "warn")
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_config_writable_by_others_is_refused_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, state) = offline_config(tmp.path());
    let (code, _, stderr) = evercert(&config, &["status"]);
    assert_eq!(code, 0, "{stderr}");

    fs::set_permissions(&config, fs::Permissions::from_mode(0o666)).unwrap();
    for args in [
        &["status"][..],
        &["config", "check"],
        &["renew"],
        &["run"],
        &["account", "show"],
    ] {
        let (code, stdout, stderr) = evercert(&config, args);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(
            stderr.contains(&format!(
                "refusing to run: {} (the configuration file) is writable by its group and all other users (mode 0666)",
                config.display()
            )),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains(&format!("Fix: chmod go-w {}", config.display())),
            "{stderr}"
        );
        assert!(stdout.is_empty(), "{args:?} did something: {stdout}");
    }
    assert!(!state.exists(), "a refused run created state_dir");

    fs::set_permissions(&config, fs::Permissions::from_mode(0o620)).unwrap();
    let (code, _, stderr) = evercert(&config, &["status"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("writable by its group (mode 0620)"),
        "{stderr}"
    );

    fs::set_permissions(&config, fs::Permissions::from_mode(0o600)).unwrap();
    let (code, _, stderr) = evercert(&config, &["status"]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_state_dir_writable_by_others_is_refused_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, state) = offline_config(tmp.path());
    fs::create_dir(&state).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o777)).unwrap();
    for args in [&["status"][..], &["renew", "--force"], &["run"]] {
        let (code, stdout, stderr) = evercert(&config, args);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(
            stderr.contains(&format!(
                "refusing to run: {} (state_dir) is writable by its group and all other users (mode 0777)",
                state.display()
            )),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("Fix: chmod go-w {}", state.display())),
            "{stderr}"
        );
    }
    assert!(
        entries(&state).is_empty(),
        "a refused run wrote into state_dir"
    );

    // The usual modes are fine.
    for fine in [0o700, 0o711, 0o755] {
        fs::set_permissions(&state, fs::Permissions::from_mode(fine)).unwrap();
        let (code, _, stderr) = evercert(&config, &["status"]);
        assert_eq!(code, 0, "{fine:04o}: {stderr}");
    }

    // Above state_dir too: a world-writable parent lets anyone swap state_dir itself.
    fs::create_dir(tmp.path().join("shared")).unwrap();
    let (config, _) = offline_config(&tmp.path().join("shared"));
    fs::set_permissions(tmp.path().join("shared"), fs::Permissions::from_mode(0o777)).unwrap();
    let (code, _, stderr) = evercert(&config, &["config", "check"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("(a directory holding"), "{stderr}");
    fs::set_permissions(tmp.path().join("shared"), fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn files_owned_by_another_user_are_refused_with_chown() {
    if !rustix::process::geteuid().is_root() {
        // Only root can hand a file to another user; the rule is unit-tested in src/safety.rs.
        println!("not root: skipping the chown part");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (config, state) = offline_config(tmp.path());
    std::os::unix::fs::chown(&config, Some(65534), None).unwrap();
    let (code, _, stderr) = evercert(&config, &["status"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{} (the configuration file) belongs to uid 65534",
            config.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("Fix: chown root {}", config.display())),
        "{stderr}"
    );
    std::os::unix::fs::chown(&config, Some(0), None).unwrap();
    fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
    let (code, _, stderr) = evercert(&config, &["status"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("(state_dir) belongs to uid 65534"),
        "{stderr}"
    );
}
