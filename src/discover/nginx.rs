//! nginx: `ssl_certificate` / `ssl_certificate_key` in every `server` block of `http` and
//! `stream` (and `mail`), through `include` with globs.
//!
//! nginx's grammar is small: words (bare or quoted), `;` ending a directive, `{ … }` a block,
//! `#` comments. Relative paths — of includes and of certificates — are resolved against the
//! directory of the main file, nginx's configuration prefix. A server block without its own
//! `ssl_certificate` inherits the enclosing `http`'s or `stream`'s.

use std::path::{Path, PathBuf};

use super::{
    DiscoverError, Discovery, Location, MAX_FILES, MAX_INCLUDE_DEPTH, Served, Server, Unresolved,
};

const SERVER: Server = Server::Nginx;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Semicolon,
    Open,
    Close,
}

/// Splits a file into tokens with their line numbers.
/// The last line number is the end of the file's, where nginx reports a missing `}`.
fn tokenize(text: &str, file: &Path) -> Result<(Vec<(Token, usize)>, usize), DiscoverError> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while let Some(&c) = chars.peek() {
        match c {
            '\n' => {
                line += 1;
                chars.next();
            }
            c if c.is_whitespace() => {
                chars.next();
            }
            '#' => {
                while chars.peek().is_some_and(|c| *c != '\n') {
                    chars.next();
                }
            }
            ';' | '{' | '}' => {
                chars.next();
                let token = match c {
                    ';' => Token::Semicolon,
                    '{' => Token::Open,
                    _ => Token::Close,
                };
                tokens.push((token, line));
            }
            '"' | '\'' => {
                let start = line;
                chars.next();
                let mut word = String::new();
                loop {
                    match chars.next() {
                        None => {
                            return Err(DiscoverError::syntax(
                                SERVER,
                                Location {
                                    file: file.to_owned(),
                                    line: start,
                                },
                                format!("unterminated {c}quoted{c} string"),
                            ));
                        }
                        Some('\\') => match chars.next() {
                            Some(next) if next == c || next == '\\' => word.push(next),
                            Some(next) => {
                                if next == '\n' {
                                    line += 1;
                                }
                                word.push('\\');
                                word.push(next);
                            }
                            None => {}
                        },
                        Some(end) if end == c => break,
                        Some(other) => {
                            if other == '\n' {
                                line += 1;
                            }
                            word.push(other);
                        }
                    }
                }
                tokens.push((Token::Word(word), start));
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, ';' | '{' | '}') {
                        break;
                    }
                    chars.next();
                    if c == '\\' {
                        if let Some(next) = chars.next() {
                            word.push(next);
                        }
                        continue;
                    }
                    word.push(c);
                }
                tokens.push((Token::Word(word), line));
            }
        }
    }
    Ok((tokens, line))
}

/// One directive, with its block (includes already expanded in place).
#[derive(Debug, Clone)]
struct Directive {
    name: String,
    args: Vec<String>,
    at: Location,
    block: Option<Vec<Self>>,
}

struct Reader {
    prefix: PathBuf,
    inputs: Vec<PathBuf>,
    files: usize,
}

impl Reader {
    fn file(&mut self, path: &Path, depth: usize) -> Result<Vec<Directive>, DiscoverError> {
        self.files += 1;
        if self.files > MAX_FILES {
            return Err(DiscoverError::Read {
                server: SERVER,
                path: path.to_owned(),
                message: format!(
                    "more than {MAX_FILES} configuration files; is an include looping?"
                ),
            });
        }
        let text = super::read_config(SERVER, path)?;
        self.inputs.push(path.to_owned());
        let (tokens, end) = tokenize(&text, path)?;
        let mut position = 0;
        let directives = self.block(&tokens, end, &mut position, path, depth, false)?;
        Ok(directives)
    }

    /// Directives until the end of the file (top level) or the `}` closing this block.
    fn block(
        &mut self,
        tokens: &[(Token, usize)],
        end: usize,
        position: &mut usize,
        file: &Path,
        depth: usize,
        nested: bool,
    ) -> Result<Vec<Directive>, DiscoverError> {
        let at = |line: usize| Location {
            file: file.to_owned(),
            line,
        };
        let mut directives = Vec::new();
        let mut words: Vec<(String, usize)> = Vec::new();
        while let Some((token, line)) = tokens.get(*position) {
            *position += 1;
            match token {
                Token::Word(word) => words.push((word.clone(), *line)),
                Token::Semicolon | Token::Open => {
                    let Some(((name, name_line), args)) = words.split_first() else {
                        return Err(DiscoverError::syntax(
                            SERVER,
                            at(*line),
                            format!(
                                "unexpected \"{}\"",
                                if *token == Token::Open { "{" } else { ";" }
                            ),
                        ));
                    };
                    let args: Vec<String> = args.iter().map(|(arg, _)| arg.clone()).collect();
                    let location = at(*name_line);
                    if *token == Token::Open {
                        let block = self.block(tokens, end, position, file, depth, true)?;
                        directives.push(Directive {
                            name: name.clone(),
                            args,
                            at: location,
                            block: Some(block),
                        });
                    } else if name == "include" {
                        directives.extend(self.include(&args, &location, depth)?);
                    } else {
                        directives.push(Directive {
                            name: name.clone(),
                            args,
                            at: location,
                            block: None,
                        });
                    }
                    words.clear();
                }
                Token::Close => {
                    if !words.is_empty() {
                        return Err(DiscoverError::syntax(
                            SERVER,
                            at(*line),
                            format!("directive \"{}\" is not terminated by \";\"", words[0].0),
                        ));
                    }
                    if !nested {
                        return Err(DiscoverError::syntax(SERVER, at(*line), "unexpected \"}\""));
                    }
                    return Ok(directives);
                }
            }
        }
        let last = end;
        if let Some((name, _)) = words.first() {
            return Err(DiscoverError::syntax(
                SERVER,
                at(last),
                format!("unexpected end of file, expecting \";\" or \"}}\" after \"{name}\""),
            ));
        }
        if nested {
            return Err(DiscoverError::syntax(
                SERVER,
                at(last),
                "unexpected end of file, expecting \"}\"",
            ));
        }
        Ok(directives)
    }

    fn include(
        &mut self,
        args: &[String],
        at: &Location,
        depth: usize,
    ) -> Result<Vec<Directive>, DiscoverError> {
        let [pattern] = args else {
            return Err(DiscoverError::syntax(
                SERVER,
                at.clone(),
                "\"include\" takes exactly one file or glob",
            ));
        };
        if depth >= MAX_INCLUDE_DEPTH {
            return Err(DiscoverError::syntax(
                SERVER,
                at.clone(),
                format!(
                    "includes nested more than {MAX_INCLUDE_DEPTH} deep (does a file include itself?)"
                ),
            ));
        }
        let pattern = super::resolve(&self.prefix, pattern);
        let files = super::glob(&pattern, &mut self.inputs);
        let mut directives = Vec::new();
        for file in files {
            if file.is_dir() {
                continue;
            }
            directives.extend(self.file(&file, depth + 1).map_err(|err| match err {
                // A missing literal include stops nginx at the include line.
                DiscoverError::Read { path, message, .. } => DiscoverError::syntax(
                    SERVER,
                    at.clone(),
                    format!("cannot include {}: {message}", path.display()),
                ),
                other => other,
            })?);
        }
        Ok(directives)
    }
}

/// Reads nginx's configuration from its main file.
pub(super) fn discover(main: &Path) -> Result<Discovery, DiscoverError> {
    let prefix = main.parent().unwrap_or(Path::new("/")).to_owned();
    let mut reader = Reader {
        prefix: prefix.clone(),
        inputs: Vec::new(),
        files: 0,
    };
    let directives = reader.file(main, 0)?;
    let mut discovery = Discovery {
        inputs: reader.inputs,
        ..Discovery::default()
    };
    walk(&directives, &[], &prefix, &mut discovery);
    Ok(discovery)
}

/// The `ssl_certificate` / `ssl_certificate_key` pairs of one block, by order.
fn certificates(directives: &[Directive]) -> Vec<(&Directive, Option<&Directive>)> {
    let keys: Vec<&Directive> = directives
        .iter()
        .filter(|directive| directive.name == "ssl_certificate_key")
        .collect();
    directives
        .iter()
        .filter(|directive| directive.name == "ssl_certificate")
        .enumerate()
        .map(|(index, directive)| (directive, keys.get(index).copied()))
        .collect()
}

/// Walks a block; `inherited` are the certificates of the enclosing `http`/`stream`.
fn walk<'a>(
    directives: &'a [Directive],
    inherited: &[(&'a Directive, Option<&'a Directive>)],
    prefix: &Path,
    discovery: &mut Discovery,
) {
    let own = certificates(directives);
    for directive in directives {
        let Some(block) = &directive.block else {
            continue;
        };
        if directive.name == "server" {
            let names: Vec<String> = block
                .iter()
                .filter(|child| child.name == "server_name")
                .flat_map(|child| child.args.iter().cloned())
                .filter(|name| !name.is_empty())
                .collect();
            let server_certs = certificates(block);
            let used = match (server_certs.is_empty(), own.is_empty()) {
                (false, _) => server_certs,
                (true, false) => own.clone(),
                (true, true) => inherited.to_vec(),
            };
            for (cert, key) in used {
                record(cert, key, &names, prefix, discovery);
            }
        } else {
            let context = if own.is_empty() { inherited } else { &own };
            walk(block, context, prefix, discovery);
        }
    }
    // Certificates of a context no server block inherits are still loaded by nginx.
    let has_server = directives
        .iter()
        .any(|directive| directive.name == "server" && directive.block.is_some());
    if !has_server {
        return;
    }
    let all_servers_have_own = directives
        .iter()
        .filter(|directive| directive.name == "server")
        .filter_map(|directive| directive.block.as_deref())
        .all(|block| !certificates(block).is_empty());
    if all_servers_have_own {
        for (cert, key) in &own {
            record(cert, *key, &[], prefix, discovery);
        }
    }
}

fn record(
    cert: &Directive,
    key: Option<&Directive>,
    names: &[String],
    prefix: &Path,
    discovery: &mut Discovery,
) {
    let Some(value) = cert.args.first() else {
        return;
    };
    let unresolved = |reason: &str| Unresolved {
        server: SERVER,
        at: cert.at.clone(),
        value: value.clone(),
        reason: reason.to_owned(),
        names: names.to_vec(),
    };
    if value.starts_with("data:") {
        discovery.unresolved.push(unresolved(
            "nginx's data: certificate is written inside the configuration, not in a file",
        ));
        return;
    }
    if value.contains('$') {
        discovery.unresolved.push(unresolved(
            "the path holds a variable that nginx resolves per connection",
        ));
        return;
    }
    let key = key
        .and_then(|key| key.args.first())
        .filter(|key| {
            !key.contains('$') && !key.starts_with("data:") && !key.starts_with("engine:")
        })
        .map(|key| super::resolve(prefix, key));
    discovery.served.push(Served {
        server: SERVER,
        at: cert.at.clone(),
        path: super::resolve(prefix, value),
        key,
        names: names.to_vec(),
        chain_only: false,
    });
}

#[cfg(test)]
mod tests {
    use super::super::tests::write;
    use super::*;

    #[test]
    fn server_blocks_includes_inheritance_and_variables() {
        let dir = tempfile::tempdir().unwrap();
        let main = write(
            dir.path(),
            "nginx.conf",
            "events {}\nhttp {\n  ssl_certificate default.pem;\n  ssl_certificate_key default.key;\n  include sites/*.conf;\n  server { server_name plain.example.com; }\n}\n",
        );
        write(
            dir.path(),
            "sites/a.conf",
            "server {\n  listen 443 ssl;\n  server_name shop.example.com www.shop.example.com;\n  ssl_certificate \"/tls/shop.pem\";\n  ssl_certificate_key /tls/shop.key;\n}\n",
        );
        write(
            dir.path(),
            "sites/b.conf",
            "server {\n  server_name ~^(.+)$;\n  ssl_certificate /tls/$ssl_server_name.pem; # per name\n  ssl_certificate_key /tls/$ssl_server_name.key;\n}\n",
        );
        let found = discover(&main).unwrap();
        let served: Vec<(String, usize, Vec<String>)> = found
            .served
            .iter()
            .map(|s| (s.path.display().to_string(), s.at.line, s.names.clone()))
            .collect();
        assert_eq!(
            served,
            vec![
                (
                    "/tls/shop.pem".to_owned(),
                    4,
                    vec![
                        "shop.example.com".to_owned(),
                        "www.shop.example.com".to_owned()
                    ]
                ),
                (
                    dir.path().join("default.pem").display().to_string(),
                    3,
                    vec!["plain.example.com".to_owned()]
                ),
            ]
        );
        assert_eq!(found.served[0].key, Some(PathBuf::from("/tls/shop.key")));
        assert_eq!(found.unresolved.len(), 1);
        assert_eq!(found.unresolved[0].at.line, 3);
        assert!(found.unresolved[0].at.file.ends_with("sites/b.conf"));
        assert!(found.inputs.contains(&dir.path().join("sites")));
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        for (text, line, words) in [
            ("http {\n server {\n }\n", 4, "expecting \"}\""),
            ("http {\n}\n}\n", 3, "unexpected \"}\""),
            ("http {\n ssl_certificate /a.pem\n}\n", 3, "not terminated"),
            ("events {}\n\"open\n", 2, "unterminated"),
        ] {
            let main = write(dir.path(), "nginx.conf", text);
            let err = discover(&main).unwrap_err();
            let message = err.to_string();
            assert!(
                message.contains(&format!("nginx.conf:{line}:")) && message.contains(words),
                "{text:?}: {message}"
            );
        }
    }

    #[test]
    fn a_missing_literal_include_is_an_error_at_the_include() {
        let dir = tempfile::tempdir().unwrap();
        let main = write(
            dir.path(),
            "nginx.conf",
            "events {}\n\ninclude missing.conf;\n",
        );
        let message = discover(&main).unwrap_err().to_string();
        assert!(message.contains("nginx.conf:3:"), "{message}");
        let main = write(dir.path(), "nginx.conf", "include nginx.conf;\n");
        let message = discover(&main).unwrap_err().to_string();
        assert!(message.contains("nested more than"), "{message}");
    }
}
