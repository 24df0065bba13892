//! The Prometheus alert rules in docs/monitoring.md, proved with Prometheus' own `promtool`
//! (Debian `prometheus`): the rules block is taken from the document as an operator would
//! copy it, `promtool check rules` accepts it, and `promtool test rules` runs series for each
//! alert — expiring (soon, very soon, scaled for a 6-day certificate), expired (also while
//! the agent is down), unreadable, renewal failing, verify failed, agent down, no agent at
//! all, and a stuck loop — checking which alerts fire, when, and what they say.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

const INSTANCE: &str = "web1:9725";
const DAY: i64 = 86_400;
const LIFETIME_90D: i64 = 90 * DAY;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The one ```yaml block of docs/monitoring.md that is a rule file (starts with `groups:`).
fn rules_from_the_docs() -> String {
    let text = std::fs::read_to_string(root().join("docs/monitoring.md")).unwrap();
    let blocks: Vec<&str> = text
        .split("```yaml\n")
        .skip(1)
        .filter_map(|rest| rest.split("\n```").next())
        .filter(|block| block.starts_with("groups:"))
        .collect();
    assert_eq!(
        blocks.len(),
        1,
        "docs/monitoring.md should have exactly one rule file block"
    );
    format!("{}\n", blocks[0])
}

fn promtool(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("promtool")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|err| {
            panic!(
                "cannot run promtool ({err}): install Debian's prometheus (scripts/ensure-deps.sh)"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// A series as a scrape of the agent on `INSTANCE` stores it.
fn series(metric: &str, labels: &[(&str, &str)], values: &str) -> Value {
    let mut all = format!("job=\"evercert\",instance=\"{INSTANCE}\"");
    for (key, value) in labels {
        all.push_str(&format!(",{key}=\"{value}\""));
    }
    json!({ "series": format!("{metric}{{{all}}}"), "values": values })
}

/// The validity of one certificate: `not_before` and `not_after` (seconds from the test's
/// start, when `time()` is 0), each as `samples` (promtool's expanding notation).
fn validity(name: &str, not_before: i64, not_after: i64, samples: &str) -> [Value; 2] {
    let path = format!("/etc/tls/{name}.pem");
    let labels = [("name", name), ("path", path.as_str())];
    [
        series(
            "evercert_certificate_not_before_seconds",
            &labels,
            &format!("{not_before}{samples}"),
        ),
        series(
            "evercert_certificate_not_after_seconds",
            &labels,
            &format!("{not_after}{samples}"),
        ),
    ]
}

/// One alert as `promtool test rules` expects it: labels and the rendered annotations.
fn alert(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Value {
    let mut exp_labels = json!({ "job": "evercert", "instance": INSTANCE });
    for (key, value) in labels {
        exp_labels[*key] = json!(value);
    }
    let exp_annotations: serde_json::Map<String, Value> = annotations
        .iter()
        .map(|(key, value)| ((*key).to_owned(), json!(value)))
        .collect();
    json!({ "exp_labels": exp_labels, "exp_annotations": exp_annotations })
}

fn expect(eval_time: &str, alertname: &str, alerts: Vec<Value>) -> Value {
    json!({ "eval_time": eval_time, "alertname": alertname, "exp_alerts": Value::Array(alerts) })
}

fn soon(name: &str, left: &str) -> Value {
    alert(
        &[
            ("name", name),
            ("path", &format!("/etc/tls/{name}.pem")),
            ("severity", "warning"),
        ],
        &[
            (
                "summary",
                &format!("Certificate {name} on {INSTANCE} expires in {left}"),
            ),
            (
                "description",
                &format!(
                    "/etc/tls/{name}.pem on {INSTANCE} expires in {left} and has not been renewed. On the host: `evercert status`, then `evercert renew {name}` (see docs/alerts.md)."
                ),
            ),
        ],
    )
}

fn very_soon(name: &str, left: &str) -> Value {
    alert(
        &[
            ("name", name),
            ("path", &format!("/etc/tls/{name}.pem")),
            ("severity", "critical"),
        ],
        &[
            (
                "summary",
                &format!("Certificate {name} on {INSTANCE} expires in {left}"),
            ),
            (
                "description",
                &format!(
                    "/etc/tls/{name}.pem on {INSTANCE} expires in {left}. Renew it now: `evercert renew {name}` on the host; docs/alerts.md."
                ),
            ),
        ],
    )
}

fn expired(name: &str, at: &str) -> Value {
    alert(
        &[
            ("name", name),
            ("path", &format!("/etc/tls/{name}.pem")),
            ("severity", "critical"),
        ],
        &[
            (
                "summary",
                &format!("Certificate {name} on {INSTANCE} has EXPIRED"),
            ),
            (
                "description",
                &format!(
                    "/etc/tls/{name}.pem on {INSTANCE} expired at {at}. Clients fail the TLS handshake: this looks like an outage, not like an attack. Confirm with `evercert check <host>:443`, then `evercert renew --force {name}`."
                ),
            ),
        ],
    )
}

fn agent_down() -> Value {
    alert(
        &[("severity", "warning")],
        &[
            (
                "summary",
                &format!("evercert on {INSTANCE} is not answering"),
            ),
            (
                "description",
                &format!(
                    "Nothing renews certificates on {INSTANCE} while it is down. `systemctl status evercert`, `journalctl -u evercert -e`."
                ),
            ),
        ],
    )
}

/// Certificates by the time they have left, 30 minutes into the test.
fn expiry_test() -> Value {
    let mut input = Vec::new();
    // shop: 90 days, 60 left. blog: 10 left (soon: under a sixth, 14 days). api: 2 left (very
    // soon: under a thirtieth, 3 days). old: expired a day ago. edge: a 6-day certificate
    // with 12 hours left: soon (a sixth is 1 day) but not very soon (a thirtieth is 4.8 h).
    for (name, left, lifetime) in [
        ("shop", 60 * DAY, LIFETIME_90D),
        ("blog", 10 * DAY, LIFETIME_90D),
        ("api", 2 * DAY, LIFETIME_90D),
        ("old", -DAY, LIFETIME_90D),
        ("edge", DAY / 2, 6 * DAY),
    ] {
        input.extend(validity(name, left - lifetime, left, "x40"));
    }
    json!({
        "name": "expiry",
        "interval": "1m",
        "input_series": input,
        "alert_rule_test": [
            // `for: 15m`: nothing yet after 10 minutes.
            expect("10m", "EvercertCertificateExpiresSoon", vec![]),
            expect("30m", "EvercertCertificateExpiresSoon", vec![
                soon("api", "1d 23h 30m 0s"),
                soon("blog", "9d 23h 30m 0s"),
                soon("edge", "11h 30m 0s"),
            ]),
            expect("30m", "EvercertCertificateExpiresVerySoon", vec![
                very_soon("api", "1d 23h 30m 0s"),
            ]),
            expect("30m", "EvercertCertificateExpired", vec![
                expired("old", "1969-12-31 00:00:00 +0000 UTC"),
            ]),
        ],
    })
}

/// The agent stops answering at 11 minutes; its certificate expires at 20 minutes. The plain
/// expiry rules lose the series (stale), the expired rule still fires, and so does agent down.
fn down_while_expiring_test() -> Value {
    let mut input = validity("shop", 20 * 60 - LIFETIME_90D, 20 * 60, "x10 stale").to_vec();
    input.push(series("up", &[], "1x10 0x50"));
    json!({
        "name": "agent down while a certificate expires",
        "interval": "1m",
        "input_series": input,
        "alert_rule_test": [
            expect("30m", "EvercertCertificateExpired", vec![
                expired("shop", "1970-01-01 00:20:00 +0000 UTC"),
            ]),
            expect("30m", "EvercertCertificateExpiresVerySoon", vec![]),
            // `for: 10m` from the first failed scrape at 11 minutes.
            expect("20m", "EvercertAgentDown", vec![]),
            expect("30m", "EvercertAgentDown", vec![agent_down()]),
        ],
    })
}

/// What the agent judges: an unreadable file, renewals failing, a failed verification.
fn agent_judgement_test() -> Value {
    let broken = [("name", "broken"), ("path", "/etc/tls/broken.pem")];
    let state = |state: &str, values: &str| {
        let mut labels = broken.to_vec();
        labels.push(("state", state));
        series("evercert_certificate_state", &labels, values)
    };
    let renewals = |name: &str, result: &str, values: &str| {
        series(
            "evercert_renewals_total",
            &[("name", name), ("result", result)],
            values,
        )
    };
    let input = vec![
        state("error", "1x40"),
        state("ok", "0x40"),
        // shop fails from minute 2 on; blog failed once and then succeeded.
        renewals("shop", "failure", "0 0 1x38"),
        renewals("shop", "success", "0x40"),
        renewals("blog", "failure", "0 1x39"),
        renewals("blog", "success", "0 0 0 1x37"),
        series("evercert_verify_ok", &[("name", "shop")], "0x40"),
        series("evercert_verify_ok", &[("name", "blog")], "1x40"),
    ];
    json!({
        "name": "what the agent judges",
        "interval": "1m",
        "input_series": input,
        "alert_rule_test": [
            expect("10m", "EvercertCertificateUnreadable", vec![]),
            expect("30m", "EvercertCertificateUnreadable", vec![alert(
                &[("name", "broken"), ("path", "/etc/tls/broken.pem"), ("state", "error"), ("severity", "warning")],
                &[
                    ("summary", &format!("Certificate broken on {INSTANCE} cannot be read")),
                    ("description", &format!("evercert cannot read or parse /etc/tls/broken.pem (or reach the endpoint). `evercert status` on {INSTANCE} prints the reason.")),
                ],
            )]),
            expect("30m", "EvercertRenewalFailing", vec![alert(
                &[("name", "shop"), ("result", "failure"), ("severity", "warning")],
                &[
                    ("summary", &format!("Renewal of shop on {INSTANCE} keeps failing")),
                    ("description", "The agent retries with backoff; the journal says why (`journalctl -u evercert | grep shop`). The certificate still works: this is the time to fix it, before the expiry alerts."),
                ],
            )]),
            expect("30m", "EvercertVerifyFailed", vec![alert(
                &[("name", "shop"), ("severity", "warning")],
                &[
                    ("summary", &format!("{INSTANCE} did not serve the renewed shop")),
                    ("description", "After the reload the server still served the old certificate, so evercert put the previous version back. Check the reload command and that the server's ssl_certificate points at the configured cert_path."),
                ],
            )]),
        ],
    })
}

/// No evercert job at all (a scrape configuration removed): only `absent()` can see it.
fn no_agent_test() -> Value {
    json!({
        "name": "no agent scraped",
        "interval": "1m",
        "input_series": [{ "series": "up{job=\"node\",instance=\"web1:9100\"}", "values": "1x40" }],
        "alert_rule_test": [
            expect("20m", "EvercertMetricsAbsent", vec![]),
            expect("40m", "EvercertMetricsAbsent", vec![json!({
                "exp_labels": { "job": "evercert", "severity": "warning" },
                "exp_annotations": { "summary": "Prometheus scrapes no evercert agent at all" },
            })]),
        ],
    })
}

/// The agent answers scrapes, but its loop last scanned at the start: alerted after 12 hours.
fn stuck_loop_test() -> Value {
    json!({
        "name": "stuck loop",
        "interval": "1m",
        "input_series": [
            series("up", &[], "1x800"),
            series("evercert_last_scan_timestamp_seconds", &[], "0x800"),
        ],
        "alert_rule_test": [
            expect("11h", "EvercertNoRecentScan", vec![]),
            expect("13h", "EvercertNoRecentScan", vec![alert(
                &[("severity", "warning")],
                &[
                    ("summary", &format!("evercert on {INSTANCE} has not looked at its certificates for 13h 0m 0s")),
                    ("description", "The agent answers scrapes but its main loop is stuck (it scans at least hourly). `systemctl restart evercert` and report the journal."),
                ],
            )]),
        ],
    })
}

#[test]
fn the_documented_alert_rules_pass_promtool_check_and_unit_tests() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("evercert.yml"), rules_from_the_docs()).unwrap();
    let checked = promtool(dir.path(), &["check", "rules", "evercert.yml"]);
    assert!(checked.contains("SUCCESS: 9 rules found"), "{checked}");

    // JSON is YAML: promtool reads it as its test file.
    let tests = json!({
        "rule_files": ["evercert.yml"],
        "evaluation_interval": "1m",
        "tests": [
            expiry_test(),
            down_while_expiring_test(),
            agent_judgement_test(),
            no_agent_test(),
            stuck_loop_test(),
        ],
    });
    std::fs::write(
        dir.path().join("tests.yml"),
        serde_json::to_string_pretty(&tests).unwrap(),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let tested = promtool(dir.path(), &["test", "rules", "tests.yml"]);
    eprintln!(
        "promtool test rules: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert!(tested.contains("SUCCESS"), "{tested}");
}
