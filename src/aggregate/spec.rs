//! Aggregates resolved against the record layout, and the output fields
//! they produce.

use serde_json::{Value as Json, json};

use crate::config::{AggregateConfig, AggregateFn};
use crate::record::{FieldType, Layout};

/// Default relative error of quantile sketches.
pub const DEFAULT_RELATIVE_ERROR: f64 = 0.01;
/// Default HyperLogLog precision (2^14 registers, ~0.8% standard error).
pub const DEFAULT_HLL_PRECISION: u8 = 14;

/// What an aggregate computes, with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum AggKind {
    /// Number of records in the window.
    Count,
    /// Sum of a numeric field.
    Sum,
    /// Smallest value of a numeric field.
    Min,
    /// Largest value of a numeric field.
    Max,
    /// Mean of a numeric field.
    Mean,
    /// Value of the record with the earliest event time (then lowest offset).
    First,
    /// Value of the record with the latest event time (then highest offset).
    Last,
    /// Distinct values: exact, or HyperLogLog with this precision.
    CountDistinct {
        /// `None` counts exactly.
        precision: Option<u8>,
    },
    /// Quantiles from a DDSketch with the given relative error.
    Quantiles {
        /// Quantiles in `(0, 1)`.
        quantiles: Vec<f64>,
        /// Relative error of every reported quantile.
        relative_error: f64,
    },
    /// The `k` most frequent values with their counts.
    TopK {
        /// How many.
        k: usize,
    },
    /// The `values` of the record whose field is the largest (`max`) or
    /// the smallest; among records with the same field, the one whose
    /// values compare smallest (see `state.rs`).
    ArgBy {
        /// Largest (`max-by`) or smallest (`min-by`).
        max: bool,
        /// The fields whose values are the result.
        values: Vec<ValueField>,
    },
}

/// A field whose value an aggregate reports (`max-by`'s `value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueField {
    /// Its name in the record, and in the output after the aggregate's.
    pub name: String,
    /// Its position in the record.
    pub index: usize,
    pub ty: FieldType,
    pub nullable: bool,
}

/// One resolved aggregate.
#[derive(Debug, Clone, PartialEq)]
pub struct AggSpec {
    /// Output field name (quantiles add `_pNN` suffixes).
    pub name: String,
    /// What it computes.
    pub kind: AggKind,
    /// Input field position, type and nullability (none for `count`).
    pub field: Option<(usize, FieldType, bool)>,
}

/// Output field name of quantile `q` of aggregate `name`: 0.5 → `name_p50`,
/// 0.999 → `name_p99_9`.
pub fn quantile_field(name: &str, q: f64) -> String {
    let pct = format!("{}", (q * 100_000.0).round() / 1000.0);
    format!("{name}_p{}", pct.replace('.', "_"))
}

impl AggSpec {
    /// Resolves `config` against `layout`.
    ///
    /// # Errors
    /// A message naming the field, what was expected and what was found.
    pub fn resolve(config: &AggregateConfig, layout: &Layout) -> Result<Self, String> {
        let f = config.function;
        let name = config
            .name
            .clone()
            .unwrap_or_else(|| f.as_str().replace('-', "_"));
        let numeric = matches!(
            f,
            AggregateFn::Sum
                | AggregateFn::Min
                | AggregateFn::Max
                | AggregateFn::Mean
                | AggregateFn::Quantiles
        );
        let field = match (&config.field, f) {
            (None, AggregateFn::Count) => None,
            (Some(_), AggregateFn::Count) => {
                return Err("count takes no field (it counts records)".into());
            }
            (None, _) => return Err(format!("{} needs a field", f.as_str())),
            (Some(fname), _) => {
                let i = layout.index_of(fname).ok_or_else(|| {
                    format!("field {fname:?}: expected a field of the record, found no such field")
                })?;
                let fd = layout.field(i);
                let ok = if numeric {
                    fd.ty.is_numeric()
                } else {
                    fd.ty != FieldType::Other
                };
                if !ok {
                    return Err(format!(
                        "field {fname:?}: {} expected {}, found {}",
                        f.as_str(),
                        if numeric {
                            "long or double"
                        } else {
                            "string, long, double or timestamp"
                        },
                        fd.ty.describe()
                    ));
                }
                Some((i, fd.ty, fd.nullable))
            }
        };
        let extra = |what: &str, given: bool| -> Result<(), String> {
            if given {
                Err(format!("{what} does not apply to {}", f.as_str()))
            } else {
                Ok(())
            }
        };
        extra(
            "quantiles",
            config.quantiles.is_some() && f != AggregateFn::Quantiles,
        )?;
        extra(
            "relative_error",
            config.relative_error.is_some() && f != AggregateFn::Quantiles,
        )?;
        extra("k", config.k.is_some() && f != AggregateFn::TopK)?;
        let by = matches!(f, AggregateFn::MaxBy | AggregateFn::MinBy);
        extra("value", config.value.is_some() && !by)?;
        extra(
            "precision",
            config.precision.is_some() && f != AggregateFn::CountDistinct,
        )?;
        extra(
            "exact",
            config.exact.is_some() && f != AggregateFn::CountDistinct,
        )?;
        let kind = match f {
            AggregateFn::Count => AggKind::Count,
            AggregateFn::Sum => AggKind::Sum,
            AggregateFn::Min => AggKind::Min,
            AggregateFn::Max => AggKind::Max,
            AggregateFn::Mean => AggKind::Mean,
            AggregateFn::First => AggKind::First,
            AggregateFn::Last => AggKind::Last,
            AggregateFn::CountDistinct => {
                if config.exact == Some(true) {
                    if config.precision.is_some() {
                        return Err("give either exact = true or a precision, not both".into());
                    }
                    AggKind::CountDistinct { precision: None }
                } else {
                    let p = config.precision.unwrap_or(DEFAULT_HLL_PRECISION);
                    if !(4..=18).contains(&p) {
                        return Err(format!("precision: expected 4 to 18, found {p}"));
                    }
                    AggKind::CountDistinct { precision: Some(p) }
                }
            }
            AggregateFn::Quantiles => {
                let quantiles = config
                    .quantiles
                    .clone()
                    .unwrap_or_else(|| vec![0.5, 0.95, 0.99]);
                if quantiles.is_empty() || quantiles.iter().any(|q| !(*q > 0.0 && *q < 1.0)) {
                    return Err(format!(
                        "quantiles: expected values strictly between 0 and 1, found {quantiles:?}"
                    ));
                }
                let relative_error = config.relative_error.unwrap_or(DEFAULT_RELATIVE_ERROR);
                if !(relative_error > 0.0 && relative_error < 0.5) {
                    return Err(format!(
                        "relative_error: expected a value in (0, 0.5), found {relative_error}"
                    ));
                }
                AggKind::Quantiles {
                    quantiles,
                    relative_error,
                }
            }
            AggregateFn::TopK => {
                let k = config.k.unwrap_or(10);
                if k == 0 {
                    return Err("k: expected at least 1, found 0".into());
                }
                AggKind::TopK { k }
            }
            AggregateFn::MaxBy | AggregateFn::MinBy => AggKind::ArgBy {
                max: f == AggregateFn::MaxBy,
                values: value_fields(config, layout)?,
            },
        };
        Ok(Self { name, kind, field })
    }

    /// The output fields this aggregate adds, as Avro schema JSON.
    pub fn output_fields(&self) -> Vec<Json> {
        let nullable = self.field.is_some_and(|f| f.2);
        let wrap = |t: Json| if nullable { json!(["null", t]) } else { t };
        let field_type = || self.field.map_or(FieldType::Double, |f| f.1).avro_type();
        match &self.kind {
            AggKind::Count | AggKind::CountDistinct { .. } => {
                vec![json!({"name": self.name, "type": "long"})]
            }
            AggKind::Sum => vec![json!({"name": self.name, "type": "double"})],
            AggKind::Min | AggKind::Max | AggKind::Mean => {
                vec![json!({"name": self.name, "type": wrap(json!("double"))})]
            }
            AggKind::First | AggKind::Last => {
                vec![json!({"name": self.name, "type": wrap(field_type())})]
            }
            AggKind::Quantiles { quantiles, .. } => quantiles
                .iter()
                .map(|q| json!({"name": quantile_field(&self.name, *q), "type": wrap(json!("double"))}))
                .collect(),
            AggKind::ArgBy { values, .. } => values
                .iter()
                .map(|v| {
                    // No value when no record had one (`field` null in
                    // every record, the value itself null, or a derived
                    // field that evaluated to null): always nullable.
                    json!({"name": self.value_field_name(v), "type": json!(["null", v.ty.avro_type()])})
                })
                .collect(),
            AggKind::TopK { .. } => vec![json!({
                "name": self.name,
                "type": {"type": "array", "items": {
                    "type": "record",
                    "name": format!("{}_entry", self.name),
                    "fields": [
                        {"name": "value", "type": "string"},
                        {"name": "count", "type": "long"}
                    ]
                }}
            })],
        }
    }
}

impl AggSpec {
    /// The output field of `max-by`'s value `v`: `<name>_<field>`.
    pub fn value_field_name(&self, v: &ValueField) -> String {
        format!("{}_{}", self.name, v.name)
    }
}

/// The `value` fields of a `max-by` or `min-by`, resolved.
fn value_fields(config: &AggregateConfig, layout: &Layout) -> Result<Vec<ValueField>, String> {
    let f = config.function.as_str();
    let names = match &config.value {
        Some(v) if !v.is_empty() => v,
        _ => {
            return Err(format!(
                "{f} needs value = [\"field\", ...]: the fields to report of the record with \
                 the {} field",
                if config.function == AggregateFn::MaxBy {
                    "largest"
                } else {
                    "smallest"
                }
            ));
        }
    };
    let mut out: Vec<ValueField> = Vec::with_capacity(names.len());
    for name in names {
        if out.iter().any(|v| v.name == *name) {
            return Err(format!("value: field {name:?} is named twice"));
        }
        let index = layout.index_of(name).ok_or_else(|| {
            format!("value: field {name:?}: expected a field of the record, found no such field")
        })?;
        let fd = layout.field(index);
        if fd.ty == FieldType::Other {
            return Err(format!(
                "value: field {name:?}: expected string, long, double or timestamp, found {}",
                fd.ty.describe()
            ));
        }
        out.push(ValueField {
            name: name.clone(),
            index,
            ty: fd.ty,
            nullable: fd.nullable,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_field_names() {
        assert_eq!(quantile_field("dwell", 0.5), "dwell_p50");
        assert_eq!(quantile_field("dwell", 0.95), "dwell_p95");
        assert_eq!(quantile_field("dwell", 0.999), "dwell_p99_9");
    }
}
