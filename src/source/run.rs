//! Wiring: plan, topics, producer, consumer thread; then run until
//! shutdown.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{Producer, ProducerContext};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::PipelineError;
use super::checkpoints::RestoreError;
use super::consumer::{SourceConsumer, SourceContext};
use super::poll::ConsumerThread;
use super::topics::{check_cluster, checkpoint_topic, ensure_topic, state_topic};
use super::{Shared, Stage};
use crate::checkpoint::CheckpointError;
use crate::config::{ClientConfigError, Config, ConfigError, LoadedConfig};
use crate::offsets::CommitBoard;
use crate::pipeline::{Plan, ReaderError};
use crate::sink::{KafkaSink, PolledProducer, Sink, SinkContext, SinkProducer};
use crate::task::{CheckpointSettings, Env};
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
    /// The brokers cannot be reached, or refuse the TLS or SASL handshake.
    #[error("cannot connect to the Kafka brokers at {servers} ({security}): {reason}")]
    Connect {
        servers: String,
        security: String,
        reason: String,
    },
    /// A topic the pipeline needs does not exist.
    #[error("topic {topic:?} ({role}) does not exist on {servers}: {reason}; create it first")]
    MissingTopic {
        topic: String,
        role: &'static str,
        servers: String,
        reason: String,
    },
    /// A broker call failed with an error that waiting does not cure.
    #[error("{what} failed on {servers}: {source}")]
    Broker {
        what: &'static str,
        servers: String,
        #[source]
        source: KafkaError,
    },
    /// The registry refused the output schema.
    #[error(
        "the Schema Registry at {registry} refused the derived output schema under subject \
         {subject} ({status}): {message}. Print the schema with `streamfold schema`; make it \
         compatible with the subject's versions (aggregates and names as before), write to \
         another output topic, or change the subject's compatibility in the registry"
    )]
    OutputSchema {
        subject: String,
        registry: String,
        status: u16,
        message: String,
    },
    /// The registry refused the credentials or could not be reached.
    #[error(transparent)]
    Registry(crate::registry::RegistryError),
    /// The reader schema, to be taken from the registry, could not be.
    #[error(transparent)]
    Reader(#[from] crate::pipeline::ReaderError),
    /// A thread the pipeline needs could not be started.
    #[error("cannot start the thread of the {what}: {source}")]
    Spawn {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The pipeline stopped after an error it cannot recover from.
    #[error("pipeline {pipeline} stopped: {error}")]
    Failed {
        pipeline: String,
        // Boxed: the error path is rare, the `Result`s are everywhere.
        error: Box<super::PipelineError>,
    },
}

impl RunError {
    /// The process exit code for this error, as README states it: 2 when
    /// the configuration was refused at start-up (its values or schemas,
    /// a missing secret, a client setting librdkafka refuses, a topic that
    /// does not exist, an output schema the registry refuses), 1 for
    /// failures while running. Every check that
    /// gives 2 runs before anything is created or committed on the broker.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_)
            | Self::Secret(_)
            | Self::Client { .. }
            | Self::MissingTopic { .. }
            | Self::OutputSchema { .. } => 2,
            Self::Reader(e) if !matches!(e, ReaderError::Registry { .. }) => 2,
            // A checkpoint of other settings (or another format) asks the
            // user to choose, as a configuration problem does.
            Self::Failed { error, .. }
                if matches!(
                    **error,
                    PipelineError::Restore(RestoreError::Unusable {
                        source: CheckpointError::PlanChanged { .. }
                            | CheckpointError::Version { .. },
                        ..
                    })
                ) =>
            {
                2
            }
            Self::Connect { .. }
            | Self::Broker { .. }
            | Self::Registry(_)
            | Self::Spawn { .. }
            | Self::Reader(_)
            | Self::Failed { .. } => 1,
        }
    }
}

/// Runs the configured pipeline until `shutdown` is cancelled (then drains
/// and commits) or a fatal error occurs. `extra` transforms run after the
/// configured ones.
///
/// A pipeline with `repartition = true` runs as two consumers: one keys
/// every record of the input by its group key into the internal topic
/// (consumer group `<group_id>.repartition`), the other windows the
/// internal topic (consumer group `<group_id>`).
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
    let reader = crate::pipeline::latest_reader(loaded).await?;
    let mut plan = Plan::build_with(loaded, extra, reader)?;
    super::output_schema::register(&mut plan, loaded, &shutdown).await?;
    let plan = Arc::new(plan);
    // Every topic the pipeline reads or writes but does not create.
    let mut topics = vec![
        (plan.input_topic.clone(), "input"),
        (plan.output_topic.clone(), "output"),
        (plan.dead_letter_topic.clone(), "dead-letter"),
    ];
    if let Some(t) = plan.late_topic() {
        topics.push((t.to_string(), "late records"));
    }
    let c = config.clone();
    tokio::task::spawn_blocking(move || check_cluster(&c, &topics))
        .await
        .unwrap_or(Ok(()))?;
    let Some(internal) = config.repartition_topic() else {
        let input = plan.input_topic.clone();
        return run_stage(config, plan, Stage::Aggregate, input, metrics, shutdown).await;
    };
    ensure_topic(
        config,
        &plan.input_topic,
        &internal,
        "repartition",
        &[],
        &shutdown,
    )
    .await?;
    let mut first = config.clone();
    first.kafka.group_id = format!("{}.repartition", config.kafka.group_id);
    // When one stage fails, the other stops too (and drains).
    let stop = shutdown.child_token();
    let stage = |config: &Config, stage, input: String| {
        let (plan, metrics, stop) = (Arc::clone(&plan), metrics.clone(), stop.clone());
        let config = config.clone();
        async move {
            let r = run_stage(&config, plan, stage, input, metrics, stop.clone()).await;
            if r.is_err() {
                stop.cancel();
            }
            r
        }
    };
    let (a, b) = tokio::join!(
        stage(&first, Stage::Repartition, plan.input_topic.clone()),
        stage(config, Stage::Aggregate, internal),
    );
    a.and(b)
}

/// Runs one consumer of a pipeline: the whole pipeline, or one stage of a
/// repartitioning one.
async fn run_stage(
    config: &Config,
    plan: Arc<Plan>,
    stage: Stage,
    input_topic: String,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let servers = config.kafka.bootstrap_servers.clone();
    let producer: SinkProducer =
        polled_producer(config, SinkContext, "producer", "streamfold-deliveries")?;
    let max_message_bytes = config
        .producer_property("message.max.bytes")
        .and_then(|v| v.parse().ok())
        .unwrap_or(crate::sink::DEFAULT_MAX_MESSAGE_BYTES);
    // The repartition stage writes the internal topic; its "output".
    let (output, late) = match stage {
        Stage::Aggregate => (
            plan.output_topic.clone(),
            plan.late_topic().map(str::to_string),
        ),
        Stage::Repartition => (config.repartition_topic().unwrap_or_default(), None),
    };
    let label = match stage {
        Stage::Aggregate => plan.name.clone(),
        Stage::Repartition => format!("{}/repartition", plan.name),
    };
    // Longest a healthy poll loop goes without polling: a rebalance drain.
    let stall_after = config.commit.drain_deadline * 2 + Duration::from_secs(30);
    // Only windows keep state worth a checkpoint.
    let checkpoints = match (stage, &plan.shape) {
        (Stage::Aggregate, crate::pipeline::Shape::Windowed(_)) => {
            checkpoint_topic(config, &plan, &input_topic, &shutdown).await?
        }
        _ => None,
    };
    let mut kafka = KafkaSink::new(
        producer,
        &output,
        &plan.dead_letter_topic,
        late.as_deref(),
        max_message_bytes,
    );
    if let Some(c) = &checkpoints {
        kafka = kafka.with_checkpoints(c.name(), c.partitions());
    }
    let kafka = Arc::new(kafka);
    // While the consumer joins its group: the first outputs then go out
    // as soon as they are made.
    let warm = Arc::clone(&kafka);
    drop(tokio::task::spawn_blocking(move || {
        if let Err(e) = warm.warm_up(Duration::from_secs(10)) {
            tracing::debug!(error = %e, "could not read the output topics' metadata yet");
        }
    }));
    let env = Env {
        pipeline: plan.name.clone(),
        topic: input_topic.clone(),
        sink: Arc::clone(&kafka) as Arc<dyn Sink>,
        board: CommitBoard::default(),
        metrics: metrics.pipeline(&label),
        max_in_flight: config.batch.max_in_flight,
        max_pending_outputs: config.batch.max_pending_outputs,
        idle_timeout: plan.idle_timeout(),
        cancel: CancellationToken::new(),
        checkpoints: checkpoints.as_ref().map(|_| CheckpointSettings {
            interval: config.state.checkpoint_interval,
            plan: plan.fingerprint.clone(),
            scope: crate::checkpoint::scope(&config.kafka.group_id, &input_topic),
        }),
        schemas: plan
            .registry
            .clone()
            .zip(plan.decoder.writers().cloned())
            .map(|(registry, writers)| crate::task::SchemaSource { registry, writers }),
    };
    let schema_headers = plan.decoder.writers().is_some() && input_topic == plan.input_topic;
    let window_partitions = matches!(
        &plan.shape,
        crate::pipeline::Shape::Windowed(w) if w.dedupe.is_some()
    );
    let shared = Arc::new(Shared {
        plan: Arc::clone(&plan),
        stage,
        schema_headers,
        window_partitions,
        env: Arc::new(env),
        kafka,
        tasks: TaskTracker::new(),
        health: metrics.health.register(&label, stall_after),
        batch: config.batch.clone(),
        drain_deadline: config.commit.drain_deadline,
        offset_reset: config.kafka.auto_offset_reset,
        shutdown: shutdown.clone(),
        fatal: Mutex::new(None),
    });
    let state = state_topic(config, &shared.env.topic, &shutdown).await?;
    if shutdown.is_cancelled() {
        return Ok(());
    }
    let context = SourceContext::new(
        Arc::clone(&shared),
        tokio::runtime::Handle::current(),
        state,
        checkpoints,
    );
    let consumer: SourceConsumer = config
        .consumer_config()?
        // Broker states every second, for readiness and the reconnect count.
        .set("statistics.interval.ms", "1000")
        .create_with_context(context)
        .map_err(client_error(config, "consumer"))?;

    let consumer = ConsumerThread::start(
        consumer,
        Arc::clone(&shared),
        shutdown.clone(),
        config.commit.interval,
        servers,
    )?;
    let result = consumer
        .join(config.commit.drain_deadline, &plan.name)
        .await;
    // Every partition task has drained, or stops now that the consumer
    // has (an abandoned one would hold its sink's records unflushed).
    shared.tasks.close();
    shared.env.cancel.cancel();
    if tokio::time::timeout(Duration::from_secs(5), shared.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(pipeline = %plan.name, "partition tasks did not stop within 5 s");
    }
    let flush = Arc::clone(&shared.kafka);
    let _ =
        tokio::task::spawn_blocking(move || flush.producer().flush(Duration::from_secs(5))).await;
    result?;
    match shared.take_fatal() {
        Some(error) => Err(RunError::Failed {
            pipeline: plan.name.clone(),
            error: Box::new(error),
        }),
        None => Ok(()),
    }
}

/// A producer of `config` with `context`, its events served by a thread
/// named `thread` (see [`PolledProducer`]); `client` names it in errors.
pub(super) fn polled_producer<C: ProducerContext + 'static>(
    config: &Config,
    context: C,
    client: &'static str,
    thread: &str,
) -> Result<PolledProducer<C>, RunError> {
    let producer = config
        .producer_config()?
        .create_with_context(context)
        .map_err(client_error(config, client))?;
    PolledProducer::new(producer, thread).map_err(|source| RunError::Spawn {
        what: client,
        source,
    })
}

/// The error for a librdkafka `client` that could not be created: it
/// names the client and the brokers.
pub(super) fn client_error(
    config: &Config,
    client: &'static str,
) -> impl FnOnce(KafkaError) -> RunError {
    let servers = config.kafka.bootstrap_servers.clone();
    move |source| RunError::Client {
        client,
        servers,
        source,
    }
}
