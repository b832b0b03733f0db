//! The HTTP API's own limits: it answers only for its own address on loopback (a page that
//! rebinds a DNS name to 127.0.0.1 is refused), refuses oversized bodies unread, serves at
//! most `max_in_flight` signing and key generation requests at once (429 beyond), closes
//! connections whose headers do not arrive in time, and asks for its read token when one is set.

mod common;

use std::time::Duration;

use common::{Cluster, WAIT};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_hosts_and_oversized_bodies_are_refused() {
    let c = Cluster::start(2).await;
    let addr = c.api_addrs()[0];
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/v1/status");
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = http
        .get(&url)
        .header("host", format!("localhost:{}", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "localhost names the same address");
    for host in ["evil.example", "evil.example:80", "127.0.0.1:1"] {
        let r = http.get(&url).header("host", host).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 421, "{host}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["kind"], "host_not_allowed", "{v}");
    }
    let huge = "00".repeat(200 * 1024);
    let r = http
        .post(format!("http://{addr}/v1/keys/k/sign"))
        .json(&json!({ "message": huge }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_in_flight_limit_get_429() {
    let c = Cluster::start_with(2, |cfg| {
        cfg.api_max_in_flight = 1;
        cfg.request_timeout = Duration::from_secs(30);
        cfg.sign_timeout = Duration::from_secs(20);
    })
    .await;
    c.keygen(1, "k", Some(2), None).await.unwrap();
    // Node 2 hangs: a signature (2 of 2) cannot finish, so the first request holds the only
    // permit for seconds.
    c.handle(2).set_unresponsive(true).await.unwrap();
    let addr = c.api_addrs()[0];
    let http = reqwest::Client::new();
    let sign = {
        let http = http.clone();
        let admin = c.admin().clone();
        move || {
            http.post(format!("http://{addr}/v1/keys/k/sign"))
                .bearer_auth(admin.sign_token("k", &[0]))
                .json(&json!({ "message": "00" }))
                .send()
        }
    };
    let first = tokio::spawn(sign());
    // Wait until the node has taken the first request (its counter says so).
    let started = "frostnode_sign_requests_total{outcome=\"started\",reason=\"\"} 1";
    tokio::time::timeout(WAIT, async {
        loop {
            let text = http
                .get(format!("http://{addr}/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if text.contains(started) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the first request reaches the node");
    for _ in 0..3 {
        let r = sign().await.unwrap();
        assert_eq!(r.status().as_u16(), 429);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["kind"], "busy", "{v}");
    }
    // Reads are not limited.
    let r = http
        .get(format!("http://{addr}/v1/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    first.abort();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_need_the_read_token_when_one_is_set() {
    const READ: &str = "a-read-token-of-some-length";
    let c = Cluster::start_with(2, |cfg| cfg.api_read_token = Some(READ.into())).await;
    c.keygen(1, "k", Some(2), None).await.unwrap();
    let addr = c.api_addrs()[0];
    let http = reqwest::Client::new();
    for path in ["/v1/status", "/v1/keys", "/v1/keys/k", "/metrics"] {
        let url = format!("http://{addr}{path}");
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path} without the token");
        let r = http.get(&url).bearer_auth("wrong").send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path} with a wrong token");
        let r = http.get(&url).bearer_auth(READ).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path} with the token");
    }
    // Health stays open (for load balancers and healthchecks).
    let r = http
        .get(format!("http://{addr}/v1/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Signing carries a client token, not the read token.
    let r = http
        .post(format!("http://{addr}/v1/keys/k/sign"))
        .bearer_auth(c.admin().sign_token("k", b"m"))
        .json(&json!({ "message": hex::encode(b"m") }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let c = Cluster::start(2).await;
    let addr = c.api_addrs()[0];
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1")
        .await
        .unwrap();
    // The server closes the connection (after frostnode::httpserver::HEADER_READ_TIMEOUT);
    // whatever it sends first, the stream ends.
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, slow.read_to_end(&mut rest))
        .await
        .expect("the server closes a connection whose headers never end")
        .unwrap();
    // Other clients were served all along.
    let r = reqwest::get(format!("http://{addr}/v1/health"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    c.shutdown().await;
}
