//! Assignment: where each newly assigned partition resumes (its committed
//! point, the checkpoint that names, records lost below the log start),
//! and the partition task started there.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};

use super::{Feed, SourceConsumer, SourceContext};
use crate::checkpoint::Checkpoint;
use crate::config::OffsetReset;
use crate::offsets::{CommitPoint, decode_metadata};
use crate::operator::{Operator, Repartition, Stateless, Windowed};
use crate::pipeline::Shape;
use crate::record::{RawBatch, RawBatchBuilder};
use crate::source::checkpoints::RestoreError;
use crate::source::{PipelineError, Stage};
use crate::task::{DrainRequest, PartitionTask};
use crate::window::NO_TIME;

/// Where a newly assigned partition resumes.
struct Resume {
    /// The committed point.
    point: Option<CommitPoint>,
    /// The checkpoint it names, read back.
    checkpoint: Option<Checkpoint>,
    /// The checkpoint it names is not restored (checkpoints off, or
    /// `state.on_plan_change = "start-afresh"`).
    state_dropped: bool,
    /// Records deleted between it and the log start: (from, to).
    lost: Option<(i64, i64)>,
}

impl SourceContext {
    /// Starts a task per newly assigned partition, resuming from the
    /// committed offset and the event-time state stored with it (or in the
    /// state topic), and sets where the consumer starts reading.
    pub(super) fn assign(&self, consumer: &SourceConsumer, tpl: &mut TopicPartitionList) {
        let partitions = self.partitions_of(tpl);
        let topic = self.shared.env.topic.clone();
        // Without the committed event-time state a restart could emit
        // windows from part of their records: wait for the broker as long
        // as it takes (or until shutdown), and stop rather than guess on
        // an error that waiting does not cure.
        let stopped = || self.shared.stopping();
        let committed = crate::retry::blocking(
            "reading the committed offsets",
            crate::retry::transient,
            stopped,
            |_| self.waiting_for_broker(),
            || consumer.committed_offsets(tpl.clone(), Duration::from_secs(10)),
        );
        let committed = match committed {
            Ok(c) => c,
            Err(e) => {
                if !self.shared.stopping() {
                    self.shared.fail(PipelineError::CommittedOffsets {
                        topic: topic.clone(),
                        partitions: partitions.clone(),
                        cause: e,
                    });
                }
                return;
            }
        };
        let stored = match &self.state {
            Some(state) => {
                let read = crate::retry::blocking(
                    "reading the resume state",
                    crate::source::StateError::transient,
                    stopped,
                    |_| self.waiting_for_broker(),
                    || state.read(&topic, &partitions),
                );
                match read {
                    Ok(points) => points,
                    Err(e) => {
                        if !self.shared.stopping() {
                            self.shared.fail(PipelineError::ResumeState {
                                topic: topic.clone(),
                                partitions: partitions.clone(),
                                state_topic: state.name().to_string(),
                                cause: e,
                            });
                        }
                        return;
                    }
                }
            }
            None => HashMap::new(),
        };
        let mut resumes: HashMap<i32, CommitPoint> = HashMap::new();
        for &p in &partitions {
            let stored = stored.get(&p).copied();
            let from_commit = committed.find_partition(&topic, p).and_then(|e| {
                let Offset::Offset(offset) = e.offset() else {
                    return None;
                };
                match decode_metadata(offset, e.metadata()) {
                    Some(point) => Some(point),
                    None if stored.is_some() => None,
                    None => {
                        tracing::warn!(
                            partition = p,
                            offset,
                            "committed offset carries no streamfold metadata and no resume \
                             state was found; windows that were open before it may be \
                             emitted again with partial contents"
                        );
                        None
                    }
                }
            });
            // Both are sound resume points: take the one further on.
            let resume = match (stored, from_commit) {
                (Some(a), Some(b)) => Some(if b.offset > a.offset { b } else { a }),
                (a, b) => a.or(b),
            };
            if let Some(point) = resume {
                resumes.insert(p, point);
            }
        }
        let Some(mut checkpoints) = self.read_checkpoints(&topic, &partitions, &resumes) else {
            return;
        };
        let lost = self.lost_records(consumer, &topic, &resumes);
        self.connected(true);
        let mut feeds = self.feeds();
        for p in partitions {
            let resume = resumes.get(&p).copied();
            let named = checkpoints.remove(&p);
            let state_dropped = matches!(named, Some(None));
            let checkpoint = named.flatten();
            // Records deleted before they were read: start at the log
            // start, whatever `auto_offset_reset` says. Without a resume
            // point: the committed offset read above (one without
            // streamfold's metadata), else where `auto_offset_reset` says.
            // Every start is set here, so librdkafka reads no committed
            // offset of its own: its read could see a later commit than
            // the resume state was matched with, and its reset after an
            // empty read waited for the fetcher's next round (about
            // 100 ms) before the first fetch.
            let start = match (resume, lost.get(&p)) {
                (_, Some(&(_, low))) => Offset::Offset(low),
                (Some(point), None) => Offset::Offset(point.offset),
                (None, None) => match committed.find_partition(&topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(offset)) => Offset::Offset(offset),
                    _ => match self.shared.offset_reset {
                        OffsetReset::Earliest => Offset::Beginning,
                        OffsetReset::Latest => Offset::End,
                    },
                },
            };
            if let Err(e) = tpl.set_partition_offset(&topic, p, start) {
                tracing::warn!(partition = p, error = %e, "cannot set the start offset");
            }
            tracing::info!(
                partition = p,
                ?resume,
                checkpoint_bytes = checkpoint.as_ref().map(|c| c.state.len()),
                "partition assigned"
            );
            let (tx, rx) = mpsc::channel(self.shared.batch.queue);
            let (drain_tx, drain_rx) = oneshot::channel();
            let plan = Arc::clone(&self.shared.plan);
            let started = match self.shared.stage {
                Stage::Aggregate if matches!(plan.shape, Shape::Stateless(_)) => {
                    let met = resume.map_or(NO_TIME, |r| r.max_event_time);
                    let from = Resume {
                        point: resume,
                        checkpoint: None,
                        state_dropped: false,
                        lost: lost.get(&p).copied(),
                    };
                    self.spawn(p, Stateless::new(plan, met), from, rx, drain_rx)
                }
                Stage::Aggregate => {
                    let met = resume.map_or(NO_TIME, |r| r.max_event_time);
                    let from = Resume {
                        point: resume,
                        checkpoint,
                        state_dropped,
                        lost: lost.get(&p).copied(),
                    };
                    self.spawn(p, Windowed::new(plan, met), from, rx, drain_rx)
                }
                Stage::Repartition => {
                    let from = Resume {
                        point: resume,
                        checkpoint: None,
                        state_dropped: false,
                        lost: lost.get(&p).copied(),
                    };
                    self.spawn(p, Repartition::new(plan), from, rx, drain_rx)
                }
            };
            if !started {
                return;
            }
            if let Some(point) = resume {
                self.shared.env.board.publish(p, point);
                self.shared.env.board.mark_committed(p, point);
            }
            feeds.insert(
                p,
                Feed {
                    tx,
                    drain: Some(drain_tx),
                    batch: RawBatchBuilder::recycling(Arc::clone(&self.recycle)),
                    since: None,
                    waiting: VecDeque::new(),
                    paused: false,
                    paused_since: None,
                    last_schema: None,
                },
            );
        }
        self.shared.env.metrics.assigned(feeds.len());
    }

    /// Starts the task of partition `p`, owned by the pipeline's task
    /// tracker: a task that ends by an error, or panics (a bug in window
    /// or aggregate code), fails the pipeline rather than leave its
    /// partition silently stalled.
    /// Returns `false` when the checkpoint could not be restored (the
    /// pipeline fails).
    fn spawn<O: Operator>(
        &self,
        p: i32,
        operator: O,
        from: Resume,
        rx: mpsc::Receiver<RawBatch>,
        drain: oneshot::Receiver<DrainRequest>,
    ) -> bool {
        let mut task = PartitionTask::new(p, Arc::clone(&self.shared.env), operator, from.point);
        if let Some(c) = &from.checkpoint
            && let Err(source) = task.restore(c)
        {
            self.shared
                .fail(PipelineError::Restore(RestoreError::Unusable {
                    topic: self
                        .checkpoints
                        .as_ref()
                        .map_or_else(String::new, |t| t.name().to_string()),
                    partition: p,
                    seq: c.seq,
                    source,
                }));
            return false;
        }
        // After the restore: what was lost marks what it restored.
        if let Some((lost_from, lost_to)) = from.lost {
            task.records_lost(lost_from, lost_to);
        }
        if from.state_dropped {
            task.state_dropped();
        }
        let shared = Arc::clone(&self.shared);
        let run = async move {
            use futures_util::FutureExt as _;
            let run = std::panic::AssertUnwindSafe(task.run(rx, drain));
            let error = match run.catch_unwind().await {
                Ok(Ok(())) => return,
                Ok(Err(e)) => PipelineError::Partition(e),
                Err(panic) => PipelineError::TaskPanicked {
                    partition: p,
                    message: crate::transform::guard::panic_message(panic.as_ref()),
                },
            };
            shared.fail(error);
        };
        self.shared.tasks.spawn_on(run, &self.runtime);
        true
    }

    /// The partitions whose resume offset lies below their log start
    /// (retention deleted records before they were read): (resume offset,
    /// log start) of each.
    fn lost_records(
        &self,
        consumer: &SourceConsumer,
        topic: &str,
        resumes: &HashMap<i32, CommitPoint>,
    ) -> HashMap<i32, (i64, i64)> {
        let mut lost = HashMap::new();
        for (&p, resume) in resumes {
            match consumer.fetch_watermarks(topic, p, Duration::from_secs(10)) {
                Ok((low, _)) if low > resume.offset => {
                    lost.insert(p, (resume.offset, low));
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    partition = p,
                    error = %e,
                    "cannot read the log start offset; records deleted before they were \
                     read would go unnoticed"
                ),
            }
        }
        lost
    }

    /// The checkpoints `resumes` name, read from the checkpoint topic
    /// (waiting out broker outages): `Some` restored, `None` for a
    /// partition whose checkpoint is not restored (checkpoints off, or
    /// `start-afresh`). `None` when the pipeline failed (a checkpoint that
    /// cannot be restored) or is stopping.
    fn read_checkpoints(
        &self,
        topic: &str,
        partitions: &[i32],
        resumes: &HashMap<i32, CommitPoint>,
    ) -> Option<HashMap<i32, Option<Checkpoint>>> {
        let mut out = HashMap::new();
        if self.shared.stage != Stage::Aggregate {
            return Some(out);
        }
        let Some(ckpt) = &self.checkpoints else {
            // The commit names a checkpoint, but checkpoints are off: the
            // state it holds is not read.
            for (&p, resume) in resumes {
                if let Some(seq) = resume.checkpoint {
                    tracing::warn!(
                        partition = p,
                        offset = resume.offset,
                        seq,
                        "the committed offset names a checkpoint, and state.checkpoints is \
                         false: windows open there are emitted from their records after it, \
                         marked incomplete"
                    );
                    out.insert(p, None);
                }
            }
            return Some(out);
        };
        let read = crate::retry::blocking(
            "reading checkpoints",
            crate::source::StateError::transient,
            || self.shared.stopping(),
            |_| self.waiting_for_broker(),
            || ckpt.read(resumes),
        );
        let found = match read {
            Ok(found) => found,
            Err(e) => {
                if !self.shared.stopping() {
                    self.shared
                        .fail(PipelineError::Restore(RestoreError::Read(e)));
                }
                return None;
            }
        };
        for &p in partitions {
            let Some(resume) = resumes.get(&p) else {
                continue;
            };
            match ckpt.pick(&found, topic, p, resume) {
                Ok(Some(c)) => {
                    out.insert(p, Some(c));
                }
                Ok(None) if resume.checkpoint.is_some() => {
                    out.insert(p, None);
                }
                Ok(None) => {}
                Err(e) => {
                    self.shared.fail(PipelineError::Restore(e));
                    return None;
                }
            }
        }
        Some(out)
    }
}
