//! The operator console: one page at `GET /` (HTML, CSS and plain JavaScript embedded in the
//! binary, no build step) that reads the node's JSON endpoints every few seconds, and those
//! endpoints: `GET /v1/peers`, `GET /v1/sessions` and `GET /v1/latency`. The page itself holds
//! no data, so it needs no token; with `[api] read_token` set, it asks for the token and keeps
//! it in the tab's `sessionStorage` (scoped to this node's origin, gone with the tab), sending
//! it as a bearer token with its reads.

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;

use super::ApiResult;
use crate::node::journal::{LatencyView, SessionRecord};
use crate::node::peers::PeerInfo;
use crate::node::NodeHandle;

const PAGE: &str = include_str!("console.html");

/// `GET /`: the console.
pub async fn page() -> Response {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            // The page loads nothing from elsewhere and may not be framed.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        Html(PAGE),
    )
        .into_response()
}

/// `GET /v1/peers`: every configured peer as this node sees it.
pub async fn peers(State(node): State<NodeHandle>) -> ApiResult<Vec<PeerInfo>> {
    Ok(Json(node.peers().await?))
}

/// `GET /v1/sessions`: the sessions this node took part in recently, newest first.
pub async fn sessions(State(node): State<NodeHandle>) -> ApiResult<Vec<SessionRecord>> {
    Ok(Json(node.sessions().await?))
}

/// `GET /v1/latency`: signing latency over the last minutes.
pub async fn latency(State(node): State<NodeHandle>) -> ApiResult<LatencyView> {
    Ok(Json(node.latency().await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_reads_only_documented_endpoints() {
        for endpoint in [
            "/v1/status",
            "/v1/peers",
            "/v1/keys",
            "/v1/sessions",
            "/v1/latency",
        ] {
            assert!(PAGE.contains(endpoint), "{endpoint}");
        }
        // Data is put into the page as text, never as markup.
        assert!(!PAGE.contains("innerHTML"));
    }
}
