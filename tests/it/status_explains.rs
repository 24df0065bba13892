//! `status` answers "why?" (runbook step 2): per certificate the last attempt and its result,
//! the next attempt and who makes it, the links `cert_path` resolves through, whether an agent
//! runs for the state_dir and since when, and a last line counting what needs attention.
//! `status --json` carries the same fields. Real Pebble, real agent, real files.

use std::fs;
use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::agent::{Running, plant, serial_of, wait_for};
use crate::support::setup::{CertSpec, Setup};

fn status_json(setup: &Setup) -> Vec<Value> {
    let run = setup.run(&["status", "--json"]);
    assert_eq!(run.code, 0, "{run}");
    serde_json::from_str(&run.stdout).unwrap_or_else(|err| panic!("{err}: {run}"))
}

fn entry<'a>(entries: &'a [Value], name: &str) -> &'a Value {
    entries
        .iter()
        .find(|entry| entry["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {entries:#?}"))
}

#[test]
fn status_explains_attempts_the_agent_the_links_and_what_needs_attention() {
    let setup = Setup::new();
    setup.write_config(&[CertSpec::new("shop"), CertSpec::new("blog")]);
    plant(&setup, "shop", 80);
    plant(&setup, "blog", 80);
    let renewed = setup.run(&["renew", "--force", "blog"]);
    assert_eq!(renewed.code, 0, "{renewed}");
    // shop's attempt fails: the CA cannot be reached.
    let good = fs::read_to_string(setup.config_path()).unwrap();
    let dead = good.replace(&setup.pebble.directory_url(), "https://127.0.0.1:1/dir");
    assert_ne!(dead, good);
    fs::write(setup.config_path(), dead).unwrap();
    let failed = setup.run(&["renew", "--force", "shop"]);
    assert_eq!(failed.code, 1, "{failed}");
    fs::write(setup.config_path(), &good).unwrap();

    let entries = status_json(&setup);
    let shop = entry(&entries, "shop");
    assert_eq!(shop["last_attempt"]["result"], "failure", "{shop:#}");
    assert_eq!(shop["last_attempt"]["step"], "account", "{shop:#}");
    assert_eq!(shop["last_attempt"]["failures"], 1, "{shop:#}");
    assert!(
        shop["last_attempt"]["error"]
            .as_str()
            .is_some_and(|error| error.contains("127.0.0.1:1")),
        "{shop:#}"
    );
    let explanation = shop["next_attempt"]["explanation"].as_str().unwrap();
    assert!(
        explanation.contains("no agent runs for this state_dir"),
        "{shop:#}"
    );
    assert_eq!(shop["next_attempt"]["reason"], shop["renew_reason"]);
    // Never installed by evercert: its planted files are the normal starting point.
    assert_eq!(shop["layout"]["health"], "unmanaged", "{shop:#}");
    let blog = entry(&entries, "blog");
    assert_eq!(blog["last_attempt"]["result"], "success", "{blog:#}");
    assert_eq!(
        blog["last_attempt"]["serial"].as_str(),
        serial_of(&setup.cert_path("blog")).as_deref(),
        "{blog:#}"
    );
    assert_eq!(blog["layout"]["health"], "ok", "{blog:#}");
    assert!(blog["layout"]["live_version"].is_string(), "{blog:#}");
    assert_eq!(blog["agent"]["running"], false, "{blog:#}");

    let table = setup.run(&["status"]);
    assert_eq!(table.code, 0, "{table}");
    for expected in [
        "shop: last attempt ",
        ": failed at account: ",
        "blog: last attempt ",
        ": renewed, serial ",
        "shop: next attempt ",
        "agent: not running for this state_dir",
        "summary: 2 certificates, 1 needs attention: shop (renewal failing (1 failure))",
    ] {
        assert!(table.stdout.contains(expected), "{expected:?} in\n{table}");
    }
    assert!(
        table
            .stdout
            .trim_end()
            .ends_with("shop (renewal failing (1 failure))"),
        "the summary is not the last line:\n{table}"
    );

    // With the agent running: its pid and since when, in the table and the JSON.
    let agent = Running::start(&setup);
    let started = OffsetDateTime::now_utc();
    wait_for(Duration::from_secs(30), "the agent's first scan", || {
        agent.log().contains("; next: ")
    });
    let entries = status_json(&setup);
    let blog = entry(&entries, "blog");
    assert_eq!(blog["agent"]["running"], true, "{blog:#}");
    assert_eq!(blog["agent"]["pid"], agent.child.id(), "{blog:#}");
    let since = OffsetDateTime::parse(blog["agent"]["since"].as_str().unwrap(), &Rfc3339).unwrap();
    assert!(
        (since - started).abs() < time::Duration::seconds(30),
        "{since} vs {started}"
    );
    let table = setup.run(&["status"]);
    assert!(
        table
            .stdout
            .contains(&format!("agent: running (pid {}) since ", agent.child.id())),
        "{table}"
    );
    let (code, _) = agent.stop();
    assert_eq!(code, 0);

    // A mistyped rollback with no agent to repair it: named along the chain, an error, and
    // counted in the summary.
    let live = setup.state_dir().join("live");
    std::os::unix::fs::symlink(
        "../archive/blog/20261130T000000Z-typo",
        live.join("blog.new"),
    )
    .unwrap();
    fs::rename(live.join("blog.new"), live.join("blog")).unwrap();
    let entries = status_json(&setup);
    let blog = entry(&entries, "blog");
    assert_eq!(blog["state"], "error", "{blog:#}");
    assert_eq!(blog["layout"]["health"], "broken", "{blog:#}");
    let error = blog["error"].as_str().unwrap();
    assert!(
        error.starts_with(
            "cert_path → live/blog → archive/blog/20261130T000000Z-typo: missing; start the agent"
        ),
        "{error}"
    );
    let table = setup.run(&["status"]);
    assert!(
        table.stdout.contains("2 need attention: ") && table.stdout.contains("blog (error)"),
        "{table}"
    );
    // `check` (the monitoring view of the same configuration) calls it critical.
    let check = setup.run(&["check"]);
    assert_eq!(check.code, 2, "{check}");
}
