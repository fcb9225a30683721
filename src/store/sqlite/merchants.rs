//! [`Merchants`]: stores, keys and pack versions, for [`SqliteStore`].

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteConnection;

use super::SqliteStore;
use crate::domain::{Millis, StoreId};
use crate::store::rows::{self, VERSION_COLUMNS};
use crate::store::{ActionEndpoint, Merchants, NewPackVersion, PackVersion, StoreError};

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

    async fn id_key(&self, proposed: &str) -> Result<String, StoreError> {
        sqlx::query("INSERT INTO settings (name, value) VALUES ('id_key', ?) ON CONFLICT (name) DO NOTHING")
            .bind(proposed)
            .execute(&self.pool)
            .await?;
        Ok(sqlx::query_scalar("SELECT value FROM settings WHERE name = 'id_key'")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn stores(&self) -> Result<Vec<StoreId>, StoreError> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM stores ORDER BY id").fetch_all(&self.pool).await?;
        ids.iter().map(|id| StoreId::parse(id).map_err(|e| StoreError::Corrupt(e.to_string()))).collect()
    }

    async fn actions(&self, store: &StoreId) -> Result<Vec<ActionEndpoint>, StoreError> {
        let found =
            sqlx::query("SELECT name, url, timeout_ms, secret FROM actions WHERE store = ? ORDER BY name")
                .bind(store.as_str())
                .fetch_all(&self.pool)
                .await?;
        found.iter().map(rows::action).collect()
    }

    async fn action(&self, store: &StoreId, name: &str) -> Result<Option<ActionEndpoint>, StoreError> {
        let found =
            sqlx::query("SELECT name, url, timeout_ms, secret FROM actions WHERE store = ? AND name = ?")
                .bind(store.as_str())
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        found.as_ref().map(rows::action).transpose()
    }

    async fn set_action(
        &self,
        store: &StoreId,
        action: &ActionEndpoint,
        at: Millis,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO actions (store, name, url, timeout_ms, secret, updated_at) VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (store, name) DO UPDATE SET url = excluded.url, timeout_ms = excluded.timeout_ms,
             secret = excluded.secret, updated_at = excluded.updated_at",
        )
        .bind(store.as_str())
        .bind(&action.name)
        .bind(&action.url)
        .bind(i64::try_from(action.timeout_ms).unwrap_or(i64::MAX))
        .bind(&action.secret)
        .bind(at.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_action(&self, store: &StoreId, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM actions WHERE store = ? AND name = ?")
            .bind(store.as_str())
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
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
        Ok(new.stored(store, u32::try_from(version).unwrap_or(u32::MAX), at))
    }

    async fn pack_versions(&self, store: &StoreId) -> Result<Vec<PackVersion>, StoreError> {
        let sql = format!("SELECT {VERSION_COLUMNS} FROM pack_versions WHERE store = ? ORDER BY version");
        let found = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(store.as_str()).fetch_all(&self.pool).await?;
        found.iter().map(rows::version).collect()
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
        row.map(|row| Ok((rows::version(&row)?, row.try_get("content")?))).transpose()
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
