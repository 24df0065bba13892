//! The Pebble harness itself: starts fast, serves ACME, and parallel instances stay apart.

use std::collections::HashSet;
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, BodyWrapper, ChallengeType, Error as AcmeError, ExternalAccountKey, Identifier,
    NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::certificate::X509Certificate;

use crate::support::pebble::{Pebble, PebbleOptions, first_cert_der};

fn parse<'a>(der: &'a CertificateDer<'_>) -> X509Certificate<'a> {
    x509_parser::parse_x509_certificate(der).unwrap().1
}

#[test]
fn pebble_starts_and_serves_directory() {
    let started = Instant::now();
    let pebble = Pebble::start();
    let ready = started.elapsed();

    let directory = pebble.get(&pebble.directory_url());
    assert_eq!(directory.status, 200, "{}", directory.text());
    let directory = directory.json();
    let new_order = directory["newOrder"].as_str().expect("newOrder URL");
    let acme_base = format!("https://127.0.0.1:{}/", pebble.ports().acme);
    assert!(new_order.starts_with(&acme_base), "{new_order}");

    // The bundle for Pebble's own HTTPS is the minted root, not Pebble's issuing root.
    let https_root = CertificateDer::from_pem_file(pebble.ca_bundle_path()).unwrap();
    assert!(parse(&https_root).is_ca());

    let root_der = first_cert_der(&pebble.issuance_root_pem());
    let root = parse(&root_der);
    assert!(root.is_ca());
    assert!(
        root.subject().to_string().contains("Pebble Root CA"),
        "{}",
        root.subject()
    );
    assert_ne!(root_der, https_root);

    let intermediate_der = first_cert_der(&pebble.issuance_intermediate_pem());
    let intermediate = parse(&intermediate_der);
    assert!(intermediate.is_ca());
    assert_eq!(intermediate.issuer(), root.subject());

    pebble.set_txt("_acme-challenge.smoke.evercert.test", "smoke-value");
    pebble.clear_txt("_acme-challenge.smoke.evercert.test");

    drop(pebble);
    eprintln!(
        "Pebble ready after {ready:?}; smoke test incl. teardown {:?}",
        started.elapsed()
    );
}

#[test]
fn parallel_pebbles_use_distinct_ports_and_roots() {
    let starting: Vec<_> = (0..2).map(|_| thread::spawn(Pebble::start)).collect();
    let pebbles: Vec<Pebble> = starting.into_iter().map(|h| h.join().unwrap()).collect();

    let mut seen = HashSet::new();
    for pebble in &pebbles {
        for port in pebble.ports().all() {
            assert!(seen.insert(port), "port {port} handed out twice");
        }
        assert_eq!(pebble.get(&pebble.directory_url()).status, 200);
    }
    assert_ne!(
        pebbles[0].issuance_root_pem(),
        pebbles[1].issuance_root_pem()
    );
    // Each instance's client trusts only its own minted root.
    assert!(pebbles[0].try_get(&pebbles[1].directory_url()).is_err());
}

#[test]
fn drop_stops_pebble_and_removes_its_files() {
    let pebble = Pebble::start();
    let dir = pebble.dir().to_owned();
    let directory_url = pebble.directory_url();
    let other = Pebble::start();
    drop(pebble);
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(
        other.try_get(&directory_url).is_err(),
        "Pebble still serving"
    );
}

/// Pebble 2.4's config accepts EAB keys and a certificate lifetime; both are exercised
/// end to end here (dns-01 via challtestsrv), so tests relying on them can trust them.
#[tokio::test]
async fn eab_keys_and_certificate_validity_are_honoured() {
    const KID: &str = "evercert-test-kid";
    let hmac_key = [0x5a_u8; 32];
    let pebble = Pebble::start_with(PebbleOptions {
        nonce_reject_percent: 0,
        eab_required: true,
        eab_keys: vec![(KID.to_owned(), URL_SAFE_NO_PAD.encode(hmac_key))],
        cert_validity_secs: Some(3600),
        ..PebbleOptions::default()
    });

    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*pebble.tls_client_config()).clone())
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    let client: HyperClient<_, BodyWrapper<Bytes>> =
        HyperClient::builder(TokioExecutor::new()).build(https);
    let new_account = NewAccount {
        contact: &[],
        terms_of_service_agreed: true,
        only_return_existing: false,
    };

    let refused = Account::builder_with_http(Box::new(client.clone()))
        .create(&new_account, pebble.directory_url(), None)
        .await;
    match refused {
        Err(AcmeError::Api(problem)) => assert_eq!(
            problem.r#type.as_deref(),
            Some("urn:ietf:params:acme:error:externalAccountRequired")
        ),
        Err(other) => panic!("expected externalAccountRequired, got {other}"),
        Ok(_) => panic!("account created without EAB"),
    }

    let eab = ExternalAccountKey::new(KID.to_owned(), &hmac_key);
    let (account, _) = Account::builder_with_http(Box::new(client))
        .create(&new_account, pebble.directory_url(), Some(&eab))
        .await
        .unwrap();

    let name = "validity.evercert.test";
    let identifiers = [Identifier::Dns(name.to_owned())];
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .unwrap();
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.unwrap();
        let mut challenge = authz.challenge(ChallengeType::Dns01).unwrap();
        let value = challenge.key_authorization().dns_value();
        pebble.set_txt(&format!("_acme-challenge.{name}"), &value);
        challenge.set_ready().await.unwrap();
    }
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(5))
        .backoff(1.5)
        .timeout(Duration::from_secs(10));
    assert_eq!(order.poll_ready(&retry).await.unwrap(), OrderStatus::Ready);
    order.finalize().await.unwrap();
    let chain = order.poll_certificate(&retry).await.unwrap();

    let leaf = first_cert_der(&chain);
    let leaf = parse(&leaf);
    let validity = leaf.validity();
    let lifetime = validity.not_after.timestamp() - validity.not_before.timestamp();
    // Pebble sets notBefore = now and notAfter = notBefore + period - 1 s.
    assert!((3599..=3600).contains(&lifetime), "lifetime {lifetime} s");
}
