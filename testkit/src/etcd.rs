//! A real 3-member etcd cluster on loopback (Debian `etcd-server`), one process per member
//! with its own data directory, client and peer port (TESTBEDS.md). Members can be killed,
//! paused and started again; everything is killed and reaped on drop.
//!
//! The etcd binary is Debian's (3.4) unless `EVERCERT_ETCD_BIN` names another one, e.g. the
//! etcd 3.5 that [`super::etcd35::etcd_3_5`] provides; its `etcdctl` is used when one lies
//! beside it.

use std::env;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::pebble::{find_binary, unused_loopback_port};

/// How long a fresh cluster may take to elect a leader on a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Names the etcd binary the fleet tests run instead of the one on PATH.
pub const ETCD_BIN_ENV: &str = "EVERCERT_ETCD_BIN";

/// The etcd binary to run: `EVERCERT_ETCD_BIN` when set, else `etcd` on PATH or in /usr/bin.
/// Panics with an actionable message when there is none (never skips).
pub fn etcd_binary() -> PathBuf {
    if let Some(chosen) = env::var_os(ETCD_BIN_ENV) {
        let chosen = PathBuf::from(chosen);
        assert!(
            chosen.is_file(),
            "{ETCD_BIN_ENV}={} is not a file: point it at an etcd binary, or unset it to use Debian's",
            chosen.display()
        );
        return chosen;
    }
    if let Some(found) = find_binary("etcd") {
        return found;
    }
    let ci = env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    panic!(
        "etcd not found on PATH or in /usr/bin{}: install Debian's etcd with `apt-get install -y etcd-server etcd-client` (scripts/ensure-deps.sh); fleet tests are never skipped",
        if ci { " (CI)" } else { "" }
    );
}

/// Panics with an actionable message unless etcd is installed (never skips).
pub fn require_etcd() {
    etcd_binary();
}

/// The `etcdctl` beside `etcd` when there is one (a release's own), else the one on PATH.
fn etcdctl_for(etcd: &Path) -> PathBuf {
    etcd.parent()
        .map(|dir| dir.join("etcdctl"))
        .filter(|beside| beside.is_file())
        .unwrap_or_else(|| PathBuf::from("etcdctl"))
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    log: PathBuf,
}

/// A running 3-member cluster.
pub struct EtcdCluster {
    dir: tempfile::TempDir,
    members: Vec<Member>,
    initial_cluster: String,
    token: String,
    binary: PathBuf,
    etcdctl: PathBuf,
}

impl EtcdCluster {
    /// Starts three members and waits until every one reports healthy.
    pub fn start() -> Self {
        Self::start_with(3)
    }

    pub fn start_with(count: usize) -> Self {
        Self::start_binary(&etcd_binary(), count)
    }

    /// Starts `count` members of the etcd at `binary`.
    pub fn start_binary(binary: &Path, count: usize) -> Self {
        let dir = tempfile::tempdir().expect("tempdir for etcd");
        let members: Vec<Member> = (1..=count)
            .map(|index| Member {
                name: format!("m{index}"),
                client_port: unused_loopback_port(),
                peer_port: unused_loopback_port(),
                child: None,
                log: dir.path().join(format!("m{index}.log")),
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!(
            "evercert-test-{}-{}",
            std::process::id(),
            members[0].client_port
        );
        let mut cluster = Self {
            dir,
            members,
            initial_cluster,
            token,
            binary: binary.to_owned(),
            etcdctl: etcdctl_for(binary),
        };
        for index in 0..count {
            cluster.launch(index);
        }
        cluster.wait_healthy((0..count).collect());
        cluster
    }

    fn launch(&mut self, index: usize) {
        let data = self.dir.path().join(&self.members[index].name);
        let member = &mut self.members[index];
        let client = format!("http://127.0.0.1:{}", member.client_port);
        let peer = format!("http://127.0.0.1:{}", member.peer_port);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&member.log)
            .expect("etcd log file");
        let child = Command::new(&self.binary)
            .args(["--name", &member.name])
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            // Fast elections on loopback; a loaded 2-core machine still keeps up.
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| panic!("spawn etcd {}: {err}", member.name));
        member.child = Some(child);
    }

    fn wait_healthy(&mut self, indexes: Vec<usize>) {
        let started = Instant::now();
        for index in indexes {
            loop {
                if health(self.members[index].client_port) {
                    break;
                }
                if let Some(child) = self.members[index].child.as_mut()
                    && let Ok(Some(status)) = child.try_wait()
                {
                    panic!(
                        "etcd {} exited ({status}) during start:\n{}",
                        self.members[index].name,
                        self.logs()
                    );
                }
                assert!(
                    started.elapsed() < START_TIMEOUT,
                    "etcd not healthy within {START_TIMEOUT:?}:\n{}",
                    self.logs()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// The client URLs, as `[cluster] etcd` takes them.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// The endpoints as a TOML array.
    pub fn endpoints_toml(&self) -> String {
        let quoted: Vec<String> = self
            .endpoints()
            .iter()
            .map(|url| format!("\"{url}\""))
            .collect();
        format!("[{}]", quoted.join(", "))
    }

    /// SIGKILLs member `index` (0-based).
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.members[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `index` again on its data directory and waits until it is healthy.
    pub fn restart(&mut self, index: usize) {
        self.kill(index);
        let data = self.dir.path().join(&self.members[index].name);
        assert!(data.exists(), "member data dir {} vanished", data.display());
        self.launch(index);
        self.wait_healthy(vec![index]);
    }

    /// The 0-based index of the current leader, from the members' own status.
    pub fn leader(&self) -> Option<usize> {
        let output = Command::new(&self.etcdctl)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints().join(",")))
            .args(["endpoint", "status", "--write-out=simple"])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&output.stdout);
        // Columns: endpoint, id, version, db size, is leader, …
        text.lines().find_map(|line| {
            let columns: Vec<&str> = line.split(", ").collect();
            let is_leader = columns.get(4).is_some_and(|v| v.trim() == "true");
            let endpoint = columns.first()?;
            is_leader
                .then(|| self.endpoints().iter().position(|url| url == endpoint))
                .flatten()
        })
    }

    /// Every key under `prefix` with the byte size of its value (`etcdctl get --prefix`).
    pub fn keys(&self, prefix: &str) -> Vec<(String, usize)> {
        let output = Command::new(&self.etcdctl)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints().join(",")))
            .args(["get", "--prefix", prefix, "--write-out=json"])
            .output()
            .expect("run etcdctl");
        let json: serde_json::Value =
            serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
        let decode = |v: &serde_json::Value| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap_or_default())
                .unwrap_or_default()
        };
        json["kvs"]
            .as_array()
            .map(|kvs| {
                kvs.iter()
                    .map(|kv| {
                        (
                            String::from_utf8_lossy(&decode(&kv["key"])).into_owned(),
                            decode(&kv["value"]).len(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Runs `etcdctl ARGS…` against the cluster; its stdout.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let output = Command::new(&self.etcdctl)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints().join(",")))
            .args(args)
            .output()
            .expect("run etcdctl");
        assert!(
            output.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The first line of `etcd --version` of the running binary (`etcd Version: 3.4.23`).
    pub fn version(&self) -> String {
        let output = Command::new(&self.binary)
            .arg("--version")
            .output()
            .expect("run etcd --version");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every member's log, for assertion messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for member in &self.members {
            let text = fs::read_to_string(&member.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {} ---\n", member.name));
            for line in &lines[lines.len().saturating_sub(20)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for index in 0..self.members.len() {
            self.kill(index);
        }
    }
}

/// Whether the member on `port` answers `/health` with `"health":"true"` (it has a leader).
fn health(port: u16) -> bool {
    let Ok(mut stream) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let _ = stream.shutdown(Shutdown::Write);
    let mut response = Vec::new();
    let _ = stream.take(64 * 1024).read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    text.contains("\"health\":\"true\"")
}
