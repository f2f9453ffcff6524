//! [`DurationHistogram`]: connection durations in fixed buckets of atomics. The crate's own
//! histogram takes a lock on every observation; this one only adds — and an accept loop
//! adds to a shard of its own ([`HistogramShard`], see `sharded.rs`), summed at scrape time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

use super::sharded::{Padded, Sharded, add_as_only_writer};

/// Upper bounds of the buckets, in microseconds: from a quick request (1 ms) to a long
/// session (1 h). Whole microseconds, so that placing a duration needs no float.
const BOUNDS_US: [u64; 14] = [
    1_000,
    5_000,
    10_000,
    50_000,
    100_000,
    500_000,
    1_000_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    300_000_000,
    1_800_000_000,
    3_600_000_000,
];

/// A histogram of durations; clones share the counts.
#[derive(Debug, Clone, Default)]
pub struct DurationHistogram {
    inner: Arc<Sharded<Counts>>,
}

/// Per bucket (not cumulative; the last is +Inf), and the sum. The count is the buckets'
/// sum, so an observation is two adds.
#[derive(Debug, Default)]
struct Counts {
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    sum_micros: AtomicU64,
}

fn micros_and_bucket(lasted: Duration) -> (u64, usize) {
    let micros = u64::try_from(lasted.as_micros()).unwrap_or(u64::MAX);
    (micros, BOUNDS_US.partition_point(|&bound| bound < micros))
}

impl DurationHistogram {
    /// Records one duration, in the shared part.
    pub fn observe(&self, lasted: Duration) {
        let (micros, index) = micros_and_bucket(lasted);
        let counts = self.inner.shared();
        counts.buckets[index].fetch_add(1, Ordering::Relaxed);
        counts.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// How many durations were recorded.
    pub fn count(&self) -> u64 {
        self.totals().0.iter().sum()
    }

    /// A new shard of this histogram, for one writer (an accept loop) to own.
    pub fn shard(&self) -> HistogramShard {
        HistogramShard(self.inner.new_shard())
    }

    /// Every part's buckets and sum, added up.
    fn totals(&self) -> ([u64; BOUNDS_US.len() + 1], u64) {
        let mut buckets = [0u64; BOUNDS_US.len() + 1];
        let mut sum = 0u64;
        self.inner.for_each(|counts| {
            for (total, bucket) in buckets.iter_mut().zip(&counts.buckets) {
                *total = total.wrapping_add(bucket.load(Ordering::Relaxed));
            }
            sum = sum.wrapping_add(counts.sum_micros.load(Ordering::Relaxed));
        });
        (buckets, sum)
    }
}

/// One writer's part of a [`DurationHistogram`]; like a counter's shard, written through
/// `&mut` by its one owner.
#[derive(Debug)]
pub struct HistogramShard(Arc<Padded<Counts>>);

impl HistogramShard {
    /// Records one duration.
    pub fn observe(&mut self, lasted: Duration) {
        let (micros, index) = micros_and_bucket(lasted);
        let counts = &self.0.0;
        add_as_only_writer(&counts.buckets[index], 1);
        add_as_only_writer(&counts.sum_micros, micros);
    }
}

impl TypedMetric for DurationHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let (totals, sum_micros) = self.totals();
        // Per bucket: the encoder sums them into Prometheus' cumulative `le` buckets.
        #[allow(clippy::cast_precision_loss)] // the bounds are exact in f64
        let buckets: Vec<(f64, u64)> = BOUNDS_US
            .iter()
            .map(|&bound| bound as f64 / 1e6)
            .chain(std::iter::once(f64::INFINITY))
            .zip(totals)
            .collect();
        let count = totals.iter().sum();
        #[allow(clippy::cast_precision_loss)] // microseconds fit f64 exactly for 285 years
        let sum = sum_micros as f64 / 1e6;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_and_the_shared_part_add_up_in_the_right_buckets() {
        let histogram = DurationHistogram::default();
        histogram.observe(Duration::from_micros(1_000)); // le 0.001
        let mut shard = histogram.shard();
        shard.observe(Duration::from_micros(1_001)); // le 0.005
        shard.observe(Duration::from_secs(7_200)); // +Inf
        let (buckets, sum) = histogram.totals();
        assert_eq!(
            (buckets[0], buckets[1], buckets[BOUNDS_US.len()]),
            (1, 1, 1)
        );
        assert_eq!(sum, 1_000 + 1_001 + 7_200_000_000);
        assert_eq!(histogram.count(), 3);
    }
}
