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

/// The parts of a sharded metric: the shared one, which anyone adds to atomically, and one
/// per writer that took a shard, each written by its owner alone; a scrape reads them all.
#[derive(Debug, Default)]
pub(crate) struct Sharded<T> {
    shared: Padded<T>,
    shards: RwLock<Vec<Arc<Padded<T>>>>,
}

impl<T: Default> Sharded<T> {
    /// The shared part.
    pub(crate) fn shared(&self) -> &T {
        &self.shared.0
    }

    /// A new part, registered for the scrape, for one writer to own.
    pub(crate) fn new_shard(&self) -> Arc<Padded<T>> {
        let shard = Arc::new(Padded(T::default()));
        self.shards
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&shard));
        shard
    }

    /// Calls `read` on every part: the shared one, then each shard.
    pub(crate) fn for_each(&self, mut read: impl FnMut(&T)) {
        read(&self.shared.0);
        let shards = self.shards.read().unwrap_or_else(PoisonError::into_inner);
        for shard in shards.iter() {
            read(&shard.0);
        }
    }
}

/// Adds `n` to a shard's cell. Only the shard's owner writes it (through `&mut`, and a
/// shard is not `Clone`), so no other add can come between the load and the store; scrapes
/// only read it.
pub(crate) fn add_as_only_writer(cell: &AtomicU64, n: u64) {
    cell.store(
        cell.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

/// A counter whose total is its shared part plus every shard; clones share it.
#[derive(Debug, Clone, Default)]
pub struct ShardedCounter {
    inner: Arc<Sharded<AtomicU64>>,
}

impl ShardedCounter {
    /// Adds one, to the shared part.
    pub fn inc(&self) {
        self.inc_by(1);
    }

    /// Adds `n`, to the shared part.
    pub fn inc_by(&self, n: u64) {
        self.inner.shared().fetch_add(n, Ordering::Relaxed);
    }

    /// The total: the shared part and every shard.
    pub fn get(&self) -> u64 {
        let mut total = 0u64;
        self.inner
            .for_each(|part| total = total.wrapping_add(part.load(Ordering::Relaxed)));
        total
    }

    /// A new shard of this counter, for one writer (an accept loop) to own.
    pub fn shard(&self) -> CounterShard {
        CounterShard(self.inner.new_shard())
    }
}

/// One writer's part of a [`ShardedCounter`]. Not `Clone`, and written through `&mut`:
/// the single writer is what makes a plain load and store a correct add.
#[derive(Debug)]
pub struct CounterShard(Arc<Padded<AtomicU64>>);

impl CounterShard {
    /// Adds `n`.
    pub fn inc_by(&mut self, n: u64) {
        add_as_only_writer(&self.0.0, n);
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
