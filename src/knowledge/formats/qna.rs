//! Azure QnA Maker / custom question answering TSV exports. Each cell is on one line (line breaks
//! in answers are written `\n`), so a row is a line of the file; rows sharing a QnaId (or, in old
//! exports, an answer) are one entry's questions.

use indexmap::IndexMap;

use super::Ids;
use crate::domain::LocalizedText;
use crate::knowledge::pack::{FaqEntry, Pack, PackError};

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

/// Reads a QnA export, with each entry's place for the pack's own checks.
pub(super) fn read(text: &str) -> Result<(Pack, Vec<String>), PackError> {
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
    let mut ids = Ids::default();
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
                let id = if qna_id.is_empty() { ids.make("qna", &question) } else { format!("qna-{qna_id}") };
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
    let (places, faq) = pairs.into_values().map(|(row, e)| (format!("row {row}, id {:?}", e.id), e)).unzip();
    Ok((Pack { faq, ..Pack::default() }, places))
}

/// Writes the enabled FAQ entries as a QnA export.
pub(super) fn write(pack: &Pack) -> String {
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
