//! A decoded record: field values by position.

use apache_avro::types::Value;

/// Why a field could not be read as the type a step needs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FieldError {
    /// The field holds null.
    #[error("field #{index} is null")]
    Null { index: usize },
    /// The field holds another type.
    #[error("field #{index} holds {found}, expected {expected}")]
    WrongType {
        index: usize,
        expected: &'static str,
        found: String,
    },
    /// The record has fewer fields than the layout.
    #[error("field #{index} is missing")]
    Missing { index: usize },
}

impl FieldError {
    /// This error, naming the field `name` instead of its position: what
    /// a dead letter's `streamfold.error` says.
    pub fn in_field(&self, name: &str) -> String {
        match self {
            Self::Null { .. } => format!("field {name:?} is null"),
            Self::WrongType {
                expected, found, ..
            } => format!("field {name:?} holds {found}, expected {expected}"),
            Self::Missing { .. } => format!("field {name:?} is missing"),
        }
    }
}

/// One decoded record. Values are in layout order.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The field values.
    pub values: Vec<Value>,
}

fn unwrap_union(v: &Value) -> &Value {
    match v {
        Value::Union(_, inner) => inner,
        other => other,
    }
}

impl Record {
    fn value(&self, index: usize) -> Result<&Value, FieldError> {
        match self.values.get(index).map(unwrap_union) {
            None => Err(FieldError::Missing { index }),
            Some(Value::Null) => Err(FieldError::Null { index }),
            Some(v) => Ok(v),
        }
    }

    fn wrong(index: usize, expected: &'static str, v: &Value) -> FieldError {
        let found = format!("{v:?}");
        let found = found.chars().take(60).collect();
        FieldError::WrongType {
            index,
            expected,
            found,
        }
    }

    /// The string at `index` (enum symbols count as strings).
    ///
    /// # Errors
    /// When the field is null, missing or not a string.
    pub fn str(&self, index: usize) -> Result<&str, FieldError> {
        match self.value(index)? {
            Value::String(s) | Value::Enum(_, s) => Ok(s),
            v => Err(Self::wrong(index, "string", v)),
        }
    }

    /// The group-key text of the field at `index`: a string as is, an
    /// integer in decimal (written into `buf`, so nothing is allocated).
    ///
    /// # Errors
    /// When the field is null, missing, or neither a string nor an integer.
    pub fn key_part<'a>(
        &'a self,
        index: usize,
        buf: &'a mut itoa::Buffer,
    ) -> Result<&'a str, FieldError> {
        match self.value(index)? {
            Value::String(s) | Value::Enum(_, s) => Ok(s),
            Value::Long(n) | Value::TimestampMillis(n) => Ok(buf.format(*n)),
            Value::Int(n) => Ok(buf.format(*n)),
            v => Err(Self::wrong(index, "string, int, long or timestamp", v)),
        }
    }

    /// The integer at `index` (`int`, `long` or a timestamp in millis).
    ///
    /// # Errors
    /// When the field is null, missing or not an integer.
    pub fn i64(&self, index: usize) -> Result<i64, FieldError> {
        match self.value(index)? {
            Value::Long(n) | Value::TimestampMillis(n) => Ok(*n),
            Value::Int(n) => Ok(i64::from(*n)),
            v => Err(Self::wrong(index, "long", v)),
        }
    }

    /// The number at `index` as a float.
    ///
    /// # Errors
    /// When the field is null, missing or not numeric.
    pub fn f64(&self, index: usize) -> Result<f64, FieldError> {
        match self.value(index)? {
            Value::Double(x) => Ok(*x),
            Value::Float(x) => Ok(f64::from(*x)),
            Value::Long(n) => Ok(*n as f64),
            Value::Int(n) => Ok(f64::from(*n)),
            v => Err(Self::wrong(index, "double", v)),
        }
    }

    /// Sets the value at `index`, growing the record if a transform added it.
    pub fn set(&mut self, index: usize, value: Value) {
        if index >= self.values.len() {
            self.values.resize(index + 1, Value::Null);
        }
        self.values[index] = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_reads_unwrap_unions_and_report_nulls() {
        let r = Record {
            values: vec![
                Value::Union(1, Box::new(Value::String("m-1".into()))),
                Value::Union(0, Box::new(Value::Null)),
                Value::Int(7),
            ],
        };
        assert_eq!(r.str(0).unwrap(), "m-1");
        assert_eq!(r.str(1), Err(FieldError::Null { index: 1 }));
        assert_eq!(r.i64(2).unwrap(), 7);
        assert!(matches!(r.str(2), Err(FieldError::WrongType { .. })));
        assert_eq!(r.i64(9), Err(FieldError::Missing { index: 9 }));
    }
}
