//! Why a record could not be written, and what a refusal means.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Why a record could not be handed to the producer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The producer queue is full: wait for acknowledgements and retry.
    #[error("producer queue is full")]
    QueueFull,
    /// A checkpoint was written by a sink that has no checkpoint topic.
    #[error("this sink writes no checkpoints")]
    NoCheckpointTopic,
    /// Anything else: the pipeline cannot go on safely.
    #[error("cannot produce to {topic}: {source}")]
    Produce {
        topic: String,
        #[source]
        source: KafkaError,
    },
}

/// What to do about a record the producer reports as not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undelivered {
    /// The broker refused it as too large (its topic's
    /// `max.message.bytes` is below the producer's): a dead letter is
    /// written again with headers only.
    TooLarge,
    /// It may go through on another attempt (see [`crate::retry`]).
    Transient,
    /// Another attempt would fail the same way.
    Fatal,
}

impl Undelivered {
    /// The class of delivery error `e`.
    pub fn of(e: &KafkaError) -> Self {
        match e.rdkafka_error_code() {
            Some(
                RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::MessageBatchTooLarge
                | RDKafkaErrorCode::InvalidMessageSize,
            ) => Self::TooLarge,
            Some(code) if crate::retry::transient_code(code) => Self::Transient,
            _ => Self::Fatal,
        }
    }
}
