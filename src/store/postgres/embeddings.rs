//! Stored embeddings of pack texts, for [`PostgresStore`](super::PostgresStore).

use async_trait::async_trait;

use super::PostgresStore;
use crate::store::rows::{vector_bytes, vector_from};
use crate::store::{Digest, Embeddings, StoreError};

/// Rows per statement.
const CHUNK: usize = 1000;

#[async_trait]
impl Embeddings for PostgresStore {
    async fn embeddings(&self, model: &str, digests: &[Digest]) -> Result<Vec<Option<Vec<f32>>>, StoreError> {
        let mut found = std::collections::HashMap::with_capacity(digests.len());
        for chunk in digests.chunks(CHUNK) {
            let keys: Vec<&[u8]> = chunk.iter().map(|d| d.as_slice()).collect();
            let rows: Vec<(Vec<u8>, Vec<u8>)> =
                sqlx::query_as("SELECT digest, vector FROM embeddings WHERE model = $1 AND digest = ANY($2)")
                    .bind(model)
                    .bind(&keys)
                    .fetch_all(&self.pool)
                    .await?;
            for (digest, vector) in rows {
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
            let digests: Vec<&[u8]> = chunk.iter().map(|(d, _)| d.as_slice()).collect();
            let vectors: Vec<Vec<u8>> = chunk.iter().map(|(_, v)| vector_bytes(v)).collect();
            sqlx::query(
                "INSERT INTO embeddings (model, digest, vector, created_at)
                 SELECT $1, d, v, $4 FROM UNNEST($2::bytea[], $3::bytea[]) AS t (d, v)
                 ON CONFLICT (model, digest) DO NOTHING",
            )
            .bind(model)
            .bind(&digests)
            .bind(&vectors)
            .bind(at.0)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }
}
