//! One interface for every window kind: where a record goes (decided on
//! the rayon pool, per record) and the open windows of one partition
//! (kept by its task). The batch step and the partition task know nothing
//! of the kinds behind it.
//!
//! A kind either pre-aggregates: its records go to *panes* that the batch
//! step pre-aggregates per (key, pane), and a window is the merge of its
//! panes (tumbling, hopping, sliding); or it folds in order: a record's
//! window depends on every earlier record of its key, so the partition
//! task adds the records one by one, in offset order (sessions).
//!
//! The open windows save and restore themselves (`window/saved.rs`), for
//! checkpoints.

use crate::aggregate::{AggSpec, Aggregates};
use crate::record::Record;

use super::{EventTimeOutOfRange, Pane, SavedWindows, SessionChange, WrongKind};

/// Where a window kind puts a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignment {
    /// Pre-aggregated with the other records of its key and pane.
    Pane(Pane),
    /// Folded on the partition task in offset order. `first_end`: the end
    /// of the first window the record would join; the record is late once
    /// the watermark before it reaches that end.
    InOrder {
        /// End of the first window of the record.
        first_end: i64,
    },
}

/// A window kind, resolved from the configuration.
pub trait WindowKind: std::fmt::Debug + Send + Sync {
    /// Where the record with event time `t` goes. Runs on the rayon pool,
    /// once per record.
    ///
    /// # Errors
    /// When the windows of `t` cannot be computed (event times near the
    /// limits of `i64`).
    fn assign(&self, t: i64) -> Result<Assignment, EventTimeOutOfRange>;

    /// Empty open windows for one partition.
    fn open(&self) -> Box<dyn OpenWindows>;
}

/// A window ready to be emitted.
#[derive(Debug)]
pub struct Closed {
    /// Group key.
    pub key: String,
    /// Inclusive start, epoch millis.
    pub start: i64,
    /// Exclusive end, epoch millis.
    pub end: i64,
    /// For windows folded in order, the offset of their first record (how
    /// the commit frontier knows them); -1 for pane-based windows, which
    /// the stores filter themselves.
    pub first_offset: i64,
    /// Its aggregates.
    pub aggregates: Aggregates,
}

/// The open windows of one partition, of one kind.
///
/// A kind that assigns [`Assignment::Pane`] takes [`merge_pane`], one
/// that assigns [`Assignment::InOrder`] takes [`add_record`]; the batch
/// step hands each kind only what it assigned.
///
/// [`merge_pane`]: OpenWindows::merge_pane
/// [`add_record`]: OpenWindows::add_record
pub trait OpenWindows: Send {
    /// Open panes or windows held.
    fn len(&self) -> usize;

    /// Whether nothing is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys with open state.
    fn keys(&self) -> usize;

    /// Merges the pre-aggregate of the pane of `key` at `pane_start`, whose
    /// last window ends at `last_end`. Returns `true` when this opened the
    /// pane. Kinds that assign panes implement it; the batch step gives no
    /// pane partials to the others.
    fn merge_pane(
        &mut self,
        _key: &str,
        _pane_start: i64,
        _last_end: i64,
        _aggregates: Aggregates,
    ) -> bool {
        unreachable!("this window kind folds records in order, not pane partials")
    }

    /// Starts of the windows of `key` holding the pane at `pane_start`
    /// (the windows a partial for it changes); none for kinds without
    /// panes.
    fn windows_of_pane(&self, _key: &str, _pane_start: i64) -> Vec<i64> {
        Vec::new()
    }

    /// Adds one record of `key` at event time `t`, at `offset`, after
    /// records whose largest event time was `max_event_time_before`. Kinds
    /// that assign [`Assignment::InOrder`] implement it; the batch step
    /// gives no such records to the others.
    ///
    /// # Errors
    /// When a value of the record cannot be aggregated.
    fn add_record(
        &mut self,
        _specs: &[AggSpec],
        _key: &str,
        _t: i64,
        _record: &Record,
        _offset: i64,
        _max_event_time_before: i64,
    ) -> Result<SessionChange, String> {
        unreachable!("this window kind takes pane partials, not records")
    }

    /// Removes every window the watermark has reached and appends it to
    /// `out`, except pane-based ones ending at or before `skip_until`
    /// (emitted and acknowledged before a restart). `out` is the caller's,
    /// kept from one close to the next.
    fn close_until(
        &mut self,
        specs: &[AggSpec],
        watermark: i64,
        skip_until: i64,
        out: &mut Vec<Closed>,
    );

    /// The end and current aggregates of the window of `key` starting at
    /// `start`, if it is held.
    fn snapshot(&self, specs: &[AggSpec], key: &str, start: i64) -> Option<(i64, Aggregates)>;

    /// Whether the window of `key` starting at `start` is still open at
    /// `watermark`.
    fn is_open(&self, key: &str, start: i64, watermark: i64) -> bool;

    /// Everything held, for a checkpoint.
    fn save(&self) -> SavedWindows;

    /// Restores what [`OpenWindows::save`] gave, into empty windows.
    ///
    /// # Errors
    /// When `saved` holds windows of another kind.
    fn restore(&mut self, saved: SavedWindows) -> Result<(), WrongKind>;
}
