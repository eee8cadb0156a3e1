//! A stateless pipeline's operator (a pipeline without a window): each
//! record is decoded, transformed, filtered, projected onto its selected
//! fields and encoded on the rayon pool, and written to the output topic
//! in offset order. It keeps no state: a partition commits as its outputs
//! are acknowledged, so a restart re-reads only what was not written.

use std::sync::Arc;

use super::batch::{Batch, Collect, Keyed, process};
use super::{Context, Operator, OperatorError, Step};
use crate::pipeline::{Plan, Shape};
use crate::record::{RawBatch, Stage};
use crate::telemetry::Outcome;
use crate::window::NO_TIME;

/// One output record, by index of its input record in the batch.
#[derive(Debug)]
pub struct Projected {
    pub index: u32,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub event_time: i64,
}

/// What a batch produced, and the largest event time among its records.
#[derive(Debug)]
pub struct Projections {
    pub records: Vec<Projected>,
    max_event_time: i64,
}

impl Default for Projections {
    /// Nothing yet (`NO_TIME` is below every event time).
    fn default() -> Self {
        Self {
            records: Vec::new(),
            max_event_time: NO_TIME,
        }
    }
}

impl Collect for Projections {
    fn max_event_time(&self) -> i64 {
        self.max_event_time
    }

    fn collect(&mut self, plan: &Plan, k: Keyed<'_>) -> Result<(), (Stage, String)> {
        let Shape::Stateless(projection) = &plan.shape else {
            unreachable!("a stateless operator runs a plan without a window")
        };
        let event_time = k.timestamp(plan)?;
        let key = projection
            .key(k.raw, k.record, &plan.field_names)
            .map_err(|e| (Stage::Extract, e))?;
        // Room for the input's length: an output of the same fields is
        // seldom longer (JSON text is longer than its Avro datum).
        let mut value = Vec::with_capacity(k.raw.payload().map_or(64, <[u8]>::len));
        projection
            .encode(k.record, &plan.encoder, &mut value)
            .map_err(|e| (Stage::Extract, e))?;
        // A few fields of a large record: the output waits to be written
        // (behind a full producer queue, at worst) without the input's room.
        if value.capacity() > 2 * value.len() {
            value.shrink_to_fit();
        }
        self.max_event_time = self.max_event_time.max(event_time);
        self.records.push(Projected {
            index: k.index,
            key,
            value,
            event_time,
        });
        Ok(())
    }
}

/// The stateless operator's rayon step.
#[derive(Debug)]
pub struct StatelessStep {
    plan: Arc<Plan>,
}

impl Step for StatelessStep {
    type Output = Batch<Projections>;

    fn run(&self, records: RawBatch) -> Batch<Projections> {
        // As a rule one output per record.
        let collect = Projections {
            records: Vec::with_capacity(records.len()),
            ..Projections::default()
        };
        process(&self.plan, records, collect)
    }
}

/// Writes each record of a partition's selected fields to the output
/// topic.
pub struct Stateless {
    step: Arc<StatelessStep>,
    /// The largest event time written so far.
    max_event_time: i64,
}

impl Stateless {
    /// The operator of `plan` (a plan without a window), resuming after
    /// records whose largest event time was `max_event_time`.
    pub fn new(plan: Arc<Plan>, max_event_time: i64) -> Self {
        Self {
            step: Arc::new(StatelessStep { plan }),
            max_event_time,
        }
    }
}

impl Operator for Stateless {
    type Step = StatelessStep;

    fn step(&self) -> Arc<StatelessStep> {
        Arc::clone(&self.step)
    }

    fn on_batch(
        &mut self,
        mut batch: Batch<Projections>,
        cx: &mut Context<'_>,
    ) -> Result<(), OperatorError> {
        let before = self.max_event_time;
        batch.dead_letter_failures(before, cx);
        let written = batch.collected.records.len() as u64;
        for r in std::mem::take(&mut batch.collected.records) {
            let offset = batch.record(r.index).offset();
            let m = batch.max_before(before, r.index);
            cx.record(offset, r.key, r.value, r.event_time, m);
            self.max_event_time = self.max_event_time.max(r.event_time);
        }
        cx.metrics.processed(Outcome::Ok, written);
        cx.metrics.processed(Outcome::Filtered, batch.filtered);
        Ok(())
    }

    fn event_time(&self) -> i64 {
        self.max_event_time
    }
}
