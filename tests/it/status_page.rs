//! The status page in a real browser: the agent serves `/status` on its metrics listener
//! and `evercert status --html FILE` writes the same page; headless Chromium (Debian
//! `chromium`) loads it with no console errors and every certificate has its timeline. The
//! certificates cover each state (ok with the CA's ARI window, due with a failing renewal,
//! warning, critical for a 6-day certificate, expired, unreadable) and a path with HTML in
//! it. ARI comes from the stand-in (`support::ari`): Debian's Pebble 2.4 has none.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use time::Duration as TimeDuration;

use crate::agent::{Running, free_port, http_get, wait_for};
use crate::support::ari::AriServer;
use crate::support::certs::{self, KeyType};
use crate::support::setup::{CertSpec, Challenge, Setup, toml_string};

/// Runs headless Chromium on `url` with a fresh profile; returns the DOM it printed and its
/// log (where console messages appear as `:CONSOLE:` lines).
fn chromium(profile: &Path, url: &str, screenshot: &Path) -> (String, String) {
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--hide-scrollbars",
            "--window-size=1100,1500",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg("--dump-dom")
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| {
            panic!(
                "cannot run chromium ({err}): install Debian's chromium (scripts/ensure-deps.sh)"
            )
        });
    let (mut stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).unwrap();
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
        text
    });
    let started = Instant::now();
    // A browser that hangs must fail the test, not hold the suite.
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s on {url}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (out.join().unwrap(), err.join().unwrap())
}

fn console_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| line.contains(":CONSOLE"))
        .collect()
}

/// Each `<section class="certificate" …>…</section>` of a page, with its `data-name`.
fn sections(html: &str) -> Vec<(String, String)> {
    html.split("<section class=\"certificate\"")
        .skip(1)
        .map(|rest| {
            let body = rest.split("</section>").next().unwrap().to_owned();
            let name = body
                .split("data-name=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap()
                .to_owned();
            (name, body)
        })
        .collect()
}

fn monitored(dir: &Path, stem: &str, lifetime: TimeDuration, left: TimeDuration) -> PathBuf {
    let (not_before, not_after) = certs::validity(lifetime, left);
    let path = dir.join(format!("monitored/{stem}.pem"));
    certs::leaf(
        &[&format!(
            "{}.example.test",
            stem.replace(['<', '>', '&'], "")
        )],
        not_before,
        not_after,
        KeyType::EcdsaP256,
    )
    .write_fullchain(&path);
    path
}

#[test]
fn the_status_page_shows_every_certificate_in_a_real_browser() {
    let mut setup = Setup::new();
    let now = time::OffsetDateTime::now_utc();
    let ari = AriServer::start(
        &setup.pebble,
        setup.path(),
        now + TimeDuration::days(25),
        now + TimeDuration::days(27),
    );
    setup.directory_override = Some(ari.directory_url());
    setup.ca_bundle_override = Some(ari.ca_bundle().to_owned());
    let dir = setup.path().to_owned();
    let day = TimeDuration::days(1);
    let partner = monitored(&dir, "partner", day * 90, day * 20);
    let old = monitored(&dir, "old", day * 90, -day * 3);
    let edge = monitored(&dir, "edge", day * 6, TimeDuration::hours(12));
    let odd = monitored(&dir, "a&b<em>", day * 90, day * 70);
    let broken = certs::write_garbage(&dir.join("monitored/broken.pem"));
    let metrics_port = free_port();
    let mut tail = format!("[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n");
    for (name, path) in [
        ("partner", &partner),
        ("old", &old),
        ("edge", &edge),
        ("odd", &odd),
        ("broken", &broken),
    ] {
        tail.push_str(&format!(
            "\n[[monitor]]\nname = \"{name}\"\npath = {}\n",
            toml_string(path.to_str().unwrap())
        ));
    }
    setup.tail = tail;
    // blog's challenge goes to a webroot nobody serves: its renewal fails, with an error.
    let nowhere = dir.join("unserved-webroot");
    std::fs::create_dir_all(&nowhere).unwrap();
    setup.write_config(&[
        CertSpec::new("shop"),
        CertSpec::new("blog").challenge(Challenge::Webroot(nowhere)),
    ]);
    setup.plant("shop", 60);
    setup.plant("blog", 10);
    let failed = setup.run(&["renew", "blog"]);
    assert_eq!(failed.code, 1, "{}", failed.all());

    let agent = Running::start(&setup);
    // The page shows the ARI window once the agent has asked the CA.
    let mut page = String::new();
    wait_for(Duration::from_secs(30), "the ARI window on /status", || {
        page = http_get(metrics_port, "/status");
        page.contains("class=\"ari\"")
    });
    let (head, body) = page.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(
        head.lines()
            .next()
            .is_some_and(|line| line.contains(" 200 ")),
        "{head}"
    );
    assert!(
        head.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(
        head.contains("content-security-policy: default-src 'none'; style-src 'unsafe-inline'"),
        "{head}"
    );
    let served = sections(body);
    let names: Vec<&str> = served.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        ["shop", "blog", "partner", "old", "edge", "odd", "broken"],
        "{body}"
    );
    let state_of = |name: &str| -> String {
        let (_, section) = served.iter().find(|(n, _)| n == name).unwrap();
        section
            .split("data-state=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .to_owned()
    };
    for (name, state) in [
        ("shop", "ok"),
        ("partner", "warning"),
        ("old", "expired"),
        ("edge", "critical"),
        ("broken", "error"),
    ] {
        assert_eq!(state_of(name), state, "{name}:\n{body}");
    }
    let section = |name: &str| &served.iter().find(|(n, _)| n == name).unwrap().1;
    assert!(section("shop").contains("class=\"renew-at\""), "{body}");
    assert!(
        section("blog").contains("<dt>last error</dt><dd class=\"error\">"),
        "{body}"
    );
    assert!(
        section("broken").contains("<dt>error</dt><dd class=\"error\">"),
        "{body}"
    );
    assert!(section("odd").contains("a&amp;b&lt;em&gt;.pem"), "{body}");
    assert!(!body.contains("<script"), "{body}");

    // The same page from the command line, for hosts without the agent.
    let file = dir.join("www/status.html");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let written = setup.run(&["status", "--html", file.to_str().unwrap()]);
    assert_eq!(written.code, 0, "{}", written.all());
    let html = std::fs::read_to_string(&file).unwrap();
    let from_file: Vec<String> = sections(&html).into_iter().map(|(name, _)| name).collect();
    assert_eq!(from_file, names, "{html}");
    assert!(html.contains("from evercert status --html"), "{html}");

    // The detector first: a page that breaks its policy is seen in the console.
    let browser = tempfile::tempdir().unwrap();
    let bad = browser.path().join("bad.html");
    std::fs::write(
        &bad,
        format!(
            "<!DOCTYPE html><meta http-equiv=\"Content-Security-Policy\" content=\"{}\"><img src=\"http://127.0.0.1:1/x.png\">",
            evercert::status_page::CONTENT_SECURITY_POLICY
        ),
    )
    .unwrap();
    let (_, log) = chromium(
        &browser.path().join("profile-control"),
        &format!("file://{}", bad.display()),
        &browser.path().join("control.png"),
    );
    assert!(
        !console_lines(&log).is_empty(),
        "a blocked image did not reach the console; the check below would prove nothing:\n{log}"
    );

    let screenshot = browser.path().join("status.png");
    let started = Instant::now();
    let (dom, log) = chromium(
        &browser.path().join("profile"),
        &format!("http://127.0.0.1:{metrics_port}/status"),
        &screenshot,
    );
    eprintln!(
        "chromium loaded /status in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(console_lines(&log).is_empty(), "console messages:\n{log}");
    let rendered = sections(&dom);
    assert_eq!(rendered.len(), names.len(), "{dom}");
    for (name, section) in &rendered {
        assert_eq!(
            section.matches("<svg class=\"timeline\"").count(),
            1,
            "{name} has no timeline:\n{section}"
        );
        assert!(
            section.contains("class=\"now\"") || section.contains("class=\"nothing\""),
            "{name}: {section}"
        );
    }
    // The path with markup in it stayed text.
    assert!(!dom.contains("<em>"), "{dom}");
    let png = std::fs::read(&screenshot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);
    // docs/status-page.png is this screenshot: EVERCERT_STATUS_SCREENSHOT=docs/status-page.png
    if let Ok(keep) = std::env::var("EVERCERT_STATUS_SCREENSHOT") {
        std::fs::copy(&screenshot, keep).unwrap();
    }
    let (code, _) = agent.stop();
    assert_eq!(code, 0);
}
