//! A fixed-bucket, lock-free latency histogram.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::types::Error;

/// The default bucket bounds: 1 µs to 10 s in a 1, 2.5, 5 series (22 buckets, plus `+Inf`).
const DEFAULT_BOUNDS_NANOS: [u64; 22] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// A histogram of durations with fixed buckets, recorded from any number of threads without
/// a lock.
///
/// Each [`record`](Histogram::record) is a binary search over the bounds and two relaxed
/// atomic additions (the bucket's count and the sum); nothing allocates after construction.
/// [`snapshot`](Histogram::snapshot) reads it as cumulative buckets in the shape Prometheus
/// wants (`le` bounds ending in `+Inf`). The runtime keeps one per component when
/// [`RuntimeBuilder::handler_latency`](crate::RuntimeBuilder::handler_latency) is on; any other
/// part of a program (an HTTP front-end timing its requests) may keep its own.
///
/// The total count is the sum of the buckets, so a snapshot's `count` always equals its last
/// cumulative bucket. A snapshot taken while other threads record may see a duration in the
/// sum and not yet in its bucket (or the reverse): each figure is exact, the pair may be one
/// record apart.
///
/// # Examples
///
/// ```
/// use reactorium::Histogram;
/// use std::time::Duration;
///
/// let h = Histogram::new();
/// h.record(Duration::from_micros(3));
/// h.record(Duration::from_millis(40));
/// h.record(Duration::from_secs(60)); // beyond the last bound: only in `+Inf`
///
/// let s = h.snapshot();
/// assert_eq!(s.count, 3);
/// assert_eq!(s.sum, Duration::from_micros(60_040_003));
/// // Cumulative: durations at or below each bound.
/// let at = |bound: Duration| s.buckets.iter().find(|b| b.0 == bound).unwrap().1;
/// assert_eq!(at(Duration::from_micros(1)), 0);
/// assert_eq!(at(Duration::from_micros(5)), 1);
/// assert_eq!(at(Duration::from_millis(50)), 2);
/// assert_eq!(at(Duration::from_secs(10)), 2);
/// ```
pub struct Histogram {
    // Upper bounds in nanoseconds, strictly increasing.
    bounds: Box<[u64]>,
    // Per-bucket (not cumulative) counts; one more than `bounds`: the last is `+Inf`.
    counts: Box<[AtomicU64]>,
    // Sum of the recorded durations in nanoseconds (wraps after ~584 years of recorded time).
    sum_nanos: AtomicU64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.snapshot();
        f.debug_struct("Histogram")
            .field("buckets", &self.bounds.len())
            .field("count", &s.count)
            .field("sum", &s.sum)
            .finish()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    /// A histogram with the default bounds: 1 µs to 10 s in a 1, 2.5, 5 series (1 µs,
    /// 2.5 µs, 5 µs, 10 µs, ... 5 s, 10 s), 22 buckets plus `+Inf`.
    pub fn new() -> Histogram {
        Histogram::from_nanos(DEFAULT_BOUNDS_NANOS.into())
    }

    /// A histogram with the given upper bounds (a `+Inf` bucket is always added after them).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when `bounds` is empty or not strictly increasing.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactorium::Histogram;
    /// use std::time::Duration;
    ///
    /// let h = Histogram::with_bounds(&[Duration::from_millis(10), Duration::from_millis(100)])?;
    /// h.record(Duration::from_millis(20));
    /// assert_eq!(h.snapshot().buckets, [(Duration::from_millis(10), 0), (Duration::from_millis(100), 1)]);
    /// assert!(Histogram::with_bounds(&[Duration::from_secs(2), Duration::from_secs(1)]).is_err());
    /// # Ok::<(), reactorium::Error>(())
    /// ```
    pub fn with_bounds(bounds: &[Duration]) -> Result<Histogram, Error> {
        if bounds.is_empty() || bounds.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::InvalidConfig {
                reason: "histogram bounds must be non-empty and strictly increasing".into(),
            });
        }
        Ok(Histogram::from_nanos(
            bounds.iter().map(|d| nanos(*d)).collect(),
        ))
    }

    fn from_nanos(bounds: Box<[u64]>) -> Histogram {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram {
            bounds,
            counts,
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Counts one duration: in the first bucket whose bound is at least `d` (Prometheus's
    /// `le`), or in `+Inf`. Never blocks; safe from any number of threads at once.
    #[inline]
    pub fn record(&self, d: Duration) {
        let n = nanos(d);
        let i = self.bounds.partition_point(|&b| b < n);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(n, Ordering::Relaxed);
    }

    /// The counts now, as cumulative buckets.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0u64;
        let mut buckets = Vec::with_capacity(self.bounds.len());
        for (bound, count) in self.bounds.iter().zip(self.counts.iter()) {
            total += count.load(Ordering::Relaxed);
            buckets.push((Duration::from_nanos(*bound), total));
        }
        total += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        HistogramSnapshot {
            buckets,
            count: total,
            sum: Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed)),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What a [`Histogram`] held at one moment: cumulative buckets, the count and the sum.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HistogramSnapshot {
    /// `(upper bound, durations at or below it)`, bounds increasing, counts cumulative (so
    /// never decreasing). The implicit `+Inf` bucket is [`count`](HistogramSnapshot::count).
    pub buckets: Vec<(Duration, u64)>,
    /// Durations recorded: the `+Inf` bucket.
    pub count: u64,
    /// Their sum.
    pub sum: Duration,
}

impl HistogramSnapshot {
    /// The mean duration, `None` when nothing was recorded.
    pub fn mean(&self) -> Option<Duration> {
        let mean = self.sum.as_nanos() / u128::from(self.count.max(1));
        (self.count > 0).then(|| Duration::from_nanos(u64::try_from(mean).unwrap_or(u64::MAX)))
    }

    /// An upper bound on the `q` quantile (`0.0..=1.0`): the bound of the first bucket that
    /// holds at least that share of the durations. `None` when nothing was recorded, or when
    /// the quantile falls in the `+Inf` bucket (above every bound).
    ///
    /// # Examples
    ///
    /// ```
    /// use reactorium::Histogram;
    /// use std::time::Duration;
    ///
    /// let h = Histogram::new();
    /// for _ in 0..99 { h.record(Duration::from_micros(20)); }
    /// h.record(Duration::from_millis(3));
    /// let s = h.snapshot();
    /// assert_eq!(s.quantile(0.5), Some(Duration::from_micros(25)));
    /// assert_eq!(s.quantile(1.0), Some(Duration::from_millis(5)));
    /// ```
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        let want = (q.clamp(0.0, 1.0) * self.count as f64).ceil().max(1.0) as u64;
        self.buckets
            .iter()
            .find(|(_, c)| *c >= want)
            .map(|(bound, _)| *bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_on_a_bound_counts_in_that_bucket() {
        let h = Histogram::new();
        h.record(Duration::from_micros(1));
        h.record(Duration::from_nanos(1_001));
        h.record(Duration::ZERO);
        let s = h.snapshot();
        assert_eq!(s.buckets[0], (Duration::from_micros(1), 2));
        assert_eq!(s.buckets[1], (Duration::from_nanos(2_500), 3));
        assert_eq!(s.count, 3);
    }

    #[test]
    fn default_bounds_increase_and_span_a_microsecond_to_ten_seconds() {
        let s = Histogram::new().snapshot();
        assert_eq!(s.buckets.first().unwrap().0, Duration::from_micros(1));
        assert_eq!(s.buckets.last().unwrap().0, Duration::from_secs(10));
        assert!(s.buckets.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn concurrent_records_all_count() {
        let h = std::sync::Arc::new(Histogram::new());
        let per = if cfg!(miri) { 20 } else { 5_000 };
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let h = std::sync::Arc::clone(&h);
                std::thread::spawn(move || {
                    for i in 0..per {
                        h.record(Duration::from_nanos(i * 1_000 + t));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = h.snapshot();
        assert_eq!(s.count, 4 * per);
        assert!(s.buckets.windows(2).all(|w| w[0].1 <= w[1].1));
        assert!(s.mean().is_some());
    }
}
