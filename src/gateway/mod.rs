//! The gateway: HTTP routes and the shopper WebSocket, where input is parsed into domain types.
//!
//! `GET /ws/chat?store=STORE` upgrades to the chat protocol ([`crate::protocol`]);
//! `GET /healthz` answers when the server is up. Errors become `error` frames here, and only
//! here; shoppers never see internals.

mod chat;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::domain::StoreId;
use crate::knowledge::KnowledgeBase;
use crate::store::Store;

/// Everything the handlers share: cheap-to-clone handles, built once at start-up.
#[derive(Clone)]
pub struct AppState {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Conversations and messages.
    pub store: Arc<dyn Store>,
    /// Each served store's knowledge.
    pub knowledge: Arc<BTreeMap<StoreId, Arc<KnowledgeBase>>>,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
    /// Tracks open WebSocket tasks, so shutdown can wait for them.
    pub connections: TaskTracker,
}

/// The HTTP router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/ws/chat", get(chat::upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}
