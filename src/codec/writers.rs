//! The writer schemas that registry-framed records name, each resolved
//! once against the pipeline's reader schema into how its records decode.
//!
//! The partition task learns every schema a batch names before the batch
//! goes to the rayon pool (it asks the registry; see `task/schemas.rs`),
//! so the decoder on the pool only reads this map.

use std::sync::{Arc, Mutex, RwLock};

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;

use super::avro::EvolvedPlan;
use super::framing::{SchemaKind, SchemaRef, unframe};
use crate::config::Format;

/// How the records of one writer schema decode.
#[derive(Debug)]
pub enum Writer {
    /// The writer schema is the reader schema: the plain decoder (its
    /// direct path) reads the value.
    Same,
    /// Avro of another schema the reader schema can read, resolved by
    /// Avro's rules (fields added with defaults, fields removed,
    /// promotions): straight into the reader's fields by `plan`, matched
    /// once, where the direct path maps the two schemas; otherwise (and
    /// for a record the plan gives up on) decoded with `schema` and
    /// resolved by apache-avro.
    Resolved {
        schema: Schema,
        plan: Option<EvolvedPlan>,
    },
    /// JSON (the JSON Schema serializer's output): read like plain JSON
    /// input, against the reader schema.
    Json,
    /// Its records cannot be read; why, for their dead letters.
    Unusable(String),
}

/// The writer schemas known, as a batch reads them: a topic has a few,
/// so a list scanned in order beats hashing.
pub type Known = Arc<Vec<(SchemaRef, Arc<Writer>)>>;

/// The writer schemas known to a decoder.
#[derive(Debug)]
pub struct Writers {
    format: Format,
    reader: Schema,
    reader_form: String,
    /// Which of the reader's fields the pipeline reads (by position), for
    /// the plans of evolved writers.
    read: Vec<bool>,
    /// Replaced whole when a schema is learnt (rarely), so that a batch
    /// takes it once and reads it without a lock.
    known: RwLock<Known>,
    /// Schemas that records named, as the consumer read them, which were
    /// not known then: the partition task learns them before the batch
    /// goes to the pool. Each stays here until learnt.
    pending: Mutex<Vec<SchemaRef>>,
}

impl Writers {
    /// For records of `format` read with `reader`, of whose fields the
    /// pipeline reads those with a true `read` entry (by position; fields
    /// past its end are read).
    pub fn new(reader: &Schema, format: Format, read: &[bool]) -> Self {
        Self {
            format,
            reader: reader.clone(),
            reader_form: layout(reader),
            read: read.to_vec(),
            known: RwLock::new(Arc::new(Vec::new())),
            pending: Mutex::new(Vec::new()),
        }
    }

    /// The reader schema.
    pub fn reader(&self) -> &Schema {
        &self.reader
    }

    /// The schemas known now, for one batch.
    pub fn known(&self) -> Known {
        Arc::clone(&self.known.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// How the records of `r` decode, if it is known.
    pub fn get(&self, r: &SchemaRef) -> Option<Arc<Writer>> {
        find(&self.known(), r).cloned()
    }

    /// Notes the schema that `value` (with its `__value_schema_id`
    /// `header`) names, when it is not known yet: called as each record
    /// is read, while its bytes are at hand. `last` is what the previous
    /// record of the partition named, so a run of records of one schema
    /// costs a comparison each. A value whose framing is bad names none
    /// (it is a dead letter).
    pub fn note(&self, value: &[u8], header: Option<&[u8]>, last: &mut Option<SchemaRef>) {
        let Ok((r, _)) = unframe(value, header) else {
            return;
        };
        if last.as_ref() == Some(&r) {
            return;
        }
        if find(&self.known(), &r).is_none() {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if !pending.contains(&r) {
                pending.push(r);
            }
        }
        *last = Some(r);
    }

    /// The schemas noted that are not known yet, each once.
    pub fn pending(&self) -> Vec<SchemaRef> {
        let known = self.known();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|r| find(&known, r).is_none())
            .cloned()
            .collect()
    }

    /// Learns schema `r` as the registry gave it (`kind` and `text`), or
    /// why it could not (`Err`: its records become dead letters with that
    /// reason). Returns how its records will decode.
    pub fn learn(&self, r: SchemaRef, found: Result<(SchemaKind, String), String>) -> Arc<Writer> {
        let writer = Arc::new(match found {
            Err(why) => Writer::Unusable(why),
            Ok((kind, text)) => self.resolve(&r, kind, &text),
        });
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        let mut next: Vec<_> = known.iter().filter(|(s, _)| *s != r).cloned().collect();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p| *p != r);
        next.push((r, Arc::clone(&writer)));
        *known = Arc::new(next);
        writer
    }

    fn resolve(&self, r: &SchemaRef, kind: SchemaKind, text: &str) -> Writer {
        match (kind, self.format) {
            (SchemaKind::Json, Format::Json) => return Writer::Json,
            (SchemaKind::Avro, Format::Avro) => {}
            (SchemaKind::Protobuf, _) => {
                return Writer::Unusable(format!(
                    "{r} is a Protobuf schema: Protobuf input is not supported yet"
                ));
            }
            (kind, format) => {
                return Writer::Unusable(format!(
                    "{r} is registered as {}, and pipeline.input_format is {}",
                    kind.name(),
                    match format {
                        Format::Avro => "avro",
                        Format::Json => "json",
                    }
                ));
            }
        }
        let writer = match Schema::parse_str(text) {
            Ok(w) => w,
            Err(e) => return Writer::Unusable(format!("{r} is not a valid Avro schema: {e}")),
        };
        if layout(&writer) == self.reader_form {
            return Writer::Same;
        }
        match SchemaCompatibility::can_read(&writer, &self.reader) {
            Ok(_) => Writer::Resolved {
                plan: EvolvedPlan::new(&writer, &self.reader, &self.read),
                schema: writer,
            },
            Err(e) => Writer::Unusable(format!(
                "records written with {r} cannot be read with the pipeline's input schema: {e}"
            )),
        }
    }
}

/// What decides whether the bytes of one schema are those of another:
/// its Parsing Canonical Form, taken twice. apache-avro writes a logical
/// type's underlying type as `{"type":"long"}`, and a plain `long` as
/// `"long"`, although both encode alike; the form of the form is the
/// same for both.
fn layout(schema: &Schema) -> String {
    let form = schema.canonical_form();
    Schema::parse_str(&form).map_or(form, |s| s.canonical_form())
}

/// How the records of `r` decode, in `known`.
pub fn find<'a>(known: &'a Known, r: &SchemaRef) -> Option<&'a Arc<Writer>> {
    known.iter().find(|(s, _)| s == r).map(|(_, w)| w)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"type":"record","name":"Bid","fields":[
        {"name":"auction","type":"long"},{"name":"price","type":"int"}]}"#;
    const V2: &str = r#"{"type":"record","name":"Bid","fields":[
        {"name":"auction","type":"long"},{"name":"price","type":"long"},
        {"name":"channel","type":"string","default":"web"}]}"#;

    #[test]
    fn each_writer_is_resolved_once_against_the_reader() {
        let w = Writers::new(&Schema::parse_str(V2).unwrap(), Format::Avro, &[]);
        let mut last = None;
        for value in [
            &[0, 0, 0, 0, 1, 2][..],
            &[0, 0, 0, 0, 1, 3],
            &[0, 0, 0, 0, 2, 2],
            &[0, 0, 0, 0, 1, 4],
            b"not framed",
        ] {
            w.note(value, None, &mut last);
        }
        assert_eq!(w.pending(), [SchemaRef::Id(1), SchemaRef::Id(2)]);
        assert!(matches!(
            *w.learn(SchemaRef::Id(1), Ok((SchemaKind::Avro, V1.into()))),
            Writer::Resolved { plan: Some(_), .. }
        ));
        // The same schema, written another way (or as its canonical form,
        // which drops logical types), is the reader's.
        let spaced = V2.replace(',', " , ");
        assert!(matches!(
            *w.learn(SchemaRef::Id(2), Ok((SchemaKind::Avro, spaced))),
            Writer::Same
        ));
        assert!(w.pending().is_empty());
        // A schema known is not noted again.
        w.note(&[0, 0, 0, 0, 2, 2], None, &mut None);
        assert!(w.pending().is_empty());
        let ts = r#"{"type":"record","name":"T","fields":[
            {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}}]}"#;
        let reader = Schema::parse_str(ts).unwrap();
        let w = Writers::new(&reader, Format::Avro, &[]);
        assert!(matches!(
            *w.learn(
                SchemaRef::Id(3),
                Ok((SchemaKind::Avro, reader.canonical_form()))
            ),
            Writer::Same
        ));
    }

    #[test]
    fn a_writer_the_reader_cannot_read_says_why() {
        // v2 as the writer, v1 as the reader: long → int is no promotion.
        let w = Writers::new(&Schema::parse_str(V1).unwrap(), Format::Avro, &[]);
        let Writer::Unusable(why) = &*w.learn(SchemaRef::Id(9), Ok((SchemaKind::Avro, V2.into())))
        else {
            panic!("resolved")
        };
        assert!(
            why.contains("schema id 9") && why.contains("cannot be read"),
            "{why}"
        );
        let Writer::Unusable(why) = &*w.learn(
            SchemaRef::Id(3),
            Ok((SchemaKind::Protobuf, "syntax".into())),
        ) else {
            panic!("protobuf")
        };
        assert!(why.contains("Protobuf"), "{why}");
    }
}
