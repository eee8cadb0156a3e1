//! The output record: its schema, derived from the pipeline's aggregates,
//! and encoding window results with it (Avro datum or JSON).

use apache_avro::Schema;
use apache_avro::types::Value;

use serde_json::{Value as Json, json};

use super::avro::{write_avro, write_avro_long, write_avro_str};
use super::framing::SchemaKind;
use super::json::{avro_to_json, json_schema};
use super::schema::RecordSchema;
use crate::aggregate::AggSpec;
use crate::config::Format;

/// One closed window, ready to be written.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowOutput {
    /// The group key.
    pub key: String,
    /// Inclusive window start, epoch millis.
    pub start: i64,
    /// Exclusive window end, epoch millis.
    pub end: i64,
    /// Aggregate values, in output-field order.
    pub values: Vec<Value>,
}

/// Writes [`WindowOutput`]s as records of the derived output schema.
#[derive(Debug, Clone)]
pub struct OutputEncoder {
    schema: Schema,
    json: serde_json::Value,
    pub(super) format: Format,
    pub(super) names: Vec<String>,
    /// The fields by name in byte order: the order of a JSON object's keys
    /// (a `serde_json` map's).
    pub(super) json_order: Vec<usize>,
    key_columns: usize,
    /// The Schema Registry frame every value starts with, if any.
    pub(super) frame: Option<[u8; 5]>,
}

/// Joins the values of a composite key: `a|b`, with `|` and `\\` escaped by
/// a backslash, so that [`split_key`] recovers the parts exactly.
pub fn join_key(parts: &[&str]) -> String {
    let mut key = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        push_key_part(&mut key, i, p);
    }
    key
}

/// Appends part number `i` of a composite key to `key` as [`join_key`]
/// joins it: a `|` before every part but the first, escapes where needed.
pub fn push_key_part(key: &mut String, i: usize, part: &str) {
    if i > 0 {
        key.push('|');
    }
    if !part.contains(['\\', '|']) {
        key.push_str(part);
        return;
    }
    for c in part.chars() {
        if c == '\\' || c == '|' {
            key.push('\\');
        }
        key.push(c);
    }
}

/// Splits a key made by [`join_key`].
pub fn split_key(key: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = key.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => parts.last_mut().expect("never empty").extend(chars.next()),
            '|' => parts.push(String::new()),
            c => parts.last_mut().expect("never empty").push(c),
        }
    }
    parts
}

/// Why a window could not be encoded (a bug: the schema is derived).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode window [{start}, {end}) of key {key:?}: {reason}")]
pub struct EncodeError {
    key: String,
    start: i64,
    end: i64,
    reason: String,
}

/// The record name of a derived schema: `merchant-stats` → `MerchantStats`.
pub fn record_name(pipeline: &str) -> String {
    pipeline
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

impl OutputEncoder {
    /// Derives the output schema: `key`, `window_start`, `window_end`, then
    /// the fields of every aggregate in order.
    ///
    /// # Errors
    /// When two aggregates produce the same field name.
    /// `key_columns` (for composite keys) adds one string field per key
    /// part after the window bounds.
    pub fn derive(
        name: &str,
        namespace: Option<&str>,
        key_columns: &[String],
        specs: &[AggSpec],
        format: Format,
    ) -> Result<Self, String> {
        let fields = Self::window_fields(key_columns, specs);
        Self::with_fields(name, namespace, &fields, key_columns.len(), format)
    }

    /// The fields of a window result: `key`, `window_start`, `window_end`,
    /// the key columns, then the fields of every aggregate in order.
    pub fn window_fields(key_columns: &[String], specs: &[AggSpec]) -> Vec<Json> {
        let ts = json!({"type": "long", "logicalType": "timestamp-millis"});
        let mut fields = vec![
            json!({"name": "key", "type": "string", "doc": "The group key (also the record key)."}),
            json!({"name": "window_start", "type": ts, "doc": "Inclusive window start."}),
            json!({"name": "window_end", "type": ts, "doc": "Exclusive window end."}),
        ];
        for k in key_columns {
            fields.push(json!({"name": k, "type": "string", "doc": "Part of the group key."}));
        }
        for s in specs {
            fields.extend(s.output_fields());
        }
        fields
    }

    /// An encoder of records of `fields` (Avro field definitions), named
    /// `name` in `namespace`: window results ([`Self::encode`], with
    /// `key_columns` key parts after the bounds) or a stateless pipeline's
    /// records ([`Self::encode_fields`]).
    ///
    /// # Errors
    /// Two fields of one name, or fields that make no valid schema.
    pub fn with_fields(
        name: &str,
        namespace: Option<&str>,
        fields: &[Json],
        key_columns: usize,
        format: Format,
    ) -> Result<Self, String> {
        let mut names: Vec<String> = Vec::new();
        for f in fields {
            let n = f["name"].as_str().unwrap_or_default().to_string();
            if names.contains(&n) {
                return Err(format!(
                    "two output fields are called {n:?}: give one of them another name"
                ));
            }
            names.push(n);
        }
        let mut json = json!({"type": "record", "name": name, "fields": fields});
        if let Some(ns) = namespace {
            json["namespace"] = json!(ns);
        }
        let schema = Schema::parse_str(&json.to_string())
            .map_err(|e| format!("derived output schema is invalid: {e}"))?;
        let mut json_order: Vec<usize> = (0..names.len()).collect();
        json_order.sort_by(|a, b| names[*a].cmp(&names[*b]));
        Ok(Self {
            schema,
            json,
            format,
            names,
            json_order,
            key_columns,
            frame: None,
        })
    }

    /// Starts every value with the Schema Registry frame of schema `id`
    /// (magic byte 0x00 and the id), as Confluent's serializers write it.
    pub fn frame_with(&mut self, id: u32) {
        let mut frame = Vec::with_capacity(5);
        super::framing::frame_id(id, &mut frame);
        self.frame = frame.try_into().ok();
    }

    /// The derived schema as it is registered, and its kind: the Avro
    /// schema for Avro output, its JSON Schema (see `json/schema.rs`) for
    /// JSON output; compact JSON.
    pub fn registered(&self) -> (SchemaKind, String) {
        match self.format {
            Format::Avro => (SchemaKind::Avro, self.json.to_string()),
            Format::Json => (SchemaKind::Json, json_schema(&self.schema).to_string()),
        }
    }

    /// The JSON Schema of the JSON output, as pretty JSON.
    pub fn json_schema_text(&self) -> String {
        serde_json::to_string_pretty(&json_schema(&self.schema)).unwrap_or_default()
    }

    /// The output record's full name (`namespace.name`).
    pub fn full_name(&self) -> String {
        match &self.schema {
            Schema::Record(r) => r.name.fullname(None),
            _ => String::new(),
        }
    }

    /// The derived schema as pretty JSON (what `streamfold schema` prints).
    pub fn schema_text(&self) -> String {
        serde_json::to_string_pretty(&self.json).unwrap_or_default()
    }

    /// Compares a hand-written schema file with the derived schema.
    /// Returns one message per difference, naming the file and field.
    pub fn differences(&self, file: &RecordSchema) -> Vec<String> {
        let Schema::Record(derived) = &self.schema else {
            return vec!["derived schema is not a record".into()];
        };
        let Schema::Record(given) = &file.schema else {
            return vec![format!("{}: not a record schema", file.path.display())];
        };
        let path = file.path.display();
        let mut out = Vec::new();
        for (i, d) in derived.fields.iter().enumerate() {
            match given.fields.iter().position(|g| g.name == d.name) {
                None => out.push(format!(
                    "{path}: field {:?}: expected {}, found no such field",
                    d.name,
                    d.schema.canonical_form()
                )),
                Some(j) => {
                    let g = &given.fields[j];
                    if g.schema.canonical_form() != d.schema.canonical_form() {
                        out.push(format!(
                            "{path}: field {:?}: expected {}, found {}",
                            d.name,
                            d.schema.canonical_form(),
                            g.schema.canonical_form()
                        ));
                    } else if i != j {
                        out.push(format!(
                            "{path}: field {:?}: expected at position {i}, found at {j}",
                            d.name
                        ));
                    }
                }
            }
        }
        for g in &given.fields {
            if !self.names.contains(&g.name) {
                out.push(format!(
                    "{path}: field {:?}: expected no such field (not produced by any aggregate), found {}",
                    g.name,
                    g.schema.canonical_form()
                ));
            }
        }
        out
    }

    /// Encodes one window.
    ///
    /// # Errors
    /// Only on a value/schema mismatch, which derivation rules out.
    pub fn encode(&self, w: &WindowOutput) -> Result<Vec<u8>, EncodeError> {
        let err = |reason: String| EncodeError {
            key: w.key.clone(),
            start: w.start,
            end: w.end,
            reason,
        };
        match self.format {
            Format::Avro => {
                // Written straight from the values, in the derived schema's
                // field order: no `Value::Record` with owned field names,
                // no per-record schema resolution or validation. The tests
                // hold it byte-equal to apache-avro's writer.
                let mut out = Vec::with_capacity(69 + w.key.len() * 2);
                out.extend_from_slice(self.frame.as_ref().map_or(&[][..], |f| &f[..]));
                write_avro_str(&w.key, &mut out);
                write_avro_long(w.start, &mut out);
                write_avro_long(w.end, &mut out);
                if self.key_columns > 0 {
                    let mut parts = split_key(&w.key);
                    parts.resize(self.key_columns, String::new());
                    for p in &parts {
                        write_avro_str(p, &mut out);
                    }
                }
                for v in &w.values {
                    write_avro(v, &mut out).map_err(err)?;
                }
                Ok(out)
            }
            Format::Json => {
                let map: serde_json::Map<String, serde_json::Value> = self
                    .names
                    .iter()
                    .cloned()
                    .zip(self.values(w).map(avro_to_json))
                    .collect();
                let mut out = self.frame.map_or_else(Vec::new, |f| f.to_vec());
                serde_json::to_writer(&mut out, &map).map_err(|e| err(e.to_string()))?;
                Ok(out)
            }
        }
    }

    /// Window `w` as the record a reader of this schema decodes: every
    /// field's value, in schema order.
    pub fn record(&self, w: &WindowOutput) -> crate::record::Record {
        crate::record::Record {
            values: self.values(w).collect(),
        }
    }

    /// Every output field's value, in schema order.
    fn values<'a>(&self, w: &'a WindowOutput) -> impl Iterator<Item = Value> + 'a {
        let mut parts = if self.key_columns > 0 {
            split_key(&w.key)
        } else {
            Vec::new()
        };
        parts.resize(self.key_columns, String::new());
        [
            Value::String(w.key.clone()),
            Value::TimestampMillis(w.start),
            Value::TimestampMillis(w.end),
        ]
        .into_iter()
        .chain(parts.into_iter().map(Value::String))
        .chain(w.values.iter().cloned())
    }

    /// apache-avro's encoding of the same window: what [`Self::encode`]
    /// must equal, byte for byte.
    #[cfg(test)]
    pub(crate) fn encode_with_library(&self, w: &WindowOutput) -> Vec<u8> {
        let fields: Vec<(String, Value)> = self.names.iter().cloned().zip(self.values(w)).collect();
        apache_avro::writer::datum::GenericDatumWriter::builder(&self.schema)
            .build()
            .and_then(|wr| wr.write_value_to_vec(Value::Record(fields)))
            .expect("a value of the derived schema")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::input::Decoder;
    use crate::config::{AggregateConfig, AggregateFn};
    use crate::record::{Field, FieldType, Layout};
    use std::path::Path;

    fn specs() -> Vec<AggSpec> {
        let layout = Layout::new(vec![Field {
            name: "v".into(),
            ty: FieldType::Double,
            nullable: false,
        }]);
        [(AggregateFn::Count, None), (AggregateFn::Mean, Some("v"))]
            .iter()
            .map(|(f, field)| {
                let c = AggregateConfig {
                    name: None,
                    function: *f,
                    field: field.map(str::to_string),
                    quantiles: None,
                    relative_error: None,
                    precision: None,
                    exact: None,
                    k: None,
                    value: None,
                };
                AggSpec::resolve(&c, &layout).unwrap()
            })
            .collect()
    }

    fn window() -> WindowOutput {
        WindowOutput {
            key: "m-1".into(),
            start: 60_000,
            end: 120_000,
            values: vec![Value::Long(2), Value::Double(1.5)],
        }
    }

    #[test]
    fn avro_output_decodes_with_the_derived_schema() {
        let enc = OutputEncoder::derive("Out", None, &[], &specs(), Format::Avro).unwrap();
        let bytes = enc.encode(&window()).unwrap();
        let schema = RecordSchema::parse(Path::new("derived"), &enc.schema_text()).unwrap();
        let r = Decoder::new(schema, Format::Avro)
            .batch()
            .unwrap()
            .decode(Some(&bytes))
            .unwrap();
        assert_eq!(r.str(0).unwrap(), "m-1");
        assert_eq!(r.i64(1).unwrap(), 60_000);
        assert_eq!(r.i64(3).unwrap(), 2);
        assert_eq!(r.f64(4).unwrap(), 1.5);
    }

    #[test]
    fn json_output_has_every_field() {
        let enc = OutputEncoder::derive("Out", None, &[], &specs(), Format::Json).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&enc.encode(&window()).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"key":"m-1","window_start":60000,"window_end":120000,"count":2,"mean":1.5})
        );
    }

    #[test]
    fn differences_name_each_field() {
        let enc = OutputEncoder::derive("Out", None, &[], &specs(), Format::Avro).unwrap();
        let given = RecordSchema::parse(
            Path::new("o.avsc"),
            r#"{"type":"record","name":"O","fields":[
                {"name":"key","type":"string"},
                {"name":"window_start","type":{"type":"long","logicalType":"timestamp-millis"}},
                {"name":"window_end","type":{"type":"long","logicalType":"timestamp-millis"}},
                {"name":"count","type":"int"},
                {"name":"max","type":"double"}]}"#,
        )
        .unwrap();
        let d = enc.differences(&given);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(
            d[0].contains("\"count\": expected \"long\", found \"int\""),
            "{d:?}"
        );
        assert!(d[1].contains("\"mean\"") && d[1].contains("no such field"));
        assert!(d[2].contains("\"max\"") && d[2].contains("not produced"));
    }

    #[test]
    fn composite_keys_split_back_exactly() {
        for parts in [vec!["a", "b"], vec!["a|b", "c\\d", ""], vec!["x"]] {
            let key = join_key(&parts);
            assert_eq!(split_key(&key), parts, "{key}");
        }
        assert_eq!(join_key(&["m-1", "DE"]), "m-1|DE");
        assert_eq!(join_key(&["", "a|b\\"]), "|a\\|b\\\\");
    }

    #[test]
    fn record_names() {
        assert_eq!(record_name("merchant-stats"), "MerchantStats");
        assert_eq!(record_name("click_sessions"), "ClickSessions");
    }
}
