//! librdkafka client configurations built from the typed settings.

use rdkafka::ClientConfig;

use super::model::{Config, KafkaConfig, SecurityProtocol};
use super::secret::Secret;

/// Why a client configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientConfigError {
    /// The SASL password variable is not set.
    #[error("kafka.sasl: {0}")]
    MissingSecret(String),
}

impl KafkaConfig {
    /// The `security.protocol` in effect: as configured, or implied by
    /// `tls` and `sasl`.
    pub fn protocol(&self) -> SecurityProtocol {
        match (self.security_protocol, &self.tls, &self.sasl) {
            (Some(p), _, _) => p,
            (None, Some(_), Some(_)) => SecurityProtocol::SaslSsl,
            (None, Some(_), None) => SecurityProtocol::Ssl,
            (None, None, Some(_)) => SecurityProtocol::SaslPlaintext,
            (None, None, None) => SecurityProtocol::Plaintext,
        }
    }

    fn common(&self) -> Result<ClientConfig, ClientConfigError> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers);
        c.set("security.protocol", self.protocol().as_str());
        if let Some(tls) = &self.tls {
            for (key, path) in [
                ("ssl.ca.location", &tls.ca_file),
                ("ssl.certificate.location", &tls.cert_file),
                ("ssl.key.location", &tls.key_file),
            ] {
                if let Some(path) = path {
                    c.set(key, path.display().to_string());
                }
            }
        }
        if let Some(sasl) = &self.sasl {
            let password =
                Secret::from_env(&sasl.password_env).map_err(ClientConfigError::MissingSecret)?;
            c.set("sasl.mechanism", sasl.mechanism.as_str())
                .set("sasl.username", &sasl.username)
                .set("sasl.password", password.expose());
        }
        let (key, v) = RECONNECT_BACKOFF;
        c.set(key, v);
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        Ok(c)
    }
}

/// The first reconnect backoff of every client, where `properties` sets
/// none. librdkafka leaves its bootstrap connection once the first
/// metadata names the brokers, and connects to the broker it needs next
/// no sooner than `reconnect.backoff.ms / 2` after its last connection (at
/// least 11 ms). librdkafka's 100 ms made each of the clients of a start
/// wait 50 ms for its second request, and a group's first fetch start
/// about 200 ms after the process did. The Java client's default is
/// 50 ms; the backoff still doubles on each failed attempt, up to
/// `reconnect.backoff.max.ms`.
pub const RECONNECT_BACKOFF: (&str, &str) = ("reconnect.backoff.ms", "20");

/// The sizes of fetch responses streamfold asks for, in bytes, where
/// `properties` and `consumer_properties` set none: at most 1 MiB a
/// response (or `message.max.bytes`, if larger), 128 KiB a partition.
/// librdkafka's defaults let a response reach the prefetch
/// (`queued.max.messages.kbytes`, 8 MiB by default), 1 MiB a partition.
/// glibc gives a buffer that large fresh pages per response, which the
/// kernel faults in and zeroes as the socket is read into them: in a
/// profile of the benchmark's q7 that was 18% of the process's CPU, on
/// the fetch thread. A smaller response reuses its buffer and is still in
/// cache when it is parsed. A broker far away may want more bytes per
/// round trip (one fetch is in flight per broker).
pub const FETCH_SIZES: [(&str, u64); 2] = [
    ("fetch.max.bytes", 1_048_576),
    ("max.partition.fetch.bytes", 131_072),
];

impl Config {
    /// The consumer configuration: offsets are stored and committed by
    /// streamfold only, prefetch is bounded.
    ///
    /// # Errors
    /// When a secret the configuration names is missing from the environment.
    pub fn consumer_config(&self) -> Result<ClientConfig, ClientConfigError> {
        let k = &self.kafka;
        let mut c = k.common()?;
        c.set("group.id", &k.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", k.auto_offset_reset.as_str())
            .set(
                "partition.assignment.strategy",
                k.partition_assignment_strategy.as_str(),
            )
            .set(
                "session.timeout.ms",
                k.session_timeout.as_millis().to_string(),
            )
            .set(
                "queued.max.messages.kbytes",
                (k.prefetch.as_u64() / 1024).max(1).to_string(),
            )
            // Once the prefetch queue is full librdkafka waits this long
            // before fetching again (default 1 s): with a bounded prefetch
            // the fetcher would idle most of the time while the queue
            // drains in milliseconds.
            .set("fetch.queue.backoff.ms", "5");
        // Where `properties` sets no fetch size; `fetch.max.bytes` never
        // below `message.max.bytes` (librdkafka refuses to start with a
        // smaller one once it is set).
        let message_max = k
            .consumer_properties
            .get("message.max.bytes")
            .map(String::as_str)
            .or(c.get("message.max.bytes"))
            .and_then(|v| v.trim().parse::<u64>().ok());
        for (key, v) in FETCH_SIZES {
            if c.get(key).is_some() {
                continue;
            }
            let v = match (key, message_max) {
                ("fetch.max.bytes", Some(m)) => v.max(m),
                _ => v,
            };
            c.set(key, v.to_string());
        }
        for (key, v) in &k.consumer_properties {
            c.set(key, v);
        }
        Ok(c)
    }

    /// The producer configuration: idempotent, acks from all in-sync replicas.
    ///
    /// # Errors
    /// When a secret the configuration names is missing from the environment.
    pub fn producer_config(&self) -> Result<ClientConfig, ClientConfigError> {
        let k = &self.kafka;
        let mut c = k.common()?;
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5");
        // librdkafka gives up on a record after 5 minutes by default, and a
        // window result it gives up on stops the pipeline. Waiting without
        // limit lets the pipeline outlast a broker outage of any length:
        // records wait in the bounded queue, and backpressure holds the
        // input meanwhile.
        if self.producer_property("message.timeout.ms").is_none()
            && self.producer_property("delivery.timeout.ms").is_none()
        {
            c.set("message.timeout.ms", "0");
        }
        for (key, v) in &k.producer_properties {
            c.set(key, v);
        }
        Ok(c)
    }

    /// A librdkafka property set for the producer in the passthrough
    /// tables (`kafka.producer_properties` over `kafka.properties`).
    pub fn producer_property(&self, name: &str) -> Option<&str> {
        let k = &self.kafka;
        k.producer_properties
            .get(name)
            .or_else(|| k.properties.get(name))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn fetch_responses_are_small_unless_the_configuration_says_otherwise() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/clickstream.toml"
        ));
        let mut loaded = crate::config::load(path).expect("the shipped example loads");
        let c = loaded.config.consumer_config().unwrap();
        assert_eq!(c.get("fetch.max.bytes"), Some("1048576"));
        assert_eq!(c.get("max.partition.fetch.bytes"), Some("131072"));
        // Larger messages than a fetch would hold: librdkafka refuses a
        // `fetch.max.bytes` below `message.max.bytes`.
        let kafka = &mut loaded.config.kafka;
        kafka
            .properties
            .insert("message.max.bytes".into(), "4000000".into());
        let c = loaded.config.consumer_config().unwrap();
        assert_eq!(c.get("fetch.max.bytes"), Some("4000000"));
        c.create::<rdkafka::consumer::BaseConsumer>()
            .expect("librdkafka takes the sizes");
        // Set in `properties`, or in `consumer_properties`: theirs.
        let kafka = &mut loaded.config.kafka;
        kafka
            .properties
            .insert("max.partition.fetch.bytes".into(), "262144".into());
        kafka
            .consumer_properties
            .insert("fetch.max.bytes".into(), "52428800".into());
        let c = loaded.config.consumer_config().unwrap();
        assert_eq!(c.get("fetch.max.bytes"), Some("52428800"));
        assert_eq!(c.get("max.partition.fetch.bytes"), Some("262144"));
    }
}
