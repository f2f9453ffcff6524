//! [`ShardedCounter`]: a counter that its busiest writers — a server's accept loops — each
//! add to in a shard of their own ([`CounterShard`]), summed only when it is scraped.
//!
//! A shard has one writer, so adding to it is a plain load and store rather than a locked
//! read-modify-write, and each shard sits on its own cache lines, so that two accept loops
//! on two cores never bounce one line between them. Everyone else (connection tasks,
//! `listen`) adds to the shared part with an atomic add, as to any counter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// A value alone on its cache lines (128 bytes: the prefetcher pulls lines in pairs).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

/// A counter whose total is its shared part plus every shard; clones share it.
#[derive(Debug, Clone, Default)]
pub struct ShardedCounter {
    inner: Arc<CounterParts>,
}

#[derive(Debug, Default)]
struct CounterParts {
    shared: Padded<AtomicU64>,
    shards: RwLock<Vec<Arc<Padded<AtomicU64>>>>,
}

impl ShardedCounter {
    /// Adds one, to the shared part.
    pub fn inc(&self) {
        self.inc_by(1);
    }

    /// Adds `n`, to the shared part.
    pub fn inc_by(&self, n: u64) {
        self.inner.shared.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The total: the shared part and every shard.
    pub fn get(&self) -> u64 {
        let shards = self
            .inner
            .shards
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        shards
            .iter()
            .fold(self.inner.shared.0.load(Ordering::Relaxed), |sum, shard| {
                sum.wrapping_add(shard.0.load(Ordering::Relaxed))
            })
    }

    /// A new shard of this counter, for one writer (an accept loop) to own.
    pub fn shard(&self) -> CounterShard {
        let shard = Arc::new(Padded(AtomicU64::new(0)));
        self.inner
            .shards
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&shard));
        CounterShard(shard)
    }
}

/// One writer's part of a [`ShardedCounter`]. Not `Clone`, and written through `&mut`:
/// the single writer is what makes a plain load and store a correct add.
#[derive(Debug)]
pub struct CounterShard(Arc<Padded<AtomicU64>>);

impl CounterShard {
    /// Adds `n`.
    pub fn inc_by(&mut self, n: u64) {
        let cell = &self.0.0;
        // Only this shard's owner writes the cell (it is `&mut` here and not `Clone`), so
        // no other add can come between the load and the store; scrapes only read it.
        cell.store(
            cell.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }
}

impl TypedMetric for ShardedCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for ShardedCounter {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_is_the_shared_part_and_every_shard() {
        let counter = ShardedCounter::default();
        counter.inc();
        let mut first = counter.shard();
        let mut second = counter.clone().shard();
        first.inc_by(10);
        second.inc_by(100);
        second.inc_by(100);
        counter.inc_by(5);
        assert_eq!(counter.get(), 216);
        let moved = std::thread::spawn(move || {
            first.inc_by(1);
            first
        })
        .join()
        .expect("the thread ends");
        assert_eq!(counter.get(), 217);
        drop(moved);
        assert_eq!(counter.get(), 217, "a dropped shard's count stays");
    }
}
