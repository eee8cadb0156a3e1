//! Session windows: per key, a session grows while records arrive within
//! `gap` of each other, and two sessions merge when a record bridges them.
//!
//! A record at `t` covers `[t, t + gap)`. It is late when that interval has
//! closed (`t + gap` at or below the watermark before it). Otherwise it
//! merges every open session of its key that overlaps `[t, t + gap)` into
//! one. Sessions close, one record at a time, as soon as the watermark
//! reaches their end, so a later record never joins a session that had
//! already closed: the result depends only on record order.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap as HashMap;

use super::{
    Assignment, Closed, EventTimeOutOfRange, OpenWindows, SavedSession, SavedWindows, WindowKind,
    WrongKind,
};
use crate::aggregate::{AggSpec, Aggregates};
use crate::record::Record;

#[derive(Debug)]
struct Session {
    end: i64,
    aggregates: Aggregates,
    first_offset: i64,
    max_event_time_before_first: i64,
}

/// How adding a record changed the open sessions, for the commit frontier:
/// the (end, first offset) of sessions that merged away, and the resulting
/// session's (end, first offset, largest event time before it).
#[derive(Debug, PartialEq, Eq)]
pub struct SessionChange {
    /// Sessions replaced by the merge.
    pub removed: Vec<(i64, i64)>,
    /// Start of the session now holding the record.
    pub start: i64,
    /// The session now holding the record.
    pub added: (i64, i64, i64),
}

/// Open sessions of one partition.
#[derive(Debug, Default)]
pub struct SessionStore {
    sessions: HashMap<String, BTreeMap<i64, Session>>,
    by_end: BTreeSet<(i64, String, i64)>,
}

impl SessionStore {
    /// Adds a non-late record at event time `t` to the sessions of `key`.
    ///
    /// # Errors
    /// When an aggregate cannot take the record (checked earlier, so not
    /// expected).
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        specs: &[AggSpec],
        key: &str,
        t: i64,
        gap: i64,
        record: &Record,
        offset: i64,
        max_event_time_before: i64,
    ) -> Result<SessionChange, String> {
        let mut aggregates = Aggregates::new(specs);
        aggregates.add(specs, record, t, offset)?;
        let (mut start, mut end) = (t, t.saturating_add(gap));
        let mut first = (offset, max_event_time_before);
        let sessions = self.sessions.entry(key.to_string()).or_default();
        let overlapping: Vec<i64> = sessions
            .range(..end)
            .rev()
            .take_while(|(_, s)| s.end > t)
            .map(|(s, _)| *s)
            .collect();
        let mut removed = Vec::new();
        for s in overlapping {
            let old = sessions.remove(&s).expect("listed above");
            self.by_end.remove(&(old.end, key.to_string(), s));
            removed.push((old.end, old.first_offset));
            start = start.min(s);
            end = end.max(old.end);
            if old.first_offset < first.0 {
                first = (old.first_offset, old.max_event_time_before_first);
            }
            aggregates.merge(old.aggregates);
        }
        sessions.insert(
            start,
            Session {
                end,
                aggregates,
                first_offset: first.0,
                max_event_time_before_first: first.1,
            },
        );
        self.by_end.insert((end, key.to_string(), start));
        Ok(SessionChange {
            removed,
            start,
            added: (end, first.0, first.1),
        })
    }

    /// Removes the sessions ending at or before `watermark` and appends
    /// them to `out`, by end, then key (each with its first offset).
    pub fn close_until(&mut self, watermark: i64, out: &mut Vec<Closed>) {
        while let Some((end, _, _)) = self.by_end.first() {
            if *end > watermark {
                break;
            }
            let (end, key, start) = self.by_end.pop_first().expect("checked above");
            let sessions = self.sessions.get_mut(&key).expect("indexed");
            let s = sessions.remove(&start).expect("indexed");
            if sessions.is_empty() {
                self.sessions.remove(&key);
            }
            out.push(Closed {
                key,
                start,
                end,
                first_offset: s.first_offset,
                aggregates: s.aggregates,
            });
        }
    }

    /// The current end and aggregates of the open session of `key` that
    /// starts at `start`.
    pub fn snapshot(&self, key: &str, start: i64) -> Option<(i64, Aggregates)> {
        let s = self.sessions.get(key)?.get(&start)?;
        Some((s.end, s.aggregates.clone()))
    }

    /// Whether `key` has an open session starting at `start`.
    pub fn snapshot_exists(&self, key: &str, start: i64) -> bool {
        self.sessions
            .get(key)
            .is_some_and(|s| s.contains_key(&start))
    }

    /// Every open session, by end, then key.
    pub fn save(&self) -> Vec<SavedSession> {
        self.by_end
            .iter()
            .map(|(end, key, start)| {
                let s = &self.sessions[key][start];
                SavedSession {
                    key: key.clone(),
                    start: *start,
                    end: *end,
                    first_offset: s.first_offset,
                    max_event_time_before_first: s.max_event_time_before_first,
                    aggregates: s.aggregates.clone(),
                }
            })
            .collect()
    }

    /// A store holding what [`SessionStore::save`] gave.
    pub fn restore(saved: Vec<SavedSession>) -> Self {
        let mut store = Self::default();
        for s in saved {
            store.by_end.insert((s.end, s.key.clone(), s.start));
            store.sessions.entry(s.key).or_default().insert(
                s.start,
                Session {
                    end: s.end,
                    aggregates: s.aggregates,
                    first_offset: s.first_offset,
                    max_event_time_before_first: s.max_event_time_before_first,
                },
            );
        }
        store
    }

    /// Number of keys with open state.
    pub fn keys(&self) -> usize {
        self.sessions.len()
    }

    /// Number of open sessions.
    pub fn len(&self) -> usize {
        self.by_end.len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.by_end.is_empty()
    }
}

/// Session windows of one inactivity gap: records fold in order, since
/// a record can merge sessions of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sessions {
    /// The inactivity gap in millis.
    pub gap_ms: i64,
}

impl WindowKind for Sessions {
    fn assign(&self, t: i64) -> Result<Assignment, EventTimeOutOfRange> {
        let first_end = t.checked_add(self.gap_ms).ok_or(EventTimeOutOfRange(t))?;
        Ok(Assignment::InOrder { first_end })
    }

    fn open(&self) -> Box<dyn OpenWindows> {
        Box::new(OpenSessions {
            gap_ms: self.gap_ms,
            store: SessionStore::default(),
        })
    }
}

/// The open sessions of one partition.
struct OpenSessions {
    gap_ms: i64,
    store: SessionStore,
}

impl OpenWindows for OpenSessions {
    fn len(&self) -> usize {
        self.store.len()
    }

    fn keys(&self) -> usize {
        self.store.keys()
    }

    fn add_record(
        &mut self,
        specs: &[AggSpec],
        key: &str,
        t: i64,
        record: &Record,
        offset: i64,
        max_event_time_before: i64,
    ) -> Result<SessionChange, String> {
        self.store.add(
            specs,
            key,
            t,
            self.gap_ms,
            record,
            offset,
            max_event_time_before,
        )
    }

    fn close_until(&mut self, _: &[AggSpec], watermark: i64, _: i64, out: &mut Vec<Closed>) {
        self.store.close_until(watermark, out);
    }

    fn snapshot(&self, _: &[AggSpec], key: &str, start: i64) -> Option<(i64, Aggregates)> {
        self.store.snapshot(key, start)
    }

    fn is_open(&self, key: &str, start: i64, _: i64) -> bool {
        self.store.snapshot_exists(key, start)
    }

    fn save(&self) -> SavedWindows {
        SavedWindows::Sessions {
            sessions: self.store.save(),
        }
    }

    fn restore(&mut self, saved: SavedWindows) -> Result<(), WrongKind> {
        match saved {
            SavedWindows::Sessions { sessions } => {
                self.store = SessionStore::restore(sessions);
                Ok(())
            }
            other => Err(WrongKind {
                expected: "session",
                found: other.kind(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::AggKind;
    use apache_avro::types::Value;

    fn specs() -> [AggSpec; 1] {
        [AggSpec {
            name: "count".into(),
            kind: AggKind::Count,
            field: None,
        }]
    }

    #[test]
    fn sessions_grow_merge_and_close() {
        let r = Record { values: vec![] };
        let mut s = SessionStore::default();
        let add = |s: &mut SessionStore, t, o| s.add(&specs(), "u", t, 10, &r, o, 0).unwrap();
        assert_eq!(add(&mut s, 0, 1).added, (10, 1, 0));
        assert_eq!(add(&mut s, 30, 2).added, (40, 2, 0));
        assert_eq!(s.len(), 2);
        // 15 joins [0, 10)? No: [15, 25) does not overlap [0, 10). It bridges
        // nothing yet; 22 then bridges [15, 25) and [30, 40).
        add(&mut s, 15, 3);
        let c = add(&mut s, 22, 4);
        assert_eq!(c.removed.len(), 2);
        assert_eq!(c.added, (40, 2, 0));
        assert_eq!(s.len(), 2);
        let mut closed = Vec::new();
        s.close_until(10, &mut closed);
        assert_eq!((closed[0].start, closed[0].end), (0, 10));
        closed.clear();
        s.close_until(100, &mut closed);
        assert_eq!((closed[0].start, closed[0].end), (15, 40));
        assert_eq!(
            closed
                .into_iter()
                .next()
                .unwrap()
                .aggregates
                .finish(&specs()),
            vec![Value::Long(3)]
        );
        assert!(s.is_empty());
    }
}
