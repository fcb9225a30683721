//! The library: every store's live knowledge, and how a pack becomes it.
//!
//! The database holds every version of every store's pack and which one is active: it is the
//! source of truth. The library holds the built [`KnowledgeBase`] of each store's active version.
//! Publishing a pack validates it, builds it off the async threads, stores it as a new version
//! and swaps it in, in that order: a pack that fails at any step changes nothing. A swap replaces
//! one `Arc`: a question already being answered finishes on the knowledge it started with, the
//! next one sees the new version, and nothing ever sees a half-built index.
//!
//! Each new knowledge base gains its semantic index in the background ([`embedding`]): it serves
//! on lexical signals at once, and with the encoder's signals once its texts are embedded.
//!
//! [`Library::sync`] brings the library in line with the database. It runs at start-up and then
//! every `content.reload_seconds`, so a version activated by the CLI, or by another node sharing
//! the database, is served without a restart.

pub mod embedding;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::domain::{Millis, StoreId};
use crate::encoder::{Availability, EncoderSlot};
use crate::intents::IntentSet;
use crate::knowledge::formats::Format;
use crate::knowledge::pack::SizeLimits;
use crate::knowledge::{KnowledgeBase, KnowledgeError, Pack, PackError};
use crate::store::{Embeddings, Merchants, NewPackVersion, PackVersion, StoreError};
use crate::text::Analyzer;

/// A store's live knowledge and the version it was built from.
#[derive(Debug, Clone)]
pub struct Shelf {
    /// The built knowledge.
    pub knowledge: Arc<KnowledgeBase>,
    /// The pack version; `None` for a store that has no pack yet.
    pub version: Option<u32>,
}

/// Why a pack was not published or activated. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The pack is invalid.
    #[error(transparent)]
    Pack(#[from] PackError),
    /// No such store.
    #[error("no such store")]
    UnknownStore,
    /// No such version of the store's pack.
    #[error("version {0} does not exist")]
    NoSuchVersion(u32),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Building the index failed.
    #[error("building the knowledge base failed: {0}")]
    Build(String),
    /// The build ran out of its time or memory budget.
    #[error(transparent)]
    OverBudget(#[from] crate::knowledge::OverBudget),
}

/// Every store's live knowledge.
pub struct Library {
    shelves: RwLock<HashMap<StoreId, Shelf>>,
    intents: Arc<IntentSet>,
    /// Where store overrides of the intents live (`<dir>/stores/<store>/`).
    intents_dir: Option<PathBuf>,
    analyzer: Analyzer,
    index_root: Option<PathBuf>,
    merchants: Arc<dyn Merchants>,
    /// Publishing, activating and syncing run one at a time per store, so a store's versions
    /// are swapped in the order they were activated, and one store's build never makes
    /// another's wait.
    changing: std::sync::Mutex<HashMap<StoreId, Arc<tokio::sync::Mutex<()>>>>,
    /// The sentence encoder, once it is running.
    encoder: EncoderSlot,
    /// How large a pack's texts may be, and what its build may spend.
    limits: SizeLimits,
    /// Builds running at once, across stores.
    builds: Arc<tokio::sync::Semaphore>,
    /// The version of each store that failed to build here, not tried again until another
    /// version is active.
    failed: std::sync::Mutex<HashMap<StoreId, Option<u32>>>,
    /// The other nodes, told when a store's pack changes here.
    cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Where pack texts' vectors are kept.
    embeddings: Option<Arc<dyn Embeddings>>,
    /// What the last semantic index built for each store took.
    embedded: Arc<RwLock<HashMap<StoreId, embedding::Embedded>>>,
}

/// The content digest recorded with a version.
pub fn fingerprint(content: &str) -> String {
    hex(&Sha256::digest(content.as_bytes()))
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library").field("stores", &self.stores()).finish_non_exhaustive()
    }
}

impl Library {
    /// An empty library; [`Library::sync`] fills it. `intents` are the deployment's, loaded from
    /// `intents_dir`, whose `stores/<store>/` sub-directories hold each store's overrides.
    pub fn new(
        intents: Arc<IntentSet>,
        intents_dir: Option<PathBuf>,
        index_root: Option<PathBuf>,
        merchants: Arc<dyn Merchants>,
    ) -> Self {
        Self {
            shelves: RwLock::default(),
            intents,
            intents_dir,
            analyzer: Analyzer::new(),
            index_root,
            merchants,
            changing: std::sync::Mutex::default(),
            encoder: EncoderSlot::fixed(Availability::Unavailable("no encoder for this library".into())),
            embeddings: None,
            embedded: Arc::default(),
            limits: SizeLimits::default(),
            builds: Arc::new(tokio::sync::Semaphore::new(2)),
            failed: std::sync::Mutex::default(),
            cluster: None,
        }
    }

    /// The library telling the other nodes of the cluster when a pack changes here.
    pub fn with_cluster(mut self, cluster: Option<Arc<crate::cluster::Cluster>>) -> Self {
        self.cluster = cluster;
        self
    }

    /// Tells the other nodes that `store`'s active pack changed.
    fn changed(&self, store: &StoreId) {
        if let Some(cluster) = &self.cluster {
            cluster.tell(crate::cluster::Note::Packs { store: store.clone() });
        }
    }

    /// The library with these pack size limits (the defaults otherwise).
    pub fn with_limits(mut self, limits: SizeLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The library building at most `builds` stores' packs at once (2 otherwise).
    pub fn with_concurrent_builds(mut self, builds: usize) -> Self {
        self.builds = Arc::new(tokio::sync::Semaphore::new(builds.max(1)));
        self
    }

    /// The library with the encoder (which may still be starting) and the embeddings' store:
    /// every knowledge base it builds from now on gains its semantic index in the background.
    pub fn with_encoder(mut self, encoder: EncoderSlot, embeddings: Arc<dyn Embeddings>) -> Self {
        self.encoder = encoder;
        self.embeddings = Some(embeddings);
        self
    }

    /// The secret `store`'s storefront signs shoppers' ids with, if one was issued.
    pub async fn identity_secret(&self, store: &StoreId) -> Result<Option<String>, crate::store::StoreError> {
        self.merchants.identity_secret(store).await
    }

    /// The encoder, for the sessions to embed messages with.
    pub fn encoder(&self) -> &EncoderSlot {
        &self.encoder
    }

    /// The message's embedding for `knowledge`'s semantic signals (from the cache, or encoded
    /// within the budget); `None` without an encoder, before the knowledge has its semantic
    /// index, or when the encoder is too busy.
    pub async fn message_vector(&self, knowledge: &KnowledgeBase, text: &str) -> Option<Arc<[f32]>> {
        knowledge.semantic()?;
        match self.encoder.get()?.query(text).await {
            crate::encoder::Embedded::Encoded(v) | crate::encoder::Embedded::Cached(v) => Some(v),
            crate::encoder::Embedded::Shed | crate::encoder::Embedded::Failed => None,
        }
    }

    /// The encoder's vectors of shoppers' messages, for grouping them by meaning; empty without
    /// an encoder (they are grouped by their words alone). Texts not seen before are encoded at
    /// low priority, and stored.
    pub async fn message_vectors(&self, texts: &[String]) -> crate::insight::Vectors {
        let Some(encoder) = self.encoder.get() else { return crate::insight::Vectors::new() };
        let stored = self.embeddings.as_deref();
        match embedding::vectors_of(&encoder, stored, texts, Millis::now()).await {
            Ok(vectors) => vectors,
            Err(error) => {
                tracing::warn!(%error, "embedding messages failed; grouping them by their words");
                crate::insight::Vectors::new()
            }
        }
    }

    /// What building the store's last semantic index took: texts found stored and encoded.
    pub fn last_embedding(&self, store: &StoreId) -> Option<embedding::Embedded> {
        self.embedded.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(store).copied()
    }

    /// Whether the store's live knowledge has its semantic index (`None`: no such store).
    pub fn semantic_ready(&self, store: &StoreId) -> Option<bool> {
        self.get(store).map(|k| k.semantic().is_some())
    }

    /// The text analysis every store's knowledge uses.
    pub fn analyzer(&self) -> &Analyzer {
        &self.analyzer
    }

    /// The store's live knowledge.
    pub fn get(&self, store: &StoreId) -> Option<Arc<KnowledgeBase>> {
        self.read().get(store).map(|s| Arc::clone(&s.knowledge))
    }

    /// The store's live knowledge and its version.
    pub fn shelf(&self, store: &StoreId) -> Option<Shelf> {
        self.read().get(store).cloned()
    }

    /// Every served store.
    pub fn stores(&self) -> Vec<StoreId> {
        let mut stores: Vec<StoreId> = self.read().keys().cloned().collect();
        stores.sort();
        stores
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<StoreId, Shelf>> {
        self.shelves.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn put(&self, store: StoreId, shelf: Shelf) {
        let knowledge = Arc::clone(&shelf.knowledge);
        self.shelves.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(store, shelf);
        self.embed_in_background(knowledge);
    }

    /// Gives `knowledge` its semantic index once the encoder is ready, without holding anyone up.
    fn embed_in_background(&self, knowledge: Arc<KnowledgeBase>) {
        let Some(stored) = self.embeddings.clone() else { return };
        let (slot, embedded, limits) = (self.encoder.clone(), Arc::clone(&self.embedded), self.limits);
        tokio::spawn(async move {
            let Availability::Ready(encoder) = slot.settled().await else { return };
            let store = knowledge.store().clone();
            let budget = limits.budget();
            match embedding::embed_knowledge(
                knowledge,
                &encoder,
                Some(stored.as_ref()),
                Millis::now(),
                &budget,
            )
            .await
            {
                Ok(done) => {
                    tracing::info!(
                        store = %store,
                        texts = done.texts,
                        stored = done.stored,
                        encoded = done.encoded,
                        seconds = done.seconds,
                        "semantic index ready"
                    );
                    embedded.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(store, done);
                }
                Err(error) => {
                    tracing::warn!(store = %store, %error, "the semantic index was not built; answering on lexical signals")
                }
            }
        });
    }

    /// Imports the packs of `knowledge_dir/<store>/` (TOML, as in the repository's `knowledge/`):
    /// a directory's pack becomes a new active version when its content differs from the last
    /// version imported from the directory. Versions uploaded since are left alone unless the
    /// directory's files change.
    pub async fn import_directory(&self, knowledge_dir: &Path, at: Millis) -> anyhow::Result<()> {
        let entries = std::fs::read_dir(knowledge_dir)
            .with_context(|| format!("reading the knowledge directory {}", knowledge_dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            if !path.is_dir() || !(path.join("faq.toml").exists() || path.join("products.toml").exists()) {
                continue;
            }
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let store =
                StoreId::parse(name).with_context(|| format!("store directory {}", path.display()))?;
            let pack = Pack::load_dir(&path).with_context(|| format!("loading {}", path.display()))?;
            let content = serde_json::to_string(&pack)?;
            let digest = fingerprint(&content);
            self.merchants.create_store(&store, at).await?;
            let versions = self.merchants.pack_versions(&store).await?;
            let last_imported = versions.iter().rev().find(|v| v.source == "directory");
            if last_imported.is_some_and(|v| v.fingerprint == digest) {
                continue;
            }
            let new = version_of(&pack, Format::Toml, "directory", &digest, &content);
            let version = self.merchants.add_pack_version(&store, new, true, at).await?;
            tracing::info!(store = %store, version = version.version, dir = %path.display(), "pack imported from the directory");
        }
        Ok(())
    }

    /// The lock that orders changes to `store`'s knowledge.
    fn changing(&self, store: &StoreId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.changing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(locks.entry(store.clone()).or_default())
    }

    /// Brings every store's live knowledge in line with the database: builds what changed.
    /// A version that fails to build is logged and the store keeps what it served.
    pub async fn sync(&self) -> Result<(), StoreError> {
        let active: HashMap<StoreId, u32> = self.merchants.active_versions().await?.into_iter().collect();
        for store in self.merchants.stores().await? {
            let want = active.get(&store).copied();
            if self.shelf(&store).is_some_and(|s| s.version == want) {
                continue;
            }
            let lock = self.changing(&store);
            let _changing = lock.lock().await;
            // A publish may have gone live while this waited: what is active now decides.
            let active: HashMap<StoreId, u32> = self.merchants.active_versions().await?.into_iter().collect();
            let want = active.get(&store).copied();
            if self.shelf(&store).is_some_and(|s| s.version == want) || self.failed_here(&store) == Some(want)
            {
                continue;
            }
            let pack = match want {
                None => Pack::default(),
                Some(version) => match self.merchants.pack_version(&store, version).await? {
                    Some((_, content)) => match serde_json::from_str::<Pack>(&content) {
                        Ok(pack) => pack,
                        Err(error) => {
                            tracing::error!(store = %store, version, %error, "a stored pack does not parse");
                            continue;
                        }
                    },
                    None => continue,
                },
            };
            match self.build(&store, pack).await {
                Ok(knowledge) => {
                    tracing::info!(store = %store, version = ?want, faq = knowledge.faq().len(), products = knowledge.catalog().products().len(), "knowledge loaded");
                    self.failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&store);
                    self.put(store, Shelf { knowledge, version: want });
                }
                Err(error) => {
                    tracing::error!(store = %store, version = ?want, %error, "a pack version failed to build; it is not tried again until another version is activated");
                    self.failed
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(store.clone(), want);
                    if self.shelf(&store).is_none() {
                        // Nothing served yet (a start-up): the store still chats, on its intents
                        // alone, and hands over what they do not answer.
                        match self.build(&store, Pack::default()).await {
                            Ok(knowledge) => self.put(store, Shelf { knowledge, version: None }),
                            Err(error) => {
                                tracing::error!(store = %store, %error, "the store's intents failed to build")
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The version of `store` that last failed to build here, if the last build failed.
    fn failed_here(&self, store: &StoreId) -> Option<Option<u32>> {
        self.failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(store).copied()
    }

    /// Validates and builds `pack`, stores it as the store's next version and makes it active.
    pub async fn publish(
        &self,
        store: &StoreId,
        pack: Pack,
        format: Format,
        source: &str,
        at: Millis,
    ) -> Result<PackVersion, PublishError> {
        let lock = self.changing(store);
        let _changing = lock.lock().await;
        self.publish_locked(store, pack, format, source, at).await
    }

    /// Publishes the active pack as changed by `edit`, with no other change in between.
    pub async fn edit<E: From<PublishError>>(
        &self,
        store: &StoreId,
        source: &str,
        at: Millis,
        edit: impl FnOnce(&mut Pack) -> Result<(), E>,
    ) -> Result<PackVersion, E> {
        let lock = self.changing(store);
        let _changing = lock.lock().await;
        let (meta, mut pack) = self.active_pack(store).await?;
        edit(&mut pack)?;
        let format = meta.and_then(|m| Format::parse(&m.format)).unwrap_or(Format::Json);
        Ok(self.publish_locked(store, pack, format, source, at).await?)
    }

    async fn publish_locked(
        &self,
        store: &StoreId,
        pack: Pack,
        format: Format,
        source: &str,
        at: Millis,
    ) -> Result<PackVersion, PublishError> {
        pack.validate()?;
        pack.check_sizes(self.limits)?;
        if self.shelf(store).is_none() && !self.merchants.stores().await?.contains(store) {
            return Err(PublishError::UnknownStore);
        }
        let content = serde_json::to_string(&pack).map_err(|e| PublishError::Build(e.to_string()))?;
        let digest = fingerprint(&content);
        let new = version_of(&pack, format, source, &digest, &content);
        let knowledge = self.build(store, pack).await?;
        let version = self.merchants.add_pack_version(store, new, true, at).await?;
        self.put(store.clone(), Shelf { knowledge, version: Some(version.version) });
        tracing::info!(store = %store, version = version.version, source, "pack published");
        self.changed(store);
        Ok(version)
    }

    /// Makes an earlier (or later) version the active one: a rollback.
    pub async fn activate(
        &self,
        store: &StoreId,
        version: u32,
        at: Millis,
    ) -> Result<PackVersion, PublishError> {
        let lock = self.changing(store);
        let _changing = lock.lock().await;
        let (meta, content) =
            self.merchants.pack_version(store, version).await?.ok_or(PublishError::NoSuchVersion(version))?;
        let pack: Pack = serde_json::from_str(&content).map_err(|e| PublishError::Build(e.to_string()))?;
        let knowledge = self.build(store, pack).await?;
        if !self.merchants.activate(store, version, at).await? {
            return Err(PublishError::NoSuchVersion(version));
        }
        self.put(store.clone(), Shelf { knowledge, version: Some(version) });
        tracing::info!(store = %store, version, "pack version activated");
        self.changed(store);
        Ok(meta)
    }

    /// The store's active version and its pack (an empty pack before the first upload).
    pub async fn active_pack(&self, store: &StoreId) -> Result<(Option<PackVersion>, Pack), PublishError> {
        let Some(shelf) = self.shelf(store) else { return Err(PublishError::UnknownStore) };
        let Some(version) = shelf.version else { return Ok((None, Pack::default())) };
        let (meta, content) =
            self.merchants.pack_version(store, version).await?.ok_or(PublishError::NoSuchVersion(version))?;
        let pack = serde_json::from_str(&content).map_err(|e| PublishError::Build(e.to_string()))?;
        Ok((Some(meta), pack))
    }

    /// Builds knowledge on a blocking thread (training and indexing are CPU work), within the
    /// build budget, when one of the build slots is free.
    async fn build(&self, store: &StoreId, pack: Pack) -> Result<Arc<KnowledgeBase>, PublishError> {
        let (store, intents, analyzer, root) =
            (store.clone(), Arc::clone(&self.intents), self.analyzer.clone(), self.index_root.clone());
        let (intents_dir, limits) = (self.intents_dir.clone(), self.limits);
        let _slot = self.builds.acquire().await.map_err(|e| PublishError::Build(e.to_string()))?;
        let built = tokio::task::spawn_blocking(move || {
            let budget = limits.budget();
            let own = match &intents_dir {
                Some(dir) => IntentSet::load_for_store(dir, store.as_str())
                    .map_err(|e| PublishError::Build(format!("the store's intents: {e}")))?,
                None => None,
            };
            let intents = own.map(Arc::new).unwrap_or(intents);
            Ok::<_, PublishError>(KnowledgeBase::build_within(
                store,
                pack,
                intents,
                &analyzer,
                root.as_deref(),
                &budget,
            ))
        })
        .await
        .map_err(|e| PublishError::Build(e.to_string()))??;
        match built {
            Ok(knowledge) => {
                tracing::debug!(store = %knowledge.store(), held_mb = knowledge.build_bytes() >> 20, "built within its budget");
                Ok(Arc::new(knowledge))
            }
            Err(KnowledgeError::Pack(problems)) => Err(PublishError::Pack(problems)),
            Err(KnowledgeError::OverBudget(over)) => Err(PublishError::OverBudget(over)),
            Err(other) => Err(PublishError::Build(other.to_string())),
        }
    }
}

fn version_of<'a>(
    pack: &Pack,
    format: Format,
    source: &'a str,
    digest: &'a str,
    content: &'a str,
) -> NewPackVersion<'a> {
    NewPackVersion {
        format: format.name(),
        source,
        fingerprint: digest,
        faq: u32::try_from(pack.faq.len()).unwrap_or(u32::MAX),
        products: u32::try_from(pack.products.len()).unwrap_or(u32::MAX),
        content,
    }
}
