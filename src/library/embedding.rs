//! Giving a store's knowledge its semantic index: every text the knowledge embeds (question
//! variants, FAQ answers, product names) gets its vector from the database when it was embedded
//! before, from the encoder otherwise, and the index is built and attached off the async
//! threads. The knowledge answers on lexical signals until then: no chat waits for it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest as _, Sha256};

use crate::domain::Millis;
use crate::encoder::{Encoder, EncoderFailed, normalize};
use crate::knowledge::KnowledgeBase;
use crate::store::{Digest, Embeddings, StoreError};

/// What embedding a store's knowledge took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Embedded {
    /// Distinct texts.
    pub texts: usize,
    /// Of those, found in the database.
    pub stored: usize,
    /// Of those, encoded now.
    pub encoded: usize,
    /// Seconds from start to the index attached.
    pub seconds: f64,
}

/// Embedding failed; the knowledge keeps answering on lexical signals.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The encoder stopped or failed.
    #[error(transparent)]
    Encoder(#[from] EncoderFailed),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The vectors did not fit the knowledge (a bug), or it had its index already.
    #[error("the semantic index could not be attached")]
    Attach,
    /// The vectors would hold more than a build may.
    #[error(transparent)]
    OverBudget(#[from] crate::knowledge::OverBudget),
}

/// The digest a text's vector is stored under: the SHA-256 of the text as the encoder sees it.
pub fn digest(text: &str) -> Digest {
    Sha256::digest(normalize(text).as_bytes()).into()
}

/// Embeds `kb`'s texts (stored vectors first) and attaches its semantic index.
pub async fn embed_knowledge(
    kb: Arc<KnowledgeBase>,
    encoder: &Encoder,
    stored: Option<&dyn Embeddings>,
    at: Millis,
    budget: &crate::knowledge::BuildBudget,
) -> Result<Embedded, EmbedError> {
    let started = Instant::now();
    let texts = kb.semantic_texts();
    let all = texts.all();
    // Only the memory budget applies here (the vectors are counted exactly): the pack already serves on its lexical signals, and
    // encoding waits behind shoppers' messages for as long as they keep the encoder busy. Each
    // text's vector is held twice while the index is put together (as read, and in the index),
    // and the head's weights with the optimiser's two moments per class.
    let width = encoder.dimensions() * 4;
    let classes = kb.class_count().min(crate::knowledge::semantic::MAX_HEAD_CLASSES);
    budget.check_exact("holding the texts' vectors", all.len() * (2 * width + 64) + 3 * classes * width)?;
    let (unique, slot) = distinct(&all);
    let digests: Vec<Digest> = unique.iter().map(|t| digest(t)).collect();
    let mut vectors: Vec<Option<Vec<f32>>> = match stored {
        Some(db) => db.embeddings(encoder.model_id(), &digests).await?,
        None => vec![None; unique.len()],
    };
    let missing: Vec<usize> = (0..unique.len())
        .filter(|&i| vectors[i].as_ref().is_none_or(|v| v.len() != encoder.dimensions()))
        .collect();
    let stored_count = unique.len() - missing.len();
    if !missing.is_empty() {
        let to_encode: Vec<String> = missing.iter().map(|&i| unique[i].clone()).collect();
        let encoded = encoder.embed_many(&to_encode).await?;
        if let Some(db) = stored {
            let items: Vec<(Digest, Vec<f32>)> =
                missing.iter().zip(&encoded).map(|(&i, v)| (digests[i], v.clone())).collect();
            db.save_embeddings(encoder.model_id(), &items, at).await?;
        }
        for (&i, v) in missing.iter().zip(encoded) {
            vectors[i] = Some(v);
        }
    }
    let ordered: Vec<Vec<f32>> = slot.iter().map(|&u| vectors[u].clone().unwrap_or_default()).collect();
    let attached = tokio::task::spawn_blocking(move || kb.attach_semantic(&texts, &ordered))
        .await
        .map_err(|_| EmbedError::Attach)?;
    if !attached {
        return Err(EmbedError::Attach);
    }
    Ok(Embedded {
        texts: unique.len(),
        stored: stored_count,
        encoded: missing.len(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Vectors for shoppers' messages (insight over history: clusters, spikes): from the encoder's
/// cache, else the database, else encoded at low priority and stored, so that each text is
/// encoded once.
pub async fn vectors_of(
    encoder: &Encoder,
    stored: Option<&dyn Embeddings>,
    texts: &[String],
    at: Millis,
) -> Result<crate::insight::Vectors, EmbedError> {
    let mut out = crate::insight::Vectors::with_capacity(texts.len());
    let mut wanted: Vec<&String> = Vec::new();
    for text in texts {
        if out.contains_key(text) || wanted.contains(&text) {
            continue;
        }
        match encoder.peek(text) {
            Some(v) => {
                out.insert(text.clone(), v.to_vec());
            }
            None => wanted.push(text),
        }
    }
    let digests: Vec<Digest> = wanted.iter().map(|t| digest(t)).collect();
    let found = match stored {
        Some(db) => db.embeddings(encoder.model_id(), &digests).await?,
        None => vec![None; wanted.len()],
    };
    let mut missing = Vec::new();
    for ((text, digest), vector) in wanted.into_iter().zip(digests).zip(found) {
        match vector.filter(|v| v.len() == encoder.dimensions()) {
            Some(v) => {
                out.insert(text.clone(), v);
            }
            None => missing.push((text.clone(), digest)),
        }
    }
    if !missing.is_empty() {
        let texts: Vec<String> = missing.iter().map(|(t, _)| t.clone()).collect();
        let vectors = encoder.embed_many(&texts).await?;
        if let Some(db) = stored {
            let items: Vec<(Digest, Vec<f32>)> =
                missing.iter().map(|(_, d)| *d).zip(vectors.iter().cloned()).collect();
            db.save_embeddings(encoder.model_id(), &items, at).await?;
        }
        out.extend(texts.into_iter().zip(vectors));
    }
    Ok(out)
}

/// [`embed_knowledge`] without a database, for code that is not async (`eval`, `ask`).
pub fn embed_knowledge_blocking(kb: &KnowledgeBase, encoder: &Encoder) -> Result<Embedded, EmbedError> {
    let started = Instant::now();
    let texts = kb.semantic_texts();
    let all = texts.all();
    let (unique, slot) = distinct(&all);
    let vectors = encoder.embed_many_blocking(&unique)?;
    let ordered: Vec<Vec<f32>> = slot.iter().map(|&u| vectors[u].clone()).collect();
    if !kb.attach_semantic(&texts, &ordered) {
        return Err(EmbedError::Attach);
    }
    Ok(Embedded {
        texts: unique.len(),
        stored: 0,
        encoded: unique.len(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The distinct texts (as the encoder sees them) and, for each text, its distinct one's index.
fn distinct(all: &[String]) -> (Vec<String>, Vec<usize>) {
    let mut index: HashMap<String, usize> = HashMap::with_capacity(all.len());
    let mut unique = Vec::new();
    let slot = all
        .iter()
        .map(|t| {
            *index.entry(normalize(t)).or_insert_with(|| {
                unique.push(t.clone());
                unique.len() - 1
            })
        })
        .collect();
    (unique, slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_that_read_the_same_to_the_encoder_are_embedded_once() {
        let all = ["How much?", "how  much?", "运费", "How much?"].map(String::from);
        let (unique, slot) = distinct(&all);
        assert_eq!(unique, ["How much?", "运费"]);
        assert_eq!(slot, [0, 0, 1, 0]);
        assert_eq!(digest("How  MUCH?"), digest("how much?"));
        assert_ne!(digest("运费"), digest("邮费"));
    }
}
