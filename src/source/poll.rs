//! The consumer thread: it subscribes, takes fetched records to their
//! partitions' batches, commits on schedule, drains and commits at
//! shutdown, and leaves the group.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::consumer::{FetchQueue, Fetched, SourceConsumer};
use super::run::RunError;
use super::{PipelineError, Shared};

/// The consumer thread, seen from the pipeline's task.
pub(super) struct ConsumerThread {
    /// Sent once the thread has drained and committed (or could not
    /// subscribe).
    done: oneshot::Receiver<Result<(), RunError>>,
    /// Sent once the consumer has left the group.
    left: oneshot::Receiver<()>,
}

impl ConsumerThread {
    /// Subscribes `consumer` to the shared topic and runs it on a thread
    /// of its own until `shutdown`, committing every `commit_interval`.
    ///
    /// # Errors
    /// [`RunError::Spawn`] when the thread cannot be started.
    pub(super) fn start(
        consumer: SourceConsumer,
        shared: Arc<Shared>,
        shutdown: CancellationToken,
        commit_interval: Duration,
        servers: String,
    ) -> Result<Self, RunError> {
        let (done_tx, done) = oneshot::channel();
        let (left_tx, left) = oneshot::channel();
        std::thread::Builder::new()
            .name("streamfold-consumer".into())
            .spawn(move || {
                let result = consumer
                    .subscribe(&[shared.env.topic.as_str()])
                    .map_err(|source| RunError::Client {
                        client: "consumer subscription",
                        servers,
                        source,
                    });
                if result.is_ok() {
                    tracing::info!(
                        pipeline = %shared.plan.name,
                        topic = %shared.env.topic,
                        stage = ?shared.stage,
                        "subscribed"
                    );
                    poll_loop(&consumer, &shared, &shutdown, commit_interval);
                }
                // Drained and committed: what is left is leaving the group.
                let _ = done_tx.send(result);
                // Dropping the consumer leaves the group; it blocks, so it
                // happens here and not on the async runtime.
                drop(consumer);
                let _ = left_tx.send(());
            })
            .map_err(|source| RunError::Spawn {
                what: "consumer",
                source,
            })?;
        Ok(Self { done, left })
    }

    /// Waits until the thread has drained and committed, then at most
    /// `leave_deadline` for the consumer to leave its group.
    ///
    /// # Errors
    /// The subscription's error, or [`PipelineError::ConsumerPanicked`].
    pub(super) async fn join(
        self,
        leave_deadline: Duration,
        pipeline: &str,
    ) -> Result<(), RunError> {
        let result = self.done.await.unwrap_or_else(|_| {
            Err(RunError::Failed {
                pipeline: pipeline.to_string(),
                error: Box::new(PipelineError::ConsumerPanicked),
            })
        });
        leave_group(self.left, leave_deadline, pipeline).await;
        result
    }
}

/// Waits, at most `deadline`, for the consumer thread to have left the
/// group (`left` is sent, or dropped by a thread that panicked).
///
/// A consumer that leaves while a rebalance is in progress waits for the
/// rebalance to end, and librdkafka sets that wait no bound: a member that
/// died without leaving holds it up to its session timeout. Everything
/// this process read was committed before it began to leave, so it need
/// not wait longer: the group drops this member after its session
/// timeout.
async fn leave_group(left: oneshot::Receiver<()>, deadline: Duration, pipeline: &str) {
    if tokio::time::timeout(deadline, left).await.is_err() {
        tracing::warn!(
            pipeline,
            deadline = %humantime::format_duration(deadline),
            "the consumer did not leave its group within commit.drain_deadline (a rebalance \
             is in progress); stopping without waiting: offsets are committed, and the group \
             drops this member after its session timeout"
        );
    }
}

/// Takes records to their partitions' batches, serves rebalances, flushes
/// batches and commits on schedule until `shutdown`; then drains and
/// commits the partitions it owns.
fn poll_loop(
    consumer: &SourceConsumer,
    shared: &Shared,
    shutdown: &CancellationToken,
    commit_interval: Duration,
) {
    // Records already fetched are taken this many at a time between two
    // rounds of bookkeeping (clock, health, flushes, commits), which would
    // otherwise cost more than taking a record.
    const BURST: usize = 256;
    let ctx = consumer.context();
    let fetch = Arc::new(FetchQueue::new(consumer));
    ctx.read_fetched_from(Some(Arc::clone(&fetch)));
    let mut fetched = Fetched::with_capacity(BURST);
    let mut next_commit = Instant::now() + commit_interval;
    let mut next_flush = Instant::now();
    let mut next_gauges = Instant::now();
    while !shutdown.is_cancelled() && !shared.env.cancel.is_cancelled() {
        shared.health.polled();
        let now = Instant::now();
        if now >= next_gauges {
            ctx.report_lag(consumer);
            next_gauges = now + Duration::from_secs(5);
        }
        if now >= next_flush {
            next_flush = now + ctx.flush_due(consumer);
        }
        if now >= next_commit {
            ctx.commit(consumer, None);
            next_commit = now + commit_interval;
        }
        let wait = next_flush
            .min(next_commit)
            .saturating_duration_since(now)
            .min(Duration::from_millis(100));
        // Rebalances, errors and statistics (served inside `poll`), and
        // any record fetched before its partition was forwarded.
        for _ in 0..BURST {
            match consumer.poll(Duration::ZERO) {
                Some(Ok(m)) => ctx.accept(consumer, &m),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error");
                    break;
                }
                None if fetch.events_waiting() => {}
                None => break,
            }
        }
        // The records: the wait for them is the loop's wait, which an
        // event reaching the consumer queue ends.
        fetch.take(wait, &mut fetched);
        ctx.accept_fetched(consumer, &fetched);
    }
    let owned = ctx.owned();
    tracing::info!(partitions = ?owned, "shutting down: draining owned partitions");
    ctx.drain_and_commit(consumer, &owned, "shutdown");
    // The queue and the records taken from it go before the consumer.
    ctx.read_fetched_from(None);
    drop(fetched);
    drop(fetch);
}
