//! Slow and many clients against evercert's servers, and hooks that flood their output.
//!
//! The clients are the test itself (a slowloris is just sockets that never finish their
//! request); the servers are the real `evercert run` / `evercert renew` processes, with the
//! usual soft limit of 1,024 open files put on them with prlimit(2) after they start. CPU
//! use is read from /proc/PID/stat, descriptors from /proc/PID/fd, memory from
//! /proc/PID/status; the figures are printed (`--nocapture`) and kept in docs/reliability.md.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Resource, Rlimit};

use crate::support::certs::{self, KeyType};
use crate::support::faultproxy::{Fault, FaultProxy};
use crate::support::pebble::unused_loopback_port;
use crate::support::process::{Capture, Running};
use crate::support::setup::{CertSpec, Challenge, Setup};
use crate::support::wait_for;

/// How many half-sent requests: more than the 1,024 descriptors the server may open.
const FLOOD: usize = 1_100;
/// The file limit put on the server process, the usual default soft limit.
const SERVER_FILE_LIMIT: u64 = 1_024;
/// USER_HZ, the unit of utime/stime in /proc/PID/stat (100 on every Linux architecture).
const CLOCK_TICKS: f64 = 100.0;

/// A running evercert process printing (stdout and stderr) to a file, with the usual file
/// limit; killed if the test ends early.
fn start_server(setup: &Setup, args: &[&str]) -> Running {
    let log_path = setup.path().join(format!("{}.log", args.join("-")));
    let mut command = setup.command(args);
    command.env("EVERCERT_LOG", "info");
    let server = Running::capture(command, Capture::File(log_path));
    // Before it opens anything worth counting: the limit most servers run with.
    rustix::process::prlimit(
        Some(server.pid()),
        Resource::Nofile,
        Rlimit {
            current: Some(SERVER_FILE_LIMIT),
            maximum: Some(SERVER_FILE_LIMIT),
        },
    )
    .expect("prlimit on the evercert child");
    server
}

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: Pid) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero())).unwrap();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after ") ".
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / CLOCK_TICKS
}

fn open_files(pid: Pid) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", pid.as_raw_nonzero()))
        .map(Iterator::count)
        .unwrap_or(0)
}

/// Lets this test process open the flood's sockets, whatever its own soft limit.
fn allow_many_files() {
    let limit = rustix::process::getrlimit(Resource::Nofile);
    let wanted = 4 * FLOOD as u64;
    if limit.current.is_some_and(|current| current < wanted) {
        rustix::process::setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(wanted),
                maximum: Some(limit.maximum.map_or(wanted, |max| max.max(wanted))),
            },
        )
        .expect("raise the test's own RLIMIT_NOFILE (run as root, or raise it by hand)");
    }
}

/// The start of an HTTP request, never finished.
const HALF_HTTP_REQUEST: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Wait: ";
/// A TLS record header announcing a 512-byte handshake message that never comes.
const HALF_CLIENT_HELLO: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00];

/// Opens `count` connections to `port`, each sending the start of a request and no more.
fn half_sent_requests(port: u16, count: usize) -> Vec<TcpStream> {
    half_sent(port, count, HALF_HTTP_REQUEST)
}

fn half_sent(port: u16, count: usize, start: &[u8]) -> Vec<TcpStream> {
    (0..count)
        .filter_map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
            let _ = stream.write_all(start);
            Some(stream)
        })
        .collect()
}

/// GET with a read deadline; None when nothing (complete) came back in time.
fn http_get(port: u16, path: &str, deadline: Duration) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(deadline)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(body).filter(|body| body.starts_with("HTTP/1."))
}

/// Writes a 90-day certificate for `shop` with `days` left at its configured paths.
fn put_shop(setup: &Setup, days: i64) {
    let (not_before, not_after) = certs::days_left(days);
    let leaf = certs::leaf(
        &["shop.example.test"],
        not_before,
        not_after,
        KeyType::EcdsaP256,
    );
    std::fs::create_dir_all(setup.cert_path("shop").parent().unwrap()).unwrap();
    leaf.write_fullchain(&setup.cert_path("shop"));
    leaf.write_key(&setup.key_path("shop"));
}

#[test]
fn metrics_answers_1100_half_sent_requests_under_a_1024_file_limit() {
    allow_many_files();
    let mut setup = Setup::new();
    let port = unused_loopback_port();
    setup.tail = format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n");
    setup.write_config(&[CertSpec::new("shop")]);
    // Far from due: the agent has no network work of its own during the test.
    put_shop(&setup, 80);
    let agent = start_server(&setup, &["run"]);
    let pid = agent.pid();
    wait_for(Duration::from_secs(30), "/metrics to answer", || {
        http_get(port, "/metrics", Duration::from_secs(5)).is_some_and(|r| r.contains(" 200 "))
    });
    let baseline = open_files(pid);

    let flood_started = Instant::now();
    let idle = half_sent_requests(port, FLOOD);
    assert_eq!(
        idle.len(),
        FLOOD,
        "the kernel refused some of the test's connections"
    );
    let opened_in = flood_started.elapsed();

    // Idle clients must not make the agent spin: measure CPU over a few seconds.
    let window = Duration::from_secs(4);
    let cpu_before = cpu_seconds(pid);
    std::thread::sleep(window);
    let cpu_share = (cpu_seconds(pid) - cpu_before) / window.as_secs_f64();
    let files_under_flood = open_files(pid);

    let asked = Instant::now();
    let answer = http_get(port, "/metrics", Duration::from_secs(20));
    let answered_in = asked.elapsed();
    eprintln!(
        "figures: {FLOOD} half-sent requests opened in {opened_in:?}; agent CPU {:.1}% of a core \
         over {window:?}; {files_under_flood} open files (baseline {baseline}); /metrics \
         answered in {answered_in:?}",
        cpu_share * 100.0
    );
    let answer = answer.unwrap_or_else(|| {
        panic!(
            "/metrics did not answer while {FLOOD} clients sat idle; agent log:\n{}",
            agent.log()
        )
    });
    assert!(answer.contains(" 200 "), "{answer}");
    assert!(
        answer.contains("evercert_certificate_state{name=\"shop\""),
        "{answer}"
    );
    // A spinning accept loop takes a whole core; idle clients cost next to nothing. Generous,
    // for a loaded 2-core machine: the measured figure is in docs/reliability.md.
    assert!(
        cpu_share < 0.5,
        "the agent used {:.0}% of a core with idle clients; log:\n{}",
        cpu_share * 100.0,
        agent.log()
    );
    assert!(
        files_under_flood < SERVER_FILE_LIMIT as usize - 100,
        "{files_under_flood} files open under the flood: the connection cap does not hold"
    );

    // The header timeout (10 s) cuts whoever is still idle: descriptors come back.
    wait_for(
        Duration::from_secs(40),
        "the idle clients' descriptors to be released",
        || open_files(pid) <= baseline + 4,
    );
    // And the clients see their connections closed.
    let mut closed = 0;
    for mut stream in idle {
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 256];
        if matches!(stream.read(&mut buf), Ok(0) | Err(_)) {
            closed += 1;
        }
    }
    assert_eq!(closed, FLOOD, "some idle clients are still connected");

    // A reload in the middle of a new flood works: it needs descriptors (the configuration,
    // the certificates, the metrics socket again).
    let idle = half_sent_requests(port, FLOOD);
    assert_eq!(idle.len(), FLOOD);
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
    wait_for(Duration::from_secs(30), "the reload to finish", || {
        agent.log().contains("configuration reloaded")
            || agent.log().contains("new configuration is invalid")
    });
    wait_for(Duration::from_secs(30), "/metrics after the reload", || {
        http_get(port, "/metrics", Duration::from_secs(5)).is_some_and(|r| r.contains(" 200 "))
    });
    assert!(
        !agent.log().contains("Too many open files"),
        "{}",
        agent.log()
    );
    assert!(
        agent.log().contains("configuration reloaded"),
        "{}",
        agent.log()
    );
}

/// The built-in http-01 responder answers Pebble's validation while the test keeps opening
/// half-sent requests on its port (up to 1,100), with `renew` under the 1,024-file limit.
/// The fault proxy (a stand-in: Pebble cannot delay) holds the "challenge ready" request for
/// 6 s, so the flood is in place before Pebble validates.
#[test]
fn http01_responder_validates_under_a_flood_of_idle_clients() {
    validates_under_a_flood(&Challenge::Listen);
}

/// The same for the tls-alpn-01 responder, flooded with half-sent ClientHellos.
#[test]
fn tls_alpn01_responder_validates_under_a_flood_of_idle_clients() {
    validates_under_a_flood(&Challenge::TlsAlpn);
}

fn validates_under_a_flood(challenge: &Challenge) {
    allow_many_files();
    let mut setup = Setup::new();
    let proxy = FaultProxy::start(&setup.pebble);
    proxy.set_fault_on("/chalZ/", Fault::Delay(Duration::from_secs(6)));
    setup.directory_override = Some(proxy.directory_url());
    let (port, start) = match challenge {
        Challenge::TlsAlpn => (setup.pebble.tls_port(), HALF_CLIENT_HELLO),
        _ => (setup.pebble.http_port(), HALF_HTTP_REQUEST),
    };
    setup.write_config(&[CertSpec::new("shop").challenge(challenge.clone())]);
    let renew = start_server(&setup, &["renew"]);
    let pid = renew.pid();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooding = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut idle = Vec::new();
            let mut peak_files = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if idle.len() < FLOOD {
                    idle.extend(half_sent(port, 50, start));
                    peak_files = peak_files.max(open_files(pid));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            (idle.len(), peak_files)
        })
    };
    let started = Instant::now();
    let mut renew = renew;
    let status = loop {
        if let Some(status) = renew.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "renew did not finish under the flood; log:\n{}",
            renew.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (opened, peak_files) = flooding.join().unwrap();
    eprintln!(
        "figures: renew ({challenge:?}) took {:?} with {opened} idle clients on the responder's port; peak {peak_files} open files",
        started.elapsed()
    );
    assert_eq!(status.code(), Some(0), "{}", renew.log());
    // Beyond the responder's cap of 256: idle clients had to be closed to make room.
    assert!(
        opened >= 300,
        "the flood reached only {opened} connections: the responder was not flooded; \
         proxy saw:\n{}",
        proxy.describe()
    );
    assert!(
        peak_files < SERVER_FILE_LIMIT as usize - 100,
        "{peak_files} files open under the flood: the connection cap does not hold"
    );
    assert!(Path::new(&setup.cert_path("shop")).exists());
}

/// Peak resident memory of `pid` so far (VmHWM), in bytes; None once it has exited.
fn peak_rss(pid: Pid) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.as_raw_nonzero())).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Pipes among `pid`'s open files: what hook readers hold.
fn open_pipes(pid: Pid) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", pid.as_raw_nonzero()))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| std::fs::read_link(entry.path()).ok())
                .filter(|target| target.to_string_lossy().starts_with("pipe:"))
                .count()
        })
        .unwrap_or(0)
}

/// A reload hook that prints 1.5 GB and then fails: `renew`'s memory stays bounded and the
/// message carries the end of the output (the line an operator needs).
#[test]
fn a_reload_hook_printing_1_5_gb_keeps_memory_bounded_and_reports_its_tail() {
    let setup = Setup::new();
    let marker = setup.path().join("flooded-once");
    // Only the first reload floods and fails; the one after the rollback succeeds.
    let hook = format!(
        "if [ -e {m} ]; then exit 0; fi; touch {m}; yes | head -c 1500000000; \
         echo 'nginx: [emerg] cannot load certificate (the real error)' >&2; exit 1",
        m = marker.display()
    );
    setup.write_config(&[CertSpec::new("shop")
        .reload(&hook)
        .extra("reload_timeout = \"5m\"")]);
    let renew = start_server(&setup, &["renew"]);
    let pid = renew.pid();
    let started = Instant::now();
    let mut peak = 0;
    let mut renew = renew;
    let status = loop {
        if let Some(rss) = peak_rss(pid) {
            peak = peak.max(rss);
        }
        if let Some(status) = renew.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "renew did not finish; log:\n{}",
            renew.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = renew.log();
    eprintln!(
        "figures: a reload hook printing 1.5 GB: renew took {:?}, peak RSS {:.1} MiB",
        started.elapsed(),
        peak as f64 / (1024.0 * 1024.0)
    );
    assert!(marker.exists(), "the flooding hook never ran:\n{log}");
    assert_ne!(status.code(), Some(0), "{log}");
    assert!(
        log.contains("cannot load certificate (the real error)"),
        "the message lacks the end of the hook's output:\n{log}"
    );
    // A debug build of evercert needs some tens of MiB; reading the whole output would be
    // 1.5 GB.
    assert!(
        peak < 150 * 1024 * 1024,
        "renew peaked at {} MiB while the hook printed 1.5 GB",
        peak / (1024 * 1024)
    );
}

/// An agent whose reload hook leaves a background process writing to its stdout: the
/// renewal finishes, the agent stops reading (its pipes go back to the count before the
/// renewal, the writer gets SIGPIPE) and its memory does not grow.
#[test]
fn a_background_writer_left_by_a_hook_is_cut_off_from_the_agent() {
    let setup = Setup::new();
    let writer_pid = setup.path().join("writer.pid");
    let hook = format!(
        "sh -c 'echo $$ > \"$1.tmp\"; mv \"$1.tmp\" \"$1\"; exec yes' writer {f} &",
        f = writer_pid.display()
    );
    setup.write_config(&[CertSpec::new("shop").reload(&hook)]);
    put_shop(&setup, 80);
    let agent = start_server(&setup, &["run"]);
    let pid = agent.pid();
    wait_for(Duration::from_secs(30), "the agent's first scan", || {
        agent.log().contains("starting")
    });
    std::thread::sleep(Duration::from_secs(2));
    let pipes_before = open_pipes(pid);

    // Now the certificate is due: the agent notices, renews, and runs the hook.
    put_shop(&setup, 5);
    let started = Instant::now();
    wait_for(
        Duration::from_secs(60),
        "the hook's background writer",
        || std::fs::read_to_string(&writer_pid).is_ok_and(|pid| !pid.trim().is_empty()),
    );
    let writer: i32 = std::fs::read_to_string(&writer_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let writer_alive = || {
        std::fs::read_to_string(format!("/proc/{writer}/stat"))
            .is_ok_and(|stat| !stat.contains(") Z "))
    };
    let cut_off = Instant::now();
    let deadline = cut_off + Duration::from_secs(15);
    while (writer_alive() || open_pipes(pid) > pipes_before) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let cut_off_in = cut_off.elapsed();
    let writer_survived = writer_alive();
    if writer_survived {
        let _ = rustix::process::kill_process(
            Pid::from_raw(writer).unwrap(),
            rustix::process::Signal::KILL,
        );
    }
    let pipes_after = open_pipes(pid);
    std::thread::sleep(Duration::from_secs(2));
    let rss = peak_rss(pid).unwrap_or(0);
    eprintln!(
        "figures: hook with a background `yes` on its stdout: writer cut off {cut_off_in:?} \
         after it started ({:?} after the certificate became due); agent peak RSS {:.1} MiB",
        started.elapsed(),
        rss as f64 / (1024.0 * 1024.0)
    );
    assert!(
        !writer_survived,
        "the background writer was still being read 15 s later; log:\n{}",
        agent.log()
    );
    assert_eq!(
        pipes_after,
        pipes_before,
        "pipes still open in the agent; log:\n{}",
        agent.log()
    );
    assert!(
        rss < 150 * 1024 * 1024,
        "agent peaked at {} MiB",
        rss / (1024 * 1024)
    );
    wait_for(
        Duration::from_secs(30),
        "the renewal to be reported",
        || agent.log().contains("renewed") || agent.log().contains("reloaded"),
    );
}

/// evercert marks itself non-dumpable at start (no core file can hold a private key, no
/// other process of its user can ptrace it). Observable from outside: the kernel then makes
/// the files in /proc/PID owned by root instead of the process's user, so the agent runs
/// here as `nobody`.
#[test]
fn the_agent_is_not_dumpable() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::os::unix::process::CommandExt;
    const NOBODY: u32 = 65534;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = dir.join("state");
    std::fs::create_dir(&state).unwrap();
    rustix::fs::chown(
        &state,
        Some(rustix::fs::Uid::from_raw(NOBODY)),
        Some(rustix::fs::Gid::from_raw(NOBODY)),
    )
    .unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let config = dir.join("evercert.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\n\n[acme]\ndirectory = \"https://127.0.0.1:9/dir\"\n\
             contact = [\"mailto:ops@example.test\"]\n",
            state.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_evercert"));
    command
        .current_dir(dir)
        .env_remove("EVERCERT_CONFIG")
        .env("EVERCERT_LOG", "info")
        .arg("-c")
        .arg(&config)
        .arg("run")
        .uid(NOBODY)
        .gid(NOBODY);
    let server = Running::capture(command, Capture::File(dir.join("run.log")));
    wait_for(Duration::from_secs(30), "the agent to start", || {
        server.log().contains("starting")
    });
    let owner = std::fs::metadata(format!("/proc/{}/status", server.child.id()))
        .unwrap()
        .uid();
    assert_eq!(
        owner,
        0,
        "/proc/PID of an agent running as uid {NOBODY} belongs to uid {owner}: it is dumpable; log:\n{}",
        server.log()
    );
}
