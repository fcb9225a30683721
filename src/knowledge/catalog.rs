//! The product catalog: recognising which product a question is about and what is asked of it,
//! and answering from the product's structured fields (attributes, price, stock, promotions).

use std::collections::HashSet;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

use super::pack::{AttributeDef, Pack, Product, StockState};
use crate::domain::{Lang, Millis};
use crate::text::fold_width;

/// What a question asks about a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// A pack-defined attribute (index into the attribute vocabulary).
    Attribute(usize),
    /// Its price.
    Price,
    /// Its current promotions.
    Promotion,
    /// Whether it is in stock.
    Stock,
    /// Whether it comes in a colour (index into [`COLOURS`]).
    Colour(usize),
    /// How it fits and which size to take ("偏大吗", "do they run small"): answered from the
    /// `fit` and `size` attributes together.
    Fit,
}

/// Colours shoppers ask about by name: the Chinese character (as in 紫色) and English words.
const COLOURS: &[(char, &[&str])] = &[
    ('黑', &["black"]),
    ('白', &["white"]),
    ('红', &["red"]),
    ('蓝', &["blue"]),
    ('绿', &["green"]),
    ('紫', &["purple", "violet"]),
    ('粉', &["pink"]),
    ('黄', &["yellow"]),
    ('橙', &["orange"]),
    ('灰', &["grey", "gray"]),
    ('金', &["gold"]),
    ('银', &["silver"]),
];

/// Words for the fields every product has, in both languages.
const BUILT_IN: &[(Asked, &[&str])] = &[
    (
        Asked::Price,
        &["多少钱", "价格", "价钱", "售价", "几块钱", "多钱", "price", "how much", "cost", "costs"],
    ),
    (
        Asked::Promotion,
        &[
            "优惠",
            "活动",
            "促销",
            "折扣",
            "打折",
            "满减",
            "优惠券",
            "promotion",
            "discount",
            "deal",
            "deals",
            "coupon",
            "offer",
            "offers",
            "on sale",
        ],
    ),
    (
        Asked::Stock,
        &[
            "有货",
            "有没有货",
            "库存",
            "现货",
            "缺货",
            "到货",
            "in stock",
            "available",
            "availability",
            "sold out",
            "out of stock",
        ],
    ),
];

/// Words that ask how a product fits or which size to take.
const FIT_WORDS: &[&str] = &[
    "偏大",
    "偏小",
    "偏瘦",
    "偏肥",
    "正码",
    "尺码准",
    "尺码标准",
    "码数准",
    "码数标准",
    "大一码",
    "小一码",
    "拍大",
    "拍小",
    "平时穿",
    "穿多大",
    "穿什么码",
    "选多大",
    "选什么码",
    "买多大",
    "买什么码",
    "run small",
    "run large",
    "run big",
    "true to size",
    "size up",
    "size down",
    "fit small",
    "fits small",
    "fit large",
    "fits large",
    "what size",
    "which size",
];

/// A product mentioned in a question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mention {
    /// Index of the product in the catalog.
    pub product: usize,
    /// Named only by a lone product's category, not by its name, an alias or its SKU.
    pub by_category: bool,
}

/// The catalog of one store, with its matchers.
#[derive(Debug, Clone)]
pub struct Catalog {
    products: Vec<Product>,
    attributes: Vec<AttributeDef>,
    names: Matcher<usize>,
    /// The phrases in `names` that are a lone product's category ("羽绒服", "running shoes").
    lone_categories: HashSet<String>,
    asks: Matcher<Asked>,
    /// The attribute that lists a product's colours, if the pack has one.
    colour: Option<usize>,
    /// The attributes that answer [`Asked::Fit`]: `fit`, then `size`, those the pack has.
    sizing: Vec<usize>,
}

/// An Aho-Corasick automaton over normalised phrases, each with a value.
#[derive(Debug, Clone)]
struct Matcher<T> {
    automaton: AhoCorasick,
    values: Vec<T>,
}

impl<T: Copy> Matcher<T> {
    fn new(phrases: Vec<(String, T)>) -> Self {
        let (patterns, values): (Vec<String>, Vec<T>) = phrases.into_iter().unzip();
        let automaton = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            // Plain literal patterns of bounded size always build.
            .expect("literal patterns build an automaton");
        Self { automaton, values }
    }

    /// Values of phrases found in `text` at word boundaries, in order of appearance.
    fn find(&self, text: &str) -> Vec<T> {
        self.spans(text).into_iter().map(|(_, _, v)| v).collect()
    }

    /// The phrases found, as byte spans of `text` with their values.
    fn spans(&self, text: &str) -> Vec<(usize, usize, T)> {
        self.automaton
            .find_iter(text)
            .filter(|m| at_word_boundary(text, m.start(), m.end()))
            .map(|m| (m.start(), m.end(), self.values[m.pattern().as_usize()]))
            .collect()
    }
}

/// True unless a Latin letter or digit continues a Latin end of the match (an English plural `s`
/// is allowed after it), so "x1" does not match inside "x10" and "ram" not inside "program". A
/// Chinese end needs no boundary: "运存" is found in "x1运存多大", where Chinese runs on from a
/// model name without a space.
fn at_word_boundary(text: &str, start: usize, end: usize) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric();
    let found = &text[start..end];
    let before = text[..start].chars().next_back().filter(|_| found.chars().next().is_some_and(word));
    let mut after = text[end..].chars();
    let next = after.next();
    let next = if next == Some('s') { after.next() } else { next };
    let next = next.filter(|_| found.chars().next_back().is_some_and(word));
    !before.is_some_and(word) && !next.is_some_and(word)
}

/// Whether the words just before a category make it the store's whole range: "your", "ur",
/// "you guys'", "你们(家)(的)", "你家", "贵店", "店里".
fn of_the_store(before: &str) -> bool {
    let before = before.trim_end();
    let before = before.strip_suffix('的').unwrap_or(before).trim_end();
    let latin = ["your", "ur", "you guys'", "you guys", "yall", "y'all"];
    let han = ["你们", "你们家", "你家", "贵店", "店里", "你们店", "你们店里"];
    han.iter().any(|p| before.ends_with(p))
        || latin.iter().any(|p| {
            before
                .strip_suffix(p)
                .is_some_and(|rest| !rest.chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric()))
        })
}

/// Lowercased, width-folded, single-spaced: how questions and phrases are compared.
pub fn normalize(text: &str) -> String {
    fold_width(text).to_lowercase().split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Catalog {
    /// Builds the matchers for a validated pack.
    pub fn new(pack: &Pack) -> Self {
        // A category only one product is in names it: "羽绒服" is the store's one down jacket.
        let mut categories: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for category in pack.products.iter().filter_map(|p| p.category.as_ref()) {
            for phrase in category.variants() {
                *categories.entry(normalize(phrase)).or_default() += 1;
            }
        }
        let mut names = Vec::new();
        let mut lone_categories = HashSet::new();
        for (i, product) in pack.products.iter().enumerate() {
            let category = product.category.iter().flat_map(|c| c.variants());
            let category: Vec<&str> =
                category.filter(|c| categories.get(&normalize(c)) == Some(&1)).collect();
            for phrase in category.iter().map(|c| normalize(c)) {
                lone_categories.insert(phrase.replace(' ', ""));
                lone_categories.insert(phrase);
            }
            let phrases = product
                .aliases
                .iter()
                .map(String::as_str)
                .chain(product.name.variants())
                .chain(std::iter::once(product.sku.as_str()))
                .chain(category.iter().copied());
            for phrase in phrases {
                let phrase = normalize(phrase);
                if phrase.is_empty() {
                    continue;
                }
                if phrase.contains(' ') {
                    names.push((phrase.replace(' ', ""), i));
                }
                names.push((phrase, i));
            }
        }
        let mut asks = Vec::new();
        for (i, attribute) in pack.attributes.iter().enumerate() {
            for word in attribute.synonyms.iter().map(String::as_str).chain(attribute.label.variants()) {
                asks.push((normalize(word), Asked::Attribute(i)));
            }
        }
        for (asked, words) in BUILT_IN {
            asks.extend(words.iter().map(|w| (normalize(w), *asked)));
        }
        let key = |key: &str| pack.attributes.iter().position(|a| a.key == key);
        let sizing: Vec<usize> = [key("fit"), key("size")].into_iter().flatten().collect();
        if !sizing.is_empty() {
            asks.extend(FIT_WORDS.iter().map(|w| ((*w).to_owned(), Asked::Fit)));
        }
        let colour = pack.attributes.iter().position(|a| matches!(a.key.as_str(), "colour" | "color"));
        if colour.is_some() {
            for (i, (han, words)) in COLOURS.iter().enumerate() {
                asks.push((format!("{han}色"), Asked::Colour(i)));
                asks.extend(words.iter().map(|w| ((*w).to_owned(), Asked::Colour(i))));
            }
        }
        names.retain(|(p, _)| !p.is_empty());
        asks.retain(|(p, _)| !p.is_empty());
        Self {
            products: pack.products.clone(),
            attributes: pack.attributes.clone(),
            names: Matcher::new(names),
            lone_categories,
            asks: Matcher::new(asks),
            colour,
            sizing,
        }
    }

    /// The products.
    pub fn products(&self) -> &[Product] {
        &self.products
    }

    /// The product with `sku`.
    pub fn by_sku(&self, sku: &str) -> Option<usize> {
        self.products.iter().position(|p| p.sku == sku)
    }

    /// The first product named in `text` (longest name wins). A lone product's category names
    /// it ("羽绒服偏大吗"), but not when the words before it make it the store's range ("do your
    /// shirts run big", "你们家的衬衫偏大吗"): that is a question for the store's own entries.
    pub fn mentioned(&self, text: &str) -> Option<usize> {
        self.mention(text).map(|m| m.product)
    }

    /// The product `text` names, and whether only by a lone product's category ("羽绒服" rather
    /// than "云暖轻羽绒服"): a surer sign of which product than none, a weaker one than its name.
    /// One pass over the names for both.
    pub fn mention(&self, text: &str) -> Option<Mention> {
        let text = normalize(text);
        let spans = self.names.spans(&text);
        let is_category =
            |&(start, end, _): &(usize, usize, usize)| self.lone_categories.contains(&text[start..end]);
        let by_category = spans.iter().all(is_category);
        spans
            .iter()
            .find(|span| !(is_category(span) && of_the_store(&text[..span.0])))
            .map(|&(_, _, product)| Mention { product, by_category })
    }

    /// How much `text` says besides naming products: its Han characters and Latin words outside
    /// the product names. "X1" and "X1 呢" say nothing else; "X1 今天下单能发货吗" does.
    pub fn beyond_names(&self, text: &str) -> usize {
        let text = normalize(text);
        let mut rest = String::with_capacity(text.len());
        let mut at = 0;
        for (start, end, _) in self.names.spans(&text) {
            rest.push_str(&text[at..start]);
            rest.push(' ');
            at = end;
        }
        rest.push_str(&text[at..]);
        let han = rest.chars().filter(|c| matches!(*c as u32, 0x3400..=0x9fff | 0xf900..=0xfaff)).count();
        let words = rest.split(|c: char| !c.is_ascii_alphabetic()).filter(|w| !w.is_empty()).count();
        han + words
    }

    /// What `text` asks about a product, each thing once, in order.
    pub fn asked(&self, text: &str) -> Vec<Asked> {
        let mut asked = self.asks.find(&normalize(text));
        // "有紫色的吗" asks whether, not which colours: the named colour answers it.
        if asked.iter().any(|a| matches!(a, Asked::Colour(_))) {
            asked.retain(|a| self.colour.is_none_or(|c| *a != Asked::Attribute(c)));
        }
        // "平时穿L选多大码" asks how it fits: the fit and the sizes answer it together.
        if asked.contains(&Asked::Fit) {
            asked.retain(|a| !matches!(a, Asked::Attribute(i) if self.sizing.contains(i)));
        }
        let mut seen = Vec::with_capacity(asked.len());
        asked.retain(|a| {
            let new = !seen.contains(a);
            seen.push(*a);
            new
        });
        asked
    }

    /// The short name shoppers use for a product, in `lang`: its first alias (in English, its
    /// first alias with no Chinese in it), else its name.
    pub fn short_name(&self, product: usize, lang: Lang) -> String {
        let p = &self.products[product];
        let han = |a: &String| a.chars().any(|c| matches!(c as u32, 0x3400..=0x9fff | 0xf900..=0xfaff));
        let alias = match lang {
            Lang::Zh => p.aliases.first(),
            Lang::En => p.aliases.iter().find(|a| !han(a)),
        };
        alias.cloned().unwrap_or_else(|| p.name.get(lang).to_owned())
    }

    /// How the bot names an asked field.
    pub fn label(&self, asked: Asked, lang: Lang) -> String {
        match (asked, lang) {
            (Asked::Attribute(i), _) => self.attributes[i].label.get(lang).to_owned(),
            (Asked::Price, Lang::Zh) => "价格".into(),
            (Asked::Price, Lang::En) => "price".into(),
            (Asked::Promotion, Lang::Zh) => "优惠".into(),
            (Asked::Promotion, Lang::En) => "offers".into(),
            (Asked::Colour(i), Lang::Zh) => format!("{}色", COLOURS[i].0),
            (Asked::Colour(i), Lang::En) => COLOURS[i].1[0].into(),
            (Asked::Stock, Lang::Zh) => "库存".into(),
            (Asked::Stock, Lang::En) => "stock".into(),
            (Asked::Fit, Lang::Zh) => "尺码".into(),
            (Asked::Fit, Lang::En) => "sizing".into(),
        }
    }

    /// Answers `asked` about `product` from its fields, one line each; a summary when nothing
    /// specific is asked. Promotions are filtered by their window at `now`.
    pub fn answer(&self, product: usize, asked: &[Asked], lang: Lang, now: Millis) -> String {
        let p = &self.products[product];
        if asked.is_empty() {
            return self.summary(p, lang, now);
        }
        let lines: Vec<String> = asked.iter().map(|a| self.answer_one(p, *a, lang, now)).collect();
        lines.join(if lang == Lang::Zh { "" } else { " " })
    }

    /// Related products' short names, as suggestions.
    pub fn related(&self, product: usize, lang: Lang) -> Vec<String> {
        self.products[product]
            .related
            .iter()
            .filter_map(|sku| self.by_sku(sku))
            .map(|i| self.short_name(i, lang))
            .collect()
    }

    fn answer_one(&self, p: &Product, asked: Asked, lang: Lang, now: Millis) -> String {
        let name = p.name.get(lang);
        match (asked, lang) {
            (Asked::Attribute(i), _) => {
                let def = &self.attributes[i];
                let label = def.label.get(lang);
                let field = p.attributes.get(&def.key).map(|v| (label, v.get(lang)));
                fields_line(name, field.as_slice(), label, lang)
            }
            (Asked::Price, Lang::Zh) => {
                format!("{name}售价 {}。{}", price(p), self.promotions_line(p, lang, now, false))
            }
            (Asked::Price, Lang::En) => {
                format!("The {name} costs {}. {}", price(p), self.promotions_line(p, lang, now, false))
                    .trim_end()
                    .to_owned()
            }
            (Asked::Promotion, _) => self.promotions_line(p, lang, now, true),
            (Asked::Stock, _) => stock_line(name, p.stock, lang),
            (Asked::Colour(i), _) => self.colour_line(p, i, lang),
            (Asked::Fit, _) => self.fit_line(p, lang),
        }
    }

    /// How the product fits and the sizes it comes in, from whichever of the two it has.
    fn fit_line(&self, p: &Product, lang: Lang) -> String {
        let name = p.name.get(lang);
        let known: Vec<(&str, &str)> = self
            .sizing
            .iter()
            .map(|&i| &self.attributes[i])
            .filter_map(|def| Some((def.label.get(lang), p.attributes.get(&def.key)?.get(lang))))
            .collect();
        fields_line(name, &known, self.label(Asked::Fit, lang).as_str(), lang)
    }

    /// Whether the product comes in colour `i` of [`COLOURS`], with the colour's own name.
    fn colour_line(&self, p: &Product, i: usize, lang: Lang) -> String {
        let name = p.name.get(lang);
        let (han, words) = COLOURS[i];
        let value = self.colour.and_then(|c| p.attributes.get(&self.attributes[c].key));
        let Some(value) = value else {
            let what = if lang == Lang::Zh { "颜色" } else { "colour" };
            return fields_line(name, &[], what, lang);
        };
        let listed = value.get(lang);
        let items: Vec<&str> = listed
            .split(['、', ',', '，', '/', ';', '；'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let found = items.iter().find(|item| match lang {
            Lang::Zh => item.contains(han),
            Lang::En => {
                let item = item.to_lowercase();
                words.iter().any(|w| item.split(|c: char| !c.is_ascii_alphabetic()).any(|x| x == *w))
            }
        });
        match (found, lang) {
            // "黑、白" lists bare characters: say 白色.
            (Some(item), Lang::Zh) if item.chars().count() == 1 => format!("有的，{name}有{item}色。"),
            (Some(item), Lang::Zh) => format!("有的，{name}有{item}。"),
            (Some(item), Lang::En) => format!("Yes, the {name} comes in {item}."),
            (None, Lang::Zh) => format!("{name}没有{han}色，现有颜色：{listed}。"),
            (None, Lang::En) => format!("No, the {name} doesn't come in {}; it comes in {listed}.", words[0]),
        }
    }

    fn promotions_line(&self, p: &Product, lang: Lang, now: Millis, say_none: bool) -> String {
        let active: Vec<&str> =
            p.promotions.iter().filter(|pr| pr.is_active(now)).map(|pr| pr.text.get(lang)).collect();
        let name = p.name.get(lang);
        // Asked about offers after one ended: say that it ended, and when.
        let ended = p
            .promotions
            .iter()
            .filter_map(|pr| {
                let ends = pr.ends.as_deref()?;
                let at = super::pack::parse_instant(ends)?;
                (at <= now).then_some((at, pr.text.get(lang), ends.get(..10).unwrap_or(ends)))
            })
            .max_by_key(|(at, _, _)| *at);
        match (active.is_empty(), lang) {
            (true, _) if !say_none => String::new(),
            (true, Lang::Zh) => match ended {
                Some((_, text, day)) => {
                    format!("「{text}」活动已于 {day} 结束，{name}目前没有进行中的优惠活动。")
                }
                None => format!("{name}目前没有进行中的优惠活动。"),
            },
            (true, Lang::En) => match ended {
                Some((_, text, day)) => {
                    format!("The offer \"{text}\" ended on {day}; there are no current offers on the {name}.")
                }
                None => format!("There are no current offers on the {name}."),
            },
            (false, Lang::Zh) => format!("当前优惠：{}。", active.join("；")),
            (false, Lang::En) => format!("Current offers: {}.", active.join("; ")),
        }
    }

    fn summary(&self, p: &Product, lang: Lang, now: Millis) -> String {
        let name = p.name.get(lang);
        let description = p.description.as_ref().map(|d| d.get(lang)).unwrap_or_default();
        let attributes: Vec<String> = p
            .attributes
            .iter()
            .take(4)
            .filter_map(|(key, value)| {
                let def = self.attributes.iter().find(|a| &a.key == key)?;
                Some(format!(
                    "{}{}{}",
                    def.label.get(lang),
                    if lang == Lang::Zh { "：" } else { ": " },
                    value.get(lang)
                ))
            })
            .collect();
        let promotions = self.promotions_line(p, lang, now, false);
        match lang {
            Lang::Zh => format!(
                "{name}，售价 {}，{}。{description}{}{}",
                price(p),
                stock_word(p.stock, lang),
                if attributes.is_empty() { String::new() } else { format!("{}。", attributes.join("；")) },
                promotions
            ),
            Lang::En => format!(
                "{name}: {}, {}. {description} {}{}",
                price(p),
                stock_word(p.stock, lang),
                if attributes.is_empty() { String::new() } else { format!("{}. ", attributes.join("; ")) },
                promotions
            )
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
        }
    }
}

/// The product's fields as one line ("X的版型：…；尺码：…。", "The X's fit: …; size: …."), or,
/// with none, that it has no `what` details and a person can be asked.
fn fields_line(name: &str, fields: &[(&str, &str)], what: &str, lang: Lang) -> String {
    let parts = |sep: &str, colon: &str| {
        fields.iter().map(|(label, value)| format!("{label}{colon}{value}")).collect::<Vec<_>>().join(sep)
    };
    match (fields.is_empty(), lang) {
        (true, Lang::Zh) => format!("{name}暂无「{what}」信息，可以输入“转人工”咨询客服。"),
        (true, Lang::En) => {
            format!("I don't have {what} details for the {name}; type \"agent\" to ask a person.")
        }
        (false, Lang::Zh) => format!("{name}的{}。", parts("；", "：")),
        (false, Lang::En) => format!("The {} {}.", possessive(name), parts("; ", ": ")),
    }
}

/// "the phone's", "the shoes'".
fn possessive(name: &str) -> String {
    if name.ends_with('s') { format!("{name}'") } else { format!("{name}'s") }
}

fn price(p: &Product) -> String {
    let amount = if p.price.fract() == 0.0 { format!("{:.0}", p.price) } else { format!("{:.2}", p.price) };
    match p.currency.as_str() {
        "CNY" => format!("¥{amount}"),
        "USD" => format!("${amount}"),
        "EUR" => format!("€{amount}"),
        other => format!("{amount} {other}"),
    }
}

fn stock_word(stock: StockState, lang: Lang) -> &'static str {
    match (stock, lang) {
        (StockState::InStock, Lang::Zh) => "现货",
        (StockState::InStock, Lang::En) => "in stock",
        (StockState::LowStock, Lang::Zh) => "库存紧张",
        (StockState::LowStock, Lang::En) => "only a few left",
        (StockState::OutOfStock, Lang::Zh) => "暂时缺货",
        (StockState::OutOfStock, Lang::En) => "currently out of stock",
        (StockState::Preorder, Lang::Zh) => "预售中",
        (StockState::Preorder, Lang::En) => "available for pre-order",
    }
}

fn stock_line(name: &str, stock: StockState, lang: Lang) -> String {
    match lang {
        Lang::Zh => format!("{name}{}。", stock_word(stock, lang)),
        Lang::En => format!("The {name} is {}.", stock_word(stock, lang)),
    }
}

/// Text of a product for indexing: names, aliases, category and description.
/// What the encoder embeds of a product: its names and category, the words a shopper uses to
/// mean it.
pub fn embedding_text(p: &Product) -> String {
    let mut parts: Vec<&str> = p.name.variants();
    parts.extend(p.aliases.iter().map(String::as_str));
    if let Some(c) = &p.category {
        parts.extend(c.variants());
    }
    parts.join(" / ")
}

/// What the search index holds of a product.
pub fn index_text(p: &Product) -> String {
    let mut parts: Vec<&str> = p.name.variants();
    parts.extend(p.aliases.iter().map(String::as_str));
    if let Some(c) = &p.category {
        parts.extend(c.variants());
    }
    if let Some(d) = &p.description {
        parts.extend(d.variants());
    }
    parts.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        let pack: Pack = toml::from_str(
            r#"
            [[attribute]]
            key = "memory"
            label = { zh = "内存", en = "memory" }
            synonyms = ["内存", "运存", "ram"]
            [[attribute]]
            key = "colour"
            label = { zh = "颜色", en = "colours" }
            synonyms = ["颜色", "colour", "color"]
            [[product]]
            sku = "X1"
            name = { zh = "星河 X1 手机", en = "Nova X1 Phone" }
            aliases = ["X1"]
            price = 2999.0
            attributes = { memory = "8GB", colour = { zh = "黑、白", en = "black, white" } }
            [[product.promotions]]
            text = { zh = "立减300元", en = "¥300 off" }
            ends = "2026-11-12T00:00:00+08:00"
            [[product]]
            sku = "X1P"
            name = "Nova X1 Pro"
            aliases = ["X1 Pro"]
            price = 3999.5
            "#,
        )
        .unwrap();
        pack.validate().unwrap();
        Catalog::new(&pack)
    }

    #[test]
    fn longest_name_wins_and_boundaries_hold() {
        let c = catalog();
        assert_eq!(c.mentioned("x1 pro 多少钱"), Some(1));
        assert_eq!(c.mentioned("X1Pro多少钱"), Some(1));
        assert_eq!(c.mentioned("X1多少钱"), Some(0));
        assert_eq!(c.mentioned("what about the x10"), None);
        // Chinese straight after a model name, with no space.
        assert_eq!(c.mentioned("X1运存多大"), Some(0));
        assert_eq!(c.asked("X1运存多大"), vec![Asked::Attribute(0)]);
        assert_eq!(c.answer(0, &c.asked("X1运存多大"), Lang::Zh, Millis(0)), "星河 X1 手机的内存：8GB。");
        assert_eq!(c.asked("is this a good program"), vec![], "ram is not inside program");
    }

    #[test]
    fn a_colour_asked_by_name_is_answered_yes_or_no_with_its_name() {
        let c = catalog();
        let now = Millis(0);
        assert_eq!(c.asked("X1有紫色吗"), vec![Asked::Colour(5)]);
        assert_eq!(
            c.answer(0, &c.asked("有紫色吗"), Lang::Zh, now),
            "星河 X1 手机没有紫色，现有颜色：黑、白。"
        );
        assert_eq!(c.answer(0, &c.asked("有白色的颜色吗"), Lang::Zh, now), "有的，星河 X1 手机有白色。");
        let asked = c.asked("does the X1 come in purple");
        assert_eq!(
            c.answer(0, &asked, Lang::En, now),
            "No, the Nova X1 Phone doesn't come in purple; it comes in black, white."
        );
        assert_eq!(
            c.answer(0, &c.asked("is there a white one"), Lang::En, now),
            "Yes, the Nova X1 Phone comes in white."
        );
        assert_eq!(c.asked("I ordered it yesterday"), vec![], "red is not inside ordered");
        assert_eq!(c.asked("我明白了"), vec![]);
    }

    #[test]
    fn short_names_follow_the_language_of_the_message() {
        let pack: Pack = toml::from_str(
            r#"
            [[product]]
            sku = "CASE"
            name = { zh = "X1 Pro 保护壳", en = "X1 Pro Case" }
            aliases = ["X1 Pro 保护壳", "pro case"]
            price = 99.0
            [[product]]
            sku = "KB"
            name = { zh = "Pad 11 键盘", en = "Pad 11 Keyboard" }
            aliases = ["Pad 11 键盘"]
            price = 399.0
            "#,
        )
        .unwrap();
        let c = Catalog::new(&pack);
        assert_eq!(c.short_name(0, Lang::Zh), "X1 Pro 保护壳");
        assert_eq!(c.short_name(0, Lang::En), "pro case");
        assert_eq!(c.short_name(1, Lang::En), "Pad 11 Keyboard");
    }

    #[test]
    fn attributes_and_prices_come_from_fields() {
        let c = catalog();
        let now = Millis(0);
        assert_eq!(c.asked("what colours does the X1 come in"), vec![Asked::Attribute(1)]);
        assert_eq!(c.answer(0, &c.asked("这款手机内存多大"), Lang::Zh, now), "星河 X1 手机的内存：8GB。");
        assert_eq!(c.answer(1, &[Asked::Price], Lang::En, now), "The Nova X1 Pro costs ¥3999.50.");
    }

    #[test]
    fn expired_promotions_are_not_offered() {
        let c = catalog();
        let before = super::super::pack::parse_instant("2026-11-11T12:00:00+08:00").unwrap();
        let after = super::super::pack::parse_instant("2026-11-12T00:00:01+08:00").unwrap();
        assert!(c.answer(0, &[Asked::Promotion], Lang::Zh, before).contains("立减300元"));
        assert_eq!(
            c.answer(0, &[Asked::Promotion], Lang::Zh, after),
            "「立减300元」活动已于 2026-11-12 结束，星河 X1 手机目前没有进行中的优惠活动。"
        );
        assert_eq!(
            c.answer(0, &[Asked::Promotion], Lang::En, after),
            "The offer \"¥300 off\" ended on 2026-11-12; there are no current offers on the Nova X1 Phone."
        );
        assert_eq!(
            c.answer(1, &[Asked::Promotion], Lang::Zh, after),
            "Nova X1 Pro目前没有进行中的优惠活动。"
        );
    }

    #[test]
    fn fit_questions_are_answered_from_fit_and_size_and_a_lone_category_names_its_product() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let c = Catalog::new(&Pack::load_dir(&root.join("knowledge/demo")).unwrap());
        let now = Millis(0);
        let jacket = c.mentioned("羽绒服偏大吗 平时穿L").expect("the one down jacket");
        assert_eq!(c.products()[jacket].sku, "NV-DJ01");
        assert_eq!(c.asked("羽绒服偏大吗 平时穿L"), vec![Asked::Fit]);
        assert_eq!(
            c.answer(jacket, &[Asked::Fit], Lang::Zh, now),
            "星河 云暖轻羽绒服的版型：常规版型，需内搭厚毛衣建议选大一码；尺码：S / M / L / XL / XXL。"
        );
        let shoes = c.mentioned("do the running shoes run small").expect("the one pair of running shoes");
        assert_eq!(c.asked("do the running shoes run small"), vec![Asked::Fit]);
        assert_eq!(
            c.answer(shoes, &[Asked::Fit], Lang::En, now),
            "The Nova Gale Cushioned Running Shoes' size: EU 36–45, true to size."
        );
        // "鞋" is in three products' categories: it names none of them.
        assert_eq!(c.mentioned("鞋子偏小吗"), None);
        // The store's range, not its one product: the store's own entries answer these.
        assert_eq!(c.mentioned("should i order my usual size or do your shirts run big"), None);
        assert_eq!(c.mentioned("are ur sneakers eu sizes"), None);
        assert_eq!(c.mentioned("你们家的羽绒服偏大吗"), None);
        assert!(c.mentioned("four shirts, do they run big").is_some(), "\"four\" is not \"ur\"");
        assert!(c.mention("羽绒服偏大吗").is_some_and(|m| m.by_category));
        assert!(c.mention("云暖轻羽绒服偏大吗").is_some_and(|m| !m.by_category));
    }
}
