//! The SQLite store: one database file under the data directory, in WAL mode with full sync,
//! schema migrations embedded in the binary and applied at open.
//!
//! Writes go through one writer task with its own connection, which commits whatever writes are
//! waiting together in one transaction: a group commit. Every caller is answered only after the
//! commit that holds its write is synced. So durability costs one fsync per batch, not per
//! message, and writers never contend for SQLite's lock. Reads use a small pool.

mod embeddings;

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, Row, SqlSafeStr};
use tokio::sync::{mpsc, oneshot};

use super::{
    AgentAccount, Agents, AlertRow, Appended, BotTurn, ChatSummary, Conversation, ConversationRow,
    FeedbackRow, History, Insights, Merchants, MessageRow, NewFeedback, NewPackVersion, OpenChat,
    PackVersion, Store, StoreError, StoredMessage, TranscriptItem, Webhook,
};
use crate::domain::{
    ChatStatus, ClientMessageId, ConversationId, HandoffReason, MessageId, Millis, ResumeToken, Role, StoreId,
};

/// A query of alerts with the columns an [`AlertRow`] is read from, and then `$rest`.
macro_rules! select_alerts {
    ($rest:literal) => {
        concat!(
            "SELECT id, store, topic, label, samples, messages, count, expected, started_at, last_seen_at,
             ended_at, webhook, webhook_attempts FROM alerts ",
            $rest
        )
    };
}

/// A SQLite-backed [`Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    writes: mpsc::Sender<Write>,
}

/// Most writes committed together.
const MAX_BATCH: usize = 512;

/// What the writer task is asked to do.
#[derive(Debug)]
enum Write {
    /// Apply a write, in the next batch.
    Op(Op),
    /// Commit what is queued, close the connection, then answer.
    Close(oneshot::Sender<()>),
}

/// A write, with where to send its outcome.
#[derive(Debug)]
enum Op {
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

fn migrator() -> Migrator {
    let migration = |version, name, sql: &'static str| {
        Migration::new(version, Cow::Borrowed(name), MigrationType::Simple, sql.into_sql_str(), false)
    };
    Migrator::with_migrations(vec![
        migration(1, "conversations", include_str!("../../../migrations/sqlite/0001_conversations.sql")),
        migration(2, "merchants", include_str!("../../../migrations/sqlite/0002_merchants.sql")),
        migration(3, "agents", include_str!("../../../migrations/sqlite/0003_agents.sql")),
        migration(4, "insight", include_str!("../../../migrations/sqlite/0004_insight.sql")),
        migration(5, "alerts", include_str!("../../../migrations/sqlite/0005_alerts.sql")),
        migration(6, "touch_trigger", include_str!("../../../migrations/sqlite/0006_touch_trigger.sql")),
        migration(7, "status_index", include_str!("../../../migrations/sqlite/0007_status_index.sql")),
        migration(8, "embeddings", include_str!("../../../migrations/sqlite/0008_embeddings.sql")),
        migration(9, "identity", include_str!("../../../migrations/sqlite/0009_identity.sql")),
    ])
}

impl SqliteStore {
    /// Opens (creating if needed) `mibot.db` in `data_dir` and migrates it, with the default
    /// bound on the write-ahead log.
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(data_dir, crate::config::StorageConfig::default().max_wal_mb * 1024 * 1024).await
    }

    /// Opens `mibot.db` in `data_dir`, keeping its write-ahead log under about `max_wal` bytes.
    pub async fn open_with(data_dir: &Path, max_wal: u64) -> Result<Self, StoreError> {
        owner_only_dir(data_dir).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(data_dir.join("mibot.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // An acknowledged message must survive a power cut, not only a crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // Checkpoints run on their own task (below), not inside whichever commit happens to
            // cross the WAL's size limit: that commit, and every write queued behind it, would
            // wait for the copy into the database file.
            .pragma("wal_autocheckpoint", "0")
            // After a checkpoint resets the log, its file is cut back to this size.
            .pragma("journal_size_limit", max_wal.to_string());
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options.clone()).await?;
        migrator().run(&pool).await?;
        digest_old_resume_tokens(&pool).await?;
        owner_only_files(data_dir).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        let writer = options.connect().await?;
        let (writes, queue) = mpsc::channel(4 * MAX_BATCH);
        let log = LogBound { file: data_dir.join("mibot.db-wal"), max: max_wal };
        tokio::spawn(write_batches(writer, queue, log));
        tokio::spawn(checkpoints(pool.clone()));
        Ok(Self { pool, writes })
    }

    /// Hands a write to the writer task and waits for its committed outcome.
    async fn write<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Op,
    ) -> Result<T, StoreError> {
        let (done, outcome) = oneshot::channel();
        self.writes.send(Write::Op(make(done))).await.map_err(|_| StoreError::Closed)?;
        outcome.await.map_err(|_| StoreError::Closed)?
    }
}

/// Creates `dir` readable by its owner only (an existing directory is left as it is).
fn owner_only_dir(dir: &Path) -> std::io::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// The database and its log files: readable and writable by their owner only.
fn owner_only_files(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    for name in ["mibot.db", "mibot.db-wal", "mibot.db-shm"] {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Databases from before resume tokens were kept as digests hold the tokens themselves
/// (32 hex digits; a digest has 64): replaces each with its digest, once.
async fn digest_old_resume_tokens(pool: &SqlitePool) -> Result<(), StoreError> {
    let old: Vec<(String, String)> =
        sqlx::query_as("SELECT id, resume_token FROM conversations WHERE length(resume_token) <> 64")
            .fetch_all(pool)
            .await?;
    if old.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    for (id, token) in &old {
        sqlx::query("UPDATE conversations SET resume_token = ? WHERE id = ?")
            .bind(ResumeToken(token.clone()).digest())
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    tracing::info!(conversations = old.len(), "resume tokens are now kept as digests");
    Ok(())
}

/// Copies the WAL into the database file every second, beside the writer (a passive
/// checkpoint never blocks it), until the pool closes. Under constant writes a passive
/// checkpoint never catches up and the log only grows: the writer bounds it ([`LogBound`]).
async fn checkpoints(pool: SqlitePool) {
    let mut every = tokio::time::interval(CHECKPOINT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if pool.is_closed() {
            return;
        }
        if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            if pool.is_closed() {
                return;
            }
            tracing::warn!(%error, "checkpointing the database failed");
        }
    }
}

/// The write-ahead log's bound: the writer looks at the log's size at most every
/// [`LOG_LOOK_EVERY`] while writes keep coming, and whenever they pause; once it is over `max`
/// bytes, it empties it before the next batch.
struct LogBound {
    file: std::path::PathBuf,
    max: u64,
}

/// How often the writer looks at the log's size while it writes.
const LOG_LOOK_EVERY: Duration = Duration::from_millis(20);

/// Copies the whole log into the database and empties its file, on the writer's connection:
/// no other write can come between, and the readers' transactions are short. Writes wait for
/// it, once per `storage.max_wal_mb` written.
async fn empty_log(conn: &mut SqliteConnection) {
    let started = std::time::Instant::now();
    match sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&mut *conn).await {
        Ok(row) => {
            let busy: i64 = row.try_get(0).unwrap_or(1);
            let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            tracing::info!(
                busy,
                ms,
                "the write-ahead log reached its bound: copied into the database and emptied"
            );
        }
        Err(error) => tracing::warn!(%error, "emptying the write-ahead log failed"),
    }
}

/// How often the WAL is checkpointed.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// The writer task: takes every waiting write, applies them in one IMMEDIATE transaction,
/// commits, then answers each. If anything in the batch fails, every write of the batch fails
/// with that error and nothing of it is kept.
async fn write_batches(mut conn: SqliteConnection, mut queue: mpsc::Receiver<Write>, log: LogBound) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut looked = std::time::Instant::now();
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut closing = None;
        let mut ops = Vec::with_capacity(batch.len());
        for write in batch.drain(..) {
            match write {
                Write::Op(op) => ops.push(op),
                Write::Close(done) => closing = Some(done),
            }
        }
        let mut answers = Vec::with_capacity(ops.len());
        let mut pending = ops.into_iter();
        let committed = async {
            let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
            for op in pending.by_ref() {
                let (answer, failed) = apply(&mut tx, op).await;
                answers.push(answer);
                if let Some(error) = failed {
                    return Err(error);
                }
            }
            tx.commit().await
        }
        .await;
        match committed {
            Ok(()) => answers.into_iter().for_each(Answer::send),
            Err(error) => {
                tracing::error!(%error, writes = answers.len() + pending.len(), "a batch of writes failed to commit");
                answers.into_iter().for_each(|a| a.fail(&error));
                pending.for_each(|op| op.fail(&error));
            }
        }
        if let Some(done) = closing {
            let _ = conn.close().await;
            let _ = done.send(());
            return;
        }
        // Also whenever the writes pause, so that the last of a burst does not leave the log
        // over its bound until the next one.
        if looked.elapsed() >= LOG_LOOK_EVERY || queue.is_empty() {
            looked = std::time::Instant::now();
            if std::fs::metadata(&log.file).is_ok_and(|m| m.len() > log.max) {
                empty_log(&mut conn).await;
            }
        }
    }
}

impl Op {
    /// Answers a write that was never applied because its batch failed.
    fn fail(self, error: &sqlx::Error) {
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
enum Answer {
    Unit(oneshot::Sender<Result<(), StoreError>>, Result<(), StoreError>),
    Appended(oneshot::Sender<Result<Appended, StoreError>>, Result<Appended, StoreError>),
    Message(oneshot::Sender<Result<MessageId, StoreError>>, Result<MessageId, StoreError>),
    AppendedReply(
        oneshot::Sender<Result<(Appended, Option<MessageId>), StoreError>>,
        Result<(Appended, Option<MessageId>), StoreError>,
    ),
}

impl Answer {
    fn send(self) {
        match self {
            Answer::Unit(done, r) => drop(done.send(r)),
            Answer::Appended(done, r) => drop(done.send(r)),
            Answer::Message(done, r) => drop(done.send(r)),
            Answer::AppendedReply(done, r) => drop(done.send(r)),
        }
    }

    fn fail(self, error: &sqlx::Error) {
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
async fn apply(tx: &mut SqliteConnection, op: Op) -> (Answer, Option<sqlx::Error>) {
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

const CONVERSATION_COLUMNS: &str =
    "id, store, resume_token, status, handoff_reason, consecutive_fallbacks, product, shopper";

fn conversation_from(row: &SqliteRow) -> Result<Conversation, StoreError> {
    let id: String = row.try_get("id")?;
    let store: String = row.try_get("store")?;
    let status: String = row.try_get("status")?;
    let reason: Option<String> = row.try_get("handoff_reason")?;
    let fallbacks: i64 = row.try_get("consecutive_fallbacks")?;
    Ok(Conversation {
        id: ConversationId(uuid::Uuid::parse_str(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?),
        store: StoreId::parse(&store).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        resume_token: ResumeToken(row.try_get("resume_token")?),
        status: ChatStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("status {status:?}")))?,
        handoff_reason: match reason {
            Some(r) => {
                Some(HandoffReason::parse(&r).ok_or_else(|| StoreError::Corrupt(format!("reason {r:?}")))?)
            }
            None => None,
        },
        consecutive_fallbacks: u32::try_from(fallbacks).unwrap_or(0),
        product: row.try_get("product")?,
        shopper: row.try_get("shopper")?,
    })
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
             product = ?, updated_at = ?
         WHERE id = ?",
    )
    .bind(turn.status.as_str())
    .bind(turn.handoff_reason.map(HandoffReason::as_str))
    .bind(i64::from(turn.consecutive_fallbacks))
    .bind(turn.product.as_deref())
    .bind(turn.at.0)
    .bind(turn.conversation.to_string())
    .execute(&mut *tx)
    .await?;
    Ok(MessageId(id))
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_conversation(
        &self,
        store: &StoreId,
        product: Option<&str>,
        shopper: Option<&str>,
        at: Millis,
    ) -> Result<Conversation, StoreError> {
        let conversation = Conversation {
            id: ConversationId::new(),
            store: store.clone(),
            resume_token: ResumeToken::new(),
            status: ChatStatus::Bot,
            handoff_reason: None,
            consecutive_fallbacks: 0,
            product: product.map(str::to_owned),
            shopper: shopper.map(str::to_owned),
        };
        let stored = conversation.clone();
        self.write(|done| Op::Create(stored, at, done)).await?;
        Ok(conversation)
    }

    async fn conversation_by_token(
        &self,
        store: &StoreId,
        token: &ResumeToken,
    ) -> Result<Option<Conversation>, StoreError> {
        let sql =
            format!("SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE resume_token = ? AND store = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(token.digest())
            .bind(store.as_str())
            .fetch_optional(&self.pool)
            .await?;
        // The database holds the token's digest; the shopper holds the token.
        let found = row.as_ref().map(conversation_from).transpose()?;
        Ok(found.map(|c| Conversation { resume_token: token.clone(), ..c }))
    }

    async fn append_shopper_message(
        &self,
        conversation: ConversationId,
        client_id: &ClientMessageId,
        text: &str,
        at: Millis,
    ) -> Result<Appended, StoreError> {
        let (client_id, text) = (client_id.clone(), text.to_owned());
        self.write(|done| Op::Append(conversation, client_id, text, at, done)).await
    }

    async fn record_bot_turn(&self, turn: &BotTurn) -> Result<MessageId, StoreError> {
        let turn = Box::new(turn.clone());
        self.write(|done| Op::Turn(turn, done)).await
    }

    async fn append_shopper_message_with_reply(
        &self,
        client_id: &ClientMessageId,
        text: &str,
        at: Millis,
        reply: &BotTurn,
    ) -> Result<(Appended, Option<MessageId>), StoreError> {
        let (client_id, text, turn) = (client_id.clone(), text.to_owned(), Box::new(reply.clone()));
        self.write(|done| Op::AppendReply(client_id, text, at, turn, done)).await
    }

    async fn set_product(
        &self,
        conversation: ConversationId,
        product: Option<&str>,
    ) -> Result<(), StoreError> {
        let product = product.map(str::to_owned);
        self.write(|done| Op::Product(conversation, product, done)).await
    }

    async fn history(
        &self,
        conversation: ConversationId,
        limit: u32,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, role, text, created_at FROM
               (SELECT id, role, text, created_at FROM messages WHERE conversation_id = ? ORDER BY id DESC LIMIT ?)
             ORDER BY id",
        )
        .bind(conversation.to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let role: String = row.try_get("role")?;
                Ok(StoredMessage {
                    id: MessageId(row.try_get("id")?),
                    role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))?,
                    text: row.try_get("text")?,
                    at: Millis(row.try_get("created_at")?),
                })
            })
            .collect()
    }

    async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.writes.send(Write::Close(done)).await.is_ok() {
            let _ = closed.await;
        }
        self.pool.close().await;
    }
}

const VERSION_COLUMNS: &str =
    "store, version, format, source, fingerprint, faq_count, product_count, created_at";

fn version_from(row: &SqliteRow) -> Result<PackVersion, StoreError> {
    let store: String = row.try_get("store")?;
    let count = |name: &str| -> Result<u32, StoreError> {
        Ok(u32::try_from(row.try_get::<i64, _>(name)?).unwrap_or(0))
    };
    Ok(PackVersion {
        store: StoreId::parse(&store).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        version: count("version")?,
        format: row.try_get("format")?,
        source: row.try_get("source")?,
        fingerprint: row.try_get("fingerprint")?,
        faq: count("faq_count")?,
        products: count("product_count")?,
        created_at: Millis(row.try_get("created_at")?),
    })
}

/// Merchant writes are rare: they take the database's write lock directly (waiting out the chat
/// writer's batches through the busy timeout) rather than queueing behind chat traffic.
#[async_trait]
impl Merchants for SqliteStore {
    async fn create_store(&self, store: &StoreId, at: Millis) -> Result<bool, StoreError> {
        let done =
            sqlx::query("INSERT INTO stores (id, created_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING")
                .bind(store.as_str())
                .bind(at.0)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn identity_secret(&self, store: &StoreId) -> Result<Option<String>, StoreError> {
        let secret: Option<Option<String>> =
            sqlx::query_scalar("SELECT identity_secret FROM stores WHERE id = ?")
                .bind(store.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(secret.flatten())
    }

    async fn set_identity_secret(&self, store: &StoreId, secret: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE stores SET identity_secret = ? WHERE id = ?")
            .bind(secret)
            .bind(store.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn stores(&self) -> Result<Vec<StoreId>, StoreError> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM stores ORDER BY id").fetch_all(&self.pool).await?;
        ids.iter().map(|id| StoreId::parse(id).map_err(|e| StoreError::Corrupt(e.to_string()))).collect()
    }

    async fn add_key(
        &self,
        store: &StoreId,
        key_digest: &str,
        revoke_others: bool,
        at: Millis,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if revoke_others {
            sqlx::query("UPDATE merchant_keys SET revoked_at = ? WHERE store = ? AND revoked_at IS NULL")
                .bind(at.0)
                .bind(store.as_str())
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("INSERT INTO merchant_keys (key_hash, store, created_at) VALUES (?, ?, ?)")
            .bind(key_digest)
            .bind(store.as_str())
            .bind(at.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revoke_keys(&self, store: &StoreId, at: Millis) -> Result<u64, StoreError> {
        let done =
            sqlx::query("UPDATE merchant_keys SET revoked_at = ? WHERE store = ? AND revoked_at IS NULL")
                .bind(at.0)
                .bind(store.as_str())
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }

    async fn store_for_key(&self, key_digest: &str) -> Result<Option<StoreId>, StoreError> {
        let store: Option<String> =
            sqlx::query_scalar("SELECT store FROM merchant_keys WHERE key_hash = ? AND revoked_at IS NULL")
                .bind(key_digest)
                .fetch_optional(&self.pool)
                .await?;
        store.map(|s| StoreId::parse(&s).map_err(|e| StoreError::Corrupt(e.to_string()))).transpose()
    }

    async fn add_pack_version(
        &self,
        store: &StoreId,
        new: NewPackVersion<'_>,
        activate: bool,
        at: Millis,
    ) -> Result<PackVersion, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let last: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM pack_versions WHERE store = ?")
            .bind(store.as_str())
            .fetch_one(&mut *tx)
            .await?;
        let version = last.unwrap_or(0) + 1;
        sqlx::query(
            "INSERT INTO pack_versions
               (store, version, format, source, fingerprint, faq_count, product_count, content, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(store.as_str())
        .bind(version)
        .bind(new.format)
        .bind(new.source)
        .bind(new.fingerprint)
        .bind(i64::from(new.faq))
        .bind(i64::from(new.products))
        .bind(new.content)
        .bind(at.0)
        .execute(&mut *tx)
        .await?;
        if activate {
            set_active(&mut tx, store, version, at).await?;
        }
        tx.commit().await?;
        Ok(PackVersion {
            store: store.clone(),
            version: u32::try_from(version).unwrap_or(u32::MAX),
            format: new.format.to_owned(),
            source: new.source.to_owned(),
            fingerprint: new.fingerprint.to_owned(),
            faq: new.faq,
            products: new.products,
            created_at: at,
        })
    }

    async fn pack_versions(&self, store: &StoreId) -> Result<Vec<PackVersion>, StoreError> {
        let sql = format!("SELECT {VERSION_COLUMNS} FROM pack_versions WHERE store = ? ORDER BY version");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(store.as_str()).fetch_all(&self.pool).await?;
        rows.iter().map(version_from).collect()
    }

    async fn pack_version(
        &self,
        store: &StoreId,
        version: u32,
    ) -> Result<Option<(PackVersion, String)>, StoreError> {
        let sql =
            format!("SELECT {VERSION_COLUMNS}, content FROM pack_versions WHERE store = ? AND version = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(store.as_str())
            .bind(i64::from(version))
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| Ok((version_from(&row)?, row.try_get("content")?))).transpose()
    }

    async fn activate(&self, store: &StoreId, version: u32, at: Millis) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT version FROM pack_versions WHERE store = ? AND version = ?")
                .bind(store.as_str())
                .bind(i64::from(version))
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() {
            return Ok(false);
        }
        set_active(&mut tx, store, i64::from(version), at).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn active_versions(&self) -> Result<Vec<(StoreId, u32)>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT store, version FROM active_packs ORDER BY store")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(store, version)| {
                let store = StoreId::parse(&store).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok((store, u32::try_from(version).unwrap_or(0)))
            })
            .collect()
    }
}

fn agent_from(row: &SqliteRow) -> Result<AgentAccount, StoreError> {
    let store: String = row.try_get("store")?;
    let groups: String = row.try_get("groups")?;
    Ok(AgentAccount {
        store: StoreId::parse(&store).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        name: row.try_get("name")?,
        groups: groups.split(',').filter(|g| !g.is_empty()).map(str::to_owned).collect(),
        max_chats: u32::try_from(row.try_get::<i64, _>("max_chats")?).unwrap_or(0),
    })
}

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} {value:?}"))
}

/// Agent writes take the write lock directly, like merchant writes: a claim must know at once
/// whether it won.
#[async_trait]
impl Agents for SqliteStore {
    async fn chat_summary(&self, conversation: ConversationId) -> Result<Option<ChatSummary>, StoreError> {
        let row = sqlx::query(
            "SELECT store, status, handoff_reason, agent, rating, rating_comment FROM conversations WHERE id = ?",
        )
        .bind(conversation.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let store: String = row.try_get("store")?;
        let status: String = row.try_get("status")?;
        let reason: Option<String> = row.try_get("handoff_reason")?;
        Ok(Some(ChatSummary {
            store: StoreId::parse(&store).map_err(|_| corrupt("store", &store))?,
            status: ChatStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
            handoff_reason: reason
                .as_deref()
                .map(|r| HandoffReason::parse(r).ok_or_else(|| corrupt("reason", r)))
                .transpose()?,
            agent: row.try_get("agent")?,
            rating: row.try_get::<Option<i64>, _>("rating")?.and_then(|r| u8::try_from(r).ok()),
            rating_comment: row.try_get("rating_comment")?,
        }))
    }

    async fn add_agent(
        &self,
        agent: &AgentAccount,
        token_digest: &str,
        at: Millis,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO agents (store, name, token_hash, groups, max_chats, created_at) VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (store, name) DO NOTHING",
        )
        .bind(agent.store.as_str())
        .bind(&agent.name)
        .bind(token_digest)
        .bind(agent.groups.join(","))
        .bind(i64::from(agent.max_chats))
        .bind(at.0)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_vip(&self, store: &StoreId, shopper: &str, vip: bool, at: Millis) -> Result<(), StoreError> {
        let query = if vip {
            "INSERT INTO vip_shoppers (store, shopper, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM vip_shoppers WHERE store = ? AND shopper = ? AND ? IS NOT NULL"
        };
        sqlx::query(query).bind(store.as_str()).bind(shopper).bind(at.0).execute(&self.pool).await?;
        Ok(())
    }

    async fn is_vip(&self, conversation: ConversationId) -> Result<bool, StoreError> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM conversations c JOIN vip_shoppers v ON v.store = c.store AND v.shopper = c.shopper
             WHERE c.id = ?",
        )
        .bind(conversation.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    async fn agent_by_token(&self, token_digest: &str) -> Result<Option<AgentAccount>, StoreError> {
        let row = sqlx::query("SELECT store, name, groups, max_chats FROM agents WHERE token_hash = ?")
            .bind(token_digest)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(agent_from).transpose()
    }

    async fn set_agent_token(
        &self,
        store: &StoreId,
        name: &str,
        token_digest: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE agents SET token_hash = ? WHERE store = ? AND name = ?")
            .bind(token_digest)
            .bind(store.as_str())
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn open_chats(&self) -> Result<Vec<OpenChat>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, store, handoff_reason, priority, skill_group, COALESCE(queued_at, updated_at) AS queued_at,
                    agent, assigned_at
             FROM conversations WHERE status IN ('waiting_for_agent', 'with_agent')
             ORDER BY priority DESC, queued_at",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                let store: String = row.try_get("store")?;
                let reason: Option<String> = row.try_get("handoff_reason")?;
                Ok(OpenChat {
                    conversation: ConversationId(uuid::Uuid::parse_str(&id).map_err(|_| corrupt("id", &id))?),
                    store: StoreId::parse(&store).map_err(|_| corrupt("store", &store))?,
                    reason: reason
                        .as_deref()
                        .map(|r| HandoffReason::parse(r).ok_or_else(|| corrupt("reason", r)))
                        .transpose()?,
                    priority: row.try_get("priority")?,
                    group: row.try_get("skill_group")?,
                    queued_at: Millis(row.try_get("queued_at")?),
                    agent: row.try_get("agent")?,
                    assigned_at: row.try_get::<Option<i64>, _>("assigned_at")?.map(Millis),
                })
            })
            .collect()
    }

    async fn enqueue(
        &self,
        conversation: ConversationId,
        reason: HandoffReason,
        priority: i64,
        group: Option<&str>,
        at: Millis,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE conversations SET status = 'waiting_for_agent', handoff_reason = ?, priority = ?, skill_group = ?,
                    queued_at = ?, agent = NULL, assigned_at = NULL, updated_at = ?
             WHERE id = ?",
        )
        .bind(reason.as_str())
        .bind(priority)
        .bind(group)
        .bind(at.0)
        .bind(at.0)
        .bind(conversation.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn assign(
        &self,
        conversation: ConversationId,
        agent: &str,
        at: Millis,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE conversations SET status = 'with_agent', agent = ?, assigned_at = ?, updated_at = ?
             WHERE id = ? AND status = 'waiting_for_agent'",
        )
        .bind(agent)
        .bind(at.0)
        .bind(at.0)
        .bind(conversation.to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release(
        &self,
        conversation: ConversationId,
        status: ChatStatus,
        at: Millis,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE conversations SET status = ?, consecutive_fallbacks = 0, updated_at = ?,
                    closed_at = CASE WHEN ? = 'closed' THEN ? ELSE closed_at END
             WHERE id = ?",
        )
        .bind(status.as_str())
        .bind(at.0)
        .bind(status.as_str())
        .bind(at.0)
        .bind(conversation.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn append_notice(
        &self,
        conversation: ConversationId,
        text: &str,
        at: Millis,
    ) -> Result<MessageId, StoreError> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO messages (conversation_id, role, text, created_at) VALUES (?, 'store', ?, ?) RETURNING id",
        )
        .bind(conversation.to_string())
        .bind(text)
        .bind(at.0)
        .fetch_one(&self.pool)
        .await?;
        Ok(MessageId(id))
    }

    async fn append_agent_message(
        &self,
        conversation: ConversationId,
        agent: &str,
        text: &str,
        at: Millis,
    ) -> Result<MessageId, StoreError> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO messages (conversation_id, role, text, author, created_at) VALUES (?, 'agent', ?, ?, ?)
             RETURNING id",
        )
        .bind(conversation.to_string())
        .bind(text)
        .bind(agent)
        .bind(at.0)
        .fetch_one(&self.pool)
        .await?;
        Ok(MessageId(id))
    }

    async fn rate(
        &self,
        conversation: ConversationId,
        score: u8,
        comment: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE conversations SET rating = ?, rating_comment = ?
             WHERE id = ? AND status = 'closed' AND rating IS NULL",
        )
        .bind(i64::from(score))
        .bind(comment)
        .bind(conversation.to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn transcript(&self, conversation: ConversationId) -> Result<Vec<TranscriptItem>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, role, author, text, created_at, trace FROM messages WHERE conversation_id = ? ORDER BY id",
        )
        .bind(conversation.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let role: String = row.try_get("role")?;
                let trace: Option<String> = row.try_get("trace")?;
                Ok(TranscriptItem {
                    id: MessageId(row.try_get("id")?),
                    role: Role::parse(&role).ok_or_else(|| corrupt("role", &role))?,
                    author: row.try_get("author")?,
                    text: row.try_get("text")?,
                    at: Millis(row.try_get("created_at")?),
                    trace: trace.and_then(|t| serde_json::from_str(&t).ok()),
                })
            })
            .collect()
    }
}

#[async_trait]
impl Insights for SqliteStore {
    async fn add_feedback(&self, feedback: NewFeedback<'_>) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO feedback (store, conversation_id, message_id, source, helpful, note, author, created_at)
             SELECT c.store, m.conversation_id, m.id, ?, ?, ?, ?, ?
             FROM messages m JOIN conversations c ON c.id = m.conversation_id
             WHERE m.id = ? AND m.conversation_id = ? AND m.role = 'bot'
             ON CONFLICT (message_id, source) DO UPDATE
               SET helpful = excluded.helpful, note = excluded.note, author = excluded.author,
                   created_at = excluded.created_at",
        )
        .bind(feedback.source)
        .bind(feedback.helpful)
        .bind(feedback.note)
        .bind(feedback.author)
        .bind(feedback.at.0)
        .bind(feedback.message.0)
        .bind(feedback.conversation.to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn records(&self, store: &StoreId, since: Millis, until: Millis) -> Result<History, StoreError> {
        let parse_id =
            |id: &str| uuid::Uuid::parse_str(id).map(ConversationId).map_err(|_| corrupt("id", id));
        let rows = sqlx::query(
            "SELECT id, shopper, created_at, handoff_reason, queued_at, assigned_at, closed_at, rating
             FROM conversations WHERE store = ? AND created_at >= ? AND created_at < ? ORDER BY created_at",
        )
        .bind(store.as_str())
        .bind(since.0)
        .bind(until.0)
        .fetch_all(&self.pool)
        .await?;
        let mut conversations = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("id")?;
            let reason: Option<String> = row.try_get("handoff_reason")?;
            let at = |name: &str| -> Result<Option<Millis>, StoreError> {
                Ok(row.try_get::<Option<i64>, _>(name)?.map(Millis))
            };
            conversations.push(ConversationRow {
                id: parse_id(&id)?,
                shopper: row.try_get("shopper")?,
                created_at: Millis(row.try_get("created_at")?),
                handoff_reason: reason
                    .as_deref()
                    .map(|r| HandoffReason::parse(r).ok_or_else(|| corrupt("reason", r)))
                    .transpose()?,
                queued_at: at("queued_at")?,
                assigned_at: at("assigned_at")?,
                closed_at: at("closed_at")?,
                rating: row.try_get::<Option<i64>, _>("rating")?.and_then(|r| u8::try_from(r).ok()),
            });
        }
        let rows = sqlx::query(
            "SELECT m.id, m.conversation_id, m.role, m.text, m.kind, m.entry, m.created_at
             FROM messages m JOIN conversations c ON c.id = m.conversation_id
             WHERE c.store = ? AND c.created_at >= ? AND c.created_at < ? ORDER BY m.id",
        )
        .bind(store.as_str())
        .bind(since.0)
        .bind(until.0)
        .fetch_all(&self.pool)
        .await?;
        let mut messages = Vec::with_capacity(rows.len());
        for row in &rows {
            let conversation: String = row.try_get("conversation_id")?;
            let role: String = row.try_get("role")?;
            messages.push(MessageRow {
                id: MessageId(row.try_get("id")?),
                conversation: parse_id(&conversation)?,
                role: Role::parse(&role).ok_or_else(|| corrupt("role", &role))?,
                text: row.try_get("text")?,
                kind: row.try_get("kind")?,
                entry: row.try_get("entry")?,
                at: Millis(row.try_get("created_at")?),
            });
        }
        let rows = sqlx::query(
            "SELECT f.conversation_id, f.message_id, f.source, f.helpful, f.note, f.author, f.created_at
             FROM feedback f JOIN conversations c ON c.id = f.conversation_id
             WHERE c.store = ? AND c.created_at >= ? AND c.created_at < ? ORDER BY f.id",
        )
        .bind(store.as_str())
        .bind(since.0)
        .bind(until.0)
        .fetch_all(&self.pool)
        .await?;
        let mut feedback = Vec::with_capacity(rows.len());
        for row in &rows {
            let conversation: String = row.try_get("conversation_id")?;
            feedback.push(FeedbackRow {
                conversation: parse_id(&conversation)?,
                message: MessageId(row.try_get("message_id")?),
                source: row.try_get("source")?,
                helpful: row.try_get("helpful")?,
                note: row.try_get("note")?,
                author: row.try_get("author")?,
                at: Millis(row.try_get("created_at")?),
            });
        }
        let dismissed: Vec<i64> =
            sqlx::query_scalar("SELECT message_id FROM dismissed_questions WHERE store = ?")
                .bind(store.as_str())
                .fetch_all(&self.pool)
                .await?;
        Ok(History {
            conversations,
            messages,
            feedback,
            dismissed: dismissed.into_iter().map(MessageId).collect(),
        })
    }

    async fn dismiss(&self, store: &StoreId, messages: &[MessageId], at: Millis) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for message in messages {
            sqlx::query(
                "INSERT INTO dismissed_questions (store, message_id, created_at)
                 SELECT c.store, m.id, ? FROM messages m JOIN conversations c ON c.id = m.conversation_id
                 WHERE m.id = ? AND c.store = ?
                 ON CONFLICT DO NOTHING",
            )
            .bind(at.0)
            .bind(message.0)
            .bind(store.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn open_alerts(&self, store: &StoreId) -> Result<Vec<AlertRow>, StoreError> {
        let rows = sqlx::query(select_alerts!("WHERE store = ? AND ended_at IS NULL ORDER BY id"))
            .bind(store.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(alert_row).collect()
    }

    async fn alerts(&self, store: &StoreId, since: Millis) -> Result<Vec<AlertRow>, StoreError> {
        let rows = sqlx::query(select_alerts!("WHERE store = ? AND started_at >= ? ORDER BY id DESC"))
            .bind(store.as_str())
            .bind(since.0)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(alert_row).collect()
    }

    async fn alert(&self, store: &StoreId, id: i64) -> Result<Option<AlertRow>, StoreError> {
        let row = sqlx::query(select_alerts!("WHERE store = ? AND id = ?"))
            .bind(store.as_str())
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(alert_row).transpose()
    }

    async fn raise_alert(&self, alert: &AlertRow) -> Result<i64, StoreError> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO alerts (store, topic, label, samples, messages, count, expected, started_at, last_seen_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&alert.store)
        .bind(&alert.topic)
        .bind(&alert.label)
        .bind(json_text(&alert.samples))
        .bind(json_text(&alert.messages))
        .bind(i64::try_from(alert.count).unwrap_or(i64::MAX))
        .bind(alert.expected)
        .bind(alert.started_at.0)
        .bind(alert.last_seen_at.0)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    async fn touch_alert(
        &self,
        id: i64,
        count: u64,
        messages: &[MessageId],
        at: Millis,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE alerts SET count = MAX(count, ?), messages = ?, last_seen_at = ? WHERE id = ?")
            .bind(i64::try_from(count).unwrap_or(i64::MAX))
            .bind(json_text(&messages))
            .bind(at.0)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn end_alert(&self, id: i64, at: Millis) -> Result<(), StoreError> {
        sqlx::query("UPDATE alerts SET ended_at = ? WHERE id = ? AND ended_at IS NULL")
            .bind(at.0)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn webhook_result(&self, id: i64, status: &str, attempts: u32) -> Result<(), StoreError> {
        sqlx::query("UPDATE alerts SET webhook = ?, webhook_attempts = ? WHERE id = ?")
            .bind(status)
            .bind(i64::from(attempts))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn webhook(&self, store: &StoreId) -> Result<Option<Webhook>, StoreError> {
        let row = sqlx::query("SELECT url, secret FROM webhooks WHERE store = ?")
            .bind(store.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| Ok(Webhook { url: row.try_get("url")?, secret: row.try_get("secret")? })).transpose()
    }

    async fn set_webhook(&self, store: &StoreId, webhook: &Webhook, at: Millis) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO webhooks (store, url, secret, updated_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (store) DO UPDATE SET url = excluded.url, secret = excluded.secret,
             updated_at = excluded.updated_at",
        )
        .bind(store.as_str())
        .bind(&webhook.url)
        .bind(&webhook.secret)
        .bind(at.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_webhook(&self, store: &StoreId) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM webhooks WHERE store = ?")
            .bind(store.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn open_conversations_of(
        &self,
        store: &StoreId,
        messages: &[MessageId],
    ) -> Result<Vec<ConversationId>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT c.id FROM messages m JOIN conversations c ON c.id = m.conversation_id
             WHERE m.id IN (SELECT value FROM json_each(?)) AND c.store = ? AND c.status != 'closed'
             ORDER BY c.id",
        )
        .bind(json_text(&messages))
        .bind(store.as_str())
        .fetch_all(&self.pool)
        .await?;
        ids.iter()
            .map(|id| {
                uuid::Uuid::parse_str(id).map(ConversationId).map_err(|_| corrupt("conversation id", id))
            })
            .collect()
    }
}

fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "[]".into())
}

fn alert_row(row: &sqlx::sqlite::SqliteRow) -> Result<AlertRow, StoreError> {
    let samples: String = row.try_get("samples")?;
    let messages: String = row.try_get("messages")?;
    let count: i64 = row.try_get("count")?;
    let attempts: i64 = row.try_get("webhook_attempts")?;
    Ok(AlertRow {
        id: row.try_get("id")?,
        store: row.try_get("store")?,
        topic: row.try_get("topic")?,
        label: row.try_get("label")?,
        samples: serde_json::from_str(&samples).map_err(|_| corrupt("alert samples", &samples))?,
        messages: serde_json::from_str(&messages).map_err(|_| corrupt("alert messages", &messages))?,
        count: u64::try_from(count).unwrap_or(0),
        expected: row.try_get("expected")?,
        started_at: Millis(row.try_get("started_at")?),
        last_seen_at: Millis(row.try_get("last_seen_at")?),
        ended_at: row.try_get::<Option<i64>, _>("ended_at")?.map(Millis),
        webhook: row.try_get("webhook")?,
        webhook_attempts: u32::try_from(attempts).unwrap_or(0),
    })
}

async fn set_active(
    tx: &mut SqliteConnection,
    store: &StoreId,
    version: i64,
    at: Millis,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO active_packs (store, version, activated_at) VALUES (?, ?, ?)
         ON CONFLICT (store) DO UPDATE SET version = excluded.version, activated_at = excluded.activated_at",
    )
    .bind(store.as_str())
    .bind(version)
    .bind(at.0)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_stored_before_digests_still_resume_after_an_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let store_id = StoreId::parse("demo").unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let conv = store.create_conversation(&store_id, None, None, Millis(1)).await.unwrap();
        // As an earlier version kept it: the token itself.
        sqlx::query("UPDATE conversations SET resume_token = ? WHERE id = ?")
            .bind(&conv.resume_token.0)
            .bind(conv.id.to_string())
            .execute(&store.pool)
            .await
            .unwrap();
        store.close().await;
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let found = store.conversation_by_token(&store_id, &conv.resume_token).await.unwrap().unwrap();
        assert_eq!(found.id, conv.id);
        let kept: String = sqlx::query_scalar("SELECT resume_token FROM conversations")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(kept, conv.resume_token.digest());
        store.close().await;
    }

    #[tokio::test]
    async fn messages_are_stored_once_per_client_id_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store_id = StoreId::parse("demo").unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let conv = store.create_conversation(&store_id, None, None, Millis(1)).await.unwrap();
        let cid = ClientMessageId("c1".into());
        let first = store.append_shopper_message(conv.id, &cid, "你好", Millis(2)).await.unwrap();
        let again = store.append_shopper_message(conv.id, &cid, "你好", Millis(3)).await.unwrap();
        assert!(!first.duplicate && again.duplicate);
        assert_eq!(first.id, again.id);
        store.close().await;

        let store = SqliteStore::open(dir.path()).await.unwrap();
        let found = store.conversation_by_token(&store_id, &conv.resume_token).await.unwrap();
        assert_eq!(found.as_ref().map(|c| c.id), Some(conv.id));
        let other = StoreId::parse("other").unwrap();
        assert!(store.conversation_by_token(&other, &conv.resume_token).await.unwrap().is_none());
        let history = store.history(conv.id, 10).await.unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].text, "你好");
    }

    #[tokio::test]
    async fn a_failed_write_is_reported_and_the_writer_carries_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        // A reply to a conversation that does not exist breaks a foreign key: the batch fails.
        let orphan = BotTurn {
            conversation: ConversationId::new(),
            in_reply_to: MessageId(1),
            text: "hi".into(),
            trace: serde_json::Value::Null,
            status: ChatStatus::Bot,
            changes_state: true,
            handoff_reason: None,
            consecutive_fallbacks: 0,
            product: None,
            kind: "answer",
            entry: None,
            at: Millis(1),
        };
        let error = store.record_bot_turn(&orphan).await.unwrap_err();
        assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");

        let store_id = StoreId::parse("demo").unwrap();
        let conv = store.create_conversation(&store_id, None, None, Millis(2)).await.unwrap();
        let cid = ClientMessageId("c1".into());
        let appended = store.append_shopper_message(conv.id, &cid, "还在吗", Millis(3)).await.unwrap();
        assert!(!appended.duplicate);
        let missing = store.append_shopper_message(ConversationId::new(), &cid, "x", Millis(4)).await;
        assert!(matches!(missing, Err(StoreError::NoConversation(_))));
        store.close().await;
    }
}
