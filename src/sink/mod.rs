//! Sink: where operators' outputs are written (window results, dead
//! letters, late and forwarded records), and the delivery reports that
//! release what they hold.

mod acks;
mod dead_letter;
mod error;
mod kafka;
mod memory;
mod output;
mod polled;

pub use acks::{Acks, Delivery, Report, Tag, WindowSpan};
pub use dead_letter::{DeadLetter, Fitted, headers as dead_letter_headers};
pub use error::{SendError, Undelivered};
pub use kafka::{
    DEFAULT_MAX_MESSAGE_BYTES, KafkaSink, SinkContext, SinkProducer, WINDOW_PARTITION_HEADER,
};
pub use memory::{MemorySink, Written};
pub use output::{EncodedWindow, Origin, Output, Sink};
pub use polled::PolledProducer;
