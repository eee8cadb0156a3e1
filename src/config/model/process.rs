//! Settings the pipelines of one process share: batching, commits,
//! checkpoints, logs.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::defaults;

/// Batching between the partition tasks and the rayon pool.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// A batch is handed over once it holds this many records.
    #[serde(default = "defaults::batch_max_records")]
    pub max_records: usize,
    /// ... or once its first record has waited this long.
    #[serde(default = "defaults::batch_max_wait", with = "humantime_serde")]
    pub max_wait: Duration,
    /// Batches of one partition on the rayon pool at once.
    #[serde(default = "defaults::batch_max_in_flight")]
    pub max_in_flight: usize,
    /// Batches queued for one partition before it is paused.
    #[serde(default = "defaults::batch_queue")]
    pub queue: usize,
    /// Unacknowledged output records per partition before it stops taking batches.
    #[serde(default = "defaults::max_pending_outputs")]
    pub max_pending_outputs: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_records: defaults::batch_max_records(),
            max_wait: defaults::batch_max_wait(),
            max_in_flight: defaults::batch_max_in_flight(),
            queue: defaults::batch_queue(),
            max_pending_outputs: defaults::max_pending_outputs(),
        }
    }
}

/// Offset commits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CommitConfig {
    /// How often processed offsets are committed.
    #[serde(default = "defaults::commit_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// How long revoked partitions and shutdown may take to drain, and
    /// leaving the group at shutdown (after the drain) may take.
    #[serde(default = "defaults::drain_deadline", with = "humantime_serde")]
    pub drain_deadline: Duration,
    /// Where the per-partition resume state (event-time bounds) is kept.
    #[serde(default)]
    pub resume_state: ResumeState,
    /// The topic of `resume_state = "topic"` (default `<group_id>-resume`).
    #[serde(default)]
    pub state_topic: Option<String>,
}

impl Default for CommitConfig {
    fn default() -> Self {
        Self {
            interval: defaults::commit_interval(),
            drain_deadline: defaults::drain_deadline(),
            resume_state: ResumeState::default(),
            state_topic: None,
        }
    }
}

/// Where the resume state that goes with each committed offset is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResumeState {
    /// Probe at start-up whether the broker keeps offset-commit metadata;
    /// use it if so, the state topic if not.
    #[default]
    Auto,
    /// Offset-commit metadata.
    CommitMetadata,
    /// A topic of its own, one record per commit and partition.
    Topic,
}

/// Checkpoints: each partition's open windows written to a compacted
/// topic, so that the committed offset passes records of windows still
/// open (restarts read one checkpoint interval again, not whole windows).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Keep checkpoints (default `true`); `false` commits no further than
    /// the first record of the oldest open window, as before checkpoints.
    #[serde(default = "defaults::checkpoints")]
    pub checkpoints: bool,
    /// How often each partition's state is checkpointed (and so, at most,
    /// how far behind the log end its committed offset trails).
    #[serde(default = "defaults::checkpoint_interval", with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// The compacted topic of checkpoints (default
    /// `<group_id>-checkpoints`), created if missing.
    #[serde(default)]
    pub checkpoint_topic: Option<String>,
    /// What to do with a checkpoint of other window, group key, event time
    /// or aggregate settings, or of another format.
    #[serde(default)]
    pub on_plan_change: OnPlanChange,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            checkpoints: defaults::checkpoints(),
            checkpoint_interval: defaults::checkpoint_interval(),
            checkpoint_topic: None,
            on_plan_change: OnPlanChange::default(),
        }
    }
}

/// What to do with a checkpoint that does not fit the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnPlanChange {
    /// Stop, naming what changed.
    #[default]
    Refuse,
    /// Drop the checkpoint and start the partition's window state afresh
    /// at the committed offset: windows open then are emitted from their
    /// records after it.
    StartAfresh,
}

/// Log format and level.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `tracing` filter, e.g. `info` or `streamfold=debug`; `RUST_LOG` wins.
    #[serde(default = "defaults::log_level")]
    pub level: String,
    /// `human` or `json`.
    #[serde(default = "defaults::log_format")]
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: defaults::log_level(),
            format: defaults::log_format(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Readable lines for a terminal.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}
