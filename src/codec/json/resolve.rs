//! How one JSON scalar becomes a field's value, as apache-avro resolves
//! it, and which schema field a key names: shared by the direct decoder's
//! two readers, the scanner (`scan.rs`) and the serde one (`decode.rs`),
//! so that both produce the same values.

use apache_avro::types::Value;

use crate::codec::direct::{DirectPlan, Prim, Slot, in_union, set_string};

/// A JSON scalar as serde_json reads it: a non-negative integer that fits
/// a `u64` is `U64`, a negative one that fits an `i64` is `I64`, any other
/// number (a fraction, an exponent, `-0`, a larger integer) is `F64`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Scalar<'a> {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(&'a str),
}

/// The scalar is not of the field's type.
#[derive(Debug)]
pub(super) struct Mismatch;

/// Writes `scalar`, resolved for `slot`, into `out` (written in place: moving a
/// `Value` out of a `Result` through the stack cost more than the parse of
/// a number).
///
/// # Errors
/// [`Mismatch`] when the scalar is not of the field's type.
pub(super) fn put(slot: Slot, scalar: Scalar<'_>, out: &mut Value) -> Result<(), Mismatch> {
    let v = match scalar {
        Scalar::Null => {
            match (slot.prim, slot.union) {
                (_, Some((null, _))) => *in_union(out, null) = Value::Null,
                (Prim::Null, None) => *out = Value::Null,
                _ => return Err(Mismatch),
            }
            return Ok(());
        }
        Scalar::Bool(b) => match slot.prim {
            Prim::Boolean => Value::Boolean(b),
            _ => return Err(Mismatch),
        },
        Scalar::U64(n) => integer(slot.prim, i64::try_from(n).map_err(|_| Mismatch)?)?,
        Scalar::I64(n) => integer(slot.prim, n)?,
        Scalar::F64(x) => match slot.prim {
            Prim::Float => Value::Float(x as f32),
            Prim::Double => Value::Double(x),
            _ => return Err(Mismatch),
        },
        Scalar::Str(s) => match slot.prim {
            // A string nobody reads is checked, not copied.
            Prim::String if !slot.read => {
                *out = Value::Null;
                return Ok(());
            }
            // Into the string the slot held, if any: no allocation for a
            // record after the first.
            Prim::String => {
                set_string(branch(slot, out), s);
                return Ok(());
            }
            _ => return Err(Mismatch),
        },
    };
    *branch(slot, out) = v;
    Ok(())
}

/// Where the value of `slot` goes in `out`: inside its union, if the
/// field is one.
fn branch(slot: Slot, out: &mut Value) -> &mut Value {
    match slot.union {
        Some((_, branch)) => in_union(out, branch),
        None => out,
    }
}

/// An integer, for a field of type `prim`.
fn integer(prim: Prim, n: i64) -> Result<Value, Mismatch> {
    Ok(match prim {
        Prim::Int => Value::Int(i32::try_from(n).map_err(|_| Mismatch)?),
        Prim::Long => Value::Long(n),
        Prim::Float => Value::Float(n as f32),
        Prim::Double => Value::Double(n as f64),
        Prim::TimestampMillis => Value::TimestampMillis(n),
        Prim::TimestampMicros => Value::TimestampMicros(n),
        // apache-avro turns a JSON integer into an Avro `int` when it
        // fits, which `date` takes.
        Prim::Date => Value::Date(i32::try_from(n).map_err(|_| Mismatch)?),
        Prim::Null | Prim::Boolean | Prim::String => return Err(Mismatch),
    })
}

impl DirectPlan {
    /// The schema field `key` names, if any, `last` being the field of the
    /// key before it (`names.len()` before the first). Objects list their
    /// keys in schema order or sorted, as a rule: the fields after `last`
    /// in either order are tried first.
    pub(super) fn field_index(&self, last: usize, key: &[u8]) -> Option<usize> {
        let names = &self.names;
        let in_schema_order = if last == names.len() { 0 } else { last + 1 };
        for guess in [in_schema_order, self.sorted_next[last]] {
            if names.get(guess).is_some_and(|name| name.as_bytes() == key) {
                return Some(guess);
            }
        }
        names.iter().position(|name| name.as_bytes() == key)
    }
}
