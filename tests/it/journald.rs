//! Under journald (`JOURNAL_STREAM` set) every line on standard error carries its syslog
//! priority as an sd-daemon `<N>` prefix (sd-daemon(3)), so `journalctl -p err` finds the
//! errors; no colour codes and no timestamp of our own (the journal has one).

use std::time::Duration;

use crate::agent::{Running, wait_for};
use crate::support::setup::{CertSpec, Setup};

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
    command.env("JOURNAL_STREAM", "8:12345");
    let agent = Running::spawn(command);
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
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_evercert"))
        .env("JOURNAL_STREAM", "8:12345")
        .env_remove("EVERCERT_CONFIG")
        .arg("-c")
        .arg(&config)
        .arg("run")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
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
    let mut command = setup.command(&["renew", "no-such-certificate"]);
    command.env("JOURNAL_STREAM", "8:12345");
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no-such-certificate"), "{stderr}");
    assert_journal_lines(&stderr);
    for line in stderr.lines().filter(|line| !line.is_empty()) {
        assert!(line.starts_with("<3>"), "{line:?}\n{stderr}");
    }
}
