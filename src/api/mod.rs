//! The HTTP API (axum): JSON in and out, bytes as lowercase hex, errors as
//! `{"error": "...", "kind": "..."}` with the status codes of the design (400, 404, 409, 503,
//! 504, 500).

pub mod console;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Extension, Json, Router};
use serde::Serialize;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::keystore::{self, KeyInfo};
use crate::metrics::SharedRegistry;
use crate::node::{
    BatchSignResponse, KeygenRequest, NodeError, NodeHandle, RefreshRequest, RepairRequest,
    ReshareRequest, SignResponse, StatusInfo,
};
use crate::wire::NodeId;

/// An API error: status code plus the JSON body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: String,
    message: String,
    culprits: Vec<NodeId>,
    missing: Vec<NodeId>,
    reported_by: BTreeMap<NodeId, Vec<NodeId>>,
    refused_by: BTreeMap<NodeId, String>,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "bad_request".into(),
            message: message.into(),
            culprits: vec![],
            missing: vec![],
            reported_by: BTreeMap::new(),
            refused_by: BTreeMap::new(),
        }
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        let status = match &e {
            NodeError::BadRequest(_) => StatusCode::BAD_REQUEST,
            NodeError::NotFound(_) => StatusCode::NOT_FOUND,
            NodeError::Conflict(_) => StatusCode::CONFLICT,
            NodeError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            NodeError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            NodeError::Aborted { .. } | NodeError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            NodeError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            NodeError::Refused { .. } => StatusCode::FORBIDDEN,
        };
        let (culprits, missing, reported_by) = match &e {
            NodeError::Unavailable { missing, .. } | NodeError::Timeout { missing, .. } => {
                (vec![], missing.clone(), BTreeMap::new())
            }
            NodeError::Aborted {
                culprits,
                reported_by,
                ..
            } => (culprits.clone(), vec![], reported_by.clone()),
            _ => (vec![], vec![], BTreeMap::new()),
        };
        let refused_by = match &e {
            NodeError::Refused { refused_by, .. } => refused_by.clone(),
            _ => BTreeMap::new(),
        };
        ApiError {
            status,
            kind: e.kind().as_str().to_string(),
            message: e.to_string(),
            culprits,
            missing,
            reported_by,
            refused_by,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message, "kind": self.kind });
        if !self.culprits.is_empty() {
            body["culprits"] = json!(self.culprits);
        }
        if !self.missing.is_empty() {
            body["missing"] = json!(self.missing);
        }
        if !self.reported_by.is_empty() {
            body["reported_by"] = json!(self.reported_by);
        }
        if !self.refused_by.is_empty() {
            body["refused_by"] = json!(self.refused_by);
        }
        (self.status, Json(body)).into_response()
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// Answer of `POST /v1/keys`.
#[derive(Debug, Serialize)]
pub struct KeygenResponse {
    /// Key name.
    pub key_id: String,
    /// Group public key, hex.
    pub group_public_key: String,
    /// Threshold.
    pub threshold: u16,
    /// Participants.
    pub participants: Vec<NodeId>,
}

/// Largest request body: a 64 KiB message in hex, with room for the JSON around it.
pub const MAX_BODY: usize = 160 * 1024;

/// What the API accepts besides well-formed requests.
#[derive(Clone)]
pub struct ApiLimits {
    /// `Host` header values answered (lowercase), or `None` for any.
    pub allowed_hosts: Option<Vec<String>>,
    /// Signing and key generation requests served at once; more get 429.
    pub max_in_flight: usize,
    /// The token reads must carry, if any.
    pub read_token: Option<String>,
    /// Longest time a request may take (408 after).
    pub request_timeout: std::time::Duration,
}

impl std::fmt::Debug for ApiLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiLimits")
            .field("allowed_hosts", &self.allowed_hosts)
            .field("max_in_flight", &self.max_in_flight)
            .field("read_token", &self.read_token.as_ref().map(|_| "<set>"))
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl ApiLimits {
    /// The limits for an API bound to `addr`: the `configured` hosts if any; otherwise, on a
    /// loopback address, that address under its loopback names (so a web page that rebinds a
    /// DNS name to 127.0.0.1 is refused); otherwise any host. No read token, and a request
    /// timeout of one minute: set the fields to change them.
    pub fn for_address(addr: SocketAddr, configured: &[String], max_in_flight: usize) -> Self {
        let allowed_hosts = if !configured.is_empty() {
            Some(configured.to_vec())
        } else if addr.ip().is_loopback() {
            let port = addr.port();
            Some(vec![
                addr.to_string(),
                format!("127.0.0.1:{port}"),
                format!("localhost:{port}"),
                format!("[::1]:{port}"),
            ])
        } else {
            None
        };
        ApiLimits {
            allowed_hosts,
            max_in_flight,
            read_token: None,
            request_timeout: std::time::Duration::from_secs(60),
        }
    }
}

/// A body that could not be read as the JSON expected: 413 when it is too large, 400 otherwise.
fn rejected(e: JsonRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            kind: "too_large".into(),
            ..ApiError::bad_request(format!("request body exceeds {MAX_BODY} bytes"))
        };
    }
    ApiError::bad_request(e.body_text())
}

impl From<Box<ApiError>> for ApiError {
    fn from(e: Box<ApiError>) -> Self {
        *e
    }
}

/// Permits for signing and key generation requests.
#[derive(Clone)]
struct InFlight {
    permits: Arc<Semaphore>,
    max: usize,
}

impl InFlight {
    fn enter(&self) -> Result<OwnedSemaphorePermit, Box<ApiError>> {
        self.permits.clone().try_acquire_owned().map_err(|_| {
            Box::new(ApiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                kind: "busy".into(),
                message: format!(
                    "{} signing and key generation requests are in flight; retry shortly",
                    self.max
                ),
                ..ApiError::bad_request("")
            })
        })
    }
}

/// The API routes, bound to one node; `/metrics` encodes `registry`.
pub fn router(node: NodeHandle, registry: SharedRegistry, limits: ApiLimits) -> Router {
    let metrics = Router::new()
        .route("/metrics", get(metrics))
        .with_state(registry);
    let in_flight = InFlight {
        permits: Arc::new(Semaphore::new(limits.max_in_flight)),
        max: limits.max_in_flight,
    };
    let hosts = Arc::new(limits.allowed_hosts);
    let read_token = Arc::new(limits.read_token);
    let timeout = limits.request_timeout;
    Router::new()
        .route("/", get(console::page))
        .route("/v1/health", get(health))
        .route("/v1/status", get(status))
        .route("/v1/peers", get(console::peers))
        .route("/v1/sessions", get(console::sessions))
        .route("/v1/latency", get(console::latency))
        .route("/v1/keys", post(create_key).get(list_keys))
        .route("/v1/keys/{key_id}", get(get_key))
        .route("/v1/keys/{key_id}/sign", post(sign))
        .route("/v1/reload", post(reload))
        .route("/v1/keys/{key_id}/refresh", post(refresh_key))
        .route("/v1/keys/{key_id}/reshare", post(reshare_key))
        .route("/v1/keys/{key_id}/repair", post(repair_key))
        .route("/v1/keys/{key_id}/enrol", post(enrol_node))
        .fallback(not_found)
        .with_state(node)
        .merge(metrics)
        .layer(Extension(in_flight))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(read_token, check_read_token))
        .layer(middleware::from_fn(move |request, next| {
            crate::httpserver::request_timeout(timeout, request, next)
        }))
        .layer(middleware::from_fn_with_state(hosts, check_host))
}

/// With `[api] read_token` set, reads other than `/v1/health` and the console's page (which
/// holds no data: it asks for the token and sends it with its own reads) must carry it as a
/// bearer token (requests that change state carry client tokens, checked by the node).
async fn check_read_token(
    State(expected): State<Arc<Option<String>>>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    use sha2::{Digest, Sha256};
    if let Some(expected) = expected.as_ref() {
        let is_read = request.method() == axum::http::Method::GET
            || request.method() == axum::http::Method::HEAD;
        let open = ["/v1/health", "/"].contains(&request.uri().path());
        if is_read && !open {
            // Compared as digests: equal lengths, and no early exit on the secret's bytes.
            let given = bearer(request.headers()).unwrap_or_default();
            if Sha256::digest(given.as_bytes()) != Sha256::digest(expected.as_bytes()) {
                return ApiError {
                    status: StatusCode::UNAUTHORIZED,
                    kind: "unauthorized".into(),
                    message: "this API needs its read token (Authorization: Bearer …)".into(),
                    ..ApiError::bad_request("")
                }
                .into_response();
            }
        }
    }
    next.run(request).await
}

/// Refuses requests whose `Host` is not one this API answers (DNS rebinding).
async fn check_host(
    State(hosts): State<Arc<Option<Vec<String>>>>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    if let Some(allowed) = hosts.as_ref() {
        let host = request
            .headers()
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_ascii_lowercase);
        if !host.as_ref().is_some_and(|h| allowed.contains(h)) {
            return ApiError {
                status: StatusCode::MISDIRECTED_REQUEST,
                kind: "host_not_allowed".into(),
                message: format!(
                    "this API answers for {allowed:?}, not {:?} (set [api] allowed_hosts)",
                    host.unwrap_or_default()
                ),
                ..ApiError::bad_request("")
            }
            .into_response();
        }
    }
    next.run(request).await
}

async fn metrics(State(registry): State<SharedRegistry>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::encode(&registry),
    )
        .into_response()
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        kind: "not_found".into(),
        message: "no such endpoint".into(),
        culprits: vec![],
        missing: vec![],
        reported_by: BTreeMap::new(),
        refused_by: BTreeMap::new(),
    }
}

async fn status(State(node): State<NodeHandle>) -> ApiResult<StatusInfo> {
    Ok(Json(node.status().await?))
}

/// The client token of a request: `Authorization: Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    // The scheme is case-insensitive (RFC 9110 §11.1).
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_string())
}

async fn create_key(
    State(node): State<NodeHandle>,
    Extension(in_flight): Extension<InFlight>,
    headers: HeaderMap,
    body: Result<Json<KeygenRequest>, JsonRejection>,
) -> ApiResult<KeygenResponse> {
    let _permit = in_flight.enter()?;
    let Json(mut req) = body.map_err(rejected)?;
    req.token = bearer(&headers);
    let info = node.keygen(req).await?;
    Ok(Json(KeygenResponse {
        key_id: info.key_id,
        group_public_key: info.group_public_key,
        threshold: info.threshold,
        participants: info.participants,
    }))
}

/// `POST /v1/reload`: the node reads its config file again and takes its `[[peers]]` and
/// `[[clients]]` (as on `SIGHUP`).
async fn reload(State(node): State<NodeHandle>) -> ApiResult<crate::node::ReloadReport> {
    Ok(Json(node.reload(None).await?))
}

/// `POST /v1/keys/{key_id}/refresh`: new shares of the same key (optionally for fewer
/// participants), answered with the key's new info once every participant stored them.
async fn refresh_key(
    State(node): State<NodeHandle>,
    Extension(in_flight): Extension<InFlight>,
    Path(key_id): Path<String>,
    headers: HeaderMap,
    body: Option<Json<RefreshRequest>>,
) -> ApiResult<KeyInfo> {
    let _permit = in_flight.enter()?;
    keystore::validate_key_id(&key_id).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut req = body.map(|Json(r)| r).unwrap_or_default();
    req.key_id = key_id;
    req.token = bearer(&headers);
    Ok(Json(node.refresh(req).await?))
}

/// `POST /v1/keys/{key_id}/reshare` with `{"threshold": t, "participants": [...]}`: the same
/// group key under a new threshold and participants, answered with the key's new info once
/// every participant stored its share (or deleted it).
async fn reshare_key(
    State(node): State<NodeHandle>,
    Extension(in_flight): Extension<InFlight>,
    Path(key_id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<ReshareRequest>, JsonRejection>,
) -> ApiResult<KeyInfo> {
    let _permit = in_flight.enter()?;
    keystore::validate_key_id(&key_id).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let Json(mut req) = body.map_err(rejected)?;
    req.key_id = key_id;
    req.token = bearer(&headers);
    Ok(Json(node.reshare(req).await?))
}

/// `POST /v1/keys/{key_id}/repair` with `{"node": id}`: rebuilds the share of a participant
/// that lost it.
async fn repair_key(
    node: State<NodeHandle>,
    in_flight: Extension<InFlight>,
    key_id: Path<String>,
    headers: HeaderMap,
    body: Result<Json<RepairRequest>, JsonRejection>,
) -> ApiResult<KeyInfo> {
    repair(node, in_flight, key_id, headers, body, false).await
}

/// `POST /v1/keys/{key_id}/enrol` with `{"node": id}`: gives a new node a share of the key.
async fn enrol_node(
    node: State<NodeHandle>,
    in_flight: Extension<InFlight>,
    key_id: Path<String>,
    headers: HeaderMap,
    body: Result<Json<RepairRequest>, JsonRejection>,
) -> ApiResult<KeyInfo> {
    repair(node, in_flight, key_id, headers, body, true).await
}

async fn repair(
    State(node): State<NodeHandle>,
    Extension(in_flight): Extension<InFlight>,
    Path(key_id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<RepairRequest>, JsonRejection>,
    enrol: bool,
) -> ApiResult<KeyInfo> {
    let _permit = in_flight.enter()?;
    keystore::validate_key_id(&key_id).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let Json(mut req) = body.map_err(rejected)?;
    req.key_id = key_id;
    req.enrol = enrol;
    req.token = bearer(&headers);
    Ok(Json(node.repair(req).await?))
}

async fn list_keys(State(node): State<NodeHandle>) -> ApiResult<Vec<KeyInfo>> {
    Ok(Json(node.list_keys().await?))
}

async fn get_key(State(node): State<NodeHandle>, Path(key_id): Path<String>) -> ApiResult<KeyInfo> {
    keystore::validate_key_id(&key_id).map_err(|e| ApiError::bad_request(e.to_string()))?;
    match node.get_key(&key_id).await? {
        Some(info) => Ok(Json(info)),
        None => Err(NodeError::NotFound(format!("no key {key_id:?} on node {}", node.id())).into()),
    }
}

/// Body of `POST /v1/keys/{key_id}/sign`: one message, or a batch of them.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    /// Message to sign, hex.
    #[serde(default)]
    pub message: Option<String>,
    /// Messages to sign in one session (at most [`crate::node::MAX_BATCH`]), hex each.
    #[serde(default)]
    pub messages: Option<Vec<String>>,
}

/// The answer of `POST /v1/keys/{key_id}/sign`: shaped like the request.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum SignAnswer {
    /// For `message`.
    One(SignResponse),
    /// For `messages`.
    Batch(BatchSignResponse),
}

/// Decodes a batch's hex messages; the first bad one refuses the whole batch, named by index.
pub fn decode_batch(messages: &[String]) -> Result<Vec<Vec<u8>>, String> {
    if messages.is_empty() {
        return Err("messages is empty".into());
    }
    crate::node::checks::batch_count(messages.len())?;
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| hex::decode(m.trim()).map_err(|e| format!("message {i} is not hex: {e}")))
        .collect()
}

async fn sign(
    State(node): State<NodeHandle>,
    Extension(in_flight): Extension<InFlight>,
    Path(key_id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<SignRequest>, JsonRejection>,
) -> ApiResult<SignAnswer> {
    let _permit = in_flight.enter()?;
    keystore::validate_key_id(&key_id).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let Json(req) = body.map_err(rejected)?;
    match (req.message, req.messages) {
        (Some(message), None) => {
            let message = hex::decode(message.trim())
                .map_err(|e| ApiError::bad_request(format!("message is not hex: {e}")))?;
            let signed = node.sign(&key_id, message, bearer(&headers)).await?;
            Ok(Json(SignAnswer::One(signed)))
        }
        (None, Some(messages)) => {
            let messages = decode_batch(&messages).map_err(ApiError::bad_request)?;
            let signed = node.sign_batch(&key_id, messages, bearer(&headers)).await?;
            Ok(Json(SignAnswer::Batch(signed)))
        }
        _ => Err(ApiError::bad_request(
            "give exactly one of `message` (hex) and `messages` (a list of hex)",
        )),
    }
}

#[cfg(test)]
mod tests;
