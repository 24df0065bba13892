//! Parsing: walk toml's spanned document, report unknown keys against the `Raw*` field lists,
//! and deserialize each section on its own so one bad section does not hide the next.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::raw::{
    RawAcme, RawAlerts, RawCertificate, RawDiscover, RawMetrics, RawMonitor, RawRenewal, table_keys,
};
use super::{Config, ConfigError, ConfigErrors, DEFAULT_CONFIG_PATH, DEFAULT_STATE_DIR};

/// Reads and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    // A FIFO, a device or a huge file named by --config is an error, not a hang.
    let text = crate::fsread::read_to_string(path, crate::fsread::CONFIG_FILE_MAX).map_err(|err| {
        use crate::fsread::Problem;
        let (message, hint) = match err.problem {
            Problem::NotFound => (
                "configuration file not found".to_owned(),
                format!(
                    "create it (see examples/evercert.toml), or name another with --config FILE \
                     or $EVERCERT_CONFIG (default {DEFAULT_CONFIG_PATH})"
                ),
            ),
            Problem::PermissionDenied => (
                "permission denied reading the configuration file".to_owned(),
                "run evercert as the user that owns the configuration (usually root)".to_owned(),
            ),
            problem => (
                format!("cannot read the configuration file: {problem}"),
                "check that the path names a readable UTF-8 text file".to_owned(),
            ),
        };
        ConfigErrors(vec![ConfigError {
            file: path.to_owned(),
            line: 0,
            column: 0,
            message,
            hint: Some(hint),
        }])
    })?;
    parse(&text, path)
}

/// Validates configuration text; `path` names it in errors and anchors relative paths.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    // Spans of every value are only needed to place errors: a config with ten thousand
    // certificates would hold tens of thousands of them. Parse without, and again with them
    // when there is something to report.
    parse_with(text, path, false).or_else(|_| parse_with(text, path, true))
}

pub(super) fn parse_with(
    text: &str,
    path: &Path,
    record_spans: bool,
) -> Result<Config, ConfigErrors> {
    let mut parser = Parser {
        text,
        line_starts: line_starts(text),
        file: path,
        errors: Vec::new(),
        spans: HashMap::new(),
        record_spans,
    };
    let (document, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        for error in syntax_errors {
            let span = error.span().unwrap_or(0..0);
            parser.error(
                span,
                format!("TOML syntax error: {}", error.message().trim()),
                Some("check quotes, brackets and `key = value` on this line".into()),
            );
        }
        return Err(ConfigErrors(parser.errors));
    }
    let document_span = document.span();
    let mut root = document.into_inner();
    parser.check_keys(&mut root, "", "");
    let config = parser.build(root, document_span);
    if parser.errors.is_empty() {
        Ok(config)
    } else {
        parser.errors.sort_by_key(|e| (e.line, e.column));
        Err(ConfigErrors(parser.errors))
    }
}

pub(super) struct Parser<'a> {
    pub(super) text: &'a str,
    /// Where each line starts, so that an error's line:column costs a binary search and a
    /// file with thousands of errors is still reported at once.
    pub(super) line_starts: Vec<usize>,
    pub(super) file: &'a Path,
    pub(super) errors: Vec<ConfigError>,
    /// Where each value is, by path: `certificate[1].domains`, `acme.directory`.
    pub(super) spans: HashMap<String, Range<usize>>,
    /// Whether to fill `spans` (only when reporting errors).
    pub(super) record_spans: bool,
}

impl Parser<'_> {
    pub(super) fn error(&mut self, span: Range<usize>, message: String, hint: Option<String>) {
        let (line, column) = line_column(self.text, &self.line_starts, span.start);
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            line,
            column,
            message,
            hint,
        });
    }

    /// Reports an error at the value `key` of the table at `path`, or at the table itself.
    pub(super) fn error_at(
        &mut self,
        path: &str,
        key: &str,
        message: String,
        hint: Option<String>,
    ) {
        let full = join(path, key);
        let span = self
            .spans
            .get(&full)
            .or_else(|| self.spans.get(path))
            .cloned()
            .unwrap_or(0..0);
        self.error(span, message, hint);
    }

    /// Reports unknown keys (removing them, so later steps see only known ones) and records
    /// the span of every value.
    pub(super) fn check_keys(&mut self, table: &mut DeTable<'_>, schema_path: &str, path: &str) {
        let Some(valid) = table_keys(schema_path) else {
            return;
        };
        let mut unknown = Vec::new();
        for (key, value) in table.iter_mut() {
            let name: &str = key.get_ref();
            let value_path = join(path, name);
            if self.record_spans {
                self.spans.insert(value_path.clone(), value.span());
            }
            if !valid.contains(&name) {
                unknown.push((name.to_owned(), key.span()));
                continue;
            }
            let child_schema = join(schema_path, name);
            if table_keys(&child_schema).is_none() {
                continue;
            }
            match value.get_mut() {
                DeValue::Table(child) => self.check_keys(child, &child_schema, &value_path),
                DeValue::Array(items) => {
                    for (index, item) in items.iter_mut().enumerate() {
                        let item_path = format!("{value_path}[{index}]");
                        if self.record_spans {
                            self.spans.insert(item_path.clone(), item.span());
                        }
                        if let DeValue::Table(child) = item.get_mut() {
                            self.check_keys(child, &child_schema, &item_path);
                        }
                    }
                }
                _ => {}
            }
        }
        for (name, span) in unknown {
            table.remove(name.as_str());
            let section = if path.is_empty() {
                "at the top level".to_owned()
            } else {
                format!("in [{}]", display_path(path))
            };
            let hint = match closest(&name, valid) {
                Some(best) => format!("did you mean `{best}`?"),
                None => format!("valid keys here: {}", valid.join(", ")),
            };
            self.error(span, format!("unknown key `{name}` {section}"), Some(hint));
        }
    }

    /// Deserializes one section on its own; errors are recorded and `None` returned.
    pub(super) fn section<T: for<'de> Deserialize<'de> + Default>(
        &mut self,
        value: Option<Spanned<DeValue<'_>>>,
        path: &str,
        expected: &str,
    ) -> Option<T> {
        let Some(value) = value else {
            return Some(T::default());
        };
        let span = value.span();
        if !matches!(value.get_ref(), DeValue::Table(_)) {
            self.error(
                span,
                format!("`{path}` must be a table"),
                Some(format!("write it as {expected}")),
            );
            return None;
        }
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(parsed) => Some(parsed),
            Err(err) => {
                let span = err.span().unwrap_or(span);
                let message = err.message().trim().to_owned();
                self.error(
                    span,
                    format!("in [{}]: {message}", display_path(path)),
                    Some(type_hint(&message)),
                );
                None
            }
        }
    }

    /// Deserializes an array of tables such as `[[certificate]]`, element by element.
    pub(super) fn array_section<T: for<'de> Deserialize<'de> + Default>(
        &mut self,
        value: Option<Spanned<DeValue<'_>>>,
        path: &str,
    ) -> Vec<(String, Option<T>)> {
        let Some(value) = value else {
            return Vec::new();
        };
        let span = value.span();
        let DeValue::Array(items) = value.into_inner() else {
            self.error(
                span,
                format!("`{path}` must be an array of tables"),
                Some(format!("write each entry under its own [[{path}]] header")),
            );
            return Vec::new();
        };
        items
            .into_iter()
            .enumerate()
            .map(|(index, item)| {
                let item_path = format!("{path}[{index}]");
                let parsed = self.section(Some(item), &item_path, &format!("[[{path}]]"));
                (item_path, parsed)
            })
            .collect()
    }

    pub(super) fn build(&mut self, mut root: DeTable<'_>, document_span: Range<usize>) -> Config {
        let base = self.file.parent().unwrap_or(Path::new(".")).to_owned();
        let resolve = |path: &Path| -> PathBuf {
            if path.is_absolute() {
                path.to_owned()
            } else {
                base.join(path)
            }
        };
        self.spans.insert(String::new(), document_span);

        // The file the Debian package installs is the example with `template = true` on top:
        // enabling the service before editing it must not order certificates for example.com.
        match root.remove("template").map(Spanned::into_inner) {
            None | Some(DeValue::Boolean(false)) => {}
            Some(DeValue::Boolean(true)) => self.error_at(
                "",
                "template",
                "this is the packaged template, not a configuration for this host yet".into(),
                Some(
                    "fill in [acme] contact and one [[certificate]] per certificate (domains, \
                     cert_path, key_path, the challenge, reload) and [[monitor]]/[alerts] as \
                     needed (/usr/share/doc/evercert/install.md), then remove the `template = true` line"
                        .into(),
                ),
            ),
            Some(_) => self.error_at(
                "",
                "template",
                "`template` must be true or false".into(),
                Some("remove the `template` line once the configuration is filled in".into()),
            ),
        }

        let state_dir = match root.remove("state_dir").map(Spanned::into_inner) {
            None => PathBuf::from(DEFAULT_STATE_DIR),
            Some(DeValue::String(text)) if !text.is_empty() => resolve(Path::new(text.as_ref())),
            Some(_) => {
                self.error_at(
                    "",
                    "state_dir",
                    "`state_dir` must be a non-empty string".into(),
                    Some(format!("write state_dir = \"{DEFAULT_STATE_DIR}\"")),
                );
                PathBuf::from(DEFAULT_STATE_DIR)
            }
        };

        let acme_raw: RawAcme = self
            .section(root.remove("acme"), "acme", "[acme]")
            .unwrap_or_default();
        let acme = self.acme(acme_raw, &resolve);

        let renewal_raw: RawRenewal = self
            .section(root.remove("renewal"), "renewal", "[renewal]")
            .unwrap_or_default();
        let renewal = self.renewal(renewal_raw);

        let mut certificates = Vec::new();
        let mut names: HashMap<String, String> = HashMap::new();
        for (path, raw) in
            self.array_section::<RawCertificate>(root.remove("certificate"), "certificate")
        {
            let Some(raw) = raw else { continue };
            // Duplicates are found on the raw names, so that an invalid first entry does not
            // hide that the second reuses its name.
            if let Some(name) = raw.name.clone() {
                if let Some(first) = names.get(&name).cloned() {
                    self.error_at(
                        &path,
                        "name",
                        format!("duplicate certificate name \"{name}\""),
                        Some(format!(
                            "names must be unique (the first is [{}]); rename one",
                            display_path(&first)
                        )),
                    );
                } else {
                    names.insert(name, path.clone());
                }
            }
            if let Some(cert) = self.certificate(raw, &path, &resolve) {
                certificates.push(cert);
            }
        }
        self.shared_paths(&certificates);

        let mut monitors = Vec::new();
        for (path, raw) in self.array_section::<RawMonitor>(root.remove("monitor"), "monitor") {
            let Some(raw) = raw else { continue };
            if let Some(monitor) = self.monitor(raw, &path, &resolve) {
                monitors.push(monitor);
            }
        }

        let alerts_raw: RawAlerts = self
            .section(root.remove("alerts"), "alerts", "[alerts]")
            .unwrap_or_default();
        let alerts = self.alerts(alerts_raw);

        let metrics = match root.remove("metrics") {
            None => None,
            Some(value) => self
                .section::<RawMetrics>(Some(value), "metrics", "[metrics]")
                .and_then(|raw| self.metrics(raw)),
        };

        let discover = match root.remove("discover") {
            None => None,
            Some(value) => self
                .section::<RawDiscover>(Some(value), "discover", "[discover]")
                .map(|raw| self.discover(raw, &resolve)),
        };

        let cluster = match root.remove("cluster") {
            None => None,
            Some(value) => self
                .section::<crate::fleet::config::RawCluster>(Some(value), "cluster", "[cluster]")
                .and_then(|raw| {
                    crate::fleet::config::validate(raw, &resolve, &mut |key, message, hint| {
                        self.error_at("cluster", key, message, hint);
                    })
                }),
        };

        Config {
            source: self.file.to_owned(),
            state_dir,
            acme,
            renewal,
            certificates,
            monitors,
            alerts,
            metrics,
            discover,
            cluster,
        }
    }
}

pub(super) fn type_hint(message: &str) -> String {
    if message.contains("invalid type") {
        "check the value's type: strings need quotes, lists need [ ], tables need their own [header]"
            .into()
    } else {
        "see examples/evercert.toml for the expected shape".into()
    }
}

pub(super) fn closest<'a>(name: &str, valid: &[&'a str]) -> Option<&'a str> {
    valid
        .iter()
        .map(|candidate| (strsim::jaro_winkler(name, candidate), *candidate))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

pub(super) fn join(path: &str, key: &str) -> String {
    match (path.is_empty(), key.is_empty()) {
        (true, _) => key.to_owned(),
        (_, true) => path.to_owned(),
        _ => format!("{path}.{key}"),
    }
}

/// `certificate[1].http01` → `certificate #2 http01`, the way an operator counts.
pub(super) fn display_path(path: &str) -> String {
    let mut out = String::new();
    for part in path.split('.') {
        if !out.is_empty() {
            out.push('.');
        }
        match part.split_once('[') {
            Some((name, index)) => {
                let index: usize = index.trim_end_matches(']').parse().unwrap_or(0);
                out.push_str(&format!("{name} #{}", index + 1));
            }
            None => out.push_str(part),
        }
    }
    out
}

/// The byte offset at which each line starts: 0, then one past every `\n`.
pub(super) fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(newline, _)| newline + 1))
        .collect()
}

/// 1-based line and (byte) column of `offset`, from [`line_starts`].
pub(super) fn line_column(text: &str, line_starts: &[usize], offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    // line_starts[0] == 0 <= offset, so the line is at least 1.
    let line = line_starts.partition_point(|&start| start <= offset);
    (line, offset - line_starts[line - 1] + 1)
}
