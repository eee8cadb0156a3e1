//! The output of a stateless pipeline (one without a window): which fields
//! of each record, after transforms and derived fields, make its output
//! record, under which names, and what keys it.

use serde_json::{Value as Json, json};

use crate::codec::{FieldOut, FieldValue, OutputEncoder, RecordSchema};
use crate::config::{OutputKey, PipelineConfig};
use crate::record::{FieldError, FieldType, Layout, RawRef, Record};

/// One output field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// Its position in the record.
    pub index: usize,
    /// Its name in the record (for errors).
    pub field: String,
    /// How its value is written.
    pub form: Form,
}

/// How a selected field's value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// A value of one of the record types, written as that type (`long`,
    /// `double`, `string`, `timestamp-millis`; `["null", T]` when
    /// nullable), whatever the input's Avro type was (`int`, `enum`, ...).
    Typed { ty: FieldType, nullable: bool },
    /// A field of another Avro type (boolean, bytes, arrays, records, ...)
    /// that no transform replaced: its schema and value as read.
    AsRead,
}

/// What keys an output record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// The input record's key, as it was.
    Input,
    /// This field's value as text (none where it is null).
    Field(usize),
}

/// A stateless pipeline's output: its fields and key.
#[derive(Debug, Clone)]
pub struct Projection {
    pub fields: Vec<Selected>,
    pub key: KeySource,
}

/// Settings of windowed pipelines that a pipeline without a window sets
/// (each reported through `problem`, with its key).
pub(super) fn stateless_problems(p: &PipelineConfig, problem: &mut dyn FnMut(&str, String)) {
    let why = "applies to windowed pipelines only, and this one has no pipeline.window (it \
               forwards each record's selected fields)";
    for (key, set) in [
        ("pipeline.group_by", !p.group_by.fields().is_empty()),
        ("pipeline.aggregates", !p.aggregates.is_empty()),
        ("pipeline.per_window", !p.per_window.is_empty()),
        ("pipeline.repartition", p.repartition),
        ("pipeline.allowed_lateness", !p.allowed_lateness.is_zero()),
        (
            "pipeline.late_records",
            p.late_records != crate::config::LatePolicy::DeadLetter,
        ),
        ("pipeline.late_topic", p.late_topic.is_some()),
        ("pipeline.idle_timeout", p.idle_timeout.is_some()),
        (
            "pipeline.emit",
            p.emit != crate::config::EmitConfig::OnClose,
        ),
    ] {
        if set {
            problem(key, why.to_string());
        }
    }
}

impl Projection {
    /// The projection of `p` over `layout` (the record after transforms;
    /// `input` is the schema it was read with), and its output fields as
    /// Avro field definitions. `None` when a problem was reported.
    pub(super) fn build(
        p: &PipelineConfig,
        layout: &Layout,
        input: &RecordSchema,
        problem: &mut dyn FnMut(&str, String),
    ) -> Option<(Self, Vec<Json>)> {
        let wanted: Vec<(String, String)> = if p.select.is_empty() {
            (0..layout.len())
                .map(|i| layout.field(i).name.clone())
                .map(|n| (n.clone(), n))
                .collect()
        } else {
            p.select
                .iter()
                .map(|s| (s.field().to_string(), s.name().to_string()))
                .collect()
        };
        let mut fields = Vec::with_capacity(wanted.len());
        let mut schema = Vec::with_capacity(wanted.len());
        let mut ok = true;
        for (i, (field, name)) in wanted.iter().enumerate() {
            let Some(index) = layout.index_of(field) else {
                problem(
                    &format!("pipeline.select[{i}]"),
                    format!(
                        "field {field:?}: expected a field of the record, found no such field \
                         (in {} after transforms)",
                        input.path.display()
                    ),
                );
                ok = false;
                continue;
            };
            let f = layout.field(index);
            // A field no transform replaced keeps its input type.
            let as_read = input.fields.get(index).filter(|g| *g == f).and_then(|_| {
                let apache_avro::Schema::Record(r) = &input.schema else {
                    return None;
                };
                r.fields.get(index)
            });
            let (form, ty) = match (f.ty, as_read) {
                (FieldType::Other, Some(read)) => (
                    Form::AsRead,
                    serde_json::to_value(&read.schema).unwrap_or(Json::Null),
                ),
                (FieldType::Other, None) => {
                    problem(
                        &format!("pipeline.select[{i}]"),
                        format!("field {field:?}: a transform made it of a type it cannot write"),
                    );
                    ok = false;
                    continue;
                }
                (ty, _) => {
                    let t = ty.avro_type();
                    let t = if f.nullable { json!(["null", t]) } else { t };
                    (
                        Form::Typed {
                            ty,
                            nullable: f.nullable,
                        },
                        t,
                    )
                }
            };
            schema.push(json!({"name": name, "type": ty}));
            fields.push(Selected {
                index,
                field: field.clone(),
                form,
            });
        }
        let key = match &p.output_key {
            OutputKey::Input => Some(KeySource::Input),
            OutputKey::Field(name) => match layout.index_of(name) {
                Some(i)
                    if matches!(
                        layout.field(i).ty,
                        FieldType::String | FieldType::Long | FieldType::TimestampMillis
                    ) =>
                {
                    Some(KeySource::Field(i))
                }
                Some(i) => {
                    problem(
                        "pipeline.output_key.field",
                        format!(
                            "field {name:?}: expected string, int, long or timestamp-millis, found {}",
                            layout.field(i).ty.describe()
                        ),
                    );
                    None
                }
                None => {
                    problem(
                        "pipeline.output_key.field",
                        format!(
                            "field {name:?}: expected a field of the record, found no such field"
                        ),
                    );
                    None
                }
            },
        };
        match key {
            Some(key) if ok => Some((Self { fields, key }, schema)),
            _ => None,
        }
    }

    /// Appends the output value of `record` to `out`, its selected fields
    /// written by `encoder` straight from the record.
    ///
    /// # Errors
    /// A value that does not fit its field (a transform wrote another
    /// type, a null where none may be), naming the field.
    pub fn encode(
        &self,
        record: &Record,
        encoder: &OutputEncoder,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        encoder.encode_fields(|i| self.field(record, i), out)
    }

    /// Output field `i`'s value in `record`.
    fn field<'a>(&self, record: &'a Record, i: usize) -> Result<FieldOut<'a>, String> {
        let s = &self.fields[i];
        let (ty, nullable) = match s.form {
            Form::AsRead => (FieldType::Other, false),
            Form::Typed { ty, nullable } => (ty, nullable),
        };
        match typed(record, s.index, ty) {
            Ok(value) => Ok(FieldOut { value, nullable }),
            Err(FieldError::Null { .. }) if nullable => Ok(FieldOut {
                value: FieldValue::Null,
                nullable,
            }),
            Err(e) => Err(format!("select: {}", e.in_field(&s.field))),
        }
    }

    /// The key of the output record of `record` (read as `raw`).
    ///
    /// # Errors
    /// A key field of the wrong type, named.
    pub fn key(
        &self,
        raw: RawRef<'_>,
        record: &Record,
        names: &[String],
    ) -> Result<Option<Vec<u8>>, String> {
        match self.key {
            KeySource::Input => Ok(raw.key().map(<[u8]>::to_vec)),
            KeySource::Field(i) => {
                let mut buf = itoa::Buffer::new();
                match record.key_part(i, &mut buf) {
                    Ok(part) => Ok(Some(part.as_bytes().to_vec())),
                    Err(FieldError::Null { .. }) => Ok(None),
                    Err(e) => Err(format!(
                        "output key: {}",
                        e.in_field(names.get(i).map_or("?", String::as_str))
                    )),
                }
            }
        }
    }
}

/// The value at `index` as a value of `ty` (`Other`: as read).
fn typed(record: &Record, index: usize, ty: FieldType) -> Result<FieldValue<'_>, FieldError> {
    Ok(match ty {
        FieldType::String => FieldValue::String(record.str(index)?),
        FieldType::Long => FieldValue::Long(record.i64(index)?),
        FieldType::Double => FieldValue::Double(record.f64(index)?),
        FieldType::TimestampMillis => FieldValue::TimestampMillis(record.i64(index)?),
        FieldType::Other => FieldValue::AsRead(
            record
                .values
                .get(index)
                .ok_or(FieldError::Missing { index })?,
        ),
    })
}
