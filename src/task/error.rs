//! Why a partition task stopped its pipeline.

use crate::operator::OperatorError;
use crate::sink::SendError;

/// Fatal errors of a partition task.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// The operator's step panicked on the rayon pool (a bug in this
    /// project's code: a transform's panic is caught per record).
    #[error(
        "partition {partition}: batch at offsets {from}..={to} panicked on the rayon pool: {message}"
    )]
    BatchPanicked {
        partition: i32,
        from: i64,
        to: i64,
        message: String,
    },
    /// The broker refused a record, and another attempt would not help.
    #[error("partition {partition}: {what} was not delivered: {source}")]
    Delivery {
        partition: i32,
        what: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The producer would not take a record.
    #[error("partition {partition}: {source}")]
    Send {
        partition: i32,
        #[source]
        source: SendError,
    },
    /// The Schema Registry refused this pipeline's credentials, or its TLS
    /// handshake failed.
    #[error("partition {partition}: {source}")]
    Registry {
        partition: i32,
        #[source]
        source: crate::registry::RegistryError,
    },
    /// The operator failed.
    #[error("partition {partition}: {source}")]
    Operator {
        partition: i32,
        #[source]
        source: OperatorError,
    },
}
