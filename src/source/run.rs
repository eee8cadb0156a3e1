//! Wiring: plan, producer, consumer thread; then run until shutdown.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use super::PipelineError;
use super::checkpoints::{CheckpointTopic, RestoreError};
use super::consumer::{FetchQueue, Fetched, SourceConsumer, SourceContext};
use super::resume::{StateAcks, StateProducer, StateTopic, broker_keeps_metadata};
use super::{Shared, Stage, Transient};
use crate::checkpoint::CheckpointError;
use crate::config::{ClientConfigError, Config, ConfigError, LoadedConfig, ResumeState};
use crate::offsets::CommitBoard;
use crate::pipeline::{Plan, ReaderError};
use crate::sink::{KafkaSink, Sink, SinkContext, SinkProducer};
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
    #[error("cannot start the {what}: {source}")]
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

/// Records the errors librdkafka reports while connecting.
#[derive(Default)]
struct ErrorLog(Mutex<Vec<String>>);

impl rdkafka::ClientContext for ErrorLog {
    fn error(&self, error: KafkaError, reason: &str) {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        v.push(format!("{error}: {reason}"));
    }
}

impl rdkafka::consumer::ConsumerContext for ErrorLog {}

/// Fails fast, naming the brokers and the security settings, when the
/// cluster cannot be reached or refuses the TLS or SASL handshake (which
/// librdkafka otherwise retries forever), and when one of `topics` (with
/// its role) does not exist: before anything is created or committed.
fn check_cluster(config: &Config, topics: &[(String, &'static str)]) -> Result<(), RunError> {
    let k = &config.kafka;
    let protocol = k.protocol();
    let security = match &k.sasl {
        Some(s) => format!(
            "security.protocol {protocol}, SASL mechanism {} as user {:?}",
            s.mechanism, s.username
        ),
        None => format!("security.protocol {protocol}"),
    };
    let consumer: rdkafka::consumer::BaseConsumer<ErrorLog> = config
        .consumer_config()?
        .create_with_context(ErrorLog::default())
        .map_err(|source| RunError::Client {
            client: "consumer",
            servers: k.bootstrap_servers.clone(),
            source,
        })?;
    let consumer = Transient::new(consumer);
    match consumer.fetch_metadata(None, Duration::from_secs(10)) {
        Ok(md) => check_topics(&md, topics, &k.bootstrap_servers),
        Err(e) => {
            // Errors reach the context only when the client is polled.
            for _ in 0..5 {
                let _ = consumer.poll(Duration::from_millis(20));
            }
            let seen = consumer
                .context()
                .0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            // The first error is the cause (a refused handshake); later
            // ones repeat it or say that all brokers are down.
            let reason = seen.into_iter().next().unwrap_or_else(|| e.to_string());
            Err(RunError::Connect {
                servers: k.bootstrap_servers.clone(),
                security,
                reason,
            })
        }
    }
}

/// Creates `name` when missing, with the partition count and replication
/// of topic `like`. Returns its partition count.
async fn ensure_topic(
    config: &Config,
    like: &str,
    name: &str,
    role: &'static str,
    settings: &[(&str, &str)],
    shutdown: &CancellationToken,
) -> Result<i32, RunError> {
    let servers = config.kafka.bootstrap_servers.clone();
    let admin: AdminClient<DefaultClientContext> = config
        .producer_config()?
        .create()
        .map_err(client_error(config, "admin client"))?;
    let admin = Arc::new(Transient::new(admin));
    // (partitions, replication) of both topics, `None` for one that does
    // not exist; broker outages are waited out.
    let md_admin = Arc::clone(&admin);
    let (like_owned, name_owned) = (like.to_string(), name.to_string());
    let stop = shutdown.clone();
    let shapes = tokio::task::spawn_blocking(move || {
        crate::retry::blocking(
            "reading topic metadata",
            crate::retry::transient,
            || stop.is_cancelled(),
            |_| {},
            || {
                let md = md_admin
                    .inner()
                    .fetch_metadata(None, Duration::from_secs(10))?;
                let shape = |topic: &str| {
                    let t = md
                        .topics()
                        .iter()
                        .find(|t| t.name() == topic && t.error().is_none())?;
                    let replicas = t.partitions().first()?.replicas().len();
                    Some((t.partitions().len() as i32, replicas.max(1) as i32))
                };
                Ok((shape(&like_owned), shape(&name_owned)))
            },
        )
    })
    .await;
    let (like_shape, existing) = match shapes {
        Ok(Ok(shapes)) => shapes,
        Ok(Err(source)) => {
            return Err(RunError::Broker {
                what: "reading topic metadata",
                servers,
                source,
            });
        }
        Err(_) => (None, None),
    };
    if let Some((partitions, _)) = existing {
        return Ok(partitions);
    }
    let missing = |reason: String| RunError::MissingTopic {
        topic: name.to_string(),
        role,
        servers: servers.clone(),
        reason,
    };
    let Some((partitions, replication)) = like_shape else {
        return Err(missing(format!(
            "cannot read the partition count of topic {like:?} to create it like that"
        )));
    };
    if let Some(created) = crate::broker::create_embedded_topic(&servers, name, partitions) {
        created.map_err(|e| missing(format!("creating it failed: {e}")))?;
        tracing::info!(
            topic = name,
            role,
            partitions,
            "created topic on the embedded broker"
        );
        return Ok(partitions);
    }
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replication));
    for (k, v) in settings {
        topic = topic.set(k, v);
    }
    let results = admin
        .create_topics([&topic], &AdminOptions::new())
        .await
        .map_err(|e| missing(format!("creating it failed: {e}")))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(missing(format!("creating it failed: {code}"))),
        }
    }
    tracing::info!(topic = name, role, partitions, replication, "created topic");
    Ok(partitions)
}

/// A consumer that reads a topic of streamfold's own (resume state,
/// checkpoints) by assignment, in group `<group_id>.<suffix>` (never
/// joined), with short fetch waits.
fn topic_reader(
    config: &Config,
    suffix: &str,
    client: &'static str,
) -> Result<rdkafka::consumer::BaseConsumer, RunError> {
    let mut reader_config = config.clone();
    reader_config.kafka.group_id = format!("{}.{suffix}", config.kafka.group_id);
    reader_config
        .consumer_config()?
        .set("fetch.wait.max.ms", "10")
        .create()
        .map_err(client_error(config, client))
}

/// The checkpoint topic of the aggregate stage, created (compacted) if
/// missing, and a reader of it; `None` with `state.checkpoints = false`.
async fn checkpoint_topic(
    config: &Config,
    plan: &Plan,
    input_topic: &str,
    shutdown: &CancellationToken,
) -> Result<Option<CheckpointTopic>, RunError> {
    if !config.state.checkpoints {
        return Ok(None);
    }
    let name = config
        .state
        .checkpoint_topic
        .clone()
        .unwrap_or_else(|| format!("{}-checkpoints", config.kafka.group_id));
    let partitions = ensure_topic(
        config,
        input_topic,
        &name,
        "checkpoints",
        &[("cleanup.policy", "compact")],
        shutdown,
    )
    .await?;
    let reader = topic_reader(config, "checkpoint-reader", "checkpoint reader")?;
    tracing::info!(
        topic = %name,
        interval = %humantime::format_duration(config.state.checkpoint_interval),
        "window state is checkpointed"
    );
    Ok(Some(CheckpointTopic::new(
        name,
        partitions,
        reader,
        crate::checkpoint::scope(&config.kafka.group_id, input_topic),
        plan.fingerprint.clone(),
        config.state.on_plan_change,
    )))
}

/// The state topic for this consumer's resume state, when the config asks
/// for one or the broker drops offset-commit metadata.
async fn state_topic(
    config: &Config,
    input_topic: &str,
    shutdown: &CancellationToken,
) -> Result<Option<StateTopic>, RunError> {
    let use_topic = match config.commit.resume_state {
        ResumeState::CommitMetadata => false,
        ResumeState::Topic => true,
        ResumeState::Auto => {
            let mut probe = config.clone();
            probe.kafka.group_id = format!("{}.metadata-probe", config.kafka.group_id);
            let consumer: rdkafka::consumer::BaseConsumer = probe
                .consumer_config()?
                .create()
                .map_err(client_error(config, "probe consumer"))?;
            let consumer = Transient::new(consumer);
            let t = input_topic.to_string();
            let stop = shutdown.clone();
            let keeps = tokio::task::spawn_blocking(move || {
                broker_keeps_metadata(&consumer, &t, || stop.is_cancelled())
            });
            match keeps.await {
                Ok(Ok(keeps)) => !keeps,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot tell whether the broker keeps commit metadata; using the state topic");
                    true
                }
                Err(_) => true,
            }
        }
    };
    if !use_topic {
        return Ok(None);
    }
    let name = config
        .commit
        .state_topic
        .clone()
        .unwrap_or_else(|| format!("{}-resume", config.kafka.group_id));
    let partitions =
        ensure_topic(config, input_topic, &name, "resume state", &[], shutdown).await?;
    let producer: StateProducer = config
        .producer_config()?
        .create_with_context(StateAcks::default())
        .map_err(client_error(config, "state producer"))?;
    let reader = topic_reader(config, "resume-reader", "state reader")?;
    tracing::info!(
        topic = %name,
        mode = ?config.commit.resume_state,
        "resume state is kept in a topic (the broker drops offset-commit metadata, or the config asks for it)"
    );
    Ok(Some(StateTopic::new(name, partitions, producer, reader)))
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
    let producer = SinkProducer::new(
        config
            .producer_config()?
            .create_with_context(SinkContext)
            .map_err(client_error(config, "producer"))?,
        "streamfold-deliveries",
    )
    .map_err(|source| RunError::Spawn {
        what: "producer's delivery thread",
        source,
    })?;
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

    let interval = config.commit.interval;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let (left_tx, left_rx) = tokio::sync::oneshot::channel::<()>();
    let loop_shared = Arc::clone(&shared);
    let loop_shutdown = shutdown.clone();
    std::thread::Builder::new()
        .name("streamfold-consumer".into())
        .spawn(move || {
            let result = consumer
                .subscribe(&[loop_shared.env.topic.as_str()])
                .map_err(|source| RunError::Client {
                    client: "consumer subscription",
                    servers: servers.clone(),
                    source,
                });
            if result.is_ok() {
                tracing::info!(
                    pipeline = %loop_shared.plan.name,
                    topic = %loop_shared.env.topic,
                    stage = ?loop_shared.stage,
                    "subscribed"
                );
                poll_loop(&consumer, &loop_shared, &loop_shutdown, interval);
            }
            // Drained and committed: what is left is leaving the group.
            let _ = done_tx.send(result);
            // Dropping the consumer leaves the group; it blocks, so it
            // happens here and not on the async runtime.
            drop(consumer);
            let _ = left_tx.send(());
        })
        .expect("spawning the consumer thread");

    let result = done_rx.await.unwrap_or_else(|_| {
        Err(RunError::Failed {
            pipeline: plan.name.clone(),
            error: Box::new(super::PipelineError::ConsumerPanicked),
        })
    });
    leave_group(left_rx, config.commit.drain_deadline, &plan.name).await;
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

/// Waits, at most `deadline`, for the consumer thread to have left the
/// group (`left` is sent, or dropped by a thread that panicked).
///
/// A consumer that leaves while a rebalance is in progress waits for the
/// rebalance to end, and librdkafka sets that wait no bound: a member that
/// died without leaving holds it up to its session timeout. Everything
/// this process read was committed before it began to leave, so it need
/// not wait longer: the group drops this member after its session
/// timeout.
async fn leave_group(left: tokio::sync::oneshot::Receiver<()>, deadline: Duration, pipeline: &str) {
    if tokio::time::timeout(deadline, left).await.is_err() {
        tracing::warn!(
            pipeline,
            deadline = %humantime::format_duration(deadline),
            "the consumer did not leave its group within commit.drain_deadline (a rebalance \
             is in progress); stopping without waiting: offsets are committed, and the group \
             drops this member after its session timeout"
        );
    }
}

/// Checks that every one of `topics` is in the cluster metadata `md`.
fn check_topics(
    md: &rdkafka::metadata::Metadata,
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

/// The error for a librdkafka `client` that could not be created: it
/// names the client and the brokers.
fn client_error(config: &Config, client: &'static str) -> impl FnOnce(KafkaError) -> RunError {
    let servers = config.kafka.bootstrap_servers.clone();
    move |source| RunError::Client {
        client,
        servers,
        source,
    }
}

fn poll_loop(
    consumer: &SourceConsumer,
    shared: &Shared,
    shutdown: &CancellationToken,
    commit_interval: Duration,
) {
    // Records already fetched are taken this many at a time between two
    // rounds of bookkeeping (clock, health, flushes, commits), which would
    // otherwise cost more than taking a record.
    const BURST: usize = 256;
    let ctx = consumer.context();
    let fetch = Arc::new(FetchQueue::new(consumer));
    ctx.read_fetched_from(Some(Arc::clone(&fetch)));
    let mut fetched = Fetched::with_capacity(BURST);
    let mut next_commit = Instant::now() + commit_interval;
    let mut next_flush = Instant::now();
    let mut next_gauges = Instant::now();
    while !shutdown.is_cancelled() && !shared.env.cancel.is_cancelled() {
        shared.health.polled();
        let now = Instant::now();
        if now >= next_gauges {
            ctx.report_lag(consumer);
            next_gauges = now + Duration::from_secs(5);
        }
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
        // Rebalances, errors and statistics (served inside `poll`), and
        // any record fetched before its partition was forwarded.
        for _ in 0..BURST {
            match consumer.poll(Duration::ZERO) {
                Some(Ok(m)) => ctx.accept(consumer, &m),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error");
                    break;
                }
                None => break,
            }
        }
        // The records: the wait for them is the loop's wait, so an event
        // on the consumer queue is served within it (at most 100 ms).
        fetch.take(wait, &mut fetched);
        ctx.accept_fetched(consumer, &fetched);
    }
    let owned = ctx.owned();
    tracing::info!(partitions = ?owned, "shutting down: draining owned partitions");
    ctx.drain_and_commit(consumer, &owned, "shutdown");
    // The queue and the records taken from it go before the consumer.
    ctx.read_fetched_from(None);
    drop(fetched);
    drop(fetch);
}
