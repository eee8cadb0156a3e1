//! Direct decoding of flat records: JSON text or an Avro datum straight
//! into the record's field values, without apache-avro's intermediate
//! forms (a `serde_json::Value` tree, then an Avro map, then a record
//! with a `String` name per field).
//!
//! It covers records of up to 128 fields that are primitives, the usual
//! logical types on them, or `["null", T]` unions of those: the schemas of event
//! streams. It produces exactly the values the generic path produces, and
//! gives up on anything it does not handle exactly (a type mismatch, a
//! missing field, bytes that are not a datum): the caller then runs the
//! generic path, which either decodes the record after all or says what
//! is wrong with it.

use std::fmt;

use apache_avro::Schema;
use apache_avro::types::Value;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

/// A field type the direct path decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prim {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    String,
    Date,
    TimestampMillis,
    TimestampMicros,
}

impl Prim {
    fn of(schema: &Schema) -> Option<Self> {
        Some(match schema {
            Schema::Null => Self::Null,
            Schema::Boolean => Self::Boolean,
            Schema::Int => Self::Int,
            Schema::Long => Self::Long,
            Schema::Float => Self::Float,
            Schema::Double => Self::Double,
            Schema::String => Self::String,
            Schema::Date => Self::Date,
            Schema::TimestampMillis => Self::TimestampMillis,
            Schema::TimestampMicros => Self::TimestampMicros,
            _ => return None,
        })
    }
}

/// One field: its type, and for a `["null", T]` union the branch indexes.
#[derive(Debug, Clone, Copy)]
struct Slot {
    prim: Prim,
    /// `(index of "null", index of T)` when the field is such a union.
    union: Option<(u32, u32)>,
    /// Whether the pipeline reads the field. A string nobody reads is
    /// checked (type, UTF-8) like any other but not copied: its slot
    /// holds `Null`.
    read: bool,
}

/// How to decode the records of one schema directly; built only for
/// schemas whose every field it handles.
#[derive(Debug, Clone)]
pub struct DirectPlan {
    names: Vec<String>,
    slots: Vec<Slot>,
}

/// The direct path gave up; the generic one decides.
#[derive(Debug)]
pub struct GiveUp;

impl DirectPlan {
    /// A plan for `schema`, or `None` when a field is of a type the
    /// direct path does not decode (the generic path then does it all).
    pub fn new(schema: &Schema) -> Option<Self> {
        let Schema::Record(record) = schema else {
            return None;
        };
        // Which fields a JSON object had is kept in a `u128`.
        if record.fields.len() > 128 {
            return None;
        }
        let mut names = Vec::with_capacity(record.fields.len());
        let mut slots = Vec::with_capacity(record.fields.len());
        for field in &record.fields {
            let slot = match &field.schema {
                Schema::Union(u) => match u.variants() {
                    [Schema::Null, t] => Slot {
                        prim: Prim::of(t).filter(|p| *p != Prim::Null)?,
                        union: Some((0, 1)),
                        read: true,
                    },
                    [t, Schema::Null] => Slot {
                        prim: Prim::of(t).filter(|p| *p != Prim::Null)?,
                        union: Some((1, 0)),
                        read: true,
                    },
                    _ => return None,
                },
                s => Slot {
                    prim: Prim::of(s)?,
                    union: None,
                    read: true,
                },
            };
            names.push(field.name.clone());
            slots.push(slot);
        }
        Some(Self { names, slots })
    }

    /// Leaves unread the fields whose `read` entry is false (by schema
    /// position; fields past the end of `read` are read).
    #[must_use]
    pub fn reading_only(mut self, read: &[bool]) -> Self {
        for (slot, r) in self.slots.iter_mut().zip(read) {
            slot.read = *r;
        }
        self
    }

    /// Decodes a JSON object; every field of the schema must be present.
    ///
    /// # Errors
    /// [`GiveUp`] on anything but a plain match of the schema.
    pub fn json(&self, bytes: &[u8]) -> Result<Vec<Value>, GiveUp> {
        // UTF-8 checked once for the whole text (JSON must be UTF-8 in
        // every part, read or not), not once per string.
        let text = std::str::from_utf8(bytes).map_err(|_| GiveUp)?;
        let mut de = serde_json::Deserializer::from_str(text);
        let (values, present) = (&mut de)
            .deserialize_map(JsonRecord(self))
            .map_err(|_| GiveUp)?;
        de.end().map_err(|_| GiveUp)?;
        if present.count_ones() as usize == values.len() {
            Ok(values)
        } else {
            Err(GiveUp)
        }
    }

    /// Decodes one Avro datum (binary encoding) of the schema, which must
    /// use all of `bytes`.
    ///
    /// # Errors
    /// [`GiveUp`] when the bytes are not exactly one such datum.
    pub fn avro(&self, mut bytes: &[u8]) -> Result<Vec<Value>, GiveUp> {
        let mut values = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            let value = match slot.union {
                None => read_prim(*slot, &mut bytes)?,
                Some((null, other)) => {
                    let branch = u32::try_from(read_long(&mut bytes)?).map_err(|_| GiveUp)?;
                    if branch == null {
                        Value::Union(null, Box::new(Value::Null))
                    } else if branch == other {
                        Value::Union(other, Box::new(read_prim(*slot, &mut bytes)?))
                    } else {
                        return Err(GiveUp);
                    }
                }
            };
            values.push(value);
        }
        if bytes.is_empty() {
            Ok(values)
        } else {
            Err(GiveUp)
        }
    }
}

/// A zig-zag varint of at most 10 bytes.
fn read_long(bytes: &mut &[u8]) -> Result<i64, GiveUp> {
    let mut n: u64 = 0;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        n |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return Ok(((n >> 1) as i64) ^ -((n & 1) as i64));
        }
    }
    Err(GiveUp)
}

fn read_int(bytes: &mut &[u8]) -> Result<i32, GiveUp> {
    i32::try_from(read_long(bytes)?).map_err(|_| GiveUp)
}

fn take<const N: usize>(bytes: &mut &[u8]) -> Result<[u8; N], GiveUp> {
    let (head, rest) = bytes.split_first_chunk::<N>().ok_or(GiveUp)?;
    *bytes = rest;
    Ok(*head)
}

fn read_prim(slot: Slot, bytes: &mut &[u8]) -> Result<Value, GiveUp> {
    Ok(match slot.prim {
        Prim::Null => Value::Null,
        Prim::Boolean => match take::<1>(bytes)? {
            [0] => Value::Boolean(false),
            [1] => Value::Boolean(true),
            _ => return Err(GiveUp),
        },
        Prim::Int => Value::Int(read_int(bytes)?),
        Prim::Long => Value::Long(read_long(bytes)?),
        Prim::Float => Value::Float(f32::from_le_bytes(take(bytes)?)),
        Prim::Double => Value::Double(f64::from_le_bytes(take(bytes)?)),
        Prim::String => {
            let len = usize::try_from(read_long(bytes)?).map_err(|_| GiveUp)?;
            if len > bytes.len() {
                return Err(GiveUp);
            }
            let (s, rest) = bytes.split_at(len);
            *bytes = rest;
            let s = std::str::from_utf8(s).map_err(|_| GiveUp)?;
            if slot.read {
                Value::String(s.to_owned())
            } else {
                Value::Null
            }
        }
        Prim::Date => Value::Date(read_int(bytes)?),
        Prim::TimestampMillis => Value::TimestampMillis(read_long(bytes)?),
        Prim::TimestampMicros => Value::TimestampMicros(read_long(bytes)?),
    })
}

/// A JSON object into one value slot per schema field.
struct JsonRecord<'p>(&'p DirectPlan);

impl<'de> Visitor<'de> for JsonRecord<'_> {
    /// The values, and a bit per field that was present.
    type Value = (Vec<Value>, u128);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let plan = self.0;
        // Filled in place: `vec![Value::Null; n]` clones through the
        // general `Value::clone`, a measurable cost per record.
        let mut values = Vec::with_capacity(plan.slots.len());
        values.resize_with(plan.slots.len(), || Value::Null);
        let mut present = 0u128;
        // Objects usually list their keys in schema order: each key is
        // compared with the field after the last one found first.
        let mut next = 0;
        while let Some(key) = map.next_key_seed(FieldName { plan, next })? {
            match key {
                // A repeated key: serde_json keeps the last one.
                Some(i) => {
                    values[i] = map.next_value_seed(JsonField(plan.slots[i]))?;
                    present |= 1 << i;
                    next = i + 1;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok((values, present))
    }
}

/// A key of the object: the index of the schema field it names, if any;
/// field `next` is tried first.
struct FieldName<'p> {
    plan: &'p DirectPlan,
    next: usize,
}

impl<'de> DeserializeSeed<'de> for FieldName<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for FieldName<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        let names = &self.plan.names;
        if names.get(self.next).is_some_and(|n| n == key) {
            return Ok(Some(self.next));
        }
        Ok(names.iter().position(|n| n == key))
    }
}

/// One field's JSON value, resolved like apache-avro resolves it.
struct JsonField(Slot);

impl<'de> DeserializeSeed<'de> for JsonField {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl JsonField {
    /// Wraps a resolved non-null value in its union branch.
    fn wrap(&self, v: Value) -> Value {
        match self.0.union {
            Some((_, branch)) => Value::Union(branch, Box::new(v)),
            None => v,
        }
    }

    fn mismatch<E: de::Error>() -> E {
        E::custom("type mismatch")
    }

    /// An integer (serde_json gives i64 or u64).
    fn integer<E: de::Error>(&self, n: i64) -> Result<Value, E> {
        let v = match self.0.prim {
            Prim::Int => Value::Int(i32::try_from(n).map_err(|_| Self::mismatch::<E>())?),
            Prim::Long => Value::Long(n),
            Prim::Float => Value::Float(n as f32),
            Prim::Double => Value::Double(n as f64),
            Prim::TimestampMillis => Value::TimestampMillis(n),
            Prim::TimestampMicros => Value::TimestampMicros(n),
            // apache-avro turns a JSON integer into an Avro `int` when it
            // fits, which `date` takes.
            Prim::Date => Value::Date(i32::try_from(n).map_err(|_| Self::mismatch::<E>())?),
            Prim::Null | Prim::Boolean | Prim::String => return Err(Self::mismatch()),
        };
        Ok(self.wrap(v))
    }
}

impl<'de> Visitor<'de> for JsonField {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value of the field's type")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        match (self.0.prim, self.0.union) {
            (_, Some((null, _))) => Ok(Value::Union(null, Box::new(Value::Null))),
            (Prim::Null, None) => Ok(Value::Null),
            _ => Err(Self::mismatch()),
        }
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        match self.0.prim {
            Prim::Boolean => Ok(self.wrap(Value::Boolean(b))),
            _ => Err(Self::mismatch()),
        }
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Value, E> {
        self.integer(n)
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
        self.integer(i64::try_from(n).map_err(|_| Self::mismatch::<E>())?)
    }

    fn visit_f64<E: de::Error>(self, x: f64) -> Result<Value, E> {
        match self.0.prim {
            Prim::Float => Ok(self.wrap(Value::Float(x as f32))),
            Prim::Double => Ok(self.wrap(Value::Double(x))),
            _ => Err(Self::mismatch()),
        }
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        match self.0.prim {
            Prim::String if !self.0.read => Ok(Value::Null),
            Prim::String => Ok(self.wrap(Value::String(s.to_owned()))),
            _ => Err(Self::mismatch()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::input::json_to_value;
    use crate::codec::schema::RecordSchema;
    use proptest::prelude::*;
    use std::path::Path;

    const SCHEMA: &str = r#"{"type":"record","name":"T","fields":[
        {"name":"s","type":"string"},
        {"name":"i","type":"int"},
        {"name":"l","type":"long"},
        {"name":"f","type":"float"},
        {"name":"d","type":"double"},
        {"name":"b","type":"boolean"},
        {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"us","type":{"type":"long","logicalType":"timestamp-micros"}},
        {"name":"day","type":{"type":"int","logicalType":"date"}},
        {"name":"ns","type":["null","string"]},
        {"name":"nd","type":["double","null"], "default": 1.5}]}"#;

    fn schema() -> RecordSchema {
        RecordSchema::parse(Path::new("t.avsc"), SCHEMA).unwrap()
    }

    fn generic_avro(schema: &RecordSchema, bytes: &[u8]) -> Option<Vec<Value>> {
        let reader = apache_avro::reader::datum::GenericDatumReader::builder(&schema.schema)
            .build()
            .unwrap();
        let mut rest = bytes;
        match reader.read_value(&mut rest).ok()? {
            Value::Record(fields) if rest.is_empty() => {
                Some(fields.into_iter().map(|(_, v)| v).collect())
            }
            _ => None,
        }
    }

    fn generic_json(schema: &RecordSchema, bytes: &[u8]) -> Option<Vec<Value>> {
        match json_to_value(bytes, schema).ok()? {
            Value::Record(fields) => Some(fields.into_iter().map(|(_, v)| v).collect()),
            _ => None,
        }
    }

    /// Equality that takes NaN as equal to itself.
    fn same(a: &[Value], b: &[Value]) -> bool {
        format!("{a:?}") == format!("{b:?}")
    }

    /// `same` on the fields the plan reads: a string field left unread
    /// holds `Null` (the bare value, or inside its union).
    fn same_read(direct: &[Value], generic: &[Value], read: &[bool]) -> bool {
        let unread = |i: usize| !read[i] && matches!(NAMES[i], "s" | "ns");
        direct.len() == generic.len()
            && (0..direct.len()).all(|i| {
                if unread(i) {
                    matches!(&direct[i], Value::Null | Value::Union(_, _))
                        && !matches!(&direct[i], Value::Union(_, v) if **v != Value::Null)
                } else {
                    same(&direct[i..=i], &generic[i..=i])
                }
            })
    }

    /// JSON for one field value: the natural form, or a deliberately odd
    /// one (a string for a number, a float for an integer, null, an
    /// out-of-range number), so both agreement and giving up are covered.
    fn json_field(kind: usize) -> BoxedStrategy<(String, bool)> {
        let odd = prop_oneof![
            Just("null"),
            Just("\"x\""),
            Just("2.5"),
            Just("true"),
            Just("9223372036854775807"),
            Just("18446744073709551615"),
            Just("3000000000"),
            Just("[1]"),
        ]
        .prop_map(|s| (s.to_string(), false));
        let natural = match kind {
            0 | 9 => "[a-z\"\\\\é]{0,6}"
                .prop_map(|s| serde_json::to_string(&s).unwrap())
                .boxed(),
            1 | 8 => any::<i32>().prop_map(|n| n.to_string()).boxed(),
            2 | 6 | 7 => any::<i64>().prop_map(|n| n.to_string()).boxed(),
            3 | 4 | 10 => prop_oneof![
                (-1e12f64..1e12).prop_map(|x| format!("{x:?}")),
                any::<i32>().prop_map(|n| n.to_string())
            ]
            .boxed(),
            _ => any::<bool>().prop_map(|b| b.to_string()).boxed(),
        }
        .prop_map(|s| (s, true));
        prop_oneof![8 => natural, 1 => odd].boxed()
    }

    const NAMES: [&str; 11] = ["s", "i", "l", "f", "d", "b", "ts", "us", "day", "ns", "nd"];

    /// A JSON object over the schema's fields, and whether it is a plain
    /// match of the schema (every field present, of its natural form).
    fn json_object() -> impl Strategy<Value = (String, bool)> {
        (
            (0..11).map(json_field).collect::<Vec<_>>(),
            proptest::collection::vec(prop::bool::weighted(0.95), 11),
            any::<bool>(),
        )
            .prop_map(|(fields, keep, extra)| {
                let mut plain = true;
                let mut parts = Vec::new();
                for ((name, (text, natural)), keep) in NAMES.iter().zip(fields).zip(keep) {
                    plain &= natural && keep;
                    if keep {
                        parts.push(format!("\"{name}\":{text}"));
                    }
                }
                if extra {
                    parts.insert(1, "\"other\":{\"x\":[1,2]}".to_string());
                }
                (format!("{{{}}}", parts.join(",")), plain)
            })
    }

    proptest! {
        #[test]
        fn json_agrees_with_the_generic_path_or_gives_up(
            (text, plain) in json_object(),
            read in proptest::collection::vec(prop::bool::weighted(0.7), 11),
        ) {
            let schema = schema();
            let plan = DirectPlan::new(&schema.schema).unwrap().reading_only(&read);
            let generic = generic_json(&schema, text.as_bytes());
            match plan.json(text.as_bytes()) {
                // Fields left unread are checked all the same: what the
                // generic path rejects (and sends to the dead-letter
                // topic) the direct path gives up on.
                Ok(direct) => {
                    let generic = generic.expect("direct decoded what the generic path rejects");
                    prop_assert!(same_read(&direct, &generic, &read), "{direct:?}\n{generic:?}");
                }
                // Giving up is always safe (the generic path decides), but
                // not on a plain match of the schema.
                Err(GiveUp) => prop_assert!(!plain, "gave up on {text}"),
            }
        }

        #[test]
        fn avro_agrees_with_the_generic_path(
            s in "\\PC{0,8}", i in any::<i32>(), l in any::<i64>(), f in any::<f32>(),
            d in any::<f64>(), b in any::<bool>(), ts in any::<i64>(), us in any::<i64>(),
            day in any::<i32>(), ns in proptest::option::of("[a-z]{0,4}"),
            nd in proptest::option::of(any::<f64>()), cut in 0usize..4,
            read in proptest::collection::vec(prop::bool::weighted(0.7), 11),
        ) {
            let schema = schema();
            let plan = DirectPlan::new(&schema.schema).unwrap().reading_only(&read);
            let value = Value::Record(vec![
                ("s".into(), Value::String(s)),
                ("i".into(), Value::Int(i)),
                ("l".into(), Value::Long(l)),
                ("f".into(), Value::Float(f)),
                ("d".into(), Value::Double(d)),
                ("b".into(), Value::Boolean(b)),
                ("ts".into(), Value::TimestampMillis(ts)),
                ("us".into(), Value::TimestampMicros(us)),
                ("day".into(), Value::Date(day)),
                ("ns".into(), match ns {
                    Some(v) => Value::Union(1, Box::new(Value::String(v))),
                    None => Value::Union(0, Box::new(Value::Null)),
                }),
                ("nd".into(), match nd {
                    Some(v) => Value::Union(0, Box::new(Value::Double(v))),
                    None => Value::Union(1, Box::new(Value::Null)),
                }),
            ]);
            let mut bytes = apache_avro::writer::datum::GenericDatumWriter::builder(&schema.schema)
                .build()
                .unwrap()
                .write_value_to_vec(value)
                .unwrap();
            // Damaged data: cut short, or one byte too many.
            match cut {
                1 => { bytes.pop(); }
                2 => bytes.push(0),
                _ => {}
            }
            let generic = generic_avro(&schema, &bytes);
            match plan.avro(&bytes) {
                Ok(direct) => {
                    let generic = generic.expect("direct decoded what the generic path rejects");
                    prop_assert!(same_read(&direct, &generic, &read), "{direct:?}\n{generic:?}");
                }
                Err(GiveUp) => prop_assert!(cut != 0, "gave up on a well-formed datum"),
            }
        }
    }

    #[test]
    fn well_formed_json_takes_the_direct_path() {
        let schema = schema();
        let plan = DirectPlan::new(&schema.schema).unwrap();
        let text = br#"{"s":"a","i":1,"l":-2,"f":1.5,"d":3,"b":true,"ts":1700000000000,
            "us":5,"day":19000,"ns":null,"nd":2.25,"unknown":[1,{"x":2}]}"#;
        let direct = plan.json(text).unwrap();
        assert!(same(&direct, &generic_json(&schema, text).unwrap()));
        assert_eq!(direct[0], Value::String("a".into()));
        assert_eq!(direct[9], Value::Union(0, Box::new(Value::Null)));
    }

    #[test]
    fn invalid_utf8_anywhere_gives_up_even_in_fields_nobody_reads() {
        let schema = schema();
        let plan = DirectPlan::new(&schema.schema)
            .unwrap()
            .reading_only(&[false; 11]);
        let mut text = br#"{"s":"a","i":1,"l":-2,"f":1.5,"d":3,"b":true,"ts":1,"us":5,"day":1,"ns":null,"nd":2.25,"x":"?"}"#.to_vec();
        let at = text.len() - 3;
        text[at] = 0xff;
        assert!(plan.json(&text).is_err());
        assert!(generic_json(&schema, &text).is_none());
        text[at] = b'?';
        assert!(plan.json(&text).is_ok());
    }

    #[test]
    fn schemas_with_complex_fields_have_no_direct_plan() {
        let s = RecordSchema::parse(
            Path::new("m.avsc"),
            r#"{"type":"record","name":"M","fields":[{"name":"m","type":{"type":"map","values":"long"}}]}"#,
        )
        .unwrap();
        assert!(DirectPlan::new(&s.schema).is_none());
    }
}
