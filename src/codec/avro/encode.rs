//! Avro binary encoding of window results, written straight from their
//! values (held byte-equal to apache-avro's writer by the output tests).

use apache_avro::types::Value;

/// Avro's `long` (and `int`, `enum` index, union branch, lengths): zig-zag,
/// then 7 bits a byte, low first.
pub(in crate::codec) fn write_avro_long(n: i64, out: &mut Vec<u8>) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn write_avro_bytes(b: &[u8], out: &mut Vec<u8>) {
    write_avro_long(b.len() as i64, out);
    out.extend_from_slice(b);
}

pub(in crate::codec) fn write_avro_str(s: &str, out: &mut Vec<u8>) {
    write_avro_bytes(s.as_bytes(), out);
}

/// Avro binary encoding of an aggregate's value. Records are written in
/// the order of their fields (the derived schema's order), unions by the
/// branch the value names.
pub(in crate::codec) fn write_avro(v: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    if let Some(n) = integer(v) {
        write_avro_long(n, out);
        return Ok(());
    }
    match v {
        Value::Null => {}
        Value::Boolean(b) => out.push(u8::from(*b)),
        Value::Float(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Double(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bytes(b) => write_avro_bytes(b, out),
        Value::Fixed(_, b) => out.extend_from_slice(b),
        Value::String(s) => write_avro_str(s, out),
        Value::Enum(i, _) => write_avro_long(i64::from(*i), out),
        Value::Union(i, inner) => {
            write_avro_long(i64::from(*i), out);
            write_avro(inner, out)?;
        }
        Value::Array(items) => {
            if !items.is_empty() {
                write_avro_long(items.len() as i64, out);
                for item in items {
                    write_avro(item, out)?;
                }
            }
            out.push(0);
        }
        Value::Map(m) => {
            if !m.is_empty() {
                write_avro_long(m.len() as i64, out);
                for (k, item) in m {
                    write_avro_str(k, out);
                    write_avro(item, out)?;
                }
            }
            out.push(0);
        }
        Value::Record(fields) => {
            for (_, f) in fields {
                write_avro(f, out)?;
            }
        }
        other => return Err(format!("no aggregate produces a value like {other:?}")),
    }
    Ok(())
}

/// The integer of any of Avro's `int`- or `long`-based types (dates,
/// times and timestamps included).
pub(in crate::codec) fn integer(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) | Value::Date(n) | Value::TimeMillis(n) => Some(i64::from(*n)),
        Value::Long(n)
        | Value::TimestampMillis(n)
        | Value::TimestampMicros(n)
        | Value::TimestampNanos(n)
        | Value::LocalTimestampMillis(n)
        | Value::LocalTimestampMicros(n)
        | Value::LocalTimestampNanos(n)
        | Value::TimeMicros(n) => Some(*n),
        _ => None,
    }
}
