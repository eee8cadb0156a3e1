//! Windows: assigning event times to windows, lateness, and the per-partition
//! store of open windows.
//!
//! Event time only moves a partition's watermark forward: the watermark is
//! the largest event time seen so far minus the allowed lateness. A window
//! closes (is emitted) once the watermark reaches its end; a record whose
//! window end is at or below the watermark *as it stood before that record*
//! is late. Both decisions depend only on the order of records in the
//! partition, never on batch boundaries, so a replay decides the same.

mod store;

pub use store::{OpenWindow, WindowStore};

/// "No event time seen yet".
pub const NO_TIME: i64 = i64::MIN;

/// Why a record's event time cannot be placed in a window.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event time {0} ms is outside the range windows can be computed for")]
pub struct EventTimeOutOfRange(pub i64);

/// An epoch-millis instant as RFC 3339 (`2026-01-01T00:00:00.000Z`).
pub fn format_millis(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) => humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
        )
        .to_string(),
        Err(_) => format!("{ms} ms"),
    }
}

/// Fixed-size, epoch-aligned, non-overlapping windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tumbling {
    size_ms: i64,
}

impl Tumbling {
    /// Windows of `size_ms` milliseconds (must be positive).
    pub fn new(size_ms: i64) -> Self {
        assert!(size_ms > 0, "window size must be positive");
        Self { size_ms }
    }

    /// The `[start, end)` window holding event time `t`.
    ///
    /// ```
    /// use streamfold::window::Tumbling;
    /// let minute = Tumbling::new(60_000);
    /// assert_eq!(minute.assign(90_000).unwrap(), (60_000, 120_000));
    /// ```
    ///
    /// # Errors
    /// When `end` would overflow (event times near `i64::MAX`).
    pub fn assign(&self, t: i64) -> Result<(i64, i64), EventTimeOutOfRange> {
        let start = t - t.rem_euclid(self.size_ms);
        let end = start
            .checked_add(self.size_ms)
            .ok_or(EventTimeOutOfRange(t))?;
        Ok((start, end))
    }
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

    #[test]
    fn tumbling_assignment_is_epoch_aligned_also_before_1970() {
        let w = Tumbling::new(60_000);
        assert_eq!(w.assign(0).unwrap(), (0, 60_000));
        assert_eq!(w.assign(59_999).unwrap(), (0, 60_000));
        assert_eq!(w.assign(60_000).unwrap(), (60_000, 120_000));
        assert_eq!(w.assign(-1).unwrap(), (-60_000, 0));
        assert!(w.assign(i64::MAX).is_err());
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
