//! Pack formats: reading a pack from the file a merchant has, and writing one back.
//!
//! | format | what | carries |
//! |---|---|---|
//! | `json`, `yaml`, `toml` | mibot's own: `faq`, `attributes`, `products` in one file | everything |
//! | `csv` | a spreadsheet: one FAQ entry per row, a header naming the columns | FAQ entries |
//! | `qna-tsv` | an Azure QnA Maker / custom question answering export | questions, answers, metadata |
//! | `dialogflow-csv` | a Dialogflow FAQ document: `question,answer` rows, no header | questions, answers |
//!
//! The last two cannot say "disabled" or carry a validity window: exports to them leave disabled
//! entries out, and windows are lost.
//!
//! [`import`] decodes the bytes (UTF-8, with or without a BOM; UTF-16 with a BOM; GBK/GB18030
//! is converted and said so), tells the format when it is not named, parses, and validates. Every
//! problem names where it is as the merchant sees the file: a line and column in mibot's own
//! formats, and in the others the spreadsheet row (a cell with line breaks is one row, whatever
//! the line endings) with the entry's id.

use serde::{Deserialize, Serialize};

use super::pack::{Pack, PackError};

mod dialogflow;
mod qna;
mod spreadsheet;

use spreadsheet::{Column, Field};

/// A pack file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// mibot's JSON.
    Json,
    /// mibot's YAML.
    Yaml,
    /// mibot's TOML (as in `knowledge/<store>/`).
    Toml,
    /// A spreadsheet saved as CSV.
    Csv,
    /// Azure QnA Maker / custom question answering TSV export.
    QnaTsv,
    /// Dialogflow FAQ CSV (question, answer).
    DialogflowCsv,
}

impl Format {
    /// Every format.
    pub const ALL: [Format; 6] =
        [Format::Json, Format::Yaml, Format::Toml, Format::Csv, Format::QnaTsv, Format::DialogflowCsv];

    /// The name used in URLs, the CLI and storage.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Yaml => "yaml",
            Format::Toml => "toml",
            Format::Csv => "csv",
            Format::QnaTsv => "qna-tsv",
            Format::DialogflowCsv => "dialogflow-csv",
        }
    }

    /// Parses a format's name (`yml`, `tsv`, `qna` and `dialogflow` are accepted too).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "json" => Format::Json,
            "yaml" | "yml" => Format::Yaml,
            "toml" => Format::Toml,
            "csv" => Format::Csv,
            "qna-tsv" | "qna" | "tsv" => Format::QnaTsv,
            "dialogflow-csv" | "dialogflow" => Format::DialogflowCsv,
            _ => return None,
        })
    }

    /// The media type of an exported file.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Yaml => "application/yaml; charset=utf-8",
            Format::Toml => "application/toml; charset=utf-8",
            Format::Csv | Format::DialogflowCsv => "text/csv; charset=utf-8",
            Format::QnaTsv => "text/tab-separated-values; charset=utf-8",
        }
    }

    /// Whether the format holds products and attributes, not only FAQ entries.
    pub fn holds_products(self) -> bool {
        matches!(self, Format::Json | Format::Yaml | Format::Toml)
    }

    /// The format a file name's extension says, where it says one (`.csv` could be either CSV
    /// format, so it says none).
    pub fn from_file_name(name: &str) -> Option<Self> {
        let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            "toml" => Some(Format::Toml),
            "tsv" => Some(Format::QnaTsv),
            _ => None,
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A pack read from a file.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The validated pack.
    pub pack: Pack,
    /// The format it was read as.
    pub format: Format,
    /// Things the merchant should know that did not stop the import (an encoding converted).
    pub notes: Vec<String>,
}

/// Reads and validates a pack. `format` names the format; without it, `file_name`'s extension
/// or else the content decides.
pub fn import(bytes: &[u8], format: Option<Format>, file_name: Option<&str>) -> Result<Imported, PackError> {
    let (text, note) = decode(bytes)?;
    let format = match format.or_else(|| file_name.and_then(Format::from_file_name)) {
        Some(format) => format,
        None => detect(&text)?,
    };
    let (pack, places, noun) = match format {
        Format::Json => (serde_json::from_str(&text).map_err(json_error)?, Vec::new(), "field"),
        Format::Yaml => (
            yaml_serde::from_str(&text).map_err(|e| PackError::one(format!("YAML: {e}")))?,
            Vec::new(),
            "field",
        ),
        Format::Toml => (
            toml::from_str(&text)
                .map_err(|e| PackError::one(format!("TOML: {}", e.to_string().trim_end())))?,
            Vec::new(),
            "field",
        ),
        Format::Csv => {
            let (pack, places) = spreadsheet::read(&text)?;
            (pack, places, "column")
        }
        Format::QnaTsv => {
            let (pack, places) = qna::read(&text)?;
            (pack, places, "column")
        }
        Format::DialogflowCsv => {
            let (pack, places) = dialogflow::read(&text)?;
            (pack, places, "column")
        }
    };
    pack.validate_at(&places, noun)?;
    Ok(Imported { pack, format, notes: note.into_iter().collect() })
}

/// Writes `pack` in `format`. FAQ-only formats leave the products out.
pub fn export(pack: &Pack, format: Format) -> Result<String, PackError> {
    let failed = |e: &dyn std::fmt::Display| PackError::one(format!("cannot write {format}: {e}"));
    match format {
        Format::Json => serde_json::to_string_pretty(pack).map(|s| s + "\n").map_err(|e| failed(&e)),
        Format::Yaml => yaml_serde::to_string(pack).map_err(|e| failed(&e)),
        Format::Toml => toml::to_string_pretty(pack).map_err(|e| failed(&e)),
        Format::Csv => spreadsheet::write(pack).map_err(|e| failed(&e)),
        Format::QnaTsv => Ok(qna::write(pack)),
        Format::DialogflowCsv => dialogflow::write(pack).map_err(|e| failed(&e)),
    }
}

/// The file's text. UTF-8 (a BOM is dropped) is taken as is; UTF-16 with a BOM and GBK/GB18030
/// (what Excel saves Chinese CSV as on Chinese Windows) are converted, with a note saying so.
pub fn decode(bytes: &[u8]) -> Result<(String, Option<String>), PackError> {
    if let Some((encoding, _)) = encoding_rs::Encoding::for_bom(bytes)
        && encoding != encoding_rs::UTF_8
    {
        let (text, _, bad) = encoding.decode(bytes);
        if bad {
            return Err(PackError::one(format!("the file is not valid {}", encoding.name())));
        }
        return Ok((text.into_owned(), Some(format!("converted from {} to UTF-8", encoding.name()))));
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) if text.contains('\0') => Err(PackError::one(
            "this is a binary file, not a text pack (an .xlsx workbook? save it as CSV UTF-8)",
        )),
        Ok(text) => Ok((text.to_owned(), None)),
        Err(utf8) => {
            let offset = utf8.valid_up_to();
            let gbk = encoding_rs::GB18030.decode_without_bom_handling_and_without_replacement(bytes);
            match gbk {
                Some(text) if text.chars().any(crate::domain::is_han) && !text.contains('\0') => Ok((
                    text.into_owned(),
                    Some("the file was GBK/GB18030, not UTF-8; it was converted to UTF-8".to_owned()),
                )),
                _ => Err(PackError::one(format!(
                    "the file is not UTF-8 text (invalid byte at offset {offset}); save it as UTF-8"
                ))),
            }
        }
    }
}

/// Tells a pack's format from its content. A spreadsheet or QnA header is checked first, so a
/// cell that happens to look like TOML or YAML does not mislead it.
pub fn detect(text: &str) -> Result<Format, PackError> {
    let body = text.trim_start();
    if body.starts_with('{') || body.starts_with('[') && !body.starts_with("[[") {
        return Ok(Format::Json);
    }
    let first = body.lines().next().unwrap_or_default();
    if first.contains('\t') {
        let columns: Vec<String> = first.split('\t').map(|c| c.trim().to_ascii_lowercase()).collect();
        if columns.iter().any(|c| c == "question") && columns.iter().any(|c| c == "answer") {
            return Ok(Format::QnaTsv);
        }
    }
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(body.as_bytes());
    let first_record = reader.records().next().and_then(Result::ok);
    if let Some(record) = &first_record {
        let columns: Vec<Option<Column>> = record.iter().map(Column::parse).collect();
        let has = |want: fn(&Column) -> bool| columns.iter().flatten().any(want);
        if has(|c| matches!(c.field, Field::Question)) && has(|c| matches!(c.field, Field::Answer(_))) {
            return Ok(Format::Csv);
        }
    }
    let meaningful = body.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
    for line in meaningful.take(5) {
        if line.starts_with("[[") || line.starts_with('[') && line.ends_with(']') {
            return Ok(Format::Toml);
        }
        let yaml_keys = ["faq:", "attributes:", "attribute:", "products:", "product:"];
        if line == "---" || yaml_keys.iter().any(|k| line.starts_with(k)) {
            return Ok(Format::Yaml);
        }
    }
    if first_record.is_some_and(|r| r.len() == 2) {
        return Ok(Format::DialogflowCsv);
    }
    Err(PackError::one(format!(
        "cannot tell this pack's format; name it as one of: {}",
        Format::ALL.map(Format::name).join(", ")
    )))
}

fn json_error(e: serde_json::Error) -> PackError {
    PackError::one(format!("JSON, line {} column {}: {e}", e.line(), e.column()))
}

/// Ids for entries that have none, made from their questions so that a merchant can read them
/// ("shipping-time" rather than a digest): the English question's first words, or the Chinese
/// question itself without punctuation. The same sheet imported again gets the same ids; a
/// question that makes no id (only symbols) gets a digest of it, and a clash gets "-2", "-3".
#[derive(Debug, Default)]
struct Ids {
    taken: std::collections::HashSet<String>,
}

impl Ids {
    /// Notes an id the file gives, so that a made-up one does not clash with it.
    fn keep(&mut self, id: &str) {
        self.taken.insert(id.to_owned());
    }

    /// An id for an entry asked as `question`, unique among the ones handed out and kept.
    fn make(&mut self, prefix: &str, question: &str) -> String {
        let base = readable_id(question).unwrap_or_else(|| {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(question.trim().as_bytes());
            format!("{prefix}-{}", crate::library::hex(&digest[..6]))
        });
        let mut id = base.clone();
        let mut n = 1;
        while self.taken.contains(&id) {
            n += 1;
            id = format!("{base}-{n}");
        }
        self.taken.insert(id.clone());
        id
    }
}

/// Up to six words of Latin letters and digits, lower case and joined by `-`, with Chinese
/// characters kept as they are (at most 16); `None` when the question has neither.
fn readable_id(question: &str) -> Option<String> {
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut han = 0;
    for c in question.chars() {
        let keep = c.is_ascii_alphanumeric() || crate::domain::is_han(c) && han < 16;
        if keep {
            han += usize::from(crate::domain::is_han(c));
            word.extend(c.to_lowercase());
        } else if c == '\'' || c == '’' {
            // "what's" is one word.
        } else if !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words.truncate(6);
    (!words.is_empty()).then(|| words.join("-"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::LocalizedText;
    use crate::knowledge::pack::FaqEntry;

    fn faq_pack() -> Pack {
        let mut a = FaqEntry::new(
            "return-window",
            LocalizedText::ByLang {
                zh: Some("多久可以退货".into()),
                en: Some("How long can I return?".into()),
            },
            LocalizedText::ByLang { zh: Some("签收后7天内".into()), en: Some("Within 7 days".into()) },
        );
        a.similar = vec!["七天无理由吗".into(), "return period".into()];
        a.answers = vec![LocalizedText::Plain("7天无理由退货".into())];
        a.category = Some("after-sales".into());
        a.tags = vec!["returns".into(), "policy".into()];
        a.starts = Some("2026-11-01T00:00:00+08:00".into());
        a.ends = Some("2026-11-12T00:00:00+08:00".into());
        a.notify = true;
        let mut b = FaqEntry::new(
            "invoice",
            LocalizedText::Plain("能开发票吗".into()),
            LocalizedText::Plain("可以，下单时填写抬头，\n确认收货后开具。".into()),
        );
        b.enabled = false;
        Pack { faq: vec![a, b], ..Pack::default() }
    }

    #[test]
    fn full_formats_round_trip_everything() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut pack = Pack::load_dir(&root.join("knowledge/demo")).unwrap();
        pack.faq.extend(faq_pack().faq);
        for format in [Format::Json, Format::Yaml, Format::Toml] {
            let text = export(&pack, format).unwrap();
            let back =
                import(text.as_bytes(), None, None).unwrap_or_else(|e| panic!("{format}: {e}\n{text}"));
            assert_eq!(back.format, format);
            assert_eq!(back.pack, pack, "{format}");
        }
    }

    #[test]
    fn the_spreadsheet_round_trips_every_faq_field() {
        let pack = faq_pack();
        let text = export(&pack, Format::Csv).unwrap();
        let back = import(text.as_bytes(), None, Some("faq.csv")).unwrap();
        assert_eq!(back.format, Format::Csv);
        assert_eq!(back.pack, pack, "{text}");
    }

    #[test]
    fn qna_and_dialogflow_keep_questions_and_answers() {
        let mut pack = faq_pack();
        let disabled = export(&pack, Format::DialogflowCsv).unwrap();
        assert!(!disabled.contains("能开发票吗"), "a disabled entry is left out: {disabled}");
        for faq in &mut pack.faq {
            faq.enabled = true;
            faq.question = LocalizedText::Plain(faq.question.get(crate::domain::Lang::Zh).to_owned());
            faq.answer = Some(LocalizedText::Plain(
                faq.answer_at(crate::domain::Millis(0)).get(crate::domain::Lang::Zh).to_owned(),
            ));
        }
        for format in [Format::QnaTsv, Format::DialogflowCsv] {
            let text = export(&pack, format).unwrap();
            let back =
                import(text.as_bytes(), None, None).unwrap_or_else(|e| panic!("{format}: {e}\n{text}"));
            assert_eq!(back.format, format);
            assert_eq!(back.pack.faq.len(), 2);
            for (got, want) in back.pack.faq.iter().zip(&pack.faq) {
                assert_eq!(got.question, want.question, "{format}");
                assert_eq!(got.similar, want.similar, "{format}");
                assert_eq!(got.answer, want.answer, "{format}");
            }
        }
    }

    #[test]
    fn spreadsheet_problems_name_their_row_and_column() {
        let csv = "question,answer,colour\n能开发票吗,可以\n";
        let err = import(csv.as_bytes(), Some(Format::Csv), None).unwrap_err();
        assert!(err.problems[0].contains("unknown column \"colour\""), "{err}");

        let csv = "问题,相似问题,答案\n能开发票吗,开票|发票怎么开,可以\n退货运费谁出,,\n,,只有答案\n";
        let err = import(csv.as_bytes(), None, None).unwrap_err();
        let all = err.problems.join("\n");
        assert!(all.contains("row 3, id \"退货运费谁出\": column 'answer' is empty"), "{all}");
        assert!(all.contains("row 4, id \"faq-"), "{all}");
        assert!(all.contains("column 'question' is empty"), "{all}");

        let csv = "id,question,answer\na,Q1,A1\na,Q2,A2\nb,Q3,A3,extra\n";
        let all = import(csv.as_bytes(), None, None).unwrap_err().problems.join("\n");
        assert!(all.contains("row 4: has 4 cells, but the header has 3"), "{all}");
    }

    #[test]
    fn duplicate_ids_are_reported_by_row() {
        let csv = "id,question,answer\na,Q1,A1\na,Q2,A2\n";
        let all = import(csv.as_bytes(), None, None).unwrap_err().problems.join("\n");
        assert!(all.contains("row 3, id \"a\": duplicate id \"a\""), "{all}");
    }

    #[test]
    fn gbk_is_converted_and_said_so() {
        let (bytes, _, _) = encoding_rs::GBK.encode("问题,答案\n能开发票吗,可以\n");
        let imported = import(&bytes, None, None).unwrap();
        assert_eq!(imported.format, Format::Csv);
        assert_eq!(imported.pack.faq[0].question, LocalizedText::Plain("能开发票吗".into()));
        assert!(imported.notes[0].contains("GBK"), "{:?}", imported.notes);
        let err = import(b"question,answer\n\xff\xfe\xfd,x\n", None, None);
        assert!(err.is_err());
    }

    #[test]
    fn malformed_files_say_where() {
        let err = import(b"{\"faq\": [ {\"id\": 1 ]}", None, None).unwrap_err();
        assert!(err.problems[0].starts_with("JSON, line 1 column"), "{err}");
        let err =
            import(b"faq:\n  - id: a\n    question: [unclosed\n", Some(Format::Yaml), None).unwrap_err();
        assert!(err.problems[0].starts_with("YAML:"), "{err}");
        let err = import(b"just some words", None, None).unwrap_err();
        assert!(err.problems[0].contains("cannot tell"), "{err}");
    }
}
