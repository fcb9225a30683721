//! The conversations of a range as a spreadsheet: one row each, with whether the bot resolved
//! it and, if not, why (the same outcome the resolution rate counts).

use std::collections::HashMap;

use time::{OffsetDateTime, UtcOffset};

use super::{Unresolved, outcomes};
use crate::domain::{ConversationId, Millis, Role};
use crate::store::History;

/// The columns, in order.
const COLUMNS: [&str; 11] = [
    "conversation",
    "started",
    "shopper",
    "first question",
    "shopper messages",
    "bot replies",
    "agent messages",
    "resolution",
    "reason",
    "handoff reason",
    "rating",
];

/// The conversations that started in `[since, until)` with a shopper message, oldest first, as
/// CSV. Times are RFC 3339 at `utc_offset_minutes` (the store's time zone).
pub fn conversations_csv(
    history: &History,
    since: Millis,
    until: Millis,
    utc_offset_minutes: i32,
) -> Result<String, csv::Error> {
    let outcome = outcomes(history);
    #[derive(Default)]
    struct Counts<'a> {
        shopper: u64,
        bot: u64,
        agent: u64,
        first: Option<&'a str>,
    }
    let mut counts: HashMap<ConversationId, Counts<'_>> = HashMap::new();
    for m in &history.messages {
        let c = counts.entry(m.conversation).or_default();
        match m.role {
            Role::Shopper => {
                c.shopper += 1;
                c.first.get_or_insert(m.text.as_str());
            }
            Role::Bot => c.bot += 1,
            Role::Agent => c.agent += 1,
            _ => {}
        }
    }
    let offset = UtcOffset::from_whole_seconds(utc_offset_minutes * 60).unwrap_or(UtcOffset::UTC);
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(COLUMNS)?;
    let in_range = |at: Millis| at >= since && at < until;
    for c in history.conversations.iter().filter(|c| in_range(c.created_at)) {
        let Some(cause) = outcome.get(&c.id) else { continue };
        let n = counts.get(&c.id);
        let count = |f: fn(&Counts<'_>) -> u64| n.map_or(0, f).to_string();
        writer.write_record([
            c.id.0.to_string(),
            instant(c.created_at, offset),
            c.shopper.clone().unwrap_or_default(),
            n.and_then(|n| n.first).unwrap_or_default().to_owned(),
            count(|n| n.shopper),
            count(|n| n.bot),
            count(|n| n.agent),
            if cause.is_some() { "unresolved" } else { "resolved" }.to_owned(),
            cause.map(Unresolved::as_str).unwrap_or_default().to_owned(),
            c.handoff_reason.map(|r| r.as_str()).unwrap_or_default().to_owned(),
            c.rating.map(|r| r.to_string()).unwrap_or_default(),
        ])?;
    }
    let bytes = writer.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8(bytes).unwrap_or_default())
}

fn instant(at: Millis, offset: UtcOffset) -> String {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(at.0) * 1_000_000)
        .map(|t| t.to_offset(offset))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_session_with_its_resolution_and_reason() {
        let (history, ids) = super::super::tests::seeded();
        let text = conversations_csv(&history, Millis(0), Millis(48 * 3600 * 1000), 8 * 60).unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), COLUMNS);
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        // Six sessions; the conversation without a shopper message is not one.
        assert_eq!(rows.len(), 6, "{text}");
        let row = |i: usize| rows.iter().find(|r| r[0] == ids[i].0.to_string()).unwrap();
        assert_eq!(&row(0)[1], "1970-01-01T08:00:00+08:00");
        assert_eq!((&row(0)[7], &row(0)[8]), ("resolved", ""));
        let handed = row(1);
        assert_eq!((&handed[4], &handed[5], &handed[6]), ("1", "1", "1"));
        assert_eq!(
            (&handed[7], &handed[8], &handed[9], &handed[10]),
            ("unresolved", "handed_over", "asked_for_human", "4")
        );
        assert_eq!((&row(2)[7], &row(2)[8]), ("unresolved", "fallback"));
        assert_eq!(&row(3)[8], "disliked");
        assert_eq!((&row(4)[2], &row(4)[8]), ("s1", "asked_again"));
        assert_eq!((&row(5)[7], &row(5)[3]), ("resolved", "m13"));
    }
}
