//! Answers that did not help, seen from what the shopper did next: a shopper who, right after an
//! answer, asks the same thing again in other words, gets the same entry again, or asks for a
//! person, was not helped by it, however confident the bot was.

use std::collections::{HashMap, HashSet};

use crate::domain::{ConversationId, MessageId, Role};
use crate::store::MessageRow;

/// How alike two questions must be to count as the same one asked again (Dice coefficient over
/// words and Chinese character pairs).
pub(super) const SAME_QUESTION: f64 = 0.4;

/// The bot answers (by message id) that the shopper's next message showed did not help.
pub(super) fn answers_in_vain(messages: &[MessageRow]) -> HashSet<MessageId> {
    let mut by_conversation: HashMap<ConversationId, Vec<&MessageRow>> = HashMap::new();
    for m in messages {
        by_conversation.entry(m.conversation).or_default().push(m);
    }
    let mut in_vain = HashSet::new();
    for turns in by_conversation.values() {
        // (question, its bot reply) in order; agents' and the store's messages end the bot's run.
        let mut pairs: Vec<(&MessageRow, &MessageRow)> = Vec::new();
        let mut question: Option<&MessageRow> = None;
        for m in turns {
            match m.role {
                Role::Shopper => question = Some(m),
                Role::Bot => {
                    if let Some(q) = question.take() {
                        pairs.push((q, m));
                    }
                }
                _ => question = None,
            }
        }
        for window in pairs.windows(2) {
            let ((question, answer), (next, next_reply)) = (window[0], window[1]);
            if answer.kind.as_deref() != Some("answer") {
                continue;
            }
            let same_entry = next_reply.kind.as_deref() == Some("answer")
                && answer.entry.is_some()
                && next_reply.entry == answer.entry;
            let asked_for_person = next_reply.kind.as_deref() == Some("handoff");
            if same_entry || asked_for_person || alike(&question.text, &next.text) >= SAME_QUESTION {
                in_vain.insert(answer.id);
            }
        }
    }
    in_vain
}

/// The words (lowercased) and Chinese character pairs of a text.
fn units(text: &str) -> HashSet<String> {
    let mut units = HashSet::new();
    let mut word = String::new();
    let mut han: Vec<char> = Vec::new();
    let flush_han = |han: &mut Vec<char>, units: &mut HashSet<String>| {
        match han.len() {
            0 => {}
            1 => {
                units.insert(han[0].to_string());
            }
            _ => {
                for pair in han.windows(2) {
                    units.insert(pair.iter().collect());
                }
            }
        }
        han.clear();
    };
    for c in text.chars() {
        if c.is_alphanumeric() && c.is_ascii() {
            flush_han(&mut han, &mut units);
            word.extend(c.to_lowercase());
        } else {
            if !word.is_empty() {
                units.insert(std::mem::take(&mut word));
            }
            if c.is_alphabetic() {
                han.push(c);
            } else {
                flush_han(&mut han, &mut units);
            }
        }
    }
    flush_han(&mut han, &mut units);
    if !word.is_empty() {
        units.insert(word);
    }
    units
}

/// How alike two questions are, 0 to 1.
pub(super) fn alike(a: &str, b: &str) -> f64 {
    let (a, b) = (units(a), units(b));
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    2.0 * a.intersection(&b).count() as f64 / (a.len() + b.len()) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Millis;

    fn at(
        conversation: ConversationId,
        id: i64,
        role: Role,
        text: &str,
        kind: Option<&str>,
        entry: Option<&str>,
    ) -> MessageRow {
        MessageRow {
            id: MessageId(id),
            conversation,
            role,
            text: text.into(),
            kind: kind.map(str::to_owned),
            entry: entry.map(str::to_owned),
            at: Millis(id),
        }
    }

    #[test]
    fn rephrasing_right_after_an_answer_marks_it_in_vain() {
        let c = ConversationId::new();
        let messages = [
            at(c, 1, Role::Shopper, "买一件要出邮费不", None, None),
            at(c, 2, Role::Bot, "退货运费由买家承担。", Some("answer"), Some("return-shipping")),
            at(c, 3, Role::Shopper, "我是问买一件要不要邮费", None, None),
            at(c, 4, Role::Bot, "满99元包邮。", Some("answer"), Some("shipping-fee")),
            at(c, 5, Role::Shopper, "好的谢谢", None, None),
            at(c, 6, Role::Bot, "不客气", Some("answer"), Some("intent:thanks")),
        ];
        assert_eq!(answers_in_vain(&messages), HashSet::from([MessageId(2)]));
    }

    #[test]
    fn the_same_entry_again_or_a_person_after_an_answer_is_in_vain_and_a_new_question_is_not() {
        let (c, d, e) = (ConversationId::new(), ConversationId::new(), ConversationId::new());
        let messages = [
            at(c, 1, Role::Shopper, "how much do u charge for shipping", None, None),
            at(d, 2, Role::Shopper, "发票怎么开", None, None),
            at(c, 3, Role::Bot, "Orders over 99 ship free.", Some("answer"), Some("shipping-fee")),
            at(d, 4, Role::Bot, "在订单页申请。", Some("answer"), Some("invoice")),
            at(c, 5, Role::Shopper, "so what is the fee below that", None, None),
            at(d, 6, Role::Shopper, "转人工", None, None),
            at(c, 7, Role::Bot, "Orders over 99 ship free.", Some("answer"), Some("shipping-fee")),
            at(d, 8, Role::Bot, "正在为您转接人工", Some("handoff"), None),
            at(e, 9, Role::Shopper, "发票怎么开", None, None),
            at(e, 10, Role::Bot, "在订单页申请。", Some("answer"), Some("invoice")),
            at(e, 11, Role::Shopper, "X1 有紫色吗", None, None),
            at(e, 12, Role::Bot, "有。", Some("answer"), Some("product:NV-X1")),
        ];
        assert_eq!(answers_in_vain(&messages), HashSet::from([MessageId(3), MessageId(4)]));
    }

    #[test]
    fn questions_compare_by_words_and_character_pairs() {
        assert!(alike("运费怎么算", "运费是怎么算的") >= SAME_QUESTION);
        assert!(alike("How much is shipping?", "how much is the shipping") >= SAME_QUESTION);
        assert!(alike("运费怎么算", "发票怎么开") < SAME_QUESTION);
        assert_eq!(alike("", "运费"), 0.0);
    }
}
