//! The Kafka sink: one idempotent producer writing window results, dead
//! letters and forwarded records, each delivery report sent to the
//! partition task that wrote the record.

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext};

use super::dead_letter::{self, DeadLetter, Fitted};
use super::polled::PolledProducer;
use super::{Delivery, EncodedWindow, Origin, Output, SendError, Sink};
use crate::checkpoint::Chunk;
use crate::record::{RawRecord, Stage};

/// Hands each delivery report to the [`Acks`](super::Acks) of the
/// record's partition (one small allocation per record; no future or
/// channel per record).
pub struct SinkContext;

impl ClientContext for SinkContext {}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = Box<Delivery>;

    fn delivery(&self, result: &DeliveryResult<'_>, d: Box<Delivery>) {
        let res = match result {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(e.clone()),
        };
        (*d).report(res);
    }
}

/// The producer of window results, dead letters and forwarded records.
pub type SinkProducer = PolledProducer<SinkContext>;

/// librdkafka's default `message.max.bytes`.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_000_000;

/// The header of a window result naming the partition (of the pipeline's
/// input, or of its repartition topic) it was computed on. Windows are per
/// partition, so with its key and bounds it names the result: a pipeline
/// reading window results counts each such triple once.
pub const WINDOW_PARTITION_HEADER: &str = "streamfold.window.partition";

/// The producer and the topics it writes.
pub struct KafkaSink {
    producer: SinkProducer,
    output_topic: String,
    dead_letter_topic: String,
    late_topic: Option<String>,
    /// The producer's `message.max.bytes`: dead letters are cut to fit it.
    max_message_bytes: usize,
    /// The checkpoint topic and its number of partitions.
    checkpoints: Option<(String, i32)>,
}

impl KafkaSink {
    /// A sink writing window results and forwarded records to
    /// `output_topic`, dead letters to `dead_letter_topic` and late
    /// records to `late_topic` (else the dead-letter topic). Dead letters
    /// are cut to fit `max_message_bytes`, the producer's
    /// `message.max.bytes`.
    pub fn new(
        producer: SinkProducer,
        output_topic: &str,
        dead_letter_topic: &str,
        late_topic: Option<&str>,
        max_message_bytes: usize,
    ) -> Self {
        Self {
            producer,
            output_topic: output_topic.to_string(),
            dead_letter_topic: dead_letter_topic.to_string(),
            late_topic: late_topic.map(str::to_string),
            max_message_bytes,
            checkpoints: None,
        }
    }

    /// Writes checkpoints to `topic`, which has `partitions` partitions:
    /// those of input partition `p` to partition `p % partitions`.
    pub fn with_checkpoints(mut self, topic: &str, partitions: i32) -> Self {
        self.checkpoints = Some((topic.to_string(), partitions.max(1)));
        self
    }

    /// Reads the metadata of the output and dead-letter topics, so that
    /// the first record written waits neither for it nor for the
    /// producer's id: librdkafka asks for an idempotent producer's id on
    /// each metadata response, and otherwise only on a 500 ms timer that
    /// a producer started before its broker connection is up waits out.
    ///
    /// # Errors
    /// When the metadata cannot be read (writing will say so again).
    pub fn warm_up(&self, timeout: std::time::Duration) -> Result<(), KafkaError> {
        for topic in [&self.output_topic, &self.dead_letter_topic] {
            self.producer
                .client()
                .fetch_metadata(Some(topic), timeout)?;
        }
        Ok(())
    }

    /// The underlying producer (for flushing at shutdown).
    pub fn producer(&self) -> &SinkProducer {
        &self.producer
    }

    fn send(
        &self,
        topic: &str,
        record: BaseRecord<'_, [u8], [u8], Box<Delivery>>,
    ) -> Result<(), SendError> {
        self.producer
            .send(record)
            .map_err(|(e, _)| classify(topic, e))
    }

    /// Enqueues one window result, keyed by its group key, with the window
    /// bounds and the `partition` it was computed on in headers; header
    /// `streamfold.emit` says `final`, or `update` for an update of a
    /// still-open window.
    fn send_window(
        &self,
        w: &EncodedWindow,
        partition: i32,
        final_result: bool,
        delivery: Box<Delivery>,
    ) -> Result<(), SendError> {
        // Formatted on the stack: this runs once per window result.
        let (mut start, mut end) = (itoa::Buffer::new(), itoa::Buffer::new());
        let mut from = itoa::Buffer::new();
        let headers = OwnedHeaders::new_with_capacity(5)
            .insert(Header {
                key: "streamfold.window.start",
                value: Some(start.format(w.window.start)),
            })
            .insert(Header {
                key: "streamfold.window.end",
                value: Some(end.format(w.window.end)),
            })
            .insert(Header {
                key: "streamfold.emit",
                value: Some(if final_result { "final" } else { "update" }),
            })
            .insert(Header {
                key: WINDOW_PARTITION_HEADER,
                value: Some(from.format(partition)),
            });
        let headers = if w.complete {
            headers
        } else {
            headers.insert(Header {
                key: "streamfold.complete",
                value: Some("false"),
            })
        };
        let record = BaseRecord::with_opaque_to(&self.output_topic, delivery)
            .key(w.window.key.as_bytes())
            .payload(&w.payload[..])
            .headers(headers);
        self.send(&self.output_topic, record)
    }

    /// Enqueues a record's original value, with its Kafka timestamp, to
    /// the output topic (a repartitioning pipeline's internal topic) keyed
    /// by `key`; headers say where it came from.
    fn send_forward(
        &self,
        source_partition: i32,
        r: &RawRecord,
        key: &str,
        delivery: Box<Delivery>,
    ) -> Result<(), SendError> {
        let (mut partition, mut offset) = (itoa::Buffer::new(), itoa::Buffer::new());
        let mut window = itoa::Buffer::new();
        let headers = OwnedHeaders::new_with_capacity(3)
            .insert(Header {
                key: dead_letter::headers::PARTITION,
                value: Some(partition.format(source_partition)),
            })
            .insert(Header {
                key: dead_letter::headers::OFFSET,
                value: Some(offset.format(r.offset)),
            });
        // An upstream window result goes on with the partition it was
        // computed on: part of its identity. A header that is not a
        // partition number goes on with the bytes it held (none for a
        // header without a value), for the aggregating stage to
        // dead-letter.
        let headers = match &r.window_partition {
            Some(Ok(p)) => headers.insert(Header {
                key: WINDOW_PARTITION_HEADER,
                value: Some(window.format(*p)),
            }),
            Some(Err(bytes)) => headers.insert(Header {
                key: WINDOW_PARTITION_HEADER,
                value: Some(&bytes[..]),
            }),
            None => headers,
        };
        // A registry-framed value whose schema is named in a header goes
        // on framed in band (the header's bytes are the frame: a magic
        // byte, then the id or GUID), so that the aggregating stage reads
        // no headers.
        let framed: Option<Vec<u8>> = r
            .schema_header
            .as_ref()
            .zip(r.payload.as_ref())
            .map(|(h, p)| [&h[..], &p[..]].concat());
        let mut record = BaseRecord::with_opaque_to(&self.output_topic, delivery)
            .key(key.as_bytes())
            .headers(headers);
        if let Some(p) = framed.as_deref().or(r.payload.as_deref()) {
            record = record.payload(p);
        }
        if let Some(ts) = r.timestamp {
            record = record.timestamp(ts);
        }
        self.send(&self.output_topic, record)
    }

    /// Enqueues a dead letter cut to fit the producer's message size
    /// (headers say so); with `headers_only`, without key or value. Late
    /// records go to the late topic when there is one. Returns whether
    /// the record was cut.
    fn send_dead_letter(
        &self,
        d: &DeadLetter<'_>,
        headers_only: bool,
        delivery: Box<Delivery>,
    ) -> Result<bool, SendError> {
        let topic = match (&self.late_topic, d.stage) {
            (Some(late), Stage::Late) => late,
            _ => &self.dead_letter_topic,
        };
        let limit = if headers_only {
            0
        } else {
            self.max_message_bytes
        };
        let fitted = d.fit(limit);
        let truncated = fitted.truncated;
        match self.producer.send(letter_record(topic, fitted, delivery)) {
            Ok(()) => Ok(truncated),
            // Should librdkafka count more than this estimate does, the
            // headers alone still fit.
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), r))
                if !headers_only =>
            {
                self.send(topic, letter_record(topic, d.fit(0), r.delivery_opaque))
                    .map(|()| true)
            }
            Err((e, _)) => Err(classify(topic, e)),
        }
    }
}

impl Sink for KafkaSink {
    fn write(
        &self,
        origin: &Origin<'_>,
        output: &Output,
        headers_only: bool,
        delivery: Box<Delivery>,
    ) -> Result<bool, SendError> {
        let letter = |record, stage, reason| DeadLetter {
            pipeline: origin.pipeline,
            topic: origin.topic,
            partition: origin.partition,
            record,
            stage,
            reason,
        };
        match output {
            Output::Final(w) => self
                .send_window(w, origin.partition, true, delivery)
                .map(|()| false),
            Output::Update(w) => self
                .send_window(w, origin.partition, false, delivery)
                .map(|()| false),
            Output::Forward { record, key } => self
                .send_forward(origin.partition, record, key, delivery)
                .map(|()| false),
            Output::Record {
                key,
                value,
                timestamp,
                ..
            } => {
                let mut record =
                    BaseRecord::with_opaque_to(&self.output_topic, delivery).payload(&value[..]);
                if let Some(k) = key {
                    record = record.key(&k[..]);
                }
                if let Some(ts) = timestamp {
                    record = record.timestamp(*ts);
                }
                self.send(&self.output_topic, record).map(|()| false)
            }
            Output::DeadLetter {
                record,
                stage,
                reason,
            } => self.send_dead_letter(&letter(record, *stage, reason), headers_only, delivery),
            Output::Late { record, reason } => {
                self.send_dead_letter(&letter(record, Stage::Late, reason), headers_only, delivery)
            }
        }
    }

    fn write_checkpoint(
        &self,
        partition: i32,
        chunk: &Chunk,
        delivery: Box<Delivery>,
    ) -> Result<(), SendError> {
        let Some((topic, partitions)) = &self.checkpoints else {
            return Err(SendError::NoCheckpointTopic);
        };
        let record = BaseRecord::with_opaque_to(topic, delivery)
            .partition(partition % partitions)
            .key(chunk.key.as_bytes())
            .payload(&chunk.value[..]);
        self.send(topic, record)
    }

    fn in_flight(&self) -> usize {
        self.producer.in_flight_count() as usize
    }

    fn max_record_bytes(&self) -> usize {
        self.max_message_bytes
    }
}

/// The message of a fitted dead letter.
fn letter_record<'a>(
    topic: &'a str,
    f: Fitted<'a>,
    delivery: Box<Delivery>,
) -> BaseRecord<'a, [u8], [u8], Box<Delivery>> {
    let mut record = BaseRecord::with_opaque_to(topic, delivery).headers(f.headers);
    if let Some(k) = f.key {
        record = record.key(k);
    }
    if let Some(v) = f.value {
        record = record.payload(v);
    }
    record
}

fn classify(topic: &str, e: KafkaError) -> SendError {
    match e {
        KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => SendError::QueueFull,
        source => SendError::Produce {
            topic: topic.to_string(),
            source,
        },
    }
}
