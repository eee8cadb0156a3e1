//! The direct decoder of JSON objects (see `codec/direct.rs`), and the
//! generic one through apache-avro.

use std::fmt;

use apache_avro::types::Value;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

use crate::codec::direct::{DirectPlan, GiveUp, Prim, Slot};
use crate::codec::schema::RecordSchema;

impl DirectPlan {
    /// Decodes a JSON object; every field of the schema must be present.
    ///
    /// # Errors
    /// [`GiveUp`] on anything but a plain match of the schema.
    pub fn json(&self, bytes: &[u8]) -> Result<Vec<Value>, GiveUp> {
        // UTF-8 checked once for the whole text (JSON must be UTF-8 in
        // every part, read or not), not once per string.
        let text = std::str::from_utf8(bytes).map_err(|_| GiveUp)?;
        let mut de = serde_json::Deserializer::from_str(text);
        let (values, present) = (&mut de)
            .deserialize_map(JsonRecord(self))
            .map_err(|_| GiveUp)?;
        de.end().map_err(|_| GiveUp)?;
        if present.count_ones() as usize == values.len() {
            Ok(values)
        } else {
            Err(GiveUp)
        }
    }
}

/// A JSON object into one value slot per schema field.
struct JsonRecord<'p>(&'p DirectPlan);

impl<'de> Visitor<'de> for JsonRecord<'_> {
    /// The values, and a bit per field that was present.
    type Value = (Vec<Value>, u128);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let plan = self.0;
        // Filled in place: `vec![Value::Null; n]` clones through the
        // general `Value::clone`, a measurable cost per record.
        let mut values = Vec::with_capacity(plan.room);
        values.resize_with(plan.slots.len(), || Value::Null);
        let mut present = 0u128;
        // The field found before this key (`n` before the first).
        let mut last = plan.slots.len();
        while let Some(key) = map.next_key_seed(FieldName { plan, last })? {
            match key {
                // A repeated key: serde_json keeps the last one.
                Some(i) => {
                    map.next_value_seed(JsonField {
                        slot: plan.slots[i],
                        out: &mut values[i],
                    })?;
                    present |= 1 << i;
                    last = i;
                }
                // A field the schema lacks, read as the generic path reads
                // every field: into a JSON value, then an Avro one.
                None => {
                    let json = map.next_value::<serde_json::Value>()?;
                    Value::try_from(json).map_err(de::Error::custom)?;
                }
            }
        }
        Ok((values, present))
    }
}

/// A key of the object: the index of the schema field it names, if any.
/// Objects list their keys in schema order or sorted, as a rule: the
/// fields after field `last` in either order are tried first.
struct FieldName<'p> {
    plan: &'p DirectPlan,
    last: usize,
}

impl<'de> DeserializeSeed<'de> for FieldName<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for FieldName<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        let names = &self.plan.names;
        let in_schema_order = if self.last == names.len() {
            0
        } else {
            self.last + 1
        };
        for guess in [in_schema_order, self.plan.sorted_next[self.last]] {
            if names.get(guess).is_some_and(|name| name == key) {
                return Ok(Some(guess));
            }
        }
        Ok(names.iter().position(|name| name == key))
    }
}

/// One field's JSON value, resolved like apache-avro resolves it and
/// written into its slot of the record (not returned: moving a `Value`
/// out of a `Result` through the stack cost more than the parse of a
/// number).
struct JsonField<'v> {
    slot: Slot,
    out: &'v mut Value,
}

impl<'de> DeserializeSeed<'de> for JsonField<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl JsonField<'_> {
    /// Writes a resolved non-null value, wrapped in its union branch.
    fn put<E>(self, v: Value) -> Result<(), E> {
        *self.out = match self.slot.union {
            Some((_, branch)) => Value::Union(branch, Box::new(v)),
            None => v,
        };
        Ok(())
    }

    fn mismatch<E: de::Error>() -> E {
        E::custom("type mismatch")
    }

    /// An integer (serde_json gives i64 or u64).
    fn integer<E: de::Error>(self, n: i64) -> Result<(), E> {
        let v = match self.slot.prim {
            Prim::Int => Value::Int(i32::try_from(n).map_err(|_| Self::mismatch::<E>())?),
            Prim::Long => Value::Long(n),
            Prim::Float => Value::Float(n as f32),
            Prim::Double => Value::Double(n as f64),
            Prim::TimestampMillis => Value::TimestampMillis(n),
            Prim::TimestampMicros => Value::TimestampMicros(n),
            // apache-avro turns a JSON integer into an Avro `int` when it
            // fits, which `date` takes.
            Prim::Date => Value::Date(i32::try_from(n).map_err(|_| Self::mismatch::<E>())?),
            Prim::Null | Prim::Boolean | Prim::String => return Err(Self::mismatch()),
        };
        self.put(v)
    }
}

impl<'de> Visitor<'de> for JsonField<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value of the field's type")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        *self.out = match (self.slot.prim, self.slot.union) {
            (_, Some((null, _))) => Value::Union(null, Box::new(Value::Null)),
            (Prim::Null, None) => Value::Null,
            _ => return Err(Self::mismatch()),
        };
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<(), E> {
        match self.slot.prim {
            Prim::Boolean => self.put(Value::Boolean(b)),
            _ => Err(Self::mismatch()),
        }
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<(), E> {
        self.integer(n)
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<(), E> {
        self.integer(i64::try_from(n).map_err(|_| Self::mismatch::<E>())?)
    }

    fn visit_f64<E: de::Error>(self, x: f64) -> Result<(), E> {
        match self.slot.prim {
            Prim::Float => self.put(Value::Float(x as f32)),
            Prim::Double => self.put(Value::Double(x)),
            _ => Err(Self::mismatch()),
        }
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        match self.slot.prim {
            Prim::String if !self.slot.read => {
                *self.out = Value::Null;
                Ok(())
            }
            Prim::String => self.put(Value::String(s.to_owned())),
            _ => Err(Self::mismatch()),
        }
    }
}

/// Parses one JSON object and resolves it against `schema`.
///
/// # Errors
/// A message saying what does not match.
pub fn json_to_value(bytes: &[u8], schema: &RecordSchema) -> Result<Value, String> {
    let json: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let value = Value::try_from(json).map_err(|e| e.to_string())?;
    value.resolve(&schema.schema).map_err(|e| e.to_string())
}
