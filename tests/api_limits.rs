//! The HTTP API's own limits: it answers only for its own address on loopback (a page that
//! rebinds a DNS name to 127.0.0.1 is refused), refuses oversized bodies unread, and serves at
//! most `max_in_flight` signing and key generation requests at once (429 beyond).

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
        move || {
            http.post(format!("http://{addr}/v1/keys/k/sign"))
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
