//! Features for the classifier: what a text "looks like" as a sparse TF-IDF vector.
//!
//! Word unigrams and bigrams (jieba words and stemmed English, function words kept), Latin
//! character 3–5-grams within word boundaries (robust to typos and inflections), and Han
//! character 1–3-grams (robust to segmentation and to near-synonyms sharing a character, such
//! as 运费 / 邮费). Features are hashed to 64 bits without allocating, then mapped to the
//! vocabulary seen in training; unseen features carry no weight.

use std::collections::HashMap;

use crate::domain::is_han;
use crate::text::{Analyzer, fold_width};

/// A sparse vector: feature ids, ascending, with weights.
pub type SparseVec = Vec<(u32, f32)>;

/// Kinds of feature, mixed into their hashes so that the word "ab" and the n-gram "ab" differ.
#[derive(Clone, Copy)]
enum Kind {
    Word = 1,
    WordPair = 2,
    Chars = 3,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn hash_bytes(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

fn hash(kind: Kind, parts: &[&str]) -> u64 {
    let mut h = hash_bytes(FNV_OFFSET, &[kind as u8]);
    for part in parts {
        h = hash_bytes(h, part.as_bytes());
        h = hash_bytes(h, &[0xff]);
    }
    h
}

/// Hashed features of `text`, with repeats (term frequency is their count).
pub fn raw_features(analyzer: &Analyzer, text: &str) -> Vec<u64> {
    let words = analyzer.words(text);
    let mut out = Vec::with_capacity(words.len() * 2 + text.len() * 2);
    out.extend(words.iter().map(|w| hash(Kind::Word, &[w])));
    out.extend(words.windows(2).map(|p| hash(Kind::WordPair, &[&p[0], &p[1]])));

    let normalized = fold_width(text).to_lowercase();
    let mut run = String::new();
    for c in normalized.chars().chain(std::iter::once(' ')) {
        let same_script = run.chars().next().is_none_or(|first| is_han(first) == is_han(c));
        if c.is_alphanumeric() && same_script {
            run.push(c);
            continue;
        }
        char_ngrams(&run, &mut out);
        run.clear();
        if c.is_alphanumeric() {
            run.push(c);
        }
    }
    out
}

/// Character n-grams of one run of letters/digits (Latin) or of Han characters.
fn char_ngrams(run: &str, out: &mut Vec<u64>) {
    if run.is_empty() {
        return;
    }
    let han = run.chars().next().is_some_and(is_han);
    let padded: Vec<char> = if han { run.chars().collect() } else { format!(" {run} ").chars().collect() };
    let sizes = if han { 1..=3 } else { 3..=5 };
    let mut buf = [0u8; 4];
    for n in sizes {
        for window in padded.windows(n) {
            let mut h = hash_bytes(FNV_OFFSET, &[Kind::Chars as u8]);
            for c in window {
                h = hash_bytes(h, c.encode_utf8(&mut buf).as_bytes());
            }
            out.push(h);
        }
    }
}

/// The features seen in training, with their inverse document frequencies.
#[derive(Debug, Clone, Default)]
pub struct Vocabulary {
    ids: HashMap<u64, u32>,
    idf: Vec<f32>,
}

impl Vocabulary {
    /// Learns the vocabulary and IDF from the training texts' raw features.
    pub fn fit(docs: &[Vec<u64>]) -> Self {
        let mut ids: HashMap<u64, u32> = HashMap::new();
        let mut df: Vec<u32> = Vec::new();
        let mut seen = Vec::new();
        for doc in docs {
            seen.clear();
            seen.extend_from_slice(doc);
            seen.sort_unstable();
            seen.dedup();
            for &f in &seen {
                let next = u32::try_from(ids.len()).unwrap_or(u32::MAX);
                let id = *ids.entry(f).or_insert(next);
                if id as usize == df.len() {
                    df.push(0);
                }
                df[id as usize] += 1;
            }
        }
        let n = docs.len().max(1) as f32;
        let idf = df.iter().map(|&d| (n / d as f32).ln() + 1.0).collect();
        Self { ids, idf }
    }

    /// How many features there are.
    pub fn len(&self) -> usize {
        self.idf.len()
    }

    /// About the bytes it holds (a map entry is a key, an id and the table's spare room).
    pub fn bytes(&self) -> usize {
        self.ids.capacity() * 16 + self.idf.len() * 4
    }

    /// True when nothing was learned.
    pub fn is_empty(&self) -> bool {
        self.idf.is_empty()
    }

    /// The L2-normalised sublinear TF-IDF vector of raw features.
    pub fn vectorize(&self, raw: &[u64]) -> SparseVec {
        let mut ids: Vec<u32> = raw.iter().filter_map(|f| self.ids.get(f).copied()).collect();
        ids.sort_unstable();
        let mut vec: SparseVec = Vec::with_capacity(ids.len());
        for id in ids {
            match vec.last_mut() {
                Some((last, tf)) if *last == id => *tf += 1.0,
                _ => vec.push((id, 1.0)),
            }
        }
        for (id, w) in &mut vec {
            *w = (1.0 + w.ln()) * self.idf[*id as usize];
        }
        let norm = vec.iter().map(|(_, w)| w * w).sum::<f32>().sqrt();
        if norm > 0.0 {
            vec.iter_mut().for_each(|(_, w)| *w /= norm);
        }
        vec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_synonyms_share_character_features() {
        let analyzer = Analyzer::new();
        let a = raw_features(&analyzer, "退货邮费");
        let b = raw_features(&analyzer, "退货运费");
        let shared = a.iter().filter(|f| b.contains(f)).count();
        assert!(shared >= 3, "退, 货, 费, 退货… should be shared; got {shared}");
    }

    #[test]
    fn vectors_are_normalised_and_ignore_unseen_features() {
        let analyzer = Analyzer::new();
        let docs: Vec<Vec<u64>> =
            ["where is my order", "cancel my order"].iter().map(|t| raw_features(&analyzer, t)).collect();
        let vocab = Vocabulary::fit(&docs);
        let v = vocab.vectorize(&raw_features(&analyzer, "where is my order zzzz"));
        let norm: f32 = v.iter().map(|(_, w)| w * w).sum();
        assert!((norm - 1.0).abs() < 1e-4);
        assert!(vocab.vectorize(&raw_features(&analyzer, "qqqq")).is_empty());
    }
}
