//! What the command line prints for people: a triage decision (`mibot ask`) and a store's
//! measures (`mibot report`) as plain sentences. `--json` prints the same as one JSON object.

use std::fmt::Write;

use crate::domain::HandoffReason;
use crate::insight::{Report, Unresolved};
use crate::protocol::AnswerSource;
use crate::triage::{Decision, Signal, Triaged};

/// The decision on one question, the reply first and then why.
pub fn decision(triaged: &Triaged) -> String {
    let mut out = String::new();
    let trace = &triaged.trace;
    let (what, text, suggestions) = match &triaged.decision {
        Decision::Answer { source, text, suggestions, notify } => {
            let from = match source {
                AnswerSource::Faq => "a FAQ entry",
                AnswerSource::Intent => "an intent's reply",
                AnswerSource::Product => "the product catalogue",
            };
            let notify = if *notify { ", and queues the chat for a person" } else { "" };
            (format!("answers from {from}{notify}"), text, suggestions.as_slice())
        }
        Decision::Clarify { text, suggestions } => {
            ("asks which one is meant".to_owned(), text, suggestions.as_slice())
        }
        Decision::Fallback { text } => ("cannot answer (fallback reply)".to_owned(), text, &[][..]),
        Decision::Escalate { reason, text } => {
            (format!("hands the chat to a person: {}", reason_text(*reason)), text, &[][..])
        }
        Decision::Act { intent, slots, .. } => {
            let slots: Vec<String> = slots.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let what = format!("calls the store's endpoint for {intent} ({})", slots.join(", "));
            const NO_TEXT: &String = &String::new();
            (what, NO_TEXT, &[][..])
        }
    };
    let _ = writeln!(out, "mibot {what}:");
    for line in text.lines() {
        let _ = writeln!(out, "  {line}");
    }
    if !suggestions.is_empty() {
        let _ = writeln!(out, "suggestions: {}", suggestions.join(" · "));
    }
    if let Some(matched) = &trace.matched {
        let question = trace.matched_question.as_deref().map(|q| format!(" (\"{q}\")")).unwrap_or_default();
        let _ = writeln!(out, "matched: {matched}{question}");
    }
    let figures: Vec<String> = [
        trace.score.map(|s| format!("score {s:.2}")),
        trace.margin.map(|m| format!("margin {m:.2}")),
        trace.runner_up.as_ref().map(|r| format!("runner-up {r}")),
        trace.rule.as_ref().map(|r| format!("rule {r}")),
        trace.routed_by.as_ref().map(|r| format!("routed by {r}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    let signal = match trace.signal {
        Signal::Rule => "an intent rule",
        Signal::Retrieval => "retrieval over the store's questions",
        Signal::Catalog => "the product catalogue",
        Signal::None => "nothing matched well enough",
    };
    let _ = write!(out, "decided by {signal}");
    if !figures.is_empty() {
        let _ = write!(out, "; {}", figures.join(", "));
    }
    out.push('\n');
    out
}

/// The decision as one JSON object: `decision` (answer, clarify, fallback or escalate), `text`,
/// `source`, `suggestions`, `notify` or `reason` as they apply, and the `trace`.
pub fn decision_json(triaged: &Triaged) -> serde_json::Value {
    let mut out = match &triaged.decision {
        Decision::Answer { source, text, suggestions, notify } => serde_json::json!({
            "decision": "answer", "source": source, "text": text, "suggestions": suggestions, "notify": notify,
        }),
        Decision::Clarify { text, suggestions } => {
            serde_json::json!({ "decision": "clarify", "text": text, "suggestions": suggestions })
        }
        Decision::Fallback { text } => serde_json::json!({ "decision": "fallback", "text": text }),
        Decision::Escalate { reason, text } => {
            serde_json::json!({ "decision": "escalate", "reason": reason.as_str(), "text": text })
        }
        Decision::Act { intent, slots, lang } => {
            serde_json::json!({ "decision": "task", "intent": intent, "slots": slots, "lang": lang })
        }
    };
    out["trace"] = serde_json::to_value(&triaged.trace).unwrap_or_default();
    out["product"] = serde_json::json!(triaged.product);
    out
}

/// The words for why a chat went to a person.
fn reason_text(reason: HandoffReason) -> &'static str {
    match reason {
        HandoffReason::AskedForHuman => "the shopper asked for a person",
        HandoffReason::Complaint => "a complaint",
        HandoffReason::RepeatedFallback => "the bot could not answer several times",
        HandoffReason::NotifyFlag => "an entry that asks for a person to follow up",
        HandoffReason::AgentTransfer => "passed on by an agent",
        HandoffReason::Reception => "the store sends shoppers to people first",
        HandoffReason::ActionFailed => "the store's system did not answer a task twice",
    }
}

fn cause_text(cause: Unresolved) -> &'static str {
    match cause {
        Unresolved::HandedOver => "handed to a person",
        Unresolved::Fallback => "got a fallback",
        Unresolved::ActionFailed => "a task failed: the store's system did not answer",
        Unresolved::Disliked => "answer voted down or flagged",
        Unresolved::AskedRightAgain => "asked again right after an answer",
        Unresolved::AskedAgain => "came back with the same question",
    }
}

/// A store's measures over a range, as a merchant reads them.
pub fn report(store: &str, r: &Report) -> String {
    let pct = |x: Option<f64>| x.map_or("–".to_owned(), |x| format!("{:.1}%", 100.0 * x));
    let secs = |x: Option<f64>| x.map_or("–".to_owned(), |x| format!("{x:.0} s"));
    let mut out = String::new();
    let _ = writeln!(out, "{store}: {} conversations, {} shopper messages", r.sessions, r.messages);
    let _ = writeln!(out, "resolved by the bot: {} ({} conversations)", pct(r.resolution_rate), r.resolved);
    if !r.unresolved.is_empty() {
        let _ = writeln!(out, "not resolved, by first cause:");
        for (cause, n) in &r.unresolved {
            let _ = writeln!(out, "  {n:>6}  {}", cause_text(*cause));
        }
    }
    if !r.escalations.is_empty() {
        let _ = writeln!(out, "handed to a person, by reason:");
        for (reason, n) in &r.escalations {
            let _ = writeln!(out, "  {n:>6}  {}", reason_text(*reason));
        }
    }
    let _ =
        writeln!(out, "asked back (did you mean…): {} of {} bot replies", pct(r.clarify_rate), r.bot_replies);
    let h = &r.human;
    let _ = writeln!(
        out,
        "people: {} chats, first response {}, handling {}, satisfaction {} from {} ratings",
        h.chats,
        secs(h.first_response_seconds),
        secs(h.handling_seconds),
        h.csat.map_or("–".to_owned(), |c| format!("{c:.1}/5")),
        h.ratings
    );
    let f = &r.bot_feedback;
    let _ = writeln!(
        out,
        "bot answers: {} helpful ({} up, {} down), {} flagged by agents",
        pct(f.helpful_rate),
        f.helpful,
        f.not_helpful,
        f.flagged
    );
    if !r.top_entries.is_empty() {
        let _ = writeln!(out, "answered most:");
        for e in r.top_entries.iter().take(10) {
            let _ = writeln!(out, "  {:>6}  {}", e.count, e.entry);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::triage::Trace;

    #[test]
    fn a_decision_reads_as_sentences_not_as_rust() {
        let triaged = Triaged {
            decision: Decision::Escalate {
                reason: HandoffReason::AskedForHuman,
                text: "正在为您转接人工客服".into(),
            },
            trace: Trace {
                signal: Signal::Rule,
                rule: Some("human".into()),
                matched: None,
                matched_question: None,
                score: None,
                runner_up: None,
                margin: None,
                contributions: None,
                routed_by: None,
                semantic: None,
                task: None,
            },
            product: None,
            settled: true,
            pending: None,
        };
        let text = decision(&triaged);
        assert!(
            text.starts_with("mibot hands the chat to a person: the shopper asked for a person:\n"),
            "{text}"
        );
        assert!(text.contains("  正在为您转接人工客服\n"), "{text}");
        assert!(text.ends_with("decided by an intent rule; rule human\n"), "{text}");
        assert!(!text.contains("Escalate {") && !text.contains("AskedForHuman"), "{text}");
    }
}
