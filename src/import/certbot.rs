//! Reading certbot's directory: its lineages, their files and the hooks certbot ran.

use std::path::{Path, PathBuf};

use super::ImportError;
use super::ini::RenewalConf;
use crate::inventory::{self, CertFacts};

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
