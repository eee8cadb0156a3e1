//! The open windows of one partition, ordered by end so closing is cheap.

use std::collections::BTreeMap;

use crate::aggregate::Aggregates;

/// One window that has records and has not been emitted yet.
#[derive(Debug, Clone)]
pub struct OpenWindow {
    /// Inclusive start, epoch millis.
    pub start: i64,
    /// The aggregates so far.
    pub aggregates: Aggregates,
    /// Offset of its first record.
    pub first_offset: i64,
    /// Offset of its last record so far.
    pub last_offset: i64,
}

/// Open windows keyed by `(end, key)`.
#[derive(Debug, Default)]
pub struct WindowStore {
    windows: BTreeMap<(i64, String), OpenWindow>,
}

impl WindowStore {
    /// Merges a partial into window `(key, start, end)`. Returns `true`
    /// when this opened a new window.
    pub fn merge(
        &mut self,
        key: &str,
        start: i64,
        end: i64,
        aggregates: Aggregates,
        offsets: (i64, i64),
    ) -> bool {
        if let Some(w) = self.windows.get_mut(&(end, key.to_string())) {
            w.aggregates.merge(aggregates);
            w.last_offset = w.last_offset.max(offsets.1);
            return false;
        }
        self.windows.insert(
            (end, key.to_string()),
            OpenWindow {
                start,
                aggregates,
                first_offset: offsets.0,
                last_offset: offsets.1,
            },
        );
        true
    }

    /// Removes and returns the windows ending at or before `watermark`,
    /// ordered by end, then key.
    pub fn close_until(&mut self, watermark: i64) -> Vec<(String, i64, OpenWindow)> {
        let mut closed = Vec::new();
        while let Some(entry) = self.windows.first_entry() {
            if entry.key().0 > watermark {
                break;
            }
            let ((end, key), w) = entry.remove_entry();
            closed.push((key, end, w));
        }
        closed
    }

    /// Number of open windows.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// Whether no window is open.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{AggKind, AggSpec};
    use crate::codec::Record;
    use apache_avro::types::Value;

    fn one() -> Aggregates {
        let specs = [count()];
        let mut a = Aggregates::new(&specs);
        a.add(&specs, &Record { values: vec![] }, 0, 0).unwrap();
        a
    }

    fn count() -> AggSpec {
        AggSpec {
            name: "count".into(),
            kind: AggKind::Count,
            field: None,
        }
    }

    #[test]
    fn closes_in_end_then_key_order_and_keeps_later_windows() {
        let mut s = WindowStore::default();
        assert!(s.merge("b", 0, 60, one(), (3, 3)));
        assert!(s.merge("a", 0, 60, one(), (4, 4)));
        assert!(!s.merge("a", 0, 60, one(), (7, 7)));
        assert!(s.merge("a", 60, 120, one(), (5, 5)));
        let closed = s.close_until(60);
        let keys: Vec<_> = closed.iter().map(|(k, e, _)| (k.as_str(), *e)).collect();
        assert_eq!(keys, [("a", 60), ("b", 60)]);
        let a = &closed[0].2;
        assert_eq!((a.first_offset, a.last_offset), (4, 7));
        assert_eq!(
            a.aggregates.clone().finish(&[count()]),
            vec![Value::Long(2)]
        );
        assert_eq!(s.len(), 1);
    }
}
