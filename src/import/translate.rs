//! Translating certbot's lineages into evercert certificates, with a `TODO:` for what cannot
//! be translated. No I/O.

use std::path::{Path, PathBuf};

use super::PLACEHOLDER_DNS_HOOK;
use super::certbot::{Certbot, DirectoryHook, Lineage};
use super::certbot::{NGINX_TEST_ADVICE, runs_nginx_test};
use super::ini::RenewalConf;
use crate::config::{KeyType, LETSENCRYPT};

/// certbot's default server when a lineage names none.
const CERTBOT_DEFAULT_SERVER: &str = LETSENCRYPT;

/// The webroot guessed for lineages whose challenge evercert cannot reproduce over http-01:
/// Debian's default document root for nginx and Apache.
const DEFAULT_WEBROOT: &str = "/var/www/html";

/// How the CA will be shown control of the names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Webroot(String),
    Listen(String),
    Dns01 { hook: String, wait: Option<String> },
}

/// One `[[certificate]]` of the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    pub lineage: String,
    pub conf_path: PathBuf,
    pub authenticator: String,
    pub name: String,
    pub domains: Vec<String>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub key_type: KeyType,
    pub reuse_key: bool,
    pub renew_before: Option<String>,
    /// The reload command and where it came from.
    pub reload: Option<(String, String)>,
    pub challenge: Challenge,
    /// The lineage's ACME directory URL.
    pub server: String,
    /// What an operator must do before this certificate renews.
    pub todos: Vec<String>,
    /// Why the whole certificate is commented out (its certificate could not be read).
    pub disabled: Option<String>,
}

/// The whole import, ready to render.
#[derive(Debug, Clone)]
pub struct Import {
    pub dir: PathBuf,
    /// `[acme] directory`: the server most lineages used.
    pub directory: String,
    pub certificates: Vec<Translated>,
    pub pre_post_hooks: Vec<PathBuf>,
}

impl Import {
    /// Certificates that need an operator before they can renew (TODOs or commented out).
    pub fn needing_attention(&self) -> usize {
        self.certificates
            .iter()
            .filter(|cert| !cert.todos.is_empty() || cert.disabled.is_some())
            .count()
            + usize::from(!self.pre_post_hooks.is_empty())
    }

    /// Certificates that could not be read and are commented out.
    pub fn unreadable(&self) -> usize {
        self.certificates
            .iter()
            .filter(|cert| cert.disabled.is_some())
            .count()
    }

    /// Directories the sandboxed service must be allowed to write (for `ReadWritePaths=`).
    pub fn writable_paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = Vec::new();
        for cert in self
            .certificates
            .iter()
            .filter(|cert| cert.disabled.is_none())
        {
            for file in [&cert.cert_path, &cert.key_path] {
                // certbot's live/NAME/ directories share a parent: allow that one.
                let dir = file.parent().map(|dir| match dir.parent() {
                    Some(live) if live.file_name().is_some_and(|name| name == "live") => live,
                    _ => dir,
                });
                if let Some(dir) = dir {
                    paths.push(dir.display().to_string());
                }
            }
            if let Challenge::Webroot(webroot) = &cert.challenge {
                paths.push(format!(
                    "{}/.well-known/acme-challenge",
                    webroot.trim_end_matches('/')
                ));
            }
        }
        paths.sort();
        paths.dedup();
        paths
    }
}

/// Translates what was read into evercert's terms; no I/O.
pub fn translate(certbot: &Certbot) -> Import {
    let directory = most_common_server(&certbot.lineages);
    let mut used_names: Vec<String> = Vec::new();
    let certificates = certbot
        .lineages
        .iter()
        .map(|lineage| {
            let name = unique_name(&sanitize_name(&lineage.name), &used_names);
            used_names.push(name.clone());
            translate_lineage(lineage, name, &directory, &certbot.deploy_hooks)
        })
        .collect();
    Import {
        dir: certbot.dir.clone(),
        directory,
        certificates,
        pre_post_hooks: certbot.pre_post_hooks.clone(),
    }
}

fn server_of(lineage: &Lineage) -> String {
    lineage
        .conf
        .param("server")
        .unwrap_or_else(|| CERTBOT_DEFAULT_SERVER.to_owned())
}

/// The server most lineages used (ties: the first in name order).
fn most_common_server(lineages: &[Lineage]) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for lineage in lineages {
        let server = server_of(lineage);
        match counts.iter_mut().find(|(known, _)| *known == server) {
            Some((_, count)) => *count += 1,
            None => counts.push((server, 1)),
        }
    }
    let mut best: Option<(String, usize)> = None;
    for (server, count) in counts {
        if best.as_ref().is_none_or(|(_, most)| count > *most) {
            best = Some((server, count));
        }
    }
    best.map_or_else(|| CERTBOT_DEFAULT_SERVER.to_owned(), |(server, _)| server)
}

/// A valid evercert name from a certbot lineage (`names`).
pub(super) fn sanitize_name(lineage: &str) -> String {
    crate::names::sanitize(lineage, "certbot")
}

pub(super) fn unique_name(name: &str, used: &[String]) -> String {
    if !used.iter().any(|taken| taken == name) {
        return name.to_owned();
    }
    (2..)
        .map(|index| format!("{name}-{index}"))
        .find(|candidate| !used.contains(candidate))
        .unwrap_or_else(|| name.to_owned())
}

fn translate_lineage(
    lineage: &Lineage,
    name: String,
    directory: &str,
    deploy_hooks: &[DirectoryHook],
) -> Translated {
    let conf = &lineage.conf;
    let authenticator = conf
        .param("authenticator")
        .unwrap_or_else(|| "webroot".to_owned());
    let server = server_of(lineage);
    let mut todos = Vec::new();

    let (domains, disabled, cert_key_type) = match &lineage.cert {
        Ok(facts) => (
            facts.names(),
            None,
            KeyType::ALL
                .into_iter()
                .find(|kind| kind.as_str() == facts.key_algorithm),
        ),
        Err(problem) => (
            conf.webroot_map
                .iter()
                .map(|(domain, _)| domain.clone())
                .collect(),
            Some(format!(
                "the certificate could not be read ({problem}), so its names are unknown: fix the lineage (or delete it if it is no longer used), then run the import again, or fill in `domains` and uncomment this block"
            )),
            None,
        ),
    };
    let domains = if domains.is_empty() {
        vec![lineage.name.clone()]
    } else {
        domains
    };

    if let Some(problem) = &lineage.key_problem {
        todos.push(format!(
            "the private key could not be checked against the certificate: {problem}. Run the import as root if the key was unreadable; a key that does not match its certificate breaks the server at its next restart, so fix the lineage before evercert takes it over."
        ));
    }

    let key_type = key_type(conf, cert_key_type, &mut todos);
    let challenge = challenge(lineage, &authenticator, &domains, &name, &mut todos);
    let reload = reload(lineage, &domains, deploy_hooks, &mut todos);

    if server != directory {
        todos.push(format!(
            "certbot renewed this certificate at {server}, the others at {directory}; evercert uses one CA for every certificate ([acme] directory). Keep it with the others (its next certificate comes from that CA), or give it a configuration of its own with `directory = \"{server}\"`."
        ));
    }

    let renew_before = conf.top("renew_before_expiry").and_then(|text| {
        let parsed = certbot_duration(&text);
        if parsed.is_none() {
            todos.push(format!(
                "certbot renewed {text} before expiry (renew_before_expiry); write it as renew_before = \"30d\" (d, h, m, s) or leave the default (a third of the lifetime)."
            ));
        }
        parsed
    });

    Translated {
        lineage: lineage.name.clone(),
        conf_path: lineage.conf_path.clone(),
        authenticator,
        name,
        domains,
        cert_path: lineage.cert_path.clone(),
        key_path: lineage.key_path.clone(),
        key_type,
        reuse_key: conf.flag("reuse_key"),
        renew_before,
        reload,
        challenge,
        server,
        todos,
        disabled,
    }
}

/// certbot's `key_type`/`rsa_key_size`/`elliptic_curve`; without them (certbot before 2.0)
/// what the certificate's key is.
fn key_type(conf: &RenewalConf, from_cert: Option<KeyType>, todos: &mut Vec<String>) -> KeyType {
    match conf.param("key_type").as_deref() {
        Some("rsa") => match conf.param("rsa_key_size").as_deref().unwrap_or("2048") {
            "2048" => KeyType::Rsa2048,
            "3072" => KeyType::Rsa3072,
            "4096" => KeyType::Rsa4096,
            other => {
                todos.push(format!(
                    "certbot used {other}-bit RSA keys; evercert offers rsa2048, rsa3072 and rsa4096: rsa4096 is set."
                ));
                KeyType::Rsa4096
            }
        },
        Some("ecdsa") => match conf
            .param("elliptic_curve")
            .as_deref()
            .unwrap_or("secp256r1")
        {
            "secp256r1" => KeyType::EcdsaP256,
            "secp384r1" => KeyType::EcdsaP384,
            other => {
                todos.push(format!(
                    "certbot used ECDSA keys on {other}; evercert offers ecdsa-p256 and ecdsa-p384: ecdsa-p384 is set."
                ));
                KeyType::EcdsaP384
            }
        },
        Some(other) => {
            let chosen = from_cert.unwrap_or(KeyType::EcdsaP256);
            todos.push(format!(
                "certbot's key_type \"{other}\" is unknown to evercert; {chosen} is set{}.",
                if from_cert.is_some() {
                    ", the type of the current key"
                } else {
                    ""
                }
            ));
            chosen
        }
        // certbot before 2.0 wrote no key_type and used 2048-bit RSA.
        None => from_cert.unwrap_or(KeyType::Rsa2048),
    }
}

fn challenge(
    lineage: &Lineage,
    authenticator: &str,
    domains: &[String],
    name: &str,
    todos: &mut Vec<String>,
) -> Challenge {
    let conf = &lineage.conf;
    let dry_run = format!("Then test it: evercert renew --dry-run --force {name}");
    let dns_placeholder = |wait: Option<String>| Challenge::Dns01 {
        hook: PLACEHOLDER_DNS_HOOK.to_owned(),
        wait,
    };
    let hook_interface = "evercert calls a dns-01 hook as `HOOK present|cleanup DOMAIN RECORD_NAME VALUE`: it must create (present) or remove (cleanup) the TXT record RECORD_NAME with VALUE at your DNS provider";
    let wildcard = domains.iter().find(|domain| domain.starts_with("*."));

    let translated = match authenticator {
        "webroot" => {
            let fallback = conf.param_items("webroot_path").into_iter().next();
            let mut webroots: Vec<(String, String)> = Vec::new();
            for domain in domains {
                let mapped = conf
                    .webroot_map
                    .iter()
                    .find(|(mapped, _)| mapped.eq_ignore_ascii_case(domain))
                    .map(|(_, webroot)| webroot.clone())
                    .or_else(|| fallback.clone());
                if let Some(webroot) = mapped {
                    webroots.push((domain.clone(), webroot));
                }
            }
            let distinct: std::collections::BTreeSet<&str> =
                webroots.iter().map(|(_, root)| root.as_str()).collect();
            match (webroots.first(), distinct.len()) {
                (None, _) => {
                    todos.push(format!(
                        "certbot's webroot for these names is not in its configuration; {DEFAULT_WEBROOT} is a guess: set webroot to the directory your web server serves /.well-known/acme-challenge/ from. {dry_run}"
                    ));
                    Challenge::Webroot(DEFAULT_WEBROOT.to_owned())
                }
                (Some((_, first)), 1) => Challenge::Webroot(first.clone()),
                (Some((_, first)), _) => {
                    let map: Vec<String> = webroots
                        .iter()
                        .map(|(domain, root)| format!("{domain} → {root}"))
                        .collect();
                    todos.push(format!(
                        "certbot used a webroot per name ({}); evercert writes every token into one webroot. Serve /.well-known/acme-challenge/ for all these names from {first} (for nginx: `location ^~ /.well-known/acme-challenge/ {{ root {first}; }}` in each port-80 server block), or split the certificate into one per webroot. {dry_run}",
                        map.join(", ")
                    ));
                    Challenge::Webroot(first.clone())
                }
            }
        }
        "standalone" => {
            let port = conf.param("http01_port").unwrap_or_else(|| "80".to_owned());
            let address = conf.param("http01_address").unwrap_or_default();
            let listen = match address.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
                Ok(std::net::IpAddr::V4(ip)) => format!("{ip}:{port}"),
                Err(_) => format!("[::]:{port}"),
            };
            if let Some(pre) = conf.param("pre_hook") {
                todos.push(format!(
                    "certbot ran pre_hook `{pre}` before renewing (usually to free port {port}) and post_hook `{}` afterwards; evercert has no such hooks. Its responder needs port {port} free only while an order runs: serve the challenge from your web server's webroot instead (webroot = \"/var/www/html\", docs/install.md), or forward /.well-known/acme-challenge/ to evercert on a loopback port (the HAProxy example in docs/install.md). {dry_run}",
                    conf.param("post_hook").unwrap_or_default()
                ));
            }
            Challenge::Listen(listen)
        }
        "nginx" | "apache" => {
            let snippet = if authenticator == "nginx" {
                format!(
                    "`location ^~ /.well-known/acme-challenge/ {{ root {DEFAULT_WEBROOT}; }}` in the port-80 server block"
                )
            } else {
                format!(
                    "`Alias /.well-known/acme-challenge/ {DEFAULT_WEBROOT}/.well-known/acme-challenge/` in the port-80 virtual host"
                )
            };
            todos.push(format!(
                "certbot's {authenticator} authenticator edited {authenticator}'s configuration to answer http-01; evercert does not. Serve /.well-known/acme-challenge/ for these names from the webroot below ({snippet}; docs/install.md), or set listen = \"[::]:80\" instead of webroot if nothing else uses port 80. {dry_run}"
            ));
            Challenge::Webroot(DEFAULT_WEBROOT.to_owned())
        }
        "manual" => {
            let auth = conf.param("manual_auth_hook");
            let cleanup = conf.param("manual_cleanup_hook");
            let http = conf
                .param_items("pref_challs")
                .first()
                .is_some_and(|first| first.starts_with("http"));
            match (auth, http) {
                (Some(auth), true) => {
                    todos.push(format!(
                        "certbot ran manual hooks for http-01 (manual_auth_hook `{auth}`); evercert writes the token itself: set webroot to the directory your web server serves /.well-known/acme-challenge/ from ({DEFAULT_WEBROOT} is a guess). {dry_run}"
                    ));
                    Challenge::Webroot(DEFAULT_WEBROOT.to_owned())
                }
                (Some(auth), false) => {
                    let cleanup_line = cleanup.map_or_else(
                        || "    cleanup) exit 0 ;;".to_owned(),
                        |cleanup| format!("    cleanup) exec {cleanup} ;;"),
                    );
                    todos.push(format!(
                        "certbot ran manual hooks (manual_auth_hook `{auth}`) with CERTBOT_DOMAIN and CERTBOT_VALIDATION in the environment; {hook_interface}. Name one in `hook` (the placeholder {PLACEHOLDER_DNS_HOOK} does not exist). {dry_run}. A wrapper that reuses certbot's hooks, to save as an executable file:\n#!/bin/sh\nexport CERTBOT_DOMAIN=\"$2\" CERTBOT_VALIDATION=\"$4\"\ncase \"$1\" in\n    present) exec {auth} ;;\n{cleanup_line}\nesac"
                    ));
                    dns_placeholder(None)
                }
                (None, _) => {
                    todos.push(format!(
                        "certbot's manual plugin without hooks needs a person at every renewal; evercert renews unattended: write a dns-01 hook and name it in `hook` (the placeholder {PLACEHOLDER_DNS_HOOK} does not exist); {hook_interface}. {dry_run}"
                    ));
                    dns_placeholder(None)
                }
            }
        }
        plugin if plugin.starts_with("dns-") || plugin.contains("dns") => {
            let prefix = plugin.replace('-', "_");
            let credentials = conf
                .param(&format!("{prefix}_credentials"))
                .map(|path| format!(" (credentials: {path})"))
                .unwrap_or_default();
            let wait = conf
                .param(&format!("{prefix}_propagation_seconds"))
                .filter(|seconds| seconds.chars().all(|c| c.is_ascii_digit()))
                .map(|seconds| format!("{seconds}s"));
            todos.push(format!(
                "certbot validated through its {plugin} plugin{credentials}; {hook_interface}. Write one (your provider's CLI, or `lego dns` providers, can do the API call) and name it in `hook`: the placeholder {PLACEHOLDER_DNS_HOOK} does not exist. {dry_run}"
            ));
            dns_placeholder(wait)
        }
        other => {
            todos.push(format!(
                "certbot used the authenticator plugin \"{other}\", which evercert cannot translate; {DEFAULT_WEBROOT} is a guess: set webroot to the directory your web server serves /.well-known/acme-challenge/ from, or use [certificate.dns01] with a hook. {dry_run}"
            ));
            Challenge::Webroot(DEFAULT_WEBROOT.to_owned())
        }
    };

    match (wildcard, &translated) {
        (Some(wildcard), Challenge::Webroot(_) | Challenge::Listen(_)) => {
            todos.push(format!(
                "{wildcard} can only be validated with dns-01: {hook_interface}. Write one and name it in `hook` (the placeholder {PLACEHOLDER_DNS_HOOK} does not exist). {dry_run}"
            ));
            dns_placeholder(None)
        }
        _ => translated,
    }
}

/// certbot's deploy hooks (and its installer's reload) as evercert's `reload`.
fn reload(
    lineage: &Lineage,
    domains: &[String],
    deploy_hooks: &[DirectoryHook],
    todos: &mut Vec<String>,
) -> Option<(String, String)> {
    let conf = &lineage.conf;
    let mut parts: Vec<String> = Vec::new();
    let mut sources: Vec<String> = Vec::new();
    let mut uses_renewed_env = false;
    match conf.param("installer").as_deref() {
        Some("nginx") => {
            parts.push("systemctl reload nginx".to_owned());
            sources.push("certbot's nginx installer".to_owned());
        }
        Some("apache") => {
            parts.push("systemctl reload apache2".to_owned());
            sources.push("certbot's apache installer".to_owned());
        }
        _ => {}
    }
    let mut nginx_test: Vec<String> = Vec::new();
    for key in ["deploy_hook", "renew_hook"] {
        if let Some(hook) = conf.param(key) {
            uses_renewed_env |= hook.contains("RENEWED_");
            if runs_nginx_test(&hook) {
                nginx_test.push(format!("certbot's {key}"));
            }
            parts.push(hook);
            sources.push(key.to_owned());
            break;
        }
    }
    for hook in deploy_hooks {
        uses_renewed_env |= hook.uses_renewed_env;
        if hook.runs_nginx_test {
            nginx_test.push(hook.path.display().to_string());
        }
        parts.push(hook.path.display().to_string());
        sources.push(format!("renewal-hooks/deploy/{}", file_name(&hook.path)));
    }
    // A post_hook without a pre_hook is usually the reload; with one it restarts what the
    // pre_hook stopped, which is no reload (see the standalone TODO).
    if parts.is_empty()
        && conf.param("pre_hook").is_none()
        && let Some(post) = conf.param("post_hook")
    {
        parts.push(post);
        sources.push("post_hook".to_owned());
    }
    let mut unique: Vec<String> = Vec::new();
    for part in parts {
        if !unique.contains(&part) {
            unique.push(part);
        }
    }
    if unique.is_empty() {
        todos.push(
            "certbot ran no deploy hook for this certificate, so nothing told the web server to read the new files; set reload to what does (for example \"systemctl reload nginx\"), and verify = [\"127.0.0.1:443\"] to check what it serves afterwards.".to_owned(),
        );
        return None;
    }
    if !nginx_test.is_empty() {
        todos.push(format!(
            "{} runs nginx -t: {NGINX_TEST_ADVICE}.",
            nginx_test.join(" and ")
        ));
    }
    let mut command = unique.join(" && ");
    if uses_renewed_env {
        let lineage_dir = lineage
            .cert_path
            .parent()
            .map(|dir| dir.display().to_string())
            .unwrap_or_default();
        command = format!(
            "RENEWED_LINEAGE={} RENEWED_DOMAINS={}; export RENEWED_LINEAGE RENEWED_DOMAINS; {command}",
            shell_quote(&lineage_dir),
            shell_quote(&domains.join(" "))
        );
        todos.push(format!(
            "a deploy hook reads RENEWED_LINEAGE, which the reload command sets for it; in {lineage_dir} only fullchain.pem and privkey.pem follow evercert's renewals (cert.pem and chain.pem keep the old certificate): make the hook read those two."
        ));
    }
    Some((command, sources.join(" + ")))
}

pub(super) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// certbot's `renew_before_expiry` ("30 days", "2 weeks", "12 hours") in evercert's syntax.
pub(super) fn certbot_duration(text: &str) -> Option<String> {
    let mut words = text.split_whitespace();
    let count: u64 = words.next()?.parse().ok()?;
    let unit = words.next().unwrap_or("days").to_ascii_lowercase();
    if words.next().is_some() {
        return None;
    }
    let (count, suffix) = match unit.trim_end_matches('s') {
        "day" | "d" => (count, 'd'),
        "week" | "w" => (count.checked_mul(7)?, 'd'),
        "hour" | "h" => (count, 'h'),
        "minute" | "min" | "m" => (count, 'm'),
        _ => return None,
    };
    Some(format!("{count}{suffix}"))
}
