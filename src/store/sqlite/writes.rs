//! The chat path's writes, applied by the writer task inside one batch's transaction.

use sqlx::Row;
use sqlx::sqlite::SqliteConnection;
use tokio::sync::oneshot;

use crate::domain::{ChatStatus, ClientMessageId, ConversationId, HandoffReason, MessageId, Millis, Role};
use crate::store::{Appended, BotTurn, Conversation, StoreError};

/// A write, with where to send its outcome.
#[derive(Debug)]
pub(super) enum Op {
    Create(Conversation, Millis, oneshot::Sender<Result<(), StoreError>>),
    Append(ConversationId, ClientMessageId, String, Millis, oneshot::Sender<Result<Appended, StoreError>>),
    Turn(Box<BotTurn>, oneshot::Sender<Result<MessageId, StoreError>>),
    AppendReply(
        ClientMessageId,
        String,
        Millis,
        Box<BotTurn>,
        oneshot::Sender<Result<(Appended, Option<MessageId>), StoreError>>,
    ),
    Product(ConversationId, Option<String>, oneshot::Sender<Result<(), StoreError>>),
}

impl Op {
    /// Answers a write that was never applied because its batch failed.
    pub(super) fn fail(self, error: &sqlx::Error) {
        let failed = || StoreError::Unavailable(error.to_string());
        match self {
            Op::Create(_, _, done) | Op::Product(_, _, done) => drop(done.send(Err(failed()))),
            Op::Append(_, _, _, _, done) => drop(done.send(Err(failed()))),
            Op::Turn(_, done) => drop(done.send(Err(failed()))),
            Op::AppendReply(_, _, _, _, done) => drop(done.send(Err(failed()))),
        }
    }
}

/// A write's outcome, held until its batch commits.
pub(super) enum Answer {
    Unit(oneshot::Sender<Result<(), StoreError>>, Result<(), StoreError>),
    Appended(oneshot::Sender<Result<Appended, StoreError>>, Result<Appended, StoreError>),
    Message(oneshot::Sender<Result<MessageId, StoreError>>, Result<MessageId, StoreError>),
    AppendedReply(
        oneshot::Sender<Result<(Appended, Option<MessageId>), StoreError>>,
        Result<(Appended, Option<MessageId>), StoreError>,
    ),
}

impl Answer {
    pub(super) fn send(self) {
        match self {
            Answer::Unit(done, r) => drop(done.send(r)),
            Answer::Appended(done, r) => drop(done.send(r)),
            Answer::Message(done, r) => drop(done.send(r)),
            Answer::AppendedReply(done, r) => drop(done.send(r)),
        }
    }

    pub(super) fn fail(self, error: &sqlx::Error) {
        let failed = || StoreError::Unavailable(error.to_string());
        match self {
            Answer::Unit(done, _) => drop(done.send(Err(failed()))),
            Answer::Appended(done, _) => drop(done.send(Err(failed()))),
            Answer::Message(done, _) => drop(done.send(Err(failed()))),
            Answer::AppendedReply(done, _) => drop(done.send(Err(failed()))),
        }
    }
}

/// Applies one write inside the batch's transaction. Its answer always comes back (so its
/// caller is told), with the SQL error, if any, that must abort the batch. A missing
/// conversation is that write's own outcome, not a batch failure.
pub(super) async fn apply(tx: &mut SqliteConnection, op: Op) -> (Answer, Option<sqlx::Error>) {
    fn split<T>(r: Result<T, sqlx::Error>) -> (Result<T, StoreError>, Option<sqlx::Error>) {
        match r {
            Ok(v) => (Ok(v), None),
            Err(e) => (Err(StoreError::Unavailable(e.to_string())), Some(e)),
        }
    }
    match op {
        Op::Create(conversation, at, done) => {
            let (r, e) = split(insert_conversation(tx, &conversation, at).await);
            (Answer::Unit(done, r), e)
        }
        Op::Append(conversation, client_id, text, at, done) => {
            let (r, e) = split(append(tx, conversation, &client_id, &text, at).await);
            (Answer::Appended(done, r.and_then(|inner| inner)), e)
        }
        Op::Turn(turn, done) => {
            let (r, e) = split(record_turn(tx, &turn).await);
            (Answer::Message(done, r), e)
        }
        Op::AppendReply(client_id, text, at, mut turn, done) => {
            let stored = async {
                let appended = match append(tx, turn.conversation, &client_id, &text, at).await? {
                    Ok(appended) => appended,
                    Err(e) => return Ok(Err(e)),
                };
                if appended.duplicate || appended.status != ChatStatus::Bot {
                    return Ok(Ok((appended, None)));
                }
                turn.in_reply_to = appended.id;
                let reply = record_turn(tx, &turn).await?;
                Ok(Ok((appended, Some(reply))))
            }
            .await;
            let (r, e) = split(stored);
            (Answer::AppendedReply(done, r.and_then(|inner| inner)), e)
        }
        Op::Product(conversation, product, done) => {
            let update = sqlx::query("UPDATE conversations SET product = ? WHERE id = ?")
                .bind(product)
                .bind(conversation.to_string())
                .execute(&mut *tx)
                .await
                .map(|_| ());
            let (r, e) = split(update);
            (Answer::Unit(done, r), e)
        }
    }
}

async fn insert_conversation(
    tx: &mut SqliteConnection,
    c: &Conversation,
    at: Millis,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO conversations (id, store, resume_token, status, product, shopper, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(c.id.to_string())
    .bind(c.store.as_str())
    .bind(c.resume_token.digest())
    .bind(c.status.as_str())
    .bind(c.product.as_deref())
    .bind(c.shopper.as_deref())
    .bind(at.0)
    .bind(at.0)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn append(
    tx: &mut SqliteConnection,
    conversation: ConversationId,
    client_id: &ClientMessageId,
    text: &str,
    at: Millis,
) -> Result<Result<Appended, StoreError>, sqlx::Error> {
    // One statement in the common case: the message goes in only if the conversation exists,
    // and comes back with the conversation's status as this transaction sees it.
    let inserted = sqlx::query(
        "INSERT INTO messages (conversation_id, role, text, client_msg_id, created_at)
         SELECT id, ?, ?, ?, ? FROM conversations WHERE id = ?
         ON CONFLICT (conversation_id, client_msg_id) DO NOTHING
         RETURNING id, (SELECT status FROM conversations WHERE id = messages.conversation_id) AS status",
    )
    .bind(Role::Shopper.as_str())
    .bind(text)
    .bind(&client_id.0)
    .bind(at.0)
    .bind(conversation.to_string())
    .fetch_optional(&mut *tx)
    .await?;
    let parse_status = |status: String| {
        ChatStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("status {status:?}")))
    };
    if let Some(row) = inserted {
        let status = match parse_status(row.try_get("status")?) {
            Ok(status) => status,
            Err(e) => return Ok(Err(e)),
        };
        return Ok(Ok(Appended { id: MessageId(row.try_get("id")?), duplicate: false, status }));
    }
    // Nothing stored: the conversation does not exist, or the message is a repeat.
    let row = sqlx::query(
        "SELECT (SELECT status FROM conversations WHERE id = ?1) AS status,
                (SELECT id FROM messages WHERE conversation_id = ?1 AND client_msg_id = ?2) AS id",
    )
    .bind(conversation.to_string())
    .bind(&client_id.0)
    .fetch_one(&mut *tx)
    .await?;
    let status: Option<String> = row.try_get("status")?;
    let id: Option<i64> = row.try_get("id")?;
    Ok(match (status, id) {
        (None, _) => Err(StoreError::NoConversation(conversation)),
        (Some(status), Some(id)) => {
            parse_status(status).map(|status| Appended { id: MessageId(id), duplicate: true, status })
        }
        (Some(_), None) => {
            Err(StoreError::Corrupt(format!("message {:?} was neither stored nor found", client_id.0)))
        }
    })
}

async fn record_turn(tx: &mut SqliteConnection, turn: &BotTurn) -> Result<MessageId, sqlx::Error> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO messages (conversation_id, role, text, in_reply_to, trace, kind, entry, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(turn.conversation.to_string())
    .bind(Role::Bot.as_str())
    .bind(&turn.text)
    .bind(turn.in_reply_to.0)
    .bind(turn.trace.to_string())
    .bind(turn.kind)
    .bind(turn.entry.as_deref())
    .bind(turn.at.0)
    .fetch_one(&mut *tx)
    .await?;
    if !turn.changes_state {
        // updated_at follows the message (a trigger).
        return Ok(MessageId(id));
    }
    sqlx::query(
        "UPDATE conversations
         SET status = ?, handoff_reason = COALESCE(?, handoff_reason), consecutive_fallbacks = ?,
             product = ?, task = ?, updated_at = ?
         WHERE id = ?",
    )
    .bind(turn.status.as_str())
    .bind(turn.handoff_reason.map(HandoffReason::as_str))
    .bind(i64::from(turn.consecutive_fallbacks))
    .bind(turn.product.as_deref())
    .bind(turn.task.to_stored())
    .bind(turn.at.0)
    .bind(turn.conversation.to_string())
    .execute(&mut *tx)
    .await?;
    Ok(MessageId(id))
}
