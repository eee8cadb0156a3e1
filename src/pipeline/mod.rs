//! The pipeline: its configuration resolved against the schemas once,
//! before any record is read.

mod plan;

pub use plan::{EventTime, Late, Plan};
