//! Validation: each section's raw values checked and turned into settings, every problem
//! recorded with its place and a hint.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use base64::Engine;
use time::Duration;

use super::parse::{Parser, closest, display_path, join};
use super::raw::{
    NumberOrText, RawAcme, RawAlerts, RawCertificate, RawDiscover, RawDns01, RawEab, RawHttp01,
    RawMetrics, RawMonitor, RawRenewal, RawTlsAlpn01,
};
use super::{
    AcmeSettings, AlertSettings, CertificateSettings, ChallengeSettings, DEFAULT_ACME_TIMEOUT,
    DEFAULT_ALERT_TIMEOUT, DEFAULT_ARCHIVE_KEEP, DEFAULT_FALLBACK_AFTER, DEFAULT_HOOK_TIMEOUT,
    DEFAULT_KEY_MODE, DEFAULT_VERIFY_CONSECUTIVE, DEFAULT_VERIFY_TIMEOUT, Endpoint,
    ExternalAccountBinding, FallbackCa, KeyType, MAX_VERIFY_CONSECUTIVE, MetricsSettings,
    MonitorSettings, MonitorTarget, RenewalSettings, resolve_directory,
};
use crate::policy::{RenewBefore, Thresholds};
use crate::units::parse_duration;

impl Parser<'_> {
    pub(super) fn discover(
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

    pub(super) fn acme(
        &mut self,
        raw: RawAcme,
        resolve: &dyn Fn(&Path) -> PathBuf,
    ) -> AcmeSettings {
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
        let eab = raw.eab.and_then(|eab| self.eab("acme", eab));
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
        let mut fallbacks: Vec<FallbackCa> = Vec::new();
        for (index, raw) in raw.fallback.unwrap_or_default().into_iter().enumerate() {
            let path = format!("acme.fallback[{index}]");
            let Some(value) = self.required(
                &path,
                "directory",
                raw.directory,
                "\"https://acme.zerossl.com/v2/DV90\"",
            ) else {
                continue;
            };
            let url = resolve_directory(&value);
            if !url.starts_with("https://") {
                self.error_at(
                    &path,
                    "directory",
                    format!("`directory` = \"{value}\" is neither an alias nor an https:// URL"),
                    Some("write the fallback CA's directory URL, like \"https://acme.zerossl.com/v2/DV90\"".into()),
                );
                continue;
            }
            if url == directory || fallbacks.iter().any(|ca| ca.directory == url) {
                self.error_at(
                    &path,
                    "directory",
                    format!("the CA {url} is already configured"),
                    Some("a fallback must be another CA than [acme] directory and the other fallbacks".into()),
                );
                continue;
            }
            let eab = raw.eab.and_then(|eab| self.eab(&path, eab));
            let fallback_after = self.duration(
                &path,
                "fallback_after",
                raw.fallback_after,
                DEFAULT_FALLBACK_AFTER,
            );
            if fallback_after.is_negative() {
                self.error_at(
                    &path,
                    "fallback_after",
                    "`fallback_after` must not be negative".into(),
                    Some("write fallback_after = \"1d\"".into()),
                );
            }
            fallbacks.push(FallbackCa {
                directory: url,
                eab,
                ca_bundle: raw.ca_bundle.map(|path| resolve(&path)),
                fallback_after,
            });
        }
        AcmeSettings {
            directory,
            staging_directory,
            contact,
            ca_bundle,
            eab,
            profile,
            timeout,
            fallbacks,
        }
    }

    /// `eab = { kid, hmac_key }` in the table at `path`.
    fn eab(&mut self, path: &str, eab: RawEab) -> Option<ExternalAccountBinding> {
        let kid = eab.kid.filter(|kid| !kid.is_empty());
        let key = eab.hmac_key.filter(|key| !key.is_empty());
        let (Some(kid), Some(key)) = (kid, key) else {
            self.error_at(
                path,
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
            Ok(hmac_key) if !hmac_key.is_empty() => Some(ExternalAccountBinding { kid, hmac_key }),
            _ => {
                // The key itself is a secret: the message must not echo it.
                self.error_at(
                    &format!("{path}.eab"),
                    "hmac_key",
                    "`eab.hmac_key` is not base64url".into(),
                    Some("paste the HMAC key exactly as the CA shows it".into()),
                );
                None
            }
        }
    }

    pub(super) fn duration(
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

    pub(super) fn renew_before(
        &mut self,
        path: &str,
        value: Option<NumberOrText>,
    ) -> Option<RenewBefore> {
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

    pub(super) fn renewal(&mut self, raw: RawRenewal) -> RenewalSettings {
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

    pub(super) fn required<T>(
        &mut self,
        path: &str,
        key: &str,
        value: Option<T>,
        example: &str,
    ) -> Option<T> {
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

    pub(super) fn socket_addr(&mut self, path: &str, key: &str, text: &str) -> Option<SocketAddr> {
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

    pub(super) fn certificate(
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
            && !matches!(
                challenge,
                ChallengeSettings::Dns01 { .. } | ChallengeSettings::Dns01Rfc2136(_)
            )
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

    pub(super) fn domains(&mut self, path: &str, domains: Vec<String>) -> Vec<String> {
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

    pub(super) fn challenge(
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
            return self.dns01(&join(path, "dns01"), dns01, resolve);
        }
        let tls_path = join(path, "tlsalpn01");
        let listen = self.required(&tls_path, "listen", tlsalpn01?.listen, "\"[::]:443\"")?;
        self.socket_addr(&tls_path, "listen", &listen)
            .map(|listen| ChallengeSettings::TlsAlpn01 { listen })
    }

    /// Two certificates writing the same file would overwrite each other's keys.
    pub(super) fn shared_paths(&mut self, certificates: &[CertificateSettings]) {
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

    pub(super) fn monitor(
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

    pub(super) fn alerts(&mut self, raw: RawAlerts) -> AlertSettings {
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

    pub(super) fn metrics(&mut self, raw: RawMetrics) -> Option<MetricsSettings> {
        let listen = self.required("metrics", "listen", raw.listen, "\"127.0.0.1:9725\"")?;
        self.socket_addr("metrics", "listen", &listen)
            .map(|listen| MetricsSettings { listen })
    }
}

/// Checks a DNS name (maybe a `*.` wildcard) or an IP address, lower-cased.
pub(super) fn check_identifier(name: &str) -> Result<(), &'static str> {
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
