//! The benchmark's input: Nexmark bids pre-loaded into a topic, in JSON or
//! Avro, and the producer that writes them.

use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use streamfold::generate::{NEXMARK_BID_SCHEMA, nexmark_bid_json, nexmark_bids};

/// Input encodings of the pre-loaded topics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Encoding {
    Json,
    Avro,
    /// Avro in the Schema Registry's wire format: magic byte 0x00 and
    /// schema id 1 (served by `registry.rs`) in front of each datum.
    AvroFramed,
}

impl Encoding {
    pub(super) fn topic(self) -> &'static str {
        match self {
            Encoding::Json => "bids",
            Encoding::Avro => "bids-avro",
            Encoding::AvroFramed => "bids-avro-framed",
        }
    }

    /// The pipeline's `input_format`.
    pub(super) fn format(self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::Avro | Encoding::AvroFramed => "avro",
        }
    }
}

/// A producer to one topic that waits out a full queue.
pub(super) struct Publisher {
    producer: ThreadedProducer<DefaultProducerContext>,
    topic: String,
}

impl Publisher {
    pub(super) fn new(broker: &str, topic: &str) -> anyhow::Result<Self> {
        Ok(Self {
            producer: ClientConfig::new()
                .set("bootstrap.servers", broker)
                .set("linger.ms", "20")
                .set("batch.num.messages", "10000")
                .set("queue.buffering.max.messages", "1000000")
                .create()?,
            topic: topic.to_string(),
        })
    }

    /// Sends one record (to `partition`, or by its key).
    pub(super) fn send(
        &self,
        partition: Option<i32>,
        key: &str,
        value: &[u8],
    ) -> anyhow::Result<()> {
        loop {
            let mut record = BaseRecord::to(&self.topic).key(key).payload(value);
            if let Some(p) = partition {
                record = record.partition(p);
            }
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((e, _)) if e.to_string().contains("Queue full") => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => bail!("producing to {}: {e}", self.topic),
            }
        }
    }

    /// Waits until every record sent is acknowledged.
    pub(super) fn flush(&self) -> anyhow::Result<()> {
        self.producer.flush(Duration::from_secs(120))?;
        Ok(())
    }
}

/// A bid that closes windows: auction, bidder and price 0, channel
/// `closer`.
pub(super) fn closer() -> anyhow::Result<nexmark::event::Bid> {
    let mut closer = nexmark_bids().next().context("no bid generated")?;
    (closer.auction, closer.bidder, closer.price) = (0, 0, 0);
    closer.channel = "closer".into();
    Ok(closer)
}

/// Publishes `n` Nexmark bids, then two closers per partition, in
/// `encoding`; returns the number of records in the topic.
pub(super) fn preload(
    broker: &str,
    topic: &str,
    n: usize,
    partitions: i32,
    encoding: Encoding,
) -> anyhow::Result<usize> {
    let publisher = Publisher::new(broker, topic)?;
    let schema = apache_avro::Schema::parse_str(NEXMARK_BID_SCHEMA)?;
    let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&schema).build()?;
    let encode = |b: &nexmark::event::Bid, date_time: u64| -> anyhow::Result<Vec<u8>> {
        Ok(match encoding {
            Encoding::Json => nexmark_bid_json(b, date_time).into_bytes(),
            Encoding::Avro | Encoding::AvroFramed => {
                use apache_avro::types::Value;
                let s = |v: &str| Value::String(v.to_string());
                let mut out = Vec::new();
                if encoding == Encoding::AvroFramed {
                    streamfold::codec::frame_id(super::registry::BID_SCHEMA_ID, &mut out);
                }
                out.extend(writer.write_value_to_vec(Value::Record(vec![
                    ("auction".into(), Value::Long(b.auction as i64)),
                    ("bidder".into(), Value::Long(b.bidder as i64)),
                    ("price".into(), Value::Long(b.price as i64)),
                    ("channel".into(), s(&b.channel)),
                    ("url".into(), s(&b.url)),
                    ("date_time".into(), Value::TimestampMillis(date_time as i64)),
                    ("extra".into(), s(&b.extra)),
                ]))?);
                out
            }
        })
    };
    let mut last = 0u64;
    for b in nexmark_bids().take(n) {
        last = last.max(b.date_time);
        publisher.send(None, &b.auction.to_string(), &encode(&b, b.date_time)?)?;
    }
    let closer = closer()?;
    // Ten minutes past the last bid closes every window of the queries
    // (none allows lateness) and stays within the hour ahead of the wall
    // clock that `pipeline.max_event_time_ahead` allows by default (the
    // generator's bids start at the wall clock).
    // A second closer ten minutes later closes the first closers' own
    // windows: their results move a chained query's second stage past
    // every window before them.
    for at in [last + 600_000, last + 1_200_000] {
        for p in 0..partitions {
            publisher.send(Some(p), "closer", &encode(&closer, at)?)?;
        }
    }
    publisher.flush()?;
    Ok(n + 2 * partitions as usize)
}
