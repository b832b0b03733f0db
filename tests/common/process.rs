//! Node processes, as an operator runs them: `frostnode run` processes (five unless a test
//! asks for fewer) from `frostnode cluster-config`, driven over HTTP, killed when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use frostnode::client::ClientKey;
use frostnode::localnet::{ADMIN_CLIENT, CLIENT_KEY_FILE};
use serde_json::Value;

use super::WAIT;

pub const BIN: &str = env!("CARGO_BIN_EXE_frostnode");

/// Node processes; killed when dropped, so a failing test leaves nothing behind.
pub struct ProcessCluster {
    pub dir: tempfile::TempDir,
    pub base_port: u16,
    children: Vec<Option<Child>>,
    pub http: reqwest::Client,
    /// The client `cluster-config` registered on every node.
    pub admin: ClientKey,
    /// The nodes' `[api] read_token`, when a test set one: status polls carry it.
    pub read_token: Option<String>,
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A base port whose 2×5 ports are free right now.
pub fn free_base_port() -> u16 {
    for _ in 0..200 {
        // Below the kernel's ephemeral range (32768+), so outgoing connections cannot take
        // these ports between the check and the bind.
        let base = 10000 + (rand::random::<u16>() % 20000);
        let mut ports = (1..=5).flat_map(|k| [base + k, base + 1000 + k]);
        if ports.all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
    panic!("no free ports found");
}

impl ProcessCluster {
    pub fn new() -> ProcessCluster {
        Self::with_config(|_, _| {})
    }

    /// Like [`ProcessCluster::new`], with each node's config file edited before it starts.
    pub fn with_config(edit: impl Fn(u16, &mut String)) -> ProcessCluster {
        Self::with_setup(edit, |_| {})
    }

    /// Like [`ProcessCluster::with_config`]; `prepare` gets the cluster's directory before the
    /// nodes start (to write files their configs name).
    pub fn with_setup(
        edit: impl Fn(u16, &mut String),
        prepare: impl FnOnce(&std::path::Path),
    ) -> ProcessCluster {
        Self::sized(5, edit, prepare)
    }

    /// `nodes` processes (2 to 5), each config edited by `edit`, the directory prepared by
    /// `prepare` before they start.
    pub fn sized(
        nodes: u16,
        edit: impl Fn(u16, &mut String),
        prepare: impl FnOnce(&std::path::Path),
    ) -> ProcessCluster {
        assert!((2..=5).contains(&nodes));
        let dir = tempfile::tempdir().unwrap();
        let base_port = free_base_port();
        let out = Command::new(BIN)
            .args([
                "cluster-config",
                "--nodes",
                &nodes.to_string(),
                "--base-port",
            ])
            .arg(base_port.to_string())
            .arg("--out")
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for k in 1..=nodes {
            let path = dir.path().join(format!("node{k}.toml"));
            let mut text = std::fs::read_to_string(&path).unwrap();
            edit(k, &mut text);
            std::fs::write(&path, text).unwrap();
        }
        prepare(dir.path());
        let admin = ClientKey::new(
            ADMIN_CLIENT,
            frostnode::client::load_client_key(&dir.path().join(CLIENT_KEY_FILE)).unwrap(),
        );
        let mut c = ProcessCluster {
            dir,
            base_port,
            children: (0..nodes).map(|_| None).collect(),
            http: reqwest::Client::new(),
            admin,
            read_token: None,
        };
        for k in 1..=nodes {
            c.start(k);
        }
        c
    }

    pub fn log_path(&self, k: u16) -> PathBuf {
        self.dir.path().join(format!("node{k}.log"))
    }

    pub fn start(&mut self, k: u16) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(k))
            .unwrap();
        let child = Command::new(BIN)
            .arg("run")
            .arg("--config")
            .arg(self.dir.path().join(format!("node{k}.toml")))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children[usize::from(k - 1)] = Some(child);
    }

    /// Node k's process id.
    pub fn pid(&self, k: u16) -> u32 {
        self.children[usize::from(k - 1)]
            .as_ref()
            .expect("node is running")
            .id()
    }

    /// SIGKILL: no chance to clean up.
    pub fn crash(&mut self, k: u16) {
        let mut child = self.children[usize::from(k - 1)].take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, then wait for the process to exit.
    pub fn stop(&mut self, k: u16) {
        let mut child = self.children[usize::from(k - 1)].take().unwrap();
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "node {k} exits cleanly on SIGTERM: {status}"
                );
                return;
            }
            assert!(Instant::now() < deadline, "node {k} did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, k: u16, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.base_port + 1000 + k)
    }

    pub async fn get(&self, k: u16, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(k, path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    /// Node k's answer to `GET path`, as text (`/metrics`, the console).
    pub async fn get_text(&self, k: u16, path: &str) -> String {
        let r = self.http.get(self.url(k, path)).send().await.unwrap();
        r.text().await.unwrap()
    }

    /// POSTs `body` with a fresh admin token for it (key generation or signing).
    pub async fn post(&self, k: u16, path: &str, body: Value) -> (u16, Value) {
        let token = self.token_for(path, &body);
        self.post_with(k, path, body, Some(&token)).await
    }

    /// POSTs `body` with `token`, or none.
    pub async fn post_with(
        &self,
        k: u16,
        path: &str,
        body: Value,
        token: Option<&str>,
    ) -> (u16, Value) {
        let mut r = self.http.post(self.url(k, path)).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    /// The admin token a request to `path` with `body` needs.
    fn token_for(&self, path: &str, body: &Value) -> String {
        if path == "/v1/keys" {
            let participants = body["participants"].as_array().map(|a| {
                a.iter()
                    .map(|v| v.as_u64().unwrap() as u16)
                    .collect::<Vec<_>>()
            });
            self.admin.keygen_token(
                body["key_id"].as_str().unwrap_or_default(),
                body["threshold"].as_u64().map(|t| t as u16),
                participants,
            )
        } else if let Some((key_id, action)) = path
            .strip_prefix("/v1/keys/")
            .and_then(|p| p.rsplit_once('/'))
            .filter(|(_, a)| ["repair", "enrol"].contains(a))
        {
            let node = body["node"].as_u64().unwrap_or_default() as u16;
            self.admin.repair_token(key_id, node, action == "enrol")
        } else {
            let key_id = path
                .strip_prefix("/v1/keys/")
                .and_then(|p| p.strip_suffix("/sign"))
                .expect("a signing path");
            let message =
                hex::decode(body["message"].as_str().unwrap_or_default()).unwrap_or_default();
            self.admin.sign_token(key_id, &message)
        }
    }

    pub async fn post_raw(&self, k: u16, path: &str, body: &'static str) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(k, path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    /// Polls node k's status until `ready` holds (the nodes are other processes: there is no
    /// event to wait on but their answers).
    pub async fn wait_status(&self, k: u16, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let mut get = self.http.get(self.url(k, "/v1/status"));
            if let Some(token) = &self.read_token {
                get = get.bearer_auth(token);
            }
            if let Ok(r) = get.send().await {
                if let Ok(v) = r.json::<Value>().await {
                    if ready(&v) {
                        return v;
                    }
                }
            }
            if Instant::now() > deadline {
                panic!("node {k}: {what} not reached; log:\n{}", self.log(k));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn wait_ready(&self, k: u16, peers: &[u64]) {
        self.wait_status(k, "peers ready", |v| {
            let ready: Vec<u64> = v["ready_peers"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            peers.iter().all(|p| ready.contains(p))
        })
        .await;
    }

    pub fn log(&self, k: u16) -> String {
        std::fs::read_to_string(self.log_path(k)).unwrap_or_default()
    }
}

pub fn others(k: u64) -> Vec<u64> {
    (1..=5).filter(|&i| i != k).collect()
}
