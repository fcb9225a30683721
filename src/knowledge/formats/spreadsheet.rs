//! The spreadsheet CSV: one FAQ entry per row under a header that names the columns, in English
//! or Chinese. Rows are numbered as the spreadsheet numbers them (the header is row 1, and a cell
//! with line breaks in it is still one row), whatever the line endings.

use super::Ids;
use crate::domain::LocalizedText;
use crate::knowledge::pack::{FaqEntry, Pack, PackError};
/// A spreadsheet column: a field, optionally the English side of a bilingual field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Column {
    pub(super) field: Field,
    pub(super) english: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
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
    pub(super) fn parse(header: &str) -> Option<Column> {
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

/// A CSV reader's error, at the spreadsheet row it is in (a header is row 1).
pub(super) fn csv_problem(e: &csv::Error) -> String {
    match e.position() {
        Some(p) => format!("row {}: {}", p.record() + 1, e.kind_message()),
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
pub(super) fn split_list(cell: &str, extra: &[char]) -> Vec<String> {
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

pub(super) fn localized(main: &str, english: &str) -> LocalizedText {
    match (main.trim(), english.trim()) {
        (m, "") => LocalizedText::Plain(m.to_owned()),
        ("", e) => LocalizedText::ByLang { zh: None, en: Some(e.to_owned()) },
        (m, e) => LocalizedText::ByLang { zh: Some(m.to_owned()), en: Some(e.to_owned()) },
    }
}

/// Reads a spreadsheet, with each entry's place (`row 4, id \"shipping-time\"`) for the pack's
/// own checks.
pub(super) fn read(text: &str) -> Result<(Pack, Vec<String>), PackError> {
    // Line breaks in cells are kept as `\n`, whichever the file was saved with.
    let text = text.replace("\r\n", "\n");
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
    let mut ids = Ids::default();
    let records: Vec<csv::StringRecord> = reader
        .records()
        .filter_map(|record| record.map_err(|e| problems.push(csv_problem(&e))).ok())
        .collect();
    let id_column = columns.iter().position(|c| c.field == Field::Id);
    for id in records.iter().filter_map(|r| id_column.and_then(|i| r.get(i))) {
        ids.keep(id.trim());
    }
    for record in records {
        if record.iter().all(|cell| cell.trim().is_empty()) {
            continue;
        }
        let row = record.position().map_or(0, |p| p.record() + 1);
        let cell = |field: Field, english: bool| -> &str {
            columns
                .iter()
                .position(|c| c.field == field && c.english == english)
                .and_then(|i| record.get(i))
                .unwrap_or("")
        };
        let question = localized(cell(Field::Question, false), cell(Field::Question, true));
        let id = match cell(Field::Id, false).trim() {
            "" => ids.make("faq", question.variants().first().copied().unwrap_or_default()),
            id => id.to_owned(),
        };
        let at = format!("row {row}, id {id:?}");
        let mut entry = FaqEntry::new(
            id,
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
                None => problems.push(format!("{at}: column '{name}' must be yes or no, not {value:?}")),
            }
        }
        pack.faq.push(entry);
        places.push(at);
    }
    if problems.is_empty() { Ok((pack, places)) } else { Err(PackError { problems }) }
}

/// Writes the FAQ entries as a spreadsheet, with the columns the pack needs.
pub(super) fn write(pack: &Pack) -> Result<String, csv::Error> {
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

#[cfg(test)]
mod tests {
    use super::super::{Format, import};

    /// What Excel writes: CRLF line endings, and a cell with line breaks in quotes.
    const SHEET: &str = "id,question,similar questions,answer\r\n\
        shipping,多久发货,\"什么时候发货\r\n几点前下单当天发\r\n今天能发吗\",16:00前付款当天发货\r\n\
        returns,能退货吗,\"七天无理由吗\r\n怎么退\",\r\n\
        ,发票怎么开,,\"可以。\r\n下单时填写抬头。\"\r\n\
        ,,,只有答案\r\n";

    #[test]
    fn problems_name_the_spreadsheet_row_and_the_entry_whatever_the_line_endings() {
        for sheet in [SHEET.to_owned(), SHEET.replace("\r\n", "\n"), SHEET.replace("\r\n", "\r")] {
            let err = import(sheet.as_bytes(), Some(Format::Csv), None).unwrap_err();
            assert_eq!(err.problems.len(), 2, "{err}");
            assert_eq!(err.problems[0], "row 3, id \"returns\": column 'answer' is empty", "{sheet:?}");
            assert!(err.problems[1].starts_with("row 5, id \"faq-"), "{err}");
            assert!(err.problems[1].ends_with(": column 'question' is empty"), "{err}");
        }
    }

    #[test]
    fn a_cell_with_line_breaks_is_one_row_and_ids_are_made_readable() {
        let sheet = SHEET.replace(",\r\n,发票", ",七天内可退\r\n,发票").replace(",,,只有答案\r\n", "");
        let imported = import(sheet.as_bytes(), Some(Format::Csv), None).unwrap();
        let faq = &imported.pack.faq;
        assert_eq!(faq.len(), 3);
        assert_eq!(faq[0].similar, ["什么时候发货", "几点前下单当天发", "今天能发吗"]);
        assert_eq!(faq[2].id, "发票怎么开");
        assert_eq!(
            faq[2].answer_at(crate::domain::Millis(0)).get(crate::domain::Lang::Zh),
            "可以。\n下单时填写抬头。"
        );
    }

    #[test]
    fn a_bad_cell_count_is_reported_at_its_row() {
        let sheet = "question,answer\r\nQ1,\"A1\r\nmore\"\r\nQ2,A2,extra\r\n";
        let err = import(sheet.as_bytes(), Some(Format::Csv), None).unwrap_err();
        assert_eq!(err.problems, ["row 3: has 3 cells, but the header has 2"], "{err}");
    }
}
