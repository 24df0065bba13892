//! The configuration file: parsing, validation and the settings every command works from.
//!
//! Validation collects every problem it can find in one pass — unknown keys with the closest
//! valid one, wrong types, bad values, missing keys, contradictions — each with file:line:column
//! and what to write instead, so that an operator fixes a config in one round, not ten.
//! Parsing walks toml's spanned document: unknown keys are found against the field lists of
//! the `Raw*` structs (which `deny_unknown_fields`), then each section is deserialized on its
//! own so that one bad section does not hide the errors of the next.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;
use serde::de::{self, Visitor};
use time::Duration;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::policy::{RenewBefore, Thresholds};
use crate::units::parse_duration;

/// Where the configuration lives when neither `--config` nor `$EVERCERT_CONFIG` says.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/evercert/evercert.toml";
/// Let's Encrypt's production directory (alias `letsencrypt`).
pub const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (alias `letsencrypt-staging`).
pub const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

const DEFAULT_STATE_DIR: &str = "/var/lib/evercert";
const DEFAULT_KEY_MODE: u32 = 0o600;
const DEFAULT_HOOK_TIMEOUT: Duration = Duration::seconds(60);
const DEFAULT_ALERT_TIMEOUT: Duration = Duration::seconds(30);
const DEFAULT_VERIFY_TIMEOUT: Duration = Duration::seconds(15);
const DEFAULT_VERIFY_CONSECUTIVE: u32 = 3;
/// More would only make each renewal slower; a handful of connections over a second is what
/// catches the old workers of a graceful reload.
const MAX_VERIFY_CONSECUTIVE: u32 = 20;
const DEFAULT_ACME_TIMEOUT: Duration = Duration::seconds(30);
/// Versions of each certificate kept in the archive: with 90-day certificates over a year of
/// history, with 6-day ones still a few weeks of rollbacks.
const DEFAULT_ARCHIVE_KEEP: usize = 5;

// ---------------------------------------------------------------------------------------------
// The validated settings.

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from; relative paths in it are resolved against its directory.
    pub source: PathBuf,
    pub state_dir: PathBuf,
    pub acme: AcmeSettings,
    pub renewal: RenewalSettings,
    pub certificates: Vec<CertificateSettings>,
    pub monitors: Vec<MonitorSettings>,
    pub alerts: AlertSettings,
    pub metrics: Option<MetricsSettings>,
    /// `[discover]`: the web servers whose certificates are monitored as if listed.
    pub discover: Option<crate::discover::Sources>,
    /// `[cluster]`: fleet mode through etcd; `None` for a single host.
    pub cluster: Option<crate::fleet::ClusterSettings>,
}

#[derive(Debug, Clone)]
pub struct AcmeSettings {
    /// The directory URL, aliases resolved.
    pub directory: String,
    /// What `--dry-run` uses.
    pub staging_directory: String,
    pub contact: Vec<String>,
    pub ca_bundle: Option<PathBuf>,
    pub eab: Option<ExternalAccountBinding>,
    pub profile: Option<String>,
    /// How long one request to the CA may take before it counts as stalled.
    pub timeout: Duration,
}

/// External account binding: the HMAC key is a secret and never printed.
#[derive(Clone)]
pub struct ExternalAccountBinding {
    pub kid: String,
    pub hmac_key: Vec<u8>,
}

impl fmt::Debug for ExternalAccountBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalAccountBinding")
            .field("kid", &self.kid)
            .field("hmac_key", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct RenewalSettings {
    pub renew_before: RenewBefore,
    pub ari: bool,
    pub thresholds: Thresholds,
    /// How many versions of each certificate the archive keeps (the live one and the
    /// rollback target always stay, even beyond it).
    pub archive_keep: usize,
    /// When renewals may run (`windows`); empty: at any time.
    pub windows: crate::window::Windows,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    EcdsaP256,
    EcdsaP384,
    Rsa2048,
    Rsa3072,
    Rsa4096,
}

impl KeyType {
    pub const ALL: [Self; 5] = [
        Self::EcdsaP256,
        Self::EcdsaP384,
        Self::Rsa2048,
        Self::Rsa3072,
        Self::Rsa4096,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EcdsaP256 => "ecdsa-p256",
            Self::EcdsaP384 => "ecdsa-p384",
            Self::Rsa2048 => "rsa2048",
            Self::Rsa3072 => "rsa3072",
            Self::Rsa4096 => "rsa4096",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the CA is shown that we control a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChallengeSettings {
    /// http-01, token files written below `webroot/.well-known/acme-challenge/`.
    Http01Webroot(PathBuf),
    /// http-01, answered by evercert's own responder bound while an order needs it.
    Http01Listen(SocketAddr),
    /// dns-01 through an operator's hook, then a wait for the record to propagate.
    Dns01 { hook: String, wait: Duration },
    /// tls-alpn-01, answered by evercert's own responder.
    TlsAlpn01 { listen: SocketAddr },
}

#[derive(Debug, Clone)]
pub struct CertificateSettings {
    pub name: String,
    /// Lower-cased DNS names (maybe `*.`-wildcards) and IP addresses, in configured order.
    pub domains: Vec<String>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// Key and full chain in one file, for HAProxy; optional.
    pub bundle_path: Option<PathBuf>,
    pub key_type: KeyType,
    pub reuse_key: bool,
    pub key_mode: u32,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub reload: Option<String>,
    pub reload_timeout: Duration,
    pub verify: Vec<Endpoint>,
    /// How long the verify endpoints may take to serve the new certificate.
    pub verify_timeout: Duration,
    /// How many fresh connections in a row must see the new certificate: a graceful reload
    /// leaves old workers accepting for a moment, and one lucky connection proves little.
    pub verify_consecutive: u32,
    /// Overrides `[renewal] renew_before` for this certificate.
    pub renew_before: Option<RenewBefore>,
    pub challenge: ChallengeSettings,
}

/// A `HOST:PORT` to connect to over TLS.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// Parses `host:443`, `127.0.0.1:443` or `[::1]:443`.
    pub fn parse(text: &str) -> Option<Self> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Some(Self {
                host: addr.ip().to_string(),
                port: addr.port(),
            });
        }
        let (host, port) = text.rsplit_once(':')?;
        let port = port.parse().ok()?;
        let valid = !host.is_empty()
            && !host.contains(['/', ' ', '[', ']', ':'])
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_');
        valid.then(|| Self {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            _ => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MonitorTarget {
    File(PathBuf),
    Endpoint(Endpoint),
}

#[derive(Debug, Clone)]
pub struct MonitorSettings {
    pub name: String,
    pub target: MonitorTarget,
}

#[derive(Debug, Clone, Default)]
pub struct AlertSettings {
    pub command: Option<String>,
    pub webhook: Option<String>,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct MetricsSettings {
    pub listen: SocketAddr,
}

impl Config {
    /// The certificate settings by name.
    pub fn certificate(&self, name: &str) -> Option<&CertificateSettings> {
        self.certificates.iter().find(|cert| cert.name == name)
    }

    /// The `renew_before` in force for a certificate.
    pub fn renew_before(&self, cert: &CertificateSettings) -> RenewBefore {
        cert.renew_before.unwrap_or(self.renewal.renew_before)
    }
}

/// Resolves `letsencrypt` / `letsencrypt-staging` to their URLs; anything else is kept.
pub fn resolve_directory(alias_or_url: &str) -> String {
    match alias_or_url {
        "letsencrypt" => LETSENCRYPT.to_owned(),
        "letsencrypt-staging" => LETSENCRYPT_STAGING.to_owned(),
        other => other.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Errors.

/// One problem in a configuration file, with where it is and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem is not at a place in the file (it cannot be read).
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        let count = self.0.len();
        write!(
            f,
            "\n{count} error{} in the configuration; nothing was changed",
            if count == 1 { "" } else { "s" }
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Raw TOML shapes. Every field is optional so that a missing key is reported with a hint of
// our own, all at once, rather than as serde's first "missing field".

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAcme {
    directory: Option<String>,
    staging_directory: Option<String>,
    contact: Option<Vec<String>>,
    ca_bundle: Option<PathBuf>,
    eab: Option<RawEab>,
    profile: Option<String>,
    timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEab {
    kid: Option<String>,
    hmac_key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRenewal {
    renew_before: Option<NumberOrText>,
    ari: Option<bool>,
    warn_before: Option<String>,
    critical_before: Option<String>,
    archive_keep: Option<i64>,
    windows: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCertificate {
    name: Option<String>,
    domains: Option<Vec<String>>,
    cert_path: Option<PathBuf>,
    key_path: Option<PathBuf>,
    bundle_path: Option<PathBuf>,
    key_type: Option<String>,
    reuse_key: Option<bool>,
    key_mode: Option<u32>,
    owner: Option<String>,
    group: Option<String>,
    reload: Option<String>,
    reload_timeout: Option<String>,
    verify: Option<Vec<String>>,
    verify_timeout: Option<String>,
    verify_consecutive: Option<i64>,
    renew_before: Option<NumberOrText>,
    http01: Option<RawHttp01>,
    dns01: Option<RawDns01>,
    tlsalpn01: Option<RawTlsAlpn01>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp01 {
    webroot: Option<PathBuf>,
    listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDns01 {
    hook: Option<String>,
    wait: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTlsAlpn01 {
    listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMonitor {
    name: Option<String>,
    path: Option<PathBuf>,
    endpoint: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    command: Option<String>,
    webhook: Option<String>,
    timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<String>,
}

/// Each key: a path, or `true` for the server's usual one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDiscover {
    nginx: Option<toml::Value>,
    apache: Option<toml::Value>,
    haproxy: Option<toml::Value>,
}

/// `renew_before` may be written `"1/3"`, `"30d"` or a bare number `0.33`.
#[derive(Debug)]
enum NumberOrText {
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

const ROOT_KEYS: &[&str] = &[
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
fn table_keys(path: &str) -> Option<&'static [&'static str]> {
    Some(match path {
        "" => ROOT_KEYS,
        "acme" => field_names::<RawAcme>(),
        "acme.eab" => field_names::<RawEab>(),
        "renewal" => field_names::<RawRenewal>(),
        "certificate" => field_names::<RawCertificate>(),
        "certificate.http01" => field_names::<RawHttp01>(),
        "certificate.dns01" => field_names::<RawDns01>(),
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
fn field_names<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
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

// ---------------------------------------------------------------------------------------------
// Parsing.

/// Reads and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    // A FIFO, a device or a huge file named by --config is an error, not a hang.
    let text = crate::fsread::read_to_string(path, crate::fsread::CONFIG_FILE_MAX).map_err(|err| {
        use crate::fsread::Problem;
        let (message, hint) = match err.problem {
            Problem::NotFound => (
                "configuration file not found".to_owned(),
                format!(
                    "create it (see examples/evercert.toml), or name another with --config FILE \
                     or $EVERCERT_CONFIG (default {DEFAULT_CONFIG_PATH})"
                ),
            ),
            Problem::PermissionDenied => (
                "permission denied reading the configuration file".to_owned(),
                "run evercert as the user that owns the configuration (usually root)".to_owned(),
            ),
            problem => (
                format!("cannot read the configuration file: {problem}"),
                "check that the path names a readable UTF-8 text file".to_owned(),
            ),
        };
        ConfigErrors(vec![ConfigError {
            file: path.to_owned(),
            line: 0,
            column: 0,
            message,
            hint: Some(hint),
        }])
    })?;
    parse(&text, path)
}

/// Validates configuration text; `path` names it in errors and anchors relative paths.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    // Spans of every value are only needed to place errors: a config with ten thousand
    // certificates would hold tens of thousands of them. Parse without, and again with them
    // when there is something to report.
    parse_with(text, path, false).or_else(|_| parse_with(text, path, true))
}

fn parse_with(text: &str, path: &Path, record_spans: bool) -> Result<Config, ConfigErrors> {
    let mut parser = Parser {
        text,
        line_starts: line_starts(text),
        file: path,
        errors: Vec::new(),
        spans: HashMap::new(),
        record_spans,
    };
    let (document, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        for error in syntax_errors {
            let span = error.span().unwrap_or(0..0);
            parser.error(
                span,
                format!("TOML syntax error: {}", error.message().trim()),
                Some("check quotes, brackets and `key = value` on this line".into()),
            );
        }
        return Err(ConfigErrors(parser.errors));
    }
    let document_span = document.span();
    let mut root = document.into_inner();
    parser.check_keys(&mut root, "", "");
    let config = parser.build(root, document_span);
    if parser.errors.is_empty() {
        Ok(config)
    } else {
        parser.errors.sort_by_key(|e| (e.line, e.column));
        Err(ConfigErrors(parser.errors))
    }
}

struct Parser<'a> {
    text: &'a str,
    /// Where each line starts, so that an error's line:column costs a binary search and a
    /// file with thousands of errors is still reported at once.
    line_starts: Vec<usize>,
    file: &'a Path,
    errors: Vec<ConfigError>,
    /// Where each value is, by path: `certificate[1].domains`, `acme.directory`.
    spans: HashMap<String, Range<usize>>,
    /// Whether to fill `spans` (only when reporting errors).
    record_spans: bool,
}

impl Parser<'_> {
    fn error(&mut self, span: Range<usize>, message: String, hint: Option<String>) {
        let (line, column) = line_column(self.text, &self.line_starts, span.start);
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            line,
            column,
            message,
            hint,
        });
    }

    /// Reports an error at the value `key` of the table at `path`, or at the table itself.
    fn error_at(&mut self, path: &str, key: &str, message: String, hint: Option<String>) {
        let full = join(path, key);
        let span = self
            .spans
            .get(&full)
            .or_else(|| self.spans.get(path))
            .cloned()
            .unwrap_or(0..0);
        self.error(span, message, hint);
    }

    /// Reports unknown keys (removing them, so later steps see only known ones) and records
    /// the span of every value.
    fn check_keys(&mut self, table: &mut DeTable<'_>, schema_path: &str, path: &str) {
        let Some(valid) = table_keys(schema_path) else {
            return;
        };
        let mut unknown = Vec::new();
        for (key, value) in table.iter_mut() {
            let name: &str = key.get_ref();
            let value_path = join(path, name);
            if self.record_spans {
                self.spans.insert(value_path.clone(), value.span());
            }
            if !valid.contains(&name) {
                unknown.push((name.to_owned(), key.span()));
                continue;
            }
            let child_schema = join(schema_path, name);
            if table_keys(&child_schema).is_none() {
                continue;
            }
            match value.get_mut() {
                DeValue::Table(child) => self.check_keys(child, &child_schema, &value_path),
                DeValue::Array(items) => {
                    for (index, item) in items.iter_mut().enumerate() {
                        let item_path = format!("{value_path}[{index}]");
                        if self.record_spans {
                            self.spans.insert(item_path.clone(), item.span());
                        }
                        if let DeValue::Table(child) = item.get_mut() {
                            self.check_keys(child, &child_schema, &item_path);
                        }
                    }
                }
                _ => {}
            }
        }
        for (name, span) in unknown {
            table.remove(name.as_str());
            let section = if path.is_empty() {
                "at the top level".to_owned()
            } else {
                format!("in [{}]", display_path(path))
            };
            let hint = match closest(&name, valid) {
                Some(best) => format!("did you mean `{best}`?"),
                None => format!("valid keys here: {}", valid.join(", ")),
            };
            self.error(span, format!("unknown key `{name}` {section}"), Some(hint));
        }
    }

    /// Deserializes one section on its own; errors are recorded and `None` returned.
    fn section<T: for<'de> Deserialize<'de> + Default>(
        &mut self,
        value: Option<Spanned<DeValue<'_>>>,
        path: &str,
        expected: &str,
    ) -> Option<T> {
        let Some(value) = value else {
            return Some(T::default());
        };
        let span = value.span();
        if !matches!(value.get_ref(), DeValue::Table(_)) {
            self.error(
                span,
                format!("`{path}` must be a table"),
                Some(format!("write it as {expected}")),
            );
            return None;
        }
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(parsed) => Some(parsed),
            Err(err) => {
                let span = err.span().unwrap_or(span);
                let message = err.message().trim().to_owned();
                self.error(
                    span,
                    format!("in [{}]: {message}", display_path(path)),
                    Some(type_hint(&message)),
                );
                None
            }
        }
    }

    /// Deserializes an array of tables such as `[[certificate]]`, element by element.
    fn array_section<T: for<'de> Deserialize<'de> + Default>(
        &mut self,
        value: Option<Spanned<DeValue<'_>>>,
        path: &str,
    ) -> Vec<(String, Option<T>)> {
        let Some(value) = value else {
            return Vec::new();
        };
        let span = value.span();
        let DeValue::Array(items) = value.into_inner() else {
            self.error(
                span,
                format!("`{path}` must be an array of tables"),
                Some(format!("write each entry under its own [[{path}]] header")),
            );
            return Vec::new();
        };
        items
            .into_iter()
            .enumerate()
            .map(|(index, item)| {
                let item_path = format!("{path}[{index}]");
                let parsed = self.section(Some(item), &item_path, &format!("[[{path}]]"));
                (item_path, parsed)
            })
            .collect()
    }

    fn build(&mut self, mut root: DeTable<'_>, document_span: Range<usize>) -> Config {
        let base = self.file.parent().unwrap_or(Path::new(".")).to_owned();
        let resolve = |path: &Path| -> PathBuf {
            if path.is_absolute() {
                path.to_owned()
            } else {
                base.join(path)
            }
        };
        self.spans.insert(String::new(), document_span);

        // The file the Debian package installs is the example with `template = true` on top:
        // enabling the service before editing it must not order certificates for example.com.
        match root.remove("template").map(Spanned::into_inner) {
            None | Some(DeValue::Boolean(false)) => {}
            Some(DeValue::Boolean(true)) => self.error_at(
                "",
                "template",
                "this is the packaged template, not a configuration for this host yet".into(),
                Some(
                    "fill in [acme] contact and one [[certificate]] per certificate (domains, \
                     cert_path, key_path, the challenge, reload) and [[monitor]]/[alerts] as \
                     needed (/usr/share/doc/evercert/install.md), then remove the `template = true` line"
                        .into(),
                ),
            ),
            Some(_) => self.error_at(
                "",
                "template",
                "`template` must be true or false".into(),
                Some("remove the `template` line once the configuration is filled in".into()),
            ),
        }

        let state_dir = match root.remove("state_dir").map(Spanned::into_inner) {
            None => PathBuf::from(DEFAULT_STATE_DIR),
            Some(DeValue::String(text)) if !text.is_empty() => resolve(Path::new(text.as_ref())),
            Some(_) => {
                self.error_at(
                    "",
                    "state_dir",
                    "`state_dir` must be a non-empty string".into(),
                    Some(format!("write state_dir = \"{DEFAULT_STATE_DIR}\"")),
                );
                PathBuf::from(DEFAULT_STATE_DIR)
            }
        };

        let acme_raw: RawAcme = self
            .section(root.remove("acme"), "acme", "[acme]")
            .unwrap_or_default();
        let acme = self.acme(acme_raw, &resolve);

        let renewal_raw: RawRenewal = self
            .section(root.remove("renewal"), "renewal", "[renewal]")
            .unwrap_or_default();
        let renewal = self.renewal(renewal_raw);

        let mut certificates = Vec::new();
        let mut names: HashMap<String, String> = HashMap::new();
        for (path, raw) in
            self.array_section::<RawCertificate>(root.remove("certificate"), "certificate")
        {
            let Some(raw) = raw else { continue };
            // Duplicates are found on the raw names, so that an invalid first entry does not
            // hide that the second reuses its name.
            if let Some(name) = raw.name.clone() {
                if let Some(first) = names.get(&name).cloned() {
                    self.error_at(
                        &path,
                        "name",
                        format!("duplicate certificate name \"{name}\""),
                        Some(format!(
                            "names must be unique (the first is [{}]); rename one",
                            display_path(&first)
                        )),
                    );
                } else {
                    names.insert(name, path.clone());
                }
            }
            if let Some(cert) = self.certificate(raw, &path, &resolve) {
                certificates.push(cert);
            }
        }
        self.shared_paths(&certificates);

        let mut monitors = Vec::new();
        for (path, raw) in self.array_section::<RawMonitor>(root.remove("monitor"), "monitor") {
            let Some(raw) = raw else { continue };
            if let Some(monitor) = self.monitor(raw, &path, &resolve) {
                monitors.push(monitor);
            }
        }

        let alerts_raw: RawAlerts = self
            .section(root.remove("alerts"), "alerts", "[alerts]")
            .unwrap_or_default();
        let alerts = self.alerts(alerts_raw);

        let metrics = match root.remove("metrics") {
            None => None,
            Some(value) => self
                .section::<RawMetrics>(Some(value), "metrics", "[metrics]")
                .and_then(|raw| self.metrics(raw)),
        };

        let discover = match root.remove("discover") {
            None => None,
            Some(value) => self
                .section::<RawDiscover>(Some(value), "discover", "[discover]")
                .map(|raw| self.discover(raw, &resolve)),
        };

        let cluster = match root.remove("cluster") {
            None => None,
            Some(value) => self
                .section::<crate::fleet::config::RawCluster>(Some(value), "cluster", "[cluster]")
                .and_then(|raw| {
                    crate::fleet::config::validate(raw, &resolve, &mut |key, message, hint| {
                        self.error_at("cluster", key, message, hint);
                    })
                }),
        };

        Config {
            source: self.file.to_owned(),
            state_dir,
            acme,
            renewal,
            certificates,
            monitors,
            alerts,
            metrics,
            discover,
            cluster,
        }
    }

    fn discover(
        &mut self,
        raw: RawDiscover,
        resolve: &dyn Fn(&Path) -> PathBuf,
    ) -> crate::discover::Sources {
        use crate::discover::{APACHE_CONF, HAPROXY_CONF, NGINX_CONF};
        let mut source = |key: &str, value: Option<toml::Value>, usual: &str| match value {
            None | Some(toml::Value::Boolean(false)) => None,
            Some(toml::Value::Boolean(true)) => Some(PathBuf::from(usual)),
            Some(toml::Value::String(path)) if !path.is_empty() => Some(resolve(Path::new(&path))),
            Some(_) => {
                self.error_at(
                    "discover",
                    key,
                    format!("`{key}` must be the path of the main configuration file, or true"),
                    Some(format!(
                        "write {key} = \"{usual}\" (or {key} = true for that path)"
                    )),
                );
                None
            }
        };
        crate::discover::Sources {
            nginx: source("nginx", raw.nginx, NGINX_CONF),
            apache: source("apache", raw.apache, APACHE_CONF),
            haproxy: source("haproxy", raw.haproxy, HAPROXY_CONF),
        }
    }

    fn acme(&mut self, raw: RawAcme, resolve: &dyn Fn(&Path) -> PathBuf) -> AcmeSettings {
        let mut directory_url = |key: &str, value: Option<String>, default: &str| -> String {
            let value = value.unwrap_or_else(|| default.to_owned());
            let url = resolve_directory(&value);
            if !url.starts_with("https://") {
                self.error_at(
                    "acme",
                    key,
                    format!("`{key}` = \"{value}\" is neither an alias nor an https:// URL"),
                    Some(
                        "write \"letsencrypt\", \"letsencrypt-staging\" or the CA's directory \
                         URL, like \"https://acme.example.com/directory\""
                            .into(),
                    ),
                );
            }
            url
        };
        let directory = directory_url("directory", raw.directory, "letsencrypt");
        let staging_directory = directory_url(
            "staging_directory",
            raw.staging_directory,
            "letsencrypt-staging",
        );
        let contact = raw.contact.unwrap_or_default();
        for address in &contact {
            if !address.starts_with("mailto:") || address.len() <= "mailto:".len() {
                self.error_at(
                    "acme",
                    "contact",
                    format!("contact \"{address}\" is not a mailto: URL"),
                    Some("write contact = [\"mailto:ops@example.com\"]".into()),
                );
            }
        }
        let ca_bundle = raw.ca_bundle.map(|path| resolve(&path));
        let eab = raw.eab.and_then(|eab| {
            let kid = eab.kid.filter(|kid| !kid.is_empty());
            let key = eab.hmac_key.filter(|key| !key.is_empty());
            let (Some(kid), Some(key)) = (kid, key) else {
                self.error_at(
                    "acme",
                    "eab",
                    "`eab` needs both `kid` and `hmac_key`".into(),
                    Some(
                        "write eab = { kid = \"…\", hmac_key = \"…\" } with the values your CA \
                         gave you"
                            .into(),
                    ),
                );
                return None;
            };
            let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(key.trim_end_matches('='))
                .or_else(|_| base64::engine::general_purpose::STANDARD.decode(&key));
            match decoded {
                Ok(hmac_key) if !hmac_key.is_empty() => {
                    Some(ExternalAccountBinding { kid, hmac_key })
                }
                _ => {
                    // The key itself is a secret: the message must not echo it.
                    self.error_at(
                        "acme.eab",
                        "hmac_key",
                        "`eab.hmac_key` is not base64url".into(),
                        Some("paste the HMAC key exactly as the CA shows it".into()),
                    );
                    None
                }
            }
        });
        let profile = raw.profile.filter(|profile| !profile.is_empty());
        let timeout = self.duration("acme", "timeout", raw.timeout, DEFAULT_ACME_TIMEOUT);
        if !timeout.is_positive() {
            self.error_at(
                "acme",
                "timeout",
                "`timeout` must be longer than 0s".into(),
                Some("write timeout = \"30s\"".into()),
            );
        }
        AcmeSettings {
            directory,
            staging_directory,
            contact,
            ca_bundle,
            eab,
            profile,
            timeout,
        }
    }

    fn duration(
        &mut self,
        path: &str,
        key: &str,
        value: Option<String>,
        default: Duration,
    ) -> Duration {
        let Some(text) = value else { return default };
        match parse_duration(&text) {
            Ok(duration) => duration,
            Err(err) => {
                self.error_at(path, key, format!("`{key}`: {err}"), None);
                default
            }
        }
    }

    fn renew_before(&mut self, path: &str, value: Option<NumberOrText>) -> Option<RenewBefore> {
        let parsed = match value? {
            NumberOrText::Number(number) => RenewBefore::from_fraction(number).ok_or_else(|| {
                format!("renew_before = {number} is not a fraction between 0 and 1")
            }),
            NumberOrText::Text(text) => text.parse::<RenewBefore>().map_err(|e| e.to_string()),
        };
        match parsed {
            Ok(renew_before) => Some(renew_before),
            Err(message) => {
                self.error_at(
                    path,
                    "renew_before",
                    message,
                    Some(
                        "write renew_before = \"1/3\" (a third of the lifetime) or \"30d\"".into(),
                    ),
                );
                None
            }
        }
    }

    fn renewal(&mut self, raw: RawRenewal) -> RenewalSettings {
        let defaults = Thresholds::default();
        let renew_before = self
            .renew_before("renewal", raw.renew_before)
            .unwrap_or_default();
        let warn_before = self.duration(
            "renewal",
            "warn_before",
            raw.warn_before,
            defaults.warn_before,
        );
        let critical_before = self.duration(
            "renewal",
            "critical_before",
            raw.critical_before,
            defaults.critical_before,
        );
        if critical_before > warn_before {
            self.error_at(
                "renewal",
                "critical_before",
                "`critical_before` is longer than `warn_before`".into(),
                Some("critical must come closer to expiry than warning, like warn_before = \"30d\", critical_before = \"7d\"".into()),
            );
        }
        let archive_keep = match raw.archive_keep {
            None => DEFAULT_ARCHIVE_KEEP,
            Some(keep) if (2..=10_000).contains(&keep) => keep as usize,
            Some(keep) => {
                self.error_at(
                    "renewal",
                    "archive_keep",
                    format!("`archive_keep` = {keep} is out of range"),
                    Some(format!(
                        "keep at least 2 versions (the live one and the one a rollback returns to), \
                         like archive_keep = {DEFAULT_ARCHIVE_KEEP}"
                    )),
                );
                DEFAULT_ARCHIVE_KEEP
            }
        };
        let mut windows = Vec::new();
        for text in raw.windows.unwrap_or_default() {
            match crate::window::WeeklyWindow::parse(&text) {
                Ok(window) => windows.push(window),
                Err(err) => self.error_at(
                    "renewal",
                    "windows",
                    format!("renewal window {err}"),
                    Some("write windows = [\"Mon-Fri 09:00-17:00 Europe/Berlin\"]".into()),
                ),
            }
        }
        RenewalSettings {
            windows: crate::window::Windows::new(windows),
            archive_keep,
            renew_before,
            ari: raw.ari.unwrap_or(true),
            thresholds: Thresholds {
                warn_before,
                critical_before,
                scale_to_lifetime: true,
            },
        }
    }

    fn required<T>(&mut self, path: &str, key: &str, value: Option<T>, example: &str) -> Option<T> {
        if value.is_none() {
            self.error_at(
                path,
                "",
                format!("[{}] has no `{key}`", display_path(path)),
                Some(format!("add {key} = {example}")),
            );
        }
        value
    }

    fn socket_addr(&mut self, path: &str, key: &str, text: &str) -> Option<SocketAddr> {
        match text.parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.error_at(
                    path,
                    key,
                    format!("`{key}` = \"{text}\" is not a socket address"),
                    Some(format!(
                        "write an IP address and a port, like {key} = \"[::]:80\" or \"0.0.0.0:80\""
                    )),
                );
                None
            }
        }
    }

    fn certificate(
        &mut self,
        raw: RawCertificate,
        path: &str,
        resolve: &dyn Fn(&Path) -> PathBuf,
    ) -> Option<CertificateSettings> {
        let name = self.required(path, "name", raw.name, "\"shop\"");
        if let Some(name) = &name
            && !crate::names::is_valid(name)
        {
            self.error_at(
                path,
                "name",
                format!(
                    "certificate name \"{name}\" may hold only {}",
                    crate::names::RULE
                ),
                Some("names become directory names in the archive; write name = \"shop\"".into()),
            );
        }
        let domains = self.required(
            path,
            "domains",
            raw.domains,
            "[\"example.com\", \"www.example.com\"]",
        );
        let domains = domains.map(|domains| self.domains(path, domains));
        if domains.as_ref().is_some_and(Vec::is_empty) {
            self.error_at(
                path,
                "domains",
                "`domains` is empty".into(),
                Some("list at least one name, like domains = [\"example.com\"]".into()),
            );
        }
        let cert_path = self.required(
            path,
            "cert_path",
            raw.cert_path,
            "\"/etc/nginx/tls/shop/fullchain.pem\"",
        );
        let key_path = self.required(
            path,
            "key_path",
            raw.key_path,
            "\"/etc/nginx/tls/shop/privkey.pem\"",
        );
        if let (Some(cert), Some(key)) = (&cert_path, &key_path)
            && cert == key
        {
            self.error_at(
                path,
                "key_path",
                "`key_path` is the same file as `cert_path`".into(),
                Some("give the key its own file, like privkey.pem beside fullchain.pem".into()),
            );
        }
        let key_type = match raw.key_type.as_deref() {
            None => KeyType::EcdsaP256,
            Some(text) => KeyType::parse(text).unwrap_or_else(|| {
                let valid: Vec<&str> = KeyType::ALL.iter().map(|kind| kind.as_str()).collect();
                let hint = match closest(text, &valid) {
                    Some(best) => format!("did you mean \"{best}\"? valid: {}", valid.join(", ")),
                    None => format!("valid key types: {}", valid.join(", ")),
                };
                self.error_at(
                    path,
                    "key_type",
                    format!("unknown key_type \"{text}\""),
                    Some(hint),
                );
                KeyType::EcdsaP256
            }),
        };
        let key_mode = raw.key_mode.unwrap_or(DEFAULT_KEY_MODE);
        if key_mode & 0o7137 != 0 {
            self.error_at(
                path,
                "key_mode",
                format!("key_mode = 0o{key_mode:o} would let others than the owner and group read or run the key"),
                Some("write key_mode = 0o600 (owner only) or 0o640 (owner and group)".into()),
            );
        }
        let reload_timeout = self.duration(
            path,
            "reload_timeout",
            raw.reload_timeout,
            DEFAULT_HOOK_TIMEOUT,
        );
        let mut verify = Vec::new();
        for text in raw.verify.unwrap_or_default() {
            match Endpoint::parse(&text) {
                Some(endpoint) => verify.push(endpoint),
                None => self.error_at(
                    path,
                    "verify",
                    format!("verify endpoint \"{text}\" is not HOST:PORT"),
                    Some("write verify = [\"127.0.0.1:443\"]".into()),
                ),
            }
        }
        let verify_timeout = self.duration(
            path,
            "verify_timeout",
            raw.verify_timeout,
            DEFAULT_VERIFY_TIMEOUT,
        );
        let verify_consecutive = match raw.verify_consecutive {
            None => DEFAULT_VERIFY_CONSECUTIVE,
            Some(count) if (1..=i64::from(MAX_VERIFY_CONSECUTIVE)).contains(&count) => count as u32,
            Some(count) => {
                self.error_at(
                    path,
                    "verify_consecutive",
                    format!(
                        "verify_consecutive = {count} is not between 1 and {MAX_VERIFY_CONSECUTIVE}"
                    ),
                    Some(format!(
                        "write verify_consecutive = {DEFAULT_VERIFY_CONSECUTIVE} (the default)"
                    )),
                );
                DEFAULT_VERIFY_CONSECUTIVE
            }
        };
        let renew_before = self.renew_before(path, raw.renew_before);
        let challenge = self.challenge(path, raw.http01, raw.dns01, raw.tlsalpn01, resolve);
        if let (Some(domains), Some(challenge)) = (&domains, &challenge)
            && !matches!(challenge, ChallengeSettings::Dns01 { .. })
            && let Some(wildcard) = domains.iter().find(|d| d.starts_with("*."))
        {
            self.error_at(
                path,
                "domains",
                format!("wildcard \"{wildcard}\" can only be validated with dns-01"),
                Some("use [certificate.dns01] hook = \"/usr/local/bin/dns-hook\" for this certificate".into()),
            );
        }
        Some(CertificateSettings {
            name: name?,
            domains: domains?,
            cert_path: resolve(&cert_path?),
            key_path: resolve(&key_path?),
            bundle_path: raw.bundle_path.map(|path| resolve(&path)),
            key_type,
            reuse_key: raw.reuse_key.unwrap_or(false),
            key_mode,
            owner: raw.owner.filter(|owner| !owner.is_empty()),
            group: raw.group.filter(|group| !group.is_empty()),
            reload: raw.reload.filter(|reload| !reload.trim().is_empty()),
            reload_timeout,
            verify,
            verify_timeout,
            verify_consecutive,
            renew_before,
            challenge: challenge?,
        })
    }

    fn domains(&mut self, path: &str, domains: Vec<String>) -> Vec<String> {
        let mut seen = HashSet::new();
        let mut valid = Vec::new();
        for domain in domains {
            let normalized = domain.trim().trim_end_matches('.').to_ascii_lowercase();
            if let Err(why) = check_identifier(&normalized) {
                self.error_at(
                    path,
                    "domains",
                    format!("\"{domain}\" is not a valid domain name or IP address: {why}"),
                    Some(
                        "write names like \"example.com\", \"*.example.com\" or \"192.0.2.1\""
                            .into(),
                    ),
                );
                continue;
            }
            if !seen.insert(normalized.clone()) {
                self.error_at(
                    path,
                    "domains",
                    format!("\"{domain}\" is listed twice"),
                    Some("remove the duplicate".into()),
                );
                continue;
            }
            valid.push(normalized);
        }
        valid
    }

    fn challenge(
        &mut self,
        path: &str,
        http01: Option<RawHttp01>,
        dns01: Option<RawDns01>,
        tlsalpn01: Option<RawTlsAlpn01>,
        resolve: &dyn Fn(&Path) -> PathBuf,
    ) -> Option<ChallengeSettings> {
        let count = [http01.is_some(), dns01.is_some(), tlsalpn01.is_some()]
            .iter()
            .filter(|present| **present)
            .count();
        if count == 0 {
            self.error_at(
                path,
                "",
                format!("[{}] has no challenge", display_path(path)),
                Some(
                    "add [certificate.http01] with webroot = \"/var/www/html\" or listen = \"[::]:80\", \
                     or [certificate.dns01] hook = \"…\", or [certificate.tlsalpn01] listen = \"[::]:443\""
                        .into(),
                ),
            );
            return None;
        }
        if count > 1 {
            self.error_at(
                path,
                "",
                format!(
                    "[{}] has more than one challenge section",
                    display_path(path)
                ),
                Some("keep exactly one of http01, dns01 and tlsalpn01".into()),
            );
            return None;
        }
        if let Some(http01) = http01 {
            let http_path = join(path, "http01");
            return match (http01.webroot, http01.listen) {
                (Some(webroot), None) => Some(ChallengeSettings::Http01Webroot(resolve(&webroot))),
                (None, Some(listen)) => self
                    .socket_addr(&http_path, "listen", &listen)
                    .map(ChallengeSettings::Http01Listen),
                (Some(_), Some(_)) => {
                    self.error_at(
                        &http_path,
                        "listen",
                        "[certificate.http01] has both `webroot` and `listen`".into(),
                        Some("keep webroot when a web server serves port 80, or listen for evercert's own responder".into()),
                    );
                    None
                }
                (None, None) => {
                    self.error_at(
                        &http_path,
                        "",
                        "[certificate.http01] needs `webroot` or `listen`".into(),
                        Some("write webroot = \"/var/www/html\" or listen = \"[::]:80\"".into()),
                    );
                    None
                }
            };
        }
        if let Some(dns01) = dns01 {
            let dns_path = join(path, "dns01");
            let wait = self.duration(&dns_path, "wait", dns01.wait, Duration::ZERO);
            let hook =
                self.required(&dns_path, "hook", dns01.hook, "\"/usr/local/bin/dns-hook\"")?;
            return Some(ChallengeSettings::Dns01 { hook, wait });
        }
        let tls_path = join(path, "tlsalpn01");
        let listen = self.required(&tls_path, "listen", tlsalpn01?.listen, "\"[::]:443\"")?;
        self.socket_addr(&tls_path, "listen", &listen)
            .map(|listen| ChallengeSettings::TlsAlpn01 { listen })
    }

    /// Two certificates writing the same file would overwrite each other's keys.
    fn shared_paths(&mut self, certificates: &[CertificateSettings]) {
        let mut owners: HashMap<&Path, &str> = HashMap::new();
        let mut clashes = Vec::new();
        for (index, cert) in certificates.iter().enumerate() {
            for file in [&cert.cert_path, &cert.key_path] {
                if let Some(first) = owners.insert(file, &cert.name)
                    && first != cert.name
                {
                    clashes.push((index, file.display().to_string(), first.to_owned()));
                }
            }
        }
        for (index, file, first) in clashes {
            self.error_at(
                &format!("certificate[{index}]"),
                "cert_path",
                format!("{file} is also written by certificate \"{first}\""),
                Some("each certificate needs its own cert_path and key_path".into()),
            );
        }
    }

    fn monitor(
        &mut self,
        raw: RawMonitor,
        path: &str,
        resolve: &dyn Fn(&Path) -> PathBuf,
    ) -> Option<MonitorSettings> {
        let target = match (raw.path, raw.endpoint) {
            (Some(file), None) => MonitorTarget::File(resolve(&file)),
            (None, Some(text)) => match Endpoint::parse(&text) {
                Some(endpoint) => MonitorTarget::Endpoint(endpoint),
                None => {
                    self.error_at(
                        path,
                        "endpoint",
                        format!("endpoint \"{text}\" is not HOST:PORT"),
                        Some("write endpoint = \"api.example.com:443\"".into()),
                    );
                    return None;
                }
            },
            (Some(_), Some(_)) => {
                self.error_at(
                    path,
                    "endpoint",
                    "[[monitor]] has both `path` and `endpoint`".into(),
                    Some("use one [[monitor]] entry for each file or endpoint".into()),
                );
                return None;
            }
            (None, None) => {
                self.error_at(
                    path,
                    "",
                    "[[monitor]] needs `path` or `endpoint`".into(),
                    Some("add path = \"/etc/ssl/partner/bundle.pem\" or endpoint = \"api.example.com:443\"".into()),
                );
                return None;
            }
        };
        let name = raw
            .name
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| match &target {
                MonitorTarget::File(file) => file.display().to_string(),
                MonitorTarget::Endpoint(endpoint) => endpoint.to_string(),
            });
        Some(MonitorSettings { name, target })
    }

    fn alerts(&mut self, raw: RawAlerts) -> AlertSettings {
        if let Some(webhook) = &raw.webhook
            && !(webhook.starts_with("https://") || webhook.starts_with("http://"))
        {
            self.error_at(
                "alerts",
                "webhook",
                format!("webhook \"{webhook}\" is not an http(s) URL"),
                Some("write webhook = \"https://hooks.example.com/…\"".into()),
            );
        }
        AlertSettings {
            command: raw.command.filter(|command| !command.trim().is_empty()),
            webhook: raw.webhook,
            timeout: self.duration("alerts", "timeout", raw.timeout, DEFAULT_ALERT_TIMEOUT),
        }
    }

    fn metrics(&mut self, raw: RawMetrics) -> Option<MetricsSettings> {
        let listen = self.required("metrics", "listen", raw.listen, "\"127.0.0.1:9725\"")?;
        self.socket_addr("metrics", "listen", &listen)
            .map(|listen| MetricsSettings { listen })
    }
}

/// Checks a DNS name (maybe a `*.` wildcard) or an IP address, lower-cased.
fn check_identifier(name: &str) -> Result<(), &'static str> {
    if name.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let host = name.strip_prefix("*.").unwrap_or(name);
    if host.is_empty() {
        return Err("it is empty");
    }
    if host.contains('*') {
        return Err("a wildcard may only be the whole first label, as in *.example.com");
    }
    if host.len() > 253 {
        return Err("it is longer than 253 characters");
    }
    for label in host.split('.') {
        if label.is_empty() {
            return Err("it has an empty label");
        }
        if label.len() > 63 {
            return Err("a label is longer than 63 characters");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label starts or ends with '-'");
        }
        if !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(
                "it has characters other than letters, digits, '-' and '.' (write IDNs in their xn-- form)",
            );
        }
    }
    Ok(())
}

fn type_hint(message: &str) -> String {
    if message.contains("invalid type") {
        "check the value's type: strings need quotes, lists need [ ], tables need their own [header]"
            .into()
    } else {
        "see examples/evercert.toml for the expected shape".into()
    }
}

fn closest<'a>(name: &str, valid: &[&'a str]) -> Option<&'a str> {
    valid
        .iter()
        .map(|candidate| (strsim::jaro_winkler(name, candidate), *candidate))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

fn join(path: &str, key: &str) -> String {
    match (path.is_empty(), key.is_empty()) {
        (true, _) => key.to_owned(),
        (_, true) => path.to_owned(),
        _ => format!("{path}.{key}"),
    }
}

/// `certificate[1].http01` → `certificate #2 http01`, the way an operator counts.
fn display_path(path: &str) -> String {
    let mut out = String::new();
    for part in path.split('.') {
        if !out.is_empty() {
            out.push('.');
        }
        match part.split_once('[') {
            Some((name, index)) => {
                let index: usize = index.trim_end_matches(']').parse().unwrap_or(0);
                out.push_str(&format!("{name} #{}", index + 1));
            }
            None => out.push_str(part),
        }
    }
    out
}

/// The byte offset at which each line starts: 0, then one past every `\n`.
fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(newline, _)| newline + 1))
        .collect()
}

/// 1-based line and (byte) column of `offset`, from [`line_starts`].
fn line_column(text: &str, line_starts: &[usize], offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    // line_starts[0] == 0 <= offset, so the line is at least 1.
    let line = line_starts.partition_point(|&start| start <= offset);
    (line, offset - line_starts[line - 1] + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Config, ConfigErrors> {
        parse(text, Path::new("/etc/evercert/evercert.toml"))
    }

    fn errors(text: &str) -> Vec<ConfigError> {
        match parse_text(text) {
            Ok(_) => panic!("expected errors for:\n{text}"),
            Err(ConfigErrors(errors)) => errors,
        }
    }

    const MINIMAL: &str = r#"
[[certificate]]
name = "shop"
domains = ["shop.example.com"]
cert_path = "/etc/tls/shop/fullchain.pem"
key_path = "/etc/tls/shop/privkey.pem"
[certificate.http01]
webroot = "/var/www/html"
"#;

    #[test]
    fn minimal_config_gets_the_defaults() {
        let config = parse_text(MINIMAL).unwrap();
        assert_eq!(config.state_dir, PathBuf::from("/var/lib/evercert"));
        assert_eq!(config.acme.directory, LETSENCRYPT);
        assert_eq!(config.acme.staging_directory, LETSENCRYPT_STAGING);
        assert_eq!(config.renewal.renew_before, RenewBefore::DEFAULT);
        assert!(config.renewal.ari);
        let cert = &config.certificates[0];
        assert_eq!(cert.key_type, KeyType::EcdsaP256);
        assert_eq!(cert.key_mode, 0o600);
        assert_eq!(
            cert.challenge,
            ChallengeSettings::Http01Webroot("/var/www/html".into())
        );
    }

    /// docs/configuration.md documents every key the parser accepts, so it cannot drift.
    #[test]
    fn every_key_is_documented() {
        let doc = include_str!("../../docs/configuration.md");
        let sections = [
            "",
            "acme",
            "acme.eab",
            "renewal",
            "certificate",
            "certificate.http01",
            "certificate.dns01",
            "certificate.tlsalpn01",
            "monitor",
            "alerts",
            "metrics",
            "discover",
            "cluster",
            "cluster.tls",
        ];
        let mut missing = Vec::new();
        for section in sections {
            for key in table_keys(section).unwrap() {
                let nested = table_keys(&join(section, key)).is_some();
                let documented = doc.contains(&format!("`{key}`"))
                    || doc.contains(&format!("`{key} ="))
                    || doc.contains(&format!("`{section}.{key}`"))
                    || doc.contains(&format!("{section}.{key}`"))
                    || (nested && doc.contains(&format!("[{}]", join(section, key))))
                    || (nested && doc.contains(&format!("[[{key}]]")));
                if !documented {
                    missing.push(join(section, key));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "not in docs/configuration.md: {missing:?}"
        );
    }

    #[test]
    fn field_lists_come_from_the_structs() {
        assert!(field_names::<RawCertificate>().contains(&"domains"));
        assert!(field_names::<RawAcme>().contains(&"ca_bundle"));
        assert_eq!(field_names::<RawHttp01>(), &["webroot", "listen"]);
    }

    #[test]
    fn unknown_key_names_the_closest_one_with_its_line() {
        let text = MINIMAL.replace("domains =", "domain =");
        let errors = errors(&text);
        assert_eq!(errors.len(), 2, "{errors:?}");
        let unknown = errors
            .iter()
            .find(|e| e.message.contains("unknown key"))
            .unwrap();
        assert_eq!(unknown.line, 4);
        assert_eq!(unknown.column, 1);
        assert_eq!(unknown.hint.as_deref(), Some("did you mean `domains`?"));
        assert!(
            errors
                .iter()
                .any(|e| e.message.contains("has no `domains`"))
        );
    }

    #[test]
    fn collects_every_error_at_once() {
        let text = r#"
state_dir = "/var/lib/evercert"
colour = "blue"

[acme]
directory = "letsencrpyt"
contact = ["ops@example.com"]

[renewal]
renew_before = "3/2"
warn_before = "30 days"
critical_before = "7d"

[[certificate]]
name = "shop"
domains = []
cert_path = "/etc/tls/shop/fullchain.pem"
key_path = "/etc/tls/shop/privkey.pem"
key_type = "ecdsa-p265"
[certificate.http01]
webroot = "/var/www/html"
listen = "[::]:80"

[[certificate]]
name = "shop"
domains = ["*.example.com", "bad..name"]
cert_path = "/etc/tls/b/fullchain.pem"
key_path = "/etc/tls/b/privkey.pem"
verify = ["nonsense"]
[certificate.http01]
listen = "port 80"

[[certificate]]
name = "nochallenge"
domains = ["a.example.com"]
cert_path = "/etc/tls/c/fullchain.pem"
key_path = "/etc/tls/c/privkey.pem"

[metrics]
listen = "localhost"
"#;
        let errors = errors(text);
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let all = messages.join("\n");
        for expected in [
            ":3:1: unknown key `colour` at the top level",
            ":6:13: `directory` = \"letsencrpyt\" is neither an alias",
            "contact \"ops@example.com\" is not a mailto: URL",
            "renew_before = \"3/2\" is neither a fraction",
            "'30 days' is not a duration",
            "`domains` is empty",
            "unknown key_type \"ecdsa-p265\"",
            "did you mean \"ecdsa-p256\"?",
            "has both `webroot` and `listen`",
            "duplicate certificate name \"shop\"",
            "\"bad..name\" is not a valid domain name",
            "verify endpoint \"nonsense\" is not HOST:PORT",
            "`listen` = \"port 80\" is not a socket address",
            "[certificate #3] has no challenge",
            "`listen` = \"localhost\" is not a socket address",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
        // Sorted by position, every one with a line.
        assert!(errors.windows(2).all(|w| w[0].line <= w[1].line));
        assert!(errors.iter().all(|e| e.line > 0));
    }

    #[test]
    fn wrong_types_are_reported_per_section() {
        let text = r#"
[renewal]
ari = "yes"

[[certificate]]
name = "shop"
domains = "shop.example.com"
cert_path = "/a"
key_path = "/b"
[certificate.http01]
webroot = "/w"
"#;
        let errors = errors(text);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].line, 3);
        assert_eq!(errors[1].line, 7);
        assert!(errors[1].message.contains("certificate #1"));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let errors = errors("[acme\ndirectory = 1");
        assert_eq!(errors[0].line, 1);
        assert!(errors[0].message.contains("TOML syntax error"));
    }

    #[test]
    fn wildcards_need_dns01_and_key_modes_stay_private() {
        let text = MINIMAL
            .replace("\"shop.example.com\"", "\"*.shop.example.com\"")
            .replace("name = \"shop\"", "name = \"shop\"\nkey_mode = 0o644");
        let all = errors(&text)
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(all.contains("can only be validated with dns-01"), "{all}");
        assert!(all.contains("key_mode = 0o644"), "{all}");
    }

    #[test]
    fn archive_keep_defaults_to_five_and_must_keep_live_and_previous() {
        let config = parse(MINIMAL, Path::new("/etc/evercert/evercert.toml")).unwrap();
        assert_eq!(config.renewal.archive_keep, 5);
        let with = |keep: &str| format!("[renewal]\narchive_keep = {keep}\n{MINIMAL}");
        let config = parse(&with("12"), Path::new("/etc/evercert/evercert.toml")).unwrap();
        assert_eq!(config.renewal.archive_keep, 12);
        for bad in ["1", "0", "-3", "\"5\""] {
            let all = errors(&with(bad))
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n");
            assert!(all.contains(":2:"), "{bad}: the line is named: {all}");
            assert!(
                all.contains("archive_keep = 5") || all.contains("expected i64"),
                "{bad}: {all}"
            );
        }
    }

    #[test]
    fn relative_paths_are_anchored_at_the_config_file() {
        let text = MINIMAL
            .replace("/etc/tls/shop/fullchain.pem", "tls/fullchain.pem")
            .replace("[[certificate]]", "state_dir = \"state\"\n[[certificate]]");
        let config = parse(&text, Path::new("/srv/evercert/evercert.toml")).unwrap();
        assert_eq!(config.state_dir, PathBuf::from("/srv/evercert/state"));
        assert_eq!(
            config.certificates[0].cert_path,
            PathBuf::from("/srv/evercert/tls/fullchain.pem")
        );
    }

    #[test]
    fn eab_secret_is_never_echoed() {
        let text = format!(
            "[acme]\neab = {{ kid = \"kid-1\", hmac_key = \"not base64 !!secret!!\" }}\n{MINIMAL}"
        );
        let all = errors(&text)
            .iter()
            .map(ToString::to_string)
            .collect::<String>();
        assert!(all.contains("not base64url"));
        assert!(!all.contains("secret"));
        let good =
            format!("[acme]\neab = {{ kid = \"kid-1\", hmac_key = \"c2VjcmV0\" }}\n{MINIMAL}");
        let config = parse_text(&good).unwrap();
        let eab = config.acme.eab.unwrap();
        assert_eq!(eab.hmac_key, b"secret");
        assert!(!format!("{eab:?}").contains("c2VjcmV0"));
    }

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            Endpoint::parse("[::1]:443").unwrap().to_string(),
            "[::1]:443"
        );
        assert_eq!(
            Endpoint::parse("Shop.Example.com:8443").unwrap().host,
            "shop.example.com"
        );
        for bad in ["shop", ":443", "a b:1", "host:99999", "http://x:1"] {
            assert!(Endpoint::parse(bad).is_none(), "{bad}");
        }
    }
}
