//! A distribution of non-negative integers (milliseconds, counts) as an HdrHistogram with two significant digits:
//! exact below 256, within 0.4 % above (half a bucket of 1/128 relative width). Count, sum, min and max are kept
//! exactly beside it. Distributions merge (across shards and workers) and turn into CloudWatch `Values`/`Counts`.

use hdrhistogram::Histogram;

/// Significant digits of the histogram: bucket width at most 1/128 of the value, so the bucket midpoint published
/// for a value is within 0.4 % of it - inside the 1 % percentile bound with room to spare.
const SIGFIG: u8 = 2;

#[derive(Debug, Clone)]
pub struct Distribution {
    histogram: Histogram<u64>,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Distribution {
    fn default() -> Self {
        Self::new()
    }
}

impl PartialEq for Distribution {
    fn eq(&self, other: &Self) -> bool {
        self.sum == other.sum && self.min == other.min && self.max == other.max && self.buckets() == other.buckets()
    }
}

impl Distribution {
    pub fn new() -> Self {
        #[allow(clippy::expect_used)] // A constant that hdrhistogram accepts (1..=5).
        let histogram = Histogram::new(SIGFIG).expect("two significant digits is a valid precision");
        Self { histogram, sum: 0, min: u64::MAX, max: 0 }
    }

    pub fn record(&mut self, value: u64) {
        self.record_n(value, 1);
    }

    pub fn record_n(&mut self, value: u64, count: u64) {
        if count == 0 {
            return;
        }
        // An auto-resizing histogram takes any u64; a saturated count is the only failure, far past any window.
        if self.histogram.record_n(value, count).is_err() {
            return;
        }
        self.sum += u128::from(value) * u128::from(count);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    pub fn merge(&mut self, other: &Self) {
        if other.count() == 0 {
            return;
        }
        // Both auto-resize, so adding cannot run out of range.
        let _ = self.histogram.add(&other.histogram);
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    pub fn sum(&self) -> u128 {
        self.sum
    }

    pub fn min(&self) -> Option<u64> {
        (self.count() > 0).then_some(self.min)
    }

    pub fn max(&self) -> Option<u64> {
        (self.count() > 0).then_some(self.max)
    }

    /// The distinct bucket values (each bucket's midpoint, exact for values below 256) with their counts,
    /// ascending: what is published to CloudWatch as `Values`/`Counts`.
    pub fn buckets(&self) -> Vec<(f64, f64)> {
        self.histogram
            .iter_recorded()
            .map(|v| {
                let value = self.histogram.median_equivalent(v.value_iterated_to());
                (value as f64, v.count_at_value() as f64)
            })
            .collect()
    }

    /// The buckets in chunks of at most `max_values` (CloudWatch takes 150 per datum); CloudWatch merges the
    /// datums of one metric and timestamp, so the chunks together are the distribution.
    pub fn chunks(&self, max_values: usize) -> Vec<(Vec<f64>, Vec<f64>)> {
        self.buckets().chunks(max_values.max(1)).map(|c| c.iter().copied().unzip()).collect()
    }
}

/// The nearest-rank percentile (`q` in 0..=100) of values with counts, as CloudWatch computes it from `Values` and
/// `Counts`; `None` when empty.
pub fn percentile(values_counts: &[(f64, f64)], q: f64) -> Option<f64> {
    let mut sorted: Vec<(f64, f64)> = values_counts.iter().copied().filter(|(_, c)| *c > 0.0).collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = sorted.iter().map(|(_, c)| c).sum();
    if total == 0.0 {
        return None;
    }
    let rank = (q / 100.0 * total).ceil().max(1.0);
    let mut seen = 0.0;
    for (v, c) in &sorted {
        seen += c;
        if seen >= rank {
            return Some(*v);
        }
    }
    sorted.last().map(|(v, _)| *v)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn exact_percentile(values: &[u64], q: f64) -> f64 {
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        let rank = (q / 100.0 * sorted.len() as f64).ceil().max(1.0) as usize;
        sorted[rank - 1] as f64
    }

    fn of(values: &[u64]) -> Distribution {
        let mut d = Distribution::new();
        values.iter().for_each(|v| d.record(*v));
        d
    }

    /// The percentiles of what is published, split into 150-value datums and merged back as CloudWatch does,
    /// against the exact percentiles of the input: within 1 % relative.
    fn check_accuracy(values: &[u64]) {
        let d = of(values);
        let published: Vec<(f64, f64)> = d.chunks(150).into_iter().flat_map(|(v, c)| v.into_iter().zip(c)).collect();
        assert!(d.chunks(150).iter().all(|(v, _)| v.len() <= 150));
        for q in [50.0, 90.0, 99.0, 99.9] {
            let exact = exact_percentile(values, q);
            let got = percentile(&published, q).unwrap();
            let error = if exact == 0.0 { got } else { (got - exact).abs() / exact };
            assert!(error <= 0.01, "p{q}: published {got}, exact {exact} ({:.3} %)", error * 100.0);
        }
        assert_eq!(published.iter().map(|(_, c)| *c as u64).sum::<u64>(), values.len() as u64);
    }

    /// A deterministic pseudo-random stream (xorshift), so the accuracy inputs are reproducible.
    fn stream(seed: u64) -> impl Iterator<Item = f64> {
        let mut x = seed.max(1);
        std::iter::from_fn(move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Some((x >> 11) as f64 / (1u64 << 53) as f64)
        })
    }

    #[test]
    fn percentiles_of_skewed_and_multimodal_inputs_are_within_one_percent() {
        // Log-normal-ish meeting start durations: most near 1-2 s, a long tail to minutes.
        let skewed: Vec<u64> = stream(7).take(50_000).map(|u| (800.0 * (6.0 * u * u * u).exp()) as u64).collect();
        check_accuracy(&skewed);
        // Three modes: fast cached joins, normal joins, joins after a TURN fallback.
        let modes = [(150.0, 20.0), (1_800.0, 300.0), (12_000.0, 2_500.0)];
        let multimodal: Vec<u64> = stream(11)
            .zip(stream(13))
            .take(60_000)
            .map(|(a, b)| {
                let (mean, spread) = modes[(a * 3.0) as usize % 3];
                (mean + (b - 0.5) * 2.0 * spread).max(0.0) as u64
            })
            .collect();
        check_accuracy(&multimodal);
        // Small counts (reconnects per session) are exact.
        let counts: Vec<u64> = stream(5).take(10_000).map(|u| (u * u * 12.0) as u64).collect();
        check_accuracy(&counts);
        assert!(of(&counts).buckets().iter().all(|(v, _)| v.fract() == 0.0 && *v < 12.0));
    }

    #[test]
    fn wide_distributions_split_into_150_value_chunks() {
        let d = of(&(0..100_000).step_by(7).collect::<Vec<_>>());
        let chunks = d.chunks(150);
        assert!(chunks.len() > 3);
        assert!(chunks.iter().all(|(v, c)| v.len() == c.len() && v.len() <= 150));
        let flat: Vec<f64> = chunks.iter().flat_map(|(v, _)| v.iter().copied()).collect();
        assert!(flat.windows(2).all(|w| w[0] < w[1]), "ascending and distinct");
    }

    #[test]
    fn exact_statistics_are_kept_beside_the_histogram() {
        let d = of(&[3, 1_000_003, 250, 17]);
        assert_eq!((d.count(), d.sum(), d.min(), d.max()), (4, 1_000_273, Some(3), Some(1_000_003)));
        assert_eq!(Distribution::new().min(), None);
        assert_eq!(percentile(&[], 50.0), None);
    }

    proptest! {
        #[test]
        fn percentiles_are_ordered_and_bounded(values in prop::collection::vec(0u64..10_000_000, 1..400)) {
            let d = of(&values);
            let b = d.buckets();
            let (p50, p90, p99) = (percentile(&b, 50.0).unwrap(), percentile(&b, 90.0).unwrap(), percentile(&b, 99.0).unwrap());
            let max = *values.iter().max().unwrap() as f64;
            prop_assert!(p50 <= p90 && p90 <= p99 && p99 <= max * 1.004 + 1.0);
            check_accuracy(&values);
        }

        #[test]
        fn merging_is_associative_and_commutative(
            a in prop::collection::vec(0u64..1_000_000, 0..100),
            b in prop::collection::vec(0u64..1_000_000, 0..100),
            c in prop::collection::vec(0u64..1_000_000, 0..100),
        ) {
            let (da, db, dc) = (of(&a), of(&b), of(&c));
            let mut left = da.clone();
            left.merge(&db);
            left.merge(&dc);
            let mut bc = db.clone();
            bc.merge(&dc);
            let mut right = da.clone();
            right.merge(&bc);
            prop_assert_eq!(&left, &right);
            let mut commuted = dc.clone();
            commuted.merge(&db);
            commuted.merge(&da);
            prop_assert_eq!(&left, &commuted);
            let all: Vec<u64> = a.iter().chain(&b).chain(&c).copied().collect();
            prop_assert_eq!(left, of(&all));
        }
    }
}
