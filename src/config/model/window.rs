//! What a windowed pipeline computes: the window, the policy for late
//! records, and the aggregates.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Window kind and size.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", tag = "kind")]
pub enum WindowConfig {
    /// Fixed-size, non-overlapping windows aligned to the epoch.
    Tumbling {
        /// Window length, e.g. `"1m"`.
        #[serde(with = "humantime_serde")]
        size: Duration,
    },
    /// Fixed-size windows starting every `advance` (overlapping when
    /// `advance < size`), aligned to the epoch.
    Hopping {
        /// Window length, e.g. `"10s"`.
        #[serde(with = "humantime_serde")]
        size: Duration,
        /// Distance between window starts, e.g. `"2s"`; at most `size`.
        #[serde(with = "humantime_serde")]
        advance: Duration,
    },
    /// Kafka Streams sliding windows: one window per distinct set of
    /// records of a key whose event times differ by at most `size`.
    Sliding {
        /// Largest difference between event times in one window, e.g. `"10s"`.
        #[serde(with = "humantime_serde")]
        size: Duration,
    },
    /// Per-key sessions that close after `gap` without records.
    Session {
        /// Inactivity gap, e.g. `"30m"`.
        #[serde(with = "humantime_serde")]
        gap: Duration,
    },
}

/// Policy for records that arrive after their window was emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LatePolicy {
    /// Count them and drop them.
    Drop,
    /// Count them and send them to the dead-letter topic.
    DeadLetter,
    /// Count them and send them to `late_topic`.
    SideTopic,
}

/// One aggregate of a pipeline.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    /// Output field name (default: the function name, e.g. `sum`).
    #[serde(default)]
    pub name: Option<String>,
    /// What to compute.
    #[serde(rename = "fn")]
    pub function: AggregateFn,
    /// Input field (every function but `count` needs one).
    #[serde(default)]
    pub field: Option<String>,
    /// `quantiles`: which (default `[0.5, 0.95, 0.99]`).
    #[serde(default)]
    pub quantiles: Option<Vec<f64>>,
    /// `quantiles`: relative error of the sketch (default 0.01).
    #[serde(default)]
    pub relative_error: Option<f64>,
    /// `count-distinct`: HyperLogLog precision, 4 to 18 (default 14).
    #[serde(default)]
    pub precision: Option<u8>,
    /// `count-distinct`: count exactly instead (memory grows with the values).
    #[serde(default)]
    pub exact: Option<bool>,
    /// `top-k`: how many values (default 10).
    #[serde(default)]
    pub k: Option<usize>,
    /// `max-by`, `min-by`: the fields whose values, at the record with the
    /// largest (smallest) `field`, are the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Vec<String>>,
}

/// Aggregate functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AggregateFn {
    /// Number of records.
    Count,
    /// Sum of a numeric field.
    Sum,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Arithmetic mean.
    Mean,
    /// Value of the earliest record by event time.
    First,
    /// Value of the latest record by event time.
    Last,
    /// Number of distinct values (HyperLogLog, or exact).
    CountDistinct,
    /// Quantiles (DDSketch).
    Quantiles,
    /// Most frequent values with counts.
    TopK,
    /// The `value` fields of the record with the largest `field`.
    MaxBy,
    /// The `value` fields of the record with the smallest `field`.
    MinBy,
}

impl AggregateFn {
    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::Sum => "sum",
            Self::Min => "min",
            Self::Max => "max",
            Self::Mean => "mean",
            Self::First => "first",
            Self::Last => "last",
            Self::CountDistinct => "count-distinct",
            Self::Quantiles => "quantiles",
            Self::TopK => "top-k",
            Self::MaxBy => "max-by",
            Self::MinBy => "min-by",
        }
    }
}
