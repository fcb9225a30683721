//! Packs through the API: upload, versions, activation, export, single-entry deletes, and
//! asking a store a question as a shopper would (`/query`).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiResult, attachment, authorize, internal, json_body};
use crate::domain::StoreId;
use crate::gateway::AppState;
use crate::knowledge::Pack;
use crate::knowledge::formats::{self, Format};
use crate::library::PublishError;
use crate::store::PackVersion;
use crate::triage::{ChatContext, Decision, triage};

pub(super) fn version_json(v: &PackVersion, active: Option<u32>) -> Value {
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

pub(super) async fn show_store(
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
pub(super) struct UploadParams {
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

pub(super) async fn upload(
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

pub(super) async fn list_versions(
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

pub(super) async fn show_version(
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

pub(super) async fn activate(
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
pub(super) struct ExportParams {
    format: Option<String>,
}

pub(super) async fn export(
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
    let file_name = format!("{}-v{version}.{extension}", store.as_str());
    let mut response = attachment(text, format.content_type(), &file_name);
    response.headers_mut().insert("x-pack-version", HeaderValue::from(version));
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct QueryBody {
    /// The shopper's question.
    text: String,
    /// The product the chat is about, if any.
    #[serde(default)]
    product: Option<String>,
}

pub(super) async fn query(
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
        let ctx = ChatContext { consecutive_fallbacks: 0, product: body.product, pending: None };
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
            // /query decides without calling the store's endpoint.
            Decision::Act { intent, slots, .. } => json!({"kind": "task", "intent": intent, "slots": slots}),
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

pub(super) async fn delete_faq(
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

pub(super) async fn delete_product(
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
