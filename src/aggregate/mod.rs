//! Mergeable partial aggregates over fixed-point values.
//!
//! Values are held as integers in millionths ("micros") so that sums are
//! exact: a window computed from any split of its records into batches, in
//! any merge order, gives bit-identical output. Floating-point sums would
//! differ in the last bits between a first emission and a replay.

use crate::config::AggregateKind;

/// Scale of fixed-point values: 1.0 is stored as 1_000_000.
pub const SCALE: i64 = 1_000_000;

/// Why a value cannot be aggregated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    /// NaN or infinite.
    #[error("value {0} is not a finite number")]
    NotFinite(f64),
    /// Too large for the fixed-point range (about ±9.2e12).
    #[error("value {0} is outside the aggregatable range of ±9.2e12")]
    OutOfRange(f64),
}

/// Converts a float to fixed-point micros, rounding half away from zero.
///
/// # Errors
/// When the value is not finite or out of range.
pub fn to_micros(x: f64) -> Result<i64, ValueError> {
    if !x.is_finite() {
        return Err(ValueError::NotFinite(x));
    }
    let scaled = (x * SCALE as f64).round();
    if scaled.abs() >= 9.2e18 {
        return Err(ValueError::OutOfRange(x));
    }
    Ok(scaled as i64)
}

/// Converts an integer to fixed-point micros.
///
/// # Errors
/// When the value is out of range.
pub fn int_to_micros(n: i64) -> Result<i64, ValueError> {
    n.checked_mul(SCALE).ok_or(ValueError::OutOfRange(n as f64))
}

fn from_micros(m: i128) -> f64 {
    m as f64 / SCALE as f64
}

/// count/sum/min/max of a set of values; `mean` is derived at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partial {
    /// Number of values.
    pub count: u64,
    /// Exact sum in micros.
    pub sum: i128,
    /// Smallest value in micros (`i64::MAX` when empty).
    pub min: i64,
    /// Largest value in micros (`i64::MIN` when empty).
    pub max: i64,
}

impl Default for Partial {
    fn default() -> Self {
        Self {
            count: 0,
            sum: 0,
            min: i64::MAX,
            max: i64::MIN,
        }
    }
}

impl Partial {
    /// Adds one value (in micros).
    pub fn add(&mut self, micros: i64) {
        self.count += 1;
        self.sum += i128::from(micros);
        self.min = self.min.min(micros);
        self.max = self.max.max(micros);
    }

    /// Folds another partial into this one. Commutative and associative.
    pub fn merge(&mut self, other: &Partial) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// The value of one aggregate. Count is a whole number; the others are
    /// in the units of the value field. An empty partial has no min/max/mean.
    pub fn value(&self, kind: AggregateKind) -> AggregateValue {
        match kind {
            AggregateKind::Count => AggregateValue::Count(self.count),
            AggregateKind::Sum => AggregateValue::Number(from_micros(self.sum)),
            _ if self.count == 0 => AggregateValue::Number(f64::NAN),
            AggregateKind::Min => AggregateValue::Number(from_micros(self.min.into())),
            AggregateKind::Max => AggregateValue::Number(from_micros(self.max.into())),
            AggregateKind::Mean => {
                AggregateValue::Number(self.sum as f64 / self.count as f64 / SCALE as f64)
            }
        }
    }
}

/// A finished aggregate value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AggregateValue {
    /// A count.
    Count(u64),
    /// Any other aggregate.
    Number(f64),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fixed_point_rounds_and_rejects_bad_values() {
        assert_eq!(to_micros(1.5).unwrap(), 1_500_000);
        assert_eq!(to_micros(-0.0000005).unwrap(), -1);
        assert!(to_micros(f64::NAN).is_err());
        assert!(to_micros(1e13).is_err());
        assert_eq!(int_to_micros(-3).unwrap(), -3_000_000);
        assert!(int_to_micros(i64::MAX / 10).is_err());
    }

    #[test]
    fn aggregates_of_known_values() {
        let mut p = Partial::default();
        for v in [2.0, -1.0, 4.5] {
            p.add(to_micros(v).unwrap());
        }
        assert_eq!(p.value(AggregateKind::Count), AggregateValue::Count(3));
        assert_eq!(p.value(AggregateKind::Sum), AggregateValue::Number(5.5));
        assert_eq!(p.value(AggregateKind::Min), AggregateValue::Number(-1.0));
        assert_eq!(p.value(AggregateKind::Max), AggregateValue::Number(4.5));
        assert_eq!(
            p.value(AggregateKind::Mean),
            AggregateValue::Number(5.5 / 3.0)
        );
    }

    proptest! {
        /// Any split of the values into partials, merged in any order, gives
        /// exactly the one-pass result: what makes replays identical.
        #[test]
        fn merging_any_split_equals_one_pass(
            values in prop::collection::vec(-1_000_000_000_000i64..1_000_000_000_000, 1..200),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
            reverse in any::<bool>(),
        ) {
            let mut one = Partial::default();
            values.iter().for_each(|v| one.add(*v));

            let mut bounds: Vec<usize> = cuts.iter().map(|c| c.index(values.len())).collect();
            bounds.extend([0, values.len()]);
            bounds.sort_unstable();
            let mut parts: Vec<Partial> = bounds.windows(2).map(|w| {
                let mut p = Partial::default();
                values[w[0]..w[1]].iter().for_each(|v| p.add(*v));
                p
            }).collect();
            if reverse { parts.reverse(); }
            let mut merged = Partial::default();
            parts.iter().for_each(|p| merged.merge(p));
            prop_assert_eq!(merged, one);
        }
    }
}
