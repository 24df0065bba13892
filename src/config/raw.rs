//! The raw TOML shapes. Every field is optional so that a missing key is reported with a hint
//! of our own, all at once, rather than as serde's first "missing field"; each table's key list
//! comes from serde's derive (`field_names`), so the unknown-key check cannot drift.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, Visitor};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAcme {
    pub(super) directory: Option<String>,
    pub(super) staging_directory: Option<String>,
    pub(super) contact: Option<Vec<String>>,
    pub(super) ca_bundle: Option<PathBuf>,
    pub(super) eab: Option<RawEab>,
    pub(super) profile: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) fallback: Option<Vec<RawFallback>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFallback {
    pub(super) directory: Option<String>,
    pub(super) eab: Option<RawEab>,
    pub(super) ca_bundle: Option<PathBuf>,
    pub(super) fallback_after: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEab {
    pub(super) kid: Option<String>,
    pub(super) hmac_key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRenewal {
    pub(super) renew_before: Option<NumberOrText>,
    pub(super) ari: Option<bool>,
    pub(super) warn_before: Option<String>,
    pub(super) critical_before: Option<String>,
    pub(super) archive_keep: Option<i64>,
    pub(super) windows: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCertificate {
    pub(super) name: Option<String>,
    pub(super) domains: Option<Vec<String>>,
    pub(super) cert_path: Option<PathBuf>,
    pub(super) key_path: Option<PathBuf>,
    pub(super) bundle_path: Option<PathBuf>,
    pub(super) key_type: Option<String>,
    pub(super) reuse_key: Option<bool>,
    pub(super) key_mode: Option<u32>,
    pub(super) owner: Option<String>,
    pub(super) group: Option<String>,
    pub(super) reload: Option<String>,
    pub(super) reload_timeout: Option<String>,
    pub(super) verify: Option<Vec<String>>,
    pub(super) verify_timeout: Option<String>,
    pub(super) verify_consecutive: Option<i64>,
    pub(super) renew_before: Option<NumberOrText>,
    pub(super) http01: Option<RawHttp01>,
    pub(super) dns01: Option<RawDns01>,
    pub(super) tlsalpn01: Option<RawTlsAlpn01>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp01 {
    pub(super) webroot: Option<PathBuf>,
    pub(super) listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDns01 {
    pub(super) hook: Option<String>,
    pub(super) wait: Option<String>,
    pub(super) rfc2136: Option<RawRfc2136>,
    pub(super) zone: Option<String>,
    pub(super) propagation_timeout: Option<String>,
    pub(super) resolvers: Option<Vec<String>>,
    pub(super) authoritative_port: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRfc2136 {
    pub(super) server: Option<String>,
    pub(super) key_name: Option<String>,
    pub(super) key_algorithm: Option<String>,
    pub(super) key_secret_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTlsAlpn01 {
    pub(super) listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMonitor {
    pub(super) name: Option<String>,
    pub(super) path: Option<PathBuf>,
    pub(super) endpoint: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerts {
    pub(super) command: Option<String>,
    pub(super) webhook: Option<String>,
    pub(super) timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) listen: Option<String>,
}

/// Each key: a path, or `true` for the server's usual one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDiscover {
    pub(super) nginx: Option<toml::Value>,
    pub(super) apache: Option<toml::Value>,
    pub(super) haproxy: Option<toml::Value>,
}

/// `renew_before` may be written `"1/3"`, `"30d"` or a bare number `0.33`.
#[derive(Debug)]
pub(super) enum NumberOrText {
    Number(f64),
    Text(String),
}

impl<'de> Deserialize<'de> for NumberOrText {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumberOrTextVisitor;
        impl Visitor<'_> for NumberOrTextVisitor {
            type Value = NumberOrText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a fraction like \"1/3\" or a duration like \"30d\"")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<NumberOrText, E> {
                Ok(NumberOrText::Text(value.to_owned()))
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<NumberOrText, E> {
                Ok(NumberOrText::Number(value))
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<NumberOrText, E> {
                Ok(NumberOrText::Number(value as f64))
            }
        }
        deserializer.deserialize_any(NumberOrTextVisitor)
    }
}

pub(super) const ROOT_KEYS: &[&str] = &[
    "template",
    "state_dir",
    "acme",
    "renewal",
    "certificate",
    "monitor",
    "alerts",
    "metrics",
    "discover",
    "cluster",
];

/// The valid keys of the table at `path` (indexes dropped: `certificate.http01`).
pub(super) fn table_keys(path: &str) -> Option<&'static [&'static str]> {
    Some(match path {
        "" => ROOT_KEYS,
        "acme" => field_names::<RawAcme>(),
        "acme.eab" => field_names::<RawEab>(),
        "acme.fallback" => field_names::<RawFallback>(),
        "acme.fallback.eab" => field_names::<RawEab>(),
        "renewal" => field_names::<RawRenewal>(),
        "certificate" => field_names::<RawCertificate>(),
        "certificate.http01" => field_names::<RawHttp01>(),
        "certificate.dns01" => field_names::<RawDns01>(),
        "certificate.dns01.rfc2136" => field_names::<RawRfc2136>(),
        "certificate.tlsalpn01" => field_names::<RawTlsAlpn01>(),
        "monitor" => field_names::<RawMonitor>(),
        "alerts" => field_names::<RawAlerts>(),
        "metrics" => field_names::<RawMetrics>(),
        "discover" => field_names::<RawDiscover>(),
        "cluster" => field_names::<crate::fleet::config::RawCluster>(),
        "cluster.tls" => field_names::<crate::fleet::config::RawClusterTls>(),
        _ => return None,
    })
}

/// The field names serde's derive knows for `T`, so the key lists cannot drift from the
/// structs: a deserializer that only records what `deserialize_struct` is asked for.
pub(super) fn field_names<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Grab<'a>(&'a mut &'static [&'static str]);
    impl<'de> de::Deserializer<'de> for Grab<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("field names only"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("field names only"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Grab(&mut fields));
    fields
}
