//! The tantivy index of one store's knowledge: candidate retrieval.
//!
//! One document per question variant (standard question, each similar question, each intent
//! example) and one per product. Queries are built from analyzer terms as a disjunction of term
//! queries, never through tantivy's query parser, so shopper text cannot be query syntax.
//! The index is written once per content fingerprint under the data directory and reopened on
//! restart; an index directory appears under its final name only when complete.

use std::path::Path;

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::{Index, IndexReader, ReloadPolicy, TantivyDocument, Term};

use crate::text::{Analyzer, TOKENIZER_NAME};

/// What an index document stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DocKind {
    /// A question variant (FAQ or intent example); the key is the variant's index.
    Question = 1,
    /// A product; the key is the product's index.
    Product = 2,
}

/// A built, searchable index.
pub(crate) struct SearchIndex {
    reader: IndexReader,
    text: Field,
    kind: Field,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex").field("docs", &self.reader.searcher().num_docs()).finish()
    }
}

fn schema() -> (Schema, Field, Field, Field) {
    let mut builder = Schema::builder();
    let indexing = TextFieldIndexing::default()
        .set_tokenizer(TOKENIZER_NAME)
        .set_index_option(IndexRecordOption::WithFreqs);
    let text = builder.add_text_field("text", TextOptions::default().set_indexing_options(indexing));
    let kind = builder.add_u64_field("kind", INDEXED);
    let key = builder.add_u64_field("key", FAST | STORED);
    (builder.build(), text, kind, key)
}

impl SearchIndex {
    /// Opens the index in `dir` if a complete one is there, else builds it from `docs` (written
    /// beside it, then renamed into place). `dir = None` builds in memory.
    pub(crate) fn open_or_build<'a>(
        dir: Option<&Path>,
        analyzer: &Analyzer,
        docs: impl Iterator<Item = (DocKind, u64, &'a str)>,
    ) -> tantivy::Result<Self> {
        let (schema, text, kind, key) = schema();
        let index = match dir {
            Some(dir) if dir.join("meta.json").exists() => Index::open_in_dir(dir)?,
            Some(dir) => {
                let staging = dir.with_extension("building");
                if staging.exists() {
                    std::fs::remove_dir_all(&staging)?;
                }
                std::fs::create_dir_all(&staging)?;
                let index = Index::create_in_dir(&staging, schema)?;
                write_docs(&index, analyzer, text, kind, key, docs)?;
                drop(index);
                std::fs::rename(&staging, dir)?;
                Index::open_in_dir(dir)?
            }
            None => {
                let index = Index::create_in_ram(schema);
                write_docs(&index, analyzer, text, kind, key, docs)?;
                index
            }
        };
        index.tokenizers().register(TOKENIZER_NAME, analyzer.tantivy_analyzer());
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        Ok(Self { reader, text, kind })
    }

    /// Up to `limit` documents of `kind` sharing terms with the query, best BM25 first, as
    /// their keys.
    pub(crate) fn candidates(
        &self,
        terms: &[String],
        kind: DocKind,
        limit: usize,
    ) -> tantivy::Result<Vec<u64>> {
        let mut should: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(terms.len());
        for term in terms {
            let term = Term::from_field_text(self.text, term);
            should.push((Occur::Should, Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs))));
        }
        if should.is_empty() {
            return Ok(Vec::new());
        }
        let filter = TermQuery::new(Term::from_field_u64(self.kind, kind as u64), IndexRecordOption::Basic);
        let query = BooleanQuery::new(vec![
            (Occur::Must, Box::new(BooleanQuery::new(should)) as Box<dyn Query>),
            // Every document of the kind gets the same score from this clause: ranking unchanged.
            (Occur::Must, Box::new(filter)),
        ]);
        let searcher = self.reader.searcher();
        let top = searcher.search(&query, &TopDocs::with_limit(limit).order_by_score())?;
        let mut keys = Vec::with_capacity(top.len());
        for (_score, address) in top {
            let column = searcher.segment_reader(address.segment_ord).fast_fields().u64("key")?;
            if let Some(k) = column.first(address.doc_id) {
                keys.push(k);
            }
        }
        Ok(keys)
    }
}

fn write_docs<'a>(
    index: &Index,
    analyzer: &Analyzer,
    text: Field,
    kind: Field,
    key: Field,
    docs: impl Iterator<Item = (DocKind, u64, &'a str)>,
) -> tantivy::Result<()> {
    index.tokenizers().register(TOKENIZER_NAME, analyzer.tantivy_analyzer());
    let mut writer = index.writer_with_num_threads(1, 50_000_000)?;
    for (doc_kind, doc_key, body) in docs {
        let mut doc = TantivyDocument::default();
        doc.add_text(text, body);
        doc.add_u64(kind, doc_kind as u64);
        doc.add_u64(key, doc_key);
        writer.add_document(doc)?;
    }
    writer.commit()?;
    writer.wait_merging_threads()?;
    Ok(())
}
