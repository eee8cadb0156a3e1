//! The open panes of one partition, and closing the windows they form.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;

use super::{
    Assignment, Closed, EventTimeOutOfRange, OpenWindows, SavedPane, SavedWindows, WindowKind,
    Windows, WrongKind,
};
use crate::aggregate::{AggSpec, Aggregates};

/// The partial aggregates of one key over one pane.
#[derive(Debug, Clone)]
struct PaneState {
    start: i64,
    aggregates: Aggregates,
    last_end: i64,
}

/// One key's open panes, ascending by start (a handful: the panes of one
/// window plus those allowed lateness keeps open).
#[derive(Debug, Default)]
struct KeyPanes {
    key: String,
    panes: Vec<PaneState>,
}

/// Open panes of one partition, by key and pane start, with an index from
/// each open window end to the keys that have a pane in that window.
///
/// Keys are numbered (`ids`) so that the index holds small numbers, not
/// strings; a number is reused once its key has no pane left.
#[derive(Debug, Default)]
pub struct WindowStore {
    ids: HashMap<String, u32>,
    keys: Vec<KeyPanes>,
    free: Vec<u32>,
    /// Window end → the keys with a pane in that window, once per pane.
    ends: BTreeMap<i64, Vec<u32>>,
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
        let closed = self.closed.unwrap_or(i64::MIN);
        // Every window of the pane was closed already: nothing would ever
        // emit it (the caller sends such records to the late topic before
        // they get here), and no such pane is still held (each goes at its
        // last window).
        if last_end <= closed {
            return false;
        }
        let id = match self.ids.get(key) {
            Some(&id) => id,
            None => {
                let id = match self.free.pop() {
                    Some(id) => id,
                    None => {
                        self.keys.push(KeyPanes::default());
                        u32::try_from(self.keys.len() - 1).expect("fewer than 2^32 open keys")
                    }
                };
                self.keys[id as usize].key = key.to_string();
                self.ids.insert(key.to_string(), id);
                id
            }
        };
        let panes = &mut self.keys[id as usize].panes;
        let at = panes.partition_point(|p| p.start < pane_start);
        if let Some(p) = panes.get_mut(at).filter(|p| p.start == pane_start) {
            p.aggregates.merge(aggregates);
            return false;
        }
        panes.insert(
            at,
            PaneState {
                start: pane_start,
                aggregates,
                last_end,
            },
        );
        for end in windows.ends_covering(pane_start).filter(|e| *e > closed) {
            self.ends.entry(end).or_default().push(id);
        }
        self.count += 1;
        true
    }

    /// Closes every window ending at or before `watermark` that has at
    /// least one pane, and drops panes no open window needs. Windows
    /// ending at or before `skip_until` (already emitted and acknowledged
    /// before a restart) are not returned. Appends them to `out`, ordered
    /// by end, then key (`out` is the caller's, reused from one close to
    /// the next: a close can emit thousands of windows).
    pub fn close_until(
        &mut self,
        windows: &Windows,
        specs: &[AggSpec],
        watermark: i64,
        skip_until: i64,
        out: &mut Vec<Closed>,
    ) {
        if watermark <= self.closed.unwrap_or(i64::MIN) {
            return;
        }
        self.closed = Some(watermark);
        while let Some(entry) = self.ends.first_entry() {
            if *entry.key() > watermark {
                break;
            }
            let (end, mut ids) = entry.remove_entry();
            let keys = &mut self.keys;
            ids.sort_unstable_by(|a, b| keys[*a as usize].key.cmp(&keys[*b as usize].key));
            ids.dedup();
            let start = end - windows.size();
            out.reserve(ids.len());
            for id in ids {
                let kp = &mut keys[id as usize];
                let mut merged = (end > skip_until).then(|| Aggregates::new(specs));
                // Panes of this window; a pane's last window is the last
                // use of it: move it out.
                let before = kp.panes.len();
                let mut i = kp.panes.partition_point(|p| p.start < start);
                while i < kp.panes.len() && kp.panes[i].start < end {
                    if kp.panes[i].last_end <= end {
                        let p = kp.panes.remove(i);
                        if let Some(m) = &mut merged {
                            m.merge(p.aggregates);
                        }
                    } else {
                        if let Some(m) = &mut merged {
                            m.merge_ref(&kp.panes[i].aggregates);
                        }
                        i += 1;
                    }
                }
                self.count -= before - kp.panes.len();
                if let Some(aggregates) = merged {
                    out.push(Closed {
                        key: kp.key.clone(),
                        start,
                        end,
                        first_offset: -1,
                        aggregates,
                    });
                }
                if kp.panes.is_empty() {
                    // Its panes' windows all end at or before `end`: no
                    // later entry of the index names this key.
                    let key = std::mem::take(&mut kp.key);
                    self.ids.remove(&key);
                    self.free.push(id);
                }
            }
        }
    }

    /// Every pane held, by key then start, and the watermark windows were
    /// closed up to.
    pub fn save(&self) -> (Option<i64>, Vec<SavedPane>) {
        let mut panes = Vec::with_capacity(self.count);
        let mut keys: Vec<&KeyPanes> = self.keys.iter().filter(|k| !k.panes.is_empty()).collect();
        keys.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        for kp in keys {
            panes.extend(kp.panes.iter().map(|p| SavedPane {
                key: kp.key.clone(),
                start: p.start,
                last_end: p.last_end,
                aggregates: p.aggregates.clone(),
            }));
        }
        (self.closed, panes)
    }

    /// A store holding what [`WindowStore::save`] gave.
    pub fn restore(windows: &Windows, closed: Option<i64>, panes: Vec<SavedPane>) -> Self {
        let mut store = Self {
            closed,
            ..Self::default()
        };
        for p in panes {
            store.merge(windows, &p.key, p.start, p.last_end, p.aggregates);
        }
        store
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
        let id = *self.ids.get(key)?;
        let end = start + windows.size();
        let mut merged: Option<Aggregates> = None;
        for p in &self.keys[id as usize].panes {
            if p.start >= start && p.start < end {
                merged
                    .get_or_insert_with(|| Aggregates::new(specs))
                    .merge_ref(&p.aggregates);
            }
        }
        merged
    }

    /// Number of keys with open state.
    pub fn keys(&self) -> usize {
        self.ids.len()
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

/// Tumbling and hopping windows: records go to panes, pre-aggregated.
impl WindowKind for Windows {
    fn assign(&self, t: i64) -> Result<Assignment, EventTimeOutOfRange> {
        self.pane(t).map(Assignment::Pane)
    }

    fn open(&self) -> Box<dyn OpenWindows> {
        Box::new(OpenFixed {
            windows: *self,
            store: WindowStore::default(),
        })
    }
}

/// The open tumbling or hopping windows of one partition.
struct OpenFixed {
    windows: Windows,
    store: WindowStore,
}

impl OpenWindows for OpenFixed {
    fn len(&self) -> usize {
        self.store.len()
    }

    fn keys(&self) -> usize {
        self.store.keys()
    }

    fn merge_pane(
        &mut self,
        key: &str,
        pane_start: i64,
        last_end: i64,
        aggregates: Aggregates,
    ) -> bool {
        self.store
            .merge(&self.windows, key, pane_start, last_end, aggregates)
    }

    fn windows_of_pane(&self, _key: &str, pane_start: i64) -> Vec<i64> {
        let size = self.windows.size();
        self.windows
            .ends_covering(pane_start)
            .map(|end| end - size)
            .collect()
    }

    fn close_until(
        &mut self,
        specs: &[AggSpec],
        watermark: i64,
        skip_until: i64,
        out: &mut Vec<Closed>,
    ) {
        self.store
            .close_until(&self.windows, specs, watermark, skip_until, out);
    }

    fn snapshot(&self, specs: &[AggSpec], key: &str, start: i64) -> Option<(i64, Aggregates)> {
        let aggregates = self.store.snapshot(&self.windows, specs, key, start)?;
        Some((start + self.windows.size(), aggregates))
    }

    fn is_open(&self, _key: &str, start: i64, watermark: i64) -> bool {
        start + self.windows.size() > watermark
    }

    fn save(&self) -> SavedWindows {
        let (closed, panes) = self.store.save();
        SavedWindows::Panes { closed, panes }
    }

    fn restore(&mut self, saved: SavedWindows) -> Result<(), WrongKind> {
        match saved {
            SavedWindows::Panes { closed, panes } => {
                self.store = WindowStore::restore(&self.windows, closed, panes);
                Ok(())
            }
            other => Err(WrongKind {
                expected: "tumbling or hopping",
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

    /// Closes up to `watermark` (skipping up to `skip_until`); each closed
    /// window as (key, start, end, count).
    fn closed(
        s: &mut WindowStore,
        w: &Windows,
        watermark: i64,
        skip_until: i64,
    ) -> Vec<(String, i64, i64, Value)> {
        let mut out = Vec::new();
        s.close_until(w, &count(), watermark, skip_until, &mut out);
        out.into_iter()
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
        let closed = closed(&mut s, &w, 60, i64::MIN);
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
        let c = closed(&mut s, &w, 10, i64::MIN);
        assert_eq!(
            c,
            [
                ("a".to_string(), -5, 5, Value::Long(1)),
                ("a".to_string(), 0, 10, Value::Long(3)),
            ]
        );
        assert_eq!(s.len(), 2, "the pane at 0 is no longer needed");
        let c = closed(&mut s, &w, 20, i64::MIN);
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
        let c = closed(&mut s, &w, 20, 10);
        assert_eq!(c, [("a".to_string(), 5, 15, Value::Long(2))]);
    }

    #[test]
    fn a_key_whose_panes_all_closed_gives_its_number_to_a_new_key() {
        let w = Windows::tumbling(10);
        let mut s = WindowStore::default();
        put(&mut s, &w, "a", 1, 1);
        put(&mut s, &w, "b", 2, 1);
        closed(&mut s, &w, 10, i64::MIN);
        assert_eq!(s.keys(), 0);
        put(&mut s, &w, "c", 11, 5);
        put(&mut s, &w, "b", 12, 2);
        put(&mut s, &w, "c", 23, 1);
        let c = closed(&mut s, &w, 30, i64::MIN);
        assert_eq!(
            c,
            [
                ("b".to_string(), 10, 20, Value::Long(2)),
                ("c".to_string(), 10, 20, Value::Long(5)),
                ("c".to_string(), 20, 30, Value::Long(1)),
            ]
        );
        assert!(s.is_empty());
    }

    use proptest::prelude::*;

    proptest! {
        /// Whatever the order of records and watermarks, each closed
        /// window holds exactly the records of its key and span, once;
        /// windows come out by end, then key; no pane outlives its last
        /// window.
        #[test]
        fn closes_what_a_record_at_a_time_model_closes(
            (size, advance) in (1i64..6).prop_flat_map(|a| (Just(a), 1i64..4)).prop_map(|(a, k)| (a * k, a)),
            steps in proptest::collection::vec(
                prop_oneof![
                    (0usize..4, 0i64..60, 1u64..4).prop_map(|(k, t, n)| (Some((k, t, n)), 0)),
                    (0i64..15).prop_map(|d| (None, d)),
                ],
                1..60,
            ),
            skip_until in prop_oneof![Just(i64::MIN), 0i64..30],
        ) {
            let w = Windows::hopping(size, advance);
            let mut s = WindowStore::default();
            let mut kept: Vec<(usize, i64, u64)> = Vec::new();
            let mut watermark = -1000;
            let mut closed_at = i64::MIN;
            let mut got = Vec::new();
            let mut want = Vec::new();
            let keys = ["k0", "k1", "k2", "k3"];
            let mut close = |s: &mut WindowStore, kept: &[(usize, i64, u64)], to: i64, from: i64| {
                got.extend(closed(s, &w, to, skip_until));
                let mut ends: Vec<(i64, usize)> = kept
                    .iter()
                    .flat_map(|(k, t, _)| w.assign(*t).unwrap().into_iter().map(move |(_, e)| (e, *k)))
                    .filter(|(e, _)| *e > from && *e <= to && *e > skip_until)
                    .collect();
                ends.sort_unstable();
                ends.dedup();
                for (e, k) in ends {
                    let n: u64 = kept
                        .iter()
                        .filter(|(kk, t, _)| *kk == k && *t >= e - size && *t < e)
                        .map(|r| r.2)
                        .sum();
                    want.push((keys[k].to_string(), e - size, e, Value::Long(n as i64)));
                }
            };
            for (record, step) in steps {
                match record {
                    Some((k, t, n_)) => {
                        let p = w.pane(t).unwrap();
                        // The caller sends records whose first window is
                        // closed to the late topic.
                        if p.first_end > closed_at {
                            s.merge(&w, keys[k], p.start, p.last_end, n(n_));
                            kept.push((k, t, n_));
                        }
                    }
                    None => {
                        watermark += step;
                        if watermark > closed_at {
                            close(&mut s, &kept, watermark, closed_at);
                            closed_at = watermark;
                        }
                    }
                }
            }
            close(&mut s, &kept, 1000, closed_at);
            prop_assert_eq!(got, want);
            prop_assert!(s.is_empty());
            prop_assert_eq!(s.keys(), 0);
        }
    }
}
