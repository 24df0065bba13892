//! The foundation commands, through the built binary: `config check`, `status` and `check`.
//!
//! Each test runs `evercert` in its own temporary directory with certificates minted for it
//! (see `support::certs`), so the suite never depends on the host's /etc or on dates.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::support::certs::{
    self, INTERMEDIATE_CN, KeyType, Leaf, TestCa, TlsServer, days_left, validity,
};

/// The default configuration path, which no test here may depend on.
const DEFAULT_CONFIG: &str = "/etc/evercert/evercert.toml";

/// `evercert` run in `dir`, with no configuration from the environment.
fn evercert(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_evercert"));
    cmd.current_dir(dir)
        .env_remove("EVERCERT_CONFIG")
        .env("EVERCERT_LOG", "warn");
    cmd
}

/// What one run printed and how it exited.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Vec<Value> {
        match serde_json::from_str::<Value>(&self.stdout) {
            Ok(Value::Array(entries)) => entries,
            other => panic!("stdout is not a JSON array ({other:?}):\n{self}"),
        }
    }

    fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn run(cmd: &mut Command) -> Run {
    let output = cmd.output().unwrap();
    Run {
        code: output
            .status
            .code()
            .expect("evercert was killed by a signal"),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

fn run_in(dir: &Path, args: &[&str]) -> Run {
    run(evercert(dir).args(args))
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A `[[certificate]]` section answering http-01 from a webroot under `dir`.
fn certificate_toml(name: &str, domains: &[&str], cert: &Path, key: &Path) -> String {
    let domains = domains
        .iter()
        .map(|domain| format!("\"{domain}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[[certificate]]\nname = \"{name}\"\ndomains = [{domains}]\ncert_path = '{}'\n\
         key_path = '{}'\n[certificate.http01]\nwebroot = '/var/www/html'\n\n",
        cert.display(),
        key.display()
    )
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    certs::write(&dir.join("evercert.toml"), text)
}

/// A managed certificate with its files written under `dir`.
fn managed(
    dir: &Path,
    ca: &TestCa,
    name: &str,
    validity: (OffsetDateTime, OffsetDateTime),
) -> Leaf {
    let domain = format!("{name}.example.test");
    let leaf = ca.leaf(&[&domain], validity.0, validity.1, KeyType::EcdsaP256);
    leaf.write_pair(dir, name);
    leaf
}

fn cert_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.fullchain.pem"))
}

fn key_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.key.pem"))
}

fn managed_toml(dir: &Path, name: &str) -> String {
    certificate_toml(
        name,
        &[&format!("{name}.example.test")],
        &cert_path(dir, name),
        &key_path(dir, name),
    )
}

fn entry<'a>(entries: &'a [Value], name: &str) -> &'a Value {
    entries
        .iter()
        .find(|entry| entry["name"] == name)
        .unwrap_or_else(|| panic!("no entry named {name} in {entries:#?}"))
}

fn timestamp(value: &Value) -> OffsetDateTime {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is not a string"));
    assert!(text.ends_with('Z'), "{text} is not RFC 3339 UTC");
    OffsetDateTime::parse(text, &Rfc3339).unwrap_or_else(|err| panic!("{text}: {err}"))
}

fn days(value: &Value) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("days_left {value} is not a number"))
}

fn assert_days_left(value: &Value, expected: f64) {
    let days = days(value);
    assert!(
        (days - expected).abs() <= 0.05,
        "days_left {days}, expected about {expected}"
    );
}

/// Every field the product brief promises, with its type.
fn assert_contract(entry: &Value) {
    let object = entry
        .as_object()
        .unwrap_or_else(|| panic!("{entry} is not an object"));
    for key in [
        "name",
        "domains",
        "serial",
        "issuer",
        "not_before",
        "not_after",
        "days_left",
        "renew_at",
        "state",
        "error",
    ] {
        assert!(object.contains_key(key), "{key} missing in {entry:#}");
    }
    assert!(entry["name"].is_string(), "{entry:#}");
    assert!(
        entry["path"].is_string() || entry["endpoint"].is_string(),
        "neither path nor endpoint in {entry:#}"
    );
    assert!(
        entry["domains"]
            .as_array()
            .is_some_and(|domains| domains.iter().all(Value::is_string)),
        "{entry:#}"
    );
    for key in ["serial", "issuer", "error"] {
        assert!(
            entry[key].is_null() || entry[key].is_string(),
            "{key} in {entry:#}"
        );
    }
    for key in ["not_before", "not_after", "renew_at"] {
        if !entry[key].is_null() {
            timestamp(&entry[key]);
        }
    }
    assert!(
        entry["days_left"].is_null() || entry["days_left"].is_number(),
        "{entry:#}"
    );
    let state = entry["state"].as_str().unwrap_or_default();
    assert!(
        ["ok", "due", "warning", "critical", "expired", "error"].contains(&state),
        "state {state:?} in {entry:#}"
    );
    assert_eq!(
        state == "error",
        entry["error"].is_string(),
        "`error` must hold the message exactly when the state is error: {entry:#}"
    );
}

/// The facts of a certificate that was read, compared with what was minted.
fn assert_facts(entry: &Value, leaf: &Leaf) {
    assert_eq!(entry["serial"], leaf.serial_hex.as_str(), "{entry:#}");
    assert!(
        entry["issuer"]
            .as_str()
            .is_some_and(|issuer| issuer.contains(INTERMEDIATE_CN)),
        "{entry:#}"
    );
    assert_eq!(timestamp(&entry["not_before"]), leaf.not_before);
    assert_eq!(timestamp(&entry["not_after"]), leaf.not_after);
}

// ---------------------------------------------------------------------------------------------
// config check

#[test]
fn config_check_accepts_a_good_config() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let mut text = String::from(
        "state_dir = 'state'\n[acme]\ncontact = [\"mailto:ops@example.com\"]\n\
         [renewal]\nrenew_before = \"1/3\"\nwarn_before = \"21d\"\ncritical_before = \"3d\"\n",
    );
    text.push_str(&managed_toml(dir, "shop"));
    text.push_str(
        "[[monitor]]\npath = 'partner.pem'\n[[monitor]]\nendpoint = \"api.example.com:443\"\n",
    );
    let config = write_config(dir, &text);
    let out = run_in(dir, &["config", "check", "-c", path_str(&config)]);
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout.contains("OK (1 certificate, 2 monitors)"),
        "{out}"
    );
    assert!(out.stderr.is_empty(), "{out}");

    // $EVERCERT_CONFIG names the file as well as -c does.
    let out = run(evercert(dir)
        .env("EVERCERT_CONFIG", &config)
        .args(["config", "check"]));
    assert_eq!(out.code, 0, "{out}");
}

/// The 1-based line and column where `needle` (which must be unique) starts in `text`.
fn position(text: &str, needle: &str) -> (usize, usize) {
    assert_eq!(text.matches(needle).count(), 1, "{needle:?} must be unique");
    nth_position(text, needle, 0)
}

/// The 1-based line and column of the `n`th (0-based) occurrence of `needle` in `text`.
fn nth_position(text: &str, needle: &str, n: usize) -> (usize, usize) {
    let (offset, _) = text
        .match_indices(needle)
        .nth(n)
        .unwrap_or_else(|| panic!("{needle:?} #{n} not found"));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = offset - before.rfind('\n').map_or(0, |newline| newline + 1) + 1;
    (line, column)
}

const BAD_CONFIG: &str = r#"state_dir = "/var/lib/evercert"
stat_dir = "/tmp"

[renewal]
renew_before = "3/2"

[[certificate]]
name = "shop"
domains = ["shop.example.com"]
cert_path = "/etc/tls/shop/fullchain.pem"
key_path = "/etc/tls/shop/privkey.pem"
key_type = "ecdsa-p265"
[certificate.http01]
webroot = "/var/www/html"
listen = "[::]:80"

[[certificate]]
name = "shop"
domains = []
cert_path = "/etc/tls/b/fullchain.pem"
key_path = "/etc/tls/b/privkey.pem"
[certificate.http01]
listen = "port 80"

[[certificate]]
name = "nochallenge"
domains = ["c.example.com"]
cert_path = "/etc/tls/c/fullchain.pem"
key_path = "/etc/tls/c/privkey.pem"
"#;

/// Asserts that `stderr` has a line `FILE:LINE:COL: …` that contains `message`.
fn assert_error_at(stderr: &str, file: &Path, (line, column): (usize, usize), message: &str) {
    let prefix = format!("{}:{line}:{column}: ", file.display());
    assert!(
        stderr
            .lines()
            .any(|text| text.starts_with(&prefix) && text.contains(message)),
        "no `{prefix}…{message}…` in:\n{stderr}"
    );
}

#[test]
fn config_check_reports_every_error_with_file_line_col() {
    let tmp = TempDir::new().unwrap();
    let config = write_config(tmp.path(), BAD_CONFIG);
    let out = run_in(tmp.path(), &["config", "check", "-c", path_str(&config)]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    let text = BAD_CONFIG;
    let err = &out.stderr;
    assert_error_at(
        err,
        &config,
        position(text, "stat_dir"),
        "unknown key `stat_dir`",
    );
    assert!(err.contains("did you mean `state_dir`?"), "{out}");
    assert_error_at(err, &config, position(text, "\"3/2\""), "renew_before");
    assert_error_at(
        err,
        &config,
        position(text, "\"ecdsa-p265\""),
        "unknown key_type \"ecdsa-p265\"",
    );
    assert!(err.contains("did you mean \"ecdsa-p256\"?"), "{out}");
    assert_error_at(
        err,
        &config,
        position(text, "\"[::]:80\""),
        "has both `webroot` and `listen`",
    );
    // At the second certificate's name value.
    let (line, column) = nth_position(text, "name = \"shop\"", 1);
    assert_error_at(
        err,
        &config,
        (line, column + "name = ".len()),
        "duplicate certificate name \"shop\"",
    );
    assert_error_at(err, &config, position(text, "[]"), "`domains` is empty");
    assert_error_at(
        err,
        &config,
        position(text, "\"port 80\""),
        "\"port 80\" is not a socket address",
    );
    // The third certificate has no challenge section: the error points at its header.
    assert_error_at(
        err,
        &config,
        position(text, "[[certificate]]\nname = \"nochallenge\""),
        "[certificate #3] has no challenge",
    );
    assert!(err.contains("8 errors in the configuration"), "{out}");
}

#[test]
fn status_and_check_refuse_an_invalid_config_with_the_same_messages() {
    let tmp = TempDir::new().unwrap();
    let config = write_config(tmp.path(), BAD_CONFIG);
    let config = path_str(&config);
    let checked = run_in(tmp.path(), &["config", "check", "-c", config]);
    assert_eq!(checked.code, 2, "{checked}");

    let status = run_in(tmp.path(), &["status", "-c", config]);
    assert_eq!(status.code, 2, "{status}");
    assert!(status.stdout.is_empty(), "{status}");
    assert_eq!(status.stderr, checked.stderr);

    let json = run_in(tmp.path(), &["-c", config, "status", "--json"]);
    assert_eq!(json.code, 2, "{json}");
    assert_eq!(json.stderr, checked.stderr);

    // `check` speaks the monitoring-plugin convention: a config it cannot read is UNKNOWN.
    let check = run_in(tmp.path(), &["check", "-c", config]);
    assert_eq!(check.code, 3, "{check}");
    assert!(check.stderr.contains(&checked.stderr), "{check}");
}

#[test]
fn missing_config_file_is_a_clear_usage_error() {
    let tmp = TempDir::new().unwrap();
    let missing = tmp.path().join("nowhere.toml");
    let missing = path_str(&missing);
    for args in [
        vec!["config", "check", "-c", missing],
        vec!["status", "-c", missing],
    ] {
        let out = run_in(tmp.path(), &args);
        assert_eq!(out.code, 2, "{args:?}: {out}");
        assert!(
            out.stderr
                .contains(&format!("{missing}: configuration file not found")),
            "{out}"
        );
        assert!(out.stderr.contains("--config"), "{out}");
    }

    let out = run(evercert(tmp.path())
        .env("EVERCERT_CONFIG", missing)
        .args(["status"]));
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains(missing), "{out}");

    // Without -c or $EVERCERT_CONFIG the default path is named (only checkable where it is
    // absent, as on build machines).
    if !Path::new(DEFAULT_CONFIG).exists() {
        let out = run_in(tmp.path(), &["status"]);
        assert_eq!(out.code, 2, "{out}");
        assert!(
            out.stderr
                .contains(&format!("{DEFAULT_CONFIG}: configuration file not found")),
            "{out}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// status

/// A directory with managed certificates in every state and two monitored files.
struct Fleet {
    tmp: TempDir,
    config: PathBuf,
    fresh: Leaf,
    soon: Leaf,
    gone: Leaf,
    mismatch: Leaf,
    partner: Leaf,
    partner_old: Leaf,
}

impl Fleet {
    fn new() -> Self {
        let tmp = TempDir::new().unwrap();
        let dir = tmp.path();
        let ca = TestCa::new();
        let fresh = managed(dir, &ca, "fresh", days_left(60));
        let soon = managed(dir, &ca, "soon", days_left(20));
        let gone = managed(dir, &ca, "gone", days_left(-3));
        let mismatch = managed(dir, &ca, "mismatch", days_left(60));
        certs::write(
            &key_path(dir, "mismatch"),
            certs::other_key_pem(KeyType::EcdsaP256),
        );
        certs::write_garbage(&cert_path(dir, "garbage"));
        certs::write(&key_path(dir, "garbage"), &fresh.key_pem);
        let partner = ca.leaf(
            &["partner.example.net", "www.partner.example.net"],
            days_left(60).0,
            days_left(60).1,
            KeyType::EcdsaP384,
        );
        partner.write_fullchain(&dir.join("partner.pem"));
        let (not_before, not_after) = days_left(5);
        let partner_old = ca.leaf(
            &["old.example.net"],
            not_before,
            not_after,
            KeyType::Rsa2048,
        );
        partner_old.write_fullchain(&dir.join("partner-old.pem"));

        let mut text = String::from("state_dir = 'state'\n\n");
        for name in ["fresh", "soon", "gone", "missing", "mismatch", "garbage"] {
            text.push_str(&managed_toml(dir, name));
        }
        // A relative path is relative to the config file, not to the working directory.
        text.push_str("[[monitor]]\npath = 'partner.pem'\n\n");
        let _ = write!(
            text,
            "[[monitor]]\nname = \"partner-old\"\npath = '{}'\n",
            dir.join("partner-old.pem").display()
        );
        let config = write_config(dir, &text);
        fs::create_dir(dir.join("elsewhere")).unwrap();
        Self {
            tmp,
            config,
            fresh,
            soon,
            gone,
            mismatch,
            partner,
            partner_old,
        }
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// Runs from a different working directory than the config's.
    fn run(&self, args: &[&str]) -> Run {
        let mut cmd = evercert(&self.dir().join("elsewhere"));
        cmd.arg("-c").arg(&self.config).args(args);
        run(&mut cmd)
    }
}

#[test]
fn status_json_reports_every_field() {
    let fleet = Fleet::new();
    let dir = fleet.dir();
    let out = fleet.run(&["status", "--json"]);
    assert_eq!(out.code, 0, "{out}");
    let entries = out.json();
    let partner_path = dir.join("partner.pem").display().to_string();
    let names: Vec<&str> = entries
        .iter()
        .map(|entry| entry["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        [
            "fresh",
            "soon",
            "gone",
            "missing",
            "mismatch",
            "garbage",
            partner_path.as_str(),
            "partner-old"
        ],
        "managed certificates in config order, then monitors"
    );
    for entry in &entries {
        assert_contract(entry);
    }
    let now = OffsetDateTime::now_utc();

    let fresh = entry(&entries, "fresh");
    assert_eq!(fresh["state"], "ok", "{fresh:#}");
    assert_eq!(fresh["path"], path_str(&cert_path(dir, "fresh")));
    assert_eq!(fresh["domains"], serde_json::json!(["fresh.example.test"]));
    assert_facts(fresh, &fleet.fresh);
    assert_days_left(&fresh["days_left"], 60.0);
    // One third of a 90-day lifetime before expiry, moved earlier by the stable jitter (at
    // most an hour): the moment the agent and `renew` will act on.
    let rule = fleet.fresh.not_after - Duration::days(30);
    let renew_at = timestamp(&fresh["renew_at"]);
    assert!(
        renew_at <= rule + Duration::seconds(1) && renew_at >= rule - Duration::hours(1),
        "{renew_at} is not within an hour before {rule}"
    );
    assert_eq!(fresh["renew_reason"], "lifetime", "{fresh:#}");
    assert!(fresh["ari_window"].is_null(), "{fresh:#}");
    assert!(fresh["pending"].is_null(), "{fresh:#}");
    assert!(fresh["error"].is_null());

    let soon = entry(&entries, "soon");
    assert_eq!(soon["state"], "warning", "{soon:#}");
    assert_facts(soon, &fleet.soon);
    assert_days_left(&soon["days_left"], 20.0);
    assert!(timestamp(&soon["renew_at"]) <= now, "{soon:#}");

    let gone = entry(&entries, "gone");
    assert_eq!(gone["state"], "expired", "{gone:#}");
    assert_facts(gone, &fleet.gone);
    assert_days_left(&gone["days_left"], -3.0);

    let missing = entry(&entries, "missing");
    assert_eq!(missing["state"], "due", "{missing:#}");
    assert_eq!(missing["path"], path_str(&cert_path(dir, "missing")));
    assert_eq!(
        missing["domains"],
        serde_json::json!(["missing.example.test"])
    );
    for key in ["serial", "issuer", "not_before", "not_after", "days_left"] {
        assert!(missing[key].is_null(), "{key}: {missing:#}");
    }
    assert!(missing["renew_at"].is_string(), "{missing:#}");
    assert_eq!(missing["renew_reason"], "no_certificate", "{missing:#}");

    let mismatch = entry(&entries, "mismatch");
    assert_eq!(mismatch["state"], "warning", "{mismatch:#}");
    assert_facts(mismatch, &fleet.mismatch);
    assert!(timestamp(&mismatch["renew_at"]) <= now, "{mismatch:#}");
    let reason = mismatch["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("does not match"), "{mismatch:#}");
    assert!(
        reason.contains(path_str(&key_path(dir, "mismatch"))),
        "the reason names the key file: {mismatch:#}"
    );

    let garbage = entry(&entries, "garbage");
    assert_eq!(garbage["state"], "error", "{garbage:#}");
    let error = garbage["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(path_str(&cert_path(dir, "garbage"))),
        "{garbage:#}"
    );
    assert!(error.contains("not a certificate"), "{garbage:#}");
    assert!(garbage["serial"].is_null(), "{garbage:#}");

    let partner = entry(&entries, &partner_path);
    assert_eq!(partner["path"], partner_path.as_str(), "{partner:#}");
    assert_eq!(partner["state"], "ok", "{partner:#}");
    assert!(partner["renew_at"].is_null(), "monitored: {partner:#}");
    assert_eq!(
        partner["domains"],
        serde_json::json!(["partner.example.net", "www.partner.example.net"])
    );
    assert_facts(partner, &fleet.partner);
    assert_days_left(&partner["days_left"], 60.0);

    let old = entry(&entries, "partner-old");
    assert_eq!(old["state"], "critical", "{old:#}");
    assert!(old["renew_at"].is_null(), "monitored: {old:#}");
    assert_facts(old, &fleet.partner_old);
}

#[test]
fn status_table_names_every_certificate_and_state() {
    let fleet = Fleet::new();
    let out = fleet.run(&["status"]);
    assert_eq!(out.code, 0, "{out}");
    let partner_path = fleet.dir().join("partner.pem").display().to_string();
    let lines = out.lines();
    assert!(lines[0].starts_with("NAME"), "{out}");
    for (name, state) in [
        ("fresh", "ok"),
        ("soon", "warning"),
        ("gone", "expired"),
        ("missing", "due"),
        ("mismatch", "warning"),
        ("garbage", "error"),
        (partner_path.as_str(), "ok"),
        ("partner-old", "critical"),
    ] {
        assert!(
            lines
                .iter()
                .any(|line| line.starts_with(&format!("{name} ")) && line.ends_with(state)),
            "no row for {name} in state {state}:\n{out}"
        );
    }
    // Problems are spelled out under the table.
    assert!(
        lines
            .iter()
            .any(|line| line.trim_start().starts_with("garbage: ")
                && line.contains("not a certificate")),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line.trim_start().starts_with("mismatch: ")
                && line.contains("does not match")),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------------
// check FILE

#[test]
fn check_files_without_config_exit_by_expiry() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let ca = TestCa::new();
    let write = |name: &str, (not_before, not_after): (OffsetDateTime, OffsetDateTime)| {
        ca.leaf(
            &["files.example.test"],
            not_before,
            not_after,
            KeyType::EcdsaP256,
        )
        .write_fullchain(&dir.join(name));
    };
    write("60d.pem", days_left(60));
    write("20d.pem", days_left(20));
    write("5d.pem", days_left(5));
    write("expired.pem", days_left(-1));
    certs::write_garbage(&dir.join("garbage.pem"));
    certs::write_empty(&dir.join("empty.pem"));
    ca.leaf(
        &["files.example.test"],
        days_left(60).0,
        days_left(60).1,
        KeyType::EcdsaP256,
    )
    .write_reversed(&dir.join("reversed.pem"));

    for (file, code, label, detail, days) in [
        ("60d.pem", 0, "OK", ": expires", Some(60.0)),
        ("20d.pem", 1, "WARNING", ": expires", Some(20.0)),
        ("5d.pem", 2, "CRITICAL", ": expires", Some(5.0)),
        ("expired.pem", 2, "CRITICAL", ": expired ", Some(-1.0)),
        ("garbage.pem", 2, "CRITICAL", "not a certificate", None),
        ("empty.pem", 2, "CRITICAL", "empty", None),
        ("missing.pem", 2, "CRITICAL", "not found", None),
        ("reversed.pem", 2, "CRITICAL", "out of order", None),
    ] {
        let out = run_in(dir, &["check", file]);
        assert_eq!(out.code, code, "{file}: {out}");
        let lines = out.lines();
        assert_eq!(lines.len(), 1, "one target, one line: {file}: {out}");
        assert!(
            lines[0].starts_with(&format!("{label} - {file}: ")),
            "{file}: {out}"
        );
        assert!(lines[0].contains(detail), "{file}: {detail:?} in {out}");
        assert!(
            !lines[0].contains(&format!("{file}: {file}: ")),
            "the path said twice: {out}"
        );
        for internal in ["NomError", "Parsing Error", "[45, 45"] {
            assert!(!lines[0].contains(internal), "{internal:?} in {out}");
        }
        for doubled in ["ok expires", "expired expired", "critical expires"] {
            assert!(!lines[0].contains(doubled), "{doubled:?} in {out}");
        }
        let perf = perfdata(lines[0]);
        assert_eq!(perf.len(), 1, "{out}");
        assert_eq!(perf[0].0, file, "{out}");
        match days {
            Some(days) => assert_perf_days(&perf[0], days, "30:;7:"),
            None => assert_eq!(perf[0].1, "U", "{out}"),
        }
    }

    // No configuration was needed: `status`, which does need one, fails in the same place.
    if !Path::new(DEFAULT_CONFIG).exists() {
        let status = run_in(dir, &["status"]);
        assert_eq!(status.code, 2, "{status}");
    }
}

#[test]
fn check_worst_state_wins_one_line_per_target() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let ca = TestCa::new();
    for (name, left) in [("a.pem", 60), ("b.pem", 20), ("c.pem", 5)] {
        let (not_before, not_after) = days_left(left);
        ca.leaf(
            &["multi.example.test"],
            not_before,
            not_after,
            KeyType::EcdsaP256,
        )
        .write_fullchain(&dir.join(name));
    }
    for (targets, code) in [
        (vec!["a.pem"], 0),
        (vec!["a.pem", "b.pem"], 1),
        (vec!["b.pem", "a.pem", "b.pem"], 1),
        (vec!["a.pem", "c.pem", "b.pem"], 2),
        (vec!["a.pem", "missing.pem"], 2),
    ] {
        let mut args = vec!["check"];
        args.extend(&targets);
        let out = run_in(dir, &args);
        assert_eq!(out.code, code, "{targets:?}: {out}");
        let lines = out.lines();
        let status = ["OK", "WARNING", "CRITICAL"][code as usize];
        assert!(lines[0].starts_with(&format!("{status} - ")), "{out}");
        let labels: Vec<String> = perfdata(lines[0])
            .into_iter()
            .map(|(label, _)| label)
            .collect();
        assert_eq!(
            labels, targets,
            "perfdata for every target, in order: {out}"
        );
        if targets.len() == 1 {
            assert_eq!(lines.len(), 1, "{out}");
            continue;
        }
        assert!(
            lines[0].contains(&format!("{} targets: ", targets.len())),
            "{out}"
        );
        assert_eq!(lines.len(), 1 + targets.len(), "{targets:?}: {out}");
        for (line, target) in lines[1..].iter().zip(&targets) {
            assert!(
                line.contains(&format!(" {target}: ")),
                "lines follow the targets' order: {targets:?}: {out}"
            );
        }
    }
}

#[test]
fn check_thresholds_from_the_command_line_are_literal() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let (not_before, not_after) = days_left(60);
    certs::leaf(
        &["warn.example.test"],
        not_before,
        not_after,
        KeyType::EcdsaP256,
    )
    .write_fullchain(&dir.join("60d.pem"));
    let out = run_in(dir, &["check", "60d.pem"]);
    assert_eq!(out.code, 0, "{out}");
    let out = run_in(dir, &["check", "--warn", "90d", "60d.pem"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout.starts_with("WARNING - 60d.pem: expires"),
        "{out}"
    );
    assert_perf_days(&perfdata(out.lines()[0])[0], 60.0, "90:;7:");
    let out = run_in(
        dir,
        &["check", "--warn", "90d", "--critical", "61d", "60d.pem"],
    );
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stdout.starts_with("CRITICAL - 60d.pem: expires"),
        "{out}"
    );
    assert_perf_days(&perfdata(out.lines()[0])[0], 60.0, "90:;61:");
}

#[test]
fn check_short_lifetimes_scale_the_default_thresholds() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    // A 6-day certificate with 5 days left: healthy, although 5 days is inside the default
    // 7-day critical threshold (scaled: warn at 2 days left, critical at 1).
    let (not_before, not_after) = validity(Duration::days(6), Duration::days(5));
    certs::leaf(
        &["short.example.test"],
        not_before,
        not_after,
        KeyType::EcdsaP256,
    )
    .write_fullchain(&dir.join("short.pem"));
    let out = run_in(dir, &["check", "short.pem"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.starts_with("OK - short.pem: expires"), "{out}");
    // The perfdata thresholds are the scaled ones: a third and a sixth of 6 days.
    assert_perf_days(&perfdata(out.lines()[0])[0], 5.0, "2:;1:");
    let out = run_in(dir, &["check", "--critical", "7d", "short.pem"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stdout.starts_with("CRITICAL - short.pem: expires"),
        "{out}"
    );

    // Scaled, the same certificate is WARNING with a day and a half left and CRITICAL with
    // half a day.
    for (left_hours, code) in [(36, 1), (12, 2)] {
        let (not_before, not_after) = validity(Duration::days(6), Duration::hours(left_hours));
        certs::leaf(
            &["short.example.test"],
            not_before,
            not_after,
            KeyType::EcdsaP256,
        )
        .write_fullchain(&dir.join("shorter.pem"));
        let out = run_in(dir, &["check", "shorter.pem"]);
        assert_eq!(out.code, code, "{left_hours}h left: {out}");
    }
}

#[test]
fn check_bad_usage_is_unknown() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let (not_before, not_after) = days_left(60);
    certs::leaf(
        &["usage.example.test"],
        not_before,
        not_after,
        KeyType::EcdsaP256,
    )
    .write_fullchain(&dir.join("60d.pem"));
    let out = run_in(dir, &["check", "--warn", "xyz", "60d.pem"]);
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stderr.contains("xyz"), "the bad value is named: {out}");
    let out = run_in(dir, &["check", "--critical", "1 week", "60d.pem"]);
    assert_eq!(out.code, 3, "{out}");
    let out = run_in(dir, &["check", "--no-such-flag", "60d.pem"]);
    assert_eq!(out.code, 3, "{out}");
}

#[test]
fn check_json_for_files_der_and_ip_sans() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let (not_before, not_after) = days_left(60);
    let pem = certs::leaf(
        &["ip.example.test", "192.0.2.7", "2001:db8::1"],
        not_before,
        not_after,
        KeyType::EcdsaP256,
    );
    pem.write_fullchain(&dir.join("ip.pem"));
    let (not_before, not_after) = days_left(20);
    let der = certs::leaf(
        &["der.example.test"],
        not_before,
        not_after,
        KeyType::Rsa2048,
    );
    der.write_der(&dir.join("leaf.der"));
    certs::write_garbage(&dir.join("garbage.pem"));

    let out = run_in(
        dir,
        &["check", "--json", "ip.pem", "leaf.der", "garbage.pem"],
    );
    assert_eq!(out.code, 2, "{out}");
    let entries = out.json();
    assert_eq!(entries.len(), 3, "{out}");
    for entry in &entries {
        assert_contract(entry);
        assert!(
            entry["renew_at"].is_null(),
            "files are monitored: {entry:#}"
        );
    }

    let ip = &entries[0];
    assert_eq!(ip["path"], "ip.pem", "{ip:#}");
    assert_eq!(ip["state"], "ok", "{ip:#}");
    assert_eq!(
        ip["domains"],
        serde_json::json!(["ip.example.test", "192.0.2.7", "2001:db8::1"])
    );
    assert_facts(ip, &pem);
    assert_days_left(&ip["days_left"], 60.0);

    let leaf = &entries[1];
    assert_eq!(leaf["path"], "leaf.der", "{leaf:#}");
    assert_eq!(leaf["state"], "warning", "{leaf:#}");
    assert_eq!(leaf["domains"], serde_json::json!(["der.example.test"]));
    assert_facts(leaf, &der);

    let garbage = &entries[2];
    assert_eq!(garbage["state"], "error", "{garbage:#}");
    assert!(
        garbage["error"]
            .as_str()
            .is_some_and(|error| error.contains("garbage.pem")),
        "{garbage:#}"
    );
}

// ---------------------------------------------------------------------------------------------
// check HOST:PORT

#[test]
fn check_endpoint_reports_expiry_even_when_untrusted() {
    let tmp = TempDir::new().unwrap();
    let ca = TestCa::new();
    let serve = |left: i64| {
        let (not_before, not_after) = days_left(left);
        let leaf = ca.leaf(
            &["localhost", "127.0.0.1"],
            not_before,
            not_after,
            KeyType::EcdsaP256,
        );
        let server = TlsServer::start(&leaf);
        (leaf, server)
    };
    let (fresh, fresh_server) = serve(60);
    let (soon, soon_server) = serve(20);
    let (_, expired_server) = serve(-2);

    // Not trusted by this host, but the expiry decides the exit code.
    let out = run_in(tmp.path(), &["check", &fresh_server.endpoint()]);
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout
            .starts_with(&format!("OK - {}: expires", fresh_server.endpoint())),
        "{out}"
    );
    assert!(out.stdout.contains("[not trusted: "), "{out}");
    let out = run_in(tmp.path(), &["check", &expired_server.endpoint()]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stdout.starts_with("CRITICAL - "), "{out}");
    assert!(out.stdout.contains(": expired "), "{out}");
    // rustls' own text would say `verification time 1796035182 (UNIX)`: dates only.
    assert!(
        out.stdout
            .contains("[not trusted: the certificate expired at 20"),
        "{out}"
    );
    assert!(!out.stdout.contains("(UNIX)"), "{out}");
    assert_perf_days(&perfdata(out.lines()[0])[0], -2.0, "30:;7:");

    let out = run_in(
        tmp.path(),
        &[
            "check",
            "--json",
            &soon_server.endpoint(),
            &fresh_server.endpoint(),
        ],
    );
    assert_eq!(out.code, 1, "{out}");
    let entries = out.json();
    assert_eq!(entries.len(), 2, "{out}");
    for (entry, (leaf, server)) in entries
        .iter()
        .zip([(&soon, &soon_server), (&fresh, &fresh_server)])
    {
        assert_contract(entry);
        assert_eq!(entry["endpoint"], server.endpoint().as_str(), "{entry:#}");
        assert!(entry.get("path").is_none(), "{entry:#}");
        assert_eq!(entry["trusted"], false, "{entry:#}");
        assert!(
            entry["trust_error"]
                .as_str()
                .is_some_and(|error| !error.is_empty()),
            "{entry:#}"
        );
        assert!(entry["renew_at"].is_null(), "{entry:#}");
        assert_eq!(
            entry["domains"],
            serde_json::json!(["localhost", "127.0.0.1"])
        );
        assert_facts(entry, leaf);
    }
    assert_eq!(entries[0]["state"], "warning");
    assert_days_left(&entries[0]["days_left"], 20.0);
    assert_eq!(entries[1]["state"], "ok");
}

#[test]
fn check_endpoint_with_nothing_listening_is_critical() {
    let tmp = TempDir::new().unwrap();
    let endpoint = certs::closed_endpoint();
    let out = run_in(tmp.path(), &["check", &endpoint]);
    assert_eq!(out.code, 2, "{out}");
    let lines = out.lines();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        lines[0].starts_with(&format!("CRITICAL - {endpoint}: ")),
        "{out}"
    );
    assert!(lines[0].contains("cannot connect"), "{out}");
    assert_eq!(
        perfdata(lines[0]),
        [(endpoint.clone(), "U".to_owned())],
        "{out}"
    );

    let out = run_in(tmp.path(), &["check", "--json", &endpoint]);
    assert_eq!(out.code, 2, "{out}");
    let entries = out.json();
    assert_contract(&entries[0]);
    assert_eq!(entries[0]["endpoint"], endpoint.as_str());
    assert_eq!(entries[0]["state"], "error");
    assert!(
        entries[0]["error"]
            .as_str()
            .is_some_and(|error| error.contains(&endpoint)),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------------
// check with no targets

#[test]
fn check_without_targets_checks_the_config() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let ca = TestCa::new();
    managed(dir, &ca, "fresh", days_left(60));
    managed(dir, &ca, "soon", days_left(20));
    let (not_before, not_after) = days_left(60);
    ca.leaf(
        &["partner.example.net"],
        not_before,
        not_after,
        KeyType::EcdsaP256,
    )
    .write_fullchain(&dir.join("partner.pem"));
    let served = ca.leaf(&["localhost"], not_before, not_after, KeyType::EcdsaP256);
    let server = TlsServer::start(&served);

    let mut text = managed_toml(dir, "fresh");
    text.push_str(&managed_toml(dir, "soon"));
    let _ = write!(
        text,
        "[[monitor]]\nname = \"partner\"\npath = 'partner.pem'\n\n\
         [[monitor]]\nname = \"api\"\nendpoint = \"{}\"\n",
        server.endpoint()
    );
    let config = write_config(dir, &text);
    let config = path_str(&config);

    let out = run_in(dir, &["check", "-c", config]);
    assert_eq!(out.code, 1, "the 20-day certificate warns: {out}");
    let lines = out.lines();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(
        lines[0].starts_with("WARNING - 4 targets: 1 warning, 3 ok | "),
        "{out}"
    );
    let perf = perfdata(lines[0]);
    let labels: Vec<&str> = perf.iter().map(|(label, _)| label.as_str()).collect();
    assert_eq!(labels, ["fresh", "soon", "partner", "api"], "{out}");
    assert_perf_days(&perf[1], 20.0, "30:;7:");
    let fresh_path = cert_path(dir, "fresh");
    let soon_path = cert_path(dir, "soon");
    let partner_path = dir.join("partner.pem");
    for (line, prefix) in lines[1..].iter().zip([
        format!("OK {}: expires", fresh_path.display()),
        format!("WARNING {}: expires", soon_path.display()),
        format!("OK {}: expires", partner_path.display()),
        format!("OK {}: expires", server.endpoint()),
    ]) {
        assert!(line.starts_with(&prefix), "{prefix:?}:\n{out}");
    }

    let out = run(evercert(dir)
        .env("EVERCERT_CONFIG", config)
        .args(["check", "--json"]));
    assert_eq!(out.code, 1, "{out}");
    let entries = out.json();
    let names: Vec<&str> = entries
        .iter()
        .map(|entry| entry["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names, ["fresh", "soon", "partner", "api"], "{out}");
    for entry in &entries {
        assert_contract(entry);
    }
    assert!(entries[0]["renew_at"].is_string());
    assert!(entries[2]["renew_at"].is_null());
    assert_eq!(entries[3]["endpoint"], server.endpoint().as_str());
    assert_eq!(entries[3]["trusted"], false);
}

#[test]
fn check_thresholds_from_the_command_line_apply_to_managed_certificates() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let ca = TestCa::new();
    managed(dir, &ca, "soon", days_left(20));
    let (not_before, not_after) = days_left(20);
    ca.leaf(
        &["partner.example.net"],
        not_before,
        not_after,
        KeyType::EcdsaP256,
    )
    .write_fullchain(&dir.join("partner.pem"));
    let mut text = managed_toml(dir, "soon");
    text.push_str("[[monitor]]\nname = \"partner\"\npath = 'partner.pem'\n");
    let config = write_config(dir, &text);
    let config = path_str(&config);

    // With the config's thresholds (30d / 7d) both 20-day certificates warn.
    let out = run_in(dir, &["check", "-c", config]);
    assert_eq!(out.code, 1, "{out}");
    // --warn/--critical replace them for everything checked, managed or monitored: 20 days
    // left is fine with a 10-day warning (the managed one is merely due for renewal).
    let out = run_in(
        dir,
        &["check", "-c", config, "--warn", "10d", "--critical", "5d"],
    );
    assert_eq!(out.code, 0, "{out}");
    let lines = out.lines();
    assert!(lines[0].starts_with("OK - 2 targets: 2 ok | "), "{out}");
    assert!(
        lines[1].starts_with("OK ") && lines[1].contains(": due for renewal, expires "),
        "{out}"
    );
    assert!(
        lines[2].starts_with("OK ") && lines[2].contains(": expires "),
        "{out}"
    );
    // And literally: a 30-day critical threshold makes both critical.
    let out = run_in(
        dir,
        &["check", "-c", config, "--warn", "40d", "--critical", "30d"],
    );
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.lines().iter().all(|line| line.starts_with("CRITICAL ")),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------------
// Example configurations

/// The ```toml blocks of a Markdown file, with the line each starts on.
fn toml_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (index, line) in markdown.lines().enumerate() {
        let fence = line.trim_start();
        match &mut current {
            None if fence.starts_with("```toml") => current = Some((index + 2, String::new())),
            Some(_) if fence.starts_with("```") => blocks.extend(current.take()),
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
            None => {}
        }
    }
    assert!(current.is_none(), "unclosed ```toml block");
    blocks
}

#[test]
fn every_example_config_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = TempDir::new().unwrap();
    let mut examples: Vec<PathBuf> = fs::read_dir(root.join("examples"))
        .map(|dir| {
            dir.map(|entry| entry.unwrap().path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
                .collect()
        })
        .unwrap_or_default();
    examples.sort();
    assert!(
        !examples.is_empty(),
        "there must be at least one examples/*.toml"
    );

    let mut markdown: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .map(|dir| {
            dir.map(|entry| entry.unwrap().path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
                .collect()
        })
        .unwrap_or_default();
    markdown.push(root.join("README.md"));
    markdown.sort();
    let mut snippets = Vec::new();
    for file in markdown.iter().filter(|file| file.exists()) {
        for (line, text) in toml_blocks(&fs::read_to_string(file).unwrap()) {
            let label = format!("{}:{line}", file.strip_prefix(root).unwrap().display());
            let path = tmp.path().join(format!("snippet-{}.toml", snippets.len()));
            certs::write(&path, text);
            snippets.push((label, path));
        }
    }

    let mut failures = String::new();
    let files = examples
        .iter()
        .map(|path| {
            (
                path.strip_prefix(root).unwrap().display().to_string(),
                path.clone(),
            )
        })
        .chain(snippets);
    for (label, path) in files {
        let out = run_in(tmp.path(), &["config", "check", "-c", path_str(&path)]);
        if out.code != 0 {
            let _ = writeln!(failures, "{label}:\n{out}");
        }
    }
    assert!(
        failures.is_empty(),
        "invalid example configurations:\n{failures}"
    );
}

/// The performance data after `|` on a plugin's first line: (label, value with its
/// thresholds), e.g. `'shop'=20.5d;30:;7:` → ("shop", "20.5d;30:;7:").
fn perfdata(first_line: &str) -> Vec<(String, String)> {
    let (_, perf) = first_line
        .split_once(" | ")
        .unwrap_or_else(|| panic!("no performance data in {first_line:?}"));
    let mut items = Vec::new();
    let mut rest = perf.trim();
    while let Some(after_quote) = rest.strip_prefix('\'') {
        let (label, after_label) = after_quote.split_once("'=").unwrap();
        let (value, next) = after_label.split_once(' ').unwrap_or((after_label, ""));
        items.push((label.to_owned(), value.to_owned()));
        rest = next.trim_start();
    }
    assert!(
        rest.is_empty(),
        "unparsed performance data {rest:?} in {first_line:?}"
    );
    items
}

/// `value` is `DAYSd;THRESHOLDS` with DAYS within a tenth of a day of `days`.
fn assert_perf_days((label, value): &(String, String), days: f64, thresholds: &str) {
    let (number, rest) = value
        .split_once("d;")
        .unwrap_or_else(|| panic!("{label}: {value:?} is not DAYSd;WARN;CRIT"));
    let number: f64 = number.parse().unwrap();
    assert!(
        (number - days).abs() < 0.1,
        "{label}: {value:?}, expected {days} days"
    );
    assert_eq!(rest, thresholds, "{label}: {value:?}");
}
