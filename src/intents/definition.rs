//! The intent file format and its validation.

use std::collections::BTreeMap;

use regex::Regex;
use serde::Deserialize;

use super::Intent;
use crate::domain::{HandoffReason, LocalizedText};

/// One intent file, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntentFile {
    /// The intent's name; must equal the file name.
    pub name: String,
    /// One line for merchants.
    #[serde(default)]
    pub description: String,
    /// Regular expressions, matched case-insensitively; a match decides the intent.
    #[serde(default)]
    pub rules: Vec<String>,
    /// Example utterances, indexed for retrieval.
    #[serde(default)]
    pub examples: Vec<String>,
    /// What happens when the intent is recognised.
    pub action: ActionKind,
    /// For `handoff`: why.
    #[serde(default)]
    pub reason: Option<HandoffReason>,
    /// What the bot says.
    pub response: LocalizedText,
    /// What the bot asks when a slot is missing.
    #[serde(default)]
    pub ask: Option<LocalizedText>,
    /// Slot name → pattern whose first group is the value.
    #[serde(default)]
    pub slots: BTreeMap<String, String>,
    /// For `route`: the FAQ tags or categories the intent stands for, e.g. `["shipping"]`.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Among intents whose rules match one message and that do the same kind of thing (two
    /// tasks), the higher priority wins; 0 unless set. The general order lookup is -1, so that
    /// "订单… 能快点发吗" is a request to hurry the order, not a lookup.
    #[serde(default)]
    pub priority: i32,
    /// For `task`: the name of the store's endpoint the bot calls, e.g. `order_status`.
    #[serde(default)]
    pub task: Option<String>,
    /// For `task`: the reply when the endpoint answered, a template over its answer's fields
    /// and the slots.
    #[serde(default)]
    pub answer: Option<LocalizedText>,
    /// For `task`: the reply when the endpoint failed (timeout, error, not JSON).
    #[serde(default)]
    pub failed: Option<LocalizedText>,
}

/// The `action` key of an intent file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Say the response.
    Reply,
    /// Hand the chat to a person, saying the response.
    Handoff,
    /// Do something with the store's own system (look up an order, hurry it, cancel it): the
    /// slots are found in the message or asked for, then the store's endpoint for `task` is
    /// called and `answer` filled from what it says. A store without that endpoint gets
    /// `response` (with the slots) instead.
    Task,
    /// A general topic (shipping, returns): answer with the store's own FAQ entry on it, or ask
    /// which of them the shopper means. The response is that question; it states no policy.
    Route,
    /// Nothing a shop answers (the weather, homework): fall back with the response.
    Decline,
}

/// What an intent does when recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Say the response.
    Reply,
    /// Hand the chat to a person.
    Handoff(HandoffReason),
    /// Call the store's endpoint with the slots, or ask for a missing one.
    Task,
    /// Answer from the store's FAQ entries on the intent's topics, or ask which one.
    Route,
    /// Say the response as a fallback: the message is out of any shop's scope.
    Decline,
}

impl Action {
    /// Lower is more decisive when several intents' rules match one message.
    pub(crate) fn precedence(self) -> u8 {
        match self {
            Action::Handoff(HandoffReason::Complaint) => 0,
            Action::Handoff(_) => 1,
            Action::Task => 2,
            Action::Route => 3,
            Action::Reply => 4,
            Action::Decline => 5,
        }
    }
}

impl IntentFile {
    pub(super) fn validate(self) -> Result<Intent, String> {
        if self.name.trim().is_empty() {
            return Err("name is empty".into());
        }
        if self.response.is_blank() {
            return Err("response is empty".into());
        }
        if self.rules.is_empty() && self.examples.is_empty() {
            return Err("an intent needs at least one rule or example".into());
        }
        for rule in &self.rules {
            Regex::new(&rule_pattern(rule)).map_err(|e| format!("rule {rule:?} does not compile: {e}"))?;
        }
        let action = match (self.action, self.reason) {
            (ActionKind::Handoff, Some(reason)) => Action::Handoff(reason),
            (ActionKind::Handoff, None) => return Err("a handoff intent needs a reason".into()),
            (_, Some(_)) => return Err("only handoff intents take a reason".into()),
            (ActionKind::Reply, None) => Action::Reply,
            (ActionKind::Task, None) => Action::Task,
            (ActionKind::Route, None) => Action::Route,
            (ActionKind::Decline, None) => Action::Decline,
        };
        let topics: Vec<String> =
            self.topics.iter().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).collect();
        match (action, topics.is_empty()) {
            (Action::Route, true) => {
                return Err("a route intent needs topics (FAQ tags or categories)".into());
            }
            (Action::Route, false) | (_, true) => {}
            (_, false) => return Err("only route intents take topics".into()),
        }
        let mut slots = Vec::with_capacity(self.slots.len());
        for (name, pattern) in self.slots {
            let re = Regex::new(&format!("(?i){pattern}"))
                .map_err(|e| format!("slot {name:?} pattern does not compile: {e}"))?;
            slots.push((name, re));
        }
        let task = match (action, self.task, self.answer) {
            (Action::Task, Some(name), Some(answer)) => {
                if !valid_task_name(&name) {
                    return Err(format!(
                        "task {name:?}: a task's name is 1 to 64 lowercase letters, digits and underscores"
                    ));
                }
                if !slots.is_empty() && self.ask.as_ref().is_none_or(LocalizedText::is_blank) {
                    return Err("a task with slots needs an `ask` text, said when a slot is missing".into());
                }
                let texts = [Some(&self.response), Some(&answer), self.failed.as_ref()];
                for text in texts.into_iter().flatten() {
                    for variant in text.variants() {
                        super::template::check(variant)
                            .map_err(|e| format!("the template {variant:?} does not compile: {e}"))?;
                    }
                }
                Some(Task { name, answer, failed: self.failed })
            }
            (Action::Task, None, _) => return Err("a task intent needs `task`, its endpoint's name".into()),
            (Action::Task, _, None) => {
                return Err(
                    "a task intent needs `answer`, the reply filled from the endpoint's answer".into()
                );
            }
            (_, None, None) if self.failed.is_none() => None,
            _ => return Err("only task intents take `task`, `answer` and `failed`".into()),
        };
        Ok(Intent {
            name: self.name,
            action,
            response: self.response,
            ask: self.ask,
            examples: self.examples.into_iter().filter(|e| !e.trim().is_empty()).collect(),
            rules: self.rules,
            slots,
            topics,
            task,
            priority: self.priority,
        })
    }
}

/// What a task intent calls and says.
#[derive(Debug, Clone)]
pub struct Task {
    /// The store's endpoint, by name.
    pub name: String,
    /// The reply when the endpoint answered: a template.
    pub answer: LocalizedText,
    /// The reply when it failed, if the intent has its own.
    pub failed: Option<LocalizedText>,
}

/// A task's (and an endpoint's) name: 1 to 64 of `a-z`, `0-9` and `_`.
pub fn valid_task_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A rule as it is compiled: case-insensitive, with `\b` and `\B` as ASCII word boundaries.
///
/// Shoppers mix scripts, and an ASCII boundary treats a Han character as a non-word character,
/// so `\bhuman\b` still matches in `我要human客服`. It also keeps matching on the lazy DFA:
/// a Unicode word boundary makes the DFA give up on any non-ASCII text and fall back to the
/// much slower PikeVM, and most messages here are Chinese.
pub(crate) fn rule_pattern(rule: &str) -> String {
    let mut out = String::with_capacity(rule.len() + 16);
    out.push_str("(?i)");
    let mut chars = rule.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('b') => out.push_str("(?-u:\\b)"),
            Some('B') => out.push_str("(?-u:\\B)"),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_boundaries_become_ascii_and_other_escapes_stay() {
        assert_eq!(rule_pattern(r"\bhuman\b"), r"(?i)(?-u:\b)human(?-u:\b)");
        assert_eq!(rule_pattern(r"\d{10}\\b\B"), r"(?i)\d{10}\\b(?-u:\B)");
        let re = Regex::new(&rule_pattern(r"\b(?:talk|speak) to a human\b")).unwrap();
        assert!(re.is_match("Talk to a human please"));
        assert!(re.is_match("我想talk to a human吧"));
        assert!(!re.is_match("talk to a humanoid"));
    }
}
