//! streamfold: partitioned Kafka consumers → rayon batches → windowed
//! aggregates → output topics, with at-least-once offset commits.
//!
//! The modules follow the data path:
//! - [`config`]: the TOML configuration, environment overrides, secrets.
//! - [`codec`]: Avro schemas, decoding input records, encoding outputs.
//! - [`transform`]: per-record steps run on rayon (built-in and user-defined).
//! - [`window`]: window assignment, watermarks and lateness, open windows.
//! - [`aggregate`]: mergeable partial aggregates.
//! - [`offsets`]: the commit frontier that makes at-least-once precise.

pub mod aggregate;
pub mod codec;
pub mod config;
pub mod offsets;
pub mod transform;
pub mod window;
