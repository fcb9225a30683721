//! Domain types shared by every stage: identifiers, languages, chat status and validated text.
//!
//! Input is parsed into these at the edge (the gateway), so the stages behind it never see a raw
//! string where a closed set or an identifier is meant.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A store served by this deployment, e.g. `demo`. Lowercase ASCII letters, digits, `-` and `_`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StoreId(String);

impl StoreId {
    /// Validates a store name.
    pub fn parse(raw: &str) -> Result<Self, InvalidStoreId> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok { Ok(Self(raw.to_owned())) } else { Err(InvalidStoreId) }
    }

    /// The store name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A store name that is not lowercase ASCII letters, digits, `-` or `_` (1 to 64 of them).
#[derive(Debug, thiserror::Error)]
#[error("a store name is 1 to 64 lowercase letters, digits, '-' or '_'")]
pub struct InvalidStoreId;

impl TryFrom<String> for StoreId {
    type Error = InvalidStoreId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<StoreId> for String {
    fn from(value: StoreId) -> Self {
        value.0
    }
}

impl fmt::Display for StoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A conversation between one shopper and the store (bot, then perhaps a person).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConversationId(pub uuid::Uuid);

impl ConversationId {
    /// A fresh random id.
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4())
    }
}

impl Default for ConversationId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The secret a shopper presents to continue a conversation after a reconnect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResumeToken(pub String);

impl ResumeToken {
    /// A fresh unguessable token (122 random bits).
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    /// What the database keeps instead of the token: its SHA-256, in hex.
    pub fn digest(&self) -> String {
        ApiKey(self.0.clone()).digest()
    }
}

impl Default for ResumeToken {
    fn default() -> Self {
        Self::new()
    }
}

/// The id a client gives its own message, so a resend is recognised and not answered twice.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClientMessageId(pub String);

/// A stored message's id, assigned by the store. Clients see it only as an opaque text
/// ([`crate::ids`]): that is how it is serialized, and the only form it is read back from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MessageId(pub i64);

impl Serialize for MessageId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&crate::ids::encode(crate::ids::Kind::Message, self.0))
    }
}

impl<'de> Deserialize<'de> for MessageId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        crate::ids::decode(crate::ids::Kind::Message, &text)
            .map(Self)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not a message id")))
    }
}

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The shopper.
    Shopper,
    /// The bot.
    Bot,
    /// A human agent.
    Agent,
    /// mibot itself: handoff notices and the like.
    System,
    /// The store: a notice the merchant sent to shoppers (for example about an alert's topic).
    Store,
}

/// Where a conversation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatStatus {
    /// The bot answers.
    Bot,
    /// Handed over; waiting for a person. The bot stays silent.
    WaitingForAgent,
    /// A person owns the chat. The bot stays silent.
    WithAgent,
    /// Finished.
    Closed,
}

/// Why a conversation was handed to a person.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandoffReason {
    /// The shopper asked for a person (转人工).
    AskedForHuman,
    /// The shopper complained.
    Complaint,
    /// The bot could not answer several times in a row.
    RepeatedFallback,
    /// The bot answered from a FAQ entry that asks for a person to follow up.
    NotifyFlag,
    /// An agent passed the chat on to another agent or group.
    AgentTransfer,
    /// The store's reception mode sends shoppers to people first (`human_first`, `assist_only`).
    Reception,
    /// The store's own endpoint for a task (an order lookup…) failed twice in the conversation.
    ActionFailed,
}

impl HandoffReason {
    /// How urgent a chat handed over for this reason is: the queue serves higher first.
    pub fn priority(self) -> i64 {
        match self {
            HandoffReason::Complaint => 40,
            HandoffReason::AgentTransfer => 30,
            HandoffReason::AskedForHuman | HandoffReason::Reception => 20,
            HandoffReason::RepeatedFallback | HandoffReason::ActionFailed => 15,
            HandoffReason::NotifyFlag => 10,
        }
    }
}

macro_rules! str_enum {
    ($ty:ty { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// The stable name used on the wire and in storage.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            /// Parses the stable name.
            pub fn parse(raw: &str) -> Option<Self> {
                match raw { $($text => Some(Self::$variant),)+ _ => None }
            }
        }
    };
}

str_enum!(Role { Shopper => "shopper", Bot => "bot", Agent => "agent", System => "system", Store => "store" });
str_enum!(ChatStatus {
    Bot => "bot",
    WaitingForAgent => "waiting_for_agent",
    WithAgent => "with_agent",
    Closed => "closed",
});
str_enum!(HandoffReason {
    AskedForHuman => "asked_for_human",
    Complaint => "complaint",
    RepeatedFallback => "repeated_fallback",
    NotifyFlag => "notify_flag",
    AgentTransfer => "agent_transfer",
    Reception => "reception",
    ActionFailed => "action_failed",
});

/// Where a conversation stands with the bot's tasks (order lookups and the like): the one it is
/// asking slots for, and how many times the store's endpoints failed in it. Kept with the
/// conversation, so that the next message (on any node, after any restart) goes on from here.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskState {
    /// A task waiting for slots the shopper was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingTask>,
    /// Calls to the store's endpoints that failed in this conversation.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failures: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A task the bot asked the shopper to complete.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingTask {
    /// The intent whose task it is.
    pub intent: String,
    /// The slots found so far.
    #[serde(default)]
    pub slots: std::collections::BTreeMap<String, String>,
    /// How many times the shopper has been asked.
    pub asked: u32,
}

impl TaskState {
    /// Whether there is nothing to keep.
    pub fn is_empty(&self) -> bool {
        self.pending.is_none() && self.failures == 0
    }

    /// The stored form: `None` when empty.
    pub fn to_stored(&self) -> Option<String> {
        (!self.is_empty()).then(|| serde_json::to_string(self).unwrap_or_default())
    }

    /// From the stored form; a value this version cannot read is taken as empty.
    pub fn from_stored(raw: Option<&str>) -> Self {
        raw.and_then(|raw| serde_json::from_str(raw).ok()).unwrap_or_default()
    }
}

/// The two languages mibot speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lang {
    /// Simplified Chinese.
    #[default]
    Zh,
    /// English.
    En,
}

str_enum!(Lang { Zh => "zh", En => "en" });

impl Lang {
    /// The language to answer a message in: Chinese if it has any Han character, else English.
    pub fn detect(text: &str) -> Self {
        if text.chars().any(is_han) { Lang::Zh } else { Lang::En }
    }
}

/// Whether `c` is a CJK unified ideograph (the common Han blocks).
pub fn is_han(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' | '\u{F900}'..='\u{FAFF}')
}

/// Text in one or both languages. In pack files either a plain string (the same in both) or
/// a table `{ zh = "…", en = "…" }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LocalizedText {
    /// The same text whatever the language.
    Plain(String),
    /// Per-language text; at least one must be present.
    ByLang {
        /// Chinese.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        zh: Option<String>,
        /// English.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        en: Option<String>,
    },
}

impl LocalizedText {
    /// The text in `lang`, falling back to the other language.
    pub fn get(&self, lang: Lang) -> &str {
        match self {
            Self::Plain(text) => text,
            Self::ByLang { zh, en } => {
                let (first, second) = match lang {
                    Lang::Zh => (zh, en),
                    Lang::En => (en, zh),
                };
                first.as_deref().or(second.as_deref()).unwrap_or("")
            }
        }
    }

    /// Every distinct variant, for indexing.
    pub fn variants(&self) -> Vec<&str> {
        match self {
            Self::Plain(text) => vec![text.as_str()],
            Self::ByLang { zh, en } => zh.iter().chain(en.iter()).map(String::as_str).collect(),
        }
    }

    /// True when no language has any non-blank text.
    pub fn is_blank(&self) -> bool {
        self.variants().iter().all(|t| t.trim().is_empty())
    }
}

/// What a storefront sends beside a shopper's member id to prove it issued it: the hex
/// HMAC-SHA256 of the id, keyed with the store's identity secret.
pub fn shopper_signature(secret: &str, shopper: &str) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(shopper.as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `signature` is `shopper`'s under `secret`, compared in constant time.
pub fn shopper_signed(secret: &str, shopper: &str, signature: &str) -> bool {
    same_secret(&shopper_signature(secret, shopper), &signature.trim().to_ascii_lowercase())
}

/// Whether two secrets are equal, compared in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A merchant's API key. Only its SHA-256 digest is stored; the key is shown once.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(pub String);

impl ApiKey {
    /// A digest no token has: what a revoked agent's account keeps until a new token is given.
    pub fn revoked_digest() -> String {
        format!("revoked:{}", uuid::Uuid::new_v4().simple())
    }

    /// A new random merchant key: `mk_` and 64 hex digits (244 random bits).
    pub fn generate() -> Self {
        Self::with_prefix("mk_")
    }

    /// A new random secret with `prefix` (`at_` for agent tokens).
    pub fn with_prefix(prefix: &str) -> Self {
        let (a, b) = (uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        Self(format!("{prefix}{a}{b}"))
    }

    /// The digest stored and looked up in place of the key.
    pub fn digest(&self) -> String {
        use sha2::Digest;
        sha2::Sha256::digest(self.0.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(…)")
    }
}

/// Where "now" comes from: the system clock, or (in tests) a clock that moves only when told.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<std::sync::Arc<std::sync::atomic::AtomicI64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock standing at `at` until [`Clock::set`] moves it.
    pub fn manual(at: Millis) -> Self {
        Self { manual: Some(std::sync::Arc::new(std::sync::atomic::AtomicI64::new(at.0))) }
    }

    /// The current instant.
    pub fn now(&self) -> Millis {
        match &self.manual {
            Some(at) => Millis(at.load(std::sync::atomic::Ordering::Relaxed)),
            None => Millis::now(),
        }
    }

    /// Moves a manual clock to `at`; the system clock cannot be moved.
    pub fn set(&self, at: Millis) {
        if let Some(clock) = &self.manual {
            clock.store(at.0, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Milliseconds since the Unix epoch: how mibot stores and compares instants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Millis(pub i64);

impl Millis {
    /// The current instant.
    pub fn now() -> Self {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Self(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_ids_are_validated() {
        assert!(StoreId::parse("demo").is_ok());
        assert!(StoreId::parse("shop_2-b").is_ok());
        assert!(StoreId::parse("").is_err());
        assert!(StoreId::parse("Demo").is_err());
        assert!(StoreId::parse("../etc").is_err());
    }

    #[test]
    fn language_follows_han_characters() {
        assert_eq!(Lang::detect("X1 多少钱"), Lang::Zh);
        assert_eq!(Lang::detect("how much is the X1?"), Lang::En);
    }

    #[test]
    fn localized_text_falls_back_to_the_other_language() {
        let only_zh = LocalizedText::ByLang { zh: Some("你好".into()), en: None };
        assert_eq!(only_zh.get(Lang::En), "你好");
        assert_eq!(LocalizedText::Plain("8GB".into()).get(Lang::Zh), "8GB");
    }
}
