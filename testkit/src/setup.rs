//! A working directory with a Pebble CA, an evercert configuration pointing at it, and a way
//! to run the built `evercert` binary there. Most issuance tests start from [`Setup::new`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::pebble::{Pebble, PebbleOptions};

/// How a test certificate proves control of its names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// evercert's own http-01 responder on Pebble's http port.
    Listen,
    /// http-01 through a webroot; the test must serve it on Pebble's http port
    /// (see [`super::webroot::WebrootServer`] if present, or any static server).
    Webroot(PathBuf),
    /// dns-01 through the hook script [`Setup::dns_hook`] writes (pebble-challtestsrv).
    Dns,
    /// evercert's own tls-alpn-01 responder on Pebble's tls port.
    TlsAlpn,
    /// A challenge table written as given (e.g. `[certificate.dns01]` with `rfc2136`).
    Table(String),
}

/// One `[[certificate]]` of the test configuration.
#[derive(Debug, Clone)]
pub struct CertSpec {
    pub name: String,
    pub domains: Vec<String>,
    pub challenge: Challenge,
    pub key_type: Option<String>,
    pub reload: Option<String>,
    pub verify: Vec<String>,
    /// Extra `key = value` lines for the certificate table.
    pub extra: String,
}

impl CertSpec {
    /// A certificate `name` for `NAME.example.test`, via the built-in http-01 responder.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            domains: vec![format!("{name}.example.test")],
            challenge: Challenge::Listen,
            key_type: None,
            reload: None,
            verify: Vec::new(),
            extra: String::new(),
        }
    }

    pub fn domains(mut self, domains: &[&str]) -> Self {
        self.domains = domains.iter().map(|d| (*d).to_owned()).collect();
        self
    }

    pub fn challenge(mut self, challenge: Challenge) -> Self {
        self.challenge = challenge;
        self
    }

    pub fn key_type(mut self, key_type: &str) -> Self {
        self.key_type = Some(key_type.to_owned());
        self
    }

    pub fn reload(mut self, command: &str) -> Self {
        self.reload = Some(command.to_owned());
        self
    }

    pub fn verify(mut self, endpoint: &str) -> Self {
        self.verify.push(endpoint.to_owned());
        self
    }

    pub fn extra(mut self, line: &str) -> Self {
        self.extra.push_str(line);
        self.extra.push('\n');
        self
    }
}

/// What one run of the binary printed and how it exited.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(output: &Output) -> Self {
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Everything printed, for assertion messages.
    pub fn all(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.all())
    }
}

/// Runs the built `evercert ARGS` in `dir`, without a configuration of its own (no Pebble):
/// the import and discover tests name theirs with `-c` when they need one.
pub fn evercert_in(dir: &Path, args: &[&str]) -> Run {
    let output = Command::new(crate::evercert_binary())
        .current_dir(dir)
        .env_remove("EVERCERT_CONFIG")
        // A test run started by systemd (CI as a unit) must not turn on the journal's `<N>`
        // prefixes; tests/it/journald.rs sets it where it is the point.
        .env_remove("JOURNAL_STREAM")
        .env("EVERCERT_LOG", "warn")
        .args(args)
        .output()
        .expect("run evercert");
    Run::from_output(&output)
}

/// A temporary directory, a Pebble, and an evercert configuration for them.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub pebble: Pebble,
    /// Overrides the ACME directory URL (e.g. a fault-injecting proxy in front of Pebble).
    pub directory_override: Option<String>,
    /// Extra lines for the `[acme]` table.
    pub acme_extra: String,
    /// Extra top-level TOML appended at the end (e.g. `[[monitor]]` tables).
    pub tail: String,
    /// Overrides `[acme] ca_bundle` (e.g. a bundle that also trusts a stand-in server).
    pub ca_bundle_override: Option<PathBuf>,
}

impl Setup {
    /// Pebble with its defaults (5% nonce rejection on).
    pub fn new() -> Self {
        Self::with(PebbleOptions::default())
    }

    pub fn with(options: PebbleOptions) -> Self {
        super::pebble::require_pebble();
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            pebble: Pebble::start_with(options),
            directory_override: None,
            acme_extra: String::new(),
            tail: String::new(),
            ca_bundle_override: None,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("evercert.toml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path().join("state")
    }

    /// Where certificate `name` is written: `tls/NAME/fullchain.pem`.
    pub fn cert_path(&self, name: &str) -> PathBuf {
        self.path().join("tls").join(name).join("fullchain.pem")
    }

    pub fn key_path(&self, name: &str) -> PathBuf {
        self.path().join("tls").join(name).join("privkey.pem")
    }

    /// A dns-01 hook script that sets and clears TXT records in pebble-challtestsrv, using
    /// only bash (no curl on a fresh machine). It logs each call to `dns-hook.log`.
    pub fn dns_hook(&self) -> PathBuf {
        let management = self.pebble.challtestsrv_management();
        let port = management.rsplit(':').next().unwrap_or_default();
        write_dns_hook(self.path(), port)
    }

    /// Writes `evercert.toml` for `certs`.
    pub fn write_config(&self, certs: &[CertSpec]) -> PathBuf {
        let directory = self
            .directory_override
            .clone()
            .unwrap_or_else(|| self.pebble.directory_url());
        let mut toml = format!(
            "state_dir = \"{state}\"\n\n[acme]\ndirectory = \"{directory}\"\nstaging_directory = \"{directory}\"\ncontact = [\"mailto:ops@example.test\"]\nca_bundle = \"{bundle}\"\n{extra}\n",
            state = self.state_dir().display(),
            bundle = self
                .ca_bundle_override
                .as_deref()
                .unwrap_or(self.pebble.ca_bundle_path())
                .display(),
            extra = self.acme_extra,
        );
        for cert in certs {
            let domains: Vec<String> = cert.domains.iter().map(|d| format!("\"{d}\"")).collect();
            let _ = write!(
                toml,
                "[[certificate]]\nname = \"{name}\"\ndomains = [{domains}]\ncert_path = \"{cert}\"\nkey_path = \"{key}\"\n",
                name = cert.name,
                domains = domains.join(", "),
                cert = self.cert_path(&cert.name).display(),
                key = self.key_path(&cert.name).display(),
            );
            if let Some(key_type) = &cert.key_type {
                let _ = writeln!(toml, "key_type = \"{key_type}\"");
            }
            if let Some(reload) = &cert.reload {
                let _ = writeln!(toml, "reload = {}", toml_string(reload));
            }
            if !cert.verify.is_empty() {
                let verify: Vec<String> = cert.verify.iter().map(|v| format!("\"{v}\"")).collect();
                let _ = writeln!(toml, "verify = [{}]", verify.join(", "));
            }
            toml.push_str(&cert.extra);
            match &cert.challenge {
                Challenge::Listen => {
                    let _ = writeln!(
                        toml,
                        "[certificate.http01]\nlisten = \"127.0.0.1:{}\"",
                        self.pebble.http_port()
                    );
                }
                Challenge::Webroot(webroot) => {
                    let _ = writeln!(
                        toml,
                        "[certificate.http01]\nwebroot = \"{}\"",
                        webroot.display()
                    );
                }
                Challenge::Dns => {
                    let _ = writeln!(
                        toml,
                        "[certificate.dns01]\nhook = \"{}\"\nwait = \"0s\"",
                        self.dns_hook().display()
                    );
                }
                Challenge::Table(table) => {
                    let _ = writeln!(toml, "{}", table.trim_end());
                }
                Challenge::TlsAlpn => {
                    let _ = writeln!(
                        toml,
                        "[certificate.tlsalpn01]\nlisten = \"127.0.0.1:{}\"",
                        self.pebble.tls_port()
                    );
                }
            }
            toml.push('\n');
        }
        toml.push_str(&self.tail);
        let path = self.config_path();
        std::fs::write(&path, toml).expect("write config");
        path
    }

    /// A command running the built `evercert` with this configuration.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(crate::evercert_binary());
        command
            .current_dir(self.path())
            .env_remove("EVERCERT_CONFIG")
            // A test run started by systemd (CI as a unit) must not turn on the journal's `<N>`
            // prefixes; tests/it/journald.rs sets it where it is the point.
            .env_remove("JOURNAL_STREAM")
            .env("EVERCERT_LOG", "warn")
            .arg("-c")
            .arg(self.config_path())
            .args(args);
        command
    }

    /// Plants a working 90-day ECDSA pair for `NAME.example.test` with `days_left` days left
    /// (negative: expired) at the paths configured for `name`.
    pub fn plant(&self, name: &str, days_left: i64) -> super::certs::Leaf {
        let (not_before, not_after) = super::certs::days_left(days_left);
        let leaf = super::certs::leaf(
            &[&format!("{name}.example.test")],
            not_before,
            not_after,
            super::certs::KeyType::EcdsaP256,
        );
        std::fs::create_dir_all(self.cert_path(name).parent().expect("a directory"))
            .expect("create the certificate's directory");
        leaf.write_fullchain(&self.cert_path(name));
        leaf.write_key(&self.key_path(name));
        leaf
    }

    /// Runs `evercert ARGS` to the end.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from_output(&self.command(args).output().expect("run evercert"))
    }
}

impl Default for Setup {
    fn default() -> Self {
        Self::new()
    }
}

/// Writes `DIR/dns-hook.sh`: a dns-01 hook that sets and clears TXT records through the
/// pebble-challtestsrv management API on 127.0.0.1:`management_port`, using only bash (no
/// curl on a fresh machine). It logs each call to `DIR/dns-hook.log`.
pub fn write_dns_hook(dir: &Path, management_port: &str) -> PathBuf {
    let path = dir.join("dns-hook.sh");
    let script = format!(
        r#"#!/usr/bin/env bash
# evercert dns-01 hook for tests: $1=present|cleanup $2=DOMAIN $3=RECORD_NAME $4=VALUE
set -euo pipefail
echo "$1 $2 $3 $4" >> "{log}"
case "$1" in
  present) body="{{\"host\":\"$3.\",\"value\":\"$4\"}}"; path=/set-txt ;;
  cleanup) body="{{\"host\":\"$3.\"}}"; path=/clear-txt ;;
  *) echo "unknown action $1" >&2; exit 2 ;;
esac
exec 3<>/dev/tcp/127.0.0.1/{management_port}
printf 'POST %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' "$path" "${{#body}}" "$body" >&3
status=$(head -n1 <&3)
case "$status" in *" 200 "*) ;; *) echo "challtestsrv answered: $status" >&2; exit 1 ;; esac
"#,
        log = dir.join("dns-hook.log").display(),
    );
    std::fs::write(&path, script).expect("write hook");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod hook");
    path
}

/// A TOML basic string with quotes and backslashes escaped.
pub fn toml_string(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}
