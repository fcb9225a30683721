//! The gateway: HTTP routes and the shopper WebSocket, where input is parsed into domain types.
//!
//! `GET /ws/chat?store=STORE` upgrades to the chat protocol ([`crate::protocol`]);
//! `GET /ws/agent` to the agents' protocol ([`crate::escalation::wire`]);
//! `/api/v1/…` is the merchant API ([`merchant`], described by `/api/v1/openapi.json`);
//! `/console`, `/widget.js` and `/chat-demo` are the web pages ([`pages`]);
//! `GET /healthz` answers when the server is up; `GET /readyz` says whether the encoder and
//! every store's semantic index are ready. Errors become `error` frames or JSON error
//! bodies here, and only here; shoppers and merchants never see internals.

mod agent;
mod chat;
mod limits;
mod listener;
mod merchant;
mod pages;

pub use limits::{ConnectionLimit, Limited, Limits};
pub use listener::{Admitted, Open, serve};

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::domain::Clock;
use crate::escalation::Desk;
use crate::library::Library;
use crate::metrics::Metrics;
use crate::store::{Agents, Insights, Merchants, Store};

/// Everything the handlers share: cheap-to-clone handles, built once at start-up.
#[derive(Clone)]
pub struct AppState {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Conversations and messages.
    pub store: Arc<dyn Store>,
    /// Stores, keys and pack versions.
    pub merchants: Arc<dyn Merchants>,
    /// Feedback, and the history measures are computed from.
    pub insights: Arc<dyn Insights>,
    /// Agents, the queue's state, VIPs.
    pub agents: Arc<dyn Agents>,
    /// Each served store's live knowledge.
    pub library: Arc<Library>,
    /// The queue of chats for people, and the agents online.
    pub desk: Arc<Desk>,
    /// Operators' metrics.
    pub metrics: Arc<Metrics>,
    /// Where "now" comes from (validity windows, timestamps).
    pub clock: Clock,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
    /// Tracks open WebSocket tasks, so shutdown can wait for them.
    pub connections: TaskTracker,
    /// Rate limits shared by every connection and request.
    pub limits: Arc<Limits>,
}

/// The HTTP router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/ws/chat", get(chat::upgrade))
        .route("/ws/agent", get(agent::upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readiness))
        .route("/metrics", get(metrics))
        .merge(merchant::routes(&state))
        .merge(pages::routes())
        .merge(agent::routes())
        .layer(axum::middleware::from_fn_with_state(state.clone(), limit_api))
        .with_state(state)
}

/// Refuses an API request over its address's rate limit with 429, `Retry-After` and a JSON
/// body saying when to try again.
async fn limit_api(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let peer =
        request.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    if let (true, Some(peer)) = (request.uri().path().starts_with("/api/"), peer)
        && let Err(wait) = state.limits.request(peer)
    {
        let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
        let body = serde_json::json!({
            "error": "rate_limited",
            "message": format!("too many requests from your address; try again in {ms} ms"),
            "retry_after_ms": ms,
        });
        let headers = [(axum::http::header::RETRY_AFTER, ms.div_ceil(1000).to_string())];
        return (axum::http::StatusCode::TOO_MANY_REQUESTS, headers, axum::Json(body)).into_response();
    }
    next.run(request).await
}

/// Whether the server serves everything it will: every store loaded, and the encoder either
/// running with every store's semantic index built, or known to be unavailable.
async fn readiness(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::Json<serde_json::Value> {
    use crate::encoder::Availability;
    let (encoder, detail, stats) = match state.library.encoder().availability() {
        Availability::Starting => ("starting", None, None),
        Availability::Ready(running) => ("ready", None, Some(running.stats())),
        Availability::Unavailable(why) => ("unavailable", Some(why), None),
    };
    let mut stores = serde_json::Map::new();
    let mut ready = encoder != "starting";
    for store in state.library.stores() {
        let semantic = match (encoder, state.library.semantic_ready(&store)) {
            ("ready", Some(true)) => "ready",
            ("unavailable", _) => "off",
            _ => {
                ready = false;
                "pending"
            }
        };
        let version = state.library.shelf(&store).and_then(|s| s.version);
        stores
            .insert(store.as_str().to_owned(), serde_json::json!({"version": version, "semantic": semantic}));
    }
    axum::Json(serde_json::json!({
        "ready": ready,
        "encoder": encoder,
        "encoder_detail": detail,
        "encoder_stats": stats,
        "stores": stores,
    }))
}

/// The Prometheus text exposition.
async fn metrics(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> impl axum::response::IntoResponse {
    let gauges = state.desk.gauges().await;
    state.metrics.set_encoder_available(state.library.encoder().get().is_some());
    (
        [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.render(&gauges),
    )
}
