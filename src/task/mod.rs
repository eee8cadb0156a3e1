//! The partition driver: one task per assigned partition, running an
//! operator over its records and writing through a sink.

mod checkpoints;
mod env;
mod error;
mod letters;
mod partition;
mod schemas;

pub use env::{CheckpointSettings, Env, SchemaSource};
pub use error::PartitionError;
pub use partition::{DrainRequest, PartitionTask};

#[cfg(test)]
mod tests;
