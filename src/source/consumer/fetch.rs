//! Fetched records taken in batches: each assigned partition's fetch queue
//! is forwarded to one queue of the consumer thread's own, which it reads
//! with `rd_kafka_consume_batch_queue`, a lock and two clock readings per
//! batch instead of per record (rust-rdkafka's `poll` takes one record at
//! a time).
//!
//! The consumer queue keeps everything else (rebalances, errors,
//! statistics) and is still polled for it: a rebalance must reach the
//! application, and a batch read would let librdkafka serve it alone.
//! An event reaching the consumer queue ends the thread's wait on its own
//! queue, so that the thread serves it at once (a group's first
//! assignment had waited out the rest of a 100 ms wait for records).
//! librdkafka keeps the forward through a partition's fetch restarts
//! (`RD_KAFKA_Q_F_FWD_APP`), clears it when the partition is stopped, and
//! waits for every stop before it starts the fetches of a new assignment;
//! so each assignment forwards its partitions before it takes effect.
//!
//! What the thread reads of a record, from either queue, is [`Polled`],
//! with the two headers a record may carry for streamfold.

use std::ffi::CString;
use std::ptr::NonNull;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers as _};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka_sys as rdsys;

use super::SourceConsumer;

/// The consumer thread's queue of fetched records.
pub(crate) struct FetchQueue {
    queue: NonNull<rdsys::rd_kafka_queue_t>,
    /// The consumer queue, whose first event after it was empty wakes a
    /// take waiting on `queue`.
    events: Option<NonNull<rdsys::rd_kafka_queue_t>>,
}

// SAFETY: librdkafka's queues are locked internally; the handle is only
// destroyed in `drop`.
unsafe impl Send for FetchQueue {}
// SAFETY: as for `Send`: every call on the handle is thread-safe.
unsafe impl Sync for FetchQueue {}

impl FetchQueue {
    /// A new, empty queue of `consumer`'s. It must be dropped before the
    /// consumer is.
    pub(crate) fn new(consumer: &SourceConsumer) -> Self {
        let rk = consumer.client().native_ptr();
        // SAFETY: the client pointer is valid while `consumer` lives.
        let queue = NonNull::new(unsafe { rdsys::rd_kafka_queue_new(rk) })
            .expect("librdkafka allocates a queue");
        // SAFETY: a counted reference to the consumer queue (null for a
        // client without a group), released in `drop`.
        let events = NonNull::new(unsafe { rdsys::rd_kafka_queue_get_consumer(rk) });
        if let Some(events) = events {
            // SAFETY: the callback runs on whichever thread enqueues, with
            // the consumer queue locked; it only yields `queue`, which
            // outlives it: `drop` removes the callback (under that lock)
            // before it destroys `queue`.
            unsafe {
                rdsys::rd_kafka_queue_cb_event_enable(
                    events.as_ptr(),
                    Some(wake),
                    queue.as_ptr().cast(),
                );
            }
        }
        Self { queue, events }
    }

    /// Forwards the fetched records of `topic`'s `partitions` here, with
    /// those already fetched. Call it before the assignment that starts
    /// their fetch: a fetch started first sends its records to the
    /// consumer queue until the forward.
    pub(super) fn forward(&self, consumer: &SourceConsumer, topic: &str, partitions: &[i32]) {
        let Ok(name) = CString::new(topic) else {
            return;
        };
        for &p in partitions {
            // SAFETY: valid client and C string; the partition queue handle
            // is a counted reference, released right after the forward.
            unsafe {
                let q = rdsys::rd_kafka_queue_get_partition(
                    consumer.client().native_ptr(),
                    name.as_ptr(),
                    p,
                );
                if q.is_null() {
                    tracing::warn!(partition = p, "no fetch queue for the partition");
                    continue;
                }
                rdsys::rd_kafka_queue_forward(q, self.queue.as_ptr());
                rdsys::rd_kafka_queue_destroy(q);
            }
        }
    }

    /// Whether the consumer queue holds events not yet served. A poll of
    /// it that serves an event (a rebalance, statistics, a log line)
    /// returns no record, as an empty queue does; and the first event
    /// after it was empty is the only one that wakes a take.
    pub(crate) fn events_waiting(&self) -> bool {
        // SAFETY: a handle of ours, valid until `drop`.
        self.events
            .is_some_and(|q| unsafe { rdsys::rd_kafka_queue_length(q.as_ptr()) } > 0)
    }

    /// Takes up to `into`'s capacity of fetched records, waiting up to
    /// `timeout` for the first one.
    pub(crate) fn take(&self, timeout: Duration, into: &mut Fetched) {
        into.clear();
        let cap = into.0.capacity();
        // Rounded up: a wait of under a millisecond rounded down to 0
        // returns at once, and the loop around it would spin until then.
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: librdkafka writes at most `cap` message pointers into
        // the vector's spare capacity and returns how many.
        let n = unsafe {
            rdsys::rd_kafka_consume_batch_queue(
                self.queue.as_ptr(),
                ms,
                into.0.as_mut_ptr().cast(),
                cap,
            )
        };
        if n > 0 {
            // SAFETY: the first `n` slots were written with non-null
            // messages, now owned by `into`.
            unsafe { into.0.set_len(n as usize) };
        }
    }
}

/// The consumer queue's callback: ends a wait on the fetch queue
/// `opaque`, or the next one if none is waiting.
unsafe extern "C" fn wake(_: *mut rdsys::rd_kafka_t, opaque: *mut std::ffi::c_void) {
    // SAFETY: `opaque` is the fetch queue, alive while the callback is set.
    unsafe { rdsys::rd_kafka_queue_yield(opaque.cast()) };
}

impl Drop for FetchQueue {
    fn drop(&mut self) {
        // SAFETY: the handles are ours. The callback is removed under the
        // consumer queue's lock, so none runs once this returns; the fetch
        // queue's records are freed with it.
        unsafe {
            if let Some(events) = self.events {
                rdsys::rd_kafka_queue_cb_event_enable(events.as_ptr(), None, std::ptr::null_mut());
                rdsys::rd_kafka_queue_destroy(events.as_ptr());
            }
            rdsys::rd_kafka_queue_destroy(self.queue.as_ptr());
        }
    }
}

/// Records taken from a [`FetchQueue`], freed when cleared or dropped.
pub(crate) struct Fetched(Vec<NonNull<rdsys::rd_kafka_message_t>>);

impl Fetched {
    /// Room for `n` records per take.
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }

    /// The records, in the order fetched.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Native<'_>> {
        // SAFETY: each pointer is a message owned by `self`.
        self.0.iter().map(|m| Native(unsafe { m.as_ref() }))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn clear(&mut self) {
        for m in self.0.drain(..) {
            // SAFETY: each message is owned here and freed once.
            unsafe { rdsys::rd_kafka_message_destroy(m.as_ptr()) };
        }
    }
}

impl Drop for Fetched {
    fn drop(&mut self) {
        self.clear();
    }
}

/// What the consumer thread reads of a fetched record, whichever queue it
/// came from.
pub(crate) trait Polled {
    /// The record's partition.
    fn partition(&self) -> i32;
    /// The record's offset.
    fn offset(&self) -> i64;
    /// Its Kafka timestamp in millis, if it has one.
    fn timestamp(&self) -> Option<i64>;
    /// Its key.
    fn key(&self) -> Option<&[u8]>;
    /// Its value.
    fn payload(&self) -> Option<&[u8]>;
    /// The first header named `name`: `Some(None)` for one without a
    /// value.
    fn header(&self, name: &str) -> Option<Option<&[u8]>>;
}

impl Polled for BorrowedMessage<'_> {
    fn partition(&self) -> i32 {
        Message::partition(self)
    }

    fn offset(&self) -> i64 {
        Message::offset(self)
    }

    fn timestamp(&self) -> Option<i64> {
        Message::timestamp(self).to_millis()
    }

    fn key(&self) -> Option<&[u8]> {
        Message::key(self)
    }

    fn payload(&self) -> Option<&[u8]> {
        Message::payload(self)
    }

    fn header(&self, name: &str) -> Option<Option<&[u8]>> {
        self.headers()?
            .iter()
            .find(|h| h.key == name)
            .map(|h| h.value)
    }
}

/// A record taken in a batch (or the error librdkafka put in its place).
pub(crate) struct Native<'a>(&'a rdsys::rd_kafka_message_t);

impl Native<'_> {
    /// The consumer error this record stands for, if it is one (an
    /// offset out of range, a partition that went away).
    pub(crate) fn error(&self) -> Option<KafkaError> {
        let err = self.0.err;
        (err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR)
            .then(|| KafkaError::MessageConsumption(RDKafkaErrorCode::from(err)))
    }

    /// The bytes at `ptr`, which point into this message.
    fn bytes(&self, ptr: *const std::ffi::c_void, len: usize) -> Option<&[u8]> {
        // SAFETY: librdkafka's (pointer, length) of a key, value or header
        // value of the message, which lives as long as `self`.
        (!ptr.is_null()).then(|| unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) })
    }
}

impl Polled for Native<'_> {
    fn partition(&self) -> i32 {
        self.0.partition
    }

    fn offset(&self) -> i64 {
        self.0.offset
    }

    fn timestamp(&self) -> Option<i64> {
        let mut kind = rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: a valid message; librdkafka writes the type.
        let ts = unsafe { rdsys::rd_kafka_message_timestamp(self.0, &mut kind) };
        (kind != rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE).then_some(ts)
    }

    fn key(&self) -> Option<&[u8]> {
        self.bytes(self.0.key, self.0.key_len)
    }

    fn payload(&self) -> Option<&[u8]> {
        self.bytes(self.0.payload, self.0.len)
    }

    fn header(&self, name: &str) -> Option<Option<&[u8]>> {
        let mut hdrs = std::ptr::null_mut();
        // SAFETY: a valid message; the headers it gives belong to it.
        let err = unsafe { rdsys::rd_kafka_message_headers(self.0, &mut hdrs) };
        if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || hdrs.is_null() {
            return None;
        }
        for idx in 0.. {
            let (mut key, mut value, mut size) = (std::ptr::null(), std::ptr::null(), 0);
            // SAFETY: valid headers; librdkafka writes the three outputs,
            // pointing into the message.
            let err = unsafe {
                rdsys::rd_kafka_header_get_all(hdrs, idx, &mut key, &mut value, &mut size)
            };
            if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                return None;
            }
            // SAFETY: a header name is a NUL-terminated string.
            if unsafe { std::ffi::CStr::from_ptr(key) }.to_bytes() == name.as_bytes() {
                return Some(self.bytes(value, size));
            }
        }
        None
    }
}

/// The `__value_schema_id` header of `m`, if it has one.
pub(super) fn schema_header(m: &impl Polled) -> Option<bytes::Bytes> {
    m.header(crate::codec::VALUE_SCHEMA_HEADER)?
        .map(bytes::Bytes::copy_from_slice)
}

/// The `streamfold.window.partition` header of `m`, if it has one: the
/// partition number, or the bytes it holds instead of one.
pub(super) fn window_partition(m: &impl Polled) -> Option<Result<i32, bytes::Bytes>> {
    let value = m.header(crate::sink::WINDOW_PARTITION_HEADER)?;
    Some(partition_number(value.unwrap_or_default()))
}

/// The partition number a `streamfold.window.partition` header holds (in
/// decimal, as the sink writes it), or its bytes when it holds none (a
/// header without a value holds none).
fn partition_number(value: &[u8]) -> Result<i32, bytes::Bytes> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|p| *p >= 0)
        .ok_or_else(|| bytes::Bytes::copy_from_slice(value))
}

#[cfg(test)]
mod tests {
    use super::partition_number;

    #[test]
    fn a_window_partition_header_holds_a_decimal_partition_number() {
        assert_eq!(partition_number(b"7"), Ok(7));
        assert_eq!(partition_number(b"0"), Ok(0));
        // Anything else is kept, for the dead letter to name.
        for bad in [&b""[..], b"-1", b"7x", b"\xff", b"99999999999"] {
            assert_eq!(
                partition_number(bad),
                Err(bytes::Bytes::copy_from_slice(bad))
            );
        }
    }
}
