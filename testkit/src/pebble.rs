//! A real Pebble ACME CA on loopback, one per test.
//!
//! [`Pebble::start`] mints a throwaway root and a `localhost` leaf for Pebble's own HTTPS
//! (Debian ships no `pebble.minica.pem`), picks free loopback ports, starts
//! `pebble-challtestsrv` (the validator's DNS server, and TXT records for dns-01) and `pebble`,
//! and returns once both really serve. Dropping the [`Pebble`] kills and reaps both processes
//! and removes its temp dir.
//!
//! Everything here blocks; in a `#[tokio::test]` start Pebble before driving async work.
//!
//! Facts about Debian's Pebble 2.4 this relies on:
//! - `pebble` exits when a listen port is taken; `pebble-challtestsrv` only logs
//!   "address already in use" for its DNS server and keeps running. Both are treated as
//!   "pick other ports and retry".
//! - The config honours `externalAccountMACKeys` (kid -> base64url HMAC key) and
//!   `certificateValidityPeriod` (seconds: notBefore = issuance time, notAfter =
//!   notBefore + period - 1 s), so short-lived certificates can come from Pebble itself.
//! - Pebble generates a new issuing root and intermediate on every start, served on its
//!   management port at `/roots/0` and `/intermediates/0`.
//! - The config honours `domainBlocklist` (newOrder for a listed name or a subdomain of one
//!   is refused with `rejectedIdentifier`).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use std::{env, thread};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tempfile::TempDir;
use time::OffsetDateTime;

const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// Bound on waiting for both processes to serve. They normally need ~0.3 s, but Pebble makes
/// its CA keys at start: with four tests starting Pebbles at once on a 2-core machine under a
/// load of ~17, six did not serve within 10 s. A bound that only matters when it fails.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts with fresh ports when another process grabbed one between picking and binding.
const START_ATTEMPTS: u32 = 5;
/// Timeout for each request once Pebble is up.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Short timeout for readiness probes, so a slow probe never stalls the polling loop.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Ports handed out by this process. Tests run on parallel threads; without this two
/// Pebbles could be given the same just-released port.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Distinguishes readiness-probe DNS records and query ids.
static PROBE_COUNTER: AtomicU32 = AtomicU32::new(0);

// ---------------------------------------------------------------------------------------------
// Availability

/// Whether both `pebble` and `pebble-challtestsrv` are installed.
pub fn pebble_available() -> bool {
    find_binary("pebble").is_some() && find_binary("pebble-challtestsrv").is_some()
}

/// Panics with an actionable message unless Pebble is installed. Pebble tests never skip
/// silently: a missing CA must fail the run, in CI and locally alike.
pub fn require_pebble() {
    if pebble_available() {
        return;
    }
    let missing: Vec<&str> = ["pebble", "pebble-challtestsrv"]
        .into_iter()
        .filter(|name| find_binary(name).is_none())
        .collect();
    let missing = missing.join(" and ");
    if env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!(
            "{missing} not found (CI={}): the CI image must install Debian's `pebble` package \
             (apt-get install -y pebble); Pebble tests are never skipped",
            env::var("CI").unwrap_or_default()
        );
    }
    panic!(
        "{missing} not found on PATH or in /usr/bin: install Debian's Pebble with \
         `sudo apt-get install -y pebble` (Pebble tests are never skipped)"
    );
}

pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

// ---------------------------------------------------------------------------------------------
// Options

/// How to configure one Pebble instance. Start from `PebbleOptions::default()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PebbleOptions {
    /// Percentage of good nonces Pebble rejects with `badNonce` (`PEBBLE_WFE_NONCEREJECT`).
    /// Default 5, Pebble's own default: clients must retry.
    pub nonce_reject_percent: u8,
    /// `PEBBLE_AUTHZREUSE`: percentage of orders that reuse a valid authorization.
    /// Default `Some(0)` (every order validates, so timings are not bimodal);
    /// `None` leaves Pebble's default of 50.
    pub authz_reuse: Option<u8>,
    /// `externalAccountBindingRequired`: new accounts must carry an EAB.
    pub eab_required: bool,
    /// EAB keys Pebble accepts: `(kid, HMAC key as base64url without padding)`.
    pub eab_keys: Vec<(String, String)>,
    /// `certificateValidityPeriod` in seconds; `None` keeps Pebble's ~5 years.
    pub cert_validity_secs: Option<u64>,
    /// Port Pebble's validator connects to for http-01; `None` picks a free one.
    pub http_port: Option<u16>,
    /// Port Pebble's validator connects to for tls-alpn-01; `None` picks a free one.
    pub tls_port: Option<u16>,
    /// `domainBlocklist`: names (and their subdomains) Pebble refuses with
    /// `rejectedIdentifier` at newOrder.
    pub domain_blocklist: Vec<String>,
    /// The DNS server Pebble's validator asks (`-dnsserver`); `None`: the
    /// pebble-challtestsrv started with it. A real BIND here makes the CA resolve exactly
    /// what evercert wrote (see [`super::bind`]).
    pub dns_server: Option<SocketAddr>,
}

impl Default for PebbleOptions {
    fn default() -> Self {
        Self {
            nonce_reject_percent: 5,
            authz_reuse: Some(0),
            eab_required: false,
            eab_keys: Vec::new(),
            cert_validity_secs: None,
            http_port: None,
            tls_port: None,
            domain_blocklist: Vec::new(),
            dns_server: None,
        }
    }
}

/// Every loopback port one Pebble instance uses (all on 127.0.0.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PebblePorts {
    /// ACME server (HTTPS): the directory is `https://127.0.0.1:{acme}/dir`.
    pub acme: u16,
    /// Pebble's management interface (HTTPS): `/roots/0`, `/intermediates/0`.
    pub management: u16,
    /// Where the validator connects for http-01. Nothing listens there until a test does.
    pub http: u16,
    /// Where the validator connects for tls-alpn-01. Nothing listens there until a test does.
    pub tls: u16,
    /// pebble-challtestsrv's DNS server (UDP and TCP).
    pub dns: u16,
    /// pebble-challtestsrv's management API (plain HTTP).
    pub challtestsrv_management: u16,
}

impl PebblePorts {
    /// All six ports.
    pub fn all(&self) -> [u16; 6] {
        [
            self.acme,
            self.management,
            self.http,
            self.tls,
            self.dns,
            self.challtestsrv_management,
        ]
    }

    fn pick(opts: &PebbleOptions) -> Self {
        Self {
            acme: free_tcp_port(),
            management: free_tcp_port(),
            http: opts
                .http_port
                .map_or_else(free_tcp_port_below_ephemeral, claim_fixed),
            tls: opts
                .tls_port
                .map_or_else(free_tcp_port_below_ephemeral, claim_fixed),
            dns: free_udp_and_tcp_port(),
            challtestsrv_management: free_tcp_port(),
        }
    }
}

fn claim(port: u16) -> bool {
    HANDED_OUT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(port)
}

/// A caller-chosen port: record it so no random pick hands it out as well.
fn claim_fixed(port: u16) -> u16 {
    claim(port);
    port
}

/// A port the kernel just had free for TCP on 127.0.0.1 and this process never handed out.
/// Ports are never released: the ephemeral range is large, and reuse would invite
/// TIME_WAIT surprises.
fn free_tcp_port() -> u16 {
    for _ in 0..1000 {
        let listener = TcpListener::bind((LOOPBACK, 0)).expect("bind 127.0.0.1:0 (TCP)");
        let port = listener.local_addr().expect("local_addr").port();
        if claim(port) {
            return port;
        }
    }
    panic!("no free TCP port on 127.0.0.1 after 1000 tries");
}

/// Where the kernel's own picks start (`bind` to port 0, the source port of an outgoing
/// connection): the first number of `ip_local_port_range`.
fn ephemeral_start() -> u16 {
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// Lowest port [`free_tcp_port_below_ephemeral`] picks: clear of well-known services.
const BELOW_EPHEMERAL_FLOOR: u16 = 10_000;

/// A free TCP port on 127.0.0.1 below the kernel's ephemeral range, for a port that stays
/// unbound between a test's uses: Pebble's http-01 and tls-alpn-01 ports, which evercert binds
/// only during an order. A port from the ephemeral range, free in between, could be taken by
/// any process meanwhile — the source port of an outgoing connection, or another test
/// process's `bind(0)` (two suites at once; this process's picks are kept apart by
/// `HANDED_OUT`, another's are not) — and the order's bind then fails with EADDRINUSE: for
/// the agent a failed attempt and 5 minutes of backoff. The kernel never picks a port below
/// the range by itself.
fn free_tcp_port_below_ephemeral() -> u16 {
    let start = ephemeral_start();
    if start <= BELOW_EPHEMERAL_FLOOR + 1000 {
        return free_tcp_port();
    }
    for _ in 0..1000 {
        let port = rand::random_range(BELOW_EPHEMERAL_FLOOR..start);
        if TcpListener::bind((LOOPBACK, port)).is_ok() && claim(port) {
            return port;
        }
    }
    free_tcp_port()
}

/// A loopback port nothing listens on and that no other helper of this process will hand
/// out (a "CA unreachable" directory URL, or a responder address the CA never connects to),
/// or that a test binds later or again (etcd members restarted on their ports, nginx): below
/// the ephemeral range, so that no other process is handed it meanwhile.
pub fn unused_loopback_port() -> u16 {
    free_tcp_port_below_ephemeral()
}

/// A listener on a free 127.0.0.1 port, recorded as handed out so that no Pebble started by a
/// parallel test is given the same port (for stand-in servers such as the fault proxy).
pub fn bind_loopback_listener() -> TcpListener {
    for _ in 0..1000 {
        let listener = TcpListener::bind((LOOPBACK, 0)).expect("bind 127.0.0.1:0 (TCP)");
        let port = listener.local_addr().expect("local_addr").port();
        // A port another helper handed out but whose user has not bound it yet: leave it.
        if claim(port) {
            return listener;
        }
    }
    panic!("no free TCP port on 127.0.0.1 after 1000 tries");
}

/// Like [`free_tcp_port`], but free for UDP too (the DNS server binds both).
pub fn free_udp_and_tcp_port() -> u16 {
    for _ in 0..1000 {
        let udp = UdpSocket::bind((LOOPBACK, 0)).expect("bind 127.0.0.1:0 (UDP)");
        let port = udp.local_addr().expect("local_addr").port();
        if TcpListener::bind((LOOPBACK, port)).is_ok() && claim(port) {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1 after 1000 tries");
}

// ---------------------------------------------------------------------------------------------
// The running instance

/// A running Pebble plus pebble-challtestsrv. Dropping it kills and reaps both and removes
/// the temp dir (fields drop in declaration order: children first, directory last).
pub struct Pebble {
    pebble: ChildGuard,
    challtestsrv: ChildGuard,
    ports: PebblePorts,
    options: PebbleOptions,
    tls: Arc<ClientConfig>,
    ca_bundle: PathBuf,
    /// The minted HTTPS root and its key, so stand-ins (a fault proxy) can get a leaf that
    /// evercert trusts through the same `ca_bundle`.
    https_root_pem: String,
    https_root_key_pem: String,
    dir: TempDir,
}

impl Pebble {
    /// Starts Pebble with [`PebbleOptions::default`].
    pub fn start() -> Self {
        Self::start_with(PebbleOptions::default())
    }

    /// Starts Pebble and waits until the ACME directory, the management interface and the
    /// challtestsrv DNS server all answer. Panics (with log tails) if that fails.
    pub fn start_with(options: PebbleOptions) -> Self {
        require_pebble();
        let dir = tempfile::Builder::new()
            .prefix("evercert-pebble-")
            .tempdir()
            .expect("create temp dir for Pebble");

        let identity = HttpsIdentity::mint();
        let ca_bundle = dir.path().join("pebble-https-root.pem");
        let cert_path = dir.path().join("localhost.pem");
        let key_path = dir.path().join("localhost.key");
        fs::write(&ca_bundle, &identity.root_pem).expect("write Pebble HTTPS root");
        fs::write(&cert_path, &identity.leaf_pem).expect("write Pebble HTTPS certificate");
        fs::write(&key_path, &identity.key_pem).expect("write Pebble HTTPS key");
        let tls = Arc::new(client_config(identity.root_der));

        let mut taken = Vec::new();
        for attempt in 1..=START_ATTEMPTS {
            let ports = PebblePorts::pick(&options);
            let config = pebble_config(&options, &ports, &cert_path, &key_path);
            match launch(dir.path(), attempt, &config, &options, &ports, &tls) {
                Ok((pebble, challtestsrv)) => {
                    return Self {
                        pebble,
                        challtestsrv,
                        ports,
                        options,
                        tls,
                        ca_bundle,
                        https_root_pem: identity.root_pem,
                        https_root_key_pem: identity.root_key_pem,
                        dir,
                    };
                }
                Err(LaunchError::PortTaken(why)) => taken.push(why),
                Err(LaunchError::Failed(why)) => panic!("Pebble did not start: {why}"),
            }
        }
        panic!(
            "Pebble did not start: a port was taken on each of {START_ATTEMPTS} attempts:\n{}",
            taken.join("\n")
        );
    }

    /// The ACME directory URL, `https://127.0.0.1:PORT/dir`.
    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.ports.acme)
    }

    /// PEM of the root the test minted for Pebble's own HTTPS (what evercert's `ca_bundle`
    /// must point at). Not the root of issued certificates: see [`Self::issuance_root_pem`].
    pub fn ca_bundle_path(&self) -> &Path {
        &self.ca_bundle
    }

    /// A fresh leaf for `localhost`, `127.0.0.1` and `::1` signed by the root of
    /// [`Self::ca_bundle_path`]: `(certificate PEM, key PEM)`. A server presenting it (a fault
    /// proxy in front of Pebble) is trusted by evercert exactly as Pebble is.
    pub fn mint_https_leaf(&self) -> (String, String) {
        let root_key = KeyPair::from_pem(&self.https_root_key_pem).expect("minted root key");
        let issuer = Issuer::from_ca_cert_pem(&self.https_root_pem, root_key).expect("minted root");
        let now = OffsetDateTime::now_utc();
        mint_loopback_leaf(
            &issuer,
            now - time::Duration::hours(1),
            now + time::Duration::days(7),
        )
    }

    /// A rustls client config trusting only [`Self::ca_bundle_path`], for async clients
    /// (e.g. hyper-rustls) in `#[tokio::test]`s.
    pub fn tls_client_config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.tls)
    }

    /// Port the validator connects to for http-01: responders listen on 127.0.0.1 there.
    pub fn http_port(&self) -> u16 {
        self.ports.http
    }

    /// Port the validator connects to for tls-alpn-01: responders listen on 127.0.0.1 there.
    pub fn tls_port(&self) -> u16 {
        self.ports.tls
    }

    /// Every port this instance uses.
    pub fn ports(&self) -> PebblePorts {
        self.ports
    }

    /// The options this instance was started with.
    pub fn options(&self) -> &PebbleOptions {
        &self.options
    }

    /// Pebble's management interface, `https://127.0.0.1:PORT`.
    pub fn management_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.ports.management)
    }

    /// pebble-challtestsrv's management API, `http://127.0.0.1:PORT` (`/set-txt`, ...).
    pub fn challtestsrv_management(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.challtestsrv_management)
    }

    /// PEM of Pebble's issuing root for this run (`/roots/0`): the trust anchor for
    /// certificates Pebble issues. New on every start.
    pub fn issuance_root_pem(&self) -> String {
        self.get_ok(&format!("{}/roots/0", self.management_url()))
    }

    /// PEM of Pebble's intermediate for this run (`/intermediates/0`).
    pub fn issuance_intermediate_pem(&self) -> String {
        self.get_ok(&format!("{}/intermediates/0", self.management_url()))
    }

    /// Adds a TXT value for `host` in the validator's DNS (challtestsrv keeps earlier values
    /// for the same host). A missing trailing dot is added: challtestsrv matches FQDNs.
    pub fn set_txt(&self, host: &str, value: &str) {
        let body = json!({ "host": fqdn(host), "value": value });
        self.challtestsrv_post("/set-txt", &body);
    }

    /// Removes all TXT values for `host`.
    pub fn clear_txt(&self, host: &str) {
        let body = json!({ "host": fqdn(host) });
        self.challtestsrv_post("/clear-txt", &body);
    }

    /// Blocking GET of a loopback URL with an explicit port (`http://` or `https://`,
    /// host `127.0.0.1`, `localhost` or `[::1]`); HTTPS trusts only the minted root.
    pub fn try_get(&self, url: &str) -> io::Result<HttpResponse> {
        let (tls, addr, path) = parse_loopback_url(url)?;
        let tls = tls.then_some(&self.tls);
        http_request(tls, addr, "GET", &path, b"", IO_TIMEOUT)
    }

    /// [`Self::try_get`], panicking on I/O or TLS errors (any status is returned).
    pub fn get(&self, url: &str) -> HttpResponse {
        self.try_get(url)
            .unwrap_or_else(|e| panic!("GET {url} failed: {e}\n{}", self.logs()))
    }

    /// Pebble's stdout and stderr so far.
    pub fn pebble_log(&self) -> String {
        self.pebble.log_text()
    }

    /// pebble-challtestsrv's stdout and stderr so far.
    pub fn challtestsrv_log(&self) -> String {
        self.challtestsrv.log_text()
    }

    /// The temp dir holding configs and logs; removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn logs(&self) -> String {
        log_tails(&[&self.pebble, &self.challtestsrv])
    }

    fn get_ok(&self, url: &str) -> String {
        let response = self.get(url);
        assert_eq!(
            response.status,
            200,
            "GET {url}: {}\n{}",
            response.text(),
            self.logs()
        );
        response.text()
    }

    fn challtestsrv_post(&self, path: &str, body: &Value) {
        let addr = SocketAddr::from((LOOPBACK, self.ports.challtestsrv_management));
        let response = challtestsrv_post(addr, path, body, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("POST {path} {body} failed: {e}\n{}", self.logs()));
        assert_eq!(
            response.status,
            200,
            "POST {path} {body}: {}\n{}",
            response.text(),
            self.logs()
        );
    }
}

fn fqdn(host: &str) -> String {
    if host.ends_with('.') {
        host.to_owned()
    } else {
        format!("{host}.")
    }
}

// ---------------------------------------------------------------------------------------------
// Starting the processes

enum LaunchError {
    /// Another process took one of the picked ports: retry with new ones.
    PortTaken(String),
    Failed(String),
}

fn pebble_config(opts: &PebbleOptions, ports: &PebblePorts, cert: &Path, key: &Path) -> Value {
    let mut pebble = json!({
        "listenAddress": format!("127.0.0.1:{}", ports.acme),
        "managementListenAddress": format!("127.0.0.1:{}", ports.management),
        "certificate": cert,
        "privateKey": key,
        "httpPort": ports.http,
        "tlsPort": ports.tls,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": opts.eab_required,
    });
    if !opts.eab_keys.is_empty() {
        let keys: serde_json::Map<String, Value> = opts
            .eab_keys
            .iter()
            .map(|(kid, key)| (kid.clone(), Value::from(key.as_str())))
            .collect();
        pebble["externalAccountMACKeys"] = Value::Object(keys);
    }
    if let Some(secs) = opts.cert_validity_secs {
        pebble["certificateValidityPeriod"] = Value::from(secs);
    }
    if !opts.domain_blocklist.is_empty() {
        pebble["domainBlocklist"] = Value::from(opts.domain_blocklist.clone());
    }
    json!({ "pebble": pebble })
}

fn launch(
    dir: &Path,
    attempt: u32,
    config: &Value,
    opts: &PebbleOptions,
    ports: &PebblePorts,
    tls: &Arc<ClientConfig>,
) -> Result<(ChildGuard, ChildGuard), LaunchError> {
    let config_path = dir.join(format!("pebble-config-{attempt}.json"));
    fs::write(&config_path, config.to_string()).expect("write Pebble config");
    let dns = format!("127.0.0.1:{}", ports.dns);

    let mut challtestsrv = Command::new(find_binary("pebble-challtestsrv").expect("checked"));
    challtestsrv
        .args(["-dns01", &dns])
        // Empty values disable the challenge listeners: evercert's own responders serve those.
        .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
        .args([
            "-management",
            &format!("127.0.0.1:{}", ports.challtestsrv_management),
        ])
        .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""]);
    let mut challtestsrv = ChildGuard::spawn(
        "pebble-challtestsrv",
        &mut challtestsrv,
        &dir.join(format!("challtestsrv-{attempt}.log")),
    );

    let mut pebble = Command::new(find_binary("pebble").expect("checked"));
    pebble.arg("-config").arg(&config_path).args([
        "-dnsserver",
        &opts
            .dns_server
            .map_or_else(|| dns.clone(), |server| server.to_string()),
    ]);
    // Only our settings: a stray PEBBLE_* in the developer's shell must not change behaviour.
    for (name, _) in env::vars_os() {
        if name.to_string_lossy().starts_with("PEBBLE_") {
            pebble.env_remove(name);
        }
    }
    pebble.env("PEBBLE_VA_NOSLEEP", "1").env(
        "PEBBLE_WFE_NONCEREJECT",
        opts.nonce_reject_percent.to_string(),
    );
    if let Some(percent) = opts.authz_reuse {
        pebble.env("PEBBLE_AUTHZREUSE", percent.to_string());
    }
    let mut pebble = ChildGuard::spawn(
        "pebble",
        &mut pebble,
        &dir.join(format!("pebble-{attempt}.log")),
    );

    wait_ready(&mut pebble, &mut challtestsrv, ports, tls)?;
    Ok((pebble, challtestsrv))
}

fn wait_ready(
    pebble: &mut ChildGuard,
    challtestsrv: &mut ChildGuard,
    ports: &PebblePorts,
    tls: &Arc<ClientConfig>,
) -> Result<(), LaunchError> {
    let deadline = Instant::now() + START_TIMEOUT;
    let (mut acme_ok, mut management_ok, mut dns_ok) = (false, false, false);
    loop {
        let mut exited = None;
        // Probes over TLS trusting only our minted root (and a DNS record we just set) prove
        // we reached our own processes, not whoever else might hold a port.
        if !dns_ok {
            dns_ok = probe_challtestsrv(ports);
        }
        if !acme_ok {
            acme_ok = probe_https(tls, ports.acme, "/dir");
        }
        if !management_ok {
            management_ok = probe_https(tls, ports.management, "/roots/0");
        }

        for child in [&mut *pebble, &mut *challtestsrv] {
            let log = child.log_text();
            if let Some(line) = log.lines().find(|l| l.contains("address already in use")) {
                return Err(LaunchError::PortTaken(format!("{}: {line}", child.name)));
            }
            if let Some(status) = child.exited() {
                exited = Some(format!("{} exited early ({status})", child.name));
                break;
            }
        }
        if let Some(what) = exited {
            let logs = log_tails(&[pebble, challtestsrv]);
            return Err(LaunchError::Failed(format!("{what}\n{logs}")));
        }
        if acme_ok && management_ok && dns_ok {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(LaunchError::Failed(format!(
                "not ready within {START_TIMEOUT:?} (ACME directory: {acme_ok}, \
                 management: {management_ok}, challtestsrv DNS: {dns_ok}; ports {ports:?})\n{}",
                log_tails(&[pebble, challtestsrv])
            )));
        }
        thread::sleep(POLL_INTERVAL);
    }
}

fn probe_https(tls: &Arc<ClientConfig>, port: u16, path: &str) -> bool {
    let addr = SocketAddr::from((LOOPBACK, port));
    http_request(Some(tls), addr, "GET", path, b"", PROBE_TIMEOUT).is_ok_and(|r| r.status == 200)
}

/// Sets a unique TXT record through the management API and reads it back over UDP and TCP
/// DNS: proves both listeners belong to this challtestsrv.
fn probe_challtestsrv(ports: &PebblePorts) -> bool {
    let n = PROBE_COUNTER.fetch_add(1, Ordering::Relaxed);
    let host = "_probe.evercert-harness.test.";
    let value = format!("probe-{}-{n}", std::process::id());
    let management = SocketAddr::from((LOOPBACK, ports.challtestsrv_management));
    let body = json!({ "host": host, "value": value });
    if !challtestsrv_post(management, "/set-txt", &body, PROBE_TIMEOUT)
        .is_ok_and(|r| r.status == 200)
    {
        return false;
    }
    let dns = SocketAddr::from((LOOPBACK, ports.dns));
    let id = u16::try_from(n % 0xffff).expect("fits");
    let query = dns_txt_query(host, id);
    let answered = |response: io::Result<Vec<u8>>| {
        response.is_ok_and(|r| dns_response_contains(&r, id, value.as_bytes()))
    };
    let ok = answered(dns_over_udp(dns, &query)) && answered(dns_over_tcp(dns, &query));
    let _ = challtestsrv_post(
        management,
        "/clear-txt",
        &json!({ "host": host }),
        PROBE_TIMEOUT,
    );
    ok
}

pub fn challtestsrv_post(
    addr: SocketAddr,
    path: &str,
    body: &Value,
    timeout: Duration,
) -> io::Result<HttpResponse> {
    http_request(
        None,
        addr,
        "POST",
        path,
        body.to_string().as_bytes(),
        timeout,
    )
}

// ---------------------------------------------------------------------------------------------
// Child processes

/// A child process writing stdout+stderr to a log file; killed and reaped on drop.
pub struct ChildGuard {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl ChildGuard {
    pub fn spawn(name: &'static str, command: &mut Command, log: &Path) -> Self {
        let file = File::create(log).expect("create log file");
        let stderr = file.try_clone().expect("clone log file handle");
        let child = command
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Self {
            name,
            child,
            log: log.to_owned(),
        }
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn log_text(&self) -> String {
        fs::read(&self.log)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // SIGKILL: nothing to flush, and a graceful stop would only cost time.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn log_tails(children: &[&ChildGuard]) -> String {
    const LINES: usize = 40;
    let mut out = String::new();
    for child in children {
        let text = child.log_text();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LINES)..];
        let _ = writeln!(
            out,
            "--- last {} lines of {} ({}) ---",
            tail.len(),
            child.name,
            child.log.display()
        );
        for line in tail {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Pebble's HTTPS identity

pub struct HttpsIdentity {
    pub root_pem: String,
    pub root_key_pem: String,
    pub root_der: CertificateDer<'static>,
    pub leaf_pem: String,
    pub key_pem: String,
}

impl HttpsIdentity {
    /// A fresh root and a leaf for `localhost`, `127.0.0.1` and `::1` (ECDSA P-256).
    pub fn mint() -> Self {
        let now = OffsetDateTime::now_utc();
        let not_before = now - time::Duration::hours(1);
        let not_after = now + time::Duration::days(7);

        let root_key = KeyPair::generate().expect("generate root key");
        let mut root = CertificateParams::default();
        root.distinguished_name
            .push(DnType::CommonName, "evercert test root for Pebble HTTPS");
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        root.not_before = not_before;
        root.not_after = not_after;
        let root_cert = root.self_signed(&root_key).expect("self-sign root");
        let root_key_pem = root_key.serialize_pem();
        let issuer = Issuer::new(root, root_key);
        let (leaf_pem, key_pem) = mint_loopback_leaf(&issuer, not_before, not_after);

        Self {
            root_pem: root_cert.pem(),
            root_key_pem,
            root_der: root_cert.der().clone(),
            leaf_pem,
            key_pem,
        }
    }
}

/// A leaf for `localhost`, `127.0.0.1` and `::1` (ECDSA P-256): `(certificate PEM, key PEM)`.
fn mint_loopback_leaf(
    issuer: &Issuer<'_, KeyPair>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> (String, String) {
    let leaf_key = KeyPair::generate().expect("generate leaf key");
    let mut leaf = CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])
    .expect("valid names");
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.use_authority_key_identifier_extension = true;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = not_before;
    leaf.not_after = not_after;
    let leaf_cert = leaf.signed_by(&leaf_key, issuer).expect("sign leaf");
    (leaf_cert.pem(), leaf_key.serialize_pem())
}

pub fn client_config(root: CertificateDer<'static>) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    roots
        .add(root)
        .expect("minted root is a valid trust anchor");
    // Explicit provider: feature unification could otherwise enable a second one.
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// Parses the first certificate of a PEM string (for tests inspecting `/roots/0` etc.).
pub fn first_cert_der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap_or_else(|e| panic!("no PEM certificate ({e:?}) in:\n{pem}"))
}

// ---------------------------------------------------------------------------------------------
// Minimal blocking HTTP/1.1 client (loopback only, one request per connection)

/// Status and body of a response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.text()))
    }
}

fn parse_loopback_url(url: &str) -> io::Result<(bool, SocketAddr, String)> {
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unsupported URL {url}"),
        )
    };
    let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(bad());
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let authority = match authority.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None => authority.to_owned(),
    };
    let addr: SocketAddr = authority.parse().map_err(|_| bad())?;
    if !addr.ip().is_loopback() {
        return Err(bad());
    }
    Ok((tls, addr, path.to_owned()))
}

pub fn http_request(
    tls: Option<&Arc<ClientConfig>>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> io::Result<HttpResponse> {
    let tcp = TcpStream::connect_timeout(&addr, timeout)?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;

    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: evercert-tests\r\n\
         Accept: */*\r\nConnection: close\r\n"
    );
    if method != "GET" {
        let _ = write!(
            request,
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
    }
    request.push_str("\r\n");
    let mut message = request.into_bytes();
    message.extend_from_slice(body);

    let mut raw = Vec::new();
    match tls {
        Some(config) => {
            let connection = ClientConnection::new(Arc::clone(config), ServerName::from(addr.ip()))
                .map_err(io::Error::other)?;
            exchange(&mut StreamOwned::new(connection, tcp), &message, &mut raw)?;
        }
        None => exchange(&mut &tcp, &message, &mut raw)?,
    }
    parse_response(&raw)
}

fn exchange(stream: &mut impl ReadWrite, message: &[u8], raw: &mut Vec<u8>) -> io::Result<()> {
    // One write for head and body: no small trailing segment for Nagle to hold back.
    stream.write_all(message)?;
    stream.flush()?;
    match stream.read_to_end(raw) {
        // A TLS peer closing without close_notify: the parser checks the body length.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(()),
        other => other.map(drop),
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_response(raw: &[u8]) -> io::Result<HttpResponse> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let head_end = find(raw, b"\r\n\r\n").ok_or_else(|| bad("incomplete HTTP response head"))?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| bad("non-UTF-8 head"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let (mut content_length, mut chunked) = (None, false);
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                content_length = Some(value.parse().map_err(|_| bad("bad Content-Length"))?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
    }
    let rest = &raw[head_end + 4..];
    let body = if chunked {
        decode_chunked(rest).ok_or_else(|| bad("truncated chunked body"))?
    } else if let Some(len) = content_length {
        rest.get(..len)
            .ok_or_else(|| bad("truncated body"))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse { status, body })
}

fn decode_chunked(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = find(data, b"\r\n")?;
        let size = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Minimal DNS, only for the readiness probe

pub fn dns_txt_query(name: &str, id: u16) -> Vec<u8> {
    let mut query = Vec::with_capacity(64);
    query.extend_from_slice(&id.to_be_bytes());
    // Standard query, recursion desired; one question, no other records.
    query.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        query.push(u8::try_from(label.len()).expect("DNS label under 64 bytes"));
        query.extend_from_slice(label.as_bytes());
    }
    // Root label, QTYPE TXT (16), QCLASS IN (1).
    query.extend_from_slice(&[0, 0, 16, 0, 1]);
    query
}

pub fn dns_response_contains(response: &[u8], id: u16, needle: &[u8]) -> bool {
    let is_response = response.get(2).is_some_and(|flags| flags & 0x80 != 0);
    response.len() > 12
        && response[..2] == id.to_be_bytes()
        && is_response
        && find(response, needle).is_some()
}

pub fn dns_over_udp(server: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
    let socket = UdpSocket::bind((LOOPBACK, 0))?;
    socket.connect(server)?;
    socket.set_read_timeout(Some(PROBE_TIMEOUT))?;
    socket.send(query)?;
    let mut buf = vec![0; 1500];
    let len = socket.recv(&mut buf)?;
    buf.truncate(len);
    Ok(buf)
}

fn dns_over_tcp(server: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&server, PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let len = u16::try_from(query.len()).expect("small query");
    let mut message = len.to_be_bytes().to_vec();
    message.extend_from_slice(query);
    stream.write_all(&message)?;
    let mut len = [0; 2];
    stream.read_exact(&mut len)?;
    let mut response = vec![0; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut response)?;
    Ok(response)
}
