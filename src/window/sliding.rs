//! Sliding windows with Kafka Streams semantics: a window per distinct set
//! of records whose event times differ by at most `size`.
//!
//! For every distinct event time `t` of a key there is a *left* window
//! holding the records in `[t - size, t]`, and, when some record of the key
//! lies in `(t, t + size]`, a *right* window holding those in
//! `[t + 1, t + 1 + size]`. Both are written half-open like every other
//! window: `[end - size - 1, end)`, so a window is known by its end alone.
//! Windows with the same bounds are one window.
//!
//! Records are pre-aggregated into one pane per (key, event time). A record
//! at `t` is late once its left window (ending `t + 1`) has closed; every
//! other window holding it ends later, so a record that is not late joins
//! windows that are all still open. The pane at `t` is needed until the
//! right window it anchors, ending `t + size + 2`, has closed.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap as HashMap;
use std::ops::Bound;

use super::{
    Assignment, Closed, EventTimeOutOfRange, OpenWindows, Pane, SavedWindows, WindowKind, WrongKind,
};
use crate::aggregate::{AggSpec, Aggregates};

/// Sliding windows holding records at most `size` apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sliding {
    size: i64,
}

impl Sliding {
    /// Windows of records whose event times differ by at most `size_ms`.
    pub fn new(size_ms: i64) -> Self {
        assert!(size_ms > 0, "invalid window");
        Self { size: size_ms }
    }

    /// Distance from a window's start to its (exclusive) end: `size + 1`.
    pub fn span(&self) -> i64 {
        self.size + 1
    }

    /// The pane of event time `t`.
    ///
    /// ```
    /// use streamfold::window::Sliding;
    /// let p = Sliding::new(10).pane(100).unwrap();
    /// assert_eq!((p.start, p.first_end, p.last_end), (100, 101, 112));
    /// ```
    ///
    /// # Errors
    /// When window ends would overflow (event times near `i64::MAX`).
    pub fn pane(&self, t: i64) -> Result<Pane, EventTimeOutOfRange> {
        let last_end = t.checked_add(self.size + 2).ok_or(EventTimeOutOfRange(t))?;
        Ok(Pane {
            start: t,
            end: t + 1,
            first_end: t + 1,
            last_end,
        })
    }
}

/// The open panes of one partition's sliding windows.
#[derive(Debug)]
pub struct SlidingStore {
    sliding: Sliding,
    panes: HashMap<String, BTreeMap<i64, Aggregates>>,
    by_time: BTreeSet<(i64, String)>,
    closed: Option<i64>,
}

impl SlidingStore {
    /// An empty store.
    pub fn new(sliding: Sliding) -> Self {
        Self {
            sliding,
            panes: HashMap::default(),
            by_time: BTreeSet::new(),
            closed: None,
        }
    }

    /// Merges a partial into the pane of `key` at event time `t`. Returns
    /// `true` when this opened a new pane.
    pub fn merge(&mut self, key: &str, t: i64, aggregates: Aggregates) -> bool {
        let panes = self.panes.entry(key.to_string()).or_default();
        if let Some(p) = panes.get_mut(&t) {
            p.merge(aggregates);
            return false;
        }
        panes.insert(t, aggregates);
        self.by_time.insert((t, key.to_string()));
        true
    }

    /// Starts of the windows of `key` that hold event time `t` (after a
    /// record at `t` was merged): the left windows of the panes in
    /// `[t, t + size]` and the right windows of those in `[t - size - 1, t)`.
    pub fn windows_holding(&self, key: &str, t: i64) -> Vec<i64> {
        let span = self.sliding.span();
        let Some(panes) = self.panes.get(key) else {
            return Vec::new();
        };
        let from = t.saturating_sub(span);
        let to = t.saturating_add(span - 1);
        panes
            .range(from..=to)
            .map(|(&u, _)| if u >= t { u + 1 - span } else { u + 1 })
            .collect()
    }

    /// Whether `key` has a window `[start, start + span)`: a pane at its
    /// last instant (a left window), or a pane just before it and one
    /// inside it (a right window).
    fn exists(panes: &BTreeMap<i64, Aggregates>, start: i64, end: i64) -> bool {
        panes.contains_key(&(end - 1))
            || (panes.contains_key(&(start - 1)) && panes.range(start..end).next().is_some())
    }

    /// Closes every window ending at or before `watermark`, and drops panes
    /// no open window needs. Windows ending at or before `skip_until`
    /// (emitted and acknowledged before a restart) are not returned.
    /// Appends them to `out`, ordered by end, then key.
    pub fn close_until(
        &mut self,
        specs: &[AggSpec],
        watermark: i64,
        skip_until: i64,
        out: &mut Vec<Closed>,
    ) {
        let closed = self.closed.unwrap_or(i64::MIN);
        if watermark <= closed {
            return;
        }
        let span = self.sliding.span();
        let lower = closed.max(skip_until);
        // Left windows end at t + 1, right windows at t + span + 1.
        let mut todo: BTreeSet<(i64, &str)> = BTreeSet::new();
        let mut candidates = |from: i64, to: i64, offset: i64| {
            if from > to {
                return;
            }
            let range = (
                Bound::Included((from, String::new())),
                Bound::Excluded((to.saturating_add(1), String::new())),
            );
            for (t, key) in self.by_time.range(range) {
                let end = t + offset;
                if end > lower && end <= watermark {
                    todo.insert((end, key.as_str()));
                }
            }
        };
        candidates(lower, watermark - 1, 1);
        candidates(
            lower.saturating_sub(span),
            watermark.saturating_sub(span + 1),
            span + 1,
        );
        out.reserve(todo.len());
        for (end, key) in todo {
            let panes = &self.panes[key];
            let start = end - span;
            if !Self::exists(panes, start, end) {
                continue;
            }
            let mut merged = Aggregates::new(specs);
            for (_, a) in panes.range(start..end) {
                merged.merge(a.clone());
            }
            out.push(Closed {
                key: key.to_string(),
                start,
                end,
                first_offset: -1,
                aggregates: merged,
            });
        }
        // A pane at t is done once the right window it anchors has closed.
        let done_until = watermark.saturating_sub(span + 1);
        while let Some((t, _)) = self.by_time.first() {
            if *t > done_until {
                break;
            }
            let (t, key) = self.by_time.pop_first().expect("first exists");
            if let Some(panes) = self.panes.get_mut(&key) {
                panes.remove(&t);
                if panes.is_empty() {
                    self.panes.remove(&key);
                }
            }
        }
        self.closed = Some(watermark);
    }

    /// The current aggregates and end of the window of `key` starting at
    /// `start`, if it exists.
    pub fn snapshot(&self, specs: &[AggSpec], key: &str, start: i64) -> Option<(i64, Aggregates)> {
        let panes = self.panes.get(key)?;
        let end = start + self.sliding.span();
        if !Self::exists(panes, start, end) {
            return None;
        }
        let mut merged = Aggregates::new(specs);
        for (_, a) in panes.range(start..end) {
            merged.merge(a.clone());
        }
        Some((end, merged))
    }

    /// Distance from a window's start to its end.
    pub fn span(&self) -> i64 {
        self.sliding.span()
    }

    /// Number of keys with open state.
    pub fn keys(&self) -> usize {
        self.panes.len()
    }

    /// Number of open panes.
    pub fn len(&self) -> usize {
        self.by_time.len()
    }

    /// Whether no pane is open.
    pub fn is_empty(&self) -> bool {
        self.by_time.is_empty()
    }
}

/// Sliding windows: records go to one pane per distinct event time.
impl WindowKind for Sliding {
    fn assign(&self, t: i64) -> Result<Assignment, EventTimeOutOfRange> {
        self.pane(t).map(Assignment::Pane)
    }

    fn open(&self) -> Box<dyn OpenWindows> {
        Box::new(SlidingStore::new(*self))
    }
}

impl OpenWindows for SlidingStore {
    fn len(&self) -> usize {
        SlidingStore::len(self)
    }

    fn keys(&self) -> usize {
        SlidingStore::keys(self)
    }

    fn merge_pane(&mut self, key: &str, pane_start: i64, _: i64, aggregates: Aggregates) -> bool {
        self.merge(key, pane_start, aggregates)
    }

    fn windows_of_pane(&self, key: &str, pane_start: i64) -> Vec<i64> {
        self.windows_holding(key, pane_start)
    }

    fn close_until(
        &mut self,
        specs: &[AggSpec],
        watermark: i64,
        skip_until: i64,
        out: &mut Vec<Closed>,
    ) {
        SlidingStore::close_until(self, specs, watermark, skip_until, out);
    }

    fn snapshot(&self, specs: &[AggSpec], key: &str, start: i64) -> Option<(i64, Aggregates)> {
        SlidingStore::snapshot(self, specs, key, start)
    }

    fn is_open(&self, _key: &str, start: i64, watermark: i64) -> bool {
        start + self.span() > watermark
    }

    fn save(&self) -> SavedWindows {
        let panes = self
            .by_time
            .iter()
            .map(|(t, key)| (key.clone(), *t, self.panes[key][t].clone()))
            .collect();
        SavedWindows::Sliding {
            closed: self.closed,
            panes,
        }
    }

    fn restore(&mut self, saved: SavedWindows) -> Result<(), WrongKind> {
        match saved {
            SavedWindows::Sliding { closed, panes } => {
                *self = Self::new(self.sliding);
                for (key, t, aggregates) in panes {
                    self.merge(&key, t, aggregates);
                }
                self.closed = closed;
                Ok(())
            }
            other => Err(WrongKind {
                expected: "sliding",
                found: other.kind(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::AggKind;
    use crate::record::Record;
    use apache_avro::types::Value;
    use proptest::prelude::*;

    fn count() -> [AggSpec; 1] {
        [AggSpec {
            name: "count".into(),
            kind: AggKind::Count,
            field: None,
        }]
    }

    fn one() -> Aggregates {
        let specs = count();
        let mut a = Aggregates::new(&specs);
        a.add(&specs, &Record { values: vec![] }, 0, 0).unwrap();
        a
    }

    /// Closes `store` up to `watermark` (skipping up to `skip_until`);
    /// each closed window as (key, start, end, count).
    fn closed(
        store: &mut SlidingStore,
        watermark: i64,
        skip_until: i64,
    ) -> Vec<(String, i64, i64, i64)> {
        let mut out = Vec::new();
        store.close_until(&count(), watermark, skip_until, &mut out);
        out.into_iter()
            .map(|w| {
                let Value::Long(n) = w.aggregates.finish(&count()).remove(0) else {
                    panic!("count is a long");
                };
                (w.key, w.start, w.end, n)
            })
            .collect()
    }

    /// The Kafka Streams definition, straight from the record times.
    fn expected(times: &[i64], size: i64) -> Vec<(String, i64, i64, i64)> {
        let distinct: BTreeSet<i64> = times.iter().copied().collect();
        let mut ends = BTreeSet::new();
        for &t in &distinct {
            ends.insert(t + 1);
            if distinct.range(t + 1..=t + size).next().is_some() {
                ends.insert(t + size + 2);
            }
        }
        ends.into_iter()
            .map(|end| {
                let start = end - size - 1;
                let n = times.iter().filter(|&&t| start <= t && t < end).count() as i64;
                ("k".to_string(), start, end, n)
            })
            .collect()
    }

    #[test]
    fn left_and_right_windows_as_kafka_streams_defines_them() {
        let s = Sliding::new(10);
        let mut store = SlidingStore::new(s);
        for t in [5, 8, 20] {
            store.merge("k", t, one());
        }
        let got = closed(&mut store, 1_000, i64::MIN);
        // Left windows [t - 10, t] of 5, 8, 20; right window [6, 16] of 5
        // (holds 8); 8 and 20 have nothing within 10 after them.
        assert_eq!(
            got,
            [
                ("k".to_string(), -5, 6, 1),
                ("k".to_string(), -2, 9, 2),
                ("k".to_string(), 6, 17, 1),
                ("k".to_string(), 10, 21, 1),
            ]
        );
        assert!(store.is_empty());
    }

    #[test]
    fn windows_already_emitted_before_a_restart_are_skipped() {
        let mut store = SlidingStore::new(Sliding::new(10));
        for t in [5, 8, 20] {
            store.merge("k", t, one());
        }
        let got = closed(&mut store, 1_000, 9);
        assert_eq!(
            got,
            [("k".to_string(), 6, 17, 1), ("k".to_string(), 10, 21, 1)]
        );
    }

    proptest! {
        /// Closing step by step as the watermark moves gives the windows of
        /// the definition, each once, with every record in it.
        #[test]
        fn stepwise_closing_matches_the_definition(
            times in proptest::collection::vec(0i64..200, 1..40),
            size in 1i64..30,
            steps in proptest::collection::vec(1i64..50, 1..10),
        ) {
            let mut store = SlidingStore::new(Sliding::new(size));
            for &t in &times {
                store.merge("k", t, one());
            }
            let mut got = Vec::new();
            let mut wm = -50;
            for step in steps {
                wm += step;
                got.extend(closed(&mut store, wm, i64::MIN));
            }
            got.extend(closed(&mut store, 10_000, i64::MIN));
            prop_assert_eq!(got, expected(&times, size));
            prop_assert!(store.is_empty());
        }
    }
}
