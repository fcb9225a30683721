//! Which topics shoppers are asking about far more often than usual: a pure function of the
//! stored history, so a seeded history gives exact answers.

use std::collections::{BTreeMap, HashMap};

use crate::config::AlertsConfig;
use crate::domain::{ConversationId, MessageId, Millis, Role};
use crate::insight::{self, CLUSTER_SIMILARITY};
use crate::store::History;
use crate::text::Analyzer;

/// Most unanswered questions of the window that are grouped (the newest).
const MAX_RECENT: usize = insight::MAX_CLUSTERED;

/// Most unanswered questions of the baseline compared with the window's groups (the newest).
const MAX_USUAL: usize = 2_000;

/// When a topic's count counts as a spike.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    /// The recent window judged, in milliseconds.
    pub window: i64,
    /// The trailing period before the window that sets the usual rate, in milliseconds.
    pub baseline: i64,
    /// How many times the usual count the window's count must reach.
    pub factor: f64,
    /// The least count that can spike.
    pub min_count: usize,
}

impl Rule {
    /// The rule the config sets.
    pub fn from_config(config: &AlertsConfig) -> Self {
        let millis = |seconds: u64| i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
        Self {
            window: millis(config.window_seconds).max(1),
            baseline: millis(config.baseline_seconds),
            factor: config.factor,
            min_count: config.min_count.max(1),
        }
    }

    fn spikes(&self, count: usize, expected: f64) -> bool {
        count >= self.min_count && count as f64 >= self.factor * expected
    }
}

/// A topic whose count in the window spikes.
#[derive(Debug, Clone, PartialEq)]
pub struct Spike {
    /// `entry:<id>` (the questions one FAQ entry answered) or `questions` (alike questions the
    /// bot did not answer well).
    pub topic: String,
    /// What it is about: the entry's question, or the group's most central question.
    pub label: String,
    /// Up to five of the window's questions.
    pub samples: Vec<String>,
    /// The window's shopper messages on the topic, oldest first.
    pub messages: Vec<MessageId>,
    /// How many: `messages.len()`.
    pub count: usize,
    /// The usual count for a window, from the baseline.
    pub expected: f64,
}

/// The texts of the unanswered questions [`spikes`] would group at `now` (the window's and the
/// baseline's, newest kept), so that their vectors can be fetched first; none when the window
/// holds too few to spike or there is no baseline yet.
pub fn questions_to_group(history: &History, rule: &Rule, now: Millis) -> Vec<String> {
    let window_start = now.0 - rule.window;
    let Some(first) = history.messages.iter().map(|m| m.at.0).min() else { return Vec::new() };
    let baseline_start = (window_start - rule.baseline).max(first);
    if window_start - baseline_start < rule.window {
        return Vec::new();
    }
    let at: HashMap<MessageId, Millis> = history.messages.iter().map(|m| (m.id, m.at)).collect();
    let (mut window, mut before): (Vec<_>, Vec<_>) = insight::unanswered(history)
        .into_iter()
        .filter_map(|(id, text, ..)| at.get(&id).map(|&when| (text, when.0)))
        .filter(|(_, when)| *when >= baseline_start && *when <= now.0)
        .partition(|(_, when)| *when >= window_start);
    if window.len() < rule.min_count {
        return Vec::new();
    }
    window.drain(..window.len().saturating_sub(MAX_RECENT));
    before.drain(..before.len().saturating_sub(MAX_USUAL));
    window.into_iter().chain(before).map(|(text, _)| text).collect()
}

/// The topics spiking at `now`, the largest first. `label_of` names a FAQ entry by its id.
///
/// The baseline is the `rule.baseline` before the window, cut short to the store's first
/// message in the history; with less than one window of baseline, nothing is judged (there is
/// no usual rate yet).
pub fn spikes(
    history: &History,
    analyzer: &Analyzer,
    embedded: &insight::Vectors,
    rule: &Rule,
    now: Millis,
    label_of: &dyn Fn(&str) -> Option<String>,
) -> Vec<Spike> {
    let window_start = now.0 - rule.window;
    let Some(first) = history.messages.iter().map(|m| m.at.0).min() else { return Vec::new() };
    let baseline_start = (window_start - rule.baseline).max(first);
    let baseline_len = window_start - baseline_start;
    if baseline_len < rule.window {
        return Vec::new();
    }
    let scale = rule.window as f64 / baseline_len as f64;
    let recent = |at: Millis| at.0 >= window_start && at.0 <= now.0;
    let usual = |at: Millis| at.0 >= baseline_start && at.0 < window_start;

    let mut found = Vec::new();

    // Answered topics: the FAQ entry each question was answered from.
    let replies = first_replies(history);
    let mut by_entry: BTreeMap<&str, (Vec<usize>, usize)> = BTreeMap::new();
    for (i, m) in history.messages.iter().enumerate() {
        let Some(reply) = replies[i].map(|r| &history.messages[r]) else { continue };
        if reply.role != Role::Bot || reply.kind.as_deref() != Some("answer") {
            continue;
        }
        let Some(entry) = reply.entry.as_deref() else { continue };
        if recent(m.at) {
            by_entry.entry(entry).or_default().0.push(i);
        } else if usual(m.at) {
            by_entry.entry(entry).or_default().1 += 1;
        }
    }
    for (entry, (members, before)) in by_entry {
        let expected = before as f64 * scale;
        if rule.spikes(members.len(), expected) {
            let messages = &history.messages;
            found.push(Spike {
                topic: format!("entry:{entry}"),
                label: label_of(entry).unwrap_or_else(|| entry.to_owned()),
                samples: members.iter().take(5).map(|&i| messages[i].text.clone()).collect(),
                messages: members.iter().map(|&i| messages[i].id).collect(),
                count: members.len(),
                expected,
            });
        }
    }

    // Questions the bot did not answer well, grouped by meaning.
    found.extend(unanswered_spikes(history, analyzer, embedded, rule, &recent, &usual, scale));
    found.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.topic.cmp(&b.topic)));
    found
}

fn unanswered_spikes(
    history: &History,
    analyzer: &Analyzer,
    embedded: &insight::Vectors,
    rule: &Rule,
    recent: &dyn Fn(Millis) -> bool,
    usual: &dyn Fn(Millis) -> bool,
    scale: f64,
) -> Vec<Spike> {
    use crate::knowledge::features::raw_features;
    let at: HashMap<MessageId, Millis> = history.messages.iter().map(|m| (m.id, m.at)).collect();
    let questions = insight::unanswered(history);
    let (mut window, mut before): (Vec<_>, Vec<_>) = questions
        .into_iter()
        .filter_map(|(id, text, ..)| at.get(&id).map(|&when| (id, text, when)))
        .filter(|(_, _, when)| recent(*when) || usual(*when))
        .partition(|(_, _, when)| recent(*when));
    if window.len() < rule.min_count {
        return Vec::new();
    }
    window.drain(..window.len().saturating_sub(MAX_RECENT));
    before.drain(..before.len().saturating_sub(MAX_USUAL));
    let raw: Vec<Vec<u64>> =
        window.iter().chain(before.iter()).map(|(_, text, _)| raw_features(analyzer, text)).collect();
    let vocabulary = insight::question_vocabulary(history, analyzer, &|m| recent(m.at) || usual(m.at), &raw);
    let vectors: Vec<Vec<(u32, f32)>> = raw.iter().map(|r| vocabulary.vectorize(r)).collect();
    let texts: Vec<&str> = window.iter().chain(before.iter()).map(|(_, text, _)| text.as_str()).collect();
    let meanings: Vec<Option<&Vec<f32>>> = texts.iter().map(|t| embedded.get(*t)).collect();
    let n = window.len();
    let (groups, sim) = insight::group_alike(&insight::similarities(&vectors[..n], &texts[..n], embedded));
    let mut found = Vec::new();
    for members in groups.into_iter().filter(|g| g.len() >= rule.min_count) {
        // A baseline question belongs to the group when it is as alike to the group, on
        // average, as the group's own members must be.
        let alike = (n..texts.len())
            .filter(|&u| {
                let total: f32 = members
                    .iter()
                    .map(|&i| insight::similarity((&vectors[u], &vectors[i]), (meanings[u], meanings[i])))
                    .sum();
                total / members.len() as f32 >= CLUSTER_SIMILARITY
            })
            .count();
        let expected = alike as f64 * scale;
        if rule.spikes(members.len(), expected) {
            let central = insight::central(&members, &sim);
            found.push(Spike {
                topic: "questions".into(),
                label: window[central].1.trim().to_owned(),
                samples: members.iter().take(5).map(|&i| window[i].1.clone()).collect(),
                messages: members.iter().map(|&i| window[i].0).collect(),
                count: members.len(),
                expected,
            });
        }
    }
    found
}

/// For each message, the index of the first later message of its conversation that is not the
/// shopper's (the reply to it), if any. One pass.
fn first_replies(history: &History) -> Vec<Option<usize>> {
    let mut replies = vec![None; history.messages.len()];
    let mut waiting: HashMap<ConversationId, Vec<usize>> = HashMap::new();
    for (i, m) in history.messages.iter().enumerate() {
        if m.role == Role::Shopper {
            waiting.entry(m.conversation).or_default().push(i);
        } else if let Some(pending) = waiting.remove(&m.conversation) {
            for p in pending {
                replies[p] = Some(i);
            }
        }
    }
    replies
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MessageRow;

    const MINUTE: i64 = 60_000;

    struct Seed {
        history: History,
        next: i64,
    }

    impl Seed {
        fn new() -> Self {
            Self { history: History::default(), next: 1 }
        }

        /// A one-question conversation at `minute`: the shopper asks, the bot replies.
        fn ask(&mut self, minute: i64, text: &str, kind: &str, entry: Option<&str>) {
            let conversation = ConversationId(uuid::Uuid::new_v4());
            let at = Millis(minute * MINUTE);
            for (role, text, kind) in [(Role::Shopper, text, None), (Role::Bot, "…", Some(kind.to_owned()))]
            {
                self.history.messages.push(MessageRow {
                    id: MessageId(self.next),
                    conversation,
                    role,
                    text: text.to_owned(),
                    kind,
                    entry: if role == Role::Bot { entry.map(str::to_owned) } else { None },
                    at,
                });
                self.next += 1;
            }
        }
    }

    fn rule() -> Rule {
        Rule { window: 10 * MINUTE, baseline: 60 * MINUTE, factor: 5.0, min_count: 5 }
    }

    fn find(seed: &Seed, now_minute: i64) -> Vec<Spike> {
        let analyzer = Analyzer::new();
        spikes(
            &seed.history,
            &analyzer,
            &insight::Vectors::new(),
            &rule(),
            Millis(now_minute * MINUTE),
            &|e| Some(format!("Q {e}")),
        )
    }

    #[test]
    fn a_steady_rate_does_not_spike() {
        let mut seed = Seed::new();
        // One question a minute on the same entry for 70 minutes: 10 in the window, 60 before.
        for minute in 0..70 {
            seed.ask(minute, "运费怎么算", "answer", Some("shipping"));
        }
        assert_eq!(find(&seed, 70), Vec::new());
    }

    #[test]
    fn a_burst_on_an_entry_spikes() {
        let mut seed = Seed::new();
        for minute in 0..60 {
            if minute % 10 == 0 {
                seed.ask(minute, "怎么退货", "answer", Some("returns"));
            }
        }
        for minute in 62..70 {
            seed.ask(minute, "我要退货", "answer", Some("returns"));
        }
        let found = find(&seed, 70);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].topic, "entry:returns");
        assert_eq!(found[0].label, "Q returns");
        assert_eq!(found[0].count, 8);
        // 6 in the 60 minutes before: 1 per 10-minute window.
        assert!((found[0].expected - 1.0).abs() < 1e-9, "{}", found[0].expected);
    }

    #[test]
    fn a_burst_of_unanswered_alike_questions_spikes_and_unrelated_ones_do_not() {
        let mut seed = Seed::new();
        for minute in 0..60 {
            seed.ask(minute, "hello there", "answer", Some("greeting"));
        }
        let burst = [
            "why did the gift ship separately",
            "my gift was shipped separately why",
            "gift shipped separately from my order",
            "why is the free gift shipping separately",
            "the gift ships separately?",
            "gift came separately why",
        ];
        for (i, text) in burst.iter().enumerate() {
            seed.ask(61 + i as i64, text, "fallback", None);
        }
        for (i, text) in
            ["can I pay with crypto", "do you sell umbrellas", "where is your warehouse"].iter().enumerate()
        {
            seed.ask(61 + i as i64, text, "fallback", None);
        }
        let found = find(&seed, 70);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].topic, "questions");
        assert_eq!(found[0].count, 6);
        assert!(found[0].label.contains("gift"), "{}", found[0].label);
    }

    #[test]
    fn nothing_is_judged_without_a_baseline() {
        let mut seed = Seed::new();
        for minute in 0..8 {
            seed.ask(minute, "我要退货", "answer", Some("returns"));
        }
        assert_eq!(find(&seed, 9), Vec::new());
    }

    #[test]
    fn the_same_topic_asked_as_often_before_does_not_spike() {
        let mut seed = Seed::new();
        let texts =
            ["why did the gift ship separately", "gift shipped separately why", "gift came separately"];
        for minute in 0..70 {
            seed.ask(minute, texts[minute as usize % 3], "fallback", None);
        }
        assert_eq!(find(&seed, 70), Vec::new());
    }
}
