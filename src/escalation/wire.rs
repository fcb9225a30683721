//! The agent WebSocket protocol (`/ws/agent`): JSON text frames tagged by `type`.

use serde::{Deserialize, Serialize};

use crate::domain::{ChatStatus, ConversationId, HandoffReason, LocalizedText, MessageId};
use crate::knowledge::pack::StockState;
use crate::store::TranscriptItem;

/// A frame from an agent's client.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentCommand {
    /// Signs in; must come first.
    Login {
        /// The agent's token (from `mibot agent add`).
        token: String,
        /// Take chats assigned automatically (default), or only claim them by hand.
        #[serde(default = "yes")]
        auto_assign: bool,
    },
    /// Go offline (no new chats; open chats stay yours) or back online.
    Presence {
        /// True to take chats again.
        online: bool,
    },
    /// Take a waiting chat from the queue.
    Claim {
        /// The chat.
        conversation_id: ConversationId,
    },
    /// Write to the shopper.
    Reply {
        /// The chat.
        conversation_id: ConversationId,
        /// The text.
        text: String,
    },
    /// Pass the chat to another agent or a skill group.
    Transfer {
        /// The chat.
        conversation_id: ConversationId,
        /// An online agent with room.
        #[serde(default)]
        to_agent: Option<String>,
        /// A skill group's queue.
        #[serde(default)]
        to_group: Option<String>,
    },
    /// Flag a bot answer in one of the store's chats as wrong (拉铃), for the merchant to review.
    Flag {
        /// The chat.
        conversation_id: ConversationId,
        /// The bot reply (its id in the transcript).
        message_id: String,
        /// What is wrong with it.
        #[serde(default)]
        note: Option<String>,
    },
    /// End the chat; the shopper is asked for a rating.
    Close {
        /// The chat.
        conversation_id: ConversationId,
    },
    /// Give the chat back to the bot.
    HandBack {
        /// The chat.
        conversation_id: ConversationId,
    },
}

fn yes() -> bool {
    true
}

/// A spike alert, as agents see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertNotice {
    /// Its id (opaque: see [`crate::ids`]).
    pub id: String,
    /// `entry:<id>` or `questions`.
    pub topic: String,
    /// What shoppers are asking about.
    pub label: String,
    /// Some of their questions.
    pub samples: Vec<String>,
    /// How many in the window.
    pub count: u64,
    /// The usual count for a window.
    pub expected: f64,
    /// When it was raised, in milliseconds since the Unix epoch.
    pub started_at: i64,
}

impl From<&crate::store::AlertRow> for AlertNotice {
    fn from(alert: &crate::store::AlertRow) -> Self {
        Self {
            id: crate::ids::encode(crate::ids::Kind::Alert, alert.id),
            topic: alert.topic.clone(),
            label: alert.label.clone(),
            samples: alert.samples.clone(),
            count: alert.count,
            expected: alert.expected,
            started_at: alert.started_at.0,
        }
    }
}

/// A waiting chat, as the queue shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueItem {
    /// The chat.
    pub conversation_id: ConversationId,
    /// Why it was handed over.
    pub reason: Option<HandoffReason>,
    /// Higher is served first.
    pub priority: i64,
    /// The skill group it waits for.
    pub group: Option<String>,
    /// How long it has waited.
    pub waiting_seconds: u64,
    /// The shopper's latest message, if known.
    pub last_message: Option<String>,
}

/// The product the shopper has in view, from the store's catalogue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProductView {
    /// Its SKU.
    pub sku: String,
    /// Its name, `{zh, en}` or one text.
    pub name: LocalizedText,
    /// Its price.
    pub price: f64,
    /// ISO 4217 currency code.
    pub currency: String,
    /// `in_stock`, `low_stock`, `out_of_stock` or `preorder`.
    pub stock: StockState,
}

/// An answer from the knowledge base an agent might send.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Suggestion {
    /// The FAQ entry.
    pub entry: String,
    /// Its standard question.
    pub question: String,
    /// Its answer.
    pub answer: String,
    /// The bot's confidence that it answers the message, 0 to 1.
    pub score: f32,
}

/// A frame mibot sends to an agent.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentEvent {
    /// Signed in.
    Welcome {
        /// The agent's name.
        agent: String,
        /// Their store.
        store: String,
        /// Their skill groups.
        groups: Vec<String>,
        /// Chats they take at once.
        max_chats: u32,
        /// Whether chats are assigned to them automatically.
        auto_assign: bool,
        /// One-click replies.
        canned_replies: Vec<String>,
    },
    /// The agent's presence changed.
    Presence {
        /// Taking new chats.
        online: bool,
    },
    /// The waiting chats, first served first; sent whenever the queue changes.
    Queue {
        /// The chats.
        waiting: Vec<QueueItem>,
    },
    /// A chat is now the agent's.
    Assigned {
        /// The chat.
        conversation_id: ConversationId,
        /// Why it was handed over.
        reason: Option<HandoffReason>,
        /// Every message so far, with the bot's traces.
        transcript: Vec<TranscriptItem>,
        /// Suggested answers to the shopper's question (their latest message, or the one before
        /// it when the latest only asked for a person).
        suggestions: Vec<Suggestion>,
        /// The product the shopper has in view, if any.
        product: Option<ProductView>,
    },
    /// The shopper wrote.
    ShopperMessage {
        /// The chat.
        conversation_id: ConversationId,
        /// The stored message.
        message_id: MessageId,
        /// The text.
        text: String,
        /// When, in milliseconds since the Unix epoch.
        at: i64,
        /// Suggested answers.
        suggestions: Vec<Suggestion>,
    },
    /// The agent's reply is stored and on its way to the shopper.
    Sent {
        /// The chat.
        conversation_id: ConversationId,
        /// The stored message.
        message_id: MessageId,
    },
    /// A flag is stored.
    Flagged {
        /// The bot reply flagged.
        message_id: MessageId,
    },
    /// A chat is no longer the agent's (transferred, timed out).
    Unassigned {
        /// The chat.
        conversation_id: ConversationId,
        /// Why.
        why: String,
    },
    /// The agent closed the chat or handed it back.
    Released {
        /// The chat.
        conversation_id: ConversationId,
        /// `closed` or `bot`.
        status: ChatStatus,
    },
    /// Shoppers are asking about a topic far more often than usual: a spike alert. Sent when it
    /// is raised, and for every alert still open when the agent signs in.
    Alert {
        /// The alert.
        alert: AlertNotice,
    },
    /// A request was refused.
    Error {
        /// A stable code: `not_found`, `not_yours`, `already_taken`, `at_capacity`,
        /// `cannot_transfer`, `unauthorized`, `invalid_frame`, `unavailable`…
        code: String,
        /// What went wrong.
        message: String,
    },
}
