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
//! problem names its row or line and column, as the merchant's file numbers them.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::pack::{FaqEntry, Pack, PackError};
use crate::domain::LocalizedText;

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
            let (pack, places) = read_spreadsheet(&text)?;
            (pack, places, "column")
        }
        Format::QnaTsv => {
            let (pack, places) = read_qna(&text)?;
            (pack, places, "column")
        }
        Format::DialogflowCsv => {
            let (pack, places) = read_dialogflow(&text)?;
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
        Format::Csv => write_spreadsheet(pack).map_err(|e| failed(&e)),
        Format::QnaTsv => Ok(write_qna(pack)),
        Format::DialogflowCsv => write_dialogflow(pack).map_err(|e| failed(&e)),
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

/// A stable id for an entry that has none: derived from its question, so re-importing the same
/// sheet keeps the ids.
fn derived_id(prefix: &str, question: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(question.trim().as_bytes());
    format!("{prefix}-{}", crate::library::hex(&digest[..6]))
}

// ---- the spreadsheet CSV ----

/// A spreadsheet column: a field, optionally the English side of a bilingual field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Column {
    field: Field,
    english: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Id,
    Question,
    Similar,
    /// The n-th answer, from 0.
    Answer(usize),
    Category,
    Tags,
    Starts,
    Ends,
    Notify,
    Enabled,
}

const KNOWN_COLUMNS: &str = "id, question, similar questions, answer, answer 2 (3, …), category, tags, starts, \
     ends, notify, enabled; 'question' and 'answer' columns may have an English twin ('question en')";

impl Column {
    /// Reads a header cell: English or Chinese names, any case, `_`/`-` as spaces.
    fn parse(header: &str) -> Option<Column> {
        let mut name = header.trim().to_lowercase().replace(['_', '-'], " ");
        let mut english = false;
        for suffix in [" (en)", " en", "(en)", "（en）", "(英文)", "英文"] {
            if let Some(stripped) = name.strip_suffix(suffix) {
                name = stripped.trim().to_owned();
                english = true;
                break;
            }
        }
        let answer_number = |name: &str| -> Option<usize> {
            let rest = name.strip_prefix("answer").or_else(|| name.strip_prefix("答案"))?.trim();
            if rest.is_empty() {
                return Some(0);
            }
            rest.parse::<usize>().ok().filter(|n| *n >= 1).map(|n| n - 1)
        };
        let field = match name.as_str() {
            "id" | "编号" => Field::Id,
            "question" | "standard question" | "问题" | "标准问题" => Field::Question,
            "similar questions" | "similar" | "similar question" | "相似问题" | "相似问法" => {
                Field::Similar
            }
            "category" | "分类" | "类目" => Field::Category,
            "tags" | "tag" | "标签" => Field::Tags,
            "starts" | "start" | "生效时间" | "开始时间" => Field::Starts,
            "ends" | "end" | "失效时间" | "结束时间" => Field::Ends,
            "notify" | "notify a human" | "通知人工" => Field::Notify,
            "enabled" | "启用" => Field::Enabled,
            "回答" => Field::Answer(0),
            other => Field::Answer(answer_number(other)?),
        };
        let bilingual = matches!(field, Field::Question | Field::Answer(_));
        (!english || bilingual).then_some(Column { field, english })
    }

    fn header(self) -> String {
        let base = match self.field {
            Field::Id => "id".to_owned(),
            Field::Question => "question".to_owned(),
            Field::Similar => "similar questions".to_owned(),
            Field::Answer(0) => "answer".to_owned(),
            Field::Answer(n) => format!("answer {}", n + 1),
            Field::Category => "category".to_owned(),
            Field::Tags => "tags".to_owned(),
            Field::Starts => "starts".to_owned(),
            Field::Ends => "ends".to_owned(),
            Field::Notify => "notify".to_owned(),
            Field::Enabled => "enabled".to_owned(),
        };
        if self.english { format!("{base} en") } else { base }
    }
}

fn csv_problem(e: &csv::Error) -> String {
    match e.position() {
        Some(p) => format!("row {}: {}", p.line(), e.kind_message()),
        None => e.to_string(),
    }
}

trait KindMessage {
    fn kind_message(&self) -> String;
}

impl KindMessage for csv::Error {
    fn kind_message(&self) -> String {
        match self.kind() {
            csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
                format!("has {len} cells, but the header has {expected_len}")
            }
            _ => self.to_string(),
        }
    }
}

/// Splits a multi-value cell: one value per line, or separated by `|`.
fn split_list(cell: &str, extra: &[char]) -> Vec<String> {
    cell.split(|c: char| c == '\n' || c == '|' || extra.contains(&c))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn parse_flag(cell: &str) -> Option<bool> {
    match cell.trim().to_lowercase().as_str() {
        "yes" | "y" | "true" | "1" | "是" | "对" => Some(true),
        "no" | "n" | "false" | "0" | "否" | "" => Some(false),
        _ => None,
    }
}

fn localized(main: &str, english: &str) -> LocalizedText {
    match (main.trim(), english.trim()) {
        (m, "") => LocalizedText::Plain(m.to_owned()),
        ("", e) => LocalizedText::ByLang { zh: None, en: Some(e.to_owned()) },
        (m, e) => LocalizedText::ByLang { zh: Some(m.to_owned()), en: Some(e.to_owned()) },
    }
}

fn read_spreadsheet(text: &str) -> Result<(Pack, Vec<String>), PackError> {
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| PackError::one(csv_problem(&e)))?.clone();
    let mut problems = Vec::new();
    let mut columns: Vec<Column> = Vec::new();
    for header in &headers {
        match Column::parse(header) {
            None => {
                problems.push(format!("header: unknown column {header:?}; known columns: {KNOWN_COLUMNS}"))
            }
            Some(c) if columns.contains(&c) => {
                problems.push(format!("header: column {header:?} appears twice"))
            }
            Some(c) => columns.push(c),
        }
    }
    for (field, name) in [(Field::Question, "question"), (Field::Answer(0), "answer")] {
        if !columns.iter().any(|c| c.field == field && !c.english) {
            problems.push(format!("header: there is no '{name}' column"));
        }
    }
    if !problems.is_empty() {
        return Err(PackError { problems });
    }
    let answers =
        columns.iter().filter_map(|c| if let Field::Answer(n) = c.field { Some(n + 1) } else { None });
    let answer_count = answers.max().unwrap_or(1);

    let mut pack = Pack::default();
    let mut places = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                problems.push(csv_problem(&e));
                continue;
            }
        };
        if record.iter().all(|cell| cell.trim().is_empty()) {
            continue;
        }
        let row = record.position().map_or(0, |p| p.line());
        let cell = |field: Field, english: bool| -> &str {
            columns
                .iter()
                .position(|c| c.field == field && c.english == english)
                .and_then(|i| record.get(i))
                .unwrap_or("")
        };
        let question = localized(cell(Field::Question, false), cell(Field::Question, true));
        let mut entry = FaqEntry::new(
            match cell(Field::Id, false).trim() {
                "" => derived_id("faq", question.variants().first().copied().unwrap_or_default()),
                id => id.to_owned(),
            },
            question,
            localized(cell(Field::Answer(0), false), cell(Field::Answer(0), true)),
        );
        entry.similar = split_list(cell(Field::Similar, false), &[]);
        for n in 1..answer_count {
            let (main, english) = (cell(Field::Answer(n), false), cell(Field::Answer(n), true));
            if !(main.trim().is_empty() && english.trim().is_empty()) {
                entry.answers.push(localized(main, english));
            }
        }
        let category = cell(Field::Category, false).trim();
        entry.category = (!category.is_empty()).then(|| category.to_owned());
        entry.tags = split_list(cell(Field::Tags, false), &[',', '，', ';', '；']);
        for (field, slot) in [(Field::Starts, &mut entry.starts), (Field::Ends, &mut entry.ends)] {
            let value = cell(field, false).trim();
            *slot = (!value.is_empty()).then(|| value.to_owned());
        }
        for (field, name, slot, default) in [
            (Field::Notify, "notify", &mut entry.notify, false),
            (Field::Enabled, "enabled", &mut entry.enabled, true),
        ] {
            let value = cell(field, false);
            match parse_flag(value) {
                _ if value.trim().is_empty() => *slot = default,
                Some(flag) => *slot = flag,
                None => problems.push(format!("row {row}: column '{name}' must be yes or no, not {value:?}")),
            }
        }
        pack.faq.push(entry);
        places.push(format!("row {row}"));
    }
    if problems.is_empty() { Ok((pack, places)) } else { Err(PackError { problems }) }
}

fn write_spreadsheet(pack: &Pack) -> Result<String, csv::Error> {
    let english = |t: &LocalizedText| matches!(t, LocalizedText::ByLang { en: Some(_), .. });
    let answer_count = pack.faq.iter().map(|f| f.all_answers().count()).max().unwrap_or(1).max(1);
    let mut columns =
        vec![Column { field: Field::Id, english: false }, Column { field: Field::Question, english: false }];
    if pack.faq.iter().any(|f| english(&f.question)) {
        columns.push(Column { field: Field::Question, english: true });
    }
    columns.push(Column { field: Field::Similar, english: false });
    for n in 0..answer_count {
        columns.push(Column { field: Field::Answer(n), english: false });
        if pack.faq.iter().any(|f| f.all_answers().nth(n).is_some_and(english)) {
            columns.push(Column { field: Field::Answer(n), english: true });
        }
    }
    for field in [Field::Category, Field::Tags, Field::Starts, Field::Ends, Field::Notify, Field::Enabled] {
        columns.push(Column { field, english: false });
    }
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(columns.iter().map(|c| c.header()))?;
    let side = |t: Option<&LocalizedText>, english: bool| -> String {
        match (t, english) {
            (None, _) => String::new(),
            (Some(LocalizedText::Plain(s)), false) => s.clone(),
            (Some(LocalizedText::Plain(_)), true) => String::new(),
            (Some(LocalizedText::ByLang { zh, .. }), false) => zh.clone().unwrap_or_default(),
            (Some(LocalizedText::ByLang { en, .. }), true) => en.clone().unwrap_or_default(),
        }
    };
    let flag = |b: bool| if b { "yes" } else { "no" }.to_owned();
    for faq in &pack.faq {
        let row = columns.iter().map(|c| match c.field {
            Field::Id => faq.id.clone(),
            Field::Question => side(Some(&faq.question), c.english),
            Field::Similar => faq.similar.join("\n"),
            Field::Answer(n) => side(faq.all_answers().nth(n), c.english),
            Field::Category => faq.category.clone().unwrap_or_default(),
            Field::Tags => faq.tags.join(", "),
            Field::Starts => faq.starts.clone().unwrap_or_default(),
            Field::Ends => faq.ends.clone().unwrap_or_default(),
            Field::Notify => flag(faq.notify),
            Field::Enabled => flag(faq.enabled),
        });
        writer.write_record(row.collect::<Vec<_>>())?;
    }
    let bytes = writer.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8(bytes).unwrap_or_default())
}

// ---- Azure QnA Maker / custom question answering TSV ----

const QNA_COLUMNS: [&str; 9] = [
    "question",
    "answer",
    "source",
    "metadata",
    "suggestedquestions",
    "iscontextonly",
    "prompts",
    "qnaid",
    "sourcedisplayname",
];

/// QnA exports keep each cell on one line: newlines and tabs in answers are written `\n`, `\t`.
fn qna_unescape(cell: &str) -> String {
    let mut out = String::with_capacity(cell.len());
    let mut chars = cell.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn qna_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n").replace('\t', "\\t").replace('\r', "")
}

fn read_qna(text: &str) -> Result<(Pack, Vec<String>), PackError> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else { return Err(PackError::one("the file is empty")) };
    let headers: Vec<String> = header.split('\t').map(|h| h.trim().to_ascii_lowercase()).collect();
    let mut problems: Vec<String> = headers
        .iter()
        .filter(|h| !QNA_COLUMNS.contains(&h.as_str()))
        .map(|h| format!("header: unknown column {h:?}; a QnA export has: Question, Answer, Source, Metadata, SuggestedQuestions, IsContextOnly, Prompts, QnaId"))
        .collect();
    let at = |name: &str| headers.iter().position(|h| h == name);
    let (Some(q_col), Some(a_col)) = (at("question"), at("answer")) else {
        problems.push("header: a QnA export needs 'Question' and 'Answer' columns".to_owned());
        return Err(PackError { problems });
    };
    if !problems.is_empty() {
        return Err(PackError { problems });
    }
    let (meta_col, id_col) = (at("metadata"), at("qnaid"));
    // Rows of one QnA pair share its QnaId (or, in old exports, its answer).
    let mut pairs: IndexMap<String, (usize, FaqEntry)> = IndexMap::new();
    for (n, line) in lines {
        let row = n + 1;
        let cells: Vec<&str> = line.split('\t').collect();
        if cells.len() > headers.len() {
            problems.push(format!(
                "row {row}: has {} cells, but the header has {}",
                cells.len(),
                headers.len()
            ));
            continue;
        }
        let cell =
            |i: Option<usize>| i.and_then(|i| cells.get(i)).map_or(String::new(), |c| qna_unescape(c.trim()));
        let (question, answer) = (cell(Some(q_col)), cell(Some(a_col)));
        if question.is_empty() {
            problems.push(format!("row {row}: column 'Question' is empty"));
        }
        if answer.is_empty() {
            problems.push(format!("row {row}: column 'Answer' is empty"));
        }
        let qna_id = cell(id_col);
        let key = if qna_id.is_empty() { format!("answer:{answer}") } else { format!("id:{qna_id}") };
        match pairs.get_mut(&key) {
            Some((_, entry)) => {
                if !question.is_empty() {
                    entry.similar.push(question);
                }
            }
            None => {
                let id =
                    if qna_id.is_empty() { derived_id("qna", &question) } else { format!("qna-{qna_id}") };
                let mut entry =
                    FaqEntry::new(id, LocalizedText::Plain(question), LocalizedText::Plain(answer));
                for pair in cell(meta_col).split('|').filter(|p| !p.trim().is_empty()) {
                    match pair.split_once(':') {
                        Some((k, v)) if k.trim().eq_ignore_ascii_case("category") => {
                            entry.category = Some(v.trim().to_owned());
                        }
                        Some((k, v)) if k.trim().eq_ignore_ascii_case("tag") => {
                            entry.tags.push(v.trim().to_owned())
                        }
                        _ => entry.tags.push(pair.trim().to_owned()),
                    }
                }
                pairs.insert(key, (row, entry));
            }
        }
    }
    if !problems.is_empty() {
        return Err(PackError { problems });
    }
    let (places, faq) = pairs.into_values().map(|(row, e)| (format!("row {row}"), e)).unzip();
    Ok((Pack { faq, ..Pack::default() }, places))
}

fn write_qna(pack: &Pack) -> String {
    let mut out = String::from("Question\tAnswer\tSource\tMetadata\tQnaId\n");
    // QnA has no way to say "disabled": such entries are left out rather than revived.
    for (n, faq) in pack.faq.iter().filter(|f| f.enabled).enumerate() {
        let answer = faq.all_answers().next().map(|a| a.get(crate::domain::Lang::Zh)).unwrap_or_default();
        let mut metadata: Vec<String> = faq.category.iter().map(|c| format!("category:{c}")).collect();
        metadata.extend(faq.tags.iter().map(|t| format!("tag:{t}")));
        let questions = faq.question.variants().into_iter().chain(faq.similar.iter().map(String::as_str));
        for question in questions {
            out.push_str(&format!(
                "{}\t{}\tmibot\t{}\t{}\n",
                qna_escape(question),
                qna_escape(answer),
                qna_escape(&metadata.join("|")),
                n + 1
            ));
        }
    }
    out
}

// ---- Dialogflow FAQ CSV ----

fn read_dialogflow(text: &str) -> Result<(Pack, Vec<String>), PackError> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
    let mut problems = Vec::new();
    // Questions sharing an answer become one entry.
    let mut entries: IndexMap<String, (usize, FaqEntry)> = IndexMap::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                problems.push(csv_problem(&e));
                continue;
            }
        };
        let row = record.position().map_or(0, |p| p.line()) as usize;
        if record.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        if record.len() != 2 {
            problems.push(format!(
                "row {row}: has {} cells; a Dialogflow FAQ row is question,answer",
                record.len()
            ));
            continue;
        }
        let (question, answer) = (record[0].trim().to_owned(), record[1].trim().to_owned());
        if question.is_empty() {
            problems.push(format!("row {row}: column 'question' is empty"));
        }
        if answer.is_empty() {
            problems.push(format!("row {row}: column 'answer' is empty"));
        }
        match entries.get_mut(&answer) {
            Some((_, entry)) => entry.similar.push(question),
            None => {
                let entry = FaqEntry::new(
                    derived_id("faq", &question),
                    LocalizedText::Plain(question),
                    LocalizedText::Plain(answer.clone()),
                );
                entries.insert(answer, (row, entry));
            }
        }
    }
    if !problems.is_empty() {
        return Err(PackError { problems });
    }
    let (places, faq) = entries.into_values().map(|(row, e)| (format!("row {row}"), e)).unzip();
    Ok((Pack { faq, ..Pack::default() }, places))
}

fn write_dialogflow(pack: &Pack) -> Result<String, csv::Error> {
    let mut writer = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
    // Dialogflow has no way to say "disabled": such entries are left out rather than revived.
    for faq in pack.faq.iter().filter(|f| f.enabled) {
        let answer = faq.all_answers().next().map(|a| a.get(crate::domain::Lang::Zh)).unwrap_or_default();
        for question in faq.question.variants().into_iter().chain(faq.similar.iter().map(String::as_str)) {
            writer.write_record([question, answer])?;
        }
    }
    let bytes = writer.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8(bytes).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(all.contains("row 3: column 'answer' is empty"), "{all}");
        assert!(all.contains("row 4: column 'question' is empty"), "{all}");

        let csv = "id,question,answer\na,Q1,A1\na,Q2,A2\nb,Q3,A3,extra\n";
        let all = import(csv.as_bytes(), None, None).unwrap_err().problems.join("\n");
        assert!(all.contains("row 4: has 4 cells, but the header has 3"), "{all}");
    }

    #[test]
    fn duplicate_ids_are_reported_by_row() {
        let csv = "id,question,answer\na,Q1,A1\na,Q2,A2\n";
        let all = import(csv.as_bytes(), None, None).unwrap_err().problems.join("\n");
        assert!(all.contains("row 3: duplicate id \"a\""), "{all}");
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
