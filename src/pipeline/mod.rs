//! The pipeline: its configuration resolved against the schemas once,
//! before any record is read.

mod per_window;
mod plan;
mod projection;
mod reader;

pub use per_window::PerWindow;
#[cfg(test)]
pub(crate) use plan::clickstream_plan;
pub use plan::{Dedupe, EventTime, Late, Plan, Shape, Windowing};
pub use projection::{KeySource, Projection, Selected};
pub use reader::{ReaderError, latest_reader};
