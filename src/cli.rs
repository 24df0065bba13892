//! Command-line parsing and the glue from each command to the library.
//!
//! Parsing (clap) is kept apart from doing: each `cmd_*` function gets validated inputs and
//! returns the process exit code. Exit codes follow the product brief: `renew` 0/1/2,
//! `check` 0/1/2/3 (monitoring-plugin convention), everything else 0 or 2.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use time::OffsetDateTime;

use crate::acme::{AcmeClient, RevocationReasonName};
use crate::config::{self, Config, ConfigErrors, Endpoint};
use crate::inventory;
use crate::logging::error_message;
use crate::policy::Thresholds;
use crate::probe;
use crate::renew::{self, Outcome, RenewRequest};
use crate::report::{self, Entry};
use crate::state::FileState;
use crate::units::parse_duration;

/// Exit code for bad usage or configuration (renew, status, config check, …).
pub const EXIT_USAGE: u8 = 2;
/// `check`'s UNKNOWN.
pub const EXIT_UNKNOWN: u8 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "evercert",
    version,
    about = "ACME certificate renewal agent: renews on time, writes atomically, reloads, verifies, alerts",
    after_help = "Examples:\n  evercert status\n  evercert check --warn 30d --critical 7d shop.example.com:443\n  evercert renew --dry-run\n  evercert config check -c ./evercert.toml"
)]
pub struct Cli {
    /// Configuration file [default: /etc/evercert/evercert.toml]
    #[arg(
        short,
        long,
        global = true,
        env = "EVERCERT_CONFIG",
        value_name = "FILE"
    )]
    config: Option<PathBuf>,

    /// Log every step with times and levels on standard error (one-shot commands print
    /// only their own progress lines and warnings otherwise)
    #[arg(short, long, global = true)]
    verbose: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent in the foreground (systemd Type=notify)
    #[command(
        after_help = "Normally started by systemd (systemctl enable --now evercert); SIGHUP re-reads the configuration.\n\nExamples:\n  evercert run\n  EVERCERT_LOG=debug evercert -c ./evercert.toml run"
    )]
    Run,
    /// Renew what is due (or the named certificates), then exit
    #[command(
        after_help = "Examples:\n  evercert renew\n  evercert renew shop --force\n  evercert renew --dry-run"
    )]
    Renew {
        /// Certificates to renew (default: every certificate that is due)
        names: Vec<String>,
        /// Renew even if not due
        #[arg(long)]
        force: bool,
        /// Use the staging CA; write nothing live; run no reload hook
        #[arg(long)]
        dry_run: bool,
    },
    /// Every managed and monitored certificate and its state
    #[command(
        after_help = "Examples:\n  evercert status\n  evercert status --json | jq '.[] | select(.state != \"ok\")'\n  evercert status --html /var/www/html/evercert.html"
    )]
    Status {
        /// Print one JSON array instead of a table
        #[arg(long, conflicts_with = "html")]
        json: bool,
        /// Write the status page (HTML, one timeline per certificate; what the agent serves at /status) to FILE
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Expiry check for monitoring: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
    #[command(
        after_help = "Targets are certificate files (PEM or DER) or HOST:PORT endpoints; with none, everything in the configuration.\n\nExamples:\n  evercert check /etc/nginx/tls/shop/fullchain.pem\n  evercert check --warn 21d --critical 3d shop.example.com:443 api.example.com:8443\n  evercert check --json"
    )]
    Check {
        /// Warn when a certificate expires within this duration [default: config or 30d]
        #[arg(long, value_name = "DUR")]
        warn: Option<String>,
        /// Critical when a certificate expires within this duration [default: config or 7d]
        #[arg(long, value_name = "DUR")]
        critical: Option<String>,
        /// Print one JSON array instead of one line per target
        #[arg(long)]
        json: bool,
        /// Files or HOST:PORT endpoints
        #[arg(value_name = "FILE|HOST:PORT")]
        targets: Vec<String>,
    },
    /// Configuration commands
    #[command(
        subcommand,
        after_help = "Example:\n  evercert config check -c /etc/evercert/evercert.toml"
    )]
    Config(ConfigCommand),
    /// ACME account commands
    #[command(
        subcommand,
        after_help = "Examples:\n  evercert account show\n  evercert account rollover"
    )]
    Account(AccountCommand),
    /// Revoke a managed certificate at the CA
    #[command(after_help = "Example:\n  evercert revoke shop --reason keyCompromise")]
    Revoke {
        name: String,
        /// unspecified, keyCompromise, superseded, cessationOfOperation, affiliationChanged
        #[arg(long)]
        reason: Option<String>,
    },
    /// Build a configuration from another ACME client's (certbot)
    #[command(
        subcommand,
        after_help = "Example:\n  evercert import certbot --from /etc/letsencrypt --write /etc/evercert/evercert.toml"
    )]
    Import(ImportCommand),
    /// Every certificate nginx, Apache and HAProxy serve on this host, from their configuration
    #[command(
        long_about = "Reads the web servers' configuration files (following includes) and lists every \
certificate they serve: the server, the file:line that names it, its names, expiry, issuer, state (as in \
`check`) and whether evercert manages or monitors it. The servers are those of [discover] in the \
configuration, or else every one whose usual configuration file exists (/etc/nginx/nginx.conf, \
/etc/apache2/apache2.conf, /etc/haproxy/haproxy.cfg). What cannot be resolved without running the \
server (variables, nginx data:, HAProxy crt-stores) is listed as unresolvable.",
        after_help = "Exit status: 0, or 2 when a configuration cannot be read or does not parse.\n\n\
Examples:\n  evercert discover\n  evercert discover --nginx /srv/edge/nginx.conf\n  evercert discover --json | jq '.[] | select(.monitored | not)'\n  evercert discover --write /etc/evercert/discovered.toml"
    )]
    Discover {
        /// Print one JSON array instead of a table
        #[arg(long)]
        json: bool,
        /// Write a configuration fragment ([[monitor]] entries, commented [[certificate]] proposals) to FILE (mode 0600); never overwrites
        #[arg(long, value_name = "FILE")]
        write: Option<PathBuf>,
        /// Read this nginx configuration (instead of [discover]'s or the usual ones)
        #[arg(long, value_name = "FILE")]
        nginx: Option<PathBuf>,
        /// Read this Apache configuration (instead of [discover]'s or the usual ones)
        #[arg(long, value_name = "FILE")]
        apache: Option<PathBuf>,
        /// Read this HAProxy configuration (instead of [discover]'s or the usual ones)
        #[arg(long, value_name = "FILE")]
        haproxy: Option<PathBuf>,
    },
    /// Fleet mode: hosts that share their certificates through etcd ([cluster])
    #[command(
        subcommand,
        after_help = "Example:\n  evercert cluster keygen > /etc/evercert/fleet.key"
    )]
    Cluster(crate::fleet::cli::ClusterCommand),
    /// Print the man page or shell completions (for packaging; see scripts/contrib.sh)
    #[command(subcommand, hide = true)]
    Generate(GenerateCommand),
}

#[derive(Debug, Subcommand)]
enum ImportCommand {
    /// Print (or write) an evercert configuration for certbot's certificates
    #[command(
        long_about = "Reads certbot's renewal/*.conf and the certificates behind live/NAME/ and prints an \
evercert configuration: one [[certificate]] per lineage with its names (from the certificate), \
certbot's live paths, key type, webroot or standalone challenge, CA and deploy hooks as reload. \
What evercert cannot translate (the nginx and apache authenticators, manual, DNS plugins) is \
imported with a placeholder and a TODO comment saying what to fill in.",
        after_help = "Before starting evercert, disable certbot's timer (systemctl disable --now certbot.timer). \
The first renewal uses a new ACME account of evercert's own, so it is not an ARI replacement (`replaces`) of certbot's certificate.\n\n\
Examples:\n  evercert import certbot\n  evercert import certbot --from /etc/letsencrypt --write /etc/evercert/evercert.toml"
    )]
    Certbot {
        /// certbot's configuration directory (holding renewal/, live/ and archive/)
        #[arg(long, value_name = "DIR", default_value = crate::import::DEFAULT_CERTBOT_DIR)]
        from: PathBuf,
        /// Write the configuration to FILE (mode 0600) instead of printing it; never overwrites
        #[arg(long, value_name = "FILE")]
        write: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum GenerateCommand {
    /// The man page, evercert(1), in roff
    #[command(after_help = "Example:\n  evercert generate man > contrib/evercert.1")]
    Man,
    /// A shell completion script
    #[command(
        after_help = "Example:\n  evercert generate completions bash > contrib/completions/evercert.bash"
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and print every error with file:line
    #[command(after_help = "Example:\n  evercert config check -c /etc/evercert/evercert.toml")]
    Check,
}

#[derive(Debug, Subcommand)]
enum AccountCommand {
    /// Show the ACME account for the configured directory
    #[command(after_help = "Example:\n  evercert account show")]
    Show,
    /// Replace the account key (new credentials are saved before anything else)
    #[command(after_help = "Example:\n  evercert account rollover")]
    Rollover,
    /// Deactivate the account at the CA (cannot be undone)
    #[command(
        after_help = "The next renewal creates a new account.\n\nExample:\n  evercert account deactivate"
    )]
    Deactivate,
}

/// The entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            let code = if !err.use_stderr() {
                0 // --help, --version
            } else if invoked_check() {
                EXIT_UNKNOWN
            } else {
                EXIT_USAGE
            };
            return ExitCode::from(code);
        }
    };
    crate::logging::init(if matches!(cli.command, Command::Run) {
        crate::logging::Mode::Agent
    } else {
        crate::logging::Mode::OneShot {
            verbose: cli.verbose,
        }
    });
    // No core file, no ptrace by other users: the process holds private keys and the
    // account key in memory. Failing to set it only loses that protection, not the run.
    if let Err(err) =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
    {
        tracing::debug!("cannot mark the process non-dumpable: {err}");
    }
    ExitCode::from(run(cli))
}

/// Whether the command line asked for `check` (not `config check`): its usage errors are
/// UNKNOWN (3) for monitoring systems, not 2, which would read as CRITICAL.
fn invoked_check() -> bool {
    let mut previous = String::new();
    for arg in std::env::args().skip(1) {
        if arg == "check" && previous != "config" {
            return true;
        }
        if !arg.starts_with('-') {
            previous = arg;
        }
    }
    false
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// What a one-shot command that talks to the CA needs first: a runtime and a usable
/// state_dir. On failure the error is printed (an error line for journald, where standard
/// error is the journal's) and the exit code returned.
fn runtime_with_state_dir(config: &Config) -> Result<tokio::runtime::Runtime, u8> {
    let runtime = runtime().map_err(|err| {
        error_message(&format!("error: cannot start the async runtime: {err}"));
        1
    })?;
    crate::safety::ensure_state_dir(&config.state_dir).map_err(|message| {
        error_message(&message);
        1
    })?;
    Ok(runtime)
}

fn run(cli: Cli) -> u8 {
    let explicit_config = cli.config.is_some();
    let config_path = cli
        .config
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONFIG_PATH));
    match cli.command {
        Command::Config(ConfigCommand::Check) => cmd_config_check(&config_path),
        Command::Status { json, html } => with_config(&config_path, |config| {
            cmd_status(config, json, html.as_deref())
        }),
        Command::Check {
            warn,
            critical,
            json,
            targets,
        } => cmd_check(
            &config_path,
            explicit_config,
            warn.as_deref(),
            critical.as_deref(),
            json,
            &targets,
        ),
        Command::Renew {
            names,
            force,
            dry_run,
        } => with_config(&config_path, |config| {
            cmd_renew(
                config,
                &RenewRequest {
                    names,
                    force,
                    dry_run,
                    retry_transient: true,
                },
            )
        }),
        Command::Account(command) => {
            with_config(&config_path, |config| cmd_account(config, &command))
        }
        Command::Revoke { name, reason } => with_config(&config_path, |config| {
            cmd_revoke(config, &name, reason.as_deref())
        }),
        Command::Run => with_config(&config_path, |config| cmd_run(&config_path, config)),
        Command::Import(ImportCommand::Certbot { from, write }) => {
            cmd_import_certbot(&from, write.as_deref())
        }
        Command::Discover {
            json,
            write,
            nginx,
            apache,
            haproxy,
        } => cmd_discover(
            &config_path,
            explicit_config,
            json,
            write.as_deref(),
            crate::discover::Sources {
                nginx,
                apache,
                haproxy,
            },
        ),
        Command::Cluster(command) => crate::fleet::cli::run(&config_path, &command),
        Command::Generate(command) => cmd_generate(&command),
    }
}

fn print_config_errors(errors: &ConfigErrors) {
    error_message(&errors.to_string());
}

/// Loads the configuration or prints every error; the command runs only on a valid one.
fn with_config(path: &Path, command: impl FnOnce(&Config) -> u8) -> u8 {
    match config::load(path) {
        Ok(config) => match crate::safety::check_permissions(path, &config) {
            Ok(()) => command(&config),
            Err(message) => {
                error_message(&message.to_string());
                EXIT_USAGE
            }
        },
        Err(errors) => {
            print_config_errors(&errors);
            EXIT_USAGE
        }
    }
}

fn cmd_config_check(path: &Path) -> u8 {
    with_config(path, |config| {
        println!(
            "{}: OK ({} certificate{}, {} monitor{})",
            path.display(),
            config.certificates.len(),
            if config.certificates.len() == 1 {
                ""
            } else {
                "s"
            },
            config.monitors.len(),
            if config.monitors.len() == 1 { "" } else { "s" },
        );
        for warning in crate::safety::hook_and_directory_warnings(config) {
            eprintln!("{warning}");
        }
        for warning in crate::import::nginx_test_warnings(config) {
            eprintln!("{warning}");
        }
        if let Some(profile) = &config.acme.profile {
            check_profile_offered(path, &config.acme, profile);
        }
        0
    })
}

/// Asks the CA whether it offers the configured profile: the one network question
/// `config check` asks, and only when `profile` is set. A "no" or an unreachable CA is a
/// warning (exit 0): the configuration is valid, and the first order would fail with the
/// same words.
fn check_profile_offered(path: &Path, acme: &config::AcmeSettings, profile: &str) {
    let directory = &acme.directory;
    let asked = runtime()
        .map_err(|err| err.to_string())
        .and_then(|runtime| {
            runtime
                .block_on(async {
                    tokio::time::timeout(
                        PROFILE_CHECK_TIMEOUT,
                        crate::acme::offered_profiles(acme, directory),
                    )
                    .await
                })
                .map_err(|_| format!("no answer within {} s", PROFILE_CHECK_TIMEOUT.as_secs()))
                .and_then(|answer| answer.map_err(|err| err.message))
        });
    match asked {
        Ok(offered) => {
            let offered: Vec<&str> = offered.iter().map(String::as_str).collect();
            match crate::acme::profile_not_offered(profile, directory, &offered) {
                None => {
                    println!("[acme] profile = \"{profile}\" is offered by the CA at {directory}");
                }
                Some(problem) => eprintln!(
                    "warning: {}: {problem}; every order would fail until then",
                    path.display()
                ),
            }
        }
        Err(why) => eprintln!(
            "warning: cannot ask the CA at {directory} whether it offers [acme] profile = \"{profile}\": {why}; the first order will fail if it does not"
        ),
    }
}

/// How long `config check` waits for the CA's directory.
const PROFILE_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

fn print_json(entries: &[Entry]) -> bool {
    match serde_json::to_string_pretty(entries) {
        Ok(text) => {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{text}").is_ok()
        }
        Err(err) => {
            eprintln!("error: cannot encode JSON: {err}");
            false
        }
    }
}

fn cmd_status(config: &Config, json: bool, html: Option<&Path>) -> u8 {
    let now = now();
    let entries = match runtime() {
        Ok(runtime) => runtime.block_on(report::gather(config, config.renewal.thresholds, now)),
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return EXIT_USAGE;
        }
    };
    if let Some(path) = html {
        let state = FileState::new(&config.state_dir);
        let last_errors = crate::status_page::last_errors(&state, &entries);
        let host = crate::alerts::hostname();
        let page = crate::status_page::render(&crate::status_page::Page {
            host: &host,
            source: "evercert status --html",
            entries: &entries,
            last_errors: &last_errors,
            thresholds: config.renewal.thresholds,
            now,
        });
        if let Err(err) = crate::status_page::write_file(path, &page) {
            eprintln!(
                "error: cannot write the status page to {}: {err}; check that its directory exists and is writable",
                path.display()
            );
            return 1;
        }
        eprintln!("wrote {}", path.display());
    } else if json {
        if !print_json(&entries) {
            return 1;
        }
    } else {
        print!("{}", report::render_table(&entries, now));
    }
    0
}

fn cmd_check(
    config_path: &Path,
    explicit_config: bool,
    warn: Option<&str>,
    critical: Option<&str>,
    json: bool,
    targets: &[String],
) -> u8 {
    // Thresholds given on the command line are meant literally; otherwise the config's (or
    // the defaults), scaled for short lifetimes like everywhere else.
    let needs_config = targets.is_empty() || explicit_config;
    let config = if needs_config {
        match config::load(config_path) {
            Ok(config) => Some(config),
            Err(errors) => {
                print_config_errors(&errors);
                return EXIT_UNKNOWN;
            }
        }
    } else {
        None
    };
    let mut thresholds = config
        .as_ref()
        .map_or_else(Thresholds::default, |config| config.renewal.thresholds);
    for (flag, value, slot) in [
        ("--warn", warn, &mut thresholds.warn_before),
        ("--critical", critical, &mut thresholds.critical_before),
    ] {
        if let Some(text) = value {
            match parse_duration(text) {
                Ok(duration) => *slot = duration,
                Err(err) => {
                    eprintln!("UNKNOWN {flag}: {err}");
                    return EXIT_UNKNOWN;
                }
            }
        }
    }
    if warn.is_some() || critical.is_some() {
        thresholds.scale_to_lifetime = false;
    }
    if thresholds.critical_before > thresholds.warn_before {
        eprintln!("UNKNOWN --critical must not be longer than --warn");
        return EXIT_UNKNOWN;
    }
    let now = now();
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("UNKNOWN cannot start the async runtime: {err}");
            return EXIT_UNKNOWN;
        }
    };
    let entries = match (&config, targets.is_empty()) {
        (Some(config), true) => runtime.block_on(report::gather(config, thresholds, now)),
        _ => runtime.block_on(check_targets(targets, thresholds, now)),
    };
    if entries.is_empty() {
        println!(
            "UNKNOWN - nothing to check: name files or HOST:PORT endpoints, or configure certificates"
        );
        return EXIT_UNKNOWN;
    }
    if json {
        if !print_json(&entries) {
            return EXIT_UNKNOWN;
        }
    } else {
        let mut stdout = std::io::stdout().lock();
        let _ = write!(
            stdout,
            "{}",
            report::render_check(&entries, thresholds, now)
        );
    }
    report::check_exit_code(&entries)
}

/// Checks files and endpoints named on the command line. A target that exists as a file is
/// a file; otherwise `HOST:PORT` is an endpoint; anything else is a (missing) file.
async fn check_targets(
    targets: &[String],
    thresholds: Thresholds,
    now: OffsetDateTime,
) -> Vec<Entry> {
    let mut files = Vec::new();
    let mut endpoints = Vec::new();
    for (index, target) in targets.iter().enumerate() {
        let path = Path::new(target);
        match Endpoint::parse(target) {
            Some(endpoint) if !path.exists() => endpoints.push((index, endpoint)),
            _ => files.push((index, path.to_owned())),
        }
    }
    let mut entries: Vec<Option<Entry>> = vec![None; targets.len()];
    let file_entries = inventory::parallel_map(&files, |(index, path)| {
        let result = inventory::read_cert_file(path);
        (
            *index,
            report::file_entry(path.display().to_string(), path, result, thresholds, now),
        )
    });
    for (index, entry) in file_entries {
        entries[index] = Some(entry);
    }
    let roots = Arc::new(probe::system_roots(&[]));
    let mut probes = tokio::task::JoinSet::new();
    for (index, endpoint) in endpoints {
        let roots = roots.clone();
        probes.spawn(async move {
            let result = report::probe_endpoint(&endpoint, roots).await;
            (
                index,
                report::endpoint_entry(endpoint.to_string(), &endpoint, result, thresholds, now),
            )
        });
    }
    while let Some(done) = probes.join_next().await {
        if let Ok((index, entry)) = done {
            entries[index] = Some(entry);
        }
    }
    entries.into_iter().flatten().collect()
}

fn cmd_renew(config: &Config, request: &RenewRequest) -> u8 {
    let unknown = renew::unknown_names(config, &request.names);
    if !unknown.is_empty() {
        let known: Vec<&str> = config
            .certificates
            .iter()
            .map(|cert| cert.name.as_str())
            .collect();
        error_message(&format!(
            "error: no certificate named {} in {}; configured: {}",
            unknown.join(", "),
            config.source.display(),
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        ));
        return EXIT_USAGE;
    }
    let runtime = match runtime_with_state_dir(config) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    // Local files, or the fleet's etcd with [cluster].
    let backends = match crate::fleet::backends::Backends::for_config(config) {
        Ok(backends) => backends,
        Err(message) => {
            error_message(&format!("error: {message}"));
            return 1;
        }
    };
    if let Err(message) = backends.prepare(config, request) {
        error_message(&format!("error: fleet mode: {message}; nothing is ordered"));
        return 1;
    }
    // Under journald (the timer's one-shot) a failure is stored as an error, so that
    // `journalctl -u evercert-renew -p err` shows it; progress lines stay info. Only when
    // standard output itself is the journal's stream: piped or redirected, `<3>` is text.
    let journal = crate::logging::to_journal(crate::logging::Stream::Stdout);
    let failure_prefix = |failed: bool| if journal && failed { "<3>" } else { "" };
    let progress = |name: &str, message: &str| {
        let mut stdout = std::io::stdout().lock();
        let prefix = failure_prefix(message.starts_with("failed"));
        let _ = writeln!(stdout, "{prefix}{name}: {message}");
    };
    let clock = crate::clock::TokioClock::starting_at(now());
    let deps = renew::Deps {
        store: backends.store.as_ref(),
        lock: backends.lock.as_ref(),
        state: backends.state.as_ref(),
        progress: &progress,
        clock: &clock,
        fanout: backends.fanout.clone(),
        shared_account: backends.shared_account.clone(),
    };
    if request.dry_run {
        println!(
            "dry run against {} (account in {}); nothing live is written, no hook runs",
            config.acme.staging_directory,
            renew::account_path(config, true).display()
        );
    }
    let report = runtime.block_on(renew::run(config, request, &deps));
    backends.finish(config, &report);
    let count = |wanted: fn(&Outcome) -> bool| {
        report
            .outcomes
            .iter()
            .filter(|(_, outcome)| wanted(outcome))
            .count()
    };
    let renewed = count(|outcome| matches!(outcome, Outcome::Renewed { .. }));
    let dry = count(|outcome| matches!(outcome, Outcome::DryRun { .. }));
    let not_due = count(|outcome| matches!(outcome, Outcome::NotDue { .. }));
    let failed = count(|outcome| matches!(outcome, Outcome::Failed(_)));
    if request.dry_run {
        println!("dry run: {dry} would be renewed, {not_due} not due, {failed} failed");
    } else {
        let prefix = failure_prefix(failed > 0);
        println!("{prefix}summary: {renewed} renewed, {not_due} not due, {failed} failed");
    }
    report.exit_code()
}

/// The ACME client for `config`'s CA; `runtime` comes from [`runtime_with_state_dir`].
fn connect(runtime: &tokio::runtime::Runtime, config: &Config) -> Result<AcmeClient, u8> {
    runtime
        .block_on(AcmeClient::connect(
            &config.acme,
            &config.acme.directory,
            &config.state_dir,
            &renew::save_secret,
        ))
        .map_err(|err| {
            eprintln!("error: {err}");
            1
        })
}

fn cmd_account(config: &Config, command: &AccountCommand) -> u8 {
    let runtime = match runtime_with_state_dir(config) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    // Only the stored account: showing, rolling over or deactivating must never register one.
    let directory = &config.acme.directory;
    let loaded = runtime.block_on(AcmeClient::load(&config.acme, directory, &config.state_dir));
    let mut client = match loaded {
        Ok(Some(client)) => client,
        Ok(None) => {
            eprintln!(
                "error: no account is stored for {directory} in {}; the first `evercert renew` registers one",
                renew::account_path(config, false).display()
            );
            return 1;
        }
        Err(err) => {
            eprintln!("error: {err}");
            return 1;
        }
    };
    match command {
        AccountCommand::Show => {
            println!("directory:  {}", client.info.directory);
            println!("account:    {}", client.info.id);
            println!(
                "contact:    {}",
                if client.info.contact.is_empty() {
                    "(none)".to_owned()
                } else {
                    client.info.contact.join(", ")
                }
            );
            if !client.info.created_at.is_empty() {
                println!("created:    {}", client.info.created_at);
            }
            println!(
                "stored in:  {}",
                renew::account_path(config, false).display()
            );
            // What the CA says, not what the files say.
            match runtime.block_on(client.account_status()) {
                Ok(status) => {
                    println!("status:     {status} (asked the CA)");
                    if status.is_gone() {
                        eprintln!(
                            "error: the CA no longer accepts account {}; the next renewal registers a new account",
                            client.info.id
                        );
                        1
                    } else {
                        0
                    }
                }
                Err(err) => {
                    println!("status:     unknown (the CA could not be asked)");
                    eprintln!("error: cannot ask the CA about the account: {err}");
                    1
                }
            }
        }
        AccountCommand::Rollover => {
            match runtime.block_on(client.rollover(&config.state_dir, &renew::save_secret)) {
                Ok(()) => {
                    println!(
                        "account key replaced for {}; the new credentials are saved",
                        client.info.id
                    );
                    0
                }
                Err(err) => {
                    eprintln!("error: key rollover failed: {err}");
                    1
                }
            }
        }
        AccountCommand::Deactivate => {
            let id = client.info.id.clone();
            match runtime.block_on(client.deactivate(&config.state_dir)) {
                Ok(aside) => {
                    println!(
                        "account {id} is deactivated; its files were moved to {}; the next renewal creates a new account",
                        aside.display()
                    );
                    0
                }
                Err(err) => {
                    eprintln!("error: deactivation failed, nothing was moved: {err}");
                    1
                }
            }
        }
    }
}

fn cmd_revoke(config: &Config, name: &str, reason: Option<&str>) -> u8 {
    let Some(cert) = config.certificate(name) else {
        eprintln!(
            "error: no certificate named {name} in {}",
            config.source.display()
        );
        return EXIT_USAGE;
    };
    let reason = match reason.map(|text| (text, RevocationReasonName::parse(text))) {
        None => None,
        Some((_, Some(reason))) => Some(reason),
        Some((text, None)) => {
            eprintln!(
                "error: unknown revocation reason {text}; use one of {}",
                RevocationReasonName::NAMES.join(", ")
            );
            return EXIT_USAGE;
        }
    };
    let pem = match crate::fsread::read(&cert.cert_path, crate::fsread::SMALL_FILE_MAX) {
        Ok(pem) => pem,
        Err(err) => {
            eprintln!("error: {name}: cannot read {err}");
            return 1;
        }
    };
    let runtime = match runtime_with_state_dir(config) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let client = match connect(&runtime, config) {
        Ok(client) => client,
        Err(code) => return code,
    };
    match runtime.block_on(client.revoke(&pem, reason)) {
        Ok(()) => {
            // Remembered, so that `status` shows it and the next renewal (one-shot or the
            // agent) replaces it without `--force`.
            let marked = inventory::read_cert_file(&cert.cert_path)
                .map_err(|err| err.to_string())
                .and_then(|file| {
                    use crate::state::StateStore as _;
                    let state = FileState::new(&config.state_dir);
                    let mut history = state.load(name);
                    history.revoked_serial = Some(file.leaf.serial.clone());
                    state.save(name, &history).map_err(|err| err.to_string())
                });
            match marked {
                Ok(()) => println!(
                    "{name}: revoked the certificate in {}; it is marked revoked, and the next `evercert renew` (or the agent) replaces it",
                    cert.cert_path.display()
                ),
                Err(err) => println!(
                    "{name}: revoked the certificate in {}, but it could not be marked revoked ({err}); run `evercert renew {name} --force` to replace it",
                    cert.cert_path.display()
                ),
            }
            0
        }
        Err(err) => {
            eprintln!("error: {name}: revocation failed: {err}");
            1
        }
    }
}

/// Now, in whole seconds: every timestamp evercert prints is whole seconds.
fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

fn cmd_run(config_path: &Path, config: &Config) -> u8 {
    if let Err(message) = crate::safety::ensure_state_dir(&config.state_dir) {
        error_message(&message.to_string());
        return 1;
    }
    // The agent waits on timers, sockets and children at once: a multi-threaded runtime
    // keeps a slow hook from delaying the watchdog.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            error_message(&format!("error: cannot start the async runtime: {err}"));
            return 1;
        }
    };
    let result = runtime.block_on(crate::agent::run(config_path.to_owned(), config.clone()));
    // A blocking task stuck on a file or a child must not hold the exit after SIGTERM.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => 0,
        Err(err) => {
            error_message(&format!("error: {err}"));
            1
        }
    }
}

fn cmd_import_certbot(from: &Path, write: Option<&Path>) -> u8 {
    use crate::import;
    let certbot = match import::read_certbot(from) {
        Ok(certbot) => certbot,
        Err(err) => {
            eprintln!("error: {err}");
            return EXIT_USAGE;
        }
    };
    let imported = import::translate(&certbot);
    let text = import::render(&imported);
    match write {
        Some(path) => {
            if let Err(err) = import::write_new_file(path, &text) {
                eprintln!("error: {err}");
                return EXIT_USAGE;
            }
            eprintln!("wrote {}", path.display());
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            if stdout.write_all(text.as_bytes()).is_err() {
                return 1;
            }
        }
    }
    for line in import::summary(&imported) {
        eprintln!("{line}");
    }
    let attention = imported.needing_attention();
    if attention > 0 {
        eprintln!(
            "{attention} item(s) need attention before the first renewal: search the configuration for TODO"
        );
    }
    for note in import::header_notes(&imported) {
        eprintln!("note: {note}");
    }
    let check = write.map_or_else(|| "FILE".to_owned(), |path| path.display().to_string());
    eprintln!(
        "next: evercert config check -c {check}; then evercert -c {check} renew --dry-run --force"
    );
    if imported.unreadable() > 0 { 1 } else { 0 }
}

fn cmd_discover(
    config_path: &Path,
    explicit_config: bool,
    json: bool,
    write: Option<&Path>,
    named: crate::discover::Sources,
) -> u8 {
    use crate::discover;
    // Without a configuration file (discover before evercert is set up), the usual paths.
    let config = if explicit_config || config_path.exists() {
        match config::load(config_path) {
            Ok(config) => Some(config),
            Err(errors) => {
                print_config_errors(&errors);
                return EXIT_USAGE;
            }
        }
    } else {
        None
    };
    let sources = if named.is_empty() {
        config
            .as_ref()
            .and_then(|config| config.discover.clone())
            .unwrap_or_else(discover::Sources::usual)
    } else {
        named
    };
    if sources.is_empty() {
        eprintln!(
            "error: no web server configuration to read: none of {}, {}, {} exists; name them in [discover] in {}",
            discover::NGINX_CONF,
            discover::APACHE_CONF,
            discover::HAPROXY_CONF,
            config_path.display()
        );
        return EXIT_USAGE;
    }
    let report = discover::run(config.as_ref(), &sources, now());
    if json {
        match serde_json::to_string_pretty(&report.findings) {
            Ok(text) => println!("{text}"),
            Err(err) => {
                eprintln!("error: cannot encode JSON: {err}");
                return 1;
            }
        }
        for error in &report.errors {
            eprintln!("error: {error}");
        }
    } else {
        print!("{}", discover::render_table(&report));
    }
    if let Some(path) = write {
        if let Err(err) = crate::import::write_new_file(path, &discover::render_fragment(&report)) {
            eprintln!("error: {err}");
            return EXIT_USAGE;
        }
        eprintln!(
            "wrote {}; check it with `evercert config check -c {}`, then add it to the configuration",
            path.display(),
            path.display()
        );
    }
    if report.errors.is_empty() {
        0
    } else {
        EXIT_USAGE
    }
}

fn cmd_generate(command: &GenerateCommand) -> u8 {
    use clap::CommandFactory;
    let mut stdout = std::io::stdout().lock();
    match command {
        GenerateCommand::Man => {
            if let Err(err) = crate::generate::man_page(Cli::command(), &mut stdout) {
                eprintln!("error: cannot write the man page: {err}");
                return 1;
            }
        }
        GenerateCommand::Completions { shell } => {
            crate::generate::completions(Cli::command(), *shell, &mut stdout);
        }
    }
    0
}
