//! The operator console: one page at `GET /` (HTML, CSS and plain JavaScript embedded in the
//! binary, no build step) that reads the node's JSON endpoints every few seconds, and those
//! endpoints: `GET /v1/peers`, `GET /v1/sessions` and `GET /v1/latency`. With `[api]
//! read_token` set, the page asks for the token once and keeps it in a same-site cookie that
//! only grants reads; nothing the page shows is secret.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;

use super::ApiResult;
use crate::node::journal::{LatencyView, SessionRecord};
use crate::node::peers::PeerInfo;
use crate::node::NodeHandle;

/// The cookie that carries the read token for the console's own requests.
pub const READ_COOKIE: &str = "frostnode_read_token";

const PAGE: &str = include_str!("console.html");
const LOGIN: &str = include_str!("console_login.html");

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

/// What `GET /` answers when the read token is missing: a form that stores it in the cookie.
pub fn login() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 frame-ancestors 'none'",
            ),
        ],
        Html(LOGIN),
    )
        .into_response()
}

/// The read token in the console's cookie, if any.
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == READ_COOKIE)
        .map(|(_, value)| {
            percent_encoding::percent_decode_str(value)
                .decode_utf8_lossy()
                .into_owned()
        })
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
    use axum::http::HeaderValue;

    #[test]
    fn finds_the_read_cookie_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; frostnode_read_token=s3cret; b=2"),
        );
        assert_eq!(cookie_token(&h).as_deref(), Some("s3cret"));
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("frostnode_read_token=a%3Bb%20c"),
        );
        assert_eq!(cookie_token(&h).as_deref(), Some("a;b c"));
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("frostnode_read_tokenx=no"),
        );
        assert_eq!(cookie_token(&h), None);
    }

    proptest::proptest! {
        #[test]
        fn a_cookie_round_trips_any_token(
            token in "[!-~]{16,64}",
            before in "[a-z]{1,8}=[a-z0-9]{0,8}",
        ) {
            // As the login page stores it: encodeURIComponent's output, a subset of this set.
            const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
                .remove(b'-').remove(b'_').remove(b'.').remove(b'!').remove(b'~')
                .remove(b'*').remove(b'\'').remove(b'(').remove(b')');
            let encoded = percent_encoding::utf8_percent_encode(&token, SET).to_string();
            let mut h = HeaderMap::new();
            let value = format!("{before}; {READ_COOKIE}={encoded}");
            h.append(header::COOKIE, HeaderValue::from_str(&value).unwrap());
            proptest::prop_assert_eq!(cookie_token(&h), Some(token));
        }

        #[test]
        fn arbitrary_cookie_headers_never_panic(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_bytes(&raw) {
                h.append(header::COOKIE, v);
            }
            let found = cookie_token(&h);
            if found.is_some() {
                proptest::prop_assert!(String::from_utf8_lossy(&raw).contains(READ_COOKIE));
            }
        }
    }

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
