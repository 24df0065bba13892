//! Under journald every line on standard error carries its syslog priority as an sd-daemon
//! `<N>` prefix (sd-daemon(3)), so `journalctl -p err` finds the errors; no colour codes and
//! no timestamp of our own (the journal has one).
//!
//! "Under journald" means what systemd.exec(5) says: `JOURNAL_STREAM` names the device and
//! inode of the stream connected to the journal, and only that stream gets the prefixes. The
//! tests give the child pipes of their own and set `JOURNAL_STREAM` to the fstat of one of
//! them, as systemd would; a value naming another pipe is what a unit's shell pipeline or
//! redirection (`evercert renew | tee`) leaves, and there a prefix would be literal text.

use std::io::{PipeReader, PipeWriter, Read};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::agent::{Running, wait_for};
use crate::support::setup::{CertSpec, Setup};

/// `DEVICE:INODE` of an open file, the way systemd writes `JOURNAL_STREAM`.
fn stream_id(file: impl AsFd) -> String {
    let stat = rustix::fs::fstat(file).unwrap();
    format!("{}:{}", stat.st_dev, stat.st_ino)
}

/// A pipe, and the `JOURNAL_STREAM` value that names it.
fn journal_pipe() -> (PipeReader, PipeWriter, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    let id = stream_id(&writer);
    (reader, writer, id)
}

/// Which of the child's streams `JOURNAL_STREAM` names.
#[derive(Debug, Clone, Copy)]
enum Journal {
    Stdout,
    Stderr,
    /// A pipe the child does not have: a unit whose output the shell redirected.
    Elsewhere,
}

/// Runs `command` with standard output and standard error on pipes of the test's own and
/// `JOURNAL_STREAM` naming one of them (or neither); its exit code, stdout and stderr.
fn run_with_journal(mut command: Command, journal: Journal) -> (Option<i32>, String, String) {
    let (mut stdout, stdout_writer, stdout_id) = journal_pipe();
    let (mut stderr, stderr_writer, stderr_id) = journal_pipe();
    // Kept open until the child is done, so no other pipe can get its inode meanwhile.
    let (_other, _other_writer, other_id) = journal_pipe();
    let id = match journal {
        Journal::Stdout => stdout_id,
        Journal::Stderr => stderr_id,
        Journal::Elsewhere => other_id,
    };
    let mut child = command
        .env("JOURNAL_STREAM", id)
        .stdin(Stdio::null())
        .stdout(stdout_writer)
        .stderr(stderr_writer)
        .spawn()
        .unwrap();
    // The command holds the write ends: without dropping it the reads never end.
    drop(command);
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).unwrap();
        text
    });
    let mut out_text = String::new();
    stdout.read_to_string(&mut out_text).unwrap();
    let err_text = err_reader.join().unwrap();
    let status = child.wait().unwrap();
    (status.code(), out_text, err_text)
}

/// Whether any line starts with an sd-daemon `<N>` prefix.
fn has_priority_prefix(text: &str) -> bool {
    text.lines().any(|line| {
        line.strip_prefix('<')
            .and_then(|rest| rest.split_once('>'))
            .is_some_and(|(n, _)| n.len() == 1 && n.chars().all(|c| c.is_ascii_digit()))
    })
}

/// Every non-empty line starts with `<N>`; none has an escape sequence or a leading date.
fn assert_journal_lines(log: &str) {
    assert!(!log.contains('\x1b'), "colour codes in the journal:\n{log}");
    for line in log.lines().filter(|line| !line.is_empty()) {
        let priority = line.strip_prefix('<').and_then(|rest| rest.split_once('>'));
        let Some((n, rest)) = priority else {
            panic!("line without a priority prefix: {line:?}\n{log}");
        };
        assert!(
            matches!(n, "3" | "4" | "6" | "7"),
            "unexpected priority {n} in {line:?}"
        );
        assert!(
            !rest.starts_with("20"),
            "a second timestamp in {line:?}\n{log}"
        );
    }
}

#[test]
fn agent_log_lines_carry_journald_priorities_and_no_colour_or_time() {
    let setup = Setup::new();
    setup.write_config(&[CertSpec::new("shop")]);
    let mut command = setup.command(&["run"]);
    let (reader, writer, id) = journal_pipe();
    command.env("JOURNAL_STREAM", id);
    let agent = Running::spawn_with_stderr(command, (reader, writer));
    wait_for(Duration::from_secs(20), "the start-up line", || {
        agent.log().contains("starting:")
    });

    // An invalid configuration on SIGHUP is an error, on every line of its message.
    let good = std::fs::read_to_string(setup.config_path()).unwrap();
    std::fs::write(setup.config_path(), format!("{good}\nbogus_key = 1\n")).unwrap();
    agent.signal(rustix::process::Signal::HUP);
    wait_for(Duration::from_secs(10), "the invalid-config report", || {
        agent.log().contains("unknown key `bogus_key`")
    });
    let log = agent.log();
    assert_journal_lines(&log);
    let starting = log.lines().find(|line| line.contains("starting:")).unwrap();
    assert!(starting.starts_with("<6>INFO evercert"), "{starting}");
    let invalid = log
        .lines()
        .find(|line| line.contains("the new configuration is invalid"))
        .unwrap();
    assert!(invalid.starts_with("<3>ERROR "), "{invalid}\n{log}");
    let detail = log
        .lines()
        .find(|line| line.contains("unknown key `bogus_key`"))
        .unwrap();
    assert!(detail.starts_with("<3>"), "{detail}\n{log}");
    std::fs::write(setup.config_path(), good).unwrap();
    let (code, _) = agent.stop();
    assert_eq!(code, 0);
}

#[test]
fn a_refused_configuration_is_an_error_line_for_journald() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("evercert.toml");
    std::fs::write(&config, "bogus_key = 1\n").unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_evercert"));
    command
        .env_remove("EVERCERT_CONFIG")
        .arg("-c")
        .arg(&config)
        .arg("run");
    let (code, _, stderr) = run_with_journal(command, Journal::Stderr);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("bogus_key"), "{stderr}");
    assert_journal_lines(&stderr);
    for line in stderr.lines().filter(|line| !line.is_empty()) {
        assert!(line.starts_with("<3>"), "{line:?}\n{stderr}");
    }
}

#[test]
fn renew_of_an_unknown_name_is_an_error_line_for_journald() {
    let setup = Setup::new();
    setup.write_config(&[CertSpec::new("shop")]);
    let command = setup.command(&["renew", "no-such-certificate"]);
    let (code, _, stderr) = run_with_journal(command, Journal::Stderr);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("no-such-certificate"), "{stderr}");
    assert_journal_lines(&stderr);
    for line in stderr.lines().filter(|line| !line.is_empty()) {
        assert!(line.starts_with("<3>"), "{line:?}\n{stderr}");
    }

    // The same error with JOURNAL_STREAM naming another stream (`evercert renew 2>file`
    // under a unit): plain text.
    let command = setup.command(&["renew", "no-such-certificate"]);
    let (code, _, stderr) = run_with_journal(command, Journal::Elsewhere);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("no-such-certificate"), "{stderr}");
    assert!(!has_priority_prefix(&stderr), "{stderr}");
}

/// A directory with `evercert.toml`: one certificate, state_dir `state`, and a CA where
/// nothing listens (port 1 on loopback: connection refused at once; `renew` backs off twice,
/// about 4 s, then fails). No Pebble needed.
fn unreachable_ca() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("evercert.toml"),
        "state_dir = \"state\"\n[acme]\ndirectory = \"https://127.0.0.1:1/dir\"\n\
         [[certificate]]\nname = \"shop\"\ndomains = [\"shop.example.test\"]\n\
         cert_path = \"tls/fullchain.pem\"\nkey_path = \"tls/privkey.pem\"\n\
         [certificate.http01]\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("tls")).unwrap();
    dir
}

/// `evercert -c DIR/evercert.toml ARGS` in `dir`, logging warnings.
fn one_shot(dir: &std::path::Path, args: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_evercert"));
    command
        .current_dir(dir)
        .env_remove("EVERCERT_CONFIG")
        .env("EVERCERT_LOG", "warn")
        .arg("-c")
        .arg(dir.join("evercert.toml"))
        .args(args.split_whitespace());
    command
}

/// A state_dir that cannot be created stops `renew` and `account show` before they reach
/// the CA, and under journald that is an error line too (the timer's `renew` shows it
/// in `journalctl -p err`).
#[test]
fn an_unusable_state_dir_is_an_error_line_for_journald() {
    let dir = unreachable_ca();
    std::fs::write(dir.path().join("state"), "a file in the way\n").unwrap();
    for args in ["renew", "account show"] {
        let (code, _, stderr) = run_with_journal(one_shot(dir.path(), args), Journal::Stderr);
        assert_eq!(code, Some(1), "{args}: {stderr}");
        assert!(
            stderr.contains("cannot create state_dir"),
            "{args}: {stderr}"
        );
        assert_journal_lines(&stderr);
        for line in stderr.lines().filter(|line| !line.is_empty()) {
            assert!(line.starts_with("<3>error: "), "{args}: {line:?}\n{stderr}");
        }
    }
}

/// A one-shot `renew` that fails (nothing listens at the CA's address; no Pebble needed):
/// failed lines on standard output and retry warnings on standard error. Each stream gets the
/// `<N>` prefixes only when `JOURNAL_STREAM` names that stream, never the other one and never
/// a pipe the child does not have (`evercert renew | tee` inside a unit).
#[test]
fn renew_prefixes_only_the_stream_journal_stream_names() {
    let dir = unreachable_ca();
    let renew = || one_shot(dir.path(), "renew");
    // The three runs at once: each waits out the same back-off.
    let (on_stdout, on_stderr, elsewhere) = std::thread::scope(|scope| {
        let on_stdout = scope.spawn(|| run_with_journal(renew(), Journal::Stdout));
        let on_stderr = scope.spawn(|| run_with_journal(renew(), Journal::Stderr));
        let elsewhere = scope.spawn(|| run_with_journal(renew(), Journal::Elsewhere));
        (
            on_stdout.join().unwrap(),
            on_stderr.join().unwrap(),
            elsewhere.join().unwrap(),
        )
    });
    for (label, (code, stdout, stderr)) in [
        ("stdout", &on_stdout),
        ("stderr", &on_stderr),
        ("elsewhere", &elsewhere),
    ] {
        let all = format!("{label}: exit {code:?}\n--- stdout\n{stdout}--- stderr\n{stderr}");
        assert_eq!(*code, Some(1), "{all}");
        assert!(stdout.contains("shop: failed at"), "{all}");
        assert!(stdout.contains("summary: 0 renewed"), "{all}");
        assert!(stderr.contains("cannot reach the CA"), "{all}");
    }

    // JOURNAL_STREAM names standard output: failures there are errors; stderr is plain.
    let (_, stdout, stderr) = &on_stdout;
    let failed = stdout.lines().find(|line| line.contains("shop: failed at"));
    assert!(
        failed.is_some_and(|line| line.starts_with("<3>shop: failed at")),
        "{stdout}"
    );
    let summary = stdout.lines().find(|line| line.contains("summary:"));
    assert!(
        summary.is_some_and(|line| line.starts_with("<3>summary:")),
        "{stdout}"
    );
    assert!(
        !has_priority_prefix(stderr),
        "stderr is not the journal's:\n{stderr}"
    );

    // JOURNAL_STREAM names standard error: the log lines carry priorities; stdout is plain.
    let (_, stdout, stderr) = &on_stderr;
    assert_journal_lines(stderr);
    assert!(
        stderr
            .lines()
            .any(|line| line.starts_with("<4>WARN cannot reach the CA")),
        "{stderr}"
    );
    assert!(
        !has_priority_prefix(stdout),
        "stdout is not the journal's:\n{stdout}"
    );

    // JOURNAL_STREAM names a pipe the child does not have: no prefix anywhere.
    let (_, stdout, stderr) = &elsewhere;
    assert!(!has_priority_prefix(stdout), "{stdout}");
    assert!(!has_priority_prefix(stderr), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|line| line.starts_with("WARN cannot reach the CA")),
        "{stderr}"
    );
}
