//! Checkpoints of one partition task: its operator's state written every
//! `state.checkpoint_interval` (and at a drain) to the checkpoint topic,
//! in two alternating slots, the next one only once the last is
//! committed, so that a committed checkpoint is never overwritten.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;

use super::PartitionError;
use super::partition::PartitionTask;
use crate::checkpoint::{self, Checkpoint};
use crate::offsets::CommitPoint;
use crate::operator::Operator;
use crate::sink::{Tag, Undelivered};

/// Largest chunk of a checkpoint: well below any broker's record size
/// (Kafka's default `max.message.bytes` is 1 MiB), and below the
/// producer's `message.max.bytes`.
const CHUNK_BYTES: usize = 256 * 1024;

/// How soon to look again when the last checkpoint is not committed yet.
const RECHECK: Duration = Duration::from_millis(200);

/// A write of a checkpoint not yet acknowledged.
#[derive(Debug, Clone, Copy)]
struct Writing {
    attempt: u64,
    seq: u64,
    /// The checkpoint before it, to fall back to should this one be lost.
    previous: Option<u64>,
}

/// The checkpoint bookkeeping of one partition task.
#[derive(Debug)]
pub(super) struct Checkpoints {
    interval: Duration,
    due: tokio::time::Instant,
    /// The number of the next checkpoint.
    next_seq: u64,
    /// The newest checkpoint written (or restored).
    last_seq: Option<u64>,
    /// The offset and event time it was taken at: a partition with
    /// nothing new is not checkpointed again.
    last_at: Option<(i64, i64)>,
    attempts: u64,
    writing: Option<Writing>,
}

impl Checkpoints {
    /// Bookkeeping for a task resuming from `resume` (which names the
    /// checkpoint committed last, if any) at event time `event_time`.
    pub fn new(interval: Duration, resume: Option<CommitPoint>, event_time: i64) -> Self {
        let last_seq = resume.and_then(|r| r.checkpoint);
        Self {
            interval,
            due: tokio::time::Instant::now() + interval,
            next_seq: last_seq.map_or(0, |n| n + 1),
            last_seq,
            last_at: resume.map(|r| (r.offset, event_time)),
            attempts: 0,
            writing: None,
        }
    }

    /// The task restored `c`.
    pub fn restored(&mut self, c: &Checkpoint) {
        self.last_seq = Some(c.seq);
        self.next_seq = c.seq + 1;
        self.last_at = Some((c.offset, c.max_event_time));
    }
}

impl<O: Operator> PartitionTask<O> {
    /// When the next checkpoint is due (far off without checkpoints).
    pub(super) fn checkpoint_due(&self) -> tokio::time::Instant {
        self.checkpoints.as_ref().map_or_else(
            || tokio::time::Instant::now() + Duration::from_secs(3600),
            |c| c.due,
        )
    }

    /// Whether a checkpoint may be written now: none is waiting to become
    /// the commit point, the last one is committed (its slot is the one
    /// not written next), and the state moved since.
    pub(super) fn checkpoint_allowed(&self) -> bool {
        let Some(c) = &self.checkpoints else {
            return false;
        };
        !self.frontier.checkpoint_pending()
            && self.env.board.committed_checkpoint(self.partition) == c.last_seq
            && c.last_at != Some((self.position, self.operator.event_time()))
    }

    pub(super) async fn on_checkpoint_due(&mut self) -> Result<(), PartitionError> {
        let allowed = self.checkpoint_allowed();
        let waiting = self.frontier.checkpoint_pending()
            || self
                .checkpoints
                .as_ref()
                .is_some_and(|c| self.env.board.committed_checkpoint(self.partition) != c.last_seq);
        if let Some(c) = &mut self.checkpoints {
            c.due = tokio::time::Instant::now() + if waiting { RECHECK } else { c.interval };
        }
        if allowed {
            self.write_checkpoint().await?;
        }
        Ok(())
    }

    /// Writes the operator's state at the current position as the next
    /// checkpoint.
    pub(super) async fn write_checkpoint(&mut self) -> Result<(), PartitionError> {
        let (Some(settings), Some(state)) = (&self.env.checkpoints, self.operator.save()) else {
            return Ok(());
        };
        let Some(c) = &mut self.checkpoints else {
            return Ok(());
        };
        let started = Instant::now();
        let seq = c.next_seq;
        c.attempts += 1;
        let attempt = c.attempts;
        c.writing = Some(Writing {
            attempt,
            seq,
            previous: c.last_seq,
        });
        let point = CommitPoint {
            offset: self.position,
            max_event_time: self.operator.event_time(),
            settled: self.frontier.closed(),
            checkpoint: Some(seq),
        };
        c.next_seq = seq + 1;
        c.last_seq = Some(seq);
        c.last_at = Some((point.offset, point.max_event_time));
        let env = Arc::clone(&self.env);
        let bytes = Checkpoint {
            topic: env.topic.clone(),
            partition: self.partition,
            seq,
            offset: point.offset,
            max_event_time: point.max_event_time,
            settled: point.settled,
            plan: settings.plan.clone(),
            state,
        }
        .encode();
        // Room for the key and the record's overhead below the producer's
        // largest message.
        let chunk_bytes = CHUNK_BYTES.min(env.sink.max_record_bytes().saturating_sub(4096));
        let chunks = checkpoint::split(&settings.scope, self.partition, seq, &bytes, chunk_bytes);
        self.frontier
            .checkpoint_written(point, attempt, chunks.len() as u32);
        let partition = self.partition;
        for chunk in &chunks {
            self.send_via(Tag::Checkpoint { attempt }, |d| {
                env.sink
                    .write_checkpoint(partition, chunk, d)
                    .map(|()| false)
            })
            .await?;
        }
        env.metrics
            .checkpoint_written(partition, bytes.len(), started.elapsed().as_secs_f64());
        tracing::debug!(
            partition,
            seq,
            offset = point.offset,
            bytes = bytes.len(),
            chunks = chunks.len(),
            "checkpoint written"
        );
        Ok(())
    }

    /// A chunk of checkpoint write `attempt` was not delivered: whether
    /// it is written again (the same number, into the same slot, once
    /// due). `false` means the failure is fatal.
    pub(super) fn retry_checkpoint(&mut self, attempt: u64, source: &KafkaError) -> bool {
        let Some(c) = &mut self.checkpoints else {
            return false;
        };
        let again = matches!(Undelivered::of(source), Undelivered::Transient);
        self.frontier.checkpoint_lost(attempt);
        if let Some(w) = c.writing.filter(|w| w.attempt == attempt) {
            if !again {
                return false;
            }
            c.next_seq = w.seq;
            c.last_seq = w.previous;
            c.last_at = None;
            c.writing = None;
            c.due = tokio::time::Instant::now() + RECHECK;
            tracing::warn!(
                partition = self.partition,
                seq = w.seq,
                error = %source,
                "checkpoint not delivered; writing it again"
            );
        }
        again
    }
}
