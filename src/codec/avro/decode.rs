//! The direct decoder of Avro binary datums (see `codec/direct.rs`).

use apache_avro::types::Value;

use crate::codec::direct::{DirectPlan, GiveUp, Prim, Slot, in_union, set_string};

impl DirectPlan {
    /// Decodes one Avro datum (binary encoding) of the schema, which must
    /// use all of `bytes`.
    ///
    /// # Errors
    /// [`GiveUp`] when the bytes are not exactly one such datum.
    #[cfg(test)]
    pub fn avro(&self, bytes: &[u8]) -> Result<Vec<Value>, GiveUp> {
        let mut values = Vec::new();
        self.avro_into(bytes, &mut values).map(|()| values)
    }

    /// Decodes one Avro datum of the schema, which must use all of
    /// `bytes`, into `values`, a record's slots (the last record's, or
    /// empty): their strings' allocations are reused. Holds the values
    /// where it returns `Ok`; anything where it gives up.
    ///
    /// # Errors
    /// [`GiveUp`] when the bytes are not exactly one such datum.
    pub fn avro_into(&self, mut bytes: &[u8], values: &mut Vec<Value>) -> Result<(), GiveUp> {
        self.reset(values);
        for (slot, out) in self.slots.iter().zip(values.iter_mut()) {
            match slot.union {
                None => read_prim_into(*slot, &mut bytes, out)?,
                Some((null, other)) => {
                    let branch = u32::try_from(read_long(&mut bytes)?).map_err(|_| GiveUp)?;
                    if branch == null {
                        *in_union(out, null) = Value::Null;
                    } else if branch == other {
                        read_prim_into(*slot, &mut bytes, in_union(out, other))?;
                    } else {
                        return Err(GiveUp);
                    }
                }
            }
        }
        if bytes.is_empty() {
            Ok(())
        } else {
            Err(GiveUp)
        }
    }
}

/// A zig-zag varint of at most 10 bytes.
pub(super) fn read_long(bytes: &mut &[u8]) -> Result<i64, GiveUp> {
    let mut n: u64 = 0;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        n |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return Ok(((n >> 1) as i64) ^ -((n & 1) as i64));
        }
    }
    Err(GiveUp)
}

fn read_int(bytes: &mut &[u8]) -> Result<i32, GiveUp> {
    i32::try_from(read_long(bytes)?).map_err(|_| GiveUp)
}

fn take<const N: usize>(bytes: &mut &[u8]) -> Result<[u8; N], GiveUp> {
    let (head, rest) = bytes.split_first_chunk::<N>().ok_or(GiveUp)?;
    *bytes = rest;
    Ok(*head)
}

pub(super) fn read_prim(slot: Slot, bytes: &mut &[u8]) -> Result<Value, GiveUp> {
    let mut v = Value::Null;
    read_prim_into(slot, bytes, &mut v)?;
    Ok(v)
}

/// [`read_prim`] into `out`: a string into the one `out` held, if any.
fn read_prim_into(slot: Slot, bytes: &mut &[u8], out: &mut Value) -> Result<(), GiveUp> {
    *out = match slot.prim {
        Prim::Null => Value::Null,
        Prim::Boolean => match take::<1>(bytes)? {
            [0] => Value::Boolean(false),
            [1] => Value::Boolean(true),
            _ => return Err(GiveUp),
        },
        Prim::Int => Value::Int(read_int(bytes)?),
        Prim::Long => Value::Long(read_long(bytes)?),
        Prim::Float => Value::Float(f32::from_le_bytes(take(bytes)?)),
        Prim::Double => Value::Double(f64::from_le_bytes(take(bytes)?)),
        Prim::String => {
            let len = usize::try_from(read_long(bytes)?).map_err(|_| GiveUp)?;
            if len > bytes.len() {
                return Err(GiveUp);
            }
            let (s, rest) = bytes.split_at(len);
            *bytes = rest;
            let s = std::str::from_utf8(s).map_err(|_| GiveUp)?;
            if slot.read {
                set_string(out, s);
                return Ok(());
            }
            Value::Null
        }
        Prim::Date => Value::Date(read_int(bytes)?),
        Prim::TimestampMillis => Value::TimestampMillis(read_long(bytes)?),
        Prim::TimestampMicros => Value::TimestampMicros(read_long(bytes)?),
    };
    Ok(())
}
