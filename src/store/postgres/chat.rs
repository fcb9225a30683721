//! [`Store`]: conversations and their messages, for [`PostgresStore`].

use async_trait::async_trait;
use sqlx::postgres::PgConnection;

use super::PostgresStore;
use crate::domain::{
    ChatStatus, ClientMessageId, ConversationId, HandoffReason, MessageId, Millis, ResumeToken, Role, StoreId,
};
use crate::store::rows::{self, CONVERSATION_COLUMNS};
use crate::store::{Appended, BotTurn, Conversation, Store, StoreError, StoredMessage};

/// Stores a shopper message once per client id, holding the conversation's row lock until the
/// transaction ends: a bot reply decided on another node waits for it.
async fn append(
    tx: &mut PgConnection,
    conversation: ConversationId,
    client_id: &ClientMessageId,
    text: &str,
    at: Millis,
) -> Result<Appended, StoreError> {
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM conversations WHERE id = $1 FOR UPDATE")
            .bind(conversation.to_string())
            .fetch_optional(&mut *tx)
            .await?;
    let Some(status) = status else { return Err(StoreError::NoConversation(conversation)) };
    let status = ChatStatus::parse(&status).ok_or_else(|| rows::corrupt("status", &status))?;
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO messages (conversation_id, role, text, client_msg_id, created_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (conversation_id, client_msg_id) DO NOTHING RETURNING id",
    )
    .bind(conversation.to_string())
    .bind(Role::Shopper.as_str())
    .bind(text)
    .bind(&client_id.0)
    .bind(at.0)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(id) = inserted {
        return Ok(Appended { id: MessageId(id), duplicate: false, status });
    }
    let id: i64 =
        sqlx::query_scalar("SELECT id FROM messages WHERE conversation_id = $1 AND client_msg_id = $2")
            .bind(conversation.to_string())
            .bind(&client_id.0)
            .fetch_one(&mut *tx)
            .await?;
    Ok(Appended { id: MessageId(id), duplicate: true, status })
}

async fn record_turn(tx: &mut PgConnection, turn: &BotTurn) -> Result<MessageId, StoreError> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO messages (conversation_id, role, text, in_reply_to, trace, kind, entry, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
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
    if turn.changes_state {
        sqlx::query(
            "UPDATE conversations
             SET status = $1, handoff_reason = COALESCE($2, handoff_reason), consecutive_fallbacks = $3,
                 product = $4, task = $5, updated_at = $6
             WHERE id = $7",
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
    }
    Ok(MessageId(id))
}

#[async_trait]
impl Store for PostgresStore {
    async fn create_conversation(
        &self,
        store: &StoreId,
        product: Option<&str>,
        shopper: Option<&str>,
        at: Millis,
    ) -> Result<Conversation, StoreError> {
        let c = Conversation::start(store, product, shopper);
        sqlx::query(
            "INSERT INTO conversations (id, store, resume_token, status, product, shopper, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(c.id.to_string())
        .bind(c.store.as_str())
        .bind(c.resume_token.digest())
        .bind(c.status.as_str())
        .bind(c.product.as_deref())
        .bind(c.shopper.as_deref())
        .bind(at.0)
        .execute(&self.pool)
        .await?;
        Ok(c)
    }

    async fn conversation_by_token(
        &self,
        store: &StoreId,
        token: &ResumeToken,
    ) -> Result<Option<Conversation>, StoreError> {
        let sql = format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE resume_token = $1 AND store = $2"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(token.digest())
            .bind(store.as_str())
            .fetch_optional(&self.pool)
            .await?;
        let found = row.as_ref().map(rows::conversation).transpose()?;
        Ok(found.map(|c| Conversation { resume_token: token.clone(), ..c }))
    }

    async fn append_shopper_message(
        &self,
        conversation: ConversationId,
        client_id: &ClientMessageId,
        text: &str,
        at: Millis,
    ) -> Result<Appended, StoreError> {
        let mut tx = self.pool.begin().await?;
        let appended = append(&mut tx, conversation, client_id, text, at).await?;
        tx.commit().await?;
        Ok(appended)
    }

    async fn record_bot_turn(&self, turn: &BotTurn) -> Result<MessageId, StoreError> {
        let mut tx = self.pool.begin().await?;
        let id = record_turn(&mut tx, turn).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn append_shopper_message_with_reply(
        &self,
        client_id: &ClientMessageId,
        text: &str,
        at: Millis,
        reply: &BotTurn,
    ) -> Result<(Appended, Option<MessageId>), StoreError> {
        let mut tx = self.pool.begin().await?;
        let appended = append(&mut tx, reply.conversation, client_id, text, at).await?;
        let replied = if appended.duplicate || appended.status != ChatStatus::Bot {
            None
        } else {
            let turn = BotTurn { in_reply_to: appended.id, ..reply.clone() };
            Some(record_turn(&mut tx, &turn).await?)
        };
        tx.commit().await?;
        Ok((appended, replied))
    }

    async fn set_product(
        &self,
        conversation: ConversationId,
        product: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE conversations SET product = $1 WHERE id = $2")
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
        let found = sqlx::query(
            "SELECT id, role, text, created_at FROM
               (SELECT id, role, text, created_at FROM messages WHERE conversation_id = $1
                ORDER BY id DESC LIMIT $2) AS recent
             ORDER BY id",
        )
        .bind(conversation.to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        found.iter().map(rows::stored_message).collect()
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
