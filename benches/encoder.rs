//! The sentence encoder alone: one message at a time (a shopper's, when nothing else waits),
//! and batches of 16 (what the workers take when messages queue up), each through one worker's
//! session on one thread.
//!
//! `cargo bench --bench encoder` (figures in docs/performance.md). Needs the model:
//! `encoder.model_dir`, by default `data/model` (`mibot model install`).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mibot::config::Config;

const MESSAGES: &[&str] = &[
    "退货运费谁出",
    "买一件要出邮费不",
    "how much do u charge for shipping",
    "我想问一下这个羽绒服偏大还是偏小，平时穿L码的话应该买多大的",
];

fn encoder(c: &mut Criterion) {
    let config = Config::load(None).expect("the configuration loads");
    let dir = mibot::encoder::model_dir(&config.encoder, &config.storage.data_dir);
    let one_thread = mibot::config::EncoderConfig { threads: 1, ..config.encoder.clone() };
    let encoder = match mibot::encoder::Encoder::start(&one_thread, &dir) {
        Ok(encoder) => encoder,
        Err(error) => {
            eprintln!("no encoder ({error}): nothing to measure");
            return;
        }
    };
    let mut group = c.benchmark_group("encoder");
    for (n, text) in MESSAGES.iter().enumerate() {
        let texts = vec![(*text).to_owned()];
        let tokens = encoder.token_ids(text).len();
        group.bench_function(format!("one_{n}_{tokens}_tokens"), |b| {
            b.iter(|| encoder.embed_many_blocking(&texts).expect("encodes"))
        });
    }
    let batch: Vec<String> = (0..16).map(|i| format!("{} {i}", MESSAGES[i % 3])).collect();
    group.throughput(Throughput::Elements(16));
    group.bench_function("batch_16", |b| b.iter(|| encoder.embed_many_blocking(&batch).expect("encodes")));
    group.finish();
}

criterion_group!(benches, encoder);
criterion_main!(benches);
