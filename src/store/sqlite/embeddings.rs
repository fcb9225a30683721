//! Stored embeddings of pack texts, for [`SqliteStore`](super::SqliteStore).

use async_trait::async_trait;

use super::SqliteStore;
use crate::store::rows::{vector_bytes, vector_from};
use crate::store::{Digest, Embeddings, StoreError};

/// Keys per statement: well under SQLite's limit on bound parameters.
const CHUNK: usize = 400;

#[async_trait]
impl Embeddings for SqliteStore {
    async fn embeddings(&self, model: &str, digests: &[Digest]) -> Result<Vec<Option<Vec<f32>>>, StoreError> {
        let mut found = std::collections::HashMap::with_capacity(digests.len());
        for chunk in digests.chunks(CHUNK) {
            let placeholders = vec!["?"; chunk.len()].join(",");
            let sql = format!(
                "SELECT digest, vector FROM embeddings WHERE model = ? AND digest IN ({placeholders})"
            );
            let mut query = sqlx::query_as::<_, (Vec<u8>, Vec<u8>)>(sqlx::AssertSqlSafe(sql)).bind(model);
            for digest in chunk {
                query = query.bind(digest.as_slice());
            }
            for (digest, vector) in query.fetch_all(&self.pool).await? {
                found.insert(digest, vector_from(&vector));
            }
        }
        Ok(digests.iter().map(|d| found.remove(d.as_slice())).collect())
    }

    async fn save_embeddings(
        &self,
        model: &str,
        items: &[(Digest, Vec<f32>)],
        at: crate::domain::Millis,
    ) -> Result<(), StoreError> {
        for chunk in items.chunks(CHUNK) {
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            for (digest, vector) in chunk {
                sqlx::query(
                    "INSERT INTO embeddings (model, digest, vector, created_at) VALUES (?, ?, ?, ?) \
                     ON CONFLICT (model, digest) DO NOTHING",
                )
                .bind(model)
                .bind(digest.as_slice())
                .bind(vector_bytes(vector))
                .bind(at.0)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }
}
