//! A wide-area network on loopback, made in user space (these kernels have no `netem`): a TCP
//! relay in front of each node's libp2p listener that holds every chunk it forwards for half
//! the round-trip time, in each direction, and caps nothing else. Peers dial the relays, so
//! every connection between two nodes pays the full round-trip time per exchange.

use std::time::Duration;

use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Starts a relay on a free loopback port that forwards to `target` with `rtt / 2` of delay
/// each way; returns the relay's address (`target` unchanged if it is not a TCP address or
/// the relay cannot bind).
pub fn relay(target: Multiaddr, rtt: Duration) -> Multiaddr {
    let Some(port) = target.iter().find_map(|p| match p {
        Protocol::Tcp(port) => Some(port),
        _ => None,
    }) else {
        return target;
    };
    let listener = match std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(TcpListener::from_std)
    {
        Ok(l) => l,
        Err(e) => {
            eprintln!("warning: no delaying relay for {target}: {e}");
            return target;
        }
    };
    let Ok(local) = listener.local_addr() else {
        return target;
    };
    let half = rtt / 2;
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(outbound) = TcpStream::connect(("127.0.0.1", port)).await else {
                    return;
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let (in_read, in_write) = inbound.into_split();
                let (out_read, out_write) = outbound.into_split();
                tokio::spawn(pump(in_read, out_write, half));
                tokio::spawn(pump(out_read, in_write, half));
            });
        }
    });
    format!("/ip4/127.0.0.1/tcp/{}", local.port())
        .parse()
        .unwrap_or(target)
}

/// Copies `from` to `to`, each chunk released `delay` after it was read, in order.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}
