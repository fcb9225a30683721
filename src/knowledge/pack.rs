//! The pack format: what a merchant writes in `knowledge/<store>/`.
//!
//! `faq.toml` holds `[[faq]]` entries; `products.toml` holds the attribute vocabulary
//! (`[[attribute]]`) and the catalog (`[[product]]`). Either file may be absent. A pack is
//! validated as a whole and every problem is reported, each with the entry and field it is in.

use std::collections::HashSet;
use std::path::Path;

use indexmap::IndexMap;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::domain::{LocalizedText, Millis};

/// A store's knowledge: FAQ entries and products.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pack {
    /// FAQ entries.
    #[serde(default)]
    pub faq: Vec<FaqEntry>,
    /// Product attributes shoppers ask about.
    #[serde(default, rename = "attribute")]
    pub attributes: Vec<AttributeDef>,
    /// Products.
    #[serde(default, rename = "product")]
    pub products: Vec<Product>,
}

/// A question with its answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaqEntry {
    /// Stable id, unique in the pack.
    pub id: String,
    /// The standard question (shown as a suggestion).
    pub question: LocalizedText,
    /// Other ways shoppers ask it.
    #[serde(default)]
    pub similar: Vec<String>,
    /// The answer.
    pub answer: LocalizedText,
    /// Topics, e.g. `returns`.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// An attribute products may have, and the words shoppers use for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeDef {
    /// Key used in products' `attributes` tables.
    pub key: String,
    /// How the bot names it.
    pub label: LocalizedText,
    /// Words that mean this attribute in a question.
    #[serde(default)]
    pub synonyms: Vec<String>,
}

/// Whether a product can be bought now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// Stock-keeping unit, unique in the pack.
    pub sku: String,
    /// Full name.
    pub name: LocalizedText,
    /// Short names shoppers type ("X1").
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Category, e.g. phone.
    #[serde(default)]
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
    #[serde(default)]
    pub description: Option<LocalizedText>,
    /// Related products' SKUs.
    #[serde(default)]
    pub related: Vec<String>,
    /// Attribute key → value.
    #[serde(default)]
    pub attributes: IndexMap<String, LocalizedText>,
    /// Promotions, each with an optional validity window.
    #[serde(default)]
    pub promotions: Vec<Promotion>,
}

/// A promotion on a product.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Promotion {
    /// What the shopper is told.
    pub text: LocalizedText,
    /// RFC 3339 instant from which it applies.
    #[serde(default)]
    pub starts: Option<String>,
    /// RFC 3339 instant at which it ends.
    #[serde(default)]
    pub ends: Option<String>,
}

impl Promotion {
    /// Whether the promotion applies at `now`. Unparseable bounds were rejected at load.
    pub fn is_active(&self, now: Millis) -> bool {
        let after_start = self.starts.as_deref().and_then(parse_instant).is_none_or(|s| s <= now);
        let before_end = self.ends.as_deref().and_then(parse_instant).is_none_or(|e| now < e);
        after_start && before_end
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
    fn one(problem: String) -> Self {
        Self { problems: vec![problem] }
    }
}

impl Pack {
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
        let mut problems = Vec::new();
        let mut ids = HashSet::new();
        for (n, faq) in self.faq.iter().enumerate() {
            let at = format!("faq #{} ({:?})", n + 1, faq.id);
            if faq.id.trim().is_empty() {
                problems.push(format!("faq #{}: field 'id' is empty", n + 1));
            } else if !ids.insert(faq.id.as_str()) {
                problems.push(format!("{at}: duplicate id"));
            }
            if faq.question.is_blank() {
                problems.push(format!("{at}: field 'question' is empty"));
            }
            if faq.answer.is_blank() {
                problems.push(format!("{at}: field 'answer' is empty"));
            }
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
                for (field, value) in [("starts", &promo.starts), ("ends", &promo.ends)] {
                    if let Some(v) = value
                        && parse_instant(v).is_none()
                    {
                        problems.push(format!(
                            "{at}: promotion #{} field '{field}' is not an RFC 3339 instant: {v:?}",
                            k + 1
                        ));
                    }
                }
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(PackError { problems }) }
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
