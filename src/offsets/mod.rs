//! Offsets: the per-partition commit frontier and the board the partition
//! tasks publish it on for the consumer to commit.

mod board;
mod frontier;
mod holds;

pub use board::CommitBoard;
pub use frontier::{
    CommitPoint, Frontier, decode_metadata, decode_state, encode_metadata, encode_state,
};
