//! The operator console and its JSON endpoints, on three node processes.
//!
//! `console_in_a_browser` drives headless Chromium through chromedriver (WebDriver over HTTP)
//! and checks what an operator would: every node listed as connected, the test's key with its
//! group key, the test's signing session in the recent sessions, and a stopped node shown as
//! disconnected; `console_asks_for_the_read_token_in_a_browser` enters a node's read token in
//! the page. It saves screenshots in the cluster's directory (and copies them to
//! `FROSTNODE_SCREENSHOT_DIR` when set). Without chromedriver on
//! the PATH it says so and passes, unless `FROSTNODE_REQUIRE_BROWSER=1` (as in `.ci/run`), where
//! it fails.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::process::ProcessCluster;
use serde_json::{json, Value};

const KEY: &str = "console-test";
/// Longer than the console's refresh interval (2 s) many times over: a loaded machine.
const BROWSER_WAIT: Duration = Duration::from_secs(60);

/// A three-node cluster with a key made through node 1 and one message signed through it.
async fn cluster_with_signature(edit: impl Fn(u16, &mut String)) -> (ProcessCluster, String) {
    let c = ProcessCluster::sized(3, edit, |_| {});
    for k in 1..=3u64 {
        let others: Vec<u64> = (1..=3).filter(|&i| i != k).collect();
        c.wait_ready(k as u16, &others).await;
    }
    let (status, key) = c
        .post(1, "/v1/keys", json!({"key_id": KEY, "threshold": 2}))
        .await;
    assert_eq!(status, 200, "{key}");
    let gpk = key["group_public_key"].as_str().unwrap().to_string();
    let message = hex::encode(b"seen in the console");
    let path = format!("/v1/keys/{KEY}/sign");
    let (status, signed) = c.post(1, &path, json!({ "message": message })).await;
    assert_eq!(status, 200, "{signed}");
    (c, gpk)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_endpoints_answer_without_secrets() {
    let (c, gpk) = cluster_with_signature(|_, _| {}).await;

    let (status, peers) = c.get(1, "/v1/peers").await;
    assert_eq!(status, 200);
    let peers = peers.as_array().unwrap();
    assert_eq!(peers.len(), 3, "{peers:?}");
    assert_eq!(peers[0]["id"], 1);
    assert_eq!(peers[0]["this_node"], true);
    let own = peers[0]["address"].as_str().unwrap();
    assert!(
        own.starts_with("/ip4/127.0.0.1/tcp/") && !own.ends_with("/tcp/0"),
        "{own}"
    );
    for p in &peers[1..] {
        assert_eq!(p["connected"], true, "{p}");
        assert_eq!(p["ready"], true, "{p}");
        assert!(p["last_seen"].as_u64().unwrap() > 1_700_000_000, "{p}");
        assert!(
            p["peer_id"].as_str().unwrap().starts_with("12D3KooW"),
            "{p}"
        );
        assert!(
            p["address"]
                .as_str()
                .unwrap()
                .starts_with("/ip4/127.0.0.1/tcp/"),
            "{p}"
        );
    }

    // A stranger's request is refused and counted, not journaled.
    let path = format!("/v1/keys/{KEY}/sign");
    let (status, _) = c.post_with(1, &path, json!({"message": "00"}), None).await;
    assert_eq!(status, 401);

    let (status, sessions) = c.get(1, "/v1/sessions").await;
    assert_eq!(status, 200);
    let sessions = sessions.as_array().unwrap();
    // Newest first: the signature as node 1 received it (ending after any share node 1 gave
    // a remote coordinator for it), then the DKG.
    assert_eq!(sessions[0]["kind"], "sign", "{sessions:?}");
    assert_eq!(sessions[0]["role"], "received", "{sessions:?}");
    assert_eq!(sessions[0]["key_id"], KEY);
    assert_eq!(sessions[0]["outcome"], "ok");
    assert_eq!(sessions[0]["messages"], 1);
    assert_eq!(sessions[0]["nodes"].as_array().unwrap().len(), 2);
    assert!(sessions[0]["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(sessions.iter().any(|s| s["kind"] == "dkg"
        && s["outcome"] == "ok"
        && s["nodes"] == json!([1, 2, 3])
        && s["coordinator"] == 1
        && s["role"] == "initiator"));
    // The coordinator keeps the session too, naming the node that received it; a node that
    // coordinated its own request keeps it once. A signer asked by a remote coordinator keeps
    // its own answer.
    let coordinator = sessions[0]["coordinator"].as_u64().unwrap() as u16;
    let signers: Vec<u16> = serde_json::from_value(sessions[0]["nodes"].clone()).unwrap();
    let signs = |list: &Value, role: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .filter(|s| s["kind"] == "sign" && s["role"] == role)
            .cloned()
            .collect::<Vec<_>>()
    };
    let all = Value::Array(sessions.clone());
    assert_eq!(signs(&all, "received").len(), 1);
    assert_eq!(signs(&all, "coordinator").len(), 0);
    for node in 1..=3u16 {
        let (_, theirs) = c.get(node, "/v1/sessions").await;
        let answered = signs(&theirs, "signer");
        if node != coordinator && signers.contains(&node) {
            assert_eq!(answered.len(), 1, "node {node}: {theirs}");
            assert_eq!(answered[0]["session"], sessions[0]["session"]);
            assert_eq!(answered[0]["coordinator"], coordinator);
            assert_eq!(answered[0]["key_id"], KEY);
            assert_eq!(answered[0]["outcome"], "ok");
        } else {
            assert!(answered.is_empty(), "node {node}: {theirs}");
        }
    }
    if coordinator != 1 {
        let (_, theirs) = c.get(coordinator, "/v1/sessions").await;
        let theirs = signs(&theirs, "coordinator");
        assert_eq!(theirs.len(), 1, "{theirs:?}");
        assert_eq!(theirs[0]["session"], sessions[0]["session"]);
        assert_eq!(theirs[0]["received_from"], 1);
        assert_eq!(theirs[0]["outcome"], "ok");
    }
    // What the journal holds is public: no field could carry a secret.
    let text = serde_json::to_string(&sessions).unwrap();
    for word in ["share", "nonce", "secret", "token", "signature"] {
        assert!(!text.contains(word), "{word} in {text}");
    }

    let (status, latency) = c.get(1, "/v1/latency").await;
    assert_eq!(status, 200);
    assert_eq!(latency["interval_seconds"], 10);
    let points = latency["points"].as_array().unwrap();
    assert!(!points.is_empty() && points.len() <= 60);
    let counted: u64 = points.iter().map(|p| p["count"].as_u64().unwrap()).sum();
    assert_eq!(counted, 1, "one signing request went through node 1");

    // The key the console lists, with its group key.
    let (_, keys) = c.get(1, "/v1/keys").await;
    assert_eq!(keys[0]["group_public_key"], Value::String(gpk));
}

const READ_TOKEN: &str = "console-read-token-7%;x";

/// Two node processes whose APIs need [`READ_TOKEN`] for reads.
fn cluster_with_read_token() -> ProcessCluster {
    let mut c = ProcessCluster::sized(
        2,
        |_, text| {
            assert!(
                !text.contains("[api]"),
                "the generated config has no [api] table yet"
            );
            text.push_str(&format!("\n[api]\nread_token = \"{READ_TOKEN}\"\n"));
        },
        |_| {},
    );
    c.read_token = Some(READ_TOKEN.into());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_data_needs_the_read_token_when_one_is_set() {
    let c = cluster_with_read_token();
    c.wait_ready(1, &[2]).await;
    // The page holds no data: it loads, and asks for the token when its reads are refused.
    let r = c.http.get(c.url(1, "/")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("id=\"login\"") && page.contains("sessionStorage"));
    for path in [
        "/v1/peers",
        "/v1/sessions",
        "/v1/latency",
        "/v1/status",
        "/v1/keys",
    ] {
        let r = c.http.get(c.url(1, path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path} without the token");
        let r = c
            .http
            .get(c.url(1, path))
            .bearer_auth("wrong-token-0123456")
            .send()
            .await;
        assert_eq!(
            r.unwrap().status().as_u16(),
            401,
            "{path} with a wrong token"
        );
        let r = c
            .http
            .get(c.url(1, path))
            .bearer_auth(READ_TOKEN)
            .send()
            .await;
        assert_eq!(r.unwrap().status().as_u16(), 200, "{path} with the token");
    }
}

/// A WebDriver command: `body` posted to `url`, the JSON answer.
async fn post_json(http: &reqwest::Client, url: &str, body: &Value) -> Value {
    let r = http.post(url).json(body).send().await.unwrap();
    r.json().await.unwrap()
}

/// chromedriver, killed when dropped (a failing test leaves no driver behind).
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A WebDriver session on headless Chromium.
struct Browser {
    http: reqwest::Client,
    base: String,
    session: String,
    _driver: Driver,
}

impl Browser {
    /// A browser for `test`, or `None` after saying loudly that it did not run (chromedriver
    /// missing); with `FROSTNODE_REQUIRE_BROWSER=1` a missing chromedriver fails the test.
    async fn for_test(test: &str) -> Option<Browser> {
        let required = std::env::var("FROSTNODE_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
        let browser = Browser::start().await;
        if browser.is_none() {
            assert!(
                !required,
                "FROSTNODE_REQUIRE_BROWSER=1 but chromedriver is not installed"
            );
            eprintln!(
                "\n*** {test}: chromedriver not found; the browser test did not run \
                 (install chromium and chromium-driver) ***\n"
            );
        }
        browser
    }

    /// Starts chromedriver and a headless Chromium session; `None` when chromedriver is not
    /// installed.
    async fn start() -> Option<Browser> {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let driver = Driver(
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()?,
        );
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + BROWSER_WAIT;
        // chromedriver has no event to wait on but its status answer.
        loop {
            let ready = http.get(format!("{base}/status")).send().await;
            if let Ok(r) = ready {
                if let Ok(v) = r.json::<Value>().await {
                    if v["value"]["ready"] == true {
                        break;
                    }
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut args = vec!["--headless=new", "--no-sandbox", "--disable-gpu"];
        args.extend(["--disable-dev-shm-usage", "--window-size=1400,1100"]);
        let mut options = json!({ "args": args });
        for binary in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
            if std::path::Path::new(binary).exists() {
                options["binary"] = json!(binary);
                break;
            }
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": options }}});
        let r = post_json(&http, &format!("{base}/session"), &caps).await;
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {r}"))
            .to_string();
        Some(Browser {
            http,
            base,
            session,
            _driver: driver,
        })
    }

    async fn command(&self, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}/{path}", self.base, self.session);
        let r = post_json(&self.http, &url, &body).await;
        assert!(r["value"]["error"].is_null(), "{path}: {r}");
        r["value"].clone()
    }

    async fn open(&self, url: &str) {
        self.command("url", json!({ "url": url })).await;
    }

    /// Runs `script` (a function body) in the page and returns its result.
    async fn eval(&self, script: &str) -> Value {
        self.command("execute/sync", json!({ "script": script, "args": [] }))
            .await
    }

    /// Evaluates `script` until `holds` accepts its result; panics with the last one after
    /// [`BROWSER_WAIT`]. The page refreshes itself: its state is what there is to watch.
    async fn wait_for(&self, what: &str, script: &str, holds: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + BROWSER_WAIT;
        loop {
            let v = self.eval(script).await;
            if holds(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{what}: the page shows {v}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn screenshot(&self, path: &std::path::Path) {
        let url = format!("{}/session/{}/screenshot", self.base, self.session);
        let r: Value = self
            .http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["value"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        std::fs::write(path, &png).unwrap();
        // The temporary directory goes with the test; a copy can be kept elsewhere.
        if let Ok(keep) = std::env::var("FROSTNODE_SCREENSHOT_DIR") {
            std::fs::write(
                std::path::Path::new(&keep).join(path.file_name().unwrap()),
                &png,
            )
            .unwrap();
        }
    }

    async fn quit(self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.http.delete(url).send().await;
    }
}

const PEER_STATES: &str = "return Array.from(document.querySelectorAll('#peers tbody tr'))
    .map(r => [r.dataset.node, r.children[3].textContent]);";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_browser() {
    let Some(browser) = Browser::for_test("console_in_a_browser").await else {
        return;
    };
    let (mut c, gpk) = cluster_with_signature(|_, _| {}).await;
    browser.open(&c.url(1, "/")).await;

    let states = browser
        .wait_for("three nodes connected", PEER_STATES, |v| {
            v.as_array()
                .is_some_and(|rows| rows.len() == 3 && rows.iter().all(|r| r[1] == "connected"))
        })
        .await;
    assert_eq!(states[0][0], "1", "this node first: {states}");

    let shown = browser
        .wait_for(
            "the key with its group key",
            &format!(
                "const c = document.querySelector('#keys tbody tr[data-key=\"{KEY}\"] .gpk');
                 return c ? [c.dataset.full, c.textContent] : null;"
            ),
            |v| !v.is_null(),
        )
        .await;
    assert_eq!(shown[0], Value::String(gpk.clone()));
    assert!(shown[1].as_str().unwrap().starts_with(&gpk[..8]), "{shown}");

    let session = browser
        .wait_for(
            "the signing session",
            "const r = document.querySelector('#sessions tbody tr[data-kind=\"sign\"][data-role=\"received\"]');
             return r ? Array.from(r.children).map(c => c.textContent) : null;",
            |v| !v.is_null(),
        )
        .await;
    assert_eq!(session[2], "received", "{session}");
    assert_eq!(session[3], KEY, "{session}");
    assert_eq!(session[7], "ok", "{session}");
    let lines = browser
        .eval("return document.querySelectorAll('#latency polyline').length;")
        .await;
    assert!(lines.as_u64().unwrap() >= 1, "the latency chart has a line");

    let dir = c.dir.path().to_path_buf();
    browser.screenshot(&dir.join("console.png")).await;
    eprintln!("screenshot: {}", dir.join("console.png").display());

    // A stopped node turns disconnected within the refresh interval of noticing it.
    c.stop(3);
    let states = browser
        .wait_for("node 3 disconnected", PEER_STATES, |v| {
            v.as_array()
                .is_some_and(|rows| rows.iter().any(|r| r[0] == "3" && r[1] == "disconnected"))
        })
        .await;
    assert!(
        states
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r[0] == "2" && r[1] == "connected"),
        "node 2 still connected: {states}"
    );
    browser
        .screenshot(&dir.join("console-node3-stopped.png"))
        .await;
    browser.quit().await;
}

/// Every metric the Grafana dashboard and the alert rules query is one a node exports: in a
/// running node's exposition, or registered by the node (a labelled family appears in the
/// exposition once it has a first series).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_alerts_query_metrics_that_exist() {
    let c = ProcessCluster::sized(2, |_, _| {}, |_| {});
    c.wait_ready(1, &[2]).await;
    let text = c.get_text(1, "/metrics").await;
    // Every configured peer's culprit count starts at zero: a first culprit is an increase.
    assert!(
        text.lines()
            .any(|l| l == "frostnode_culprits_total{node=\"2\"} 0"),
        "{text}"
    );
    // Families as the exposition declares them (`# TYPE name kind`).
    let mut families: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    assert!(
        families
            .iter()
            .any(|f| f == "frostnode_sign_duration_seconds"),
        "{text}"
    );
    // Registered names are the string literals alone on a line of src/metrics.rs.
    let source = include_str!("../src/metrics.rs");
    let registered: Vec<String> = source
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix('"')?
                .strip_suffix("\",")
                .filter(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
                .map(|n| format!("frostnode_{n}"))
        })
        .collect();
    assert!(registered.len() >= 10, "{registered:?}");
    assert!(
        registered.iter().any(|r| families.contains(r)),
        "{registered:?}"
    );
    families.extend(registered);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    for file in ["grafana/frostnode.json", "prometheus/alerts.yml"] {
        let doc = std::fs::read_to_string(root.join(file)).unwrap();
        let mut queried = 0;
        for (i, _) in doc.match_indices("frostnode_") {
            let name: String = doc[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let family = ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            assert!(
                families.iter().any(|f| f == family),
                "{file} queries {name}, which no node exports"
            );
            queried += 1;
        }
        assert!(queried >= 6, "{file} queries only {queried} metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_asks_for_the_read_token_in_a_browser() {
    let Some(browser) = Browser::for_test("console_asks_for_the_read_token_in_a_browser").await
    else {
        return;
    };
    let c = cluster_with_read_token();
    c.wait_ready(1, &[2]).await;
    browser.open(&c.url(1, "/")).await;
    browser
        .wait_for(
            "the token form",
            "return !document.getElementById('login').hidden;",
            |v| v == true,
        )
        .await;
    let enter = format!(
        "document.getElementById('token').value = {};
         document.getElementById('login').requestSubmit(); return true;",
        serde_json::to_string(READ_TOKEN).unwrap()
    );
    browser.eval(&enter).await;
    browser
        .wait_for("both nodes connected", PEER_STATES, |v| {
            v.as_array()
                .is_some_and(|rows| rows.len() == 2 && rows.iter().all(|r| r[1] == "connected"))
        })
        .await;
    // Kept in the tab for this origin only: no cookie for other services on the host.
    let kept = browser
        .eval("return [document.cookie, sessionStorage.getItem('frostnode_read_token')];")
        .await;
    assert_eq!(kept, json!(["", READ_TOKEN]));
    browser.quit().await;
}
