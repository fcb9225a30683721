//! Start-up and shutdown: builds [`AppState`] from a [`Config`], serves a bound listener until
//! the shutdown signal, then drains connections and closes the store.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, ContentConfig};
use crate::domain::StoreId;
pub use crate::gateway::AppState;
use crate::intents::IntentSet;
use crate::knowledge::KnowledgeBase;
use crate::store::Store;
use crate::store::sqlite::SqliteStore;
use crate::text::Analyzer;

/// Loads intents and every store's knowledge, and opens the database.
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    config.validate()?;
    let store = SqliteStore::open(&config.storage.data_dir)
        .await
        .with_context(|| format!("opening the database in {}", config.storage.data_dir.display()))?;
    let content = config.content.clone();
    let index_root = config.storage.data_dir.join("index");
    let knowledge = tokio::task::spawn_blocking(move || {
        load_knowledge(&content.intents_dir, &content.knowledge_dir, &index_root)
    })
    .await
    .context("loading knowledge")??;
    Ok(AppState {
        config: Arc::new(config),
        store: Arc::new(store) as Arc<dyn Store>,
        knowledge: Arc::new(knowledge),
        shutdown: CancellationToken::new(),
        connections: TaskTracker::new(),
    })
}

/// Builds every store found under `knowledge_dir`: each sub-directory holding a `faq.toml` or
/// `products.toml` is a store named after it.
pub fn load_knowledge(
    intents_dir: &Path,
    knowledge_dir: &Path,
    index_root: &Path,
) -> anyhow::Result<BTreeMap<StoreId, Arc<KnowledgeBase>>> {
    let intents = Arc::new(
        IntentSet::load_dir(intents_dir)
            .with_context(|| format!("loading intents from {}", intents_dir.display()))?,
    );
    let analyzer = Analyzer::new();
    let mut stores = BTreeMap::new();
    let entries = std::fs::read_dir(knowledge_dir)
        .with_context(|| format!("reading the knowledge directory {}", knowledge_dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if !path.is_dir() || !(path.join("faq.toml").exists() || path.join("products.toml").exists()) {
            continue;
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let id = StoreId::parse(name).with_context(|| format!("store directory {}", path.display()))?;
        let kb =
            KnowledgeBase::load(id.clone(), knowledge_dir, Arc::clone(&intents), &analyzer, Some(index_root))
                .with_context(|| format!("loading store {id:?} from {}", path.display()))?;
        tracing::info!(store = %id, faq = kb.faq().len(), products = kb.catalog().products().len(), "store loaded");
        stores.insert(id, Arc::new(kb));
    }
    anyhow::ensure!(!stores.is_empty(), "no store packs found under {}", knowledge_dir.display());
    Ok(stores)
}

/// Builds one store's knowledge in memory, as `serve` builds it (for `ask` and `eval`).
pub fn load_store(content: &ContentConfig, store: &str) -> anyhow::Result<KnowledgeBase> {
    let store = StoreId::parse(store)?;
    let intents = Arc::new(IntentSet::load_dir(&content.intents_dir)?);
    Ok(KnowledgeBase::load(store, &content.knowledge_dir, intents, &Analyzer::new(), None)?)
}

/// Serves `listener` until `shutdown` completes, then closes every shopper connection (close
/// code 1001), waits for them, and closes the store.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let token = state.shutdown.clone();
    let connections = state.connections.clone();
    let store = Arc::clone(&state.store);
    tokio::spawn({
        let token = token.clone();
        async move {
            shutdown.await;
            token.cancel();
        }
    });
    tracing::info!(addr = %listener.local_addr()?, "listening");
    // Chat frames are small: without TCP_NODELAY, Nagle's algorithm and delayed ACKs add
    // tens of milliseconds to a reply.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, crate::gateway::router(state))
        .with_graceful_shutdown(token.cancelled_owned())
        .await
        .context("serving")?;
    connections.close();
    connections.wait().await;
    store.close().await;
    tracing::info!("shut down");
    Ok(())
}
