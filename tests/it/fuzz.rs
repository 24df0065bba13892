//! Hostile input: the configuration parser, the certificate and key readers, and what a CA
//! sends back (problem documents, order and ARI JSON, Retry-After) get random and mutated
//! bytes, and must answer every one with a value or an error: never a panic, never a hang.
//!
//! cargo-fuzz needs a nightly toolchain and libFuzzer; CI builds with stable, so this is a
//! coverage-free fuzzer of our own. Seeds (`tests/fuzz-corpus/`, the example configuration,
//! the ```toml blocks of the docs, certificates and keys minted at test time) are mutated by
//! bit flips, token insertions, splices, duplications, line shuffles and truncations; a
//! grammar writes random but well-formed configurations to reach the validation code; and
//! proptest supplies arbitrary bytes and strings. Every case runs on a 2 MiB thread (a tokio
//! worker's stack: the agent re-reads its configuration and certificates there) under a
//! watchdog that fails it after 2 s.
//!
//! - `EVERCERT_FUZZ_SECONDS`: seconds per time-bounded target (default 10: six of them, plus
//!   proptest targets sized to the budget, about 40 s for the whole file on two cores).
//! - `EVERCERT_FUZZ_SEED`: replay a run; the seed is printed with every target's figures
//!   (`--nocapture`) and in every failure.
//!
//! A failing input is shrunk and written to `target/tmp/fuzz-failures/`; copy it into
//! `tests/fuzz-corpus/<target>/`, where the corpus tests replay it forever.

use std::any::Any;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use evercert::config::{self, CertificateSettings};
use evercert::inventory;
use evercert::policy::{RenewBefore, Thresholds};
use evercert::report;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::OffsetDateTime;

use crate::support::certs::{KeyType, TestCa, days_left};

/// A case that uses more CPU time than this is a hang (or as good as one). CPU time of the
/// worker thread, not wall time: the suite runs CPU-heavy tests beside the fuzzers (the soak,
/// nginx under load), and a loaded machine must not turn a 200 ms case into a false hang.
const CASE_LIMIT: Duration = Duration::from_secs(2);
/// A case that has not finished after this much wall time is stuck (blocked, not computing).
const CASE_WALL_LIMIT: Duration = Duration::from_secs(30);
/// The stack of a tokio worker thread, the smallest evercert parses on.
const WORKER_STACK: usize = 2 << 20;
const DEFAULT_SECONDS: u64 = 10;
/// Where configuration errors point and relative paths are anchored.
const CONFIG_PATH: &str = "/etc/evercert/evercert.toml";

// ---------------------------------------------------------------------------------------------
// The harness: budget, seed, a replayable generator, a watched worker, shrinking, reports.

/// Seconds per time-bounded target.
fn budget() -> Duration {
    let seconds = std::env::var("EVERCERT_FUZZ_SECONDS")
        .ok()
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
        .unwrap_or(DEFAULT_SECONDS as f64);
    Duration::from_secs_f64(seconds)
}

/// The run's seed: `EVERCERT_FUZZ_SEED`, else new each run (so CI explores new cases).
fn seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| {
        std::env::var("EVERCERT_FUZZ_SEED")
            .ok()
            .and_then(|text| {
                let text = text.trim();
                match text.strip_prefix("0x") {
                    Some(hex) => u64::from_str_radix(hex, 16).ok(),
                    None => text.parse().ok(),
                }
            })
            .unwrap_or_else(|| {
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos();
                (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)
            })
    })
}

/// SplitMix64: tiny, fast, and a case is replayable from the seed alone.
struct Rng(u64);

impl Rng {
    fn for_target(target: &str) -> Self {
        let salt = target
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
            });
        Self(seed() ^ salt)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Small numbers far more often than large ones: `0..2^bits`, log-uniform.
    fn small(&mut self, bits: usize) -> usize {
        let width = self.below(bits + 1);
        self.below(1 << width)
    }
}

/// A property of one input: `Err` says which property broke.
type Check = Arc<dyn Fn(&[u8]) -> Result<(), String> + Send + Sync>;

#[derive(Debug)]
enum Verdict {
    Pass,
    Violation(String),
    Panic(String),
    Hang,
}

impl Verdict {
    /// Failures worth shrinking: each attempt must be quick, so not hangs.
    fn shrinkable(&self) -> bool {
        matches!(self, Self::Violation(_) | Self::Panic(_))
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// The CPU time the calling thread has used so far.
fn thread_cpu_time() -> Duration {
    let spent = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(spent.tv_sec).unwrap_or(0),
        u32::try_from(spent.tv_nsec).unwrap_or(0),
    )
}

/// Runs a check on its own 2 MiB thread; a case that uses more than [`CASE_LIMIT`] of CPU
/// time, or does not finish within the wall-time limit, is a hang, and a stuck thread is
/// abandoned for a fresh one.
struct Worker {
    check: Check,
    inputs: Sender<Vec<u8>>,
    verdicts: Receiver<(Verdict, Duration)>,
    slowest: Duration,
    wall_limit: Duration,
}

impl Worker {
    fn new(check: Check) -> Self {
        let (inputs, input_rx) = mpsc::channel::<Vec<u8>>();
        let (verdict_tx, verdicts) = mpsc::channel();
        let work = check.clone();
        std::thread::Builder::new()
            .name("fuzz-worker".into())
            .stack_size(WORKER_STACK)
            .spawn(move || {
                for input in input_rx {
                    let started = thread_cpu_time();
                    let verdict = match catch_unwind(AssertUnwindSafe(|| work(&input))) {
                        Ok(Ok(())) => Verdict::Pass,
                        Ok(Err(why)) => Verdict::Violation(why),
                        Err(payload) => Verdict::Panic(panic_message(payload.as_ref())),
                    };
                    let spent = thread_cpu_time().saturating_sub(started);
                    if verdict_tx.send((verdict, spent)).is_err() {
                        break;
                    }
                }
            })
            .unwrap();
        Self {
            check,
            inputs,
            verdicts,
            slowest: Duration::ZERO,
            wall_limit: CASE_WALL_LIMIT,
        }
    }

    fn run(&mut self, input: &[u8]) -> Verdict {
        self.inputs.send(input.to_vec()).unwrap();
        match self.verdicts.recv_timeout(self.wall_limit) {
            Ok((_, spent)) if spent > CASE_LIMIT => Verdict::Hang,
            Ok((verdict, spent)) => {
                self.slowest = self.slowest.max(spent);
                verdict
            }
            Err(RecvTimeoutError::Timeout) => {
                let (slowest, wall_limit) = (self.slowest, self.wall_limit);
                *self = Self::new(self.check.clone());
                self.slowest = slowest;
                self.wall_limit = wall_limit;
                Verdict::Hang
            }
            Err(RecvTimeoutError::Disconnected) => {
                Verdict::Panic("the worker thread died (stack overflow?)".into())
            }
        }
    }
}

/// The smallest input, by removing chunks, that still fails (panic or violation); at most
/// ten seconds of trying.
fn shrink(worker: &mut Worker, input: Vec<u8>) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut best = input;
    let mut chunk = best.len().div_ceil(2);
    while chunk >= 1 && Instant::now() < deadline {
        let mut progressed = false;
        let mut start = 0;
        while start + chunk <= best.len() && Instant::now() < deadline {
            let mut candidate = best[..start].to_vec();
            candidate.extend_from_slice(&best[start + chunk..]);
            if worker.run(&candidate).shrinkable() {
                best = candidate;
                progressed = true;
            } else {
                start += chunk;
            }
        }
        if !progressed {
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2).min(chunk - 1).max(1);
        }
    }
    best
}

/// A short, printable picture of an input.
fn preview(input: &[u8]) -> String {
    let shown: String = input
        .iter()
        .take(400)
        .flat_map(|byte| std::ascii::escape_default(*byte))
        .map(char::from)
        .collect();
    if input.len() > 400 {
        format!("{shown}… ({} bytes)", input.len())
    } else {
        shown
    }
}

/// Keeps a failing input where a developer can find it and turn it into a corpus seed.
fn save_failure(target: &str, input: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
    let _ = fs::create_dir_all(&dir);
    let digest = input.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    });
    let path = dir.join(format!("{target}-{digest:016x}"));
    let _ = fs::write(&path, input);
    path
}

fn describe(target: &str, verdict: &Verdict, input: &[u8], save: bool) -> String {
    let what = match verdict {
        Verdict::Pass => "passed".to_owned(),
        Verdict::Violation(why) => format!("broke a property: {why}"),
        Verdict::Panic(message) => format!("panicked: {message}"),
        Verdict::Hang => format!(
            "took more than {} s of CPU time or {} s in all",
            CASE_LIMIT.as_secs(),
            CASE_WALL_LIMIT.as_secs()
        ),
    };
    let saved = if save {
        format!(
            ", saved as {}; copy it into tests/fuzz-corpus/ to keep it as a regression seed",
            save_failure(target, input).display()
        )
    } else {
        String::new()
    };
    format!(
        "fuzz target `{target}` {what}\n  input ({} bytes{saved}): {}\n  replay with \
         EVERCERT_FUZZ_SEED={:#x}",
        input.len(),
        preview(input),
        seed()
    )
}

/// Runs `generate`d inputs through `check` for the budget; fails on the first panic,
/// broken property or hang, with the input shrunk and saved.
fn fuzz(target: &str, check: Check, mut generate: impl FnMut(&mut Rng) -> Vec<u8>) {
    let budget = budget();
    let mut rng = Rng::for_target(target);
    let mut worker = Worker::new(check);
    let started = Instant::now();
    let mut cases = 0_u64;
    let mut bytes = 0_u64;
    while started.elapsed() < budget {
        let input = generate(&mut rng);
        let verdict = worker.run(&input);
        cases += 1;
        bytes += input.len() as u64;
        if matches!(verdict, Verdict::Pass) {
            continue;
        }
        let input = if verdict.shrinkable() {
            shrink(&mut worker, input)
        } else {
            input
        };
        panic!("{}", describe(target, &verdict, &input, true));
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "fuzz {target}: {cases} cases ({:.0}/s, {:.1} KiB on average) in {elapsed:.1} s, \
         slowest {:.1} ms, 0 failures, seed {:#x}",
        cases as f64 / elapsed.max(1e-9),
        bytes as f64 / cases.max(1) as f64 / 1024.0,
        worker.slowest.as_secs_f64() * 1000.0,
        seed()
    );
}

/// Runs a proptest strategy through `check` on a watched worker; proptest shrinks.
fn fuzz_strategy<S>(target: &str, strategy: S, check: Check)
where
    S: Strategy,
    S::Value: AsRef<[u8]>,
{
    let cases = ((budget().as_secs_f64() * 300.0) as u32).max(50);
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_time: 10_000,
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new_with_rng(
        config,
        proptest::test_runner::TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &{
            let mut bytes = [0; 32];
            bytes[..8].copy_from_slice(&Rng::for_target(target).next().to_le_bytes());
            bytes
        }),
    );
    let worker = RefCell::new(Worker::new(check));
    let started = Instant::now();
    let result = runner.run(&strategy, |input| {
        let input = input.as_ref();
        match worker.borrow_mut().run(input) {
            Verdict::Pass => Ok(()),
            verdict => Err(TestCaseError::fail(describe(
                target, &verdict, input, false,
            ))),
        }
    });
    if let Err(err) = result {
        panic!("{err}");
    }
    println!(
        "fuzz {target}: {cases} proptest cases in {:.1} s, slowest {:.1} ms, 0 failures, seed {:#x}",
        started.elapsed().as_secs_f64(),
        worker.borrow().slowest.as_secs_f64() * 1000.0,
        seed()
    );
}

/// Runs named inputs, each under the watchdog, and reports every failure at once.
fn run_cases(target: &str, check: &Check, cases: Vec<(String, Vec<u8>)>) {
    let mut worker = Worker::new(check.clone());
    let mut failures = Vec::new();
    let count = cases.len();
    for (name, input) in cases {
        let started = Instant::now();
        let verdict = worker.run(&input);
        println!(
            "  {name}: {:.1} ms",
            started.elapsed().as_secs_f64() * 1000.0
        );
        if !matches!(verdict, Verdict::Pass) {
            failures.push(format!(
                "{name} (after {:.1} s): {}",
                started.elapsed().as_secs_f64(),
                describe(target, &verdict, &input, true)
            ));
        }
    }
    println!(
        "{target}: {count} cases, slowest {:.1} ms, {} failures",
        worker.slowest.as_secs_f64() * 1000.0,
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---------------------------------------------------------------------------------------------
// Mutations.

const INTERESTING_BYTES: &[u8] = &[
    0x00, 0x01, 0x7f, 0x80, 0xff, b'\n', b'\r', b'\t', b' ', b'"', b'\'', b'[', b']', b'{', b'}',
    b'=', b',', b'.', b'#', b'\\', b'-', b'+', b'/', b':', b'*', b'0', b'9', 0xc3, 0xe2, 0xf0,
];

const INTERESTING_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "255",
    "256",
    "65535",
    "65536",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "99999999999999999999999999999999",
    "1e308",
    "1e309",
    "-1e-400",
    "0.0000000000000000000001",
    "nan",
    "inf",
];

/// One to sixteen stacked mutations of `input`, using `dictionary` tokens and splicing with
/// `others`; the result is at most `max_len` bytes.
fn mutate(
    rng: &mut Rng,
    input: &mut Vec<u8>,
    dictionary: &[Vec<u8>],
    others: &[Vec<u8>],
    max_len: usize,
) {
    let rounds = 1 << rng.below(5);
    for _ in 0..rounds {
        let len = input.len();
        let at = rng.below(len + 1);
        let inside = rng.below(len.max(1));
        match rng.below(14) {
            0 if len > 0 => input[inside] ^= 1 << rng.below(8),
            1 if len > 0 => input[inside] = *rng.pick(INTERESTING_BYTES),
            2 | 3 if len > 0 => {
                let bits = if rng.one_in(8) { 16 } else { 6 };
                let count = 1 + rng.small(bits);
                let end = (inside + count).min(len);
                input.drain(inside..end);
            }
            4 if len > 0 => {
                let bits = if rng.one_in(8) { 14 } else { 7 };
                let count = 1 + rng.small(bits);
                let end = (inside + count).min(len);
                let chunk = input[inside..end].to_vec();
                input.splice(at..at, chunk);
            }
            5 | 6 if !dictionary.is_empty() => {
                let token = rng.pick(dictionary).clone();
                input.splice(at..at, token);
            }
            7 if !dictionary.is_empty() => {
                let token = rng.pick(dictionary).clone();
                let end = (at + token.len()).min(len);
                input.splice(at..end, token);
            }
            8 if !others.is_empty() => {
                let other = rng.pick(others);
                let from = rng.below(other.len() + 1);
                input.truncate(at);
                input.extend_from_slice(&other[from..]);
            }
            9 if len > 0 => input.truncate(inside),
            10 if len > 0 => {
                // A run of one small chunk: long lines, deep nesting, many tables.
                let count = 1 + rng.small(4);
                let end = (inside + count).min(len);
                let chunk = input[inside..end].to_vec();
                let times = 2 + rng.small(12);
                let run: Vec<u8> = chunk
                    .iter()
                    .copied()
                    .cycle()
                    .take(chunk.len() * times)
                    .collect();
                input.splice(at..at, run);
            }
            11 => mutate_lines(rng, input),
            12 => replace_number(rng, input, at),
            _ => {
                let count = 1 + rng.below(8);
                let random: Vec<u8> = (0..count).map(|_| rng.next() as u8).collect();
                input.splice(at..at, random);
            }
        }
        if input.len() > max_len {
            let start = rng.below(input.len() - max_len + 1);
            input.drain(..start);
            input.truncate(max_len);
        }
    }
}

/// Duplicates, deletes, swaps or moves whole lines: TOML tables and keys, PEM sections.
fn mutate_lines(rng: &mut Rng, input: &mut Vec<u8>) {
    let mut lines: Vec<Vec<u8>> = input
        .split_inclusive(|byte| *byte == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    if lines.is_empty() {
        return;
    }
    let a = rng.below(lines.len());
    let b = rng.below(lines.len());
    match rng.below(4) {
        0 => {
            let line = lines[a].clone();
            lines.insert(b, line);
        }
        1 => {
            lines.remove(a);
        }
        2 => lines.swap(a, b),
        _ => {
            let line = lines.remove(a);
            lines.insert(b.min(lines.len()), line);
        }
    }
    *input = lines.concat();
}

/// Replaces the digits at or after `at` with an interesting number.
fn replace_number(rng: &mut Rng, input: &mut Vec<u8>, at: usize) {
    let Some(start) = input
        .iter()
        .skip(at)
        .position(u8::is_ascii_digit)
        .map(|offset| at + offset)
    else {
        return;
    };
    let end = input[start..]
        .iter()
        .position(|byte| !byte.is_ascii_digit())
        .map_or(input.len(), |offset| start + offset);
    let number = rng.pick(INTERESTING_NUMBERS).as_bytes().to_vec();
    input.splice(start..end, number);
}

fn tokens(words: &[&str]) -> Vec<Vec<u8>> {
    words.iter().map(|word| word.as_bytes().to_vec()).collect()
}

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(target)
}

/// The seed files of `tests/fuzz-corpus/<target>/`, by name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut seeds: Vec<(String, Vec<u8>)> = fs::read_dir(corpus_dir(target))
        .unwrap_or_else(|err| panic!("tests/fuzz-corpus/{target}: {err}"))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (
                format!("tests/fuzz-corpus/{target}/{name}"),
                fs::read(&path).unwrap(),
            )
        })
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "tests/fuzz-corpus/{target} has no seeds");
    seeds
}

// ---------------------------------------------------------------------------------------------
// Target 1: the configuration parser.

/// What `config::parse` must do with any text: a config, or errors that each point at a
/// line of this file (a read error is the only one without a line) and say something.
fn check_config(bytes: &[u8]) -> Result<(), String> {
    check_config_counting(bytes, &AtomicU64::new(0))
}

/// [`check_config`], counting the inputs that are valid configurations.
fn check_config_counting(bytes: &[u8], valid: &AtomicU64) -> Result<(), String> {
    let text = String::from_utf8_lossy(bytes);
    let path = Path::new(CONFIG_PATH);
    match config::parse(&text, path) {
        Ok(config) => {
            valid.fetch_add(1, Ordering::Relaxed);
            // Relative paths are anchored at the configuration's directory.
            let mut paths = vec![&config.state_dir];
            for cert in &config.certificates {
                paths.extend([&cert.cert_path, &cert.key_path]);
            }
            for path in paths {
                if !path.is_absolute() {
                    return Err(format!("accepted with a relative path {}", path.display()));
                }
            }
            Ok(())
        }
        Err(errors) => {
            if errors.0.is_empty() {
                return Err("rejected with an empty list of errors".into());
            }
            let lines = text.split('\n').count();
            for error in &errors.0 {
                if error.line == 0 || error.line > lines || error.column == 0 {
                    return Err(format!(
                        "error at line {} column {} of a {lines}-line file: {}",
                        error.line, error.column, error.message
                    ));
                }
                if error.message.trim().is_empty() {
                    return Err(format!("error at line {} without a message", error.line));
                }
                if error.file != path {
                    return Err(format!("error names {} instead", error.file.display()));
                }
            }
            let shown = errors.to_string();
            if !shown.contains(&format!("{CONFIG_PATH}:")) {
                return Err(format!("errors printed without file:line: {shown}"));
            }
            Ok(())
        }
    }
}

fn config_check() -> Check {
    Arc::new(check_config)
}

fn repo_file(path: &str) -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|err| panic!("{path}: {err}"))
}

/// The ```toml blocks of the README and docs/*.md.
fn doc_toml_blocks() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
                .collect()
        })
        .unwrap_or_default();
    files.push(root.join("README.md"));
    files.sort();
    let mut blocks = Vec::new();
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        let mut current: Option<String> = None;
        for line in text.lines() {
            let fence = line.trim_start().strip_prefix("```");
            match (&mut current, fence) {
                (None, Some(language)) if language.trim() == "toml" => {
                    current = Some(String::new());
                }
                (Some(_), Some(_)) => blocks.extend(current.take()),
                (Some(block), None) => {
                    block.push_str(line);
                    block.push('\n');
                }
                (None, _) => {}
            }
        }
    }
    blocks
}

/// Seed configurations: the example, the example with every commented-out setting switched
/// on, the docs' blocks and the corpus.
fn config_seeds() -> Vec<Vec<u8>> {
    let mut seeds = valid_config_seeds();
    seeds.extend(corpus("config").into_iter().map(|(_, bytes)| bytes));
    seeds
}

/// The example, with and without its commented-out settings, and the docs' blocks: valid
/// configurations, whose keys are the schema.
fn valid_config_seeds() -> Vec<Vec<u8>> {
    let example = repo_file("examples/evercert.toml");
    let uncommented: String = example
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if rest.contains(" = ") || rest.starts_with('[') => rest,
            _ => line,
        })
        .flat_map(|line| [line, "\n"])
        .collect();
    let mut seeds = vec![example.into_bytes(), uncommented.into_bytes()];
    seeds.extend(doc_toml_blocks().into_iter().map(String::into_bytes));
    seeds
}

/// The keys of each table, as the seeds use them (commented-out ones included), so the
/// generators follow the schema as it grows.
fn config_schema(seeds: &[Vec<u8>]) -> BTreeMap<String, BTreeSet<String>> {
    let mut schema: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for seed in seeds {
        let text = String::from_utf8_lossy(seed);
        let mut table = String::new();
        for line in text.lines() {
            let line = line.trim_start_matches(['#', ' ']).trim_end();
            if let Some(header) = line.strip_prefix('[') {
                let name = header.trim_start_matches('[');
                if let Some(end) = name.find(']') {
                    table = name[..end].trim().to_owned();
                    schema.entry(table.clone()).or_default();
                }
                continue;
            }
            let Some((key, _)) = line.split_once('=') else {
                continue;
            };
            let key = key.trim();
            if !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                schema
                    .entry(table.clone())
                    .or_default()
                    .insert(key.to_owned());
            }
        }
    }
    // Tables the examples do not show.
    for (table, key) in [
        ("certificate.tlsalpn01", "listen"),
        ("acme.eab", "kid"),
        ("acme.eab", "hmac_key"),
    ] {
        schema
            .entry(table.to_owned())
            .or_default()
            .insert(key.to_owned());
    }
    schema
}

fn config_dictionary(schema: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<u8>> {
    let mut words = tokens(&[
        "[",
        "]",
        "[[",
        "]]",
        "{",
        "}",
        "=",
        " = ",
        "\"",
        "'",
        "\"\"\"",
        "'''",
        ",",
        ".",
        "#",
        "\n",
        "\r\n",
        "\r",
        "\\",
        "\\u",
        "\\U0010FFFF",
        "\\uD800",
        "\\x",
        "true",
        "false",
        "nan",
        "+inf",
        "-inf",
        "+0.0",
        "1e400",
        "0x7fffffffffffffff",
        "0o777",
        "0b1",
        "1_000",
        "1979-05-27T07:32:00Z",
        "1979-05-27",
        "07:32:00",
        "\u{feff}",
        "\u{0}",
        "\u{202e}",
        "é",
        "𝔘",
        "\"\"",
        "[]",
        "{}",
        "[[]]",
        "{ a = 1 }",
        "\"1/3\"",
        "\"0/0\"",
        "\"1/0\"",
        "\"30d\"",
        "\"0s\"",
        "\"-1d\"",
        "\"2147483648d\"",
        "\"letsencrypt\"",
        "\"https://\"",
        "\"mailto:\"",
        "\"[::]:80\"",
        "\"*.example.com\"",
        "\"192.0.2.1\"",
        "\"::1\"",
        "\"..\"",
        "\"/\"",
        "\"ecdsa-p256\"",
        "\"rsa4096\"",
        "0o777",
        "0o7777",
        "-0o600",
    ]);
    for (table, keys) in schema {
        if !table.is_empty() {
            words.push(format!("\n[{table}]\n").into_bytes());
            words.push(format!("\n[[{table}]]\n").into_bytes());
            words.push(format!("{table}.").into_bytes());
        }
        for key in keys {
            words.push(format!("\n{key} = ").into_bytes());
            words.push(key.clone().into_bytes());
        }
    }
    words
}

const MAX_CONFIG: usize = 64 * 1024;

#[test]
fn fuzz_config_mutations() {
    let seeds = config_seeds();
    let dictionary = config_dictionary(&config_schema(&valid_config_seeds()));
    fuzz("config", config_check(), |rng| {
        let mut input = rng.pick(&seeds).clone();
        mutate(rng, &mut input, &dictionary, &seeds, MAX_CONFIG);
        input
    });
}

/// A TOML string, escaped so that the document stays well-formed.
fn toml_str(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

const STRINGS: &[&str] = &[
    "",
    " ",
    "shop",
    "shop-2.a_b",
    ".hidden",
    "a/b",
    "../../etc/passwd",
    "/etc/nginx/tls/shop/fullchain.pem",
    "/etc/nginx/tls/shop/privkey.pem",
    "relative/fullchain.pem",
    "letsencrypt",
    "letsencrypt-staging",
    "https://ca.example/directory",
    "http://ca.example/directory",
    "https://",
    "mailto:",
    "mailto:ops@example.com",
    "systemctl reload nginx",
    "1/3",
    "0/1",
    "1/0",
    "-1/3",
    "1/3/5",
    " 2 / 3 ",
    "0.5",
    "1.5",
    "1.",
    ".5",
    "nan",
    "30d",
    "1d12h",
    "0s",
    "-5m",
    "12 h",
    "30days",
    "1M",
    "2147483647d",
    "2147483648d",
    "2147483647d2147483647d2147483647d",
    "99999999999999999999s",
    "[::]:80",
    "0.0.0.0:0",
    "127.0.0.1:65536",
    "127.0.0.1:443",
    "host:443",
    "host:",
    ":443",
    "[::1]",
    "[::1]:443",
    "example.com",
    "*.example.com",
    "*.*.example.com",
    "a*.example.com",
    "example.com.",
    "EXAMPLE.COM",
    "xn--bcher-kva.example",
    "éxample.com",
    "-bad-.example",
    "192.0.2.1",
    "2001:db8::1",
    "ecdsa-p256",
    "ecdsa-p384",
    "rsa2048",
    "rsa4096",
    "ed25519",
    "ecdsa-p265",
    "root",
    "0",
    "\u{0}",
    "\u{7}\u{1b}[31m",
    "line\nbreak",
    "\u{202e}moc.elpmaxe",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "aGVsbG8gd29ybGQ",
    "aGVsbG8gd29ybGQ=",
    "not base64!",
];

const INTEGERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "384",
    "416",
    "0o600",
    "0o640",
    "0o644",
    "0o4600",
    "0o7777",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
];

const FLOATS: &[&str] = &[
    "0.33",
    "0.0",
    "-0.0",
    "1.0",
    "0.999999999",
    "1e-300",
    "1e308",
    "nan",
    "inf",
    "-inf",
];

/// A value an operator would write for `key`, when the grammar plays it straight.
fn good_value(rng: &mut Rng, key: &str) -> Option<String> {
    let number = rng.below(1000);
    let text = match key {
        "name" => format!("c{number}"),
        "domains" => {
            let names = [
                "example.com",
                "www.example.com",
                "a.example.org",
                "192.0.2.1",
                "2001:db8::1",
            ];
            let count = 1 + rng.below(3);
            let picked: BTreeSet<&str> = (0..count).map(|_| *rng.pick(&names)).collect();
            let items: Vec<String> = picked.into_iter().map(toml_str).collect();
            return Some(format!("[{}]", items.join(", ")));
        }
        "cert_path" => format!("/etc/tls/{number}/fullchain.pem"),
        "key_path" => format!("/etc/tls/{number}/privkey.pem"),
        "bundle_path" => format!("/etc/tls/{number}/bundle.pem"),
        "key_type" => {
            (*rng.pick(&["ecdsa-p256", "ecdsa-p384", "rsa2048", "rsa3072", "rsa4096"])).to_owned()
        }
        "key_mode" => return Some((*rng.pick(&["0o600", "0o640", "384"])).to_owned()),
        "ari" | "reuse_key" => return Some((*rng.pick(&["true", "false"])).to_owned()),
        "renew_before" if rng.one_in(3) => return Some("0.5".to_owned()),
        "renew_before" => (*rng.pick(&["1/3", "30d", "1/2"])).to_owned(),
        "warn_before" => (*rng.pick(&["30d", "21d"])).to_owned(),
        "critical_before" => (*rng.pick(&["7d", "3d"])).to_owned(),
        "timeout" | "reload_timeout" | "verify_timeout" | "wait" => {
            (*rng.pick(&["30s", "90s", "2m", "1h"])).to_owned()
        }
        "verify" => return Some("[\"127.0.0.1:443\"]".to_owned()),
        "contact" => return Some("[\"mailto:ops@example.com\"]".to_owned()),
        "eab" => return Some("{ kid = \"kid-1\", hmac_key = \"aGVsbG8gd29ybGQ\" }".to_owned()),
        "listen" => (*rng.pick(&["[::]:80", "127.0.0.1:9725", "0.0.0.0:443"])).to_owned(),
        "endpoint" => "api.example.com:443".to_owned(),
        "directory" | "staging_directory" => (*rng.pick(&[
            "letsencrypt",
            "letsencrypt-staging",
            "https://ca.example/directory",
        ]))
        .to_owned(),
        "webhook" => "https://hooks.example.com/evercert".to_owned(),
        "reload" => "systemctl reload nginx".to_owned(),
        "kid" => "kid-1".to_owned(),
        "hmac_key" => "aGVsbG8gd29ybGQ".to_owned(),
        "profile" => "tlsserver".to_owned(),
        "owner" | "group" => "root".to_owned(),
        "state_dir" | "webroot" | "hook" | "path" | "command" | "ca_bundle" => {
            format!("/srv/evercert/{key}/{number}")
        }
        _ => return None,
    };
    Some(toml_str(&text))
}

/// A random TOML value for `key`: of the kind the key wants, or deliberately not; when
/// `sane`, usually what an operator would write.
fn config_value(rng: &mut Rng, key: &str, depth: usize, sane: bool) -> String {
    if sane
        && !rng.one_in(40)
        && let Some(value) = good_value(rng, key)
    {
        return value;
    }
    let wrong_kind = rng.one_in(6);
    let kind = if wrong_kind {
        rng.below(7)
    } else if matches!(key, "domains" | "contact" | "verify") {
        5
    } else if matches!(key, "ari" | "reuse_key") {
        3
    } else if key == "key_mode" {
        1
    } else if key == "renew_before" && rng.one_in(3) {
        2
    } else if key == "eab" {
        6
    } else {
        0
    };
    match kind {
        0 => toml_str(rng.pick::<&str>(STRINGS)),
        1 => (*rng.pick(INTEGERS)).to_owned(),
        2 => (*rng.pick(FLOATS)).to_owned(),
        3 => (*rng.pick(&["true", "false"])).to_owned(),
        4 => (*rng.pick(&["1979-05-27T07:32:00Z", "1979-05-27", "07:32:00"])).to_owned(),
        5 if depth < 3 => {
            let count = rng.small(3);
            let items: Vec<String> = (0..count)
                .map(|_| {
                    if rng.one_in(10) {
                        config_value(rng, "", depth + 1, false)
                    } else {
                        toml_str(rng.pick::<&str>(STRINGS))
                    }
                })
                .collect();
            format!("[{}]", items.join(", "))
        }
        _ if depth < 3 => {
            let keys = ["kid", "hmac_key", "directory", "webroot", "x"];
            let count = rng.below(3);
            let items: Vec<String> = (0..count)
                .map(|_| {
                    let key = rng.pick(&keys);
                    format!("{key} = {}", config_value(rng, key, depth + 1, false))
                })
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
        _ => "\"\"".to_owned(),
    }
}

/// A misspelling of `key`, or a key from another table.
fn unknown_key(rng: &mut Rng, key: &str, all: &[&str]) -> String {
    let mut chars: Vec<char> = key.chars().collect();
    if chars.len() > 1 && rng.one_in(2) {
        let at = rng.below(chars.len() - 1);
        chars.swap(at, at + 1);
        chars.into_iter().collect()
    } else {
        (*rng.pick(all)).to_owned()
    }
}

/// Keys a table must have, and keys of which it takes exactly one.
const REQUIRED_KEYS: &[(&str, &[&str])] = &[
    ("certificate", &["name", "domains", "cert_path", "key_path"]),
    ("certificate.dns01", &["hook"]),
    ("certificate.tlsalpn01", &["listen"]),
    ("metrics", &["listen"]),
];
const EXCLUSIVE_KEYS: &[(&str, &[&str])] = &[
    ("certificate.http01", &["webroot", "listen"]),
    ("monitor", &["path", "endpoint"]),
];

/// The `key = value` lines of `table`; when `sane`, with its required keys and one of each
/// exclusive group.
fn config_table(rng: &mut Rng, grammar: &Grammar<'_>, table: &str, prefix: &str, out: &mut String) {
    let lookup = |list: &[(&str, &'static [&'static str])]| {
        list.iter()
            .find(|(name, _)| *name == table)
            .map_or(&[][..], |(_, keys)| *keys)
    };
    let required = lookup(REQUIRED_KEYS);
    let exclusive = lookup(EXCLUSIVE_KEYS);
    let chosen = (!exclusive.is_empty()).then(|| *rng.pick(exclusive));
    let Some(keys) = grammar.schema.get(table) else {
        return;
    };
    for key in keys {
        let sane = grammar.sane;
        let skip = if !sane {
            rng.one_in(3)
        } else if exclusive.contains(&key.as_str()) {
            Some(key.as_str()) != chosen
        } else {
            !required.contains(&key.as_str()) && rng.one_in(2)
        };
        if skip {
            continue;
        }
        let key = if rng.one_in(if sane { 200 } else { 25 }) {
            unknown_key(rng, key, &grammar.all_keys)
        } else {
            key.clone()
        };
        let line = format!("{prefix}{key} = {}\n", config_value(rng, &key, 0, sane));
        out.push_str(&line);
        if rng.one_in(if sane { 400 } else { 40 }) {
            out.push_str(&line);
        }
    }
}

/// What the configuration grammar writes from.
struct Grammar<'a> {
    schema: &'a BTreeMap<String, BTreeSet<String>>,
    all_keys: Vec<&'a str>,
    /// Play it straight (mostly valid documents) or not.
    sane: bool,
}

/// A random configuration: the tables and keys of the schema, in random order and style
/// (headers, inline tables, dotted keys), with values of the right kind or deliberately not.
/// Half the documents play it straight, so that the checks after parsing are reached.
fn config_document(rng: &mut Rng, schema: &BTreeMap<String, BTreeSet<String>>) -> String {
    let grammar = Grammar {
        schema,
        all_keys: schema.values().flatten().map(String::as_str).collect(),
        sane: rng.one_in(2),
    };
    let sane = grammar.sane;
    // Top-level keys, dotted keys and inline tables must come before the first header.
    let mut top = String::new();
    let mut out = String::new();
    config_table(rng, &grammar, "", "", &mut top);
    let mut tables = vec![
        "acme",
        "renewal",
        "alerts",
        "metrics",
        "certificate",
        "monitor",
    ];
    for index in (1..tables.len()).rev() {
        tables.swap(index, rng.below(index + 1));
    }
    for table in tables {
        if rng.one_in(3) {
            continue;
        }
        match table {
            "certificate" => {
                for _ in 0..rng.small(2) + 1 {
                    out.push_str("\n[[certificate]]\n");
                    config_table(rng, &grammar, "certificate", "", &mut out);
                    let challenges = ["http01", "dns01", "tlsalpn01"];
                    let count = if !sane && rng.one_in(6) {
                        rng.below(4)
                    } else {
                        1
                    };
                    for _ in 0..count {
                        let challenge = rng.pick(&challenges);
                        let name = format!("certificate.{challenge}");
                        if rng.one_in(4) {
                            config_table(rng, &grammar, &name, &format!("{challenge}."), &mut out);
                        } else {
                            out.push_str(&format!("[{name}]\n"));
                            config_table(rng, &grammar, &name, "", &mut out);
                        }
                    }
                }
            }
            "monitor" => {
                for _ in 0..rng.small(2) + 1 {
                    out.push_str("\n[[monitor]]\n");
                    config_table(rng, &grammar, "monitor", "", &mut out);
                }
            }
            table if rng.one_in(5) => {
                let mut inline = String::new();
                config_table(rng, &grammar, table, "", &mut inline);
                let items: Vec<&str> = inline.lines().collect();
                top.push_str(&format!("{table} = {{ {} }}\n", items.join(", ")));
            }
            table if rng.one_in(5) => {
                config_table(rng, &grammar, table, &format!("{table}."), &mut top);
            }
            table => {
                out.push_str(&format!("\n[{table}]\n"));
                config_table(rng, &grammar, table, "", &mut out);
            }
        }
    }
    top + &out
}

#[test]
fn fuzz_config_grammar() {
    let schema = config_schema(&valid_config_seeds());
    let valid = Arc::new(AtomicU64::new(0));
    let counter = valid.clone();
    let check: Check = Arc::new(move |bytes: &[u8]| check_config_counting(bytes, &counter));
    let mut generated = 0_u64;
    fuzz("config-grammar", check, |rng| {
        generated += 1;
        config_document(rng, &schema).into_bytes()
    });
    println!(
        "fuzz config-grammar: {} of {generated} generated configurations were valid",
        valid.load(Ordering::Relaxed)
    );
}

#[test]
fn fuzz_config_arbitrary_bytes() {
    fuzz_strategy(
        "config-bytes",
        proptest::collection::vec(any::<u8>(), 0..2048),
        config_check(),
    );
    fuzz_strategy(
        "config-tomlish",
        "[a-z_.\\[\\]={}\",#'\n 0-9:/*-]{0,600}",
        config_check(),
    );
}

/// Extremes a mutation loop rarely builds: huge values, deep nesting, many tables, many
/// errors. Each must finish within the watchdog's 2 s.
fn config_extremes() -> Vec<(String, Vec<u8>)> {
    let mib = 1 << 20;
    let certificate = |index: usize| {
        format!(
            "[[certificate]]\nname = \"c{index}\"\ndomains = [\"c{index}.example.com\"]\n\
             cert_path = \"/etc/tls/c{index}/fullchain.pem\"\nkey_path = \"/etc/tls/c{index}/privkey.pem\"\n\
             [certificate.http01]\nwebroot = \"/var/www/html\"\n"
        )
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "a 1 MiB string value",
            format!("state_dir = \"{}\"\n", "a".repeat(mib)),
        ),
        (
            "a 64 KiB unknown key",
            format!("{} = 1\n", "k".repeat(64 << 10)),
        ),
        ("a 1 MiB comment", format!("#{}\n", "x".repeat(mib))),
        ("a 1 MiB line of garbage", "\u{1}".repeat(mib)),
        (
            "10k nested arrays",
            format!("a = {}{}", "[".repeat(10_000), "]".repeat(10_000)),
        ),
        ("10k unclosed arrays", format!("a = {}", "[".repeat(10_000))),
        (
            "10k nested inline tables",
            format!("a = {}1{}", "{b=".repeat(10_000), "}".repeat(10_000)),
        ),
        (
            "a 10k-part dotted key",
            format!("{} = 1\n", vec!["a"; 10_000].join(".")),
        ),
        (
            "a 10k-part table header",
            format!("[{}]\n", vec!["a"; 10_000].join(".")),
        ),
        (
            "nesting inside [acme]",
            format!(
                "[acme]\ncontact = {}{}\n",
                "[".repeat(5_000),
                "]".repeat(5_000)
            ),
        ),
        (
            "a 100k-digit renew_before",
            format!("[renewal]\nrenew_before = {}\n", "9".repeat(100_000)),
        ),
        (
            "a 100k-digit fraction",
            format!("[renewal]\nrenew_before = \"1/{}\"\n", "9".repeat(100_000)),
        ),
        (
            "a 100k-digit duration",
            format!("[renewal]\nwarn_before = \"{}d\"\n", "9".repeat(100_000)),
        ),
        (
            "a duration of 50k parts",
            format!(
                "[renewal]\nwarn_before = \"{}\"\n",
                "2147483647d".repeat(50_000)
            ),
        ),
        (
            "10k domains",
            format!(
                "[[certificate]]\nname = \"a\"\ndomains = [{}]\n",
                (0..10_000)
                    .map(|i| format!("\"d{i}.example.com\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        (
            "10k copies of one domain",
            format!(
                "[[certificate]]\nname = \"a\"\ndomains = [{}]\n",
                vec!["\"d.example.com\""; 10_000].join(", ")
            ),
        ),
        (
            "1000 valid certificates",
            (0..1000).map(certificate).collect(),
        ),
        (
            "1000 certificates sharing one name",
            (0..1000).map(|_| certificate(0)).collect(),
        ),
        (
            "2000 empty certificate tables",
            "[[certificate]]\n".repeat(2_000),
        ),
        (
            "2000 unknown keys",
            (0..2000).map(|i| format!("k{i} = 1\n")).collect(),
        ),
        ("2000 lines of syntax errors", "=\n".repeat(2_000)),
        ("a NUL-filled file", "\0".repeat(mib)),
        (
            "CR line endings only",
            "state_dir = \"/x\"\r".repeat(10_000),
        ),
    ];
    cases
        .into_iter()
        .map(|(name, text)| (name.to_owned(), text.into_bytes()))
        .collect()
}

#[test]
fn config_extremes_finish_quickly() {
    run_cases("config-extremes", &config_check(), config_extremes());
}

/// Error reports must grow linearly with the file: a 16,000-line file of errors (the wrong
/// file passed with `-c`, a paste gone wrong) is answered at once, not after minutes.
#[test]
fn config_with_many_errors_is_reported_in_linear_time() {
    let cases = vec![
        (
            "16k lines of syntax errors".to_owned(),
            "=\n".repeat(16_000).into_bytes(),
        ),
        (
            "8k empty certificate tables (40k errors)".to_owned(),
            "[[certificate]]\n".repeat(8_000).into_bytes(),
        ),
        (
            "8k unknown keys".to_owned(),
            (0..8_000)
                .map(|i| format!("k{i} = 1\n"))
                .collect::<String>()
                .into_bytes(),
        ),
    ];
    run_cases("config-many-errors", &config_check(), cases);
}

#[test]
fn config_corpus_seeds_are_handled() {
    run_cases("config-corpus", &config_check(), corpus("config"));
}

// ---------------------------------------------------------------------------------------------
// Target 2: certificate files and keys.

/// Certificates and keys minted for this run: valid inputs to mutate.
struct Minted {
    /// PEM files a web server might be given: full chains, leaves, reversed chains, keys.
    pems: Vec<Vec<u8>>,
    /// DER certificates: leaves, intermediates and roots.
    ders: Vec<Vec<u8>>,
    /// PKCS#8 private keys, PEM.
    key_pems: Vec<Vec<u8>>,
    /// The key of the first leaf, for the key file next to a fuzzed certificate.
    leaf_key_pem: String,
}

fn minted() -> &'static Minted {
    static MINTED: OnceLock<Minted> = OnceLock::new();
    MINTED.get_or_init(|| {
        let (not_before, not_after) = days_left(60);
        let ca = TestCa::new();
        let root_only = TestCa::root_only();
        let leaves = [
            ca.leaf(
                &["fuzz.example", "www.fuzz.example", "192.0.2.7"],
                not_before,
                not_after,
                KeyType::EcdsaP256,
            ),
            ca.leaf(
                &["*.fuzz.example"],
                not_before,
                not_after,
                KeyType::EcdsaP384,
            ),
            root_only.leaf(
                &["rsa.fuzz.example", "2001:db8::7"],
                not_before,
                not_after,
                KeyType::Rsa2048,
            ),
        ];
        let mut pems = Vec::new();
        let mut ders = Vec::new();
        let mut key_pems = Vec::new();
        for leaf in &leaves {
            pems.push(leaf.fullchain_pem().into_bytes());
            pems.push(leaf.cert_pem.clone().into_bytes());
            if !leaf.chain_pem.is_empty() {
                pems.push(leaf.reversed_chain_pem().into_bytes());
            }
            pems.push(format!("{}{}", leaf.key_pem, leaf.fullchain_pem()).into_bytes());
            pems.push(leaf.fullchain_pem().replace('\n', "\r\n").into_bytes());
            key_pems.push(leaf.key_pem.clone().into_bytes());
            ders.push(leaf.der.clone());
            for der in CertificateDer::pem_slice_iter(leaf.fullchain_pem().as_bytes()) {
                ders.push(der.unwrap().to_vec());
            }
        }
        for der in CertificateDer::pem_slice_iter(ca.root_pem().as_bytes()) {
            ders.push(der.unwrap().to_vec());
        }
        pems.push(
            format!(
                "subject=CN = fuzz.example\nissuer=CN = {}\n{}",
                ca.issuer_cn(),
                leaves[0].fullchain_pem()
            )
            .into_bytes(),
        );
        pems.push(
            format!("{}{}", leaves[0].fullchain_pem(), leaves[1].fullchain_pem()).into_bytes(),
        );
        Minted {
            pems,
            ders,
            key_pems,
            leaf_key_pem: leaves[0].key_pem.clone(),
        }
    })
}

/// PEM around `der` with `label`, wrapped at 64 columns like every PEM writer, or not.
fn pem_of(label: &str, der: &[u8], wrap: bool) -> Vec<u8> {
    let body = STANDARD.encode(der);
    let body = if wrap {
        body.as_bytes()
            .chunks(64)
            .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        body
    };
    format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n").into_bytes()
}

const PEM_LABELS: &[&str] = &[
    "CERTIFICATE",
    "TRUSTED CERTIFICATE",
    "X509 CERTIFICATE",
    "PRIVATE KEY",
    "EC PRIVATE KEY",
    "RSA PRIVATE KEY",
    "X509 CRL",
    "CERTIFICATE REQUEST",
    "",
];

fn pem_dictionary() -> Vec<Vec<u8>> {
    let mut words = tokens(&[
        "-----BEGIN CERTIFICATE-----\n",
        "-----END CERTIFICATE-----\n",
        "-----BEGIN ",
        "-----END ",
        "-----",
        "-----\n",
        "\n",
        "\r\n",
        " ",
        "\t",
        "=",
        "==",
        "A",
        "MII",
        "MIIB",
        "////",
        "+/+/",
        "\0",
        "\u{feff}",
    ]);
    words.extend(PEM_LABELS.iter().map(|label| label.as_bytes().to_vec()));
    words
}

/// DER pieces: tags, long and indefinite lengths, the OIDs evercert reads, edge-case times.
fn der_dictionary() -> Vec<Vec<u8>> {
    let pieces: &[&[u8]] = &[
        &[0x30],
        &[0x31],
        &[0x02],
        &[0x03],
        &[0x04],
        &[0x05, 0x00],
        &[0x06],
        &[0x0c],
        &[0x13],
        &[0x16],
        &[0x80],
        &[0x81, 0xff],
        &[0x82, 0xff, 0xff],
        &[0x83, 0xff, 0xff, 0xff],
        &[0x84, 0xff, 0xff, 0xff, 0xff],
        &[0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        &[0x00, 0x00],
        &[0xa0],
        &[0xa3],
        &[0x87, 0x04, 192, 0, 2, 1],
        &[0x87, 0x05, 192, 0, 2, 1, 1],
        &[0x87, 0x00],
        &[0x82, 0x00],
        &[0x06, 0x03, 0x55, 0x1d, 0x11],
        &[0x06, 0x03, 0x55, 0x1d, 0x23],
        &[0x06, 0x03, 0x55, 0x1d, 0x13],
        &[0x06, 0x03, 0x55, 0x04, 0x03],
        &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01],
        &[
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
        ],
        &[
            0x06, 0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
        ],
        b"\x17\x0d991231235959Z",
        b"\x17\x0d491231235959Z",
        b"\x17\x0d500101000000Z",
        b"\x17\x0d000229000000Z",
        b"\x17\x0d991332256161Z",
        b"\x18\x0f99991231235959Z",
        b"\x18\x0f00000101000000Z",
        b"\x18\x1320241231235959.999Z",
        b"\x18\x0f20240230000000Z",
        b"\x18\x1320240101000000+0100",
    ];
    pieces.iter().map(|piece| piece.to_vec()).collect()
}

const MAX_PEM: usize = 256 * 1024;

/// A certificate file to fuzz: mutated PEM text, mutated DER wrapped in PEM (to get past the
/// base64 and reach the X.509 parser), or mutated raw DER.
fn cert_file_input(
    rng: &mut Rng,
    minted: &Minted,
    pem_words: &[Vec<u8>],
    der_words: &[Vec<u8>],
) -> Vec<u8> {
    match rng.below(10) {
        0..=4 => {
            let mut input = rng.pick(&minted.pems).clone();
            mutate(rng, &mut input, pem_words, &minted.pems, MAX_PEM);
            input
        }
        5..=8 => {
            let mut der = rng.pick(&minted.ders).clone();
            mutate(rng, &mut der, der_words, &minted.ders, MAX_PEM);
            let mut input = pem_of(
                if rng.one_in(8) {
                    rng.pick::<&str>(PEM_LABELS)
                } else {
                    "CERTIFICATE"
                },
                &der,
                !rng.one_in(8),
            );
            // The mutated certificate first, or in the middle of a valid chain.
            if rng.one_in(3) {
                let mut chain = rng.pick(&minted.pems).clone();
                let at = if rng.one_in(2) { 0 } else { chain.len() };
                chain.splice(at..at, input);
                input = chain;
            }
            input
        }
        _ => {
            let mut der = rng.pick(&minted.ders).clone();
            mutate(rng, &mut der, der_words, &minted.ders, MAX_PEM);
            der
        }
    }
}

/// A configured certificate whose files the check points at fuzzed bytes.
fn cert_settings(dir: &Path) -> CertificateSettings {
    let text = format!(
        "[[certificate]]\nname = \"fuzz\"\n\
         domains = [\"fuzz.example\", \"*.fuzz.example\", \"192.0.2.7\"]\n\
         cert_path = \"{0}/fullchain.pem\"\nkey_path = \"{0}/privkey.pem\"\n\
         [certificate.dns01]\nhook = \"/bin/true\"\n",
        dir.display()
    );
    let config = config::parse(&text, &dir.join("evercert.toml")).unwrap();
    config.certificates[0].clone()
}

/// What `status` and `check` do with any bytes as a certificate file: a certificate with
/// facts, or an error naming the file; an entry for the table, the check line and the JSON.
fn cert_file_check(dir: &Path) -> Check {
    let template = cert_settings(dir);
    let key_path = dir.join("privkey.pem");
    fs::write(&key_path, &minted().leaf_key_pem).unwrap();
    let counter = AtomicU64::new(0);
    let dir = dir.to_owned();
    Arc::new(move |bytes: &[u8]| {
        let path = dir.join(format!("{}.pem", counter.fetch_add(1, Ordering::Relaxed)));
        fs::write(&path, bytes).map_err(|err| format!("cannot write the case: {err}"))?;
        let now = OffsetDateTime::now_utc();
        let thresholds = Thresholds::default();
        let result = inventory::read_cert_file(&path);
        // Past the size cap every certificate read refuses the file, saying so: a 2 GB file
        // at a certificate's path is an error, not an exhausted memory.
        let oversized = bytes.len() as u64 > evercert::fsread::SMALL_FILE_MAX;
        let outcome = match &result {
            Ok(_) if oversized => Err("a file over the size cap was read".to_owned()),
            Err(err @ inventory::CertFileError::Io { .. }) if oversized => {
                if err.to_string().contains("more than the 1 MiB") {
                    Ok(())
                } else {
                    Err(format!(
                        "a file over the size cap was refused without saying why: {err}"
                    ))
                }
            }
            Ok(file) => {
                let names = file.leaf.names();
                let _ = file.leaf.uncovered(&template.domains);
                if file.leaf.public_key.is_empty()
                    && names.is_empty()
                    && file.leaf.serial.is_empty()
                {
                    Err("a certificate with no key, no names and no serial".to_owned())
                } else {
                    Ok(())
                }
            }
            Err(
                err @ (inventory::CertFileError::Missing { .. }
                | inventory::CertFileError::PermissionDenied { .. }
                | inventory::CertFileError::Io { .. }),
            ) => Err(format!("a readable file was reported as unreadable: {err}")),
            Err(err @ inventory::CertFileError::Empty { .. })
                if !bytes.iter().all(u8::is_ascii_whitespace) =>
            {
                Err(format!("a file with content was reported as empty: {err}"))
            }
            Err(err) if !err.to_string().contains(&path.display().to_string()) => {
                Err(format!("the error does not name the file: {err}"))
            }
            Err(_) => Ok(()),
        };
        let monitored = report::file_entry("fuzz".into(), &path, result, thresholds, now);
        let mut cert = template.clone();
        cert.cert_path = path.clone();
        let status =
            inventory::inspect_managed(&cert, RenewBefore::Fraction(1.0 / 3.0), thresholds, now);
        let managed = report::managed_entry(&status, now);
        let entries = [monitored, managed];
        let _ = report::render_table(&entries, now);
        for entry in &entries {
            let _ = report::render_check_line(entry, now);
        }
        let _ = report::check_exit_code(&entries);
        serde_json::to_string(&entries)
            .map_err(|err| format!("the JSON of status/check cannot be written: {err}"))?;
        let _ = fs::remove_file(&path);
        outcome
    })
}

#[test]
fn fuzz_certificate_files() {
    let minted = minted();
    let (pem_words, der_words) = (pem_dictionary(), der_dictionary());
    let dir = tempfile::tempdir().unwrap();
    fuzz("pem", cert_file_check(dir.path()), |rng| {
        cert_file_input(rng, minted, &pem_words, &der_words)
    });
}

/// The chain reader on DER as a TLS server sends it: the mutated certificate alone, as the
/// leaf of a valid chain, and as the issuer of a valid leaf.
fn check_der(bytes: &[u8]) -> Result<(), String> {
    let minted = minted();
    let fuzzed = CertificateDer::from(bytes.to_vec());
    let valid = CertificateDer::from(minted.ders[0].clone());
    let issuer = CertificateDer::from(minted.ders[2].clone());
    for chain in [
        vec![fuzzed.clone()],
        vec![fuzzed.clone(), issuer],
        vec![valid, fuzzed.clone()],
        vec![fuzzed.clone(), fuzzed.clone(), fuzzed],
    ] {
        if let Ok(file) = inventory::facts_of_chain(&chain) {
            if file.chain.len() + 1 != chain.len() {
                return Err(format!(
                    "{} certificates, {} in the chain",
                    chain.len(),
                    file.chain.len()
                ));
            }
            let _ = file.leaf.names();
        }
    }
    Ok(())
}

#[test]
fn fuzz_der_chains() {
    let minted = minted();
    let der_words = der_dictionary();
    fuzz("der", Arc::new(check_der), |rng| {
        let mut der = rng.pick(&minted.ders).clone();
        mutate(rng, &mut der, &der_words, &minted.ders, MAX_PEM);
        der
    });
}

fn check_key(bytes: &[u8]) -> Result<(), String> {
    match inventory::public_key_of_pem(bytes) {
        Some(key) if key.is_empty() => Err("an empty public key".into()),
        _ => Ok(()),
    }
}

#[test]
fn fuzz_private_keys() {
    let minted = minted();
    let der_words = der_dictionary();
    let mut pem_words = pem_dictionary();
    pem_words.extend(tokens(&[
        "-----BEGIN PRIVATE KEY-----\n",
        "-----END PRIVATE KEY-----\n",
    ]));
    let key_ders: Vec<Vec<u8>> = minted
        .key_pems
        .iter()
        .filter_map(|pem| rustls_pki_types::PrivateKeyDer::from_pem_slice(pem).ok())
        .map(|key| key.secret_der().to_vec())
        .collect();
    fuzz("key", Arc::new(check_key), |rng| {
        if rng.one_in(2) {
            let mut input = rng.pick(&minted.key_pems).clone();
            mutate(rng, &mut input, &pem_words, &minted.key_pems, MAX_PEM);
            input
        } else {
            let mut der = rng.pick(&key_ders).clone();
            mutate(rng, &mut der, &der_words, &key_ders, MAX_PEM);
            let label = rng.pick(&[
                "PRIVATE KEY",
                "EC PRIVATE KEY",
                "RSA PRIVATE KEY",
                "CERTIFICATE",
            ]);
            pem_of(label, &der, true)
        }
    });
}

/// Extremes for the certificate reader: sizes and counts that mutation does not reach.
fn pem_extremes() -> Vec<(String, Vec<u8>)> {
    let minted = minted();
    let fullchain = String::from_utf8(minted.pems[0].clone()).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "a 4 MiB base64 line",
            format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                "A".repeat(4 << 20)
            )
            .into_bytes(),
        ),
        (
            "a 4 MiB PEM body",
            pem_of("CERTIFICATE", &vec![0x30; 3 << 20], true),
        ),
        (
            "300 copies of a full chain",
            fullchain.repeat(300).into_bytes(),
        ),
        (
            "20k empty sections",
            "-----BEGIN X-----\n-----END X-----\n"
                .repeat(20_000)
                .into_bytes(),
        ),
        (
            "20k BEGIN lines without END",
            "-----BEGIN CERTIFICATE-----\n".repeat(20_000).into_bytes(),
        ),
        (
            "a 4 MiB file of whitespace",
            " \n".repeat(2 << 20).into_bytes(),
        ),
        ("a 4 MiB file of garbage", vec![0x30; 4 << 20]),
        (
            "a DER certificate claiming 4 GiB",
            [&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff][..], &[0; 64]].concat(),
        ),
        (
            "1000 nested SEQUENCEs",
            [[0x30_u8, 0x80].repeat(1000), vec![0; 2000]].concat(),
        ),
    ];
    cases
        .into_iter()
        .map(|(name, bytes)| (name.to_owned(), bytes))
        .collect()
}

#[test]
fn pem_extremes_finish_quickly() {
    let dir = tempfile::tempdir().unwrap();
    run_cases("pem-extremes", &cert_file_check(dir.path()), pem_extremes());
}

#[test]
fn pem_corpus_seeds_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = corpus("pem");
    run_cases("pem-corpus", &cert_file_check(dir.path()), seeds.clone());
    run_cases("key-corpus", &(Arc::new(check_key) as Check), seeds.clone());
    run_cases("der-corpus", &(Arc::new(check_der) as Check), seeds);
}

// ---------------------------------------------------------------------------------------------
// Target 3: what the CA sends back.

/// A problem document and the other JSON evercert reads from a CA (orders, authorizations,
/// ARI windows) deserialize or fail, and what deserializes can be printed.
fn check_problem(bytes: &[u8]) -> Result<(), String> {
    if let Ok(problem) = serde_json::from_slice::<instant_acme::Problem>(bytes) {
        let shown = problem.to_string();
        if let Some(detail) = &problem.detail
            && !shown.contains(detail.as_str())
        {
            return Err(format!(
                "the problem's detail is lost when printed: {shown}"
            ));
        }
        let _ = format!("{problem:?}");
        let _ = instant_acme::Error::Api(problem).to_string();
    }
    if let Ok(order) = serde_json::from_slice::<instant_acme::OrderState>(bytes) {
        let _ = format!("{order:?}");
    }
    if let Ok(authorization) = serde_json::from_slice::<instant_acme::AuthorizationState>(bytes) {
        let _ = format!("{authorization:?}");
    }
    if let Ok(info) = serde_json::from_slice::<instant_acme::RenewalInfo>(bytes) {
        let window = info.suggested_window;
        let now = OffsetDateTime::now_utc();
        let choice = evercert::schedule::ari_choice(window.start, window.end, now, 0.5);
        if choice < now {
            return Err(format!("ARI choice {choice} is in the past"));
        }
    }
    Ok(())
}

fn json_dictionary() -> Vec<Vec<u8>> {
    tokens(&[
        "{",
        "}",
        "[",
        "]",
        "\"",
        ":",
        ",",
        "null",
        "true",
        "false",
        "0",
        "-0",
        "1e999",
        "-1",
        "65535",
        "65536",
        "429",
        "503",
        "\"type\"",
        "\"detail\"",
        "\"status\"",
        "\"subproblems\"",
        "\"identifier\"",
        "\"value\"",
        "\"dns\"",
        "\"ip\"",
        "{\"type\":\"dns\",\"value\":\"x\"}",
        "\"urn:ietf:params:acme:error:rateLimited\"",
        "\"urn:ietf:params:acme:error:badNonce\"",
        "\"urn:ietf:params:acme:error:\"",
        "\"suggestedWindow\"",
        "\"start\"",
        "\"end\"",
        "\"9999-12-31T23:59:59Z\"",
        "\"0000-01-01T00:00:00Z\"",
        "\"2025-01-01T00:00:00+23:59\"",
        "\"2025-02-30T00:00:00Z\"",
        "\"2025-01-01T00:00:60Z\"",
        "\"\\ud800\"",
        "\"\\u0000\"",
        "\"\\\"\"",
        "\\",
        "\"status\":\"valid\"",
        "\"challenges\"",
        "\"authorizations\"",
        "\"finalize\"",
        "\"certificate\"",
        "\"error\"",
        "[[[[[[[[",
        "]]]]]]]]",
    ])
}

#[test]
fn fuzz_ca_problem_documents() {
    let seeds: Vec<Vec<u8>> = corpus("problem")
        .into_iter()
        .map(|(_, bytes)| bytes)
        .collect();
    let dictionary = json_dictionary();
    fuzz("problem", Arc::new(check_problem), |rng| {
        let mut input = rng.pick(&seeds).clone();
        mutate(rng, &mut input, &dictionary, &seeds, 64 * 1024);
        input
    });
}

#[test]
fn problem_corpus_seeds_are_handled() {
    run_cases(
        "problem-corpus",
        &(Arc::new(check_problem) as Check),
        corpus("problem"),
    );
}

/// A Retry-After header is either ignored or a time evercert can work with. The answer is
/// turned into an `OffsetDateTime` (renew.rs records it, acme.rs prints it) by
/// `OffsetDateTime::from`, which panics beyond the year 9999: so "representable" is the
/// property, checked without panicking.
fn check_retry_after(bytes: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(bytes);
    let Some(when) = evercert::acme::parse_retry_after(&text) else {
        return Ok(());
    };
    let representable = match when.duration_since(UNIX_EPOCH) {
        Ok(after) => time::Duration::try_from(after)
            .ok()
            .and_then(|after| OffsetDateTime::UNIX_EPOCH.checked_add(after)),
        Err(before) => time::Duration::try_from(before.duration())
            .ok()
            .and_then(|before| OffsetDateTime::UNIX_EPOCH.checked_sub(before)),
    };
    match representable {
        Some(_) => Ok(()),
        None => Err(format!(
            "Retry-After {text:?} gives {when:?}, past what OffsetDateTime holds: \
             OffsetDateTime::from (renew.rs, acme.rs) panics on it"
        )),
    }
}

#[test]
fn fuzz_retry_after() {
    let check: Check = Arc::new(check_retry_after);
    fuzz_strategy("retry-after-any", any::<String>(), check.clone());
    fuzz_strategy(
        "retry-after-seconds",
        "[ \t]{0,2}[0-9]{1,24}[ \t]{0,2}",
        check.clone(),
    );
    fuzz_strategy(
        "retry-after-dates",
        "(Mon|Tue|Wed|Thu|Fri|Sat|Sun|Xyz), [0-9]{1,3} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{1,5} [0-9]{2}:[0-9]{2}:[0-9]{2} (GMT|UTC|)",
        check.clone(),
    );
    fuzz_strategy(
        "retry-after-old-dates",
        "(Sunday, [0-9]{2}-Nov-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT|Sun Nov [ 0-9][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2} [0-9]{4})",
        check,
    );
}

#[test]
fn retry_after_corpus_seeds_are_handled() {
    run_cases(
        "retry-after-corpus",
        &(Arc::new(check_retry_after) as Check),
        corpus("retry-after"),
    );
}

// ---------------------------------------------------------------------------------------------
// The harness itself.

#[test]
fn the_harness_catches_panics_violations_and_hangs() {
    let check: Check = Arc::new(|input: &[u8]| match input {
        b"panic" => panic!("boom"),
        b"hang" => {
            // Computing past the CPU limit, then giving up, so no thread spins forever.
            let started = thread_cpu_time();
            while thread_cpu_time() - started < CASE_LIMIT + Duration::from_millis(200) {
                std::hint::spin_loop();
            }
            Ok(())
        }
        b"stuck" => {
            std::thread::sleep(Duration::from_secs(3));
            Ok(())
        }
        _ if input.windows(3).any(|window| window == b"bad") => Err("bad input".into()),
        _ => Ok(()),
    });
    let mut worker = Worker::new(check);
    assert!(matches!(worker.run(b"fine"), Verdict::Pass));
    assert!(matches!(worker.run(b"panic"), Verdict::Panic(message) if message == "boom"));
    assert!(matches!(worker.run(b"bad"), Verdict::Violation(_)));
    assert!(matches!(worker.run(b"hang"), Verdict::Hang));
    assert!(matches!(worker.run(b"fine"), Verdict::Pass));
    // Blocked rather than computing: caught by the wall-time limit (short here).
    worker.wall_limit = Duration::from_secs(1);
    assert!(matches!(worker.run(b"stuck"), Verdict::Hang));
    assert!(matches!(worker.run(b"fine"), Verdict::Pass));
    // Shrinking keeps a failing core.
    assert_eq!(shrink(&mut worker, b"xxxxxxxxbadxxxxxxx".to_vec()), b"bad");
    let mut rng = Rng(7);
    let mut input = b"[acme]\ndirectory = \"letsencrypt\"\n".to_vec();
    for _ in 0..1000 {
        mutate(
            &mut rng,
            &mut input,
            &tokens(&["[[", "="]),
            &[b"x".to_vec()],
            4096,
        );
        assert!(input.len() <= 4096);
    }
}
