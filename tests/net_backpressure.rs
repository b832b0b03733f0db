//! The network event loop never waits for a node that is behind: with the node's queue full,
//! inbound requests are dropped at once (the requester hears so immediately, not at its
//! timeout), every drop is counted, and connection events are kept for when the node catches
//! up. Two real swarms on loopback; the "node" side simply never reads its events.

mod common;

use std::time::Duration;

use common::WAIT;
use frostnode::metrics::{DroppedEvents, DroppedLabels};
use frostnode::net::{Event, EventLoop, NetParams};
use libp2p::identity::Keypair;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_queue_drops_requests_without_stalling_the_swarm() {
    let (a_key, b_key) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let (a_pid, b_pid) = (a_key.public().to_peer_id(), b_key.public().to_peer_id());
    let placeholder: libp2p::Multiaddr = "/ip4/127.0.0.1/tcp/9".parse().unwrap();
    let params = |keypair: Keypair, peer, event_queue| NetParams {
        keypair,
        listen: "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
        peers: vec![(peer, placeholder.clone())],
        max_message_size: 1 << 16,
        // Far beyond the test's wait: an answer that comes back came from a drop.
        request_timeout: Duration::from_secs(600),
        event_queue,
        gossip: Default::default(),
    };
    // Node A: a queue of 4 events that nobody reads.
    let dropped = DroppedEvents::default();
    let (_a_client, mut a_events, a_loop) = EventLoop::new(params(a_key, b_pid, 4)).unwrap();
    let mut a_loop = a_loop.with_drop_counter(dropped.clone());
    let a_addr = a_loop.wait_listening(WAIT).await.unwrap();
    tokio::spawn(a_loop.run());
    // Peer B: dials A and is read as usual.
    let (b_client, mut b_events, mut b_loop) = EventLoop::new(params(b_key, a_pid, 64)).unwrap();
    b_loop.set_peer_address(a_pid, a_addr);
    b_loop.wait_listening(WAIT).await.unwrap();
    tokio::spawn(b_loop.run());
    tokio::time::timeout(WAIT, async {
        while let Some(e) = b_events.recv().await {
            if matches!(e, Event::Connected(p) if p == a_pid) {
                return;
            }
        }
    })
    .await
    .expect("B connects to A");
    tokio::spawn(async move { while b_events.recv().await.is_some() {} });

    // A's queue holds at most 4 events, B's connection among them: at least 37 of 40 requests
    // find it full. Those that found room wait there for a node that never comes.
    let requests = 40;
    let refused_at_least = requests - 4;
    let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..requests {
        let (c, done_tx) = (b_client.clone(), done_tx.clone());
        tokio::spawn(async move {
            let _ = done_tx.send(c.request(a_pid, vec![i as u8; 8]).await);
        });
    }
    for _ in 0..refused_at_least {
        let result = tokio::time::timeout(WAIT, done.recv())
            .await
            .expect("dropped requests are refused long before their timeout")
            .unwrap();
        let e = result.expect_err("nobody answers on A's side");
        assert!(!e.to_string().contains("Timeout"), "{e}");
    }
    let counted = dropped
        .get_or_create(&DroppedLabels {
            kind: "request".into(),
        })
        .get();
    assert!(
        counted >= refused_at_least as u64,
        "every drop is counted ({counted})"
    );

    // The node catches up: the first thing it hears about is B's connection.
    let first = tokio::time::timeout(WAIT, a_events.recv()).await.unwrap();
    assert!(
        matches!(first, Some(Event::Connected(p)) if p == b_pid),
        "{first:?}"
    );
}
