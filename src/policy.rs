//! The operator's signing policy: an external command that this node runs once per signing
//! request it is asked to take part in, after the client's token passed. It gets a JSON
//! document on stdin (see [`PolicyRequest`]); exit status 0 approves; any other exit, no answer
//! within the timeout, or a command that cannot be started refuses. This is how an operator adds
//! rules frostnode does not know (amount limits, destination allow-lists, a human in the loop)
//! without changing frostnode.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

/// Default time the policy command has to answer.
pub const DEFAULT_TIMEOUT_MS: u64 = 2_000;
/// Policy commands running at once on a node; more requests wait for a slot (within their
/// timeout).
pub const MAX_RUNNING: usize = 32;
/// Longest reason taken from the command's output.
const MAX_REASON: usize = 200;

/// The `[policy]` section as written.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// The program to run (relative paths: to the config file). Not run through a shell.
    pub command: PathBuf,
    /// Its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// How long it may take, in milliseconds; then the request is refused.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

/// A validated policy command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyCommand {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// How long it may take.
    pub timeout: Duration,
}

impl PolicyCommand {
    /// Resolves a relative program path with a directory part (`scripts/approve`) against the
    /// config file's directory; a bare name is looked up in `PATH` when it runs.
    pub fn resolve(&mut self, base: &Path) {
        if self.program.is_relative() && self.program.components().count() > 1 {
            self.program = base.join(&self.program);
        }
    }
}

/// What the policy command reads on stdin, one JSON object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PolicyRequest {
    /// Always `"sign"` for now.
    pub action: String,
    /// The node asking (this node's id).
    pub node: u16,
    /// The client whose token authorized the request (its `iss`).
    pub client: String,
    /// The key to sign with.
    pub key_id: String,
    /// The message, lowercase hex, for a request that signs one message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Every message of the request (one, or a batch), lowercase hex, in order.
    pub messages: Vec<String>,
    /// The request id, lowercase hex (the same on every node for one request).
    pub request_id: String,
}

/// The command's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Exit status 0.
    Approve,
    /// Anything else, with the reason.
    Refuse(String),
}

/// Runs policy commands, at most [`MAX_RUNNING`] at once.
#[derive(Clone, Debug)]
pub struct PolicyRunner {
    command: Arc<PolicyCommand>,
    slots: Arc<tokio::sync::Semaphore>,
}

impl PolicyRunner {
    /// A runner for `command`.
    pub fn new(command: PolicyCommand) -> Self {
        PolicyRunner {
            command: Arc::new(command),
            slots: Arc::new(tokio::sync::Semaphore::new(MAX_RUNNING)),
        }
    }

    /// Asks the command about `request`. Never fails: every problem is a refusal with its
    /// reason. The timeout covers waiting for a slot; a command (and every process it started)
    /// still running when it passes is killed.
    pub async fn decide(&self, request: &PolicyRequest) -> Verdict {
        let timeout = self.command.timeout;
        let mut group = None;
        let verdict = tokio::time::timeout(timeout, self.run(request, &mut group)).await;
        if let Some(pgid) = group {
            kill_group(pgid);
        }
        verdict.unwrap_or_else(|_| {
            Verdict::Refuse(format!(
                "policy command did not answer within {} ms",
                timeout.as_millis()
            ))
        })
    }

    async fn run(&self, request: &PolicyRequest, group: &mut Option<u32>) -> Verdict {
        let Ok(_slot) = self.slots.acquire().await else {
            return Verdict::Refuse("policy runner closed".into());
        };
        let doc = match serde_json::to_vec(request) {
            Ok(d) => d,
            Err(e) => return Verdict::Refuse(format!("policy request not encodable: {e}")),
        };
        let program = &self.command.program;
        let mut command = tokio::process::Command::new(program);
        command
            .args(&self.command.args)
            // The node's environment holds its secrets (the key store passphrase): the command
            // gets none of it, only what it needs to find programs and read text.
            .env_clear()
            .envs(
                ["PATH", "LANG", "LC_ALL", "TZ"]
                    .into_iter()
                    .filter_map(|k| std::env::var_os(k).map(|v| (k, v))),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        command.process_group(0);
        let mut child = match command.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Verdict::Refuse(format!(
                    "policy command {} could not be started: {e}",
                    program.display()
                ))
            }
        };
        *group = child.id();
        if let Some(mut stdin) = child.stdin.take() {
            // A command may decide without reading everything (or anything): a closed pipe
            // is not an error.
            tokio::spawn(async move {
                let _ = stdin.write_all(&doc).await;
            });
        }
        let stdout = read_bounded(child.stdout.take());
        let stderr = read_bounded(child.stderr.take());
        let (status, stdout, stderr) = tokio::join!(child.wait(), stdout, stderr);
        match status {
            Ok(status) if status.success() => {
                // It answered: nothing of its group needs killing.
                *group = None;
                Verdict::Approve
            }
            Ok(status) => {
                *group = None;
                let said = reason_from_output(&stderr).or_else(|| reason_from_output(&stdout));
                let status = match status.code() {
                    Some(code) => format!("exit status {code}"),
                    None => "killed by a signal".into(),
                };
                Verdict::Refuse(match said {
                    Some(s) => format!("policy command refused ({status}): {s}"),
                    None => format!("policy command refused ({status})"),
                })
            }
            Err(e) => Verdict::Refuse(format!("policy command failed: {e}")),
        }
    }
}

/// Most bytes kept of each of the command's outputs (the rest is read and dropped).
const MAX_OUTPUT: u64 = 16 * 1024;

async fn read_bounded(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut kept = Vec::new();
    if let Some(mut pipe) = pipe {
        let _ = (&mut pipe).take(MAX_OUTPUT).read_to_end(&mut kept).await;
        let _ = tokio::io::copy(&mut pipe, &mut tokio::io::sink()).await;
    }
    kept
}

/// Kills the process group `pgid` (the command and everything it started).
#[cfg(unix)]
fn kill_group(pgid: u32) {
    if let Ok(pgid) = libc::pid_t::try_from(pgid) {
        // SAFETY: killpg takes plain integers and touches no memory of ours; at worst the
        // group is already gone (ESRCH), which is what we want.
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
    }
}

#[cfg(not(unix))]
fn kill_group(_: u32) {}

/// The first non-empty line of a command's output, without control characters and at most
/// [`MAX_REASON`] characters: what a refusal quotes of what the command said.
pub fn reason_from_output(output: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(output);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.chars().any(|c| !c.is_control() && !c.is_whitespace()))?;
    Some(
        line.chars()
            .filter(|c| !c.is_control())
            .take(MAX_REASON)
            .collect(),
    )
}
