//! The shipped systemd units: they parse cleanly (`systemd-analyze verify`), the services
//! keep a `systemd-analyze security` exposure of at most 2.0, and they still carry what the
//! agent needs to do its job (notify, watchdog, SIGHUP reload, port 80, chown, AF_UNIX for
//! `systemctl reload nginx`).
//!
//! Works without a running systemd: `systemd-analyze security --offline=true` (systemd ≥ 250)
//! reads the unit files alone. A missing `systemd-analyze` fails the test with the package
//! to install; it is never skipped silently.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `systemd-analyze security` target (certbot's Debian unit scores 9.4).
const MAX_EXPOSURE: f64 = 2.0;

const SERVICES: &[&str] = &["evercert.service", "evercert-renew.service"];
const ALL_UNITS: &[&str] = &[
    "evercert.service",
    "evercert-renew.service",
    "evercert-renew.timer",
];

fn unit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd")
}

/// Runs `systemd-analyze ARGS`, or fails with what to install.
fn systemd_analyze(args: &[&str]) -> Output {
    match Command::new("systemd-analyze").args(args).output() {
        Ok(output) => output,
        Err(err) => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            panic!(
                "cannot run systemd-analyze ({err}); the systemd unit checks need it{}.\n\
                 Install it: apt-get install -y systemd   (Debian/Ubuntu; systemd >= 250 for \
                 `security --offline`)",
                if ci { " in CI: add it to .ci/run" } else { "" }
            );
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Lines of systemd-analyze's stderr that are about our units (parse warnings such as
/// "Unknown key 'ProtectSystm'" or "Failed to parse mode value" do not change the exit code).
fn complaints_about_units(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| line.contains("evercert"))
        .collect()
}

/// "→ Overall exposure level for evercert.service: 2.0 OK 🙂" → 2.0
fn overall_exposure(stdout: &str) -> Option<f64> {
    let line = stdout
        .lines()
        .find(|line| line.contains("Overall exposure level"))?;
    let (_, rest) = line.rsplit_once(": ")?;
    rest.split_whitespace().next()?.parse().ok()
}

#[test]
fn services_have_an_exposure_of_at_most_2_0() {
    for service in SERVICES {
        let path = unit_dir().join(service);
        let path = path.to_str().unwrap();
        let out = systemd_analyze(&["security", "--offline=true", "--threshold=20", path]);
        let stdout = text(&out.stdout);
        let stderr = text(&out.stderr);
        assert!(
            !stderr.contains("--offline") && !stderr.contains("unrecognized option"),
            "this systemd-analyze cannot analyse unit files offline (systemd >= 250 needed):\n{stderr}"
        );
        assert!(
            complaints_about_units(&stderr).is_empty(),
            "systemd-analyze security complained about {service} (a setting it ignores scores \
             nothing):\n{stderr}"
        );
        let exposure = overall_exposure(&stdout).unwrap_or_else(|| {
            panic!("no \"Overall exposure level\" for {service}:\n{stdout}\n{stderr}")
        });
        let worst: Vec<&str> = stdout.lines().filter(|l| l.starts_with('✗')).collect();
        assert!(
            exposure <= MAX_EXPOSURE,
            "{service}: exposure {exposure:.1} > {MAX_EXPOSURE:.1}; what is still open:\n{}",
            worst.join("\n")
        );
        assert!(
            out.status.success(),
            "systemd-analyze security --threshold=20 failed for {service} (exposure \
             {exposure}):\n{stdout}\n{stderr}"
        );
    }
}

#[test]
fn units_verify_against_the_built_binary() {
    // `verify` checks that ExecStart= is executable: point it at the binary under test.
    let tmp = tempfile::tempdir().unwrap();
    let binary = env!("CARGO_BIN_EXE_evercert");
    let mut paths = Vec::new();
    for unit in ALL_UNITS {
        let original = fs::read_to_string(unit_dir().join(unit)).unwrap();
        if unit.ends_with(".service") {
            assert!(
                original.contains("ExecStart=/usr/bin/evercert "),
                "{unit}: ExecStart= should run /usr/bin/evercert (docs/install.md installs it there)"
            );
        }
        let path = tmp.path().join(unit);
        fs::write(&path, original.replace("/usr/bin/evercert", binary)).unwrap();
        paths.push(path.to_str().unwrap().to_owned());
    }
    let mut args = vec!["verify"];
    args.extend(paths.iter().map(String::as_str));
    let out = systemd_analyze(&args);
    let stderr = text(&out.stderr);
    let complaints = complaints_about_units(&stderr);
    assert!(
        out.status.success() && complaints.is_empty(),
        "systemd-analyze verify:\n{}\n{stderr}",
        text(&out.stdout)
    );
}

/// `KEY=VALUE` settings of one unit file, values of repeated keys in order.
fn settings(unit: &str) -> BTreeMap<String, Vec<String>> {
    let body = fs::read_to_string(unit_dir().join(unit)).unwrap();
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in body.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with('[') {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            map.entry(key.to_owned())
                .or_default()
                .push(value.to_owned());
        }
    }
    map
}

fn one<'a>(map: &'a BTreeMap<String, Vec<String>>, key: &str, unit: &str) -> &'a str {
    match map.get(key).map(Vec::as_slice) {
        Some([value]) => value,
        other => panic!("{unit}: expected exactly one {key}=, found {other:?}"),
    }
}

#[test]
fn the_agent_unit_keeps_what_evercert_run_needs() {
    let unit = "evercert.service";
    let s = settings(unit);
    assert_eq!(one(&s, "Type", unit), "notify");
    assert_eq!(one(&s, "ExecStart", unit), "/usr/bin/evercert run");
    assert_eq!(one(&s, "ExecReload", unit), "/bin/kill -HUP $MAINPID");
    assert_eq!(one(&s, "WatchdogSec", unit), "5min");
    assert_eq!(one(&s, "StateDirectory", unit), "evercert");

    let caps = one(&s, "CapabilityBoundingSet", unit);
    for cap in ["CAP_NET_BIND_SERVICE", "CAP_CHOWN"] {
        assert!(caps.contains(cap), "{unit}: {cap} missing from {caps}");
    }
    let families = one(&s, "RestrictAddressFamilies", unit);
    for family in ["AF_INET", "AF_INET6", "AF_UNIX"] {
        assert!(
            families.split_whitespace().any(|f| f == family),
            "{unit}: {family} missing from RestrictAddressFamilies={families}"
        );
    }
    // chown(2) for owner/group stays allowed after `~@privileged`.
    let filters = &s["SystemCallFilter"];
    assert_eq!(
        filters.last().map(String::as_str),
        Some("@chown"),
        "{filters:?}"
    );
    // These would break `systemctl reload nginx`, chown or the reload hook's view of /.
    for forbidden in [
        "PrivateUsers",
        "DynamicUser",
        "User",
        "PrivateNetwork",
        "RootDirectory",
    ] {
        assert!(
            !s.contains_key(forbidden),
            "{unit}: {forbidden}= breaks the reload hook"
        );
    }
}

#[test]
fn the_one_shot_is_sandboxed_exactly_like_the_agent() {
    let agent = settings("evercert.service");
    let oneshot = settings("evercert-renew.service");
    assert_eq!(one(&oneshot, "Type", "evercert-renew.service"), "oneshot");
    assert_eq!(
        one(&oneshot, "ExecStart", "evercert-renew.service"),
        "/usr/bin/evercert renew"
    );
    let service_only = [
        "Type",
        "NotifyAccess",
        "ExecStart",
        "ExecReload",
        "WatchdogSec",
        "Restart",
        "RestartSec",
        "RestartPreventExitStatus",
        "TimeoutStopSec",
        "TimeoutStartSec",
        "Description",
        "Wants",
        "After",
        "WantedBy",
    ];
    let sandbox = |map: &BTreeMap<String, Vec<String>>| -> BTreeMap<String, Vec<String>> {
        map.iter()
            .filter(|(key, _)| !service_only.contains(&key.as_str()))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    };
    assert_eq!(
        sandbox(&agent),
        sandbox(&oneshot),
        "the sandboxes drifted apart"
    );

    let timer = settings("evercert-renew.timer");
    let unit = "evercert-renew.timer";
    assert_eq!(one(&timer, "OnCalendar", unit), "*-*-* 00,12:00:00");
    assert_eq!(one(&timer, "RandomizedDelaySec", unit), "1h");
    assert_eq!(one(&timer, "Persistent", unit), "true");
}

#[test]
fn exposure_is_parsed_from_systemd_analyze_output() {
    let sample = "✗ PrivateNetwork=   Service has access to the host's network   0.5\n\n\
                  → Overall exposure level for evercert.service: 2.0 OK 🙂\n";
    assert_eq!(overall_exposure(sample), Some(2.0));
    assert_eq!(overall_exposure("nothing"), None);
}
