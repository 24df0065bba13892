//! certbot's renewal configuration (`renewal/NAME.conf`, configobj's INI dialect).

use std::collections::BTreeMap;

/// One value of a configobj file: configobj turns unquoted commas into lists
/// (`webroot_path = /var/www/html,` is a one-element list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IniValue {
    Single(String),
    List(Vec<String>),
}

impl IniValue {
    /// The value as one string; lists joined the way configobj would have split them.
    pub(super) fn text(&self) -> String {
        match self {
            Self::Single(text) => text.clone(),
            Self::List(items) => items.join(", "),
        }
    }

    /// The value as a list; a single value is a list of one.
    pub(super) fn items(&self) -> Vec<String> {
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
    pub(super) fn top(&self, key: &str) -> Option<String> {
        present(self.top.get(key))
    }

    /// A `[renewalparams]` key, unless empty or configobj's `None`.
    pub(super) fn param(&self, key: &str) -> Option<String> {
        present(self.params.get(key))
    }

    pub(super) fn param_items(&self, key: &str) -> Vec<String> {
        self.params
            .get(key)
            .map(IniValue::items)
            .unwrap_or_default()
            .into_iter()
            .filter(|item| !item.is_empty() && item != "None")
            .collect()
    }

    pub(super) fn flag(&self, key: &str) -> bool {
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
pub(super) fn parse_value(raw: &str) -> IniValue {
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
