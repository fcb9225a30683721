//! The encoder's workers: a few threads of their own, off the async runtime, each with its own
//! inference session, fed from two bounded queues.
//!
//! Shoppers' messages come first: a worker takes every waiting message (up to `max_batch`) and
//! encodes them as one padded batch, so concurrent messages share the weights' trip through the
//! cache. A message still waiting at its deadline is answered "shed" instead: its session has
//! already decided without it. Pack texts (the questions of a new pack version) are encoded
//! only when no message waits, so a large pack never delays a chat.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{Prepared, Stats};

/// A message's embedding, or why there is none.
pub(crate) type QueryReply = Result<Arc<[f32]>, Refused>;

/// Why the pool did not encode a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The deadline passed first, or the queue was full.
    Shed,
    /// The pool has stopped, or encoding failed.
    Failed,
}

pub(crate) struct QueryJob {
    pub(crate) text: Prepared,
    pub(crate) deadline: Instant,
    pub(crate) reply: oneshot::Sender<QueryReply>,
}

pub(crate) struct WorkJob {
    pub(crate) texts: Vec<Prepared>,
    pub(crate) reply: oneshot::Sender<Result<Vec<Vec<f32>>, Refused>>,
}

#[derive(Default)]
struct Queues {
    queries: VecDeque<QueryJob>,
    work: VecDeque<WorkJob>,
    closed: bool,
    /// Stopping: the workers finish what they run and leave the rest.
    stopping: bool,
    /// Workers in the middle of a run.
    busy: usize,
}

/// The queues the workers take from.
pub(crate) struct Pool {
    queues: Mutex<Queues>,
    wake: Condvar,
    capacity: usize,
    max_batch: usize,
}

/// What one worker runs: a batch of texts in, one vector per text out.
pub(crate) trait Run: Send {
    fn run(&mut self, texts: &[&Prepared]) -> Result<Vec<Vec<f32>>, String>;
}

impl Pool {
    pub(crate) fn new(capacity: usize, max_batch: usize) -> Self {
        Self {
            queues: Mutex::default(),
            wake: Condvar::new(),
            capacity: capacity.max(1),
            max_batch: max_batch.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a message; hands it back when the queue is full or closed.
    pub(crate) fn submit(&self, job: QueryJob) -> Result<(), QueryJob> {
        let mut q = self.lock();
        if q.closed || q.queries.len() >= self.capacity {
            return Err(job);
        }
        q.queries.push_back(job);
        drop(q);
        self.wake.notify_one();
        Ok(())
    }

    /// Queues pack texts, encoded when no message waits.
    pub(crate) fn submit_work(&self, job: WorkJob) {
        let mut q = self.lock();
        if q.closed {
            let _ = job.reply.send(Err(Refused::Failed));
            return;
        }
        q.work.push_back(job);
        drop(q);
        self.wake.notify_one();
    }

    /// Messages waiting now.
    pub(crate) fn waiting(&self) -> usize {
        self.lock().queries.len()
    }

    /// Stops the workers once the queues are empty; later submissions are refused.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_all();
    }

    /// Shuts the workers down with the process: what waits is refused, what runs finishes, and
    /// this returns once no worker runs (or after `wait`), so that the process does not exit
    /// under a run in progress.
    pub(crate) fn stop(&self, wait: Duration) {
        let mut q = self.lock();
        q.closed = true;
        q.stopping = true;
        for job in q.queries.drain(..) {
            let _ = job.reply.send(Err(Refused::Failed));
        }
        for job in q.work.drain(..) {
            let _ = job.reply.send(Err(Refused::Failed));
        }
        self.wake.notify_all();
        let until = Instant::now() + wait;
        while q.busy > 0 {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            q = self.wake.wait_timeout(q, left).unwrap_or_else(std::sync::PoisonError::into_inner).0;
        }
    }

    fn stopping(&self) -> bool {
        self.lock().stopping
    }

    /// A worker's loop, until the pool is closed and drained.
    pub(crate) fn work(&self, runner: &mut dyn Run, stats: &Stats) {
        loop {
            let mut q = self.lock();
            while q.queries.is_empty() && q.work.is_empty() && !q.closed {
                q = self.wake.wait(q).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if q.queries.is_empty() && q.work.is_empty() {
                return;
            }
            let now = Instant::now();
            let mut batch = Vec::new();
            while batch.len() < self.max_batch {
                let Some(job) = q.queries.pop_front() else { break };
                if job.deadline <= now {
                    stats.shed_late();
                    let _ = job.reply.send(Err(Refused::Shed));
                } else {
                    batch.push(job);
                }
            }
            let work = if batch.is_empty() { q.work.pop_front() } else { None };
            q.busy += 1;
            drop(q);
            if !batch.is_empty() {
                let started = Instant::now();
                let texts: Vec<&Prepared> = batch.iter().map(|j| &j.text).collect();
                let result = runner.run(&texts);
                stats.batch(batch.len(), started.elapsed());
                match result {
                    Ok(vectors) => {
                        for (job, vector) in batch.into_iter().zip(vectors) {
                            let _ = job.reply.send(Ok(vector.into()));
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, "encoding a batch of messages failed");
                        for job in batch {
                            let _ = job.reply.send(Err(Refused::Failed));
                        }
                    }
                }
            } else if let Some(job) = work {
                let started = Instant::now();
                let result = self.run_work(runner, &job.texts);
                stats.work(job.texts.len(), started.elapsed());
                if let Err(error) = &result
                    && !self.stopping()
                {
                    tracing::error!(%error, "encoding pack texts failed");
                }
                let _ = job.reply.send(result.map_err(|_| Refused::Failed));
            }
            self.lock().busy -= 1;
            self.wake.notify_all();
        }
    }

    fn run_work(&self, runner: &mut dyn Run, texts: &[Prepared]) -> Result<Vec<Vec<f32>>, String> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.max_batch) {
            if self.stopping() {
                return Err("the encoder is stopping".into());
            }
            let refs: Vec<&Prepared> = chunk.iter().collect();
            out.extend(runner.run(&refs)?);
        }
        Ok(out)
    }
}

/// How long a message may wait, at most, whatever the budget says: a guard for a clock jump.
pub(crate) const MAX_BUDGET: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo {
        delay: Duration,
        batches: Arc<Mutex<Vec<usize>>>,
    }

    impl Run for Echo {
        fn run(&mut self, texts: &[&Prepared]) -> Result<Vec<Vec<f32>>, String> {
            std::thread::sleep(self.delay);
            self.batches.lock().unwrap().push(texts.len());
            Ok(texts.iter().map(|t| vec![t.ids.len() as f32]).collect())
        }
    }

    fn prepared(n: usize) -> Prepared {
        Prepared { key: format!("t{n}").into(), ids: vec![0; n] }
    }

    #[test]
    fn waiting_messages_share_a_batch_and_late_ones_are_shed() {
        let pool = Arc::new(Pool::new(100, 8));
        let stats = Arc::new(Stats::default());
        let batches = Arc::new(Mutex::new(Vec::new()));
        let mut replies = Vec::new();
        // Queued before the worker starts: one batch of 8, then the rest.
        for n in 1..=10 {
            let (reply, rx) = oneshot::channel();
            let deadline = if n == 10 { Instant::now() } else { Instant::now() + Duration::from_secs(5) };
            assert!(pool.submit(QueryJob { text: prepared(n), deadline, reply }).is_ok());
            replies.push(rx);
        }
        let worker = {
            let (pool, stats, batches) = (Arc::clone(&pool), Arc::clone(&stats), Arc::clone(&batches));
            std::thread::spawn(move || {
                pool.work(&mut Echo { delay: Duration::from_millis(5), batches }, &stats)
            })
        };
        let results: Vec<QueryReply> = replies.into_iter().map(|rx| rx.blocking_recv().unwrap()).collect();
        for (n, result) in results.iter().enumerate().take(9) {
            assert_eq!(result.as_deref().unwrap(), [(n + 1) as f32]);
        }
        assert_eq!(results[9], Err(Refused::Shed), "its deadline had passed");
        pool.close();
        worker.join().unwrap();
        assert_eq!(*batches.lock().unwrap(), vec![8, 1]);
        assert_eq!(stats.snapshot().shed, 1);
    }

    #[test]
    fn a_full_queue_refuses_and_pack_work_waits_for_messages() {
        let pool = Pool::new(2, 4);
        let job = |n| {
            let (reply, _rx) = oneshot::channel();
            QueryJob { text: prepared(n), deadline: Instant::now() + Duration::from_secs(5), reply }
        };
        assert!(pool.submit(job(1)).is_ok());
        assert!(pool.submit(job(2)).is_ok());
        assert!(pool.submit(job(3)).is_err(), "the queue holds two");
        let (reply, work) = oneshot::channel();
        pool.submit_work(WorkJob { texts: (1..=6).map(prepared).collect(), reply });
        let stats = Stats::default();
        let batches = Arc::new(Mutex::new(Vec::new()));
        pool.close();
        pool.work(&mut Echo { delay: Duration::ZERO, batches: Arc::clone(&batches) }, &stats);
        // Messages first (one batch of 2), then the pack's six texts in batches of four.
        assert_eq!(*batches.lock().unwrap(), vec![2, 4, 2]);
        assert_eq!(work.blocking_recv().unwrap().unwrap().len(), 6);
    }
}
