//! The open windows of one partition, whatever their kind, behind one
//! interface for the partition task.

use std::collections::HashMap;

use crate::aggregate::{AggSpec, Aggregates};
use crate::record::Record;
use crate::window::{SessionChange, SessionStore, SlidingStore, WindowPlan, WindowStore, Windows};

/// A window ready to be emitted.
pub(super) struct Closed {
    pub key: String,
    pub start: i64,
    pub end: i64,
    /// For sessions, the offset of the first record (how the frontier
    /// knows it); -1 for pane-based windows, which the stores filter.
    pub first_offset: i64,
    pub aggregates: Aggregates,
}

pub(super) enum OpenWindows {
    Fixed(Windows, WindowStore),
    Sliding(SlidingStore),
    Session(SessionStore),
}

impl OpenWindows {
    pub fn new(plan: WindowPlan) -> Self {
        match plan {
            WindowPlan::Fixed(w) => Self::Fixed(w, WindowStore::default()),
            WindowPlan::Sliding(s) => Self::Sliding(SlidingStore::new(s)),
            WindowPlan::Session { .. } => Self::Session(SessionStore::default()),
        }
    }

    /// Open panes or sessions.
    pub fn len(&self) -> usize {
        match self {
            Self::Fixed(_, s) => s.len(),
            Self::Sliding(s) => s.len(),
            Self::Session(s) => s.len(),
        }
    }

    /// Keys with open state.
    pub fn keys(&self) -> usize {
        match self {
            Self::Fixed(_, s) => s.keys(),
            Self::Sliding(s) => s.keys(),
            Self::Session(s) => s.keys(),
        }
    }

    /// Merges a pane partial (fixed and sliding windows). Returns `true`
    /// when it opened a new pane.
    pub fn merge_pane(
        &mut self,
        key: &str,
        pane_start: i64,
        last_end: i64,
        aggregates: Aggregates,
    ) -> bool {
        match self {
            Self::Fixed(w, s) => s.merge(w, key, pane_start, last_end, aggregates),
            Self::Sliding(s) => s.merge(key, pane_start, aggregates),
            Self::Session(_) => unreachable!("sessions take records, not pane partials"),
        }
    }

    /// Starts of the windows of `key` that the pane at `pane_start` is in
    /// (the windows a partial for it changes).
    pub fn windows_of_pane(&self, key: &str, pane_start: i64) -> Vec<i64> {
        match self {
            Self::Fixed(w, _) => w
                .ends_covering(pane_start)
                .map(|end| end - w.size())
                .collect(),
            Self::Sliding(s) => s.windows_holding(key, pane_start),
            Self::Session(_) => Vec::new(),
        }
    }

    /// Adds one record to the sessions of `key` (session windows).
    #[allow(clippy::too_many_arguments)]
    pub fn add_to_session(
        &mut self,
        specs: &[AggSpec],
        key: &str,
        t: i64,
        gap: i64,
        record: &Record,
        offset: i64,
        max_event_time_before: i64,
    ) -> Result<SessionChange, String> {
        let Self::Session(s) = self else {
            unreachable!("only session pipelines assign records one by one");
        };
        s.add(specs, key, t, gap, record, offset, max_event_time_before)
    }

    /// Removes and returns every window the watermark has passed, except
    /// pane-based ones ending at or before `skip_until`.
    pub fn close_until(
        &mut self,
        specs: &[AggSpec],
        watermark: i64,
        skip_until: i64,
    ) -> Vec<Closed> {
        let from_panes = |c: crate::window::ClosedWindow| Closed {
            key: c.key,
            start: c.start,
            end: c.end,
            first_offset: -1,
            aggregates: c.aggregates,
        };
        match self {
            Self::Fixed(w, s) => s
                .close_until(w, specs, watermark, skip_until)
                .into_iter()
                .map(from_panes)
                .collect(),
            Self::Sliding(s) => s
                .close_until(specs, watermark, skip_until)
                .into_iter()
                .map(from_panes)
                .collect(),
            Self::Session(s) => s
                .close_until(watermark)
                .into_iter()
                .map(|c| Closed {
                    key: c.key,
                    start: c.start,
                    end: c.end,
                    first_offset: c.first_offset,
                    aggregates: c.aggregates,
                })
                .collect(),
        }
    }

    /// The end and current aggregates of the open window of `key` starting
    /// at `start`, if it is still open at `watermark`.
    pub fn snapshot(
        &self,
        specs: &[AggSpec],
        key: &str,
        start: i64,
        watermark: i64,
    ) -> Option<(i64, Aggregates)> {
        let (end, aggregates) = match self {
            Self::Fixed(w, s) => (start + w.size(), s.snapshot(w, specs, key, start)?),
            Self::Sliding(s) => s.snapshot(specs, key, start)?,
            Self::Session(s) => s.snapshot(key, start)?,
        };
        (end > watermark).then_some((end, aggregates))
    }

    /// Forgets the update times of windows that are no longer open.
    pub fn retain_open<V>(&self, updated: &mut HashMap<(String, i64), V>, watermark: i64) {
        match self {
            Self::Fixed(w, _) => updated.retain(|(_, start), _| start + w.size() > watermark),
            Self::Sliding(s) => {
                updated.retain(|(_, start), _| start + s.span() > watermark);
            }
            Self::Session(s) => updated.retain(|(key, start), _| s.snapshot_exists(key, *start)),
        }
    }
}
