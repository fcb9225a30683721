//! Storage: conversations and messages, behind one narrow trait.
//!
//! The pipeline sees only [`Store`]; merchants' stores, keys and pack versions are behind
//! [`Merchants`], agents and the queue behind [`Agents`], the measures behind [`Insights`].
//! [`sqlite::SqliteStore`] implements them all for a single node, [`postgres::PostgresStore`]
//! for several nodes sharing one database; [`open`] picks one from `[storage]`.
//! A message is acknowledged to the shopper only after `append_shopper_message` returns, i.e.
//! after the transaction holding it committed with a full sync.

#[cfg(test)]
mod conformance;
pub mod postgres;
mod rows;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{
    ChatStatus, ClientMessageId, ConversationId, HandoffReason, MessageId, Millis, ResumeToken, Role, StoreId,
};

/// A conversation as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    /// Its id.
    pub id: ConversationId,
    /// The store it belongs to.
    pub store: StoreId,
    /// The shopper's token to resume it.
    pub resume_token: ResumeToken,
    /// Where it stands.
    pub status: ChatStatus,
    /// Why it was handed over, if it was.
    pub handoff_reason: Option<HandoffReason>,
    /// Fallbacks in a row so far.
    pub consecutive_fallbacks: u32,
    /// The product being discussed.
    pub product: Option<String>,
    /// The storefront's own id for the shopper, when it gives one.
    pub shopper: Option<String>,
    /// The task it is in the middle of, and the failures of the store's endpoints so far.
    pub task: crate::domain::TaskState,
}

impl Conversation {
    /// A new conversation of `store` with the bot, with a fresh id and resume token.
    pub fn start(store: &StoreId, product: Option<&str>, shopper: Option<&str>) -> Self {
        Self {
            id: ConversationId::new(),
            store: store.clone(),
            resume_token: ResumeToken::new(),
            status: ChatStatus::Bot,
            handoff_reason: None,
            consecutive_fallbacks: 0,
            product: product.map(str::to_owned),
            shopper: shopper.map(str::to_owned),
            task: crate::domain::TaskState::default(),
        }
    }
}

/// A stored message.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    /// Its id.
    pub id: MessageId,
    /// Who wrote it.
    pub role: Role,
    /// Its text.
    pub text: String,
    /// When it was stored.
    pub at: Millis,
}

/// The result of storing a shopper message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The stored message (the earlier one, for a duplicate).
    pub id: MessageId,
    /// True when the client id was already stored: nothing was written.
    pub duplicate: bool,
    /// The conversation's status when the message was stored.
    pub status: ChatStatus,
}

/// What the bot said in reply, and the conversation state after it, stored together.
#[derive(Debug, Clone, PartialEq)]
pub struct BotTurn {
    /// The conversation.
    pub conversation: ConversationId,
    /// The shopper message answered.
    pub in_reply_to: MessageId,
    /// The reply text.
    pub text: String,
    /// The decision trace, as JSON.
    pub trace: serde_json::Value,
    /// The status after this turn.
    pub status: ChatStatus,
    /// Whether the turn changes the conversation's state (status, handoff reason, fallbacks in
    /// a row, product in context, task). When it does not, only the reply is written.
    pub changes_state: bool,
    /// Why it was handed over, if this turn handed it over.
    pub handoff_reason: Option<HandoffReason>,
    /// Fallbacks in a row after this turn.
    pub consecutive_fallbacks: u32,
    /// The product in context after this turn.
    pub product: Option<String>,
    /// The conversation's task state after this turn.
    pub task: crate::domain::TaskState,
    /// `answer`, `clarify`, `fallback` or `handoff`.
    pub kind: &'static str,
    /// The entry the reply came from (a FAQ id, `intent:…`, `product:…`).
    pub entry: Option<String>,
    /// When.
    pub at: Millis,
}

/// A storage failure. Shoppers are told only that the message was not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A row held a value this version does not understand.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The conversation does not exist.
    #[error("conversation {0} does not exist")]
    NoConversation(ConversationId),
    /// The batch holding this write failed to commit.
    #[error("the write was not committed: {0}")]
    Unavailable(String),
    /// The store is shut down.
    #[error("the store is closed")]
    Closed,
    /// The storage settings cannot work.
    #[error("{0}")]
    Settings(String),
}

/// Everything the chat path needs from storage.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Starts a conversation in `store`, about `product` if the shopper is on a product page.
    async fn create_conversation(
        &self,
        store: &StoreId,
        product: Option<&str>,
        shopper: Option<&str>,
        at: Millis,
    ) -> Result<Conversation, StoreError>;

    /// The conversation of `store` with this resume token.
    async fn conversation_by_token(
        &self,
        store: &StoreId,
        token: &ResumeToken,
    ) -> Result<Option<Conversation>, StoreError>;

    /// Stores a shopper message, once per client id.
    async fn append_shopper_message(
        &self,
        conversation: ConversationId,
        client_id: &ClientMessageId,
        text: &str,
        at: Millis,
    ) -> Result<Appended, StoreError>;

    /// Stores the bot's reply and the conversation's new state in one transaction.
    async fn record_bot_turn(&self, turn: &BotTurn) -> Result<MessageId, StoreError>;

    /// Stores a shopper message and, if it is new and the conversation is still the bot's, the
    /// bot's reply to it (`reply.in_reply_to` is set to the stored message) with the
    /// conversation's new state: all in one transaction. Returns the message as stored (with the
    /// status it found) and the reply's id when the reply was stored.
    async fn append_shopper_message_with_reply(
        &self,
        client_id: &ClientMessageId,
        text: &str,
        at: Millis,
        reply: &BotTurn,
    ) -> Result<(Appended, Option<MessageId>), StoreError>;

    /// Sets the product in context (the shopper opened the chat on a product page).
    async fn set_product(
        &self,
        conversation: ConversationId,
        product: Option<&str>,
    ) -> Result<(), StoreError>;

    /// The last `limit` messages, oldest first.
    async fn history(
        &self,
        conversation: ConversationId,
        limit: u32,
    ) -> Result<Vec<StoredMessage>, StoreError>;

    /// Flushes and closes; called once at shutdown.
    async fn close(&self);
}

/// A version of a store's pack, without its content.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PackVersion {
    /// The store.
    pub store: StoreId,
    /// 1, 2, … per store.
    pub version: u32,
    /// The format it was uploaded in.
    pub format: String,
    /// Where it came from: `http`, `cli` or `directory`.
    pub source: String,
    /// A digest of its content.
    pub fingerprint: String,
    /// How many FAQ entries it has.
    pub faq: u32,
    /// How many products it has.
    pub products: u32,
    /// When it was stored.
    pub created_at: Millis,
}

/// A pack version to store.
#[derive(Debug, Clone, Copy)]
pub struct NewPackVersion<'a> {
    /// The format it was uploaded in.
    pub format: &'a str,
    /// Where it came from.
    pub source: &'a str,
    /// A digest of its content.
    pub fingerprint: &'a str,
    /// FAQ entries.
    pub faq: u32,
    /// Products.
    pub products: u32,
    /// The pack as mibot's JSON.
    pub content: &'a str,
}

impl NewPackVersion<'_> {
    /// The version as stored, numbered `version`.
    pub fn stored(&self, store: &StoreId, version: u32, at: Millis) -> PackVersion {
        PackVersion {
            store: store.clone(),
            version,
            format: self.format.to_owned(),
            source: self.source.to_owned(),
            fingerprint: self.fingerprint.to_owned(),
            faq: self.faq,
            products: self.products,
            created_at: at,
        }
    }
}

/// Stores, merchants' keys and pack versions: what the merchant API and the CLI change.
#[async_trait]
pub trait Merchants: Send + Sync + std::fmt::Debug + 'static {
    /// Creates a store; false if it already existed.
    async fn create_store(&self, store: &StoreId, at: Millis) -> Result<bool, StoreError>;

    /// The secret the store's storefront signs shoppers' ids with, if one was issued.
    async fn identity_secret(&self, store: &StoreId) -> Result<Option<String>, StoreError>;

    /// Issues (or replaces) that secret.
    async fn set_identity_secret(&self, store: &StoreId, secret: &str) -> Result<(), StoreError>;

    /// The deployment's key for opaque ids: `proposed` if none was kept yet (it is kept now),
    /// else the kept one.
    async fn id_key(&self, proposed: &str) -> Result<String, StoreError>;

    /// Every store.
    async fn stores(&self) -> Result<Vec<StoreId>, StoreError>;

    /// The store's task endpoints (order lookups and the like), by name.
    async fn actions(&self, store: &StoreId) -> Result<Vec<ActionEndpoint>, StoreError>;

    /// One of the store's task endpoints.
    async fn action(&self, store: &StoreId, name: &str) -> Result<Option<ActionEndpoint>, StoreError>;

    /// Sets (or replaces) a task endpoint of the store.
    async fn set_action(
        &self,
        store: &StoreId,
        action: &ActionEndpoint,
        at: Millis,
    ) -> Result<(), StoreError>;

    /// Removes a task endpoint; false if the store had none of that name.
    async fn delete_action(&self, store: &StoreId, name: &str) -> Result<bool, StoreError>;

    /// Adds a key (by its digest) to a store, revoking the store's other keys if asked.
    async fn add_key(
        &self,
        store: &StoreId,
        key_digest: &str,
        revoke_others: bool,
        at: Millis,
    ) -> Result<(), StoreError>;

    /// Revokes every key of a store; returns how many were live.
    async fn revoke_keys(&self, store: &StoreId, at: Millis) -> Result<u64, StoreError>;

    /// The store a live key (by its digest) belongs to.
    async fn store_for_key(&self, key_digest: &str) -> Result<Option<StoreId>, StoreError>;

    /// Stores a new version (numbered after the last), activating it if asked, in one
    /// transaction.
    async fn add_pack_version(
        &self,
        store: &StoreId,
        new: NewPackVersion<'_>,
        activate: bool,
        at: Millis,
    ) -> Result<PackVersion, StoreError>;

    /// A store's versions, oldest first.
    async fn pack_versions(&self, store: &StoreId) -> Result<Vec<PackVersion>, StoreError>;

    /// One version with its content (mibot's JSON).
    async fn pack_version(
        &self,
        store: &StoreId,
        version: u32,
    ) -> Result<Option<(PackVersion, String)>, StoreError>;

    /// Makes a stored version the active one; false if there is no such version.
    async fn activate(&self, store: &StoreId, version: u32, at: Millis) -> Result<bool, StoreError>;

    /// Every store's active version.
    async fn active_versions(&self) -> Result<Vec<(StoreId, u32)>, StoreError>;
}

/// A human agent's account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentAccount {
    /// The store the agent works for.
    pub store: StoreId,
    /// The agent's name, unique in the store.
    pub name: String,
    /// Skill groups (e.g. `pre-sales`); chats for a group go only to its members.
    pub groups: Vec<String>,
    /// Most chats the agent handles at once.
    pub max_chats: u32,
}

/// A conversation that is with the humans: queued or assigned.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenChat {
    /// The conversation.
    pub conversation: ConversationId,
    /// Its store.
    pub store: StoreId,
    /// Why it was handed over.
    pub reason: Option<HandoffReason>,
    /// Higher is served first.
    pub priority: i64,
    /// Only agents of this group may take it.
    pub group: Option<String>,
    /// When it entered the queue.
    pub queued_at: Millis,
    /// Who owns it, if assigned.
    pub agent: Option<String>,
    /// When it was assigned.
    pub assigned_at: Option<Millis>,
    /// The shopper's latest message, if any (for the queue's preview).
    pub last_text: Option<String>,
    /// The SKU of the product in view (the page the shopper opened the chat on, or the one the
    /// conversation turned to).
    pub product: Option<String>,
}

/// A message of a conversation, for an agent's transcript.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TranscriptItem {
    /// Its id.
    pub id: MessageId,
    /// Who wrote it.
    pub role: Role,
    /// The agent who wrote it (agent messages).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// What was written.
    pub text: String,
    /// When.
    pub at: Millis,
    /// The bot's decision trace (bot messages).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<serde_json::Value>,
    /// What a bot reply was: `answer`, `clarify`, `fallback` or `handoff`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// Where a conversation stands, for the people working on it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChatSummary {
    /// Its store.
    pub store: StoreId,
    /// Its status.
    pub status: ChatStatus,
    /// Why it was handed over.
    pub handoff_reason: Option<HandoffReason>,
    /// The agent who owns it (or last owned it).
    pub agent: Option<String>,
    /// The shopper's rating, 1 to 5.
    pub rating: Option<u8>,
    /// The shopper's comment with the rating.
    pub rating_comment: Option<String>,
}

/// Agents and the escalation queue.
#[async_trait]
pub trait Agents: Send + Sync + std::fmt::Debug + 'static {
    /// Where a conversation stands.
    async fn chat_summary(&self, conversation: ConversationId) -> Result<Option<ChatSummary>, StoreError>;

    /// Adds an agent (by the digest of their token); false if the name is taken in the store.
    async fn add_agent(
        &self,
        agent: &AgentAccount,
        token_digest: &str,
        at: Millis,
    ) -> Result<bool, StoreError>;

    /// The agent whose token has this digest.
    async fn agent_by_token(&self, token_digest: &str) -> Result<Option<AgentAccount>, StoreError>;

    /// Gives the store's agent `name` a new token (by its digest): the old one stops working.
    /// False if the store has no such agent.
    async fn set_agent_token(
        &self,
        store: &StoreId,
        name: &str,
        token_digest: &str,
    ) -> Result<bool, StoreError>;

    /// Every conversation waiting for or with an agent, in every store.
    async fn open_chats(&self) -> Result<Vec<OpenChat>, StoreError>;

    /// The conversation, if it is waiting for or with an agent.
    async fn open_chat(&self, conversation: ConversationId) -> Result<Option<OpenChat>, StoreError>;

    /// Puts a conversation in the queue (again): waiting, no agent, with this priority and group.
    async fn enqueue(
        &self,
        conversation: ConversationId,
        reason: HandoffReason,
        priority: i64,
        group: Option<&str>,
        at: Millis,
    ) -> Result<(), StoreError>;

    /// Marks (or unmarks) a shopper of the store as VIP.
    async fn set_vip(&self, store: &StoreId, shopper: &str, vip: bool, at: Millis) -> Result<(), StoreError>;

    /// Whether the conversation's shopper is a VIP of its store.
    async fn is_vip(&self, conversation: ConversationId) -> Result<bool, StoreError>;

    /// Gives a waiting conversation to `agent`; false if it was not waiting (someone else won).
    async fn assign(&self, conversation: ConversationId, agent: &str, at: Millis)
    -> Result<bool, StoreError>;

    /// Ends the humans' part: `Closed`, or `Bot` (handed back; the fallback count and the task
    /// state restart).
    async fn release(
        &self,
        conversation: ConversationId,
        status: ChatStatus,
        at: Millis,
    ) -> Result<(), StoreError>;

    /// Stores an agent's message.
    async fn append_agent_message(
        &self,
        conversation: ConversationId,
        agent: &str,
        text: &str,
        at: Millis,
    ) -> Result<MessageId, StoreError>;

    /// Stores a notice from the store to the conversation's shopper.
    async fn append_notice(
        &self,
        conversation: ConversationId,
        text: &str,
        at: Millis,
    ) -> Result<MessageId, StoreError>;

    /// Stores the shopper's rating of a closed conversation; false if it was already rated or is
    /// not closed.
    async fn rate(
        &self,
        conversation: ConversationId,
        score: u8,
        comment: Option<&str>,
    ) -> Result<bool, StoreError>;

    /// The whole conversation, oldest first.
    async fn transcript(&self, conversation: ConversationId) -> Result<Vec<TranscriptItem>, StoreError>;
}

/// A vote or a flag on a bot reply.
#[derive(Debug, Clone, Copy)]
pub struct NewFeedback<'a> {
    /// The conversation.
    pub conversation: ConversationId,
    /// The bot reply.
    pub message: MessageId,
    /// `shopper` (a vote) or `agent` (a flag: the answer was wrong).
    pub source: &'a str,
    /// The shopper's vote; `Some(false)` for an agent's flag.
    pub helpful: Option<bool>,
    /// What the agent says is wrong.
    pub note: Option<&'a str>,
    /// The agent who flagged it.
    pub author: Option<&'a str>,
    /// When.
    pub at: Millis,
}

/// A conversation, as the measures see it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationRow {
    /// Its id.
    pub id: ConversationId,
    /// The storefront's id for the shopper.
    pub shopper: Option<String>,
    /// When it started.
    pub created_at: Millis,
    /// Why it was handed over, if it was.
    pub handoff_reason: Option<HandoffReason>,
    /// When it (last) entered the queue.
    pub queued_at: Option<Millis>,
    /// When an agent (last) took it.
    pub assigned_at: Option<Millis>,
    /// When an agent closed it.
    pub closed_at: Option<Millis>,
    /// The shopper's rating of the agent, 1–5.
    pub rating: Option<u8>,
}

/// A message, as the measures see it.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRow {
    /// Its id.
    pub id: MessageId,
    /// Its conversation.
    pub conversation: ConversationId,
    /// Who wrote it.
    pub role: Role,
    /// Its text.
    pub text: String,
    /// Bot replies: `answer`, `clarify`, `fallback`, `handoff`.
    pub kind: Option<String>,
    /// Bot replies: the entry answered from.
    pub entry: Option<String>,
    /// When.
    pub at: Millis,
}

/// A vote or flag, as the measures see it.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackRow {
    /// The conversation.
    pub conversation: ConversationId,
    /// The bot reply.
    pub message: MessageId,
    /// `shopper` or `agent`.
    pub source: String,
    /// The vote (agents' flags are `false`).
    pub helpful: Option<bool>,
    /// The agent's note.
    pub note: Option<String>,
    /// The flagging agent.
    pub author: Option<String>,
    /// When.
    pub at: Millis,
}

/// Everything stored about a store's conversations that started in a time range.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// The conversations, oldest first.
    pub conversations: Vec<ConversationRow>,
    /// Their messages, oldest first.
    pub messages: Vec<MessageRow>,
    /// Votes and flags on their bot replies.
    pub feedback: Vec<FeedbackRow>,
    /// Shopper messages the merchant dismissed from the unanswered clusters.
    pub dismissed: Vec<MessageId>,
}

/// Feedback and the history the measures are computed from.
#[async_trait]
pub trait Insights: Send + Sync + std::fmt::Debug + 'static {
    /// Stores a vote or a flag on a bot reply of the conversation; false if the message is not
    /// one. A second vote from the same side replaces the first.
    async fn add_feedback(&self, feedback: NewFeedback<'_>) -> Result<bool, StoreError>;

    /// The store's conversations started in `[since, until)`, with their messages and feedback.
    async fn records(&self, store: &StoreId, since: Millis, until: Millis) -> Result<History, StoreError>;

    /// Dismisses shopper messages of the store from the unanswered clusters.
    async fn dismiss(&self, store: &StoreId, messages: &[MessageId], at: Millis) -> Result<(), StoreError>;

    /// The store's alerts still in their episode.
    async fn open_alerts(&self, store: &StoreId) -> Result<Vec<AlertRow>, StoreError>;

    /// The store's alerts that started at or after `since`, newest first.
    async fn alerts(&self, store: &StoreId, since: Millis) -> Result<Vec<AlertRow>, StoreError>;

    /// One of the store's alerts.
    async fn alert(&self, store: &StoreId, id: i64) -> Result<Option<AlertRow>, StoreError>;

    /// Stores a new alert (its id is ignored) and returns its id.
    async fn raise_alert(&self, alert: &AlertRow) -> Result<i64, StoreError>;

    /// Records that an open alert's topic still spikes: its count (the highest so far is
    /// kept), the messages seen, and when.
    async fn touch_alert(
        &self,
        id: i64,
        count: u64,
        messages: &[MessageId],
        at: Millis,
    ) -> Result<(), StoreError>;

    /// Ends an alert's episode.
    async fn end_alert(&self, id: i64, at: Millis) -> Result<(), StoreError>;

    /// Records how delivering an alert to the webhook went.
    async fn webhook_result(&self, id: i64, status: &str, attempts: u32) -> Result<(), StoreError>;

    /// The store's webhook.
    async fn webhook(&self, store: &StoreId) -> Result<Option<Webhook>, StoreError>;

    /// Sets (or replaces) the store's webhook.
    async fn set_webhook(&self, store: &StoreId, webhook: &Webhook, at: Millis) -> Result<(), StoreError>;

    /// Removes the store's webhook; false if it had none.
    async fn delete_webhook(&self, store: &StoreId) -> Result<bool, StoreError>;

    /// The conversations of the store that hold any of these shopper messages and are not closed.
    async fn open_conversations_of(
        &self,
        store: &StoreId,
        messages: &[MessageId],
    ) -> Result<Vec<ConversationId>, StoreError>;
}

/// A spike alert: one episode of a topic asked about far more often than usual.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AlertRow {
    /// Its id.
    pub id: i64,
    /// The store.
    pub store: String,
    /// `entry:<id>` (the questions one FAQ entry answered) or `questions` (a cluster of
    /// questions the bot did not answer well).
    pub topic: String,
    /// What it is about, for people.
    pub label: String,
    /// Up to five of the questions.
    pub samples: Vec<String>,
    /// The shopper messages seen in the episode (the newest 1,000).
    pub messages: Vec<MessageId>,
    /// The highest count in one window.
    pub count: u64,
    /// The usual count for a window of that length, when it was raised.
    pub expected: f64,
    /// When it was raised.
    pub started_at: Millis,
    /// When the topic last spiked.
    pub last_seen_at: Millis,
    /// When the episode ended (`None`: still going).
    pub ended_at: Option<Millis>,
    /// `delivered` or `failed` once its webhook delivery is over.
    pub webhook: Option<String>,
    /// Delivery attempts made.
    pub webhook_attempts: u32,
}

/// Where a store's alerts are POSTed, and the secret they are signed with.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Webhook {
    /// An `http` or `https` URL.
    pub url: String,
    /// The HMAC-SHA256 key.
    pub secret: String,
}

/// A store's endpoint for one task: the bot POSTs the task's slots to it, signed like webhooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionEndpoint {
    /// The task's name, e.g. `order_status`.
    pub name: String,
    /// An `http` or `https` URL.
    pub url: String,
    /// How long the bot waits for the answer, in milliseconds.
    pub timeout_ms: u64,
    /// The HMAC-SHA256 key requests are signed with.
    pub secret: String,
}

/// The SHA-256 of an embedded text, as normalised for the encoder.
pub type Digest = [u8; 32];

/// Stored embeddings of pack texts, by model and text digest: a new pack version embeds only the
/// texts it adds, and a restart embeds nothing.
#[async_trait]
pub trait Embeddings: Send + Sync {
    /// The stored vector of each digest, in order (`None` where there is none).
    async fn embeddings(&self, model: &str, digests: &[Digest]) -> Result<Vec<Option<Vec<f32>>>, StoreError>;

    /// Stores vectors; a digest stored already keeps its vector.
    async fn save_embeddings(
        &self,
        model: &str,
        items: &[(Digest, Vec<f32>)],
        at: Millis,
    ) -> Result<(), StoreError>;
}

/// Every storage trait in one object: what [`open`] gives.
pub trait Database: Store + Merchants + Agents + Insights + Embeddings {}

impl<T: Store + Merchants + Agents + Insights + Embeddings> Database for T {}

/// Opens the database `[storage]` names: PostgreSQL for a `postgres://` URL, otherwise SQLite in
/// the data directory (or in the directory of a `sqlite://` URL).
pub async fn open(config: &crate::config::StorageConfig) -> Result<Arc<dyn Database>, StoreError> {
    let db: Arc<dyn Database> = match config.backend() {
        crate::config::Backend::Postgres(url) => {
            Arc::new(postgres::PostgresStore::open(url, config.schema.as_deref()).await?)
        }
        crate::config::Backend::Sqlite(dir) => {
            Arc::new(sqlite::SqliteStore::open_with(&dir, config.max_wal_mb * 1024 * 1024).await?)
        }
    };
    // Ids on the wire are encrypted under the database's key, so that every node and every
    // restart agrees on them (a new database is given the key this process already uses).
    let key = db.id_key(&crate::ids::proposed_key()).await?;
    crate::ids::install(&key).map_err(|e| StoreError::Settings(e.to_string()))?;
    Ok(db)
}
