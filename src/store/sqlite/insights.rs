//! [`Insights`]: feedback, history, alerts and webhooks, for [`SqliteStore`].

use async_trait::async_trait;
use sqlx::Row;

use super::SqliteStore;
use crate::domain::{ConversationId, MessageId, Millis, StoreId};
use crate::store::rows::{self, ALERT_COLUMNS, CONVERSATION_ROW_COLUMNS, json_text, message_ids_text};
use crate::store::{AlertRow, History, Insights, NewFeedback, StoreError, Webhook};

/// A query of alerts with the columns an [`AlertRow`] is read from, and then `rest`.
fn select_alerts(rest: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(format!("SELECT {ALERT_COLUMNS} FROM alerts {rest}"))
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
        let sql = format!(
            "SELECT {CONVERSATION_ROW_COLUMNS}
             FROM conversations WHERE store = ? AND created_at >= ? AND created_at < ? ORDER BY created_at"
        );
        let found = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(store.as_str())
            .bind(since.0)
            .bind(until.0)
            .fetch_all(&self.pool)
            .await?;
        let conversations = found.iter().map(rows::conversation_row).collect::<Result<_, _>>()?;
        let found = sqlx::query(
            "SELECT m.id, m.conversation_id, m.role, m.text, m.kind, m.entry, m.created_at
             FROM messages m JOIN conversations c ON c.id = m.conversation_id
             WHERE c.store = ? AND c.created_at >= ? AND c.created_at < ? ORDER BY m.id",
        )
        .bind(store.as_str())
        .bind(since.0)
        .bind(until.0)
        .fetch_all(&self.pool)
        .await?;
        let messages = found.iter().map(rows::message_row).collect::<Result<_, _>>()?;
        let found = sqlx::query(
            "SELECT f.conversation_id, f.message_id, f.source, f.helpful, f.note, f.author, f.created_at
             FROM feedback f JOIN conversations c ON c.id = f.conversation_id
             WHERE c.store = ? AND c.created_at >= ? AND c.created_at < ? ORDER BY f.id",
        )
        .bind(store.as_str())
        .bind(since.0)
        .bind(until.0)
        .fetch_all(&self.pool)
        .await?;
        let feedback = found.iter().map(rows::feedback_row).collect::<Result<_, _>>()?;
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
        let found = sqlx::query(select_alerts("WHERE store = ? AND ended_at IS NULL ORDER BY id"))
            .bind(store.as_str())
            .fetch_all(&self.pool)
            .await?;
        found.iter().map(rows::alert).collect()
    }

    async fn alerts(&self, store: &StoreId, since: Millis) -> Result<Vec<AlertRow>, StoreError> {
        let found = sqlx::query(select_alerts("WHERE store = ? AND started_at >= ? ORDER BY id DESC"))
            .bind(store.as_str())
            .bind(since.0)
            .fetch_all(&self.pool)
            .await?;
        found.iter().map(rows::alert).collect()
    }

    async fn alert(&self, store: &StoreId, id: i64) -> Result<Option<AlertRow>, StoreError> {
        let row = sqlx::query(select_alerts("WHERE store = ? AND id = ?"))
            .bind(store.as_str())
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::alert).transpose()
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
        .bind(message_ids_text(&alert.messages))
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
            .bind(message_ids_text(messages))
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
        .bind(message_ids_text(messages))
        .bind(store.as_str())
        .fetch_all(&self.pool)
        .await?;
        ids.iter().map(|id| rows::conversation_id(id)).collect()
    }
}
