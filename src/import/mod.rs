//! `evercert import certbot`: an evercert configuration from certbot's lineages.
//!
//! certbot keeps one `renewal/NAME.conf` per lineage (configobj's INI dialect) and the issued
//! files in `archive/NAME/`, reached through the symlinks in `live/NAME/`. The import keeps
//! certbot's live paths as `cert_path`/`key_path`, so no web server configuration changes: on
//! a certificate's first renewal evercert archives the current pair and replaces the symlinks
//! with its own (docs/storage.md).
//!
//! What cannot be translated — authenticators that edit the web server's configuration, the
//! manual plugin, DNS plugins — is still imported, with a placeholder challenge and a `TODO:`
//! comment saying what to fill in. The certificate thus stays managed: if nobody fills it in,
//! its renewal fails loudly and alerts, where a commented-out certificate would expire
//! unwatched once certbot's timer is off (the postmortem's outage).
//!
//! Reading (`read_certbot`) is apart from translating (`translate`) and rendering (`render`),
//! which take no I/O and are unit-tested here; tests/it/import_certbot.rs drives the binary
//! on certbot layouts built by the test.

mod certbot;
mod ini;
mod render;
mod translate;
mod write;

use std::io;
use std::path::PathBuf;

pub use certbot::{
    Certbot, DirectoryHook, Lineage, NGINX_TEST_ADVICE, nginx_test_warnings, read_certbot,
    runs_nginx_test,
};
pub use ini::{IniValue, RenewalConf};
pub use render::{header_notes, render, render_certificate, summary};
pub use translate::{Challenge, Import, Translated, translate};
pub use write::write_new_file;

/// Where certbot keeps its configuration unless told otherwise (`--config-dir`).
pub const DEFAULT_CERTBOT_DIR: &str = "/etc/letsencrypt";
/// The placeholder written where a dns-01 hook has to be filled in. It is not meant to exist:
/// a renewal that reaches it fails with its name in the message.
pub const PLACEHOLDER_DNS_HOOK: &str = "/etc/evercert/TODO-dns-01-hook";

/// Why nothing could be imported at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(
        "{path}: not found; is certbot's configuration elsewhere? name it with --from DIR (the directory holding renewal/, live/ and archive/)"
    )]
    NoRenewalDir { path: PathBuf },
    #[error("{path}: cannot list certbot's renewal configurations: {source}")]
    ListRenewalDir { path: PathBuf, source: io::Error },
    #[error(
        "{path}: no certbot lineages (no *.conf files); nothing to import. Is this certbot's configuration directory?"
    )]
    NoLineages { path: PathBuf },
}

/// Why `--write FILE` did not write.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(
        "{path} already exists; evercert import never overwrites a file: choose another name, or move the old file away first"
    )]
    Exists { path: PathBuf },
    #[error("cannot write {path}: {source}; nothing was written")]
    Io { path: PathBuf, source: io::Error },
}

#[cfg(test)]
mod tests {
    use super::ini::parse_value;
    use super::render::{comment, toml_string};
    use super::translate::{certbot_duration, sanitize_name, unique_name};
    use super::*;

    const WEBROOT_CONF: &str = "\
# renew_before_expiry = 30 days
version = 2.11.0
archive_dir = /etc/letsencrypt/archive/shop.example.com
cert = /etc/letsencrypt/live/shop.example.com/cert.pem
privkey = /etc/letsencrypt/live/shop.example.com/privkey.pem
chain = /etc/letsencrypt/live/shop.example.com/chain.pem
fullchain = /etc/letsencrypt/live/shop.example.com/fullchain.pem

# Options used in the renewal process
[renewalparams]
account = 0123456789abcdef0123456789abcdef
authenticator = webroot
webroot_path = /var/www/html,
server = https://acme-v02.api.letsencrypt.org/directory
key_type = ecdsa
deploy_hook = \"systemctl reload nginx, then log\"
pref_challs = http-01,
[[webroot_map]]
shop.example.com = /var/www/html
www.shop.example.com = /var/www/html
";

    #[test]
    fn configobj_values_lists_quotes_and_sections() {
        let conf = RenewalConf::parse(WEBROOT_CONF);
        assert_eq!(
            conf.top("fullchain").as_deref(),
            Some("/etc/letsencrypt/live/shop.example.com/fullchain.pem")
        );
        assert_eq!(conf.top("renew_before_expiry"), None, "commented out");
        assert_eq!(
            conf.params["webroot_path"],
            IniValue::List(vec!["/var/www/html".into()])
        );
        assert_eq!(conf.param("authenticator").as_deref(), Some("webroot"));
        assert_eq!(
            conf.param("deploy_hook").as_deref(),
            Some("systemctl reload nginx, then log")
        );
        assert_eq!(conf.param_items("pref_challs"), vec!["http-01"]);
        assert_eq!(
            conf.webroot_map,
            vec![
                ("shop.example.com".into(), "/var/www/html".into()),
                ("www.shop.example.com".into(), "/var/www/html".into()),
            ]
        );
    }

    #[test]
    fn configobj_edge_cases() {
        assert_eq!(
            parse_value(" a, 'b, c' , d # note"),
            IniValue::List(vec!["a".into(), "b, c".into(), "d".into()])
        );
        assert_eq!(parse_value(" ,"), IniValue::List(vec![]));
        assert_eq!(
            parse_value(" value # comment"),
            IniValue::Single("value".into())
        );
        assert_eq!(parse_value(" '''it's'''"), IniValue::Single("it's".into()));
        assert_eq!(parse_value(""), IniValue::Single(String::new()));
        let conf =
            RenewalConf::parse("[renewalparams]\ninstaller = None\nnot a key\n[other]\nx = 1\n");
        assert_eq!(conf.param("installer"), None);
        assert_eq!(conf.param("x"), None);
    }

    #[test]
    fn nginx_test_is_spotted_in_shell_text() {
        for runs in [
            "nginx -t && systemctl reload nginx",
            "/usr/sbin/nginx -tq; service nginx reload",
            "nginx -g 'daemon on; master_process on;' -t",
            "if nginx -T >/dev/null; then systemctl reload nginx; fi",
            "#!/bin/sh\nset -e\n/usr/sbin/nginx -q -t\nnginx -s reload\n",
        ] {
            assert!(runs_nginx_test(runs), "{runs}");
        }
        for not in [
            "systemctl reload nginx",
            "nginx -s reload",
            "nginx -g 'pid /tmp/test.pid;' -s reload",
            "echo nginx; ls -t",
            "nginx-reload -t",
        ] {
            assert!(!runs_nginx_test(not), "{not}");
        }
    }

    #[test]
    fn certbot_durations() {
        assert_eq!(certbot_duration("30 days").as_deref(), Some("30d"));
        assert_eq!(certbot_duration("1 day").as_deref(), Some("1d"));
        assert_eq!(certbot_duration("2 weeks").as_deref(), Some("14d"));
        assert_eq!(certbot_duration("12 hours").as_deref(), Some("12h"));
        assert_eq!(certbot_duration("soon"), None);
        assert_eq!(certbot_duration("3 fortnights"), None);
    }

    #[test]
    fn names_are_made_valid_and_unique() {
        assert_eq!(
            sanitize_name("shop.example.com-0001"),
            "shop.example.com-0001"
        );
        assert_eq!(sanitize_name("ünï code"), "-n--code");
        let used = vec!["a".to_owned(), "a-2".to_owned()];
        assert_eq!(unique_name("a", &used), "a-3");
        assert_eq!(unique_name("b", &used), "b");
    }

    #[test]
    fn comments_wrap_and_keep_script_lines() {
        let mut out = String::new();
        comment(
            &mut out,
            "TODO: ",
            &format!("{}\n#!/bin/sh\nexit 0", "word ".repeat(40)),
        );
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines
                .iter()
                .all(|line| line.starts_with('#') && line.len() <= 100),
            "{out}"
        );
        assert!(lines[0].starts_with("# TODO: word"));
        assert!(lines[1].starts_with("#       word"));
        assert!(out.contains("#   #!/bin/sh\n#   exit 0\n"));
    }

    #[test]
    fn toml_strings_round_trip() {
        for text in [
            "a \"b\" \\ c",
            "it's",
            "both ' and \"",
            "line\nbreak",
            "tab\there",
        ] {
            let parsed: toml::Table = format!("x = {}", toml_string(text)).parse().unwrap();
            assert_eq!(parsed["x"].as_str(), Some(text));
        }
    }
}
