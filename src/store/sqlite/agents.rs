//! [`Agents`]: agents' accounts and the escalation queue, for [`SqliteStore`].

use async_trait::async_trait;

use super::SqliteStore;
use crate::domain::{ChatStatus, ConversationId, HandoffReason, MessageId, Millis, StoreId};
use crate::store::rows::{self, OPEN_CHAT_COLUMNS};
use crate::store::{AgentAccount, Agents, ChatSummary, OpenChat, StoreError, TranscriptItem};

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
        row.as_ref().map(rows::chat_summary).transpose()
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
        row.as_ref().map(rows::agent).transpose()
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
        let sql = format!(
            "SELECT {OPEN_CHAT_COLUMNS} FROM conversations WHERE status IN ('waiting_for_agent', 'with_agent')
             ORDER BY priority DESC, queued_at"
        );
        let found = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
        found.iter().map(rows::open_chat).collect()
    }

    async fn open_chat(&self, conversation: ConversationId) -> Result<Option<OpenChat>, StoreError> {
        let sql = format!(
            "SELECT {OPEN_CHAT_COLUMNS} FROM conversations
             WHERE id = ? AND status IN ('waiting_for_agent', 'with_agent')"
        );
        let found = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(conversation.to_string())
            .fetch_optional(&self.pool)
            .await?;
        found.as_ref().map(rows::open_chat).transpose()
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
            "UPDATE conversations SET status = ?, consecutive_fallbacks = 0, task = NULL, updated_at = ?,
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
        let found = sqlx::query(
            "SELECT id, role, author, text, created_at, trace, kind FROM messages WHERE conversation_id = ? ORDER BY id",
        )
        .bind(conversation.to_string())
        .fetch_all(&self.pool)
        .await?;
        found.iter().map(rows::transcript_item).collect()
    }
}
