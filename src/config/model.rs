//! The configuration tree, as written in TOML. Defaults live here, once.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

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
    pub schema_registry: Option<super::SchemaRegistryConfig>,
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
    pub schema_registry: Option<super::SchemaRegistryConfig>,
    /// Log output.
    #[serde(default)]
    pub log: LogConfig,
}

/// Kafka connection settings: typed where they matter, then passthrough.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list (librdkafka `bootstrap.servers`).
    pub bootstrap_servers: String,
    /// Consumer group shared by every replica of this pipeline.
    pub group_id: String,
    /// librdkafka `security.protocol`; implied by `tls` and `sasl` when
    /// not set.
    #[serde(default)]
    pub security_protocol: Option<SecurityProtocol>,
    /// SASL credentials; the password comes from the environment only.
    #[serde(default)]
    pub sasl: Option<SaslConfig>,
    /// TLS to the brokers; implies `security.protocol` `ssl` (`sasl_ssl`
    /// with `sasl`) unless `security_protocol` says otherwise.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Bytes librdkafka may prefetch, all partitions of the consumer
    /// together (`queued.max.messages.kbytes`).
    #[serde(default = "defaults::prefetch")]
    pub prefetch: ByteSize,
    /// Consumer group session timeout (`session.timeout.ms`).
    #[serde(default = "defaults::session_timeout", with = "humantime_serde")]
    pub session_timeout: Duration,
    /// Partition assignment strategy.
    #[serde(default)]
    pub partition_assignment_strategy: AssignmentStrategy,
    /// Where a new group starts reading.
    #[serde(default)]
    pub auto_offset_reset: OffsetReset,
    /// librdkafka properties applied to the consumer and the producer.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties for the consumer only.
    #[serde(default)]
    pub consumer_properties: BTreeMap<String, String>,
    /// librdkafka properties for the producer only.
    #[serde(default)]
    pub producer_properties: BTreeMap<String, String>,
}

/// A choice among librdkafka values, written in the configuration as
/// librdkafka writes it.
macro_rules! librdkafka_choice {
    ($(#[$doc:meta])* $name:ident $(default $default:ident)? { $($(#[$vdoc:meta])* $variant:ident = $text:literal $(| $alias:literal)*),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text $(, alias = $alias)*)] $variant),+
        }

        impl $name {
            /// The librdkafka property value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        $(
            impl Default for $name {
                fn default() -> Self {
                    Self::$default
                }
            }
        )?
    };
}

librdkafka_choice! {
    /// librdkafka `security.protocol`.
    SecurityProtocol {
        /// No TLS, no SASL.
        Plaintext = "plaintext" | "PLAINTEXT",
        /// TLS.
        Ssl = "ssl" | "SSL",
        /// SASL without TLS.
        SaslPlaintext = "sasl_plaintext" | "SASL_PLAINTEXT",
        /// SASL over TLS.
        SaslSsl = "sasl_ssl" | "SASL_SSL",
    }
}

librdkafka_choice! {
    /// librdkafka `partition.assignment.strategy`.
    AssignmentStrategy default Range {
        /// Ranges of partitions per topic (Kafka's default).
        Range = "range",
        /// Partitions dealt round-robin.
        RoundRobin = "roundrobin",
        /// Incremental rebalances: members keep the partitions they keep.
        CooperativeSticky = "cooperative-sticky",
    }
}

librdkafka_choice! {
    /// librdkafka `auto.offset.reset`: where a group without a committed
    /// offset starts.
    OffsetReset default Earliest {
        /// The oldest record.
        Earliest = "earliest",
        /// Only records written from now on.
        Latest = "latest",
    }
}

librdkafka_choice! {
    /// librdkafka `sasl.mechanism`.
    SaslMechanism {
        /// User and password in the clear (use with TLS).
        Plain = "PLAIN",
        /// SCRAM with SHA-256.
        ScramSha256 = "SCRAM-SHA-256",
        /// SCRAM with SHA-512.
        ScramSha512 = "SCRAM-SHA-512",
    }
}

/// SASL authentication. The password is read from `password_env`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    /// The SASL mechanism.
    pub mechanism: SaslMechanism,
    /// SASL user name.
    pub username: String,
    /// Environment variable that holds the password.
    #[serde(default = "defaults::sasl_password_env")]
    pub password_env: String,
}

/// TLS settings. Paths are relative to the config file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA certificates that signed the brokers' (default:
    /// the system's trust store).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for brokers that require mutual TLS.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

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

/// Window kind and size.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", tag = "kind")]
pub enum WindowConfig {
    /// Fixed-size, non-overlapping windows aligned to the epoch.
    Tumbling {
        /// Window length, e.g. `"1m"`.
        #[serde(with = "humantime_serde")]
        size: Duration,
    },
    /// Fixed-size windows starting every `advance` (overlapping when
    /// `advance < size`), aligned to the epoch.
    Hopping {
        /// Window length, e.g. `"10s"`.
        #[serde(with = "humantime_serde")]
        size: Duration,
        /// Distance between window starts, e.g. `"2s"`; at most `size`.
        #[serde(with = "humantime_serde")]
        advance: Duration,
    },
    /// Kafka Streams sliding windows: one window per distinct set of
    /// records of a key whose event times differ by at most `size`.
    Sliding {
        /// Largest difference between event times in one window, e.g. `"10s"`.
        #[serde(with = "humantime_serde")]
        size: Duration,
    },
    /// Per-key sessions that close after `gap` without records.
    Session {
        /// Inactivity gap, e.g. `"30m"`.
        #[serde(with = "humantime_serde")]
        gap: Duration,
    },
}

/// Policy for records that arrive after their window was emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LatePolicy {
    /// Count them and drop them.
    Drop,
    /// Count them and send them to the dead-letter topic.
    DeadLetter,
    /// Count them and send them to `late_topic`.
    SideTopic,
}

/// One aggregate of a pipeline.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    /// Output field name (default: the function name, e.g. `sum`).
    #[serde(default)]
    pub name: Option<String>,
    /// What to compute.
    #[serde(rename = "fn")]
    pub function: AggregateFn,
    /// Input field (every function but `count` needs one).
    #[serde(default)]
    pub field: Option<String>,
    /// `quantiles`: which (default `[0.5, 0.95, 0.99]`).
    #[serde(default)]
    pub quantiles: Option<Vec<f64>>,
    /// `quantiles`: relative error of the sketch (default 0.01).
    #[serde(default)]
    pub relative_error: Option<f64>,
    /// `count-distinct`: HyperLogLog precision, 4 to 18 (default 14).
    #[serde(default)]
    pub precision: Option<u8>,
    /// `count-distinct`: count exactly instead (memory grows with the values).
    #[serde(default)]
    pub exact: Option<bool>,
    /// `top-k`: how many values (default 10).
    #[serde(default)]
    pub k: Option<usize>,
    /// `max-by`, `min-by`: the fields whose values, at the record with the
    /// largest (smallest) `field`, are the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Vec<String>>,
}

/// Aggregate functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AggregateFn {
    /// Number of records.
    Count,
    /// Sum of a numeric field.
    Sum,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Arithmetic mean.
    Mean,
    /// Value of the earliest record by event time.
    First,
    /// Value of the latest record by event time.
    Last,
    /// Number of distinct values (HyperLogLog, or exact).
    CountDistinct,
    /// Quantiles (DDSketch).
    Quantiles,
    /// Most frequent values with counts.
    TopK,
    /// The `value` fields of the record with the largest `field`.
    MaxBy,
    /// The `value` fields of the record with the smallest `field`.
    MinBy,
}

impl AggregateFn {
    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::Sum => "sum",
            Self::Min => "min",
            Self::Max => "max",
            Self::Mean => "mean",
            Self::First => "first",
            Self::Last => "last",
            Self::CountDistinct => "count-distinct",
            Self::Quantiles => "quantiles",
            Self::TopK => "top-k",
            Self::MaxBy => "max-by",
            Self::MinBy => "min-by",
        }
    }
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

/// Every default, in one place.
pub(crate) mod defaults {
    use super::*;

    pub fn prefetch() -> ByteSize {
        ByteSize::mib(8)
    }
    pub fn session_timeout() -> Duration {
        Duration::from_secs(45)
    }
    pub fn sasl_password_env() -> String {
        "STREAMFOLD_SASL_PASSWORD".into()
    }
    pub fn pseudonym_key_env() -> String {
        "STREAMFOLD_PSEUDONYM_KEY".into()
    }
    pub fn format() -> Format {
        Format::Avro
    }
    pub fn max_event_time_ahead() -> Duration {
        Duration::from_secs(3600)
    }
    pub fn checkpoints() -> bool {
        true
    }
    pub fn checkpoint_interval() -> Duration {
        Duration::from_secs(10)
    }
    pub fn late_records() -> LatePolicy {
        LatePolicy::DeadLetter
    }
    pub fn batch_max_records() -> usize {
        1024
    }
    pub fn batch_max_wait() -> Duration {
        Duration::from_millis(50)
    }
    pub fn batch_max_in_flight() -> usize {
        2
    }
    pub fn batch_queue() -> usize {
        2
    }
    pub fn max_pending_outputs() -> usize {
        10_000
    }
    pub fn commit_interval() -> Duration {
        Duration::from_secs(1)
    }
    pub fn drain_deadline() -> Duration {
        Duration::from_secs(10)
    }
    pub fn min_interval() -> Duration {
        Duration::from_secs(1)
    }
    pub fn log_level() -> String {
        "info".into()
    }
    pub fn log_format() -> LogFormat {
        LogFormat::Human
    }
}
