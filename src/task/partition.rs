//! The partition driver: the task that owns one assigned partition. It
//! sends batches to rayon through its operator's step, hands their results
//! to the operator in offset order, writes what the operator says through
//! the sink with backpressure, tracks acknowledgements and publishes the
//! commit point. It knows nothing of windows.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::checkpoints::Checkpoints;
use super::letters::Letter;
use super::schemas::Learnt;
use super::{Env, PartitionError};
use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::offsets::{CommitPoint, Frontier};
use crate::operator::{Context, Operator, OperatorError, Step};
use crate::record::{RawBatch, Stage};
use crate::sink::{Acks, Origin, Output, Report, SendError, Tag, WindowSpan};
use crate::telemetry::{Outcome, Produced};
use crate::window::NO_TIME;

/// Asks a partition task to finish in-flight work, publish its final commit
/// point and stop.
#[derive(Debug)]
pub struct DrainRequest {
    /// When to give up waiting for acknowledgements.
    pub deadline: Instant,
    /// Signalled once the final commit point is published.
    pub done: std::sync::mpsc::Sender<i32>,
}

/// A batch on the rayon pool: its offset range and, once done, the step's
/// output or the message of its panic.
type BatchFuture<T> = Pin<Box<dyn Future<Output = BatchDone<T>> + Send>>;
type BatchDone<T> = (
    (i64, i64),
    Result<Result<T, String>, oneshot::error::RecvError>,
);
type StepOutput<O> = <<O as Operator>::Step as Step>::Output;

/// The task of one partition, running operator `O`.
pub struct PartitionTask<O: Operator> {
    pub(super) partition: i32,
    pub(super) env: Arc<Env>,
    pub(super) operator: O,
    step: Arc<O::Step>,
    pub(super) frontier: Frontier,
    /// Next offset to process.
    pub(super) position: i64,
    in_flight: FuturesOrdered<BatchFuture<StepOutput<O>>>,
    /// What the operator wrote and the driver has not handed to the sink.
    outputs: Vec<Output>,
    /// Delivery reports of this partition's records.
    acks: Arc<Acks>,
    /// Records handed to the sink and not yet reported.
    pub(super) pending: usize,
    /// Dead letters handed to the sink and not yet acknowledged, by
    /// number: kept to write them again should the broker refuse one.
    pub(super) letters: HashMap<u64, Letter>,
    /// The number of the next dead letter.
    pub(super) next_letter: u64,
    /// Numbers of dead letters to write again.
    pub(super) resend: Vec<u64>,
    /// Checkpoint bookkeeping, when the pipeline keeps checkpoints.
    pub(super) checkpoints: Option<Checkpoints>,
}

impl<O: Operator> PartitionTask<O> {
    /// A task running `operator` on `partition`, resuming from `resume`
    /// (the committed point, if any).
    pub fn new(partition: i32, env: Arc<Env>, operator: O, resume: Option<CommitPoint>) -> Self {
        let settled = resume.map_or(NO_TIME, |p| p.settled);
        let position = resume.map_or(0, |p| p.offset);
        let (frontier, checkpoints) = match &env.checkpoints {
            Some(c) => (
                Frontier::with_checkpoints(settled, resume),
                Some(Checkpoints::new(c.interval, resume, operator.event_time())),
            ),
            None => (Frontier::new(settled), None),
        };
        Self {
            partition,
            env,
            step: operator.step(),
            operator,
            frontier,
            position,
            in_flight: FuturesOrdered::new(),
            outputs: Vec::new(),
            acks: Arc::default(),
            pending: 0,
            letters: HashMap::new(),
            next_letter: 0,
            resend: Vec::new(),
            checkpoints,
        }
    }

    /// Records `from..to` (resume offset to log start) were deleted before
    /// they were read: the operator marks what they belonged to
    /// incomplete.
    pub fn records_lost(&mut self, from: i64, to: i64) {
        tracing::error!(
            pipeline = %self.env.pipeline,
            topic = %self.env.topic,
            partition = self.partition,
            from,
            to,
            lost = to - from,
            "records were deleted (retention) before they were read: the windows they \
             belonged to are emitted marked incomplete (header streamfold.complete: false)"
        );
        self.env.metrics.records_lost((to - from) as u64);
        self.operator.records_lost();
    }

    /// The checkpoint of the resume point is not restored: the operator
    /// starts empty there, and marks what was open then incomplete.
    pub fn state_dropped(&mut self) {
        self.operator.records_lost();
    }

    /// Restores the operator's state from `checkpoint` (the one the
    /// resume point names), before the task runs.
    ///
    /// # Errors
    /// When the operator cannot take the state.
    pub fn restore(&mut self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        self.operator
            .restore(&checkpoint.state, &self.env.metrics)?;
        if let Some(c) = &mut self.checkpoints {
            c.restored(checkpoint);
        }
        self.env
            .metrics
            .checkpoint_restored(self.partition, checkpoint.state.len());
        Ok(())
    }

    /// Runs until drained, until the input closes or until the pipeline
    /// is cancelled after a fatal error elsewhere.
    ///
    /// # Errors
    /// What stopped this partition: its pipeline must fail.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<RawBatch>,
        mut drain: oneshot::Receiver<DrainRequest>,
    ) -> Result<(), PartitionError> {
        let idle = self.env.idle_timeout;
        let mut idle_since = tokio::time::Instant::now();
        // Gauges such as the watermark lag change while no record arrives.
        let mut gauges = tokio::time::interval(Duration::from_secs(5));
        let result = async {
            loop {
                let can_take = self.in_flight.len() < self.env.max_in_flight
                    && self.pending < self.env.max_pending_outputs;
                if !self.resend.is_empty() {
                    self.resend_letters().await?;
                }
                // A due checkpoint is taken here, ahead of every branch
                // below: under sustained input some branch is always ready,
                // and checkpoints (so commits) must not wait for a lull.
                let mut checkpoint_due = self.checkpoint_due();
                if self.checkpoints.is_some() && tokio::time::Instant::now() >= checkpoint_due {
                    self.on_checkpoint_due().await?;
                    checkpoint_due = self.checkpoint_due();
                }
                tokio::select! {
                    // Completions first: they release memory and producer
                    // queue space and move the commit frontier, so they must
                    // not starve behind new input.
                    biased;
                    reports = self.acks.next(), if self.pending > 0 => {
                        self.on_acks(reports)?;
                    }
                    Some(done) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                        let span = self.batch_span(done.0);
                        self.on_batch(done).instrument(span).await?;
                    }
                    req = &mut drain => {
                        if let Ok(req) = req {
                            self.drain(req).await?;
                        }
                        return Ok::<(), PartitionError>(());
                    }
                    records = rx.recv(), if can_take => match records {
                        Some(records) => {
                            idle_since = tokio::time::Instant::now();
                            match self.learn_schemas(&mut drain).await? {
                                Learnt::Done => self.start(records),
                                Learnt::Cancelled | Learnt::Drain(None) => return Ok(()),
                                Learnt::Drain(Some(req)) => {
                                    self.drain(req).await?;
                                    return Ok(());
                                }
                            }
                        }
                        None => return Ok(()),
                    },
                    () = tokio::time::sleep_until(idle_since + idle.unwrap_or_default()),
                        if idle.is_some()
                            && self.in_flight.is_empty()
                            && self.operator.event_time() != NO_TIME =>
                    {
                        idle_since = tokio::time::Instant::now();
                        self.on_idle(idle.unwrap_or_default()).await?;
                    }
                    _ = gauges.tick() => self.operator.report(&self.env.metrics, self.partition),
                    () = tokio::time::sleep_until(checkpoint_due), if self.checkpoints.is_some() => {
                        self.on_checkpoint_due().await?;
                    }
                    () = self.env.cancel.cancelled() => return Ok(()),
                }
                self.publish();
            }
        }
        .await;
        self.operator.stop(&self.env.metrics);
        result
    }

    /// The span of one batch: pipeline, topic, partition, offset range.
    fn batch_span(&self, (from, to): (i64, i64)) -> tracing::Span {
        tracing::debug_span!(
            "batch",
            pipeline = %self.env.pipeline,
            topic = %self.env.topic,
            partition = self.partition,
            from,
            to
        )
    }

    fn start(&mut self, records: RawBatch) {
        let Some(range) = records.offsets() else {
            return;
        };
        self.env.metrics.consumed(records.len() as u64);
        let (tx, rx) = oneshot::channel();
        let step = Arc::clone(&self.step);
        let metrics = self.env.metrics.clone();
        let queued = Instant::now();
        let span = self.batch_span(range);
        rayon::spawn(move || {
            let _in_batch = span.enter();
            let started = Instant::now();
            let n = records.len();
            // A panic here is a bug of this project's own code (a
            // transform's panic is caught per record): the task fails the
            // pipeline cleanly instead of rayon aborting the process.
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| step.run(records)))
                .map_err(|panic| crate::transform::guard::panic_message(panic.as_ref()));
            metrics.batch(
                n,
                started.duration_since(queued).as_secs_f64(),
                started.elapsed().as_secs_f64(),
            );
            let _ = tx.send(out);
        });
        self.in_flight
            .push_back(Box::pin(async move { (range, rx.await) }));
    }

    async fn on_batch(&mut self, done: BatchDone<StepOutput<O>>) -> Result<(), PartitionError> {
        let ((from, last), out) = done;
        let panicked = |message| PartitionError::BatchPanicked {
            partition: self.partition,
            from,
            to: last,
            message,
        };
        let batch = match out {
            Ok(Ok(batch)) => batch,
            Ok(Err(message)) => return Err(panicked(message)),
            Err(_) => return Err(panicked("its result never came back".into())),
        };
        self.position = last + 1;
        self.fold(|op, cx| op.on_batch(batch, cx)).await
    }

    /// Runs `f` on the operator with a context over this task's frontier
    /// and outputs, moves the frontier to the task's position and the
    /// operator's event time, and writes what the operator said.
    async fn fold(
        &mut self,
        f: impl FnOnce(&mut O, &mut Context<'_>) -> Result<(), OperatorError>,
    ) -> Result<(), PartitionError> {
        let mut cx = Context::new(
            self.partition,
            &mut self.frontier,
            &self.env.metrics,
            &mut self.outputs,
        );
        f(&mut self.operator, &mut cx).map_err(|source| PartitionError::Operator {
            partition: self.partition,
            source,
        })?;
        self.frontier
            .advance(self.position, self.operator.event_time());
        self.write_outputs().await
    }

    /// No record arrived for `idle_timeout`: the operator may move event
    /// time on with the wall clock.
    async fn on_idle(&mut self, idle: Duration) -> Result<(), PartitionError> {
        self.fold(|op, cx| op.on_idle(idle, cx)).await
    }

    /// Hands what the operator wrote to the sink, in order.
    async fn write_outputs(&mut self) -> Result<(), PartitionError> {
        let env = Arc::clone(&self.env);
        // Taken and put back, so the buffer keeps its capacity.
        let mut outputs = std::mem::take(&mut self.outputs);
        let mut result = Ok(());
        for output in outputs.drain(..) {
            let tag = match &output {
                Output::Final(w) => Tag::Window(span(w)),
                Output::Update(w) => Tag::Update(span(w)),
                Output::Forward { record, .. } => Tag::Forward {
                    offset: record.offset,
                },
                Output::Record { offset, .. } => Tag::Record { offset: *offset },
                Output::DeadLetter { record, stage, .. } => {
                    let (offset, stage) = (record.offset, *stage);
                    result = self.dead_letter(&env, output, offset, stage).await;
                    if result.is_err() {
                        break;
                    }
                    continue;
                }
                Output::Late { record, .. } => {
                    let offset = record.offset;
                    result = self.dead_letter(&env, output, offset, Stage::Late).await;
                    if result.is_err() {
                        break;
                    }
                    continue;
                }
            };
            if let Err(e) = self.send(&env, tag, &output, false).await {
                result = Err(e);
                break;
            }
        }
        outputs.clear();
        self.outputs = outputs;
        result
    }

    /// Hands a record to the sink, waiting for acknowledgements while its
    /// queue is full (backpressure instead of buffering). Returns whether
    /// it was cut to fit.
    pub(super) async fn send(
        &mut self,
        env: &Env,
        tag: Tag,
        output: &Output,
        headers_only: bool,
    ) -> Result<bool, PartitionError> {
        let origin = Origin {
            pipeline: &env.pipeline,
            topic: &env.topic,
            partition: self.partition,
        };
        self.send_via(tag, |d| env.sink.write(&origin, output, headers_only, d))
            .await
    }

    /// Hands a record to the sink with `write`, waiting for
    /// acknowledgements while its queue is full.
    pub(super) async fn send_via(
        &mut self,
        tag: Tag,
        mut write: impl FnMut(Box<crate::sink::Delivery>) -> Result<bool, SendError>,
    ) -> Result<bool, PartitionError> {
        loop {
            match write(self.acks.delivery(tag)) {
                Ok(cut) => {
                    self.pending += 1;
                    return Ok(cut);
                }
                Err(SendError::QueueFull) if self.pending > 0 => {
                    let reports = self.acks.next().await;
                    self.on_acks(reports)?;
                }
                Err(SendError::QueueFull) => tokio::time::sleep(Duration::from_millis(5)).await,
                Err(source) => {
                    return Err(PartitionError::Send {
                        partition: self.partition,
                        source,
                    });
                }
            }
        }
    }

    fn on_acks(&mut self, reports: Vec<Report>) -> Result<(), PartitionError> {
        // One clock read for the reports that arrived together.
        let now_ms = crate::telemetry::now_ms();
        for (tag, res) in reports {
            self.pending -= 1;
            self.on_ack(tag, res, now_ms)?;
        }
        Ok(())
    }

    fn on_ack(
        &mut self,
        tag: Tag,
        res: Result<(), rdkafka::error::KafkaError>,
        now_ms: i64,
    ) -> Result<(), PartitionError> {
        if let Err(source) = res {
            self.env.metrics.delivery_error();
            if let Tag::DeadLetter {
                offset,
                letter: number,
                ..
            } = tag
                && self.retry_letter(number, offset, &source)
            {
                return Ok(());
            }
            if let Tag::Checkpoint { attempt } = tag
                && self.retry_checkpoint(attempt, &source)
            {
                return Ok(());
            }
            let what = match tag {
                Tag::DeadLetter { offset, .. } => format!("dead letter for offset {offset}"),
                Tag::Forward { offset } => format!("repartitioned record of offset {offset}"),
                Tag::Record { offset } => format!("output record of offset {offset}"),
                Tag::Window(w) => format!("window [{}, {})", w.start, w.end),
                Tag::Update(w) => format!("update of window [{}, {})", w.start, w.end),
                Tag::Checkpoint { attempt } => format!("checkpoint (write {attempt})"),
            };
            return Err(PartitionError::Delivery {
                partition: self.partition,
                what,
                source,
            });
        }
        let m = &self.env.metrics;
        match tag {
            Tag::DeadLetter {
                offset,
                stage,
                letter,
            } => {
                self.letters.remove(&letter);
                self.frontier.release(offset);
                m.dead_letter(stage.as_str());
                if stage == Stage::Late {
                    m.produced(Produced::Late);
                } else {
                    m.produced(Produced::DeadLetter);
                    m.processed(Outcome::DeadLettered, 1);
                }
            }
            Tag::Forward { offset } => {
                self.frontier.release(offset);
                m.produced(Produced::Repartition);
            }
            Tag::Record { offset } => {
                self.frontier.release(offset);
                m.produced(Produced::Record);
            }
            Tag::Update(_) => m.produced(Produced::Update),
            Tag::Checkpoint { attempt } => self.frontier.checkpoint_acknowledged(attempt),
            Tag::Window(w) => {
                self.frontier.window_acknowledged(w.end);
                m.produced(Produced::Window);
                m.window_emitted((now_ms - w.end) as f64 / 1000.0);
            }
        }
        Ok(())
    }

    fn publish(&mut self) {
        if let Some(p) = self.frontier.commit_point() {
            self.env.board.publish(self.partition, p);
        }
    }

    /// Finishes batches already on the pool, waits for acknowledgements
    /// until the deadline, and publishes the final commit point. With
    /// checkpoints that is the newest checkpoint whose outputs are
    /// acknowledged; a last one is written first only when the previous
    /// one is committed already (its slot must not be overwritten before).
    async fn drain(&mut self, req: DrainRequest) -> Result<(), PartitionError> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(req.deadline);
        let settled = self.settle(deadline).await?;
        // A checkpoint whose outputs are all acknowledged is the point now.
        self.publish();
        if settled && self.checkpoint_allowed() {
            self.write_checkpoint().await?;
            self.settle(deadline).await?;
        }
        self.publish();
        tracing::info!(
            partition = self.partition,
            open_windows = self.operator.held(),
            drain_ms = started.elapsed().as_millis() as u64,
            "partition drained"
        );
        let _ = req.done.send(self.partition);
        Ok(())
    }

    /// Folds the batches on the pool and waits for every acknowledgement,
    /// until `deadline`. Returns whether everything settled in time.
    async fn settle(&mut self, deadline: tokio::time::Instant) -> Result<bool, PartitionError> {
        while !self.in_flight.is_empty() || self.pending > 0 || !self.resend.is_empty() {
            if !self.resend.is_empty() {
                self.resend_letters().await?;
                continue;
            }
            tokio::select! {
                biased;
                reports = self.acks.next(), if self.pending > 0 => self.on_acks(reports)?,
                Some(done) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    let span = self.batch_span(done.0);
                    self.on_batch(done).instrument(span).await?;
                }
                () = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(
                        partition = self.partition,
                        unacknowledged = self.pending,
                        batches = self.in_flight.len(),
                        "drain deadline passed; committing what is acknowledged"
                    );
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }
}

fn span(w: &crate::sink::EncodedWindow) -> WindowSpan {
    WindowSpan {
        start: w.window.start,
        end: w.window.end,
    }
}
