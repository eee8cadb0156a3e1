//! Wiring: plan, producer, consumer thread; then run until shutdown.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::consumer::{SourceConsumer, SourceContext};
use crate::config::{ClientConfigError, ConfigError, LoadedConfig};
use crate::offsets::CommitBoard;
use crate::pipeline::Plan;
use crate::sink::Sink;
use crate::telemetry::Metrics;
use crate::transform::Transform;

/// Why a pipeline could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration or its schemas are wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A secret is missing from the environment.
    #[error(transparent)]
    Secret(#[from] ClientConfigError),
    /// librdkafka refused the client configuration.
    #[error("cannot create the Kafka {client} for {servers}")]
    Client {
        client: &'static str,
        servers: String,
        #[source]
        source: KafkaError,
    },
    /// A topic the pipeline needs does not exist.
    #[error("topic {topic:?} ({role}) does not exist on {servers}: {reason}; create it first")]
    MissingTopic {
        topic: String,
        role: &'static str,
        servers: String,
        reason: String,
    },
    /// The pipeline stopped after an error it cannot recover from.
    #[error("pipeline {pipeline} stopped: {reason}")]
    Failed { pipeline: String, reason: String },
}

/// Runs the configured pipeline until `shutdown` is cancelled (then drains
/// and commits) or a fatal error occurs. `extra` transforms run after the
/// configured ones.
///
/// # Errors
/// See [`RunError`].
pub async fn run(
    loaded: &LoadedConfig,
    extra: Vec<Box<dyn Transform>>,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let config = &loaded.config;
    let servers = config.kafka.bootstrap_servers.clone();
    let plan = Arc::new(Plan::build(loaded, extra)?);
    let producer: FutureProducer =
        config
            .producer_config()?
            .create()
            .map_err(|source| RunError::Client {
                client: "producer",
                servers: servers.clone(),
                source,
            })?;
    let shared = Arc::new(Shared {
        sink: Sink::new(
            producer,
            &plan.output_topic,
            &plan.dead_letter_topic,
            plan.late_topic.as_deref(),
        ),
        plan: Arc::clone(&plan),
        board: CommitBoard::default(),
        metrics,
        batch: config.batch.clone(),
        drain_deadline: config.commit.drain_deadline,
        cancel: CancellationToken::new(),
        fatal: Mutex::new(None),
    });
    let context = SourceContext::new(Arc::clone(&shared), tokio::runtime::Handle::current());
    let consumer: SourceConsumer = config
        .consumer_config()?
        .create_with_context(context)
        .map_err(|source| RunError::Client {
            client: "consumer",
            servers: servers.clone(),
            source,
        })?;

    let interval = config.commit.interval;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let loop_shared = Arc::clone(&shared);
    let loop_shutdown = shutdown.clone();
    let mut topics = vec![
        (plan.input_topic.clone(), "input"),
        (plan.output_topic.clone(), "output"),
        (plan.dead_letter_topic.clone(), "dead-letter"),
    ];
    if let Some(t) = &plan.late_topic {
        topics.push((t.clone(), "late records"));
    }
    std::thread::Builder::new()
        .name("streamfold-consumer".into())
        .spawn(move || {
            let result = check_topics(&consumer, &topics, &servers).and_then(|()| {
                consumer
                    .subscribe(&[loop_shared.plan.input_topic.as_str()])
                    .map_err(|source| RunError::Client {
                        client: "consumer subscription",
                        servers: servers.clone(),
                        source,
                    })
            });
            if result.is_ok() {
                tracing::info!(
                    pipeline = %loop_shared.plan.name,
                    topic = %loop_shared.plan.input_topic,
                    "subscribed"
                );
                poll_loop(&consumer, &loop_shared, &loop_shutdown, interval);
            }
            // Dropping the consumer leaves the group; it blocks, so it
            // happens here and not on the async runtime.
            drop(consumer);
            let _ = done_tx.send(result);
        })
        .expect("spawning the consumer thread");

    let result = done_rx.await.unwrap_or_else(|_| {
        Err(RunError::Failed {
            pipeline: plan.name.clone(),
            reason: "the consumer thread panicked".into(),
        })
    });
    let flush_shared = Arc::clone(&shared);
    let _ = tokio::task::spawn_blocking(move || {
        flush_shared.sink.producer().flush(Duration::from_secs(5))
    })
    .await;
    result?;
    match shared.fatal() {
        Some(reason) => Err(RunError::Failed {
            pipeline: plan.name.clone(),
            reason,
        }),
        None => Ok(()),
    }
}

fn check_topics(
    consumer: &SourceConsumer,
    topics: &[(String, &'static str)],
    servers: &str,
) -> Result<(), RunError> {
    for (topic, role) in topics {
        let missing = |reason: String| RunError::MissingTopic {
            topic: topic.clone(),
            role,
            servers: servers.to_string(),
            reason,
        };
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(|e| missing(format!("metadata request failed: {e}")))?;
        match md.topics().iter().find(|t| t.name() == topic) {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {}
            Some(t) => {
                let reason = t
                    .error()
                    .map(|e| format!("{:?}", rdkafka::types::RDKafkaErrorCode::from(e)))
                    .unwrap_or_else(|| "it has no partitions".into());
                return Err(missing(reason));
            }
            None => return Err(missing("not in the cluster metadata".into())),
        }
    }
    Ok(())
}

fn poll_loop(
    consumer: &SourceConsumer,
    shared: &Shared,
    shutdown: &CancellationToken,
    commit_interval: Duration,
) {
    let ctx = consumer.context();
    let mut next_commit = Instant::now() + commit_interval;
    let mut next_flush = Instant::now();
    while !shutdown.is_cancelled() && !shared.cancel.is_cancelled() {
        let now = Instant::now();
        if now >= next_flush {
            next_flush = now + ctx.flush_due(consumer);
        }
        if now >= next_commit {
            ctx.commit(consumer, None);
            next_commit = now + commit_interval;
        }
        let wait = next_flush
            .min(next_commit)
            .saturating_duration_since(now)
            .min(Duration::from_millis(100));
        match consumer.poll(wait) {
            Some(Ok(m)) => ctx.accept(consumer, &m),
            Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
            None => {}
        }
    }
    let owned = ctx.owned();
    tracing::info!(partitions = ?owned, "shutting down: draining owned partitions");
    ctx.drain_and_commit(consumer, &owned, "shutdown");
}
