//! What an operator is: a step run on the rayon pool per batch, and a fold
//! of the step's results in offset order on the partition task, writing
//! through a [`Context`] that keeps the commit frontier in step with what
//! is written.

use std::sync::Arc;
use std::time::Duration;

use crate::checkpoint::CheckpointError;
use crate::offsets::Frontier;
use crate::record::{RawBatch, RawRecord, Stage};
use crate::sink::{EncodedWindow, Output};
use crate::telemetry::PipelineMetrics;

/// The part of an operator that runs on the rayon pool, one batch at a
/// time; several batches of a partition can be on the pool at once, so it
/// sees nothing of the partition's state.
pub trait Step: Send + Sync + 'static {
    /// What it makes of a batch.
    type Output: Send + 'static;

    /// Processes one batch of records, in offset order.
    fn run(&self, records: RawBatch) -> Self::Output;
}

/// What runs on a partition's records: the windowed aggregation, the
/// repartition forwarder. The partition driver (`task::PartitionTask`)
/// owns batches, acknowledgements, the commit frontier, drain and
/// backpressure; an operator owns its state and says what to write.
pub trait Operator: Send + 'static {
    /// Its rayon step.
    type Step: Step;

    /// The step, shared with every batch of the partition.
    fn step(&self) -> Arc<Self::Step>;

    /// Folds the result of the next batch, in offset order.
    ///
    /// # Errors
    /// A failure that stops the pipeline (never a bad record: those are
    /// dead letters).
    fn on_batch(
        &mut self,
        batch: <Self::Step as Step>::Output,
        cx: &mut Context<'_>,
    ) -> Result<(), OperatorError>;

    /// The largest event time of the partition so far (`NO_TIME` if none):
    /// what a commit point saves for a restart.
    fn event_time(&self) -> i64;

    /// No record came for `idle` (`pipeline.idle_timeout`); only called
    /// once [`Operator::event_time`] is known.
    ///
    /// # Errors
    /// As [`Operator::on_batch`].
    fn on_idle(&mut self, _idle: Duration, _cx: &mut Context<'_>) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Refreshes gauges that change with time alone.
    fn report(&self, _metrics: &PipelineMetrics, _partition: i32) {}

    /// Open windows (or other state) held, for the drain log.
    fn held(&self) -> usize {
        0
    }

    /// The task is ending: take back what the operator added to gauges.
    fn stop(&mut self, _metrics: &PipelineMetrics) {}

    /// Records before this partition's next one were deleted (by retention)
    /// before they were read: results they belonged to are incomplete.
    fn records_lost(&mut self) {}

    /// Its state for a checkpoint, or `None` when it keeps none worth one
    /// (its partitions then commit as their outputs are acknowledged).
    fn save(&self) -> Option<Vec<u8>> {
        None
    }

    /// Takes back the state [`Operator::save`] gave, from a checkpoint,
    /// before any record.
    ///
    /// # Errors
    /// When the state cannot be read or is of another kind.
    fn restore(
        &mut self,
        _state: &[u8],
        _metrics: &PipelineMetrics,
    ) -> Result<(), CheckpointError> {
        Ok(())
    }
}

/// Failures of an operator that stop its pipeline.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// A value of a record could not be folded into a window.
    #[error("record at offset {offset}: {reason}")]
    Aggregate { offset: i64, reason: String },
    /// A window result could not be encoded.
    #[error(transparent)]
    Encode(#[from] crate::codec::EncodeError),
}

/// What an operator writes through, and the commit frontier that each
/// write holds back until it is acknowledged.
pub struct Context<'a> {
    /// The partition.
    pub partition: i32,
    /// The commit frontier. Writes through this context hold it as the
    /// at-least-once contract requires; window bookkeeping (opened,
    /// dropped, closed) is the operator's.
    pub frontier: &'a mut Frontier,
    /// The pipeline's metrics.
    pub metrics: &'a PipelineMetrics,
    outputs: &'a mut Vec<Output>,
}

impl<'a> Context<'a> {
    /// A context writing into `outputs` (the driver sends them in order
    /// once the operator returns).
    pub fn new(
        partition: i32,
        frontier: &'a mut Frontier,
        metrics: &'a PipelineMetrics,
        outputs: &'a mut Vec<Output>,
    ) -> Self {
        Self {
            partition,
            frontier,
            metrics,
            outputs,
        }
    }

    /// Writes `record` to the dead-letter topic; `max_event_time_before`
    /// is the largest event time before it (where a restart resumes
    /// should the dead letter not be acknowledged).
    pub fn dead_letter(
        &mut self,
        record: RawRecord,
        stage: Stage,
        reason: String,
        max_event_time_before: i64,
    ) {
        self.frontier.hold(record.offset, max_event_time_before);
        self.outputs.push(Output::DeadLetter {
            record,
            stage,
            reason,
        });
    }

    /// Writes a late record to the late (or dead-letter) topic.
    pub fn late(&mut self, record: RawRecord, reason: String, max_event_time_before: i64) {
        self.frontier.hold(record.offset, max_event_time_before);
        self.outputs.push(Output::Late { record, reason });
    }

    /// Forwards `record` keyed by `key` (repartitioning).
    pub fn forward(&mut self, record: RawRecord, key: String, max_event_time_before: i64) {
        self.frontier.hold(record.offset, max_event_time_before);
        self.outputs.push(Output::Forward { record, key });
    }

    /// Writes a stateless pipeline's output record made of the input
    /// record at `offset`.
    pub fn record(
        &mut self,
        offset: i64,
        key: Option<Vec<u8>>,
        value: Vec<u8>,
        timestamp: i64,
        max_event_time_before: i64,
    ) {
        self.frontier.hold(offset, max_event_time_before);
        self.outputs.push(Output::Record {
            offset,
            key,
            value,
            timestamp: Some(timestamp),
        });
    }

    /// Writes the final result of a window; the frontier's settled bound
    /// waits for its acknowledgement.
    pub fn final_result(&mut self, window: EncodedWindow) {
        self.frontier.window_emitted(window.window.end);
        self.outputs.push(Output::Final(window));
    }

    /// Writes an update of a still-open window (nothing waits for it).
    pub fn update(&mut self, window: EncodedWindow) {
        self.outputs.push(Output::Update(window));
    }
}
