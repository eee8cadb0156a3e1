//! The pipeline: its configuration resolved against the schemas once,
//! before any record is read.

mod plan;
mod reader;

#[cfg(test)]
pub(crate) use plan::clickstream_plan;
pub use plan::{EventTime, Late, Plan};
pub use reader::{ReaderError, latest_reader};
