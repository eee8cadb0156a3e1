//! Sink: writing window results and dead letters with one idempotent producer.

mod dead_letter;

pub use dead_letter::{DeadLetter, headers as dead_letter_headers};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::codec::WindowOutput;
use crate::pipeline::RawRecord;

/// Why a record could not be handed to the producer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The producer queue is full: wait for acknowledgements and retry.
    #[error("producer queue is full")]
    QueueFull,
    /// Anything else: the pipeline cannot go on safely.
    #[error("cannot produce to {topic}")]
    Produce {
        topic: String,
        #[source]
        source: KafkaError,
    },
}

/// The producer and the topics it writes.
pub struct Sink {
    producer: FutureProducer,
    output_topic: String,
    dead_letter_topic: String,
    late_topic: Option<String>,
}

impl Sink {
    /// A sink writing to `output_topic`, `dead_letter_topic` and, for
    /// late records, `late_topic` (else the dead-letter topic).
    pub fn new(
        producer: FutureProducer,
        output_topic: &str,
        dead_letter_topic: &str,
        late_topic: Option<&str>,
    ) -> Self {
        Self {
            producer,
            output_topic: output_topic.to_string(),
            dead_letter_topic: dead_letter_topic.to_string(),
            late_topic: late_topic.map(str::to_string),
        }
    }

    /// The underlying producer (for flushing at shutdown).
    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    fn send(
        &self,
        topic: &str,
        record: FutureRecord<'_, [u8], [u8]>,
    ) -> Result<DeliveryFuture, SendError> {
        self.producer.send_result(record).map_err(|(e, _)| match e {
            KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => SendError::QueueFull,
            source => SendError::Produce {
                topic: topic.to_string(),
                source,
            },
        })
    }

    /// Enqueues one window result, keyed by its group key, with the window
    /// bounds in headers.
    ///
    /// # Errors
    /// [`SendError::QueueFull`] to retry later, or a fatal [`SendError`].
    ///
    /// `final_result` is false for an update of a still-open window
    /// (`emit = on-update`): header `streamfold.emit` says `update` then,
    /// `final` otherwise.
    pub fn send_window(
        &self,
        w: &WindowOutput,
        payload: &[u8],
        final_result: bool,
    ) -> Result<DeliveryFuture, SendError> {
        let start = w.start.to_string();
        let end = w.end.to_string();
        let headers = OwnedHeaders::new_with_capacity(3)
            .insert(Header {
                key: "streamfold.window.start",
                value: Some(start.as_str()),
            })
            .insert(Header {
                key: "streamfold.window.end",
                value: Some(end.as_str()),
            })
            .insert(Header {
                key: "streamfold.emit",
                value: Some(if final_result { "final" } else { "update" }),
            });
        let record = FutureRecord::to(&self.output_topic)
            .key(w.key.as_bytes())
            .payload(payload)
            .headers(headers);
        self.send(&self.output_topic, record)
    }

    /// Enqueues a record's original value, with its Kafka timestamp, to
    /// the output topic (a repartitioning pipeline's internal topic) keyed
    /// by `key`; headers say where it came from.
    ///
    /// # Errors
    /// [`SendError::QueueFull`] to retry later, or a fatal [`SendError`].
    pub fn send_forward(
        &self,
        source_partition: i32,
        r: &RawRecord,
        key: &str,
    ) -> Result<DeliveryFuture, SendError> {
        let partition = source_partition.to_string();
        let offset = r.offset.to_string();
        let headers = OwnedHeaders::new_with_capacity(2)
            .insert(Header {
                key: dead_letter::headers::PARTITION,
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: dead_letter::headers::OFFSET,
                value: Some(offset.as_str()),
            });
        let mut record = FutureRecord::to(&self.output_topic)
            .key(key.as_bytes())
            .headers(headers);
        if let Some(p) = &r.payload {
            record = record.payload(p.as_slice());
        }
        if let Some(ts) = r.timestamp {
            record = record.timestamp(ts);
        }
        self.send(&self.output_topic, record)
    }

    /// Enqueues a dead letter: the original key and value, with headers
    /// naming the error and where the record came from. Late records go
    /// to the late topic when there is one.
    ///
    /// # Errors
    /// [`SendError::QueueFull`] to retry later, or a fatal [`SendError`].
    pub fn send_dead_letter(&self, d: &DeadLetter<'_>) -> Result<DeliveryFuture, SendError> {
        let topic = match (&self.late_topic, d.stage) {
            (Some(late), "late") => late,
            _ => &self.dead_letter_topic,
        };
        let mut record = FutureRecord::to(topic).headers(d.headers());
        if let Some(k) = &d.record.key {
            record = record.key(k.as_slice());
        }
        if let Some(p) = &d.record.payload {
            record = record.payload(p.as_slice());
        }
        self.send(topic, record)
    }
}
