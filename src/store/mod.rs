//! Storage: conversations and messages, behind one narrow trait.
//!
//! The pipeline sees only [`Store`]; [`sqlite::SqliteStore`] implements it for a single node.
//! A message is acknowledged to the shopper only after `append_shopper_message` returns, i.e.
//! after the transaction holding it committed with a full sync.

pub mod sqlite;

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
    /// Why it was handed over, if this turn handed it over.
    pub handoff_reason: Option<HandoffReason>,
    /// Fallbacks in a row after this turn.
    pub consecutive_fallbacks: u32,
    /// The product in context after this turn.
    pub product: Option<String>,
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
}

/// Everything the chat path needs from storage.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Starts a conversation in `store`, about `product` if the shopper is on a product page.
    async fn create_conversation(
        &self,
        store: &StoreId,
        product: Option<&str>,
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
