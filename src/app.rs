//! Start-up and shutdown: builds [`AppState`] from a [`Config`], serves a bound listener until
//! the shutdown signal, then drains connections and closes the store.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, ContentConfig};
use crate::domain::{Clock, StoreId};
use crate::encoder::{Availability, Encoder, EncoderSlot, model_dir};
use crate::escalation::Desk;
pub use crate::gateway::AppState;
use crate::intents::IntentSet;
use crate::knowledge::KnowledgeBase;
use crate::library::Library;
use crate::store::{Agents, Embeddings, Insights, Merchants, Store};
use crate::text::Analyzer;

/// Opens the database, imports the knowledge directory's packs, builds every store's active
/// pack version, and starts the sentence encoder in the background.
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    let encoder = start_encoder(&config);
    build_state_with(config, encoder).await
}

/// Starts the sentence encoder on a blocking thread (installing the model on first run) and
/// returns its slot at once: stores answer on lexical signals until it is ready, or for good
/// when it cannot be had, which is logged here.
pub fn start_encoder(config: &Config) -> EncoderSlot {
    let (settle, slot) = EncoderSlot::starting();
    if !config.encoder.enabled {
        tracing::warn!(
            "the sentence encoder is turned off (encoder.enabled = false): answering on lexical signals only"
        );
        let _ = settle.send(Availability::Unavailable("turned off".into()));
        return slot;
    }
    let encoder_config = config.encoder.clone();
    let dir = model_dir(&config.encoder, &config.storage.data_dir);
    tracing::info!(dir = %dir.display(), "starting the sentence encoder");
    tokio::task::spawn_blocking(move || {
        let availability = match Encoder::start(&encoder_config, &dir) {
            Ok(encoder) => Availability::Ready(encoder),
            Err(error) => {
                tracing::warn!(%error, "the sentence encoder is unavailable: answering on lexical signals only");
                Availability::Unavailable(error.to_string())
            }
        };
        let _ = settle.send(availability);
    });
    slot
}

/// [`build_state`] with a given encoder (tests share one).
pub async fn build_state_with(config: Config, encoder: EncoderSlot) -> anyhow::Result<AppState> {
    config.validate()?;
    let store = crate::store::open(&config.storage)
        .await
        .with_context(|| format!("opening the database ({})", config.storage.describe()))?;
    let intents_dir = config.content.intents_dir.clone();
    let intents = tokio::task::spawn_blocking(move || IntentSet::load_dir(&intents_dir))
        .await?
        .with_context(|| format!("loading intents from {}", config.content.intents_dir.display()))?;
    let shutdown = CancellationToken::new();
    let cluster = crate::cluster::Cluster::connect(&config.cluster, shutdown.clone())
        .await
        .context("joining the cluster (cluster.redis_url)")?;
    let merchants: Arc<dyn Merchants> = store.clone();
    let library = Library::new(
        Arc::new(intents),
        Some(config.content.intents_dir.clone()),
        Some(config.storage.data_dir.join("index")),
        Arc::clone(&merchants),
    )
    .with_limits(config.content.size_limits())
    .with_concurrent_builds(config.content.concurrent_builds)
    .with_encoder(encoder, store.clone() as Arc<dyn Embeddings>)
    .with_cluster(cluster.clone());
    let clock = Clock::system();
    if config.content.knowledge_dir.exists() {
        library.import_directory(&config.content.knowledge_dir, clock.now()).await?;
    }
    library.sync().await.context("loading the stores' packs")?;
    anyhow::ensure!(
        !library.stores().is_empty(),
        "no stores: put packs under {} or create one with `mibot store create`",
        config.content.knowledge_dir.display()
    );
    let config = Arc::new(config);
    let library = Arc::new(library);
    let desk = Desk::open(store.clone() as Arc<dyn Agents>, Arc::clone(&library), Arc::clone(&config))
        .await
        .context("loading the queue")?
        .with_cluster(cluster.clone());
    let limits = Arc::new(crate::gateway::Limits::new(&config.limits, clock.clone(), cluster.clone()));
    let actions = crate::actions::Actions::new(&config.actions, Arc::clone(&merchants))
        .context("setting up calls to the stores' endpoints")?;
    Ok(AppState {
        actions: Arc::new(actions),
        config,
        insights: store.clone() as Arc<dyn Insights>,
        agents: store.clone() as Arc<dyn Agents>,
        store: store as Arc<dyn Store>,
        merchants,
        library,
        desk: Arc::new(desk),
        metrics: Arc::new(crate::metrics::Metrics::default()),
        clock,
        shutdown,
        cluster,
        connections: TaskTracker::new(),
        limits,
    })
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
    {
        let (desk, clock, token) = (Arc::clone(&state.desk), state.clock.clone(), token.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_millis(500));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = token.cancelled() => break,
                    _ = every.tick() => desk.sweep(clock.now()).await,
                }
            }
        });
    }
    {
        let (desk, token) = (Arc::clone(&state.desk), token.clone());
        let every = std::time::Duration::from_millis(state.config.agents.queue_update_ms);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(every);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = token.cancelled() => break,
                    _ = every.tick() => desk.announce_queues().await,
                }
            }
        });
    }
    if let Some(cluster) = &state.cluster {
        let mut ear = cluster.listen(token.clone());
        let (library, desk) = (Arc::clone(&state.library), Arc::clone(&state.desk));
        tokio::spawn(async move {
            while let Some(heard) = ear.recv().await {
                match heard {
                    crate::cluster::Heard::Note(crate::cluster::Note::Packs { store }) => {
                        tracing::info!(store = %store, "a pack changed on another node");
                        if let Err(error) = library.sync().await {
                            tracing::warn!(%error, "loading a pack changed on another node failed");
                        }
                    }
                    crate::cluster::Heard::Note(note) => desk.heard(note).await,
                    crate::cluster::Heard::Rejoined => {
                        if let Err(error) = library.sync().await {
                            tracing::warn!(%error, "checking for new pack versions failed");
                        }
                        desk.reread().await;
                    }
                }
            }
        });
    }
    let check = state.config.alerts.check_seconds;
    if check > 0 {
        let watch = crate::alerts::Watch::new(
            Arc::clone(&state.insights),
            Arc::clone(&state.merchants),
            Arc::clone(&state.library),
            Arc::clone(&state.desk),
            Arc::clone(&state.config),
        )?;
        let (clock, token, cluster) = (state.clock.clone(), token.clone(), state.cluster.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(check));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = token.cancelled() => break,
                    _ = every.tick() => {}
                }
                // With other nodes, one of them looks for spikes (and calls the webhooks).
                if let Some(cluster) = &cluster
                    && !cluster.hold("alerts", std::time::Duration::from_secs(check * 3)).await
                {
                    continue;
                }
                if let Err(error) = watch.check(clock.now()).await {
                    tracing::warn!(%error, "checking for spikes failed");
                }
            }
        });
    }
    let reload = state.config.content.reload_seconds;
    if reload > 0 {
        let (library, token) = (Arc::clone(&state.library), token.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(reload));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = token.cancelled() => break,
                    _ = every.tick() => {}
                }
                if let Err(error) = library.sync().await {
                    tracing::warn!(%error, "checking for new pack versions failed");
                }
            }
        });
    }
    tokio::spawn({
        let token = token.clone();
        async move {
            shutdown.await;
            token.cancel();
        }
    });
    tracing::info!(addr = %listener.local_addr()?, "listening");
    // Chat frames are small: without TCP_NODELAY, Nagle's algorithm and delayed ACKs add
    // tens of milliseconds to a reply (the listener sets it on every connection).
    let server = state.config.server.clone();
    crate::gateway::serve(listener, crate::gateway::router(state), server, token).await;
    connections.close();
    connections.wait().await;
    store.close().await;
    tracing::info!("shut down");
    Ok(())
}
