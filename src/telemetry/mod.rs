//! Telemetry: tracing set-up and the process's metrics.

pub mod admin;
mod health;
mod metrics;
mod process;

pub use health::{Health, LoopHealth};
pub(crate) use metrics::now_ms;
pub use metrics::{CommitResult, Metrics, Outcome, PipelineMetrics, Produced, Rebalance};

use crate::config::{LogConfig, LogFormat};

/// Installs the global tracing subscriber. `RUST_LOG`, when set, wins over
/// the configured level. Safe to call more than once (later calls are no-ops).
pub fn init_tracing(log: &LogConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
