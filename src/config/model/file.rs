//! The file, and one pipeline's view of it: the pipeline with the settings
//! it shares with the others of its file.

use serde::{Deserialize, Serialize};

use super::{BatchConfig, CommitConfig, KafkaConfig, LogConfig, PipelineConfig, StateConfig};
use crate::config::SchemaRegistryConfig;

/// A configuration file: one `[pipeline]`, or several `[[pipelines]]`
/// sharing the Kafka, batch, commit, state and log settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// How to reach the Kafka cluster.
    pub kafka: KafkaConfig,
    /// The pipeline, when the file has one.
    #[serde(default)]
    pub pipeline: Option<PipelineConfig>,
    /// The pipelines, when the file has several.
    #[serde(default)]
    pub pipelines: Vec<PipelineConfig>,
    /// How records are grouped into batches for the rayon pool.
    #[serde(default)]
    pub batch: BatchConfig,
    /// When offsets are committed and how long a drain may take.
    #[serde(default)]
    pub commit: CommitConfig,
    /// Checkpoints of open windows.
    #[serde(default)]
    pub state: StateConfig,
    /// The Schema Registry of registry-framed input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry: Option<SchemaRegistryConfig>,
    /// Log output.
    #[serde(default)]
    pub log: LogConfig,
}

/// The configuration of one pipeline of a streamfold process.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How to reach the Kafka cluster.
    pub kafka: KafkaConfig,
    /// The pipeline this process runs.
    pub pipeline: PipelineConfig,
    /// How records are grouped into batches for the rayon pool.
    #[serde(default)]
    pub batch: BatchConfig,
    /// When offsets are committed and how long a drain may take.
    #[serde(default)]
    pub commit: CommitConfig,
    /// Checkpoints of open windows.
    #[serde(default)]
    pub state: StateConfig,
    /// The Schema Registry of registry-framed input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry: Option<SchemaRegistryConfig>,
    /// Log output.
    #[serde(default)]
    pub log: LogConfig,
}

impl Config {
    /// The internal topic records are re-keyed through, when the pipeline
    /// repartitions.
    pub fn repartition_topic(&self) -> Option<String> {
        let p = &self.pipeline;
        p.repartition.then(|| {
            p.repartition_topic
                .clone()
                .unwrap_or_else(|| format!("{}-{}-repartition", self.kafka.group_id, p.name))
        })
    }
}
