//! Text analysis shared by indexing, querying and matching: one definition of a "term".
//!
//! Chinese is segmented with jieba (search mode: long words also yield their dictionary parts)
//! and, in addition, cut into character bigrams; Latin words are lowercased and stemmed (English Snowball);
//! full-width forms are folded to ASCII; punctuation and a short list of function words are
//! dropped. The same [`Analyzer`] is registered as tantivy's tokenizer and used directly, so an
//! index term and a query term can never disagree.

use std::sync::Arc;

use jieba_rs::Jieba;

use crate::domain::is_han;
use tantivy::tokenizer::{
    Language, LowerCaser, Stemmer, StopWordFilter, TextAnalyzer, Token, TokenStream, Tokenizer,
};

/// The name under which the analyzer is registered in tantivy indexes.
pub const TOKENIZER_NAME: &str = "mibot";

/// Words that carry no meaning for matching a shopper's question.
const STOP_WORDS: &[&str] = &[
    // English (already lowercased; stop words are removed after stemming, so stems appear too)
    "a", "an", "the", "is", "are", "am", "be", "was", "were", "do", "doe", "does", "did", "i", "me", "my",
    "you", "your", "we", "our", "us", "it", "its", "to", "of", "for", "in", "on", "at", "and", "or", "pleas",
    "please", "can", "could", "would", "will", "this", "that", "there", "so", "just", "some", "ani", "any",
    "with", "about", "hi", "hello", // Chinese particles and pronouns
    "的", "了", "吗", "呢", "吧", "啊", "呀", "嘛", "哦", "么", "我", "你", "您", "是", "请问", "一下", "请",
    "想", "要", "我们", "你们", "在", "有", "和", "也", "就", "都", "还",
];

/// Segments and normalises text into terms. Cheap to clone (the dictionary is shared).
#[derive(Clone)]
pub struct Analyzer {
    analyzer: TextAnalyzer,
    /// The same analysis keeping function words, which carry intent ("who made you").
    all_words: TextAnalyzer,
}

impl Analyzer {
    /// Loads jieba's default dictionary (about a quarter of a second: do it once per process).
    pub fn new() -> Self {
        Self::with_jieba(Arc::new(Jieba::new()))
    }

    /// An analyzer over an already loaded dictionary.
    pub fn with_jieba(jieba: Arc<Jieba>) -> Self {
        let analyzer = TextAnalyzer::builder(WordSplitter { jieba: Arc::clone(&jieba), bigrams: true })
            .filter(LowerCaser)
            .filter(Stemmer::new(Language::English))
            .filter(StopWordFilter::remove(STOP_WORDS.iter().map(|w| (*w).to_owned())))
            .build();
        let all_words = TextAnalyzer::builder(WordSplitter { jieba, bigrams: false })
            .filter(LowerCaser)
            .filter(Stemmer::new(Language::English))
            .build();
        Self { analyzer, all_words }
    }

    /// The tantivy analyzer, to register under [`TOKENIZER_NAME`].
    pub fn tantivy_analyzer(&self) -> TextAnalyzer {
        self.analyzer.clone()
    }

    /// The terms of `text`, in order, duplicates kept.
    pub fn terms(&self, text: &str) -> Vec<String> {
        collect(&self.analyzer, text)
    }

    /// Every word of `text` in order, function words kept and no Han bigrams: the classifier's
    /// word features.
    pub fn words(&self, text: &str) -> Vec<String> {
        collect(&self.all_words, text)
    }
}

fn collect(analyzer: &TextAnalyzer, text: &str) -> Vec<String> {
    let mut analyzer = analyzer.clone();
    let mut stream = analyzer.token_stream(text);
    let mut terms = Vec::new();
    while stream.advance() {
        terms.push(std::mem::take(&mut stream.token_mut().text));
    }
    terms
}

impl Default for Analyzer {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Analyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Analyzer(jieba + english stemmer)")
    }
}

/// Folds full-width ASCII forms (Ｘ１, ！) to their ASCII counterparts and ideographic space to
/// a plain space.
pub fn fold_width(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            _ => c,
        })
        .collect()
}

/// jieba segmentation that keeps only words (no spaces or punctuation).
#[derive(Clone)]
struct WordSplitter {
    jieba: Arc<Jieba>,
    bigrams: bool,
}

impl Tokenizer for WordSplitter {
    type TokenStream<'a> = WordStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> WordStream {
        let folded = fold_width(text);
        let mut tokens: Vec<Token> = Vec::new();
        let mut push = |text: &str, from: usize, to: usize| {
            let position = tokens.len();
            tokens.push(Token {
                offset_from: from,
                offset_to: to,
                position,
                text: text.to_owned(),
                position_length: 1,
            });
        };
        for word in self.jieba.cut_for_search(&folded, true) {
            if word.word.chars().any(char::is_alphanumeric) {
                push(word.word, word.byte_start, word.byte_end);
            }
        }
        // Han bigrams make matching independent of how jieba happened to segment a phrase
        // (退货运费 → 退/货运费, 开发票 → 开发/票).
        if !self.bigrams {
            return WordStream { tokens, next: 0 };
        }
        let han: Vec<(usize, char)> = folded.char_indices().collect();
        for pair in han.windows(2) {
            let [(from, a), (at, b)] = [pair[0], pair[1]];
            if is_han(a) && is_han(b) && !PARTICLES.contains(&a) && !PARTICLES.contains(&b) {
                push(&folded[from..at + b.len_utf8()], from, at + b.len_utf8());
            }
        }
        WordStream { tokens, next: 0 }
    }
}

/// Characters too common to make a useful bigram.
const PARTICLES: &[char] =
    &['的', '了', '吗', '呢', '吧', '啊', '呀', '嘛', '哦', '么', '是', '我', '你', '您'];

/// The words of one text. Offsets refer to the width-folded text, which has the same length in
/// characters as the original.
struct WordStream {
    tokens: Vec<Token>,
    next: usize,
}

impl TokenStream for WordStream {
    fn advance(&mut self) -> bool {
        self.next += 1;
        self.next <= self.tokens.len()
    }

    fn token(&self) -> &Token {
        &self.tokens[self.next - 1]
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.next - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_is_segmented_and_particles_dropped() {
        let terms = Analyzer::new().terms("退货运费谁承担呢？");
        assert!(terms.contains(&"退货".to_owned()), "{terms:?}");
        assert!(terms.contains(&"运费".to_owned()), "{terms:?}");
        assert!(!terms.contains(&"呢".to_owned()), "{terms:?}");
        assert!(!terms.iter().any(|t| t == "？"), "{terms:?}");
    }

    #[test]
    fn english_is_lowercased_and_stemmed() {
        let terms = Analyzer::new().terms("Returning the Shoes, please!");
        assert_eq!(terms, vec!["return", "shoe"]);
    }

    #[test]
    fn mixed_and_full_width_text() {
        let terms = Analyzer::new().terms("Ｘ１多少钱");
        assert!(terms.contains(&"x1".to_owned()), "{terms:?}");
        assert!(terms.contains(&"多少".to_owned()), "{terms:?}");
    }
}
