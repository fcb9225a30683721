//! The store's task endpoints: `/api/v1/stores/{store}/actions[/{name}]`. The bot POSTs a
//! task's slots to the endpoint named after it (`order_status`, `urge_shipping`,
//! `change_address`, `cancel_order`, or a task of the store's own intents) and fills its reply
//! from the answer (`docs/actions.md`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiResult, authorize, json_body};
use crate::gateway::AppState;
use crate::store::ActionEndpoint;

/// `{"url": "https://…", "timeout_ms": 3000, "new_secret": false}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    url: String,
    #[serde(default)]
    timeout_ms: Option<u64>,
    /// Make a new signing secret (the old one stops at once).
    #[serde(default)]
    new_secret: bool,
}

fn shown(endpoint: &ActionEndpoint) -> Value {
    json!({
        "name": endpoint.name,
        "url": endpoint.url,
        "timeout_ms": endpoint.timeout_ms,
        "secret": endpoint.secret,
    })
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_action",
        format!("this store has no endpoint for {name:?}; PUT {{\"url\": \"https://…\"}} to set one"),
    )
}

/// The store's endpoints, and the tasks its intents can call.
pub(super) async fn list_actions(
    State(state): State<AppState>,
    Path(store): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let store = authorize(&state, &headers, &store).await?;
    let endpoints = state.merchants.actions(&store).await?;
    let tasks: Vec<String> = state
        .library
        .get(&store)
        .map(|kb| kb.intents().intents().iter().filter_map(|i| Some(i.task.as_ref()?.name.clone())).collect())
        .unwrap_or_default();
    Ok(Json(json!({"actions": endpoints.iter().map(shown).collect::<Vec<_>>(), "tasks": tasks})))
}

pub(super) async fn show_action(
    State(state): State<AppState>,
    Path((store, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let store = authorize(&state, &headers, &store).await?;
    let endpoint = state.merchants.action(&store, &name).await?.ok_or_else(|| not_found(&name))?;
    Ok(Json(shown(&endpoint)))
}

/// Sets the endpoint a task calls. A new secret is made the first time (or when asked);
/// changing the URL or the timeout keeps it.
pub(super) async fn set_action(
    State(state): State<AppState>,
    Path((store, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let store = authorize(&state, &headers, &store).await?;
    if !crate::intents::valid_task_name(&name) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_action",
            format!("{name:?} is not a task name: 1 to 64 lowercase letters, digits and underscores"),
        ));
    }
    let body: ActionBody = json_body(&body, "{\"url\": \"https://…\", \"timeout_ms\": 3000}")?;
    let url = body.url.trim().to_owned();
    let config = &state.config.actions;
    crate::actions::check_url(&url, config.private_targets)
        .map_err(|message| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_url", message))?;
    let timeout_ms = body.timeout_ms.unwrap_or(config.timeout_ms);
    if !(1..=config.max_timeout_ms).contains(&timeout_ms) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_timeout",
            format!("timeout_ms must be 1 to {} (actions.max_timeout_ms)", config.max_timeout_ms),
        ));
    }
    let secret = match state.merchants.action(&store, &name).await? {
        Some(existing) if !body.new_secret => existing.secret,
        _ => crate::alerts::webhook::new_secret(),
    };
    let endpoint = ActionEndpoint { name, url, timeout_ms, secret };
    state.merchants.set_action(&store, &endpoint, state.clock.now()).await?;
    Ok(Json(shown(&endpoint)))
}

pub(super) async fn delete_action(
    State(state): State<AppState>,
    Path((store, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let store = authorize(&state, &headers, &store).await?;
    if state.merchants.delete_action(&store, &name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&name))
    }
}
