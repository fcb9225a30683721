//! Knowledge: a store's FAQ entries, products and intent examples, indexed for search.
//!
//! A [`KnowledgeBase`] is built once from a validated [`Pack`] and the deployment's intents and
//! never changes; a reload builds a new one. Building also trains a [`classifier`] whose
//! classes are the entries (FAQ entries and intents) and whose examples are their questions.
//!
//! Search gathers candidate entries from two signals: tantivy retrieval (BM25 over question
//! variants, re-scored by the IDF-weighted cosine between the query's terms and the best
//! variant's, bounded 0–1) and the classifier's best classes. Each candidate's confidence fuses
//! both: `σ(a·p + b·cosine + c)`, where `p` is the classifier's softmax probability, with `a`, `b`, `c` from [`Fusion`], so that it reads as the
//! probability that the entry is the right answer and fixed thresholds mean the same for every
//! store.

pub mod catalog;
pub mod classifier;
pub mod features;
pub mod formats;
mod index;
pub mod pack;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;

pub use catalog::Catalog;
use index::{DocKind, SearchIndex};
pub use pack::{FaqEntry, Pack, PackError};

use classifier::{LinearModel, TrainConfig};
use features::{Vocabulary, raw_features};

use crate::config::Fusion;
use crate::domain::{Lang, Millis, StoreId};
use crate::intents::IntentSet;
use crate::text::Analyzer;

/// How many candidate variants tantivy retrieves for re-scoring.
const CANDIDATES: usize = 24;
/// Bump when the index layout or analysis changes, so old on-disk indexes are not reused.
const INDEX_FORMAT: u32 = 2;

/// An answerable entry: a FAQ entry or an intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryRef {
    /// Index into the pack's FAQ entries.
    Faq(usize),
    /// Index into the intent set.
    Intent(usize),
}

/// One way of asking an entry's question, with its weighted terms.
#[derive(Debug, Clone)]
struct Variant {
    entry: EntryRef,
    text: String,
    terms: Vec<(u32, f32)>,
    norm: f32,
}

/// An entry matching a query.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The entry.
    pub entry: EntryRef,
    /// The fused confidence that this entry answers the query, 0 to 1.
    pub score: f32,
    /// The classifier's probability for the entry, 0 to 1.
    pub classifier: f32,
    /// Cosine similarity of the entry's best-matching question variant, 0 to 1.
    pub retrieval: f32,
    /// That variant's text.
    pub matched: String,
}

/// The classifier and the features it was trained on.
#[derive(Debug)]
struct Understanding {
    vocabulary: Vocabulary,
    model: LinearModel,
    /// The entry each class stands for.
    classes: Vec<EntryRef>,
    /// The class of each entry.
    class_of: HashMap<EntryRef, usize>,
}

/// Knowledge could not be built.
#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    /// The pack is invalid.
    #[error(transparent)]
    Pack(#[from] PackError),
    /// The search index could not be written or opened.
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    /// The index directory could not be prepared.
    #[error("search index directory: {0}")]
    Io(#[from] std::io::Error),
}

/// One store's knowledge, immutable once built.
#[derive(Debug)]
pub struct KnowledgeBase {
    store: StoreId,
    faq: Vec<FaqEntry>,
    intents: Arc<IntentSet>,
    catalog: Catalog,
    variants: Vec<Variant>,
    /// Each entry's variants.
    entry_variants: HashMap<EntryRef, Vec<usize>>,
    understanding: Option<Understanding>,
    vocab: HashMap<String, u32>,
    idf: Vec<f32>,
    unknown_idf: f32,
    index: SearchIndex,
    analyzer: Analyzer,
}

impl KnowledgeBase {
    /// Loads `knowledge_dir/<store>/` and builds its index under `index_root/<store>/` (in memory
    /// when `index_root` is `None`).
    pub fn load(
        store: StoreId,
        knowledge_dir: &Path,
        intents: Arc<IntentSet>,
        analyzer: &Analyzer,
        index_root: Option<&Path>,
    ) -> Result<Self, KnowledgeError> {
        let pack = Pack::load_dir(&knowledge_dir.join(store.as_str()))?;
        Self::build(store, pack, intents, analyzer, index_root)
    }

    /// Builds a store's knowledge from a validated pack.
    pub fn build(
        store: StoreId,
        pack: Pack,
        intents: Arc<IntentSet>,
        analyzer: &Analyzer,
        index_root: Option<&Path>,
    ) -> Result<Self, KnowledgeError> {
        pack.validate()?;
        let mut texts: Vec<(EntryRef, String)> = Vec::new();
        // Disabled entries stay in the pack (for export) but are never indexed or learned.
        for (i, faq) in pack.faq.iter().enumerate().filter(|(_, f)| f.enabled) {
            for q in faq.question.variants().into_iter().chain(faq.similar.iter().map(String::as_str)) {
                texts.push((EntryRef::Faq(i), q.to_owned()));
            }
        }
        for (i, intent) in intents.intents().iter().enumerate() {
            texts.extend(intent.examples.iter().map(|e| (EntryRef::Intent(i), e.clone())));
        }
        let product_texts: Vec<String> = pack.products.iter().map(catalog::index_text).collect();

        let analyzed: Vec<Vec<String>> = texts.iter().map(|(_, t)| dedup(analyzer.terms(t))).collect();
        let mut vocab: HashMap<String, u32> = HashMap::new();
        let mut df: Vec<u32> = Vec::new();
        for terms in &analyzed {
            for term in terms {
                let next = u32::try_from(vocab.len()).unwrap_or(u32::MAX);
                let id = *vocab.entry(term.clone()).or_insert(next);
                if id as usize == df.len() {
                    df.push(0);
                }
                df[id as usize] += 1;
            }
        }
        let n = analyzed.len().max(1) as f32;
        let idf: Vec<f32> = df.iter().map(|&d| (1.0 + n / d as f32).ln()).collect();
        let unknown_idf = (1.0 + n).ln();
        let variants = texts
            .into_iter()
            .zip(analyzed)
            .map(|((entry, text), terms)| {
                let mut weighted: Vec<(u32, f32)> =
                    terms.iter().map(|t| (vocab[t], idf[vocab[t] as usize])).collect();
                weighted.sort_unstable_by_key(|(id, _)| *id);
                let norm = weighted.iter().map(|(_, w)| w * w).sum::<f32>().sqrt();
                Variant { entry, text, terms: weighted, norm }
            })
            .collect::<Vec<_>>();
        let mut entry_variants: HashMap<EntryRef, Vec<usize>> = HashMap::new();
        for (i, v) in variants.iter().enumerate() {
            entry_variants.entry(v.entry).or_default().push(i);
        }
        let understanding = train(analyzer, &variants);

        let index_dir =
            index_root.map(|root| root.join(store.as_str()).join(fingerprint(&variants, &product_texts)));
        if let Some(dir) = &index_dir {
            remove_stale_indexes(dir)?;
        }
        let docs =
            variants.iter().enumerate().map(|(i, v)| (DocKind::Question, i as u64, v.text.as_str())).chain(
                product_texts.iter().enumerate().map(|(i, t)| (DocKind::Product, i as u64, t.as_str())),
            );
        let index = SearchIndex::open_or_build(index_dir.as_deref(), analyzer, docs)?;
        let catalog = Catalog::new(&pack);
        Ok(Self {
            store,
            faq: pack.faq,
            intents,
            catalog,
            variants,
            entry_variants,
            understanding,
            vocab,
            idf,
            unknown_idf,
            index,
            analyzer: analyzer.clone(),
        })
    }

    /// The store this knowledge belongs to.
    pub fn store(&self) -> &StoreId {
        &self.store
    }

    /// The FAQ entries.
    pub fn faq(&self) -> &[FaqEntry] {
        &self.faq
    }

    /// The intents.
    pub fn intents(&self) -> &IntentSet {
        &self.intents
    }

    /// The product catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The entry's stable id: the FAQ id, or `intent:<name>`.
    pub fn entry_id(&self, entry: EntryRef) -> String {
        match entry {
            EntryRef::Faq(i) => self.faq[i].id.clone(),
            EntryRef::Intent(i) => format!("intent:{}", self.intents.get(i).name),
        }
    }

    /// Entries matching `text`, best first by fused confidence, each entry once, at most
    /// `limit`. FAQ entries outside their validity window at `now` are left out.
    pub fn search(&self, text: &str, limit: usize, fusion: &Fusion, now: Millis) -> Vec<Hit> {
        let terms = dedup(self.analyzer.terms(text));
        let query = self.weigh(&terms);
        let query_norm = query.iter().map(|(_, w)| w * w).sum::<f32>().sqrt();

        // Retrieved variants give their entries a cosine; the classifier's best classes join
        // them, scored against all their variants.
        let mut retrieved: HashMap<EntryRef, (f32, usize)> = HashMap::new();
        match self.index.candidates(&terms, DocKind::Question, CANDIDATES) {
            Ok(keys) => {
                for v in keys.into_iter().filter_map(|k| usize::try_from(k).ok()) {
                    let Some(variant) = self.variants.get(v) else { continue };
                    let score = cosine(&query, query_norm, &variant.terms, variant.norm);
                    let slot = retrieved.entry(variant.entry).or_insert((score, v));
                    if score > slot.0 {
                        *slot = (score, v);
                    }
                }
            }
            Err(error) => tracing::error!(store = %self.store, %error, "knowledge search failed"),
        }
        let mut candidates: Vec<(EntryRef, f32, usize)> =
            retrieved.iter().map(|(e, (s, v))| (*e, *s, *v)).collect();
        let scores = self.understanding.as_ref().map(|u| {
            let scores =
                probabilities(&u.model.scores(&u.vocabulary.vectorize(&raw_features(&self.analyzer, text))));
            let mut ranked: Vec<usize> = (0..scores.len()).collect();
            let top = (limit + 2).min(ranked.len());
            ranked.select_nth_unstable_by(top.saturating_sub(1), |a, b| scores[*b].total_cmp(&scores[*a]));
            // A class the classifier all but rules out is only worth scoring if retrieval found
            // it: comparing the query with every one of its variants costs more than the rest of
            // the search.
            for &class in ranked[..top].iter().filter(|&&c| scores[c] >= MIN_RESCORED_PROBABILITY) {
                let entry = u.classes[class];
                if !retrieved.contains_key(&entry) {
                    let (score, variant) = self.best_variant(entry, &query, query_norm);
                    candidates.push((entry, score, variant));
                }
            }
            (scores, u)
        });

        let mut scored: Vec<(EntryRef, f32, f32, f32, usize)> = candidates
            .into_iter()
            .map(|(entry, retrieval, variant)| {
                let classifier = scores
                    .as_ref()
                    .and_then(|(scores, u)| u.class_of.get(&entry).map(|&c| scores[c]))
                    .unwrap_or(0.0);
                (entry, fusion.confidence(classifier, retrieval), classifier, retrieval, variant)
            })
            .collect();
        scored.retain(|(entry, ..)| match entry {
            EntryRef::Faq(i) => self.faq[*i].is_live(now),
            EntryRef::Intent(_) => true,
        });
        let text_of = |v: usize| self.variants[v].text.as_str();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| text_of(a.4).cmp(text_of(b.4))));
        scored.truncate(limit);
        // Only the hits kept need their question's text.
        scored
            .into_iter()
            .map(|(entry, score, classifier, retrieval, v)| Hit {
                entry,
                score,
                classifier,
                retrieval,
                matched: self.variants[v].text.clone(),
            })
            .collect()
    }

    /// The cosine of the entry's best-matching variant, and that variant. Every entry has at
    /// least one variant (it is a class because it has one).
    fn best_variant(&self, entry: EntryRef, query: &[(u32, f32)], query_norm: f32) -> (f32, usize) {
        let variants = self.entry_variants.get(&entry).map(Vec::as_slice).unwrap_or_default();
        let mut best = (0.0, variants.first().copied().unwrap_or_default());
        for &v in variants {
            let variant = &self.variants[v];
            let score = cosine(query, query_norm, &variant.terms, variant.norm);
            if score > best.0 {
                best = (score, v);
            }
        }
        best
    }

    /// Products sharing terms with `text`, best first.
    pub fn search_products(&self, text: &str, limit: usize) -> Vec<usize> {
        let terms = dedup(self.analyzer.terms(text));
        match self.index.candidates(&terms, DocKind::Product, limit) {
            Ok(keys) => keys.into_iter().filter_map(|k| usize::try_from(k).ok()).collect(),
            Err(error) => {
                tracing::error!(store = %self.store, %error, "product search failed");
                Vec::new()
            }
        }
    }

    /// The standard question of a FAQ entry in `lang`, as a suggestion.
    pub fn suggestion(&self, entry: EntryRef, lang: Lang) -> Option<String> {
        match entry {
            EntryRef::Faq(i) => Some(self.faq[i].question.get(lang).to_owned()),
            EntryRef::Intent(_) => None,
        }
    }

    /// Sparse query vector: known terms with their IDF, unknown ones with the highest IDF (a
    /// word the store has never seen makes a match less certain).
    fn weigh(&self, terms: &[String]) -> Vec<(u32, f32)> {
        let mut unknown = u32::MAX;
        let mut weighted: Vec<(u32, f32)> = terms
            .iter()
            .map(|t| match self.vocab.get(t) {
                Some(&id) => (id, self.idf[id as usize]),
                None => {
                    unknown -= 1;
                    (unknown, self.unknown_idf)
                }
            })
            .collect();
        weighted.sort_unstable_by_key(|(id, _)| *id);
        weighted
    }
}

/// Trains the classifier on every variant, one class per entry; `None` when there are fewer
/// than two entries to tell apart.
fn train(analyzer: &Analyzer, variants: &[Variant]) -> Option<Understanding> {
    let raw: Vec<Vec<u64>> = variants.iter().map(|v| raw_features(analyzer, &v.text)).collect();
    let vocabulary = Vocabulary::fit(&raw);
    let mut classes: Vec<EntryRef> = Vec::new();
    let mut class_of: HashMap<EntryRef, usize> = HashMap::new();
    let examples: Vec<_> = variants
        .iter()
        .zip(&raw)
        .map(|(v, r)| {
            let class = *class_of.entry(v.entry).or_insert_with(|| {
                classes.push(v.entry);
                classes.len() - 1
            });
            (vocabulary.vectorize(r), class)
        })
        .collect();
    let model =
        LinearModel::train(&examples, vocabulary.len(), classes.len(), TrainConfig::default()).ok()?;
    Some(Understanding { vocabulary, model, classes, class_of })
}

/// The least classifier probability for which a class that retrieval did not find is scored
/// against its variants and can become a hit.
const MIN_RESCORED_PROBABILITY: f32 = 0.01;

/// Sharpness of the softmax over decision values: SVM margins are about ±1, so a factor of 4
/// separates a clear winner (probability near 1) from a flat field (near 1/classes).
const SOFTMAX_SCALE: f32 = 4.0;

/// Turns decision values into a probability per class, with a virtual "none of these" class at
/// the decision boundary (value 0). Relative values alone would crown some class even when every
/// class rejects the query, most visibly in a store with few entries.
fn probabilities(scores: &[f32]) -> Vec<f32> {
    let max = scores.iter().copied().fold(0.0f32, f32::max);
    let exp: Vec<f32> = scores.iter().map(|s| (SOFTMAX_SCALE * (s - max)).exp()).collect();
    let none = (-SOFTMAX_SCALE * max).exp();
    let sum: f32 = exp.iter().sum::<f32>() + none;
    exp.into_iter().map(|e| e / sum).collect()
}

/// Cosine of two sparse vectors sorted by term id.
fn cosine(a: &[(u32, f32)], a_norm: f32, b: &[(u32, f32)], b_norm: f32) -> f32 {
    if a_norm == 0.0 || b_norm == 0.0 {
        return 0.0;
    }
    let (mut i, mut j, mut dot) = (0, 0, 0.0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                dot += a[i].1 * b[j].1;
                i += 1;
                j += 1;
            }
        }
    }
    (dot / (a_norm * b_norm)).clamp(0.0, 1.0)
}

fn dedup(mut terms: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::with_capacity(terms.len());
    terms.retain(|t| seen.insert(t.clone()));
    terms
}

fn fingerprint(variants: &[Variant], products: &[String]) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    INDEX_FORMAT.hash(&mut hasher);
    for v in variants {
        v.text.hash(&mut hasher);
    }
    products.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// How many of a store's indexes for other content are kept: the one being replaced may still be
/// answering questions in flight, and a rollback to a recent version reopens its index.
const KEEP_INDEXES: usize = 3;

/// Removes a store's indexes for other content, keeping `keep` and the most recent others.
fn remove_stale_indexes(keep: &Path) -> std::io::Result<()> {
    let Some(parent) = keep.parent() else { return Ok(()) };
    let Ok(entries) = std::fs::read_dir(parent) else { return Ok(()) };
    let mut others: Vec<(std::time::SystemTime, std::path::PathBuf)> = entries
        .flatten()
        .filter(|e| e.path() != keep)
        .map(|e| (e.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH), e.path()))
        .collect();
    others.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    for (_, path) in others.into_iter().skip(KEEP_INDEXES) {
        std::fs::remove_dir_all(path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> KnowledgeBase {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let intents = Arc::new(IntentSet::load_dir(&root.join("intents")).unwrap());
        let store = StoreId::parse("demo").unwrap();
        KnowledgeBase::load(store, &root.join("knowledge"), intents, &Analyzer::new(), None).unwrap()
    }

    #[test]
    fn chinese_paraphrase_finds_the_return_shipping_faq() {
        let kb = demo();
        let hits = kb.search("退货运费谁出", 3, &Fusion::default(), Millis::now());
        assert_eq!(kb.entry_id(hits[0].entry), "return-shipping-fee", "{hits:?}");
    }

    #[test]
    fn query_syntax_is_just_text() {
        let kb = demo();
        let answer = crate::config::TriageConfig::default().answer_threshold;
        for nasty in ["AND(", "\"unterminated", "*", "title:x OR", "[1 TO 2]", ""] {
            let hits = kb.search(nasty, 3, &Fusion::default(), Millis::now());
            for hit in &hits {
                assert!((0.0..=1.0).contains(&hit.score), "{nasty:?}: {hit:?}");
            }
            // Punctuation and query operators carry no meaning: nothing is answered from them.
            assert!(hits.first().is_none_or(|h| h.score < answer), "{nasty:?}: {hits:?}");
        }
    }

    #[test]
    fn cosine_is_bounded() {
        let a = [(1, 1.0), (2, 2.0)];
        let norm = 5f32.sqrt();
        assert!((cosine(&a, norm, &a, norm) - 1.0).abs() < 1e-6);
        assert_eq!(cosine(&a, norm, &[(3, 1.0)], 1.0), 0.0);
    }
}
