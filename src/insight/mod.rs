//! Insight for merchants: how the bot is doing, computed from stored conversations.
//!
//! The bot resolution rate follows AliMe's definition. A session (a conversation with at least
//! one shopper message) is **unresolved** if the shopper was handed to a person (asked for one,
//! complained, or the bot kept failing), got a fallback, or disliked an answer (a down vote, or
//! an agent's flag); and a shopper who comes back within 24 hours with a question answered from
//! the same entry un-resolves the earlier session. Every session is counted once: resolved or
//! unresolved, under the first of those causes that applies. A `notify` answer queues the chat for
//! a person without counting against the bot.

mod clusters;
mod export;
mod proposals;
mod repeats;

pub use clusters::{
    CLUSTER_SIMILARITY, Cluster, Draft, MAX_CLUSTERED, Vectors, central, clusters, dot, group_alike,
    question_vocabulary, similarities, similarity, unanswered,
};
pub use export::conversations_csv;
pub use proposals::{Proposal, propose};

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::domain::{ConversationId, HandoffReason, MessageId, Millis, Role};
use crate::store::{ConversationRow, History};

/// How long after a session the same question asked again un-resolves it.
pub const ASKED_AGAIN_WITHIN: i64 = 24 * 3600 * 1000;

/// The width of a time series' buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    /// One hour.
    Hour,
    /// One (local) day.
    Day,
}

impl Bucket {
    /// Parses `hour` or `day`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "hour" => Some(Bucket::Hour),
            "day" => Some(Bucket::Day),
            _ => None,
        }
    }

    fn millis(self) -> i64 {
        match self {
            Bucket::Hour => 3600 * 1000,
            Bucket::Day => 24 * 3600 * 1000,
        }
    }
}

/// Why a session was not resolved by the bot. It is written (in the report's figures and the
/// conversations' CSV) by its [`Unresolved::as_str`] name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Unresolved {
    /// Handed to a person (asked for one, complained, repeated fallbacks, reception mode).
    HandedOver,
    /// Got a fallback.
    Fallback,
    /// A task (an order lookup…) failed: the store's endpoint did not answer.
    ActionFailed,
    /// Voted an answer down, or an agent flagged one.
    Disliked,
    /// Right after an answer, asked the same thing again in other words (or got the same entry
    /// again): the answer did not help.
    AskedRightAgain,
    /// Came back within 24 hours with the same question.
    AskedAgain,
}

impl Unresolved {
    /// The cause's stable name: `handed_over`, `fallback`, `action_failed`, `disliked`, `asked_right_again`,
    /// `asked_again`.
    pub fn as_str(self) -> &'static str {
        match self {
            Unresolved::HandedOver => "handed_over",
            Unresolved::Fallback => "fallback",
            Unresolved::ActionFailed => "action_failed",
            Unresolved::Disliked => "disliked",
            Unresolved::AskedRightAgain => "asked_right_again",
            Unresolved::AskedAgain => "asked_again",
        }
    }
}

impl Serialize for Unresolved {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The measures of one store over a time range.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Start of the range (ms since the epoch).
    pub since: i64,
    /// End of the range, exclusive.
    pub until: i64,
    /// Sessions (conversations with a shopper message) started in the range.
    pub sessions: u64,
    /// Shopper messages in those sessions.
    pub messages: u64,
    /// Sessions the bot resolved.
    pub resolved: u64,
    /// `resolved / sessions`; absent with no sessions.
    pub resolution_rate: Option<f64>,
    /// Unresolved sessions by their first cause.
    pub unresolved: BTreeMap<Unresolved, u64>,
    /// Sessions handed to a person, by reason.
    pub escalations: BTreeMap<HandoffReason, u64>,
    /// The bot's replies.
    pub bot_replies: u64,
    /// Share of the bot's replies that asked back ("did you mean…").
    pub clarify_rate: Option<f64>,
    /// Chats people answered.
    pub human: HumanMeasures,
    /// Shoppers' votes and agents' flags on bot answers.
    pub bot_feedback: FeedbackMeasures,
    /// The entries answered most, most first.
    pub top_entries: Vec<EntryCount>,
    /// Per bucket.
    pub series: Vec<Point>,
}

/// The people's side.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HumanMeasures {
    /// Chats an agent wrote in.
    pub chats: u64,
    /// Mean seconds from joining the queue to the agent's first message.
    pub first_response_seconds: Option<f64>,
    /// Mean seconds from assignment to close.
    pub handling_seconds: Option<f64>,
    /// Ratings given (CSAT, 1–5).
    pub ratings: u64,
    /// Mean rating.
    pub csat: Option<f64>,
}

/// Votes and flags on bot answers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FeedbackMeasures {
    /// Up votes.
    pub helpful: u64,
    /// Down votes.
    pub not_helpful: u64,
    /// Up / all votes: the bot's CSAT.
    pub helpful_rate: Option<f64>,
    /// Answers agents flagged as wrong.
    pub flagged: u64,
}

/// How often an entry was answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryCount {
    /// A FAQ id, `intent:…` or `product:…`.
    pub entry: String,
    /// What the entry is, as a merchant reads it (its question, or the product's name), from the
    /// store's active knowledge; absent for an entry no longer in it.
    pub question: Option<String>,
    /// Answers from it.
    pub count: u64,
}

/// One bucket of the series.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// The bucket's start (ms since the epoch).
    pub start: i64,
    /// The bucket as a chart labels it, in the store's local time: `12/3` for a day, `15:00`
    /// for an hour.
    pub label: String,
    /// Sessions started in it.
    pub sessions: u64,
    /// Of those, resolved.
    pub resolved: u64,
    /// `resolved / sessions`.
    pub resolution_rate: Option<f64>,
    /// Of those, handed to a person.
    pub escalations: u64,
    /// Ratings given to people in it, and their mean.
    pub csat: Option<f64>,
}

/// A bot answer a shopper voted down or an agent flagged: for the merchant to review.
#[derive(Debug, Clone, Serialize)]
pub struct Review {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The bot reply.
    pub message_id: MessageId,
    /// What the shopper asked.
    pub question: String,
    /// What the bot answered.
    pub answer: String,
    /// The entry it answered from.
    pub entry: Option<String>,
    /// `shopper` (a down vote) or `agent` (a flag).
    pub source: String,
    /// The agent's note.
    pub note: Option<String>,
    /// The agent.
    pub author: Option<String>,
    /// When.
    pub at: i64,
}

fn rate(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Why each session in `history` was not resolved (`None`: resolved). `history` should reach
/// 24 hours past the range, so that later sessions can un-resolve earlier ones.
pub fn outcomes(history: &History) -> HashMap<ConversationId, Option<Unresolved>> {
    let mut shopper_messages: HashSet<ConversationId> = HashSet::new();
    let mut fallback: HashSet<ConversationId> = HashSet::new();
    let mut failed: HashSet<ConversationId> = HashSet::new();
    let mut entries: HashMap<ConversationId, HashSet<&str>> = HashMap::new();
    let mut last_at: HashMap<ConversationId, Millis> = HashMap::new();
    for m in &history.messages {
        last_at.insert(m.conversation, m.at);
        match m.role {
            Role::Shopper => {
                shopper_messages.insert(m.conversation);
            }
            Role::Bot if m.kind.as_deref() == Some("fallback") => {
                fallback.insert(m.conversation);
            }
            Role::Bot if m.kind.as_deref() == Some("action_failed") => {
                failed.insert(m.conversation);
            }
            Role::Bot if m.kind.as_deref() == Some("answer") => {
                if let Some(entry) = &m.entry {
                    entries.entry(m.conversation).or_default().insert(entry);
                }
            }
            _ => {}
        }
    }
    let disliked: HashSet<ConversationId> =
        history.feedback.iter().filter(|f| f.helpful == Some(false)).map(|f| f.conversation).collect();
    let in_vain = repeats::answers_in_vain(&history.messages);
    let repeated: HashSet<ConversationId> =
        history.messages.iter().filter(|m| in_vain.contains(&m.id)).map(|m| m.conversation).collect();
    let by_shopper: HashMap<&str, Vec<&ConversationRow>> = history
        .conversations
        .iter()
        .filter_map(|c| Some((c.shopper.as_deref()?, c)))
        .fold(HashMap::new(), |mut map, (s, c)| {
            map.entry(s).or_insert_with(Vec::new).push(c);
            map
        });
    let asked_again = |c: &ConversationRow| -> bool {
        let (Some(shopper), Some(mine)) = (c.shopper.as_deref(), entries.get(&c.id)) else { return false };
        let end = last_at.get(&c.id).copied().unwrap_or(c.created_at);
        by_shopper.get(shopper).into_iter().flatten().any(|later| {
            later.id != c.id
                && later.created_at > c.created_at
                && later.created_at.0 - end.0 <= ASKED_AGAIN_WITHIN
                && entries.get(&later.id).is_some_and(|theirs| theirs.iter().any(|e| mine.contains(e)))
        })
    };
    history
        .conversations
        .iter()
        .filter(|c| shopper_messages.contains(&c.id))
        .map(|c| {
            let handed_over = c.handoff_reason.is_some_and(|r| r != HandoffReason::NotifyFlag);
            let cause = if handed_over {
                Some(Unresolved::HandedOver)
            } else if failed.contains(&c.id) {
                Some(Unresolved::ActionFailed)
            } else if fallback.contains(&c.id) {
                Some(Unresolved::Fallback)
            } else if disliked.contains(&c.id) {
                Some(Unresolved::Disliked)
            } else if repeated.contains(&c.id) {
                Some(Unresolved::AskedRightAgain)
            } else if asked_again(c) {
                Some(Unresolved::AskedAgain)
            } else {
                None
            };
            (c.id, cause)
        })
        .collect()
}

/// The measures of the sessions that started in `[since, until)`. `history` holds those and
/// the next 24 hours' (for the asked-again rule); `utc_offset_minutes` places day buckets on
/// local midnight.
pub fn report(
    history: &History,
    since: Millis,
    until: Millis,
    bucket: Bucket,
    utc_offset_minutes: i32,
) -> Report {
    let outcomes = outcomes(history);
    let in_range: Vec<&ConversationRow> = history
        .conversations
        .iter()
        .filter(|c| c.created_at >= since && c.created_at < until && outcomes.contains_key(&c.id))
        .collect();
    let ids: HashSet<ConversationId> = in_range.iter().map(|c| c.id).collect();
    let messages: Vec<_> = history.messages.iter().filter(|m| ids.contains(&m.conversation)).collect();

    let mut unresolved: BTreeMap<Unresolved, u64> = BTreeMap::new();
    let mut escalations: BTreeMap<HandoffReason, u64> = BTreeMap::new();
    for c in &in_range {
        if let Some(Some(cause)) = outcomes.get(&c.id) {
            *unresolved.entry(*cause).or_default() += 1;
        }
        if let Some(reason) = c.handoff_reason {
            *escalations.entry(reason).or_default() += 1;
        }
    }
    let sessions = in_range.len() as u64;
    let resolved = sessions - unresolved.values().sum::<u64>();

    let bot: Vec<_> = messages.iter().filter(|m| m.role == Role::Bot).collect();
    let clarify = bot.iter().filter(|m| m.kind.as_deref() == Some("clarify")).count() as u64;
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for m in bot.iter().filter(|m| m.kind.as_deref() == Some("answer")) {
        if let Some(entry) = &m.entry {
            *counts.entry(entry).or_default() += 1;
        }
    }
    let mut top_entries: Vec<EntryCount> = counts
        .into_iter()
        .map(|(entry, count)| EntryCount { entry: entry.to_owned(), question: None, count })
        .collect();
    top_entries.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.entry.cmp(&b.entry)));
    top_entries.truncate(20);

    let mut first_agent: HashMap<ConversationId, Millis> = HashMap::new();
    for m in messages.iter().filter(|m| m.role == Role::Agent) {
        first_agent.entry(m.conversation).or_insert(m.at);
    }
    let first_response: Vec<f64> = in_range
        .iter()
        .filter_map(|c| Some((first_agent.get(&c.id)?.0 - c.queued_at?.0) as f64 / 1000.0))
        .collect();
    let handling: Vec<f64> = in_range
        .iter()
        .filter(|c| first_agent.contains_key(&c.id))
        .filter_map(|c| Some((c.closed_at?.0 - c.assigned_at?.0) as f64 / 1000.0))
        .collect();
    let ratings: Vec<f64> = in_range.iter().filter_map(|c| c.rating.map(f64::from)).collect();
    let human = HumanMeasures {
        chats: first_agent.len() as u64,
        first_response_seconds: mean(&first_response),
        handling_seconds: mean(&handling),
        ratings: ratings.len() as u64,
        csat: mean(&ratings),
    };

    let votes: Vec<_> = history.feedback.iter().filter(|f| ids.contains(&f.conversation)).collect();
    let helpful = votes.iter().filter(|f| f.source == "shopper" && f.helpful == Some(true)).count() as u64;
    let not_helpful =
        votes.iter().filter(|f| f.source == "shopper" && f.helpful == Some(false)).count() as u64;
    let bot_feedback = FeedbackMeasures {
        helpful,
        not_helpful,
        helpful_rate: rate(helpful, helpful + not_helpful),
        flagged: votes.iter().filter(|f| f.source == "agent").count() as u64,
    };

    let width = bucket.millis();
    let offset = i64::from(utc_offset_minutes) * 60_000;
    let start_of = |at: Millis| match bucket {
        Bucket::Hour => at.0.div_euclid(width) * width,
        Bucket::Day => (at.0 + offset).div_euclid(width) * width - offset,
    };
    let mut series: BTreeMap<i64, (u64, u64, u64, Vec<f64>)> = BTreeMap::new();
    let mut at = start_of(since);
    while at < until.0 && series.len() < 10_000 {
        series.insert(at, (0, 0, 0, Vec::new()));
        at += width;
    }
    for c in &in_range {
        let point = series.entry(start_of(c.created_at)).or_default();
        point.0 += 1;
        if matches!(outcomes.get(&c.id), Some(None)) {
            point.1 += 1;
        }
        if c.handoff_reason.is_some() {
            point.2 += 1;
        }
        if let Some(r) = c.rating {
            point.3.push(f64::from(r));
        }
    }
    let series = series
        .into_iter()
        .map(|(start, (sessions, resolved, escalations, ratings))| Point {
            start,
            label: bucket_label(start + offset, bucket),
            sessions,
            resolved,
            resolution_rate: rate(resolved, sessions),
            escalations,
            csat: mean(&ratings),
        })
        .collect();

    Report {
        since: since.0,
        until: until.0,
        sessions,
        messages: messages.iter().filter(|m| m.role == Role::Shopper).count() as u64,
        resolved,
        resolution_rate: rate(resolved, sessions),
        unresolved,
        escalations,
        bot_replies: bot.len() as u64,
        clarify_rate: rate(clarify, bot.len() as u64),
        human,
        bot_feedback,
        top_entries,
        series,
    }
}

/// The down-voted and flagged answers in `history`, newest first.
pub fn reviews(history: &History) -> Vec<Review> {
    let by_id: HashMap<MessageId, usize> =
        history.messages.iter().enumerate().map(|(i, m)| (m.id, i)).collect();
    let mut reviews: Vec<Review> = history
        .feedback
        .iter()
        .filter(|f| f.helpful == Some(false))
        .filter_map(|f| {
            let i = *by_id.get(&f.message)?;
            let answer = &history.messages[i];
            let question = history.messages[..i]
                .iter()
                .rev()
                .find(|m| m.conversation == answer.conversation && m.role == Role::Shopper)
                .map(|m| m.text.clone())
                .unwrap_or_default();
            Some(Review {
                conversation_id: f.conversation,
                message_id: f.message,
                question,
                answer: answer.text.clone(),
                entry: answer.entry.clone(),
                source: f.source.clone(),
                note: f.note.clone(),
                author: f.author.clone(),
                at: f.at.0,
            })
        })
        .collect();
    reviews.sort_by_key(|r| std::cmp::Reverse(r.at));
    reviews
}

/// Reads a range's start: `7d`, `24h`, `30m` before `now`, or an RFC 3339 instant.
pub fn parse_since(text: &str, now: Millis) -> Option<Millis> {
    let text = text.trim();
    let unit = |c: char| match c {
        'd' => Some(24 * 3600 * 1000),
        'h' => Some(3600 * 1000),
        'm' => Some(60 * 1000),
        _ => None,
    };
    if let Some(last) = text.chars().last()
        && let Some(per) = unit(last)
        && let Ok(n) = text[..text.len() - 1].parse::<i64>()
    {
        return Some(Millis(now.0 - n.max(0) * per));
    }
    crate::knowledge::pack::parse_instant(text)
}

/// A bucket's label from its local start (ms since the epoch, shifted to local time).
fn bucket_label(local: i64, bucket: Bucket) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(local.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    match bucket {
        Bucket::Day => format!("{}/{}", u8::from(at.month()), at.day()),
        Bucket::Hour => format!("{:02}:00", at.hour()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ConversationRow, FeedbackRow, MessageRow};

    const HOUR: i64 = 3600 * 1000;

    /// A seeded history: six sessions with known fates.
    pub(super) fn seeded() -> (History, Vec<ConversationId>) {
        let ids: Vec<ConversationId> = (0..7).map(|_| ConversationId::new()).collect();
        let conv =
            |i: usize, shopper: Option<&str>, at: i64, reason: Option<HandoffReason>| ConversationRow {
                id: ids[i],
                shopper: shopper.map(str::to_owned),
                created_at: Millis(at),
                handoff_reason: reason,
                queued_at: reason.map(|_| Millis(at + 60_000)),
                assigned_at: reason.map(|_| Millis(at + 90_000)),
                closed_at: reason.map(|_| Millis(at + 390_000)),
                rating: reason.map(|_| 4),
            };
        let mut next = 0;
        let mut msg = |i: usize, role: Role, kind: Option<&str>, entry: Option<&str>, at: i64| {
            next += 1;
            MessageRow {
                id: MessageId(next),
                conversation: ids[i],
                role,
                text: format!("m{next}"),
                kind: kind.map(str::to_owned),
                entry: entry.map(str::to_owned),
                at: Millis(at),
            }
        };
        let messages = vec![
            // 0: answered, resolved.
            msg(0, Role::Shopper, None, None, 0),
            msg(0, Role::Bot, Some("answer"), Some("invoice"), 1),
            // 1: asked for a person; an agent answered after 2 minutes in the queue.
            msg(1, Role::Shopper, None, None, HOUR),
            msg(1, Role::Bot, Some("handoff"), Some("intent:ask_for_human"), HOUR + 1),
            msg(1, Role::Agent, None, None, HOUR + 180_000),
            // 2: a fallback, then a clarify.
            msg(2, Role::Shopper, None, None, 2 * HOUR),
            msg(2, Role::Bot, Some("fallback"), None, 2 * HOUR + 1),
            msg(2, Role::Bot, Some("clarify"), None, 2 * HOUR + 2),
            // 3: answered but voted down.
            msg(3, Role::Shopper, None, None, 3 * HOUR),
            msg(3, Role::Bot, Some("answer"), Some("returns"), 3 * HOUR + 1),
            // 4: shopper s1 answered from "shipping"…
            msg(4, Role::Shopper, None, None, 4 * HOUR),
            msg(4, Role::Bot, Some("answer"), Some("shipping"), 4 * HOUR + 1),
            // 5: …and back 20 hours later with the same question: 4 is un-resolved, 5 is not.
            msg(5, Role::Shopper, None, None, 24 * HOUR),
            msg(5, Role::Bot, Some("answer"), Some("shipping"), 24 * HOUR + 1),
            // 6 has no shopper message: not a session.
        ];
        let conversations = vec![
            conv(0, None, 0, None),
            conv(1, None, HOUR, Some(HandoffReason::AskedForHuman)),
            conv(2, None, 2 * HOUR, None),
            conv(3, None, 3 * HOUR, None),
            conv(4, Some("s1"), 4 * HOUR, None),
            conv(5, Some("s1"), 24 * HOUR, None),
            conv(6, None, 5 * HOUR, None),
        ];
        let feedback = vec![FeedbackRow {
            conversation: ids[3],
            message: MessageId(10),
            source: "shopper".into(),
            helpful: Some(false),
            note: None,
            author: None,
            at: Millis(3 * HOUR + 5),
        }];
        (History { conversations, messages, feedback, dismissed: Vec::new() }, ids)
    }

    #[test]
    fn a_seeded_history_gives_exact_measures() {
        let (history, _) = seeded();
        let r = report(&history, Millis(0), Millis(48 * HOUR), Bucket::Day, 0);
        assert_eq!(r.sessions, 6);
        assert_eq!(r.resolved, 2, "{r:?}");
        assert_eq!(r.resolution_rate, Some(2.0 / 6.0));
        assert_eq!(r.unresolved.get(&Unresolved::HandedOver), Some(&1));
        assert_eq!(r.unresolved.get(&Unresolved::Fallback), Some(&1));
        assert_eq!(r.unresolved.get(&Unresolved::Disliked), Some(&1));
        assert_eq!(r.unresolved.get(&Unresolved::AskedAgain), Some(&1));
        assert_eq!(r.escalations.get(&HandoffReason::AskedForHuman), Some(&1));
        assert_eq!(r.bot_replies, 7);
        assert_eq!(r.clarify_rate, Some(1.0 / 7.0));
        assert_eq!(r.human.chats, 1);
        assert_eq!(r.human.first_response_seconds, Some(120.0));
        assert_eq!(r.human.handling_seconds, Some(300.0));
        assert_eq!(r.human.csat, Some(4.0));
        assert_eq!(r.bot_feedback.not_helpful, 1);
        assert_eq!(r.top_entries[0], EntryCount { entry: "shipping".into(), question: None, count: 2 });
        assert_eq!(r.series.len(), 2);
        assert_eq!((r.series[0].sessions, r.series[0].resolved), (5, 1));
        assert_eq!((r.series[1].sessions, r.series[1].resolved), (1, 1));
        assert_eq!((r.series[0].label.as_str(), r.series[1].label.as_str()), ("1/1", "1/2"));
        // Days start at the store's local midnight, and are labelled by their local date.
        let east = report(&history, Millis(0), Millis(48 * HOUR), Bucket::Day, 480);
        assert_eq!(east.series[0].label, "1/1", "{:?}", east.series);
        let reviews = reviews(&history);
        assert_eq!(reviews.len(), 1);
        assert_eq!((reviews[0].question.as_str(), reviews[0].answer.as_str()), ("m9", "m10"));
    }

    #[test]
    fn the_range_decides_which_sessions_count_but_later_ones_still_unresolve() {
        let (history, _) = seeded();
        // Only the first day: session 5 is outside, but still un-resolves session 4.
        let r = report(&history, Millis(0), Millis(24 * HOUR), Bucket::Hour, 0);
        assert_eq!(r.sessions, 5);
        assert_eq!(r.resolved, 1);
        assert_eq!(r.series.len(), 24);
        assert_eq!(r.series[4].sessions, 1);
        assert_eq!((r.series[0].label.as_str(), r.series[23].label.as_str()), ("00:00", "23:00"));
    }

    #[test]
    fn since_reads_durations_and_instants() {
        let now = Millis(10 * 24 * HOUR);
        assert_eq!(parse_since("7d", now), Some(Millis(3 * 24 * HOUR)));
        assert_eq!(parse_since("2h", now), Some(Millis(now.0 - 2 * HOUR)));
        assert_eq!(parse_since("1970-01-02T00:00:00Z", now), Some(Millis(24 * HOUR)));
        assert_eq!(parse_since("soon", now), None);
    }

    #[test]
    fn an_answer_followed_at_once_by_the_same_question_reworded_is_not_resolved() {
        let (rephrased, fine) = (ConversationId::new(), ConversationId::new());
        let row = |id, at| ConversationRow {
            id,
            shopper: None,
            created_at: Millis(at),
            handoff_reason: None,
            queued_at: None,
            assigned_at: None,
            closed_at: None,
            rating: None,
        };
        let m =
            |id: i64, conversation, role, text: &str, kind: Option<&str>, entry: Option<&str>| MessageRow {
                id: MessageId(id),
                conversation,
                role,
                text: text.into(),
                kind: kind.map(str::to_owned),
                entry: entry.map(str::to_owned),
                at: Millis(id),
            };
        let history = History {
            conversations: vec![row(rephrased, 0), row(fine, 0)],
            messages: vec![
                m(1, rephrased, Role::Shopper, "运费怎么算", None, None),
                m(2, rephrased, Role::Bot, "退货运费由买家承担。", Some("answer"), Some("return-shipping")),
                m(3, rephrased, Role::Shopper, "我问的是运费怎么算的", None, None),
                m(4, rephrased, Role::Bot, "满99元包邮。", Some("answer"), Some("shipping-fee")),
                m(5, fine, Role::Shopper, "发票怎么开", None, None),
                m(6, fine, Role::Bot, "在订单页申请。", Some("answer"), Some("invoice")),
            ],
            feedback: Vec::new(),
            dismissed: Vec::new(),
        };
        let r = report(&history, Millis(0), Millis(HOUR), Bucket::Hour, 0);
        assert_eq!((r.sessions, r.resolved), (2, 1), "{r:?}");
        assert_eq!(r.unresolved.get(&Unresolved::AskedRightAgain), Some(&1));
        let unanswered = clusters::unanswered(&history);
        assert_eq!(unanswered.iter().map(|u| u.1.as_str()).collect::<Vec<_>>(), ["运费怎么算"]);
    }
}
