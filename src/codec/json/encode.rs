//! Avro values as JSON: for JSON outputs and for people (`consume`).

use apache_avro::types::Value;

use crate::codec::avro::integer;

/// Converts a decoded Avro value to JSON for people and JSON outputs.
/// Timestamps stay epoch millis; bytes become arrays of numbers.
pub fn avro_to_json(v: Value) -> serde_json::Value {
    use serde_json::Value as J;
    if let Some(n) = integer(&v) {
        return J::from(n);
    }
    match v {
        Value::Null => J::Null,
        Value::Boolean(b) => J::Bool(b),
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
