//! The pipeline: a plan resolved from configuration, and the batch step
//! that runs it on the rayon pool.

mod batch;
mod plan;

pub use batch::{BatchOutput, Failure, InOrderRecord, WindowPartial, process};
pub use plan::{EventTime, Plan};
