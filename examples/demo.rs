//! The README's main job: renew an expiring certificate against a local Pebble CA.
//!
//! Starts Pebble and pebble-challtestsrv on loopback, plants a certificate with 5 days left
//! (issued by a throwaway "old CA"), starts a stand-in web server that serves the files, and
//! runs the real `evercert` binary: `status`, `renew`, `check`, `status`. Everything lives in
//! a temporary directory that is removed at the end. Run it with `bash scripts/demo.sh`.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use evercert_testkit::{certs, evercert_binary, pebble, webserver};
use time::Duration;

fn run(binary: &Path, config: &Path, args: &[&str]) -> i32 {
    println!("\n$ evercert {}", args.join(" "));
    let status = Command::new(binary)
        .arg("-c")
        .arg(config)
        .args(args)
        .env("EVERCERT_LOG", "warn")
        .status()
        .unwrap();
    let code = status.code().unwrap_or(-1);
    println!("(exit code {code})");
    code
}

fn main() {
    pebble::require_pebble();
    let binary = evercert_binary();
    let work = tempfile::tempdir().unwrap();
    println!("== evercert demo: renew an expiring certificate against a local Pebble CA ==");
    println!("working in {}", work.path().display());

    let pebble = pebble::Pebble::start();
    println!("Pebble is up: {}", pebble.directory_url());

    let domains = ["shop.example.test", "www.shop.example.test"];
    let tls_dir = work.path().join("tls/shop");
    std::fs::create_dir_all(&tls_dir).unwrap();
    let (not_before, not_after) = certs::validity(Duration::days(90), Duration::days(5));
    let old = certs::TestCa::new().leaf(&domains, not_before, not_after, certs::KeyType::EcdsaP256);
    let (cert_path, key_path) = old.write_pair(&tls_dir, "shop");
    println!(
        "planted an expiring certificate for {} (5 days left): {}",
        domains.join(", "),
        cert_path.display()
    );
    let server =
        webserver::FileTlsServer::start(&cert_path, &key_path, webserver::Reload::OnEveryHandshake);
    println!("a stand-in web server serves it on {}", server.endpoint());

    let config = work.path().join("evercert.toml");
    std::fs::write(
        &config,
        format!(
            r#"state_dir = "state"

[acme]
directory = "{directory}"
staging_directory = "{directory}"
contact = ["mailto:ops@shop.example.test"]
ca_bundle = "{ca_bundle}"

[renewal]
renew_before = "1/3"
warn_before = "30d"
critical_before = "7d"

[[certificate]]
name = "shop"
domains = ["{domain0}", "{domain1}"]
cert_path = "{cert_path}"
key_path = "{key_path}"
reload = "echo '  (reload hook) the web server would reload now'"
verify = ["{endpoint}"]
[certificate.http01]
listen = "127.0.0.1:{http_port}"
"#,
            directory = pebble.directory_url(),
            ca_bundle = pebble.ca_bundle_path().display(),
            domain0 = domains[0],
            domain1 = domains[1],
            cert_path = cert_path.display(),
            key_path = key_path.display(),
            endpoint = server.endpoint(),
            http_port = pebble.http_port(),
        ),
    )
    .unwrap();
    println!("configuration: {}", config.display());

    let endpoint = server.endpoint();
    let mut failures = 0;
    failures += i32::from(run(&binary, &config, &["config", "check"]) != 0);
    run(&binary, &config, &["status"]);
    run(&binary, &config, &["check", &endpoint]);
    failures += i32::from(run(&binary, &config, &["renew"]) != 0);
    failures += i32::from(run(&binary, &config, &["check", &endpoint]) != 0);
    failures += i32::from(run(&binary, &config, &["status"]) != 0);
    println!("\nrenewing again right away does nothing: the new certificate is not due");
    failures += i32::from(run(&binary, &config, &["renew"]) != 0);

    drop(server);
    drop(pebble);
    if failures > 0 {
        eprintln!("\ndemo FAILED: {failures} step(s) did not succeed");
        std::process::exit(1);
    }
    println!(
        "\ndemo finished: the expiring certificate was renewed, written atomically, reloaded and verified"
    );
}
