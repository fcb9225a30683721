//! Why the bot said what it said: the trace that goes with every reply, to the shopper's widget,
//! the agent's console and the merchant's query API.

use serde::{Deserialize, Serialize};

/// Which signal decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// An intent's regex rule.
    Rule,
    /// Retrieval over questions and intent examples.
    Retrieval,
    /// The product catalog.
    Catalog,
    /// Nothing matched well enough.
    None,
}

/// What the sentence encoder contributed to a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SemanticUse {
    /// The message was embedded for this decision.
    Encoded,
    /// Its embedding came from the cache.
    Cached,
    /// A rule, a product field or a confident lexical answer settled it; no embedding needed.
    Skipped,
    /// The encoder was too busy: decided on lexical signals within the latency budget.
    Shed,
    /// The store's pack is still being embedded: decided on lexical signals.
    Pending,
    /// No encoder (the model is missing or failed to load, or it is turned off).
    Unavailable,
}

impl SemanticUse {
    /// The snake-case name, as in traces and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Encoded => "encoded",
            Self::Cached => "cached",
            Self::Skipped => "skipped",
            Self::Shed => "shed",
            Self::Pending => "pending",
            Self::Unavailable => "unavailable",
        }
    }

    /// Whether the semantic signals took part in the decision.
    pub fn used(self) -> bool {
        matches!(self, Self::Encoded | Self::Cached)
    }
}

/// Why the bot said what it said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// The deciding signal.
    pub signal: Signal,
    /// The rule that matched, for rule decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The matched entry: a FAQ id, `intent:<name>` or `product:<sku>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched: Option<String>,
    /// The known question that matched best.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_question: Option<String>,
    /// The best retrieval score (0 to 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    /// The runner-up entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_up: Option<String>,
    /// Best score minus the runner-up's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin: Option<f32>,
    /// How each signal moved the best entry's confidence (before the sigmoid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contributions: Option<Contributions>,
    /// The generic intent that routed the message to the store's own entries on its topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routed_by: Option<String>,
    /// What the sentence encoder contributed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semantic: Option<SemanticUse>,
    /// The call to the store's endpoint for a task: what was sent and what came back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskCall>,
}

/// One call to a store's endpoint, as the agent sees it in the transcript's trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskCall {
    /// The task, e.g. `order_status`.
    pub name: String,
    /// Where the request went: the endpoint's URL, or `demo` for the demo store's built-in book.
    pub endpoint: String,
    /// The JSON body that was POSTed.
    pub request: serde_json::Value,
    /// The HTTP status, when an answer came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The answer's JSON, when it was JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<serde_json::Value>,
    /// Why the call failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long it took, in milliseconds.
    pub ms: u64,
}

/// The terms of the fused confidence `σ(classifier + retrieval + semantic + nearest + bias)` for
/// the best entry.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Contributions {
    /// The classifier's weighted probability.
    pub classifier: f32,
    /// The retrieval cosine, weighted.
    pub retrieval: f32,
    /// The semantic head's probability, weighted (when the message was embedded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semantic: Option<f32>,
    /// The nearest question's embedding cosine, weighted (when the message was embedded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nearest: Option<f32>,
    /// The constant term.
    pub bias: f32,
}
