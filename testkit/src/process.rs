//! A process a test starts (mostly `evercert run` or `evercert renew`): its output collected
//! as it comes, and killed and reaped when the guard is dropped, so a failing assertion never
//! leaves an agent running into the next test.

use std::io::{BufRead, BufReader, PipeReader, PipeWriter, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use super::setup::Setup;

/// Where the process's output goes, and so what [`Running::log`] reads.
pub enum Capture {
    /// Standard error, line by line; standard output to /dev/null.
    Stderr,
    /// Standard error from a pipe the caller made (to know its device and inode, as
    /// `JOURNAL_STREAM` names them); standard output to /dev/null.
    StderrPipe(PipeReader, PipeWriter),
    /// Both streams, line by line, interleaved as they come.
    StdoutAndStderr,
    /// Both streams appended to this file, read back on each [`Running::log`].
    File(PathBuf),
}

/// A running child process, killed and reaped when dropped.
pub struct Running {
    pub child: Child,
    /// The lines collected so far, each ending in `\n` (empty with [`Capture::File`]).
    pub log: Arc<Mutex<String>>,
    file: Option<PathBuf>,
    readers: Vec<JoinHandle<()>>,
}

impl Running {
    /// `evercert run` in `setup`'s directory, logging at `AGENT_TEST_LOG` (default info).
    pub fn start(setup: &Setup) -> Self {
        Self::spawn(setup.command(&["run"]))
    }

    /// Starts `command` (an `evercert run`) logging at `AGENT_TEST_LOG` (default info),
    /// collecting its standard error.
    pub fn spawn(command: Command) -> Self {
        Self::spawn_with_stderr(
            command,
            std::io::pipe().expect("a pipe for the agent's log"),
        )
    }

    /// Like [`Running::spawn`], with standard error on a pipe the caller made.
    pub fn spawn_with_stderr(
        mut command: Command,
        (reader, writer): (PipeReader, PipeWriter),
    ) -> Self {
        command.env(
            "EVERCERT_LOG",
            std::env::var("AGENT_TEST_LOG").unwrap_or_else(|_| "info".into()),
        );
        Self::capture(command, Capture::StderrPipe(reader, writer))
    }

    /// Starts `command` as it is (environment and arguments untouched), its output going
    /// where `capture` says.
    pub fn capture(mut command: Command, capture: Capture) -> Self {
        let mut file = None;
        let mut sources: Vec<Box<dyn Read + Send>> = Vec::new();
        match capture {
            Capture::Stderr => {
                command.stdout(Stdio::null()).stderr(Stdio::piped());
            }
            Capture::StderrPipe(reader, writer) => {
                command.stdout(Stdio::null()).stderr(writer);
                sources.push(Box::new(reader));
            }
            Capture::StdoutAndStderr => {
                command.stdout(Stdio::piped()).stderr(Stdio::piped());
            }
            Capture::File(path) => {
                let log = std::fs::File::create(&path).expect("create the process's log file");
                command
                    .stdout(
                        log.try_clone()
                            .expect("a second descriptor of the log file"),
                    )
                    .stderr(log);
                file = Some(path);
            }
        }
        let mut child = command.spawn().expect("start the test's child process");
        // The command holds the write end of a pipe the caller made: without dropping it the
        // reader would never see the end of the output.
        drop(command);
        if let Some(stdout) = child.stdout.take() {
            sources.push(Box::new(stdout));
        }
        if let Some(stderr) = child.stderr.take() {
            sources.push(Box::new(stderr));
        }
        let log = Arc::new(Mutex::new(String::new()));
        let readers = sources
            .into_iter()
            .map(|source| {
                let sink = log.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(source).lines().map_while(Result::ok) {
                        let mut log = sink.lock().unwrap();
                        log.push_str(&line);
                        log.push('\n');
                    }
                })
            })
            .collect();
        Self {
            child,
            log,
            file,
            readers,
        }
    }

    /// Everything it printed so far.
    pub fn log(&self) -> String {
        match &self.file {
            Some(path) => std::fs::read_to_string(path).unwrap_or_default(),
            None => self.log.lock().unwrap().clone(),
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32).expect("a child's pid is positive")
    }

    pub fn signal(&self, signal: Signal) {
        rustix::process::kill_process(self.pid(), signal).unwrap();
    }

    /// Waits up to `limit` for the exit, then for the rest of its output; `None` (and still
    /// running) past `limit`.
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                for reader in self.readers.drain(..) {
                    reader.join().unwrap();
                }
                return Some(status.code().unwrap_or(-1));
            }
            if started.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and returns the exit code and how long it took. Does not wait for the
    /// rest of the output: a hook's child may still hold the pipe.
    pub fn stop(mut self) -> (i32, Duration) {
        let started = Instant::now();
        self.signal(Signal::TERM);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code().unwrap_or(-1), started.elapsed());
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the agent did not stop on SIGTERM; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
