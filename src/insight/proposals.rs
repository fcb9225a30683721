//! A starting point for each draft that no agent answered: the answer of the store's entry
//! nearest to the draft's question. It is a proposal, shown as one: the bot did not answer these
//! questions with it, so the merchant reads it, edits it and sends it back before it goes in.

use serde::Serialize;

use super::Cluster;
use crate::config::TriageConfig;
use crate::domain::{Lang, Millis};
use crate::knowledge::{EntryRef, KnowledgeBase};

/// The nearest entry's answer, proposed for a draft.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Proposal {
    /// The entry it comes from.
    pub entry: String,
    /// That entry's question, in the draft's language.
    pub question: String,
    /// That entry's answer, in the draft's language.
    pub answer: String,
    /// How near the entry is, 0 to 1 (the bot's confidence that it answers the draft's question).
    pub score: f32,
}

/// Proposes an answer for every draft without one, from `kb`; `vector` gives a question's
/// embedding where there is one. Only FAQ entries are proposed: an intent's reply is generic.
pub fn propose(
    clusters: &mut [Cluster],
    kb: &KnowledgeBase,
    triage: &TriageConfig,
    now: Millis,
    vector: &dyn Fn(&str) -> Option<Vec<f32>>,
) {
    for cluster in clusters.iter_mut().filter(|c| c.draft.answer.is_none()) {
        let question = cluster.draft.question.as_str();
        let embedded = vector(question).filter(|_| kb.semantic().is_some());
        let band = triage.band(embedded.is_some());
        let lang = Lang::detect(question);
        let hits = kb.search(question, 3, band.fusion, now, embedded.as_deref());
        cluster.draft.proposal = hits.iter().find_map(|hit| {
            let EntryRef::Faq(i) = hit.entry else { return None };
            let faq = &kb.faq()[i];
            Some(Proposal {
                entry: faq.id.clone(),
                question: faq.question.get(lang).to_owned(),
                answer: faq.all_answers().next()?.get(lang).to_owned(),
                score: hit.score,
            })
        });
    }
}
