//! The fields of a record: their names and types, and the layout that
//! finds them by name once, at start-up.

use std::cell::RefCell;

use apache_avro::Schema;

/// The type of a record field, as far as pipelines care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// `string` (or `enum`, read as its symbol).
    String,
    /// `int` or `long`.
    Long,
    /// `float` or `double`.
    Double,
    /// `long` with logical type `timestamp-millis`.
    TimestampMillis,
    /// Anything else (maps, arrays, bytes, ...): carried, not computed on.
    Other,
}

impl FieldType {
    /// Whether aggregates can be computed over this type.
    pub fn is_numeric(self) -> bool {
        matches!(self, Self::Long | Self::Double)
    }

    /// The name shown in error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Long => "long",
            Self::Double => "double",
            Self::TimestampMillis => "timestamp-millis",
            Self::Other => "a complex type",
        }
    }

    /// The type of a field of Avro schema `schema`, and whether it is
    /// nullable.
    /// The Avro type an output field holding values of this type is
    /// written as (`int` as `long`, `float` as `double`). A complex field
    /// is never written from its type (outputs refuse it, or keep the
    /// field as read): `double`, like any other number.
    pub fn avro_type(self) -> serde_json::Value {
        match self {
            Self::String => serde_json::json!("string"),
            Self::Long => serde_json::json!("long"),
            Self::TimestampMillis => {
                serde_json::json!({"type": "long", "logicalType": "timestamp-millis"})
            }
            Self::Double | Self::Other => serde_json::json!("double"),
        }
    }

    pub(crate) fn of(schema: &Schema) -> (Self, bool) {
        match schema {
            Schema::String | Schema::Enum(_) => (Self::String, false),
            Schema::Int | Schema::Long => (Self::Long, false),
            Schema::Float | Schema::Double => (Self::Double, false),
            Schema::TimestampMillis => (Self::TimestampMillis, false),
            Schema::Union(u) if u.is_nullable() && u.variants().len() == 2 => {
                let inner = u
                    .variants()
                    .iter()
                    .find(|s| !matches!(s, Schema::Null))
                    .map(|s| Self::of(s).0)
                    .unwrap_or(Self::Other);
                (inner, true)
            }
            _ => (Self::Other, false),
        }
    }
}

/// One field of a flat record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Field name.
    pub name: String,
    /// Its type.
    pub ty: FieldType,
    /// Whether it may be null (a `["null", T]` union).
    pub nullable: bool,
}

/// Names and types of a record's fields, fixed at start-up. Transforms that
/// add fields extend it; lookups by name happen once, not per record.
///
/// Every step finds its fields here, so the layout also learns which
/// fields the pipeline reads at all ([`Layout::read`]): the decoder need
/// not copy the others.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    fields: Vec<Field>,
    looked_up: RefCell<Vec<bool>>,
}

impl Layout {
    /// A layout with the given fields.
    pub fn new(fields: Vec<Field>) -> Self {
        Self {
            fields,
            looked_up: RefCell::default(),
        }
    }

    fn mark(&self, index: usize) {
        let mut seen = self.looked_up.borrow_mut();
        if seen.len() <= index {
            seen.resize(index + 1, false);
        }
        seen[index] = true;
    }

    /// Position of `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        let i = self.fields.iter().position(|f| f.name == name)?;
        self.mark(i);
        Some(i)
    }

    /// The field at `index`.
    pub fn field(&self, index: usize) -> &Field {
        self.mark(index);
        &self.fields[index]
    }

    /// For each of the first `n` fields, whether any step looked it up.
    pub fn read(&self, n: usize) -> Vec<bool> {
        let seen = self.looked_up.borrow();
        (0..n)
            .map(|i| seen.get(i).copied().unwrap_or(false))
            .collect()
    }

    /// Adds a field (or retypes an existing one) and returns its position.
    pub fn add(&mut self, name: &str, ty: FieldType) -> usize {
        let field = Field {
            name: name.to_string(),
            ty,
            nullable: false,
        };
        match self.index_of(name) {
            Some(i) => {
                self.fields[i] = field;
                i
            }
            None => {
                self.fields.push(field);
                self.fields.len() - 1
            }
        }
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the layout has no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}
