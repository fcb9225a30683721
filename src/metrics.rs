//! Operators' metrics, in the Prometheus text format at `GET /metrics`: messages, the bot's
//! decisions by band, decision latency, and the queues.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabel {
    store: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabel {
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RelayLabel {
    node: String,
    notes: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LeaseLabel {
    node: String,
    lease: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SemanticLabel {
    semantic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    store: String,
    task: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplyLabels {
    store: String,
    kind: String,
}

/// The counters, histograms and gauges mibot exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    messages: Family<StoreLabel, Counter>,
    replies: Family<ReplyLabels, Counter>,
    decision: Histogram,
    waiting: Family<StoreLabel, Gauge>,
    with_agent: Family<StoreLabel, Gauge>,
    agents: Family<StoreLabel, Gauge>,
    semantic: Family<SemanticLabel, Counter>,
    encoder_available: Gauge,
    cluster_node: Family<NodeLabel, Gauge>,
    relay_notes: Family<RelayLabel, Gauge>,
    relay_lag: Family<NodeLabel, Gauge>,
    leases: Family<LeaseLabel, Gauge>,
    tasks: Family<TaskLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mibot");
        let messages = Family::<StoreLabel, Counter>::default();
        registry.register("shopper_messages", "Shopper messages stored", messages.clone());
        let replies = Family::<ReplyLabels, Counter>::default();
        registry.register(
            "bot_replies",
            "Bot replies by kind (answer, clarify, fallback, handoff)",
            replies.clone(),
        );
        // 50 µs to about 1.6 s.
        let decision = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        registry.register(
            "decision_seconds",
            "Time to decide a reply (triage), in seconds",
            decision.clone(),
        );
        let waiting = Family::<StoreLabel, Gauge>::default();
        registry.register("queue_waiting", "Chats waiting for a person", waiting.clone());
        let with_agent = Family::<StoreLabel, Gauge>::default();
        registry.register("queue_with_agent", "Chats a person is handling", with_agent.clone());
        let agents = Family::<StoreLabel, Gauge>::default();
        registry.register("agents_online", "Agents online and taking chats", agents.clone());
        let semantic = Family::<SemanticLabel, Counter>::default();
        registry.register(
            "semantic_decisions",
            "Bot decisions by what the sentence encoder contributed (encoded, cached, skipped, shed, pending, unavailable)",
            semantic.clone(),
        );
        let encoder_available = Gauge::default();
        registry.register(
            "encoder_available",
            "1 when the sentence encoder is running; 0 while it starts or when it is missing (lexical signals only)",
            encoder_available.clone(),
        );
        let cluster_node = Family::<NodeLabel, Gauge>::default();
        registry.register(
            "cluster_node",
            "1, labelled with this node's name, when it is part of a cluster",
            cluster_node.clone(),
        );
        let relay_notes = Family::<RelayLabel, Gauge>::default();
        registry.register(
            "relay_notes",
            "Notes to and from the other nodes: sent, heard, dropped",
            relay_notes.clone(),
        );
        let relay_lag = Family::<NodeLabel, Gauge>::default();
        registry.register(
            "relay_lag_milliseconds",
            "How long the last note heard took from its sender",
            relay_lag.clone(),
        );
        let leases = Family::<LeaseLabel, Gauge>::default();
        registry.register(
            "leases_held",
            "1 for each job lease this node holds (alerts, sweep)",
            leases.clone(),
        );
        let tasks = Family::<TaskLabels, Counter>::default();
        registry.register(
            "task_calls",
            "Calls to the stores' endpoints for tasks, by outcome (answered, failed)",
            tasks.clone(),
        );
        Self {
            tasks,
            cluster_node,
            relay_notes,
            relay_lag,
            leases,
            registry,
            messages,
            replies,
            decision,
            waiting,
            with_agent,
            agents,
            semantic,
            encoder_available,
        }
    }
}

impl Metrics {
    /// A shopper message was stored.
    pub fn message(&self, store: &str) {
        self.messages.get_or_create(&StoreLabel { store: store.to_owned() }).inc();
    }

    /// The bot replied, after deciding for `seconds`.
    pub fn reply(&self, store: &str, kind: &str, seconds: f64) {
        self.replies.get_or_create(&ReplyLabels { store: store.to_owned(), kind: kind.to_owned() }).inc();
        self.decision.observe(seconds);
    }

    /// A decision was made with (or without) the encoder, as `use` says.
    pub fn semantic(&self, semantic: &str) {
        self.semantic.get_or_create(&SemanticLabel { semantic: semantic.to_owned() }).inc();
    }

    /// A call to a store's endpoint for `task` answered, or failed.
    pub fn task(&self, store: &str, task: &str, answered: bool) {
        let outcome = if answered { "answered" } else { "failed" };
        let labels =
            TaskLabels { store: store.to_owned(), task: task.to_owned(), outcome: outcome.to_owned() };
        self.tasks.get_or_create(&labels).inc();
    }

    /// Whether the encoder is running.
    pub fn set_encoder_available(&self, available: bool) {
        self.encoder_available.set(i64::from(available));
    }

    /// The cluster's figures as this node sees them.
    pub fn set_cluster(&self, cluster: &crate::cluster::Cluster) {
        use std::sync::atomic::Ordering;
        let node = cluster.node().to_owned();
        self.cluster_node.get_or_create(&NodeLabel { node: node.clone() }).set(1);
        let stats = cluster.stats();
        for (notes, value) in [("sent", &stats.sent), ("heard", &stats.heard), ("dropped", &stats.dropped)] {
            let count = i64::try_from(value.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
            self.relay_notes
                .get_or_create(&RelayLabel { node: node.clone(), notes: notes.into() })
                .set(count);
        }
        self.relay_lag
            .get_or_create(&NodeLabel { node: node.clone() })
            .set(stats.last_lag_ms.load(Ordering::Relaxed));
        let held = cluster.leases_held();
        for lease in ["alerts", "sweep"] {
            let label = LeaseLabel { node: node.clone(), lease: lease.into() };
            self.leases.get_or_create(&label).set(i64::from(held.iter().any(|h| h == lease)));
        }
    }

    /// The text exposition, with the queues as `(store, waiting, with_agent, agents online)`.
    pub fn render(&self, queues: &[(String, usize, usize, usize)]) -> String {
        for (store, waiting, with_agent, agents) in queues {
            let label = StoreLabel { store: store.clone() };
            let count = |n: &usize| i64::try_from(*n).unwrap_or(i64::MAX);
            self.waiting.get_or_create(&label).set(count(waiting));
            self.with_agent.get_or_create(&label).set(count(with_agent));
            self.agents.get_or_create(&label).set(count(agents));
        }
        let mut out = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(%error, "encoding metrics failed");
        }
        out
    }
}
