//! Registry-framed input: before a batch goes to the rayon pool, the
//! writer schemas its records name that the decoder does not know yet are
//! looked up in the Schema Registry.
//!
//! While the registry is unreachable the partition waits, retrying with
//! backoff (its records are not dead-lettered: the fault passes), and
//! takes no more input; schemas already known keep decoding in the
//! batches before. A schema the registry does not have (after a few
//! tries, for a registry still replicating it) or refuses makes its
//! records dead letters that say so; refused credentials or a failed TLS
//! handshake stop the pipeline. A drain (the partition revoked) does not
//! wait for the registry: the batch waiting for it is dropped, its
//! records left to the partition's next owner.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::partition::{DrainRequest, PartitionTask};
use super::{Env, PartitionError, SchemaSource};
use crate::codec::SchemaRef;
use crate::operator::Operator;
use crate::registry::RegistryError;
use crate::retry::Backoff;

/// Look-ups of a schema the registry says it does not have.
const UNKNOWN_TRIES: u32 = 3;

/// How learning a batch's schemas ended.
pub(super) enum Learnt {
    /// Every schema is known: the batch can go to the pool.
    Done,
    /// The pipeline was cancelled meanwhile.
    Cancelled,
    /// The partition is to drain (it was revoked) while a schema was
    /// still being looked up: the batch is dropped unprocessed (its
    /// records are past the commit point, so its next owner reads them)
    /// and the drain goes ahead without waiting for the registry.
    Drain(Option<DrainRequest>),
}

impl<O: Operator> PartitionTask<O> {
    /// Learns every writer schema the records read so far named (the
    /// consumer notes them as it reads; see `Writers::note`), unless a
    /// drain request comes on `drain` first.
    ///
    /// # Errors
    /// The registry refused the credentials.
    pub(super) async fn learn_schemas(
        &mut self,
        drain: &mut oneshot::Receiver<DrainRequest>,
    ) -> Result<Learnt, PartitionError> {
        let Some(source) = self.env.schemas.clone() else {
            return Ok(Learnt::Done);
        };
        let env = Arc::clone(&self.env);
        for schema in source.writers.pending() {
            tokio::select! {
                learnt = learn(self.partition, &env, &source, schema) => {
                    if !learnt? {
                        return Ok(Learnt::Cancelled);
                    }
                }
                req = &mut *drain => return Ok(Learnt::Drain(req.ok())),
            }
        }
        Ok(Learnt::Done)
    }
}

/// Learns `schema` for `partition`; false when cancelled meanwhile.
async fn learn(
    partition: i32,
    env: &Env,
    source: &SchemaSource,
    schema: SchemaRef,
) -> Result<bool, PartitionError> {
    let metrics = &env.metrics;
    let mut backoff = Backoff::default();
    let mut unknown = 0;
    loop {
        let e = match source.registry.schema(&schema).await {
            Ok(found) => {
                metrics.registry_request("ok");
                source.writers.learn(schema, Ok((found.kind, found.schema)));
                return Ok(true);
            }
            Err(e) => e,
        };
        let wait = match &e {
            RegistryError::Unreachable { .. } => {
                metrics.registry_request("unreachable");
                let wait = backoff.failed();
                if backoff.worth_logging() {
                    tracing::warn!(
                        partition = partition,
                        registry = source.registry.url(),
                        %schema,
                        attempts = backoff.attempts,
                        error = %e,
                        "schema registry unreachable: the partition waits for it (its records \
                         are not dead-lettered)"
                    );
                }
                wait
            }
            RegistryError::NotFound { .. } if unknown + 1 < UNKNOWN_TRIES => {
                unknown += 1;
                Duration::from_millis(200)
            }
            RegistryError::Unauthorized { .. } | RegistryError::Tls { .. } => {
                metrics.registry_request("refused");
                return Err(PartitionError::Registry {
                    partition,
                    source: e,
                });
            }
            RegistryError::NotFound { .. } => {
                metrics.registry_request("unknown");
                source.writers.learn(schema, Err(e.to_string()));
                return Ok(true);
            }
            RegistryError::Refused { .. } | RegistryError::Malformed { .. } => {
                metrics.registry_request("refused");
                source.writers.learn(schema, Err(e.to_string()));
                return Ok(true);
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = env.cancel.cancelled() => return Ok(false),
        }
    }
}
