//! The merchant API: `/api/v1/stores/{store}/…`, JSON over HTTP, described by the OpenAPI
//! document at `/api/v1/openapi.json` (`docs/openapi.json`).
//!
//! Every call carries the store's key as `Authorization: Bearer …`. A missing, wrong or revoked
//! key gets 401. A key only reaches its own store: any other store's path gets the same 404 as a
//! store that does not exist, so a key cannot probe which stores exist.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

mod actions;
mod insights;
mod packs;

use insights::{
    accept_cluster, conversations_csv, dismiss_cluster, list_alerts, list_clusters, message_alert,
    message_cluster, reviews, show_alert, show_insights,
};
use packs::{
    activate, delete_faq, delete_product, export, list_versions, query, show_store, show_version, upload,
};

use super::AppState;
use crate::domain::{ApiKey, StoreId};
use crate::knowledge::PackError;
use crate::library::PublishError;
use crate::store::StoreError;

/// The OpenAPI document, served as is.
const OPENAPI: &str = include_str!("../../../docs/openapi.json");

/// The merchant routes.
pub(super) fn routes(state: &AppState) -> Router<AppState> {
    let max_pack = state.config.merchant.max_pack_bytes;
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/stores/{store}", get(show_store))
        .route(
            "/api/v1/stores/{store}/packs",
            get(list_versions).post(upload).layer(DefaultBodyLimit::max(max_pack)),
        )
        .route("/api/v1/stores/{store}/packs/{version}", get(show_version))
        .route("/api/v1/stores/{store}/packs/{version}/activate", post(activate))
        .route("/api/v1/stores/{store}/pack", get(export))
        .route("/api/v1/stores/{store}/query", post(query))
        .route("/api/v1/stores/{store}/faq/{id}", delete(delete_faq))
        .route("/api/v1/stores/{store}/products/{sku}", delete(delete_product))
        .route("/api/v1/stores/{store}/insights", get(show_insights))
        .route("/api/v1/stores/{store}/reviews", get(reviews))
        .route("/api/v1/stores/{store}/conversations.csv", get(conversations_csv))
        .route("/api/v1/stores/{store}/clusters", get(list_clusters))
        .route("/api/v1/stores/{store}/clusters/{id}/accept", post(accept_cluster))
        .route("/api/v1/stores/{store}/clusters/{id}/dismiss", post(dismiss_cluster))
        .route("/api/v1/stores/{store}/clusters/{id}/message", post(message_cluster))
        .route("/api/v1/stores/{store}/alerts", get(list_alerts))
        .route("/api/v1/stores/{store}/alerts/{id}", get(show_alert))
        .route("/api/v1/stores/{store}/alerts/{id}/message", post(message_alert))
        .route("/api/v1/stores/{store}/webhook", get(show_webhook).put(set_webhook).delete(delete_webhook))
        .route("/api/v1/stores/{store}/actions", get(actions::list_actions))
        .route(
            "/api/v1/stores/{store}/actions/{name}",
            get(actions::show_action).put(actions::set_action).delete(actions::delete_action),
        )
        .merge(super::people::routes())
}

/// Reads a JSON body; a malformed one is a 400 that says what shape was expected.
pub(super) fn json_body<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", format!("the body must be {shape}: {e}"))
    })
}

/// An error as the merchant sees it: a status and `{"error", "message", "problems"?}`.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    problems: Vec<String>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), problems: Vec::new() }
    }

    fn unknown_store(store: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "unknown_store", format!("no store named {store:?} for this key"))
    }

    fn invalid_pack(error: PackError) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_pack",
            message: format!("the pack has {} problem(s); nothing was changed", error.problems.len()),
            problems: error.problems,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.code, "message": self.message});
        if !self.problems.is_empty() {
            body["problems"] = json!(self.problems);
        }
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        tracing::error!(%error, "merchant API: storage failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "storage failed; nothing was changed, try again",
        )
    }
}

impl From<PublishError> for ApiError {
    fn from(error: PublishError) -> Self {
        match error {
            PublishError::Pack(problems) => Self::invalid_pack(problems),
            PublishError::UnknownStore => Self::new(StatusCode::NOT_FOUND, "unknown_store", "no such store"),
            PublishError::NoSuchVersion(v) => Self::new(
                StatusCode::NOT_FOUND,
                "unknown_version",
                format!("the store has no pack version {v}"),
            ),
            PublishError::Store(e) => e.into(),
            PublishError::OverBudget(over) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "pack_too_large",
                format!("{over}; the previous version is still served"),
            ),
            PublishError::Build(e) => {
                tracing::error!(error = %e, "merchant API: building a pack failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "build_failed",
                    "building the knowledge base failed; the previous version is still served",
                )
            }
        }
    }
}

pub(super) type ApiResult<T> = Result<T, ApiError>;

/// A failure of mibot itself: logged, and reported without its details.
pub(super) fn internal(error: impl std::fmt::Display) -> ApiError {
    tracing::error!(%error, "merchant API: internal failure");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "mibot failed to handle this request; nothing was changed",
    )
}

/// The store the request's key opens, if it is `store`.
pub(super) async fn authorize(state: &AppState, headers: &HeaderMap, store: &str) -> ApiResult<StoreId> {
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
        .filter(|k| !k.is_empty());
    let Some(key) = key else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing_key",
            "send the store's API key as 'Authorization: Bearer <key>'",
        ));
    };
    let owner = state.merchants.store_for_key(&ApiKey(key.to_owned()).digest()).await?;
    match owner {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_key",
            "the API key is wrong or has been revoked",
        )),
        Some(owner) if owner.as_str() == store => Ok(owner),
        Some(_) => Err(ApiError::unknown_store(store)),
    }
}

/// A file for the merchant to save: `text` as `content_type`, named `file_name`.
pub(super) fn attachment(text: String, content_type: &'static str, file_name: &str) -> Response {
    let mut response = text.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Store names and the extensions mibot picks are plain ASCII: the header always builds.
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// The store's webhook: `{"url": "https://…"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookBody {
    url: String,
}

async fn show_webhook(
    State(state): State<AppState>,
    Path(store): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let store = authorize(&state, &headers, &store).await?;
    let hook = state.insights.webhook(&store).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_webhook",
            "this store has no webhook; PUT {\"url\": \"https://…\"} to set one",
        )
    })?;
    Ok(Json(json!({"url": hook.url, "secret": hook.secret})))
}

/// Sets the webhook alerts are POSTed to. A new secret is made the first time; changing the URL
/// keeps it.
async fn set_webhook(
    State(state): State<AppState>,
    Path(store): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let store = authorize(&state, &headers, &store).await?;
    let body: WebhookBody = json_body(&body, "{\"url\": \"https://…\"}")?;
    let url = body.url.trim().to_owned();
    crate::alerts::webhook::check_url(&url, state.config.alerts.webhook_private_targets)
        .map_err(|message| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_url", message))?;
    let secret = match state.insights.webhook(&store).await? {
        Some(existing) => existing.secret,
        None => crate::alerts::webhook::new_secret(),
    };
    let hook = crate::store::Webhook { url, secret };
    state.insights.set_webhook(&store, &hook, state.clock.now()).await?;
    Ok(Json(json!({"url": hook.url, "secret": hook.secret})))
}

async fn delete_webhook(
    State(state): State<AppState>,
    Path(store): Path<String>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let store = authorize(&state, &headers, &store).await?;
    if state.insights.delete_webhook(&store).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "no_webhook", "this store has no webhook"))
    }
}
