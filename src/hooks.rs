//! Running operators' commands: the reload hook and the dns-01 hook.
//!
//! Commands run through `sh -c` in their own process group, so that a timeout kills the whole
//! tree (a hung `systemctl reload` would otherwise keep a renewal waiting forever). Output is
//! captured; its tail goes into the error an operator reads.

use std::process::Stdio;
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process_group};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// How long a dns-01 hook may take for one record.
pub const DNS_HOOK_TIMEOUT: Duration = Duration::from_secs(120);
/// How much of a failed command's output is kept for the message.
const TAIL_BYTES: usize = 2048;

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
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        let input = input.to_vec();
        // A command that does not read its input must not block us: write in a task.
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let _ = stdin.write_all(&input).await;
        });
    }
    // Output is read by tasks of its own: a hook that starts a daemon which keeps the pipe
    // open must not make us wait for that daemon, only for the hook itself.
    let readers = [
        child.stdout.take().map(reader),
        child.stderr.take().map(reader),
    ];
    let status = tokio::time::timeout(timeout, child.wait()).await;
    if status.is_err()
        && let Some(group) = group
    {
        // Kill the whole group first, so that the pipes close and the output can be read.
        let _ = kill_process_group(group, Signal::KILL);
    }
    let mut output = Vec::new();
    for task in readers.into_iter().flatten() {
        if let Ok(Ok(bytes)) = tokio::time::timeout(Duration::from_millis(500), task).await {
            output.extend_from_slice(&bytes);
        }
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

fn reader(
    mut pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> tokio::task::JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes).await;
        bytes
    })
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
