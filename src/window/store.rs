//! The open panes of one partition, and closing the windows they form.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap as HashMap;

use super::Windows;
use crate::aggregate::{AggSpec, Aggregates};

/// The partial aggregates of one key over one pane.
#[derive(Debug, Clone)]
struct PaneState {
    aggregates: Aggregates,
    last_end: i64,
}

/// A window whose watermark has passed: ready to be emitted.
#[derive(Debug)]
pub struct ClosedWindow {
    /// Group key.
    pub key: String,
    /// Inclusive start.
    pub start: i64,
    /// Exclusive end.
    pub end: i64,
    /// The merged aggregates of its panes.
    pub aggregates: Aggregates,
}

/// Open panes of one partition, by key and pane start, with an index of
/// the first window end each pane takes part in.
#[derive(Debug, Default)]
pub struct WindowStore {
    panes: HashMap<String, BTreeMap<i64, PaneState>>,
    by_first_end: BTreeSet<(i64, String, i64)>,
    closed: Option<i64>,
    count: usize,
}

impl WindowStore {
    /// Merges a partial into pane `(key, pane_start)`. Returns `true` when
    /// this opened a new pane.
    pub fn merge(
        &mut self,
        windows: &Windows,
        key: &str,
        pane_start: i64,
        last_end: i64,
        aggregates: Aggregates,
    ) -> bool {
        let panes = self.panes.entry(key.to_string()).or_default();
        if let Some(p) = panes.get_mut(&pane_start) {
            p.aggregates.merge(aggregates);
            return false;
        }
        panes.insert(
            pane_start,
            PaneState {
                aggregates,
                last_end,
            },
        );
        let first_end = windows.ends_covering(pane_start).next().unwrap_or(last_end);
        debug_assert!(first_end <= last_end);
        self.by_first_end
            .insert((first_end, key.to_string(), pane_start));
        self.count += 1;
        true
    }

    /// Closes every window ending at or before `watermark` that has at
    /// least one pane, and drops panes no open window needs. Windows
    /// ending at or before `skip_until` (already emitted and acknowledged
    /// before a restart) are not returned. Ordered by end, then key.
    pub fn close_until(
        &mut self,
        windows: &Windows,
        specs: &[AggSpec],
        watermark: i64,
        skip_until: i64,
    ) -> Vec<ClosedWindow> {
        let closed = self.closed.unwrap_or(i64::MIN);
        if watermark <= closed {
            return Vec::new();
        }
        // With no window end in (closed, watermark], no window closes and
        // no pane expires: the common case, as most batches move the
        // watermark by less than one advance.
        if self.closed.is_some()
            && windows
                .last_end_at_or_before(watermark)
                .is_some_and(|e| e <= closed)
        {
            self.closed = Some(watermark);
            return Vec::new();
        }
        let mut todo: BTreeSet<(i64, String)> = BTreeSet::new();
        for (first_end, key, pane_start) in &self.by_first_end {
            if *first_end > watermark {
                break;
            }
            for e in windows.ends_covering(*pane_start) {
                if e > closed && e <= watermark && e > skip_until {
                    todo.insert((e, key.clone()));
                }
            }
        }
        let mut out = Vec::with_capacity(todo.len());
        for (end, key) in todo {
            let Some(panes) = self.panes.get_mut(&key) else {
                continue;
            };
            let start = end - windows.size();
            let mut merged = Aggregates::new(specs);
            let starts: Vec<i64> = panes.range(start..end).map(|(s, _)| *s).collect();
            for s in starts {
                // A pane's last window is the last use of it: move it out.
                if panes[&s].last_end == end {
                    let p = panes.remove(&s).expect("pane listed above");
                    merged.merge(p.aggregates);
                } else {
                    merged.merge(panes[&s].aggregates.clone());
                }
            }
            out.push(ClosedWindow {
                key,
                start,
                end,
                aggregates: merged,
            });
        }
        // Drop panes whose windows are all closed (also those skipped).
        let done: Vec<(i64, String, i64)> = self
            .by_first_end
            .iter()
            .take_while(|(first_end, _, _)| *first_end <= watermark)
            .filter(|(_, key, s)| {
                self.panes
                    .get(key)
                    .and_then(|p| p.get(s))
                    .is_none_or(|p| p.last_end <= watermark)
            })
            .cloned()
            .collect();
        for (first_end, key, s) in done {
            self.by_first_end.remove(&(first_end, key.clone(), s));
            if let Some(panes) = self.panes.get_mut(&key) {
                panes.remove(&s);
                if panes.is_empty() {
                    self.panes.remove(&key);
                }
            }
            self.count -= 1;
        }
        self.closed = Some(watermark);
        out
    }

    /// The current aggregates of the open window `[start, start + size)`
    /// of `key`, if any of its panes holds records.
    pub fn snapshot(
        &self,
        windows: &Windows,
        specs: &[AggSpec],
        key: &str,
        start: i64,
    ) -> Option<Aggregates> {
        let panes = self.panes.get(key)?;
        let mut merged: Option<Aggregates> = None;
        for (_, p) in panes.range(start..start + windows.size()) {
            merged
                .get_or_insert_with(|| Aggregates::new(specs))
                .merge(p.aggregates.clone());
        }
        merged
    }

    /// Number of keys with open state.
    pub fn keys(&self) -> usize {
        self.panes.len()
    }

    /// Number of open panes.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no pane is open.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::AggKind;
    use crate::codec::Record;
    use apache_avro::types::Value;

    fn count() -> [AggSpec; 1] {
        [AggSpec {
            name: "count".into(),
            kind: AggKind::Count,
            field: None,
        }]
    }

    fn n(k: u64) -> Aggregates {
        let specs = count();
        let mut a = Aggregates::new(&specs);
        for _ in 0..k {
            a.add(&specs, &Record { values: vec![] }, 0, 0).unwrap();
        }
        a
    }

    fn put(s: &mut WindowStore, w: &Windows, key: &str, t: i64, k: u64) -> bool {
        let p = w.pane(t).unwrap();
        s.merge(w, key, p.start, p.last_end, n(k))
    }

    fn summary(c: Vec<ClosedWindow>) -> Vec<(String, i64, i64, Value)> {
        c.into_iter()
            .map(|w| {
                let v = w.aggregates.finish(&count()).remove(0);
                (w.key, w.start, w.end, v)
            })
            .collect()
    }

    #[test]
    fn tumbling_closes_in_end_then_key_order_and_keeps_later_windows() {
        let w = Windows::tumbling(60);
        let mut s = WindowStore::default();
        assert!(put(&mut s, &w, "b", 10, 1));
        assert!(put(&mut s, &w, "a", 20, 2));
        assert!(!put(&mut s, &w, "a", 59, 1));
        assert!(put(&mut s, &w, "a", 60, 4));
        let closed = summary(s.close_until(&w, &count(), 60, i64::MIN));
        assert_eq!(
            closed,
            [
                ("a".to_string(), 0, 60, Value::Long(3)),
                ("b".to_string(), 0, 60, Value::Long(1)),
            ]
        );
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn hopping_windows_merge_shared_panes() {
        let w = Windows::hopping(10, 5);
        let mut s = WindowStore::default();
        put(&mut s, &w, "a", 1, 1); // windows [-5,5) [0,10)
        put(&mut s, &w, "a", 7, 2); // windows [0,10) [5,15)
        put(&mut s, &w, "a", 12, 4); // windows [5,15) [10,20)
        let c = summary(s.close_until(&w, &count(), 10, i64::MIN));
        assert_eq!(
            c,
            [
                ("a".to_string(), -5, 5, Value::Long(1)),
                ("a".to_string(), 0, 10, Value::Long(3)),
            ]
        );
        assert_eq!(s.len(), 2, "the pane at 0 is no longer needed");
        let c = summary(s.close_until(&w, &count(), 20, i64::MIN));
        assert_eq!(
            c,
            [
                ("a".to_string(), 5, 15, Value::Long(6)),
                ("a".to_string(), 10, 20, Value::Long(4)),
            ]
        );
        assert!(s.is_empty());
    }

    #[test]
    fn windows_up_to_skip_until_are_not_emitted_again() {
        let w = Windows::hopping(10, 5);
        let mut s = WindowStore::default();
        put(&mut s, &w, "a", 7, 2);
        let c = summary(s.close_until(&w, &count(), 20, 10));
        assert_eq!(c, [("a".to_string(), 5, 15, Value::Long(2))]);
    }
}
