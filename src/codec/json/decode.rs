//! The direct decoder of JSON objects (see `codec/direct.rs`): the
//! scanner first (`scan.rs`), then serde_json for what it gives up on;
//! and the generic decoder through apache-avro.

use std::fmt;

use apache_avro::types::Value;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

use crate::codec::direct::{DirectPlan, GiveUp, Slot};
use crate::codec::json::resolve::{Scalar, put};
use crate::codec::schema::RecordSchema;

impl DirectPlan {
    /// Decodes a JSON object; every field of the schema must be present.
    ///
    /// # Errors
    /// [`GiveUp`] on anything but a plain match of the schema.
    #[cfg(test)]
    pub fn json(&self, bytes: &[u8]) -> Result<Vec<Value>, GiveUp> {
        let mut values = Vec::new();
        self.json_into(bytes, &mut values).map(|()| values)
    }

    /// Decodes a JSON object into `values`, a record's slots (the last
    /// record's, or empty): their strings' allocations are reused. Every
    /// field of the schema must be present. Holds the values where it
    /// returns `Ok`; anything where it gives up.
    ///
    /// # Errors
    /// [`GiveUp`] on anything but a plain match of the schema.
    pub fn json_into(&self, bytes: &[u8], values: &mut Vec<Value>) -> Result<(), GiveUp> {
        if self.scan_into(bytes, values).is_some() {
            return Ok(());
        }
        *values = self.json_by_serde(bytes)?;
        Ok(())
    }

    /// [`Self::json`] without the scanner: serde_json reads the object.
    pub(in crate::codec) fn json_by_serde(&self, bytes: &[u8]) -> Result<Vec<Value>, GiveUp> {
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
        let mut values = plan.blank();
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
        Ok(self.plan.field_index(self.last, key.as_bytes()))
    }
}

/// One field's JSON value, resolved by [`put`] into its slot.
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
    fn put<E: de::Error>(self, scalar: Scalar<'_>) -> Result<(), E> {
        put(self.slot, scalar, self.out).map_err(|_| E::custom("type mismatch"))
    }
}

impl<'de> Visitor<'de> for JsonField<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value of the field's type")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.put(Scalar::Null)
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<(), E> {
        self.put(Scalar::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<(), E> {
        self.put(Scalar::I64(n))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<(), E> {
        self.put(Scalar::U64(n))
    }

    fn visit_f64<E: de::Error>(self, x: f64) -> Result<(), E> {
        self.put(Scalar::F64(x))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.put(Scalar::Str(s))
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
