//! Dialogflow FAQ documents: `question,answer` rows with no header. Questions that share an
//! answer are one entry. A group answered in English right after one answered in Chinese is the
//! same entry's other language, as Dialogflow keeps one document per language and merchants paste
//! them together: the two become one bilingual entry.

use indexmap::IndexMap;

use super::Ids;
use super::spreadsheet::csv_problem;
use crate::domain::{Lang, LocalizedText, is_han};
use crate::knowledge::pack::{FaqEntry, Pack, PackError};

/// The questions that share one answer, and the row of the first.
struct Group {
    row: u64,
    answer: String,
    questions: Vec<String>,
}

impl Group {
    fn chinese(&self) -> bool {
        self.answer.chars().any(is_han)
    }
}

/// Reads a Dialogflow FAQ CSV, with each entry's place for the pack's own checks.
pub(super) fn read(text: &str) -> Result<(Pack, Vec<String>), PackError> {
    let text = text.replace("\r\n", "\n");
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
    let mut problems = Vec::new();
    let mut groups: IndexMap<String, Group> = IndexMap::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                problems.push(csv_problem(&e));
                continue;
            }
        };
        let row = record.position().map_or(0, |p| p.record() + 1);
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
        groups
            .entry(answer.clone())
            .or_insert_with(|| Group { row, answer, questions: Vec::new() })
            .questions
            .push(question);
    }
    if !problems.is_empty() {
        return Err(PackError { problems });
    }
    let mut ids = Ids::default();
    let mut groups = groups.into_values().peekable();
    let (mut places, mut faq) = (Vec::new(), Vec::new());
    while let Some(group) = groups.next() {
        let english = groups.next_if(|next| group.chinese() && !next.chinese());
        let entry = match english {
            Some(en) => {
                let id = ids.make("faq", &en.questions[0]);
                let mut entry = FaqEntry::new(
                    id,
                    LocalizedText::ByLang {
                        zh: Some(group.questions[0].clone()),
                        en: Some(en.questions[0].clone()),
                    },
                    LocalizedText::ByLang { zh: Some(group.answer), en: Some(en.answer) },
                );
                entry.similar = group.questions[1..].iter().chain(&en.questions[1..]).cloned().collect();
                entry
            }
            None => {
                let mut entry = FaqEntry::new(
                    ids.make("faq", &group.questions[0]),
                    LocalizedText::Plain(group.questions[0].clone()),
                    LocalizedText::Plain(group.answer),
                );
                entry.similar = group.questions[1..].to_vec();
                entry
            }
        };
        places.push(format!("row {}, id {:?}", group.row, entry.id));
        faq.push(entry);
    }
    Ok((Pack { faq, ..Pack::default() }, places))
}

/// Writes the enabled FAQ entries as a Dialogflow FAQ CSV. A bilingual entry is written as its
/// Chinese questions with the Chinese answer, then its English ones with the English answer, so
/// that it is read back as one entry.
pub(super) fn write(pack: &Pack) -> Result<String, csv::Error> {
    let mut writer = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
    // Dialogflow has no way to say "disabled": such entries are left out rather than revived.
    for faq in pack.faq.iter().filter(|f| f.enabled) {
        let Some(answer) = faq.all_answers().next() else { continue };
        match (&faq.question, answer) {
            (
                LocalizedText::ByLang { zh: Some(zh_q), en: Some(en_q) },
                LocalizedText::ByLang { zh: Some(zh_a), en: Some(en_a) },
            ) => {
                let (zh_similar, en_similar): (Vec<&String>, Vec<&String>) =
                    faq.similar.iter().partition(|q| q.chars().any(is_han));
                for question in std::iter::once(zh_q).chain(zh_similar) {
                    writer.write_record([question, zh_a])?;
                }
                for question in std::iter::once(en_q).chain(en_similar) {
                    writer.write_record([question, en_a])?;
                }
            }
            _ => {
                let answer = answer.get(Lang::Zh);
                let similar = faq.similar.iter().map(String::as_str);
                for question in faq.question.variants().into_iter().chain(similar) {
                    writer.write_record([question, answer])?;
                }
            }
        }
    }
    let bytes = writer.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8(bytes).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::super::{Format, export, import};
    use crate::domain::LocalizedText;

    #[test]
    fn chinese_and_english_groups_in_a_row_are_one_entry_with_a_readable_id() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let file = std::fs::read(root.join("knowledge/examples/dialogflow.csv")).unwrap();
        let pack = import(&file, Some(Format::DialogflowCsv), None).unwrap().pack;
        let ids: Vec<&str> = pack.faq.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "how-soon-will-my-order-ship",
                "can-i-return-an-item-within",
                "can-i-get-an-invoice",
                "whats-on-for-double-11",
                "id-like-to-place-a-bulk",
                "茶叶怎么保存",
            ],
        );
        let shipping = &pack.faq[0];
        assert_eq!(
            shipping.question,
            LocalizedText::ByLang {
                zh: Some("下单后多久发货？".into()),
                en: Some("How soon will my order ship?".into())
            }
        );
        assert!(shipping.similar.contains(&"什么时候发货".to_owned()), "{:?}", shipping.similar);
        assert!(
            shipping.similar.contains(&"how long does delivery take".to_owned()),
            "{:?}",
            shipping.similar
        );
        assert!(matches!(&pack.faq[5].question, LocalizedText::Plain(q) if q == "茶叶怎么保存？"));

        // Written back, it reads the same.
        let text = export(&pack, Format::DialogflowCsv).unwrap();
        let back = import(text.as_bytes(), Some(Format::DialogflowCsv), None).unwrap().pack;
        assert_eq!(back.faq, pack.faq, "{text}");
    }

    #[test]
    fn rows_are_counted_as_the_spreadsheet_counts_them() {
        let text = "多久发货,\"当天发货\r\n次日送达\"\r\n能退吗,\r\n";
        let err = import(text.as_bytes(), Some(Format::DialogflowCsv), None).unwrap_err();
        assert_eq!(err.problems, ["row 2: column 'answer' is empty"], "{err}");
    }
}
