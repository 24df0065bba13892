//! A fleet on loopback for the fleet demo and the fleet benchmark: a real 3-member etcd, a
//! real Pebble (5 % badNonce on) behind a pass-through proxy that counts orders, and any
//! number of hosts, each with its own directory (`state/`, `tls/NAME/`, `evercert.toml`)
//! running the real `evercert` binary. Challenges are dns-01 through pebble-challtestsrv, as in
//! tests/it/fleet.rs: every host is on 127.0.0.1 and only one of them could listen on
//! Pebble's http-01 port.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use evercert_testkit::certs;
use evercert_testkit::etcd::EtcdCluster;
use evercert_testkit::faultproxy::FaultProxy;
use evercert_testkit::pebble::{Pebble, PebbleOptions};

/// One certificate in a host's configuration.
#[derive(Debug, Clone)]
pub struct HostCert {
    pub name: String,
    /// `verify` endpoint (the host's web server), if any.
    pub verify: Option<String>,
    pub reload: String,
}

pub struct FleetBed {
    pub binary: PathBuf,
    /// Dropped last: the hosts' files live here.
    pub etcd: EtcdCluster,
    pub proxy: FaultProxy,
    pub pebble: Pebble,
    pub key_file: PathBuf,
    pub prefix: String,
    /// Top-level TOML written into every host's configuration (e.g. a `[renewal]` table).
    pub extra: String,
    hook: PathBuf,
    work: tempfile::TempDir,
}

impl FleetBed {
    /// Starts etcd, Pebble and the counting proxy, and writes the fleet key.
    pub fn start(binary: &Path) -> Self {
        evercert_testkit::pebble::require_pebble();
        evercert_testkit::etcd::require_etcd();
        let work = tempfile::Builder::new()
            .prefix("evercert-fleet-")
            .tempdir()
            .unwrap();
        let etcd = EtcdCluster::start();
        let pebble = Pebble::start_with(PebbleOptions::default());
        let proxy = FaultProxy::start(&pebble);
        let hook = evercert_testkit::setup::write_dns_hook(
            work.path(),
            pebble
                .challtestsrv_management()
                .rsplit(':')
                .next()
                .unwrap_or_default(),
        );
        let key_file = work.path().join("fleet.key");
        let key = Command::new(binary)
            .args(["cluster", "keygen"])
            .output()
            .unwrap();
        assert!(key.status.success(), "evercert cluster keygen failed");
        std::fs::write(&key_file, &key.stdout).unwrap();
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        Self {
            binary: binary.to_owned(),
            etcd,
            proxy,
            pebble,
            key_file,
            prefix: "/evercert/demo".into(),
            extra: String::new(),
            hook,
            work,
        }
    }

    pub fn path(&self) -> &Path {
        self.work.path()
    }

    /// Keeps the hosts' directories (configurations, logs, alerts) after the run.
    pub fn keep(self) -> PathBuf {
        let Self { work, .. } = self;
        work.keep()
    }

    pub fn host_dir(&self, host: &str) -> PathBuf {
        self.path().join(host)
    }

    pub fn cert_path(&self, host: &str, name: &str) -> PathBuf {
        self.host_dir(host)
            .join("tls")
            .join(name)
            .join("fullchain.pem")
    }

    pub fn key_path(&self, host: &str, name: &str) -> PathBuf {
        self.host_dir(host)
            .join("tls")
            .join(name)
            .join("privkey.pem")
    }

    pub fn config_path(&self, host: &str) -> PathBuf {
        self.host_dir(host).join("evercert.toml")
    }

    /// Writes `HOST/evercert.toml` for `certs` (names `NAME.example.test`, dns-01), with
    /// `[cluster]` naming the host; alerts are appended to `HOST/alerts.jsonl`.
    pub fn write_config(&self, host: &str, certs: &[HostCert]) -> PathBuf {
        let dir = self.host_dir(host);
        std::fs::create_dir_all(&dir).unwrap();
        let directory = self.proxy.directory_url();
        let mut toml = format!(
            "state_dir = \"{state}\"\n\n[acme]\ndirectory = \"{directory}\"\nstaging_directory = \"{directory}\"\ncontact = [\"mailto:ops@example.test\"]\nca_bundle = \"{bundle}\"\n\n",
            state = dir.join("state").display(),
            bundle = self.pebble.ca_bundle_path().display(),
        );
        for cert in certs {
            let _ = write!(
                toml,
                "[[certificate]]\nname = \"{name}\"\ndomains = [\"{name}.example.test\"]\ncert_path = \"{cert_path}\"\nkey_path = \"{key_path}\"\nreload = {reload}\n",
                name = cert.name,
                cert_path = self.cert_path(host, &cert.name).display(),
                key_path = self.key_path(host, &cert.name).display(),
                reload = evercert_testkit::setup::toml_string(&cert.reload),
            );
            if let Some(endpoint) = &cert.verify {
                let _ = writeln!(toml, "verify = [\"{endpoint}\"]");
            }
            let _ = write!(
                toml,
                "[certificate.dns01]\nhook = \"{}\"\nwait = \"0s\"\n\n",
                self.hook.display()
            );
        }
        toml.push_str(&self.extra);
        let alerts = dir.join("alerts.jsonl");
        let _ = write!(
            toml,
            "[alerts]\ncommand = {command}\n\n[cluster]\nname = \"{host}\"\netcd = {etcd}\nprefix = \"{prefix}\"\nsecret_key_file = \"{key}\"\nreload_jitter = \"0s\"\n",
            // One write per alert: two alerts at once must not interleave.
            command = evercert_testkit::setup::toml_string(&format!(
                "printf '%s\\n' \"$(cat)\" >> {}",
                alerts.display()
            )),
            etcd = self.etcd.endpoints_toml(),
            prefix = self.prefix,
            key = self.key_file.display(),
        );
        let path = self.config_path(host);
        std::fs::write(&path, toml).unwrap();
        path
    }

    /// Plants a 90-day ECDSA pair for `NAME.example.test` with `days_left` days left, issued
    /// by `ca` (an "old CA"); returns its serial.
    pub fn plant(&self, ca: &certs::TestCa, host: &str, name: &str, days_left: i64) -> String {
        let (not_before, not_after) = certs::days_left(days_left);
        let leaf = ca.leaf(
            &[&format!("{name}.example.test")],
            not_before,
            not_after,
            certs::KeyType::EcdsaP256,
        );
        let cert_path = self.cert_path(host, name);
        std::fs::create_dir_all(cert_path.parent().unwrap()).unwrap();
        leaf.write_fullchain(&cert_path);
        leaf.write_key(&self.key_path(host, name));
        serial_of(&cert_path)
    }

    /// `evercert -c HOST/evercert.toml ARGS`, run in the host's directory.
    pub fn command(&self, host: &str, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .current_dir(self.host_dir(host))
            .env_remove("EVERCERT_CONFIG")
            .env_remove("NOTIFY_SOCKET")
            .env("EVERCERT_LOG", "warn")
            .arg("-c")
            .arg(self.config_path(host))
            .args(args)
            .stdin(Stdio::null());
        command
    }

    /// `evercert run` for `host`, its output appended to `HOST/agent.log`.
    pub fn spawn_agent(&self, host: &str) -> std::process::Child {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.host_dir(host).join("agent.log"))
            .unwrap();
        self.command(host, &["run"])
            .env("EVERCERT_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    /// Orders the CA finalized, counted at the proxy (a badNonce retry is not an order).
    pub fn orders(&self) -> usize {
        self.proxy
            .seen()
            .into_iter()
            .filter(|seen| seen.method == "POST" && seen.path.starts_with("/finalize-order/"))
            .map(|seen| seen.path)
            .collect::<BTreeSet<String>>()
            .len()
    }

    /// What the hosts reported at `P/applied/NAME/HOST`: `(name, host, generation, ok)`.
    pub fn applied(&self) -> Vec<(String, String, u64, bool)> {
        let base = format!("{}/applied/", self.prefix);
        let output = self.etcd.etcdctl(&["get", "--prefix", &base]);
        // Key and value on alternate lines; values are one-line JSON.
        let lines: Vec<&str> = output.lines().collect();
        lines
            .chunks(2)
            .filter_map(|pair| {
                let (name, host) = pair.first()?.strip_prefix(&base)?.split_once('/')?;
                let record: serde_json::Value = serde_json::from_str(pair.get(1)?).ok()?;
                Some((
                    name.to_owned(),
                    host.to_owned(),
                    record["generation"].as_u64()?,
                    record["ok"].as_bool()?,
                ))
            })
            .collect()
    }

    /// Every key under the prefix: `(keys, bytes of keys and values)`.
    pub fn etcd_usage(&self) -> (usize, usize) {
        let keys = self.etcd.keys(&self.prefix);
        let bytes = keys.iter().map(|(key, value)| key.len() + value).sum();
        (keys.len(), bytes)
    }
}

/// The serial of the leaf in `path`, as `evercert status` prints it.
pub fn serial_of(path: &Path) -> String {
    evercert::inventory::read_cert_file(path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .leaf
        .serial
}

/// The serial `evercert check --json` reads from the certificate served at `endpoint`.
pub fn served_serial(binary: &Path, endpoint: &str) -> Option<String> {
    let output = Command::new(binary)
        .env_remove("EVERCERT_CONFIG")
        .args(["check", "--json", endpoint])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    json[0]["serial"].as_str().map(str::to_owned)
}
