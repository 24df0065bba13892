//! Certificate names, in one rule: they become directory and file names under `state_dir`
//! (`archive/NAME/`, `live/NAME`, `state/NAME.json`, `ari/NAME.json`), so only letters,
//! digits, `.`, `-` and `_`, not starting with `.`, and short enough for any file system.
//! Version directories in the archive follow the same rule.

/// The longest name: far below the 255 bytes of a file name, with room for suffixes.
pub const MAX_LEN: usize = 200;

/// Whether `c` may appear in a name.
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')
}

/// Whether `name` may be used as a certificate (or version) name.
pub fn is_valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_LEN
        && !name.starts_with('.')
        && name.chars().all(is_name_char)
}

/// The rule in words, for error messages.
pub const RULE: &str =
    "letters, digits, '.', '-' and '_', not starting with '.', at most 200 characters";

/// A valid name made from `text` (a certbot lineage, a host name): other characters become
/// `-`, a leading `.` too, and it is cut to [`MAX_LEN`]; `fallback` when nothing is left.
pub fn sanitize(text: &str, fallback: &str) -> String {
    let mut name: String = text
        .chars()
        .map(|c| if is_name_char(c) { c } else { '-' })
        .take(MAX_LEN)
        .collect();
    if name.starts_with('.') {
        name.replace_range(..1, "-");
    }
    if name.is_empty() {
        fallback.to_owned()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule() {
        for good in ["shop", "www.example.com", "a_b-c.1", &"x".repeat(MAX_LEN)] {
            assert!(is_valid(good), "{good}");
        }
        for bad in [
            "",
            ".hidden",
            "a/b",
            "..",
            "a b",
            "é",
            &"x".repeat(MAX_LEN + 1),
        ] {
            assert!(!is_valid(bad), "{bad}");
        }
        assert_eq!(sanitize("my site/x", "certbot"), "my-site-x");
        assert_eq!(sanitize(".x", "certbot"), "-x");
        assert_eq!(sanitize("", "certbot"), "certbot");
        assert!(is_valid(&sanitize(&"é".repeat(500), "certbot")));
    }
}
