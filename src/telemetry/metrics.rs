//! Prometheus metrics of one pipeline process.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// The counters the data path updates.
#[derive(Clone)]
pub struct Metrics {
    /// Registry holding every metric below.
    pub registry: Registry,
    /// Records read from the input topic.
    pub consumed: IntCounter,
    /// Records processed, by outcome: ok, late, dead_lettered.
    pub processed: IntCounterVec,
    /// Window results produced and acknowledged.
    pub windows_emitted: IntCounter,
    /// Dead letters acknowledged, by stage.
    pub dead_letters: IntCounterVec,
    /// Offset commits, by result: ok, failed.
    pub commits: IntCounterVec,
    /// Open windows across owned partitions.
    pub open_windows: IntGauge,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Self {
        let registry = Registry::new();
        let consumed = IntCounter::new(
            "streamfold_records_consumed_total",
            "Records read from the input topic.",
        )
        .expect("valid metric");
        let processed = IntCounterVec::new(
            Opts::new(
                "streamfold_records_processed_total",
                "Records processed, by outcome.",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let windows_emitted = IntCounter::new(
            "streamfold_windows_emitted_total",
            "Window results written and acknowledged by the broker.",
        )
        .expect("valid metric");
        let dead_letters = IntCounterVec::new(
            Opts::new(
                "streamfold_dead_letter_records_total",
                "Records written to the dead-letter topic, by failed stage.",
            ),
            &["stage"],
        )
        .expect("valid metric");
        let commits = IntCounterVec::new(
            Opts::new("streamfold_commits_total", "Offset commits, by result."),
            &["result"],
        )
        .expect("valid metric");
        let open_windows = IntGauge::new(
            "streamfold_open_windows",
            "Windows holding records that are not yet emitted.",
        )
        .expect("valid metric");
        for m in [
            Box::new(consumed.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(processed.clone()),
            Box::new(windows_emitted.clone()),
            Box::new(dead_letters.clone()),
            Box::new(commits.clone()),
            Box::new(open_windows.clone()),
        ] {
            registry.register(m).expect("metric names are unique");
        }
        Self {
            registry,
            consumed,
            processed,
            windows_emitted,
            dead_letters,
            commits,
            open_windows,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
