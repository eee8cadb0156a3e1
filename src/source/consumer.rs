//! The consumer thread: polls librdkafka, hands records to the partition
//! tasks in batches, pauses partitions whose task is behind, commits, and
//! handles rebalances (drain and commit on revoke; what an assignment
//! resumes from is in `consumer/assign.rs`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use rustc_hash::FxHashMap;
use tokio::sync::{mpsc, oneshot};

use super::Shared;
use super::checkpoints::CheckpointTopic;
use super::resume::StateTopic;
use crate::offsets::encode_metadata;
use crate::record::{RawBatch, RawBatchBuilder, Recycle};
use crate::task::DrainRequest;
use crate::telemetry::{CommitResult, Rebalance};

mod assign;
mod fetch;

pub(crate) use fetch::{FetchQueue, Fetched};
use fetch::{Polled, schema_header, window_partition};

/// The consumer with streamfold's context.
pub(crate) type SourceConsumer = BaseConsumer<SourceContext>;

struct Feed {
    tx: mpsc::Sender<RawBatch>,
    drain: Option<oneshot::Sender<DrainRequest>>,
    /// Records not yet handed over (their keys and values copied into the
    /// batch's chunks), and when the first of them arrived.
    batch: RawBatchBuilder,
    since: Option<Instant>,
    /// Full batches the task had no room for; the partition is paused
    /// while any are waiting.
    waiting: VecDeque<RawBatch>,
    paused: bool,
    /// When the partition was paused, for the backpressure metric.
    paused_since: Option<Instant>,
    /// The writer schema the last registry-framed record named.
    last_schema: Option<crate::codec::SchemaRef>,
}

/// Rebalance callbacks and the per-partition feeds they create and end.
pub(crate) struct SourceContext {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    /// By partition (looked up once per record: a cheap hash).
    feeds: Mutex<FxHashMap<i32, Feed>>,
    /// Where resume state goes when the broker drops commit metadata.
    state: Option<StateTopic>,
    /// Where checkpoints are read from, when the pipeline keeps them.
    checkpoints: Option<CheckpointTopic>,
    /// Where each assignment forwards its partitions' fetched records,
    /// while the consumer thread reads it.
    fetch: Mutex<Option<Arc<FetchQueue>>>,
    /// The large buffers of the feeds' dropped batches.
    recycle: Arc<Recycle>,
}

impl ClientContext for SourceContext {
    /// librdkafka's errors: "all brokers down" makes the pipeline unready
    /// until a broker is reached again.
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.connected(false);
        }
        if crate::retry::transient(&error) {
            tracing::warn!(%error, reason, "kafka client");
        } else {
            tracing::error!(%error, reason, "kafka client");
        }
    }

    /// Broker states (every `statistics.interval.ms`): reachable while
    /// any broker connection is up.
    fn stats(&self, statistics: Statistics) {
        let up = statistics.brokers.values().any(|b| b.state == "UP");
        if !up {
            let states: Vec<String> = statistics
                .brokers
                .values()
                .map(|b| format!("{}: {}", b.name, b.state))
                .collect();
            tracing::debug!(?states, "no broker connection is up");
        }
        self.connected(up);
    }
}

impl ConsumerContext for SourceContext {
    /// Like rdkafka's default, but the assignment starts each partition at
    /// its resume point, which may come from the state topic rather than
    /// the committed offset.
    fn rebalance(
        &self,
        consumer: &SourceConsumer,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.shared.env.metrics.rebalance(Rebalance::Assign);
                self.assign(consumer, tpl);
                self.shared.health.assigned();
                if let Some(fetch) = self.fetch_queue() {
                    fetch.forward(consumer, &self.shared.env.topic, &self.partitions_of(tpl));
                }
                if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let partitions = self.partitions_of(tpl);
                if consumer.assignment_lost() {
                    self.shared.env.metrics.rebalance(Rebalance::Lost);
                    tracing::warn!(
                        ?partitions,
                        "partitions lost (session expired); dropping their state without commit"
                    );
                    self.stop(&partitions);
                } else {
                    self.shared.env.metrics.rebalance(Rebalance::Revoke);
                    self.drain_and_commit(consumer, &partitions, "revoked");
                }
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                tracing::warn!(error = ?other, "rebalance error");
                consumer.unassign()
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "applying the rebalance failed");
        }
    }
}

impl SourceContext {
    pub(crate) fn new(
        shared: Arc<Shared>,
        runtime: tokio::runtime::Handle,
        state: Option<StateTopic>,
        checkpoints: Option<CheckpointTopic>,
    ) -> Self {
        Self {
            shared,
            runtime,
            feeds: Mutex::new(FxHashMap::default()),
            state,
            checkpoints,
            fetch: Mutex::new(None),
            recycle: Arc::default(),
        }
    }

    /// Sets the queue that assignments forward their fetched records to
    /// (`None` once the consumer thread stops reading it).
    pub(crate) fn read_fetched_from(&self, queue: Option<Arc<FetchQueue>>) {
        *self.fetch.lock().unwrap_or_else(|e| e.into_inner()) = queue;
    }

    fn fetch_queue(&self) -> Option<Arc<FetchQueue>> {
        self.fetch.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The consumer reaches a broker, or reaches none: readiness, the
    /// gauge and the reconnect count follow.
    fn connected(&self, up: bool) {
        let changed = self.shared.health.set_connected(up);
        self.shared.env.metrics.broker_connected(up, changed);
        if changed && up {
            tracing::info!(pipeline = %self.shared.plan.name, "a broker is reachable again");
        } else if changed {
            tracing::warn!(pipeline = %self.shared.plan.name, "no broker is reachable; waiting for one");
        }
    }

    /// Between two attempts of a broker call that failed transiently: the
    /// loop is alive (it waits on purpose), the broker unreachable.
    fn waiting_for_broker(&self) {
        self.shared.health.polled();
        self.connected(false);
        self.shared.env.metrics.broker_retry();
    }

    fn feeds(&self) -> MutexGuard<'_, FxHashMap<i32, Feed>> {
        self.feeds.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn partitions_of(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements()
            .iter()
            .filter(|e| e.topic() == self.shared.env.topic)
            .map(|e| e.partition())
            .collect()
    }

    fn stop(&self, partitions: &[i32]) {
        let mut feeds = self.feeds();
        for p in partitions {
            if let Some(feed) = feeds.remove(p)
                && let Some(since) = feed.paused_since
            {
                self.shared
                    .env
                    .metrics
                    .backpressure(since.elapsed().as_secs_f64());
            }
            self.shared.env.board.remove(*p);
            self.shared
                .env
                .metrics
                .forget_partition(&self.shared.env.topic, *p);
        }
        self.shared.env.metrics.assigned(feeds.len());
    }

    /// Consumer lag of every owned partition (from the high watermarks
    /// librdkafka already has, no round trip) and the producer queue.
    pub(crate) fn report_lag(&self, consumer: &SourceConsumer) {
        let topic = &self.shared.env.topic;
        let owned = self.owned();
        if let Ok(positions) = consumer.position() {
            for p in owned {
                let Some(high) = cached_high_watermark(consumer, topic, p) else {
                    continue;
                };
                let position = match positions.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => continue,
                };
                if high >= 0 {
                    self.shared
                        .env
                        .metrics
                        .consumer_lag(topic, p, high - position);
                }
            }
        }
        self.shared
            .env
            .metrics
            .producer_queue(self.shared.env.sink.in_flight() as i32);
    }

    /// Drains the tasks of `partitions` within the drain deadline, then
    /// commits their final points synchronously and forgets them.
    pub(crate) fn drain_and_commit(
        &self,
        consumer: &SourceConsumer,
        partitions: &[i32],
        why: &str,
    ) {
        // At shutdown the owned partitions are drained first; leaving the
        // group then revokes them again, with nothing left to do.
        let partitions: Vec<i32> = {
            let feeds = self.feeds();
            partitions
                .iter()
                .copied()
                .filter(|p| feeds.contains_key(p))
                .collect()
        };
        if partitions.is_empty() {
            return;
        }
        let partitions = partitions.as_slice();
        let started = Instant::now();
        let deadline = started + self.shared.drain_deadline;
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let mut waiting = 0;
        {
            let mut feeds = self.feeds();
            for p in partitions {
                let Some(drain) = feeds.get_mut(p).and_then(|f| f.drain.take()) else {
                    continue;
                };
                let req = DrainRequest {
                    deadline,
                    done: done_tx.clone(),
                };
                if drain.send(req).is_ok() {
                    waiting += 1;
                }
            }
        }
        while waiting > 0 {
            let left =
                deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(100);
            if done_rx.recv_timeout(left).is_err() {
                tracing::warn!(waiting, "partition tasks did not finish draining in time");
                break;
            }
            waiting -= 1;
        }
        self.commit(consumer, Some(partitions));
        self.stop(partitions);
        self.shared
            .env
            .metrics
            .drained(started.elapsed().as_secs_f64());
        tracing::info!(
            ?partitions,
            why,
            drain_ms = started.elapsed().as_millis() as u64,
            "partitions drained and committed"
        );
    }

    /// Commits the published points not committed yet, synchronously:
    /// librdkafka reports the outcome of a manual asynchronous commit to
    /// nobody, and the outcome is what marks a point committed and what
    /// the metrics count. One round trip per `commit.interval`.
    pub(crate) fn commit(&self, consumer: &SourceConsumer, only: Option<&[i32]>) {
        let mut points = self.shared.env.board.uncommitted(only);
        // A task that outlived its partition's revocation may still
        // publish: never commit for a partition this member does not own.
        let owned = self.owned();
        points.retain(|(p, _)| owned.contains(p));
        if points.is_empty() {
            return;
        }
        // While no broker is reachable a periodic commit would only block
        // this thread until it times out; its points stay for the next
        // commit. The final commit of a revoke or a shutdown (`only`) is
        // always tried: its points are forgotten after it.
        if only.is_none() && !self.shared.health.connected() {
            tracing::debug!("no broker reachable: commit postponed");
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (p, point) in &points {
            let mut e = tpl.add_partition(&self.shared.env.topic, *p);
            if let Err(err) = e.set_offset(Offset::Offset(point.offset)) {
                tracing::warn!(error = %err, partition = p, "cannot set commit offset");
                continue;
            }
            e.set_metadata(encode_metadata(point));
        }
        let metrics = &self.shared.env.metrics;
        if let Some(state) = &self.state
            && let Err(e) = state.write(&self.shared.env.topic, &points)
        {
            metrics.commit(CommitResult::Failed);
            tracing::warn!(error = %e, "writing the resume state failed; the next commit covers it");
            return;
        }
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                metrics.commit(CommitResult::Ok);
                tracing::debug!(
                    offsets = ?points.iter().map(|(p, c)| (*p, c.offset)).collect::<Vec<_>>(),
                    "offsets committed"
                );
                for (p, point) in points {
                    metrics.committed(&self.shared.env.topic, p, point.offset);
                    self.shared.env.board.mark_committed(p, point);
                }
            }
            Err(e) => {
                // Commits fail during rebalances (ILLEGAL_GENERATION,
                // REBALANCE_IN_PROGRESS): the next commit, by this member or
                // by the partition's new owner, covers these offsets.
                metrics.commit(CommitResult::Failed);
                tracing::warn!(error = %e, "offset commit failed; the next commit covers it");
            }
        }
    }

    /// Appends a record polled from the consumer queue to its partition's
    /// batch.
    pub(crate) fn accept(&self, consumer: &SourceConsumer, m: &impl Polled) {
        let mut feeds = self.feeds();
        self.append(consumer, &mut feeds, m);
    }

    /// Appends records taken from the fetch queue to their partitions'
    /// batches.
    pub(crate) fn accept_fetched(&self, consumer: &SourceConsumer, fetched: &Fetched) {
        if fetched.is_empty() {
            return;
        }
        let mut feeds = self.feeds();
        for m in fetched.iter() {
            match m.error() {
                Some(error) => tracing::warn!(
                    %error,
                    partition = m.partition(),
                    offset = m.offset(),
                    "consumer error"
                ),
                None => self.append(consumer, &mut feeds, &m),
            }
        }
    }

    fn append(&self, consumer: &SourceConsumer, feeds: &mut FxHashMap<i32, Feed>, m: &impl Polled) {
        let p = m.partition();
        let max = self.shared.batch.max_records;
        let Some(feed) = feeds.get_mut(&p) else {
            // Not ours (any more): its new owner reads it from the commit.
            return;
        };
        // Only registry-framed input reads headers: the header may name
        // the value's writer schema.
        let schema_header = if self.shared.schema_headers {
            schema_header(m)
        } else {
            None
        };
        let window_partition = if self.shared.window_partitions {
            window_partition(m)
        } else {
            None
        };
        let payload = m.payload();
        if let (Some(writers), Some(value)) = (self.shared.plan.decoder.writers(), payload) {
            writers.note(value, schema_header.as_deref(), &mut feed.last_schema);
        }
        feed.batch.push(
            m.offset(),
            m.timestamp(),
            m.key(),
            payload,
            schema_header,
            window_partition,
        );
        feed.since.get_or_insert_with(Instant::now);
        if feed.batch.len() >= max {
            self.hand_over(consumer, p, feed);
        }
    }

    /// Hands over batches that waited long enough and retries waiting ones.
    /// Returns how long until the next batch is due.
    pub(crate) fn flush_due(&self, consumer: &SourceConsumer) -> Duration {
        let max_wait = self.shared.batch.max_wait;
        let now = Instant::now();
        let mut next = max_wait;
        let mut feeds = self.feeds();
        for (p, feed) in feeds.iter_mut() {
            if !feed.waiting.is_empty() {
                self.retry_waiting(consumer, *p, feed);
            }
            if let Some(since) = feed.since {
                let age = now.duration_since(since);
                if age >= max_wait {
                    self.hand_over(consumer, *p, feed);
                } else {
                    next = next.min(max_wait - age);
                }
            }
        }
        next
    }

    fn hand_over(&self, consumer: &SourceConsumer, p: i32, feed: &mut Feed) {
        feed.since = None;
        if feed.batch.is_empty() {
            return;
        }
        let batch = feed.batch.finish_and_renew();
        feed.waiting.push_back(batch);
        self.retry_waiting(consumer, p, feed);
    }

    fn retry_waiting(&self, consumer: &SourceConsumer, p: i32, feed: &mut Feed) {
        while let Some(batch) = feed.waiting.pop_front() {
            match feed.tx.try_send(batch) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(batch)) => {
                    feed.waiting.push_front(batch);
                    break;
                }
                // The task ended (fatal error elsewhere, or cancelled).
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    feed.waiting.clear();
                    break;
                }
            }
        }
        let behind = !feed.waiting.is_empty();
        if behind != feed.paused {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&self.shared.env.topic, p);
            let res = if behind {
                consumer.pause(&tpl)
            } else {
                consumer.resume(&tpl)
            };
            match res {
                Ok(()) => {
                    feed.paused = behind;
                    if behind {
                        feed.paused_since = Some(Instant::now());
                    } else if let Some(since) = feed.paused_since.take() {
                        self.shared
                            .env
                            .metrics
                            .backpressure(since.elapsed().as_secs_f64());
                    }
                    tracing::debug!(partition = p, paused = behind, "backpressure");
                }
                Err(e) => {
                    tracing::warn!(partition = p, error = %e, "cannot pause/resume partition")
                }
            }
        }
    }

    /// Every partition this member owns.
    pub(crate) fn owned(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self.feeds().keys().copied().collect();
        v.sort_unstable();
        v
    }
}

/// The high watermark librdkafka last saw in a fetch response for
/// `topic`/`partition`: no round trip to the broker.
fn cached_high_watermark(consumer: &SourceConsumer, topic: &str, partition: i32) -> Option<i64> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid while `consumer` lives; the
    // topic is a valid C string; librdkafka only writes the two outputs.
    let err = unsafe {
        rdkafka_sys::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka_sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some(high)
}
