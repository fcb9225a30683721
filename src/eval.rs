//! `mibot eval`: measures understanding on labelled data, through the production triage.
//!
//! Each intent label of the training file becomes a knowledge entry whose questions are its
//! training examples (label `oos` marks queries that match nothing and is never trained on).
//! The knowledge base is built exactly as `serve` builds a store, and every test query goes
//! through [`triage`]. With a validation file, the confidence fusion is fitted on it by logistic
//! regression and the answer threshold and margin are chosen on it — never on the test file.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::config::{ContentConfig, Fusion, TriageConfig};
use crate::domain::{LocalizedText, Millis, StoreId};
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

/// The figures `mibot eval` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Test queries.
    pub n_test: usize,
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
    /// Seconds to build the knowledge base (index and classifier).
    pub train_seconds: f64,
    /// Median decision latency, microseconds.
    pub p50_us: f64,
    /// 99th-percentile decision latency, microseconds.
    pub p99_us: f64,
    /// The thresholds and fusion used on the test set.
    pub answer_threshold: f32,
    /// The margin used on the test set.
    pub min_margin: f32,
    /// The fusion used on the test set.
    pub fusion: Fusion,
}

/// Where the knowledge to evaluate comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Built from a training file: each intent becomes a knowledge entry.
    Train(std::path::PathBuf),
    /// A served store's own packs and intents.
    Store(String),
}

/// Reads the files, builds the knowledge and evaluates it: what `mibot eval` does.
pub fn run_files(
    source: &Source,
    test: &Path,
    val: Option<&Path>,
    content: &ContentConfig,
    triage: &TriageConfig,
) -> anyhow::Result<Report> {
    let test = read_examples(test)?;
    let val = val.map(read_examples).transpose()?;
    match source {
        Source::Train(train) => run(&read_examples(train)?, &test, val.as_deref(), triage),
        Source::Store(store) => {
            let started = Instant::now();
            let kb = crate::app::load_store(content, store)?;
            let seconds = started.elapsed().as_secs_f64();
            Ok(evaluate(&kb, seconds, &test, val.as_deref(), triage))
        }
    }
}

impl Report {
    /// Two lines for people; the JSON is for scripts.
    pub fn summary(&self) -> String {
        format!(
            "in-scope accuracy {:.2}% (top-1 {:.2}%), oos recall {:.2}%, clarify {:.2}%, macro-F1 {:.2}\n\
             built in {:.2} s; decision p50 {:.1} µs, p99 {:.1} µs; answer threshold {}, margin {}",
            self.inscope_accuracy,
            self.top1_accuracy,
            self.oos_recall,
            self.clarify_rate,
            self.macro_f1,
            self.train_seconds,
            self.p50_us,
            self.p99_us,
            self.answer_threshold,
            self.min_margin
        )
    }
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

/// The top two hits' signals for one query, to calibrate without re-running search.
struct Scored {
    gold: Option<String>,
    top: Vec<(String, f32, f32)>,
}

fn score_all(kb: &KnowledgeBase, examples: &[Example], fusion: &Fusion) -> Vec<Scored> {
    examples
        .iter()
        .map(|ex| Scored {
            gold: (ex.intent != OUT_OF_SCOPE).then(|| ex.intent.clone()),
            top: kb
                .search(&ex.text, 2, fusion, Millis::now())
                .into_iter()
                .map(|h| (kb.entry_id(h.entry), h.classifier, h.retrieval))
                .collect(),
        })
        .collect()
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// Fits the fusion by logistic regression: is the best candidate the right in-scope answer?
fn fit_fusion(scored: &[Scored]) -> Fusion {
    let rows: Vec<(f32, f32, f32)> = scored
        .iter()
        .filter_map(|s| {
            let (id, c, r) = s.top.first()?;
            Some((*c, *r, if s.gold.as_deref() == Some(id.as_str()) { 1.0 } else { 0.0 }))
        })
        .collect();
    let (mut a, mut b, mut c) = (1.0f32, 1.0f32, 0.0f32);
    let n = rows.len().max(1) as f32;
    for _ in 0..3000 {
        let (mut ga, mut gb, mut gc) = (0.0, 0.0, 0.0);
        for &(x1, x2, y) in &rows {
            let err = sigmoid(a * x1 + b * x2 + c) - y;
            ga += err * x1;
            gb += err * x2;
            gc += err;
        }
        a -= 2.0 * ga / n;
        b -= 2.0 * gb / n;
        c -= 2.0 * gc / n;
    }
    Fusion { classifier_weight: a, retrieval_weight: b, bias: c }
}

/// Chooses the answer threshold and margin that maximise in-scope accuracy plus oos recall.
fn pick_thresholds(scored: &[Scored], fusion: &Fusion) -> (f32, f32) {
    let conf = |&(_, c, r): &(String, f32, f32)| fusion.confidence(c, r);
    let rows: Vec<(Option<bool>, f32, f32)> = scored
        .iter()
        .map(|s| {
            let first = s.top.first().map(conf).unwrap_or(0.0);
            let second = s.top.get(1).map(conf).unwrap_or(0.0);
            let right = s.gold.as_ref().map(|g| s.top.first().is_some_and(|t| &t.0 == g));
            (right, first, first - second)
        })
        .collect();
    let inscope = rows.iter().filter(|r| r.0.is_some()).count().max(1) as f64;
    let oos = rows.iter().filter(|r| r.0.is_none()).count().max(1) as f64;
    let mut best = (f64::MIN, 0.5, 0.0);
    for t in (1..100).map(|t| t as f32 / 100.0) {
        for m in (0..=20).map(|m| m as f32 / 100.0) {
            let answered = |r: &(Option<bool>, f32, f32)| r.1 >= t && r.2 >= m;
            let right = rows.iter().filter(|r| r.0 == Some(true) && answered(r)).count() as f64;
            let rejected = rows.iter().filter(|r| r.0.is_none() && !answered(r)).count() as f64;
            let objective = right / inscope + rejected / oos;
            if objective > best.0 {
                best = (objective, t, m);
            }
        }
    }
    (best.1, best.2)
}

/// Builds from `train` and evaluates.
pub fn run(
    train: &[Example],
    test: &[Example],
    val: Option<&[Example]>,
    base: &TriageConfig,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let kb = build(train)?;
    let train_seconds = started.elapsed().as_secs_f64();
    Ok(evaluate(&kb, train_seconds, test, val, base))
}

/// Evaluates a built knowledge base (a served store, say). Labels are entry ids as traces show
/// them: a FAQ id, `intent:NAME`, `product:SKU`, or `oos`.
pub fn evaluate(
    kb: &KnowledgeBase,
    train_seconds: f64,
    test: &[Example],
    val: Option<&[Example]>,
    base: &TriageConfig,
) -> Report {
    let mut config = base.clone();
    if let Some(val) = val {
        let first = score_all(kb, val, &config.fusion);
        config.fusion = fit_fusion(&first);
        let (threshold, margin) = pick_thresholds(&score_all(kb, val, &config.fusion), &config.fusion);
        config.answer_threshold = threshold;
        config.min_margin = margin;
        config.clarify_threshold = config.clarify_threshold.min(threshold);
    }

    let ctx = ChatContext::default();
    let mut latencies = Vec::with_capacity(test.len());
    let mut predictions: Vec<(String, String)> = Vec::with_capacity(test.len());
    let (mut top1, mut inscope_right, mut inscope, mut oos, mut oos_rejected, mut clarified) =
        (0, 0, 0, 0, 0, 0);
    for ex in test {
        let started = Instant::now();
        let triaged = triage(&ex.text, kb, &ctx, &config, Millis::now());
        latencies.push(started.elapsed().as_secs_f64() * 1e6);
        let best = triaged.trace.matched.clone().unwrap_or_default();
        let answered = matches!(triaged.decision, Decision::Answer { .. });
        clarified += usize::from(matches!(triaged.decision, Decision::Clarify { .. }));
        if ex.intent == OUT_OF_SCOPE {
            oos += 1;
            oos_rejected += usize::from(!answered);
        } else {
            inscope += 1;
            top1 += usize::from(best == ex.intent);
            inscope_right += usize::from(answered && best == ex.intent);
        }
        let predicted = if answered { best } else { OUT_OF_SCOPE.to_owned() };
        predictions.push((ex.intent.clone(), predicted));
    }
    latencies.sort_by(f64::total_cmp);
    let pct =
        |p: f64| latencies.get(((latencies.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0);
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { 100.0 * a as f64 / b as f64 };
    Report {
        n_test: test.len(),
        top1_accuracy: ratio(top1, inscope),
        inscope_accuracy: ratio(inscope_right, inscope),
        oos_recall: ratio(oos_rejected, oos),
        clarify_rate: ratio(clarified, test.len()),
        macro_f1: 100.0 * macro_f1(&predictions),
        train_seconds,
        p50_us: pct(0.5),
        p99_us: pct(0.99),
        answer_threshold: config.answer_threshold,
        min_margin: config.min_margin,
        fusion: config.fusion,
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

    fn scored(gold: Option<&str>, top: &str, classifier: f32, retrieval: f32) -> Scored {
        Scored { gold: gold.map(str::to_owned), top: vec![(top.to_owned(), classifier, retrieval)] }
    }

    #[test]
    fn calibration_learns_which_signal_predicts_a_right_answer() {
        // Right answers have a confident classifier; wrong ones and out-of-scope queries do not.
        let mut rows = Vec::new();
        for i in 0..40 {
            let jitter = (i % 7) as f32 * 0.02;
            rows.push(scored(Some("a"), "a", 0.8 + jitter, 0.5));
            rows.push(scored(None, "a", 0.2 + jitter, 0.5));
        }
        let fusion = fit_fusion(&rows);
        assert!(fusion.classifier_weight > 1.0, "{fusion:?}");
        let (threshold, _) = pick_thresholds(&rows, &fusion);
        let conf = |c: f32| fusion.confidence(c, 0.5);
        assert!(conf(0.2 + 0.12) < threshold && threshold <= conf(0.8), "{threshold}");
    }

    #[test]
    fn macro_f1_counts_every_label() {
        let pairs =
            [("a", "a"), ("a", "b"), ("b", "b"), ("oos", "oos")].map(|(g, p)| (g.to_owned(), p.to_owned()));
        // a: tp1 fn1 → 2/3; b: tp1 fp1 → 2/3; oos: 1.
        assert!((macro_f1(&pairs) - (2.0 / 3.0 + 2.0 / 3.0 + 1.0) / 3.0).abs() < 1e-9);
    }
}
