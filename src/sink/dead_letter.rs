//! Dead letters: a record that could not be processed, and why.

use rdkafka::message::{Header, OwnedHeaders};

use crate::pipeline::RawRecord;

/// Header names on dead-letter records.
pub mod headers {
    /// Step that failed: decode, transform, extract or late.
    pub const STAGE: &str = "streamfold.error.stage";
    /// Human-readable reason.
    pub const ERROR: &str = "streamfold.error";
    /// Pipeline name.
    pub const PIPELINE: &str = "streamfold.pipeline";
    /// Topic the record was read from.
    pub const TOPIC: &str = "streamfold.source.topic";
    /// Partition it was read from.
    pub const PARTITION: &str = "streamfold.source.partition";
    /// Its offset.
    pub const OFFSET: &str = "streamfold.source.offset";
    /// Its Kafka timestamp in epoch millis, if it had one.
    pub const TIMESTAMP: &str = "streamfold.source.timestamp";
}

/// A record bound for the dead-letter topic.
#[derive(Debug)]
pub struct DeadLetter<'a> {
    /// Pipeline name.
    pub pipeline: &'a str,
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i32,
    /// The record as read.
    pub record: &'a RawRecord,
    /// Failed step.
    pub stage: &'a str,
    /// Why.
    pub reason: &'a str,
}

impl DeadLetter<'_> {
    /// The headers describing this dead letter.
    pub fn headers(&self) -> OwnedHeaders {
        let partition = self.partition.to_string();
        let offset = self.record.offset.to_string();
        let mut h = OwnedHeaders::new_with_capacity(7);
        for (key, value) in [
            (headers::STAGE, self.stage),
            (headers::ERROR, self.reason),
            (headers::PIPELINE, self.pipeline),
            (headers::TOPIC, self.topic),
            (headers::PARTITION, &partition),
            (headers::OFFSET, &offset),
        ] {
            h = h.insert(Header {
                key,
                value: Some(value),
            });
        }
        if let Some(ts) = self.record.timestamp {
            h = h.insert(Header {
                key: headers::TIMESTAMP,
                value: Some(&ts.to_string()),
            });
        }
        h
    }
}
