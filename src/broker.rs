//! An embedded Kafka-protocol broker (librdkafka's mock cluster) for the
//! zero-install demo, `streamfold dev-broker` and fast tests.
//!
//! It speaks the real wire protocol on a loopback port, so any client can
//! connect while it lives. It keeps only a few MiB per partition and has no
//! admin API: topics are created through [`EmbeddedBroker::create_topic`].

use std::ffi::{CStr, CString};
use std::sync::{Arc, Weak};

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer};

/// Why the embedded broker could not start or create a topic.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// librdkafka could not create the client that owns the cluster.
    #[error("cannot start the embedded broker")]
    Start(#[source] rdkafka::error::KafkaError),
    /// The client has no mock cluster attached.
    #[error("cannot start the embedded broker: librdkafka created no mock cluster")]
    NoCluster,
    /// Topic creation failed.
    #[error("cannot create topic {topic:?} on the embedded broker: {code}")]
    CreateTopic { topic: String, code: String },
}

/// A running embedded broker; stops when dropped.
pub struct EmbeddedBroker {
    // The mock cluster belongs to this client and lives as long as it does.
    owner: Arc<BaseProducer>,
    bootstrap: String,
}

impl EmbeddedBroker {
    /// Starts a cluster of `brokers` brokers on loopback.
    ///
    /// # Errors
    /// When librdkafka cannot create it.
    pub fn start(brokers: u32) -> Result<Self, BrokerError> {
        let owner: BaseProducer = ClientConfig::new()
            .set("test.mock.num.brokers", brokers.to_string())
            .create()
            .map_err(BrokerError::Start)?;
        let cluster = Self::cluster_of(&owner).ok_or(BrokerError::NoCluster)?;
        // SAFETY: `cluster` is the live mock cluster owned by `owner`; the
        // returned string is owned by the cluster and copied at once.
        let bootstrap = unsafe {
            rdkafka_sys::rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, 0);
            CStr::from_ptr(rdkafka_sys::rd_kafka_mock_cluster_bootstraps(cluster))
                .to_string_lossy()
                .into_owned()
        };
        let owner = Arc::new(owner);
        live().push((bootstrap.clone(), Arc::downgrade(&owner)));
        Ok(Self { owner, bootstrap })
    }

    fn cluster_of(owner: &BaseProducer) -> Option<*mut rdkafka_sys::rd_kafka_mock_cluster_t> {
        // SAFETY: the pointer is the client's own handle, valid while it lives.
        let ptr = unsafe { rdkafka_sys::rd_kafka_handle_mock_cluster(owner.client().native_ptr()) };
        (!ptr.is_null()).then_some(ptr)
    }

    /// The `bootstrap.servers` string clients connect with.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Creates a topic with `partitions` partitions.
    ///
    /// # Errors
    /// When the cluster refuses (e.g. invalid name).
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), BrokerError> {
        mock_topic_create(&self.owner, topic, partitions)
    }
}

/// The embedded brokers alive in this process, by bootstrap string.
static LIVE: std::sync::Mutex<Vec<(String, Weak<BaseProducer>)>> =
    std::sync::Mutex::new(Vec::new());

fn live() -> std::sync::MutexGuard<'static, Vec<(String, Weak<BaseProducer>)>> {
    LIVE.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Creates `topic` with `partitions` partitions when `servers` is an
/// embedded broker of this process (`None` otherwise). librdkafka's mock
/// cluster answers no CreateTopics request from an admin client, so the
/// topics streamfold creates itself (checkpoints, resume state,
/// repartitioning) are created on it this way.
pub fn create_embedded_topic(
    servers: &str,
    topic: &str,
    partitions: i32,
) -> Option<Result<(), BrokerError>> {
    let owner = live()
        .iter()
        .find(|(b, _)| b == servers)
        .and_then(|(_, o)| o.upgrade())?;
    Some(mock_topic_create(&owner, topic, partitions))
}

fn mock_topic_create(
    owner: &BaseProducer,
    topic: &str,
    partitions: i32,
) -> Result<(), BrokerError> {
    let err = |code: String| BrokerError::CreateTopic {
        topic: topic.to_string(),
        code,
    };
    let name = CString::new(topic).map_err(|_| err("name contains NUL".into()))?;
    let cluster = EmbeddedBroker::cluster_of(owner).ok_or(BrokerError::NoCluster)?;
    // SAFETY: `cluster` is live (owned by `owner`); `name` outlives the call.
    let code =
        unsafe { rdkafka_sys::rd_kafka_mock_topic_create(cluster, name.as_ptr(), partitions, 1) };
    if code == rdkafka_sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        Ok(())
    } else {
        Err(err(format!(
            "{:?}",
            rdkafka::types::RDKafkaErrorCode::from(code)
        )))
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        live().retain(|(b, _)| *b != self.bootstrap);
    }
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("bootstrap", &self.bootstrap)
            .finish()
    }
}
