//! Operator commands on a data directory: stores, merchants' keys, and packs
//! (`mibot store …`, `mibot pack …`).
//!
//! They write the same database the server reads, with the same validation as the HTTP API. A
//! running server picks a newly activated version up within `content.reload_seconds`.

pub mod text;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::domain::{ApiKey, Millis, StoreId};
use crate::intents::IntentSet;
use crate::knowledge::Pack;
use crate::knowledge::formats::{self, Format, Imported};
use crate::library::Library;
use crate::store::{AgentAccount, Database, PackVersion};

async fn open(config: &Config) -> anyhow::Result<Arc<dyn Database>> {
    crate::store::open(&config.storage)
        .await
        .with_context(|| format!("opening the database ({})", config.storage.describe()))
}

/// Creates a store and its first key; returns the key, which is never shown again.
pub async fn create_store(config: &Config, name: &str) -> anyhow::Result<ApiKey> {
    let store = StoreId::parse(name)?;
    let db = open(config).await?;
    let now = Millis::now();
    let created = db.create_store(&store, now).await?;
    let result = if created {
        let key = ApiKey::generate();
        db.add_key(&store, &key.digest(), false, now).await?;
        Ok(key)
    } else {
        Err(anyhow::anyhow!(
            "store {name:?} already exists; `mibot store key rotate {name}` gives it a new key"
        ))
    };
    db.close().await;
    result
}

/// Every store.
pub async fn list_stores(config: &Config) -> anyhow::Result<Vec<(StoreId, Option<u32>)>> {
    let db = open(config).await?;
    let active: std::collections::HashMap<StoreId, u32> = db.active_versions().await?.into_iter().collect();
    let stores = db.stores().await?.into_iter().map(|s| {
        let version = active.get(&s).copied();
        (s, version)
    });
    let stores = stores.collect();
    db.close().await;
    Ok(stores)
}

async fn existing(db: &dyn Database, name: &str) -> anyhow::Result<StoreId> {
    let store = StoreId::parse(name)?;
    anyhow::ensure!(
        db.stores().await?.contains(&store),
        "no store named {name:?}; `mibot store list` shows them"
    );
    Ok(store)
}

/// Gives a store a new key and revokes its others; returns the new key.
pub async fn rotate_key(config: &Config, name: &str) -> anyhow::Result<ApiKey> {
    let db = open(config).await?;
    let store = existing(db.as_ref(), name).await?;
    let key = ApiKey::generate();
    db.add_key(&store, &key.digest(), true, Millis::now()).await?;
    db.close().await;
    Ok(key)
}

/// Revokes every key of a store; returns how many were live.
pub async fn revoke_keys(config: &Config, name: &str) -> anyhow::Result<u64> {
    let db = open(config).await?;
    let store = existing(db.as_ref(), name).await?;
    let revoked = db.revoke_keys(&store, Millis::now()).await?;
    db.close().await;
    Ok(revoked)
}

/// Adds an agent to a store; returns their sign-in token, which is never shown again.
pub async fn add_agent(
    config: &Config,
    store: &str,
    name: &str,
    groups: &[String],
    max_chats: Option<u32>,
) -> anyhow::Result<ApiKey> {
    anyhow::ensure!(
        !name.trim().is_empty() && name.len() <= 64,
        "an agent's name must be 1 to 64 characters"
    );
    let db = open(config).await?;
    let store = existing(db.as_ref(), store).await?;
    let account = AgentAccount {
        store: store.clone(),
        name: name.trim().to_owned(),
        groups: groups.iter().map(|g| g.trim().to_owned()).filter(|g| !g.is_empty()).collect(),
        max_chats: max_chats.unwrap_or(config.agents.default_max_chats).max(1),
    };
    let token = ApiKey::with_prefix("at_");
    let added = db.add_agent(&account, &token.digest(), Millis::now()).await?;
    db.close().await;
    anyhow::ensure!(added, "store {} already has an agent named {name:?}", store.as_str());
    Ok(token)
}

/// Issues (or replaces) the store's identity secret, which its storefront signs shoppers'
/// member ids with; returns it.
pub async fn rotate_identity(config: &Config, store: &str) -> anyhow::Result<String> {
    let db = open(config).await?;
    let store = existing(db.as_ref(), store).await?;
    let secret = ApiKey::with_prefix("idsec_").0;
    db.set_identity_secret(&store, &secret).await?;
    db.close().await;
    Ok(secret)
}

/// Gives an agent a new sign-in token; the old one stops working, and a console signed in
/// with it is signed out within seconds. Returns the new token, which is never shown again.
pub async fn rotate_agent(config: &Config, store: &str, name: &str) -> anyhow::Result<ApiKey> {
    let db = open(config).await?;
    let store = existing(db.as_ref(), store).await?;
    let token = ApiKey::with_prefix("at_");
    let found = db.set_agent_token(&store, name, &token.digest()).await?;
    db.close().await;
    anyhow::ensure!(found, "store {} has no agent named {name:?}", store.as_str());
    Ok(token)
}

/// Ends an agent's sign-in token without giving a new one (`rotate_agent` gives one later).
pub async fn revoke_agent(config: &Config, store: &str, name: &str) -> anyhow::Result<()> {
    let db = open(config).await?;
    let store = existing(db.as_ref(), store).await?;
    // A digest no token has: nothing signs in as this agent until a rotation.
    let nobody = ApiKey::revoked_digest();
    let found = db.set_agent_token(&store, name, &nobody).await?;
    db.close().await;
    anyhow::ensure!(found, "store {} has no agent named {name:?}", store.as_str());
    Ok(())
}

fn progress(steps: u64, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps);
    if let Ok(style) = ProgressStyle::with_template("{spinner} [{bar:24}] {pos}/{len} {msg} ({elapsed})") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// Reads and validates a pack file, as the HTTP API does.
pub fn read_pack(file: &Path, format: Option<Format>) -> anyhow::Result<Imported> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let name = file.file_name().and_then(|n| n.to_str());
    Ok(formats::import(&bytes, format, name)?)
}

/// Validates, builds and stores a pack file as the store's new active version.
pub async fn import_pack(
    config: &Config,
    store: &str,
    file: &Path,
    format: Option<Format>,
    quiet: bool,
) -> anyhow::Result<(PackVersion, Imported)> {
    let bar = progress(3, quiet);
    bar.set_message(format!("reading and validating {}", file.display()));
    let (path, fmt) = (file.to_path_buf(), format);
    let imported = tokio::task::spawn_blocking(move || read_pack(&path, fmt)).await??;
    bar.inc(1);
    let db = open(config).await?;
    let store = existing(db.as_ref(), store).await?;
    let intents_dir = config.content.intents_dir.clone();
    let intents = tokio::task::spawn_blocking(move || IntentSet::load_dir(&intents_dir)).await??;
    let library = Library::new(
        Arc::new(intents),
        Some(config.content.intents_dir.clone()),
        Some(config.storage.data_dir.join("index")),
        Arc::clone(&db) as Arc<dyn crate::store::Merchants>,
    )
    .with_limits(config.content.size_limits())
    .with_concurrent_builds(config.content.concurrent_builds);
    bar.set_message(format!(
        "training and indexing {} FAQ entries and {} products",
        imported.pack.faq.len(),
        imported.pack.products.len()
    ));
    bar.inc(1);
    let version = library.publish(&store, imported.pack.clone(), imported.format, "cli", Millis::now()).await;
    if version.is_ok()
        && let Err(error) =
            crate::cluster::announce(&config.cluster, crate::cluster::Note::Packs { store: store.clone() })
                .await
    {
        // The nodes still pick it up within content.reload_seconds.
        tracing::warn!(%error, "telling the cluster's nodes about the new version failed");
    }
    bar.inc(1);
    bar.finish_and_clear();
    db.close().await;
    Ok((version?, imported))
}

/// The store's active pack, written in `format`.
pub async fn export_pack(config: &Config, store: &str, format: Format) -> anyhow::Result<String> {
    let db = open(config).await?;
    let store = existing(db.as_ref(), store).await?;
    let active = db.active_versions().await?.into_iter().find(|(s, _)| *s == store).map(|(_, v)| v);
    let pack = match active {
        None => Pack::default(),
        Some(version) => {
            let (_, content) =
                db.pack_version(&store, version).await?.context("the active version is missing")?;
            serde_json::from_str(&content).context("the stored pack does not parse")?
        }
    };
    db.close().await;
    Ok(formats::export(&pack, format)?)
}

/// The store's measures since `since` (`7d`, `24h`, or an RFC 3339 instant).
pub async fn report(
    config: &Config,
    store: &str,
    since: &str,
    bucket: crate::insight::Bucket,
) -> anyhow::Result<crate::insight::Report> {
    let now = Millis::now();
    let since = crate::insight::parse_since(since, now).with_context(|| {
        format!("--since {since:?} is neither a duration like 7d, 24h, 30m nor an RFC 3339 instant")
    })?;
    let db = open(config).await?;
    let store = existing(db.as_ref(), store).await?;
    let history = db.records(&store, since, Millis(now.0 + crate::insight::ASKED_AGAIN_WITHIN)).await?;
    db.close().await;
    Ok(crate::insight::report(&history, since, now, bucket, config.agents.utc_offset_minutes))
}
