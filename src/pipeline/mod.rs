//! The pipeline: its configuration resolved against the schemas once,
//! before any record is read.

mod plan;
mod projection;
mod reader;

#[cfg(test)]
pub(crate) use plan::clickstream_plan;
pub use plan::{Dedupe, EventTime, Late, PerWindow, Plan, Shape, Windowing};
pub use projection::{KeySource, Projection, Selected};
pub use reader::{ReaderError, latest_reader};
