//! Triage: the pure decision of what to do with a shopper's message.
//!
//! [`triage`] takes the message, the store's knowledge, the conversation's state, the
//! thresholds, the time and, when the encoder gave one, the message's embedding, and returns a
//! [`Triaged`]: answer (from an intent, a FAQ entry or a product), clarify with suggestions,
//! fall back, or hand over to a person, with a [`Trace`] of why. It does no I/O, so it is
//! unit-tested directly and can be evaluated on datasets.
//!
//! Order of precedence:
//! 0. a task waiting for a slot (the bot asked for the order number) takes a message that gives
//!    it, unless the shopper asks for a person;
//! 1. an intent rule that hands over or starts a task (complaints first): a task with every
//!    slot known is `Act`, else the bot asks for the missing one;
//! 2. a product named in the message together with what is asked of it (price, a spec…);
//! 3. a confident hit on a FAQ entry, clear of the runner-up: the store's own answer beats any
//!    generic one;
//! 4. a general topic (a routing intent's rule: shipping, returns): the store's own entry on
//!    that topic when one is clearly best, else "which of these?" among them; other intent rules
//!    (greetings, thanks);
//! 5. a question about "this product" when the chat has a product in context;
//! 6. a confident hit on an intent's examples;
//! 7. a product named with little else: its summary;
//! 8. close-but-unsure hits: "did you mean…" suggestions (then a product named in passing);
//! 9. otherwise a fallback, or a handoff once fallbacks repeat.
//!
//! Steps 1–3 on lexical signals alone are *settled*: the session does not wait for the encoder
//! for them (see [`Triaged::settled`]).

mod trace;

pub use trace::{Contributions, SemanticUse, Signal, TaskCall, Trace};

use std::collections::BTreeMap;

use crate::config::{Band, Fusion, TriageConfig};
use crate::domain::{HandoffReason, Lang, Millis, PendingTask};
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
    /// The task the shopper was asked to give a slot for.
    pub pending: Option<PendingTask>,
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
    /// Do a task intent's task with the store's endpoint: every slot it needs is known. The reply
    /// is filled from the endpoint's answer (the session makes the call).
    Act {
        /// The task intent's name.
        intent: String,
        /// Its slots, by name.
        slots: BTreeMap<String, String>,
        /// The language to answer in.
        lang: Lang,
    },
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
    /// A rule, a product's fields or a confident answer decided: the semantic signals would not
    /// change it, so a lexical decision like this need not wait for the encoder.
    pub settled: bool,
    /// The task still waiting for a slot after this message (the bot asked for it).
    pub pending: Option<PendingTask>,
}

/// How many hits a routing intent looks through for the store's entries on its topics.
const ROUTE_HITS: usize = 12;

/// The confidence a hit on a handoff intent's examples needs to hand the chat over.
const HANDOFF_CONFIDENCE: f32 = 0.9;

/// How much a message may say besides a product's name (Han characters and Latin words) to be
/// about the product itself.
const NAMED_ALONE: usize = 4;

/// Decides what to do with `text`. `query` is the message's embedding; it is used when the
/// store's knowledge has its semantic index, and the thresholds are then `cfg`'s own, else
/// `cfg.lexical`'s.
///
/// A task waiting for a slot (the bot asked for the order number) takes the message first when
/// it gives the slot, unless the shopper asks for a person; a message the bot cannot place
/// gets the question again, at most `cfg.max_slot_asks` times; anything else lets the task go.
pub fn triage(
    text: &str,
    kb: &KnowledgeBase,
    ctx: &ChatContext,
    cfg: &TriageConfig,
    now: Millis,
    query: Option<&[f32]>,
) -> Triaged {
    let waiting = ctx.pending.as_ref().and_then(|p| Some((p, kb.intents().find(&p.intent)?)));
    let Some((pending, intent)) = waiting.filter(|(_, i)| kb.intents().get(*i).action == Action::Task) else {
        return decide(text, kb, ctx, cfg, now, query);
    };
    let handoff = kb
        .intents()
        .match_rules(text)
        .filter(|r| matches!(kb.intents().get(r.intent).action, Action::Handoff(_)));
    let lang = Lang::detect(text);
    let found = kb.intents().get(intent).extract_slots(text);
    if handoff.is_none() && !found.is_empty() {
        let (decision, pending) = task_decision(kb, intent, found, Some(pending), lang);
        let trace = Trace {
            matched: Some(format!("intent:{}", kb.intents().get(intent).name)),
            ..trace_for(kb, Signal::Rule, None, &cfg.fusion)
        };
        return Triaged { decision, trace, product: ctx.product.clone(), settled: true, pending };
    }
    let mut triaged = decide(text, kb, ctx, cfg, now, query);
    if matches!(triaged.decision, Decision::Fallback { .. }) && pending.asked < cfg.max_slot_asks {
        let ask = kb.intents().get(intent).ask.as_ref().map(|a| a.get(lang).to_owned());
        if let Some(text) = ask {
            triaged.decision = Decision::Answer {
                source: AnswerSource::Intent,
                text,
                suggestions: Vec::new(),
                notify: false,
            };
            triaged.pending = Some(PendingTask { asked: pending.asked + 1, ..pending.clone() });
        }
    }
    triaged
}

/// [`triage`] without a task waiting.
fn decide(
    text: &str,
    kb: &KnowledgeBase,
    ctx: &ChatContext,
    cfg: &TriageConfig,
    now: Millis,
    query: Option<&[f32]>,
) -> Triaged {
    let query = query.filter(|_| kb.semantic().is_some());
    let band = cfg.band(query.is_some());
    let lang = Lang::detect(text);
    let catalog = kb.catalog();
    let mention = catalog.mention(text);
    let named = mention.map(|m| m.product);
    // Named by a lone product's category only ("羽绒服", "white sneakers"): the product's fields
    // answer what is plainly asked of it (its fit, its price, "白色"), but an English colour word
    // may only describe ("coffee stains on white sneakers"), and nothing else gets its summary by
    // default.
    let by_category = mention.is_some_and(|m| m.by_category);
    let context_product = ctx.product.as_deref().and_then(|sku| catalog.by_sku(sku));
    let product_after = named.or(context_product).map(|i| catalog.products()[i].sku.clone());
    let done = |decision, trace, settled| Triaged {
        decision,
        trace,
        product: product_after.clone(),
        settled,
        pending: None,
    };
    // A task intent asks for what it lacks, and remembers what it has.
    let task = |intent: usize, trace: Trace, settled: bool| {
        let found = kb.intents().get(intent).extract_slots(text);
        let (decision, pending) = task_decision(kb, intent, found, None, lang);
        Triaged { decision, trace, product: product_after.clone(), settled, pending }
    };

    let rule = kb.intents().match_rules(text);
    let rule_trace = |rule: &crate::intents::RuleMatch| Trace {
        rule: Some(rule.rule.clone()),
        matched: Some(format!("intent:{}", kb.intents().get(rule.intent).name)),
        ..trace_for(kb, Signal::Rule, None, band.fusion)
    };
    let deferred = |r: &crate::intents::RuleMatch| {
        matches!(kb.intents().get(r.intent).action, Action::Reply | Action::Route)
    };
    if let Some(rule) = rule.as_ref().filter(|r| !deferred(r)) {
        if kb.intents().get(rule.intent).action == Action::Task {
            return task(rule.intent, rule_trace(rule), true);
        }
        return done(intent_decision(kb, rule.intent, lang), rule_trace(rule), true);
    }

    let asked = catalog.asked(text);
    let plainly_asked =
        !by_category || lang == Lang::Zh || asked.iter().any(|a| !matches!(a, Asked::Colour(_)));
    if let (Some(p), false, true) = (named, asked.is_empty(), plainly_asked) {
        return done(product_answer(kb, p, &asked, lang, now), product_trace(kb, p), true);
    }

    let hits = kb.search(text, cfg.max_suggestions.max(2) + 1, band.fusion, now, query);
    let trace = trace_for(kb, Signal::Retrieval, Some(&hits), band.fusion);
    let confident =
        hits.first().filter(|b| b.score >= band.answer_threshold && margin(&hits) >= band.min_margin);
    // Confident on lexical signals alone is final only when very confident: paraphrases that
    // share a few words with a question score in between and are worth the encoder's look.
    let settles = |hit: &Hit| query.is_some() || hit.score >= cfg.lexical.settle_threshold;
    // A routing rule says what the message is about: an entry on another topic does not answer it.
    let routed = rule.as_ref().filter(|r| kb.intents().get(r.intent).action == Action::Route);
    let fits = |i: usize| routed.is_none_or(|r| on_topic(kb, r.intent, i));
    if let Some(hit @ &Hit { entry: EntryRef::Faq(i), .. }) =
        confident.filter(|h| matches!(h.entry, EntryRef::Faq(i) if fits(i)))
    {
        return done(faq_answer(kb, i, lang, now), trace, settles(hit));
    }
    if let Some(rule) = &rule {
        let intent = kb.intents().get(rule.intent);
        if intent.action == Action::Route {
            let (decision, trace, settled) = route(kb, rule.intent, text, &band, cfg, lang, now, query);
            return done(
                decision,
                Trace { rule: Some(rule.rule.clone()), signal: Signal::Rule, ..trace },
                settled,
            );
        }
        return done(intent_decision(kb, rule.intent, lang), rule_trace(rule), true);
    }
    // No rule matched, and the message is closer in meaning to what no shop answers than to
    // any of the store's questions: say so, rather than offer the store's nearest entries.
    let nearer = hits.first().and_then(|h| h.nearest).unwrap_or(0.0);
    if let Some((declined, intent)) = query.and_then(|q| kb.declined(q)).filter(|_| nearer < 0.0) {
        let text = kb.intents().get(intent).response.get(lang).to_owned();
        let trace = Trace {
            matched: Some(format!("intent:{}", kb.intents().get(intent).name)),
            score: Some(declined),
            ..trace
        };
        return done(fallback_saying(ctx, cfg, lang, text), trace, false);
    }
    // "这款有什么颜色" with a product page open: the product's field, unless a FAQ entry was
    // confidently meant.
    if let (Some(p), false) = (context_product, asked.is_empty()) {
        return done(product_answer(kb, p, &asked, lang, now), product_trace(kb, p), true);
    }
    // Handing a chat over on a paraphrase alone (no rule) needs more than answering does: a
    // complaint read into a plain question is worse than a fallback.
    let confident = confident.filter(|h| match h.entry {
        EntryRef::Intent(i) => {
            !matches!(kb.intents().get(i).action, Action::Handoff(_)) || h.score >= HANDOFF_CONFIDENCE
        }
        EntryRef::Faq(_) => true,
    });
    if let Some(hit @ &Hit { entry: EntryRef::Intent(i), .. }) = confident {
        if kb.intents().get(i).action == Action::Route {
            let (decision, trace, settled) = route(kb, i, text, &band, cfg, lang, now, query);
            return done(decision, trace, settled);
        }
        // An intent reached by its examples is never final on words alone: "什么" is in many a
        // complaint and in many a question.
        let settled = query.is_some() && settles(hit);
        if kb.intents().get(i).action == Action::Task {
            return task(i, trace, settled);
        }
        return done(intent_decision(kb, i, lang), trace, settled);
    }
    // A product named with little else ("X1", "介绍下X1") gets its summary; a question that
    // names one in passing ("X1 报销要票吗") is about something else, so the store's entries
    // are offered first and the summary only when none comes close.
    if let Some(p) = named.filter(|_| catalog.beyond_names(text) <= NAMED_ALONE) {
        return done(product_answer(kb, p, &[], lang, now), product_trace(kb, p), false);
    }
    if !asked.is_empty() {
        let products = match query {
            Some(q) => kb.products_near(q, cfg.max_suggestions).into_iter().map(|(p, _)| p).collect(),
            None => kb.search_products(text, cfg.max_suggestions),
        };
        if !products.is_empty() {
            let label = catalog.label(asked[0], lang);
            let suggestions =
                products.iter().map(|&p| format!("{} {label}", catalog.short_name(p, lang))).collect();
            let text = match lang {
                Lang::Zh => "请问您想了解哪一款商品？".to_owned(),
                Lang::En => "Which product do you mean?".to_owned(),
            };
            return done(
                Decision::Clarify { text, suggestions },
                Trace { signal: Signal::Catalog, ..trace },
                false,
            );
        }
    }

    let suggestions: Vec<String> = hits
        .iter()
        .filter(|h| h.score >= band.clarify_threshold)
        .filter_map(|h| kb.suggestion(h.entry, lang))
        .take(cfg.max_suggestions)
        .collect();
    if !suggestions.is_empty() {
        return done(Decision::Clarify { text: did_you_mean(lang), suggestions }, trace, false);
    }
    if let Some(p) = named.filter(|_| !by_category) {
        return done(product_answer(kb, p, &[], lang, now), product_trace(kb, p), false);
    }
    let trace = Trace { signal: Signal::None, ..trace };
    done(fallback(ctx, cfg, lang), trace, false)
}

fn did_you_mean(lang: Lang) -> String {
    match lang {
        Lang::Zh => "您是不是想问：".to_owned(),
        Lang::En => "Did you mean:".to_owned(),
    }
}

fn fallback(ctx: &ChatContext, cfg: &TriageConfig, lang: Lang) -> Decision {
    let text = match lang {
        Lang::Zh => "抱歉，这个问题我还不会回答。您可以换个说法，或输入“转人工”联系人工客服。".to_owned(),
        Lang::En => "Sorry, I don't know the answer to that yet. Try rephrasing it, or type \"agent\" to talk to a person.".to_owned(),
    };
    fallback_saying(ctx, cfg, lang, text)
}

/// A fallback saying `text`, or the handoff once fallbacks repeat.
fn fallback_saying(ctx: &ChatContext, cfg: &TriageConfig, lang: Lang, text: String) -> Decision {
    if ctx.consecutive_fallbacks + 1 >= cfg.fallbacks_before_handoff {
        let text = match lang {
            Lang::Zh => "抱歉没能帮到您，正在为您转接人工客服，请稍候。".to_owned(),
            Lang::En => "Sorry I couldn't help. I'm connecting you with a person; please hold on.".to_owned(),
        };
        return Decision::Escalate { reason: HandoffReason::RepeatedFallback, text };
    }
    Decision::Fallback { text }
}

fn faq_answer(kb: &KnowledgeBase, i: usize, lang: Lang, now: Millis) -> Decision {
    let faq = &kb.faq()[i];
    Decision::Answer {
        source: AnswerSource::Faq,
        text: faq.answer_at(now).get(lang).to_owned(),
        suggestions: Vec::new(),
        notify: faq.notify,
    }
}

/// A general topic: the store's own entry on it when one is confidently best among them (the
/// generic intent does not compete), else the intent's question with the topic's entries as
/// suggestions. A store with no entry on the topic gets the intent's question alone.
#[allow(clippy::too_many_arguments)]
fn route(
    kb: &KnowledgeBase,
    intent: usize,
    text: &str,
    band: &Band<'_>,
    cfg: &TriageConfig,
    lang: Lang,
    now: Millis,
    query: Option<&[f32]>,
) -> (Decision, Trace, bool) {
    let on_topic = |i: usize| on_topic(kb, intent, i);
    let hits: Vec<Hit> = kb
        .search(text, ROUTE_HITS, band.fusion, now, query)
        .into_iter()
        .filter(|h| matches!(h.entry, EntryRef::Faq(i) if on_topic(i)))
        .collect();
    let routed_by = Some(format!("intent:{}", kb.intents().get(intent).name));
    let trace = Trace { routed_by, ..trace_for(kb, Signal::Retrieval, Some(&hits), band.fusion) };
    if let Some(&Hit { entry: EntryRef::Faq(i), score, .. }) = hits.first()
        && score >= band.answer_threshold
        && margin(&hits) >= band.min_margin
    {
        let settled = query.is_some() || score >= cfg.lexical.settle_threshold;
        return (faq_answer(kb, i, lang, now), trace, settled);
    }
    let mut suggestions: Vec<String> = hits.iter().filter_map(|h| kb.suggestion(h.entry, lang)).collect();
    // The topic's other entries, in the pack's order, when few matched.
    for (i, _) in kb.faq().iter().enumerate().filter(|(i, f)| f.is_live(now) && on_topic(*i)) {
        if suggestions.len() >= cfg.max_suggestions {
            break;
        }
        if let Some(s) = kb.suggestion(EntryRef::Faq(i), lang).filter(|s| !suggestions.contains(s)) {
            suggestions.push(s);
        }
    }
    suggestions.truncate(cfg.max_suggestions);
    let text = kb.intents().get(intent).response.get(lang).to_owned();
    let decision = if suggestions.is_empty() {
        Decision::Fallback { text }
    } else {
        Decision::Clarify { text, suggestions }
    };
    (decision, trace, false)
}

/// Whether FAQ entry `i` is on one of routing intent `intent`'s topics (a tag or the category).
fn on_topic(kb: &KnowledgeBase, intent: usize, i: usize) -> bool {
    let topics = &kb.intents().get(intent).topics;
    let faq = &kb.faq()[i];
    faq.tags.iter().chain(&faq.category).any(|t| topics.iter().any(|topic| topic.eq_ignore_ascii_case(t)))
}

/// A task intent's decision on the slots `found` in the message, with those of the task asked
/// about before (`carried`): act when every slot is known, else ask for the rest.
fn task_decision(
    kb: &KnowledgeBase,
    index: usize,
    found: Vec<(String, String)>,
    carried: Option<&PendingTask>,
    lang: Lang,
) -> (Decision, Option<PendingTask>) {
    let intent = kb.intents().get(index);
    let mut slots = carried.map(|p| p.slots.clone()).unwrap_or_default();
    slots.extend(found);
    let missing = intent.slot_names().any(|name| !slots.contains_key(name));
    match (&intent.ask, missing) {
        (Some(ask), true) => {
            let asked = carried.map_or(0, |p| p.asked) + 1;
            let decision = Decision::Answer {
                source: AnswerSource::Intent,
                text: ask.get(lang).to_owned(),
                suggestions: Vec::new(),
                notify: false,
            };
            (decision, Some(PendingTask { intent: intent.name.clone(), slots, asked }))
        }
        _ => (Decision::Act { intent: intent.name.clone(), slots, lang }, None),
    }
}

fn intent_decision(kb: &KnowledgeBase, index: usize, lang: Lang) -> Decision {
    let intent = kb.intents().get(index);
    let reply = intent.response.get(lang).to_owned();
    match intent.action {
        Action::Handoff(reason) => Decision::Escalate { reason, text: reply },
        Action::Decline => Decision::Fallback { text: reply },
        // Task intents are decided by `task_decision`; reached here, the response is said.
        Action::Reply | Action::Route | Action::Task => Decision::Answer {
            source: AnswerSource::Intent,
            text: reply,
            suggestions: Vec::new(),
            notify: false,
        },
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
        contributions: hits.first().map(|h| {
            let [classifier, retrieval, semantic, nearest] = fusion.terms(&h.signals());
            Contributions {
                classifier,
                retrieval,
                semantic: h.semantic.map(|_| semantic),
                nearest: h.nearest.map(|_| nearest),
                bias: fusion.bias,
            }
        }),
        signal,
        rule: None,
        matched: hits.first().map(|h| kb.entry_id(h.entry)),
        matched_question: hits.first().map(|h| h.matched.clone()),
        score: hits.first().map(|h| h.score),
        runner_up: hits.get(1).map(|h| kb.entry_id(h.entry)),
        margin: hits.first().map(|_| margin(hits)),
        routed_by: None,
        semantic: None,
        task: None,
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
            [[product]]
            sku = "NV-F1"
            name = { zh = "星河 F1 老人机", en = "Nova F1 Feature Phone" }
            category = { zh = "手机", en = "phone" }
            price = 199.0
            "#,
        )
        .unwrap();
        KnowledgeBase::build(StoreId::parse("t").unwrap(), pack, intents, &Analyzer::new(), None).unwrap()
    }

    fn decide(kb: &KnowledgeBase, text: &str, ctx: &ChatContext) -> Triaged {
        triage(text, kb, ctx, &TriageConfig::default(), Millis(0), None)
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
            matches!(t.decision, Decision::Clarify { ref suggestions, .. } if suggestions == &["X1 内存", "星河 F1 老人机 内存"]),
            "{t:?}"
        );
    }

    #[test]
    fn middling_matches_clarify_and_nonsense_falls_back_then_escalates() {
        let kb = kb();
        // The bands, not a calibration: with a strict answer threshold a likely entry is offered.
        let mut strict = TriageConfig::default();
        strict.lexical.answer_threshold = 0.99;
        strict.lexical.clarify_threshold = 0.2;
        let t = triage("发票", &kb, &ChatContext::default(), &strict, Millis(0), None);
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
        let Decision::Act { ref intent, ref slots, lang: Lang::Zh } = t.decision else { panic!("{t:?}") };
        assert_eq!((intent.as_str(), slots["order"].as_str()), ("order_status", "2026112312345678"));
        assert_eq!(t.pending, None);
    }

    #[test]
    fn a_missing_slot_is_asked_for_and_the_next_message_fills_it() {
        let kb = kb();
        let t = decide(&kb, "我的快递到哪了", &ChatContext::default());
        assert!(matches!(t.decision, Decision::Answer { ref text, .. } if text.contains("订单号")), "{t:?}");
        let pending = t.pending.clone().expect("the task waits for its order number");
        assert_eq!((pending.intent.as_str(), pending.asked), ("order_status", 1));
        let ctx = ChatContext { pending: Some(pending.clone()), ..ChatContext::default() };
        // The number alone, or inside a sentence no rule knows, fills the slot.
        let t = decide(&kb, "好的 是这个 2026112312345678 谢谢", &ctx);
        assert!(
            matches!(t.decision, Decision::Act { ref slots, .. } if slots["order"] == "2026112312345678"),
            "{t:?}"
        );
        assert_eq!(t.pending, None);
        // Something the bot cannot place gets the question again, up to the limit…
        let t = decide(&kb, "量子纠缠的原理", &ctx);
        assert!(matches!(t.decision, Decision::Answer { ref text, .. } if text.contains("订单号")), "{t:?}");
        assert_eq!(t.pending.as_ref().map(|p| p.asked), Some(2));
        let tired = ChatContext { pending: t.pending, ..ChatContext::default() };
        let t = decide(&kb, "量子纠缠的原理", &tired);
        assert!(matches!(t.decision, Decision::Fallback { .. }) && t.pending.is_none(), "{t:?}");
        // …a question the store answers lets the task go, and 转人工 always wins.
        let t = decide(&kb, "退货运费谁出？", &ctx);
        assert!(
            matches!(t.decision, Decision::Answer { source: AnswerSource::Faq, .. }) && t.pending.is_none()
        );
        let t = decide(&kb, "转人工 2026112312345678", &ctx);
        assert!(matches!(t.decision, Decision::Escalate { .. }), "{t:?}");
    }
}
