//! The sentence encoder: a pretrained multilingual model (multilingual-e5-small) that turns a
//! text into a 384-dimension unit vector, so that texts that mean the same are close even when
//! they share no word (邮费 and 运费, "postage" and "shipping fee").
//!
//! It runs in mibot's process: the model's own tokenizer ([`tokenizer`]), mibot's model file
//! ([`model`]), and an ONNX Runtime graph of the transformer ([`graph`]), fed by a few worker
//! threads off the async runtime ([`pool`]). [`install`] fetches and converts the weights once.
//!
//! A shopper's message is embedded through [`Encoder::query`]: from the LRU cache when the same
//! text was seen (shoppers repeat themselves), else batched with whatever else waits, within a
//! latency budget: a message that cannot be encoded in time is decided without it ("shed").
//! Pack texts go through [`Encoder::embed_many`], at lower priority.

pub mod graph;
pub mod install;
pub mod model;
mod pool;
pub mod tokenizer;

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

use crate::config::EncoderConfig;
use model::{Weights, WordTable};
use pool::{Pool, QueryJob, Refused, WorkJob};
use tokenizer::Tokenizer;

/// The prefix the model card asks for on both sides of a symmetric comparison: every text mibot
/// compares (questions, intent examples, product names and shoppers' messages) is a query.
const QUERY_PREFIX: &str = "query: ";

/// The encoder could not be started.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    /// The model is not installed and could not be installed.
    #[error(transparent)]
    Install(#[from] install::InstallError),
    /// The model file is unusable.
    #[error(transparent)]
    Model(#[from] model::ModelError),
    /// The runtime could not run the model.
    #[error(transparent)]
    Graph(#[from] graph::GraphError),
    /// The encoder is turned off in the configuration.
    #[error("the encoder is turned off (encoder.enabled = false)")]
    Disabled,
}

/// A text made ready for the model: its cache key and its token ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Prepared {
    key: Box<str>,
    ids: Vec<u32>,
}

/// What became of a message's embedding.
#[derive(Debug, Clone, PartialEq)]
pub enum Embedded {
    /// Encoded now.
    Encoded(Arc<[f32]>),
    /// Found in the cache.
    Cached(Arc<[f32]>),
    /// Not encoded within the budget: decide without it.
    Shed,
    /// The encoder failed.
    Failed,
}

/// Counters since start.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    encoded: AtomicU64,
    cached: AtomicU64,
    shed: AtomicU64,
    batches: AtomicU64,
    work_texts: AtomicU64,
    latency: Mutex<Option<hdrhistogram::Histogram<u64>>>,
}

/// A snapshot of the encoder's counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Messages encoded.
    pub encoded: u64,
    /// Messages answered from the cache.
    pub cached: u64,
    /// Messages shed: queue full or budget spent.
    pub shed: u64,
    /// Batches of messages run.
    pub batches: u64,
    /// Pack texts encoded.
    pub pack_texts: u64,
    /// Median time of one batch of messages, milliseconds.
    pub batch_p50_ms: f64,
    /// 99th percentile of that, milliseconds.
    pub batch_p99_ms: f64,
}

impl Stats {
    fn shed_late(&self) {
        self.shed.fetch_add(1, Ordering::Relaxed);
    }

    fn batch(&self, n: usize, took: Duration) {
        self.encoded.fetch_add(n as u64, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        let mut latency = self.latency.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let histogram = latency.get_or_insert_with(|| {
            hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
        });
        let _ = histogram.record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX).clamp(1, 60_000_000));
    }

    fn work(&self, n: usize, _took: Duration) {
        self.work_texts.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let latency = self.latency.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let ms = |q: f64| latency.as_ref().map_or(0.0, |h| h.value_at_quantile(q) as f64 / 1000.0);
        StatsSnapshot {
            encoded: self.encoded.load(Ordering::Relaxed),
            cached: self.cached.load(Ordering::Relaxed),
            shed: self.shed.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            pack_texts: self.work_texts.load(Ordering::Relaxed),
            batch_p50_ms: ms(0.5),
            batch_p99_ms: ms(0.99),
        }
    }
}

struct Inner {
    tokenizer: Tokenizer,
    words: WordTable,
    positions: Vec<f32>,
    type_row: Vec<f32>,
    hidden: usize,
    max_tokens: usize,
    pool: Pool,
    cache: Mutex<lru::LruCache<Box<str>, Arc<[f32]>>>,
    stats: Stats,
    budget: Duration,
    threads: usize,
}

/// A running encoder: cheap to clone. The workers stop once the last clone is dropped.
#[derive(Clone)]
pub struct Encoder {
    inner: Arc<Inner>,
    _running: Arc<Running>,
}

/// Held by the handles, not by the workers: dropping the last handle closes the queues.
struct Running(Arc<Inner>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.pool.close();
    }
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder").field("hidden", &self.inner.hidden).finish_non_exhaustive()
    }
}

/// The model directory a configuration names: `encoder.model_dir`, or `model/` in the data
/// directory.
pub fn model_dir(config: &EncoderConfig, data_dir: &Path) -> PathBuf {
    config.model_dir.clone().unwrap_or_else(|| data_dir.join("model"))
}

impl Encoder {
    /// Loads the model from `dir` (installing it first when `encoder.install` allows) and starts
    /// the workers. Blocking: seconds on first install, a second or so otherwise.
    pub fn start(config: &EncoderConfig, dir: &Path) -> Result<Self, EncoderError> {
        if !config.enabled {
            return Err(EncoderError::Disabled);
        }
        let manifest = match install::installed(dir) {
            Some(manifest) => manifest,
            None if config.install => install::ensure(dir)?,
            None => {
                return Err(install::InstallError::Content(format!(
                    "no model in {} (encoder.install = false)",
                    dir.display()
                ))
                .into());
            }
        };
        let env = graph::runtime(&dir.join(&manifest.runtime))?;
        let mut weights = Weights::read(&dir.join("model.bin"))?;
        let tokenizer = weights.tokenizer()?;
        let words = WordTable::take(&mut weights)?;
        let a = weights.architecture.clone();
        let type_row = weights.f32("embed.type")?.to_vec();
        let positions = weights.f32("embed.position")?.to_vec();
        let threads = if config.threads == 0 {
            std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
        } else {
            config.threads
        };
        // Each worker builds its own session; building them takes a moment, in parallel.
        let sessions: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads).map(|_| s.spawn(|| graph::session(&env, &weights))).collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
        });
        let sessions = sessions.into_iter().collect::<Result<Vec<_>, _>>()?;
        let cache =
            lru::LruCache::new(NonZeroUsize::new(config.cache_entries.max(1)).unwrap_or(NonZeroUsize::MIN));
        let inner = Arc::new(Inner {
            tokenizer,
            words,
            positions,
            type_row,
            hidden: a.hidden,
            max_tokens: config.max_tokens.clamp(8, a.max_positions),
            pool: Pool::new(config.queue, config.max_batch),
            cache: Mutex::new(cache),
            stats: Stats::default(),
            budget: Duration::from_millis(config.budget_ms).min(pool::MAX_BUDGET),
            threads,
        });
        let running = Arc::new(Running(Arc::clone(&inner)));
        for (n, session) in sessions.into_iter().enumerate() {
            let inner = Arc::clone(&inner);
            std::thread::Builder::new()
                .name(format!("mibot-encoder-{n}"))
                .spawn(move || {
                    let mut runner = Runner { session, inner: Arc::clone(&inner) };
                    inner.pool.work(&mut runner, &inner.stats);
                })
                .map_err(|e| graph::GraphError::Runtime(e.to_string()))?;
        }
        tracing::info!(model = %manifest.model, threads, "encoder ready");
        Ok(Self { inner, _running: running })
    }

    /// Stops the workers as the process ends: waiting texts are refused, and this returns once
    /// the runs in progress are over (at most `wait`).
    pub fn stop(&self, wait: std::time::Duration) {
        self.inner.pool.stop(wait);
    }

    /// The embedding's width.
    pub fn dimensions(&self) -> usize {
        self.inner.hidden
    }

    /// The cache identity of the vectors this encoder makes.
    pub fn model_id(&self) -> &'static str {
        install::MODEL_ID
    }

    /// The counters since start.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
    }

    /// Messages waiting for a worker now.
    pub fn waiting(&self) -> usize {
        self.inner.pool.waiting()
    }

    /// Prepares `text` as the model sees it: lower-cased, spaces collapsed, the query prefix,
    /// tokens cut to `encoder.max_tokens`.
    fn prepare(&self, text: &str) -> Prepared {
        let key: String = normalize(text);
        let mut ids = Vec::with_capacity(key.len() / 2 + 8);
        let specials = self.inner.tokenizer.specials();
        ids.push(specials.bos);
        let content = self.inner.tokenizer.encode(&format!("{QUERY_PREFIX}{key}"));
        ids.extend(content.into_iter().take(self.inner.max_tokens - 2));
        ids.push(specials.eos);
        Prepared { key: key.into_boxed_str(), ids }
    }

    /// The token ids the model sees for `text` (with `<s>` and `</s>`), for tests and tools.
    pub fn token_ids(&self, text: &str) -> Vec<u32> {
        self.prepare(text).ids
    }

    /// The tokenizer's ids for `text` as given: no prefix, no normalisation beyond the model's own.
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        self.inner.tokenizer.encode(text)
    }

    /// The embedding of a shopper's message: from the cache, or encoded within the budget.
    pub async fn query(&self, text: &str) -> Embedded {
        let prepared = self.prepare(text);
        if let Some(vector) = self.cached(&prepared.key) {
            self.inner.stats.cached.fetch_add(1, Ordering::Relaxed);
            return Embedded::Cached(vector);
        }
        let key = prepared.key.clone();
        let (reply, answer) = oneshot::channel();
        let deadline = Instant::now() + self.inner.budget;
        if self.inner.pool.submit(QueryJob { text: prepared, deadline, reply }).is_err() {
            self.inner.stats.shed_late();
            return Embedded::Shed;
        }
        match tokio::time::timeout_at(deadline.into(), answer).await {
            Ok(Ok(Ok(vector))) => {
                self.inner
                    .cache
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .put(key, Arc::clone(&vector));
                Embedded::Encoded(vector)
            }
            Ok(Ok(Err(Refused::Shed))) => Embedded::Shed,
            // Timed out: the worker sheds the job when it reaches it.
            Err(_) => {
                self.inner.stats.shed_late();
                Embedded::Shed
            }
            Ok(Ok(Err(Refused::Failed))) | Ok(Err(_)) => Embedded::Failed,
        }
    }

    fn cached(&self, key: &str) -> Option<Arc<[f32]>> {
        self.inner.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(key).cloned()
    }

    /// The cached embedding of `text`, not counted as a message's (for insight over history).
    pub fn peek(&self, text: &str) -> Option<Arc<[f32]>> {
        self.cached(&normalize(text))
    }

    /// The message's embedding when the cache has it (no waiting, nothing queued).
    pub fn cached_query(&self, text: &str) -> Option<Arc<[f32]>> {
        let vector = self.cached(&normalize(text))?;
        self.inner.stats.cached.fetch_add(1, Ordering::Relaxed);
        Some(vector)
    }

    /// Embeds many texts (a pack's questions) at low priority: encoded only while no message
    /// waits. The vectors come back in the texts' order.
    pub async fn embed_many(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EncoderFailed> {
        let mut out = Vec::with_capacity(texts.len());
        let mut pending = std::collections::VecDeque::new();
        let mut chunks = texts.chunks(WORK_CHUNK);
        loop {
            self.keep_in_flight(&mut chunks, &mut pending);
            let Some(next) = pending.pop_front() else { break };
            out.extend(next.await.map_err(|_| EncoderFailed)?.map_err(|_| EncoderFailed)?);
        }
        Ok(out)
    }

    /// [`Encoder::embed_many`] for code that is not async (eval, the CLI).
    pub fn embed_many_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EncoderFailed> {
        let mut out = Vec::with_capacity(texts.len());
        let mut pending = std::collections::VecDeque::new();
        let mut chunks = texts.chunks(WORK_CHUNK);
        loop {
            self.keep_in_flight(&mut chunks, &mut pending);
            let Some(next) = pending.pop_front() else { break };
            out.extend(next.blocking_recv().map_err(|_| EncoderFailed)?.map_err(|_| EncoderFailed)?);
        }
        Ok(out)
    }

    /// Queues chunks until a few per worker are in flight: every worker stays busy, and the
    /// queue never holds a whole pack.
    fn keep_in_flight(
        &self,
        chunks: &mut std::slice::Chunks<'_, String>,
        pending: &mut std::collections::VecDeque<WorkReply>,
    ) {
        while pending.len() < 2 * self.inner.threads {
            let Some(chunk) = chunks.next() else { break };
            let (reply, answer) = oneshot::channel();
            let prepared = chunk.iter().map(|t| self.prepare(t)).collect();
            self.inner.pool.submit_work(WorkJob { texts: prepared, reply });
            pending.push_back(answer);
        }
    }

    /// Stops the workers after the work queued so far; later requests are refused.
    pub fn shutdown(&self) {
        self.inner.pool.close();
    }
}

/// The answer to one unit of pack work.
type WorkReply = oneshot::Receiver<Result<Vec<Vec<f32>>, Refused>>;

/// Texts per unit of pack work: small enough that a message waits at most one unit.
const WORK_CHUNK: usize = 16;

/// The encoder failed or stopped while embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the encoder failed or stopped")]
pub struct EncoderFailed;

/// How a text is normalised before it is embedded and cached: lower case, single spaces, no
/// space at either end.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
    out
}

/// One worker's inference session and the shared tables.
struct Runner {
    session: ort::session::Session,
    inner: Arc<Inner>,
}

impl pool::Run for Runner {
    fn run(&mut self, texts: &[&Prepared]) -> Result<Vec<Vec<f32>>, String> {
        // Batches pad to their longest text; similar lengths go together so padding stays small.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].ids.len());
        let mut out = vec![Vec::new(); texts.len()];
        let mut start = 0;
        while start < order.len() {
            let shortest = texts[order[start]].ids.len();
            let mut end = start + 1;
            while end < order.len() && texts[order[end]].ids.len() * 2 <= shortest * 3 {
                end += 1;
            }
            let group: Vec<&Prepared> = order[start..end].iter().map(|&i| texts[i]).collect();
            for (&i, vector) in order[start..end].iter().zip(self.forward(&group)?) {
                out[i] = vector;
            }
            start = end;
        }
        Ok(out)
    }
}

impl Runner {
    /// One padded batch through the graph, mean-pooled over each text's tokens and normalised.
    fn forward(&mut self, texts: &[&Prepared]) -> Result<Vec<Vec<f32>>, String> {
        let inner = &self.inner;
        let h = inner.hidden;
        let batch = texts.len();
        let length = texts.iter().map(|t| t.ids.len()).max().unwrap_or(0);
        let mut embeds = vec![0.0f32; batch * length * h];
        let mut bias = vec![-10_000.0f32; batch * length];
        for (b, text) in texts.iter().enumerate() {
            for (p, &id) in text.ids.iter().enumerate() {
                let row = &mut embeds[(b * length + p) * h..][..h];
                inner.words.add_row(id, row);
                let position = &inner.positions[p * h..][..h];
                for ((x, pos), ty) in row.iter_mut().zip(position).zip(&inner.type_row) {
                    *x += pos + ty;
                }
                bias[b * length + p] = 0.0;
            }
        }
        let shape = |dims: &[usize]| dims.iter().map(|&d| d as i64).collect::<Vec<_>>();
        let embeds = ort::value::Tensor::from_array((shape(&[batch, length, h]), embeds))
            .map_err(|e| e.to_string())?;
        let bias = ort::value::Tensor::from_array((shape(&[batch, 1, 1, length]), bias))
            .map_err(|e| e.to_string())?;
        let outputs =
            self.session.run(ort::inputs!["embeds" => embeds, "bias" => bias]).map_err(|e| e.to_string())?;
        let hidden = outputs.get("hidden").ok_or("the graph has no output \"hidden\"")?;
        let (_, states) = hidden.try_extract_tensor::<f32>().map_err(|e| e.to_string())?;
        Ok(texts
            .iter()
            .enumerate()
            .map(|(b, text)| {
                let mut v = vec![0.0f32; h];
                for p in 0..text.ids.len() {
                    for (x, s) in v.iter_mut().zip(&states[(b * length + p) * h..][..h]) {
                        *x += s;
                    }
                }
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                v.iter_mut().for_each(|x| *x /= norm);
                v
            })
            .collect())
    }
}

/// Where the encoder stands, for the rest of the process to watch.
#[derive(Debug, Clone)]
pub enum Availability {
    /// Being installed or loaded.
    Starting,
    /// Running.
    Ready(Encoder),
    /// Not available: why. Every store answers on lexical signals alone.
    Unavailable(String),
}

/// A handle on the encoder that may still be starting: cheap to clone.
#[derive(Debug, Clone)]
pub struct EncoderSlot {
    state: watch::Receiver<Availability>,
}

impl EncoderSlot {
    /// A slot that is `Starting`, and the sender that settles it.
    pub fn starting() -> (watch::Sender<Availability>, Self) {
        let (tx, rx) = watch::channel(Availability::Starting);
        (tx, Self { state: rx })
    }

    /// A slot that is settled already.
    pub fn fixed(availability: Availability) -> Self {
        let (_tx, rx) = watch::channel(availability);
        Self { state: rx }
    }

    /// The encoder, when it is running.
    pub fn get(&self) -> Option<Encoder> {
        match &*self.state.borrow() {
            Availability::Ready(encoder) => Some(encoder.clone()),
            _ => None,
        }
    }

    /// Where it stands now.
    pub fn availability(&self) -> Availability {
        self.state.borrow().clone()
    }

    /// Waits until the encoder is ready or known to be unavailable.
    pub async fn settled(&self) -> Availability {
        let mut rx = self.state.clone();
        let settled = rx.wait_for(|a| !matches!(a, Availability::Starting)).await;
        settled.map_or_else(|_| self.availability(), |a| a.clone())
    }

    /// A receiver that sees every change.
    pub fn subscribe(&self) -> watch::Receiver<Availability> {
        self.state.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_lowercases_and_collapses_spaces() {
        assert_eq!(
            normalize("  How much do U  charge\tfor SHIPPING? "),
            "how much do u charge for shipping?"
        );
        assert_eq!(normalize("X1 Pro 有紫色吗"), "x1 pro 有紫色吗");
        assert_eq!(normalize("Ⅻ"), "ⅻ");
    }
}
