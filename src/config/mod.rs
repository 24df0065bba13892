//! The configuration file: parsing, validation and the settings every command works from.
//!
//! Validation collects every problem it can find in one pass — unknown keys with the closest
//! valid one, wrong types, bad values, missing keys, contradictions — each with file:line:column
//! and what to write instead, so that an operator fixes a config in one round, not ten.
//! Parsing walks toml's spanned document: unknown keys are found against the field lists of
//! the `Raw*` structs (which `deny_unknown_fields`), then each section is deserialized on its
//! own so that one bad section does not hide the errors of the next.

mod dns01;
mod errors;
mod parse;
mod raw;
mod types;
mod validate;

use time::Duration;

pub use errors::{ConfigError, ConfigErrors};
pub use parse::{load, parse};
pub use types::*;

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
/// How long the primary CA may keep failing before a fallback CA is tried: long enough that
/// a CA's short outage does not move certificates to another CA, far shorter than the
/// weeks renew_before leaves.
const DEFAULT_FALLBACK_AFTER: Duration = Duration::days(1);
/// Versions of each certificate kept in the archive: with 90-day certificates over a year of
/// history, with 6-day ones still a few weeks of rollbacks.
const DEFAULT_ARCHIVE_KEEP: usize = 5;

/// A configuration to build test cases on, for the tests of every module.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::Path;

    use super::{Config, ConfigErrors, parse};

    /// One certificate and nothing else (8 lines, the first one empty).
    pub(crate) const MINIMAL: &str = r#"
[[certificate]]
name = "shop"
domains = ["shop.example.com"]
cert_path = "/etc/tls/shop/fullchain.pem"
key_path = "/etc/tls/shop/privkey.pem"
[certificate.http01]
webroot = "/var/www/html"
"#;

    /// Parses `text` as the file /etc/evercert/evercert.toml.
    pub(crate) fn parse_text(text: &str) -> Result<Config, ConfigErrors> {
        parse(text, Path::new("/etc/evercert/evercert.toml"))
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::parse::*;
    use super::raw::*;
    use super::testing::{MINIMAL, parse_text};
    use super::*;
    use crate::policy::RenewBefore;

    fn errors(text: &str) -> Vec<ConfigError> {
        match parse_text(text) {
            Ok(_) => panic!("expected errors for:\n{text}"),
            Err(ConfigErrors(errors)) => errors,
        }
    }

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
            "acme.fallback",
            "renewal",
            "certificate",
            "certificate.http01",
            "certificate.dns01",
            "certificate.dns01.rfc2136",
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
