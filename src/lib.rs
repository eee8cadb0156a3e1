//! streamfold: partitioned Kafka consumers → rayon batches → windowed
//! aggregates → output topics, with at-least-once offset commits.
//!
//! The modules follow the data path:
//! - [`config`]: the TOML configuration, environment overrides, secrets.
//! - [`record`]: records as read from Kafka and as decoded, their fields.
//! - [`codec`]: Avro schemas, decoding input records, encoding outputs.
//! - [`transform`]: per-record steps run on rayon (built-in and user-defined).
//! - [`window`]: window assignment, watermarks and lateness, open windows.
//! - [`aggregate`]: mergeable partial aggregates.
//! - [`offsets`]: the commit frontier that makes at-least-once precise.
//! - [`pipeline`]: the plan resolved from config, and the batch step on rayon.
//! - [`source`]: the consumer, rebalances, one task per partition.
//! - [`sink`]: the producer for window results and dead letters.
//! - [`retry`]: which Kafka errors pass by themselves, and the backoff
//!   between attempts (used by `source` and `sink`).
//! - [`telemetry`]: tracing and metrics.

pub mod aggregate;
pub mod broker;
pub mod cli;
pub mod codec;
pub mod config;
pub mod generate;
pub mod offsets;
pub mod pipeline;
pub mod record;
pub mod retry;
pub mod sink;
pub mod source;
pub mod telemetry;
pub mod transform;
pub mod window;
