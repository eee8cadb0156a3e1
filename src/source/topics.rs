//! The topics a pipeline needs: checked at start-up (fails fast, naming
//! what is missing or unreachable), and those streamfold owns (the
//! repartition, checkpoint and resume-state topics) created when missing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use tokio_util::sync::CancellationToken;

use super::Transient;
use super::checkpoints::CheckpointTopic;
use super::resume::{StateAcks, StateProducer, StateTopic, broker_keeps_metadata};
use super::run::{RunError, client_error, polled_producer};
use crate::config::{Config, ResumeState};
use crate::pipeline::Plan;

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
pub(super) fn check_cluster(
    config: &Config,
    topics: &[(String, &'static str)],
) -> Result<(), RunError> {
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
pub(super) async fn ensure_topic(
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
pub(super) fn topic_reader(
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
pub(super) async fn checkpoint_topic(
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
pub(super) async fn state_topic(
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
    let producer: StateProducer = polled_producer(
        config,
        StateAcks::default(),
        "state producer",
        "streamfold-state",
    )?;
    let reader = topic_reader(config, "resume-reader", "state reader")?;
    tracing::info!(
        topic = %name,
        mode = ?config.commit.resume_state,
        "resume state is kept in a topic (the broker drops offset-commit metadata, or the config asks for it)"
    );
    Ok(Some(StateTopic::new(name, partitions, producer, reader)))
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
