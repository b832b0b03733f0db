//! The console's read-token cookie as a request's `Cookie` headers carry it: never a panic,
//! and a token found only when the cookie is named exactly.
#![no_main]

use axum::http::{header, HeaderMap, HeaderValue};
use frostnode::api::console::{cookie_token, READ_COOKIE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for part in data.split(|&b| b == b'\n') {
        if let Ok(v) = HeaderValue::from_bytes(part) {
            headers.append(header::COOKIE, v);
        }
    }
    if let Some(token) = cookie_token(&headers) {
        let text = String::from_utf8_lossy(data);
        assert!(text.contains(&format!("{READ_COOKIE}=")), "{token:?} from {text:?}");
    }
});
