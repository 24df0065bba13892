//! Apache httpd: `SSLCertificateFile` / `SSLCertificateKeyFile` / `SSLCertificateChainFile` in
//! every `<VirtualHost>`, through `Include` / `IncludeOptional` with globs.
//!
//! Apache's grammar is line-based: a directive and its arguments per line (`\` continues it),
//! `#` comment lines, `<Section args>` … `</Section>` blocks that must close in the file that
//! opened them. Directive names are case-insensitive. Relative paths are resolved against
//! `ServerRoot`, or the main file's directory when it sets none (Debian's layout). `Define`d
//! variables are substituted; others (`${APACHE_LOG_DIR}` comes from the environment of
//! apache2ctl) make the value not resolvable. Conditional sections (`<IfModule>`,
//! `<IfDefine>`) are read as if their condition held: a certificate that might be served is
//! listed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{
    DiscoverError, Discovery, Location, MAX_FILES, MAX_INCLUDE_DEPTH, Served, Server, Unresolved,
};

const SERVER: Server = Server::Apache;

#[derive(Debug, Clone)]
struct Directive {
    /// Lower case.
    name: String,
    args: Vec<String>,
    at: Location,
    block: Option<Vec<Self>>,
}

/// Splits one logical line into words: bare, or in double or single quotes.
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else {
            break;
        };
        let mut word = String::new();
        if first == '"' || first == '\'' {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                if c == '\\' && chars.peek() == Some(&first) {
                    word.push(first);
                    chars.next();
                } else if c == first {
                    closed = true;
                    break;
                } else {
                    word.push(c);
                }
            }
            if !closed {
                return Err(format!("unterminated {first}quoted{first} argument"));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        words.push(word);
    }
    Ok(words)
}

struct Reader {
    server_root: PathBuf,
    defines: HashMap<String, String>,
    inputs: Vec<PathBuf>,
    unresolved: Vec<Unresolved>,
    files: usize,
}

impl Reader {
    /// `${NAME}` replaced by `Define`d values; None when one is not defined.
    fn substitute(&self, text: &str) -> Option<String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}')?;
            out.push_str(self.defines.get(&after[..end])?);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Some(out)
    }

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
        let at = |line: usize| Location {
            file: path.to_owned(),
            line,
        };
        // Each open section: its name, where it opened, and the directives so far.
        let mut stack: Vec<(String, Vec<String>, Location, Vec<Directive>)> =
            vec![(String::new(), Vec::new(), at(0), Vec::new())];
        let mut lines = text.lines().enumerate();
        while let Some((index, raw)) = lines.next() {
            let line_number = index + 1;
            let mut line = raw.trim().to_owned();
            while line.ends_with('\\') {
                line.pop();
                match lines.next() {
                    Some((_, next)) => line.push_str(next.trim_start()),
                    None => break,
                }
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let location = at(line_number);
            if let Some(close) = line.strip_prefix("</") {
                let name = close.trim_end_matches('>').trim().to_ascii_lowercase();
                if stack.len() <= 1 {
                    return Err(DiscoverError::syntax(
                        SERVER,
                        location,
                        format!("</{name}> without matching <{name}> section"),
                    ));
                }
                let Some((open, args, opened_at, body)) = stack.pop() else {
                    continue;
                };
                if open != name {
                    return Err(DiscoverError::syntax(
                        SERVER,
                        location,
                        format!("</{name}> closes <{open}> opened at {opened_at}"),
                    ));
                }
                let parent = &mut stack.last_mut().expect("the file level stays").3;
                parent.push(Directive {
                    name: open,
                    args,
                    at: opened_at,
                    block: Some(body),
                });
                continue;
            }
            if let Some(open) = line.strip_prefix('<') {
                let Some(inner) = open.strip_suffix('>') else {
                    return Err(DiscoverError::syntax(
                        SERVER,
                        location,
                        format!("<{open} lacks its closing \">\""),
                    ));
                };
                let mut parts = words(inner)
                    .map_err(|message| DiscoverError::syntax(SERVER, location.clone(), message))?;
                if parts.is_empty() {
                    return Err(DiscoverError::syntax(SERVER, location, "empty section <>"));
                }
                let name = parts.remove(0).to_ascii_lowercase();
                stack.push((name, parts, location, Vec::new()));
                continue;
            }
            let mut parts = words(&line)
                .map_err(|message| DiscoverError::syntax(SERVER, location.clone(), message))?;
            let name = parts.remove(0).to_ascii_lowercase();
            let directives = &mut stack.last_mut().expect("the file level stays").3;
            match name.as_str() {
                "define" => {
                    if let Some(variable) = parts.first() {
                        let value = parts.get(1).cloned().unwrap_or_default();
                        let value = self.substitute(&value).unwrap_or(value);
                        self.defines.insert(variable.clone(), value);
                    }
                }
                "undefine" => {
                    if let Some(variable) = parts.first() {
                        self.defines.remove(variable);
                    }
                }
                "serverroot" => {
                    if let Some(root) = parts.first().and_then(|root| self.substitute(root)) {
                        self.server_root = PathBuf::from(root);
                    }
                }
                "include" | "includeoptional" => {
                    let included = self.include(&name, &parts, &location, depth)?;
                    let directives = &mut stack.last_mut().expect("the file level stays").3;
                    directives.extend(included);
                }
                _ => directives.push(Directive {
                    name,
                    args: parts,
                    at: location,
                    block: None,
                }),
            }
        }
        if stack.len() > 1 {
            let (name, _, opened_at, _) = stack.swap_remove(1);
            return Err(DiscoverError::syntax(
                SERVER,
                opened_at,
                format!("<{name}> is not closed in this file"),
            ));
        }
        Ok(stack.pop().map(|(_, _, _, body)| body).unwrap_or_default())
    }

    fn include(
        &mut self,
        directive: &str,
        args: &[String],
        at: &Location,
        depth: usize,
    ) -> Result<Vec<Directive>, DiscoverError> {
        let optional = directive == "includeoptional";
        let Some(raw) = args.first() else {
            return Err(DiscoverError::syntax(
                SERVER,
                at.clone(),
                "Include takes a file, directory or glob",
            ));
        };
        let Some(pattern) = self.substitute(raw) else {
            // A file that cannot be found may hold certificates: say so.
            self.unresolved.push(Unresolved {
                server: SERVER,
                at: at.clone(),
                value: raw.clone(),
                reason: "an Include whose path holds a variable that is not Define'd here (set by apache2ctl's environment?)".to_owned(),
                names: Vec::new(),
            });
            return Ok(Vec::new());
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
        let pattern = super::resolve(&self.server_root, &pattern);
        let wildcard = super::has_wildcard(&pattern.to_string_lossy());
        let matches = super::glob(&pattern, &mut self.inputs);
        if matches.is_empty() || (!wildcard && !pattern.exists()) {
            if optional {
                return Ok(Vec::new());
            }
            return Err(DiscoverError::syntax(
                SERVER,
                at.clone(),
                format!(
                    "Include {}: no such file (use IncludeOptional for a glob that may match nothing)",
                    pattern.display()
                ),
            ));
        }
        let mut directives = Vec::new();
        for path in matches {
            for file in files_under(&path, &mut self.inputs) {
                directives.extend(self.file(&file, depth + 1)?);
            }
        }
        Ok(directives)
    }
}

/// A file, or every file under a directory (sorted, recursively), as Apache includes them.
fn files_under(path: &Path, listed: &mut Vec<PathBuf>) -> Vec<PathBuf> {
    if !path.is_dir() {
        return vec![path.to_owned()];
    }
    listed.push(path.to_owned());
    let Ok(entries) = std::fs::read_dir(path) else {
        return Vec::new();
    };
    let mut children: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .collect();
    children.sort();
    children
        .into_iter()
        .flat_map(|child| files_under(&child, listed))
        .collect()
}

/// Reads Apache's configuration from its main file.
pub(super) fn discover(main: &Path) -> Result<Discovery, DiscoverError> {
    let mut reader = Reader {
        server_root: main.parent().unwrap_or(Path::new("/")).to_owned(),
        defines: HashMap::new(),
        inputs: Vec::new(),
        unresolved: Vec::new(),
        files: 0,
    };
    let directives = reader.file(main, 0)?;
    let mut discovery = Discovery {
        unresolved: std::mem::take(&mut reader.unresolved),
        ..Discovery::default()
    };
    // Arguments are substituted now that every Define is known.
    let global = collect(&directives, &reader);
    let mut inherited_names = Vec::new();
    for vhost in vhosts(&directives) {
        let own = collect(vhost, &reader);
        let names = own.names.clone();
        if own.certs.is_empty() && own.chains.is_empty() {
            if own.ssl_on {
                inherited_names.extend(names);
            }
            continue;
        }
        own.record(&names, &reader.server_root, &mut discovery);
    }
    if !global.certs.is_empty() || !global.chains.is_empty() {
        let mut names = global.names.clone();
        names.extend(inherited_names);
        global.record(&names, &reader.server_root, &mut discovery);
    }
    discovery.inputs = reader.inputs;
    Ok(discovery)
}

/// The bodies of every `<VirtualHost>`, at any depth (inside `<IfModule>` and the like).
fn vhosts(directives: &[Directive]) -> Vec<&[Directive]> {
    let mut found = Vec::new();
    for directive in directives {
        if let Some(block) = &directive.block {
            if directive.name == "virtualhost" {
                found.push(block.as_slice());
            } else {
                found.extend(vhosts(block));
            }
        }
    }
    found
}

/// What one scope (the server config, or a virtual host) says about TLS.
struct Scope {
    names: Vec<String>,
    certs: Vec<(Location, Option<String>, String)>,
    keys: Vec<Option<String>>,
    chains: Vec<(Location, Option<String>, String)>,
    ssl_on: bool,
}

/// The scope's own directives, looking into conditional sections but not into virtual hosts.
fn collect(directives: &[Directive], reader: &Reader) -> Scope {
    let mut scope = Scope {
        names: Vec::new(),
        certs: Vec::new(),
        keys: Vec::new(),
        chains: Vec::new(),
        ssl_on: false,
    };
    fn visit(directives: &[Directive], reader: &Reader, scope: &mut Scope) {
        for directive in directives {
            if let Some(block) = &directive.block {
                if directive.name != "virtualhost" {
                    visit(block, reader, scope);
                }
                continue;
            }
            let Some(raw) = directive.args.first() else {
                continue;
            };
            let value = reader.substitute(raw);
            match directive.name.as_str() {
                "servername" => {
                    scope.names.push(
                        value
                            .unwrap_or_else(|| raw.clone())
                            .split(':')
                            .next()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                }
                "serveralias" => {
                    scope.names.extend(directive.args.iter().cloned());
                }
                "sslengine" => scope.ssl_on = raw.eq_ignore_ascii_case("on"),
                "sslcertificatefile" => {
                    scope.certs.push((directive.at.clone(), value, raw.clone()));
                }
                "sslcertificatekeyfile" => scope.keys.push(value),
                "sslcertificatechainfile" => {
                    scope
                        .chains
                        .push((directive.at.clone(), value, raw.clone()));
                }
                _ => {}
            }
        }
    }
    visit(directives, reader, &mut scope);
    scope
}

impl Scope {
    fn record(&self, names: &[String], root: &Path, discovery: &mut Discovery) {
        let files = self
            .certs
            .iter()
            .enumerate()
            .map(|(index, cert)| (cert, self.keys.get(index).cloned().flatten(), false))
            .chain(self.chains.iter().map(|chain| (chain, None, true)));
        for ((at, value, raw), key, chain_only) in files {
            match value {
                Some(path) => discovery.served.push(Served {
                    server: SERVER,
                    at: at.clone(),
                    path: super::resolve(root, path),
                    key: key.map(|key| super::resolve(root, &key)),
                    names: names.to_vec(),
                    chain_only,
                }),
                None => discovery.unresolved.push(Unresolved {
                    server: SERVER,
                    at: at.clone(),
                    value: raw.clone(),
                    reason: "the path holds a variable that is not Define'd in the configuration (set by apache2ctl's environment?)".to_owned(),
                    names: names.to_vec(),
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::write;
    use super::*;

    #[test]
    fn virtual_hosts_includes_defines_and_variables() {
        let dir = tempfile::tempdir().unwrap();
        let main = write(
            dir.path(),
            "apache2.conf",
            "Define TLS /tls\nIncludeOptional sites/*.conf\nIncludeOptional nothing/*.conf\nInclude ${APACHE_CONFDIR}/x.conf\n",
        );
        write(
            dir.path(),
            "sites/a.conf",
            "<IfModule mod_ssl.c>\n<VirtualHost *:443>\n  ServerName shop.example.com:443\n  ServerAlias www.shop.example.com \\\n     shop.example.org\n  SSLEngine on\n  SSLCertificateFile ${TLS}/shop.pem\n  SSLCertificateKeyFile \"${TLS}/shop.key\"\n  SSLCertificateChainFile tls/chain.pem\n</VirtualHost>\n</IfModule>\n",
        );
        write(
            dir.path(),
            "sites/b.conf",
            "<VirtualHost *:443>\n  ServerName api.example.com\n  sslcertificatefile ${APACHE_TLS}/api.pem\n</VirtualHost>\n",
        );
        let found = discover(&main).unwrap();
        assert_eq!(found.served.len(), 2, "{found:?}");
        assert_eq!(found.served[0].path, PathBuf::from("/tls/shop.pem"));
        assert_eq!(found.served[0].key, Some(PathBuf::from("/tls/shop.key")));
        assert_eq!(found.served[0].at.line, 7);
        assert_eq!(
            found.served[0].names,
            [
                "shop.example.com",
                "www.shop.example.com",
                "shop.example.org"
            ]
        );
        assert_eq!(found.served[1].path, dir.path().join("tls/chain.pem"));
        assert!(found.served[1].chain_only);
        let unresolved: Vec<(usize, &str)> = found
            .unresolved
            .iter()
            .map(|u| (u.at.line, u.value.as_str()))
            .collect();
        assert_eq!(
            unresolved,
            [
                (4, "${APACHE_CONFDIR}/x.conf"),
                (3, "${APACHE_TLS}/api.pem")
            ]
        );
    }

    #[test]
    fn unbalanced_sections_and_missing_includes_are_errors_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        for (text, line, words) in [
            ("<VirtualHost *:443>\nServerName a\n", 1, "not closed"),
            (
                "<VirtualHost *:443>\n</Directory>\n",
                2,
                "closes <virtualhost>",
            ),
            ("ServerName a\n</VirtualHost>\n", 2, "without matching"),
            ("\nInclude missing/*.conf\n", 2, "no such file"),
            ("SSLCertificateFile \"/a b\n", 1, "unterminated"),
        ] {
            let main = write(dir.path(), "apache2.conf", text);
            let message = discover(&main).unwrap_err().to_string();
            assert!(
                message.contains(&format!("apache2.conf:{line}:")) && message.contains(words),
                "{text:?}: {message}"
            );
        }
    }
}
