//! `[cluster]`: which etcd the fleet shares, under which prefix, with which key.
//!
//! Parsed like every other section (`config::Parser` checks unknown keys against
//! [`RawCluster`]'s fields and reports each problem with file:line); this module only turns the
//! raw table into [`ClusterSettings`], reporting through the callback it is given so that the
//! config module keeps a single error list.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::units::parse_duration;

/// How long a lock holder's lease lives without a keep-alive: long enough to ride out a GC
/// pause or a slow etcd, short enough that a dead holder is replaced within seconds.
const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);
/// Deadline of every single etcd request (one endpoint, one try).
const DEFAULT_ETCD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the holder waits for the live hosts to acknowledge an http-01 token.
const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(20);
/// Reloads are spread over this much time so that a fleet does not reload all at once.
const DEFAULT_RELOAD_JITTER: Duration = Duration::from_secs(10);
/// A live host that has not applied the current version after this long raises an alert.
const DEFAULT_LAG_ALERT: Duration = Duration::from_secs(3600);

/// `[cluster]` as written; every key optional so that a missing one is reported with a hint.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCluster {
    name: Option<String>,
    etcd: Option<Vec<String>>,
    prefix: Option<String>,
    secret_key_file: Option<String>,
    tls: Option<RawClusterTls>,
    username: Option<String>,
    password_file: Option<String>,
    timeout: Option<String>,
    lease_ttl: Option<String>,
    ack_timeout: Option<String>,
    reload_jitter: Option<String>,
    lag_alert: Option<String>,
}

/// `[cluster.tls]`: client certificate authentication to etcd.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClusterTls {
    ca: Option<String>,
    cert: Option<String>,
    key: Option<String>,
}

/// A validated `[cluster]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// This host in the fleet.
    pub name: String,
    /// Client URLs of the etcd members.
    pub etcd: Vec<String>,
    /// Every key lives under it (no trailing slash).
    pub prefix: String,
    /// 32 random bytes, base64: the fleet key that encrypts private keys in etcd.
    pub secret_key_file: PathBuf,
    pub tls: Option<EtcdTls>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Deadline of each etcd request.
    pub timeout: Duration,
    pub lease_ttl: Duration,
    pub ack_timeout: Duration,
    pub reload_jitter: Duration,
    pub lag_alert: Duration,
}

/// Files for TLS to etcd: the CA that signed the members' certificates, and this host's
/// client certificate and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Reports one problem: the key it is about (relative to `[cluster]`), the message, a hint.
pub(crate) type Report<'a> = dyn FnMut(&str, String, Option<String>) + 'a;

/// Checks `[cluster]`; `None` when something required is missing or wrong (all reported).
pub(crate) fn validate(
    raw: RawCluster,
    resolve: &dyn Fn(&Path) -> PathBuf,
    report: &mut Report<'_>,
) -> Option<ClusterSettings> {
    let mut ok = true;
    let name = match raw.name {
        Some(name) if crate::names::is_valid(&name) => name,
        Some(name) => {
            report(
                "name",
                format!("cluster name {name:?} is not a valid host name here"),
                Some(format!("use {}", crate::names::RULE)),
            );
            ok = false;
            name
        }
        None => hostname(),
    };
    let etcd = raw.etcd.unwrap_or_default();
    if etcd.is_empty() {
        report(
            "etcd",
            "[cluster] needs the client URLs of the etcd members".into(),
            Some(
                "write etcd = [\"http://10.0.0.5:2379\", \"http://10.0.0.6:2379\", \"http://10.0.0.7:2379\"]"
                    .into(),
            ),
        );
        ok = false;
    }
    for url in &etcd {
        let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
        let host = url.split_once("://").map_or("", |(_, rest)| rest);
        if !scheme_ok || host.is_empty() || host.contains('/') {
            report(
                "etcd",
                format!("etcd endpoint {url:?} is not a client URL"),
                Some("write it as \"http://HOST:2379\" (or https:// with [cluster.tls])".into()),
            );
            ok = false;
        }
    }
    let prefix = match raw.prefix {
        Some(prefix)
            if prefix.starts_with('/')
                && prefix.len() > 1
                && !prefix.ends_with('/')
                && !prefix.contains("//") =>
        {
            prefix
        }
        Some(prefix) => {
            report(
                "prefix",
                format!("prefix {prefix:?} must start with / and not end with /"),
                Some("write prefix = \"/evercert/shop\"".into()),
            );
            ok = false;
            prefix
        }
        None => {
            report(
                "prefix",
                "[cluster] needs a prefix: every key of this fleet lives under it".into(),
                Some("write prefix = \"/evercert/shop\"".into()),
            );
            ok = false;
            String::new()
        }
    };
    let secret_key_file = match raw.secret_key_file {
        Some(path) if !path.is_empty() => resolve(Path::new(&path)),
        _ => {
            report(
                "secret_key_file",
                "[cluster] needs secret_key_file: the fleet key, the same file on every host"
                    .into(),
                Some(
                    "create it with `evercert cluster keygen > /etc/evercert/fleet.key` (mode 0600), copy it to every host, and write secret_key_file = \"/etc/evercert/fleet.key\""
                        .into(),
                ),
            );
            ok = false;
            PathBuf::new()
        }
    };
    let tls = match raw.tls {
        None => None,
        Some(tls) => {
            let mut file = |key: &str, value: Option<String>| match value {
                Some(path) if !path.is_empty() => Some(resolve(Path::new(&path))),
                _ => {
                    report(
                        "tls",
                        format!("[cluster.tls] needs `{key}`"),
                        Some(
                            "write tls = { ca = \"/etc/evercert/etcd-ca.pem\", cert = \"/etc/evercert/etcd-client.pem\", key = \"/etc/evercert/etcd-client.key\" }"
                                .into(),
                        ),
                    );
                    None
                }
            };
            let (ca, cert, key) = (
                file("ca", tls.ca),
                file("cert", tls.cert),
                file("key", tls.key),
            );
            match (ca, cert, key) {
                (Some(ca), Some(cert), Some(key)) => Some(EtcdTls { ca, cert, key }),
                _ => {
                    ok = false;
                    None
                }
            }
        }
    };
    if tls.is_some() && etcd.iter().any(|url| url.starts_with("http://")) {
        report(
            "etcd",
            "[cluster.tls] is set but some etcd endpoints are http://".into(),
            Some("write the endpoints as https:// URLs".into()),
        );
        ok = false;
    }
    let password_file = raw
        .password_file
        .filter(|path| !path.is_empty())
        .map(|path| resolve(Path::new(&path)));
    if raw.username.is_some() != password_file.is_some() {
        report(
            if raw.username.is_some() {
                "username"
            } else {
                "password_file"
            },
            "`username` and `password_file` go together".into(),
            Some(
                "write both (username = \"evercert\", password_file = \"/etc/evercert/etcd.password\") or neither"
                    .into(),
            ),
        );
        ok = false;
    }
    let mut duration = |key: &str, value: Option<String>, default: Duration, min: Duration| {
        let Some(text) = value else { return default };
        match parse_duration(&text) {
            Ok(parsed) => {
                let parsed = parsed.unsigned_abs();
                if parsed < min {
                    report(
                        key,
                        format!("`{key}` = \"{text}\" is too short"),
                        Some(format!("use at least {}s", min.as_secs())),
                    );
                    ok = false;
                }
                parsed
            }
            Err(err) => {
                report(key, format!("`{key}`: {err}"), None);
                ok = false;
                default
            }
        }
    };
    let second = Duration::from_secs(1);
    let timeout = duration("timeout", raw.timeout, DEFAULT_ETCD_TIMEOUT, second);
    // etcd's own minimum lease is a few seconds; below that keep-alives cannot keep up.
    let lease_ttl = duration(
        "lease_ttl",
        raw.lease_ttl,
        DEFAULT_LEASE_TTL,
        Duration::from_secs(3),
    );
    let ack_timeout = duration("ack_timeout", raw.ack_timeout, DEFAULT_ACK_TIMEOUT, second);
    let reload_jitter = duration(
        "reload_jitter",
        raw.reload_jitter,
        DEFAULT_RELOAD_JITTER,
        Duration::ZERO,
    );
    let lag_alert = duration("lag_alert", raw.lag_alert, DEFAULT_LAG_ALERT, second);
    ok.then_some(ClusterSettings {
        name,
        etcd,
        prefix,
        secret_key_file,
        tls,
        username: raw.username,
        password_file,
        timeout,
        lease_ttl,
        ack_timeout,
        reload_jitter,
        lag_alert,
    })
}

fn hostname() -> String {
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    crate::names::sanitize(&name, "host")
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::testing::{self, MINIMAL};
    use crate::config::{Config, ConfigErrors};

    /// A whole configuration ending in `cluster`: 10 lines before it.
    fn parse_text(cluster: &str) -> Result<Config, ConfigErrors> {
        testing::parse_text(&format!(
            "\n[acme]\ncontact = [\"mailto:ops@example.com\"]{MINIMAL}{cluster}"
        ))
    }

    #[test]
    fn no_cluster_means_none() {
        assert_eq!(parse_text("").unwrap().cluster, None);
    }

    #[test]
    fn a_full_cluster_section_parses_with_defaults_and_relative_paths() {
        let config = parse_text(
            r#"
[cluster]
name = "web-1"
etcd = ["https://10.0.0.5:2379", "https://10.0.0.6:2379"]
prefix = "/evercert/shop"
secret_key_file = "fleet.key"
tls = { ca = "ca.pem", cert = "/etc/evercert/client.pem", key = "/etc/evercert/client.key" }
lease_ttl = "5s"
"#,
        )
        .unwrap();
        let cluster = config.cluster.unwrap();
        assert_eq!(cluster.name, "web-1");
        assert_eq!(cluster.etcd.len(), 2);
        assert_eq!(cluster.prefix, "/evercert/shop");
        assert_eq!(
            cluster.secret_key_file,
            Path::new("/etc/evercert/fleet.key")
        );
        assert_eq!(
            cluster.tls.unwrap().ca,
            Path::new("/etc/evercert/ca.pem").to_owned()
        );
        assert_eq!(cluster.lease_ttl, Duration::from_secs(5));
        assert_eq!(cluster.timeout, Duration::from_secs(5));
        assert_eq!(cluster.lag_alert, Duration::from_secs(3600));
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let errors = parse_text(
            r#"
[cluster]
name = "web 1"
etcd = ["10.0.0.5:2379"]
prefix = "evercert/"
username = "evercert"
lease_ttl = "1s"
ack_timout = "5s"
"#,
        )
        .unwrap_err()
        .0;
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let find = |needle: &str| {
            errors
                .iter()
                .find(|error| error.message.contains(needle))
                .unwrap_or_else(|| panic!("no error about {needle}: {text:#?}"))
        };
        // 10 lines before the cluster text; [cluster] is line 12.
        assert_eq!(find("valid host name").line, 13);
        assert_eq!(find("not a client URL").line, 14);
        assert_eq!(find("must start with /").line, 15);
        assert_eq!(find("go together").line, 16);
        assert_eq!(find("too short").line, 17);
        let unknown = find("unknown key `ack_timout`");
        assert_eq!(unknown.line, 18);
        assert_eq!(unknown.hint.as_deref(), Some("did you mean `ack_timeout`?"));
        let missing = find("needs secret_key_file");
        assert!(
            missing
                .hint
                .as_deref()
                .unwrap()
                .contains("evercert cluster keygen")
        );
        assert_eq!(errors.len(), 7, "{text:#?}");
    }

    #[test]
    fn tls_needs_https_and_all_three_files() {
        let errors = parse_text(
            r#"
[cluster]
etcd = ["http://127.0.0.1:2379"]
prefix = "/p"
secret_key_file = "/k"
tls = { ca = "/ca.pem", cert = "/c.pem" }
"#,
        )
        .unwrap_err()
        .0;
        assert!(errors.iter().any(|e| e.message.contains("needs `key`")));
    }

    /// The commented `[cluster]` block of examples/evercert.toml parses once uncommented.
    #[test]
    fn the_example_block_parses() {
        let example = include_str!("../../examples/evercert.toml");
        let block: String = example
            .lines()
            .skip_while(|line| *line != "# [cluster]")
            .take_while(|line| line.starts_with("# "))
            .map(|line| format!("{}\n", &line[2..]))
            .collect();
        assert!(block.starts_with("[cluster]\n"), "{block}");
        // The example uses http:// endpoints, so its commented tls line is left out here.
        let block: String = block
            .lines()
            .filter(|line| !line.starts_with("tls"))
            .map(|line| format!("{line}\n"))
            .collect();
        let cluster = parse_text(&block).unwrap().cluster.unwrap();
        assert_eq!(cluster.etcd.len(), 3);
        assert_eq!(cluster.username.as_deref(), Some("evercert"));
    }
}
