//! Arbitrary bytes from listed and unlisted peers into the node's sender authentication.
#![no_main]

use frostnode::config::Peer;
use frostnode::node::peers::PeerBook;
use libfuzzer_sys::fuzz_target;
use libp2p::identity::Keypair;

fuzz_target!(|data: &[u8]| {
    let pids: Vec<libp2p::PeerId> = (0..3)
        .map(|_| Keypair::generate_ed25519().public().to_peer_id())
        .collect();
    let peers = vec![
        Peer {
            id: 2,
            peer_id: pids[0],
            addr: "/ip4/127.0.0.1/tcp/9".parse().expect("multiaddr"),
        },
        Peer {
            id: 3,
            peer_id: pids[1],
            addr: "/ip4/127.0.0.1/tcp/9".parse().expect("multiaddr"),
        },
    ];
    let config = frostnode::localnet::loopback_config(1, "/nonexistent".into(), peers);
    let (book, _ready) = PeerBook::new(&config);
    let Some((&who, bytes)) = data.split_first() else {
        return;
    };
    let sender = usize::from(who % 3);
    if let Ok(env) = book.authenticate(pids[sender], bytes) {
        assert!(sender < 2, "an unlisted peer never authenticates");
        assert_eq!(
            env.from,
            [2, 3][sender],
            "the envelope names its real sender"
        );
    }
});
