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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use crate::config::{KeyType, LETSENCRYPT, LETSENCRYPT_STAGING};
use crate::inventory::{self, CertFacts};

/// Where certbot keeps its configuration unless told otherwise (`--config-dir`).
pub const DEFAULT_CERTBOT_DIR: &str = "/etc/letsencrypt";
/// certbot's default server when a lineage names none.
const CERTBOT_DEFAULT_SERVER: &str = LETSENCRYPT;
/// The placeholder written where a dns-01 hook has to be filled in. It is not meant to exist:
/// a renewal that reaches it fails with its name in the message.
pub const PLACEHOLDER_DNS_HOOK: &str = "/etc/evercert/TODO-dns-01-hook";
/// The webroot guessed for lineages whose challenge evercert cannot reproduce over http-01:
/// Debian's default document root for nginx and Apache.
const DEFAULT_WEBROOT: &str = "/var/www/html";

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

// ---------------------------------------------------------------------------------------------
// certbot's renewal configuration (configobj).

/// One value of a configobj file: configobj turns unquoted commas into lists
/// (`webroot_path = /var/www/html,` is a one-element list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IniValue {
    Single(String),
    List(Vec<String>),
}

impl IniValue {
    /// The value as one string; lists joined the way configobj would have split them.
    fn text(&self) -> String {
        match self {
            Self::Single(text) => text.clone(),
            Self::List(items) => items.join(", "),
        }
    }

    /// The value as a list; a single value is a list of one.
    fn items(&self) -> Vec<String> {
        match self {
            Self::Single(text) if text.is_empty() => Vec::new(),
            Self::Single(text) => vec![text.clone()],
            Self::List(items) => items.clone(),
        }
    }
}

/// The parts of a `renewal/NAME.conf` the import uses.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RenewalConf {
    /// Keys before the first section: `archive_dir`, `cert`, `privkey`, `chain`, `fullchain`,
    /// `renew_before_expiry`, `version`.
    pub top: BTreeMap<String, IniValue>,
    /// `[renewalparams]`.
    pub params: BTreeMap<String, IniValue>,
    /// `[[webroot_map]]` inside `[renewalparams]`: domain → webroot, in file order.
    pub webroot_map: Vec<(String, String)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Top,
    Params,
    WebrootMap,
    Other,
}

impl RenewalConf {
    /// Parses configobj's dialect as certbot writes it: `#` comments, `[section]` and
    /// `[[subsection]]` headers, `key = value` with optional quotes, unquoted commas making
    /// lists. Lines it does not understand are skipped.
    pub fn parse(text: &str) -> Self {
        let mut conf = Self::default();
        let mut section = Section::Top;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with('[') {
                let depth = line.chars().take_while(|c| *c == '[').count();
                let name = line.trim_matches(|c| c == '[' || c == ']').trim();
                section = match (depth, name) {
                    (1, "renewalparams") => Section::Params,
                    (2, "webroot_map") if section != Section::Top => Section::WebrootMap,
                    _ => Section::Other,
                };
                continue;
            }
            let Some((key, raw)) = line.split_once('=') else {
                continue;
            };
            let key = key
                .trim()
                .trim_matches(|c| c == '"' || c == '\'')
                .to_owned();
            let value = parse_value(raw);
            match section {
                Section::Top => {
                    conf.top.insert(key, value);
                }
                Section::Params => {
                    conf.params.insert(key, value);
                }
                Section::WebrootMap => conf.webroot_map.push((key, value.text())),
                Section::Other => {}
            }
        }
        conf
    }

    /// A top-level key, unless empty or configobj's `None`.
    fn top(&self, key: &str) -> Option<String> {
        present(self.top.get(key))
    }

    /// A `[renewalparams]` key, unless empty or configobj's `None`.
    fn param(&self, key: &str) -> Option<String> {
        present(self.params.get(key))
    }

    fn param_items(&self, key: &str) -> Vec<String> {
        self.params
            .get(key)
            .map(IniValue::items)
            .unwrap_or_default()
            .into_iter()
            .filter(|item| !item.is_empty() && item != "None")
            .collect()
    }

    fn flag(&self, key: &str) -> bool {
        self.param(key)
            .is_some_and(|value| value.eq_ignore_ascii_case("true"))
    }
}

fn present(value: Option<&IniValue>) -> Option<String> {
    value
        .map(IniValue::text)
        .filter(|text| !text.is_empty() && text != "None")
}

/// One configobj value: quoted or unquoted items separated by commas, then maybe a comment.
fn parse_value(raw: &str) -> IniValue {
    let mut items = Vec::new();
    let mut is_list = false;
    let mut rest = raw.trim();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() || rest.starts_with('#') {
            break;
        }
        let quote = ["\"\"\"", "'''", "\"", "'"]
            .into_iter()
            .find(|quote| rest.starts_with(quote));
        let (item, after) = match quote {
            Some(quote) => {
                let body = &rest[quote.len()..];
                match body.find(quote) {
                    Some(end) => (body[..end].to_owned(), &body[end + quote.len()..]),
                    None => (body.to_owned(), ""),
                }
            }
            None => {
                let end = rest.find([',', '#']).unwrap_or(rest.len());
                (rest[..end].trim_end().to_owned(), &rest[end..])
            }
        };
        items.push((item, quote.is_some()));
        match after.trim_start().strip_prefix(',') {
            Some(next) => {
                is_list = true;
                rest = next;
            }
            None => break,
        }
    }
    if is_list {
        IniValue::List(
            items
                .into_iter()
                .filter(|(item, quoted)| *quoted || !item.is_empty())
                .map(|(item, _)| item)
                .collect(),
        )
    } else {
        IniValue::Single(
            items
                .into_iter()
                .next()
                .map(|(item, _)| item)
                .unwrap_or_default(),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Reading certbot's directory.

/// What was read of one lineage.
#[derive(Debug, Clone)]
pub struct Lineage {
    /// The file name of `renewal/NAME.conf` without `.conf`.
    pub name: String,
    pub conf_path: PathBuf,
    pub conf: RenewalConf,
    /// certbot's `fullchain` (a symlink in `live/NAME/`): what web servers are given.
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// The certificate behind `cert_path`, or why it could not be read.
    pub cert: Result<CertFacts, String>,
    /// Why the key could not be checked against the certificate, if it could not.
    pub key_problem: Option<String>,
}

/// A hook script in `renewal-hooks/deploy/` (run by certbot after every renewal of any
/// lineage).
#[derive(Debug, Clone)]
pub struct DirectoryHook {
    pub path: PathBuf,
    /// Whether it reads certbot's `RENEWED_LINEAGE`/`RENEWED_DOMAINS`.
    pub uses_renewed_env: bool,
    /// Whether it runs `nginx -t`, which fails inside evercert's sandbox.
    pub runs_nginx_test: bool,
}

/// Everything the import read.
#[derive(Debug, Clone)]
pub struct Certbot {
    pub dir: PathBuf,
    pub lineages: Vec<Lineage>,
    pub deploy_hooks: Vec<DirectoryHook>,
    /// Scripts in `renewal-hooks/pre/` and `renewal-hooks/post/`, which evercert has no
    /// equivalent for.
    pub pre_post_hooks: Vec<PathBuf>,
}

/// Reads `dir/renewal/*.conf` and each lineage's certificate and key.
pub fn read_certbot(dir: &Path) -> Result<Certbot, ImportError> {
    let renewal = dir.join("renewal");
    if !renewal.is_dir() {
        return Err(ImportError::NoRenewalDir { path: renewal });
    }
    let entries = std::fs::read_dir(&renewal).map_err(|source| ImportError::ListRenewalDir {
        path: renewal.clone(),
        source,
    })?;
    let mut confs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "conf") && path.is_file())
        .collect();
    confs.sort();
    if confs.is_empty() {
        return Err(ImportError::NoLineages { path: renewal });
    }
    let lineages = confs
        .iter()
        .map(|conf_path| read_lineage(dir, conf_path))
        .collect();
    Ok(Certbot {
        dir: dir.to_owned(),
        lineages,
        deploy_hooks: executables(&dir.join("renewal-hooks/deploy"))
            .into_iter()
            .map(|path| {
                let text = script_text(&path);
                DirectoryHook {
                    uses_renewed_env: text.contains("RENEWED_LINEAGE")
                        || text.contains("RENEWED_DOMAINS"),
                    runs_nginx_test: runs_nginx_test(&text),
                    path,
                }
            })
            .collect(),
        pre_post_hooks: ["pre", "post"]
            .into_iter()
            .flat_map(|kind| executables(&dir.join("renewal-hooks").join(kind)))
            .collect(),
    })
}

/// A hook script's text (lossy), empty when it cannot be read as a small regular file.
fn script_text(path: &Path) -> String {
    crate::fsread::read(path, crate::fsread::SMALL_FILE_MAX)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// What to do about `nginx -t` in a hook, verified in a ProtectSystem=strict sandbox with
/// Debian's nginx 1.22 (docs/install.md).
pub const NGINX_TEST_ADVICE: &str = "`nginx -t` fails inside evercert's systemd sandbox (ProtectSystem=strict): it opens nginx's pid file and /var/log/nginx for writing and chowns /var/lib/nginx, and `-g 'pid ...;'` does not help when nginx.conf sets pid. Reload with `systemctl reload nginx` alone and set verify = [\"127.0.0.1:443\"] (nginx keeps its old configuration when the new one is broken, and evercert then rolls back), or allow it in a drop-in: ReadWritePaths=-/run/nginx.pid /var/lib/nginx /var/log/nginx (docs/install.md)";

/// Whether shell text runs `nginx -t` (or `-T`, `-tq`, ...): a word `nginx` (or a path
/// ending in `/nginx`) followed, in the same simple command, by a short-option cluster with
/// `t` or `T` (the arguments of `-g`, `-c`, `-p`, `-e` skipped).
pub fn runs_nginx_test(text: &str) -> bool {
    shell_commands(text).iter().any(|words| {
        let Some(at) = words
            .iter()
            .position(|word| word == "nginx" || word.ends_with("/nginx"))
        else {
            return false;
        };
        let mut rest = words[at + 1..].iter();
        while let Some(word) = rest.next() {
            let Some(flags) = word
                .strip_prefix('-')
                .filter(|flags| !flags.starts_with('-'))
            else {
                continue;
            };
            if flags.contains(['t', 'T']) {
                return true;
            }
            if flags.ends_with(['g', 'c', 'p', 'e']) {
                rest.next();
            }
        }
        false
    })
}

/// Shell text as simple commands (split at `;`, `&`, `|`, newlines and parentheses outside
/// quotes), each as its words with quotes removed. Enough to spot a command, not a parser.
fn shell_commands(text: &str) -> Vec<Vec<String>> {
    let mut commands = vec![Vec::new()];
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in text.chars() {
        match (quote, c) {
            (Some(open), c) if c == open => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() || matches!(c, ';' | '&' | '|' | '(' | ')') => {
                if in_word {
                    if let Some(command) = commands.last_mut() {
                        command.push(std::mem::take(&mut word));
                    }
                    in_word = false;
                }
                if c != ' ' && c != '\t' {
                    commands.push(Vec::new());
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word && let Some(command) = commands.last_mut() {
        command.push(word);
    }
    commands.retain(|command| !command.is_empty());
    commands
}

/// `config check`'s warnings about reload commands that run `nginx -t`, directly or in the
/// script they name (first word, absolute path).
pub fn nginx_test_warnings(config: &crate::config::Config) -> Vec<String> {
    let mut warned: Vec<&str> = Vec::new();
    let mut warnings = Vec::new();
    for cert in &config.certificates {
        let Some(command) = cert.reload.as_deref() else {
            continue;
        };
        if warned.contains(&command) {
            continue;
        }
        let in_script = command
            .split_whitespace()
            .next()
            .filter(|first| first.starts_with('/'))
            .is_some_and(|script| runs_nginx_test(&script_text(Path::new(script))));
        if runs_nginx_test(command) || in_script {
            warned.push(command);
            warnings.push(format!(
                "warning: the reload command of certificate {} (`{command}`) runs nginx -t; {NGINX_TEST_ADVICE}.",
                cert.name
            ));
        }
    }
    warnings
}

/// Executable files in `dir`, sorted (certbot runs them in that order); none if it is missing.
fn executables(dir: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            std::fs::metadata(path)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
        .collect();
    found.sort();
    found
}

fn read_lineage(dir: &Path, conf_path: &Path) -> Lineage {
    let name = conf_path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Regular files only, capped: a FIFO among the renewal confs must not hang the import.
    let (conf, conf_problem) = match crate::fsread::read(conf_path, crate::fsread::SMALL_FILE_MAX) {
        Ok(bytes) => (RenewalConf::parse(&String::from_utf8_lossy(&bytes)), None),
        Err(err) => (RenewalConf::default(), Some(format!("cannot read {err}"))),
    };
    let live = dir.join("live").join(&name);
    let cert_path = conf
        .top("fullchain")
        .map_or_else(|| live.join("fullchain.pem"), PathBuf::from);
    let key_path = conf
        .top("privkey")
        .map_or_else(|| live.join("privkey.pem"), PathBuf::from);
    // A copy of certbot's directory (--from elsewhere) still names /etc/letsencrypt: read
    // the files in the copy, and keep the paths the web servers use.
    let in_copy = |path: &Path, file: &str| {
        let copy = live.join(file);
        if !path.exists() && copy.exists() {
            copy
        } else {
            path.to_owned()
        }
    };
    let read_cert = in_copy(&cert_path, "fullchain.pem");
    let read_key = in_copy(&key_path, "privkey.pem");
    let cert = match conf_problem {
        Some(problem) => Err(problem),
        None => inventory::read_cert_file(&read_cert)
            .map(|file| file.leaf)
            .map_err(|err| err.to_string()),
    };
    let key_problem = match &cert {
        Ok(facts) => inventory::check_key_file(&read_key, &read_cert, facts)
            .err()
            .map(|err| err.to_string()),
        Err(_) => None,
    };
    Lineage {
        name,
        conf_path: conf_path.to_owned(),
        conf,
        cert_path,
        key_path,
        cert,
        key_problem,
    }
}

// ---------------------------------------------------------------------------------------------
// Translating.

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
fn sanitize_name(lineage: &str) -> String {
    crate::names::sanitize(lineage, "certbot")
}

fn unique_name(name: &str, used: &[String]) -> String {
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

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// certbot's `renew_before_expiry` ("30 days", "2 weeks", "12 hours") in evercert's syntax.
fn certbot_duration(text: &str) -> Option<String> {
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

// ---------------------------------------------------------------------------------------------
// Rendering.

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

fn toml_array(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|item| toml_string(item)).collect();
    format!("[{}]", items.join(", "))
}

fn directory_value(server: &str) -> String {
    match server {
        LETSENCRYPT => "letsencrypt".to_owned(),
        LETSENCRYPT_STAGING => "letsencrypt-staging".to_owned(),
        other => other.to_owned(),
    }
}

/// `text` as `# ` comment lines of at most about 96 columns; its own newlines are kept.
fn comment(out: &mut String, prefix: &str, text: &str) {
    for (index, paragraph) in text.lines().enumerate() {
        let lead = if index == 0 { prefix } else { "" };
        // Lines of a script are kept as they are (indented under the comment).
        if index > 0 {
            let _ = writeln!(out, "#   {paragraph}");
            continue;
        }
        let mut line = format!("# {lead}");
        let indent = " ".repeat(lead.len());
        let mut empty = true;
        for word in paragraph.split_whitespace() {
            if !empty && line.len() + 1 + word.len() > 96 {
                let _ = writeln!(out, "{line}");
                line = format!("# {indent}");
                empty = true;
            }
            if !empty {
                line.push(' ');
            }
            line.push_str(word);
            empty = false;
        }
        let _ = writeln!(out, "{line}");
    }
}

/// The configuration file.
pub fn render(import: &Import) -> String {
    let mut out = String::new();
    let count = import.certificates.len();
    let attention = import.needing_attention();
    let _ = writeln!(
        out,
        "# evercert configuration, imported from certbot's {} by `evercert import certbot`.",
        import.dir.display()
    );
    let _ = writeln!(
        out,
        "# {count} lineage{}; {}",
        if count == 1 { "" } else { "s" },
        if attention == 0 {
            "nothing needs to be filled in.".to_owned()
        } else {
            format!(
                "{attention} need{} attention: search for TODO.",
                if attention == 1 { "s" } else { "" }
            )
        }
    );
    comment(
        &mut out,
        "",
        "Check it with `evercert config check -c FILE`, then try every certificate against the staging CA: `evercert -c FILE renew --dry-run --force`.",
    );
    out.push_str("#\n");
    for note in header_notes(import) {
        comment(&mut out, "", &note);
    }
    if !import.pre_post_hooks.is_empty() {
        let hooks: Vec<String> = import
            .pre_post_hooks
            .iter()
            .map(|path| path.display().to_string())
            .collect();
        comment(
            &mut out,
            "TODO: ",
            &format!(
                "certbot ran these scripts before or after every renewal: {}. evercert has no pre or post hooks; only `reload` runs after a renewal. Move what they do there, or drop them.",
                hooks.join(", ")
            ),
        );
    }
    out.push('\n');

    out.push_str("[acme]\n");
    let _ = writeln!(
        out,
        "directory = {}   # certbot's server: {}",
        toml_string(&directory_value(&import.directory)),
        import.directory
    );
    if import.directory == LETSENCRYPT_STAGING {
        out.push_str(
            "# certbot used Let's Encrypt's staging CA: its certificates are not trusted by browsers.\n",
        );
    }
    out.push_str(
        "# contact = [\"mailto:ops@example.com\"]   # the CA's notices; certbot's account e-mail is not imported\n",
    );
    out.push_str("\n# [alerts]\n# command = \"/usr/local/bin/page-oncall\"   # docs/alerts.md\n");

    for cert in &import.certificates {
        out.push('\n');
        render_certificate(&mut out, cert);
    }
    out
}

/// What an operator must know before evercert takes over (also printed on stderr).
pub fn header_notes(import: &Import) -> Vec<String> {
    let mut notes = vec![
        "Before evercert runs, stop certbot from renewing the same certificates, or the two will fight over the files: `systemctl disable --now certbot.timer` (and remove /etc/cron.d/certbot if present).".to_owned(),
        "evercert keeps certbot's live paths as cert_path and key_path, so web servers need no change. On each certificate's first renewal evercert archives the current pair (state_dir/archive/NAME/) and replaces the fullchain.pem and privkey.pem symlinks with its own (into state_dir/live/NAME/). cert.pem and chain.pem beside them are no longer updated: every server must read fullchain.pem and privkey.pem.".to_owned(),
        "The first renewal uses a new ACME account of evercert's own: certbot's account keys (RSA) cannot be carried over. So it is an ordinary new order, not an ARI replacement of certbot's certificate: CAs refuse a `replaces` from another account (RFC 9773), and evercert then orders without it.".to_owned(),
    ];
    let paths = import.writable_paths();
    if !paths.is_empty() {
        notes.push(format!(
            "The systemd service may write only where it is told: `systemctl edit evercert` and add `[Service]` `ReadWritePaths={}` (each must exist; docs/install.md).",
            paths.join(" ")
        ));
    }
    notes
}

/// One `[[certificate]]` (commented out when it cannot be imported); `discover --write` shows
/// it for the certbot lineages it finds served.
pub fn render_certificate(out: &mut String, cert: &Translated) {
    let mut block = String::new();
    let _ = writeln!(
        block,
        "[[certificate]]   # certbot lineage {} ({}), authenticator {}",
        cert.lineage,
        cert.conf_path.display(),
        cert.authenticator
    );
    let _ = writeln!(block, "name = {}", toml_string(&cert.name));
    let _ = writeln!(block, "domains = {}", toml_array(&cert.domains));
    let _ = writeln!(
        block,
        "cert_path = {}   # certbot's live symlinks: evercert replaces them with its own on the first renewal",
        toml_string(&cert.cert_path.display().to_string())
    );
    let _ = writeln!(
        block,
        "key_path = {}",
        toml_string(&cert.key_path.display().to_string())
    );
    let _ = writeln!(block, "key_type = {}", toml_string(cert.key_type.as_str()));
    if cert.reuse_key {
        block.push_str("reuse_key = true   # certbot's reuse_key\n");
    }
    if let Some(renew_before) = &cert.renew_before {
        let _ = writeln!(
            block,
            "renew_before = {}   # certbot's renew_before_expiry",
            toml_string(renew_before)
        );
    }
    match &cert.reload {
        Some((command, source)) => {
            let _ = writeln!(block, "reload = {}   # {source}", toml_string(command));
        }
        None => block.push_str("# reload = \"systemctl reload nginx\"\n"),
    }
    block.push_str(
        "# verify = [\"127.0.0.1:443\"]   # check that the server serves the new certificate\n",
    );
    match &cert.challenge {
        Challenge::Webroot(webroot) => {
            let _ = writeln!(
                block,
                "[certificate.http01]\nwebroot = {}",
                toml_string(webroot)
            );
        }
        Challenge::Listen(listen) => {
            let _ = writeln!(
                block,
                "[certificate.http01]\nlisten = {}   # certbot's standalone server",
                toml_string(listen)
            );
        }
        Challenge::Dns01 { hook, wait } => {
            let _ = writeln!(block, "[certificate.dns01]\nhook = {}", toml_string(hook));
            if let Some(wait) = wait {
                let _ = writeln!(
                    block,
                    "wait = {}   # certbot's propagation_seconds",
                    toml_string(wait)
                );
            }
        }
    }

    if let Some(reason) = &cert.disabled {
        comment(out, "TODO: ", &format!("commented out: {reason}"));
    }
    for todo in &cert.todos {
        comment(out, "TODO: ", todo);
    }
    match &cert.disabled {
        None => out.push_str(&block),
        Some(_) => {
            for line in block.lines() {
                let _ = writeln!(out, "# {line}");
            }
        }
    }
}

/// The lines printed on stderr: one per lineage, then the notes.
pub fn summary(import: &Import) -> Vec<String> {
    let mut lines = Vec::new();
    for cert in &import.certificates {
        let state = if cert.disabled.is_some() {
            "NOT imported (commented out): the certificate cannot be read".to_owned()
        } else if cert.todos.is_empty() {
            "imported".to_owned()
        } else {
            format!(
                "imported with {} TODO{} to fill in",
                cert.todos.len(),
                if cert.todos.len() == 1 { "" } else { "s" }
            )
        };
        lines.push(format!(
            "{}: {} ({}, {}): {state}",
            cert.name,
            cert.domains.join(", "),
            cert.authenticator,
            cert.key_type
        ));
    }
    lines
}

// ---------------------------------------------------------------------------------------------
// Writing.

/// Writes `contents` to a new file `path` (mode 0600) atomically: a temporary file in the
/// same directory, fsynced, then linked into place without replacing anything, and the
/// directory fsynced. An existing `path` is never touched.
pub fn write_new_file(path: &Path, contents: &str) -> Result<(), WriteError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io_error = |source: io::Error| WriteError::Io {
        path: path.to_owned(),
        source,
    };
    if std::fs::symlink_metadata(path).is_ok() {
        return Err(WriteError::Exists {
            path: path.to_owned(),
        });
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        file_name(path),
        std::process::id(),
        rand::random::<u32>()
    ));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()
    })();
    if let Err(err) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_error(err));
    }
    // link(2) fails with EEXIST instead of replacing: no window where a file appearing at
    // `path` meanwhile is overwritten.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            return Err(WriteError::Exists {
                path: path.to_owned(),
            });
        }
        Err(err) => return Err(io_error(err)),
    }
    std::fs::File::open(&dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error)
}

#[cfg(test)]
mod tests {
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
