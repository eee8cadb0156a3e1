//! Decoding input record values (Avro datum or JSON) into [`Record`]s.

use std::sync::Arc;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;

use super::direct::DirectPlan;
use super::framing::{FramingError, SchemaRef, unframe};
use super::json::json_to_value;
use super::schema::RecordSchema;
use super::writers::{Known, Writer, Writers, find};
use crate::config::Format;
use crate::record::Record;

/// Why a record value could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The record has no value (a tombstone).
    #[error("record has no value")]
    Empty,
    /// The bytes are not an Avro datum of the schema.
    #[error("not an Avro datum of schema {schema}: {reason}")]
    Avro { schema: String, reason: String },
    /// Bytes were left over after a complete datum: wrong schema.
    #[error(
        "{extra} bytes left after an Avro datum of schema {schema}: written with another schema?"
    )]
    Trailing { schema: String, extra: usize },
    /// The bytes are not JSON, or not JSON matching the schema.
    #[error("not a JSON object of schema {schema}: {reason}")]
    Json { schema: String, reason: String },
    /// The value did not decode, but it is a magic byte and a 4-byte
    /// schema id in front of a value that does: a Schema Registry frame.
    #[error(
        "{inner}; the value starts with byte {magic:#04x} and schema id {id}, and what follows \
         decodes: it looks like Schema Registry framing, which this pipeline is not configured for"
    )]
    Framed {
        /// Why it did not decode as configured.
        inner: Box<DecodeError>,
        /// Its first byte (0x00 for Confluent's wire format).
        magic: u8,
        /// The big-endian integer after it.
        id: u32,
    },
    /// A registry-framed input's record without a frame.
    #[error(transparent)]
    Framing(#[from] FramingError),
    /// Its writer schema cannot be used (not in the registry, not
    /// readable with the input schema, of another kind).
    #[error("{reason}")]
    Writer { schema: SchemaRef, reason: String },
    /// Its writer schema was never looked up: a bug of the caller, which
    /// must learn every schema a batch names first.
    #[error("{schema} was not looked up in the registry before decoding")]
    NotLookedUp { schema: SchemaRef },
}

/// Turns input bytes into records of one schema.
#[derive(Debug, Clone)]
pub struct Decoder {
    schema: RecordSchema,
    format: Format,
    name: String,
    /// The direct path, for schemas of plain fields.
    direct: Option<DirectPlan>,
    /// Which fields the pipeline reads, by position (empty: all).
    read: Vec<bool>,
    /// For registry-framed input: the writer schemas records name.
    writers: Option<Arc<Writers>>,
}

impl Decoder {
    /// A decoder for `schema` in `format`.
    pub fn new(schema: RecordSchema, format: Format) -> Self {
        let name = schema.path.display().to_string();
        let direct = DirectPlan::new(&schema.schema);
        Self {
            schema,
            format,
            name,
            direct,
            read: Vec::new(),
            writers: None,
        }
    }

    /// A decoder of values in the Schema Registry's wire format (see
    /// `codec/framing.rs`), each read with the writer schema it names,
    /// resolved against this decoder's schema.
    #[must_use]
    pub fn registry_framed(mut self) -> Self {
        self.writers = Some(Arc::new(Writers::new(
            &self.schema.schema,
            self.format,
            &self.read,
        )));
        self
    }

    /// The writer schemas of registry-framed input (`None` for bare
    /// values).
    pub fn writers(&self) -> Option<&Arc<Writers>> {
        self.writers.as_ref()
    }

    /// Leaves unread (`Null`) the string fields whose `read` entry is
    /// false, by schema position; every field is still checked.
    #[must_use]
    /// Call it before [`Self::registry_framed`], whose writer schemas'
    /// plans read the same fields.
    pub fn reading_only(mut self, read: &[bool]) -> Self {
        debug_assert!(
            self.writers.is_none(),
            "reading_only goes before registry_framed"
        );
        self.direct = self.direct.map(|d| d.reading_only(read));
        self.read = read.to_vec();
        self
    }

    /// Records decoded on the direct path have room for `fields` values,
    /// so that the fields the transforms add (`derive`) do not move them.
    #[must_use]
    pub fn with_room_for(mut self, fields: usize) -> Self {
        self.direct = self.direct.map(|d| d.with_room_for(fields));
        self
    }

    /// The schema records are decoded with.
    pub fn schema(&self) -> &RecordSchema {
        &self.schema
    }

    /// Prepares a decoder for one batch (resolving the schema once per batch).
    ///
    /// # Errors
    /// Only if the schema cannot be resolved, which `load` already ruled out.
    pub fn batch(&self) -> Result<BatchDecoder<'_>, DecodeError> {
        let avro = match self.format {
            Format::Avro => Some(
                GenericDatumReader::builder(&self.schema.schema)
                    .build()
                    .map_err(|e| self.avro_err(&e))?,
            ),
            Format::Json => None,
        };
        Ok(BatchDecoder {
            decoder: self,
            avro,
            known: self.writers.as_ref().map(|w| w.known()),
        })
    }

    fn avro_err(&self, e: &apache_avro::Error) -> DecodeError {
        DecodeError::Avro {
            schema: self.name.clone(),
            reason: e.to_string(),
        }
    }
}

/// A [`Decoder`] ready for the records of one batch.
pub struct BatchDecoder<'a> {
    decoder: &'a Decoder,
    avro: Option<GenericDatumReader<'a>>,
    /// For registry-framed input: the writer schemas known when the batch
    /// began (the partition task learnt every one it names before).
    known: Option<Known>,
}

impl BatchDecoder<'_> {
    /// Decodes a record's value, unframing it first when the input is
    /// registry-framed (`schema_header` is the record's
    /// `__value_schema_id` header, if it has one).
    ///
    /// # Errors
    /// A [`DecodeError`] saying what is wrong with the bytes.
    pub fn decode_record(
        &self,
        payload: Option<&[u8]>,
        schema_header: Option<&[u8]>,
    ) -> Result<Record, DecodeError> {
        let mut record = Record { values: Vec::new() };
        self.decode_record_into(payload, schema_header, &mut record)
            .map(|()| record)
    }

    /// [`Self::decode_record`] into `record` (the batch's last record, or
    /// empty): a string field is decoded into the allocation of the string
    /// it held, so that a batch allocates no strings after its first
    /// record. Holds the record where it returns `Ok`; anything where it
    /// fails.
    ///
    /// # Errors
    /// As [`Self::decode_record`].
    pub fn decode_record_into(
        &self,
        payload: Option<&[u8]>,
        schema_header: Option<&[u8]>,
        record: &mut Record,
    ) -> Result<(), DecodeError> {
        let (Some(writers), Some(known)) = (&self.decoder.writers, &self.known) else {
            let bytes = payload.ok_or(DecodeError::Empty)?;
            return self
                .decode_bytes_into(bytes, record)
                .map_err(|e| self.with_framing_hint(e, bytes));
        };
        let bytes = payload.ok_or(DecodeError::Empty)?;
        let (schema, body) = unframe(bytes, schema_header)?;
        let writer = find(known, &schema).ok_or(DecodeError::NotLookedUp { schema })?;
        match &**writer {
            Writer::Same | Writer::Json => self.decode_bytes_into(body, record),
            Writer::Resolved { plan, schema: w } => {
                if let Some(Ok(values)) = plan.as_ref().map(|p| p.avro(body)) {
                    record.values = values;
                    return Ok(());
                }
                *record = self.decode_resolved(w, writers, schema, body)?;
                Ok(())
            }
            Writer::Unusable(reason) => Err(DecodeError::Writer {
                schema,
                reason: reason.clone(),
            }),
        }
    }

    /// An Avro datum of writer schema `w`, resolved against the reader
    /// schema.
    fn decode_resolved(
        &self,
        w: &apache_avro::Schema,
        writers: &Writers,
        schema: SchemaRef,
        body: &[u8],
    ) -> Result<Record, DecodeError> {
        let err = |reason: String| DecodeError::Avro {
            schema: format!("{schema} (read as {})", self.decoder.name),
            reason,
        };
        let reader = GenericDatumReader::builder(w)
            .reader_schema(writers.reader())
            .build()
            .map_err(|e| err(e.to_string()))?;
        let mut rest = body;
        let value = reader
            .read_value(&mut rest)
            .map_err(|e| err(e.to_string()))?;
        if !rest.is_empty() {
            return Err(DecodeError::Trailing {
                schema: schema.to_string(),
                extra: rest.len(),
            });
        }
        match value {
            Value::Record(fields) => Ok(Record {
                values: fields.into_iter().map(|(_, v)| v).collect(),
            }),
            other => Err(err(format!("decoded to {other:?}, not a record"))),
        }
    }

    /// Decodes one record value.
    ///
    /// # Errors
    /// A [`DecodeError`] saying what is wrong with the bytes.
    pub fn decode(&self, payload: Option<&[u8]>) -> Result<Record, DecodeError> {
        let bytes = payload.ok_or(DecodeError::Empty)?;
        self.decode_bytes(bytes)
            .map_err(|e| self.with_framing_hint(e, bytes))
    }

    /// `e`, with a hint when `bytes` are a Schema Registry frame (a magic
    /// byte 0x00 or 0x01, a 4-byte schema id) around a value that decodes:
    /// the usual reason a producer's records do not decode. Checked on
    /// failures only.
    fn with_framing_hint(&self, e: DecodeError, bytes: &[u8]) -> DecodeError {
        match bytes {
            [magic @ (0 | 1), a, b, c, d, rest @ ..]
                if !rest.is_empty() && self.decode_bytes(rest).is_ok() =>
            {
                DecodeError::Framed {
                    inner: Box::new(e),
                    magic: *magic,
                    id: u32::from_be_bytes([*a, *b, *c, *d]),
                }
            }
            _ => e,
        }
    }

    fn decode_bytes(&self, bytes: &[u8]) -> Result<Record, DecodeError> {
        let mut record = Record { values: Vec::new() };
        self.decode_bytes_into(bytes, &mut record).map(|()| record)
    }

    fn decode_bytes_into(&self, bytes: &[u8], record: &mut Record) -> Result<(), DecodeError> {
        let d = self.decoder;
        if let Some(plan) = &d.direct {
            let direct = match d.format {
                Format::Avro => plan.avro_into(bytes, &mut record.values),
                Format::Json => plan.json_into(bytes, &mut record.values),
            };
            if direct.is_ok() {
                return Ok(());
            }
        }
        // The generic path: the schema or the record is not one the direct
        // path takes, or the bytes are bad and this says how.
        let value = match &self.avro {
            Some(reader) => {
                let mut rest = bytes;
                let v = reader.read_value(&mut rest).map_err(|e| d.avro_err(&e))?;
                if !rest.is_empty() {
                    return Err(DecodeError::Trailing {
                        schema: d.name.clone(),
                        extra: rest.len(),
                    });
                }
                v
            }
            None => json_to_value(bytes, &d.schema).map_err(|reason| DecodeError::Json {
                schema: d.name.clone(),
                reason,
            })?,
        };
        match value {
            Value::Record(fields) => {
                record.values = fields.into_iter().map(|(_, v)| v).collect();
                Ok(())
            }
            other => Err(DecodeError::Avro {
                schema: d.name.clone(),
                reason: format!("decoded to {other:?}, not a record"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const SCHEMA: &str = r#"{"type":"record","name":"T","fields":[
        {"name":"k","type":"string"},{"name":"n","type":"long"}]}"#;

    fn decoder(format: Format) -> Decoder {
        Decoder::new(
            RecordSchema::parse(Path::new("t.avsc"), SCHEMA).unwrap(),
            format,
        )
    }

    #[test]
    fn avro_round_trip_and_garbage_is_an_error() {
        let d = decoder(Format::Avro);
        let v = Value::Record(vec![
            ("k".into(), Value::String("a".into())),
            ("n".into(), Value::Long(42)),
        ]);
        let bytes = apache_avro::writer::datum::GenericDatumWriter::builder(&d.schema().schema)
            .build()
            .unwrap()
            .write_value_to_vec(v)
            .unwrap();
        let b = d.batch().unwrap();
        let r = b.decode(Some(&bytes)).unwrap();
        assert_eq!(r.str(0).unwrap(), "a");
        assert_eq!(r.i64(1).unwrap(), 42);

        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            b.decode(Some(&longer)),
            Err(DecodeError::Trailing { extra: 1, .. })
        ));
        assert!(matches!(
            b.decode(Some(&[0xff])),
            Err(DecodeError::Avro { .. })
        ));
        assert!(matches!(b.decode(None), Err(DecodeError::Empty)));
    }

    #[test]
    fn json_is_resolved_against_the_schema() {
        let d = decoder(Format::Json);
        let b = d.batch().unwrap();
        let r = b.decode(Some(br#"{"k":"x","n":5}"#)).unwrap();
        assert_eq!(r.i64(1).unwrap(), 5);
        let e = b.decode(Some(br#"{"k":"x"}"#)).unwrap_err();
        assert!(e.to_string().contains("t.avsc"), "{e}");
    }

    #[test]
    fn registry_framed_json_reads_like_plain_json_and_avro_writers_are_refused() {
        use crate::codec::{SchemaKind, frame_id};
        let d = decoder(Format::Json).registry_framed();
        let writers = d.writers().unwrap();
        writers.learn(
            SchemaRef::Id(5),
            Ok((SchemaKind::Json, r#"{"type":"object"}"#.into())),
        );
        writers.learn(SchemaRef::Id(6), Ok((SchemaKind::Avro, SCHEMA.into())));
        let record = |id: u32, body: &[u8]| {
            let mut value = Vec::new();
            frame_id(id, &mut value);
            value.extend_from_slice(body);
            value
        };
        let b = d.batch().unwrap();
        let r = b
            .decode_record(Some(&record(5, br#"{"k":"x","n":5}"#)), None)
            .unwrap();
        assert_eq!(r.i64(1).unwrap(), 5);
        let e = b
            .decode_record(Some(&record(6, br#"{"k":"x","n":5}"#)), None)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("schema id 6 is registered as AVRO, and pipeline.input_format is json"),
            "{e}"
        );
        let e = b.decode_record(Some(&record(7, b"{}")), None).unwrap_err();
        assert!(matches!(e, DecodeError::NotLookedUp { .. }), "{e}");
    }

    #[test]
    fn a_schema_registry_frame_that_does_not_decode_says_so() {
        let d = decoder(Format::Avro);
        let b = d.batch().unwrap();
        // Confluent's wire format: 0x00, schema id 42 (big-endian), datum.
        let framed = [0, 0, 0, 0, 42, 2, b'a', 84];
        let e = b.decode(Some(&framed)).unwrap_err().to_string();
        assert!(
            e.contains("starts with byte 0x00 and schema id 42")
                && e.contains("looks like Schema Registry framing")
                && e.contains("t.avsc"),
            "{e}"
        );
        // No hint on values that do not start like a frame, nor on a
        // value of another schema that merely starts with a zero (a null
        // branch, a zero, an empty string in plain Avro).
        for not_framed in [&[0xff, 0, 0, 0, 1, 2][..], &[0, 0, 0, 0, 42, 0xff, 0xff]] {
            let e = b.decode(Some(not_framed)).unwrap_err().to_string();
            assert!(!e.contains("Schema Registry"), "{e}");
        }
        let j = decoder(Format::Json);
        let e = j
            .batch()
            .unwrap()
            .decode(Some(b"\x00\x00\x00\x00\x07{\"k\":\"x\",\"n\":5}"));
        assert!(
            e.unwrap_err().to_string().contains("schema id 7"),
            "JSON input gets the hint too"
        );
    }
}
