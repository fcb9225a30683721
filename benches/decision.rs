//! The per-message decision on the demo store: rules, product matching, the classifier,
//! tantivy retrieval and fusion, exactly as a shopper's message goes through `triage`; and the
//! same with the message's embedding at hand (the encoder's cache path: a lexical pass, then a
//! semantic one unless the first settled it).
//!
//! `cargo bench --bench decision` (figures in docs/performance.md). The semantic cases need the
//! model: `encoder.model_dir`, by default `data/model` (`mibot model install`).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use mibot::config::Config;
use mibot::domain::Millis;
use mibot::triage::{ChatContext, triage};

/// One message of each kind the pipeline sees. On the demo store: a FAQ answer (Chinese), an
/// intent answer (English), product answers from the catalog's fields, a rule's handoff, small
/// talk, a shopper's own wording, and a fallback.
const MESSAGES: &[(&str, &str)] = &[
    ("faq_zh", "退货要自己付运费吗"),
    ("faq_en", "how long does delivery take"),
    ("product_spec", "星河 X1 的电池多大"),
    ("product_price", "Nova A5 how much"),
    ("rule_handoff", "转人工"),
    ("small_talk", "你好"),
    ("paraphrase_zh", "买一件要出邮费不"),
    ("paraphrase_en", "how much do u charge for postage"),
    ("unanswerable", "你们老板喜欢什么颜色"),
];

fn decision(c: &mut Criterion) {
    let config = Config::load(None).expect("the configuration loads");
    let kb =
        mibot::app::load_store(&config.content, "demo").expect("the demo store builds (run from the repo)");
    let ctx = ChatContext::default();
    let now = Millis::now();
    let mut group = c.benchmark_group("lexical");
    for &(name, text) in MESSAGES {
        group.bench_function(name, |b| {
            b.iter(|| triage(black_box(text), &kb, &ctx, &config.triage, now, None))
        });
    }
    group.finish();

    let dir = mibot::encoder::model_dir(&config.encoder, &config.storage.data_dir);
    let encoder = match mibot::encoder::Encoder::start(&config.encoder, &dir) {
        Ok(encoder) => encoder,
        Err(error) => {
            eprintln!("no encoder ({error}): the semantic cases are skipped");
            return;
        }
    };
    mibot::library::embedding::embed_knowledge_blocking(&kb, &encoder).expect("the demo store embeds");
    let texts: Vec<String> = MESSAGES.iter().map(|(_, t)| (*t).to_owned()).collect();
    let vectors = encoder.embed_many_blocking(&texts).expect("the messages embed");
    // A message whose vector the cache holds is decided once, with it.
    let mut group = c.benchmark_group("cached");
    for (&(name, text), vector) in MESSAGES.iter().zip(&vectors) {
        group.bench_function(name, |b| {
            b.iter(|| triage(black_box(text), &kb, &ctx, &config.triage, now, Some(vector)))
        });
    }
    group.finish();
}

criterion_group!(benches, decision);
criterion_main!(benches);
