//! Windows: assigning event times to windows, lateness, and the per-partition
//! store of open windows.
//!
//! Event time only moves a partition's watermark forward: the watermark is
//! the largest event time seen so far minus the allowed lateness. A window
//! closes (is emitted) once the watermark reaches its end; a record whose
//! window end is at or below the watermark *as it stood before that record*
//! is late. Both decisions depend only on the order of records in the
//! partition, never on batch boundaries, so a replay decides the same.

mod kind;
mod saved;
mod session;
mod sliding;
mod store;

pub use kind::{Assignment, Closed, OpenWindows, WindowKind};
pub use saved::{SavedPane, SavedSession, SavedWindows, WrongKind};
pub use session::{SessionChange, SessionStore, Sessions};
pub use sliding::{Sliding, SlidingStore};
pub use store::WindowStore;

use std::sync::Arc;
use std::time::Duration;

use crate::config::WindowConfig;

/// "No event time seen yet".
pub const NO_TIME: i64 = i64::MIN;

/// Why a record's event time cannot be placed in a window.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event time {0} ms is outside the range windows can be computed for")]
pub struct EventTimeOutOfRange(pub i64);

/// The last millisecond RFC 3339 can write (year 9999).
const LAST_RFC3339_MS: u64 = 253_402_300_799_999;

/// An epoch-millis instant as RFC 3339 (`2026-01-01T00:00:00.000Z`), or
/// `<n> ms` outside years 1970 to 9999.
pub fn format_millis(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) if ms <= LAST_RFC3339_MS => humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
        )
        .to_string(),
        _ => format!("{ms} ms"),
    }
}

/// Most windows one record may belong to: `size / advance` of a hopping
/// window. Each window a record belongs to is state to keep and a result
/// to write per key, so a window of a day that advances every millisecond
/// (86,400,000 windows per record) would exhaust memory on its first
/// records.
pub const MAX_WINDOWS_PER_RECORD: u64 = 1_000;

/// Longest window size (or session gap): 100 years.
const MAX_WINDOW_MS: u128 = 100 * 365 * 24 * 3600 * 1000;

/// Fixed-size, epoch-aligned windows that start every `advance`: tumbling
/// when `advance == size`, hopping when `advance < size`.
///
/// Records are pre-aggregated into *panes* of `gcd(size, advance)`; a
/// window is the merge of the panes it covers, so overlapping windows
/// share partials instead of re-scanning records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    size: i64,
    advance: i64,
    pane: i64,
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// A pane: `[start, start + width)`, with the ends of the first and the
/// last window covering it.
///
/// A record is late once the *first* window it belongs to has closed; it
/// then joins none of its windows. (Joining only the still-open ones would
/// make a window's contents depend on when, within a batch, the watermark
/// passed its end.) Nothing needs the pane once its last window closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pane {
    /// Inclusive start, epoch millis.
    pub start: i64,
    /// Exclusive end: every event time from `start` up to it is in this
    /// pane (a batch's records mostly share a few panes).
    pub end: i64,
    /// End of the first window covering this pane.
    pub first_end: i64,
    /// End of the last window covering this pane.
    pub last_end: i64,
}

impl Windows {
    /// Tumbling windows of `size_ms`.
    pub fn tumbling(size_ms: i64) -> Self {
        Self::hopping(size_ms, size_ms)
    }

    /// Windows of `size_ms` starting every `advance_ms` (`0 < advance <= size`).
    pub fn hopping(size_ms: i64, advance_ms: i64) -> Self {
        assert!(
            size_ms > 0 && advance_ms > 0 && advance_ms <= size_ms,
            "invalid window"
        );
        Self {
            size: size_ms,
            advance: advance_ms,
            pane: gcd(size_ms, advance_ms),
        }
    }

    /// Window length in millis.
    pub fn size(&self) -> i64 {
        self.size
    }

    /// The pane holding event time `t`.
    ///
    /// ```
    /// use streamfold::window::Windows;
    /// let minute = Windows::tumbling(60_000);
    /// let p = minute.pane(90_000).unwrap();
    /// assert_eq!((p.start, p.last_end), (60_000, 120_000));
    /// ```
    ///
    /// # Errors
    /// When window ends would overflow (event times near `i64::MAX`).
    pub fn pane(&self, t: i64) -> Result<Pane, EventTimeOutOfRange> {
        let start = t - t.rem_euclid(self.pane);
        let last_start = start - start.rem_euclid(self.advance);
        let last_end = last_start
            .checked_add(self.size)
            .ok_or(EventTimeOutOfRange(t))?;
        let first_end = self.ends_covering(start).next().unwrap_or(last_end);
        Ok(Pane {
            start,
            end: start.saturating_add(self.pane),
            first_end,
            last_end,
        })
    }

    /// Ends of the windows covering the pane starting at `pane_start`,
    /// ascending.
    pub fn ends_covering(&self, pane_start: i64) -> impl Iterator<Item = i64> + use<> {
        let last_start = pane_start - pane_start.rem_euclid(self.advance);
        let (size, advance) = (self.size, self.advance);
        let count = ((size + advance - 1) / advance) as usize;
        (0..count)
            .rev()
            .map(move |i| last_start - i as i64 * advance)
            .filter(move |s| *s + size > pane_start)
            .map(move |s| s + size)
    }

    /// The `[start, end)` windows holding event time `t`, ascending.
    ///
    /// # Errors
    /// When window ends would overflow.
    pub fn assign(&self, t: i64) -> Result<Vec<(i64, i64)>, EventTimeOutOfRange> {
        let p = self.pane(t)?;
        Ok(self
            .ends_covering(p.start)
            .map(|e| (e - self.size, e))
            .collect())
    }
}

/// The window kind `config` asks for.
///
/// # Errors
/// Each problem, with the configuration key it concerns: a size, gap
/// or advance that is not a whole number of milliseconds, an advance
/// above the size, or more than [`MAX_WINDOWS_PER_RECORD`] windows per
/// record.
pub fn from_config(
    config: &WindowConfig,
) -> Result<Arc<dyn WindowKind>, Vec<(&'static str, String)>> {
    let whole_ms = |d: &Duration| {
        (1..=MAX_WINDOW_MS).contains(&d.as_millis()) && d.subsec_nanos().is_multiple_of(1_000_000)
    };
    let (size, size_key) = match config {
        WindowConfig::Session { gap } => (gap, "pipeline.window.gap"),
        WindowConfig::Tumbling { size }
        | WindowConfig::Hopping { size, .. }
        | WindowConfig::Sliding { size } => (size, "pipeline.window.size"),
    };
    if !whole_ms(size) {
        return Err(vec![(
            size_key,
            format!(
                "expected a whole number of milliseconds from 1ms to 100years, found {}",
                humantime::format_duration(*size)
            ),
        )]);
    }
    let size_ms = size.as_millis() as i64;
    Ok(match config {
        WindowConfig::Tumbling { .. } => Arc::new(Windows::tumbling(size_ms)),
        WindowConfig::Hopping { advance, .. } => {
            if !whole_ms(advance) || advance > size {
                return Err(vec![(
                    "pipeline.window.advance",
                    format!(
                        "expected a whole number of milliseconds from 1ms up to the size ({}), found {}",
                        humantime::format_duration(*size),
                        humantime::format_duration(*advance)
                    ),
                )]);
            }
            let advance_ms = advance.as_millis() as i64;
            let per_record = (size_ms as u64).div_ceil(advance_ms as u64);
            if per_record > MAX_WINDOWS_PER_RECORD {
                let least =
                    Duration::from_millis((size_ms as u64).div_ceil(MAX_WINDOWS_PER_RECORD));
                return Err(vec![(
                    "pipeline.window.advance",
                    format!(
                        "pipeline.window.size ({}) / pipeline.window.advance ({}) puts every record \
                             in {per_record} windows, expected at most {MAX_WINDOWS_PER_RECORD}: set \
                             advance to at least {}, or use a sliding window",
                        humantime::format_duration(*size),
                        humantime::format_duration(*advance),
                        humantime::format_duration(least)
                    ),
                )]);
            }
            Arc::new(Windows::hopping(size_ms, advance_ms))
        }
        WindowConfig::Sliding { .. } => Arc::new(Sliding::new(size_ms)),
        WindowConfig::Session { .. } => Arc::new(Sessions { gap_ms: size_ms }),
    })
}

/// Lateness rules for one pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lateness {
    allowed_ms: i64,
}

impl Lateness {
    /// Allows records up to `allowed_ms` behind the newest event time.
    pub fn new(allowed_ms: i64) -> Self {
        Self {
            allowed_ms: allowed_ms.max(0),
        }
    }

    /// The watermark given the largest event time seen (`NO_TIME` if none).
    pub fn watermark(&self, max_event_time: i64) -> i64 {
        if max_event_time == NO_TIME {
            NO_TIME
        } else {
            max_event_time.saturating_sub(self.allowed_ms)
        }
    }

    /// Whether a window ending at `end` is closed once the largest event
    /// time seen is `max_event_time`. Also: whether a record for that window
    /// arriving after such an event time is late.
    ///
    /// ```
    /// use streamfold::window::Lateness;
    /// let l = Lateness::new(5_000);
    /// assert!(!l.is_closed(60_000, 64_999)); // watermark 59_999
    /// assert!(l.is_closed(60_000, 65_000)); // watermark 60_000 reaches the end
    /// ```
    pub fn is_closed(&self, end: i64, max_event_time: i64) -> bool {
        max_event_time != NO_TIME && end <= self.watermark(max_event_time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind behind the one interface: where a record goes, and a
    /// window closing once the watermark reaches its end.
    #[test]
    fn every_window_kind_assigns_and_closes_behind_one_trait() {
        use crate::aggregate::{AggKind, AggSpec, Aggregates};
        use crate::record::Record;
        let specs = [AggSpec {
            name: "count".into(),
            kind: AggKind::Count,
            field: None,
        }];
        let one = || {
            let mut a = Aggregates::new(&specs);
            a.add(&specs, &Record { values: vec![] }, 0, 0).unwrap();
            a
        };
        let secs = |n| Duration::from_secs(n);
        let kinds = [
            WindowConfig::Tumbling { size: secs(10) },
            WindowConfig::Hopping {
                size: secs(10),
                advance: secs(5),
            },
            WindowConfig::Sliding { size: secs(10) },
            WindowConfig::Session { gap: secs(10) },
        ];
        for config in kinds {
            let kind = from_config(&config).unwrap();
            let mut open = kind.open();
            match kind.assign(12_000).unwrap() {
                Assignment::Pane(p) => {
                    assert!(
                        p.start <= 12_000 && 12_000 < p.last_end,
                        "{config:?}: {p:?}"
                    );
                    assert!(open.merge_pane("k", p.start, p.last_end, one()));
                }
                Assignment::InOrder { first_end } => {
                    assert_eq!(first_end, 22_000, "{config:?}");
                    open.add_record(&specs, "k", 12_000, &Record { values: vec![] }, 7, NO_TIME)
                        .unwrap();
                }
            }
            assert_eq!((open.is_empty(), open.keys()), (false, 1), "{config:?}");
            let mut closed = Vec::new();
            open.close_until(&specs, 12_000, NO_TIME, &mut closed);
            assert!(closed.is_empty(), "{config:?}");
            open.close_until(&specs, 100_000, NO_TIME, &mut closed);
            assert!(!closed.is_empty(), "{config:?}");
            assert!(
                closed
                    .iter()
                    .all(|c| c.key == "k" && c.start <= 12_000 && 12_000 < c.end)
            );
            assert!(open.is_empty(), "{config:?}: everything closed");
        }
    }

    #[test]
    fn tumbling_assignment_is_epoch_aligned_also_before_1970() {
        let w = Windows::tumbling(60_000);
        assert_eq!(w.assign(0).unwrap(), [(0, 60_000)]);
        assert_eq!(w.assign(59_999).unwrap(), [(0, 60_000)]);
        assert_eq!(w.assign(60_000).unwrap(), [(60_000, 120_000)]);
        assert_eq!(w.assign(-1).unwrap(), [(-60_000, 0)]);
        assert!(w.assign(i64::MAX).is_err());
    }

    #[test]
    fn hopping_assignment_covers_every_window_holding_the_time() {
        let w = Windows::hopping(10_000, 2_000);
        assert_eq!(
            w.assign(7_500).unwrap(),
            [
                (-2_000, 8_000),
                (0, 10_000),
                (2_000, 12_000),
                (4_000, 14_000),
                (6_000, 16_000)
            ]
        );
        let p = w.pane(7_500).unwrap();
        assert_eq!((p.start, p.first_end, p.last_end), (6_000, 8_000, 16_000));
        // Size not a multiple of the advance: panes of gcd(10s, 4s) = 2s.
        let w = Windows::hopping(10_000, 4_000);
        assert_eq!(
            w.assign(9_000).unwrap(),
            [(0, 10_000), (4_000, 14_000), (8_000, 18_000)]
        );
        assert_eq!(w.assign(-1).unwrap(), [(-8_000, 2_000), (-4_000, 6_000)]);
        for t in [-12_345, -1, 0, 1, 3_999, 4_000, 123_456] {
            let want: Vec<_> = (-40..40)
                .map(|i| (i * 4_000, i * 4_000 + 10_000))
                .filter(|(s, e)| *s <= t && t < *e)
                .collect();
            assert_eq!(w.assign(t).unwrap(), want, "t = {t}");
        }
    }

    #[test]
    fn watermark_and_lateness() {
        let l = Lateness::new(5_000);
        assert!(!l.is_closed(60_000, NO_TIME));
        assert_eq!(l.watermark(64_000), 59_000);
        assert!(!l.is_closed(60_000, 64_999));
        assert!(l.is_closed(60_000, 65_000));
        let strict = Lateness::new(0);
        assert!(strict.is_closed(60_000, 60_000));
        assert!(!strict.is_closed(60_000, 59_999));
        assert_eq!(Lateness::new(10).watermark(i64::MIN + 1), i64::MIN);
    }
}
