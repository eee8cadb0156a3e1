//! A record as read from Kafka, before anything is decoded: on its own
//! ([`RawRecord`]), or one of a batch whose records' keys and values
//! share a few large chunks ([`RawBatch`], as the consumer hands them to
//! a partition task).

use std::sync::{Arc, Mutex};

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

/// Where a key or value lies in its batch's buffer: which chunk, and
/// where in it.
#[derive(Debug, Clone, Copy)]
struct Span {
    chunk: u32,
    start: u32,
    end: u32,
}

/// A record of a [`RawBatch`]: a [`RawRecord`] whose key and value are
/// spans of the batch's buffer, and whose headers, which most records do
/// not have, are kept aside (an entry is written for every record: at 64
/// bytes, not 128, it costs half the stores to memory not yet in cache).
#[derive(Debug)]
struct Entry {
    offset: i64,
    timestamp: Option<i64>,
    key: Option<Span>,
    payload: Option<Span>,
    /// Its position in the batch's `headers`, or [`NO_HEADERS`].
    headers: u32,
}

const NO_HEADERS: u32 = u32::MAX;

/// The headers streamfold reads of a record, when it has either.
#[derive(Debug)]
struct Headers {
    schema_header: Option<Bytes>,
    window_partition: Option<Result<i32, Bytes>>,
}

/// Records of one partition, in offset order, whose keys and values share
/// a few large chunks (a batch that outgrows its chunk takes another, and
/// never moves what it holds). Reading a record's bytes takes no
/// reference count: the consumer copies each record once, with no atomic
/// update per record (a reference count per record would be a locked
/// instruction each time a record is copied, and again each time it is
/// dropped). [`RawRef::to_record`] makes a record that shares its chunk,
/// for the records that leave the batch: dead letters and late records,
/// and every record a repartition forwards.
#[derive(Debug, Default)]
pub struct RawBatch {
    chunks: Vec<Bytes>,
    entries: Vec<Entry>,
    headers: Vec<Headers>,
    /// Where its large buffers go back to when it is dropped.
    recycle: Option<Arc<Recycle>>,
}

impl Drop for RawBatch {
    fn drop(&mut self) {
        if let Some(recycle) = self.recycle.take() {
            recycle.give_back(
                std::mem::take(&mut self.chunks),
                std::mem::take(&mut self.entries),
            );
        }
    }
}

/// The large buffers of dropped batches, for the consumer thread's next
/// ones. A fresh buffer of that size is memory the allocator maps anew
/// and the kernel zeroes, a page fault per huge page: up to 4% of the
/// consumer thread's samples in a profile of q7-bid.
#[derive(Debug, Default)]
pub struct Recycle {
    chunks: Mutex<Vec<Vec<u8>>>,
    entries: Mutex<Vec<Vec<Entry>>>,
}

impl Recycle {
    /// Buffers kept of each kind (a chunk is 256 KiB): more than the
    /// batches in flight of a few busy partitions.
    const KEEP: usize = 32;
    /// Lists of records shorter than this go back to the allocator.
    const MIN_ENTRIES: usize = 1024;

    fn chunk(&self) -> Vec<u8> {
        lock(&self.chunks)
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(RawBatchBuilder::MAX_CHUNK))
    }

    fn entries(&self, room: usize) -> Vec<Entry> {
        if room >= Self::MIN_ENTRIES
            && let Some(v) = lock(&self.entries).pop_if(|v| v.capacity() >= room)
        {
            return v;
        }
        Vec::with_capacity(room)
    }

    fn give_back(&self, chunks: Vec<Bytes>, mut entries: Vec<Entry>) {
        let mut kept: Vec<Vec<u8>> = chunks
            .into_iter()
            // A chunk some record still shares (a dead letter's) is not
            // given back.
            .filter_map(|c| c.try_into_mut().ok())
            .filter(|c| c.capacity() == RawBatchBuilder::MAX_CHUNK)
            .map(Vec::from)
            .collect();
        if !kept.is_empty() {
            let mut pool = lock(&self.chunks);
            kept.truncate(Self::KEEP.saturating_sub(pool.len()));
            for mut c in kept {
                c.clear();
                pool.push(c);
            }
        }
        if entries.capacity() >= Self::MIN_ENTRIES {
            entries.clear();
            let mut pool = lock(&self.entries);
            if pool.len() < Self::KEEP {
                pool.push(entries);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RawBatch {
    /// How many records the batch holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The record at `index`.
    ///
    /// # Panics
    /// If `index` is not below [`RawBatch::len`].
    pub fn get(&self, index: usize) -> RawRef<'_> {
        RawRef {
            batch: self,
            entry: &self.entries[index],
        }
    }

    /// The records, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = RawRef<'_>> {
        self.entries
            .iter()
            .map(|entry| RawRef { batch: self, entry })
    }

    fn bytes(&self, s: Span) -> &[u8] {
        &self.chunks[s.chunk as usize][s.start as usize..s.end as usize]
    }

    /// The bytes of `s`, sharing their chunk.
    fn shared(&self, s: Span) -> Bytes {
        self.chunks[s.chunk as usize].slice(s.start as usize..s.end as usize)
    }

    /// The offsets of the first and the last record, unless it is empty.
    pub fn offsets(&self) -> Option<(i64, i64)> {
        Some((self.entries.first()?.offset, self.entries.last()?.offset))
    }
}

impl From<Vec<RawRecord>> for RawBatch {
    fn from(records: Vec<RawRecord>) -> Self {
        let mut builder = RawBatchBuilder::default();
        for r in records {
            builder.push(
                r.offset,
                r.timestamp,
                r.key.as_deref(),
                r.payload.as_deref(),
                r.schema_header,
                r.window_partition,
            );
        }
        builder.finish()
    }
}

/// One record of a [`RawBatch`].
#[derive(Clone, Copy)]
pub struct RawRef<'a> {
    batch: &'a RawBatch,
    entry: &'a Entry,
}

/// Its offset and sizes, not the batch it is in.
impl std::fmt::Debug for RawRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawRef")
            .field("offset", &self.offset())
            .field("timestamp", &self.timestamp())
            .field("key_len", &self.key().map(<[u8]>::len))
            .field("payload_len", &self.payload().map(<[u8]>::len))
            .finish_non_exhaustive()
    }
}

impl<'a> RawRef<'a> {
    /// Its offset in the partition.
    pub fn offset(&self) -> i64 {
        self.entry.offset
    }

    /// Its Kafka timestamp in millis, if it has one.
    pub fn timestamp(&self) -> Option<i64> {
        self.entry.timestamp
    }

    /// Its key.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.entry.key.map(|s| self.batch.bytes(s))
    }

    /// Its value.
    pub fn payload(&self) -> Option<&'a [u8]> {
        self.entry.payload.map(|s| self.batch.bytes(s))
    }

    /// As [`RawRecord::schema_header`].
    pub fn schema_header(&self) -> Option<&'a [u8]> {
        self.headers()?.schema_header.as_deref()
    }

    /// As [`RawRecord::window_partition`].
    pub fn window_partition(&self) -> Option<&'a Result<i32, Bytes>> {
        self.headers()?.window_partition.as_ref()
    }

    fn headers(&self) -> Option<&'a Headers> {
        self.batch.headers.get(self.entry.headers as usize)
    }

    /// The record on its own, sharing the batch's buffer.
    pub fn to_record(&self) -> RawRecord {
        let headers = self.headers();
        RawRecord {
            offset: self.entry.offset,
            timestamp: self.entry.timestamp,
            key: self.entry.key.map(|s| self.batch.shared(s)),
            payload: self.entry.payload.map(|s| self.batch.shared(s)),
            schema_header: headers.and_then(|h| h.schema_header.clone()),
            window_partition: headers.and_then(|h| h.window_partition.clone()),
        }
    }
}

/// A [`RawBatch`] being filled, record by record.
#[derive(Debug, Default)]
pub struct RawBatchBuilder {
    /// Full chunks, and the one being filled.
    chunks: Vec<Vec<u8>>,
    chunk: Vec<u8>,
    /// Bytes copied: the next batch's first chunk is as large, within
    /// `MIN_CHUNK..=MAX_CHUNK`.
    used: usize,
    entries: Vec<Entry>,
    headers: Vec<Headers>,
    recycle: Option<Arc<Recycle>>,
}

impl RawBatchBuilder {
    /// The smallest chunk, and the largest that a batch's size asks for
    /// (a record larger than that has a chunk of its own size).
    const MIN_CHUNK: usize = 4 * 1024;
    const MAX_CHUNK: usize = 256 * 1024;

    /// A builder whose batches take their large buffers from `recycle`,
    /// and give them back when dropped.
    pub fn recycling(recycle: Arc<Recycle>) -> Self {
        Self {
            recycle: Some(recycle),
            ..Self::default()
        }
    }

    /// An empty chunk of `size` bytes: a recycled one if it is the
    /// largest size.
    fn new_chunk(&self, size: usize) -> Vec<u8> {
        match &self.recycle {
            Some(r) if size == Self::MAX_CHUNK => r.chunk(),
            _ => Vec::with_capacity(size),
        }
    }

    /// Appends a record, copying its key and value.
    #[inline]
    pub fn push(
        &mut self,
        offset: i64,
        timestamp: Option<i64>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        schema_header: Option<Bytes>,
        window_partition: Option<Result<i32, Bytes>>,
    ) {
        let key = key.map(|k| self.copy(k));
        let payload = payload.map(|v| self.copy(v));
        let headers = if schema_header.is_some() || window_partition.is_some() {
            self.headers.push(Headers {
                schema_header,
                window_partition,
            });
            (self.headers.len() - 1) as u32
        } else {
            NO_HEADERS
        };
        self.entries.push(Entry {
            offset,
            timestamp,
            key,
            payload,
            headers,
        });
    }

    #[inline(always)]
    fn copy(&mut self, bytes: &[u8]) -> Span {
        if self.chunk.capacity() - self.chunk.len() < bytes.len() {
            // Twice the last chunk: a batch needs few.
            let size = (self.chunk.capacity() * 2).clamp(Self::MIN_CHUNK, Self::MAX_CHUNK);
            let fresh = self.new_chunk(size.max(bytes.len()));
            let full = std::mem::replace(&mut self.chunk, fresh);
            if !full.is_empty() {
                self.chunks.push(full);
            }
        }
        let start = self.chunk.len();
        self.chunk.extend_from_slice(bytes);
        self.used += bytes.len();
        // A chunk holds at most one key or value larger than `MAX_CHUNK`, and
        // Kafka's records are under 2 GiB: the positions fit in `u32`.
        Span {
            chunk: self.chunks.len() as u32,
            start: start as u32,
            end: self.chunk.len() as u32,
        }
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The batch, and a new builder with room for as many records and
    /// bytes: the next batch is as large as a rule, and so needs one
    /// chunk and no growing of its list of records.
    pub fn finish_and_renew(&mut self) -> RawBatch {
        let room = self.entries.len();
        let next = Self {
            chunks: Vec::new(),
            chunk: self.new_chunk(self.used.clamp(Self::MIN_CHUNK, Self::MAX_CHUNK)),
            used: 0,
            entries: match &self.recycle {
                Some(r) => r.entries(room),
                None => Vec::with_capacity(room),
            },
            headers: Vec::new(),
            recycle: self.recycle.clone(),
        };
        std::mem::replace(self, next).finish()
    }

    /// The batch.
    pub fn finish(mut self) -> RawBatch {
        // Pushed even when empty: an empty value may lie in it.
        self.chunks.push(self.chunk);
        RawBatch {
            chunks: self.chunks.into_iter().map(Bytes::from).collect(),
            entries: self.entries,
            headers: self.headers,
            recycle: self.recycle,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: i64, key: Option<&str>, payload: Option<&str>) -> RawRecord {
        RawRecord {
            offset,
            timestamp: Some(offset * 10),
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            payload: payload.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            schema_header: (offset == 1).then(|| Bytes::from_static(b"7")),
            window_partition: (offset == 2).then_some(Err(Bytes::from_static(b"x"))),
        }
    }

    #[test]
    fn a_batch_gives_back_each_record_as_it_was_pushed() {
        let records = vec![
            record(0, Some("k0"), Some("{\"a\":1}")),
            record(1, None, Some("")),
            record(2, Some(""), None),
            record(3, None, None),
        ];
        let batch = RawBatch::from(records.clone());
        assert_eq!(batch.len(), 4);
        assert_eq!(batch.offsets(), Some((0, 3)));
        for (r, want) in batch.iter().zip(&records) {
            assert_eq!(r.key(), want.key.as_deref());
            assert_eq!(r.payload(), want.payload.as_deref());
            assert_eq!(r.window_partition(), want.window_partition.as_ref());
            assert_eq!(r.schema_header(), want.schema_header.as_deref());
            assert_eq!(&r.to_record(), want);
        }
        assert_eq!(RawBatch::default().offsets(), None);
    }

    #[test]
    fn a_recycled_chunk_never_overwrites_a_record_that_left_its_batch() {
        let recycle = Arc::new(Recycle::default());
        let mut builder = RawBatchBuilder::recycling(Arc::clone(&recycle));
        let value = |i: u8| vec![i; 100 * 1024];
        let fill = |builder: &mut RawBatchBuilder, first: u8| {
            for i in first..first + 3 {
                builder.push(i64::from(i), None, None, Some(&value(i)), None, None);
            }
            builder.finish_and_renew()
        };
        // 300 KiB a batch: after the first, each fills one whole chunk
        // (two values) and starts another.
        drop(fill(&mut builder, 0));
        let batch = fill(&mut builder, 3);
        let kept = batch.get(0).to_record();
        drop(batch);
        assert_eq!(
            lock(&recycle.chunks).len(),
            1,
            "of its two chunks, the one no record shares is given back"
        );
        for round in 0..4 {
            let first = 10 + round * 3;
            let batch = fill(&mut builder, first);
            for (i, r) in (first..).zip(batch.iter()) {
                assert_eq!(r.payload(), Some(&value(i)[..]));
            }
        }
        assert_eq!(kept.payload.as_deref(), Some(&value(3)[..]));
    }

    #[test]
    fn a_renewed_builder_starts_empty() {
        let mut builder = RawBatchBuilder::default();
        builder.push(5, None, Some(b"k"), Some(b"v"), None, None);
        let first = builder.finish_and_renew();
        assert!(builder.is_empty());
        builder.push(6, None, None, Some(b"w"), None, None);
        let second = builder.finish_and_renew();
        assert_eq!(first.get(0).payload(), Some(&b"v"[..]));
        assert_eq!(second.get(0).payload(), Some(&b"w"[..]));
        assert_eq!(second.get(0).key(), None);
    }

    #[test]
    fn records_larger_than_a_chunk_and_empty_ones_keep_their_bytes() {
        let mut builder = RawBatchBuilder::default();
        builder.push(0, None, None, Some(b""), None, None);
        let big: Vec<u8> = (0..3 * RawBatchBuilder::MAX_CHUNK)
            .map(|i| i as u8)
            .collect();
        let mut want = Vec::new();
        for i in 1..40 {
            let value = &big[..(i * 7919) % big.len()];
            builder.push(i as i64, None, Some(b"k"), Some(value), None, None);
            want.push(value);
        }
        builder.push(40, None, None, Some(b""), None, None);
        let batch = builder.finish();
        assert_eq!(batch.get(0).payload(), Some(&b""[..]));
        assert_eq!(batch.get(40).payload(), Some(&b""[..]));
        for (i, value) in want.iter().enumerate() {
            let r = batch.get(i + 1);
            assert_eq!(r.payload(), Some(*value));
            assert_eq!(r.key(), Some(&b"k"[..]));
            assert_eq!(r.to_record().payload.as_deref(), Some(*value));
        }
        let only_empty = {
            let mut b = RawBatchBuilder::default();
            b.push(0, None, Some(b""), Some(b""), None, None);
            b.finish()
        };
        assert_eq!(only_empty.get(0).key(), Some(&b""[..]));
    }
}
