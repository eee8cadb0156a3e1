//! Where the resume state of each partition (the event-time bounds that go
//! with its committed offset) is kept: in the offset commit's metadata, or,
//! for brokers that drop commit metadata, in a topic of its own.
//!
//! The state topic holds one record per commit and partition, keyed
//! `<input topic>/<partition>`, value as [`encode_state`], written to
//! partition `partition % partitions` and acknowledged *before* the offset
//! commit. Each record is a sound resume point by itself, so the newest
//! one wins even when the offset commit after it never happened.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

use crate::offsets::{CommitPoint, decode_state, encode_state};
use crate::sink::PolledProducer;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Why the resume state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A call to the broker failed.
    #[error("cannot {what} {topic}: {source}")]
    Kafka {
        what: &'static str,
        topic: String,
        source: KafkaError,
    },
    /// The broker answered, but not within the time allowed.
    #[error("{what} {topic} took longer than {TIMEOUT:?}")]
    Slow { what: &'static str, topic: String },
}

impl StateError {
    /// Whether another attempt may succeed (see [`crate::retry`]).
    pub(crate) fn transient(&self) -> bool {
        match self {
            Self::Kafka { source, .. } => crate::retry::transient(source),
            Self::Slow { .. } => true,
        }
    }
}

/// What the state producer's reports say of the write under way.
#[derive(Default)]
struct Pending {
    /// The write under way (reports of an earlier one, which gave up
    /// waiting, are not counted against it).
    write: usize,
    /// Its records not yet reported.
    left: usize,
    /// Its first failed record.
    failed: Option<KafkaError>,
}

/// The state producer's delivery reports, counted per write.
#[derive(Default)]
pub(crate) struct StateAcks {
    pending: Mutex<Pending>,
    reported: Condvar,
}

impl StateAcks {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ClientContext for StateAcks {}

impl ProducerContext for StateAcks {
    /// The write the record belongs to.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, write: usize) {
        let mut p = self.pending();
        if p.write == write {
            p.left = p.left.saturating_sub(1);
            if let Err((e, _)) = result {
                p.failed.get_or_insert_with(|| e.clone());
            }
        }
        self.reported.notify_all();
    }
}

/// The producer of the state topic.
pub(crate) type StateProducer = PolledProducer<StateAcks>;

/// The state topic of one consumer.
pub(crate) struct StateTopic {
    topic: String,
    partitions: i32,
    producer: StateProducer,
    reader: BaseConsumer,
}

impl StateTopic {
    pub fn new(
        topic: String,
        partitions: i32,
        producer: StateProducer,
        reader: BaseConsumer,
    ) -> Self {
        Self {
            topic,
            partitions: partitions.max(1),
            producer,
            reader,
        }
    }

    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.topic
    }

    /// Writes the points and waits until the broker acknowledged all of
    /// them. Blocks; call from the consumer thread.
    pub fn write(
        &self,
        input_topic: &str,
        points: &[(i32, CommitPoint)],
    ) -> Result<(), StateError> {
        let kafka = |what, source| StateError::Kafka {
            what,
            topic: self.topic.clone(),
            source,
        };
        let acks = self.producer.context();
        let write = {
            let mut p = acks.pending();
            *p = Pending {
                write: p.write.wrapping_add(1),
                ..Pending::default()
            };
            p.write
        };
        for (p, point) in points {
            let key = format!("{input_topic}/{p}");
            let value = encode_state(point);
            let record = BaseRecord::with_opaque_to(&self.topic, write)
                .partition(p % self.partitions)
                .key(&key)
                .payload(&value);
            // Counted before it is sent: its report may come at once.
            acks.pending().left += 1;
            if let Err((e, _)) = self.producer.send(record) {
                acks.pending().left -= 1;
                return Err(kafka("write to", e));
            }
        }
        let (mut p, waited) = acks
            .reported
            .wait_timeout_while(acks.pending(), TIMEOUT, |p| p.left > 0)
            .unwrap_or_else(|e| e.into_inner());
        if let Some(e) = p.failed.take() {
            return Err(kafka("write to", e));
        }
        if waited.timed_out() && p.left > 0 {
            return Err(StateError::Slow {
                what: "acknowledging the state written to",
                topic: self.topic.clone(),
            });
        }
        Ok(())
    }

    /// The newest state of each of `partitions` of `input_topic` that has
    /// one. Blocks.
    pub fn read(
        &self,
        input_topic: &str,
        partitions: &[i32],
    ) -> Result<HashMap<i32, CommitPoint>, StateError> {
        // With one state partition per input partition the newest record
        // is the last one; look further back only for keys not found.
        let mut found = self.scan(input_topic, partitions, 256)?;
        let missing: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|p| !found.contains_key(p))
            .collect();
        if !missing.is_empty() {
            found.extend(self.scan(input_topic, &missing, i64::MAX)?);
        }
        Ok(found)
    }

    /// Reads up to `depth` records back from the end of the state
    /// partitions of `partitions`, keeping the newest state per partition.
    fn scan(
        &self,
        input_topic: &str,
        partitions: &[i32],
        depth: i64,
    ) -> Result<HashMap<i32, CommitPoint>, StateError> {
        let keys: HashMap<Vec<u8>, i32> = partitions
            .iter()
            .map(|&p| (format!("{input_topic}/{p}").into_bytes(), p))
            .collect();
        let own: Vec<i32> = partitions.iter().map(|p| p % self.partitions).collect();
        let mut newest = HashMap::new();
        read_tail(&self.reader, &self.topic, &own, depth, |key, value| {
            if let Some(p) = key.and_then(|k| keys.get(k))
                && let Some(point) = value
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(decode_state)
            {
                newest.insert(*p, point);
            }
        })?;
        Ok(newest)
    }
}

/// Reads partitions `partitions` of `topic` with `reader`, from `depth`
/// records before their end (or their start) to their end, handing each
/// record's key and value to `record` in offset order. Blocks; gives up
/// when no record came for 10 s.
pub(crate) fn read_tail(
    reader: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
    depth: i64,
    mut record: impl FnMut(Option<&[u8]>, Option<&[u8]>),
) -> Result<(), StateError> {
    let kafka = |what, source| StateError::Kafka {
        what,
        topic: topic.to_string(),
        source,
    };
    let mut tpl = TopicPartitionList::new();
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for &sp in partitions {
        if ends.contains_key(&sp) {
            continue;
        }
        let (low, high) = reader
            .fetch_watermarks(topic, sp, TIMEOUT)
            .map_err(|e| kafka("read the offsets of", e))?;
        if high > low {
            let from = high.saturating_sub(depth).max(low);
            tpl.add_partition_offset(topic, sp, Offset::Offset(from))
                .map_err(|e| kafka("set the start offset in", e))?;
            ends.insert(sp, high);
        }
    }
    if ends.is_empty() {
        return Ok(());
    }
    reader
        .assign(&tpl)
        .map_err(|e| kafka("assign the partitions of", e))?;
    let mut deadline = Instant::now() + TIMEOUT;
    while !ends.is_empty() {
        if Instant::now() >= deadline {
            let _ = reader.unassign();
            return Err(StateError::Slow {
                what: "reading",
                topic: topic.to_string(),
            });
        }
        match reader.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                deadline = Instant::now() + TIMEOUT;
                record(m.key(), m.payload());
                if ends
                    .get(&m.partition())
                    .is_some_and(|h| m.offset() >= h - 1)
                {
                    ends.remove(&m.partition());
                }
            }
            // The reader is idle between reads, and librdkafka queues the
            // connection errors it saw meanwhile (an outage leaves many):
            // they say nothing of this read, which the deadline bounds.
            Some(Err(e)) if crate::retry::transient(&e) => {}
            Some(Err(e)) => {
                let _ = reader.unassign();
                return Err(kafka("read", e));
            }
            None => {}
        }
    }
    reader
        .unassign()
        .map_err(|e| kafka("unassign the partitions of", e))
}

/// Whether the broker keeps offset-commit metadata: commits a marker for
/// a probe group of its own (`<group_id>.metadata-probe`, never joined)
/// and reads it back. Blocks.
///
/// # Errors
/// When a call fails with an error that does not pass by itself, or the
/// pipeline stops (`stopped`) while the broker cannot be reached.
pub(crate) fn broker_keeps_metadata(
    consumer: &BaseConsumer,
    topic: &str,
    stopped: impl Fn() -> bool,
) -> Result<bool, KafkaError> {
    let marker = format!("streamfold/probe {}", fastrand::u64(..));
    let mut tpl = TopicPartitionList::new();
    let mut e = tpl.add_partition(topic, 0);
    e.set_offset(Offset::Offset(0))?;
    e.set_metadata(marker.clone());
    let transient = crate::retry::transient;
    crate::retry::blocking(
        "probe commit",
        transient,
        &stopped,
        |_| {},
        || consumer.commit(&tpl, CommitMode::Sync),
    )?;
    let mut ask = TopicPartitionList::new();
    ask.add_partition(topic, 0);
    let got = crate::retry::blocking(
        "reading the probe commit",
        transient,
        &stopped,
        |_| {},
        || consumer.committed_offsets(ask.clone(), TIMEOUT),
    )?;
    Ok(got
        .find_partition(topic, 0)
        .is_some_and(|e| e.metadata() == marker))
}
