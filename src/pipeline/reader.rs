//! The reader schema: the pipeline's `input_schema` file, or, where it is
//! absent and the input is registry framed, the latest version of the
//! subject `<input_topic>-value` as the registry holds it at start-up.

use std::path::PathBuf;

use crate::codec::{RecordSchema, SchemaError, SchemaKind};
use crate::config::{Framing, LoadedConfig};
use crate::registry::{Registry, RegistryError};

/// Why the reader schema could not be had from the registry.
#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    /// The registry could not be asked (unreachable, credentials refused).
    #[error(
        "pipeline.input_schema is not set, so the reader schema is the latest version of \
         subject {subject}, and {source}"
    )]
    Registry {
        subject: String,
        #[source]
        source: RegistryError,
    },
    /// The registry has no such subject.
    #[error(
        "pipeline.input_schema is not set, and the registry {url} has no subject {subject} to \
         take the reader schema from: set pipeline.input_schema, or publish to the input topic \
         with a registry serializer first"
    )]
    NoSubject { subject: String, url: String },
    /// Its latest version is not an Avro record.
    #[error(
        "pipeline.input_schema is not set, and the latest version of subject {subject} cannot be \
         the reader schema: {reason}; set pipeline.input_schema"
    )]
    Unusable { subject: String, reason: String },
}

impl ReaderError {
    /// Whether trying again later may succeed (the registry is down).
    pub fn transient(&self) -> bool {
        matches!(self, Self::Registry { source, .. } if source.transient())
    }
}

/// The reader schema fetched from the registry, or `None` where the plan
/// reads `input_schema` from its file (or the pipeline is not registry
/// framed, which `Plan::build` reports).
///
/// # Errors
/// See [`ReaderError`].
pub async fn latest_reader(loaded: &LoadedConfig) -> Result<Option<RecordSchema>, ReaderError> {
    let p = &loaded.config.pipeline;
    if loaded.upstream.is_some() {
        // A chained pipeline's reader is its upstream's output schema.
        return Ok(None);
    }
    let (None, Framing::SchemaRegistry, Some(settings)) = (
        &p.input_schema,
        p.input_framing,
        &loaded.config.schema_registry,
    ) else {
        return Ok(None);
    };
    // A registry setting that cannot build a client is a problem the plan
    // names with its key.
    let Ok(registry) = Registry::from_config(settings) else {
        return Ok(None);
    };
    let subject = format!("{}-value", p.input_topic);
    let latest = match registry.version(&subject, "latest").await {
        Ok(l) => l,
        Err(RegistryError::NotFound { .. }) => {
            return Err(ReaderError::NoSubject {
                subject,
                url: registry.url().to_string(),
            });
        }
        Err(source) => return Err(ReaderError::Registry { subject, source }),
    };
    let unusable = |reason: String| ReaderError::Unusable {
        subject: subject.clone(),
        reason,
    };
    if latest.kind != SchemaKind::Avro {
        return Err(unusable(format!(
            "it is a {} schema, and streamfold reads fields by an Avro record schema",
            latest.kind.name()
        )));
    }
    let name = PathBuf::from(format!(
        "version {} of subject {subject} (schema id {})",
        latest
            .version
            .map_or_else(|| "?".to_string(), |v| v.to_string()),
        latest.id
    ));
    let schema = RecordSchema::parse(&name, &latest.schema).map_err(|e| match e {
        SchemaError::NotRecord { found, .. } => {
            unusable(format!("its top level is {found}, not a record"))
        }
        other => unusable(other.to_string()),
    })?;
    tracing::info!(
        pipeline = %p.name,
        schema = %name.display(),
        "reader schema: the latest version of the input subject"
    );
    Ok(Some(schema))
}
