//! `pipeline.output_framing = "schema-registry"`: the derived output schema
//! is registered at start-up, and every output value carries its id.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::RunError;
use crate::config::{Framing, LoadedConfig};
use crate::pipeline::Plan;
use crate::registry::RegistryError;
use crate::retry::Backoff;

/// How long start-up waits for an unreachable registry.
const PATIENCE: Duration = Duration::from_secs(60);

/// Registers `plan`'s output schema and frames its encoder with the id,
/// when the configuration asks for registry-framed output.
///
/// # Errors
/// The registry refuses the schema (incompatible with the subject's
/// versions, say) or the credentials, or stays unreachable.
pub(super) async fn register(
    plan: &mut Plan,
    loaded: &LoadedConfig,
    shutdown: &CancellationToken,
) -> Result<(), RunError> {
    let config = &loaded.config;
    let (Framing::SchemaRegistry, Some(registry), Some(settings)) = (
        config.pipeline.output_framing,
        plan.registry.clone(),
        &config.schema_registry,
    ) else {
        return Ok(());
    };
    let subject = settings
        .subject_strategy
        .subject(&plan.output_topic, &plan.encoder.full_name());
    let (kind, text) = plan.encoder.registered();
    let started = tokio::time::Instant::now();
    let mut backoff = Backoff::default();
    loop {
        match registry.register(&subject, kind, &text).await {
            Ok((id, _)) => {
                tracing::info!(
                    subject,
                    id,
                    registry = registry.url(),
                    "output schema registered"
                );
                plan.encoder.frame_with(id);
                return Ok(());
            }
            Err(e) if e.transient() && started.elapsed() < PATIENCE => {
                let wait = backoff.failed();
                if backoff.worth_logging() {
                    tracing::warn!(error = %e, "registering the output schema; trying again");
                }
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = shutdown.cancelled() => return Err(RunError::Registry(e)),
                }
            }
            Err(RegistryError::Refused {
                message, status, ..
            }) => {
                return Err(RunError::OutputSchema {
                    subject,
                    registry: registry.url().to_string(),
                    status,
                    message,
                });
            }
            Err(e) => return Err(RunError::Registry(e)),
        }
    }
}
