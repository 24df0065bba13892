//! The benchmarks of issues 2 and 3, with lego, certbot and uacme side by side.
//!
//! Runs the built `evercert` (target/release/evercert) as a user would, one process per
//! measurement, and prints a markdown report on stdout (progress goes to stderr):
//! - `check` and `status` over 10,000 certificate files minted here with rcgen;
//! - `renew --force` issuing one certificate with an existing account, against a local Pebble
//!   without nonce rejection and with Pebble's default 5 %;
//! - 20 certificates in one `renew`; a no-op `renew` over 50 certificates that are not due;
//! - the peers (lego, certbot, uacme) on the same Pebble in the same run.
//!
//! Every figure is the median of several runs of a fresh process: wall time, user+sys CPU and
//! peak RSS, taken from `wait4(2)` by a few lines of Python (`os.wait4`), because the crate
//! forbids `unsafe`, rustix 1 has no `getrusage`/`wait4`, and GNU time prints CPU in 10 ms
//! steps, too coarse for a 40 ms target.
//!
//! Run it with `bash scripts/bench.sh` (flags: `--runs N`, `--peer-runs N`, `--files N`,
//! `--peers lego,certbot,uacme|none`, `--skip-inventory`, `--skip-issuance`, `--perf DIR` for
//! perf and strace profiles of single runs, `--keep DIR` to keep configs and certificates).

// A broken fixture should stop here.
#![allow(clippy::unwrap_used)]

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use evercert_testkit::webroot::WebrootServer;
use evercert_testkit::{certs, pebble};
use pebble::{Pebble, PebbleOptions};

const MIB: f64 = 1024.0 * 1024.0;
/// Concurrency of one `renew` run, as evercert's renew.rs sets it (for the report only).
const EVERCERT_CONCURRENCY: usize = 16;
const EMAIL: &str = "bench@example.com";
/// Exit codes a 20-certificate `renew` may end with and still be measured: 1 when one order
/// failed (the report counts such runs and says why).
const FLEET_CODES: &[i32] = &[0, 1];

/// Spawns argv[2..], waits with wait4(2) and writes
/// `wall_ns user_us sys_us maxrss_kib exit_code` to argv[1]. Wall time is taken around
/// posix_spawn and wait4 only, so the interpreter's own start-up is not counted.
const MEASURE_PY: &str = r#"
import os, sys, time
out, argv = sys.argv[1], sys.argv[2:]
start = time.perf_counter_ns()
pid = os.posix_spawnp(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter_ns() - start
with open(out, "w") as f:
    f.write("%d %d %d %d %d\n" % (wall, round(usage.ru_utime * 1e6), round(usage.ru_stime * 1e6),
                                  usage.ru_maxrss, os.waitstatus_to_exitcode(status)))
"#;

// ---------------------------------------------------------------------------------------------
// Options

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Lego,
    Certbot,
    Uacme,
}

impl Peer {
    const ALL: [Self; 3] = [Self::Lego, Self::Certbot, Self::Uacme];

    fn name(self) -> &'static str {
        match self {
            Self::Lego => "lego",
            Self::Certbot => "certbot",
            Self::Uacme => "uacme",
        }
    }
}

#[derive(Debug)]
struct Options {
    /// Samples per evercert figure.
    runs: usize,
    /// Samples per peer "one certificate" figure (peers sleep seconds per order).
    peer_runs: usize,
    /// Certificate files for `check` and `status`.
    files: usize,
    peers: Vec<Peer>,
    inventory: bool,
    /// Also record `perf` profiles of single runs into this directory.
    perf: Option<PathBuf>,
    /// Work in this directory and keep it (configs and certificates for reruns by hand).
    keep: Option<PathBuf>,
    issuance: bool,
}

impl Options {
    fn parse() -> Result<Self> {
        let mut options = Self {
            runs: 7,
            peer_runs: 3,
            files: 10_000,
            peers: Peer::ALL.to_vec(),
            inventory: true,
            issuance: true,
            perf: None,
            keep: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value =
                |name: &str| args.next().with_context(|| format!("{name} needs a value"));
            match arg.as_str() {
                "--runs" => options.runs = value("--runs")?.parse()?,
                "--peer-runs" => options.peer_runs = value("--peer-runs")?.parse()?,
                "--files" => options.files = value("--files")?.parse()?,
                "--peers" => {
                    let list = value("--peers")?;
                    options.peers = Vec::new();
                    for name in list.split(',').filter(|name| !name.is_empty()) {
                        if name == "none" {
                            continue;
                        }
                        let peer = Peer::ALL
                            .into_iter()
                            .find(|peer| peer.name() == name)
                            .with_context(|| format!("unknown peer {name:?}"))?;
                        options.peers.push(peer);
                    }
                }
                "--skip-inventory" => options.inventory = false,
                "--skip-issuance" => options.issuance = false,
                "--perf" => options.perf = Some(PathBuf::from(value("--perf")?)),
                "--keep" => options.keep = Some(PathBuf::from(value("--keep")?)),
                other => bail!(
                    "unknown argument {other:?}; flags: --runs N --peer-runs N --files N \
                     --peers lego,certbot,uacme|none --skip-inventory --skip-issuance --perf DIR --keep DIR"
                ),
            }
        }
        ensure!(
            options.runs >= 1 && options.peer_runs >= 1,
            "--runs and --peer-runs must be at least 1"
        );
        Ok(options)
    }
}

// ---------------------------------------------------------------------------------------------
// Measuring one process

/// One command line to run and measure; a `Command` is rebuilt from it for each sample.
#[derive(Debug, Clone)]
struct Invocation {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    /// Where the child's stdout and stderr go (appended), so failures can be read afterwards.
    log: PathBuf,
}

impl Invocation {
    fn new(program: impl Into<OsString>, log: &Path) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            log: log.to_owned(),
        }
    }

    fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    fn display(&self) -> String {
        let mut line = self.program.to_string_lossy().into_owned();
        for arg in self.args.iter().take(8) {
            line.push(' ');
            line.push_str(&arg.to_string_lossy());
        }
        if self.args.len() > 8 {
            let _ = write!(line, " … ({} arguments)", self.args.len());
        }
        line
    }

    fn command(&self, program: &OsString, prefix: &[OsString]) -> Result<Command> {
        let mut command = Command::new(program);
        command.args(prefix).arg(&self.program).args(&self.args);
        // A developer's settings must not change what is measured.
        command
            .env_remove("EVERCERT_CONFIG")
            .env_remove("EVERCERT_LOG");
        command.envs(self.env.iter().map(|(name, value)| (name, value)));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("open {}", self.log.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        Ok(command)
    }
}

/// What one run of a process cost.
#[derive(Debug, Clone, Copy)]
struct Sample {
    wall: Duration,
    cpu: Duration,
    max_rss_kib: u64,
    code: i32,
}

struct Measurer {
    python: OsString,
    scratch: PathBuf,
}

impl Measurer {
    fn new(scratch: &Path) -> Result<Self> {
        let python = ["/usr/bin/python3", "/usr/local/bin/python3"]
            .into_iter()
            .find(|path| Path::new(path).is_file())
            .context("python3 is needed to read wait4(2) figures (apt-get install -y python3)")?;
        Ok(Self {
            python: python.into(),
            scratch: scratch.to_owned(),
        })
    }

    /// Runs `invocation` once and measures it.
    fn sample(&self, invocation: &Invocation) -> Result<Sample> {
        let out = self.scratch.join("measure.out");
        let prefix: Vec<OsString> = vec![
            "-I".into(),
            "-S".into(),
            "-c".into(),
            MEASURE_PY.into(),
            out.clone().into(),
        ];
        let status = invocation
            .command(&self.python, &prefix)?
            .status()
            .context("run python3")?;
        ensure!(
            status.success(),
            "the measuring wrapper failed ({status}) for {}",
            invocation.display()
        );
        let text = std::fs::read_to_string(&out)?;
        let fields: Vec<i64> = text
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .with_context(|| format!("measure output {text:?}"))?;
        let [wall_ns, user_us, sys_us, max_rss_kib, code] = fields[..] else {
            bail!("measure output {text:?}");
        };
        Ok(Sample {
            wall: Duration::from_nanos(wall_ns.unsigned_abs()),
            cpu: Duration::from_micros((user_us + sys_us).unsigned_abs()),
            max_rss_kib: max_rss_kib.unsigned_abs(),
            code: i32::try_from(code)?,
        })
    }

    /// Runs `invocation` once and fails unless it exits with one of `codes`.
    fn sample_ok(&self, invocation: &Invocation, codes: &[i32]) -> Result<Sample> {
        let sample = self.sample(invocation)?;
        if !codes.contains(&sample.code) {
            bail!(
                "{} exited {} (expected {codes:?}); its output is in {}:\n{}",
                invocation.display(),
                sample.code,
                invocation.log.display(),
                tail(&invocation.log, 30)
            );
        }
        Ok(sample)
    }

    /// `runs` samples of the same command.
    fn series(&self, invocation: &Invocation, codes: &[i32], runs: usize) -> Result<Series> {
        let mut series = Series::default();
        for _ in 0..runs {
            series.samples.push(self.sample_ok(invocation, codes)?);
        }
        Ok(series)
    }
}

/// With `--perf DIR`: one more run of `invocation` under `perf record` (DWARF call graphs),
/// for `perf report -i DIR/NAME.perf.data`, and one under `strace -f -c -w` (time spent in
/// each system call, e.g. fsync) into DIR/NAME.strace.txt.
fn record_perf(options: &Options, invocation: &Invocation, name: &str) -> Result<()> {
    let Some(dir) = &options.perf else {
        return Ok(());
    };
    std::fs::create_dir_all(dir)?;
    let data = dir.join(format!("{name}.perf.data"));
    let strace = dir.join(format!("{name}.strace.txt"));
    let tools: [(&str, Vec<OsString>, &Path); 2] = [
        (
            "perf",
            vec![
                "record".into(),
                "-q".into(),
                "-F".into(),
                "10000".into(),
                "--call-graph".into(),
                "dwarf".into(),
                "-o".into(),
                data.clone().into(),
                "--".into(),
            ],
            &data,
        ),
        (
            "strace",
            vec![
                "-f".into(),
                "-c".into(),
                "-w".into(),
                "-o".into(),
                strace.clone().into(),
                "--".into(),
            ],
            &strace,
        ),
    ];
    for (tool, prefix, output) in tools {
        // Both exit with the command's code (`check` exits 0 to 2): judge by the output.
        let _ = std::fs::remove_file(output);
        invocation
            .command(&tool.into(), &prefix)?
            .status()
            .with_context(|| format!("run {tool} (apt-get install -y linux-perf strace)"))?;
        ensure!(
            output.is_file(),
            "{tool} wrote no {}: see {}",
            output.display(),
            invocation.log.display()
        );
        progress(&format!("{tool}: {}", output.display()));
    }
    Ok(())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Samples of one figure.
#[derive(Debug, Default, Clone)]
struct Series {
    samples: Vec<Sample>,
    /// Whether a non-zero exit is a failed run worth reporting (`renew`), not a verdict
    /// (`check`).
    count_failures: bool,
}

impl Series {
    fn single(sample: Sample) -> Self {
        Self {
            samples: vec![sample],
            count_failures: false,
        }
    }

    fn counting_failures(mut self) -> Self {
        self.count_failures = true;
        self
    }

    fn failures(&self) -> usize {
        if self.count_failures {
            self.samples.iter().filter(|s| s.code != 0).count()
        } else {
            0
        }
    }

    fn wall(&self) -> Duration {
        median(self.samples.iter().map(|s| s.wall).collect())
    }

    fn wall_range(&self) -> (Duration, Duration) {
        let walls = self.samples.iter().map(|s| s.wall);
        (
            walls.clone().min().unwrap_or_default(),
            walls.max().unwrap_or_default(),
        )
    }

    fn cpu(&self) -> Duration {
        median(self.samples.iter().map(|s| s.cpu).collect())
    }

    fn rss_mib(&self) -> f64 {
        median(self.samples.iter().map(|s| s.max_rss_kib).collect()) as f64 * 1024.0 / MIB
    }

    /// The medians.
    fn median(&self) -> Figure {
        Figure {
            wall: self.wall(),
            cpu: self.cpu(),
            rss_mib: self.rss_mib(),
        }
    }

    /// The sum of all samples, for a batch of sequential invocations (peers' 20
    /// certificates); peak RSS is the largest.
    fn total(&self) -> Figure {
        Figure {
            wall: self.samples.iter().map(|s| s.wall).sum(),
            cpu: self.samples.iter().map(|s| s.cpu).sum(),
            rss_mib: self
                .samples
                .iter()
                .map(|s| s.max_rss_kib)
                .max()
                .unwrap_or(0) as f64
                * 1024.0
                / MIB,
        }
    }
}

/// Wall, CPU and peak RSS of one figure.
#[derive(Debug, Clone, Copy)]
struct Figure {
    wall: Duration,
    cpu: Duration,
    rss_mib: f64,
}

/// The middle value (the mean of the two middle ones for an even count).
fn median<T>(mut values: Vec<T>) -> T
where
    T: Ord + Copy + Default + Midpoint,
{
    values.sort_unstable();
    match values.len() {
        0 => T::default(),
        n if n % 2 == 1 => values[n / 2],
        n => values[n / 2 - 1].midpoint_with(values[n / 2]),
    }
}

trait Midpoint {
    fn midpoint_with(self, other: Self) -> Self;
}

impl Midpoint for Duration {
    fn midpoint_with(self, other: Self) -> Self {
        (self + other) / 2
    }
}

impl Midpoint for u64 {
    fn midpoint_with(self, other: Self) -> Self {
        self.midpoint(other)
    }
}

// ---------------------------------------------------------------------------------------------
// Report

fn fmt_duration(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs >= 10.0 {
        format!("{secs:.1} s")
    } else if secs >= 1.0 {
        format!("{secs:.2} s")
    } else {
        format!("{:.1} ms", secs * 1000.0)
    }
}

/// A target: "80 ms", "1 s".
fn fmt_limit(limit: Duration) -> String {
    if limit.subsec_nanos() == 0 {
        format!("{} s", limit.as_secs())
    } else {
        format!("{} ms", limit.as_millis())
    }
}

fn fmt_mib(mib: f64) -> String {
    format!("{mib:.1} MiB")
}

/// The targets of one figure; `None` where the issue sets none.
#[derive(Debug, Clone, Copy, Default)]
struct Target {
    wall: Option<Duration>,
    cpu: Option<Duration>,
    rss_mib: Option<f64>,
}

impl Target {
    fn describe(self) -> String {
        let mut parts = Vec::new();
        if let Some(wall) = self.wall {
            parts.push(format!("wall ≤ {}", fmt_limit(wall)));
        }
        if let Some(cpu) = self.cpu {
            parts.push(format!("CPU ≤ {}", fmt_limit(cpu)));
        }
        if let Some(rss) = self.rss_mib {
            parts.push(format!("RSS ≤ {rss:.0} MiB"));
        }
        if parts.is_empty() {
            "–".to_owned()
        } else {
            parts.join(", ")
        }
    }

    /// "pass", or what was missed and by how much.
    fn verdict(self, wall: Duration, cpu: Duration, rss_mib: f64) -> String {
        if self.wall.is_none() && self.cpu.is_none() && self.rss_mib.is_none() {
            return "–".to_owned();
        }
        let mut misses = Vec::new();
        let over = |got: f64, limit: f64| format!("+{:.0} %", (got / limit - 1.0) * 100.0);
        if let Some(limit) = self.wall.filter(|limit| wall > *limit) {
            misses.push(format!(
                "wall {} ({})",
                fmt_duration(wall),
                over(wall.as_secs_f64(), limit.as_secs_f64())
            ));
        }
        if let Some(limit) = self.cpu.filter(|limit| cpu > *limit) {
            misses.push(format!(
                "CPU {} ({})",
                fmt_duration(cpu),
                over(cpu.as_secs_f64(), limit.as_secs_f64())
            ));
        }
        if let Some(limit) = self.rss_mib.filter(|limit| rss_mib > *limit) {
            misses.push(format!(
                "RSS {} ({})",
                fmt_mib(rss_mib),
                over(rss_mib, limit)
            ));
        }
        if misses.is_empty() {
            "**pass**".to_owned()
        } else {
            format!("**FAIL**: {}", misses.join(", "))
        }
    }
}

/// One table row: a figure, its spread and its verdict.
fn figure_row(what: &str, series: &Series, target: Target) -> String {
    let (min, max) = series.wall_range();
    let failed = series.failures();
    let failed = if failed == 0 {
        String::new()
    } else {
        format!(
            "; **{failed} of {} runs exited 1** (an order failed: see the analysis)",
            series.samples.len()
        )
    };
    format!(
        "| {what} | {} ({}–{}) | {} | {} | {} | {}{failed} |",
        fmt_duration(series.wall()),
        fmt_duration(min),
        fmt_duration(max),
        fmt_duration(series.cpu()),
        fmt_mib(series.rss_mib()),
        target.describe(),
        target.verdict(series.wall(), series.cpu(), series.rss_mib()),
    )
}

const FIGURE_HEADER: &str = "| what | wall, median (min–max) | CPU user+sys | peak RSS | target | result |\n|---|---|---|---|---|---|";

fn progress(message: &str) {
    eprintln!("[bench] {message}");
}

// ---------------------------------------------------------------------------------------------
// Machine facts

fn command_output(program: &str, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(output) => {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            text.lines().next().unwrap_or("").trim().to_owned()
        }
        Err(_) => "not installed".to_owned(),
    }
}

fn package_version(package: &str) -> String {
    let version = command_output("dpkg-query", &["-W", "-f", "${Version}", package]);
    if version.is_empty() || version.contains("no packages found") {
        "not installed".to_owned()
    } else {
        version
    }
}

fn machine_facts(binary: &Path) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split(':').nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_owned();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let mut facts = String::new();
    let _ = writeln!(facts, "| fact | value |\n|---|---|");
    let _ = writeln!(facts, "| CPU | {model}, {cores} cores (`nproc`) |");
    let _ = writeln!(facts, "| kernel | {} |", kernel.trim());
    let _ = writeln!(
        facts,
        "| load average at start | {} |",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let _ = writeln!(
        facts,
        "| evercert | {} |",
        command_output(&binary.to_string_lossy(), &["--version"])
    );
    for package in ["pebble", "lego", "certbot", "uacme"] {
        let _ = writeln!(facts, "| {package} | {} |", package_version(package));
    }
    facts
}

// ---------------------------------------------------------------------------------------------
// Issue 2: check and status over 10,000 files

fn mint_inventory(dir: &Path, files: usize) -> Vec<(PathBuf, PathBuf, String)> {
    let ca = certs::TestCa::new();
    let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let chunk = files.div_ceil(threads).max(1);
    let indices: Vec<usize> = (0..files).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = indices
            .chunks(chunk)
            .map(|part| {
                let ca = &ca;
                scope.spawn(move || {
                    part.iter()
                        .map(|&i| {
                            // Mostly healthy, some due, a few critical: like a real fleet.
                            let days = 2 + (i * 37 % 88) as i64;
                            let (not_before, not_after) = certs::days_left(days);
                            let key_type = if i % 4 == 3 {
                                certs::KeyType::EcdsaP384
                            } else {
                                certs::KeyType::EcdsaP256
                            };
                            let domain = format!("host{i}.bench.test");
                            let leaf = ca.leaf(&[&domain], not_before, not_after, key_type);
                            let (cert, key) = leaf.write_pair(dir, &format!("host{i:05}"));
                            (cert, key, domain)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap())
            .collect()
    })
}

fn inventory_configs(
    work: &Path,
    files: &[(PathBuf, PathBuf, String)],
) -> Result<(PathBuf, PathBuf)> {
    let webroot = work.join("webroot");
    std::fs::create_dir_all(&webroot)?;
    let header = format!(
        "state_dir = \"{}\"\n\n[acme]\ndirectory = \"https://127.0.0.1:9/dir\"\ncontact = [\"mailto:{EMAIL}\"]\n\n",
        work.join("state").display()
    );
    let mut monitors = header.clone();
    let mut managed = header;
    for (i, (cert, key, domain)) in files.iter().enumerate() {
        let _ = writeln!(monitors, "[[monitor]]\npath = \"{}\"\n", cert.display());
        let _ = writeln!(
            managed,
            "[[certificate]]\nname = \"host{i:05}\"\ndomains = [\"{domain}\"]\ncert_path = \"{}\"\nkey_path = \"{}\"\n[certificate.http01]\nwebroot = \"{}\"\n",
            cert.display(),
            key.display(),
            webroot.display()
        );
    }
    let monitor_config = work.join("monitors.toml");
    let managed_config = work.join("managed.toml");
    std::fs::write(&monitor_config, monitors)?;
    std::fs::write(&managed_config, managed)?;
    Ok((monitor_config, managed_config))
}

/// A file-name-safe word for a case: "`check FILE…` (…)" → "check-file".
fn reported_slug(what: &str) -> String {
    what.split('(')
        .next()
        .unwrap_or(what)
        .chars()
        .filter_map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' => Some(c.to_ascii_lowercase()),
            ' ' | '-' => Some('-'),
            _ => None,
        })
        .collect::<String>()
        .trim_matches('-')
        .to_owned()
}

/// Counts output lines that name a certificate, to check that all of them were reported.
fn count_lines_containing(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(needle))
        .count()
}

fn bench_inventory(
    options: &Options,
    measurer: &Measurer,
    binary: &Path,
    work: &Path,
    report: &mut String,
) -> Result<()> {
    let files = options.files;
    progress(&format!("minting {files} certificates with rcgen …"));
    let started = Instant::now();
    let dir = work.join("certs");
    std::fs::create_dir_all(&dir)?;
    let minted = mint_inventory(&dir, files);
    progress(&format!(
        "minted in {} (not measured)",
        fmt_duration(started.elapsed())
    ));
    let (monitor_config, managed_config) = inventory_configs(work, &minted)?;
    let log = work.join("inventory.log");
    let target = Target {
        wall: Some(Duration::from_secs(1)),
        cpu: None,
        rss_mib: Some(64.0),
    };
    // check: 0 OK, 1 WARNING, 2 CRITICAL; the fleet has all three.
    let check_codes = [0, 1, 2];
    // status exits 0, or 1 when something needs attention.
    let status_codes = [0, 1];

    let cases: Vec<(String, Invocation, &[i32])> = vec![
        (
            format!("`check FILE…` ({files} files as arguments)"),
            Invocation::new(binary, &log)
                .arg("check")
                .args(minted.iter().map(|(cert, _, _)| cert.as_os_str())),
            &check_codes,
        ),
        (
            format!("`check` ({files} `[[monitor]] path`)"),
            Invocation::new(binary, &log)
                .arg("-c")
                .arg(&monitor_config)
                .arg("check"),
            &check_codes,
        ),
        (
            format!("`status` ({files} `[[certificate]]`, keys checked)"),
            Invocation::new(binary, &log)
                .arg("-c")
                .arg(&managed_config)
                .arg("status"),
            &status_codes,
        ),
        (
            format!("`status --json` ({files} `[[certificate]]`)"),
            Invocation::new(binary, &log)
                .arg("-c")
                .arg(&managed_config)
                .args(["status", "--json"]),
            &status_codes,
        ),
    ];

    let _ = writeln!(
        report,
        "## `check` and `status` over {files} certificate files (issue 2)\n"
    );
    let _ = writeln!(
        report,
        "Minted at bench time with rcgen (3 in 4 ECDSA P-256, 1 in 4 P-384, 2–89 days left, \
         one intermediate in each file), read from the page cache (one unmeasured warm-up run \
         each). Output goes to a file. Median of {} runs.\n",
        options.runs
    );
    let _ = writeln!(report, "{FIGURE_HEADER}");
    for (what, invocation, codes) in &cases {
        progress(&format!("{what}: warm-up and check of the output"));
        // Warm-up, and proof that every file was reported.
        let checked = work.join("inventory-check.log");
        let _ = std::fs::remove_file(&checked);
        let mut probe = invocation.clone();
        probe.log = checked.clone();
        measurer.sample_ok(&probe, codes)?;
        let reported = count_lines_containing(&checked, "host");
        ensure!(
            reported >= files,
            "{what}: only {reported} of {files} certificates in the output ({})",
            checked.display()
        );
        progress(&format!("{what}: {} runs", options.runs));
        let series = measurer.series(invocation, codes, options.runs)?;
        record_perf(
            options,
            invocation,
            &format!("inventory-{}", reported_slug(what)),
        )?;
        let _ = writeln!(report, "{}", figure_row(what, &series, target));
    }
    let _ = writeln!(report);
    if options.keep.is_some() {
        let _ = writeln!(
            report,
            "The files are kept; to rerun one figure by hand (hyperfine has no peak RSS):\n"
        );
        for (_, invocation, _) in cases.iter().skip(1) {
            let _ = writeln!(
                report,
                "    hyperfine -N --warmup 1 --runs {} '{}'",
                options.runs,
                invocation.display()
            );
        }
        let _ = writeln!(report);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Issue 3: issuance against Pebble

/// CPU Pebble itself has used so far (utime + stime of its process, 10 ms ticks).
fn pebble_cpu(pebble: &Pebble) -> Option<Duration> {
    let dir = pebble.dir().to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        let mut argv = cmdline.split('\0');
        let is_pebble = argv.next().is_some_and(|arg0| arg0.ends_with("/pebble"));
        if !is_pebble || !cmdline.contains(&dir) {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        return Some(Duration::from_millis(ticks * 10));
    }
    None
}

/// One set of evercert configurations against one Pebble, sharing one `state_dir` (so one
/// ACME account).
struct Issuance<'a> {
    pebble: &'a Pebble,
    binary: &'a Path,
    work: PathBuf,
    state_dir: PathBuf,
    log: PathBuf,
}

impl<'a> Issuance<'a> {
    fn new(pebble: &'a Pebble, binary: &'a Path, work: &Path) -> Result<Self> {
        std::fs::create_dir_all(work.join("tls"))?;
        Ok(Self {
            pebble,
            binary,
            work: work.to_owned(),
            state_dir: work.join("state"),
            log: work.join("evercert.log"),
        })
    }

    fn acme_header(&self) -> String {
        format!(
            "state_dir = \"{}\"\n\n[acme]\ndirectory = \"{dir}\"\nstaging_directory = \"{dir}\"\ncontact = [\"mailto:{EMAIL}\"]\nca_bundle = \"{}\"\n\n",
            self.state_dir.display(),
            self.pebble.ca_bundle_path().display(),
            dir = self.pebble.directory_url(),
        )
    }

    fn certificate(&self, name: &str, cert_path: &Path, key_path: &Path) -> String {
        format!(
            "[[certificate]]\nname = \"{name}\"\ndomains = [\"{name}.bench.test\"]\ncert_path = \"{}\"\nkey_path = \"{}\"\n[certificate.http01]\nlisten = \"127.0.0.1:{}\"\n\n",
            cert_path.display(),
            key_path.display(),
            self.pebble.http_port(),
        )
    }

    /// A config with `names`, each for `NAME.bench.test` through the built-in responder.
    fn config(&self, file: &str, names: &[String]) -> Result<PathBuf> {
        let tls = self.work.join("tls");
        let mut text = self.acme_header();
        for name in names {
            text.push_str(&self.certificate(
                name,
                &tls.join(format!("{name}.pem")),
                &tls.join(format!("{name}.key")),
            ));
        }
        let path = self.work.join(file);
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// A config with `count` certificates planted with 80 of 90 days left: none is due.
    fn not_due_config(&self, file: &str, count: usize) -> Result<PathBuf> {
        let ca = certs::TestCa::new();
        let mut text = self.acme_header();
        for name in names("idle", count) {
            let domain = format!("{name}.bench.test");
            let (not_before, not_after) = certs::days_left(80);
            let leaf = ca.leaf(&[&domain], not_before, not_after, certs::KeyType::EcdsaP256);
            let (cert, key) = leaf.write_pair(&self.work.join("tls"), &name);
            text.push_str(&self.certificate(&name, &cert, &key));
        }
        let path = self.work.join(file);
        std::fs::write(&path, text)?;
        Ok(path)
    }

    fn renew(&self, config: &Path, force: bool) -> Invocation {
        let invocation = Invocation::new(self.binary, &self.log)
            .arg("-c")
            .arg(config)
            .arg("renew");
        if force {
            invocation.arg("--force")
        } else {
            invocation
        }
    }

    fn evercert(&self, args: &[&str]) -> Invocation {
        Invocation::new(self.binary, &self.log).args(args)
    }
}

fn names(prefix: &str, count: usize) -> Vec<String> {
    (1..=count).map(|i| format!("{prefix}{i:02}")).collect()
}

/// One client's line in the side-by-side table.
#[derive(Debug, Default)]
struct PeerRow {
    first: Option<Figure>,
    one: Option<Figure>,
    twenty: Option<Figure>,
    note: String,
}

/// Distinct "failed at" progress lines in evercert's logs (at most five).
fn failed_orders(logs: &[&Path]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for log in logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for line in text.lines().filter(|line| line.contains("failed at")) {
            if seen.len() < 5 && !seen.iter().any(|known| known == line) {
                seen.push(line.trim().to_owned());
            }
        }
    }
    seen
}

/// Pebble's CPU per run of `series` (Pebble's utime+stime before and after).
fn with_pebble_cpu(
    pebble: &Pebble,
    runs: usize,
    series: impl FnOnce() -> Result<Series>,
) -> Result<(Series, Option<Duration>)> {
    let before = pebble_cpu(pebble);
    let series = series()?;
    let per_run = before
        .zip(pebble_cpu(pebble))
        .map(|(before, after)| after.saturating_sub(before) / u32::try_from(runs).unwrap_or(1));
    Ok((series, per_run))
}

fn bench_issuance(
    options: &Options,
    measurer: &Measurer,
    binary: &Path,
    work: &Path,
    report: &mut String,
) -> Result<()> {
    let runs = options.runs;
    let one_target = Target {
        wall: Some(Duration::from_millis(80)),
        cpu: Some(Duration::from_millis(40)),
        rss_mib: Some(16.0),
    };
    let twenty_target = Target {
        wall: Some(Duration::from_millis(250)),
        ..Target::default()
    };
    let _ = writeln!(
        report,
        "## Issuance against a local Pebble (issue 3)\n\n\
         Pebble 2.4 on loopback with `PEBBLE_VA_NOSLEEP=1` and `PEBBLE_AUTHZREUSE=0` (every \
         order validates), evercert's built-in http-01 responder on Pebble's http port, ECDSA \
         P-256 keys, no reload hook, no verify endpoint. Every run is one `evercert` process \
         with the account already registered (the first run, measured once, registers it). \
         Median of {runs} runs.\n"
    );
    let _ = writeln!(report, "{FIGURE_HEADER}");

    progress("starting Pebble (nonce rejection 0 %, authz reuse 0 %)");
    let pebble = Pebble::start_with(PebbleOptions {
        nonce_reject_percent: 0,
        authz_reuse: Some(0),
        ..PebbleOptions::default()
    });
    let setup = Issuance::new(&pebble, binary, &work.join("nonce0"))?;
    let single = setup.config("single.toml", &names("one", 1))?;
    let fleet = setup.config("fleet.toml", &names("fleet", 20))?;
    let idle = setup.not_due_config("idle.toml", 50)?;

    progress("evercert: first run (registers the account)");
    let first = measurer.sample_ok(&setup.renew(&single, true), &[0])?;
    progress(&format!("evercert: renew --force, 1 certificate × {runs}"));
    let (one, pebble_one) = with_pebble_cpu(&pebble, runs, || {
        measurer.series(&setup.renew(&single, true), &[0], runs)
    })?;
    record_perf(options, &setup.renew(&single, true), "renew-1")?;
    progress("evercert: 20 certificates, first issuance of each (not measured)");
    measurer.sample_ok(&setup.renew(&fleet, true), FLEET_CODES)?;
    progress(&format!(
        "evercert: renew --force, 20 certificates × {runs}"
    ));
    let (twenty, pebble_twenty) = with_pebble_cpu(&pebble, runs, || {
        Ok(measurer
            .series(&setup.renew(&fleet, true), FLEET_CODES, runs)?
            .counting_failures())
    })?;
    record_perf(options, &setup.renew(&fleet, true), "renew-20")?;
    progress(&format!("evercert: no-op renew, 50 certificates × {runs}"));
    measurer.sample_ok(&setup.renew(&idle, false), &[0])?;
    let noop = measurer.series(&setup.renew(&idle, false), &[0], runs)?;
    let version = measurer.series(&setup.evercert(&["--version"]), &[0], runs)?;
    let config_check = measurer.series(
        &setup
            .evercert(&["-c"])
            .arg(&single)
            .args(["config", "check"]),
        &[0],
        runs,
    )?;

    let rows = [
        (
            "first run: register the account, issue 1 certificate",
            Series::single(first),
            Target::default(),
        ),
        (
            "`renew --force`: 1 certificate, existing account",
            one.clone(),
            one_target,
        ),
        (
            "`renew --force`: 20 certificates in one run",
            twenty.clone(),
            twenty_target,
        ),
        (
            "`renew`: 50 certificates, none due (no-op)",
            noop,
            Target::default(),
        ),
        (
            "`evercert --version` (process start and exit)",
            version,
            Target::default(),
        ),
        (
            "`config check` (one certificate)",
            config_check,
            Target::default(),
        ),
    ];
    for (what, series, target) in &rows {
        let _ = writeln!(report, "{}", figure_row(what, series, *target));
    }

    // Pebble's default 5 % nonce rejection: retries on badNonce.
    progress("starting a second Pebble with its default 5 % nonce rejection");
    {
        let harsh = Pebble::start_with(PebbleOptions {
            nonce_reject_percent: 5,
            authz_reuse: Some(0),
            ..PebbleOptions::default()
        });
        let setup = Issuance::new(&harsh, binary, &work.join("nonce5"))?;
        let single = setup.config("single.toml", &names("one", 1))?;
        let fleet = setup.config("fleet.toml", &names("fleet", 20))?;
        measurer.sample_ok(&setup.renew(&single, true), &[0])?;
        progress(&format!("evercert: 5 % badNonce, 1 certificate × {runs}"));
        let one = measurer.series(&setup.renew(&single, true), &[0], runs)?;
        measurer.sample_ok(&setup.renew(&fleet, true), FLEET_CODES)?;
        progress(&format!("evercert: 5 % badNonce, 20 certificates × {runs}"));
        let twenty = measurer
            .series(&setup.renew(&fleet, true), FLEET_CODES, runs)?
            .counting_failures();
        let _ = writeln!(
            report,
            "{}",
            figure_row(
                "`renew --force`: 1 certificate, Pebble's default 5 % `badNonce`",
                &one,
                one_target
            )
        );
        let _ = writeln!(
            report,
            "{}",
            figure_row(
                "`renew --force`: 20 certificates, 5 % `badNonce`",
                &twenty,
                twenty_target
            )
        );
    }
    let _ = writeln!(report);
    let failures = failed_orders(&[&setup.log, &work.join("nonce5").join("evercert.log")]);
    if !failures.is_empty() {
        let _ = writeln!(
            report,
            "Failed orders seen in these runs (evercert's own words):\n"
        );
        for failure in failures {
            let _ = writeln!(report, "- `{failure}`");
        }
        let _ = writeln!(report);
    }
    if let (Some(one), Some(twenty)) = (pebble_one, pebble_twenty) {
        let _ = writeln!(
            report,
            "Pebble's own CPU meanwhile (utime+stime of its process, in 10 ms ticks): {} per \
             1-certificate run, {} per 20-certificate run.\n",
            fmt_duration(one),
            fmt_duration(twenty)
        );
    }

    // The peers, on the same Pebble (0 % nonce rejection).
    let mut rows = vec![(
        "evercert".to_owned(),
        PeerRow {
            first: Some(Series::single(first).median()),
            one: Some(one.median()),
            twenty: Some(twenty.median()),
            note: format!(
                "one `renew --force` process for all 20 (concurrency {EVERCERT_CONCURRENCY}, one \
                 responder); medians of {runs}"
            ),
        },
    )];
    for &peer in &options.peers {
        progress(&format!("peer: {}", peer.name()));
        let row = bench_peer(peer, options, measurer, &pebble, work).unwrap_or_else(|err| {
            let why = format!("{err:#}").replace('\n', " ").replace('|', "\\|");
            progress(&format!("{} did not run: {why}", peer.name()));
            PeerRow {
                note: format!("**did not run**: {why}"),
                ..PeerRow::default()
            }
        });
        rows.push((peer.name().to_owned(), row));
    }
    write_peer_table(report, &rows);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Peers

fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// How to run one peer: the command for one domain, and what must be up around it.
struct PeerSetup {
    issue: Box<dyn Fn(&str) -> Invocation>,
    /// Run once before anything is measured (account registration), if the peer has it.
    register: Option<Invocation>,
    /// What a wrapper around the peer costs on its own (uacme's `unshare` + bind mount).
    wrapper: Option<Invocation>,
    /// For uacme: a webroot server on Pebble's http port while it runs.
    webroot: Option<PathBuf>,
}

fn peer_setup(peer: Peer, pebble: &Pebble, dir: &Path) -> Result<PeerSetup> {
    let program = which(peer.name()).with_context(|| {
        format!(
            "`{}` is not installed (apt-get install -y {})",
            peer.name(),
            peer.name()
        )
    })?;
    let url = pebble.directory_url();
    let bundle = pebble.ca_bundle_path().to_owned();
    let port = pebble.http_port();
    let log = dir.join(format!("{}.log", peer.name()));
    std::fs::create_dir_all(dir)?;
    match peer {
        Peer::Lego => {
            let path = dir.join("lego");
            Ok(PeerSetup {
                issue: Box::new(move |domain| {
                    Invocation::new(&program, &log)
                        .env("LEGO_CA_CERTIFICATES", &bundle)
                        .args(["--accept-tos", "--server", &url, "--email", EMAIL])
                        .args(["--domains", domain, "--path"])
                        .arg(&path)
                        .args(["--http", "--http.port", &format!("127.0.0.1:{port}"), "run"])
                }),
                register: None,
                wrapper: None,
                webroot: None,
            })
        }
        Peer::Certbot => {
            let base = dir.join("certbot");
            Ok(PeerSetup {
                issue: Box::new(move |domain| {
                    Invocation::new(&program, &log)
                        .env("REQUESTS_CA_BUNDLE", &bundle)
                        .args(["certonly", "--server", &url, "--standalone"])
                        .args(["--http-01-address", "127.0.0.1", "--http-01-port"])
                        .arg(port.to_string())
                        .arg("--config-dir")
                        .arg(base.join("config"))
                        .arg("--work-dir")
                        .arg(base.join("work"))
                        .arg("--logs-dir")
                        .arg(base.join("logs"))
                        .args([
                            "--non-interactive",
                            "--agree-tos",
                            "-m",
                            EMAIL,
                            "-d",
                            domain,
                        ])
                }),
                register: None,
                wrapper: None,
                webroot: None,
            })
        }
        Peer::Uacme => {
            // uacme (libcurl-gnutls) has no option or environment variable for extra CA roots:
            // it trusts /etc/ssl/certs/ca-certificates.crt. In a private mount namespace that
            // path is bind-mounted over with Pebble's root, for uacme alone.
            let unshare = which("unshare").context("`unshare` (util-linux) is missing")?;
            let hook = Path::new("/usr/share/uacme/uacme.sh");
            ensure!(hook.is_file(), "{} is missing", hook.display());
            let confdir = dir.join("uacme");
            let webroot = dir.join("uacme-webroot");
            let challenge_dir = webroot.join(".well-known/acme-challenge");
            std::fs::create_dir_all(&challenge_dir)?;
            let wrap = {
                let unshare = unshare.clone();
                let program = program.clone();
                let bundle = bundle.clone();
                let log = log.clone();
                let confdir = confdir.clone();
                let url = url.clone();
                move |tail: &[OsString]| {
                    Invocation::new(&unshare, &log)
                        .args(["-m", "sh", "-c"])
                        .arg(
                            "mount --bind \"$0\" /etc/ssl/certs/ca-certificates.crt && exec \"$@\"",
                        )
                        .arg(&bundle)
                        .arg(&program)
                        .args(["-a", &url, "-c"])
                        .arg(&confdir)
                        .args(["-t", "EC", "-b", "256"])
                        .args(tail.iter().cloned())
                }
            };
            let register = wrap(&["-y".into(), "new".into(), EMAIL.into()]);
            let wrapper = Invocation::new(&unshare, &log)
                .args(["-m", "sh", "-c"])
                .arg("mount --bind \"$0\" /etc/ssl/certs/ca-certificates.crt && exec \"$@\"")
                .arg(&bundle)
                .arg("true");
            let hook = hook.to_owned();
            Ok(PeerSetup {
                issue: Box::new(move |domain| {
                    wrap(&[
                        "-h".into(),
                        hook.clone().into(),
                        "issue".into(),
                        domain.into(),
                    ])
                    .env("UACME_CHALLENGE_PATH", &challenge_dir)
                }),
                register: Some(register),
                wrapper: Some(wrapper),
                webroot: Some(webroot),
            })
        }
    }
}

fn bench_peer(
    peer: Peer,
    options: &Options,
    measurer: &Measurer,
    pebble: &Pebble,
    work: &Path,
) -> Result<PeerRow> {
    let dir = work.join("peers");
    let setup = peer_setup(peer, pebble, &dir)?;
    let _server = setup
        .webroot
        .as_ref()
        .map(|root| WebrootServer::start(root, pebble.http_port()));
    let name = peer.name();
    // The first run registers the account (and issues, for lego and certbot).
    let mut first = Series::default();
    if let Some(register) = &setup.register {
        first.samples.push(measurer.sample_ok(register, &[0])?);
    }
    let invocation = (setup.issue)(&format!("{name}-first.bench.test"));
    first.samples.push(measurer.sample_ok(&invocation, &[0])?);
    progress(&format!("{name}: one certificate × {}", options.peer_runs));
    let mut one = Series::default();
    for i in 1..=options.peer_runs {
        let invocation = (setup.issue)(&format!("{name}-one{i:02}.bench.test"));
        one.samples.push(measurer.sample_ok(&invocation, &[0])?);
    }
    progress(&format!("{name}: 20 certificates, one after the other"));
    let mut twenty = Series::default();
    for i in 1..=20 {
        let invocation = (setup.issue)(&format!("{name}-fleet{i:02}.bench.test"));
        twenty.samples.push(measurer.sample_ok(&invocation, &[0])?);
    }
    let wrapper = match &setup.wrapper {
        Some(wrapper) => Some(measurer.series(wrapper, &[0], options.runs)?),
        None => None,
    };
    let note = match peer {
        Peer::Uacme => format!(
            "1-cert median of {}; 20 sequential invocations; first run is `new` + `issue`; \
             includes `unshare -m` + bind mount of the CA file (uacme has no CA option; \
             that wrapper alone: {} wall, {} CPU); ECDSA P-256 (`-t EC`)",
            options.peer_runs,
            wrapper
                .as_ref()
                .map_or_else(String::new, |w| fmt_duration(w.wall())),
            wrapper
                .as_ref()
                .map_or_else(String::new, |w| fmt_duration(w.cpu())),
        ),
        _ => format!(
            "1-cert median of {}; 20 sequential invocations; new domain each run",
            options.peer_runs
        ),
    };
    Ok(PeerRow {
        first: Some(first.total()),
        one: Some(one.median()),
        twenty: Some(twenty.total()),
        note,
    })
}

fn write_peer_table(report: &mut String, rows: &[(String, PeerRow)]) {
    let _ = writeln!(
        report,
        "## Side by side with the peers (same Pebble, same run)\n\n\
         The Pebble above (0 % nonce rejection, `PEBBLE_AUTHZREUSE=0`). Each client first \
         registers its account (column \"first run\"), then issues for new names with that \
         account. \"20 certificates\" is one evercert process, but 20 sequential invocations \
         of each peer, the way they are run from cron (wall and CPU summed, RSS the largest).\n"
    );
    let _ = writeln!(
        report,
        "| client | 1 certificate: wall | CPU | peak RSS | 20 certificates: wall | CPU | peak RSS | first run (registers the account) | notes |\n|---|---|---|---|---|---|---|---|---|"
    );
    let cells = |figure: Option<Figure>| {
        figure.map_or_else(
            || ["–".to_owned(), "–".to_owned(), "–".to_owned()],
            |figure| {
                [
                    fmt_duration(figure.wall),
                    fmt_duration(figure.cpu),
                    fmt_mib(figure.rss_mib),
                ]
            },
        )
    };
    for (name, row) in rows {
        let [one_wall, one_cpu, one_rss] = cells(row.one);
        let [twenty_wall, twenty_cpu, twenty_rss] = cells(row.twenty);
        let [first, _, _] = cells(row.first);
        let _ = writeln!(
            report,
            "| {name} | {one_wall} | {one_cpu} | {one_rss} | {twenty_wall} | {twenty_cpu} | {twenty_rss} | {first} | {} |",
            row.note
        );
    }
    let _ = writeln!(report);
}

// ---------------------------------------------------------------------------------------------

fn run() -> Result<()> {
    let options = Options::parse()?;
    let binary = evercert_testkit::evercert_binary();
    // A kept directory must start empty: old state would change what is measured.
    let (_temp, work) = match &options.keep {
        Some(dir) => {
            ensure!(
                !dir.exists() || std::fs::read_dir(dir)?.next().is_none(),
                "--keep {}: the directory must be new or empty",
                dir.display()
            );
            std::fs::create_dir_all(dir)?;
            (None, std::path::absolute(dir)?)
        }
        None => {
            let temp = tempfile::Builder::new()
                .prefix("evercert-bench-")
                .tempdir()?;
            let path = temp.path().to_owned();
            (Some(temp), path)
        }
    };
    let measurer = Measurer::new(&work)?;
    let started = Instant::now();

    let mut report = String::new();
    let _ = writeln!(
        report,
        "# evercert benchmark report\n\n{}",
        machine_facts(&binary)
    );
    if options.inventory {
        bench_inventory(&options, &measurer, &binary, &work, &mut report)?;
    }
    if options.issuance {
        pebble::require_pebble();
        bench_issuance(&options, &measurer, &binary, &work, &mut report)?;
    }
    let _ = writeln!(
        report,
        "Total bench time: {}.",
        fmt_duration(started.elapsed())
    );
    print!("{report}");
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench failed: {err:#}");
            ExitCode::FAILURE
        }
    }
}
