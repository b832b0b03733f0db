//! A libp2p peer whose PeerId is not in the config gets no connection and no message through.

use std::time::Duration;

mod common;

use common::Cluster;
use frostnode::net::{EventLoop, NetParams};
use frostnode::wire::{self, Body, DkgStart, Envelope, SessionId};
use libp2p::identity::Keypair;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlisted_peer_cannot_connect_or_start_a_session() {
    let cluster = Cluster::start(3).await;
    let target = cluster.handle(1);

    // The intruder knows node 1's address and PeerId, and claims to be node 2.
    let (client, _events, mut event_loop) = EventLoop::new(NetParams {
        keypair: Keypair::generate_ed25519(),
        listen: "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
        peers: vec![(target.peer_id(), cluster.p2p_addrs()[0].clone())],
        max_message_size: 1 << 20,
        request_timeout: Duration::from_secs(5),
        event_queue: frostnode::net::DEFAULT_EVENT_QUEUE,
        gossip: Default::default(),
    })
    .unwrap();
    event_loop
        .wait_listening(Duration::from_secs(10))
        .await
        .unwrap();
    tokio::spawn(event_loop.run());
    let start = Envelope::new(
        SessionId([7; 32]),
        2,
        Body::DkgStart(DkgStart {
            key_id: "stolen".into(),
            participants: vec![1, 2],
            threshold: 2,
            token: None,
            refresh: None,
            repair: None,
            reshare: None,
        }),
    );
    let answer = client
        .request(target.peer_id(), wire::encode(&start).unwrap())
        .await;
    assert!(
        answer.is_err(),
        "an unlisted peer must not get an answer: {answer:?}"
    );

    let status = target.status().await.unwrap();
    assert_eq!(status.active_sessions, 0, "no session was created");
    assert_eq!(status.connected_peers, vec![2, 3]);
    client.shutdown();

    // The cluster is unaffected.
    let key = cluster.keygen(1, "after", None, None).await.unwrap();
    assert_eq!(key.participants, vec![1, 2, 3]);
    cluster.shutdown().await;
}
