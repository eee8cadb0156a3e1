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
//!
//! The plan is here; its decoders are by format, in `avro/decode.rs` and
//! `json/` (`decode.rs`, `scan.rs`).

use apache_avro::Schema;
use apache_avro::types::Value;

/// A field type the direct path decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Prim {
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
pub(super) struct Slot {
    pub(super) prim: Prim,
    /// `(index of "null", index of T)` when the field is such a union.
    pub(super) union: Option<(u32, u32)>,
    /// Whether the pipeline reads the field. A string nobody reads is
    /// checked (type, UTF-8) like any other but not copied: its slot
    /// holds `Null`.
    pub(super) read: bool,
}

/// How to decode the records of one schema directly; built only for
/// schemas whose every field it handles.
#[derive(Debug, Clone)]
pub struct DirectPlan {
    pub(super) names: Vec<String>,
    /// For each field, the one whose name follows its name in byte
    /// order (`names.len()` after the last), and the first in that order
    /// at index `names.len()`: objects often list their keys sorted (serde_json's maps,
    /// Python's `sort_keys`) rather than in schema order.
    pub(super) sorted_next: Vec<usize>,
    pub(super) slots: Vec<Slot>,
    /// The capacity of a decoded record's values: the schema's fields and
    /// those the transforms add.
    pub(super) room: usize,
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
        let mut order: Vec<usize> = (0..names.len()).collect();
        order.sort_by(|a, b| names[*a].cmp(&names[*b]));
        let mut sorted_next = vec![names.len(); names.len() + 1];
        for pair in order.windows(2) {
            sorted_next[pair[0]] = pair[1];
        }
        if let Some(first) = order.first() {
            sorted_next[names.len()] = *first;
        }
        Some(Self {
            room: names.len(),
            names,
            sorted_next,
            slots,
        })
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

    /// A record of `Null`s with room for [`Self::room`] values. Filled
    /// in place: `vec![Value::Null; n]` clones through the general
    /// `Value::clone`, a measurable cost per record.
    pub(super) fn blank(&self) -> Vec<Value> {
        let mut values = Vec::with_capacity(self.room);
        self.reset(&mut values);
        values
    }

    /// Makes `values` (the last record's, or empty) one slot per field
    /// again, with room for the fields the transforms add. The slots keep
    /// what they held, so that decoding a string into one reuses its
    /// allocation; every slot is written before the record is used.
    pub(super) fn reset(&self, values: &mut Vec<Value>) {
        values.truncate(self.slots.len());
        values.reserve(self.room - values.len());
        values.resize_with(self.slots.len(), || Value::Null);
    }

    /// Decoded records have room for `fields` values (at least the
    /// schema's).
    #[must_use]
    pub fn with_room_for(mut self, fields: usize) -> Self {
        self.room = fields.max(self.slots.len());
        self
    }
}

/// `out` as a union on `branch`, its boxed value reused when it was one
/// already.
pub(super) fn in_union(out: &mut Value, branch: u32) -> &mut Value {
    if !matches!(out, Value::Union(..)) {
        *out = Value::Union(branch, Box::new(Value::Null));
    }
    match out {
        Value::Union(b, inner) => {
            *b = branch;
            inner
        }
        _ => unreachable!("made a union just above"),
    }
}

/// Writes the string `s` into `out`, in the allocation of the string it
/// held, if any.
pub(super) fn set_string(out: &mut Value, s: &str) {
    if let Value::String(old) = out {
        old.clear();
        old.push_str(s);
    } else {
        *out = Value::String(s.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::json::json_to_value;
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
    /// out-of-range number, a token serde_json reads otherwise or not at
    /// all), so both agreement and giving up are covered.
    fn json_field(kind: usize) -> BoxedStrategy<(String, bool)> {
        let odd = prop::sample::select(vec![
            "null",
            "\"x\"",
            "2.5",
            "true",
            "9223372036854775807",
            "18446744073709551615",
            "3000000000",
            "[1]",
            "{}",
            "-0",
            "01",
            "1e2",
            "-",
            "1.",
            "-9223372036854775808",
            "123456789012345678",
            "1234567890123456789",
            "\"\\ud800\"",
            "\"a\\qb\"",
            "\"\\u00e9\\n\"",
            "\"\u{1}\"",
            "nul",
            "truex",
            "1e400",
            "\"\\\"\"",
        ])
        .prop_map(|s| (s.to_string(), false));
        let natural = match kind {
            0 | 9 => "[a-z\"\\\\é\n]{0,6}"
                .prop_map(|s| serde_json::to_string(&s).unwrap())
                .boxed(),
            1 | 8 => any::<i32>().prop_map(|n| n.to_string()).boxed(),
            2 | 6 | 7 => any::<i64>().prop_map(|n| n.to_string()).boxed(),
            3 | 4 | 10 => prop_oneof![
                (-1e12f64..1e12).prop_map(|x| format!("{x:?}")),
                any::<f64>().prop_map(|x| serde_json::to_string(&x).unwrap()),
                any::<i32>().prop_map(|n| n.to_string())
            ]
            .boxed(),
            _ => any::<bool>().prop_map(|b| b.to_string()).boxed(),
        }
        .prop_map(|s| (s, true));
        prop_oneof![8 => natural, 1 => odd].boxed()
    }

    fn longest_digit_run(text: &str) -> usize {
        text.split(|c: char| !c.is_ascii_digit())
            .map(str::len)
            .max()
            .unwrap_or(0)
    }

    const NAMES: [&str; 11] = ["s", "i", "l", "f", "d", "b", "ts", "us", "day", "ns", "nd"];

    /// A field the schema lacks, and whether it is valid JSON.
    fn json_unknown() -> impl Strategy<Value = (String, bool)> {
        prop::sample::select(vec![
            (r#""other":{"x":[1,2,"]"]}"#, true),
            (r#""o\"ther":-0"#, true),
            (r#""other":"\u00e9""#, true),
            (r#""other":null"#, true),
            (r#""other":"\ud800""#, false),
            (r#""other":[1,,2]"#, false),
            (r#""other":{"x":1"#, false),
            (r#""other":1e400"#, false),
            (r#""other":tru"#, false),
        ])
        .prop_map(|(s, valid)| (s.to_string(), valid))
    }

    /// A JSON object over the schema's fields, and whether it is a plain
    /// match of the schema (every field present, of its natural form). Its
    /// spacing, escaped keys and repeated fields are plain all the same;
    /// a damaged byte or a cut is not.
    fn json_object() -> impl Strategy<Value = (String, bool)> {
        let space = prop::sample::select(vec!["", "", "", " ", "\n", "\t", "\r\n "]);
        (
            (0..11).map(json_field).collect::<Vec<_>>(),
            proptest::collection::vec(prop::bool::weighted(0.95), 11),
            proptest::option::of(json_unknown()),
            proptest::collection::vec(space, 4),
            proptest::collection::vec(prop::bool::weighted(0.2), 11),
            proptest::option::of((0usize..11).prop_flat_map(|i| (Just(i), json_field(i)))),
            prop_oneof![
                6 => Just(None),
                1 => (any::<prop::sample::Index>(), prop::sample::select(
                    vec![b'"', b'\\', b'{', b'}', b',', b':', 0x01, 0x1f, 0xff, b' ', b'0', b'e'],
                ))
                .prop_map(Some),
            ],
        )
            .prop_map(|(fields, keep, unknown, space, escape, repeat, damage)| {
                let mut plain = true;
                let mut parts = Vec::new();
                let key = |name: &str, escape: bool| {
                    if escape {
                        let mut c = name.chars();
                        let first = c.next().unwrap();
                        format!("\"\\u{:04x}{}\"", first as u32, c.as_str())
                    } else {
                        format!("\"{name}\"")
                    }
                };
                for (i, ((name, (text, natural)), keep)) in
                    NAMES.iter().zip(fields).zip(keep).enumerate()
                {
                    plain &= natural && keep;
                    if keep {
                        let k = key(name, escape[i]);
                        parts.push(format!("{k}{}:{}{text}", space[0], space[1]));
                    }
                }
                if let Some((text, valid)) = unknown {
                    plain &= valid;
                    parts.insert(1.min(parts.len()), text);
                }
                // A repeated key: the last one counts, as in serde_json.
                if let Some((i, (text, natural))) = repeat {
                    plain &= natural;
                    parts.push(format!("{}:{text}", key(NAMES[i], false)));
                }
                let sep = format!(",{}", space[2]);
                let mut text = format!(
                    "{}{{{}{}}}{}",
                    space[3],
                    space[2],
                    parts.join(&sep),
                    space[3]
                );
                if let Some((at, byte)) = damage {
                    let mut bytes = text.into_bytes();
                    let at = at.index(bytes.len());
                    bytes[at] = byte;
                    text = String::from_utf8_lossy(&bytes).into_owned();
                    plain = false;
                }
                (text, plain)
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
                    prop_assert!(generic.is_some(), "direct decoded what the generic path rejects: {text}");
                    let generic = generic.unwrap();
                    prop_assert!(same_read(&direct, &generic, &read), "{text}\n{direct:?}\n{generic:?}");
                }
                // Giving up is always safe (the generic path decides), but
                // not on a plain match of the schema.
                Err(GiveUp) => prop_assert!(!plain, "gave up on {text}"),
            }
        }

        #[test]
        fn the_scanner_reads_what_serde_json_reads(
            (text, plain) in json_object(),
            read in proptest::collection::vec(prop::bool::weighted(0.7), 11),
        ) {
            let schema = schema();
            let plan = DirectPlan::new(&schema.schema).unwrap().reading_only(&read);
            let by_serde = plan.json_by_serde(text.as_bytes());
            match plan.scan(text.as_bytes()) {
                Some(scanned) => {
                    prop_assert!(by_serde.is_ok(), "scanned what serde_json gives up on: {text}");
                    prop_assert!(same(&scanned, &by_serde.unwrap()), "{text}");
                }
                // The scanner leaves escapes, nested values and integers
                // of more than 18 digits to serde_json, and nothing else
                // that is a plain match of the schema.
                None => prop_assert!(
                    !plain
                        || text.contains(['\\', '['])
                        || text.matches('{').count() > 1
                        || longest_digit_run(&text) > 18,
                    "the scanner gave up on {text}"
                ),
            }
        }

        #[test]
        fn objects_without_escapes_or_nesting_are_scanned(
            s in "[^\"\\\\\\x00-\\x1f]{0,12}", i in any::<i32>(),
            l in -999_999_999_999_999_999i64..=999_999_999_999_999_999,
            f in -1e6f32..1e6, d in prop::num::f64::NORMAL | prop::num::f64::ZERO,
            b in any::<bool>(), ts in 0i64..=999_999_999_999_999_999,
            ns in proptest::option::of("[a-zé]{0,4}"),
            nd in proptest::option::of(-1e12f64..1e12), other in any::<bool>(),
            pretty in any::<bool>(),
        ) {
            let schema = schema();
            let plan = DirectPlan::new(&schema.schema).unwrap();
            let mut object = serde_json::json!({
                "s": s, "i": i, "l": l, "f": f, "d": d, "b": b, "ts": ts, "us": l,
                "day": i, "ns": ns, "nd": nd,
            });
            if other {
                object["other"] = serde_json::json!(s);
            }
            let text = if pretty {
                serde_json::to_string_pretty(&object)
            } else {
                serde_json::to_string(&object)
            }
            .unwrap();
            let scanned = plan.scan(text.as_bytes());
            prop_assert!(scanned.is_some(), "the scanner gave up on {text}");
            let by_serde = plan.json_by_serde(text.as_bytes()).unwrap();
            prop_assert!(same(&scanned.unwrap(), &by_serde), "{text}");
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

    /// A datum of the test schema: `s`, `ns` and `nd` as given, the other
    /// fields fixed.
    fn avro_datum(schema: &RecordSchema, s: &str, ns: Option<&str>, nd: Option<f64>) -> Vec<u8> {
        let value = Value::Record(vec![
            ("s".into(), Value::String(s.into())),
            ("i".into(), Value::Int(-1)),
            ("l".into(), Value::Long(2)),
            ("f".into(), Value::Float(0.5)),
            ("d".into(), Value::Double(1.5)),
            ("b".into(), Value::Boolean(true)),
            ("ts".into(), Value::TimestampMillis(3)),
            ("us".into(), Value::TimestampMicros(4)),
            ("day".into(), Value::Date(5)),
            (
                "ns".into(),
                match ns {
                    Some(v) => Value::Union(1, Box::new(Value::String(v.into()))),
                    None => Value::Union(0, Box::new(Value::Null)),
                },
            ),
            (
                "nd".into(),
                match nd {
                    Some(v) => Value::Union(0, Box::new(Value::Double(v))),
                    None => Value::Union(1, Box::new(Value::Null)),
                },
            ),
        ]);
        apache_avro::writer::datum::GenericDatumWriter::builder(&schema.schema)
            .build()
            .unwrap()
            .write_value_to_vec(value)
            .unwrap()
    }

    proptest! {
        #[test]
        fn json_decoded_into_the_last_record_s_slots_is_json_decoded_afresh(
            (first, _) in json_object(),
            (second, _) in json_object(),
            read in proptest::collection::vec(prop::bool::weighted(0.7), 11),
        ) {
            let schema = schema();
            let plan = DirectPlan::new(&schema.schema).unwrap().reading_only(&read);
            // The slots hold the first record, decoded or given up on, and
            // a value a transform added.
            let mut values = Vec::new();
            let _ = plan.json_into(first.as_bytes(), &mut values);
            values.push(Value::String("derived".into()));
            let reused = plan.json_into(second.as_bytes(), &mut values).map(|()| values);
            let afresh = plan.json(second.as_bytes());
            match (reused, afresh) {
                (Ok(reused), Ok(afresh)) => prop_assert!(same(&reused, &afresh), "{first}\n{second}"),
                (Err(GiveUp), Err(GiveUp)) => {}
                (r, a) => prop_assert!(false, "{first}\n{second}\n{r:?}\n{a:?}"),
            }
        }

        #[test]
        fn avro_decoded_into_the_last_record_s_slots_is_avro_decoded_afresh(
            s in ("\\PC{0,8}", "\\PC{0,8}"),
            ns in (proptest::option::of("[a-z]{0,4}"), proptest::option::of("[a-z]{0,4}")),
            nd in (proptest::option::of(any::<f64>()), proptest::option::of(any::<f64>())),
            cut in 0usize..3,
            read in proptest::collection::vec(prop::bool::weighted(0.7), 11),
        ) {
            let schema = schema();
            let plan = DirectPlan::new(&schema.schema).unwrap().reading_only(&read);
            let first = avro_datum(&schema, &s.0, ns.0.as_deref(), nd.0);
            let mut second = avro_datum(&schema, &s.1, ns.1.as_deref(), nd.1);
            match cut {
                1 => { second.pop(); }
                2 => second.push(0),
                _ => {}
            }
            let mut values = Vec::new();
            plan.avro_into(&first, &mut values).unwrap();
            values.push(Value::String("derived".into()));
            let reused = plan.avro_into(&second, &mut values).map(|()| values);
            match (reused, plan.avro(&second)) {
                (Ok(reused), Ok(afresh)) => prop_assert!(same(&reused, &afresh)),
                (Err(GiveUp), Err(GiveUp)) => prop_assert!(cut != 0),
                (r, a) => prop_assert!(false, "{r:?}\n{a:?}"),
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
