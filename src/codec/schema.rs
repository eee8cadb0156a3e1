//! Avro schemas as streamfold sees them: a flat record of typed fields.

use std::path::{Path, PathBuf};

use apache_avro::Schema;

use crate::record::{Field, FieldType};

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
