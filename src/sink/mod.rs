//! Sink: writing window results and dead letters with one idempotent producer.

mod dead_letter;

pub use dead_letter::{DeadLetter, Fitted, headers as dead_letter_headers};

use std::sync::{Arc, Mutex};

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use tokio::sync::Notify;

use crate::codec::WindowOutput;
use crate::record::{RawRecord, Stage};

/// Why a record could not be handed to the producer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The producer queue is full: wait for acknowledgements and retry.
    #[error("producer queue is full")]
    QueueFull,
    /// Anything else: the pipeline cannot go on safely.
    #[error("cannot produce to {topic}: {source}")]
    Produce {
        topic: String,
        #[source]
        source: KafkaError,
    },
}

/// What to do about a record the producer reports as not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undelivered {
    /// The broker refused it as too large (its topic's
    /// `max.message.bytes` is below the producer's): a dead letter is
    /// written again with headers only.
    TooLarge,
    /// It may go through on another attempt (see [`crate::retry`]).
    Transient,
    /// Another attempt would fail the same way.
    Fatal,
}

impl Undelivered {
    /// The class of delivery error `e`.
    pub fn of(e: &KafkaError) -> Self {
        match e.rdkafka_error_code() {
            Some(
                RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::MessageBatchTooLarge
                | RDKafkaErrorCode::InvalidMessageSize,
            ) => Self::TooLarge,
            Some(code) if crate::retry::transient_code(code) => Self::Transient,
            _ => Self::Fatal,
        }
    }
}

/// What an acknowledgement releases.
#[derive(Debug, Clone, Copy)]
pub enum Tag {
    /// An update of a still-open window (`emit = on-update`): nothing
    /// depends on it for commits; the final result follows.
    Update(WindowSpan),
    DeadLetter {
        offset: i64,
        stage: Stage,
        /// Which dead letter of the partition task (one offset can be
        /// dead-lettered twice, should the consumer read it again).
        letter: u64,
    },
    /// A record forwarded to the internal topic of a repartitioning
    /// pipeline.
    Forward {
        offset: i64,
    },
    Window(WindowSpan),
}

/// The bounds of a window result.
#[derive(Debug, Clone, Copy)]
pub struct WindowSpan {
    pub start: i64,
    pub end: i64,
}

/// A delivery report: the record's tag, and the error if the record was
/// not delivered.
pub type Report = (Tag, Result<(), KafkaError>);

/// The delivery reports of one partition's records: filled by the
/// producer's polling thread, taken by the partition's task.
#[derive(Debug, Default)]
pub struct Acks {
    reports: Mutex<Vec<Report>>,
    ready: Notify,
}

impl Acks {
    fn reports(&self) -> std::sync::MutexGuard<'_, Vec<Report>> {
        self.reports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn report(&self, report: Report) {
        self.reports().push(report);
        self.ready.notify_one();
    }

    /// Waits for at least one report, then takes every report there is.
    /// Cancel-safe: reports are taken only when it completes.
    pub async fn next(&self) -> Vec<Report> {
        loop {
            {
                let mut reports = self.reports();
                if !reports.is_empty() {
                    return std::mem::take(&mut *reports);
                }
            }
            self.ready.notified().await;
        }
    }

    /// What rides with a record to its delivery report.
    pub fn delivery(self: &Arc<Self>, tag: Tag) -> Box<Delivery> {
        Box::new(Delivery {
            acks: Arc::clone(self),
            tag,
        })
    }
}

/// A record's tag and where its delivery report goes.
#[derive(Debug)]
pub struct Delivery {
    acks: Arc<Acks>,
    tag: Tag,
}

/// Hands each delivery report to the [`Acks`] of the record's partition
/// (one small allocation per record; no future or channel per record).
pub struct SinkContext;

impl ClientContext for SinkContext {}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = Box<Delivery>;

    fn delivery(&self, result: &DeliveryResult<'_>, d: Box<Delivery>) {
        let res = match result {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(e.clone()),
        };
        d.acks.report((d.tag, res));
    }
}

/// The producer of window results, dead letters and forwarded records.
pub type SinkProducer = ThreadedProducer<SinkContext>;

/// The producer and the topics it writes.
pub struct Sink {
    producer: SinkProducer,
    output_topic: String,
    dead_letter_topic: String,
    late_topic: Option<String>,
    /// The producer's `message.max.bytes`: dead letters are cut to fit it.
    max_message_bytes: usize,
}

/// librdkafka's default `message.max.bytes`.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_000_000;

impl Sink {
    /// A sink writing to `output_topic`, `dead_letter_topic` and, for
    /// late records, `late_topic` (else the dead-letter topic).
    /// Dead letters are cut to fit `max_message_bytes`, the producer's
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
        }
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
        delivery: Box<Delivery>,
    ) -> Result<(), SendError> {
        // Formatted on the stack: this runs once per window result.
        let (mut start, mut end) = (itoa::Buffer::new(), itoa::Buffer::new());
        let headers = OwnedHeaders::new_with_capacity(3)
            .insert(Header {
                key: "streamfold.window.start",
                value: Some(start.format(w.start)),
            })
            .insert(Header {
                key: "streamfold.window.end",
                value: Some(end.format(w.end)),
            })
            .insert(Header {
                key: "streamfold.emit",
                value: Some(if final_result { "final" } else { "update" }),
            });
        let record = BaseRecord::with_opaque_to(&self.output_topic, delivery)
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
        delivery: Box<Delivery>,
    ) -> Result<(), SendError> {
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
        let mut record = BaseRecord::with_opaque_to(&self.output_topic, delivery)
            .key(key.as_bytes())
            .headers(headers);
        if let Some(p) = &r.payload {
            record = record.payload(&p[..]);
        }
        if let Some(ts) = r.timestamp {
            record = record.timestamp(ts);
        }
        self.send(&self.output_topic, record)
    }

    /// Enqueues a dead letter: the original key and value, with headers
    /// naming the error and where the record came from, cut to fit the
    /// producer's message size (headers say so); with `headers_only`,
    /// without key or value (for a dead letter the broker refused as too
    /// large). Late records go to the late topic when there is one.
    /// Returns whether the record was cut.
    ///
    /// # Errors
    /// [`SendError::QueueFull`] to retry later, or a fatal [`SendError`].
    pub fn send_dead_letter(
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
