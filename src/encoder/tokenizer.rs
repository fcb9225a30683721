//! The model's own tokenizer: XLM-RoBERTa's SentencePiece unigram model.
//!
//! A text is normalised one code point at a time by the model's table (full-width forms to
//! ASCII, compatibility characters to their canonical forms, control characters removed), runs
//! of spaces are collapsed, spaces become the metaspace `▁` with one in front, and the pieces are
//! chosen by Viterbi: the segmentation whose pieces' log-probabilities sum highest. A character
//! that no piece covers becomes `<unk>`. The same rules produce the ids the model was trained on;
//! `tests/encoder.rs` checks them against ids made by the package's own engine.

use std::collections::HashMap;

/// The metaspace that stands for a space inside pieces.
const METASPACE: char = '\u{2581}';

/// A SentencePiece unigram vocabulary with its normalisation table.
#[derive(Debug)]
pub struct Tokenizer {
    pieces: HashMap<Box<str>, u32>,
    scores: Vec<f32>,
    normalize: HashMap<char, Box<str>>,
    /// The longest piece, in bytes: no longer span is looked up.
    longest: usize,
    /// The score of an unknown character: below every piece, so it is the last resort.
    unk_score: f32,
    specials: Specials,
}

/// The ids of the special tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Specials {
    /// Start of the sequence, `<s>`.
    pub bos: u32,
    /// End of the sequence, `</s>`.
    pub eos: u32,
    /// Padding, `<pad>`.
    pub pad: u32,
    /// An unknown character, `<unk>`.
    pub unk: u32,
}

impl Tokenizer {
    /// A tokenizer over `pieces` (each with its log-probability, in id order) and the
    /// per-character normalisation table.
    pub fn new(pieces: Vec<(String, f32)>, normalize: Vec<(char, String)>, specials: Specials) -> Self {
        let min = pieces.iter().map(|(_, s)| *s).fold(f32::INFINITY, f32::min);
        let longest = pieces.iter().map(|(p, _)| p.len()).max().unwrap_or(1);
        let scores = pieces.iter().map(|(_, s)| *s).collect();
        let mut table = HashMap::with_capacity(pieces.len());
        for (id, (piece, _)) in pieces.into_iter().enumerate() {
            // The first of two equal pieces wins, as in SentencePiece; empty pieces never match.
            if !piece.is_empty() {
                table.entry(piece.into_boxed_str()).or_insert(id as u32);
            }
        }
        Self {
            pieces: table,
            scores,
            normalize: normalize.into_iter().map(|(c, s)| (c, s.into_boxed_str())).collect(),
            longest,
            unk_score: if min.is_finite() { min - 10.0 } else { -10.0 },
            specials,
        }
    }

    /// The special tokens' ids.
    pub fn specials(&self) -> Specials {
        self.specials
    }

    /// The vocabulary's size.
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    /// Whether the vocabulary is empty.
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// The content ids of `text`: no `<s>` or `</s>`, not truncated.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let normalized = self.normalized(text);
        let bounds: Vec<usize> =
            normalized.char_indices().map(|(i, _)| i).chain(std::iter::once(normalized.len())).collect();
        let n = bounds.len() - 1;
        // best[i]: the highest score of a segmentation of the first i characters, reached by
        // the piece `piece[i]` that starts at character `from[i]`.
        let mut best = vec![f32::NEG_INFINITY; n + 1];
        let mut piece = vec![self.specials.unk; n + 1];
        let mut from = vec![0usize; n + 1];
        best[0] = 0.0;
        for i in 0..n {
            if best[i] == f32::NEG_INFINITY {
                continue;
            }
            for e in i + 1..=n {
                let span = &normalized[bounds[i]..bounds[e]];
                if span.len() > self.longest {
                    break;
                }
                if let Some(&id) = self.pieces.get(span).filter(|&&id| id != self.specials.unk) {
                    let score = best[i] + self.scores[id as usize];
                    if score > best[e] {
                        (best[e], piece[e], from[e]) = (score, id, i);
                    }
                }
            }
            let unknown = best[i] + self.unk_score;
            if unknown > best[i + 1] {
                (best[i + 1], piece[i + 1], from[i + 1]) = (unknown, self.specials.unk, i);
            }
        }
        let mut ids = Vec::new();
        let mut at = n;
        while at > 0 {
            ids.push(piece[at]);
            at = from[at];
        }
        ids.reverse();
        ids
    }

    /// The text as the model sees it: normalised, spaces collapsed, metaspaces for spaces and
    /// one in front.
    fn normalized(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len() + 3);
        out.push(METASPACE);
        let mut previous_space = true;
        let mut push = |c: char, out: &mut String| {
            if c == ' ' {
                if !previous_space {
                    out.push(METASPACE);
                }
                previous_space = true;
            } else {
                out.push(c);
                previous_space = false;
            }
        };
        for c in text.chars() {
            match self.normalize.get(&c) {
                Some(replacement) => replacement.chars().for_each(|r| push(r, &mut out)),
                None => push(c, &mut out),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Tokenizer {
        let pieces =
            ["<s>", "<pad>", "</s>", "<unk>", "▁", "▁退货", "运费", "运", "费", "▁how", "▁ho", "w", "谁"]
                .iter()
                .enumerate()
                .map(|(i, p)| (p.to_string(), if i < 4 { 0.0 } else { -(i as f32) / 4.0 }))
                .collect();
        let specials = Specials { bos: 0, pad: 1, eos: 2, unk: 3 };
        Tokenizer::new(pieces, vec![('Ｗ', "w".into()), ('\t', " ".into())], specials)
    }

    #[test]
    fn viterbi_prefers_the_likelier_segmentation() {
        let t = tiny();
        // "运费" (score -1.5) beats "运" + "费" (-1.75 - 2.0).
        assert_eq!(t.encode("退货运费"), vec![5, 6]);
        // "▁how" beats "▁ho" + "w".
        assert_eq!(t.encode("how"), vec![9]);
    }

    #[test]
    fn unknown_characters_become_unk_and_spaces_collapse() {
        let t = tiny();
        assert_eq!(t.encode("退货运费谁?"), vec![5, 6, 12, 3]);
        // A leading space is the metaspace itself; runs of spaces count once.
        assert_eq!(t.encode("  how"), t.encode("how"));
        assert_eq!(t.encode("how\t\tho"), vec![9, 10]);
    }

    #[test]
    fn the_table_normalises_before_matching() {
        let t = tiny();
        assert_eq!(t.encode("hoＷ"), vec![9]);
    }
}
