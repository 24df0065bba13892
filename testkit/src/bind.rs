//! A real BIND 9 (`named -g`, Debian `bind9`) on a free 127.0.0.1 port, authoritative for
//! test zones, with a TSIG key (`evercert.`, HMAC-SHA256) allowed to update the zones that
//! say so. Pebble's validator is pointed at it (`PebbleOptions::dns_server`), so the CA
//! resolves exactly what evercert wrote. Dropping it kills and reaps `named` and removes its
//! directory.
//!
//! Port 53 is never assumed free: each instance gets its own port, and the zones' NS
//! records name 127.0.0.1, which evercert asks on that port through `authoritative_port`.
//! Recursion is on for 127.0.0.1, as in the resolver a CA uses, so a CNAME into another of
//! its zones is followed; BIND is also authoritative for the root, so no query leaves.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use std::{env, thread};

use base64::Engine;
use tempfile::TempDir;

use super::pebble::free_udp_and_tcp_port;

/// The zone-file lines that make a [`Secondary`] an authoritative server of a zone.
pub const SECONDARY_NS_RECORDS: [&str; 2] = ["@ IN NS ns2", "ns2 IN AAAA ::1"];

/// The TSIG key's name in every instance.
pub const KEY_NAME: &str = "evercert.";
/// `named` loads a few zones in well under a second; this is for a loaded 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(20);
const START_ATTEMPTS: u32 = 5;

/// One zone BIND serves.
#[derive(Debug, Clone)]
pub struct Zone {
    pub name: String,
    /// Whether the TSIG key may update it (`allow-update { key "evercert."; }`); a zone
    /// without it answers updates with REFUSED.
    pub updatable: bool,
    /// Extra zone-file lines (`_acme-challenge.shop CNAME shop.delegated.test.`).
    pub records: Vec<String>,
}

impl Zone {
    pub fn updatable(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            updatable: true,
            records: Vec::new(),
        }
    }

    pub fn read_only(name: &str) -> Self {
        Self {
            updatable: false,
            ..Self::updatable(name)
        }
    }

    pub fn record(mut self, line: &str) -> Self {
        self.records.push(line.to_owned());
        self
    }
}

/// Panics with what to install unless `named` and `dig` are there: BIND tests never skip.
pub fn require_bind() {
    let missing: Vec<&str> = ["named", "dig", "nsupdate", "rndc"]
        .into_iter()
        .filter(|name| find_binary(name).is_none())
        .collect();
    if !missing.is_empty() {
        panic!(
            "{} not found: install Debian's bind9 and bind9-dnsutils (scripts/ensure-deps.sh does); \
             the dns-01 tests need a real BIND and are never skipped (CI={})",
            missing.join(", "),
            env::var("CI").unwrap_or_default()
        );
    }
}

fn find_binary(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A running `named`.
pub struct Bind {
    child: Child,
    port: u16,
    secret: String,
    dir: TempDir,
}

impl Bind {
    /// Starts BIND for `zones` and returns once it answers the first zone's SOA.
    pub fn start(zones: &[Zone]) -> Self {
        require_bind();
        let dir = tempfile::Builder::new()
            .prefix("evercert-bind-")
            .tempdir()
            .expect("temp dir for BIND");
        let secret = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
        let mut failures = Vec::new();
        for attempt in 1..=START_ATTEMPTS {
            let port = free_udp_and_tcp_port();
            write_config(dir.path(), port, &secret, zones);
            let log = dir.path().join(format!("named-{attempt}.log"));
            let mut child = spawn_named(dir.path(), &log);
            match wait_ready(&mut child, port, &zones[0].name, &log) {
                Ok(()) => {
                    return Self {
                        child,
                        port,
                        secret,
                        dir,
                    };
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    failures.push(why);
                }
            }
        }
        panic!("BIND did not start:\n{}", failures.join("\n"));
    }

    /// `127.0.0.1:PORT`, for `server`, `resolvers` and Pebble's `-dnsserver`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The base64 TSIG secret BIND knows for [`KEY_NAME`].
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Writes the key as `tsig-keygen` prints it, mode 0600, and returns the path.
    pub fn write_key_file(&self, path: &Path) -> PathBuf {
        write_private(
            path,
            &format!(
                "key \"{KEY_NAME}\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{}\";\n}};\n",
                self.secret
            ),
        );
        path.to_owned()
    }

    /// The TXT values BIND serves at `name` (authoritative answer, no recursion).
    pub fn txt(&self, name: &str) -> Vec<String> {
        self.dig(&["+norecurse", "TXT", name])
            .lines()
            .map(|line| line.trim().trim_matches('"').to_owned())
            .filter(|line| !line.is_empty())
            .collect()
    }

    fn dig(&self, args: &[&str]) -> String {
        dig(self.port, args)
    }

    /// Runs `nsupdate` with the TSIG key on `commands` (without `server` and `send`).
    pub fn nsupdate(&self, commands: &str) {
        let script = self.nsupdate_script(commands);
        let mut child = Command::new(find_binary("nsupdate").expect("checked"))
            .args(["-y", &format!("hmac-sha256:{KEY_NAME}:{}", self.secret)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nsupdate");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(script.as_bytes())
            .expect("write nsupdate script");
        let output = child.wait_with_output().expect("nsupdate");
        assert!(
            output.status.success(),
            "nsupdate failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The text to feed `nsupdate -y …`: `server`, the commands, `send`.
    pub fn nsupdate_script(&self, commands: &str) -> String {
        let mut script = format!("server 127.0.0.1 {}\n", self.port);
        script.push_str(commands.trim_end());
        script.push_str("\nsend\n");
        script
    }

    /// Everything named logged so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(entries) = fs::read_dir(self.dir.path()) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|ext| ext == "log") {
                    let _ = writeln!(text, "--- {}", path.display());
                    text.push_str(&fs::read_to_string(&path).unwrap_or_default());
                }
            }
        }
        text
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dig(port: u16, args: &[&str]) -> String {
    dig_at(IpAddr::V4(Ipv4Addr::LOCALHOST), port, args)
}

fn dig_at(ip: IpAddr, port: u16, args: &[&str]) -> String {
    let output = Command::new(find_binary("dig").expect("checked"))
        .args(["+short", "+time=1", "+tries=2", "-p"])
        .arg(port.to_string())
        .arg(format!("@{ip}"))
        .args(args)
        .output()
        .expect("run dig");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `named -g -c DIR/named.conf` in the foreground, its output in `log`.
fn spawn_named(dir: &Path, log: &Path) -> Child {
    let file = File::create(log).expect("create named log");
    Command::new(find_binary("named").expect("checked"))
        .args(["-g", "-c"])
        .arg(dir.join("named.conf"))
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("clone log handle"))
        .stderr(file)
        .spawn()
        .expect("spawn named")
}

fn wait_ready(child: &mut Child, port: u16, zone: &str, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let text = fs::read_to_string(log).unwrap_or_default();
        if text.contains("address in use") || text.contains("could not listen") {
            return Err(format!("port {port} taken:\n{text}"));
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("named exited ({status}):\n{text}"));
        }
        if text.contains("running") && dig(port, &["SOA", zone]).contains(zone) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("named not ready within {START_TIMEOUT:?}:\n{text}"));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A second `named`, secondary for one zone of a [`Bind`] primary, on `[::1]` and the
/// primary's port: evercert asks every authoritative server on one port, so the two need
/// distinct addresses, and BIND listens only on addresses an interface has (127.0.0.1 and
/// ::1 on `lo`; not the rest of 127/8). The zone names it `ns2 IN AAAA ::1`
/// ([`SECONDARY_NS_RECORDS`]); a machine without IPv6 on loopback fails the test at start.
/// It transfers the zone once at start and then lags on purpose: the primary sends no
/// NOTIFY and the SOA refresh (5 min at least in BIND) is longer than any test, so it
/// serves a new record only after [`Secondary::retransfer`] — a slow secondary on demand.
pub struct Secondary {
    child: Child,
    ip: IpAddr,
    port: u16,
    zone: String,
    dir: TempDir,
}

impl Secondary {
    /// Starts the secondary of `zone` and returns once
    /// it serves the zone's SOA.
    pub fn start(primary: &Bind, zone: &str) -> Self {
        let ip = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let dir = tempfile::Builder::new()
            .prefix("evercert-bind2-")
            .tempdir()
            .expect("temp dir for the secondary");
        let port = primary.port();
        let free = UdpSocket::bind((ip, port)).is_ok() && TcpListener::bind((ip, port)).is_ok();
        assert!(
            free,
            "[{ip}]:{port} (UDP and TCP) is not free for the secondary: is IPv6 on loopback off?"
        );
        let control = TcpListener::bind((ip, 0))
            .expect("control port for the secondary")
            .local_addr()
            .expect("local_addr")
            .port();
        let rndc_secret =
            base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
        let d = dir.path().display();
        let key =
            format!("key \"rndc-key\" {{ algorithm hmac-sha256; secret \"{rndc_secret}\"; }};\n");
        let conf = format!(
            "{key}options {{\n  directory \"{d}\";\n  listen-on {{ none; }};\n  listen-on-v6 port {port} {{ {ip}; }};\n  \
             pid-file \"{d}/named.pid\";\n  session-keyfile \"{d}/session.key\";\n  managed-keys-directory \"{d}\";\n  \
             recursion no;\n  dnssec-validation no;\n  notify no;\n}};\n\
             controls {{ inet {ip} port {control} allow {{ 127.0.0.1; ::1; }} keys {{ \"rndc-key\"; }}; }};\n\
             zone \"{zone}\" {{ type secondary; file \"{d}/{zone}.sec\"; primaries {{ 127.0.0.1 port {port}; }}; }};\n"
        );
        fs::write(dir.path().join("named.conf"), conf).expect("write secondary named.conf");
        fs::write(
            dir.path().join("rndc.conf"),
            format!("{key}options {{ default-key \"rndc-key\"; default-server {ip}; default-port {control}; }};\n"),
        )
        .expect("write rndc.conf");
        let log = dir.path().join("named.log");
        let mut child = spawn_named(dir.path(), &log);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let text = fs::read_to_string(&log).unwrap_or_default();
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the secondary named exited ({status}):\n{text}");
            }
            if text.contains("running")
                && dig_at(ip, port, &["+norecurse", "SOA", zone]).contains(zone)
            {
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the secondary did not serve {zone} within {START_TIMEOUT:?}:\n{text}");
            }
            thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            ip,
            port,
            zone: zone.to_owned(),
            dir,
        }
    }

    /// `ADDR:PORT`, for Pebble's `-dnsserver`: a CA that asks the lagging server.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, self.port))
    }

    /// The TXT values the secondary serves at `name`.
    pub fn txt(&self, name: &str) -> Vec<String> {
        dig_at(self.ip, self.port, &["+norecurse", "TXT", name])
            .lines()
            .map(|line| line.trim().trim_matches('"').to_owned())
            .filter(|line| !line.is_empty())
            .collect()
    }

    /// Catches up now: `rndc retransfer ZONE` (a full transfer from the primary).
    pub fn retransfer(&self) {
        let output = Command::new(find_binary("rndc").expect("rndc is in Debian's bind9"))
            .arg("-c")
            .arg(self.dir.path().join("rndc.conf"))
            .args(["retransfer", &self.zone])
            .output()
            .expect("run rndc");
        assert!(
            output.status.success(),
            "rndc retransfer {} failed: {}{}\n{}",
            self.zone,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
    }

    /// Everything the secondary logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }
}

impl Drop for Secondary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_private(path: &Path, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = fs::remove_file(path);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .expect("create key file");
    file.write_all(text.as_bytes()).expect("write key file");
}

fn write_config(dir: &Path, port: u16, secret: &str, zones: &[Zone]) {
    let d = dir.display();
    let mut conf = format!(
        "key \"{KEY_NAME}\" {{ algorithm hmac-sha256; secret \"{secret}\"; }};\n\
         options {{\n  directory \"{d}\";\n  listen-on port {port} {{ 127.0.0.1; }};\n  listen-on-v6 {{ none; }};\n  \
         pid-file \"{d}/named.pid\";\n  session-keyfile \"{d}/session.key\";\n  managed-keys-directory \"{d}\";\n  \
         recursion yes;\n  allow-recursion {{ 127.0.0.1; }};\n  dnssec-validation no;\n  notify no;\n  \
         allow-transfer {{ 127.0.0.0/8; }};\n}};\n\
         controls {{ }};\n"
    );
    // Recursion on, as for the resolver a CA uses (it follows a CNAME into another zone
    // BIND serves), but BIND is also the root: nothing ever leaves the machine.
    fs::write(
        dir.join("root.zone"),
        "$TTL 60\n. IN SOA ns1.root.test. hostmaster.root.test. 1 60 60 600 5\n. IN NS ns1.root.test.\nns1.root.test. IN A 127.0.0.1\n",
    )
    .expect("write root zone");
    let _ = writeln!(
        conf,
        "zone \".\" {{ type primary; file \"{}\"; }};",
        dir.join("root.zone").display()
    );
    for zone in zones {
        let file = dir.join(format!("{}.zone", zone.name));
        let _ = fs::remove_file(dir.join(format!("{}.zone.jnl", zone.name)));
        let mut text = format!(
            "$TTL 60\n$ORIGIN {name}.\n@ IN SOA ns1.{name}. hostmaster.{name}. 1 60 60 600 5\n@ IN NS ns1.{name}.\nns1 IN A 127.0.0.1\n",
            name = zone.name
        );
        for record in &zone.records {
            let _ = writeln!(text, "{record}");
        }
        fs::write(&file, text).expect("write zone file");
        let update = if zone.updatable {
            format!(" allow-update {{ key \"{KEY_NAME}\"; }};")
        } else {
            String::new()
        };
        let _ = writeln!(
            conf,
            "zone \"{}\" {{ type primary; file \"{}\";{update} }};",
            zone.name,
            file.display()
        );
    }
    fs::write(dir.join("named.conf"), conf).expect("write named.conf");
}
