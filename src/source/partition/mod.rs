//! The task that owns one assigned partition: it sends batches to rayon,
//! folds their partials into window state in offset order, emits closed
//! windows, tracks acknowledgements and publishes its commit point.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::{Shared, Stage};
use crate::aggregate::Aggregates;
use crate::codec::WindowOutput;
use crate::config::LatePolicy;
use crate::offsets::{CommitPoint, Frontier};
use crate::pipeline::{BatchOutput, process};
use crate::record::{RawRecord, Stage as ErrorStage};
use crate::sink::{Acks, Delivery, Report, SendError, Tag, WindowSpan};
use crate::telemetry::{Outcome, Produced};

mod letters;
use crate::window::{NO_TIME, OpenWindows};
use letters::Letter;

/// Asks a partition task to finish in-flight work, publish its final commit
/// point and stop.
#[derive(Debug)]
pub(crate) struct DrainRequest {
    /// When to give up waiting for acknowledgements.
    pub deadline: Instant,
    /// Signalled once the final commit point is published.
    pub done: std::sync::mpsc::Sender<i32>,
}

/// A batch on the rayon pool: its offset range and, once done, its output.
type BatchFuture = Pin<Box<dyn Future<Output = BatchDone> + Send>>;
type BatchDone = (
    (i64, i64),
    Result<Result<BatchOutput, String>, oneshot::error::RecvError>,
);

/// Fatal errors of a partition task.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error(
        "partition {partition}: batch at offsets {from}..={to} panicked on the rayon pool: {message}"
    )]
    BatchPanicked {
        partition: i32,
        from: i64,
        to: i64,
        message: String,
    },
    #[error("partition {partition}: {what} was not delivered: {source}")]
    Delivery {
        partition: i32,
        what: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("partition {partition}: {source}")]
    Send {
        partition: i32,
        #[source]
        source: SendError,
    },
    #[error("partition {partition}: record at offset {offset}: {reason}")]
    Aggregate {
        partition: i32,
        offset: i64,
        reason: String,
    },
    #[error("partition {partition}: {source}")]
    Encode {
        partition: i32,
        #[source]
        source: crate::codec::EncodeError,
    },
}

pub(crate) struct PartitionTask {
    partition: i32,
    shared: Arc<Shared>,
    windows: Box<dyn OpenWindows>,
    frontier: Frontier,
    /// `emit = on-update`: windows changed since their last update, by
    /// (key, start), and when each was last updated.
    dirty: BTreeSet<(String, i64)>,
    last_update: HashMap<(String, i64), tokio::time::Instant>,
    /// Largest event time seen in this partition (from the resumed commit
    /// on), advanced by the wall clock while the partition is idle.
    max_event_time: i64,
    /// Next offset to process.
    position: i64,
    in_flight: FuturesOrdered<BatchFuture>,
    /// Delivery reports of this partition's records.
    acks: Arc<Acks>,
    /// Records handed to the producer and not yet reported.
    pending: usize,
    /// Dead letters handed to the producer and not yet acknowledged, by
    /// number: kept to write them again should the broker refuse one.
    letters: HashMap<u64, Letter>,
    /// The number of the next dead letter.
    next_letter: u64,
    /// Numbers of dead letters to write again.
    resend: Vec<u64>,
}

impl PartitionTask {
    /// A task resuming from `resume` (the committed point, if any).
    pub fn new(partition: i32, shared: Arc<Shared>, resume: Option<CommitPoint>) -> Self {
        Self {
            partition,
            windows: shared.plan.window.open(),
            shared,
            dirty: BTreeSet::new(),
            last_update: HashMap::new(),
            frontier: Frontier::new(resume.map_or(NO_TIME, |p| p.settled)),
            max_event_time: resume.map_or(NO_TIME, |p| p.max_event_time),
            position: resume.map_or(0, |p| p.offset),
            in_flight: FuturesOrdered::new(),
            acks: Arc::default(),
            pending: 0,
            letters: HashMap::new(),
            next_letter: 0,
            resend: Vec::new(),
        }
    }

    /// Runs until drained, until the input closes or until the pipeline
    /// is cancelled after a fatal error elsewhere.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Vec<RawRecord>>,
        mut drain: oneshot::Receiver<DrainRequest>,
    ) {
        let idle = self.shared.plan.idle_timeout;
        let mut idle_since = tokio::time::Instant::now();
        // The watermark lag grows while no record arrives: refresh it.
        let mut gauges = tokio::time::interval(Duration::from_secs(5));
        let result = async {
            loop {
                let batch = &self.shared.batch;
                let can_take = self.in_flight.len() < batch.max_in_flight
                    && self.pending < batch.max_pending_outputs;
                if !self.resend.is_empty() {
                    self.resend_letters().await?;
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
                            self.start(records);
                        }
                        None => return Ok(()),
                    },
                    () = tokio::time::sleep_until(idle_since + idle.unwrap_or_default()),
                        if idle.is_some() && self.in_flight.is_empty() && self.max_event_time != NO_TIME =>
                    {
                        idle_since = tokio::time::Instant::now();
                        self.on_idle(idle.unwrap_or_default()).await?;
                    }
                    _ = gauges.tick() => self.report_watermark(),
                    () = self.shared.cancel.cancelled() => return Ok(()),
                }
                self.publish();
            }
        }
        .await;
        if let Err(e) = result {
            self.shared.fail(e.into());
        }
        let (windows, keys) = self.open_state();
        self.shared
            .metrics
            .open_state(-(windows as i64), -(keys as i64));
    }

    /// Open panes or sessions, and keys holding them.
    fn open_state(&self) -> (usize, usize) {
        (self.windows.len(), self.windows.keys())
    }

    /// Reports the change in open state since `before`, and the watermark.
    fn report(&self, before: (usize, usize)) {
        let (windows, keys) = self.open_state();
        self.shared.metrics.open_state(
            windows as i64 - before.0 as i64,
            keys as i64 - before.1 as i64,
        );
        self.report_watermark();
    }

    fn report_watermark(&self) {
        if self.max_event_time != NO_TIME {
            let wm = self.shared.plan.lateness.watermark(self.max_event_time);
            self.shared.metrics.watermark(self.partition, wm);
        }
    }

    /// The span of one batch: pipeline, topic, partition, offset range.
    fn batch_span(&self, (from, to): (i64, i64)) -> tracing::Span {
        tracing::debug_span!(
            "batch",
            pipeline = %self.shared.plan.name,
            topic = %self.shared.input_topic,
            partition = self.partition,
            from,
            to
        )
    }

    fn start(&mut self, records: Vec<RawRecord>) {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return;
        };
        let range = (first.offset, last.offset);
        self.shared.metrics.consumed(records.len() as u64);
        let (tx, rx) = oneshot::channel();
        let shared = Arc::clone(&self.shared);
        let queued = Instant::now();
        let span = self.batch_span(range);
        rayon::spawn(move || {
            let _in_batch = span.enter();
            let started = Instant::now();
            let forward = shared.stage == Stage::Repartition;
            let n = records.len();
            // A panic here is a bug of this project's own code (a
            // transform's panic is caught per record, in `process`): the
            // partition task fails the pipeline cleanly instead of rayon
            // aborting the process.
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                process(&shared.plan, records, forward)
            }))
            .map_err(|panic| crate::transform::guard::panic_message(panic.as_ref()));
            shared.metrics.batch(
                n,
                started.duration_since(queued).as_secs_f64(),
                started.elapsed().as_secs_f64(),
            );
            let _ = tx.send(out);
        });
        self.in_flight
            .push_back(Box::pin(async move { (range, rx.await) }));
    }

    async fn on_batch(&mut self, done: BatchDone) -> Result<(), PartitionError> {
        let ((from, last), out) = done;
        let panicked = |message| PartitionError::BatchPanicked {
            partition: self.partition,
            from,
            to: last,
            message,
        };
        let mut out = match out {
            Ok(Ok(out)) => out,
            Ok(Err(message)) => return Err(panicked(message)),
            Err(_) => return Err(panicked("its result never came back".into())),
        };
        let plan = Arc::clone(&self.shared.plan);
        let before = self.max_event_time;
        let m_before = |i: u32| before.max(out.max_event_time_before[i as usize]);
        let metrics = self.shared.metrics.clone();

        for f in &out.failures {
            let r = &out.records[f.index as usize];
            self.dead_letter(r, f.stage, &f.reason, m_before(f.index))
                .await?;
        }
        let forwarded = out.forward.len() as u64;
        for (i, key) in std::mem::take(&mut out.forward) {
            let r = &out.records[i as usize];
            self.frontier.hold(r.offset, m_before(i));
            let shared = Arc::clone(&self.shared);
            let partition = self.partition;
            self.send(Tag::Forward { offset: r.offset }, |d| {
                shared.sink.send_forward(partition, r, &key, d)
            })
            .await?;
        }
        metrics.processed(Outcome::Ok, forwarded);
        let open_before = self.open_state();
        let mut late: Vec<u32> = out.late.clone();
        let mut ok = 0u64;
        // Window kinds that pre-aggregate: one partial per (key, pane).
        for p in std::mem::take(&mut out.partials) {
            if plan.lateness.is_closed(p.first_end, before) {
                late.extend_from_slice(&p.members);
                continue;
            }
            let Some(&first) = p.members.first() else {
                continue;
            };
            ok += p.members.len() as u64;
            if p.last_end <= self.frontier.settled() {
                // Replayed after a restart: every window of this
                // pane was emitted and acknowledged with these
                // records before the commit.
                continue;
            }
            let opened = self
                .windows
                .merge_pane(&p.key, p.pane_start, p.last_end, p.aggregates);
            if plan.update_interval.is_some() {
                for start in self.windows.windows_of_pane(&p.key, p.pane_start) {
                    self.dirty.insert((p.key.clone(), start));
                }
            }
            if opened {
                let first_offset = out.records[first as usize].offset;
                self.frontier
                    .window_opened(p.last_end, first_offset, m_before(first));
            }
        }
        // Window kinds that fold in order (sessions merge, so a record's
        // session depends on every earlier record of its key): added here,
        // one by one.
        let mut m = before;
        for s in std::mem::take(&mut out.in_order) {
            if plan.lateness.is_closed(s.first_end, m) {
                late.push(s.index);
                continue;
            }
            ok += 1;
            let offset = out.records[s.index as usize].offset;
            let change = self
                .windows
                .add_record(&plan.aggregates, &s.key, s.event_time, &s.record, offset, m)
                .map_err(|reason| PartitionError::Aggregate {
                    partition: self.partition,
                    offset,
                    reason,
                })?;
            for (end, first) in change.removed {
                self.frontier.window_dropped(end, first);
            }
            let (end, first, met) = change.added;
            self.frontier.window_opened(end, first, met);
            if plan.update_interval.is_some() {
                self.dirty.insert((s.key.clone(), change.start));
            }
            if s.event_time > m {
                m = s.event_time;
                self.close_until(plan.lateness.watermark(m)).await?;
            }
        }
        metrics.processed(Outcome::Ok, ok);
        metrics.processed(Outcome::Filtered, out.filtered);
        late.sort_unstable();
        metrics.processed(Outcome::Late, late.len() as u64);
        if plan.late_policy != LatePolicy::Drop {
            for &i in &late {
                let r = &out.records[i as usize];
                let reason = format!(
                    "late: its window had already been emitted (watermark {})",
                    crate::window::format_millis(plan.lateness.watermark(m_before(i)))
                );
                self.dead_letter(r, ErrorStage::Late, &reason, m_before(i))
                    .await?;
            }
        }

        self.max_event_time = before.max(out.max_event_time);
        self.frontier.advance(last + 1, self.max_event_time);
        self.position = last + 1;
        self.close_windows().await?;
        self.emit_updates().await?;
        self.report(open_before);
        Ok(())
    }

    /// Emits every window the watermark has passed.
    async fn close_windows(&mut self) -> Result<(), PartitionError> {
        if self.max_event_time == NO_TIME {
            return Ok(());
        }
        let watermark = self.shared.plan.lateness.watermark(self.max_event_time);
        self.close_until(watermark).await?;
        self.frontier.windows_closed(watermark);
        Ok(())
    }

    async fn close_until(&mut self, watermark: i64) -> Result<(), PartitionError> {
        let closed = self.windows.close_until(
            &self.shared.plan.aggregates,
            watermark,
            self.frontier.settled(),
        );
        for c in closed {
            self.emit(c.key, c.start, c.end, c.first_offset, c.aggregates)
                .await?;
        }
        Ok(())
    }

    /// `emit = on-update`: writes the current value of every open window
    /// that changed, unless it was updated less than `min_interval` ago
    /// (it stays pending for a later batch).
    async fn emit_updates(&mut self) -> Result<(), PartitionError> {
        let Some(interval) = self.shared.plan.update_interval else {
            return Ok(());
        };
        let plan = Arc::clone(&self.shared.plan);
        let watermark = plan.lateness.watermark(self.max_event_time);
        let now = tokio::time::Instant::now();
        for (key, start) in std::mem::take(&mut self.dirty) {
            let snapshot = self
                .windows
                .snapshot(&plan.aggregates, &key, start)
                .filter(|(end, _)| *end > watermark);
            let id = (key, start);
            let Some((end, aggregates)) = snapshot else {
                self.last_update.remove(&id);
                continue;
            };
            // A replay after a restart does not repeat updates of windows
            // whose final result was already acknowledged.
            if end <= self.frontier.settled() {
                continue;
            }
            if self
                .last_update
                .get(&id)
                .is_some_and(|t| now.duration_since(*t) < interval)
            {
                self.dirty.insert(id);
                continue;
            }
            self.last_update.insert(id.clone(), now);
            let out = WindowOutput {
                key: id.0,
                start,
                end,
                values: aggregates.finish(&plan.aggregates),
            };
            self.send_window(out, Tag::Update(WindowSpan { start, end }), false)
                .await?;
        }
        // Forget windows that closed.
        let windows = &self.windows;
        self.last_update
            .retain(|(key, start), _| windows.is_open(key, *start, watermark));
        Ok(())
    }

    /// No record arrived for `idle_timeout`: move event time on with the
    /// wall clock so this partition's windows still close.
    async fn on_idle(&mut self, idle: Duration) -> Result<(), PartitionError> {
        let open_before = self.open_state();
        self.max_event_time = self.max_event_time.saturating_add(idle.as_millis() as i64);
        self.frontier.advance(self.position, self.max_event_time);
        self.close_windows().await?;
        tracing::debug!(
            partition = self.partition,
            max_event_time = self.max_event_time,
            "idle: event time advanced with the wall clock"
        );
        self.report(open_before);
        Ok(())
    }

    /// Encodes and sends one closed window. A session window rebuilt in a
    /// replay that ends at or before the settled bound was already
    /// emitted and acknowledged: it is dropped instead (`first_offset`
    /// identifies it to the frontier; -1 for fixed windows, which the
    /// store already filters).
    async fn emit(
        &mut self,
        key: String,
        start: i64,
        end: i64,
        first_offset: i64,
        aggregates: Aggregates,
    ) -> Result<(), PartitionError> {
        if first_offset >= 0 && end <= self.frontier.settled() {
            self.frontier.window_dropped(end, first_offset);
            return Ok(());
        }
        let out = WindowOutput {
            key,
            start,
            end,
            values: aggregates.finish(&self.shared.plan.aggregates),
        };
        self.frontier.window_emitted(end);
        self.send_window(out, Tag::Window(WindowSpan { start, end }), true)
            .await
    }

    /// Encodes a window result (final, or an update of an open window) and
    /// hands it to the producer.
    async fn send_window(
        &mut self,
        out: WindowOutput,
        tag: Tag,
        final_result: bool,
    ) -> Result<(), PartitionError> {
        let payload =
            self.shared
                .plan
                .encoder
                .encode(&out)
                .map_err(|source| PartitionError::Encode {
                    partition: self.partition,
                    source,
                })?;
        let shared = Arc::clone(&self.shared);
        self.send(tag, move |d| {
            shared.sink.send_window(&out, &payload, final_result, d)
        })
        .await
    }

    /// Hands a record to the producer, waiting for acknowledgements while
    /// its queue is full (backpressure instead of buffering).
    async fn send<F>(&mut self, tag: Tag, mut send: F) -> Result<(), PartitionError>
    where
        F: FnMut(Box<Delivery>) -> Result<(), SendError>,
    {
        loop {
            match send(self.acks.delivery(tag)) {
                Ok(()) => {
                    self.pending += 1;
                    return Ok(());
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
            self.shared.metrics.delivery_error();
            if let Tag::DeadLetter {
                offset,
                letter: number,
                ..
            } = tag
                && self.retry_letter(number, offset, &source)
            {
                return Ok(());
            }
            let what = match tag {
                Tag::DeadLetter { offset, .. } => format!("dead letter for offset {offset}"),
                Tag::Forward { offset } => format!("repartitioned record of offset {offset}"),
                Tag::Window(w) => format!("window [{}, {})", w.start, w.end),
                Tag::Update(w) => format!("update of window [{}, {})", w.start, w.end),
            };
            return Err(PartitionError::Delivery {
                partition: self.partition,
                what,
                source,
            });
        }
        let m = &self.shared.metrics;
        match tag {
            Tag::DeadLetter {
                offset,
                stage,
                letter,
            } => {
                self.letters.remove(&letter);
                self.frontier.release(offset);
                m.dead_letter(stage.as_str());
                if stage == ErrorStage::Late {
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
            Tag::Update(_) => m.produced(Produced::Update),
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
            self.shared.board.publish(self.partition, p);
        }
    }

    /// Finishes batches already on the pool, waits for acknowledgements
    /// until the deadline, and publishes the final commit point.
    async fn drain(&mut self, req: DrainRequest) -> Result<(), PartitionError> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(req.deadline);
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
                    break;
                }
            }
        }
        self.publish();
        tracing::info!(
            partition = self.partition,
            open_windows = self.windows.len(),
            drain_ms = started.elapsed().as_millis() as u64,
            "partition drained"
        );
        let _ = req.done.send(self.partition);
        Ok(())
    }
}
