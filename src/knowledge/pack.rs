//! The pack: a store's FAQ entries, attribute vocabulary and products, as a merchant writes them.
//!
//! On disk, `knowledge/<store>/faq.toml` holds `[[faq]]` entries and `products.toml` the
//! attribute vocabulary (`[[attribute]]`) and the catalog (`[[product]]`); either may be absent.
//! Over HTTP and the CLI a pack comes in any of the [`super::formats`]. A pack is validated as a
//! whole and every problem is reported, each with the entry (or row) and field it is in.

use std::collections::HashSet;
use std::path::Path;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::domain::{LocalizedText, Millis};

/// A store's knowledge: FAQ entries and products.
///
/// In JSON and YAML the lists are `faq`, `attributes` and `products`; TOML files may write them
/// as `[[faq]]`, `[[attribute]]` and `[[product]]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pack {
    /// FAQ entries.
    #[serde(default)]
    pub faq: Vec<FaqEntry>,
    /// Product attributes shoppers ask about.
    #[serde(default, alias = "attribute", skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<AttributeDef>,
    /// Products.
    #[serde(default, alias = "product", skip_serializing_if = "Vec::is_empty")]
    pub products: Vec<Product>,
}

/// A question with its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaqEntry {
    /// Stable id, unique in the pack.
    pub id: String,
    /// The standard question (shown as a suggestion).
    pub question: LocalizedText,
    /// Other ways shoppers ask it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub similar: Vec<String>,
    /// The answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<LocalizedText>,
    /// More answers: the bot picks one of all the answers each time it replies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<LocalizedText>,
    /// A category, e.g. `after-sales`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Topics, e.g. `returns`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// RFC 3339 instant from which the entry is answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts: Option<String>,
    /// RFC 3339 instant at which the entry stops being answered (a promotion ending at
    /// midnight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends: Option<String>,
    /// Answer, and also queue the chat for a person.
    #[serde(default, skip_serializing_if = "is_false")]
    pub notify: bool,
    /// A disabled entry is kept in the pack but never answered.
    #[serde(default = "enabled", skip_serializing_if = "is_true")]
    pub enabled: bool,
}

impl FaqEntry {
    /// A plain entry with one answer.
    pub fn new(id: impl Into<String>, question: LocalizedText, answer: LocalizedText) -> Self {
        Self {
            id: id.into(),
            question,
            similar: Vec::new(),
            answer: Some(answer),
            answers: Vec::new(),
            category: None,
            tags: Vec::new(),
            starts: None,
            ends: None,
            notify: false,
            enabled: true,
        }
    }

    /// Every answer: `answer` first, then `answers`.
    pub fn all_answers(&self) -> impl Iterator<Item = &LocalizedText> {
        self.answer.iter().chain(&self.answers)
    }

    /// The answer to give at `now`: one of the answers, varying over time.
    pub fn answer_at(&self, now: Millis) -> &LocalizedText {
        let count = self.all_answers().count().max(1) as i64;
        let pick = usize::try_from((now.0 / 1000).rem_euclid(count)).unwrap_or(0);
        self.all_answers().nth(pick).or(self.answer.as_ref()).unwrap_or(&BLANK)
    }

    /// Whether the entry is answered at `now`: enabled and inside its window. Unparseable
    /// bounds were rejected at validation.
    pub fn is_live(&self, now: Millis) -> bool {
        self.enabled && in_window(self.starts.as_deref(), self.ends.as_deref(), now)
    }
}

static BLANK: LocalizedText = LocalizedText::Plain(String::new());

fn enabled() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

fn is_false(value: &bool) -> bool {
    !*value
}

fn in_window(starts: Option<&str>, ends: Option<&str>, now: Millis) -> bool {
    let after_start = starts.and_then(parse_instant).is_none_or(|s| s <= now);
    let before_end = ends.and_then(parse_instant).is_none_or(|e| now < e);
    after_start && before_end
}

/// An attribute products may have, and the words shoppers use for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeDef {
    /// Key used in products' `attributes` tables.
    pub key: String,
    /// How the bot names it.
    pub label: LocalizedText,
    /// Words that mean this attribute in a question.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub synonyms: Vec<String>,
}

/// Whether a product can be bought now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StockState {
    /// Available.
    InStock,
    /// Few left.
    LowStock,
    /// Not available.
    OutOfStock,
    /// Can be ordered, ships later.
    Preorder,
}

/// A product of the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// Stock-keeping unit, unique in the pack.
    pub sku: String,
    /// Full name.
    pub name: LocalizedText,
    /// Short names shoppers type ("X1").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Category, e.g. phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<LocalizedText>,
    /// Price.
    pub price: f64,
    /// ISO 4217 currency code.
    #[serde(default = "default_currency")]
    pub currency: String,
    /// Stock state.
    #[serde(default = "default_stock")]
    pub stock: StockState,
    /// One sentence about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<LocalizedText>,
    /// Related products' SKUs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<String>,
    /// Attribute key → value.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub attributes: IndexMap<String, LocalizedText>,
    /// Promotions, each with an optional validity window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub promotions: Vec<Promotion>,
}

/// A promotion on a product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Promotion {
    /// What the shopper is told.
    pub text: LocalizedText,
    /// RFC 3339 instant from which it applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts: Option<String>,
    /// RFC 3339 instant at which it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends: Option<String>,
}

impl Promotion {
    /// Whether the promotion applies at `now`. Unparseable bounds were rejected at load.
    pub fn is_active(&self, now: Millis) -> bool {
        in_window(self.starts.as_deref(), self.ends.as_deref(), now)
    }
}

fn default_currency() -> String {
    "CNY".into()
}

fn default_stock() -> StockState {
    StockState::InStock
}

/// Parses an RFC 3339 instant.
pub fn parse_instant(text: &str) -> Option<Millis> {
    let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok().map(Millis)
}

/// Every problem found in a pack.
#[derive(Debug, thiserror::Error)]
#[error("the pack has {} problem(s):\n  {}", .problems.len(), .problems.join("\n  "))]
pub struct PackError {
    /// One line per problem, naming the file, entry and field.
    pub problems: Vec<String>,
}

impl PackError {
    /// A single problem.
    pub fn one(problem: impl Into<String>) -> Self {
        Self { problems: vec![problem.into()] }
    }
}

/// How large a pack's texts may be, and what building it may spend (`[content]` in the
/// configuration).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SizeLimits {
    /// Longest answer, in characters (each language apart).
    pub max_answer_chars: usize,
    /// Longest question or similar question, in characters.
    pub max_question_chars: usize,
    /// Most FAQ entries and products together.
    pub max_entries: usize,
    /// Longest a build may take, in seconds.
    pub max_build_seconds: f64,
    /// Most memory a build may hold, in MB.
    pub max_build_mb: usize,
}

impl Default for SizeLimits {
    fn default() -> Self {
        Self {
            max_answer_chars: 5000,
            max_question_chars: 500,
            max_entries: 100_000,
            max_build_seconds: 120.0,
            max_build_mb: 2048,
        }
    }
}

impl SizeLimits {
    /// A build's budget under these limits, starting now.
    pub fn budget(&self) -> super::BuildBudget {
        super::BuildBudget::new(self.max_build_seconds, self.max_build_mb)
    }
}

impl Pack {
    /// Checks every text against `limits` and lists each one over them, with where it is, how
    /// long it is and the setting that bounds it.
    pub fn check_sizes(&self, limits: SizeLimits) -> Result<(), PackError> {
        let entries = self.faq.len() + self.products.len();
        if entries > limits.max_entries {
            return Err(PackError::one(format!(
                "the pack has {entries} FAQ entries and products; at most {} are accepted (content.max_entries)",
                limits.max_entries
            )));
        }
        let mut problems = Vec::new();
        let mut check = |at: &str, field: &str, text: &str, max: usize, setting: &str| {
            let chars = text.chars().count();
            if chars > max {
                problems.push(format!(
                    "{at}: '{field}' has {chars} characters; at most {max} are accepted (content.{setting})"
                ));
            }
        };
        for (n, faq) in self.faq.iter().enumerate() {
            let at = format!("faq #{} ({:?})", n + 1, faq.id);
            for text in faq.question.variants() {
                check(&at, "question", text, limits.max_question_chars, "max_question_chars");
            }
            for (k, similar) in faq.similar.iter().enumerate() {
                check(
                    &at,
                    &format!("similar {}", k + 1),
                    similar,
                    limits.max_question_chars,
                    "max_question_chars",
                );
            }
            for (k, answer) in faq.all_answers().enumerate() {
                let field = if k == 0 { "answer".to_owned() } else { format!("answer {}", k + 1) };
                for text in answer.variants() {
                    check(&at, &field, text, limits.max_answer_chars, "max_answer_chars");
                }
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(PackError { problems }) }
    }

    /// Reads `faq.toml` and `products.toml` from a store's directory and validates them.
    pub fn load_dir(dir: &Path) -> Result<Self, PackError> {
        let mut pack = Pack::default();
        for name in ["faq.toml", "products.toml"] {
            let path = dir.join(name);
            if !path.exists() {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|e| PackError::one(format!("{}: cannot read: {e}", path.display())))?;
            let part: Pack = toml::from_str(&text)
                .map_err(|e| PackError::one(format!("{}: {}", path.display(), e.to_string().trim_end())))?;
            pack.faq.extend(part.faq);
            pack.attributes.extend(part.attributes);
            pack.products.extend(part.products);
        }
        pack.validate()?;
        Ok(pack)
    }

    /// Checks the pack as a whole and lists every problem.
    pub fn validate(&self) -> Result<(), PackError> {
        self.validate_at(&[], "field")
    }

    /// Like [`Pack::validate`], naming FAQ entry `n` by `places[n]` (e.g. "row 17") where given,
    /// and its fields by `noun` ("field", or "column" for a spreadsheet).
    pub fn validate_at(&self, places: &[String], noun: &str) -> Result<(), PackError> {
        let mut problems = Vec::new();
        let mut ids = HashSet::new();
        for (n, faq) in self.faq.iter().enumerate() {
            let at = match places.get(n) {
                Some(place) => place.clone(),
                None if faq.id.trim().is_empty() => format!("faq #{}", n + 1),
                None => format!("faq #{} ({:?})", n + 1, faq.id),
            };
            if faq.id.trim().is_empty() {
                problems.push(format!("{at}: {noun} 'id' is empty"));
            } else if !ids.insert(faq.id.as_str()) {
                problems.push(format!("{at}: duplicate id {:?}", faq.id));
            }
            if faq.question.is_blank() {
                problems.push(format!("{at}: {noun} 'question' is empty"));
            }
            if faq.answer.is_none() && faq.answers.is_empty() {
                problems.push(format!("{at}: {noun} 'answer' is missing"));
            }
            for (k, answer) in faq.all_answers().enumerate() {
                if answer.is_blank() {
                    let field = if k == 0 { "answer".to_owned() } else { format!("answer {}", k + 1) };
                    problems.push(format!("{at}: {noun} '{field}' is empty"));
                }
            }
            check_window(&mut problems, &at, faq.starts.as_deref(), faq.ends.as_deref());
        }
        let attribute_keys: HashSet<&str> = self.attributes.iter().map(|a| a.key.as_str()).collect();
        let skus: HashSet<&str> = self.products.iter().map(|p| p.sku.as_str()).collect();
        let mut seen_skus = HashSet::new();
        for (n, product) in self.products.iter().enumerate() {
            let at = format!("product #{} ({:?})", n + 1, product.sku);
            if product.sku.trim().is_empty() {
                problems.push(format!("product #{}: field 'sku' is empty", n + 1));
            } else if !seen_skus.insert(product.sku.as_str()) {
                problems.push(format!("{at}: duplicate sku"));
            }
            if product.name.is_blank() {
                problems.push(format!("{at}: field 'name' is empty"));
            }
            if !product.price.is_finite() || product.price < 0.0 {
                problems.push(format!("{at}: field 'price' must be a non-negative number"));
            }
            for key in product.attributes.keys() {
                if !attribute_keys.contains(key.as_str()) {
                    problems.push(format!("{at}: attribute {key:?} is not defined by any [[attribute]]"));
                }
            }
            for related in &product.related {
                if !skus.contains(related.as_str()) {
                    problems.push(format!("{at}: related sku {related:?} does not exist"));
                }
            }
            for (k, promo) in product.promotions.iter().enumerate() {
                let at = format!("{at}: promotion #{}", k + 1);
                check_window(&mut problems, &at, promo.starts.as_deref(), promo.ends.as_deref());
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(PackError { problems }) }
    }
}

/// A validity window's bounds must be RFC 3339 instants, the start before the end.
fn check_window(problems: &mut Vec<String>, at: &str, starts: Option<&str>, ends: Option<&str>) {
    let mut bound = |field: &str, value: Option<&str>| {
        let value = value?;
        let parsed = parse_instant(value);
        if parsed.is_none() {
            problems.push(format!(
                "{at}: field '{field}' is not an RFC 3339 instant (like 2026-11-11T00:00:00+08:00): {value:?}"
            ));
        }
        parsed
    };
    if let (Some(s), Some(e)) = (bound("starts", starts), bound("ends", ends))
        && s >= e
    {
        problems.push(format!("{at}: field 'ends' is not after 'starts'"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_listed_with_its_place() {
        let pack: Pack = toml::from_str(
            r#"
            [[faq]]
            id = "a"
            question = "Q?"
            answer = ""
            [[faq]]
            id = "a"
            question = "Q2?"
            answer = "A"
            [[product]]
            sku = "P1"
            name = "Phone"
            price = 1.0
            related = ["nope"]
            attributes = { weight = "1kg" }
            "#,
        )
        .unwrap();
        let err = pack.validate().unwrap_err();
        let all = err.problems.join("\n");
        assert!(all.contains("faq #1 (\"a\"): field 'answer' is empty"), "{all}");
        assert!(all.contains("faq #2 (\"a\"): duplicate id"), "{all}");
        assert!(all.contains("related sku \"nope\""), "{all}");
        assert!(all.contains("attribute \"weight\" is not defined"), "{all}");
    }

    #[test]
    fn promotions_respect_their_window() {
        let promo = Promotion {
            text: LocalizedText::Plain("10% off".into()),
            starts: Some("2026-11-01T00:00:00+08:00".into()),
            ends: Some("2026-11-12T00:00:00+08:00".into()),
        };
        let at = |s: &str| parse_instant(s).unwrap();
        assert!(promo.is_active(at("2026-11-11T23:59:59+08:00")));
        assert!(!promo.is_active(at("2026-11-12T00:00:00+08:00")));
        assert!(!promo.is_active(at("2026-10-31T23:59:59+08:00")));
    }
}
