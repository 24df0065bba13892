//! Running operators' commands: the reload hook and the dns-01 hook.
//!
//! Commands run through `sh -c` in their own process group, so that a timeout kills the whole
//! tree (a hung `systemctl reload` would otherwise keep a renewal waiting forever). Output is
//! captured; its tail goes into the error an operator reads.
//!
//! A hook cannot flood evercert: only the last [`KEEP_BYTES`] of each stream are kept (the
//! rest is read and dropped, so the hook never blocks on a full pipe), and reading stops
//! [`READ_GRACE`] after the hook exits or is killed. A background process the hook leaves
//! behind with our pipe as its output (`cmd &` without a redirection) therefore neither
//! keeps a reader alive nor grows memory; once the pipe is closed its writes fail (EPIPE,
//! SIGPIPE), so a daemon started from a hook must redirect its output.

use std::process::Stdio;
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process_group};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// How long a dns-01 hook may take for one record.
pub const DNS_HOOK_TIMEOUT: Duration = Duration::from_secs(120);
/// How much of a failed command's output is kept for the message.
const TAIL_BYTES: usize = 2048;
/// How much of each stream (stdout, stderr) is kept while reading: the last 32 KiB.
pub const KEEP_BYTES: usize = 32 * 1024;
/// How long output is still read after the hook exited (or was killed): enough for what it
/// wrote just before exiting, short enough that a leftover background writer is cut off.
pub const READ_GRACE: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("`{command}` could not be started: {message}")]
    Spawn { command: String, message: String },
    #[error("`{command}` did not finish within {seconds} s and was killed{}", tail_suffix(.output))]
    Timeout {
        command: String,
        seconds: u64,
        output: String,
    },
    #[error("`{command}` exited with {status}{}", tail_suffix(.output))]
    Failed {
        command: String,
        status: String,
        output: String,
    },
}

fn tail_suffix(output: &str) -> String {
    let output = output.trim();
    if output.is_empty() {
        String::new()
    } else {
        format!("; its output ended with: {output}")
    }
}

/// Runs `command` through `sh -c` with `args` as `$1…` and `env`, killing it (and its
/// children) after `timeout`. Returns the combined output.
pub async fn run(
    command: &str,
    args: &[&str],
    env: &[(&str, String)],
    timeout: Duration,
) -> Result<String, HookError> {
    run_with_input(command, args, env, None, timeout).await
}

/// Like [`run`], with `input` written to the command's standard input (alert JSON).
pub async fn run_with_input(
    command: &str,
    args: &[&str],
    env: &[(&str, String)],
    input: Option<&[u8]>,
    timeout: Duration,
) -> Result<String, HookError> {
    let mut process = Command::new("sh");
    process
        .arg("-c")
        .arg(command)
        .arg("evercert-hook")
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for (key, value) in env {
        process.env(key, value);
    }
    let mut child = process.spawn().map_err(|err| HookError::Spawn {
        command: command.to_owned(),
        message: err.to_string(),
    })?;
    let group = child.id().and_then(|id| Pid::from_raw(id as i32));
    // If this future is dropped while the hook runs (the agent stops mid-renewal), the whole
    // group goes, not only `sh`: `kill_on_drop` alone would leave its children running.
    let mut reaper = GroupReaper(group);
    let writer = match (input, child.stdin.take()) {
        (Some(input), Some(mut stdin)) => {
            let input = input.to_vec();
            // A command that does not read its input must not block us: write in a task,
            // ended with the readers.
            Some(tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = stdin.write_all(&input).await;
            }))
        }
        _ => None,
    };
    // Output is read by tasks of its own: a hook that starts a daemon which keeps the pipe
    // open must not make us wait for that daemon, only for the hook itself.
    let mut readers: Vec<_> = [
        child.stdout.take().map(reader),
        child.stderr.take().map(reader),
    ]
    .into_iter()
    .flatten()
    .collect();
    let status = tokio::time::timeout(timeout, child.wait()).await;
    // The hook ended (or is killed just below): what it left running is its own business.
    reaper.0 = None;
    if status.is_err()
        && let Some(group) = group
    {
        // Kill the whole group first, so that the pipes close and the output can be read.
        let _ = kill_process_group(group, Signal::KILL);
    }
    let grace = tokio::time::Instant::now() + READ_GRACE;
    let mut output = Vec::new();
    for task in &mut readers {
        if let Ok(Ok(bytes)) = tokio::time::timeout_at(grace, &mut *task).await {
            output.extend_from_slice(&bytes);
        }
        // A reader still running is held up by a process outside the hook (a background
        // child, or one that left the group): stop it, closing our end of the pipe.
        task.abort();
    }
    if let Some(writer) = writer {
        writer.abort();
    }
    let output = tail(&output);
    match status {
        Ok(Ok(status)) if status.success() => Ok(output),
        Ok(Ok(status)) => Err(HookError::Failed {
            command: command.to_owned(),
            status: status.to_string(),
            output,
        }),
        Ok(Err(err)) => Err(HookError::Spawn {
            command: command.to_owned(),
            message: err.to_string(),
        }),
        Err(_) => Err(HookError::Timeout {
            command: command.to_owned(),
            seconds: timeout.as_secs(),
            output,
        }),
    }
}

/// Reads `pipe` to its end, keeping only the last [`KEEP_BYTES`].
/// Kills a hook's process group when dropped while armed.
struct GroupReaper(Option<Pid>);

impl Drop for GroupReaper {
    fn drop(&mut self) {
        if let Some(group) = self.0.take() {
            let _ = kill_process_group(group, Signal::KILL);
        }
    }
}

fn reader(
    mut pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> tokio::task::JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let mut kept = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match pipe.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(read) => keep_last(&mut kept, &chunk[..read]),
            }
        }
        kept.drain(..kept.len().saturating_sub(KEEP_BYTES));
        kept
    })
}

/// Appends `bytes` to `kept`, then trims it to its last [`KEEP_BYTES`] once it has grown to
/// twice that (trimming on every read would move the buffer for each chunk).
fn keep_last(kept: &mut Vec<u8>, bytes: &[u8]) {
    let bytes = &bytes[bytes.len().saturating_sub(KEEP_BYTES)..];
    kept.extend_from_slice(bytes);
    if kept.len() >= 2 * KEEP_BYTES {
        kept.drain(..kept.len() - KEEP_BYTES);
    }
}

fn tail(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    let text = text.trim_end();
    let start = text.len().saturating_sub(TAIL_BYTES);
    let start = (start..text.len())
        .find(|&index| text.is_char_boundary(index))
        .unwrap_or(text.len());
    text[start..].to_owned()
}

/// Calls the dns-01 hook as `hook present|cleanup DOMAIN RECORD_NAME VALUE`.
pub async fn run_dns_hook(
    hook: &str,
    action: &str,
    domain: &str,
    record: &str,
    value: &str,
) -> Result<(), HookError> {
    let script = format!("{hook} \"$@\"");
    run(
        &script,
        &[action, domain, record, value],
        &[],
        DNS_HOOK_TIMEOUT,
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_and_exit_status_are_reported() {
        let ok = run(
            "echo hello; echo oops >&2",
            &[],
            &[],
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(ok.unwrap(), "hello\noops");
        let failed = run("echo broken >&2; exit 3", &[], &[], Duration::from_secs(5))
            .await
            .unwrap_err()
            .to_string();
        assert!(failed.contains("exit status: 3"), "{failed}");
        assert!(failed.contains("broken"), "{failed}");
    }

    #[tokio::test]
    async fn a_hung_command_and_its_children_are_killed() {
        let marker = tempfile::NamedTempFile::new().unwrap();
        let path = marker.path().display().to_string();
        let started = std::time::Instant::now();
        let err = run(
            "(sleep 1; echo late > \"$1\") & sleep 30",
            &[&path],
            &[],
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, HookError::Timeout { .. }), "{err}");
        // Far below the 30 s the command wanted: it was killed, not waited for.
        assert!(started.elapsed() < Duration::from_secs(10));
        // The background child was in the same group and died with it.
        tokio::time::sleep(Duration::from_millis(1300)).await;
        assert_eq!(std::fs::read_to_string(marker.path()).unwrap(), "");
    }

    #[test]
    fn only_the_last_bytes_are_kept() {
        let mut kept = Vec::new();
        for round in 0..1000u32 {
            keep_last(&mut kept, &round.to_be_bytes().repeat(100));
            assert!(kept.len() < 2 * KEEP_BYTES);
        }
        assert!(kept.ends_with(&999u32.to_be_bytes().repeat(100)));
        keep_last(&mut kept, &vec![7; 3 * KEEP_BYTES]);
        assert!(kept.len() < 2 * KEEP_BYTES);
        assert!(kept.ends_with(&[7; KEEP_BYTES]));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_output_keeps_only_its_tail() {
        // 64 MiB on stdout, then the line an operator needs, on stderr.
        let err = run(
            "head -c 67108864 /dev/zero | tr '\\0' x; echo; echo 'the real error' >&2; exit 1",
            &[],
            &[],
            Duration::from_secs(60),
        )
        .await
        .unwrap_err();
        let HookError::Failed { output, .. } = &err else {
            panic!("{err}");
        };
        assert!(output.ends_with("the real error"), "{err}");
        assert!(output.len() <= TAIL_BYTES, "{} bytes kept", output.len());
    }

    /// A hook that leaves a background writer on its stdout: the run ends within the grace
    /// period, and the writer finds the pipe closed (it dies of SIGPIPE) instead of feeding a
    /// reader forever.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_background_writer_does_not_keep_the_readers() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let started = std::time::Instant::now();
        let out = run(
            "sh -c 'echo $$ > \"$1.tmp\"; mv \"$1.tmp\" \"$1\"; exec yes' writer \"$1\" &
             while [ ! -s \"$1\" ]; do sleep 0.01; done",
            &[&pid_file.display().to_string()],
            &[],
            Duration::from_secs(30),
        )
        .await;
        let took = started.elapsed();
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Dead (gone, or a zombie waiting for init) once our end of the pipe is closed.
        let alive = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|stat| !stat.contains(") Z "))
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while alive() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let still_alive = alive();
        if still_alive && let Some(pid) = Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
        out.unwrap();
        assert!(took < Duration::from_secs(10), "the hook took {took:?}");
        assert!(!still_alive, "the background writer was still being read");
    }

    #[tokio::test]
    async fn input_reaches_the_command() {
        let out = run_with_input(
            "cat",
            &[],
            &[],
            Some(b"{\"event\":1}"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(out, "{\"event\":1}");
    }

    #[tokio::test]
    async fn arguments_and_environment_reach_the_command() {
        let out = run(
            "echo \"$1 $2 $EVERCERT_NAME\"",
            &["present", "example.com"],
            &[("EVERCERT_NAME", "shop".to_owned())],
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(out, "present example.com shop");
    }
}
