//! What every partition task of one consumer shares.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::checkpoint::Fingerprint;
use crate::offsets::CommitBoard;
use crate::sink::Sink;
use crate::telemetry::PipelineMetrics;

/// The surroundings of the partition tasks of one consumer.
pub struct Env {
    /// Pipeline name (logs, dead-letter headers).
    pub pipeline: String,
    /// The topic read.
    pub topic: String,
    /// Where outputs are written.
    pub sink: Arc<dyn Sink>,
    /// Where each task publishes its commit point.
    pub board: CommitBoard,
    /// The pipeline's metrics.
    pub metrics: PipelineMetrics,
    /// Most batches of one partition on the rayon pool at once.
    pub max_in_flight: usize,
    /// Most unacknowledged outputs of one partition before it takes no
    /// more input.
    pub max_pending_outputs: usize,
    /// After this long without records, the operator is told the
    /// partition is idle.
    pub idle_timeout: Option<Duration>,
    /// Cancelled on a fatal error anywhere in the pipeline: tasks stop at
    /// once, without a drain.
    pub cancel: CancellationToken,
    /// Checkpoints of the operators' state, when the pipeline keeps them.
    pub checkpoints: Option<CheckpointSettings>,
    /// Where the writer schemas of registry-framed input are looked up.
    pub schemas: Option<SchemaSource>,
}

/// The registry of a registry-framed input, and the decoder's writer
/// schemas it fills.
#[derive(Debug, Clone)]
pub struct SchemaSource {
    pub registry: crate::registry::Registry,
    pub writers: Arc<crate::codec::Writers>,
}

/// How a consumer's partition tasks checkpoint.
#[derive(Debug, Clone)]
pub struct CheckpointSettings {
    /// How often (`state.checkpoint_interval`).
    pub interval: Duration,
    /// What the state is built for.
    pub plan: Fingerprint,
    /// Where in the checkpoint topic ([`crate::checkpoint::scope`]).
    pub scope: String,
}
