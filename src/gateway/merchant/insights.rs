//! What the merchant learns from the conversations through the API: the measures, the review
//! list, the clusters of unanswered questions (with their drafts, accepted or dismissed), spike
//! alerts and messages to the shoppers concerned, and the conversations as CSV.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::packs::version_json;
use super::{ApiError, ApiResult, attachment, authorize, internal, json_body};
use crate::domain::{MessageId, Millis, StoreId};
use crate::gateway::AppState;
use crate::insight::{self, Bucket};

#[derive(Debug, Deserialize)]
pub(super) struct RangeParams {
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

/// The history the measures of `[since, until)` need: it reaches 24 hours past the range, so
/// that a shopper back with the same question un-resolves an earlier session.
async fn measured_history(
    state: &AppState,
    store: &StoreId,
    since: Millis,
    until: Millis,
) -> ApiResult<crate::store::History> {
    Ok(state.insights.records(store, since, Millis(until.0 + insight::ASKED_AGAIN_WITHIN)).await?)
}

pub(super) async fn show_insights(
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
    let history = measured_history(&state, &store, since, until).await?;
    let offset = state.config.agents.utc_offset_minutes;
    let mut report =
        tokio::task::spawn_blocking(move || insight::report(&history, since, until, bucket, offset))
            .await
            .map_err(internal)?;
    if let Some(kb) = state.library.get(&store) {
        for entry in &mut report.top_entries {
            entry.question = kb.entry_question(&entry.entry, crate::domain::Lang::Zh);
        }
    }
    Ok(Json(json!({"store": store.as_str(), "bucket": bucket, "report": report})))
}

/// The conversations of the range as CSV, one row each with its resolution and reason.
pub(super) async fn conversations_csv(
    State(state): State<AppState>,
    Path(store): Path<String>,
    Query(params): Query<RangeParams>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let store = authorize(&state, &headers, &store).await?;
    let (since, until) = range(&params, state.clock.now())?;
    let history = measured_history(&state, &store, since, until).await?;
    let offset = state.config.agents.utc_offset_minutes;
    let csv = tokio::task::spawn_blocking(move || insight::conversations_csv(&history, since, until, offset))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    let file_name = format!("{}-conversations.csv", store.as_str());
    // A byte-order mark, so that Excel opens the Chinese in it as UTF-8.
    Ok(attachment(format!("\u{feff}{csv}"), "text/csv; charset=utf-8", &file_name))
}

pub(super) async fn reviews(
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
    let (kb, config, now) = (state.library.get(store), Arc::clone(&state.config), state.clock.now());
    tokio::task::spawn_blocking(move || {
        let mut clusters = insight::clusters(&history, &analyzer, &vectors);
        if let Some(kb) = kb {
            let vector = |text: &str| vectors.get(text).cloned();
            insight::propose(&mut clusters, &kb, &config.triage, now, &vector);
        }
        clusters
    })
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

pub(super) async fn list_clusters(
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
pub(super) struct DraftEdits {
    id: Option<String>,
    question: Option<String>,
    similar: Option<Vec<String>>,
    answer: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

pub(super) async fn accept_cluster(
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
        let message = match &cluster.draft.proposal {
            Some(p) => format!(
                "no agent answered these questions, and the proposed answer (from entry {:?}) is only a \
                 starting point: check it, edit it and send it: {{\"answer\": \"…\"}}",
                p.entry
            ),
            None => "no agent answered these questions; send the answer: {\"answer\": \"…\"}".to_owned(),
        };
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "answer_required", message));
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

pub(super) async fn dismiss_cluster(
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
pub(super) struct NoticeBody {
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

pub(super) async fn message_cluster(
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
        "id": crate::ids::encode(crate::ids::Kind::Alert, alert.id),
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
    let id = crate::ids::decode(crate::ids::Kind::Alert, id).ok_or_else(unknown)?;
    state.insights.alert(store, id).await?.ok_or_else(unknown)
}

pub(super) async fn list_alerts(
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

pub(super) async fn show_alert(
    State(state): State<AppState>,
    Path((store, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let store = authorize(&state, &headers, &store).await?;
    Ok(Json(alert_json(&find_alert(&state, &store, &id).await?)))
}

pub(super) async fn message_alert(
    State(state): State<AppState>,
    Path((store, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let store = authorize(&state, &headers, &store).await?;
    let alert = find_alert(&state, &store, &id).await?;
    notify(&state, &store, &alert.messages, &body).await
}
