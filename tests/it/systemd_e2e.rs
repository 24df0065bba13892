//! The Debian package under a real systemd (issue 14, item 7): build the `.deb` with
//! `scripts/build-deb.sh` from the binary under test, boot systemd in a container, install
//! it with dpkg and look at what an operator meets there — the template refusing to run,
//! READY, a renewal that reloads nginx through the sandbox, the idle line, the sandbox's
//! exposure score, SIGHUP with a bad configuration, journald priorities and plain-text
//! messages, an upgrade in place, the timer's one-shot seen by the running agent at once,
//! the watchdog feeding and restarting a hung agent, and removal leaving no failed unit.
//!
//! The container boots the machine's own OS (systemd is installed by scripts/ensure-deps.sh)
//! on a throw-away overlay: an overlayfs with `/` as its read-only lower layer and a tmpfs
//! as its upper layer, mounted in a private mount namespace of the `systemd-nspawn` process
//! (`unshare --mount`), so every write — dpkg, /etc, the journal — lands in the tmpfs and
//! the mounts vanish with the container, whatever happens to the test. Nothing touches the
//! host's /etc or systemd state. Booting takes seconds, with no debootstrap'd image.
//! The container shares the host's network, so the agent reaches the Pebble this test starts
//! on the host's loopback; it boots to `basic.target` only, so the host image's own services
//! (nginx, named, etcd, … enabled in multi-user.target) do not start and take no ports.
//!
//! Why a Rust test and not a script: it runs in `cargo test` with the rest (no second entry
//! point for CI), reuses the Pebble fixture and certificate minting, and packages the exact
//! binary cargo just built. It needs root, `systemd-nspawn` (Debian `systemd-container`),
//! nsenter/unshare (util-linux), dpkg-deb, dpkg-shlibdeps and strip; it fails, never skips,
//! without them. About 35 s alone, 45-60 s on a loaded 2-core machine.

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::agent::wait_for;
use crate::support::certs::{self, KeyType};
use crate::support::pebble::{Pebble, http_request, unused_loopback_port};

/// Generous: a loaded 2-core machine running the rest of the suite.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
const RENEWAL_TIMEOUT: Duration = Duration::from_secs(120);
/// Every command run inside the container is killed after this (coreutils `timeout`).
const COMMAND_TIMEOUT_SECS: &str = "180";

/// Units of the host image that `basic.target` still pulls in and that would only cost CPU
/// in the container (apt, man-db and friends fire at once when their stamps are old).
const MASKED: &[&str] = &[
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "man-db.timer",
    "systemd-tmpfiles-clean.timer",
];

/// What the watchdog check reads of evercert.service, all at once.
const SNAPSHOT: &[&str] = &[
    "ActiveState",
    "SubState",
    "MainPID",
    "InvocationID",
    "NRestarts",
    "Result",
];

/// Properties of a unit from one `systemctl show`, in the order systemd gave them.
struct Properties(Vec<(String, String)>);

impl Properties {
    fn get(&self, key: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, value)| value.as_str())
    }
}

impl std::fmt::Display for Properties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (key, value)) in self.0.iter().enumerate() {
            write!(f, "{}{key}={value}", if i == 0 { "" } else { " " })?;
        }
        Ok(())
    }
}

/// A booted container. Dropping it powers it off (or kills its PID 1, which ends every
/// process of its PID namespace) and waits for systemd-nspawn; the overlay and its tmpfs
/// lived in nspawn's private mount namespace and are gone with it.
struct Container {
    name: String,
    nspawn: Child,
    leader: u32,
    dir: tempfile::TempDir,
}

impl Container {
    fn boot() -> Self {
        require_tools();
        let dir = tempfile::Builder::new()
            .prefix("evercert-e2e-")
            .tempdir()
            .unwrap();
        for sub in ["layer", "root"] {
            fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let name = format!("evercert-e2e-{}", std::process::id());
        let mut init_args = vec!["systemd.unit=basic.target".to_owned()];
        init_args.extend(MASKED.iter().map(|unit| format!("systemd.mask={unit}")));
        // The overlay is mounted in this shell's private mount namespace only, and nspawn
        // replaces the shell (exec): the host never sees the mounts. A fresh machine-id,
        // so that the container's journal is its own.
        let script = r#"set -e
mount -t tmpfs -o mode=0755 evercert-e2e "$1/layer"
mkdir "$1/layer/upper" "$1/layer/work"
mount -t overlay evercert-e2e -o "lowerdir=/,upperdir=$1/layer/upper,workdir=$1/layer/work" "$1/root"
tr -d - </proc/sys/kernel/random/uuid >"$1/root/etc/machine-id"
name="$2"; shift 2
exec systemd-nspawn --quiet -D "$ROOT" -M "$name" --register=no --keep-unit \
    --console=passive -b -- "$@"
"#;
        let log = fs::File::create(dir.path().join("nspawn.log")).unwrap();
        let nspawn = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                "sh",
            ])
            .arg(dir.path())
            .arg(&name)
            .args(&init_args)
            .env("ROOT", dir.path().join("root"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start unshare + systemd-nspawn");
        let mut container = Self {
            name,
            leader: 0,
            nspawn,
            dir,
        };
        let started = Instant::now();
        while container.leader == 0 {
            if let Some(status) = container.nspawn.try_wait().unwrap() {
                panic!(
                    "systemd-nspawn exited ({status}) before the container booted:\n{}",
                    container.nspawn_log()
                );
            }
            assert!(
                started.elapsed() < BOOT_TIMEOUT,
                "no container PID 1 after {BOOT_TIMEOUT:?}:\n{}",
                container.nspawn_log()
            );
            // The child is systemd once nspawn has set up the container and exec'd it.
            container.leader = child_of(container.nspawn.id())
                .filter(|pid| {
                    fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|comm| comm.trim() == "systemd")
                })
                .unwrap_or(0);
            std::thread::sleep(Duration::from_millis(50));
        }
        // "running" once every start job of the boot is done ("degraded": a unit failed);
        // systemctl cannot connect for the first moments.
        let mut state = String::new();
        while started.elapsed() < BOOT_TIMEOUT {
            let output = container.sh("systemctl is-system-running --wait");
            state = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            if matches!(
                state.as_str(),
                "running" | "degraded" | "maintenance" | "stopping"
            ) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(
            state,
            "running",
            "the container did not boot cleanly:\n{}\n{}",
            container.sh_text(
                "systemctl list-units --failed --no-pager; journalctl -b -n 60 --no-pager"
            ),
            container.nspawn_log()
        );
        container
    }

    /// Runs `script` with `sh -c` inside the container (all its namespaces, a clean
    /// environment), killed after COMMAND_TIMEOUT_SECS.
    fn sh(&self, script: &str) -> Output {
        Command::new("timeout")
            .args([COMMAND_TIMEOUT_SECS, "nsenter", "-t"])
            .arg(self.leader.to_string())
            .args(["-a", "env", "-i"])
            .args([
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG=C.UTF-8",
                "SYSTEMD_PAGER=",
                "SYSTEMD_COLORS=0",
                "sh",
                "-c",
                script,
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run nsenter")
    }

    /// Standard output and error of `script`, whatever its exit status.
    fn sh_text(&self, script: &str) -> String {
        let output = self.sh(script);
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }

    /// Runs `script` and returns its standard output; panics with the output and the
    /// container's recent journal if it fails.
    fn ok(&self, script: &str) -> String {
        let output = self.sh(script);
        assert!(
            output.status.success(),
            "`{script}` failed in the container ({}):\n{}{}\n--- journal:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.sh_text("journalctl -b -n 60 --no-pager")
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The container's view of `path`.
    fn path(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{path}", self.leader))
    }

    /// Writes a file inside the container with `mode`, creating its directory.
    fn write(&self, path: &str, contents: impl AsRef<[u8]>, mode: u32) {
        let host_path = self.path(path);
        fs::create_dir_all(host_path.parent().unwrap()).unwrap();
        fs::write(&host_path, contents).unwrap();
        fs::set_permissions(&host_path, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// One property of a unit (`systemctl show -P`).
    fn property(&self, unit: &str, property: &str) -> String {
        self.ok(&format!("systemctl show -P {property} {unit}"))
            .trim()
            .to_owned()
    }

    /// Several properties of a unit read at once (`systemctl show -p a,b`): one snapshot of
    /// the unit's state, which separate reads are not.
    fn properties(&self, unit: &str, properties: &[&str]) -> Properties {
        let text = self.ok(&format!(
            "systemctl show -p {} {unit}",
            properties.join(",")
        ));
        Properties(
            text.lines()
                .filter_map(|line| line.split_once('='))
                .map(|(key, value)| (key.to_owned(), value.to_owned()))
                .collect(),
        )
    }

    /// The journal of `unit` as JSON objects, one per entry.
    fn journal(&self, unit: &str) -> Vec<Value> {
        self.ok(&format!("journalctl -u {unit} -o json --no-pager"))
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    fn nspawn_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("nspawn.log")).unwrap_or_default()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let booted = self.leader != 0;
        if booted {
            let _ = Command::new("timeout")
                .args(["20", "nsenter", "-t"])
                .arg(self.leader.to_string())
                .args(["-a", "systemctl", "poweroff"])
                .stdin(Stdio::null())
                .output();
            let deadline = Instant::now() + Duration::from_secs(30);
            while self.nspawn.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if self.nspawn.try_wait().ok().flatten().is_none() {
            // PID 1 of the container's PID namespace (also one not yet systemd, when the boot
            // failed early): killing it kills everything in the container.
            let leader = if booted {
                Some(self.leader)
            } else {
                child_of(self.nspawn.id())
            };
            if let Some(pid) = leader.and_then(|pid| rustix::process::Pid::from_raw(pid as i32)) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            let _ = self.nspawn.kill();
            let _ = self.nspawn.wait();
        }
        // nspawn leaves its (empty) propagation directory where /run is not a tmpfs.
        let _ = fs::remove_dir(format!("/run/systemd/nspawn/propagate/{}", self.name));
    }
}

fn require_tools() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the systemd end-to-end test boots a container and needs root"
    );
    for tool in [
        "systemd-nspawn",
        "nsenter",
        "unshare",
        "timeout",
        "dpkg-deb",
        "dpkg-shlibdeps",
        "strip",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|output| output.status.success());
        assert!(
            found,
            "{tool} is missing: run scripts/ensure-deps.sh (Debian systemd-container, \
             util-linux, dpkg-dev, binutils)"
        );
    }
}

/// The child of `parent` (systemd-nspawn's only child is the container's PID 1).
fn child_of(parent: u32) -> Option<u32> {
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<u32>().ok());
        if ppid == Some(parent) {
            return Some(pid);
        }
    }
    None
}

/// Builds the package from the binary under test, as an operator would with the script.
fn build_deb(out: &Path) -> PathBuf {
    let output = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-deb.sh"))
        .args([
            "--fast",
            "--binary",
            env!("CARGO_BIN_EXE_evercert"),
            "--out",
        ])
        .arg(out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "scripts/build-deb.sh failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    PathBuf::from(stdout.lines().last().expect("the .deb's path").trim())
}

/// Every journal entry evercert itself wrote (not systemd's lines about the unit).
fn evercert_lines(entries: &[Value]) -> Vec<&Value> {
    entries
        .iter()
        .filter(|entry| entry["SYSLOG_IDENTIFIER"] == "evercert")
        .collect()
}

/// What journald stored: text without colour codes or a second timestamp, and a priority
/// that matches the line's level.
fn assert_journal_entries(entries: &[&Value]) {
    assert!(!entries.is_empty(), "evercert wrote nothing to the journal");
    for entry in entries {
        let Some(message) = entry["MESSAGE"].as_str() else {
            panic!("MESSAGE is not text (colour codes or binary?): {entry}");
        };
        assert!(!message.contains('\x1b'), "colour codes in {message:?}");
        assert!(
            !message.starts_with("20"),
            "a second timestamp in {message:?}"
        );
        let priority = entry["PRIORITY"].as_str().unwrap_or("?");
        let expected = [
            ("ERROR ", "3"),
            ("WARN ", "4"),
            ("INFO ", "6"),
            ("DEBUG ", "7"),
        ]
        .into_iter()
        .find(|(level, _)| message.starts_with(level));
        if let Some((level, expected)) = expected {
            assert_eq!(
                priority, expected,
                "{level}line stored as priority {priority}: {message:?}"
            );
        }
    }
}

fn metrics(port: u16) -> String {
    http_request(
        None,
        SocketAddr::from(([127, 0, 0, 1], port)),
        "GET",
        "/metrics",
        b"",
        Duration::from_secs(5),
    )
    .map(|response| response.text())
    .unwrap_or_default()
}

fn metric_line(metrics: &str, name: &str) -> Option<String> {
    metrics
        .lines()
        .find(|line| line.starts_with(name))
        .map(str::to_owned)
}

/// Microseconds of CLOCK_MONOTONIC from a journal entry or a `systemctl show` value.
fn monotonic_us(value: &str) -> u64 {
    value.trim().parse().unwrap_or(0)
}

#[test]
fn the_deb_under_a_real_systemd() {
    let started = Instant::now();
    let pebble = Pebble::start();
    let work = tempfile::tempdir().unwrap();
    let deb = build_deb(work.path());
    eprintln!("e2e: Pebble started, .deb built: {:?}", started.elapsed());
    let container = Container::boot();
    eprintln!("e2e: container booted: {:?}", started.elapsed());

    // --- Install: units in place, nothing enabled, the template refused -------------------
    fs::copy(&deb, container.path("/root/evercert.deb")).unwrap();
    // man-db's dpkg trigger rebuilds the whole manual index (10 s here): not under test.
    container.ok("rm -f /var/lib/man-db/auto-update");
    container.ok("dpkg -i /root/evercert.deb");
    eprintln!("e2e: package installed: {:?}", started.elapsed());
    // What dpkg recorded and postinst made: the template is a conffile (an upgrade keeps the
    // operator's edits), the configuration and state directories have their modes.
    let conffiles = container.ok("dpkg-query -W -f='${Conffiles}' evercert");
    assert!(
        conffiles.contains("/etc/evercert/evercert.toml"),
        "not a conffile: {conffiles}"
    );
    let modes = container.ok(
        "stat -c '%n %a %U' /etc/evercert /etc/evercert/evercert.toml /var/lib/evercert \
         /usr/bin/evercert /usr/share/doc/evercert/copyright",
    );
    assert_eq!(
        modes,
        "/etc/evercert 700 root\n/etc/evercert/evercert.toml 600 root\n\
         /var/lib/evercert 711 root\n/usr/bin/evercert 755 root\n\
         /usr/share/doc/evercert/copyright 644 root\n"
    );
    // The packaged unit, not a copy in /etc (Debian 12 names /usr/lib through /lib).
    let fragment = container.property("evercert.service", "FragmentPath");
    assert!(
        [
            "/usr/lib/systemd/system/evercert.service",
            "/lib/systemd/system/evercert.service"
        ]
        .contains(&fragment.as_str()),
        "{fragment}"
    );
    let enabled = container.sh_text("systemctl is-enabled evercert.service evercert-renew.timer");
    assert_eq!(enabled.trim(), "disabled\ndisabled", "{enabled}");
    let check = container.sh("evercert config check");
    assert_eq!(check.status.code(), Some(2), "{check:?}");
    assert!(
        String::from_utf8_lossy(&check.stderr).contains("packaged template")
            || String::from_utf8_lossy(&check.stdout).contains("packaged template"),
        "{check:?}"
    );
    // Started by mistake on the template: exit 2, no restart, nothing ordered.
    let start = container.sh("systemctl start evercert.service");
    assert!(
        !start.status.success(),
        "the service started on the template"
    );
    assert_eq!(
        container.property("evercert.service", "ExecMainStatus"),
        "2"
    );
    assert_eq!(
        container.property("evercert.service", "ActiveState"),
        "failed"
    );
    let errors = container.ok("journalctl -u evercert.service -p err -o cat --no-pager");
    assert!(errors.contains("packaged template"), "{errors}");
    // "failed", not "activating (auto-restart)": RestartPreventExitStatus=2 holds.
    assert_eq!(container.property("evercert.service", "NRestarts"), "0");
    let accounts = container.path("/var/lib/evercert/accounts");
    assert!(
        fs::read_dir(&accounts).map_or(true, |mut dir| dir.next().is_none()),
        "an ACME account was made from the template"
    );
    container.ok("systemctl reset-failed evercert.service");

    // --- nginx with a placeholder due for renewal, and a real configuration ---------------
    let http_port = pebble.http_port();
    let verify_port = unused_loopback_port();
    let metrics_port = unused_loopback_port();
    let (not_before, not_after) = certs::days_left(2);
    let placeholder = certs::leaf(&["shop.test"], not_before, not_after, KeyType::EcdsaP256);
    container.write(
        "/etc/nginx/tls/shop/fullchain.pem",
        placeholder.fullchain_pem(),
        0o644,
    );
    container.write(
        "/etc/nginx/tls/shop/privkey.pem",
        &placeholder.key_pem,
        0o600,
    );
    container.ok("install -d -m 0755 /var/www/html/.well-known/acme-challenge");
    container.write(
        "/etc/nginx/nginx.conf",
        format!(
            "user www-data;\nworker_processes 1;\npid /run/nginx.pid;\n\
             error_log /var/log/nginx/error.log;\nevents {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n\
               server {{ listen 127.0.0.1:{http_port};\n\
                 location /.well-known/acme-challenge/ {{ root /var/www/html; default_type text/plain; }} }}\n\
               server {{ listen 127.0.0.1:{verify_port} ssl;\n\
                 ssl_certificate /etc/nginx/tls/shop/fullchain.pem;\n\
                 ssl_certificate_key /etc/nginx/tls/shop/privkey.pem;\n\
                 return 200 \"shop\\n\"; }}\n}}\n"
        ),
        0o644,
    );
    container.ok("systemctl start nginx.service");

    container.write(
        "/etc/evercert/pebble-https-root.pem",
        fs::read(pebble.ca_bundle_path()).unwrap(),
        0o644,
    );
    container.write(
        "/etc/evercert/evercert.toml",
        format!(
            "state_dir = \"/var/lib/evercert\"\n\
             [acme]\ndirectory = \"{}\"\ncontact = [\"mailto:ops@shop.test\"]\n\
             ca_bundle = \"/etc/evercert/pebble-https-root.pem\"\n\
             [[certificate]]\nname = \"shop\"\ndomains = [\"shop.test\"]\n\
             cert_path = \"/etc/nginx/tls/shop/fullchain.pem\"\n\
             key_path = \"/etc/nginx/tls/shop/privkey.pem\"\n\
             reload = \"systemctl reload nginx\"\n\
             verify = [\"127.0.0.1:{verify_port}\"]\n\
             [certificate.http01]\nwebroot = \"/var/www/html\"\n\
             [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n",
            pebble.directory_url()
        ),
        0o600,
    );
    container.ok("evercert config check");
    // The drop-in of docs/install.md step 6, shared with the one-shot unit.
    container.write(
        "/etc/systemd/system/evercert.service.d/override.conf",
        "[Service]\nReadWritePaths=/etc/nginx/tls /var/www/html/.well-known/acme-challenge\n",
        0o644,
    );
    container.ok(
        "install -d /etc/systemd/system/evercert-renew.service.d && \
         ln -s ../evercert.service.d/override.conf \
           /etc/systemd/system/evercert-renew.service.d/override.conf && \
         systemctl daemon-reload",
    );

    // --- The agent: READY (Type=notify: `start` returns once it is sent), a renewal -------
    container.ok("systemctl enable --now evercert.service");
    assert_eq!(
        container.property("evercert.service", "ActiveState"),
        "active"
    );
    assert_eq!(
        container.property("evercert.service", "WatchdogUSec"),
        "5min"
    );
    let status_text = container.property("evercert.service", "StatusText");
    assert!(
        status_text.contains("certificate"),
        "Status: {status_text:?}"
    );

    let served_issuer = || {
        let json = container.sh_text(&format!("evercert check --json 127.0.0.1:{verify_port}"));
        serde_json::from_str::<Value>(&json)
            .ok()
            .and_then(|checked| checked[0]["issuer"].as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    wait_for(
        RENEWAL_TIMEOUT,
        "nginx serving a certificate from Pebble",
        || served_issuer().contains("Pebble"),
    );
    let nginx_log = container.ok("journalctl -u nginx.service -o cat --no-pager");
    assert!(
        nginx_log.contains("Reloaded"),
        "nginx was not reloaded through systemd:\n{nginx_log}"
    );

    // The idle agent says what comes next, so idle is told from hung.
    wait_for(Duration::from_secs(30), "the idle line", || {
        container
            .sh_text("journalctl -u evercert.service -o cat --no-pager")
            .contains("nothing due; next: ")
    });
    // The sandbox as loaded, with the drop-in: the score systemd/README.md states.
    let security = container.sh_text("systemd-analyze security evercert.service --no-pager");
    let exposure = security
        .lines()
        .find_map(|line| line.split_once("evercert.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|score| score.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{security}"));
    assert!(exposure <= 2.2, "exposure {exposure}:\n{security}");
    eprintln!("e2e: systemd-analyze security evercert.service (with the drop-in): {exposure}");

    // --- SIGHUP with a bad configuration: an ERROR in the journal, the agent stays ------------
    let watchdog_before = container.property("evercert.service", "WatchdogTimestampMonotonic");
    let good = fs::read_to_string(container.path("/etc/evercert/evercert.toml")).unwrap();
    container.write(
        "/etc/evercert/evercert.toml",
        format!("{good}\nbogus_key = 1\n"),
        0o600,
    );
    container.ok("systemctl reload evercert.service");
    wait_for(
        Duration::from_secs(30),
        "the invalid configuration in the journal",
        || {
            container
                .sh_text("journalctl -u evercert.service -p err -o cat --no-pager")
                .contains("bogus_key")
        },
    );
    assert_eq!(
        container.property("evercert.service", "ActiveState"),
        "active"
    );
    container.write("/etc/evercert/evercert.toml", &good, 0o600);
    container.ok("systemctl reload evercert.service");
    wait_for(
        Duration::from_secs(30),
        "the configuration reloaded",
        || {
            container
                .sh_text("journalctl -u evercert.service -o cat --no-pager")
                .contains("configuration reloaded")
        },
    );
    // The main loop petted the watchdog after handling the reloads.
    let watchdog_after = container.property("evercert.service", "WatchdogTimestampMonotonic");
    assert!(
        monotonic_us(&watchdog_after) > monotonic_us(&watchdog_before),
        "no WATCHDOG=1 since the reload ({watchdog_before} -> {watchdog_after})"
    );

    // --- The journal: priorities, plain text --------------------------------------------------
    let entries = container.journal("evercert.service");
    let ours = evercert_lines(&entries);
    assert_journal_entries(&ours);
    let errors = container.ok("journalctl -u evercert.service -p err -o cat --no-pager");
    assert!(
        errors.contains("the new configuration is invalid"),
        "journalctl -p err:\n{errors}"
    );

    // --- An upgrade in place: the agent restarted on the new binary, the edits kept ------
    let pid_before = container.property("evercert.service", "MainPID");
    container.ok("dpkg -i /root/evercert.deb");
    assert_eq!(
        container.property("evercert.service", "ActiveState"),
        "active"
    );
    let pid_after = container.property("evercert.service", "MainPID");
    assert_ne!(pid_after, pid_before, "postinst did not restart the agent");
    assert_eq!(
        fs::read_to_string(container.path("/etc/evercert/evercert.toml")).unwrap(),
        good,
        "the upgrade changed the edited configuration"
    );
    assert!(
        container
            .path("/etc/systemd/system/evercert.service.d/override.conf")
            .exists()
    );

    // --- The timer's one-shot renewal, seen by the running agent at once ------------------
    let metric = "evercert_certificate_not_before_seconds";
    let before = metric_line(&metrics(metrics_port), metric)
        .unwrap_or_else(|| panic!("no {metric} in the agent's metrics"));
    container.write(
        "/run/systemd/system/evercert-renew.service.d/force.conf",
        "[Service]\nExecStart=\nExecStart=/usr/bin/evercert renew --force shop\n",
        0o644,
    );
    // Fire one second after the timer starts, with no random delay.
    container.write(
        "/run/systemd/system/evercert-renew.timer.d/now.conf",
        "[Timer]\nOnActiveSec=1s\nRandomizedDelaySec=0\n",
        0o644,
    );
    container.ok("systemctl daemon-reload && systemctl enable --now evercert-renew.timer");
    wait_for(RENEWAL_TIMEOUT, "the timer's one-shot to finish", || {
        monotonic_us(
            &container.property("evercert-renew.service", "ExecMainExitTimestampMonotonic"),
        ) != 0
            && container.property("evercert-renew.service", "ActiveState") != "activating"
    });
    assert_eq!(
        container.property("evercert-renew.service", "Result"),
        "success",
        "{}",
        container.sh_text("journalctl -u evercert-renew.service -o cat --no-pager")
    );
    let renew_exited = monotonic_us(
        &container.property("evercert-renew.service", "ExecMainExitTimestampMonotonic"),
    );
    let renew_started = monotonic_us(
        &container.property("evercert-renew.service", "ExecMainStartTimestampMonotonic"),
    );
    // The agent's metrics follow the new certificate without waiting for its hourly rescan.
    wait_for(
        Duration::from_secs(30),
        "the agent's metrics to show the new certificate",
        || metric_line(&metrics(metrics_port), metric).is_some_and(|line| line != before),
    );
    let noticed = container
        .journal("evercert.service")
        .into_iter()
        .filter(|entry| {
            entry["MESSAGE"]
                .as_str()
                .is_some_and(|message| message.contains("changed on disk"))
        })
        .map(|entry| monotonic_us(entry["__MONOTONIC_TIMESTAMP"].as_str().unwrap_or("0")))
        .find(|at| *at >= renew_started)
        .expect("the agent logged no 'changed on disk' for the one-shot's renewal");
    let delay_ms = (i128::from(noticed) - i128::from(renew_exited)) / 1000;
    eprintln!("the agent noticed the one-shot's renewal {delay_ms} ms after it exited");
    assert!(
        delay_ms < 30_000,
        "the agent noticed the one-shot's renewal {delay_ms} ms after it exited"
    );

    eprintln!("e2e: timer renewal seen: {:?}", started.elapsed());

    // --- A hung agent: systemd's watchdog kills and restarts it -------------------------
    // A short watchdog for the test (the unit's 5 min would make it a 5-minute test); a
    // stopped process sends no WATCHDOG=1, like a main loop stuck on something.
    container.write(
        "/run/systemd/system/evercert.service.d/watchdog.conf",
        "[Service]\nWatchdogSec=6s\nRestartSec=1s\n",
        0o644,
    );
    container.ok("systemctl daemon-reload && systemctl restart evercert.service");
    let hung = container.property("evercert.service", "MainPID");
    let hung_invocation = container.property("evercert.service", "InvocationID");
    container.ok(&format!("kill -STOP {hung}"));
    // Every property comes from one `systemctl show` (one GetAll answered by PID 1 between
    // two events: a consistent snapshot). Read one by one, ActiveState could be "active" of
    // the hung invocation (before the watchdog fired) and MainPID the 0 of the auto-restart
    // state that follows its death, where NRestarts is not counted yet: systemd counts a
    // restart only when RestartSec= has passed and it queues the start job.
    let restarted = |state: &Properties| {
        state.get("ActiveState") == "active"
            && state.get("SubState") == "running"
            && !matches!(state.get("MainPID"), "" | "0")
            && state.get("MainPID") != hung
            && state.get("InvocationID") != hung_invocation
            && state.get("NRestarts").parse::<u32>().is_ok_and(|n| n >= 1)
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut state = container.properties("evercert.service", SNAPSHOT);
    while !restarted(&state) {
        assert!(
            Instant::now() < deadline,
            "systemd did not restart the hung agent (PID {hung}, invocation {hung_invocation}) \
             within 90 s; evercert.service: {state}\n--- journal:\n{}",
            container.sh_text("journalctl -u evercert.service -n 40 --no-pager")
        );
        std::thread::sleep(Duration::from_millis(50));
        state = container.properties("evercert.service", SNAPSHOT);
    }
    // The hung invocation's end was the watchdog's doing: systemd logs the timeout with that
    // invocation's ID.
    let entries = container.journal("evercert.service");
    let watchdog_fired = entries.iter().any(|entry| {
        entry["INVOCATION_ID"].as_str() == Some(hung_invocation.as_str())
            && entry["MESSAGE"]
                .as_str()
                .is_some_and(|message| message.contains("Watchdog timeout"))
    });
    assert!(
        watchdog_fired,
        "restarted ({state}), but no 'Watchdog timeout' of the hung invocation \
         {hung_invocation}:\n{}",
        container.sh_text("journalctl -u evercert.service -o cat --no-pager")
    );
    eprintln!("e2e: watchdog restart seen: {:?}", started.elapsed());

    // --- A failing one-shot (the drop-in forgotten) in `-p err`; removal leaves no failed unit
    // An empty ReadWritePaths= (this drop-in sorts after override.conf) takes the certificate
    // directory and webroot away, as if the step 6 drop-in were missing.
    container.write(
        "/run/systemd/system/evercert-renew.service.d/zz-readonly.conf",
        "[Service]\nReadWritePaths=\n",
        0o644,
    );
    container.ok("systemctl daemon-reload");
    let failing = container.sh("systemctl start evercert-renew.service");
    assert!(
        !failing.status.success(),
        "the one-shot renewed without its ReadWritePaths="
    );
    assert_eq!(
        container.property("evercert-renew.service", "ExecMainStatus"),
        "1"
    );
    let failed = container.ok("systemctl list-units --failed --plain --no-legend");
    assert!(failed.contains("evercert-renew.service"), "{failed}");
    // The one-shot's failure reaches the journal like the agent's errors: text, priority err.
    let renew_entries = container.journal("evercert-renew.service");
    let renew_lines = evercert_lines(&renew_entries);
    assert_journal_entries(&renew_lines);
    let renew_errors =
        container.ok("journalctl -u evercert-renew.service -p err -o cat --no-pager");
    assert!(
        renew_errors.contains("shop: failed at preflight")
            && renew_errors.contains("ReadWritePaths=")
            && renew_errors.contains("summary: 0 renewed, 0 not due, 1 failed"),
        "journalctl -u evercert-renew -p err:\n{renew_errors}"
    );
    container.ok("dpkg --purge evercert");
    let failed = container.ok("systemctl list-units --failed --plain --no-legend");
    assert_eq!(failed.trim(), "", "failed units after dpkg --purge");
    for unit in [
        "evercert.service",
        "evercert-renew.service",
        "evercert-renew.timer",
    ] {
        assert_eq!(container.property(unit, "LoadState"), "not-found", "{unit}");
    }
    assert!(
        !container
            .path("/etc/systemd/system/timers.target.wants/evercert-renew.timer")
            .exists(),
        "the timer's enablement link outlived the package"
    );
    assert!(
        !container.path("/usr/bin/evercert").exists(),
        "/usr/bin/evercert outlived the package"
    );
    assert_eq!(
        container.ok("systemctl is-system-running").trim(),
        "running"
    );
    eprintln!("e2e: removed: {:?}", started.elapsed());
}
