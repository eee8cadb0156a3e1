//! Prometheus metrics: one registry per process, every series labelled with
//! its pipeline (and partition where it is per partition, only for
//! partitions this member owns: series of revoked partitions are removed).

use std::sync::Arc;

use super::health::Health;

use prometheus::{
    CounterVec, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGaugeVec, Opts, Registry,
};

/// Every metric of the process.
#[derive(Clone)]
pub struct Metrics {
    /// Registry holding every metric below (and process metrics).
    pub registry: Registry,
    /// Liveness and readiness of the consumers.
    pub health: Arc<Health>,
    consumed: IntCounterVec,
    processed: IntCounterVec,
    produced: IntCounterVec,
    delivery_errors: IntCounterVec,
    dead_letters: IntCounterVec,
    windows_emitted: IntCounterVec,
    batch_records: HistogramVec,
    batch_queue_wait: HistogramVec,
    batch_processing: HistogramVec,
    end_to_end: HistogramVec,
    watermark: GaugeVec,
    watermark_lag: GaugeVec,
    consumer_lag: IntGaugeVec,
    committed_offset: IntGaugeVec,
    commits: IntCounterVec,
    rebalances: IntCounterVec,
    broker_reconnects: IntCounterVec,
    broker_connected: IntGaugeVec,
    broker_retries: IntCounterVec,
    revoke_drain: HistogramVec,
    assigned: IntGaugeVec,
    open_windows: IntGaugeVec,
    keys_held: IntGaugeVec,
    producer_queue: IntGaugeVec,
    backpressure: CounterVec,
    checkpoints: IntCounterVec,
    incomplete_windows: IntCounterVec,
    records_lost: IntCounterVec,
    registry_requests: IntCounterVec,
    checkpoint_bytes: HistogramVec,
    checkpoint_duration: HistogramVec,
    state_bytes: IntGaugeVec,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let m = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(m.clone())).expect("unique metric");
    m
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let m = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(m.clone())).expect("unique metric");
    m
}

fn float_gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let m = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(m.clone())).expect("unique metric");
    m
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> HistogramVec {
    let m = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets),
        &["pipeline"],
    )
    .expect("valid metric");
    r.register(Box::new(m.clone())).expect("unique metric");
    m
}

const P: &[&str] = &["pipeline"];
const PP: &[&str] = &["pipeline", "partition"];
const PTP: &[&str] = &["pipeline", "topic", "partition"];

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Self {
        let r = Registry::new();
        let secs = prometheus::exponential_buckets(0.000_05, 2.0, 20).expect("buckets");
        let m = Self {
            health: Arc::new(Health::default()),
            consumed: counter(
                &r,
                "streamfold_records_consumed_total",
                "Records read from the input topic.",
                P,
            ),
            processed: counter(
                &r,
                "streamfold_records_processed_total",
                "Records processed, by outcome: ok, filtered, late, dead_lettered.",
                &["pipeline", "outcome"],
            ),
            produced: counter(
                &r,
                "streamfold_records_produced_total",
                "Records written and acknowledged, by kind: window, update, dead_letter, late, repartition.",
                &["pipeline", "kind"],
            ),
            delivery_errors: counter(
                &r,
                "streamfold_delivery_errors_total",
                "Records not delivered: a dead letter is written again (cut, or headers only); anything else stops the pipeline.",
                P,
            ),
            dead_letters: counter(
                &r,
                "streamfold_dead_letters_total",
                "Records written to the dead-letter (or late) topic, by failed stage.",
                &["pipeline", "stage"],
            ),
            windows_emitted: counter(
                &r,
                "streamfold_windows_emitted_total",
                "Final window results written and acknowledged.",
                P,
            ),
            batch_records: histogram(
                &r,
                "streamfold_batch_records",
                "Records per batch handed to the rayon pool.",
                prometheus::exponential_buckets(1.0, 2.0, 14).expect("buckets"),
            ),
            batch_queue_wait: histogram(
                &r,
                "streamfold_batch_queue_wait_seconds",
                "Time a batch waited for a rayon worker.",
                secs.clone(),
            ),
            batch_processing: histogram(
                &r,
                "streamfold_batch_processing_seconds",
                "Time a batch spent on a rayon worker: decode, transforms, windows.",
                secs.clone(),
            ),
            end_to_end: histogram(
                &r,
                "streamfold_end_to_end_latency_seconds",
                "From a window's end (event time) to the broker acknowledging its final result.",
                prometheus::exponential_buckets(0.01, 2.0, 24).expect("buckets"),
            ),
            watermark: float_gauge(
                &r,
                "streamfold_watermark_seconds",
                "Watermark (largest event time minus allowed lateness), epoch seconds, per owned partition.",
                PP,
            ),
            watermark_lag: float_gauge(
                &r,
                "streamfold_watermark_lag_seconds",
                "Wall clock minus the watermark, per owned partition.",
                PP,
            ),
            consumer_lag: gauge(
                &r,
                "streamfold_consumer_lag_records",
                "High watermark minus the consumer position, per owned partition.",
                PTP,
            ),
            committed_offset: gauge(
                &r,
                "streamfold_committed_offset",
                "Last committed offset, per owned partition.",
                PTP,
            ),
            commits: counter(
                &r,
                "streamfold_commits_total",
                "Offset commits, by result: ok, failed.",
                &["pipeline", "result"],
            ),
            rebalances: counter(
                &r,
                "streamfold_rebalances_total",
                "Rebalance events, by kind: assign, revoke, lost.",
                &["pipeline", "kind"],
            ),
            broker_reconnects: counter(
                &r,
                "streamfold_broker_reconnects_total",
                "Times the consumer reached a broker again after it could reach none.",
                P,
            ),
            broker_connected: gauge(
                &r,
                "streamfold_broker_connected",
                "1 while the consumer reaches a broker, 0 while it reaches none.",
                P,
            ),
            broker_retries: counter(
                &r,
                "streamfold_broker_retries_total",
                "Broker calls on the resume path (offsets, resume state) tried again after a transient error.",
                P,
            ),
            revoke_drain: histogram(
                &r,
                "streamfold_revoke_drain_seconds",
                "Time to drain and commit revoked partitions (and at shutdown).",
                secs.clone(),
            ),
            checkpoints: counter(
                &r,
                "streamfold_checkpoints_total",
                "Checkpoints of window state, written or restored.",
                &["pipeline", "event"],
            ),
            incomplete_windows: counter(
                &r,
                "streamfold_incomplete_windows_total",
                "Window results emitted marked incomplete (streamfold.complete: false): records of them were deleted before they were read.",
                P,
            ),
            registry_requests: counter(
                &r,
                "streamfold_registry_requests_total",
                "Writer schema look-ups in the Schema Registry, by result: ok, unreachable (the partition waits), unknown, refused.",
                &["pipeline", "result"],
            ),
            records_lost: counter(
                &r,
                "streamfold_records_lost_total",
                "Records deleted (by retention) between a partition's resume offset and its log start, never read.",
                P,
            ),
            checkpoint_bytes: histogram(
                &r,
                "streamfold_checkpoint_bytes",
                "Size of each checkpoint written.",
                prometheus::exponential_buckets(1024.0, 4.0, 11).expect("valid buckets"),
            ),
            checkpoint_duration: histogram(
                &r,
                "streamfold_checkpoint_duration_seconds",
                "Time to serialise a checkpoint and hand it to the producer.",
                secs,
            ),
            state_bytes: gauge(
                &r,
                "streamfold_state_bytes",
                "Window state held, as the size of the partition's last checkpoint.",
                PP,
            ),
            assigned: gauge(
                &r,
                "streamfold_assigned_partitions",
                "Partitions this member owns.",
                P,
            ),
            open_windows: gauge(
                &r,
                "streamfold_open_windows",
                "Panes or sessions holding records not yet emitted.",
                P,
            ),
            keys_held: gauge(
                &r,
                "streamfold_keys_held",
                "Distinct group keys with open window state.",
                P,
            ),
            producer_queue: gauge(
                &r,
                "streamfold_producer_queue_messages",
                "Messages in the producer queue awaiting acknowledgement.",
                P,
            ),
            backpressure: {
                let m = CounterVec::new(
                    Opts::new(
                        "streamfold_backpressure_seconds_total",
                        "Partition-seconds spent paused because processing was behind.",
                    ),
                    P,
                )
                .expect("valid metric");
                r.register(Box::new(m.clone())).expect("unique metric");
                m
            },
            registry: r,
        };
        let info = IntGaugeVec::new(
            Opts::new("streamfold_build_info", "Build of this process (value 1)."),
            &["version"],
        )
        .expect("valid metric");
        info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        m.registry.register(Box::new(info)).expect("unique metric");
        #[cfg(target_os = "linux")]
        m.registry
            .register(Box::new(super::process::ProcessMetrics::for_self()))
            .expect("unique metric");
        m
    }

    /// The handles of one pipeline (stage).
    pub fn pipeline(&self, name: &str) -> PipelineMetrics {
        // Series start at zero, so rates and ratios exist from the first
        // scrape rather than from the first event; the per-record and
        // per-acknowledgement ones are bound once here, so the data path
        // does no label lookup.
        let p = [name];
        let processed = |o: Outcome| self.processed.with_label_values(&[name, o.as_str()]);
        let produced = |k: Produced| self.produced.with_label_values(&[name, k.as_str()]);
        self.delivery_errors.with_label_values(&p);
        self.backpressure.with_label_values(&p);
        self.broker_reconnects.with_label_values(&p);
        self.broker_retries.with_label_values(&p);
        self.broker_connected.with_label_values(&p).set(1);
        for result in [CommitResult::Ok, CommitResult::Failed] {
            self.commits.with_label_values(&[name, result.as_str()]);
        }
        PipelineMetrics {
            hot: Hot {
                consumed: self.consumed.with_label_values(&p),
                ok: processed(Outcome::Ok),
                filtered: processed(Outcome::Filtered),
                late: processed(Outcome::Late),
                dead_lettered: processed(Outcome::DeadLettered),
                duplicate: processed(Outcome::Duplicate),
                window: produced(Produced::Window),
                update: produced(Produced::Update),
                dead_letter: produced(Produced::DeadLetter),
                late_record: produced(Produced::Late),
                repartition: produced(Produced::Repartition),
                record: produced(Produced::Record),
                windows_emitted: self.windows_emitted.with_label_values(&p),
                end_to_end: self.end_to_end.with_label_values(&p),
            },
            m: self.clone(),
            name: name.to_string(),
        }
    }

    /// Sum of the samples of `name` whose labels include `labels` (for
    /// tests and the demo).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut sum = 0.0;
        for family in self.registry.gather() {
            if family.name() != name {
                continue;
            }
            for metric in family.get_metric() {
                let matches = labels.iter().all(|(k, v)| {
                    metric
                        .get_label()
                        .iter()
                        .any(|l| l.name() == *k && l.value() == *v)
                });
                if matches {
                    sum += metric.get_counter().get_value()
                        + metric.get_gauge().get_value()
                        + metric.get_histogram().get_sample_count() as f64;
                }
            }
        }
        sum
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus::TextEncoder::new()
            .encode_utf8(&self.registry.gather(), &mut out)
            .expect("text encoding never fails");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A label value taken from an enum, so that a typo cannot start a new
/// series.
macro_rules! label {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }
    };
}

label! {
    /// Where a record went (`records_processed_total{outcome}`).
    Outcome {
        /// Aggregated (or forwarded).
        Ok = "ok",
        /// Dropped by the `where` filter.
        Filtered = "filtered",
        /// Late: its window had been emitted.
        Late = "late",
        /// Written to the dead-letter topic.
        DeadLettered = "dead_lettered",
        /// An upstream pipeline's window result read again (written twice
        /// upstream): counted once.
        Duplicate = "duplicate",
    }
}

label! {
    /// What an acknowledged output record was (`records_produced_total{kind}`).
    Produced {
        /// A window's final result.
        Window = "window",
        /// An update of an open window.
        Update = "update",
        /// A dead letter.
        DeadLetter = "dead_letter",
        /// A late record on the late topic (or the dead-letter topic).
        Late = "late",
        /// A record forwarded to the internal topic.
        Repartition = "repartition",
        /// A stateless pipeline's output record.
        Record = "record",
    }
}

label! {
    /// How an offset commit went (`commits_total{result}`).
    CommitResult {
        /// Committed.
        Ok = "ok",
        /// Refused or not sent; the next commit covers it.
        Failed = "failed",
    }
}

label! {
    /// A rebalance event (`rebalances_total{kind}`).
    Rebalance {
        /// Partitions assigned.
        Assign = "assign",
        /// Partitions revoked (drained and committed).
        Revoke = "revoke",
        /// Partitions lost (session expired; no commit).
        Lost = "lost",
    }
}

/// The metrics of one pipeline, with its label bound.
#[derive(Clone)]
pub struct PipelineMetrics {
    m: Metrics,
    name: String,
    hot: Hot,
}

/// The series the data path updates per record or acknowledgement.
#[derive(Clone)]
struct Hot {
    consumed: IntCounter,
    ok: IntCounter,
    filtered: IntCounter,
    late: IntCounter,
    dead_lettered: IntCounter,
    duplicate: IntCounter,
    window: IntCounter,
    update: IntCounter,
    dead_letter: IntCounter,
    late_record: IntCounter,
    repartition: IntCounter,
    record: IntCounter,
    windows_emitted: IntCounter,
    end_to_end: Histogram,
}

impl PipelineMetrics {
    fn p(&self) -> [&str; 1] {
        [&self.name]
    }

    /// Records read.
    pub fn consumed(&self, n: u64) {
        self.hot.consumed.inc_by(n);
    }

    /// Records processed with `outcome`: ok, filtered, late, dead_lettered.
    pub fn processed(&self, outcome: Outcome, n: u64) {
        let c = match outcome {
            Outcome::Ok => &self.hot.ok,
            Outcome::Filtered => &self.hot.filtered,
            Outcome::Late => &self.hot.late,
            Outcome::DeadLettered => &self.hot.dead_lettered,
            Outcome::Duplicate => &self.hot.duplicate,
        };
        c.inc_by(n);
    }

    /// A record of `kind` was acknowledged: window, update, dead_letter,
    /// late, repartition.
    pub fn produced(&self, kind: Produced) {
        let c = match kind {
            Produced::Window => &self.hot.window,
            Produced::Update => &self.hot.update,
            Produced::DeadLetter => &self.hot.dead_letter,
            Produced::Late => &self.hot.late_record,
            Produced::Repartition => &self.hot.repartition,
            Produced::Record => &self.hot.record,
        };
        c.inc();
    }

    /// The broker refused a record.
    pub fn delivery_error(&self) {
        self.m.delivery_errors.with_label_values(&self.p()).inc();
    }

    /// A dead letter of `stage` was acknowledged.
    pub fn dead_letter(&self, stage: &'static str) {
        self.m
            .dead_letters
            .with_label_values(&[&self.name, stage])
            .inc();
    }

    /// A final window result was acknowledged `latency_s` after its end.
    pub fn window_emitted(&self, latency_s: f64) {
        self.hot.windows_emitted.inc();
        self.hot.end_to_end.observe(latency_s.max(0.0));
    }

    /// A batch of `records` waited `wait_s` and took `busy_s` on rayon.
    pub fn batch(&self, records: usize, wait_s: f64, busy_s: f64) {
        let p = self.p();
        self.m
            .batch_records
            .with_label_values(&p)
            .observe(records as f64);
        self.m
            .batch_queue_wait
            .with_label_values(&p)
            .observe(wait_s);
        self.m
            .batch_processing
            .with_label_values(&p)
            .observe(busy_s);
    }

    /// The watermark of `partition` (epoch millis) and its lag now.
    pub fn watermark(&self, partition: i32, watermark_ms: i64) {
        let part = partition.to_string();
        let labels = [self.name.as_str(), part.as_str()];
        let now_ms = now_ms();
        self.m
            .watermark
            .with_label_values(&labels)
            .set(watermark_ms as f64 / 1000.0);
        self.m
            .watermark_lag
            .with_label_values(&labels)
            .set((now_ms - watermark_ms) as f64 / 1000.0);
    }

    /// Consumer lag of `topic`/`partition`.
    pub fn consumer_lag(&self, topic: &str, partition: i32, lag: i64) {
        let part = partition.to_string();
        self.m
            .consumer_lag
            .with_label_values(&[&self.name, topic, &part])
            .set(lag.max(0));
    }

    /// Offset committed for `topic`/`partition`.
    pub fn committed(&self, topic: &str, partition: i32, offset: i64) {
        let part = partition.to_string();
        self.m
            .committed_offset
            .with_label_values(&[&self.name, topic, &part])
            .set(offset);
    }

    /// Removes the per-partition series of a partition no longer owned.
    pub fn forget_partition(&self, topic: &str, partition: i32) {
        let part = partition.to_string();
        let _ = self
            .m
            .consumer_lag
            .remove_label_values(&[&self.name, topic, &part]);
        let _ = self
            .m
            .committed_offset
            .remove_label_values(&[&self.name, topic, &part]);
        let _ = self.m.watermark.remove_label_values(&[&self.name, &part]);
        let _ = self
            .m
            .watermark_lag
            .remove_label_values(&[&self.name, &part]);
        let _ = self.m.state_bytes.remove_label_values(&[&self.name, &part]);
    }

    /// A checkpoint of `partition` of `bytes` was written in `secs`.
    pub fn checkpoint_written(&self, partition: i32, bytes: usize, secs: f64) {
        self.m
            .checkpoints
            .with_label_values(&[&self.name, "written"])
            .inc();
        self.m
            .checkpoint_bytes
            .with_label_values(&self.p())
            .observe(bytes as f64);
        self.m
            .checkpoint_duration
            .with_label_values(&self.p())
            .observe(secs);
        self.m
            .state_bytes
            .with_label_values(&[&self.name, &partition.to_string()])
            .set(bytes as i64);
    }

    /// A window result was emitted marked incomplete.
    pub fn incomplete_window(&self) {
        self.m.incomplete_windows.with_label_values(&self.p()).inc();
    }

    /// `n` records were deleted before they were read.
    pub fn records_lost(&self, n: u64) {
        self.m.records_lost.with_label_values(&self.p()).inc_by(n);
    }

    /// A writer schema look-up ended with `result` (`ok`, `unreachable`,
    /// `unknown`, `refused`).
    pub fn registry_request(&self, result: &str) {
        self.m
            .registry_requests
            .with_label_values(&[&self.name, result])
            .inc();
    }

    /// A checkpoint of `partition` of `bytes` was restored.
    pub fn checkpoint_restored(&self, partition: i32, bytes: usize) {
        self.m
            .checkpoints
            .with_label_values(&[&self.name, "restored"])
            .inc();
        self.m
            .state_bytes
            .with_label_values(&[&self.name, &partition.to_string()])
            .set(bytes as i64);
    }

    /// An offset commit with `result` (ok, failed).
    pub fn commit(&self, result: CommitResult) {
        self.m
            .commits
            .with_label_values(&[&self.name, result.as_str()])
            .inc();
    }

    /// A rebalance event of `kind` (assign, revoke, lost).
    pub fn rebalance(&self, kind: Rebalance) {
        self.m
            .rebalances
            .with_label_values(&[&self.name, kind.as_str()])
            .inc();
    }

    /// The consumer reaches a broker (again), or reaches none; a change
    /// from none to one counts as a reconnect.
    pub fn broker_connected(&self, connected: bool, changed: bool) {
        self.m
            .broker_connected
            .with_label_values(&self.p())
            .set(i64::from(connected));
        if connected && changed {
            self.m.broker_reconnects.with_label_values(&self.p()).inc();
        }
    }

    /// A broker call on the resume path failed and is tried again.
    pub fn broker_retry(&self) {
        self.m.broker_retries.with_label_values(&self.p()).inc();
    }

    /// A drain took `secs`.
    pub fn drained(&self, secs: f64) {
        self.m
            .revoke_drain
            .with_label_values(&self.p())
            .observe(secs);
    }

    /// Partitions owned now.
    pub fn assigned(&self, n: usize) {
        self.m.assigned.with_label_values(&self.p()).set(n as i64);
    }

    /// Change in open windows and keys held.
    pub fn open_state(&self, windows: i64, keys: i64) {
        self.m
            .open_windows
            .with_label_values(&self.p())
            .add(windows);
        self.m.keys_held.with_label_values(&self.p()).add(keys);
    }

    /// Messages in the producer queue.
    pub fn producer_queue(&self, n: i32) {
        self.m
            .producer_queue
            .with_label_values(&self.p())
            .set(i64::from(n));
    }

    /// A partition was paused for `secs`.
    pub fn backpressure(&self, secs: f64) {
        self.m
            .backpressure
            .with_label_values(&self.p())
            .inc_by(secs);
    }
}

/// Wall-clock time in epoch milliseconds (0 should the clock be before 1970).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
