//! The per-message decision on the demo store: rules, product matching, the classifier,
//! tantivy retrieval and fusion, exactly as a shopper's message goes through `triage`.
//!
//! `cargo bench --bench decision` (figures in docs/performance.md).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use mibot::config::Config;
use mibot::domain::Millis;
use mibot::triage::{ChatContext, triage};

/// One message of each kind the pipeline sees. On the demo store: a FAQ answer (Chinese), an
/// intent answer (English), product answers from the catalog's fields, a rule's handoff, small
/// talk, and a fallback.
const MESSAGES: &[(&str, &str)] = &[
    ("faq_zh", "退货要自己付运费吗"),
    ("faq_en", "how long does delivery take"),
    ("product_spec", "星河 X1 的电池多大"),
    ("product_price", "Nova A5 how much"),
    ("rule_handoff", "转人工"),
    ("small_talk", "你好"),
    ("unanswerable", "你们老板喜欢什么颜色"),
];

fn decision(c: &mut Criterion) {
    let config = Config::default();
    let kb =
        mibot::app::load_store(&config.content, "demo").expect("the demo store builds (run from the repo)");
    let ctx = ChatContext::default();
    let now = Millis::now();
    let mut group = c.benchmark_group("triage");
    for &(name, text) in MESSAGES {
        group.bench_function(name, |b| {
            b.iter(|| triage(black_box(text), &kb, &ctx, &config.triage, now, None))
        });
    }
    group.finish();
}

criterion_group!(benches, decision);
criterion_main!(benches);
