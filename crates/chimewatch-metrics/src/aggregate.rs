//! The windowed aggregator: facts go into tumbling event-time windows, the watermark closes them, and each closed
//! window comes out once, with an id the caller uses to know when it was published.
//!
//! Late events (for a window already closed) are not dropped while CloudWatch still accepts their timestamp: they
//! gather in a late window for the same start, closed at the next [`Aggregator::close`], and published as additional
//! values for the same minute (CloudWatch merges values of one metric and timestamp). Events older than CloudWatch
//! accepts, or too far in the future, are counted and left out (they still reach the logs and the archive).
//!
//! Every dimension value goes through [`dimension::value`](crate::dimension::value) first, so no value a client sent
//! can make CloudWatch refuse a request. The cardinality guard then caps the distinct dimension combinations of a
//! metric over a rolling day of processing time: beyond the cap, values fold into `Other` (and are counted), because
//! every combination seen in a month is a billed CloudWatch metric, and values that rotate (a session id in a
//! status, say) must not mint one per window.

use std::borrow::Cow;
use std::collections::BTreeMap;

use hashbrown::Equivalent;

use crate::catalogue::{Dimension, Fact, FactValue, Unit};
use crate::distribution::Distribution;
use crate::window::{Watermark, window_start};

/// What an overflowing dimension value becomes.
pub const OTHER: &str = "Other";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregatorConfig {
    pub window_ms: i64,
    /// How far behind the newest event of a shard another event of it may arrive and still be on time.
    pub out_of_orderness_ms: i64,
    /// A shard with no events for this long no longer holds windows open.
    pub idle_timeout_ms: i64,
    /// Oldest event CloudWatch accepts (two weeks), with a margin for the time publishing takes.
    pub max_age_ms: i64,
    /// Furthest in the future CloudWatch accepts (two hours).
    pub max_future_ms: i64,
    /// Distinct dimension combinations per metric within a rolling day before values fold into `Other`.
    pub max_series_per_metric: usize,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        Self {
            window_ms: 60_000,
            out_of_orderness_ms: 10_000,
            idle_timeout_ms: 30_000,
            max_age_ms: 14 * 24 * 3600 * 1000 - 3600 * 1000,
            max_future_ms: 2 * 3600 * 1000,
            max_series_per_metric: 500,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum SeriesValue {
    Count(u64),
    Distribution(Distribution),
    /// The sum and number of a mean's values.
    Mean {
        sum: f64,
        count: u64,
    },
}

/// One metric series of a closed window.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub metric: &'static str,
    pub unit: Unit,
    pub dimensions: Vec<(String, String)>,
    pub value: SeriesValue,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClosedWindow {
    pub id: u64,
    pub start_ms: i64,
    /// Values for a window that was already published (CloudWatch adds them to the same minute).
    pub late: bool,
    pub series: Vec<Series>,
}

/// Where an event went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Window(u64),
    /// Older than CloudWatch accepts.
    TooOld,
    /// Further in the future than CloudWatch accepts.
    TooNew,
}

type SeriesKey = (&'static str, Vec<(String, String)>);

/// The maps of series, hashed with foldhash: hashing their keys was a third of the catalogue and aggregator's time
/// with SipHash, and the cardinality guard bounds how many keys a client can make them hold. hashbrown's, to look a
/// fact's borrowed dimensions up without building the owned key ([`Dims`]).
type SeriesMap<K, V> = hashbrown::HashMap<K, V, foldhash::fast::RandomState>;

/// A fact's dimensions, looked up as the owned `Vec<(String, String)>` they equal. Derived `Hash` hashes the slice as
/// the `Vec` hashes (length, then each name and value as `str`), which `hashbrown` requires of an equivalent key.
#[derive(Hash)]
struct Dims<'f, 'a>(&'f [Dimension<'a>]);

impl Equivalent<Vec<(String, String)>> for Dims<'_, '_> {
    fn equivalent(&self, key: &Vec<(String, String)>) -> bool {
        self.0.len() == key.len() && self.0.iter().zip(key).all(|((n, v), (kn, kv))| n == kn && v == kv)
    }
}

/// A series looked up by a fact's metric and borrowed dimensions; hashes as the tuple [`SeriesKey`] does.
#[derive(Hash)]
struct SeriesOf<'f, 'a>(&'static str, Dims<'f, 'a>);

impl Equivalent<SeriesKey> for SeriesOf<'_, '_> {
    fn equivalent(&self, (metric, dims): &SeriesKey) -> bool {
        self.0 == *metric && self.1.equivalent(dims)
    }
}

fn owned(dims: &[Dimension<'_>]) -> Vec<(String, String)> {
    dims.iter().map(|(n, v)| (n.clone().into_owned(), v.clone().into_owned())).collect()
}

#[derive(Debug)]
struct Window {
    id: u64,
    series: SeriesMap<SeriesKey, Entry>,
}

/// A series of a window, and when (processing time) the cardinality guard last saw its combination.
#[derive(Debug)]
struct Entry {
    unit: Unit,
    value: SeriesValue,
    guarded_ms: i64,
}

/// How long a series of an open window takes facts without asking the guard again. Asking for every fact hashed each
/// fact's dimensions twice; asking once a minute still keeps an active combination's last sighting within a minute,
/// however long its window stays open (a slow shard can hold the watermark back for hours).
const GUARD_REFRESH_MS: i64 = 60_000;

/// A day of processing time: how long a dimension combination counts against its metric's cap after it was last seen.
const BUDGET_SPAN_MS: i64 = 24 * 3600 * 1000;

/// When each dimension combination of a metric was last seen.
type LastSeen = SeriesMap<Vec<(String, String)>, i64>;

/// The cardinality guard: the dimension combinations of each metric seen within the last day, and when each was
/// last seen (to within [`GUARD_REFRESH_MS`]). Memory is bounded by the cap times the number of metrics.
#[derive(Debug, Default)]
struct SeriesBudget {
    seen: SeriesMap<&'static str, LastSeen>,
    pruned_ms: i64,
}

impl SeriesBudget {
    /// Whether the combination may be its own series at `now_ms` (it is already one, or the metric is under `cap`).
    fn admit(&mut self, metric: &'static str, dims: &[Dimension<'_>], cap: usize, now_ms: i64) -> bool {
        if now_ms - self.pruned_ms >= 60_000 {
            for combos in self.seen.values_mut() {
                combos.retain(|_, last| now_ms - *last < BUDGET_SPAN_MS);
            }
            self.pruned_ms = now_ms;
        }
        let combos = self.seen.entry(metric).or_default();
        if let Some(last) = combos.get_mut(&Dims(dims)) {
            *last = (*last).max(now_ms);
            return true;
        }
        if combos.len() >= cap {
            return false;
        }
        combos.insert(owned(dims), now_ms);
        true
    }
}

/// Makes a value what the rule of [`crate::dimension`] makes it, copying only what the rule rewrites.
fn comply(v: &mut Cow<'_, str>) {
    let fixed = match v {
        // Trimmed or blank, a borrowed value stays borrowed (from the event, or `unknown`).
        Cow::Borrowed(s) => crate::dimension::value(s),
        Cow::Owned(s) => match crate::dimension::value(s) {
            // The same text, not merely as long (a blank value becomes `unknown`).
            Cow::Borrowed(same) if std::ptr::eq(same, s.as_str()) => return,
            other => Cow::Owned(other.into_owned()),
        },
    };
    *v = fixed;
}

/// Counters of what did not go the usual way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub late_events: u64,
    pub too_old: u64,
    pub too_new: u64,
    /// Facts whose dimension values were folded into `Other` by the cardinality guard.
    pub folded: u64,
}

#[derive(Debug)]
pub struct Aggregator {
    config: AggregatorConfig,
    watermark: Watermark,
    open: BTreeMap<i64, Window>,
    late: BTreeMap<i64, Window>,
    /// Windows ending at or before this were closed by the watermark.
    closed_through: i64,
    next_id: u64,
    counters: Counters,
    budget: SeriesBudget,
}

impl Aggregator {
    pub fn new(config: AggregatorConfig) -> Self {
        let watermark = Watermark::new(config.out_of_orderness_ms, config.idle_timeout_ms);
        Self {
            config,
            watermark,
            open: BTreeMap::new(),
            late: BTreeMap::new(),
            closed_through: i64::MIN,
            next_id: 1,
            counters: Counters::default(),
            budget: SeriesBudget::default(),
        }
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub fn open_windows(&self) -> usize {
        self.open.len() + self.late.len()
    }

    /// Adds one event's facts; `source` is its shard, `now_ms` the processing time.
    pub fn add(&mut self, source: &str, event_ms: i64, facts: Vec<Fact<'_>>, now_ms: i64) -> Placement {
        if event_ms < now_ms - self.config.max_age_ms {
            self.counters.too_old += 1;
            return Placement::TooOld;
        }
        if event_ms > now_ms + self.config.max_future_ms {
            self.counters.too_new += 1;
            return Placement::TooNew;
        }
        self.watermark.observe(source, event_ms, now_ms);
        let start = window_start(event_ms, self.config.window_ms);
        let is_late = start + self.config.window_ms <= self.closed_through;
        if is_late {
            self.counters.late_events += 1;
        }
        let next_id = &mut self.next_id;
        let windows = if is_late { &mut self.late } else { &mut self.open };
        let window = windows.entry(start).or_insert_with(|| {
            let id = *next_id;
            *next_id += 1;
            Window { id, series: SeriesMap::default() }
        });
        let cap = self.config.max_series_per_metric;
        for mut fact in facts {
            fact.dimensions.iter_mut().for_each(|(_, v)| comply(v));
            let guarded = |e: &Entry| now_ms - e.guarded_ms < GUARD_REFRESH_MS;
            let entry = match window.series.get_mut(&SeriesOf(fact.metric, Dims(&fact.dimensions))) {
                Some(found) if guarded(found) => found,
                _ => {
                    if !self.budget.admit(fact.metric, &fact.dimensions, cap, now_ms) {
                        self.counters.folded += 1;
                        fact.dimensions.iter_mut().for_each(|(_, v)| *v = Cow::Borrowed(OTHER));
                    }
                    let empty = match fact.value {
                        FactValue::Sample(_) => SeriesValue::Distribution(Distribution::new()),
                        FactValue::Occurrence | FactValue::Amount(_) => SeriesValue::Count(0),
                        FactValue::Mean(_) => SeriesValue::Mean { sum: 0.0, count: 0 },
                    };
                    let entry = window.series.entry((fact.metric, owned(&fact.dimensions)));
                    let entry = entry.or_insert(Entry { unit: fact.unit, value: empty, guarded_ms: now_ms });
                    entry.guarded_ms = now_ms;
                    entry
                }
            };
            match (&mut entry.value, fact.value) {
                (SeriesValue::Distribution(d), FactValue::Sample(v)) => d.record(v),
                (SeriesValue::Count(n), FactValue::Occurrence) => *n += 1,
                (SeriesValue::Count(n), FactValue::Amount(k)) => *n += k,
                (SeriesValue::Mean { sum, count }, FactValue::Mean(v)) if v.is_finite() => {
                    *sum += v;
                    *count += 1;
                }
                // A metric is a distribution or a count by the catalogue; a mismatch cannot come from it.
                _ => {}
            }
        }
        Placement::Window(window.id)
    }

    /// A shard this worker no longer reads.
    pub fn forget_source(&mut self, source: &str) {
        self.watermark.forget(source);
    }

    /// Closes the windows the watermark passed (all of them when every shard is idle), and every late window.
    pub fn close(&mut self, now_ms: i64) -> Vec<ClosedWindow> {
        let mut closed = Vec::new();
        let through = if self.watermark.all_idle(now_ms) {
            self.open.keys().next_back().map(|s| s + self.config.window_ms)
        } else {
            self.watermark.at(now_ms).map(|w| window_start(w, self.config.window_ms))
        };
        if let Some(through) = through {
            let still_open = self.open.split_off(&(through - self.config.window_ms + 1));
            for (start, w) in std::mem::replace(&mut self.open, still_open) {
                closed.push(finish(start, w, false));
            }
            self.closed_through = self.closed_through.max(through);
        }
        for (start, w) in std::mem::take(&mut self.late) {
            closed.push(finish(start, w, true));
        }
        closed
    }

    /// Closes every window now (a shard ended or the worker stops); later events for them count as late.
    pub fn close_all(&mut self) -> Vec<ClosedWindow> {
        if let Some(last) = self.open.keys().next_back() {
            self.closed_through = self.closed_through.max(last + self.config.window_ms);
        }
        let open = std::mem::take(&mut self.open).into_iter().map(|(s, w)| finish(s, w, false));
        let late = std::mem::take(&mut self.late).into_iter().map(|(s, w)| finish(s, w, true));
        open.chain(late).collect()
    }
}

fn finish(start_ms: i64, window: Window, late: bool) -> ClosedWindow {
    let mut series: Vec<Series> = window
        .series
        .into_iter()
        .map(|((metric, dimensions), Entry { unit, value, .. })| Series { metric, unit, dimensions, value })
        .collect();
    series.sort_by(|a, b| (a.metric, &a.dimensions).cmp(&(b.metric, &b.dimensions)));
    ClosedWindow { id: window.id, start_ms, late, series }
}

#[cfg(test)]
mod tests;
