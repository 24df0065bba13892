//! acme2certifier (PyPI, [`A2C_VERSION`]) on loopback: a second real ACME server, with ARI.
//!
//! Why a second server: Pebble is Let's Encrypt's test CA and behaves like Boulder; other CAs
//! differ in timing and in how they report errors (acme2certifier does not echo `replaces`,
//! leaves an order `pending` after a failed challenge, and offers ARI, which Debian's Pebble
//! 2.4 does not). The interop suite drives evercert against it.
//!
//! How it runs, as `shared/TESTBEDS.md` describes:
//! - a virtualenv with `acme2certifier==0.46` from PyPI, built once per machine under
//!   `/var/cache/evercert-tests/a2c-VERSION/` (about 27 s from nothing; a later run reuses
//!   it). A failed build fails the test, in CI and locally: never a silent skip;
//! - its openssl CA handler with a CA the test mints (root, intermediate, empty CRL);
//! - its WSGI application in Python's `wsgiref` with a threading server, over TLS with a
//!   `localhost`/`127.0.0.1` leaf of a root evercert trusts through `ca_bundle`;
//! - each instance gets its own loopback address, 127.53.X.Y. acme2certifier asks port 53 of
//!   the servers in `dns_server_list` and validates http-01 on port 80 of the address a name
//!   resolves to, so there `pebble-challtestsrv` serves DNS (every A query answered with that
//!   address, dns-01 TXT records set through its management API) and evercert's http-01
//!   responder listens on port 80. Parallel tests, and a BIND on 127.0.0.1:53, never
//!   collide; only a server listening on port 80 of every address (0.0.0.0:80) would.
//!   (`proxy_server_list` would avoid port 80, but 0.46 loads it and never passes it to the
//!   http-01 validator.)

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};
use std::{env, thread};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DnType,
    IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, SerialNumber,
};
use serde_json::json;
use tempfile::TempDir;
use time::OffsetDateTime;

use super::pebble::{
    ChildGuard, HttpsIdentity, challtestsrv_post, dns_over_udp, dns_response_contains,
    dns_txt_query, find_binary, log_tails, unused_loopback_port,
};
use super::setup::write_dns_hook;

/// The acme2certifier release the suite runs against (named in docs/reliability.md).
pub const A2C_VERSION: &str = "0.46";
/// Where the virtualenv is kept between runs.
const CACHE_ROOT: &str = "/var/cache/evercert-tests";
/// Building the virtualenv from nothing took ~27 s here; pip's downloads may be slower.
const VENV_BUILD_TIMEOUT: Duration = Duration::from_secs(600);
/// acme2certifier imports and reads its config in ~1-3 s on a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const IO_TIMEOUT: Duration = Duration::from_secs(10);

static VENV: OnceLock<PathBuf> = OnceLock::new();
static VENV_BUILD: Mutex<()> = Mutex::new(());
static INSTANCE: AtomicU32 = AtomicU32::new(0);

/// The virtualenv's `python`, building the virtualenv first if the cache has none.
pub fn venv_python() -> PathBuf {
    if let Some(python) = VENV.get() {
        return python.clone();
    }
    let _one_build = VENV_BUILD.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(python) = VENV.get() {
        return python.clone();
    }
    let python = ensure_venv();
    let _ = VENV.set(python.clone());
    python
}

fn cache_dir() -> PathBuf {
    let preferred = Path::new(CACHE_ROOT).join(format!("a2c-{A2C_VERSION}"));
    if fs::create_dir_all(&preferred).is_ok() {
        return preferred;
    }
    // Not root: keep it beside the build instead.
    let fallback = crate::target_tmpdir()
        .join("evercert-tests")
        .join(format!("a2c-{A2C_VERSION}"));
    fs::create_dir_all(&fallback).expect("create the acme2certifier cache directory");
    fallback
}

/// A complete virtualenv has `ready` beside it, written after a successful import check; a
/// half-built one (a killed run) is never used. Built in a temporary directory and renamed
/// into place, so two processes building at once both end with a complete one.
fn ensure_venv() -> PathBuf {
    let cache = cache_dir();
    let venv = cache.join("venv");
    let ready = cache.join("ready");
    let python = venv.join("bin").join("python");
    if ready.is_file() && python.exists() {
        return python;
    }
    let started = Instant::now();
    remove_abandoned_builds(&cache);
    let building = cache.join(format!("venv.building-{}", std::process::id()));
    let _ = fs::remove_dir_all(&building);
    let system_python = find_binary("python3").unwrap_or_else(|| {
        panic!("python3 not found: the interop suite needs CPython 3.11 with venv and pip to install acme2certifier {A2C_VERSION}")
    });
    run_bounded(
        Command::new(&system_python)
            .args(["-m", "venv"])
            .arg(&building),
        "python3 -m venv",
    );
    let pip = building.join("bin").join("python");
    run_bounded(
        Command::new(&pip)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--quiet",
            ])
            .arg(format!("acme2certifier=={A2C_VERSION}")),
        &format!("pip install acme2certifier=={A2C_VERSION}"),
    );
    // The WSGI module reads its configuration on import: check the handler and the version.
    run_bounded(
        Command::new(&pip).args([
            "-c",
            &format!(
                "import acme2certifier.cahandlers.openssl_ca_handler, acme2certifier.acme_srv.version as v; assert v.__version__ == '{A2C_VERSION}', v.__version__"
            ),
        ]),
        "importing acme2certifier",
    );
    let _ = fs::remove_dir_all(&venv);
    if fs::rename(&building, &venv).is_err() {
        // Another process finished first: use its virtualenv.
        let _ = fs::remove_dir_all(&building);
    }
    fs::write(&ready, format!("acme2certifier {A2C_VERSION}\n")).expect("mark the venv ready");
    eprintln!(
        "FIGURE acme2certifier {A2C_VERSION} virtualenv built from nothing in {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        venv.display()
    );
    python
}

/// Half-built virtualenvs of runs that were killed (older than any build takes).
fn remove_abandoned_builds(cache: &Path) {
    let Ok(entries) = fs::read_dir(cache) else {
        return;
    };
    for entry in entries.flatten() {
        let abandoned = entry
            .metadata()
            .and_then(|meta| meta.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age > 2 * VENV_BUILD_TIMEOUT);
        if abandoned
            && entry
                .file_name()
                .to_string_lossy()
                .starts_with("venv.building-")
        {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Runs a set-up command to the end within [`VENV_BUILD_TIMEOUT`], or fails the test with
/// its output. Under `CI=true` as everywhere: a missing interop server is a failure.
fn run_bounded(command: &mut Command, what: &str) {
    let log = tempfile::NamedTempFile::new().expect("temp file for set-up output");
    let out = log.reopen().expect("reopen set-up log");
    let err = out.try_clone().expect("clone set-up log");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let deadline = Instant::now() + VENV_BUILD_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for set-up command") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not finish within {VENV_BUILD_TIMEOUT:?}:\n{}",
                fs::read_to_string(log.path()).unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "{what} failed ({status}); the interop suite needs PyPI reachable (or a warm {CACHE_ROOT}) and CPython 3.11 with venv and pip (CI={}):\n{}",
        env::var("CI").unwrap_or_default(),
        fs::read_to_string(log.path()).unwrap_or_default()
    );
}

/// The WSGI server: the application in a threading `wsgiref` server over TLS. It binds port
/// 0 and writes the port it got to a file, so no port is picked and then lost to a race.
const SERVE_PY: &str = r#"
import ssl, sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIServer, WSGIRequestHandler, make_server
from acme2certifier.share.acme2certifier_wsgi import application

class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True

class Handler(WSGIRequestHandler):
    def address_string(self):
        return self.client_address[0]

port_file, cert, key = sys.argv[1], sys.argv[2], sys.argv[3]
srv = make_server("127.0.0.1", 0, application, server_class=Server, handler_class=Handler)
srv.base_environ["HTTPS"] = "on"
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
with open(port_file + ".tmp", "w") as f:
    f.write(str(srv.server_port))
import os
os.rename(port_file + ".tmp", port_file)
print("acme2certifier listening on 127.0.0.1:%d" % srv.server_port, flush=True)
srv.serve_forever()
"#;

/// A running acme2certifier and its DNS server. Dropping it kills and reaps both and removes
/// the temporary directory.
pub struct A2c {
    server: ChildGuard,
    challtestsrv: ChildGuard,
    port: u16,
    dns: Ipv4Addr,
    challtestsrv_management: u16,
    ca_bundle: PathBuf,
    issuing_root_pem: String,
    dir: TempDir,
}

impl A2c {
    /// Starts acme2certifier with ARI forced open (`renewal_force`), and waits until it
    /// serves its directory and its DNS answers.
    pub fn start() -> Self {
        let python = venv_python();
        super::pebble::require_pebble();
        let dir = tempfile::Builder::new()
            .prefix("evercert-a2c-")
            .tempdir()
            .expect("temp dir for acme2certifier");
        let path = dir.path();

        let tls = HttpsIdentity::mint();
        let ca_bundle = path.join("https-root.pem");
        fs::write(&ca_bundle, &tls.root_pem).expect("write the HTTPS root");
        fs::write(path.join("https.crt"), &tls.leaf_pem).expect("write the HTTPS leaf");
        fs::write(path.join("https.key"), &tls.key_pem).expect("write the HTTPS key");
        let issuing_root_pem = mint_issuing_ca(path);
        fs::create_dir_all(path.join("certs")).expect("create cert_save_path");

        let (challtestsrv, dns, challtestsrv_management) = start_challtestsrv(path);
        let config = format!(
            r#"[DEFAULT]
debug: False
dns_server_list: ["{dns}"]

[Nonce]
nonce_check_disable: False

[CAhandler]
handler_module: acme2certifier.cahandlers.openssl_ca_handler
issuing_ca_key: {dir}/int.key
issuing_ca_cert: {dir}/int.crt
issuing_ca_crl: {dir}/int.crl
issuing_ca_root_cert: {dir}/root.crt
ca_cert_chain_list: ["{dir}/root.crt"]
cert_save_path: {dir}/certs
cert_validity_days: 10

[DBhandler]
handler_module: acme2certifier.dbhandlers.wsgi_handler
dbfile: {dir}/acme_srv.db

[Renewalinfo]
renewal_force: True
retry_after_timeout: 60
"#,
            dir = path.display()
        );
        fs::write(path.join("acme_srv.cfg"), config).expect("write acme_srv.cfg");
        fs::write(path.join("serve.py"), SERVE_PY).expect("write serve.py");

        let port_file = path.join("port");
        let mut command = Command::new(&python);
        command
            .current_dir(path)
            .env("ACME_SRV_CONFIGFILE", path.join("acme_srv.cfg"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .arg(path.join("serve.py"))
            .arg(&port_file)
            .arg(path.join("https.crt"))
            .arg(path.join("https.key"));
        let mut server = ChildGuard::spawn("acme2certifier", &mut command, &path.join("a2c.log"));

        let started = Instant::now();
        let deadline = started + START_TIMEOUT;
        let port = loop {
            if let Some(port) = fs::read_to_string(&port_file)
                .ok()
                .and_then(|text| text.trim().parse::<u16>().ok())
            {
                break port;
            }
            if let Some(status) = server.exited() {
                panic!(
                    "acme2certifier exited at start ({status})\n{}",
                    log_tails(&[&server])
                );
            }
            assert!(
                Instant::now() < deadline,
                "acme2certifier did not listen within {START_TIMEOUT:?}\n{}",
                log_tails(&[&server])
            );
            thread::sleep(Duration::from_millis(20));
        };
        let a2c = Self {
            server,
            challtestsrv,
            port,
            dns,
            challtestsrv_management,
            ca_bundle,
            issuing_root_pem,
            dir,
        };
        a2c.wait_directory(deadline);
        eprintln!(
            "FIGURE acme2certifier {A2C_VERSION} serving in {:.2} s",
            started.elapsed().as_secs_f64()
        );
        a2c
    }

    fn wait_directory(&self, deadline: Instant) {
        let tls = std::sync::Arc::new(super::pebble::client_config(super::pebble::first_cert_der(
            &fs::read_to_string(&self.ca_bundle).expect("read the HTTPS root"),
        )));
        loop {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
            if let Ok(response) =
                super::pebble::http_request(Some(&tls), addr, "GET", "/directory", b"", IO_TIMEOUT)
                && response.status == 200
                && response.text().contains("newOrder")
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "acme2certifier did not serve its directory in time\n{}",
                self.logs()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `https://127.0.0.1:PORT/directory`.
    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/directory", self.port)
    }

    /// The root of acme2certifier's own TLS certificate, for `[acme] ca_bundle`.
    pub fn ca_bundle_path(&self) -> &Path {
        &self.ca_bundle
    }

    /// The root of the certificates it issues.
    pub fn issuing_root_pem(&self) -> &str {
        &self.issuing_root_pem
    }

    /// Where evercert's http-01 responder must listen: port 80 of the address every name
    /// resolves to for this instance.
    pub fn http01_listen(&self) -> String {
        format!("{}:80", self.dns)
    }

    /// A dns-01 hook (bash) that publishes TXT records in this instance's DNS.
    pub fn dns_hook(&self, dir: &Path) -> PathBuf {
        write_dns_hook(dir, &self.challtestsrv_management.to_string())
    }

    /// The last lines of both logs, for assertion messages.
    pub fn logs(&self) -> String {
        log_tails(&[&self.server, &self.challtestsrv])
    }

    /// The whole server log (requests and errors).
    pub fn log(&self) -> String {
        self.server.log_text()
    }

    /// Requests the server logged whose line contains `needle` (e.g. `"POST /acme/neworders"`).
    pub fn count_requests(&self, needle: &str) -> usize {
        self.log()
            .lines()
            .filter(|line| line.contains(needle))
            .count()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn dns_server(&self) -> Ipv4Addr {
        self.dns
    }
}

/// The issuing CA: `root.crt`, `int.crt`, `int.key` and an empty `int.crl` of the
/// intermediate (the openssl handler refuses to start without one). Returns the root PEM.
fn mint_issuing_ca(dir: &Path) -> String {
    let now = OffsetDateTime::now_utc();
    let ca = |cn: &str, path_len: u8| {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(365);
        params
    };
    let root_key = KeyPair::generate().expect("root key");
    let root = CertifiedIssuer::self_signed(ca("evercert a2c test root", 1), root_key)
        .expect("self-sign the root");
    let int_key = KeyPair::generate().expect("intermediate key");
    let int_key_pem = int_key.serialize_pem();
    let mut int_params = ca("evercert a2c test intermediate", 0);
    int_params.use_authority_key_identifier_extension = true;
    let intermediate =
        CertifiedIssuer::signed_by(int_params, int_key, &root).expect("sign the intermediate");
    let crl = CertificateRevocationListParams {
        this_update: now - time::Duration::hours(1),
        next_update: now + time::Duration::days(30),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&intermediate)
    .expect("sign the empty CRL");
    fs::write(dir.join("root.crt"), root.pem()).expect("write root.crt");
    fs::write(dir.join("int.crt"), intermediate.pem()).expect("write int.crt");
    fs::write(dir.join("int.key"), int_key_pem).expect("write int.key");
    fs::write(dir.join("int.crl"), crl.pem().expect("CRL PEM")).expect("write int.crl");
    root.pem()
}

/// pebble-challtestsrv on its own loopback address, port 53 (UDP and TCP), answering every
/// A query with that address (where port 80 is free for the http-01 responder). Returns the
/// guard, the address and the management port.
fn start_challtestsrv(dir: &Path) -> (ChildGuard, Ipv4Addr, u16) {
    let binary = find_binary("pebble-challtestsrv").expect("checked by require_pebble");
    let mut tried = Vec::new();
    for _ in 0..20 {
        let n = INSTANCE.fetch_add(1, Ordering::Relaxed);
        // 127.53.P.N: P from the process, N from the instance; .0 and .255 avoided.
        let pid_part = u8::try_from(std::process::id() % 250).expect("fits") + 1;
        let dns = Ipv4Addr::new(127, 53, pid_part, u8::try_from(n % 250).expect("fits") + 1);
        let free = UdpSocket::bind((dns, 53)).is_ok()
            && std::net::TcpListener::bind((dns, 53)).is_ok()
            && std::net::TcpListener::bind((dns, 80)).is_ok();
        if !free {
            tried.push(dns.to_string());
            continue;
        }
        let management = unused_loopback_port();
        let mut command = Command::new(&binary);
        command
            .args(["-dns01", &format!("{dns}:53")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{management}")])
            .args(["-defaultIPv4", &dns.to_string(), "-defaultIPv6", ""]);
        let mut guard = ChildGuard::spawn(
            "pebble-challtestsrv",
            &mut command,
            &dir.join(format!("challtestsrv-{n}.log")),
        );
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if dns_answers(dns, management) {
                return (guard, dns, management);
            }
            if guard.exited().is_some() || guard.log_text().contains("address already in use") {
                tried.push(format!("{dns}: {}", log_tails(&[&guard])));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "pebble-challtestsrv on {dns}:53 did not answer\n{}",
                log_tails(&[&guard])
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
    panic!(
        "no loopback address for pebble-challtestsrv's port 53: {}",
        tried.join("; ")
    );
}

/// A TXT record set through the management API is served over UDP at `dns:53`.
fn dns_answers(dns: Ipv4Addr, management: u16) -> bool {
    let management = SocketAddr::from((Ipv4Addr::LOCALHOST, management));
    if TcpStream::connect_timeout(&management, Duration::from_millis(200)).is_err() {
        return false;
    }
    let host = "_probe.evercert-a2c.test.";
    let value = format!("a2c-probe-{}", std::process::id());
    let set = challtestsrv_post(
        management,
        "/set-txt",
        &json!({ "host": host, "value": value }),
        Duration::from_millis(500),
    );
    if !set.is_ok_and(|response| response.status == 200) {
        return false;
    }
    let query = dns_txt_query(host, 0x5a5a);
    dns_over_udp(SocketAddr::from((dns, 53)), &query)
        .is_ok_and(|response| dns_response_contains(&response, 0x5a5a, value.as_bytes()))
}
