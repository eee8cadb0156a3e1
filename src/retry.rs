//! Which Kafka errors pass by themselves (a broker restarting, a
//! coordinator moving, a connection dropped), and how long to wait before
//! trying a broker call again. Every broker call on the resume path waits
//! such errors out, for as long as the pipeline is meant to run; any other
//! error stops start-up or the pipeline with a message naming it.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Whether `code` is an error that passes once the cluster is reachable
/// and settled again. Listed explicitly: an error not listed here is one
/// that waiting does not cure (authorization, a bad request, a missing
/// topic the pipeline was told to read).
pub fn transient_code(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::Resolve
            | C::OperationTimedOut
            | C::TimedOutQueue
            | C::MessageTimedOut
            | C::RequestTimedOut
            | C::WaitingForCoordinator
            | C::WaitCache
            | C::NetworkException
            | C::BrokerNotAvailable
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::ReplicaNotAvailable
            | C::CoordinatorLoadInProgress
            | C::CoordinatorNotAvailable
            | C::NotCoordinator
            | C::NotEnoughReplicas
            | C::NotEnoughReplicasAfterAppend
            | C::RebalanceInProgress
            | C::KafkaStorageError
            | C::FencedLeaderEpoch
            | C::UnknownLeaderEpoch
            | C::OffsetNotAvailable
            | C::PreferredLeaderNotAvailable
            | C::UnstableOffsetCommit
            | C::ThrottlingQuotaExceeded
            | C::NodeUpdate
            | C::Retry
            | C::InProgress
    )
}

/// Whether `e` passes by itself (see [`transient_code`]); errors without a
/// code (a client that cannot be created, a bad argument) never do.
pub fn transient(e: &KafkaError) -> bool {
    e.rdkafka_error_code().is_some_and(transient_code)
}

/// Waits between attempts: 100 ms, doubling up to 5 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    /// Failed attempts so far.
    pub attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: Self::FIRST,
            attempts: 0,
        }
    }
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MOST: Duration = Duration::from_secs(5);

    /// Counts a failed attempt; returns how long to wait before the next.
    pub fn failed(&mut self) -> Duration {
        self.attempts += 1;
        let wait = self.next;
        self.next = (self.next * 2).min(Self::MOST);
        wait
    }

    /// Whether this failure is worth a log line: the first, then every
    /// tenth, so a long outage does not flood the log.
    pub fn worth_logging(&self) -> bool {
        self.attempts == 1 || self.attempts.is_multiple_of(10)
    }
}

/// Calls `f` until it succeeds, fails with an error `is_transient` says
/// will not pass, or `stopped()` holds (then the last error is returned).
/// Blocks: it sleeps between attempts, in steps of at most 100 ms so that
/// a stop is seen at once, and calls `waiting` with each transient error
/// (to mark the caller alive, and the broker unreachable).
///
/// # Errors
/// The error that ended the attempts.
pub fn blocking<T, E: std::fmt::Display>(
    what: &str,
    is_transient: impl Fn(&E) -> bool,
    stopped: impl Fn() -> bool,
    mut waiting: impl FnMut(&E),
    mut f: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let mut backoff = Backoff::default();
    loop {
        let e = match f() {
            Ok(v) => {
                if backoff.attempts > 0 {
                    tracing::info!(
                        what,
                        attempts = backoff.attempts + 1,
                        "broker call succeeded again"
                    );
                }
                return Ok(v);
            }
            Err(e) => e,
        };
        if !is_transient(&e) || stopped() {
            return Err(e);
        }
        let wait = backoff.failed();
        if backoff.worth_logging() {
            tracing::warn!(what, attempt = backoff.attempts, error = %e, retry_in_ms = wait.as_millis() as u64, "broker call failed; retrying");
        }
        waiting(&e);
        let until = std::time::Instant::now() + wait;
        while std::time::Instant::now() < until {
            if stopped() {
                return Err(e);
            }
            std::thread::sleep(Duration::from_millis(100).min(until - std::time::Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_outage_is_transient_and_a_refusal_is_not() {
        for code in [
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::NotCoordinator,
        ] {
            assert!(transient(&KafkaError::MetadataFetch(code)), "{code:?}");
        }
        for code in [
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::SaslAuthenticationFailed,
        ] {
            assert!(!transient(&KafkaError::MessageProduction(code)), "{code:?}");
        }
        assert!(!transient(&KafkaError::Canceled));
    }

    #[test]
    fn blocking_retries_transient_errors_only_and_stops_when_asked() {
        let down = || KafkaError::MetadataFetch(RDKafkaErrorCode::BrokerTransportFailure);
        let mut calls = 0;
        let mut waited = 0;
        let r = blocking(
            "t",
            transient,
            || false,
            |_| waited += 1,
            || {
                calls += 1;
                if calls < 3 { Err(down()) } else { Ok(calls) }
            },
        );
        assert_eq!((r.unwrap(), waited), (3, 2));

        let refused = KafkaError::MetadataFetch(RDKafkaErrorCode::TopicAuthorizationFailed);
        let mut calls = 0;
        let r: Result<(), _> = blocking(
            "t",
            transient,
            || false,
            |_| {},
            || {
                calls += 1;
                Err(refused.clone())
            },
        );
        assert!(r.is_err() && calls == 1, "not retried");

        let r: Result<(), _> = blocking("t", transient, || true, |_| {}, || Err(down()));
        assert!(r.is_err(), "a stop ends the attempts");
    }

    #[test]
    fn backoff_doubles_up_to_five_seconds() {
        let mut b = Backoff::default();
        let waits: Vec<u128> = (0..8).map(|_| b.failed().as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(b.attempts, 8);
    }
}
