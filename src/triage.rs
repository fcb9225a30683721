//! Triage: the pure decision of what to do with a shopper's message.
//!
//! [`triage`] takes the message, the store's knowledge, the conversation's state, the
//! thresholds and the time, and returns a [`Triaged`]: answer (from an intent, a FAQ entry or a
//! product), clarify with suggestions, fall back, or hand over to a person, with a [`Trace`] of
//! why. It does no I/O, so it is unit-tested directly and can be evaluated on datasets.
//!
//! Order of precedence:
//! 1. an intent rule that hands over or looks up an order (complaints first);
//! 2. a product named in the message together with what is asked of it (price, a spec…);
//! 3. a confident retrieval hit on a FAQ entry, clear of the runner-up: a specific answer beats
//!    a generic one;
//! 4. any other intent rule (greetings, generic return or shipping answers), then a confident
//!    hit on an intent's examples;
//! 5. a question about "this product" when the chat has a product in context;
//! 6. a product named alone: its summary;
//! 7. close-but-unsure hits: "did you mean…" suggestions;
//! 8. otherwise a fallback, or a handoff once fallbacks repeat.

use serde::{Deserialize, Serialize};

use crate::config::{Fusion, TriageConfig};
use crate::domain::{HandoffReason, Lang, Millis};
use crate::intents::Action;
use crate::knowledge::catalog::Asked;
use crate::knowledge::{EntryRef, Hit, KnowledgeBase};
use crate::protocol::AnswerSource;

/// What the conversation carries into triage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatContext {
    /// Fallbacks in a row just before this message.
    pub consecutive_fallbacks: u32,
    /// The SKU of the product being discussed.
    pub product: Option<String>,
}

/// The decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Answer with `text`.
    Answer {
        /// Where the answer comes from.
        source: AnswerSource,
        /// The reply.
        text: String,
        /// Related products to offer.
        suggestions: Vec<String>,
        /// Also queue the chat for a person (a FAQ entry flagged `notify`).
        notify: bool,
    },
    /// Ask which of `suggestions` the shopper means.
    Clarify {
        /// The reply.
        text: String,
        /// Up to the configured number of suggestions.
        suggestions: Vec<String>,
    },
    /// Say the bot cannot answer.
    Fallback {
        /// The reply.
        text: String,
    },
    /// Hand the conversation to a person.
    Escalate {
        /// Why.
        reason: HandoffReason,
        /// What the shopper is told.
        text: String,
    },
}

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
}

/// The terms of the fused confidence `σ(classifier + retrieval + bias)` for the best entry.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Contributions {
    /// The classifier's weighted decision value.
    pub classifier: f32,
    /// The retrieval cosine, weighted.
    pub retrieval: f32,
    /// The constant term.
    pub bias: f32,
}

/// A decision with its trace and the product the chat is now about.
#[derive(Debug, Clone, PartialEq)]
pub struct Triaged {
    /// What to do.
    pub decision: Decision,
    /// Why.
    pub trace: Trace,
    /// The product in context after this message.
    pub product: Option<String>,
}

/// Decides what to do with `text`.
pub fn triage(text: &str, kb: &KnowledgeBase, ctx: &ChatContext, cfg: &TriageConfig, now: Millis) -> Triaged {
    let lang = Lang::detect(text);
    let catalog = kb.catalog();
    let named = catalog.mentioned(text);
    let context_product = ctx.product.as_deref().and_then(|sku| catalog.by_sku(sku));
    let product_after = named.or(context_product).map(|i| catalog.products()[i].sku.clone());
    let done = |decision, trace| Triaged { decision, trace, product: product_after.clone() };

    let rule = kb.intents().match_rules(text);
    let rule_decision = rule.as_ref().map(|rule| {
        let trace = Trace {
            rule: Some(rule.rule.clone()),
            matched: Some(format!("intent:{}", kb.intents().get(rule.intent).name)),
            ..trace_for(kb, Signal::Rule, None, &cfg.fusion)
        };
        (intent_decision(kb, rule.intent, text, lang), trace)
    });
    let generic = rule.as_ref().is_some_and(|r| kb.intents().get(r.intent).action == Action::Reply);
    if let Some((decision, trace)) = rule_decision.clone().filter(|_| !generic) {
        return done(decision, trace);
    }

    let asked = catalog.asked(text);
    if let (Some(p), false) = (named, asked.is_empty()) {
        return done(product_answer(kb, p, &asked, lang, now), product_trace(kb, p));
    }

    let hits = kb.search(text, cfg.max_suggestions.max(2) + 1, &cfg.fusion, now);
    let trace = trace_for(kb, Signal::Retrieval, Some(&hits), &cfg.fusion);
    let margin = margin(&hits);
    let confident = hits.first().filter(|b| b.score >= cfg.answer_threshold && margin >= cfg.min_margin);
    if let Some(&Hit { entry: EntryRef::Faq(i), .. }) = confident {
        let faq = &kb.faq()[i];
        let answer = faq.answer_at(now).get(lang).to_owned();
        let decision = Decision::Answer {
            source: AnswerSource::Faq,
            text: answer,
            suggestions: Vec::new(),
            notify: faq.notify,
        };
        return done(decision, trace);
    }
    if let Some((decision, trace)) = rule_decision {
        return done(decision, trace);
    }
    if let Some(&Hit { entry: EntryRef::Intent(i), .. }) = confident {
        return done(intent_decision(kb, i, text, lang), trace);
    }

    if let (Some(p), false) = (context_product, asked.is_empty()) {
        return done(product_answer(kb, p, &asked, lang, now), product_trace(kb, p));
    }
    if let Some(p) = named {
        return done(product_answer(kb, p, &[], lang, now), product_trace(kb, p));
    }
    if !asked.is_empty() {
        let products = kb.search_products(text, cfg.max_suggestions);
        if !products.is_empty() {
            let label = catalog.label(asked[0], lang);
            let suggestions =
                products.iter().map(|&p| format!("{} {label}", catalog.short_name(p, lang))).collect();
            let text = match lang {
                Lang::Zh => "请问您想了解哪一款商品？".to_owned(),
                Lang::En => "Which product do you mean?".to_owned(),
            };
            return done(Decision::Clarify { text, suggestions }, Trace { signal: Signal::Catalog, ..trace });
        }
    }

    let suggestions: Vec<String> = hits
        .iter()
        .filter(|h| h.score >= cfg.clarify_threshold)
        .filter_map(|h| kb.suggestion(h.entry, lang))
        .take(cfg.max_suggestions)
        .collect();
    if !suggestions.is_empty() {
        let text = match lang {
            Lang::Zh => "您是不是想问：".to_owned(),
            Lang::En => "Did you mean:".to_owned(),
        };
        return done(Decision::Clarify { text, suggestions }, trace);
    }

    let trace = Trace { signal: Signal::None, ..trace };
    if ctx.consecutive_fallbacks + 1 >= cfg.fallbacks_before_handoff {
        let text = match lang {
            Lang::Zh => "抱歉没能帮到您，正在为您转接人工客服，请稍候。".to_owned(),
            Lang::En => "Sorry I couldn't help. I'm connecting you with a person; please hold on.".to_owned(),
        };
        return done(Decision::Escalate { reason: HandoffReason::RepeatedFallback, text }, trace);
    }
    let text = match lang {
        Lang::Zh => "抱歉，这个问题我还不会回答。您可以换个说法，或输入“转人工”联系人工客服。".to_owned(),
        Lang::En => "Sorry, I don't know the answer to that yet. Try rephrasing it, or type \"agent\" to talk to a person.".to_owned(),
    };
    done(Decision::Fallback { text }, trace)
}

fn intent_decision(kb: &KnowledgeBase, index: usize, text: &str, lang: Lang) -> Decision {
    let intent = kb.intents().get(index);
    let reply = intent.response.get(lang).to_owned();
    match intent.action {
        Action::Handoff(reason) => Decision::Escalate { reason, text: reply },
        Action::Reply => Decision::Answer {
            source: AnswerSource::Intent,
            text: reply,
            suggestions: Vec::new(),
            notify: false,
        },
        Action::OrderStatus => {
            let slots = intent.extract_slots(text);
            let text = match (slots.iter().find(|(name, _)| name == "order"), &intent.ask) {
                (Some((_, order)), _) => reply.replace("{order}", order),
                (None, Some(ask)) => ask.get(lang).to_owned(),
                (None, None) => reply.replace("{order}", ""),
            };
            Decision::Answer { source: AnswerSource::Intent, text, suggestions: Vec::new(), notify: false }
        }
    }
}

fn product_answer(kb: &KnowledgeBase, product: usize, asked: &[Asked], lang: Lang, now: Millis) -> Decision {
    let catalog = kb.catalog();
    let text = catalog.answer(product, asked, lang, now);
    let wants_related =
        asked.is_empty() || asked.contains(&Asked::Promotion) || asked.contains(&Asked::Price);
    let suggestions = if wants_related { catalog.related(product, lang) } else { Vec::new() };
    Decision::Answer { source: AnswerSource::Product, text, suggestions, notify: false }
}

fn product_trace(kb: &KnowledgeBase, product: usize) -> Trace {
    Trace {
        matched: Some(format!("product:{}", kb.catalog().products()[product].sku)),
        ..trace_for(kb, Signal::Catalog, None, &Fusion::default())
    }
}

fn margin(hits: &[Hit]) -> f32 {
    match hits {
        [] => 0.0,
        [only] => only.score,
        [best, second, ..] => best.score - second.score,
    }
}

fn trace_for(kb: &KnowledgeBase, signal: Signal, hits: Option<&[Hit]>, fusion: &Fusion) -> Trace {
    let hits = hits.unwrap_or_default();
    Trace {
        contributions: hits.first().map(|h| Contributions {
            classifier: fusion.classifier_weight * h.classifier,
            retrieval: fusion.retrieval_weight * h.retrieval,
            bias: fusion.bias,
        }),
        signal,
        rule: None,
        matched: hits.first().map(|h| kb.entry_id(h.entry)),
        matched_question: hits.first().map(|h| h.matched.clone()),
        score: hits.first().map(|h| h.score),
        runner_up: hits.get(1).map(|h| kb.entry_id(h.entry)),
        margin: hits.first().map(|_| margin(hits)),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::domain::StoreId;
    use crate::intents::IntentSet;
    use crate::knowledge::Pack;
    use crate::text::Analyzer;

    fn kb() -> KnowledgeBase {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let intents = Arc::new(IntentSet::load_dir(&root.join("intents")).unwrap());
        let pack: Pack = toml::from_str(
            r#"
            [[faq]]
            id = "return-shipping"
            question = { zh = "退货运费谁承担？", en = "Who pays for return shipping?" }
            similar = ["退货运费谁出", "do I pay postage when I return"]
            answer = { zh = "质量问题由我们承担运费。", en = "We pay if the item is faulty." }
            [[faq]]
            id = "invoice"
            question = { zh = "怎么开发票？", en = "How do I get an invoice?" }
            similar = ["可以开发票吗", "need a receipt for my order"]
            answer = { zh = "在订单页申请电子发票。", en = "Request an e-invoice on the order page." }
            [[faq]]
            id = "invoice-company"
            question = { zh = "发票可以开公司抬头吗？", en = "Can the invoice show my company?" }
            answer = { zh = "可以。", en = "Yes." }
            [[attribute]]
            key = "memory"
            label = { zh = "内存", en = "memory" }
            synonyms = ["内存", "memory", "ram"]
            [[product]]
            sku = "NV-X1"
            name = { zh = "星河 X1 手机", en = "Nova X1 Phone" }
            aliases = ["X1"]
            category = { zh = "手机", en = "phone" }
            price = 2999.0
            attributes = { memory = "8GB" }
            "#,
        )
        .unwrap();
        KnowledgeBase::build(StoreId::parse("t").unwrap(), pack, intents, &Analyzer::new(), None).unwrap()
    }

    fn decide(kb: &KnowledgeBase, text: &str, ctx: &ChatContext) -> Triaged {
        triage(text, kb, ctx, &TriageConfig::default(), Millis(0))
    }

    #[test]
    fn faq_answers_carry_their_trace() {
        let kb = kb();
        let t = decide(&kb, "退货运费谁出？", &ChatContext::default());
        assert!(
            matches!(t.decision, Decision::Answer { source: AnswerSource::Faq, ref text, .. } if text.contains("运费"))
        );
        assert_eq!(t.trace.matched.as_deref(), Some("return-shipping"));
        assert!(t.trace.score.unwrap() > 0.9, "{:?}", t.trace);
    }

    #[test]
    fn rules_come_first_and_handoffs_escalate() {
        let kb = kb();
        let t = decide(&kb, "转人工", &ChatContext::default());
        assert!(matches!(t.decision, Decision::Escalate { reason: HandoffReason::AskedForHuman, .. }));
        assert_eq!(t.trace.signal, Signal::Rule);
    }

    #[test]
    fn products_are_answered_from_fields_and_remembered() {
        let kb = kb();
        let t = decide(&kb, "X1 多少钱", &ChatContext::default());
        assert!(
            matches!(t.decision, Decision::Answer { source: AnswerSource::Product, ref text, .. } if text.contains("¥2999"))
        );
        assert_eq!(t.product.as_deref(), Some("NV-X1"));
        let ctx = ChatContext { product: t.product, ..ChatContext::default() };
        let t = decide(&kb, "这款手机内存多大", &ctx);
        assert!(matches!(t.decision, Decision::Answer { ref text, .. } if text.contains("8GB")), "{t:?}");
    }

    #[test]
    fn a_spec_question_without_a_product_asks_which_one() {
        let kb = kb();
        let t = decide(&kb, "这款手机内存多大", &ChatContext::default());
        assert!(
            matches!(t.decision, Decision::Clarify { ref suggestions, .. } if suggestions == &["X1 内存"]),
            "{t:?}"
        );
    }

    #[test]
    fn middling_matches_clarify_and_nonsense_falls_back_then_escalates() {
        let kb = kb();
        // The bands, not a calibration: with a strict answer threshold a likely entry is offered.
        let strict =
            TriageConfig { answer_threshold: 0.99, clarify_threshold: 0.2, ..TriageConfig::default() };
        let t = triage("发票", &kb, &ChatContext::default(), &strict, Millis(0));
        let offered = matches!(t.decision, Decision::Clarify { ref suggestions, .. } if suggestions[0] == "怎么开发票？");
        assert!(offered, "{t:?}");
        let t = decide(&kb, "量子纠缠的原理", &ChatContext::default());
        assert!(matches!(t.decision, Decision::Fallback { .. }), "{t:?}");
        let again = ChatContext { consecutive_fallbacks: 1, ..ChatContext::default() };
        let t = decide(&kb, "量子纠缠的原理", &again);
        assert!(matches!(t.decision, Decision::Escalate { reason: HandoffReason::RepeatedFallback, .. }));
    }

    #[test]
    fn order_numbers_fill_the_order_slot() {
        let kb = kb();
        let t = decide(&kb, "我的订单 2026112312345678 到哪了", &ChatContext::default());
        assert!(
            matches!(t.decision, Decision::Answer { ref text, .. } if text.contains("2026112312345678")),
            "{t:?}"
        );
    }
}
