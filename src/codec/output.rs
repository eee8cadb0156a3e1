//! Encoding window results per the output schema (Avro datum or JSON).

use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;

use super::schema::{FieldType, RecordSchema};
use crate::aggregate::{AggregateValue, Partial};
use crate::config::{AggregateKind, Format};

/// One closed window, ready to be written.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowOutput {
    /// The group key.
    pub key: String,
    /// Inclusive window start, epoch millis.
    pub start: i64,
    /// Exclusive window end, epoch millis.
    pub end: i64,
    /// The aggregates.
    pub partial: Partial,
}

#[derive(Debug, Clone, Copy)]
enum Column {
    Key,
    Start(FieldType),
    End(FieldType),
    Agg(AggregateKind),
}

/// Writes [`WindowOutput`]s as records of the output schema.
#[derive(Debug, Clone)]
pub struct OutputEncoder {
    schema: RecordSchema,
    format: Format,
    columns: Vec<(String, Column)>,
}

/// Why a window could not be encoded (a bug or a schema mismatch).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode window [{start}, {end}) of key {key:?} with {schema}: {reason}")]
pub struct EncodeError {
    key: String,
    start: i64,
    end: i64,
    schema: String,
    reason: String,
}

impl OutputEncoder {
    /// Checks that `schema` has exactly the fields the pipeline produces.
    ///
    /// # Errors
    /// One message per mismatched field, each naming the schema file, the
    /// field, what was expected and what was found.
    pub fn new(
        schema: RecordSchema,
        format: Format,
        aggregates: &[AggregateKind],
    ) -> Result<Self, Vec<String>> {
        let file = schema.path.display().to_string();
        let mut problems = Vec::new();
        let mut columns = Vec::new();
        for f in &schema.fields {
            let time = matches!(f.ty, FieldType::TimestampMillis | FieldType::Long);
            let (col, ok, expected) =
                match f.name.as_str() {
                    "key" => (Column::Key, f.ty == FieldType::String, "string"),
                    "window_start" => (Column::Start(f.ty), time, "timestamp-millis or long"),
                    "window_end" => (Column::End(f.ty), time, "timestamp-millis or long"),
                    name => match aggregates.iter().find(|a| a.field_name() == name) {
                        Some(AggregateKind::Count) => (
                            Column::Agg(AggregateKind::Count),
                            f.ty == FieldType::Long,
                            "long",
                        ),
                        Some(a) => (Column::Agg(*a), f.ty == FieldType::Double, "double"),
                        None => {
                            problems.push(format!(
                            "{file}: field {name:?}: expected one of key, window_start, window_end \
                             or a configured aggregate ({}), found an extra field",
                            aggregates.iter().map(|a| a.field_name()).collect::<Vec<_>>().join(", ")
                        ));
                            continue;
                        }
                    },
                };
            if !ok || f.nullable {
                problems.push(format!(
                    "{file}: field {:?}: expected {expected}, found {}{}",
                    f.name,
                    if f.nullable { "nullable " } else { "" },
                    f.ty.describe()
                ));
            }
            columns.push((f.name.clone(), col));
        }
        let required = ["key", "window_start", "window_end"]
            .into_iter()
            .chain(aggregates.iter().map(|a| a.field_name()));
        for name in required {
            if schema.field(name).is_none() {
                problems.push(format!(
                    "{file}: field {name:?}: expected in the output schema, found no such field"
                ));
            }
        }
        if problems.is_empty() {
            Ok(Self {
                schema,
                format,
                columns,
            })
        } else {
            Err(problems)
        }
    }

    fn values(&self, w: &WindowOutput) -> Vec<(String, Value)> {
        self.columns
            .iter()
            .map(|(name, col)| {
                let time = |ty: &FieldType, t: i64| match ty {
                    FieldType::TimestampMillis => Value::TimestampMillis(t),
                    _ => Value::Long(t),
                };
                let v = match col {
                    Column::Key => Value::String(w.key.clone()),
                    Column::Start(ty) => time(ty, w.start),
                    Column::End(ty) => time(ty, w.end),
                    Column::Agg(a) => match w.partial.value(*a) {
                        AggregateValue::Count(n) => Value::Long(n as i64),
                        AggregateValue::Number(x) => Value::Double(x),
                    },
                };
                (name.clone(), v)
            })
            .collect()
    }

    /// Encodes one window.
    ///
    /// # Errors
    /// Only on a schema/value mismatch, which [`OutputEncoder::new`] rules out.
    pub fn encode(&self, w: &WindowOutput) -> Result<Vec<u8>, EncodeError> {
        let fields = self.values(w);
        let err = |reason: String| EncodeError {
            key: w.key.clone(),
            start: w.start,
            end: w.end,
            schema: self.schema.path.display().to_string(),
            reason,
        };
        match self.format {
            Format::Avro => {
                let writer = GenericDatumWriter::builder(&self.schema.schema)
                    .build()
                    .map_err(|e| err(e.to_string()))?;
                writer
                    .write_value_to_vec(Value::Record(fields))
                    .map_err(|e| err(e.to_string()))
            }
            Format::Json => {
                let map: serde_json::Map<String, serde_json::Value> = fields
                    .into_iter()
                    .map(|(k, v)| (k, avro_to_json(v)))
                    .collect();
                serde_json::to_vec(&map).map_err(|e| err(e.to_string()))
            }
        }
    }
}

/// Converts a decoded Avro value to JSON for people and JSON outputs.
/// Timestamps stay epoch millis; bytes become arrays of numbers.
pub fn avro_to_json(v: Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Null => J::Null,
        Value::Boolean(b) => J::Bool(b),
        Value::Int(n) | Value::Date(n) | Value::TimeMillis(n) => J::from(n),
        Value::Long(n)
        | Value::TimestampMillis(n)
        | Value::TimestampMicros(n)
        | Value::TimestampNanos(n)
        | Value::LocalTimestampMillis(n)
        | Value::LocalTimestampMicros(n)
        | Value::LocalTimestampNanos(n)
        | Value::TimeMicros(n) => J::from(n),
        Value::Float(x) => J::from(f64::from(x)),
        Value::Double(x) => J::from(x),
        Value::String(s) | Value::Enum(_, s) => J::String(s),
        Value::Union(_, inner) => avro_to_json(*inner),
        Value::Array(items) => J::Array(items.into_iter().map(avro_to_json).collect()),
        Value::Map(m) => J::Object(m.into_iter().map(|(k, v)| (k, avro_to_json(v))).collect()),
        Value::Record(fields) => J::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k, avro_to_json(v)))
                .collect(),
        ),
        other => serde_json::to_value(format!("{other:?}")).unwrap_or(J::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::input::Decoder;
    use std::path::Path;

    const OUT: &str = r#"{"type":"record","name":"O","fields":[
        {"name":"key","type":"string"},
        {"name":"window_start","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"window_end","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"count","type":"long"},
        {"name":"mean","type":"double"}]}"#;

    fn window() -> WindowOutput {
        let mut partial = Partial::default();
        partial.add(1_000_000);
        partial.add(2_000_000);
        WindowOutput {
            key: "m-1".into(),
            start: 60_000,
            end: 120_000,
            partial,
        }
    }

    #[test]
    fn avro_output_decodes_with_the_schema() {
        let schema = RecordSchema::parse(Path::new("o.avsc"), OUT).unwrap();
        let aggs = [AggregateKind::Count, AggregateKind::Mean];
        let enc = OutputEncoder::new(schema.clone(), Format::Avro, &aggs).unwrap();
        let bytes = enc.encode(&window()).unwrap();
        let dec = Decoder::new(schema, Format::Avro);
        let r = dec.batch().unwrap().decode(Some(&bytes)).unwrap();
        assert_eq!(r.str(0).unwrap(), "m-1");
        assert_eq!(r.i64(1).unwrap(), 60_000);
        assert_eq!(r.i64(3).unwrap(), 2);
        assert_eq!(r.f64(4).unwrap(), 1.5);
    }

    #[test]
    fn json_output_has_every_field() {
        let schema = RecordSchema::parse(Path::new("o.avsc"), OUT).unwrap();
        let aggs = [AggregateKind::Count, AggregateKind::Mean];
        let enc = OutputEncoder::new(schema, Format::Json, &aggs).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&enc.encode(&window()).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"key":"m-1","window_start":60000,"window_end":120000,"count":2,"mean":1.5})
        );
    }

    #[test]
    fn schema_mismatches_are_all_named() {
        let schema = RecordSchema::parse(Path::new("o.avsc"), OUT).unwrap();
        let problems = OutputEncoder::new(
            schema,
            Format::Avro,
            &[AggregateKind::Count, AggregateKind::Max],
        )
        .unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("\"mean\"") && problems[0].contains("extra field"));
        assert!(problems[1].contains("\"max\"") && problems[1].contains("no such field"));
    }
}
