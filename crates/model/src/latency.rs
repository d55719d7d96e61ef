//! Latency histograms, made one way for `stats`, `replay` and `diff`.
//!
//! Each report counts latencies (in µs) into HDR histograms that grow to
//! the largest value recorded, so memory follows the latencies seen and no
//! latency is cut to a bound. [`LatencyHistogram`] wraps one: it is
//! built without a fallible step at the call site and records, merges and
//! reads percentiles the same way for every report.

use hdrhistogram::{Counter, Histogram};

/// Latencies in µs counted in an HDR histogram that grows as needed.
///
/// Reading an empty histogram gives 0 for every figure.
#[derive(Debug, Clone)]
pub struct LatencyHistogram<T: Counter = u64> {
    // `None` only if hdrhistogram refused the bounds, which the clamping
    // in `new` rules out: then nothing is counted rather than a panic.
    histogram: Option<Histogram<T>>,
}

impl<T: Counter> LatencyHistogram<T> {
    /// An empty histogram sized to start with for values from 1 to
    /// `starting_high` µs at `significant` digits (1 to 5; others are
    /// clamped to that range). Larger values make it grow.
    ///
    /// A small `starting_high` keeps an unused histogram small; a large
    /// one saves the growing for a histogram that will see long calls.
    pub fn new(starting_high: u64, significant: u8) -> Self {
        let histogram =
            Histogram::new_with_bounds(1, starting_high.max(2), significant.clamp(1, 5))
                .ok()
                .map(|mut histogram| {
                    histogram.auto(true);
                    histogram
                });
        LatencyHistogram { histogram }
    }

    /// Counts one latency of `us` µs (0 counts as 1 µs).
    pub fn record(&mut self, us: u64) {
        if let Some(histogram) = self.histogram.as_mut()
            && histogram.record(us.max(1)).is_err()
        {
            // Only when growing would overflow usize: not on a 64-bit host.
            histogram.saturating_record(us.max(1));
        }
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &LatencyHistogram<T>) {
        if let (Some(mine), Some(theirs)) = (self.histogram.as_mut(), other.histogram.as_ref()) {
            // Fails only on a counter overflow: the counts stay as they were.
            let _ = mine.add(theirs);
        }
    }

    /// The latency at quantile `q` (0.0 to 1.0), µs; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        self.counted().map_or(0, |h| h.value_at_quantile(q))
    }

    /// The largest latency counted (to the histogram's precision), µs.
    pub fn max(&self) -> u64 {
        self.counted().map_or(0, Histogram::max)
    }

    /// The mean latency, µs.
    pub fn mean(&self) -> f64 {
        self.counted().map_or(0.0, Histogram::mean)
    }

    /// Latencies counted.
    pub fn len(&self) -> u64 {
        self.histogram.as_ref().map_or(0, Histogram::len)
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn counted(&self) -> Option<&Histogram<T>> {
        self.histogram.as_ref().filter(|h| !h.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_grows_past_where_it_started() {
        let mut h = LatencyHistogram::<u64>::new(2, 3);
        assert!(h.is_empty());
        assert_eq!((h.quantile(0.5), h.max(), h.mean()), (0, 0, 0.0));
        for us in [0, 10, 10_000, 7_200_000_000] {
            h.record(us);
        }
        assert_eq!(h.len(), 4);
        let two_hours = 7_200_000_000.0;
        assert!((h.max() as f64 - two_hours).abs() < two_hours * 0.001);
        assert_eq!(h.quantile(0.0), 1, "0 µs counts as 1");
    }

    #[test]
    fn out_of_range_precision_is_clamped_and_counts_merge() {
        let mut a = LatencyHistogram::<u32>::new(3_600_000_000, 2);
        let mut b = LatencyHistogram::<u32>::new(0, 9);
        a.record(100);
        b.record(300);
        a.add(&b);
        assert_eq!(a.len(), 2);
        assert!((299..=301).contains(&a.max()), "{}", a.max());
    }
}
