//! The repartition forwarder: the first stage of a pipeline whose input is
//! not keyed by its group key. Each record is decoded, transformed,
//! filtered and keyed on the rayon pool, and its original bytes are
//! forwarded to the internal topic under its group key, where the second
//! stage (a [`Windowed`](super::Windowed) operator) aggregates it.

use std::sync::Arc;

use super::batch::{Batch, Collect, Keyed, process};
use super::{Context, Operator, OperatorError, Step};
use crate::pipeline::Plan;
use crate::record::{RawBatch, Stage};
use crate::telemetry::Outcome;
use crate::window::NO_TIME;

/// The group key of every record to forward, by index in the batch.
#[derive(Debug, Default)]
pub struct Keys(pub Vec<(u32, String)>);

impl Collect for Keys {
    /// Forwarding keeps no event time: the second stage reads the
    /// records' own.
    fn max_event_time(&self) -> i64 {
        NO_TIME
    }

    fn collect(&mut self, plan: &Plan, k: Keyed<'_>) -> Result<(), (Stage, String)> {
        let mut buf = itoa::Buffer::new();
        // The event time is checked here too, so that a record the second
        // stage would refuse is dead-lettered where it was read.
        let (key, _) = k.key_and_time(plan, &mut buf)?;
        self.0.push((k.index, key.into_owned()));
        Ok(())
    }
}

/// The forwarder's rayon step.
#[derive(Debug)]
pub struct RepartitionStep {
    plan: Arc<Plan>,
}

impl Step for RepartitionStep {
    type Output = Batch<Keys>;

    fn run(&self, records: RawBatch) -> Batch<Keys> {
        process(&self.plan, records, Keys::default())
    }
}

/// Forwards each record of a partition keyed by its group key.
pub struct Repartition {
    step: Arc<RepartitionStep>,
}

impl Repartition {
    /// The forwarder of `plan`.
    pub fn new(plan: Arc<Plan>) -> Self {
        Self {
            step: Arc::new(RepartitionStep { plan }),
        }
    }
}

impl Operator for Repartition {
    type Step = RepartitionStep;

    fn step(&self) -> Arc<RepartitionStep> {
        Arc::clone(&self.step)
    }

    fn on_batch(
        &mut self,
        mut batch: Batch<Keys>,
        cx: &mut Context<'_>,
    ) -> Result<(), OperatorError> {
        batch.dead_letter_failures(NO_TIME, cx);
        let forwarded = batch.collected.0.len() as u64;
        for (i, key) in std::mem::take(&mut batch.collected.0) {
            let m = batch.max_before(NO_TIME, i);
            cx.forward(batch.record(i).to_record(), key, m);
        }
        cx.metrics.processed(Outcome::Ok, forwarded);
        cx.metrics.processed(Outcome::Filtered, batch.filtered);
        Ok(())
    }

    fn event_time(&self) -> i64 {
        NO_TIME
    }
}
