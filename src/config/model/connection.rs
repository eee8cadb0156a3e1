//! How to reach the Kafka cluster: brokers, group, TLS, SASL, and the
//! librdkafka properties passed through.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use super::defaults;

/// Kafka connection settings: typed where they matter, then passthrough.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list (librdkafka `bootstrap.servers`).
    pub bootstrap_servers: String,
    /// Consumer group shared by every replica of this pipeline.
    pub group_id: String,
    /// librdkafka `security.protocol`; implied by `tls` and `sasl` when
    /// not set.
    #[serde(default)]
    pub security_protocol: Option<SecurityProtocol>,
    /// SASL credentials; the password comes from the environment only.
    #[serde(default)]
    pub sasl: Option<SaslConfig>,
    /// TLS to the brokers; implies `security.protocol` `ssl` (`sasl_ssl`
    /// with `sasl`) unless `security_protocol` says otherwise.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Bytes librdkafka may prefetch, all partitions of the consumer
    /// together (`queued.max.messages.kbytes`).
    #[serde(default = "defaults::prefetch")]
    pub prefetch: ByteSize,
    /// Consumer group session timeout (`session.timeout.ms`).
    #[serde(default = "defaults::session_timeout", with = "humantime_serde")]
    pub session_timeout: Duration,
    /// Partition assignment strategy.
    #[serde(default)]
    pub partition_assignment_strategy: AssignmentStrategy,
    /// Where a new group starts reading.
    #[serde(default)]
    pub auto_offset_reset: OffsetReset,
    /// librdkafka properties applied to the consumer and the producer.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties for the consumer only.
    #[serde(default)]
    pub consumer_properties: BTreeMap<String, String>,
    /// librdkafka properties for the producer only.
    #[serde(default)]
    pub producer_properties: BTreeMap<String, String>,
}

/// A choice among librdkafka values, written in the configuration as
/// librdkafka writes it.
macro_rules! librdkafka_choice {
    ($(#[$doc:meta])* $name:ident $(default $default:ident)? { $($(#[$vdoc:meta])* $variant:ident = $text:literal $(| $alias:literal)*),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text $(, alias = $alias)*)] $variant),+
        }

        impl $name {
            /// The librdkafka property value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        $(
            impl Default for $name {
                fn default() -> Self {
                    Self::$default
                }
            }
        )?
    };
}

librdkafka_choice! {
    /// librdkafka `security.protocol`.
    SecurityProtocol {
        /// No TLS, no SASL.
        Plaintext = "plaintext" | "PLAINTEXT",
        /// TLS.
        Ssl = "ssl" | "SSL",
        /// SASL without TLS.
        SaslPlaintext = "sasl_plaintext" | "SASL_PLAINTEXT",
        /// SASL over TLS.
        SaslSsl = "sasl_ssl" | "SASL_SSL",
    }
}

librdkafka_choice! {
    /// librdkafka `partition.assignment.strategy`.
    AssignmentStrategy default Range {
        /// Ranges of partitions per topic (Kafka's default).
        Range = "range",
        /// Partitions dealt round-robin.
        RoundRobin = "roundrobin",
        /// Incremental rebalances: members keep the partitions they keep.
        CooperativeSticky = "cooperative-sticky",
    }
}

librdkafka_choice! {
    /// librdkafka `auto.offset.reset`: where a group without a committed
    /// offset starts.
    OffsetReset default Earliest {
        /// The oldest record.
        Earliest = "earliest",
        /// Only records written from now on.
        Latest = "latest",
    }
}

librdkafka_choice! {
    /// librdkafka `sasl.mechanism`.
    SaslMechanism {
        /// User and password in the clear (use with TLS).
        Plain = "PLAIN",
        /// SCRAM with SHA-256.
        ScramSha256 = "SCRAM-SHA-256",
        /// SCRAM with SHA-512.
        ScramSha512 = "SCRAM-SHA-512",
    }
}

/// SASL authentication. The password is read from `password_env`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    /// The SASL mechanism.
    pub mechanism: SaslMechanism,
    /// SASL user name.
    pub username: String,
    /// Environment variable that holds the password.
    #[serde(default = "defaults::sasl_password_env")]
    pub password_env: String,
}

/// TLS settings. Paths are relative to the config file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA certificates that signed the brokers' (default:
    /// the system's trust store).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for brokers that require mutual TLS.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}
