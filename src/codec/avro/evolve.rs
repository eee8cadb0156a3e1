//! The direct decoder for records of an evolved writer schema: one the
//! reader schema reads by Avro's resolution rules (fields added with
//! defaults, fields removed or reordered, promotions, a plain type read
//! as `["null", T]`). The writer's fields are matched to the reader's once,
//! when the writer schema is learnt; each record is then decoded straight
//! into the reader's field values, as `codec/direct.rs` does for records
//! of the reader schema itself.
//!
//! It produces exactly what apache-avro's resolving reader produces, and
//! takes only the pairs of schemas whose every field it maps exactly; for
//! others there is no plan and the resolving reader does it all.

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;

use super::decode::{read_long, read_prim};
use crate::codec::direct::{DirectPlan, GiveUp, Prim, Slot};

/// Where a writer's field goes in the reader's record.
#[derive(Debug, Clone, Copy)]
struct Target {
    /// The reader's field position.
    at: usize,
    /// The reader's type there.
    prim: Prim,
    /// `(index of "null", index of T)` when the reader's field is such a
    /// union.
    union: Option<(u32, u32)>,
}

/// How to decode the records of one writer schema into the fields of the
/// reader schema.
#[derive(Debug, Clone)]
pub struct EvolvedPlan {
    /// The writer's fields in its order; `None` for one the reader does
    /// not have (decoded, checked, dropped).
    steps: Vec<(Slot, Option<Target>)>,
    /// The reader's record as it starts: each field the writer lacks at
    /// its default, as the resolving reader gives it.
    start: Vec<Value>,
}

impl EvolvedPlan {
    /// The plan for records of `writer` read as `reader` (whose string
    /// fields with a false `read` entry are left `Null`), or `None` when
    /// the direct path does not map them exactly. `reader` must be able
    /// to read `writer` (the caller has checked).
    pub fn new(writer: &Schema, reader: &Schema, read: &[bool]) -> Option<Self> {
        let (Schema::Record(w), Schema::Record(r)) = (writer, reader) else {
            return None;
        };
        // Aliases rename fields: no plan (the resolving reader of
        // apache-avro 0.22 matches by name only too, so it says what is
        // missing).
        if r.fields.iter().any(|f| !f.aliases.is_empty()) {
            return None;
        }
        let from = DirectPlan::new(writer)?;
        let into = DirectPlan::new(reader)?.reading_only(read);
        let mut steps = Vec::with_capacity(from.slots.len());
        for (field, slot) in w.fields.iter().zip(&from.slots) {
            let Some(at) = into.names.iter().position(|n| *n == field.name) else {
                steps.push((
                    Slot {
                        read: false,
                        ..*slot
                    },
                    None,
                ));
                continue;
            };
            let to = into.slots[at];
            // A union written, a plain type read: the resolving reader
            // decides per record.
            if slot.union.is_some() && to.union.is_none() {
                return None;
            }
            promote(zero(slot.prim), to.prim)?;
            steps.push((
                Slot {
                    read: to.read,
                    ..*slot
                },
                Some(Target {
                    at,
                    prim: to.prim,
                    union: to.union,
                }),
            ));
        }
        // The defaults, from the resolving reader itself: a datum of the
        // writer's (every field zero, or null where it may be) read as
        // the reader.
        let resolving = GenericDatumReader::builder(writer)
            .reader_schema(reader)
            .build()
            .ok()?;
        let datum = zero_datum(&from.slots);
        let Value::Record(fields) = resolving.read_value(&mut datum.as_slice()).ok()? else {
            return None;
        };
        // Only the fields the writer lacks keep their default (a string
        // nobody reads is `Null` here too); the others hold a `Null` that
        // costs nothing to copy, which each record overwrites.
        let from_writer: Vec<usize> = steps.iter().filter_map(|(_, t)| t.map(|t| t.at)).collect();
        let start = fields
            .into_iter()
            .zip(&into.slots)
            .enumerate()
            .map(|(at, ((_, v), slot))| match v {
                _ if from_writer.contains(&at) => Value::Null,
                Value::String(_) if !slot.read => Value::Null,
                Value::Union(i, v) if !slot.read && matches!(*v, Value::String(_)) => {
                    Value::Union(i, Box::new(Value::Null))
                }
                v => v,
            })
            .collect::<Vec<_>>();
        (start.len() == into.slots.len()).then_some(Self { steps, start })
    }

    /// Decodes one Avro datum (binary encoding) of the writer schema, which
    /// must use all of `bytes`, into the reader's field values.
    ///
    /// # Errors
    /// [`GiveUp`] when the bytes are not exactly one such datum, or a
    /// value does not map (the resolving reader then says why).
    pub fn avro(&self, mut bytes: &[u8]) -> Result<Vec<Value>, GiveUp> {
        let mut values = self.start.clone();
        for (slot, target) in &self.steps {
            let (null, value) = match slot.union {
                None => (false, read_prim(*slot, &mut bytes)?),
                Some((null, other)) => {
                    let branch = u32::try_from(read_long(&mut bytes)?).map_err(|_| GiveUp)?;
                    if branch == null {
                        (true, Value::Null)
                    } else if branch == other {
                        (false, read_prim(*slot, &mut bytes)?)
                    } else {
                        return Err(GiveUp);
                    }
                }
            };
            let Some(t) = target else { continue };
            values[t.at] = match (null, t.union) {
                (true, Some((null, _))) => Value::Union(null, Box::new(Value::Null)),
                (true, None) => return Err(GiveUp),
                (false, union) => {
                    // A string nobody reads stays `Null`, as on the direct path.
                    let v = if slot.prim == Prim::String && !slot.read {
                        value
                    } else {
                        promote(value, t.prim).ok_or(GiveUp)?
                    };
                    match union {
                        Some((_, other)) => Value::Union(other, Box::new(v)),
                        None => v,
                    }
                }
            };
        }
        if bytes.is_empty() {
            Ok(values)
        } else {
            Err(GiveUp)
        }
    }
}

/// `v` as a value of type `to`, by the resolving reader's rules; `None`
/// where those refuse it.
fn promote(v: Value, to: Prim) -> Option<Value> {
    Some(match (to, v) {
        (Prim::Null, Value::Null) => Value::Null,
        (Prim::Boolean, v @ Value::Boolean(_))
        | (Prim::Int, v @ Value::Int(_))
        | (Prim::String, v @ Value::String(_)) => v,
        (Prim::Long, Value::Int(n)) => Value::Long(i64::from(n)),
        (Prim::Long, Value::Long(n)) => Value::Long(n),
        #[allow(clippy::cast_precision_loss)]
        (Prim::Float, Value::Int(n)) => Value::Float(n as f32),
        #[allow(clippy::cast_precision_loss)]
        (Prim::Float, Value::Long(n)) => Value::Float(n as f32),
        (Prim::Float, Value::Float(x)) => Value::Float(x),
        (Prim::Double, Value::Int(n)) => Value::Double(f64::from(n)),
        #[allow(clippy::cast_precision_loss)]
        (Prim::Double, Value::Long(n)) => Value::Double(n as f64),
        (Prim::Double, Value::Float(x)) => Value::Double(f64::from(x)),
        (Prim::Double, Value::Double(x)) => Value::Double(x),
        (Prim::Date, Value::Date(d) | Value::Int(d)) => Value::Date(d),
        (Prim::TimestampMillis, Value::TimestampMillis(t) | Value::Long(t)) => {
            Value::TimestampMillis(t)
        }
        (Prim::TimestampMillis, Value::Int(t)) => Value::TimestampMillis(i64::from(t)),
        (Prim::TimestampMicros, Value::TimestampMicros(t) | Value::Long(t)) => {
            Value::TimestampMicros(t)
        }
        (Prim::TimestampMicros, Value::Int(t)) => Value::TimestampMicros(i64::from(t)),
        _ => return None,
    })
}

/// A value of type `p`, as the direct path decodes it.
fn zero(p: Prim) -> Value {
    match p {
        Prim::Null => Value::Null,
        Prim::Boolean => Value::Boolean(false),
        Prim::Int => Value::Int(0),
        Prim::Long => Value::Long(0),
        Prim::Float => Value::Float(0.0),
        Prim::Double => Value::Double(0.0),
        Prim::String => Value::String(String::new()),
        Prim::Date => Value::Date(0),
        Prim::TimestampMillis => Value::TimestampMillis(0),
        Prim::TimestampMicros => Value::TimestampMicros(0),
    }
}

/// The bytes of a datum whose every field is zero (the empty string,
/// false) or, for a union, null.
fn zero_datum(slots: &[Slot]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for slot in slots {
        match (slot.union, slot.prim) {
            // A branch index below 64 is one zig-zag byte.
            (Some((null, _)), _) => bytes.push(u8::try_from(null * 2).unwrap_or(0)),
            (None, Prim::Null) => {}
            (None, Prim::Float) => bytes.extend([0; 4]),
            (None, Prim::Double) => bytes.extend([0; 8]),
            (None, _) => bytes.push(0),
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// v1 of a record: reordered, removed, promoted and widened into a
    /// union by v2, which also adds fields with defaults.
    const V1: &str = r#"{"type":"record","name":"E","fields":[
        {"name":"s","type":"string"},
        {"name":"i","type":"int"},
        {"name":"gone","type":"string"},
        {"name":"f","type":"float"},
        {"name":"l","type":"long"},
        {"name":"ni","type":["null","int"]},
        {"name":"ts","type":"long"},
        {"name":"day","type":"int"},
        {"name":"w","type":"int"},
        {"name":"ns","type":["string","null"]}]}"#;
    const V2: &str = r#"{"type":"record","name":"E","fields":[
        {"name":"i","type":"long"},
        {"name":"s","type":"string"},
        {"name":"f","type":"double"},
        {"name":"l","type":"double"},
        {"name":"ni","type":["null","long"]},
        {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"day","type":{"type":"int","logicalType":"date"}},
        {"name":"w","type":["null","int"]},
        {"name":"ns","type":["null","string"]},
        {"name":"added","type":"long","default":7},
        {"name":"note","type":["null","string"],"default":null},
        {"name":"rate","type":"double","default":1.5},
        {"name":"tag","type":"string","default":"web"}]}"#;

    fn schemas() -> (Schema, Schema) {
        (
            Schema::parse_str(V1).unwrap(),
            Schema::parse_str(V2).unwrap(),
        )
    }

    /// What the resolving reader makes of `bytes`.
    fn resolved(writer: &Schema, reader: &Schema, bytes: &[u8]) -> Option<Vec<Value>> {
        let r = GenericDatumReader::builder(writer)
            .reader_schema(reader)
            .build()
            .unwrap();
        let mut rest = bytes;
        match r.read_value(&mut rest).ok()? {
            Value::Record(fields) if rest.is_empty() => {
                Some(fields.into_iter().map(|(_, v)| v).collect())
            }
            _ => None,
        }
    }

    /// `generic` with the strings nobody reads as the direct path leaves
    /// them: `Null`, bare or in their union.
    fn unread_as_null(mut generic: Vec<Value>, read: &[bool]) -> Vec<Value> {
        for (v, r) in generic.iter_mut().zip(read) {
            match v {
                Value::String(_) if !r => *v = Value::Null,
                Value::Union(_, inner) if !r && matches!(**inner, Value::String(_)) => {
                    **inner = Value::Null;
                }
                _ => {}
            }
        }
        generic
    }

    proptest! {
        #[test]
        fn evolved_records_decode_as_the_resolving_reader_reads_them(
            s in "\\PC{0,6}", i in any::<i32>(), gone in "[a-z]{0,4}", f in any::<f32>(),
            l in any::<i64>(), ni in proptest::option::of(any::<i32>()), ts in any::<i64>(),
            day in any::<i32>(), w in any::<i32>(), ns in proptest::option::of("[a-z]{0,4}"),
            cut in 0usize..4,
            read in proptest::collection::vec(prop::bool::weighted(0.7), 13),
        ) {
            let (writer, reader) = schemas();
            let plan = EvolvedPlan::new(&writer, &reader, &read).expect("a plan");
            let value = Value::Record(vec![
                ("s".into(), Value::String(s)),
                ("i".into(), Value::Int(i)),
                ("gone".into(), Value::String(gone)),
                ("f".into(), Value::Float(f)),
                ("l".into(), Value::Long(l)),
                ("ni".into(), match ni {
                    Some(v) => Value::Union(1, Box::new(Value::Int(v))),
                    None => Value::Union(0, Box::new(Value::Null)),
                }),
                ("ts".into(), Value::Long(ts)),
                ("day".into(), Value::Int(day)),
                ("w".into(), Value::Int(w)),
                ("ns".into(), match ns {
                    Some(v) => Value::Union(0, Box::new(Value::String(v))),
                    None => Value::Union(1, Box::new(Value::Null)),
                }),
            ]);
            let mut bytes = apache_avro::writer::datum::GenericDatumWriter::builder(&writer)
                .build()
                .unwrap()
                .write_value_to_vec(value)
                .unwrap();
            match cut {
                1 => { bytes.pop(); }
                2 => bytes.push(0),
                _ => {}
            }
            let generic = resolved(&writer, &reader, &bytes);
            match plan.avro(&bytes) {
                Ok(direct) => {
                    let generic = generic.expect("decoded what the resolving reader rejects");
                    let expected = unread_as_null(generic, &read);
                    // Debug forms, so that NaN equals itself.
                    prop_assert_eq!(format!("{direct:?}"), format!("{expected:?}"));
                }
                Err(GiveUp) => prop_assert!(matches!(cut, 1 | 2), "gave up on a well-formed datum"),
            }
        }
    }

    #[test]
    fn the_fields_the_writer_lacks_take_the_readers_defaults() {
        let (writer, reader) = schemas();
        let plan = EvolvedPlan::new(&writer, &reader, &[true; 13]).unwrap();
        assert_eq!(
            plan.start[9..],
            [
                Value::Long(7),
                Value::Union(0, Box::new(Value::Null)),
                Value::Double(1.5),
                Value::String("web".into()),
            ]
        );
    }

    #[test]
    fn pairs_the_direct_path_does_not_map_have_no_plan() {
        let (_, reader) = schemas();
        // A union written, a plain type read: decided per record.
        let union = Schema::parse_str(
            r#"{"type":"record","name":"E","fields":[{"name":"a","type":["null","int"]}]}"#,
        )
        .unwrap();
        let plain = Schema::parse_str(
            r#"{"type":"record","name":"E","fields":[{"name":"a","type":"int"}]}"#,
        )
        .unwrap();
        assert!(EvolvedPlan::new(&union, &plain, &[]).is_none());
        assert!(EvolvedPlan::new(&plain, &union, &[]).is_some());
        // A field of a type the direct path does not decode.
        let map = Schema::parse_str(
            r#"{"type":"record","name":"E","fields":[
                {"name":"i","type":"int"},{"name":"m","type":{"type":"map","values":"long"}}]}"#,
        )
        .unwrap();
        assert!(EvolvedPlan::new(&map, &reader, &[]).is_none());
    }
}
