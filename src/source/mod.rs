//! Source: the Kafka consumer, its rebalance handling, and one task per
//! assigned partition.

mod consumer;
mod partition;
mod resume;
mod run;

pub use run::{RunError, run};

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::BatchConfig;
use crate::offsets::CommitBoard;
use crate::pipeline::Plan;
use crate::sink::Sink;
use crate::telemetry::{LoopHealth, PipelineMetrics};

/// Which half of a pipeline a consumer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Windows and aggregates (the whole pipeline unless it repartitions).
    Aggregate,
    /// `repartition = true`: decode, transform, filter and forward each
    /// record's original bytes to the internal topic, keyed by group key.
    Repartition,
}

/// What the consumer thread and every partition task share.
pub(crate) struct Shared {
    pub plan: Arc<Plan>,
    pub stage: Stage,
    /// The topic this consumer reads: the pipeline's input, or the
    /// internal topic for the aggregate stage of a repartitioning pipeline.
    pub input_topic: String,
    pub sink: Sink,
    pub board: CommitBoard,
    pub metrics: PipelineMetrics,
    /// This consumer's liveness and readiness.
    pub health: Arc<LoopHealth>,
    pub batch: BatchConfig,
    pub drain_deadline: Duration,
    /// Cancelled on shutdown and on any fatal error.
    pub cancel: CancellationToken,
    fatal: Mutex<Option<String>>,
}

impl Shared {
    /// Records a fatal error (the first one wins) and stops the pipeline.
    pub fn fail(&self, error: String) {
        tracing::error!(%error, "pipeline failed");
        let mut slot = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(error);
        self.cancel.cancel();
    }

    fn fatal(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
