//! What one build of a store's knowledge may spend: a deadline and a memory budget.
//!
//! A pack is bounded first by its input (entries, text lengths, upload size). The budget bounds
//! the build itself: the build checks it between its stages and inside its long loops (the
//! classifier's classes, the index's documents), and stops with [`OverBudget`] as soon as the
//! time is up or what it is about to hold is over the memory allowed. Memory is counted from
//! the sizes of what the build allocates (texts, terms, features, weights, the index writer's
//! arena), scaled by what such counts leave out as measured, not read from the process, so
//! one store's build is judged on its own, whatever else the server is doing.

use std::time::{Duration, Instant};

/// A build's limits, started when the build starts.
#[derive(Debug, Clone)]
pub struct BuildBudget {
    started: Instant,
    time: Option<Duration>,
    max_bytes: Option<usize>,
}

/// Why a build was stopped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OverBudget {
    /// The build ran past its deadline.
    #[error(
        "building the pack took longer than the {seconds} s allowed (content.max_build_seconds), \
         while {stage}; split the pack into fewer, larger entries or raise the limit"
    )]
    Time {
        /// The limit, in seconds.
        seconds: f64,
        /// What the build was doing.
        stage: &'static str,
    },
    /// What the build was about to hold is over its memory budget.
    #[error(
        "building the pack needs about {needed_mb} MB while {stage}, more than the {max_mb} MB \
         allowed (content.max_build_mb); split the pack or raise the limit"
    )]
    Memory {
        /// The estimate, in MB (rounded up).
        needed_mb: usize,
        /// The limit, in MB.
        max_mb: usize,
        /// What the build was doing.
        stage: &'static str,
    },
}

const MB: usize = 1 << 20;

/// How much more a build really takes than the sizes it counts: what the counts leave out item
/// by item (the allocator's rounding, vectors' spare capacity, hash tables, the index's segment
/// merges). Measured with `benches/packs.py` and `mibot pack import` under `/usr/bin/time -v`
/// (docs/performance.md): 100,000 realistic entries counted 198 MB and grew the process by
/// 472 MB; 100,000 junk entries counted 54 MB and grew it by 157 MB.
const UNCOUNTED: usize = 3;

/// About the memory a build that counts `bytes` takes.
pub(super) fn estimate(bytes: usize) -> usize {
    bytes.saturating_mul(UNCOUNTED)
}

impl BuildBudget {
    /// No limits: for the evaluation command, benches and tests of the decision.
    pub fn unlimited() -> Self {
        Self { started: Instant::now(), time: None, max_bytes: None }
    }

    /// At most `seconds` and `max_mb` megabytes, from now.
    pub fn new(seconds: f64, max_mb: usize) -> Self {
        Self {
            started: Instant::now(),
            time: Some(Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)),
            max_bytes: Some(max_mb.saturating_mul(MB)),
        }
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        self.time.is_some_and(|t| self.started.elapsed() >= t)
    }

    /// Stops the build when its time is up.
    pub fn check_time(&self, stage: &'static str) -> Result<(), OverBudget> {
        match self.time {
            Some(t) if self.started.elapsed() >= t => {
                Err(OverBudget::Time { seconds: t.as_secs_f64(), stage })
            }
            _ => Ok(()),
        }
    }

    /// Stops when `bytes`, counted exactly (dense vectors, say), are over the memory budget.
    pub fn check_exact(&self, stage: &'static str, bytes: usize) -> Result<(), OverBudget> {
        match self.max_bytes {
            Some(max) if bytes > max => {
                Err(OverBudget::Memory { needed_mb: bytes.div_ceil(MB), max_mb: max / MB, stage })
            }
            _ => Ok(()),
        }
    }

    /// Stops the build when its time is up or when `bytes`, the sizes it counts of what it
    /// holds (or is about to) at `stage`, make an [`estimate`] over the memory budget.
    pub fn check(&self, stage: &'static str, bytes: usize) -> Result<(), OverBudget> {
        self.check_time(stage)?;
        let needed = estimate(bytes);
        match self.max_bytes {
            Some(max) if needed > max => {
                Err(OverBudget::Memory { needed_mb: needed.div_ceil(MB), max_mb: max / MB, stage })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_over_the_budget_is_refused_with_the_figures() {
        let budget = BuildBudget::new(60.0, 30);
        assert!(budget.check("training", 10 * MB).is_ok());
        let refused = budget.check("training", 10 * MB + 1).unwrap_err();
        assert_eq!(refused, OverBudget::Memory { needed_mb: 31, max_mb: 30, stage: "training" });
        assert!(refused.to_string().contains("content.max_build_mb"), "{refused}");
    }

    #[test]
    fn a_zero_deadline_has_passed_at_once_and_no_limit_never_does() {
        let budget = BuildBudget::new(0.0, 10);
        assert!(budget.expired());
        let refused = budget.check("indexing", 0).unwrap_err();
        assert_eq!(refused, OverBudget::Time { seconds: 0.0, stage: "indexing" });
        assert!(refused.to_string().contains("content.max_build_seconds"), "{refused}");
        let free = BuildBudget::unlimited();
        assert!(!free.expired());
        assert!(free.check("indexing", usize::MAX).is_ok());
    }
}
