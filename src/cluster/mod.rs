//! Several nodes as one deployment, through Redis: notes relayed between nodes (pub/sub),
//! leases that let exactly one node run a periodic job or decide a conversation, and agents'
//! presence with a heartbeat per node.
//!
//! The database stays the source of truth. A note only tells other nodes to look again or to
//! pass an event on to a client connected to them; a note that is lost (Redis restarting, a
//! node's link dropping) costs a live update, not data: each node reads the queue and the
//! packs again when its link comes back, and a client that reconnects gets the history.

mod leases;
mod limits;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use leases::ConversationLease;

use crate::config::ClusterConfig;
use crate::domain::{ConversationId, MessageId, Millis, StoreId};
use crate::protocol::ServerEvent;
use crate::store::AlertRow;

/// Notes waiting to go out; past this, a note is dropped (and counted) rather than buffered.
const OUTBOX: usize = 10_000;

/// How often a node says it is alive, and how long its word lasts.
const HEARTBEAT: Duration = Duration::from_secs(1);
const NODE_TTL_MS: u64 = 4_000;

/// What one node tells the others.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Note {
    /// A store's active pack changed: load it.
    Packs {
        /// The store.
        store: StoreId,
    },
    /// A conversation's place with the humans changed (queued, assigned, transferred,
    /// closed): read it again from the database.
    Chat {
        /// The store.
        store: StoreId,
        /// The conversation.
        conversation: ConversationId,
    },
    /// An event for a shopper, for the node they are connected to.
    Shopper {
        /// The store.
        store: StoreId,
        /// The shopper's conversation.
        conversation: ConversationId,
        /// What to send.
        event: ServerEvent,
    },
    /// A shopper's message, for the agent who owns the chat.
    ShopperMessage {
        /// The store.
        store: StoreId,
        /// The agent.
        agent: String,
        /// The conversation.
        conversation: ConversationId,
        /// The stored message.
        message_id: MessageId,
        /// Its text.
        text: String,
        /// When it was stored.
        at: i64,
    },
    /// A shopper of a waiting chat wrote: the queues show their latest message.
    Waiting {
        /// The store.
        store: StoreId,
        /// The conversation.
        conversation: ConversationId,
        /// What they wrote.
        text: String,
    },
    /// A spike alert, for the store's agents.
    Alert {
        /// The alert.
        alert: Box<AlertRow>,
    },
    /// The agent's token was revoked or replaced: sign them out wherever they are.
    SignOut {
        /// The store.
        store: StoreId,
        /// The agent.
        agent: String,
    },
}

/// A note as sent: who sent it and when.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    node: String,
    sent_at: i64,
    note: Note,
}

/// What a node hears from the others.
#[derive(Debug)]
pub enum Heard {
    /// A note from another node.
    Note(Note),
    /// The link to Redis came back after a break: notes may have been missed, so read the
    /// queue and the packs again.
    Rejoined,
}

/// Relay figures, for `/metrics`.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Notes published.
    pub sent: AtomicU64,
    /// Notes dropped because the outbox was full or Redis refused them.
    pub dropped: AtomicU64,
    /// Notes heard from other nodes.
    pub heard: AtomicU64,
    /// How long the last note heard took from its sender, in milliseconds.
    pub last_lag_ms: AtomicI64,
}

/// Tells the nodes of the cluster `config` names, once, from a process that is not one of them
/// (the CLI); nothing when there is no cluster.
pub async fn announce(config: &ClusterConfig, note: Note) -> anyhow::Result<()> {
    let Some(url) = config.redis_url.as_deref() else { return Ok(()) };
    let mut conn = redis::Client::open(url)?.get_multiplexed_async_connection().await?;
    let prefix = config.prefix.as_deref().unwrap_or("mibot");
    let envelope = Envelope { node: "cli".into(), sent_at: Millis::now().0, note };
    let _: i64 = redis::cmd("PUBLISH")
        .arg(format!("{prefix}:notes"))
        .arg(serde_json::to_string(&envelope)?)
        .query_async(&mut conn)
        .await?;
    Ok(())
}

/// This node's link to the others.
pub struct Cluster {
    node: String,
    prefix: String,
    client: redis::Client,
    conn: ConnectionManager,
    outbox: mpsc::Sender<String>,
    stats: Arc<RelayStats>,
    held: std::sync::Mutex<BTreeSet<String>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.node)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects to the cluster's Redis, or `None` when `cluster.redis_url` is unset. Starts
    /// this node's heartbeat and its publisher, which stop with `stop`.
    pub async fn connect(
        config: &ClusterConfig,
        stop: CancellationToken,
    ) -> anyhow::Result<Option<Arc<Self>>> {
        let Some(url) = config.redis_url.as_deref() else { return Ok(None) };
        let client = redis::Client::open(url)?;
        let settings = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_response_timeout(Some(Duration::from_secs(3)));
        let conn = client.get_connection_manager_with_config(settings).await?;
        let node = config.node_id.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "node".into());
            format!("{host}-{}-{}", std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..6])
        });
        let prefix = config.prefix.clone().unwrap_or_else(|| "mibot".into());
        let (outbox, queue) = mpsc::channel(OUTBOX);
        let cluster = Arc::new(Self {
            node,
            prefix,
            client,
            conn,
            outbox,
            stats: Arc::default(),
            held: std::sync::Mutex::default(),
        });
        tokio::spawn(Arc::clone(&cluster).publisher(queue, stop.clone()));
        tokio::spawn(Arc::clone(&cluster).heartbeat(stop));
        tracing::info!(node = %cluster.node, "joined the cluster");
        Ok(Some(cluster))
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The relay's figures.
    pub fn stats(&self) -> &RelayStats {
        &self.stats
    }

    /// The leases this node holds now.
    pub fn leases_held(&self) -> Vec<String> {
        self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().cloned().collect()
    }

    fn key(&self, parts: &str) -> String {
        format!("{}:{parts}", self.prefix)
    }

    fn channel(&self) -> String {
        self.key("notes")
    }

    /// Tells the other nodes; never waits. A note that cannot be queued is dropped and counted.
    pub fn tell(&self, note: Note) {
        let envelope = Envelope { node: self.node.clone(), sent_at: Millis::now().0, note };
        let Ok(text) = serde_json::to_string(&envelope) else { return };
        if self.outbox.try_send(text).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn publisher(self: Arc<Self>, mut queue: mpsc::Receiver<String>, stop: CancellationToken) {
        let mut conn = self.conn.clone();
        let channel = self.channel();
        loop {
            let text = tokio::select! {
                () = stop.cancelled() => return,
                next = queue.recv() => match next { Some(text) => text, None => return },
            };
            let sent: redis::RedisResult<i64> =
                redis::cmd("PUBLISH").arg(&channel).arg(text).query_async(&mut conn).await;
            match sent {
                Ok(_) => self.stats.sent.fetch_add(1, Ordering::Relaxed),
                Err(error) => {
                    tracing::warn!(%error, "relaying a note to the other nodes failed");
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed)
                }
            };
        }
    }

    /// Listens to the other nodes until `stop`: their notes, and [`Heard::Rejoined`] after
    /// every break in the link (the first connection included).
    pub fn listen(self: &Arc<Self>, stop: CancellationToken) -> mpsc::Receiver<Heard> {
        let (heard, ear) = mpsc::channel(1024);
        let cluster = Arc::clone(self);
        tokio::spawn(async move {
            let mut first = true;
            while !stop.is_cancelled() {
                let subscribed = async {
                    let mut pubsub = cluster.client.get_async_pubsub().await?;
                    pubsub.subscribe(cluster.channel()).await?;
                    redis::RedisResult::Ok(pubsub)
                };
                let mut pubsub = match subscribed.await {
                    Ok(pubsub) => pubsub,
                    Err(error) => {
                        tracing::warn!(%error, "listening to the other nodes failed; trying again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                if !first {
                    tracing::info!("the link to the other nodes is back: reading the queue and packs again");
                }
                first = false;
                if heard.send(Heard::Rejoined).await.is_err() {
                    return;
                }
                let mut messages = pubsub.on_message();
                loop {
                    let message = tokio::select! {
                        () = stop.cancelled() => return,
                        message = messages.next() => message,
                    };
                    let Some(message) = message else { break };
                    let Ok(text) = message.get_payload::<String>() else { continue };
                    let Ok(envelope) = serde_json::from_str::<Envelope>(&text) else {
                        tracing::warn!("a note from another node did not parse");
                        continue;
                    };
                    if envelope.node == cluster.node {
                        continue;
                    }
                    cluster.stats.heard.fetch_add(1, Ordering::Relaxed);
                    cluster.stats.last_lag_ms.store(Millis::now().0 - envelope.sent_at, Ordering::Relaxed);
                    if heard.send(Heard::Note(envelope.note)).await.is_err() {
                        return;
                    }
                }
                tracing::warn!("the link to the other nodes dropped; reconnecting");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        ear
    }

    async fn heartbeat(self: Arc<Self>, stop: CancellationToken) {
        let mut conn = self.conn.clone();
        let key = self.key(&format!("node:{}", self.node));
        let mut every = tokio::time::interval(HEARTBEAT);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = every.tick() => {}
            }
            let beat: redis::RedisResult<()> = redis::cmd("SET")
                .arg(&key)
                .arg(Millis::now().0)
                .arg("PX")
                .arg(NODE_TTL_MS)
                .query_async(&mut conn)
                .await;
            if let Err(error) = beat {
                tracing::warn!(%error, "the cluster heartbeat failed");
            }
        }
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&key).query_async(&mut conn).await;
    }
}
