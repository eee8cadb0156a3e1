//! Checkpoints: a partition's operator state at an offset, kept in a
//! compacted topic, so that commits, restarts and lag need not wait for
//! the oldest open window. The format is versioned and documented here;
//! the plan it was built for is fingerprinted.

mod chunk;
mod error;
mod fingerprint;
mod format;

pub use chunk::{Assembler, Chunk, scope, split};
pub use error::CheckpointError;
pub use fingerprint::Fingerprint;
pub use format::{Checkpoint, FORMAT_VERSION};
