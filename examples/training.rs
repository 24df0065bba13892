//! The playground for docs/training.md: a local ACME CA, a web server and a certificate to
//! look after, left running until Ctrl-C.
//!
//! Starts Pebble and pebble-challtestsrv on loopback, plants a healthy certificate (60 of 90
//! days left) from a throwaway "old CA", starts a stand-in web server that serves the files
//! (re-read on every connection, like a server reloaded at once), prepares a garbage file
//! and an expired pair for the "break it" exercises, writes an evercert configuration with alerts and metrics,
//! and prints what to type. The work directory is kept afterwards, for a look around.
//! Run it with `bash scripts/training.sh`.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use evercert_testkit::{certs, pebble, webserver};
use time::Duration;

fn private_dir(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).unwrap();
}

fn main() {
    pebble::require_pebble();
    // `<target>/release` (or debug), where scripts/training.sh built `evercert`.
    let binary = evercert_testkit::evercert_binary();
    let bin = binary.parent().unwrap();
    let work = std::env::temp_dir().join(format!(
        "evercert-training-{}",
        time::OffsetDateTime::now_utc().unix_timestamp()
    ));
    private_dir(&work);

    let pebble = pebble::Pebble::start();

    // The certificate to look after, and an expired pair to break it with.
    let domains = ["shop.example.test", "www.shop.example.test"];
    let old_ca = certs::TestCa::new();
    let tls = work.join("tls/shop");
    std::fs::create_dir_all(&tls).unwrap();
    let (not_before, not_after) = certs::validity(Duration::days(90), Duration::days(60));
    let healthy = old_ca.leaf(&domains, not_before, not_after, certs::KeyType::EcdsaP256);
    let cert_path = healthy.write_fullchain(&tls.join("fullchain.pem"));
    let key_path = healthy.write_key(&tls.join("privkey.pem"));
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (not_before, not_after) = certs::validity(Duration::days(90), Duration::days(-2));
    let expired = old_ca.leaf(&domains, not_before, not_after, certs::KeyType::EcdsaP256);
    let broken = work.join("break");
    expired.write_fullchain(&broken.join("expired-fullchain.pem"));
    expired.write_key(&broken.join("expired-privkey.pem"));
    certs::write_garbage(&broken.join("garbage.pem"));

    let server =
        webserver::FileTlsServer::start(&cert_path, &key_path, webserver::Reload::OnEveryHandshake);
    let metrics = format!("127.0.0.1:{}", pebble::unused_loopback_port());
    let alerts_log = work.join("alerts.log");
    let reload_log = work.join("reload.log");
    let config = work.join("evercert.toml");
    std::fs::write(
        &config,
        format!(
            r#"# evercert training configuration (docs/training.md). A local Pebble CA stands in for
# Let's Encrypt; a stand-in web server on {endpoint} serves tls/shop/.
state_dir = "state"

[acme]
directory = "{directory}"
staging_directory = "{directory}"   # what --dry-run uses: here the same local CA
contact = ["mailto:ops@shop.example.test"]
ca_bundle = "{ca_bundle}"

[renewal]
renew_before = "1/3"       # 30 days before expiry, for a 90-day certificate
warn_before = "30d"
critical_before = "7d"

[[certificate]]
name = "shop"
domains = ["{domain0}", "{domain1}"]
cert_path = "{cert_path}"
key_path = "{key_path}"
reload = "echo \"$(date -u +%FT%TZ) reload for $EVERCERT_NAMES, serial $EVERCERT_SERIAL\" >> {reload_log}"
verify = ["{endpoint}"]
[certificate.http01]
listen = "127.0.0.1:{http_port}"   # evercert's own responder, where Pebble validates http-01

[[monitor]]
name = "shop-served"
endpoint = "{endpoint}"     # what the web server really serves

[alerts]
command = "printf '%s\\n' \"$(cat)\" >> {alerts_log}"   # one write per alert: two at once stay two lines

[metrics]
listen = "{metrics}"
"#,
            directory = pebble.directory_url(),
            ca_bundle = pebble.ca_bundle_path().display(),
            domain0 = domains[0],
            domain1 = domains[1],
            cert_path = cert_path.display(),
            key_path = key_path.display(),
            reload_log = reload_log.display(),
            alerts_log = alerts_log.display(),
            endpoint = server.endpoint(),
            http_port = pebble.http_port(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&alerts_log, "").unwrap();
    std::fs::write(&reload_log, "").unwrap();

    println!("== evercert training: a local CA, a web server and a certificate to look after ==");
    println!();
    println!("Pebble (the ACME CA):  {}", pebble.directory_url());
    println!(
        "web server:            {} serves {}",
        server.endpoint(),
        cert_path.display()
    );
    println!("work directory:        {}", work.display());
    println!("configuration:         {}", config.display());
    println!("alerts arrive in:      {}", alerts_log.display());
    println!("reloads are logged in: {}", reload_log.display());
    println!("metrics (while `evercert run` runs): http://{metrics}/metrics");
    println!(
        "to break things with:  {0}/garbage.pem, {0}/expired-{{fullchain,privkey}}.pem",
        broken.display()
    );
    println!();
    println!("In every other terminal of the exercise:");
    println!();
    println!("    export PATH=\"{}:$PATH\"", bin.display());
    println!("    export EVERCERT_CONFIG={}", config.display());
    println!("    export WORK={}", work.display());
    println!("    export SHOP={}", server.endpoint());
    println!("    export METRICS={metrics}");
    println!("    cd \"$WORK\"");
    println!();
    println!("Then follow docs/training.md. Ctrl-C here stops Pebble and the web server;");
    println!("the work directory stays (rm -r {}).", work.display());

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    });
    drop(server);
    drop(pebble);
    println!(
        "\nstopped Pebble and the web server; {} is kept",
        work.display()
    );
}
