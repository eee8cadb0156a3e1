//! Reading checkpoints back on assignment: the consumer thread finds, for
//! each newly assigned partition whose committed point names a
//! checkpoint, that checkpoint in the checkpoint topic, and checks that
//! it is the one the commit names, of this pipeline's plan, in a format
//! this build reads.

use std::collections::HashMap;

use rdkafka::consumer::BaseConsumer;

use super::resume::{StateError, read_tail};
use crate::checkpoint::{Assembler, Checkpoint, CheckpointError, Fingerprint};
use crate::config::OnPlanChange;
use crate::offsets::CommitPoint;

/// Records read back from the end of each checkpoint partition first:
/// the newest checkpoints are there (a full read follows only for one not
/// found).
const TAIL: i64 = 4096;

/// The checkpoint topic of one consumer, for reading.
pub(crate) struct CheckpointTopic {
    topic: String,
    partitions: i32,
    reader: BaseConsumer,
    /// This consumer's keys in the topic.
    scope: String,
    plan: Fingerprint,
    on_plan_change: OnPlanChange,
}

/// Why a partition's committed checkpoint cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The checkpoint topic could not be read.
    #[error(transparent)]
    Read(#[from] StateError),
    /// The committed checkpoint is not in the topic.
    #[error(
        "checkpoint {seq} of partition {partition}, which its committed offset {offset} needs, \
         is not in {topic} (was the topic deleted or compacted away?): set \
         state.on_plan_change = \"start-afresh\" to start its window state afresh at that offset"
    )]
    Missing {
        topic: String,
        partition: i32,
        seq: u64,
        offset: i64,
    },
    /// It is there, and cannot be used.
    #[error("checkpoint {seq} of partition {partition} in {topic}: {source}")]
    Unusable {
        topic: String,
        partition: i32,
        seq: u64,
        #[source]
        source: CheckpointError,
    },
}

impl CheckpointTopic {
    pub fn new(
        topic: String,
        partitions: i32,
        reader: BaseConsumer,
        scope: String,
        plan: Fingerprint,
        on_plan_change: OnPlanChange,
    ) -> Self {
        Self {
            topic,
            partitions: partitions.max(1),
            reader,
            scope,
            plan,
            on_plan_change,
        }
    }

    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.topic
    }

    /// Its number of partitions.
    pub fn partitions(&self) -> i32 {
        self.partitions
    }

    /// Reads the checkpoints that `resumes` name (partitions of this
    /// consumer's input topic). Blocks.
    ///
    /// # Errors
    /// When the topic cannot be read.
    pub fn read(&self, resumes: &HashMap<i32, CommitPoint>) -> Result<Assembler, StateError> {
        let wanted: Vec<(i32, u64)> = resumes
            .iter()
            .filter_map(|(p, r)| r.checkpoint.map(|seq| (*p, seq)))
            .collect();
        let mut found = Assembler::new(&self.scope);
        if wanted.is_empty() {
            return Ok(found);
        }
        let own = |ps: &[(i32, u64)]| -> Vec<i32> {
            ps.iter().map(|(p, _)| p % self.partitions).collect()
        };
        read_tail(&self.reader, &self.topic, &own(&wanted), TAIL, |k, v| {
            if let Some(k) = k {
                found.add(k, v);
            }
        })?;
        let missing: Vec<(i32, u64)> = wanted
            .into_iter()
            .filter(|(p, seq)| !found.complete(*p).iter().any(|(s, _)| s == seq))
            .collect();
        if !missing.is_empty() {
            found = Assembler::new(&self.scope);
            read_tail(
                &self.reader,
                &self.topic,
                &own(&missing),
                i64::MAX,
                |k, v| {
                    if let Some(k) = k {
                        found.add(k, v);
                    }
                },
            )?;
        }
        Ok(found)
    }

    /// The checkpoint `resume` (of `input_topic`/`partition`) names, from
    /// what [`CheckpointTopic::read`] found: `Ok(None)` when the point
    /// names none, or names one that cannot be used and the configuration
    /// says to start afresh (logged).
    ///
    /// # Errors
    /// The committed checkpoint is missing or unusable.
    pub fn pick(
        &self,
        found: &Assembler,
        input_topic: &str,
        partition: i32,
        resume: &CommitPoint,
    ) -> Result<Option<Checkpoint>, RestoreError> {
        let Some(seq) = resume.checkpoint else {
            return Ok(None);
        };
        let result = self.checked(found, input_topic, partition, resume, seq);
        match (result, self.on_plan_change) {
            (Ok(c), _) => Ok(Some(c)),
            (Err(e), OnPlanChange::StartAfresh) => {
                tracing::warn!(
                    partition,
                    offset = resume.offset,
                    error = %e,
                    "state.on_plan_change = \"start-afresh\": starting this partition's window \
                     state afresh at its committed offset; windows open there are emitted from \
                     their records after it"
                );
                Ok(None)
            }
            (Err(e), OnPlanChange::Refuse) => Err(e),
        }
    }

    fn checked(
        &self,
        found: &Assembler,
        input_topic: &str,
        partition: i32,
        resume: &CommitPoint,
        seq: u64,
    ) -> Result<Checkpoint, RestoreError> {
        let unusable = |source| RestoreError::Unusable {
            topic: self.topic.clone(),
            partition,
            seq,
            source,
        };
        let Some((_, bytes)) = found
            .complete(partition)
            .into_iter()
            .find(|(s, _)| *s == seq)
        else {
            if let Some(found) = found.foreign_version(partition) {
                return Err(unusable(CheckpointError::Version {
                    found,
                    supported: crate::checkpoint::FORMAT_VERSION,
                }));
            }
            return Err(RestoreError::Missing {
                topic: self.topic.clone(),
                partition,
                seq,
                offset: resume.offset,
            });
        };
        let c = Checkpoint::decode(&bytes).map_err(unusable)?;
        if c.topic != input_topic || c.partition != partition || c.offset != resume.offset {
            return Err(unusable(CheckpointError::Corrupt {
                reason: format!(
                    "it holds {}/{} at offset {}, the commit is of {input_topic}/{partition} at \
                     offset {}",
                    c.topic, c.partition, c.offset, resume.offset
                ),
            }));
        }
        let changes = self.plan.changes_since(&c.plan);
        if !changes.is_empty() {
            return Err(unusable(CheckpointError::PlanChanged { changes }));
        }
        Ok(c)
    }
}
