//! A stateless pipeline's output record, written straight from the
//! values of the record it came from: each field borrowed, never cloned
//! into an intermediate list of owned values.

use apache_avro::types::Value;
use serde::ser::{Serialize, SerializeMap, Serializer};

use super::avro::{write_avro, write_avro_long, write_avro_str};
use super::json::avro_to_json;
use super::output::OutputEncoder;
use crate::config::Format;

/// One output field's value, borrowed from the record it comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldValue<'a> {
    /// A value written with the schema it was read with (a boolean, bytes,
    /// an array, a record, ...).
    AsRead(&'a Value),
    /// A string.
    String(&'a str),
    /// A long.
    Long(i64),
    /// A double.
    Double(f64),
    /// A timestamp in epoch millis.
    TimestampMillis(i64),
    /// Null, the value of a nullable field only.
    Null,
}

/// One output field: its value, and whether its type is `["null", T]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FieldOut<'a> {
    pub value: FieldValue<'a>,
    pub nullable: bool,
}

impl FieldOut<'_> {
    /// Avro binary: a nullable field's union branch first (0 for null,
    /// 1 for a value), then the value.
    fn write_avro(&self, out: &mut Vec<u8>) -> Result<(), String> {
        if self.nullable {
            let present = self.value != FieldValue::Null;
            write_avro_long(i64::from(present), out);
        }
        match self.value {
            FieldValue::AsRead(v) => write_avro(v, out)?,
            FieldValue::String(s) => write_avro_str(s, out),
            FieldValue::Long(n) | FieldValue::TimestampMillis(n) => write_avro_long(n, out),
            FieldValue::Double(x) => out.extend_from_slice(&x.to_le_bytes()),
            FieldValue::Null => {}
        }
        Ok(())
    }
}

impl Serialize for FieldValue<'_> {
    /// As [`avro_to_json`] writes the same value (a double that is not
    /// finite as null, as `serde_json` writes it).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Self::AsRead(v) => avro_to_json(v.clone()).serialize(s),
            Self::String(v) => s.serialize_str(v),
            Self::Long(n) | Self::TimestampMillis(n) => s.serialize_i64(n),
            Self::Double(x) => s.serialize_f64(x),
            Self::Null => s.serialize_unit(),
        }
    }
}

/// The fields of one output record as a JSON object: keys in byte order,
/// as a `serde_json` map writes them.
struct JsonFields<'e, F> {
    encoder: &'e OutputEncoder,
    field: F,
}

impl<'a, F: Fn(usize) -> Result<FieldOut<'a>, String>> Serialize for JsonFields<'_, F> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let order = &self.encoder.json_order;
        let mut map = s.serialize_map(Some(order.len()))?;
        for &i in order {
            let f = (self.field)(i).map_err(serde::ser::Error::custom)?;
            map.serialize_entry(&self.encoder.names[i], &f.value)?;
        }
        map.end()
    }
}

impl OutputEncoder {
    /// Appends one record of a stateless pipeline to `out`: field `i`'s
    /// value is `field(i)`, for each output field, each of its field's
    /// type.
    ///
    /// # Errors
    /// The first error of `field`, or a value of no output type (the
    /// projection rules that out).
    pub fn encode_fields<'a>(
        &self,
        field: impl Fn(usize) -> Result<FieldOut<'a>, String>,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        out.extend_from_slice(self.frame.as_ref().map_or(&[][..], |f| &f[..]));
        match self.format {
            Format::Avro => {
                for i in 0..self.names.len() {
                    field(i)?.write_avro(out)?;
                }
                Ok(())
            }
            Format::Json => {
                let fields = JsonFields {
                    encoder: self,
                    field,
                };
                serde_json::to_writer(out, &fields).map_err(|e| e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn encoder(format: Format) -> OutputEncoder {
        let fields = [
            json!({"name": "s", "type": "string"}),
            json!({"name": "n", "type": ["null", "long"]}),
            json!({"name": "m", "type": ["null", "long"]}),
            json!({"name": "x", "type": "double"}),
            json!({"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}}),
            json!({"name": "b", "type": "boolean"}),
        ];
        OutputEncoder::with_fields("Out", None, &fields, 0, format).unwrap()
    }

    const TRUE: Value = Value::Boolean(true);

    fn field(i: usize) -> Result<FieldOut<'static>, String> {
        let (value, nullable) = match i {
            0 => (FieldValue::String("é-1"), false),
            1 => (FieldValue::Long(-3), true),
            2 => (FieldValue::Null, true),
            3 => (FieldValue::Double(1.5), false),
            4 => (FieldValue::TimestampMillis(1_700_000_000_000), false),
            5 => (FieldValue::AsRead(&TRUE), false),
            _ => return Err(format!("no field {i}")),
        };
        Ok(FieldOut { value, nullable })
    }

    /// The same record as owned values, for apache-avro and serde_json.
    fn owned() -> Vec<(String, Value)> {
        vec![
            ("s".into(), Value::String("é-1".into())),
            ("n".into(), Value::Union(1, Box::new(Value::Long(-3)))),
            ("m".into(), Value::Union(0, Box::new(Value::Null))),
            ("x".into(), Value::Double(1.5)),
            ("t".into(), Value::TimestampMillis(1_700_000_000_000)),
            ("b".into(), TRUE),
        ]
    }

    #[test]
    fn avro_fields_are_written_as_apache_avro_writes_the_record() {
        let e = encoder(Format::Avro);
        let mut out = Vec::new();
        e.encode_fields(field, &mut out).unwrap();
        let schema = apache_avro::Schema::parse_str(&e.registered().1).unwrap();
        let expected = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
            .build()
            .and_then(|w| w.write_value_to_vec(Value::Record(owned())))
            .unwrap();
        assert_eq!(out, expected);
    }

    #[test]
    fn json_fields_are_written_as_a_serde_json_map_writes_them() {
        let e = encoder(Format::Json);
        let mut out = Vec::new();
        e.encode_fields(field, &mut out).unwrap();
        let map: serde_json::Map<String, serde_json::Value> = owned()
            .into_iter()
            .map(|(k, v)| (k, avro_to_json(v)))
            .collect();
        assert_eq!(out, serde_json::to_vec(&map).unwrap());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"b":true,"m":null,"n":-3,"s":"é-1","t":1700000000000,"x":1.5}"#
        );
        // A double that is not finite is null, as in a serde_json value.
        let nan = |i| match i {
            3 => Ok(FieldOut {
                value: FieldValue::Double(f64::NAN),
                nullable: false,
            }),
            i => field(i),
        };
        let mut out = Vec::new();
        e.encode_fields(nan, &mut out).unwrap();
        assert!(String::from_utf8(out).unwrap().contains(r#""x":null"#));
    }

    #[test]
    fn a_field_that_cannot_be_written_fails_the_record_with_its_reason() {
        for format in [Format::Avro, Format::Json] {
            let e = encoder(format);
            let bad = |i| match i {
                4 => Err("select: field \"t\" is null".to_string()),
                i => field(i),
            };
            let err = e.encode_fields(bad, &mut Vec::new()).unwrap_err();
            assert!(err.contains("field \"t\" is null"), "{format:?}: {err}");
        }
    }
}
