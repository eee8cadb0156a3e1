//! streamfold: partitioned Kafka consumers → rayon batches → windowed
//! aggregates → output topics, with at-least-once offset commits.
//!
//! The modules follow the data path:
//! - [`config`]: the TOML configuration, environment overrides, secrets.
//! - [`record`]: records as read from Kafka and as decoded, their fields.
//! - [`codec`]: Avro schemas, decoding input records, encoding outputs,
//!   the Schema Registry wire format.
//! - [`registry`]: a Schema Registry's REST API (writer schemas by id or
//!   GUID, subjects, registering, compatibility).
//! - [`transform`]: per-record steps run on rayon (built-in and user-defined).
//! - [`window`]: window assignment, watermarks and lateness, open windows.
//! - [`aggregate`]: mergeable partial aggregates.
//! - [`checkpoint`]: a partition's window state at an offset, versioned,
//!   fingerprinted, cut into chunks of a compacted topic.
//! - [`offsets`]: the commit frontier that makes at-least-once precise.
//! - [`pipeline`]: the plan resolved from config, once, before any record.
//! - [`operator`]: what runs on a partition's records (the windowed
//!   aggregation, the repartition forwarder): a step on rayon per batch
//!   and a fold in offset order.
//! - [`sink`]: where outputs go (Kafka, or memory in tests), and the
//!   delivery reports that release what they hold.
//! - [`task`]: the partition driver running an operator: batches,
//!   acknowledgements, the commit frontier, drain, backpressure.
//! - [`source`]: the consumer, rebalances, one task per partition.
//! - [`retry`]: which Kafka errors pass by themselves, and the backoff
//!   between attempts (used by `source` and `sink`).
//! - [`telemetry`]: tracing and metrics.

pub mod aggregate;
pub mod broker;
pub mod checkpoint;
pub mod cli;
pub mod codec;
pub mod config;
pub mod generate;
pub mod offsets;
pub mod operator;
pub mod pipeline;
pub mod record;
pub mod registry;
pub mod retry;
pub mod sink;
pub mod source;
pub mod task;
pub mod telemetry;
pub mod transform;
pub mod window;
