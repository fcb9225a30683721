//! The merchant API's people: the store's agents' accounts (add, rotate and revoke their
//! sign-in tokens) and its VIP shoppers. Calls carry the store's key, as every merchant call.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::merchant::{ApiError, ApiResult, authorize, json_body};
use crate::domain::ApiKey;
use crate::store::AgentAccount;

/// The routes.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/stores/{store}/agents", post(add_agent))
        .route("/api/v1/stores/{store}/agents/{name}/rotate", post(rotate_agent))
        .route("/api/v1/stores/{store}/agents/{name}/revoke", post(revoke_agent))
        .route("/api/v1/stores/{store}/vips/{shopper}", put(add_vip).delete(remove_vip))
        .route("/api/v1/stores/{store}/identity/rotate", post(rotate_identity))
}

/// Issues (or replaces) the secret the storefront signs shoppers' member ids with: its server
/// sends `shopper_signature` = hex HMAC-SHA256(secret, member id) with the id. Ids signed with
/// an earlier secret are anonymous from now on.
async fn rotate_identity(
    State(state): State<AppState>,
    Path(store): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let store = authorize(&state, &headers, &store).await?;
    let secret = ApiKey::with_prefix("idsec_").0;
    state.merchants.set_identity_secret(&store, &secret).await?;
    Ok(Json(json!({"secret": secret})))
}

/// A new agent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAgent {
    name: String,
    #[serde(default)]
    groups: Vec<String>,
    max_chats: Option<u32>,
}

fn no_such_agent(name: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "unknown_agent", format!("this store has no agent named {name:?}"))
}

/// Adds an agent; the answer holds their sign-in token, shown only this once.
async fn add_agent(
    State(state): State<AppState>,
    Path(store): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let store = authorize(&state, &headers, &store).await?;
    let new: NewAgent = json_body(&body, r#"{"name": "...", "groups": ["..."], "max_chats": 3}"#)?;
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_agent",
            "an agent's name is 1 to 64 characters",
        ));
    }
    let account = AgentAccount {
        store,
        name: name.to_owned(),
        groups: new.groups.iter().map(|g| g.trim().to_owned()).filter(|g| !g.is_empty()).collect(),
        max_chats: new.max_chats.unwrap_or(state.config.agents.default_max_chats).max(1),
    };
    let token = ApiKey::with_prefix("at_");
    if !state.agents.add_agent(&account, &token.digest(), state.clock.now()).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "agent_exists",
            format!("this store already has an agent named {name:?}"),
        ));
    }
    let body = json!({"agent": account.name, "groups": account.groups, "max_chats": account.max_chats, "token": token.0});
    Ok((StatusCode::CREATED, Json(body)))
}

/// Gives an agent a new token; the old one stops working and a console signed in with it is
/// signed out at once.
async fn rotate_agent(
    State(state): State<AppState>,
    Path((store, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let store = authorize(&state, &headers, &store).await?;
    let token = ApiKey::with_prefix("at_");
    if !state.agents.set_agent_token(&store, &name, &token.digest()).await? {
        return Err(no_such_agent(&name));
    }
    state.desk.sign_out(&store, &name).await;
    Ok(Json(json!({"agent": name, "token": token.0})))
}

/// Ends an agent's token; a console signed in with it is signed out at once.
async fn revoke_agent(
    State(state): State<AppState>,
    Path((store, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let store = authorize(&state, &headers, &store).await?;
    let nobody = ApiKey::revoked_digest();
    if !state.agents.set_agent_token(&store, &name, &nobody).await? {
        return Err(no_such_agent(&name));
    }
    state.desk.sign_out(&store, &name).await;
    Ok(Json(json!({"agent": name, "revoked": true})))
}

async fn set_vip(
    state: &AppState,
    headers: &HeaderMap,
    store: &str,
    shopper: &str,
    vip: bool,
) -> ApiResult<Json<Value>> {
    let store = authorize(state, headers, store).await?;
    if shopper.trim().is_empty() || shopper.chars().count() > 128 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_shopper",
            "a shopper id is 1 to 128 characters",
        ));
    }
    state.agents.set_vip(&store, shopper, vip, state.clock.now()).await?;
    Ok(Json(json!({"shopper": shopper, "vip": vip})))
}

/// Marks a shopper (the storefront's id, as sent in `hello`) as VIP: their chats are served first.
async fn add_vip(
    State(state): State<AppState>,
    Path((store, shopper)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    set_vip(&state, &headers, &store, &shopper, true).await
}

async fn remove_vip(
    State(state): State<AppState>,
    Path((store, shopper)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    set_vip(&state, &headers, &store, &shopper, false).await
}
