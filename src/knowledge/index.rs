//! The tantivy index of one store's knowledge: candidate retrieval.
//!
//! One document per question variant (standard question, each similar question, each intent
//! example) in the `question` field, and one per product in the `product` field. Queries are built from analyzer terms as a disjunction of term
//! queries, never through tantivy's query parser, so shopper text cannot be query syntax.
//! The index is written once per content fingerprint under the data directory and reopened on
//! restart; an index directory appears under its final name only when complete.

use std::path::Path;

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{FAST, Field, IndexRecordOption, STORED, Schema, TextFieldIndexing, TextOptions};
use tantivy::{Index, IndexReader, ReloadPolicy, TantivyDocument, Term};

use crate::text::{Analyzer, TOKENIZER_NAME};

/// What an index document stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DocKind {
    /// A question variant (FAQ or intent example); the key is the variant's index.
    Question,
    /// A product; the key is the product's index.
    Product,
}

/// A built, searchable index.
pub(crate) struct SearchIndex {
    /// The index never changes once built, so one searcher serves every query.
    searcher: tantivy::Searcher,
    /// Each segment's documents' keys, read once: looking a column up per hit cost more than
    /// the search itself.
    keys: Vec<Vec<u64>>,
    /// The text field of each kind: a query on one field only reaches documents of that kind,
    /// with no filter to intersect.
    fields: [Field; 2],
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex").field("docs", &self.searcher.num_docs()).finish()
    }
}

fn schema() -> (Schema, [Field; 2]) {
    let mut builder = Schema::builder();
    let indexing = TextFieldIndexing::default()
        .set_tokenizer(TOKENIZER_NAME)
        .set_index_option(IndexRecordOption::WithFreqs);
    let options = TextOptions::default().set_indexing_options(indexing);
    let question = builder.add_text_field("question", options.clone());
    let product = builder.add_text_field("product", options);
    builder.add_u64_field("key", FAST | STORED);
    (builder.build(), [question, product])
}

impl DocKind {
    fn field(self, fields: &[Field; 2]) -> Field {
        match self {
            DocKind::Question => fields[0],
            DocKind::Product => fields[1],
        }
    }
}

impl SearchIndex {
    /// Opens the index in `dir` if a complete one is there, else builds it from `docs` (written
    /// beside it, then renamed into place). `dir = None` builds in memory.
    pub(crate) fn open_or_build<'a>(
        dir: Option<&Path>,
        analyzer: &Analyzer,
        docs: impl Iterator<Item = (DocKind, u64, &'a str)>,
    ) -> tantivy::Result<Self> {
        let (schema, fields) = schema();
        let index = match dir {
            Some(dir) if dir.join("meta.json").exists() => Index::open_in_dir(dir)?,
            Some(dir) => {
                let staging = dir.with_extension("building");
                if staging.exists() {
                    std::fs::remove_dir_all(&staging)?;
                }
                std::fs::create_dir_all(&staging)?;
                let index = Index::create_in_dir(&staging, schema)?;
                write_docs(&index, analyzer, &fields, docs)?;
                drop(index);
                std::fs::rename(&staging, dir)?;
                Index::open_in_dir(dir)?
            }
            None => {
                let index = Index::create_in_ram(schema);
                write_docs(&index, analyzer, &fields, docs)?;
                index
            }
        };
        index.tokenizers().register(TOKENIZER_NAME, analyzer.tantivy_analyzer());
        let reader: IndexReader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        let searcher = reader.searcher();
        let keys = searcher
            .segment_readers()
            .iter()
            .map(|segment| {
                let column = segment.fast_fields().u64("key")?;
                Ok((0..segment.max_doc()).map(|doc| column.first(doc).unwrap_or(u64::MAX)).collect())
            })
            .collect::<tantivy::Result<Vec<Vec<u64>>>>()?;
        Ok(Self { searcher, keys, fields })
    }

    /// Up to `limit` documents of `kind` sharing terms with the query, best BM25 first, as
    /// their keys.
    pub(crate) fn candidates(
        &self,
        terms: &[String],
        kind: DocKind,
        limit: usize,
    ) -> tantivy::Result<Vec<u64>> {
        let field = kind.field(&self.fields);
        let should: Vec<(Occur, Box<dyn Query>)> = terms
            .iter()
            .map(|term| {
                let term = Term::from_field_text(field, term);
                (
                    Occur::Should,
                    Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs)) as Box<dyn Query>,
                )
            })
            .collect();
        // tantivy's top-docs collector refuses a limit of 0.
        if should.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let query = BooleanQuery::new(should);
        let top = self.searcher.search(&query, &TopDocs::with_limit(limit).order_by_score())?;
        Ok(top
            .into_iter()
            .filter_map(|(_, address)| {
                self.keys.get(address.segment_ord as usize)?.get(address.doc_id as usize).copied()
            })
            .filter(|&k| k != u64::MAX)
            .collect())
    }
}

/// The bytes the index writer may buffer before it writes a segment.
pub(super) const WRITER_ARENA: usize = 50_000_000;

fn write_docs<'a>(
    index: &Index,
    analyzer: &Analyzer,
    fields: &[Field; 2],
    docs: impl Iterator<Item = (DocKind, u64, &'a str)>,
) -> tantivy::Result<()> {
    index.tokenizers().register(TOKENIZER_NAME, analyzer.tantivy_analyzer());
    let key = index.schema().get_field("key")?;
    let mut writer = index.writer_with_num_threads(1, WRITER_ARENA)?;
    for (doc_kind, doc_key, body) in docs {
        let mut doc = TantivyDocument::default();
        doc.add_text(doc_kind.field(fields), body);
        doc.add_u64(key, doc_key);
        writer.add_document(doc)?;
    }
    writer.commit()?;
    writer.wait_merging_threads()?;
    Ok(())
}
