//! The SQLite store: one database file under the data directory, in WAL mode with full sync,
//! schema migrations embedded in the binary and applied at open.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlSafeStr};

use super::{Appended, BotTurn, Conversation, Store, StoreError, StoredMessage};
use crate::domain::{
    ChatStatus, ClientMessageId, ConversationId, HandoffReason, MessageId, Millis, ResumeToken, Role, StoreId,
};

/// A SQLite-backed [`Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

fn migrator() -> Migrator {
    Migrator::with_migrations(vec![Migration::new(
        1,
        Cow::Borrowed("conversations"),
        MigrationType::Simple,
        include_str!("../../migrations/sqlite/0001_conversations.sql").into_sql_str(),
        false,
    )])
}

impl SqliteStore {
    /// Opens (creating if needed) `mibot.db` in `data_dir` and migrates it.
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(data_dir.join("mibot.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // An acknowledged message must survive a power cut, not only a crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        migrator().run(&pool).await?;
        Ok(Self { pool })
    }
}

const CONVERSATION_COLUMNS: &str =
    "id, store, resume_token, status, handoff_reason, consecutive_fallbacks, product";

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
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_conversation(
        &self,
        store: &StoreId,
        product: Option<&str>,
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
        };
        sqlx::query(
            "INSERT INTO conversations (id, store, resume_token, status, product, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(conversation.id.to_string())
        .bind(store.as_str())
        .bind(&conversation.resume_token.0)
        .bind(ChatStatus::Bot.as_str())
        .bind(product)
        .bind(at.0)
        .bind(at.0)
        .execute(&self.pool)
        .await?;
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
            .bind(&token.0)
            .bind(store.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(conversation_from).transpose()
    }

    async fn append_shopper_message(
        &self,
        conversation: ConversationId,
        client_id: &ClientMessageId,
        text: &str,
        at: Millis,
    ) -> Result<Appended, StoreError> {
        let mut tx = self.pool.begin().await?;
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM conversations WHERE id = ?")
            .bind(conversation.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let status = status.ok_or(StoreError::NoConversation(conversation))?;
        let status =
            ChatStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("status {status:?}")))?;
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO messages (conversation_id, role, text, client_msg_id, created_at)
             VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (conversation_id, client_msg_id) DO NOTHING
             RETURNING id",
        )
        .bind(conversation.to_string())
        .bind(Role::Shopper.as_str())
        .bind(text)
        .bind(&client_id.0)
        .bind(at.0)
        .fetch_optional(&mut *tx)
        .await?;
        let appended = match inserted {
            Some(id) => {
                sqlx::query("UPDATE conversations SET updated_at = ? WHERE id = ?")
                    .bind(at.0)
                    .bind(conversation.to_string())
                    .execute(&mut *tx)
                    .await?;
                Appended { id: MessageId(id), duplicate: false, status }
            }
            None => {
                let id: i64 = sqlx::query_scalar(
                    "SELECT id FROM messages WHERE conversation_id = ? AND client_msg_id = ?",
                )
                .bind(conversation.to_string())
                .bind(&client_id.0)
                .fetch_one(&mut *tx)
                .await?;
                Appended { id: MessageId(id), duplicate: true, status }
            }
        };
        tx.commit().await?;
        Ok(appended)
    }

    async fn record_bot_turn(&self, turn: &BotTurn) -> Result<MessageId, StoreError> {
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO messages (conversation_id, role, text, in_reply_to, trace, created_at)
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(turn.conversation.to_string())
        .bind(Role::Bot.as_str())
        .bind(&turn.text)
        .bind(turn.in_reply_to.0)
        .bind(turn.trace.to_string())
        .bind(turn.at.0)
        .fetch_one(&mut *tx)
        .await?;
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
        tx.commit().await?;
        Ok(MessageId(id))
    }

    async fn set_product(
        &self,
        conversation: ConversationId,
        product: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE conversations SET product = ? WHERE id = ?")
            .bind(product)
            .bind(conversation.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
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
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_are_stored_once_per_client_id_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store_id = StoreId::parse("demo").unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let conv = store.create_conversation(&store_id, None, Millis(1)).await.unwrap();
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
}
