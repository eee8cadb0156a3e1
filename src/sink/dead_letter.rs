//! Dead letters: a record that could not be processed, and why; cut to
//! fit what the producer accepts, so that a dead letter is always written.

use rdkafka::message::{Header, OwnedHeaders};

use crate::record::{RawRecord, Stage};

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
    /// `true` when the dead letter holds only the start of the value (or
    /// none of it): the whole record would not fit in one message.
    pub const VALUE_TRUNCATED: &str = "streamfold.value.truncated";
    /// The size of the original value in bytes (on truncated dead letters).
    pub const VALUE_SIZE: &str = "streamfold.value.size";
    /// BLAKE3 hash (hex) of the whole original value (on truncated dead
    /// letters), to find the record in the input topic.
    pub const VALUE_BLAKE3: &str = "streamfold.value.blake3";
    /// `true` when the key was cut as well (a key near the size limit).
    pub const KEY_TRUNCATED: &str = "streamfold.key.truncated";
    /// The size of the original key in bytes (when it was cut).
    pub const KEY_SIZE: &str = "streamfold.key.size";
}

/// Bytes a record takes on the wire beyond its key, value and headers,
/// with a wide margin (librdkafka's own bound for a v2 record is ~40 bytes;
/// a batch header adds 61).
const RECORD_OVERHEAD: usize = 1024;

/// Longest error text written in the `streamfold.error` header.
const MAX_REASON: usize = 8 * 1024;

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
    pub stage: Stage,
    /// Why.
    pub reason: &'a str,
}

/// What a dead letter is written as: key, value and headers within a size.
#[derive(Debug)]
pub struct Fitted<'a> {
    /// The key, or its start.
    pub key: Option<&'a [u8]>,
    /// The value, or its start, or nothing.
    pub value: Option<&'a [u8]>,
    /// Every header, those saying what was cut included.
    pub headers: OwnedHeaders,
    /// Whether the value or key was cut.
    pub truncated: bool,
}

/// The longest prefix of `s` of at most `max` bytes that ends on a
/// character boundary.
fn prefix(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl<'a> DeadLetter<'a> {
    /// The headers describing this dead letter (the reason cut to 8 KiB).
    fn base_headers(&self) -> Vec<(&'static str, String)> {
        let reason = prefix(self.reason, MAX_REASON);
        let mut h = vec![
            (headers::STAGE, self.stage.as_str().to_string()),
            (headers::ERROR, reason.to_string()),
            (headers::PIPELINE, self.pipeline.to_string()),
            (headers::TOPIC, self.topic.to_string()),
            (headers::PARTITION, self.partition.to_string()),
            (headers::OFFSET, self.record.offset.to_string()),
        ];
        if let Some(ts) = self.record.timestamp {
            h.push((headers::TIMESTAMP, ts.to_string()));
        }
        h
    }

    /// The dead letter as one message of at most `max_bytes` (key, value
    /// and headers, with room for the record's framing). What does not fit
    /// is cut: the value first, then the key, and headers say so with the
    /// original sizes and a hash of the whole value. With `max_bytes` 0 it
    /// carries headers only.
    pub fn fit(&self, max_bytes: usize) -> Fitted<'a> {
        let mut h = self.base_headers();
        let key = self.record.key.as_deref();
        let value = self.record.payload.as_deref();
        let (key_len, value_len) = (key.map_or(0, <[u8]>::len), value.map_or(0, <[u8]>::len));
        // Each header costs its name, its value and two length varints.
        let header_bytes: usize = h.iter().map(|(k, v)| k.len() + v.len() + 10).sum();
        // The headers that say what was cut, at their longest.
        const CUT_HEADERS: usize = 256;
        let room = max_bytes.saturating_sub(RECORD_OVERHEAD + header_bytes);
        if max_bytes > 0 && key_len + value_len <= room {
            return Fitted {
                key,
                value,
                headers: to_owned(&h),
                truncated: false,
            };
        }
        let room = room.saturating_sub(CUT_HEADERS);
        // A key takes at most half of the room, so some of the value stays.
        let key_room = if key_len <= room / 2 {
            key_len
        } else {
            room / 2
        };
        let key = key.map(|k| &k[..key_room]);
        if key_room < key_len {
            h.push((headers::KEY_TRUNCATED, "true".into()));
            h.push((headers::KEY_SIZE, key_len.to_string()));
        }
        let value_room = room - key_room;
        let value = value.and_then(|v| {
            if value_room >= v.len() {
                return Some(v);
            }
            h.push((headers::VALUE_TRUNCATED, "true".into()));
            h.push((headers::VALUE_SIZE, v.len().to_string()));
            h.push((headers::VALUE_BLAKE3, blake3::hash(v).to_hex().to_string()));
            (value_room > 0).then(|| &v[..value_room])
        });
        Fitted {
            key,
            value,
            headers: to_owned(&h),
            truncated: true,
        }
    }
}

fn to_owned(h: &[(&str, String)]) -> OwnedHeaders {
    h.iter()
        .fold(OwnedHeaders::new_with_capacity(h.len()), |acc, (key, v)| {
            acc.insert(Header {
                key,
                value: Some(v.as_str()),
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rdkafka::message::Headers;

    fn record(key: usize, value: usize) -> RawRecord {
        RawRecord {
            offset: 7,
            timestamp: Some(1_000),
            key: Some(Bytes::from(vec![b'k'; key])),
            payload: Some(Bytes::from(
                (0..value).map(|i| i as u8).collect::<Vec<u8>>(),
            )),
            schema_header: None,
            window_partition: None,
        }
    }

    fn letter(r: &RawRecord) -> DeadLetter<'_> {
        DeadLetter {
            pipeline: "p",
            topic: "in",
            partition: 3,
            record: r,
            stage: Stage::Decode,
            reason: "not an Avro datum",
        }
    }

    fn header<'a>(f: &'a Fitted<'_>, name: &str) -> Option<&'a str> {
        f.headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| std::str::from_utf8(h.value?).ok())
    }

    fn size(f: &Fitted<'_>) -> usize {
        let headers: usize = f
            .headers
            .iter()
            .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len) + 10)
            .sum();
        f.key.map_or(0, <[u8]>::len) + f.value.map_or(0, <[u8]>::len) + headers
    }

    #[test]
    fn a_record_that_fits_is_written_whole() {
        let r = record(5, 1_000);
        let f = letter(&r).fit(1_000_000);
        assert!(!f.truncated);
        assert_eq!(f.value, r.payload.as_deref());
        assert_eq!(f.key, r.key.as_deref());
        assert_eq!(header(&f, headers::OFFSET), Some("7"));
        assert_eq!(header(&f, headers::VALUE_TRUNCATED), None);
    }

    #[test]
    fn a_value_too_large_is_cut_to_fit_with_its_size_and_hash() {
        let r = record(5, 1_000_000);
        let f = letter(&r).fit(1_000_000);
        assert!(f.truncated);
        assert!(size(&f) + RECORD_OVERHEAD <= 1_000_000, "{}", size(&f));
        let value = f.value.unwrap();
        assert!(value.len() > 990_000, "keeps what fits: {}", value.len());
        assert_eq!(value, &r.payload.as_ref().unwrap()[..value.len()]);
        assert_eq!(f.key, r.key.as_deref());
        assert_eq!(header(&f, headers::VALUE_TRUNCATED), Some("true"));
        assert_eq!(header(&f, headers::VALUE_SIZE), Some("1000000"));
        let hash = blake3::hash(r.payload.as_ref().unwrap()).to_hex();
        assert_eq!(header(&f, headers::VALUE_BLAKE3), Some(hash.as_str()));
        assert_eq!(header(&f, headers::STAGE), Some("decode"));
    }

    #[test]
    fn a_huge_key_is_cut_too_and_headers_only_when_asked() {
        let r = record(2_000_000, 10);
        let f = letter(&r).fit(1_000_000);
        assert!(size(&f) + RECORD_OVERHEAD <= 1_000_000);
        assert_eq!(header(&f, headers::KEY_SIZE), Some("2000000"));
        assert_eq!(
            f.value,
            r.payload.as_deref(),
            "the small value fits beside the cut key"
        );
        assert_eq!(header(&f, headers::VALUE_TRUNCATED), None);

        let r = record(5, 100);
        let f = letter(&r).fit(0);
        assert!(f.truncated && f.value.is_none());
        assert_eq!(header(&f, headers::VALUE_SIZE), Some("100"));
    }

    #[test]
    fn a_long_reason_is_cut_on_a_character_boundary() {
        let r = record(1, 1);
        let reason = "é".repeat(MAX_REASON);
        let d = DeadLetter {
            reason: &reason,
            ..letter(&r)
        };
        let f = d.fit(1_000_000);
        let e = header(&f, headers::ERROR).unwrap();
        assert!(e.len() <= MAX_REASON && e.chars().all(|c| c == 'é'));
    }
}
