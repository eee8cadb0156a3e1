//! Every default, in one place.

use std::time::Duration;

use bytesize::ByteSize;

use super::{Format, LatePolicy, LogFormat};

pub fn prefetch() -> ByteSize {
    ByteSize::mib(8)
}
pub fn session_timeout() -> Duration {
    Duration::from_secs(45)
}
pub fn sasl_password_env() -> String {
    "STREAMFOLD_SASL_PASSWORD".into()
}
pub fn pseudonym_key_env() -> String {
    "STREAMFOLD_PSEUDONYM_KEY".into()
}
pub fn format() -> Format {
    Format::Avro
}
pub fn max_event_time_ahead() -> Duration {
    Duration::from_secs(3600)
}
pub fn checkpoints() -> bool {
    true
}
pub fn checkpoint_interval() -> Duration {
    Duration::from_secs(10)
}
pub fn late_records() -> LatePolicy {
    LatePolicy::DeadLetter
}
pub fn batch_max_records() -> usize {
    1024
}
pub fn batch_max_wait() -> Duration {
    Duration::from_millis(50)
}
pub fn batch_max_in_flight() -> usize {
    2
}
pub fn batch_queue() -> usize {
    2
}
pub fn max_pending_outputs() -> usize {
    10_000
}
pub fn commit_interval() -> Duration {
    Duration::from_secs(1)
}
pub fn drain_deadline() -> Duration {
    Duration::from_secs(10)
}
pub fn min_interval() -> Duration {
    Duration::from_secs(1)
}
pub fn log_level() -> String {
    "info".into()
}
pub fn log_format() -> LogFormat {
    LogFormat::Human
}
