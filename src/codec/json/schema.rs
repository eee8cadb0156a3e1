//! The JSON Schema of the JSON that records of an Avro schema are written
//! as (by `avro_to_json`): what a registry-framed JSON output registers,
//! and what `produce` registers for framed JSON input, so that Confluent's
//! JSON Schema deserializer validates and reads them.
//!
//! Draft-07, the serializers' default. Every field is required (a null is
//! written as `null`, never left out) and no other property is allowed.

use apache_avro::Schema;
use serde_json::{Value as Json, json};

/// The draft-07 JSON Schema document for JSON records of `schema`.
pub fn json_schema(schema: &Schema) -> Json {
    let mut doc = of(schema);
    if let Json::Object(m) = &mut doc {
        m.insert(
            "$schema".into(),
            json!("http://json-schema.org/draft-07/schema#"),
        );
    }
    doc
}

/// The JSON Schema of one value of `schema`.
fn of(schema: &Schema) -> Json {
    match schema {
        Schema::Null => json!({"type": "null"}),
        Schema::Boolean => json!({"type": "boolean"}),
        Schema::Int
        | Schema::Long
        | Schema::Date
        | Schema::TimeMillis
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => json!({"type": "integer"}),
        // NaN and the infinities have no JSON number: they are written as
        // null.
        Schema::Float | Schema::Double => json!({"type": ["number", "null"]}),
        Schema::String => json!({"type": "string"}),
        Schema::Enum(e) => json!({"type": "string", "enum": e.symbols}),
        Schema::Array(a) => json!({"type": "array", "items": of(&a.items)}),
        Schema::Map(m) => json!({"type": "object", "additionalProperties": of(&m.types)}),
        Schema::Union(u) => json!({"anyOf": u.variants().iter().map(of).collect::<Vec<_>>()}),
        Schema::Record(r) => {
            let properties: serde_json::Map<String, Json> = r
                .fields
                .iter()
                .map(|f| (f.name.clone(), of(&f.schema)))
                .collect();
            let required: Vec<&str> = r.fields.iter().map(|f| f.name.as_str()).collect();
            json!({
                "title": r.name.fullname(None),
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false,
            })
        }
        // Bytes, fixed, decimals, UUIDs, durations and references to named
        // types: any value.
        _ => json!({}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_result_s_schema_is_an_object_of_its_fields() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"Out","namespace":"sf","fields":[
                {"name":"key","type":"string"},
                {"name":"window_start","type":{"type":"long","logicalType":"timestamp-millis"}},
                {"name":"count","type":"long"},
                {"name":"mean","type":["null","double"]},
                {"name":"q","type":{"type":"array","items":"double"}},
                {"name":"top","type":{"type":"map","values":"long"}}]}"#,
        )
        .unwrap();
        assert_eq!(
            json_schema(&schema),
            json!({
                "$schema": "http://json-schema.org/draft-07/schema#",
                "title": "sf.Out",
                "type": "object",
                "properties": {
                    "key": {"type": "string"},
                    "window_start": {"type": "integer"},
                    "count": {"type": "integer"},
                    "mean": {"anyOf": [{"type": "null"}, {"type": ["number", "null"]}]},
                    "q": {"type": "array", "items": {"type": ["number", "null"]}},
                    "top": {"type": "object", "additionalProperties": {"type": "integer"}},
                },
                "required": ["key", "window_start", "count", "mean", "q", "top"],
                "additionalProperties": false,
            })
        );
    }
}
