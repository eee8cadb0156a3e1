//! What an operator writes: one enum for every kind of output record, so
//! that a sink, the acknowledgements and the metrics match on a type
//! instead of a string.

use super::{Delivery, SendError};
use crate::checkpoint::Chunk;
use crate::codec::WindowOutput;
use crate::record::{RawRecord, Stage};

/// A window result, with its payload encoded in the output format.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedWindow {
    /// The result (key, bounds, values).
    pub window: WindowOutput,
    /// Its value as written to the output topic.
    pub payload: Vec<u8>,
    /// `false` when records of the window may be missing (retention deleted
    /// records before they were read): header `streamfold.complete: false`.
    pub complete: bool,
}

/// One record an operator writes.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// The final result of a window the watermark closed (header
    /// `streamfold.emit: final`).
    Final(EncodedWindow),
    /// The current value of a still-open window (`emit = "on-update"`,
    /// header `streamfold.emit: update`); its final result follows.
    Update(EncodedWindow),
    /// A record that could not be processed, to the dead-letter topic.
    DeadLetter {
        /// The record as read.
        record: RawRecord,
        /// The step it failed at.
        stage: Stage,
        /// Why, for the `streamfold.error` header.
        reason: String,
    },
    /// A record whose window had already been emitted, to the late topic
    /// (`late_records = "side-topic"`) or the dead-letter topic.
    Late {
        /// The record as read.
        record: RawRecord,
        /// Why (the watermark it missed).
        reason: String,
    },
    /// A record's original bytes forwarded to a repartitioning pipeline's
    /// internal topic, keyed by its group key.
    Forward {
        /// The record as read.
        record: RawRecord,
        /// Its group key.
        key: String,
    },
    /// A stateless pipeline's output record, made of the input record at
    /// `offset`.
    Record {
        /// The offset of the input record.
        offset: i64,
        /// Its key (none: no key).
        key: Option<Vec<u8>>,
        /// Its value, encoded in the output format.
        value: Vec<u8>,
        /// Its timestamp: the input record's event time.
        timestamp: Option<i64>,
    },
}

/// Where the records an operator writes came from: what dead letters and
/// forwarded records say in their headers.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// Pipeline name.
    pub pipeline: &'a str,
    /// The topic read.
    pub topic: &'a str,
    /// The partition read.
    pub partition: i32,
}

/// Where an operator's outputs are written: Kafka ([`KafkaSink`]) in a
/// running pipeline, memory ([`MemorySink`]) in tests and for library
/// users who check their transforms without a broker.
///
/// [`KafkaSink`]: super::KafkaSink
/// [`MemorySink`]: super::MemorySink
pub trait Sink: Send + Sync {
    /// Hands `output` (read from `origin`) over to be written; its
    /// delivery report goes to `delivery`. Dead letters are cut to fit the
    /// largest message (headers say so), or with `headers_only` written
    /// without key and value. Returns whether the record was cut.
    ///
    /// # Errors
    /// [`SendError::QueueFull`] to try again once acknowledgements have
    /// come, or a fatal [`SendError`].
    fn write(
        &self,
        origin: &Origin<'_>,
        output: &Output,
        headers_only: bool,
        delivery: Box<Delivery>,
    ) -> Result<bool, SendError>;

    /// Hands one chunk of a checkpoint of `partition` over to be written
    /// to the checkpoint topic.
    ///
    /// # Errors
    /// As [`Sink::write`].
    fn write_checkpoint(
        &self,
        partition: i32,
        chunk: &Chunk,
        delivery: Box<Delivery>,
    ) -> Result<(), SendError>;

    /// Records handed over and not yet reported.
    fn in_flight(&self) -> usize;

    /// The largest record it writes (checkpoints are cut to fit).
    fn max_record_bytes(&self) -> usize {
        usize::MAX
    }
}
