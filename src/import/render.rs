//! Rendering an import as an evercert configuration (TOML with comments). No I/O.

use std::fmt::Write as _;

use super::translate::{Challenge, Import, Translated};
use crate::config::{LETSENCRYPT, LETSENCRYPT_STAGING};

pub(super) fn toml_string(text: &str) -> String {
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
pub(super) fn comment(out: &mut String, prefix: &str, text: &str) {
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
