//! `mibot eval`: measures understanding on labelled data, through the production triage.
//!
//! Each intent label of the training file becomes a knowledge entry whose questions are its
//! training examples (label `oos` marks queries that match nothing and is never trained on).
//! The knowledge base is built exactly as `serve` builds a store, embedded by the same encoder,
//! and every test query goes through [`triage`] the way a session sends it: on lexical signals
//! first, and again with the query's embedding unless that first decision was settled. With a
//! validation file, both bands' fusions are fitted on it ([`calibrate`]) and their answer
//! thresholds and margins chosen on it — never on the test file.

mod calibrate;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use calibrate::{Scored, fit_fusion, pick_thresholds};

use crate::config::{Config, Fusion, TriageConfig};
use crate::domain::{LocalizedText, Millis, StoreId};
use crate::encoder::{Encoder, model_dir};
use crate::intents::IntentSet;
use crate::knowledge::{FaqEntry, KnowledgeBase, Pack};
use crate::text::Analyzer;
use crate::triage::{ChatContext, Decision, triage};

/// The label of a query that matches nothing.
pub const OUT_OF_SCOPE: &str = "oos";

/// One labelled query.
#[derive(Debug, Clone, Deserialize)]
pub struct Example {
    /// The query.
    pub text: String,
    /// The intent, or `oos`.
    pub intent: String,
}

/// How accurate a set of decisions was.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Accuracy {
    /// In-scope queries whose best entry is right, whatever the band.
    pub top1_accuracy: f64,
    /// In-scope queries answered confidently with the right entry.
    pub inscope_accuracy: f64,
    /// Out-of-scope queries not answered confidently.
    pub oos_recall: f64,
    /// Queries given a clarify reply.
    pub clarify_rate: f64,
    /// Macro-averaged F1 over every label, `oos` included (not answered = `oos`).
    pub macro_f1: f64,
}

/// The figures `mibot eval` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Test queries.
    pub n_test: usize,
    /// Training examples per intent, when `--shots` sampled them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shots: Option<usize>,
    /// As served: with the encoder's signals where the lexical decision was not settled.
    #[serde(flatten)]
    pub accuracy: Accuracy,
    /// On lexical signals alone (as when the encoder is missing).
    pub lexical_only: Accuracy,
    /// Whether the encoder took part.
    pub semantic: bool,
    /// Share of test queries settled on lexical signals (they never wait for the encoder).
    pub settled_share: f64,
    /// Seconds to build the knowledge base (index and classifier).
    pub train_seconds: f64,
    /// Seconds to embed the knowledge's texts and train the semantic head.
    pub embed_seconds: f64,
    /// Median decision latency with the query's vector at hand (the cached path), microseconds.
    pub p50_us: f64,
    /// 99th-percentile decision latency, microseconds.
    pub p99_us: f64,
    /// The answer threshold used with the encoder.
    pub answer_threshold: f32,
    /// The margin used with the encoder.
    pub min_margin: f32,
    /// The fusion used with the encoder.
    pub fusion: Fusion,
    /// The lexical band's threshold, margin and fusion.
    pub lexical: crate::config::LexicalBand,
}

/// Where the knowledge to evaluate comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Built from a training file: each intent becomes a knowledge entry.
    Train(PathBuf),
    /// A served store's own packs and intents.
    Store(String),
}

/// How to evaluate.
#[derive(Debug, Clone)]
pub struct Options {
    /// The test queries.
    pub test: PathBuf,
    /// Validation queries to calibrate on.
    pub val: Option<PathBuf>,
    /// Sample this many training examples per intent (the merchant's few-shot case).
    pub shots: Option<usize>,
    /// The sampling seed.
    pub seed: u64,
    /// Out-of-scope recall the thresholds must keep on the validation set (0 to 1).
    pub oos_recall: f64,
    /// Leave the encoder out.
    pub lexical: bool,
    /// Print every test query not answered right to standard error.
    pub errors: bool,
}

impl Report {
    /// A few lines for people; the JSON is for scripts.
    pub fn summary(&self) -> String {
        let a = &self.accuracy;
        let l = &self.lexical_only;
        format!(
            "in-scope accuracy {:.2}% (top-1 {:.2}%), oos recall {:.2}%, clarify {:.2}%, macro-F1 {:.2}{}\n\
             lexical signals alone: in-scope {:.2}% (top-1 {:.2}%), oos recall {:.2}%\n\
             {:.1}% of queries settled without the encoder; built in {:.2} s, embedded in {:.2} s; \
             decision p50 {:.1} µs, p99 {:.1} µs; answer threshold {}, margin {}",
            a.inscope_accuracy,
            a.top1_accuracy,
            a.oos_recall,
            a.clarify_rate,
            a.macro_f1,
            if self.semantic { "" } else { " (no encoder)" },
            l.inscope_accuracy,
            l.top1_accuracy,
            l.oos_recall,
            self.settled_share,
            self.train_seconds,
            self.embed_seconds,
            self.p50_us,
            self.p99_us,
            self.answer_threshold,
            self.min_margin
        )
    }
}

/// Reads the files, builds and embeds the knowledge, and evaluates it: what `mibot eval` does.
pub fn run_files(source: &Source, options: &Options, config: &Config) -> anyhow::Result<Report> {
    let test = read_examples(&options.test)?;
    let val = options.val.as_deref().map(read_examples).transpose()?;
    let started = Instant::now();
    let kb = match source {
        Source::Train(train) => {
            let mut train = read_examples(train)?;
            if let Some(k) = options.shots {
                train = sample_shots(&train, k, options.seed);
            }
            build(&train)?
        }
        Source::Store(store) => crate::app::load_store(&config.content, store)?,
    };
    let train_seconds = started.elapsed().as_secs_f64();
    let encoder = if options.lexical {
        None
    } else {
        let dir = model_dir(&config.encoder, &config.storage.data_dir);
        Some(
            Encoder::start(&config.encoder, &dir)
                .with_context(|| format!("starting the encoder from {}", dir.display()))?,
        )
    };
    let mut report = evaluate(
        &kb,
        encoder.as_ref(),
        &test,
        val.as_deref(),
        &config.triage,
        options.oos_recall,
        options.errors,
    )?;
    report.train_seconds = train_seconds;
    report.shots = options.shots;
    Ok(report)
}

/// Reads JSON lines of `{"text": …, "intent": …}`.
pub fn read_examples(path: &Path) -> anyhow::Result<Vec<Example>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{} line {}: not a {{text, intent}} object", path.display(), n + 1))
        })
        .collect()
}

/// `k` examples of every in-scope intent (all of an intent with fewer), drawn with `seed`; the
/// out-of-scope examples are dropped, as they are never trained on.
pub fn sample_shots(train: &[Example], k: usize, seed: u64) -> Vec<Example> {
    let mut by_intent: BTreeMap<&str, Vec<&Example>> = BTreeMap::new();
    for ex in train.iter().filter(|e| e.intent != OUT_OF_SCOPE) {
        by_intent.entry(&ex.intent).or_default().push(ex);
    }
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        // SplitMix64.
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut out = Vec::new();
    for (_, mut examples) in by_intent {
        for i in (1..examples.len()).rev() {
            let j = (next() % (i as u64 + 1)) as usize;
            examples.swap(i, j);
        }
        out.extend(examples.into_iter().take(k).cloned());
    }
    out
}

/// Builds the knowledge base from training examples, as `serve` would build a store.
pub fn build(train: &[Example]) -> anyhow::Result<KnowledgeBase> {
    let mut by_intent: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for ex in train.iter().filter(|e| e.intent != OUT_OF_SCOPE) {
        by_intent.entry(&ex.intent).or_default().push(&ex.text);
    }
    anyhow::ensure!(!by_intent.is_empty(), "the training file has no in-scope examples");
    let faq = by_intent
        .into_iter()
        .map(|(intent, texts)| FaqEntry {
            similar: texts[1..].iter().map(|t| (*t).to_owned()).collect(),
            ..FaqEntry::new(
                intent,
                LocalizedText::Plain(texts[0].to_owned()),
                LocalizedText::Plain(intent.to_owned()),
            )
        })
        .collect();
    let pack = Pack { faq, ..Pack::default() };
    let intents = Arc::new(IntentSet::from_files(Vec::new())?);
    let store = StoreId::parse("eval")?;
    Ok(KnowledgeBase::build(store, pack, intents, &Analyzer::new(), None)?)
}

/// Each query's best candidates (up to five) and their signals, with or without its vector.
fn score_all(
    kb: &KnowledgeBase,
    examples: &[Example],
    vectors: Option<&[Vec<f32>]>,
    fusion: &Fusion,
) -> Vec<Scored> {
    examples
        .iter()
        .enumerate()
        .map(|(i, ex)| Scored {
            gold: (ex.intent != OUT_OF_SCOPE).then(|| ex.intent.clone()),
            top: kb
                .search(&ex.text, 5, fusion, Millis::now(), vectors.map(|v| v[i].as_slice()))
                .into_iter()
                .map(|h| (kb.entry_id(h.entry), h.signals()))
                .collect(),
        })
        .collect()
}

/// A fusion to rank by before the first fit: the semantic signals matter most.
fn starting_fusion(semantic: bool) -> Fusion {
    if semantic {
        Fusion {
            classifier_weight: 3.0,
            retrieval_weight: 1.0,
            semantic_weight: 6.0,
            nearest_weight: 6.0,
            bias: -9.0,
        }
    } else {
        Fusion::default()
    }
}

/// Fits a band's fusion (two rounds: rank, fit, rank again, fit) and thresholds on `val`.
fn calibrate(
    kb: &KnowledgeBase,
    val: &[Example],
    vectors: Option<&[Vec<f32>]>,
    target_oos: f64,
) -> (Fusion, f32, f32) {
    let semantic = vectors.is_some();
    let mut fusion = starting_fusion(semantic);
    for _ in 0..2 {
        fusion = fit_fusion(&score_all(kb, val, vectors, &fusion), semantic);
    }
    let (threshold, margin) = pick_thresholds(&score_all(kb, val, vectors, &fusion), &fusion, target_oos);
    (fusion, threshold, margin)
}

/// Evaluates a built knowledge base (a served store, say) on `test`, with the encoder when one
/// is given. Labels are entry ids as traces show them: a FAQ id, `intent:NAME`, `product:SKU`,
/// or `oos`.
pub fn evaluate(
    kb: &KnowledgeBase,
    encoder: Option<&Encoder>,
    test: &[Example],
    val: Option<&[Example]>,
    base: &TriageConfig,
    target_oos: f64,
    show_errors: bool,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let embed = |examples: &[Example]| -> anyhow::Result<Option<Vec<Vec<f32>>>> {
        let Some(encoder) = encoder else { return Ok(None) };
        let texts: Vec<String> = examples.iter().map(|e| e.text.clone()).collect();
        Ok(Some(encoder.embed_many_blocking(&texts)?))
    };
    if let Some(encoder) = encoder {
        crate::library::embedding::embed_knowledge_blocking(kb, encoder)?;
    }
    let embed_seconds = started.elapsed().as_secs_f64();
    let test_vectors = embed(test)?;
    let mut config = base.clone();
    if let Some(val) = val {
        let val_vectors = embed(val)?;
        let (fusion, threshold, margin) = calibrate(kb, val, None, target_oos);
        config.lexical.fusion = fusion;
        config.lexical.answer_threshold = threshold;
        config.lexical.min_margin = margin;
        config.lexical.clarify_threshold = config.lexical.clarify_threshold.min(threshold);
        if let Some(vectors) = &val_vectors {
            let (fusion, threshold, margin) = calibrate(kb, val, Some(vectors), target_oos);
            config.fusion = fusion;
            config.answer_threshold = threshold;
            config.min_margin = margin;
            config.clarify_threshold = config.clarify_threshold.min(threshold);
        }
    }

    let ctx = ChatContext::default();
    let mut latencies = Vec::with_capacity(test.len());
    let mut served = Tally::default();
    let mut lexical_only = Tally::default();
    let mut settled = 0usize;
    for (i, ex) in test.iter().enumerate() {
        // Timed as a session decides with the vector at hand (the cache's path): lexical
        // first, then again with the vector unless settled.
        let started = Instant::now();
        let lexical = triage(&ex.text, kb, &ctx, &config, Millis::now(), None);
        let vector = test_vectors.as_ref().map(|v| v[i].as_slice()).filter(|_| !lexical.settled);
        let triaged = match vector {
            Some(v) => triage(&ex.text, kb, &ctx, &config, Millis::now(), Some(v)),
            None => lexical.clone(),
        };
        latencies.push(started.elapsed().as_secs_f64() * 1e6);
        settled += usize::from(lexical.settled);
        if show_errors {
            print_error(ex, &triaged, lexical.settled);
        }
        served.add(ex, &triaged);
        lexical_only.add(ex, &lexical);
    }
    latencies.sort_by(f64::total_cmp);
    let pct =
        |p: f64| latencies.get(((latencies.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0);
    Ok(Report {
        n_test: test.len(),
        shots: None,
        accuracy: served.accuracy(),
        lexical_only: lexical_only.accuracy(),
        semantic: encoder.is_some() && kb.semantic().is_some(),
        settled_share: 100.0 * settled as f64 / test.len().max(1) as f64,
        train_seconds: 0.0,
        embed_seconds,
        p50_us: pct(0.5),
        p99_us: pct(0.99),
        answer_threshold: config.answer_threshold,
        min_margin: config.min_margin,
        fusion: config.fusion,
        lexical: config.lexical,
    })
}

/// Whether the bot acted on its best entry: answered it, or handed over because an intent
/// asked for that (a person, a complaint), not because it could not answer.
fn acted(triaged: &crate::triage::Triaged) -> bool {
    match &triaged.decision {
        Decision::Answer { .. } | Decision::Act { .. } => true,
        Decision::Escalate { reason, .. } => *reason != crate::domain::HandoffReason::RepeatedFallback,
        Decision::Clarify { .. } | Decision::Fallback { .. } => false,
    }
}

/// One line on standard error for a query not answered right: what it should have been, what it
/// was, and how.
fn print_error(ex: &Example, triaged: &crate::triage::Triaged, settled: bool) {
    let kind = match triaged.decision {
        Decision::Answer { .. } => "answer",
        Decision::Clarify { .. } => "clarify",
        Decision::Fallback { .. } => "fallback",
        Decision::Escalate { .. } => "handoff",
        Decision::Act { .. } => "task",
    };
    let best = triaged.trace.matched.as_deref().unwrap_or("-");
    let right = if ex.intent == OUT_OF_SCOPE { !acted(triaged) } else { acted(triaged) && best == ex.intent };
    if !right {
        eprintln!(
            "{:<28} {:<8} {:<28} {:.2}{} {}",
            ex.intent,
            kind,
            best,
            triaged.trace.score.unwrap_or(0.0),
            if settled { " settled" } else { "" },
            ex.text
        );
    }
}

/// Counts of one way of deciding.
#[derive(Default)]
struct Tally {
    top1: usize,
    inscope_right: usize,
    inscope: usize,
    oos: usize,
    oos_rejected: usize,
    clarified: usize,
    predictions: Vec<(String, String)>,
}

impl Tally {
    fn add(&mut self, ex: &Example, triaged: &crate::triage::Triaged) {
        let best = triaged.trace.matched.clone().unwrap_or_default();
        let answered = acted(triaged);
        self.clarified += usize::from(matches!(triaged.decision, Decision::Clarify { .. }));
        if ex.intent == OUT_OF_SCOPE {
            self.oos += 1;
            self.oos_rejected += usize::from(!answered);
        } else {
            self.inscope += 1;
            self.top1 += usize::from(best == ex.intent);
            self.inscope_right += usize::from(answered && best == ex.intent);
        }
        let predicted = if answered { best } else { OUT_OF_SCOPE.to_owned() };
        self.predictions.push((ex.intent.clone(), predicted));
    }

    fn accuracy(&self) -> Accuracy {
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { 100.0 * a as f64 / b as f64 };
        Accuracy {
            top1_accuracy: ratio(self.top1, self.inscope),
            inscope_accuracy: ratio(self.inscope_right, self.inscope),
            oos_recall: ratio(self.oos_rejected, self.oos),
            clarify_rate: ratio(self.clarified, self.predictions.len()),
            macro_f1: 100.0 * macro_f1(&self.predictions),
        }
    }
}

/// Macro-averaged F1 over every label that occurs as gold or prediction.
fn macro_f1(pairs: &[(String, String)]) -> f64 {
    let mut counts: HashMap<&str, (usize, usize, usize)> = HashMap::new();
    for (gold, predicted) in pairs {
        if gold == predicted {
            counts.entry(gold).or_default().0 += 1;
        } else {
            counts.entry(predicted).or_default().1 += 1;
            counts.entry(gold).or_default().2 += 1;
        }
    }
    let f1s: Vec<f64> = counts
        .values()
        .map(|&(tp, fp, fn_)| if tp == 0 { 0.0 } else { 2.0 * tp as f64 / (2 * tp + fp + fn_) as f64 })
        .collect();
    if f1s.is_empty() { 0.0 } else { f1s.iter().sum::<f64>() / f1s.len() as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macro_f1_counts_every_label() {
        let pairs =
            [("a", "a"), ("a", "b"), ("b", "b"), ("oos", "oos")].map(|(g, p)| (g.to_owned(), p.to_owned()));
        // a: tp1 fn1 → 2/3; b: tp1 fp1 → 2/3; oos: 1.
        assert!((macro_f1(&pairs) - (2.0 / 3.0 + 2.0 / 3.0 + 1.0) / 3.0).abs() < 1e-9);
    }

    #[test]
    fn shots_sample_k_per_intent_deterministically() {
        let train: Vec<Example> = (0..30)
            .map(|i| Example {
                text: format!("t{i}"),
                intent: if i % 10 == 9 { "oos".into() } else { format!("i{}", i % 3) },
            })
            .collect();
        let a = sample_shots(&train, 2, 7);
        assert_eq!(a.len(), 6);
        assert!(a.iter().all(|e| e.intent != "oos"));
        for intent in ["i0", "i1", "i2"] {
            assert_eq!(a.iter().filter(|e| e.intent == intent).count(), 2);
        }
        let b = sample_shots(&train, 2, 7);
        assert_eq!(
            a.iter().map(|e| &e.text).collect::<Vec<_>>(),
            b.iter().map(|e| &e.text).collect::<Vec<_>>()
        );
        let c = sample_shots(&train, 2, 8);
        assert_ne!(
            a.iter().map(|e| &e.text).collect::<Vec<_>>(),
            c.iter().map(|e| &e.text).collect::<Vec<_>>()
        );
    }
}
