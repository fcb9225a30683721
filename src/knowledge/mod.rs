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

mod budget;
pub mod catalog;
pub mod classifier;
pub mod features;
pub mod formats;
mod index;
pub mod pack;
pub mod semantic;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::{Arc, OnceLock};

pub use budget::{BuildBudget, OverBudget};
pub use catalog::Catalog;
use index::{DocKind, SearchIndex};
pub use pack::{FaqEntry, Pack, PackError};
pub use semantic::{Semantic, SemanticTexts};

use classifier::{LinearModel, TrainConfig, TrainError};
use features::{Vocabulary, raw_features};

use crate::config::{Fusion, Signals};
use crate::domain::{Lang, Millis, StoreId};
use crate::intents::Action;
use crate::intents::IntentSet;
use crate::text::Analyzer;

/// Most entries the lexical classifier is trained on (a linear SVM per entry, each over every
/// question: its time grows with the square of the pack).
const MAX_CLASSIFIER_CLASSES: usize = 3000;

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
    /// The semantic head's probability for the entry, when the message was embedded.
    pub semantic: Option<f32>,
    /// How much nearer in meaning the entry's nearest question variant is than the nearest of
    /// what no shop answers (embedding cosines), when the message was embedded: below 0, the
    /// message is closer to the out-of-scope examples.
    pub nearest: Option<f32>,
    /// That variant's text.
    pub matched: String,
}

impl Hit {
    /// The signals that make up the hit's confidence.
    pub fn signals(&self) -> Signals {
        Signals {
            classifier: self.classifier,
            retrieval: self.retrieval,
            semantic: self.semantic,
            nearest: self.nearest,
        }
    }
}

/// The classifier and the features it was trained on.
#[derive(Debug)]
struct Understanding {
    vocabulary: Vocabulary,
    model: LinearModel,
}

impl Understanding {
    /// About the bytes it holds.
    fn bytes(&self) -> usize {
        self.vocabulary.bytes() + self.model.bytes()
    }
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
    /// The build ran out of its time or memory budget.
    #[error(transparent)]
    OverBudget(#[from] OverBudget),
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
    /// The entry each class (of the lexical classifier and the semantic head) stands for.
    classes: Vec<EntryRef>,
    /// The class of each entry.
    class_of: HashMap<EntryRef, usize>,
    /// The out-of-scope intent's examples (variant indices).
    declined: Vec<usize>,
    /// Built once the texts are embedded; until then only lexical signals answer.
    semantic: OnceLock<Semantic>,
    vocab: HashMap<String, u32>,
    idf: Vec<f32>,
    unknown_idf: f32,
    index: SearchIndex,
    analyzer: Analyzer,
    /// The most its build held, by the budget's count.
    build_bytes: usize,
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

    /// Builds a store's knowledge from a validated pack, without limits on the build.
    pub fn build(
        store: StoreId,
        pack: Pack,
        intents: Arc<IntentSet>,
        analyzer: &Analyzer,
        index_root: Option<&Path>,
    ) -> Result<Self, KnowledgeError> {
        Self::build_within(store, pack, intents, analyzer, index_root, &BuildBudget::unlimited())
    }

    /// Builds a store's knowledge from a validated pack, stopping with
    /// [`KnowledgeError::OverBudget`] when the build runs out of `budget`.
    pub fn build_within(
        store: StoreId,
        pack: Pack,
        intents: Arc<IntentSet>,
        analyzer: &Analyzer,
        index_root: Option<&Path>,
        budget: &BuildBudget,
    ) -> Result<Self, KnowledgeError> {
        pack.validate()?;
        let mut texts: Vec<(EntryRef, String)> = Vec::new();
        // Disabled entries stay in the pack (for export) but are never indexed or learned.
        for (i, faq) in pack.faq.iter().enumerate().filter(|(_, f)| f.enabled) {
            for q in faq.question.variants().into_iter().chain(faq.similar.iter().map(String::as_str)) {
                texts.push((EntryRef::Faq(i), q.to_owned()));
            }
        }
        // A routing intent's examples are not an answer: its rules send a message to the store's
        // own entries on the topic, which then compete on their own questions.
        for (i, intent) in
            intents.intents().iter().enumerate().filter(|(_, i)| i.action != crate::intents::Action::Route)
        {
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
        // What the questions hold now: their texts, their terms and the vocabulary.
        let mut held = faq_bytes(&pack)
            + product_texts.iter().map(|t| 2 * t.len() + PRODUCT_OVERHEAD).sum::<usize>()
            + texts.iter().map(|(_, t)| t.len() + TEXT_OVERHEAD).sum::<usize>()
            + analyzed
                .iter()
                .map(|t| t.iter().map(|w| w.len() + TEXT_OVERHEAD).sum::<usize>())
                .sum::<usize>()
            + vocab.keys().map(|w| w.len() + TEXT_OVERHEAD + MAP_OVERHEAD).sum::<usize>();
        budget.check("reading the questions", held)?;
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
        // The out-of-scope examples are not an entry to answer: only what "none of these" looks
        // like, checked on meaning (see `declined`).
        let declining =
            |e: EntryRef| matches!(e, EntryRef::Intent(i) if intents.get(i).action == Action::Decline);
        let declined: Vec<usize> = (0..variants.len()).filter(|&v| declining(variants[v].entry)).collect();
        let mut classes: Vec<EntryRef> = Vec::new();
        let mut class_of: HashMap<EntryRef, usize> = HashMap::new();
        for v in variants.iter().filter(|v| !declining(v.entry)) {
            class_of.entry(v.entry).or_insert_with(|| {
                classes.push(v.entry);
                classes.len() - 1
            });
        }
        held += variants.iter().map(|v| v.terms.len() * 8).sum::<usize>();
        let (understanding, training) = train(analyzer, &variants, &class_of, classes.len(), budget, held)?;
        held += understanding.as_ref().map_or(0, Understanding::bytes);
        // The index writer's arena, which grows with the documents up to its bound.
        let documents = variants.iter().map(|v| v.text.len()).sum::<usize>()
            + product_texts.iter().map(String::len).sum::<usize>();
        held += index::WRITER_ARENA.min(4 * documents + (1 << 20));
        budget.check("indexing the questions", held)?;
        let build_bytes = held.max(training);

        let index_dir =
            index_root.map(|root| root.join(store.as_str()).join(fingerprint(&variants, &product_texts)));
        if let Some(dir) = &index_dir {
            remove_stale_indexes(dir)?;
        }
        let docs =
            variants.iter().enumerate().map(|(i, v)| (DocKind::Question, i as u64, v.text.as_str())).chain(
                product_texts.iter().enumerate().map(|(i, t)| (DocKind::Product, i as u64, t.as_str())),
            );
        // The index stops taking documents when the time is up, and the build stops after it.
        let docs = docs.enumerate().take_while(|(i, _)| i % 1024 != 0 || !budget.expired()).map(|(_, d)| d);
        let index = SearchIndex::open_or_build(index_dir.as_deref(), analyzer, docs)?;
        budget.check_time("indexing the questions")?;
        let catalog = Catalog::new(&pack);
        Ok(Self {
            store,
            faq: pack.faq,
            intents,
            catalog,
            variants,
            entry_variants,
            understanding,
            classes,
            class_of,
            declined,
            semantic: OnceLock::new(),
            vocab,
            idf,
            unknown_idf,
            index,
            analyzer: analyzer.clone(),
            build_bytes,
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
    /// `limit`. FAQ entries outside their validity window at `now` are left out. With the
    /// message's embedding (`query`) and this knowledge's semantic index, the semantic signals
    /// join the lexical ones; `fusion` must be the one for the signals used.
    pub fn search(
        &self,
        text: &str,
        limit: usize,
        fusion: &Fusion,
        now: Millis,
        query: Option<&[f32]>,
    ) -> Vec<Hit> {
        let terms = dedup(self.analyzer.terms(text));
        let weighted = self.weigh(&terms);
        let query_norm = weighted.iter().map(|(_, w)| w * w).sum::<f32>().sqrt();
        let semantic = query.zip(self.semantic.get());

        // Retrieved variants give their entries a cosine; the classifier's (and the semantic
        // head's) best classes join them, scored against all their variants.
        let mut retrieved: HashMap<EntryRef, (f32, usize)> = HashMap::new();
        match self.index.candidates(&terms, DocKind::Question, CANDIDATES) {
            Ok(keys) => {
                for v in keys.into_iter().filter_map(|k| usize::try_from(k).ok()) {
                    let Some(variant) = self.variants.get(v) else { continue };
                    let score = cosine(&weighted, query_norm, &variant.terms, variant.norm);
                    let slot = retrieved.entry(variant.entry).or_insert((score, v));
                    if score > slot.0 {
                        *slot = (score, v);
                    }
                }
            }
            Err(error) => tracing::error!(store = %self.store, %error, "knowledge search failed"),
        }
        let mut candidates: Vec<EntryRef> = retrieved.keys().copied().collect();
        let top = limit + 2;
        let lexical = self.understanding.as_ref().map(|u| {
            probabilities(&u.model.scores(&u.vocabulary.vectorize(&raw_features(&self.analyzer, text))))
        });
        // A class the classifiers all but rule out is only worth scoring if retrieval found it:
        // comparing the query with every one of its variants costs more than the rest.
        if let Some(scores) = &lexical {
            candidates.extend(best_classes(scores, top).into_iter().map(|c| self.classes[c]));
        }
        let head = semantic.and_then(|(q, s)| s.probabilities(q));
        let baseline = query.and_then(|q| self.declined(q)).map_or(UNRELATED_COSINE, |(c, _)| c);
        // Without a head (very large packs), the nearest variants propose entries.
        let all_cosines = semantic.filter(|_| head.is_none()).map(|(q, s)| s.all_variant_cosines(q));
        if let Some(head) = &head {
            candidates
                .extend(best_classes(head, top).into_iter().filter_map(|c| self.classes.get(c).copied()));
        }
        if let Some(cosines) = &all_cosines {
            let mut best: HashMap<EntryRef, f32> = HashMap::new();
            for (v, &c) in cosines.iter().enumerate() {
                let slot = best.entry(self.variants[v].entry).or_insert(c);
                *slot = slot.max(c);
            }
            let mut ranked: Vec<(EntryRef, f32)> = best.into_iter().collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
            candidates.extend(ranked.into_iter().take(top).map(|(e, _)| e));
        }
        candidates.sort_unstable_by_key(|e| match e {
            EntryRef::Faq(i) => (0, *i),
            EntryRef::Intent(i) => (1, *i),
        });
        candidates.dedup();
        candidates.retain(|entry| match entry {
            EntryRef::Faq(i) => self.faq[*i].is_live(now),
            EntryRef::Intent(_) => self.class_of.contains_key(entry),
        });

        let mut scored: Vec<(EntryRef, Signals, usize, f32)> = candidates
            .into_iter()
            .map(|entry| {
                let (retrieval, mut variant) = match retrieved.get(&entry) {
                    Some(&(score, v)) => (score, v),
                    None => self.best_variant(entry, &weighted, query_norm),
                };
                let class = self.class_of.get(&entry).copied();
                let classifier = lexical.as_ref().zip(class).map_or(0.0, |(s, c)| s[c]);
                let (semantic, nearest) = match semantic {
                    Some((q, index)) => {
                        let (nearest, closest) =
                            self.nearest_variant(entry, q, index, all_cosines.as_deref());
                        // The variant shown is the one closest in meaning when words barely met.
                        if retrieval < 0.3 {
                            variant = closest;
                        }
                        // Measured against what no shop answers: how much nearer the entry is
                        // than the out-of-scope examples, so that a store's or a language's
                        // general level of similarity does not pass for a match.
                        let lift = nearest - baseline;
                        // The head picks among the entries; whether any of them is meant at all
                        // is the lift's to say. A store of five entries would otherwise hand one
                        // of them most of the head's probability for any message whatever.
                        // Above chance: 0.15 says much among 80 entries and nothing among 8.
                        let head = head.as_ref().zip(class).map_or(0.0, |(h, c)| {
                            let chance = 1.0 / h.len().max(2) as f32;
                            ((h[c] - chance) / (1.0 - chance)).max(0.0)
                        });
                        (Some(head * (lift / LIFT_SCALE).clamp(0.0, 1.0)), Some(lift))
                    }
                    None => (None, None),
                };
                let signals = Signals { classifier, retrieval, semantic, nearest };
                (entry, signals, variant, fusion.confidence(&signals))
            })
            .collect();
        let text_of = |v: usize| self.variants[v].text.as_str();
        scored.sort_by(|a, b| b.3.total_cmp(&a.3).then_with(|| text_of(a.2).cmp(text_of(b.2))));
        scored.truncate(limit);
        // Only the hits kept need their question's text.
        scored
            .into_iter()
            .map(|(entry, s, v, score)| Hit {
                entry,
                score,
                classifier: s.classifier,
                retrieval: s.retrieval,
                semantic: s.semantic,
                nearest: s.nearest,
                matched: self.variants[v].text.clone(),
            })
            .collect()
    }

    /// The embedding cosine of the entry's nearest variant, and that variant.
    fn nearest_variant(
        &self,
        entry: EntryRef,
        query: &[f32],
        index: &Semantic,
        all: Option<&[f32]>,
    ) -> (f32, usize) {
        let variants = self.entry_variants.get(&entry).map(Vec::as_slice).unwrap_or_default();
        let mut best = (f32::MIN, variants.first().copied().unwrap_or_default());
        for &v in variants {
            let c = all.and_then(|a| a.get(v).copied()).unwrap_or_else(|| index.variant_cosine(query, v));
            if c > best.0 {
                best = (c, v);
            }
        }
        (best.0.max(0.0), best.1)
    }

    /// About the most memory its build held, in bytes, as the build budget estimates it.
    pub fn build_bytes(&self) -> usize {
        budget::estimate(self.build_bytes)
    }

    /// How many entries the classifiers tell apart.
    pub fn class_count(&self) -> usize {
        self.classes.len()
    }

    /// The texts the encoder embeds for this knowledge: every question variant (in order), the
    /// FAQ answers (extra examples for the head) and the products' names.
    pub fn semantic_texts(&self) -> SemanticTexts {
        let variants = self.variants.iter().map(|v| v.text.clone()).collect();
        let mut answers = Vec::new();
        for (i, faq) in self.faq.iter().enumerate() {
            let Some(&class) = self.class_of.get(&EntryRef::Faq(i)) else { continue };
            for answer in faq.answer.iter().chain(&faq.answers) {
                answers.extend(
                    answer
                        .variants()
                        .into_iter()
                        .filter(|a| !a.trim().is_empty())
                        .map(|a| (class, a.to_owned())),
                );
            }
        }
        let products = self.catalog.products().iter().map(catalog::embedding_text).collect();
        SemanticTexts { variants, answers, products }
    }

    /// Builds and attaches the semantic index from the vectors of [`Self::semantic_texts`] (in
    /// [`SemanticTexts::all`] order). False when it was attached already or the vectors do not
    /// fit. CPU work: call it off the async threads.
    pub fn attach_semantic(&self, texts: &SemanticTexts, vectors: &[Vec<f32>]) -> bool {
        if self.semantic.get().is_some() {
            return false;
        }
        // The head learns the store's own entries. Intents (greetings, complaints, order
        // questions) are generic: their examples near half of any store's questions in meaning,
        // so they are reached by their rules and their words, not by the head.
        // The out-of-scope examples are a class of the head too: what "none of these" looks
        // like, so that a store with few entries does not find one of them for anything at all.
        let none = self.classes.len();
        let variant_class: Vec<Option<usize>> = self
            .variants
            .iter()
            .enumerate()
            .map(|(i, v)| match v.entry {
                EntryRef::Faq(_) => Some(self.class_of[&v.entry]),
                EntryRef::Intent(_) => self.declined.contains(&i).then_some(none),
            })
            .collect();
        match Semantic::build(texts, vectors, &variant_class, self.classes.len() + 1) {
            Some(index) => self.semantic.set(index).is_ok(),
            None => false,
        }
    }

    /// How close `query` is in meaning to what no shop answers (the out-of-scope intent's
    /// examples): the cosine of the nearest one, or `None` without them.
    pub fn declined(&self, query: &[f32]) -> Option<(f32, usize)> {
        let index = self.semantic.get()?;
        self.declined
            .iter()
            .map(|&v| (index.variant_cosine(query, v), v))
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(c, v)| {
                (
                    c,
                    match self.variants[v].entry {
                        EntryRef::Intent(i) => i,
                        EntryRef::Faq(_) => 0,
                    },
                )
            })
    }

    /// The semantic index, once attached.
    pub fn semantic(&self) -> Option<&Semantic> {
        self.semantic.get()
    }

    /// Products whose names are closest in meaning to the message's embedding, best first.
    pub fn products_near(&self, query: &[f32], limit: usize) -> Vec<(usize, f32)> {
        let Some(index) = self.semantic.get() else { return Vec::new() };
        let mut ranked: Vec<(usize, f32)> = index.product_cosines(query).into_iter().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        ranked.truncate(limit);
        ranked
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

    /// What an entry's id stands for, as a merchant reads it: a FAQ entry's question, an intent's
    /// first example (`intent:…`), a product's name (`product:…`); `None` for an id not in this
    /// knowledge (an entry since removed).
    pub fn entry_question(&self, id: &str, lang: Lang) -> Option<String> {
        if let Some(name) = id.strip_prefix("intent:") {
            let intent = self.intents.find(name)?;
            return self.intents.get(intent).examples.first().cloned();
        }
        if let Some(sku) = id.strip_prefix("product:") {
            let product = self.catalog.by_sku(sku)?;
            return Some(self.catalog.products()[product].name.get(lang).to_owned());
        }
        self.faq.iter().find(|f| f.id == id).map(|f| f.question.get(lang).to_owned())
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

/// Trains the lexical classifier, one class per entry, within `budget` (the build holds `held` bytes already); none
/// for a store of one entry, or of more than [`MAX_CLASSIFIER_CLASSES`].
fn train(
    analyzer: &Analyzer,
    variants: &[Variant],
    class_of: &HashMap<EntryRef, usize>,
    classes: usize,
    budget: &BuildBudget,
    held: usize,
) -> Result<(Option<Understanding>, usize), OverBudget> {
    if classes > MAX_CLASSIFIER_CLASSES {
        // One-vs-rest training grows with classes × examples: past this many entries the
        // store is understood by retrieval and the encoder's signals.
        tracing::info!(classes, "too many entries for the lexical classifier: retrieval and meaning only");
        return Ok((None, held));
    }
    let raw: Vec<Vec<u64>> = variants.iter().map(|v| raw_features(analyzer, &v.text)).collect();
    let raw_bytes = raw.iter().map(|r| r.len() * 8 + VEC_OVERHEAD).sum::<usize>();
    budget.check("finding the questions' features", held + raw_bytes)?;
    let vocabulary = Vocabulary::fit(&raw);
    let examples: Vec<_> = variants
        .iter()
        .zip(&raw)
        .filter_map(|(v, r)| Some((vocabulary.vectorize(r), *class_of.get(&v.entry)?)))
        .collect();
    // While it trains: the features, the examples' vectors, and each thread's dense weights.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(classes.max(1));
    let training = held
        + raw_bytes
        + vocabulary.bytes()
        + examples.iter().map(|(x, _)| x.len() * 8 + VEC_OVERHEAD).sum::<usize>()
        + threads * vocabulary.len() * 4;
    budget.check("training the classifier", training)?;
    drop(raw);
    let model =
        match LinearModel::train(&examples, vocabulary.len(), classes, TrainConfig::default(), &|| {
            budget.expired()
        }) {
            Ok(model) => model,
            // Training stops only once the deadline has passed: the check says so.
            Err(TrainError::Stopped) => {
                budget.check_time("training the classifier")?;
                return Ok((None, training));
            }
            Err(_) => return Ok((None, training)),
        };
    Ok((Some(Understanding { vocabulary, model }), training))
}

/// About what a `String` or a `Vec` costs beside its contents (its header and the allocator's
/// rounding).
const TEXT_OVERHEAD: usize = 32;
const VEC_OVERHEAD: usize = 32;
/// About what one entry of a `HashMap` costs beside its key.
const MAP_OVERHEAD: usize = 16;

/// About what a product holds beside its texts (its fields, prices, stock).
const PRODUCT_OVERHEAD: usize = 512;

/// About what the pack's FAQ entries hold: their texts.
fn faq_bytes(pack: &Pack) -> usize {
    pack.faq
        .iter()
        .map(|f| {
            let questions: usize = f.question.variants().iter().map(|q| q.len() + TEXT_OVERHEAD).sum();
            let similar: usize = f.similar.iter().map(|q| q.len() + TEXT_OVERHEAD).sum();
            let answers: usize =
                f.all_answers().flat_map(|a| a.variants()).map(|a| a.len() + TEXT_OVERHEAD).sum();
            questions + similar + answers + 256
        })
        .sum()
}

/// How alike in meaning two unrelated messages are, about: the baseline of the nearest
/// question's cosine when the store has no out-of-scope examples to measure it against.
const UNRELATED_COSINE: f32 = 0.82;

/// The lift over the out-of-scope baseline from which the semantic head's probability counts
/// in full; below it, in proportion, and not at all at or below the baseline.
const LIFT_SCALE: f32 = 0.03;

/// The least probability for which a class that retrieval did not find is scored against its
/// variants and can become a hit.
const MIN_RESCORED_PROBABILITY: f32 = 0.01;

/// The `top` classes with the highest probabilities, leaving out those under
/// [`MIN_RESCORED_PROBABILITY`].
fn best_classes(scores: &[f32], top: usize) -> Vec<usize> {
    let mut ranked: Vec<usize> = (0..scores.len()).collect();
    let top = top.min(ranked.len());
    if top == 0 {
        return Vec::new();
    }
    ranked.select_nth_unstable_by(top - 1, |a, b| scores[*b].total_cmp(&scores[*a]));
    ranked.truncate(top);
    ranked.retain(|&c| scores[c] >= MIN_RESCORED_PROBABILITY);
    ranked
}

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
        let hits = kb.search("退货运费谁出", 3, &Fusion::default(), Millis::now(), None);
        assert_eq!(kb.entry_id(hits[0].entry), "return-shipping-fee", "{hits:?}");
    }

    #[test]
    fn query_syntax_is_just_text() {
        let kb = demo();
        let answer = crate::config::TriageConfig::default().answer_threshold;
        for nasty in ["AND(", "\"unterminated", "*", "title:x OR", "[1 TO 2]", ""] {
            let hits = kb.search(nasty, 3, &Fusion::default(), Millis::now(), None);
            for hit in &hits {
                assert!((0.0..=1.0).contains(&hit.score), "{nasty:?}: {hit:?}");
            }
            // Punctuation and query operators carry no meaning: nothing is answered from them.
            assert!(hits.first().is_none_or(|h| h.score < answer), "{nasty:?}: {hits:?}");
        }
    }

    fn demo_build(budget: &BuildBudget) -> Result<KnowledgeBase, KnowledgeError> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let intents = Arc::new(IntentSet::load_dir(&root.join("intents")).unwrap());
        let pack = Pack::load_dir(&root.join("knowledge").join("demo")).unwrap();
        KnowledgeBase::build_within(
            StoreId::parse("demo").unwrap(),
            pack,
            intents,
            &Analyzer::new(),
            None,
            budget,
        )
    }

    #[test]
    fn a_build_stops_when_its_time_is_up() {
        let error = demo_build(&BuildBudget::new(1e-9, 2048)).unwrap_err();
        let KnowledgeError::OverBudget(OverBudget::Time { stage, .. }) = error else { panic!("{error}") };
        assert_eq!(stage, "reading the questions");
    }

    #[test]
    fn a_build_over_its_memory_is_refused_and_the_demo_fits_in_a_little() {
        let error = demo_build(&BuildBudget::new(60.0, 1)).unwrap_err();
        assert!(matches!(error, KnowledgeError::OverBudget(OverBudget::Memory { max_mb: 1, .. })), "{error}");
        let fits = demo_build(&BuildBudget::new(60.0, 24));
        assert!(fits.is_ok(), "{:?}", fits.err());
    }

    #[test]
    fn cosine_is_bounded() {
        let a = [(1, 1.0), (2, 2.0)];
        let norm = 5f32.sqrt();
        assert!((cosine(&a, norm, &a, norm) - 1.0).abs() < 1e-6);
        assert_eq!(cosine(&a, norm, &[(3, 1.0)], 1.0), 0.0);
    }
}
