//! The shopper WebSocket protocol: JSON text frames tagged by `type`.
//!
//! `docs/protocol.md` shows an example of every frame. Incoming frames are parsed here into
//! [`ClientEvent`]; anything that does not parse becomes a [`ProtocolError`] with a stable code,
//! which the gateway sends back as an `error` frame.

use serde::{Deserialize, Serialize};

use crate::domain::{
    ChatStatus, ClientMessageId, ConversationId, HandoffReason, MessageId, ResumeToken, Role,
};
use crate::triage::Trace;

/// A frame from the shopper's client.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientEvent {
    /// Opens (or, with a resume token, continues) a conversation. Must come first.
    Hello {
        /// The token from an earlier `welcome`, to continue that conversation.
        #[serde(default)]
        resume_token: Option<ResumeToken>,
        /// The SKU of the product page the shopper is on, if any: "this phone" then means it.
        #[serde(default)]
        product: Option<String>,
        /// The storefront's own id for the shopper (a member id), if it has one: it links the
        /// shopper's conversations, e.g. to notice the same question asked again, and makes a
        /// VIP's chats go first. Taken only with `shopper_signature`.
        #[serde(default)]
        shopper: Option<String>,
        /// The hex HMAC-SHA256 of `shopper` under the store's identity secret, made by the
        /// storefront's server. Without it the shopper is anonymous.
        #[serde(default)]
        shopper_signature: Option<String>,
    },
    /// A message typed by the shopper.
    Message {
        /// The client's own id for this message; a resend with the same id is not stored twice.
        id: ClientMessageId,
        /// What the shopper wrote.
        text: String,
    },
    /// The shopper's vote on a bot answer (the thumbs under it).
    Feedback {
        /// The bot reply's `message_id` (opaque: see [`crate::ids`]).
        message_id: String,
        /// True for helpful, false for not.
        helpful: bool,
    },
    /// The shopper's rating of a conversation an agent closed.
    Rate {
        /// 1 (bad) to 5 (excellent).
        score: u8,
        /// What the shopper wants to add.
        #[serde(default)]
        comment: Option<String>,
    },
}

/// One earlier message, sent in `welcome` when a conversation is resumed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HistoryItem {
    /// Who wrote it.
    pub role: Role,
    /// What was written.
    pub text: String,
    /// When, in milliseconds since the Unix epoch.
    pub at: i64,
}

/// How a bot reply came about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    /// A confident answer.
    Answer,
    /// "Did you mean…": the bot offers suggestions instead of guessing.
    Clarify,
    /// The bot could not answer.
    Fallback,
    /// The bot hands the conversation to a person.
    Handoff,
}

impl ReplyKind {
    /// The stable name, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyKind::Answer => "answer",
            ReplyKind::Clarify => "clarify",
            ReplyKind::Fallback => "fallback",
            ReplyKind::Handoff => "handoff",
        }
    }
}

/// Where an answer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerSource {
    /// An intent's response (greeting, order status…).
    Intent,
    /// A FAQ entry.
    Faq,
    /// A product's structured data.
    Product,
}

/// A frame mibot sends to the shopper.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerEvent {
    /// The conversation is open.
    Welcome {
        /// The conversation's id.
        conversation_id: ConversationId,
        /// Present this in a later `hello` to continue this conversation.
        resume_token: ResumeToken,
        /// True when an earlier conversation was continued.
        resumed: bool,
        /// Where the conversation stands.
        status: ChatStatus,
        /// Earlier messages, oldest first (empty for a new conversation).
        history: Vec<HistoryItem>,
        /// True when the hello's `shopper` id was signed with the store's identity secret and
        /// is linked to this conversation; false when the shopper is anonymous.
        identified: bool,
    },
    /// The message is durably stored.
    Ack {
        /// The client's id for the message.
        id: ClientMessageId,
        /// The stored message's id.
        message_id: MessageId,
        /// True when this id was already stored: nothing new was stored or answered.
        duplicate: bool,
    },
    /// The bot's reply to a message.
    Reply {
        /// The client's id of the message this answers.
        in_reply_to: ClientMessageId,
        /// The stored reply's id (for `feedback`).
        message_id: MessageId,
        /// What kind of reply this is.
        kind: ReplyKind,
        /// Where an answer came from (answers only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<AnswerSource>,
        /// The text to show.
        text: String,
        /// Questions the shopper can pick (clarify), or related products.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        suggestions: Vec<String>,
        /// Why the bot said this: what matched, its score and the margin to the runner-up.
        trace: Box<Trace>,
    },
    /// The conversation's status changed.
    Status {
        /// The new status.
        status: ChatStatus,
        /// Why it was handed over, when it was.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<HandoffReason>,
        /// The agent who took the chat (`with_agent`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<String>,
    },
    /// Where the shopper stands in the queue for a person; sent whenever it changes.
    Queue {
        /// 1 = next.
        position: usize,
        /// A rough estimate of the wait, in seconds; absent when no agent is online.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        estimated_wait_seconds: Option<u64>,
        /// Agents online now.
        agents_online: usize,
        /// What to tell the shopper.
        text: String,
    },
    /// A person's message to the shopper.
    AgentMessage {
        /// The stored message's id.
        message_id: MessageId,
        /// The agent's name.
        agent: String,
        /// The text.
        text: String,
        /// When, in milliseconds since the Unix epoch.
        at: i64,
    },
    /// A notice from the store itself (for example about something many shoppers are asking).
    StoreMessage {
        /// The stored message's id.
        message_id: MessageId,
        /// The text.
        text: String,
        /// When, in milliseconds since the Unix epoch.
        at: i64,
    },
    /// The agent closed the conversation: the shopper may rate it with a `rate` frame.
    RateRequest {
        /// What to ask.
        text: String,
    },
    /// The vote on an answer is stored.
    FeedbackNoted {
        /// The bot reply voted on.
        message_id: MessageId,
    },
    /// The rating is stored.
    Rated {
        /// The score given.
        score: u8,
    },
    /// Something was wrong with the last frame, or with the server.
    Error {
        /// A stable, machine-readable code.
        code: ErrorCode,
        /// A human-readable explanation.
        message: String,
        /// For `rate_limited`: how long to wait before sending again, in milliseconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
}

/// Stable error codes of `error` frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not JSON.
    InvalidJson,
    /// The frame's `type` is missing or unknown.
    UnknownType,
    /// A field is missing, unknown or of the wrong kind.
    InvalidFrame,
    /// Binary frames are not part of the protocol.
    BinaryNotSupported,
    /// The message text is longer than the configured limit.
    MessageTooLong,
    /// The message text is empty.
    EmptyMessage,
    /// A message's `id`, or the hello's `shopper`, is empty or longer than the configured limit.
    InvalidId,
    /// The hello's `shopper_signature` is not that id's under the store's identity secret.
    InvalidShopperSignature,
    /// The `store` in the URL is not served here.
    UnknownStore,
    /// A `message` came before `hello`.
    HelloRequired,
    /// A second `hello` on the same connection.
    AlreadyStarted,
    /// The resume token matches no conversation of this store.
    UnknownResumeToken,
    /// The conversation is closed; start a new one.
    ConversationClosed,
    /// mibot could not store the message; nothing was acknowledged, so resend it.
    Unavailable,
    /// A rating outside 1–5, for a conversation that is not closed, or rated twice.
    InvalidRating,
    /// Over a rate limit (this connection's, its address's or its store's): nothing was
    /// stored; send again after `retry_after_ms`.
    RateLimited,
    /// A vote on something that is not a bot reply of this conversation.
    InvalidFeedback,
}

/// A frame that could not be accepted, with the error to send back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProtocolError {
    /// The stable code.
    pub code: ErrorCode,
    /// The explanation for the client's developer.
    pub message: String,
    /// How long to wait before sending again, in milliseconds (`rate_limited`).
    pub retry_after_ms: Option<u64>,
}

impl ProtocolError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), retry_after_ms: None }
    }

    /// The same error, telling the client to wait `ms` milliseconds.
    pub fn with_retry_after(mut self, ms: u64) -> Self {
        self.retry_after_ms = Some(ms);
        self
    }
}

impl From<ProtocolError> for ServerEvent {
    fn from(err: ProtocolError) -> Self {
        ServerEvent::Error { code: err.code, message: err.message, retry_after_ms: err.retry_after_ms }
    }
}

/// Parses one text frame.
pub fn parse_client_event(frame: &str) -> Result<ClientEvent, ProtocolError> {
    let value: serde_json::Value = serde_json::from_str(frame).map_err(|e| {
        ProtocolError::new(ErrorCode::InvalidJson, format!("the frame is not valid JSON: {e}"))
    })?;
    let kind = value.get("type").and_then(serde_json::Value::as_str).map(str::to_owned).ok_or_else(|| {
        ProtocolError::new(ErrorCode::UnknownType, "every frame needs a string field \"type\"")
    })?;
    if !matches!(kind.as_str(), "hello" | "message" | "rate" | "feedback") {
        return Err(ProtocolError::new(
            ErrorCode::UnknownType,
            format!("unknown frame type {kind:?}; expected \"hello\", \"message\", \"feedback\" or \"rate\""),
        ));
    }
    serde_json::from_value(value).map_err(|e| {
        ProtocolError::new(ErrorCode::InvalidFrame, format!("the {kind:?} frame is malformed: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hello_and_message() {
        assert!(matches!(
            parse_client_event(r#"{"type":"hello"}"#),
            Ok(ClientEvent::Hello {
                resume_token: None,
                product: None,
                shopper: None,
                shopper_signature: None
            })
        ));
        let msg = parse_client_event(r#"{"type":"message","id":"c1","text":"你好"}"#).unwrap();
        assert!(matches!(msg, ClientEvent::Message { ref text, .. } if text == "你好"));
    }

    #[test]
    fn bad_frames_get_precise_codes() {
        let code = |f: &str| parse_client_event(f).unwrap_err().code;
        assert_eq!(code("not json"), ErrorCode::InvalidJson);
        assert_eq!(code(r#"{"text":"hi"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"message","id":"c1"}"#), ErrorCode::InvalidFrame);
        assert_eq!(code(r#"{"type":"message","id":7,"text":"x"}"#), ErrorCode::InvalidFrame);
    }
}
