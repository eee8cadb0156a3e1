//! A record as read from Kafka, before anything is decoded.

use bytes::Bytes;

/// A record as read from Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// Its offset in the partition.
    pub offset: i64,
    /// Kafka timestamp in millis, if the record has one.
    pub timestamp: Option<i64>,
    /// Message key.
    pub key: Option<Bytes>,
    /// Message value.
    pub payload: Option<Bytes>,
    /// The `__value_schema_id` header, read only when the input is
    /// registry-framed (it names the value's writer schema).
    pub schema_header: Option<Bytes>,
    /// The `streamfold.window.partition` header of an upstream pipeline's
    /// window result (the partition it was computed on), read only when
    /// the pipeline reads window results: with key and bounds it is the
    /// result's identity. `Err` holds a header that is not a partition
    /// number: the record is a dead letter that names it.
    pub window_partition: Option<Result<i32, Bytes>>,
}
