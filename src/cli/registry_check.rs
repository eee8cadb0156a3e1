//! What `validate` asks the Schema Registry of a registry-framed pipeline:
//! that it answers (with these credentials), that the input's subject has
//! a version, and that the output schema is compatible with its subject.

use crate::config::{Framing, LoadedConfig};
use crate::pipeline::Plan;
use crate::registry::RegistryError;

/// The problems found, as lines for `validate` (none without a registry).
pub(super) async fn problems(plan: &Plan, loaded: &LoadedConfig) -> Vec<String> {
    let (Some(registry), Some(settings)) = (&plan.registry, &loaded.config.schema_registry) else {
        return Vec::new();
    };
    let p = &loaded.config.pipeline;
    let mut out = Vec::new();
    if let Err(e) = registry.subjects().await {
        out.push(format!("schema_registry.url: {e}"));
        return out;
    }
    if p.input_framing == Framing::SchemaRegistry {
        let subject = format!("{}-value", p.input_topic);
        match registry.version(&subject, "latest").await {
            Ok(_) => {}
            Err(RegistryError::NotFound { .. }) => out.push(format!(
                "pipeline.input_framing: the registry has no subject {subject} (no producer \
                     has registered a schema for {} yet?)",
                p.input_topic
            )),
            Err(e) => out.push(format!("pipeline.input_framing: {e}")),
        }
    }
    if p.output_framing == Framing::SchemaRegistry {
        let subject = settings
            .subject_strategy
            .subject(&plan.output_topic, &plan.encoder.full_name());
        let (kind, text) = plan.encoder.registered();
        match registry.compatible(&subject, "latest", kind, &text).await {
            // A subject without versions takes any first schema.
            Ok(Ok(())) | Err(RegistryError::NotFound { .. }) => {}
            Ok(Err(reasons)) => out.push(format!(
                "pipeline.output_framing: the derived output schema is not compatible with \
                     the latest version of subject {subject}: {}",
                reasons.join("; ")
            )),
            Err(e) => out.push(format!("pipeline.output_framing: {e}")),
        }
    }
    out
}
