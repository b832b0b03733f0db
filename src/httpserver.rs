//! Serves the HTTP API over HTTP/1.1 with the limits a public listener needs: a client must send
//! its request headers within [`HEADER_READ_TIMEOUT`] (a slow-headers client cannot hold a
//! connection open), every request is answered within a bound (`408` otherwise, see
//! [`request_timeout`]), at most [`MAX_CONNECTIONS`] connections are served at once and none
//! lives longer than [`MAX_CONNECTION_LIFE`]. Shutdown stops accepting, then lets the requests
//! in flight finish.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, warn};

/// Time a client has to send a request's headers once its connection is open (or idle).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Time the requests in flight get to finish at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A middleware that answers `408` to a request not answered within `limit` (body reading
/// included). `limit` should exceed the longest operation the node bounds itself (a DKG).
pub async fn request_timeout(limit: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            axum::Json(serde_json::json!({
                "error": format!("request not completed within {} s", limit.as_secs()),
                "kind": "timeout",
            })),
        )
            .into_response(),
    }
}

/// Connections served at once; further clients wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 1024;

/// Longest life of one connection: then it finishes its request in flight and closes (a client
/// that never reads its answers cannot hold a connection forever). Clients reconnect.
pub const MAX_CONNECTION_LIFE: Duration = Duration::from_secs(300);

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, gives the
/// requests in flight [`SHUTDOWN_GRACE`] to finish, and drops whatever is left.
pub async fn serve(listener: TcpListener, router: Router, shutdown: impl Future<Output = ()>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => break,
        };
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, usually: wait a little instead of spinning.
                warn!(error = %e, "API cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(router.clone());
        let mut stop = stop_rx.clone();
        connections.spawn(async move {
            let _permit = permit;
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let result = tokio::select! {
                r = connection.as_mut() => r,
                _ = tokio::time::sleep(MAX_CONNECTION_LIFE) => {
                    connection.as_mut().graceful_shutdown();
                    connection.as_mut().await
                }
                _ = async { stop.wait_for(|stopping| *stopping).await.map(|_| ()) } => {
                    connection.as_mut().graceful_shutdown();
                    connection.as_mut().await
                }
            };
            if let Err(e) = result {
                debug!(error = %e, "API connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            left = connections.len(),
            "API requests still in flight after the shutdown grace period; dropped"
        );
        connections.abort_all();
    }
}
