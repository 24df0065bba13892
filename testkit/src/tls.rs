//! The rustls server configuration every TLS test server here uses (the fault proxy, the
//! hostile server, the ARI stand-in, [`super::certs::TlsServer`], the file-backed web server):
//! aws-lc, rustls' safe default protocol versions, no client authentication. Built in one
//! place so that a change (a provider, a protocol version) reaches every server at once.

use std::sync::Arc;

use rustls::server::WantsServerCert;
use rustls::{ConfigBuilder, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The builder up to the certificate: for servers that pick their certificate per connection
/// (`with_cert_resolver`).
pub fn server_builder() -> ConfigBuilder<ServerConfig, WantsServerCert> {
    ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("rustls' default protocol versions with aws-lc")
        .with_no_client_auth()
}

/// Serves the certificates of `chain_pem` in file order (leaf first) with the key `key_pem`.
/// No ALPN protocols: a caller that wants them sets `alpn_protocols`.
pub fn server_config(chain_pem: &str, key_pem: &str) -> ServerConfig {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("the test server's certificate chain PEM");
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .expect("the test server's private key PEM");
    server_builder()
        .with_single_cert(chain, key)
        .expect("the test server's certificate and key")
}
