//! Replaces an identifier with a keyed BLAKE3 hash of it.

use apache_avro::types::Value;

use super::{Transform, TransformError, bind_field};
use crate::config::Secret;
use crate::record::{FieldType, Layout, Record};

/// Keyed-hash pseudonymisation: the same input and key always give the same
/// pseudonym (so joins and counts still work), and without the key the
/// original cannot be recovered or confirmed by guessing.
pub struct Pseudonymise {
    field: String,
    index: usize,
    key: [u8; 32],
}

impl Pseudonymise {
    /// A transform hashing `field` with a key derived from `secret`.
    pub fn new(field: &str, secret: &Secret) -> Self {
        let key = blake3::derive_key("streamfold pseudonymise v1", secret.expose().as_bytes());
        Self {
            field: field.to_string(),
            index: usize::MAX,
            key,
        }
    }

    /// Reads the key material from environment variable `key_env`.
    ///
    /// # Errors
    /// When the variable is unset or empty; the message names it.
    pub fn from_env(field: &str, key_env: &str) -> Result<Self, String> {
        let secret = Secret::from_env(key_env).map_err(|e| {
            format!("pseudonymise {field:?} needs its key: {e} (set it, or change key_env)")
        })?;
        Ok(Self::new(field, &secret))
    }

    /// The pseudonym of `value`: 32 hex characters (128 bits).
    pub fn pseudonym(&self, value: &str) -> String {
        let hash = blake3::keyed_hash(&self.key, value.as_bytes());
        hash.to_hex()[..32].to_string()
    }
}

impl Transform for Pseudonymise {
    fn name(&self) -> &str {
        "pseudonymise"
    }

    fn bind(&mut self, layout: &mut Layout) -> Result<(), String> {
        self.index = bind_field(layout, &self.field, &[FieldType::String], "string")?;
        Ok(())
    }

    fn apply(&self, record: &mut Record) -> Result<(), TransformError> {
        let p = self.pseudonym(
            record
                .str(self.index)
                .map_err(|e| TransformError(format!("pseudonymise {:?}: {e}", self.field)))?,
        );
        record.set(self.index, Value::String(p));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Field;

    #[test]
    fn pseudonyms_are_stable_per_key_and_differ_across_keys() {
        let a = Pseudonymise::new("card_id", &Secret::new("key-a"));
        let b = Pseudonymise::new("card_id", &Secret::new("key-b"));
        assert_eq!(a.pseudonym("4111"), a.pseudonym("4111"));
        assert_ne!(a.pseudonym("4111"), a.pseudonym("4112"));
        assert_ne!(a.pseudonym("4111"), b.pseudonym("4111"));
        assert_eq!(a.pseudonym("4111").len(), 32);
    }

    #[test]
    fn replaces_the_field_in_place() {
        let mut layout = Layout::new(vec![Field {
            name: "card_id".into(),
            ty: FieldType::String,
            nullable: false,
        }]);
        let mut t = Pseudonymise::new("card_id", &Secret::new("k"));
        t.bind(&mut layout).unwrap();
        let mut r = Record {
            values: vec![Value::String("4111-1111".into())],
        };
        t.apply(&mut r).unwrap();
        assert_eq!(r.str(0).unwrap(), t.pseudonym("4111-1111"));
        assert!(!r.str(0).unwrap().contains("4111"));
    }
}
