//! Reading stored rows back into mibot's types, the same way for every backend: each backend's
//! row type gives its cells through [`Cells`], and the checks on what a cell may hold live here.

use sqlx::Row;

use super::{
    ActionEndpoint, AgentAccount, AlertRow, ChatSummary, Conversation, ConversationRow, FeedbackRow,
    MessageRow, OpenChat, PackVersion, StoreError, StoredMessage, TranscriptItem,
};
use crate::domain::{
    ChatStatus, ConversationId, HandoffReason, MessageId, Millis, ResumeToken, Role, StoreId,
};

/// A row's cells by column name, whatever the database.
pub(crate) trait Cells {
    /// A text cell.
    fn text(&self, name: &str) -> Result<String, StoreError>;
    /// A text cell that may be NULL.
    fn maybe_text(&self, name: &str) -> Result<Option<String>, StoreError>;
    /// An integer cell.
    fn int(&self, name: &str) -> Result<i64, StoreError>;
    /// An integer cell that may be NULL.
    fn maybe_int(&self, name: &str) -> Result<Option<i64>, StoreError>;
    /// A floating-point cell.
    fn float(&self, name: &str) -> Result<f64, StoreError>;
    /// A boolean cell that may be NULL.
    fn maybe_bool(&self, name: &str) -> Result<Option<bool>, StoreError>;
}

macro_rules! cells {
    ($row:ty) => {
        impl Cells for $row {
            fn text(&self, name: &str) -> Result<String, StoreError> {
                Ok(self.try_get(name)?)
            }
            fn maybe_text(&self, name: &str) -> Result<Option<String>, StoreError> {
                Ok(self.try_get(name)?)
            }
            fn int(&self, name: &str) -> Result<i64, StoreError> {
                Ok(self.try_get(name)?)
            }
            fn maybe_int(&self, name: &str) -> Result<Option<i64>, StoreError> {
                Ok(self.try_get(name)?)
            }
            fn float(&self, name: &str) -> Result<f64, StoreError> {
                Ok(self.try_get(name)?)
            }
            fn maybe_bool(&self, name: &str) -> Result<Option<bool>, StoreError> {
                Ok(self.try_get(name)?)
            }
        }
    };
}

cells!(sqlx::sqlite::SqliteRow);
cells!(sqlx::postgres::PgRow);

/// A cell that holds something this version does not understand.
pub(crate) fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} {value:?}"))
}

/// A conversation id kept as text.
pub(crate) fn conversation_id(id: &str) -> Result<ConversationId, StoreError> {
    uuid::Uuid::parse_str(id).map(ConversationId).map_err(|_| corrupt("conversation id", id))
}

fn store_id(store: &str) -> Result<StoreId, StoreError> {
    StoreId::parse(store).map_err(|_| corrupt("store", store))
}

/// A store id kept as text.
pub(crate) fn store_of(row: &impl Cells, name: &str) -> Result<StoreId, StoreError> {
    store_id(&row.text(name)?)
}

fn status(row: &impl Cells) -> Result<ChatStatus, StoreError> {
    let status = row.text("status")?;
    ChatStatus::parse(&status).ok_or_else(|| corrupt("status", &status))
}

fn reason(row: &impl Cells) -> Result<Option<HandoffReason>, StoreError> {
    row.maybe_text("handoff_reason")?
        .map(|r| HandoffReason::parse(&r).ok_or_else(|| corrupt("reason", &r)))
        .transpose()
}

fn role(row: &impl Cells) -> Result<Role, StoreError> {
    let role = row.text("role")?;
    Role::parse(&role).ok_or_else(|| corrupt("role", &role))
}

fn count(row: &impl Cells, name: &str) -> Result<u32, StoreError> {
    Ok(u32::try_from(row.int(name)?).unwrap_or(0))
}

fn rating(row: &impl Cells) -> Result<Option<u8>, StoreError> {
    Ok(row.maybe_int("rating")?.and_then(|r| u8::try_from(r).ok()))
}

fn at(row: &impl Cells, name: &str) -> Result<Millis, StoreError> {
    Ok(Millis(row.int(name)?))
}

fn maybe_at(row: &impl Cells, name: &str) -> Result<Option<Millis>, StoreError> {
    Ok(row.maybe_int(name)?.map(Millis))
}

/// The columns [`conversation`] reads.
pub(crate) const CONVERSATION_COLUMNS: &str =
    "id, store, resume_token, status, handoff_reason, consecutive_fallbacks, product, shopper, task";

/// A conversation; its `resume_token` is the stored digest.
pub(crate) fn conversation(row: &impl Cells) -> Result<Conversation, StoreError> {
    Ok(Conversation {
        id: conversation_id(&row.text("id")?)?,
        store: store_of(row, "store")?,
        resume_token: ResumeToken(row.text("resume_token")?),
        status: status(row)?,
        handoff_reason: reason(row)?,
        consecutive_fallbacks: count(row, "consecutive_fallbacks")?,
        product: row.maybe_text("product")?,
        shopper: row.maybe_text("shopper")?,
        task: crate::domain::TaskState::from_stored(row.maybe_text("task")?.as_deref()),
    })
}

/// A task endpoint: `name, url, timeout_ms, secret`.
pub(crate) fn action(row: &impl Cells) -> Result<ActionEndpoint, StoreError> {
    Ok(ActionEndpoint {
        name: row.text("name")?,
        url: row.text("url")?,
        timeout_ms: u64::try_from(row.int("timeout_ms")?).unwrap_or(0),
        secret: row.text("secret")?,
    })
}

/// A message of `history`: `id, role, text, created_at`.
pub(crate) fn stored_message(row: &impl Cells) -> Result<StoredMessage, StoreError> {
    Ok(StoredMessage {
        id: MessageId(row.int("id")?),
        role: role(row)?,
        text: row.text("text")?,
        at: at(row, "created_at")?,
    })
}

/// The columns [`version`] reads.
pub(crate) const VERSION_COLUMNS: &str =
    "store, version, format, source, fingerprint, faq_count, product_count, created_at";

/// A pack version, without its content.
pub(crate) fn version(row: &impl Cells) -> Result<PackVersion, StoreError> {
    Ok(PackVersion {
        store: store_of(row, "store")?,
        version: count(row, "version")?,
        format: row.text("format")?,
        source: row.text("source")?,
        fingerprint: row.text("fingerprint")?,
        faq: count(row, "faq_count")?,
        products: count(row, "product_count")?,
        created_at: at(row, "created_at")?,
    })
}

/// An agent's account: `store, name, groups, max_chats`.
pub(crate) fn agent(row: &impl Cells) -> Result<AgentAccount, StoreError> {
    let groups = row.text("groups")?;
    Ok(AgentAccount {
        store: store_of(row, "store")?,
        name: row.text("name")?,
        groups: groups.split(',').filter(|g| !g.is_empty()).map(str::to_owned).collect(),
        max_chats: count(row, "max_chats")?,
    })
}

/// `store, status, handoff_reason, agent, rating, rating_comment`.
pub(crate) fn chat_summary(row: &impl Cells) -> Result<ChatSummary, StoreError> {
    Ok(ChatSummary {
        store: store_of(row, "store")?,
        status: status(row)?,
        handoff_reason: reason(row)?,
        agent: row.maybe_text("agent")?,
        rating: rating(row)?,
        rating_comment: row.maybe_text("rating_comment")?,
    })
}

/// The columns [`open_chat`] reads, from `conversations`.
pub(crate) const OPEN_CHAT_COLUMNS: &str = "id, store, handoff_reason, priority, skill_group,
     COALESCE(queued_at, updated_at) AS queued_at, agent, assigned_at, product,
     (SELECT m.text FROM messages m WHERE m.conversation_id = conversations.id AND m.role = 'shopper'
      ORDER BY m.id DESC LIMIT 1) AS last_text";

/// A conversation with the humans.
pub(crate) fn open_chat(row: &impl Cells) -> Result<OpenChat, StoreError> {
    Ok(OpenChat {
        conversation: conversation_id(&row.text("id")?)?,
        store: store_of(row, "store")?,
        reason: reason(row)?,
        priority: row.int("priority")?,
        group: row.maybe_text("skill_group")?,
        queued_at: at(row, "queued_at")?,
        agent: row.maybe_text("agent")?,
        assigned_at: maybe_at(row, "assigned_at")?,
        last_text: row.maybe_text("last_text")?,
        product: row.maybe_text("product")?,
    })
}

/// `id, role, author, text, created_at, trace` (the trace as JSON text).
pub(crate) fn transcript_item(row: &impl Cells) -> Result<TranscriptItem, StoreError> {
    Ok(TranscriptItem {
        id: MessageId(row.int("id")?),
        role: role(row)?,
        author: row.maybe_text("author")?,
        text: row.text("text")?,
        at: at(row, "created_at")?,
        trace: row.maybe_text("trace")?.and_then(|t| serde_json::from_str(&t).ok()),
        kind: row.maybe_text("kind")?,
    })
}

/// The columns [`conversation_row`] reads.
pub(crate) const CONVERSATION_ROW_COLUMNS: &str =
    "id, shopper, created_at, handoff_reason, queued_at, assigned_at, closed_at, rating";

/// A conversation, as the measures see it.
pub(crate) fn conversation_row(row: &impl Cells) -> Result<ConversationRow, StoreError> {
    Ok(ConversationRow {
        id: conversation_id(&row.text("id")?)?,
        shopper: row.maybe_text("shopper")?,
        created_at: at(row, "created_at")?,
        handoff_reason: reason(row)?,
        queued_at: maybe_at(row, "queued_at")?,
        assigned_at: maybe_at(row, "assigned_at")?,
        closed_at: maybe_at(row, "closed_at")?,
        rating: rating(row)?,
    })
}

/// `id, conversation_id, role, text, kind, entry, created_at`.
pub(crate) fn message_row(row: &impl Cells) -> Result<MessageRow, StoreError> {
    Ok(MessageRow {
        id: MessageId(row.int("id")?),
        conversation: conversation_id(&row.text("conversation_id")?)?,
        role: role(row)?,
        text: row.text("text")?,
        kind: row.maybe_text("kind")?,
        entry: row.maybe_text("entry")?,
        at: at(row, "created_at")?,
    })
}

/// `conversation_id, message_id, source, helpful, note, author, created_at`.
pub(crate) fn feedback_row(row: &impl Cells) -> Result<FeedbackRow, StoreError> {
    Ok(FeedbackRow {
        conversation: conversation_id(&row.text("conversation_id")?)?,
        message: MessageId(row.int("message_id")?),
        source: row.text("source")?,
        helpful: row.maybe_bool("helpful")?,
        note: row.maybe_text("note")?,
        author: row.maybe_text("author")?,
        at: at(row, "created_at")?,
    })
}

/// The columns [`alert`] reads, from `alerts`.
pub(crate) const ALERT_COLUMNS: &str =
    "id, store, topic, label, samples, messages, count, expected, started_at,
     last_seen_at, ended_at, webhook, webhook_attempts";

/// An alert (its samples and messages as JSON text).
pub(crate) fn alert(row: &impl Cells) -> Result<AlertRow, StoreError> {
    let samples = row.text("samples")?;
    let messages = row.text("messages")?;
    Ok(AlertRow {
        id: row.int("id")?,
        store: row.text("store")?,
        topic: row.text("topic")?,
        label: row.text("label")?,
        samples: serde_json::from_str(&samples).map_err(|_| corrupt("alert samples", &samples))?,
        messages: serde_json::from_str::<Vec<i64>>(&messages)
            .map_err(|_| corrupt("alert messages", &messages))?
            .into_iter()
            .map(MessageId)
            .collect(),
        count: u64::try_from(row.int("count")?).unwrap_or(0),
        expected: row.float("expected")?,
        started_at: at(row, "started_at")?,
        last_seen_at: at(row, "last_seen_at")?,
        ended_at: maybe_at(row, "ended_at")?,
        webhook: row.maybe_text("webhook")?,
        webhook_attempts: count(row, "webhook_attempts")?,
    })
}

/// A value as JSON text, for a text column.
pub(crate) fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "[]".into())
}

/// Message ids as stored: a JSON array of their row numbers (not their opaque wire form).
pub(crate) fn message_ids_text(ids: &[MessageId]) -> String {
    json_text(&ids.iter().map(|id| id.0).collect::<Vec<i64>>())
}

/// A vector as stored: little-endian `f32`s.
pub(crate) fn vector_bytes(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A stored vector.
pub(crate) fn vector_from(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}
