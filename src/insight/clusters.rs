//! Unanswered questions grouped by meaning: the questions the bot did not answer well, grouped
//! by average-link agglomeration, each group with a drafted FAQ entry. Two questions are alike
//! by their words (the cosine of word and character n-gram TF-IDF vectors) and, when the
//! encoder embedded them, by their meaning too (the embeddings' cosine), so that paraphrases
//! that share no word still fall in one group.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::domain::{ConversationId, HandoffReason, MessageId, Role};
use crate::store::History;

/// How alike two questions must be (cosine of their word and character n-gram TF-IDF vectors)
/// to share a cluster.
pub const CLUSTER_SIMILARITY: f32 = 0.15;

/// Most questions clustered at once (the newest).
pub const MAX_CLUSTERED: usize = 500;

/// Unanswered questions that mean the same thing, with a drafted knowledge entry.
#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    /// A stable id, made from the first question's message (opaque: see [`crate::ids`]).
    pub id: String,
    /// How many questions.
    pub size: usize,
    /// Share of them whose chat went to a person.
    pub handed_off_share: f64,
    /// `size × (1 + handed_off_share)`: clusters are listed by this, highest first.
    pub score: f64,
    /// The shopper messages in it.
    pub message_ids: Vec<MessageId>,
    /// Up to five of the questions.
    pub samples: Vec<String>,
    /// A knowledge entry to accept (edited or as is) into the pack.
    pub draft: Draft,
}

/// A drafted FAQ entry.
#[derive(Debug, Clone, Serialize)]
pub struct Draft {
    /// The most central question.
    pub question: String,
    /// The other questions, as similar questions.
    pub similar: Vec<String>,
    /// What an agent answered to one of them, if one did.
    pub answer: Option<String>,
    /// Without an agent's answer: the nearest entry's, as a starting point to edit. Accepting a
    /// draft needs an answer sent with it; a proposal alone is never taken as one.
    pub proposal: Option<super::Proposal>,
}

/// The shopper questions the bot did not answer well: its reply was a fallback or a "did you
/// mean", or a handoff after fallbacks, or an answer voted down or flagged, or an answer the
/// shopper's next message showed did not help (asked again in other words, or for a person).
/// Dismissed ones are left out. Returns `(message, text, handed off, what an agent answered next)`.
pub fn unanswered(history: &History) -> Vec<(MessageId, String, bool, Option<String>)> {
    let disliked: HashSet<MessageId> =
        history.feedback.iter().filter(|f| f.helpful == Some(false)).map(|f| f.message).collect();
    let dismissed: HashSet<MessageId> = history.dismissed.iter().copied().collect();
    let in_vain = super::repeats::answers_in_vain(&history.messages);
    let handed: HashSet<ConversationId> = history
        .conversations
        .iter()
        .filter(|c| c.handoff_reason.is_some_and(|r| r != HandoffReason::NotifyFlag))
        .map(|c| c.id)
        .collect();
    let failed_over: HashSet<ConversationId> = history
        .conversations
        .iter()
        .filter(|c| c.handoff_reason == Some(HandoffReason::RepeatedFallback))
        .map(|c| c.id)
        .collect();
    let mut found = Vec::new();
    for (i, m) in history.messages.iter().enumerate() {
        if m.role != Role::Shopper || dismissed.contains(&m.id) {
            continue;
        }
        let later = &history.messages[i + 1..];
        let reply = later.iter().find(|r| r.conversation == m.conversation && r.role != Role::Shopper);
        let Some(reply) = reply.filter(|r| r.role == Role::Bot) else { continue };
        let poor = match reply.kind.as_deref() {
            Some("fallback" | "clarify") => true,
            // A handoff after failing counts; asking for a person or complaining is not a question.
            Some("handoff") => failed_over.contains(&m.conversation),
            Some("answer") => disliked.contains(&reply.id) || in_vain.contains(&reply.id),
            _ => false,
        };
        if poor {
            let agent = later.iter().find(|r| r.conversation == m.conversation && r.role == Role::Agent);
            found.push((
                m.id,
                m.text.clone(),
                handed.contains(&m.conversation),
                agent.map(|a| a.text.clone()),
            ));
        }
    }
    found
}

/// The encoder's vectors of messages, by their text as stored; a text without one is compared by
/// its words alone.
pub type Vectors = HashMap<String, Vec<f32>>;

/// Groups the unanswered questions by meaning and drafts an entry for each group, best first.
pub fn clusters(history: &History, analyzer: &crate::text::Analyzer, embedded: &Vectors) -> Vec<Cluster> {
    use crate::knowledge::features::raw_features;
    let mut questions = unanswered(history);
    // The newest ones: clustering is quadratic in memory and cubic in time at worst.
    if questions.len() > MAX_CLUSTERED {
        questions.drain(..questions.len() - MAX_CLUSTERED);
    }
    let raw: Vec<Vec<u64>> = questions.iter().map(|(_, text, ..)| raw_features(analyzer, text)).collect();
    let vocabulary = question_vocabulary(history, analyzer, &|_| true, &raw);
    let vectors: Vec<Vec<(u32, f32)>> = raw.iter().map(|r| vocabulary.vectorize(r)).collect();
    let texts: Vec<&str> = questions.iter().map(|(_, text, ..)| text.as_str()).collect();
    let (groups, sim) = group_alike(&similarities(&vectors, &texts, embedded));
    let mut clusters: Vec<(Cluster, i64)> = groups
        .into_iter()
        .map(|members| {
            let central = central(&members, &sim);
            let handed = members.iter().filter(|&&i| questions[i].2).count();
            let size = members.len();
            let share = handed as f64 / size as f64;
            let mut similar: Vec<String> = Vec::new();
            for &i in &members {
                let text = questions[i].1.trim().to_owned();
                if i != central && text != questions[central].1.trim() && !similar.contains(&text) {
                    similar.push(text);
                }
            }
            let first = questions[members[0]].0.0;
            let cluster = Cluster {
                id: crate::ids::encode(crate::ids::Kind::Cluster, first),
                size,
                handed_off_share: share,
                score: size as f64 * (1.0 + share),
                message_ids: members.iter().map(|&i| questions[i].0).collect(),
                samples: members.iter().take(5).map(|&i| questions[i].1.clone()).collect(),
                draft: Draft {
                    question: questions[central].1.trim().to_owned(),
                    similar,
                    answer: members.iter().find_map(|&i| questions[i].3.clone()),
                    proposal: None,
                },
            };
            (cluster, first)
        })
        .collect();
    // Ties go to the cluster asked first (ids are opaque, so they cannot order it).
    clusters.sort_by(|(a, a_first), (b, b_first)| b.score.total_cmp(&a.score).then(a_first.cmp(b_first)));
    clusters.into_iter().map(|(cluster, _)| cluster).collect()
}

/// Most shopper messages word weights are learned from (the newest).
const MAX_VOCABULARY_MESSAGES: usize = 5_000;

/// Word weights for grouping `questions` (their raw features), learned from every shopper
/// message of the history that `include` keeps (the newest 5,000) and from the questions. A word
/// that all of the questions share (their topic) must weigh as much as it is rare in the store,
/// not as little as it is common among them: fitted on the questions alone, a tight burst about
/// one thing falls apart.
pub fn question_vocabulary(
    history: &History,
    analyzer: &crate::text::Analyzer,
    include: &dyn Fn(&crate::store::MessageRow) -> bool,
    questions: &[Vec<u64>],
) -> crate::knowledge::features::Vocabulary {
    use crate::knowledge::features::{Vocabulary, raw_features};
    let mut corpus: Vec<Vec<u64>> = history
        .messages
        .iter()
        .rev()
        .filter(|m| m.role == Role::Shopper && include(m))
        .take(MAX_VOCABULARY_MESSAGES)
        .map(|m| raw_features(analyzer, &m.text))
        .collect();
    corpus.extend(questions.iter().cloned());
    Vocabulary::fit(&corpus)
}

/// The dot product of two sparse vectors sorted by index (their cosine, when both are unit length).
pub fn dot(a: &[(u32, f32)], b: &[(u32, f32)]) -> f32 {
    let (mut i, mut j, mut sum) = (0, 0, 0.0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                sum += a[i].1 * b[j].1;
                i += 1;
                j += 1;
            }
        }
    }
    sum
}

/// A text's words as a sparse unit TF-IDF vector: (term id, weight), sorted by term id.
pub(super) type Terms = [(u32, f32)];

/// Below this embedding cosine two questions are no more alike in meaning than any two of a
/// store's questions: the encoder's vectors of unrelated shop questions already meet at about
/// 0.82.
const MEANING_FLOOR: f32 = 0.84;

/// How alike two questions are, 0 to 1: their words' cosine (unit TF-IDF vectors), averaged
/// with how far their meanings' cosine rises above [`MEANING_FLOOR`] when both were embedded.
/// Paraphrases that share no word (邮费 and 运费) still meet this way.
pub fn similarity(words: (&Terms, &Terms), meanings: (Option<&Vec<f32>>, Option<&Vec<f32>>)) -> f32 {
    let lexical = dot(words.0, words.1);
    match meanings {
        (Some(a), Some(b)) => {
            let cosine = crate::knowledge::semantic::dot(a, b);
            let meaning = ((cosine - MEANING_FLOOR) / (1.0 - MEANING_FLOOR)).clamp(0.0, 1.0);
            0.5 * (lexical + meaning)
        }
        _ => lexical,
    }
}

/// Every pair's [`similarity`]: `words[i]` is text `texts[i]`'s TF-IDF vector.
pub fn similarities(words: &[Vec<(u32, f32)>], texts: &[&str], embedded: &Vectors) -> Vec<Vec<f32>> {
    let meanings: Vec<Option<&Vec<f32>>> = texts.iter().map(|t| embedded.get(*t)).collect();
    (0..words.len())
        .map(|i| {
            (0..words.len()).map(|j| similarity((&words[i], &words[j]), (meanings[i], meanings[j]))).collect()
        })
        .collect()
}

/// Groups items by average-link agglomeration over their pairwise similarities: merges the two
/// most alike groups while they are at least [`CLUSTER_SIMILARITY`] alike, keeping the groups'
/// similarities up to date as size-weighted means (Lance–Williams). Returns the groups (members
/// ascending, groups in order of their first member) and the similarities.
pub fn group_alike(sim: &[Vec<f32>]) -> (Vec<Vec<usize>>, Vec<Vec<f32>>) {
    let n = sim.len();
    let sim = sim.to_vec();
    let mut link = sim.clone();
    let mut groups: Vec<Option<Vec<usize>>> = (0..n).map(|i| Some(vec![i])).collect();
    loop {
        let mut best: Option<(usize, usize, f32)> = None;
        for a in (0..n).filter(|&a| groups[a].is_some()) {
            for b in (a + 1..n).filter(|&b| groups[b].is_some()) {
                if link[a][b] >= CLUSTER_SIMILARITY && best.is_none_or(|(_, _, t)| link[a][b] > t) {
                    best = Some((a, b, link[a][b]));
                }
            }
        }
        let Some((a, b, _)) = best else { break };
        let merged = groups[b].take().unwrap_or_default();
        let (size_a, size_b) = (groups[a].as_ref().map_or(0, Vec::len) as f32, merged.len() as f32);
        for c in (0..n).filter(|&c| c != a && groups[c].is_some()) {
            let mean = (size_a * link[a][c] + size_b * link[b][c]) / (size_a + size_b);
            link[a][c] = mean;
            link[c][a] = mean;
        }
        if let Some(group) = groups[a].as_mut() {
            group.extend(merged);
        }
    }
    let groups = groups
        .into_iter()
        .flatten()
        .map(|mut members| {
            members.sort_unstable();
            members
        })
        .collect();
    (groups, sim)
}

/// The most central member of a group: the highest mean similarity to the others (the first
/// of equals).
pub fn central(members: &[usize], sim: &[Vec<f32>]) -> usize {
    let score = |i: usize| members.iter().map(|&j| sim[i][j]).sum::<f32>();
    members.iter().copied().max_by(|&a, &b| score(a).total_cmp(&score(b)).then(b.cmp(&a))).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Millis;
    use crate::store::MessageRow;

    #[test]
    fn paraphrases_share_a_cluster_and_unrelated_questions_do_not() {
        let id = ConversationId::new();
        let texts = [
            "你们支持花呗分期吗",
            "可以用花呗分期付款吗",
            "花呗能分期吗",
            "can I pay in installments with huabei",
            "你们的实体店在哪个城市",
            "What time does the warehouse close on Sunday?",
        ];
        let mut messages = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            let n = i64::try_from(i).unwrap() * 2;
            let row = |id_: i64, role, text: &str, kind: Option<&str>| MessageRow {
                id: MessageId(id_),
                conversation: id,
                role,
                text: text.to_owned(),
                kind: kind.map(str::to_owned),
                entry: None,
                at: Millis(id_),
            };
            messages.push(row(n + 1, Role::Shopper, text, None));
            messages.push(row(n + 2, Role::Bot, "抱歉", Some("fallback")));
        }
        let history = History { messages, ..History::default() };
        let clusters = clusters(&history, &crate::text::Analyzer::new(), &Vectors::new());
        let with = |text: &str| clusters.iter().position(|c| c.samples.iter().any(|s| s == text)).unwrap();
        assert_eq!(with("你们支持花呗分期吗"), with("可以用花呗分期付款吗"), "{clusters:#?}");
        assert_eq!(with("你们支持花呗分期吗"), with("花呗能分期吗"), "{clusters:#?}");
        assert_ne!(with("你们支持花呗分期吗"), with("你们的实体店在哪个城市"), "{clusters:#?}");
        assert_ne!(with("你们的实体店在哪个城市"), with("What time does the warehouse close on Sunday?"));
        assert_eq!(clusters[0].size, 3, "the biggest first: {clusters:#?}");
        assert_eq!(clusters[0].draft.similar.len(), 2);
    }

    #[test]
    fn a_tight_burst_about_one_thing_stays_one_cluster() {
        // Six ways of asking the same thing, in a store where shoppers mostly ask other things:
        // the word they all share weighs as much as it is rare in the store.
        let id = ConversationId::new();
        let mut messages = Vec::new();
        let mut push = |role, text: &str, kind: Option<&str>| {
            let n = i64::try_from(messages.len()).unwrap() + 1;
            messages.push(MessageRow {
                id: MessageId(n),
                conversation: id,
                role,
                text: text.to_owned(),
                kind: kind.map(str::to_owned),
                entry: None,
                at: Millis(n),
            });
        };
        for i in 0..40 {
            push(Role::Shopper, ["发票怎么申请", "什么时候发货", "可以退货吗", "有优惠券吗"][i % 4], None);
            push(Role::Bot, "…", Some("answer"));
        }
        let burst = [
            "赠品为什么是分开寄的",
            "为什么赠品和商品分开寄",
            "赠品分开寄是什么情况",
            "赠品为啥分开寄",
            "赠品怎么分开寄了",
            "我的赠品是分开寄吗",
        ];
        for text in burst {
            push(Role::Shopper, text, None);
            push(Role::Bot, "抱歉", Some("fallback"));
        }
        let history = History { messages, ..History::default() };
        let clusters = clusters(&history, &crate::text::Analyzer::new(), &Vectors::new());
        assert_eq!(clusters.len(), 1, "{clusters:#?}");
        assert_eq!(clusters[0].size, 6);
    }

    #[test]
    fn questions_alike_in_meaning_share_a_cluster_though_no_word_does() {
        let id = ConversationId::new();
        let texts = ["邮资谁出", "postage who pays", "实体店在哪"];
        let mut messages = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            let n = i64::try_from(i).unwrap() * 2;
            let row = |id_: i64, role, text: &str, kind: Option<&str>| MessageRow {
                id: MessageId(id_),
                conversation: id,
                role,
                text: text.to_owned(),
                kind: kind.map(str::to_owned),
                entry: None,
                at: Millis(id_),
            };
            messages.push(row(n + 1, Role::Shopper, text, None));
            messages.push(row(n + 2, Role::Bot, "抱歉", Some("fallback")));
        }
        let history = History { messages, ..History::default() };
        let analyzer = crate::text::Analyzer::new();
        // By words alone, three clusters.
        assert_eq!(clusters(&history, &analyzer, &Vectors::new()).len(), 3);
        // With vectors that put the first two close in meaning (cosine 0.96) and the third far.
        let unit = |v: [f32; 3]| {
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter().map(|x| x / n).collect::<Vec<f32>>()
        };
        let vectors: Vectors = [
            ("邮资谁出", unit([1.0, 0.2, 0.0])),
            ("postage who pays", unit([1.0, 0.5, 0.0])),
            ("实体店在哪", unit([0.0, 0.2, 1.0])),
        ]
        .into_iter()
        .map(|(t, v)| (t.to_owned(), v))
        .collect();
        let grouped = clusters(&history, &analyzer, &vectors);
        assert_eq!(grouped.len(), 2, "{grouped:#?}");
        assert_eq!(grouped[0].size, 2);
        assert!(grouped[0].samples.contains(&"postage who pays".to_owned()));
    }
}
