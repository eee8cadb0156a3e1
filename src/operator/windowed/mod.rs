//! The windowed aggregation: its rayon step and its fold on the
//! partition task.

mod fold;
mod per_window;
mod step;

pub use fold::Windowed;
pub use step::{InOrderRecord, Panes, WindowPartial, WindowStep};

#[cfg(test)]
mod tests;
