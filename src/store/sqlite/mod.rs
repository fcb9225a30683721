//! The SQLite store: one database file under the data directory, in WAL mode with full sync,
//! schema migrations embedded in the binary and applied at open.
//!
//! Writes go through one writer task with its own connection, which commits whatever writes are
//! waiting together in one transaction: a group commit. Every caller is answered only after the
//! commit that holds its write is synced. So durability costs one fsync per batch, not per
//! message, and writers never contend for SQLite's lock. Reads use a small pool.

mod agents;
mod chat;
mod embeddings;
mod insights;
mod merchants;
mod writes;

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, Row, SqlSafeStr};
use tokio::sync::{mpsc, oneshot};

use self::writes::{Answer, Op, apply};
use super::StoreError;
use crate::domain::ResumeToken;

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
        migration(10, "settings", include_str!("../../../migrations/sqlite/0010_settings.sql")),
        migration(11, "actions", include_str!("../../../migrations/sqlite/0011_actions.sql")),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ChatStatus, ClientMessageId, ConversationId, MessageId, Millis, StoreId};
    use crate::store::{BotTurn, Store};

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
            task: Default::default(),
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
