//! Source: the Kafka consumer, its rebalance handling, and one task per
//! assigned partition.

mod checkpoints;
mod consumer;
mod output_schema;
mod poll;
mod resume;
mod run;
mod topics;

pub use crate::task::PartitionError;
pub use checkpoints::RestoreError;
pub use resume::StateError;
pub use run::{RunError, run};

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::BatchConfig;
use crate::pipeline::Plan;
use crate::sink::KafkaSink;
use crate::task::Env;
use crate::telemetry::LoopHealth;

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
    /// What the partition tasks share: the topic this consumer reads (the
    /// pipeline's input, or the internal topic for the aggregate stage of
    /// a repartitioning pipeline), the sink, the commit board, metrics and
    /// the cancellation on any fatal error (then the partition tasks stop
    /// at once, without a drain).
    pub env: Arc<Env>,
    /// The sink's producer, flushed at shutdown.
    pub kafka: Arc<KafkaSink>,
    /// Every partition task: a task that ends by an error or a panic
    /// fails the pipeline; shutdown waits for them.
    pub tasks: TaskTracker,
    /// This consumer's liveness and readiness.
    pub health: Arc<LoopHealth>,
    pub batch: BatchConfig,
    /// Whether a record's `__value_schema_id` header may name its writer
    /// schema: registry-framed records of the pipeline's input topic. The
    /// internal topic of a repartitioning pipeline frames every value in
    /// band, so its consumer leaves headers unparsed.
    pub schema_headers: bool,
    /// Whether records are another pipeline's window results, whose
    /// `streamfold.window.partition` header is part of their identity.
    pub window_partitions: bool,
    pub drain_deadline: Duration,
    /// Where a partition without a committed offset starts.
    pub offset_reset: crate::config::OffsetReset,
    /// The process's shutdown: the consumer drains and commits, then stops.
    pub shutdown: CancellationToken,
    fatal: Mutex<Option<PipelineError>>,
}

/// Why a running pipeline stopped: the first failure of any of its
/// partitions or of its consumer. (Each variant's text includes its cause,
/// for logs and `to_string`.)
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A partition task failed (delivery, encoding, a panicked batch).
    #[error(transparent)]
    Partition(#[from] PartitionError),
    /// The committed offsets of newly assigned partitions could not be
    /// read, with an error that waiting does not cure.
    #[error("cannot read the committed offsets of {topic} partitions {partitions:?}: {cause}")]
    CommittedOffsets {
        topic: String,
        partitions: Vec<i32>,
        cause: rdkafka::error::KafkaError,
    },
    /// The resume state of newly assigned partitions could not be read.
    #[error(
        "cannot read the resume state of {topic} partitions {partitions:?} from {state_topic}: {cause}"
    )]
    ResumeState {
        topic: String,
        partitions: Vec<i32>,
        state_topic: String,
        cause: StateError,
    },
    /// A partition task panicked (a bug in window or aggregate code).
    #[error("partition {partition}: its task panicked: {message}")]
    TaskPanicked { partition: i32, message: String },
    /// A partition's committed checkpoint cannot be restored.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// The consumer thread panicked.
    #[error("the consumer thread panicked")]
    ConsumerPanicked,
}

impl Shared {
    /// Records a fatal error (the first one wins) and stops the pipeline.
    pub fn fail(&self, error: PipelineError) {
        let mut slot = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            tracing::error!(pipeline = %self.plan.name, %error, "pipeline failed");
            self.health.failed(&error.to_string());
            *slot = Some(error);
        }
        self.env.cancel.cancel();
    }

    /// Whether the pipeline is stopping (shutdown or a fatal error): broker
    /// calls stop waiting for the broker then.
    pub fn stopping(&self) -> bool {
        self.env.cancel.is_cancelled() || self.shutdown.is_cancelled()
    }

    /// The fatal error, taken.
    fn take_fatal(&self) -> Option<PipelineError> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// A short-lived Kafka client (a connection check, a probe, an admin
/// client) that is destroyed on a thread of its own: librdkafka joins its
/// threads on destruction, which takes ~100 ms, and that would otherwise
/// add to start-up or block the async runtime.
pub(crate) struct Transient<T: Send + 'static>(Option<T>);

impl<T: Send + 'static> Transient<T> {
    pub fn new(client: T) -> Self {
        Self(Some(client))
    }
}

impl<T: Send + 'static> std::ops::Deref for Transient<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.0.as_ref().expect("present until dropped")
    }
}

impl<T: Send + 'static> Drop for Transient<T> {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            // Should the thread not start, the closure (and the client
            // with it) is dropped here instead.
            let _ = std::thread::Builder::new()
                .name("streamfold-close".into())
                .spawn(move || drop(client));
        }
    }
}
