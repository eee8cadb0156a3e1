//! `per_window`: one partition's results of a window, folded into one
//! record as the window closes (see [`PerWindow`]).

use crate::aggregate::Aggregates;
use crate::codec::WindowOutput;
use crate::operator::OperatorError;
use crate::pipeline::PerWindow;

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
    ///
    /// # Errors
    /// A value the aggregates cannot take, naming the result.
    pub(super) fn add(
        &mut self,
        per: &PerWindow,
        result: &WindowOutput,
        complete: bool,
    ) -> Result<(), OperatorError> {
        let record = per.results.record(result);
        self.aggregates
            .add(&per.aggregates, &record, self.end, self.results)
            .map_err(|reason| OperatorError::PerWindow {
                key: result.key.clone(),
                start: result.start,
                end: result.end,
                reason,
            })?;
        self.results += 1;
        self.complete &= complete;
        Ok(())
    }

    /// The window's record (an empty key, its bounds, the aggregates),
    /// and whether every result folded into it was complete.
    pub(super) fn finish(self, per: &PerWindow) -> (WindowOutput, bool) {
        let window = WindowOutput {
            key: String::new(),
            start: self.start,
            end: self.end,
            values: self.aggregates.finish(&per.aggregates),
        };
        (window, self.complete)
    }
}
