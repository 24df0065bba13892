//! HAProxy: `crt` and `crt-list` on the `bind` lines of `frontend` and `listen` sections,
//! relative to the global `crt-base`.
//!
//! A `crt` may name a PEM file or a directory, of which every file is loaded in alphabetic
//! order except dot-files and the reserved `.key`, `.issuer`, `.ocsp` and `.sctl`. A crt-list
//! names one certificate per line with optional SSL settings in brackets and SNI filters
//! after them. HAProxy picks certificates by their own names unless a filter says otherwise,
//! so the names are the certificate's (or the crt-list's filters). Certificates loaded from a
//! `crt-store` (`@store/NAME`) and paths with `${ENV}` variables are not resolvable here.

use std::path::{Path, PathBuf};

use super::{DiscoverError, Discovery, Location, Served, Server, Unresolved};

const SERVER: Server = Server::Haproxy;
/// Files HAProxy skips in a `crt` directory.
const RESERVED_SUFFIXES: &[&str] = &[".key", ".issuer", ".ocsp", ".sctl"];
/// Section keywords: a line starting with one opens a section.
const SECTIONS: &[&str] = &[
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "resolvers",
    "peers",
    "userlist",
    "program",
    "http-errors",
    "ring",
    "cache",
    "mailers",
    "crt-store",
    "traces",
    "log-forward",
];

/// Splits a line into words as HAProxy does: quotes group, `\` escapes, `#` starts a comment.
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(open), c) if c == open => quote = None,
            (Some('"') | None, '\\') => {
                if let Some(next) = chars.next() {
                    word.push(next);
                    in_word = true;
                }
            }
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '#') => break,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if let Some(open) = quote {
        return Err(format!("unterminated {open}quoted{open} argument"));
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Reads HAProxy's configuration file.
pub(super) fn discover(main: &Path) -> Result<Discovery, DiscoverError> {
    let text = super::read_config(SERVER, main)?;
    let base = main.parent().unwrap_or(Path::new("/")).to_owned();
    let mut discovery = Discovery {
        inputs: vec![main.to_owned()],
        ..Discovery::default()
    };
    let mut crt_base: Option<PathBuf> = None;
    let mut section: Option<String> = None;
    let mut binds: Vec<(Location, Vec<String>)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let at = Location {
            file: main.to_owned(),
            line: index + 1,
        };
        let parts =
            words(line).map_err(|message| DiscoverError::syntax(SERVER, at.clone(), message))?;
        let Some(keyword) = parts.first() else {
            continue;
        };
        if SECTIONS.contains(&keyword.as_str()) {
            section = Some(keyword.clone());
            continue;
        }
        let Some(current) = &section else {
            return Err(DiscoverError::syntax(
                SERVER,
                at,
                format!("unknown keyword '{keyword}' out of section"),
            ));
        };
        match (current.as_str(), keyword.as_str()) {
            ("global", "crt-base") => {
                crt_base = parts.get(1).map(|dir| super::resolve(&base, dir));
            }
            ("frontend" | "listen", "bind") => binds.push((at, parts)),
            _ => {}
        }
    }
    // crt-base applies wherever it is set in `global`: read the binds after it.
    let base = crt_base.unwrap_or(base);
    for (at, parts) in binds {
        let mut rest = parts.iter().skip(2);
        while let Some(word) = rest.next() {
            if word != "crt" && word != "crt-list" {
                continue;
            }
            let Some(value) = rest.next() else {
                return Err(DiscoverError::syntax(
                    SERVER,
                    at,
                    format!("'{word}' needs a path"),
                ));
            };
            if let Some(reason) = not_resolvable(value) {
                discovery.unresolved.push(Unresolved {
                    server: SERVER,
                    at: at.clone(),
                    value: value.clone(),
                    reason: reason.to_owned(),
                    names: Vec::new(),
                });
                continue;
            }
            let path = super::resolve(&base, value);
            if word == "crt" {
                crt(&path, &at, &[], &mut discovery);
            } else {
                crt_list(&path, &at, &base, &mut discovery)?;
            }
        }
    }
    Ok(discovery)
}

fn not_resolvable(value: &str) -> Option<&'static str> {
    if value.starts_with('@') {
        Some("a certificate of a crt-store, loaded by HAProxy itself")
    } else if value.contains("${") {
        Some("the path holds an environment variable that HAProxy resolves when it starts")
    } else {
        None
    }
}

/// A `crt` file, or every certificate file of a `crt` directory.
fn crt(path: &Path, at: &Location, names: &[String], discovery: &mut Discovery) {
    let files = if path.is_dir() {
        discovery.inputs.push(path.to_owned());
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|entry| {
                        let name = entry.file_name().to_string_lossy().into_owned();
                        !name.starts_with('.')
                            && !RESERVED_SUFFIXES
                                .iter()
                                .any(|suffix| name.ends_with(suffix))
                    })
                    .map(|entry| entry.path())
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    } else {
        vec![path.to_owned()]
    };
    for file in files {
        let mut key = file.clone().into_os_string();
        key.push(".key");
        let key = PathBuf::from(key);
        discovery.served.push(Served {
            server: SERVER,
            at: at.clone(),
            key: key.is_file().then_some(key),
            path: file,
            names: names.to_vec(),
            chain_only: false,
        });
    }
}

/// The certificates of a crt-list, each at its own line of the list.
fn crt_list(
    path: &Path,
    bind: &Location,
    base: &Path,
    discovery: &mut Discovery,
) -> Result<(), DiscoverError> {
    let text = super::read_config(SERVER, path)
        .map_err(|err| DiscoverError::syntax(SERVER, bind.clone(), format!("crt-list: {err}")))?;
    discovery.inputs.push(path.to_owned());
    for (index, line) in text.lines().enumerate() {
        let at = Location {
            file: path.to_owned(),
            line: index + 1,
        };
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        // `file [ssl settings] sni filters…`
        let (file, rest) = match trimmed.split_once(char::is_whitespace) {
            Some((file, rest)) => (file, rest.trim()),
            None => (trimmed, ""),
        };
        let filters = match rest.strip_prefix('[') {
            Some(settings) => match settings.split_once(']') {
                Some((_, after)) => after,
                None => {
                    return Err(DiscoverError::syntax(
                        SERVER,
                        at,
                        "the SSL settings in '[' are not closed by ']'",
                    ));
                }
            },
            None => rest,
        };
        let names: Vec<String> = filters
            .split_whitespace()
            .filter(|filter| !filter.starts_with('!'))
            .map(str::to_owned)
            .collect();
        if let Some(reason) = not_resolvable(file) {
            discovery.unresolved.push(Unresolved {
                server: SERVER,
                at,
                value: file.to_owned(),
                reason: reason.to_owned(),
                names,
            });
            continue;
        }
        crt(&super::resolve(base, file), &at, &names, discovery);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::write;
    use super::*;

    #[test]
    fn crt_files_directories_lists_and_stores() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.pem", "a.pem", "a.pem.key", "a.pem.ocsp", ".hidden"] {
            write(dir.path(), &format!("certs/{name}"), "");
        }
        write(
            dir.path(),
            "list.txt",
            "# comment\n\nshop.pem [alpn h2] shop.example.com !www.shop.example.com\n/abs/api.pem\n",
        );
        let main = write(
            dir.path(),
            "haproxy.cfg",
            "global\n  crt-base /base\n\nfrontend https # front\n  bind :443 ssl crt \"certs\" crt-list /LIST crt @store/x.pem\n  bind :8443 ssl crt \"${CERTS}/y.pem\"\nbackend b\n  server s 127.0.0.1:80\n"
                .replace("/LIST", &dir.path().join("list.txt").display().to_string())
                .replace("\"certs\"", &format!("\"{}\"", dir.path().join("certs").display()))
                .as_str(),
        );
        let found = discover(&main).unwrap();
        let served: Vec<(String, String, Vec<String>)> = found
            .served
            .iter()
            .map(|s| {
                (
                    s.path.display().to_string(),
                    s.at.to_string(),
                    s.names.clone(),
                )
            })
            .collect();
        let certs = dir.path().join("certs");
        let list = dir.path().join("list.txt");
        assert_eq!(
            served,
            vec![
                (
                    certs.join("a.pem").display().to_string(),
                    format!("{}:5", main.display()),
                    vec![]
                ),
                (
                    certs.join("b.pem").display().to_string(),
                    format!("{}:5", main.display()),
                    vec![]
                ),
                (
                    "/base/shop.pem".to_owned(),
                    format!("{}:3", list.display()),
                    vec!["shop.example.com".to_owned()]
                ),
                (
                    "/abs/api.pem".to_owned(),
                    format!("{}:4", list.display()),
                    vec![]
                ),
            ]
        );
        assert_eq!(found.served[0].key, Some(certs.join("a.pem.key")));
        let unresolved: Vec<(usize, &str)> = found
            .unresolved
            .iter()
            .map(|u| (u.at.line, u.value.as_str()))
            .collect();
        assert_eq!(unresolved, [(5, "@store/x.pem"), (6, "${CERTS}/y.pem")]);
    }

    #[test]
    fn errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        for (text, line, words) in [
            ("bind :443\n", 1, "out of section"),
            ("frontend f\n  bind :443 ssl crt\n", 2, "needs a path"),
            ("frontend f\n\n  bind \"unterminated\n", 3, "unterminated"),
            (
                "frontend f\n  bind :443 ssl crt-list /nonexistent/list\n",
                2,
                "crt-list",
            ),
        ] {
            let main = write(dir.path(), "haproxy.cfg", text);
            let message = discover(&main).unwrap_err().to_string();
            assert!(
                message.contains(&format!("haproxy.cfg:{line}:")) && message.contains(words),
                "{text:?}: {message}"
            );
        }
    }
}
