//! The merchant API: `/api/v1/stores/{store}/…`, JSON over HTTP, described by the OpenAPI
//! document at `/api/v1/openapi.json` (`docs/openapi.json`).
//!
//! Every call carries the store's key as `Authorization: Bearer …`. A missing, wrong or revoked
//! key gets 401. A key only reaches its own store: any other store's path gets the same 404 as a
//! store that does not exist, so a key cannot probe which stores exist.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use crate::domain::{ApiKey, MessageId, Millis, StoreId};
use crate::insight::{self, Bucket};
use crate::knowledge::formats::{self, Format};
use crate::knowledge::{Pack, PackError};
use crate::library::PublishError;
use crate::store::{PackVersion, StoreError};
use crate::triage::{ChatContext, Decision, triage};

/// The OpenAPI document, served as is.
const OPENAPI: &str = include_str!("../../docs/openapi.json");

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
        .route("/api/v1/stores/{store}/insights", get(insights))
        .route("/api/v1/stores/{store}/reviews", get(reviews))
        .route("/api/v1/stores/{store}/clusters", get(list_clusters))
        .route("/api/v1/stores/{store}/clusters/{id}/accept", post(accept_cluster))
        .route("/api/v1/stores/{store}/clusters/{id}/dismiss", post(dismiss_cluster))
        .route("/api/v1/stores/{store}/clusters/{id}/message", post(message_cluster))
        .route("/api/v1/stores/{store}/alerts", get(list_alerts))
        .route("/api/v1/stores/{store}/alerts/{id}", get(show_alert))
        .route("/api/v1/stores/{store}/alerts/{id}/message", post(message_alert))
        .route("/api/v1/stores/{store}/webhook", get(show_webhook).put(set_webhook).delete(delete_webhook))
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
fn internal(error: impl std::fmt::Display) -> ApiError {
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

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

fn version_json(v: &PackVersion, active: Option<u32>) -> Value {
    json!({
        "version": v.version,
        "active": active == Some(v.version),
        "format": v.format,
        "source": v.source,
        "faq": v.faq,
        "products": v.products,
        "fingerprint": v.fingerprint,
        "created_at": v.created_at.0,
    })
}

async fn show_store(
    State(state): State<AppState>,
    Path(store): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let store = authorize(&state, &headers, &store).await?;
    let shelf = state.library.shelf(&store).ok_or_else(|| ApiError::unknown_store(store.as_str()))?;
    Ok(Json(json!({
        "store": store.as_str(),
        "active_version": shelf.version,
        "faq": shelf.knowledge.faq().len(),
        "products": shelf.knowledge.catalog().products().len(),
    })))
}

#[derive(Debug, Deserialize)]
struct UploadParams {
    /// The format's name; otherwise the Content-Type, the file name or the content decides.
    format: Option<String>,
    /// The uploaded file's name, for its extension.
    filename: Option<String>,
}

/// The format a Content-Type names, where it names one.
fn format_of_content_type(headers: &HeaderMap) -> Option<Format> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let media = value.split(';').next()?.trim().to_ascii_lowercase();
    match media.as_str() {
        "application/json" => Some(Format::Json),
        "application/yaml" | "application/x-yaml" | "text/yaml" => Some(Format::Yaml),
        "application/toml" => Some(Format::Toml),
        "text/tab-separated-values" => Some(Format::QnaTsv),
        _ => None,
    }
}

async fn upload(
    State(state): State<AppState>,
    Path(store): Path<String>,
    Query(params): Query<UploadParams>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let store = authorize(&state, &headers, &store).await?;
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            let max = state.config.merchant.max_pack_bytes;
            ApiError::new(status, "pack_too_large", format!("the pack is larger than the {max} bytes accepted; split it or raise merchant.max_pack_bytes"))
        } else {
            ApiError::new(status, "unreadable_body", rejection.body_text())
        }
    })?;
    if body.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty_pack",
            "the request body is empty; send the pack file as the body",
        ));
    }
    let format = match params.format.as_deref() {
        Some(name) => Some(Format::parse(name).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "unknown_format",
                format!("unknown format {name:?}; use one of: {}", Format::ALL.map(Format::name).join(", ")),
            )
        })?),
        None => params
            .filename
            .as_deref()
            .and_then(Format::from_file_name)
            .or_else(|| format_of_content_type(&headers)),
    };
    let file_name = params.filename.clone();
    let imported = tokio::task::spawn_blocking(move || formats::import(&body, format, file_name.as_deref()))
        .await
        .map_err(internal)?
        .map_err(ApiError::invalid_pack)?;
    let faq = imported.pack.faq.len();
    let version =
        state.library.publish(&store, imported.pack, imported.format, "http", state.clock.now()).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "version": version_json(&version, Some(version.version)),
            "format": imported.format.name(),
            "faq": faq,
            "notes": imported.notes,
        })),
    ))
}

async fn list_versions(
    State(state): State<AppState>,
    Path(store): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let store = authorize(&state, &headers, &store).await?;
    let active = state.library.shelf(&store).and_then(|s| s.version);
    let versions = state.merchants.pack_versions(&store).await?;
    Ok(Json(json!({
        "store": store.as_str(),
        "active_version": active,
        "versions": versions.iter().map(|v| version_json(v, active)).collect::<Vec<_>>(),
    })))
}

/// A version number from the path, read after the key is checked.
fn version_number(raw: &str) -> ApiResult<u32> {
    raw.parse().map_err(|_| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_version", format!("{raw:?} is not a version number"))
    })
}

async fn show_version(
    State(state): State<AppState>,
    Path((store, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let store = authorize(&state, &headers, &store).await?;
    let version = version_number(&version)?;
    let active = state.library.shelf(&store).and_then(|s| s.version);
    let (meta, content) = state
        .merchants
        .pack_version(&store, version)
        .await?
        .ok_or_else(|| ApiError::from(PublishError::NoSuchVersion(version)))?;
    let pack: Value = serde_json::from_str(&content).unwrap_or(Value::Null);
    let mut body = version_json(&meta, active);
    body["pack"] = pack;
    Ok(Json(body))
}

async fn activate(
    State(state): State<AppState>,
    Path((store, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let store = authorize(&state, &headers, &store).await?;
    let version = version_number(&version)?;
    let meta = state.library.activate(&store, version, state.clock.now()).await?;
    Ok(Json(json!({"version": version_json(&meta, Some(version))})))
}

#[derive(Debug, Deserialize)]
struct ExportParams {
    format: Option<String>,
}

async fn export(
    State(state): State<AppState>,
    Path(store): Path<String>,
    Query(params): Query<ExportParams>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let store = authorize(&state, &headers, &store).await?;
    let name = params.format.as_deref().unwrap_or("json");
    let format = Format::parse(name).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_format",
            format!("unknown format {name:?}; use one of: {}", Format::ALL.map(Format::name).join(", ")),
        )
    })?;
    let (meta, pack) = state.library.active_pack(&store).await?;
    let text = formats::export(&pack, format).map_err(internal)?;
    let version = meta.map_or(0, |m| m.version);
    let extension = match format {
        Format::QnaTsv => "tsv",
        Format::DialogflowCsv => "csv",
        other => other.name(),
    };
    let disposition = format!("attachment; filename=\"{}-v{version}.{extension}\"", store.as_str());
    let mut response = text.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert("x-pack-version", HeaderValue::from(version));
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryBody {
    /// The shopper's question.
    text: String,
    /// The product the chat is about, if any.
    #[serde(default)]
    product: Option<String>,
}

async fn query(
    State(state): State<AppState>,
    Path(store): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let store = authorize(&state, &headers, &store).await?;
    let body: QueryBody = json_body(&body, "{\"text\": …, \"product\"?: …}")?;
    let knowledge = state.library.get(&store).ok_or_else(|| ApiError::unknown_store(store.as_str()))?;
    if body.text.trim().is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "empty_text", "'text' is empty"));
    }
    let (config, now) = (Arc::clone(&state.config), state.clock.now());
    // As a shopper's message is decided: with its embedding, unless the lexical signals settle it.
    let vector = state.library.message_vector(&knowledge, &body.text).await;
    let answered = tokio::task::spawn_blocking(move || {
        let cfg = config.triage_for(store.as_str());
        let ctx = ChatContext { consecutive_fallbacks: 0, product: body.product };
        let lexical = triage(&body.text, &knowledge, &ctx, cfg, now, None);
        let vector = vector.filter(|_| !lexical.settled);
        let triaged = match &vector {
            Some(v) => triage(&body.text, &knowledge, &ctx, cfg, now, Some(v)),
            None => lexical,
        };
        let hits: Vec<Value> = knowledge
            .search(&body.text, 5, cfg.band(vector.is_some()).fusion, now, vector.as_deref())
            .into_iter()
            .map(|h| {
                json!({
                    "entry": knowledge.entry_id(h.entry),
                    "score": h.score,
                    "classifier": h.classifier,
                    "retrieval": h.retrieval,
                    "semantic": h.semantic,
                    "nearest": h.nearest,
                    "matched_question": h.matched,
                })
            })
            .collect();
        let decision = match triaged.decision {
            Decision::Answer { source, text, suggestions, notify } => {
                json!({"kind": "answer", "source": source, "text": text, "suggestions": suggestions, "notify": notify})
            }
            Decision::Clarify { text, suggestions } => json!({"kind": "clarify", "text": text, "suggestions": suggestions}),
            Decision::Fallback { text } => json!({"kind": "fallback", "text": text}),
            Decision::Escalate { reason, text } => json!({"kind": "handoff", "reason": reason, "text": text}),
        };
        json!({"decision": decision, "trace": triaged.trace, "hits": hits})
    })
    .await
    .map_err(internal)?;
    Ok(Json(answered))
}

/// Publishes the active pack changed by `edit`, as a new version.
async fn edit_pack(
    state: &AppState,
    store: &StoreId,
    edit: impl FnOnce(&mut Pack) -> ApiResult<()>,
) -> ApiResult<Json<Value>> {
    let version = state.library.edit(store, "http", state.clock.now(), edit).await?;
    Ok(Json(json!({"version": version_json(&version, Some(version.version))})))
}

/// Removes the items `matches` picks; a 404 with `code` and `message` when there are none.
fn remove<T>(
    items: &mut Vec<T>,
    matches: impl Fn(&T) -> bool,
    code: &'static str,
    message: String,
) -> ApiResult<()> {
    let before = items.len();
    items.retain(|item| !matches(item));
    if items.len() == before { Err(ApiError::new(StatusCode::NOT_FOUND, code, message)) } else { Ok(()) }
}

async fn delete_faq(
    State(state): State<AppState>,
    Path((store, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let store = authorize(&state, &headers, &store).await?;
    edit_pack(&state, &store, |pack| {
        remove(
            &mut pack.faq,
            |f| f.id == id,
            "unknown_entry",
            format!("the active pack has no FAQ entry {id:?}"),
        )
    })
    .await
}

async fn delete_product(
    State(state): State<AppState>,
    Path((store, sku)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let store = authorize(&state, &headers, &store).await?;
    edit_pack(&state, &store, |pack| {
        let missing = format!("the active pack has no product {sku:?}");
        remove(&mut pack.products, |p| p.sku == sku, "unknown_product", missing)?;
        for product in &mut pack.products {
            product.related.retain(|r| *r != sku);
        }
        Ok(())
    })
    .await
}

#[derive(Debug, Deserialize)]
struct RangeParams {
    /// `7d`, `24h`, `30m` ago, or an RFC 3339 instant; 7 days by default.
    since: Option<String>,
    /// An RFC 3339 instant; now by default.
    until: Option<String>,
    /// `hour` or `day` (default).
    bucket: Option<String>,
}

/// The range a request asks for.
fn range(params: &RangeParams, now: Millis) -> ApiResult<(Millis, Millis)> {
    let bad = |what: &str, value: &str| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_range",
            format!("{what} {value:?} is neither a duration like 7d, 24h, 30m nor an RFC 3339 instant"),
        )
    };
    let since = match params.since.as_deref() {
        None => Millis(now.0 - 7 * 24 * 3600 * 1000),
        Some(s) => insight::parse_since(s, now).ok_or_else(|| bad("since", s))?,
    };
    let until = match params.until.as_deref() {
        None => now,
        Some(u) => crate::knowledge::pack::parse_instant(u).ok_or_else(|| bad("until", u))?,
    };
    if since >= until {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_range",
            "'since' must be before 'until'",
        ));
    }
    Ok((since, until))
}

async fn insights(
    State(state): State<AppState>,
    Path(store): Path<String>,
    Query(params): Query<RangeParams>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let store = authorize(&state, &headers, &store).await?;
    let (since, until) = range(&params, state.clock.now())?;
    let bucket = match params.bucket.as_deref() {
        None => Bucket::Day,
        Some(b) => Bucket::parse(b).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_bucket",
                format!("bucket {b:?} is not hour or day"),
            )
        })?,
    };
    let history =
        state.insights.records(&store, since, Millis(until.0 + insight::ASKED_AGAIN_WITHIN)).await?;
    let offset = state.config.agents.utc_offset_minutes;
    let report = tokio::task::spawn_blocking(move || insight::report(&history, since, until, bucket, offset))
        .await
        .map_err(internal)?;
    Ok(Json(json!({"store": store.as_str(), "bucket": bucket, "report": report})))
}

async fn reviews(
    State(state): State<AppState>,
    Path(store): Path<String>,
    Query(params): Query<RangeParams>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let store = authorize(&state, &headers, &store).await?;
    let (since, until) = range(&params, state.clock.now())?;
    let history = state.insights.records(&store, since, until).await?;
    Ok(Json(json!({"store": store.as_str(), "reviews": insight::reviews(&history)})))
}

/// The store's clusters of unanswered questions over the range.
async fn clusters_of(
    state: &AppState,
    store: &StoreId,
    params: &RangeParams,
) -> ApiResult<Vec<insight::Cluster>> {
    let (since, until) = range(params, state.clock.now())?;
    let history = state.insights.records(store, since, until).await?;
    let analyzer = state.library.analyzer().clone();
    let texts: Vec<String> = insight::unanswered(&history)
        .into_iter()
        .rev()
        .take(insight::MAX_CLUSTERED)
        .map(|(_, t, ..)| t)
        .collect();
    let vectors = state.library.message_vectors(&texts).await;
    tokio::task::spawn_blocking(move || insight::clusters(&history, &analyzer, &vectors))
        .await
        .map_err(internal)
}

/// One cluster of the range, by id.
async fn find_cluster(
    state: &AppState,
    store: &StoreId,
    params: &RangeParams,
    id: &str,
) -> ApiResult<insight::Cluster> {
    let clusters = clusters_of(state, store, params).await?;
    clusters.into_iter().find(|c| c.id == id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_cluster",
            format!("no cluster {id:?} in this range (it may have been accepted or dismissed)"),
        )
    })
}

async fn list_clusters(
    State(state): State<AppState>,
    Path(store): Path<String>,
    Query(params): Query<RangeParams>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let store = authorize(&state, &headers, &store).await?;
    let clusters = clusters_of(&state, &store, &params).await?;
    Ok(Json(json!({"store": store.as_str(), "clusters": clusters})))
}

/// The merchant's edits to a draft; anything left out keeps the draft's.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DraftEdits {
    id: Option<String>,
    question: Option<String>,
    similar: Option<Vec<String>>,
    answer: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

async fn accept_cluster(
    State(state): State<AppState>,
    Path((store, id)): Path<(String, String)>,
    Query(params): Query<RangeParams>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let store = authorize(&state, &headers, &store).await?;
    let edits: DraftEdits =
        if body.is_empty() { DraftEdits::default() } else { json_body(&body, "the draft's edits")? };
    let cluster = find_cluster(&state, &store, &params, &id).await?;
    let question = edits.question.unwrap_or(cluster.draft.question);
    let Some(answer) = edits.answer.or(cluster.draft.answer).filter(|a| !a.trim().is_empty()) else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "answer_required",
            "no agent answered these questions; send the answer: {\"answer\": \"…\"}",
        ));
    };
    let entry_id =
        edits.id.unwrap_or_else(|| format!("draft-{}", &crate::library::fingerprint(&question)[..10]));
    let mut entry = crate::knowledge::FaqEntry::new(
        entry_id,
        crate::domain::LocalizedText::Plain(question),
        crate::domain::LocalizedText::Plain(answer),
    );
    entry.similar = edits.similar.unwrap_or(cluster.draft.similar);
    entry.tags = edits.tags;
    let messages = cluster.message_ids.clone();
    let version = state
        .library
        .edit(&store, "http", state.clock.now(), |pack| {
            pack.faq.push(entry);
            Ok::<(), ApiError>(())
        })
        .await?;
    // Its questions are answered now: they leave the clusters.
    state.insights.dismiss(&store, &messages, state.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(json!({"version": version_json(&version, Some(version.version))}))))
}

async fn dismiss_cluster(
    State(state): State<AppState>,
    Path((store, id)): Path<(String, String)>,
    Query(params): Query<RangeParams>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let store = authorize(&state, &headers, &store).await?;
    let cluster = find_cluster(&state, &store, &params, &id).await?;
    state.insights.dismiss(&store, &cluster.message_ids, state.clock.now()).await?;
    Ok(Json(json!({"dismissed": cluster.message_ids.len()})))
}

/// A notice to shoppers: `{"text": "…"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoticeBody {
    text: String,
}

/// Sends a notice to the shoppers who asked these questions and whose conversations are open.
async fn notify(
    state: &AppState,
    store: &StoreId,
    messages: &[MessageId],
    body: &Bytes,
) -> ApiResult<Json<Value>> {
    let notice: NoticeBody = json_body(body, "{\"text\": \"…\"}")?;
    let text = notice.text.trim();
    let max = state.config.chat.max_message_chars;
    if text.is_empty() || text.chars().count() > max {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_text",
            format!("the text must be 1 to {max} characters"),
        ));
    }
    let conversations = state.insights.open_conversations_of(store, messages).await?;
    let (stored, delivered) =
        state.desk.notify_shoppers(store, &conversations, text, state.clock.now()).await?;
    Ok(Json(json!({"conversations": stored, "delivered_now": delivered})))
}

async fn message_cluster(
    State(state): State<AppState>,
    Path((store, id)): Path<(String, String)>,
    Query(params): Query<RangeParams>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let store = authorize(&state, &headers, &store).await?;
    let cluster = find_cluster(&state, &store, &params, &id).await?;
    notify(&state, &store, &cluster.message_ids, &body).await
}

/// An alert as the merchant sees it: without its list of message ids.
fn alert_json(alert: &crate::store::AlertRow) -> Value {
    json!({
        "id": alert.id,
        "topic": alert.topic,
        "label": alert.label,
        "samples": alert.samples,
        "questions": alert.messages.len(),
        "count": alert.count,
        "expected": alert.expected,
        "started_at": alert.started_at,
        "last_seen_at": alert.last_seen_at,
        "ended_at": alert.ended_at,
        "open": alert.ended_at.is_none(),
        "webhook": alert.webhook,
        "webhook_attempts": alert.webhook_attempts,
    })
}

async fn find_alert(state: &AppState, store: &StoreId, id: &str) -> ApiResult<crate::store::AlertRow> {
    let unknown =
        || ApiError::new(StatusCode::NOT_FOUND, "unknown_alert", format!("no alert {id:?} in this store"));
    let id: i64 = id.parse().map_err(|_| unknown())?;
    state.insights.alert(store, id).await?.ok_or_else(unknown)
}

async fn list_alerts(
    State(state): State<AppState>,
    Path(store): Path<String>,
    Query(params): Query<RangeParams>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let store = authorize(&state, &headers, &store).await?;
    let (since, _) = range(&params, state.clock.now())?;
    let alerts = state.insights.alerts(&store, since).await?;
    let alerts: Vec<Value> = alerts.iter().map(alert_json).collect();
    Ok(Json(json!({"store": store.as_str(), "alerts": alerts})))
}

async fn show_alert(
    State(state): State<AppState>,
    Path((store, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let store = authorize(&state, &headers, &store).await?;
    Ok(Json(alert_json(&find_alert(&state, &store, &id).await?)))
}

async fn message_alert(
    State(state): State<AppState>,
    Path((store, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let store = authorize(&state, &headers, &store).await?;
    let alert = find_alert(&state, &store, &id).await?;
    notify(&state, &store, &alert.messages, &body).await
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
