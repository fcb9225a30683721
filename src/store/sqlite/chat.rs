//! [`Store`]: conversations and their messages, for [`SqliteStore`].

use async_trait::async_trait;
use tokio::sync::oneshot;

use super::writes::Op;
use super::{SqliteStore, Write};
use crate::domain::{ClientMessageId, ConversationId, MessageId, Millis, ResumeToken, StoreId};
use crate::store::rows::{self, CONVERSATION_COLUMNS};
use crate::store::{Appended, BotTurn, Conversation, Store, StoreError, StoredMessage};

#[async_trait]
impl Store for SqliteStore {
    async fn create_conversation(
        &self,
        store: &StoreId,
        product: Option<&str>,
        shopper: Option<&str>,
        at: Millis,
    ) -> Result<Conversation, StoreError> {
        let conversation = Conversation::start(store, product, shopper);
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
        let found = sqlx::query(
            "SELECT id, role, text, created_at FROM
               (SELECT id, role, text, created_at FROM messages WHERE conversation_id = ? ORDER BY id DESC LIMIT ?)
             ORDER BY id",
        )
        .bind(conversation.to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        found.iter().map(rows::stored_message).collect()
    }

    async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.writes.send(Write::Close(done)).await.is_ok() {
            let _ = closed.await;
        }
        self.pool.close().await;
    }
}
