//! The PostgreSQL store, for deployments of several nodes: every node opens the same database,
//! which is the source of truth for conversations, queues, packs, keys and insights.
//!
//! Each write is its own transaction on a pooled connection; an acknowledged write has
//! committed (PostgreSQL's own group commit joins the commits of concurrent connections).
//! Writes that must not interleave across nodes take a row lock: the conversation's, for a
//! shopper message and the bot's reply; the store's, for a new pack version. A claim is one
//! `UPDATE … WHERE status = 'waiting_for_agent'`: of two nodes, exactly one changes the row.

mod agents;
mod chat;
mod embeddings;
mod insights;
mod merchants;

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, SqlSafeStr};

use super::StoreError;

/// A PostgreSQL-backed store.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

/// Connections per node.
const POOL_SIZE: u32 = 16;

fn migrator() -> Migrator {
    let migration = |version, name, sql: &'static str| {
        Migration::new(version, Cow::Borrowed(name), MigrationType::Simple, sql.into_sql_str(), false)
    };
    Migrator::with_migrations(vec![
        migration(1, "schema", include_str!("../../../migrations/postgres/0001_schema.sql")),
        migration(2, "settings", include_str!("../../../migrations/postgres/0002_settings.sql")),
        migration(3, "actions", include_str!("../../../migrations/postgres/0003_actions.sql")),
    ])
}

impl PostgresStore {
    /// Connects to `url` (`postgres://…`), using the tables of `schema` (created if missing;
    /// `None`: the server's default, `public`), and brings them up to date. Nodes that start
    /// together migrate one at a time (the migrator holds an advisory lock).
    pub async fn open(url: &str, schema: Option<&str>) -> Result<Self, StoreError> {
        let mut options = PgConnectOptions::from_str(url)?;
        if let Some(schema) = schema {
            check_schema_name(schema)?;
            let mut conn = options.connect().await?;
            let sql = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
            // Two nodes may create it at once: the loser's error says it exists.
            if let Err(error) = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await {
                let exists = sqlx::query_scalar::<_, bool>(
                    "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                )
                .bind(schema)
                .fetch_one(&mut conn)
                .await?;
                if !exists {
                    return Err(error.into());
                }
            }
            conn.close().await?;
            options = options.options([("search_path", schema)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        migrator().run(&pool).await?;
        Ok(Self { pool })
    }

    /// Drops `schema` and everything in it (tests make one per run).
    pub async fn drop_schema(url: &str, schema: &str) -> Result<(), StoreError> {
        check_schema_name(schema)?;
        let mut conn = PgConnectOptions::from_str(url)?.connect().await?;
        let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await?;
        conn.close().await?;
        Ok(())
    }
}

/// A schema name goes into SQL text: letters, digits and `_` only.
fn check_schema_name(schema: &str) -> Result<(), StoreError> {
    let fine = !schema.is_empty()
        && schema.len() <= 63
        && schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !schema.starts_with(|c: char| c.is_ascii_digit());
    if fine {
        Ok(())
    } else {
        Err(StoreError::Settings(format!(
            "storage.schema {schema:?}: use letters, digits and _ only, starting with a letter"
        )))
    }
}
