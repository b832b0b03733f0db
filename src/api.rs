//! The HTTP API (axum): JSON in and out, bytes as lowercase hex, errors as
//! `{"error": "...", "kind": "..."}` with the status codes of the design (400, 404, 409, 503,
//! 504, 500).

use std::collections::BTreeMap;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;

use crate::keystore::{self, KeyInfo};
use crate::metrics::SharedRegistry;
use crate::node::{KeygenRequest, NodeError, NodeHandle, SignResponse, StatusInfo};
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

/// The API routes, bound to one node; `/metrics` encodes `registry`.
pub fn router(node: NodeHandle, registry: SharedRegistry) -> Router {
    let metrics = Router::new()
        .route("/metrics", get(metrics))
        .with_state(registry);
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/status", get(status))
        .route("/v1/keys", post(create_key).get(list_keys))
        .route("/v1/keys/{key_id}", get(get_key))
        .route("/v1/keys/{key_id}/sign", post(sign))
        .fallback(not_found)
        .with_state(node)
        .merge(metrics)
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
    let token = value.strip_prefix("Bearer ")?.trim();
    (!token.is_empty()).then(|| token.to_string())
}

async fn create_key(
    State(node): State<NodeHandle>,
    headers: HeaderMap,
    body: Result<Json<KeygenRequest>, JsonRejection>,
) -> ApiResult<KeygenResponse> {
    let Json(mut req) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    req.token = bearer(&headers);
    let info = node.keygen(req).await?;
    Ok(Json(KeygenResponse {
        key_id: info.key_id,
        group_public_key: info.group_public_key,
        threshold: info.threshold,
        participants: info.participants,
    }))
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

/// Body of `POST /v1/keys/{key_id}/sign`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    /// Message to sign, hex.
    pub message: String,
}

async fn sign(
    State(node): State<NodeHandle>,
    Path(key_id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<SignRequest>, JsonRejection>,
) -> ApiResult<SignResponse> {
    keystore::validate_key_id(&key_id).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let Json(req) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let message = hex::decode(req.message.trim())
        .map_err(|e| ApiError::bad_request(format!("message is not hex: {e}")))?;
    Ok(Json(
        node.sign_with_token(&key_id, message, bearer(&headers))
            .await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn abort_errors_carry_culprits_and_reports_apart() {
        let err = NodeError::Aborted {
            message: "DKG failed".into(),
            kind: crate::wire::ErrorKind::DkgFailed,
            culprits: vec![],
            reported_by: BTreeMap::from([(2, vec![3])]),
        };
        let resp = ApiError::from(err).into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["kind"], "dkg_failed");
        assert_eq!(v["reported_by"], json!({ "2": [3] }));
        assert!(v.get("culprits").is_none(), "{v}");
    }
}
