//! The documentation cannot drift from the program: every `evercert …` command shown in the
//! README and docs/ parses, every command's `--help` has an example, the committed man page
//! and completions are what the binary generates, and the Debian package's files exist.
//! (Every ```toml block is checked by `cli_inventory::every_example_config_is_valid`.)

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser};
use evercert::cli::Cli;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and docs/*.md.
fn markdown_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    files.push(root().join("README.md"));
    files.sort();
    files
}

fn label(path: &Path, line: usize) -> String {
    format!("{}:{line}", path.strip_prefix(root()).unwrap().display())
}

/// Where a piece of code was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// A line of a shell-like code block (fenced as sh, bash, console, text or nothing, or
    /// indented by four spaces).
    Block,
    /// An inline code span in prose.
    Inline,
}

/// Fenced blocks whose lines may be commands; YAML, JSON, INI, TOML… hold none (a YAML
/// description may well start with "evercert cannot …").
const SHELL_FENCES: &[&str] = &["", "sh", "bash", "shell", "console", "text"];

/// `(line number, place, text)` of every line inside a shell-like code block (fenced, or
/// indented by four spaces after a blank line), with `\` continuations joined; and of every
/// inline code span outside code blocks.
fn code_lines(markdown: &str) -> Vec<(usize, Place, String)> {
    let mut lines = Vec::new();
    let mut fenced = false;
    let mut shell_fence = false;
    let mut indented = false;
    let mut previous_blank = true;
    let mut continued: Option<(usize, String)> = None;
    for (index, line) in markdown.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim_start();
        if let Some(language) = trimmed.strip_prefix("```") {
            fenced = !fenced;
            shell_fence = fenced && SHELL_FENCES.contains(&language.trim());
            previous_blank = false;
            continue;
        }
        if fenced && !shell_fence {
            continue;
        }
        let in_code = if fenced {
            true
        } else if line.starts_with("    ") && (indented || previous_blank) {
            indented = true;
            true
        } else {
            indented = indented && line.trim().is_empty();
            false
        };
        previous_blank = line.trim().is_empty();
        if in_code {
            let text = line.trim();
            let (start, mut joined) = continued.take().unwrap_or((number, String::new()));
            if !joined.is_empty() {
                joined.push(' ');
            }
            match text.strip_suffix('\\') {
                Some(head) => {
                    joined.push_str(head.trim_end());
                    continued = Some((start, joined));
                }
                None => {
                    joined.push_str(text);
                    lines.push((start, Place::Block, joined));
                }
            }
        } else {
            let mut rest = line;
            while let Some(open) = rest.find('`') {
                let after = &rest[open + 1..];
                let Some(close) = after.find('`') else { break };
                lines.push((number, Place::Inline, after[..close].to_owned()));
                rest = &after[close + 1..];
            }
        }
    }
    lines
}

/// The words of the `evercert` command on `text`, if it shows one: after an optional
/// prompt (`$`), `sudo` and `VAR=value` assignments, up to a pipe, `;`, `&&`, `||`, a
/// redirection, a comment or a run of three spaces (the start of a description column).
/// In a code block the program may be a path (`/usr/bin/evercert renew`); inline it must be
/// `evercert` itself, so that `/var/lib/evercert` is a path and not a command. A bare
/// `evercert` is no command either.
fn evercert_command(place: Place, text: &str) -> Option<Vec<String>> {
    let text = text.split("   ").next().unwrap_or_default();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut has_word = false;
    for c in text.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => word.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                has_word = true;
            }
            None if c.is_whitespace() => {
                if has_word {
                    words.push(std::mem::take(&mut word));
                    has_word = false;
                }
            }
            None => {
                word.push(c);
                has_word = true;
            }
        }
    }
    if has_word {
        words.push(word);
    }
    let mut words = words.into_iter().peekable();
    while let Some(first) = words.peek() {
        let assignment = first.split_once('=').is_some_and(|(name, _)| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        });
        if first == "$" || first == "sudo" || assignment {
            words.next();
        } else {
            break;
        }
    }
    let program = words.next()?;
    let is_evercert = match place {
        Place::Inline => program == "evercert",
        Place::Block => Path::new(&program)
            .file_name()
            .is_some_and(|name| name == "evercert"),
    };
    if !is_evercert {
        return None;
    }
    let mut args = Vec::new();
    for word in words {
        let operator = ["|", "||", "&&", ";", "&", "<"].contains(&word.as_str())
            || word.starts_with('>')
            || word.starts_with("2>")
            || word.starts_with('#');
        if operator {
            break;
        }
        if let Some(head) = word.strip_suffix(';') {
            args.push(head.to_owned());
            break;
        }
        args.push(word);
    }
    (!args.is_empty()).then_some(args)
}

/// Synopsis notation made concrete: `[--json]` → `--json`, `show|rollover` → each of them.
fn expand(args: &[String]) -> Vec<Vec<String>> {
    let mut variants: Vec<Vec<String>> = vec![Vec::new()];
    for arg in args {
        let arg = arg.replace(['[', ']'], "");
        if arg.is_empty() {
            continue;
        }
        let choices: Vec<&str> = arg.split('|').filter(|choice| !choice.is_empty()).collect();
        variants = variants
            .into_iter()
            .flat_map(|variant| {
                choices.iter().map(move |choice| {
                    let mut next = variant.clone();
                    next.push((*choice).to_owned());
                    next
                })
            })
            .collect();
    }
    variants
}

/// The subcommand words of a parsed command line (`config check`).
fn subcommand_path(args: &[String]) -> Vec<String> {
    let mut command = Cli::command();
    let mut path = Vec::new();
    let mut skip_value = false;
    for arg in args {
        if skip_value {
            skip_value = false;
            continue;
        }
        if arg == "-c" || arg == "--config" {
            skip_value = true;
            continue;
        }
        if arg.starts_with('-') {
            continue;
        }
        match command.find_subcommand(arg) {
            Some(sub) => {
                path.push(arg.clone());
                command = sub.clone();
            }
            None => break,
        }
    }
    path
}

#[test]
fn every_evercert_command_in_the_docs_parses() {
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut paths = BTreeSet::new();
    for file in markdown_files() {
        let text = fs::read_to_string(&file).unwrap();
        for (line, place, code) in code_lines(&text) {
            let Some(args) = evercert_command(place, &code) else {
                continue;
            };
            for variant in expand(&args) {
                checked += 1;
                let argv = std::iter::once("evercert".to_owned()).chain(variant.iter().cloned());
                match Cli::try_parse_from(argv) {
                    Ok(_) => {}
                    Err(err)
                        if matches!(
                            err.kind(),
                            clap::error::ErrorKind::DisplayHelp
                                | clap::error::ErrorKind::DisplayVersion
                        ) => {}
                    Err(err) => failures.push(format!(
                        "{}: `evercert {}`: {}",
                        label(&file, line),
                        variant.join(" "),
                        err.render().to_string().lines().next().unwrap_or_default()
                    )),
                }
                paths.insert(subcommand_path(&variant));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "commands in the documentation that evercert does not accept:\n{}",
        failures.join("\n")
    );
    assert!(
        checked > 40,
        "only {checked} commands found: is the scan broken?"
    );

    // And the built binary knows each command shown.
    for path in paths.iter().filter(|path| !path.is_empty()) {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_evercert"))
            .args(path)
            .arg("--help")
            .env_remove("EVERCERT_CONFIG")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "`evercert {} --help` failed: {}",
            path.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn the_command_scanner_finds_what_it_should() {
    let markdown = "Run `evercert check shop.example.com:443` first, not `/var/lib/evercert`.\n\n    evercert [-c FILE] account show|rollover|deactivate\n\n```sh\n$ sudo EVERCERT_LOG=debug evercert renew --force \\\n    shop   # comment\necho evercert status\n/usr/bin/evercert status --json | jq .\n```\n\n```yaml\nevercert cannot read it\n```\n";
    let commands: Vec<Vec<String>> = code_lines(markdown)
        .into_iter()
        .filter_map(|(_, place, code)| evercert_command(place, &code))
        .collect();
    assert_eq!(
        commands,
        vec![
            vec!["check", "shop.example.com:443"],
            vec!["[-c", "FILE]", "account", "show|rollover|deactivate"],
            vec!["renew", "--force", "shop"],
            vec!["status", "--json"],
        ]
    );
    let expanded = expand(&commands[1]);
    assert_eq!(expanded.len(), 3);
    assert_eq!(expanded[2], ["-c", "FILE", "account", "deactivate"]);
    assert_eq!(subcommand_path(&expanded[2]), ["account", "deactivate"]);
}

#[test]
fn every_command_has_an_example_in_its_help() {
    fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for sub in command
            .get_subcommands()
            .filter(|sub| !sub.is_hide_set() && sub.get_name() != "help")
        {
            let name = format!("{path} {}", sub.get_name());
            let help = sub
                .get_after_help()
                .or_else(|| sub.get_after_long_help())
                .map(ToString::to_string)
                .unwrap_or_default();
            if !help.contains("Example") || !help.contains(&format!("  {name}")) {
                missing.push(name.clone());
            }
            walk(sub, &name, missing);
        }
    }
    let mut missing = Vec::new();
    walk(&Cli::command(), "evercert", &mut missing);
    assert!(
        missing.is_empty(),
        "commands whose --help shows no example of themselves (add after_help in src/cli.rs): {missing:?}"
    );
}

/// What `evercert generate …` prints.
fn generated(args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_evercert"))
        .arg("generate")
        .args(args)
        .env_remove("EVERCERT_CONFIG")
        .output()
        .unwrap();
    assert!(output.status.success(), "evercert generate {args:?} failed");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_committed_man_page_and_completions_are_up_to_date() {
    let expected = [
        ("contrib/evercert.1", vec!["man"]),
        (
            "contrib/completions/evercert.bash",
            vec!["completions", "bash"],
        ),
        (
            "contrib/completions/evercert.zsh",
            vec!["completions", "zsh"],
        ),
        (
            "contrib/completions/evercert.fish",
            vec!["completions", "fish"],
        ),
    ];
    let mut stale = Vec::new();
    for (file, args) in &expected {
        let fresh = generated(args);
        assert!(fresh.len() > 500, "{file}: generated output is too short");
        if fs::read_to_string(root().join(file)).ok().as_deref() != Some(fresh.as_str()) {
            stale.push(*file);
        }
    }
    assert!(
        stale.is_empty(),
        "{stale:?} differ from what the clap definitions generate: run `bash scripts/contrib.sh` and commit the result"
    );
    let man = generated(&["man"]);
    for command in [
        "evercert renew",
        "evercert check",
        "evercert import certbot",
        "EXIT STATUS",
    ] {
        assert!(man.contains(command), "the man page lacks {command}");
    }
}

#[test]
fn every_file_the_debian_package_installs_exists() {
    let manifest: toml::Table = fs::read_to_string(root().join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    let assets = deb["assets"]
        .as_array()
        .expect("[package.metadata.deb] assets");
    let mut sources = Vec::new();
    let mut destinations = Vec::new();
    for asset in assets {
        let asset = asset.as_array().expect("assets are [source, dest, mode]");
        let source = asset[0].as_str().unwrap();
        destinations.push(asset[1].as_str().unwrap().to_owned());
        let mode = asset[2].as_str().unwrap();
        assert!(
            u32::from_str_radix(mode, 8).is_ok(),
            "{source}: mode {mode} is not octal"
        );
        if source.starts_with("target/") {
            continue; // built by cargo deb
        }
        sources.push(source.to_owned());
        let found = if source.contains('*') {
            let (dir, pattern) = source.rsplit_once('/').unwrap();
            let (prefix, suffix) = pattern.split_once('*').unwrap();
            fs::read_dir(root().join(dir)).is_ok_and(|entries| {
                entries.filter_map(Result::ok).any(|entry| {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    name.starts_with(prefix) && name.ends_with(suffix)
                })
            })
        } else {
            root().join(source).is_file()
        };
        assert!(
            found,
            "[package.metadata.deb] installs {source}, which does not exist"
        );
    }
    // Every unit in systemd/ is packaged, and so are the man page and completions.
    for entry in fs::read_dir(root().join("systemd")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".service") || name.ends_with(".timer") {
            assert!(
                sources.contains(&format!("systemd/{name}")),
                "systemd/{name} is not in [package.metadata.deb] assets"
            );
        }
    }
    for file in [
        "contrib/evercert.1",
        "contrib/completions/evercert.bash",
        "contrib/completions/evercert.zsh",
        "contrib/completions/evercert.fish",
        "examples/evercert.toml",
    ] {
        assert!(
            sources.iter().any(|source| source == file),
            "{file} is not packaged"
        );
    }
    // The example configuration is a conffile, root's alone.
    let conf_files: Vec<&str> = deb["conf-files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| file.as_str().unwrap())
        .collect();
    assert!(conf_files.contains(&"/etc/evercert/evercert.toml"));
    // What lands in /etc is the template (refused until edited), root's alone; the example
    // goes with the documentation.
    let installed = |source: &str| {
        assets
            .iter()
            .map(|asset| asset.as_array().unwrap())
            .find(|asset| asset[0].as_str() == Some(source))
            .unwrap_or_else(|| panic!("{source} is not packaged"))
            .clone()
    };
    let template = installed("debian/evercert.toml");
    assert_eq!(template[1].as_str(), Some("etc/evercert/evercert.toml"));
    assert_eq!(template[2].as_str(), Some("600"));
    let example = installed("examples/evercert.toml");
    assert_eq!(
        example[1].as_str(),
        Some("usr/share/doc/evercert/examples/")
    );
    // The maintainer scripts are there and executable.
    let scripts = root().join(deb["maintainer-scripts"].as_str().unwrap());
    for script in ["postinst", "prerm", "postrm"] {
        let path = scripts.join(script);
        let mode = fs::metadata(&path)
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
            .permissions();
        use std::os::unix::fs::PermissionsExt;
        assert!(
            mode.mode() & 0o111 != 0,
            "{} is not executable",
            path.display()
        );
    }
}

#[test]
fn relative_links_in_the_docs_resolve() {
    let mut broken = Vec::new();
    for file in markdown_files() {
        let text = fs::read_to_string(&file).unwrap();
        let dir = file.parent().unwrap();
        for (index, line) in text.lines().enumerate() {
            let mut rest = line;
            while let Some(start) = rest.find("](") {
                let after = &rest[start + 2..];
                let Some(end) = after.find(')') else { break };
                let target = &after[..end];
                rest = &after[end..];
                let path = target.split('#').next().unwrap_or_default();
                if path.is_empty() || path.contains("://") || path.starts_with("mailto:") {
                    continue;
                }
                if !dir.join(path).exists() {
                    broken.push(format!("{}: {target}", label(&file, index + 1)));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links to files that do not exist:\n{}",
        broken.join("\n")
    );
}

/// The packaged /etc/evercert/evercert.toml is the example with `template = true` on top:
/// `config check` and the agent refuse it (exit 2) saying what to fill in, and without the
/// marker it is exactly the (valid) example, so the two cannot drift apart.
#[test]
fn the_packaged_configuration_is_a_template_refused_until_edited() {
    let template = fs::read_to_string(root().join("debian/evercert.toml")).unwrap();
    let example = fs::read_to_string(root().join("examples/evercert.toml")).unwrap();
    let (header, rest) = template
        .split_once("template = true\n\n")
        .expect("debian/evercert.toml has a `template = true` line");
    assert!(
        header.lines().all(|line| line.starts_with('#')),
        "only comments above the marker:\n{header}"
    );
    assert_eq!(
        rest, example,
        "debian/evercert.toml must be examples/evercert.toml with the template header on top"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evercert.toml");
    fs::write(&path, &template).unwrap();
    for args in [&["config", "check"][..], &["run"][..]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_evercert"))
            .env_remove("EVERCERT_CONFIG")
            .env_remove("JOURNAL_STREAM")
            .arg("-c")
            .arg(&path)
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let line = header.lines().count() + 1;
        assert!(
            stderr.contains(&format!(
                "evercert.toml:{line}:12: this is the packaged template"
            )),
            "{args:?}: {stderr}"
        );
        for what in [
            "[acme] contact",
            "[[certificate]]",
            "remove the `template = true` line",
        ] {
            assert!(stderr.contains(what), "{args:?}: {what:?} in {stderr}");
        }
    }
    // Removal clears failed units, so none stays listed for a package that is gone.
    let prerm = fs::read_to_string(root().join("debian/prerm")).unwrap();
    assert!(
        prerm.contains(
            "systemctl reset-failed evercert.service evercert-renew.service evercert-renew.timer"
        ),
        "{prerm}"
    );
    // Edited (the marker removed), it is the example, which `config check` accepts.
    fs::write(&path, &example).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_evercert"))
        .env_remove("EVERCERT_CONFIG")
        .arg("-c")
        .arg(&path)
        .args(["config", "check"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
