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
mod people;

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
    /// The other nodes of the deployment, when there are any (`cluster.redis_url`).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Calls to the stores' endpoints for tasks.
    pub actions: Arc<crate::actions::Actions>,
}

impl AppState {
    /// The same server with "now" from `clock` (tests set time by hand), its rate limits too.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.limits = Arc::new(Limits::new(&self.config.limits, clock.clone(), self.cluster.clone()));
        self.clock = clock;
        self
    }
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
    let trusted = &state.config.server.trusted_proxies;
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| limits::client_address(c.0.ip(), request.headers(), trusted));
    if let (true, Some(peer)) = (request.uri().path().starts_with("/api/"), peer)
        && let Err(wait) = state.limits.request(peer).await
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

/// An operator: a request from this machine, or one with `server.operator_token` as its
/// bearer token. Anyone else gets 401 (a token is set) or 403 (none is).
struct Operator;

impl axum::extract::FromRequestParts<AppState> for Operator {
    type Rejection = (axum::http::StatusCode, axum::Json<serde_json::Value>);

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // Behind a trusted proxy, the client is who the proxy says: a request it forwards from
        // elsewhere is not this machine's.
        let trusted = &state.config.server.trusted_proxies;
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| limits::client_address(c.0.ip(), &parts.headers, trusted));
        let bearer = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        operator_allowed(peer, bearer, state.config.server.operator_token.as_deref())
    }
}

/// Whether a request from `peer` with `bearer` may read the operators' endpoints.
fn operator_allowed(
    peer: Option<std::net::IpAddr>,
    bearer: Option<&str>,
    token: Option<&str>,
) -> Result<Operator, (axum::http::StatusCode, axum::Json<serde_json::Value>)> {
    use axum::http::StatusCode;
    let refuse = |status, message: &str| {
        Err((status, axum::Json(serde_json::json!({"error": "not_an_operator", "message": message}))))
    };
    match token {
        Some(token) => {
            if crate::domain::same_secret(bearer.unwrap_or(""), token) {
                Ok(Operator)
            } else {
                refuse(StatusCode::UNAUTHORIZED, "send the operator token as 'Authorization: Bearer <token>'")
            }
        }
        None if peer.is_some_and(|p| p.to_canonical().is_loopback()) => Ok(Operator),
        None => refuse(
            StatusCode::FORBIDDEN,
            "this endpoint answers this machine only; set server.operator_token to read it from elsewhere",
        ),
    }
}

/// Whether the server serves everything it will: every store loaded, and the encoder either
/// running with every store's semantic index built, or known to be unavailable.
async fn readiness(
    axum::extract::State(state): axum::extract::State<AppState>,
    _operator: Operator,
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
    _operator: Operator,
) -> impl axum::response::IntoResponse {
    let gauges = state.desk.gauges().await;
    state.metrics.set_encoder_available(state.library.encoder().get().is_some());
    if let Some(cluster) = &state.cluster {
        state.metrics.set_cluster(cluster);
    }
    (
        [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.render(&gauges),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_are_this_machine_or_hold_the_token() {
        let here: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        let mapped: std::net::IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let there: std::net::IpAddr = "203.0.113.9".parse().unwrap();
        assert!(operator_allowed(Some(here), None, None).is_ok());
        assert!(operator_allowed(Some(mapped), None, None).is_ok());
        let refused = operator_allowed(Some(there), None, None).err().unwrap();
        assert_eq!(refused.0, axum::http::StatusCode::FORBIDDEN);
        assert!(operator_allowed(Some(there), Some("s3cret-token"), Some("s3cret-token")).is_ok());
        for wrong in [None, Some("s3cret-tokeN"), Some("s3cret"), Some("")] {
            let refused = operator_allowed(Some(here), wrong, Some("s3cret-token")).err().unwrap();
            assert_eq!(refused.0, axum::http::StatusCode::UNAUTHORIZED, "{wrong:?}");
        }
    }
}
