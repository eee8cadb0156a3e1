//! `per_window`: one partition's results of a window, folded into one
//! record as the window closes (see [`PerWindow`]).

use crate::aggregate::Aggregates;
use crate::codec::WindowOutput;
use crate::pipeline::PerWindow;
use crate::window::format_millis;

/// The window whose results are being folded.
pub(super) struct Folding {
    start: i64,
    pub(super) end: i64,
    aggregates: Aggregates,
    /// Results folded so far: the position the next one is added at (what
    /// `first` and `last` order by, after the window end they share).
    results: i64,
    /// Every result folded was complete (no records lost before it).
    complete: bool,
}

impl Folding {
    /// Folds nothing yet of window `[start, end)`.
    pub(super) fn new(per: &PerWindow, start: i64, end: i64) -> Self {
        Self {
            start,
            end,
            aggregates: Aggregates::new(&per.aggregates),
            results: 0,
            complete: true,
        }
    }

    /// Folds the window's next result (results come in group-key order).
    /// A result holding a value the aggregates cannot take (a sum beyond
    /// their range, say) is left out, with a warning, and the window's
    /// record is marked incomplete: a replay computes the same result
    /// again, so stopping would never get past it.
    pub(super) fn add(&mut self, per: &PerWindow, result: &WindowOutput, complete: bool) {
        let record = per.results.record(result);
        let added = Aggregates::check(&per.aggregates, &record, &per.names).and_then(|()| {
            self.aggregates
                .add(&per.aggregates, &record, self.end, self.results)
        });
        self.results += 1;
        self.complete &= complete;
        if let Err(reason) = added {
            self.complete = false;
            tracing::warn!(
                key = %result.key,
                window_start = %format_millis(result.start),
                window_end = %format_millis(result.end),
                %reason,
                "per_window: a window result left out of its window's record, which is marked incomplete"
            );
        }
    }

    /// The window's record (keyed by its end, so that every partition's
    /// record of a window goes to one partition of the output topic), and
    /// whether every result folded into it was complete.
    pub(super) fn finish(self, per: &PerWindow) -> (WindowOutput, bool) {
        let window = WindowOutput {
            key: self.end.to_string(),
            start: self.start,
            end: self.end,
            values: self.aggregates.finish(&per.aggregates),
        };
        (window, self.complete)
    }
}
