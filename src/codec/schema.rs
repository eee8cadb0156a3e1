//! Avro schemas as streamfold sees them: a flat record of typed fields.

use std::path::{Path, PathBuf};

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

    fn of(schema: &Schema) -> (Self, bool) {
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

/// A parsed `.avsc` file whose top level is a record.
#[derive(Debug, Clone)]
pub struct RecordSchema {
    /// Where it was read from.
    pub path: PathBuf,
    /// The Avro schema itself.
    pub schema: Schema,
    /// Its fields in declaration order (the order of decoded values).
    pub fields: Vec<Field>,
}

/// Errors reading a schema file.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The file could not be read.
    #[error("{path}: cannot read schema file: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid Avro schema.
    #[error("{path}: not a valid Avro schema: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<apache_avro::Error>,
    },
    /// The schema is valid but not a record.
    #[error("{path}: expected an Avro record schema at the top level, found {found}")]
    NotRecord { path: PathBuf, found: String },
}

impl RecordSchema {
    /// Reads and parses `path`.
    ///
    /// # Errors
    /// A [`SchemaError`] naming the file.
    pub fn load(path: &Path) -> Result<Self, SchemaError> {
        let text = std::fs::read_to_string(path).map_err(|source| SchemaError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses schema text; `path` is only used in messages.
    ///
    /// # Errors
    /// A [`SchemaError`] naming `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, SchemaError> {
        let schema = Schema::parse_str(text).map_err(|e| SchemaError::Parse {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
        let Schema::Record(rec) = &schema else {
            return Err(SchemaError::NotRecord {
                path: path.to_path_buf(),
                found: format!("{:?}", apache_avro::schema::SchemaKind::from(&schema)),
            });
        };
        let fields = rec
            .fields
            .iter()
            .map(|f| {
                let (ty, nullable) = FieldType::of(&f.schema);
                Field {
                    name: f.name.clone(),
                    ty,
                    nullable,
                }
            })
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            schema,
            fields,
        })
    }

    /// The field called `name`, if any.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}
