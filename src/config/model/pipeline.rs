//! One pipeline: its topics and formats, transforms, derived fields,
//! filter, group key, event time, and what a stateless pipeline writes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{AggregateConfig, LatePolicy, WindowConfig, defaults};

/// How a topic's values are framed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Framing {
    /// The encoded value alone.
    #[default]
    None,
    /// Confluent's wire format: magic byte and schema id or GUID, or the
    /// id in the `__value_schema_id` header; writer schemas from
    /// `[schema_registry]`.
    SchemaRegistry,
}

/// Wire format of a topic's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Avro binary datum (no container, no registry framing).
    Avro,
    /// One JSON object per record.
    Json,
}

/// One pipeline: input topic → transforms → windowed aggregates (or, with
/// no window, each record's selected fields) → output topic.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Name used in logs and metrics.
    pub name: String,
    /// Another pipeline of the same file whose output this one reads
    /// (`input = { pipeline = "NAME" }`): its output topic, format,
    /// framing and schema are this one's input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<InputConfig>,
    /// Topic to read (with `input`, the upstream pipeline's output topic).
    #[serde(default)]
    pub input_topic: String,
    /// Avro schema of the input records (path relative to the config
    /// file). Absent with registry-framed input: the latest version of
    /// `<input_topic>-value` at start-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<PathBuf>,
    /// Encoding of input values.
    #[serde(default = "defaults::format")]
    pub input_format: Format,
    /// How input values are framed: bare, or in the Schema Registry's
    /// wire format (a schema id or GUID in front, or in a header).
    #[serde(default)]
    pub input_framing: Framing,
    /// How output values are framed: bare, or with the id of the output
    /// schema, registered at start-up (`schema-registry`).
    #[serde(default)]
    pub output_framing: Framing,
    /// Topic the aggregates are written to.
    pub output_topic: String,
    /// Avro schema file for the output records, checked against the schema
    /// derived from the aggregates (`streamfold schema` prints it). Its
    /// record name and namespace are used; optional.
    #[serde(default)]
    pub output_schema: Option<PathBuf>,
    /// Encoding of output values.
    #[serde(default = "defaults::format")]
    pub output_format: Format,
    /// Topic that receives records which could not be processed.
    pub dead_letter_topic: String,
    /// Transforms applied in order, on the rayon pool.
    #[serde(default)]
    pub transforms: Vec<TransformConfig>,
    /// Derived fields (CEL expressions over the record), after `transforms`.
    #[serde(default)]
    pub derive: Vec<DeriveConfig>,
    /// Keep only records for which this CEL expression is true.
    #[serde(default, rename = "where")]
    pub filter: Option<String>,
    /// Field(s) whose values form the group key: a string field, or a
    /// list of them for a composite key (windowed pipelines).
    #[serde(default)]
    pub group_by: GroupBy,
    /// Where event time comes from (default: the Kafka timestamp; for a
    /// pipeline reading a windowed pipeline's results, their
    /// `window_end`). See [`PipelineConfig::event_time`].
    #[serde(
        default,
        rename = "event_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub event_time_config: Option<EventTimeConfig>,
    /// The window every record is assigned to; without one, the pipeline
    /// is stateless: each record's `select`ed fields go to the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowConfig>,
    /// Stateless pipelines: the output fields, in order (default: every
    /// field of the record after transforms and derived fields).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub select: Vec<SelectConfig>,
    /// Stateless pipelines: the output record's key.
    #[serde(default, skip_serializing_if = "OutputKey::is_input")]
    pub output_key: OutputKey,
    /// How far behind the newest event time a record may be and still count.
    #[serde(default, with = "humantime_serde")]
    pub allowed_lateness: Duration,
    /// How far ahead of the wall clock (when the record is processed) an
    /// event time may lie. A record further ahead goes to the dead-letter
    /// topic (stage `extract`) and never moves the watermark: one record
    /// dated years ahead would otherwise close every window and make every
    /// later record late, also after restarts.
    #[serde(default = "defaults::max_event_time_ahead", with = "humantime_serde")]
    pub max_event_time_ahead: Duration,
    /// What happens to a record whose window has already been emitted.
    #[serde(default = "defaults::late_records")]
    pub late_records: LatePolicy,
    /// Topic for late records when `late_records = "side-topic"`.
    #[serde(default)]
    pub late_topic: Option<String>,
    /// After this long without records, a partition's event time advances
    /// with the wall clock so its windows still close (default: never).
    #[serde(default, with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
    /// Re-key records by the group key through an internal topic before
    /// windowing, for inputs not keyed by the group key.
    #[serde(default)]
    pub repartition: bool,
    /// The internal topic of `repartition` (default
    /// `<group_id>-<name>-repartition`); created with the input topic's
    /// partition count when missing.
    #[serde(default)]
    pub repartition_topic: Option<String>,
    /// Aggregates to compute; each adds fields to the output record
    /// (windowed pipelines).
    #[serde(default)]
    pub aggregates: Vec<AggregateConfig>,
    /// Aggregates over each window's results on one partition, written
    /// instead of those results: one record per window and partition
    /// (tumbling and hopping windows, emitted on close). A chained
    /// pipeline grouping by `window_end` merges the partitions' records:
    /// Flink's local-global aggregation, across two pipelines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_window: Vec<AggregateConfig>,
    /// When window results are written.
    #[serde(default)]
    pub emit: EmitConfig,
}

/// Where a chained pipeline's input comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// The upstream pipeline's name.
    pub pipeline: String,
}

impl PipelineConfig {
    /// Where event time comes from: as configured, else the Kafka
    /// timestamp.
    pub fn event_time(&self) -> EventTimeConfig {
        self.event_time_config
            .clone()
            .unwrap_or(EventTimeConfig::KafkaTimestamp)
    }
}

/// Emit mode.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", tag = "mode")]
pub enum EmitConfig {
    /// One final result per window, when it closes.
    #[default]
    OnClose,
    /// Also the current value of open windows as records arrive, at most
    /// once per `min_interval` per window; the final result still follows.
    OnUpdate {
        /// Least time between two updates of one window.
        #[serde(default = "defaults::min_interval", with = "humantime_serde")]
        min_interval: Duration,
    },
}

/// A derived field.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeriveConfig {
    /// Name of the new (or replaced) field.
    pub name: String,
    /// CEL expression computing it.
    pub expr: String,
}

/// One output field of a stateless pipeline: `"field"`, or
/// `{ field = "field", as = "output name" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum SelectConfig {
    /// The field under its own name.
    Field(String),
    /// The field under another name.
    Renamed {
        field: String,
        #[serde(rename = "as")]
        name: String,
    },
}

impl SelectConfig {
    /// The record field it reads.
    pub fn field(&self) -> &str {
        match self {
            Self::Field(f) | Self::Renamed { field: f, .. } => f,
        }
    }

    /// Its name in the output.
    pub fn name(&self) -> &str {
        match self {
            Self::Field(f) => f,
            Self::Renamed { name, .. } => name,
        }
    }
}

/// The key of a stateless pipeline's output records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "OutputKeyForm", into = "OutputKeyForm")]
pub enum OutputKey {
    /// `output_key = "input"`: the input record's key, as it was.
    #[default]
    Input,
    /// `output_key = { field = "bidder" }`: the field's value as text (no
    /// key where it is null).
    Field(String),
}

impl OutputKey {
    /// Whether it is the input record's key (the default).
    pub fn is_input(&self) -> bool {
        *self == Self::Input
    }
}

/// How [`OutputKey`] is written in TOML.
#[derive(Deserialize, Serialize)]
#[serde(untagged)]
enum OutputKeyForm {
    Word(String),
    Field { field: String },
}

impl TryFrom<OutputKeyForm> for OutputKey {
    type Error = String;

    fn try_from(f: OutputKeyForm) -> Result<Self, String> {
        match f {
            OutputKeyForm::Word(w) if w == "input" => Ok(Self::Input),
            OutputKeyForm::Word(w) => Err(format!(
                "expected \"input\" or {{ field = \"...\" }}, found {w:?}"
            )),
            OutputKeyForm::Field { field } => Ok(Self::Field(field)),
        }
    }
}

impl From<OutputKey> for OutputKeyForm {
    fn from(k: OutputKey) -> Self {
        match k {
            OutputKey::Input => Self::Word("input".into()),
            OutputKey::Field(field) => Self::Field { field },
        }
    }
}

/// One group-by field or several.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum GroupBy {
    /// `group_by = "merchant_id"`.
    One(String),
    /// `group_by = ["merchant_id", "country"]`.
    Many(Vec<String>),
}

impl Default for GroupBy {
    /// No group key (a stateless pipeline).
    fn default() -> Self {
        Self::Many(Vec::new())
    }
}

impl GroupBy {
    /// The field names, in order.
    pub fn fields(&self) -> Vec<String> {
        match self {
            Self::One(f) => vec![f.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

/// Event-time source.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", tag = "source")]
pub enum EventTimeConfig {
    /// A `long` / `timestamp-millis` field of the record, in milliseconds.
    Field {
        /// The field name.
        field: String,
    },
    /// The Kafka record timestamp.
    KafkaTimestamp,
    /// The wall clock when the record is processed. Windows then follow
    /// the clock, not the data: replays after a crash see other times.
    ProcessingTime,
}

/// A built-in transform.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", tag = "type")]
pub enum TransformConfig {
    /// Replace a string field with a keyed BLAKE3 hash of it.
    Pseudonymise {
        /// The field to replace.
        field: String,
        /// Environment variable holding the hash key.
        #[serde(default = "defaults::pseudonym_key_env")]
        key_env: String,
    },
    /// Convert an amount in minor units of some currency to the base currency.
    ConvertCurrency {
        /// `long` field with the amount in minor units (cents).
        amount_field: String,
        /// `string` field with the ISO 4217 code.
        currency_field: String,
        /// New field holding the amount in major units of `base_currency`.
        output_field: String,
        /// ISO 4217 code of the base currency.
        base_currency: String,
        /// Units of base currency per major unit of each currency.
        rates: BTreeMap<String, f64>,
        /// Minor-unit digits per currency where not 2 (JPY = 0, BHD = 3).
        #[serde(default)]
        minor_units: BTreeMap<String, u32>,
    },
}
