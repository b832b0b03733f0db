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
    /// The message, lowercase hex.
    pub message: String,
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
    /// reason. The timeout covers waiting for a slot, and a command still running when it
    /// passes is killed.
    pub async fn decide(&self, request: &PolicyRequest) -> Verdict {
        let timeout = self.command.timeout;
        match tokio::time::timeout(timeout, self.run(request)).await {
            Ok(verdict) => verdict,
            Err(_) => Verdict::Refuse(format!(
                "policy command did not answer within {} ms",
                timeout.as_millis()
            )),
        }
    }

    async fn run(&self, request: &PolicyRequest) -> Verdict {
        let Ok(_slot) = self.slots.acquire().await else {
            return Verdict::Refuse("policy runner closed".into());
        };
        let doc = match serde_json::to_vec(request) {
            Ok(d) => d,
            Err(e) => return Verdict::Refuse(format!("policy request not encodable: {e}")),
        };
        let program = &self.command.program;
        let child = tokio::process::Command::new(program)
            .args(&self.command.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                return Verdict::Refuse(format!(
                    "policy command {} could not be started: {e}",
                    program.display()
                ))
            }
        };
        if let Some(mut stdin) = child.stdin.take() {
            // A command may decide without reading everything (or anything): a closed pipe
            // is not an error.
            tokio::spawn(async move {
                let _ = stdin.write_all(&doc).await;
            });
        }
        match child.wait_with_output().await {
            Ok(out) if out.status.success() => Verdict::Approve,
            Ok(out) => {
                let said =
                    reason_from_output(&out.stderr).or_else(|| reason_from_output(&out.stdout));
                let status = match out.status.code() {
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
