//! Per-window aggregate state: one mergeable partial per aggregate.
//!
//! Every state merges commutatively and associatively, and its result
//! depends only on the set of records it saw (never on batch boundaries or
//! merge order), so a window rebuilt after a restart is identical:
//! sums are exact fixed-point integers, first/last compare (event time,
//! offset), HyperLogLog keeps register maxima, DDSketch keeps bucket counts,
//! max-by/min-by compare (field, then the value fields): nothing of the
//! record's position decides a tie, so any split, any order, and a replay
//! from another offset pick the same record.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};

use apache_avro::types::Value;
use hyperloglogplus::{HyperLogLog, HyperLogLogPF};
use serde::{Deserialize, Serialize};
use sketches_ddsketch::{Config as SketchConfig, DDSketch};

use super::spec::{AggKind, AggSpec};
use super::{SCALE, int_to_micros, to_micros};
use crate::record::{FieldError, FieldType, Record};

/// A value that can be counted, compared and hashed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scalar {
    /// A string or enum symbol.
    Str(String),
    /// An integer or timestamp.
    Long(i64),
    /// A float, by its bits (normalised: one zero, one NaN).
    Double(u64),
}

impl Scalar {
    fn read(record: &Record, index: usize, ty: FieldType) -> Result<Option<Self>, FieldError> {
        let v = match ty {
            FieldType::String => record.str(index).map(|s| Self::Str(s.to_string())),
            FieldType::Long | FieldType::TimestampMillis => record.i64(index).map(Self::Long),
            _ => record.f64(index).map(|x| {
                let x = if x == 0.0 { 0.0 } else { x };
                Self::Double(if x.is_nan() {
                    f64::NAN.to_bits()
                } else {
                    x.to_bits()
                })
            }),
        };
        match v {
            Ok(s) => Ok(Some(s)),
            Err(FieldError::Null { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn to_avro(&self, ty: FieldType) -> Value {
        match (self, ty) {
            (Self::Str(s), _) => Value::String(s.clone()),
            (Self::Long(n), FieldType::TimestampMillis) => Value::TimestampMillis(*n),
            (Self::Long(n), _) => Value::Long(*n),
            (Self::Double(b), _) => Value::Double(f64::from_bits(*b)),
        }
    }

    fn label(&self) -> String {
        match self {
            Self::Str(s) => s.clone(),
            Self::Long(n) => n.to_string(),
            Self::Double(b) => f64::from_bits(*b).to_string(),
        }
    }
}

/// A value with the position that orders first/last.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Stamped {
    /// Event time.
    pub time: i64,
    /// Offset in the partition.
    pub offset: i64,
    /// The value.
    pub value: Scalar,
}

impl Scalar {
    /// The order max-by and min-by compare by: numbers by value (a double
    /// by IEEE 754's total order), strings by their UTF-8 bytes. A field
    /// holds one kind; kinds compare string < integer < double.
    fn order(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Self::Double(a), Self::Double(b)) => f64::from_bits(*a).total_cmp(&f64::from_bits(*b)),
            (a, b) => a.cmp(b),
        }
    }
}

/// The record a max-by or min-by holds: its field, and its value fields
/// (`None`: null).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Best {
    pub by: Scalar,
    pub values: Vec<Option<Scalar>>,
}

impl Best {
    /// Whether `self` wins over `other`: the larger (`max`) or smaller
    /// field, then, on a tie, the smaller value fields compared in order
    /// (null first).
    fn beats(&self, other: &Self, max: bool) -> bool {
        let by = self.by.order(&other.by);
        let by = if max { by } else { by.reverse() };
        let values = || {
            for (a, b) in self.values.iter().zip(&other.values) {
                let o = match (a, b) {
                    (Some(a), Some(b)) => a.order(b),
                    (a, b) => a.is_some().cmp(&b.is_some()),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        };
        by.then_with(|| values().reverse()) == Ordering::Greater
    }

    /// Whether `self` wins over any record whose field is `by`, whatever
    /// its value fields: its field is strictly larger (`max`) or smaller.
    fn wins_by(&self, by: &Scalar, max: bool) -> bool {
        let o = self.by.order(by);
        (if max { o } else { o.reverse() }) == Ordering::Greater
    }

    /// Keeps the winner of `cur` and `new` in `cur`.
    fn keep(cur: &mut Option<Self>, new: Self, max: bool) {
        if cur.as_ref().is_none_or(|c| new.beats(c, max)) {
            *cur = Some(new);
        }
    }
}

impl Scalar {
    /// The hash HyperLogLog counts this value by, fixed by this project
    /// (std's `DefaultHasher` is not: Rust may change it in any release,
    /// and a `count-distinct` repeated after an upgrade would then differ
    /// from its first emission). The first 8 bytes, little-endian, of
    /// BLAKE3 over a tag byte (0 string, 1 integer, 2 double) and the
    /// value: its UTF-8 bytes, the `i64` little-endian, or the normalised
    /// `f64` bits little-endian.
    pub fn stable_hash(&self) -> u64 {
        let mut h = blake3::Hasher::new();
        match self {
            Self::Str(s) => h.update(&[0]).update(s.as_bytes()),
            Self::Long(n) => h.update(&[1]).update(&n.to_le_bytes()),
            Self::Double(bits) => h.update(&[2]).update(&bits.to_le_bytes()),
        };
        let bytes = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&bytes.as_bytes()[..8]);
        u64::from_le_bytes(first)
    }
}

/// Passes on a hash computed already ([`Scalar::stable_hash`]), so that
/// nothing of std's hashing reaches HyperLogLog's registers.
#[derive(Debug, Default, Clone, Copy)]
pub struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64`s are hashed (`write_u64`); fold anything else in.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Builds [`Prehashed`] hashers; a unit type, so that a checkpoint of a
/// HyperLogLog (which includes its hasher builder) holds nothing of it.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
pub struct PrehashedBuilder;

impl BuildHasher for PrehashedBuilder {
    type Hasher = Prehashed;

    fn build_hasher(&self) -> Prehashed {
        Prehashed::default()
    }
}

type Hll = HyperLogLogPF<u64, PrehashedBuilder>;

/// A DDSketch (which has no `Debug` of its own).
#[derive(Clone, Serialize, Deserialize)]
pub struct Sketch(DDSketch);

impl std::fmt::Debug for Sketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DDSketch({} values)", self.0.count())
    }
}

/// The partial state of one aggregate. Serialised exactly (checkpoints):
/// a state read back merges and finishes as the one written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AggState {
    /// Records seen.
    Count(u64),
    /// Exact sum in micros.
    Sum(i128),
    /// Smallest value in micros.
    Min(Option<i64>),
    /// Largest value in micros.
    Max(Option<i64>),
    /// Exact sum in micros and number of values.
    Mean(i128, u64),
    /// Earliest value.
    First(Option<Stamped>),
    /// Latest value.
    Last(Option<Stamped>),
    /// Exact distinct values.
    Distinct(HashSet<Scalar>),
    /// Approximate distinct values.
    Hll(Box<Hll>),
    /// Quantile sketch.
    Sketch(Box<Sketch>),
    /// Value counts.
    Frequencies(HashMap<Scalar, u64>),
    /// The record max-by (`max`) or min-by holds.
    ArgBy { max: bool, best: Option<Best> },
}

/// Why a numeric aggregate cannot take a record's value.
enum Unusable {
    /// The field cannot be read as a number.
    Field(FieldError),
    /// The number is not finite or out of range.
    Value(super::ValueError),
}

impl Unusable {
    /// What is wrong, naming the input field `name`.
    fn describe(&self, name: &str) -> String {
        match self {
            Self::Field(e) => e.in_field(name),
            Self::Value(e) => format!("field {name:?}: {e}"),
        }
    }
}

fn micros(record: &Record, index: usize, ty: FieldType) -> Result<Option<i64>, Unusable> {
    let r = if ty == FieldType::Long {
        record.i64(index).map(int_to_micros)
    } else {
        record.f64(index).map(to_micros)
    };
    match r {
        Ok(v) => v.map(Some).map_err(Unusable::Value),
        Err(FieldError::Null { .. }) => Ok(None),
        Err(e) => Err(Unusable::Field(e)),
    }
}

fn float(m: i128) -> f64 {
    m as f64 / SCALE as f64
}

impl AggState {
    /// An empty state for `spec`.
    pub fn new(spec: &AggSpec) -> Self {
        match &spec.kind {
            AggKind::Count => Self::Count(0),
            AggKind::Sum => Self::Sum(0),
            AggKind::Min => Self::Min(None),
            AggKind::Max => Self::Max(None),
            AggKind::Mean => Self::Mean(0, 0),
            AggKind::First => Self::First(None),
            AggKind::Last => Self::Last(None),
            AggKind::CountDistinct { precision: None } => Self::Distinct(HashSet::new()),
            AggKind::CountDistinct { precision: Some(p) } => Self::Hll(Box::new(
                Hll::new(*p, PrehashedBuilder).expect("precision checked at start-up"),
            )),
            AggKind::Quantiles { relative_error, .. } => Self::Sketch(Box::new(Sketch(
                DDSketch::new(SketchConfig::new(*relative_error, 4096, 1e-9)),
            ))),
            AggKind::TopK { .. } => Self::Frequencies(HashMap::new()),
            AggKind::ArgBy { max, .. } => Self::ArgBy {
                max: *max,
                best: None,
            },
        }
    }

    /// Adds one record. Null values are skipped (counted by `count` only).
    ///
    /// # Errors
    /// When the value cannot be aggregated (out of range, wrong type).
    pub fn add(
        &mut self,
        spec: &AggSpec,
        record: &Record,
        time: i64,
        offset: i64,
    ) -> Result<(), String> {
        let Some((index, ty, _)) = spec.field else {
            if let Self::Count(n) = self {
                *n += 1;
            }
            return Ok(());
        };
        let err = |e: String| format!("aggregate {}: {e}", spec.name);
        // `check` has named the field of any error already.
        let unusable = |e: Unusable| err(e.describe(&format!("#{index}")));
        match self {
            Self::Count(n) => *n += 1,
            Self::Sum(s) => {
                if let Some(v) = micros(record, index, ty).map_err(unusable)? {
                    *s += i128::from(v);
                }
            }
            Self::Min(m) => {
                if let Some(v) = micros(record, index, ty).map_err(unusable)? {
                    *m = Some(m.map_or(v, |m| m.min(v)));
                }
            }
            Self::Max(m) => {
                if let Some(v) = micros(record, index, ty).map_err(unusable)? {
                    *m = Some(m.map_or(v, |m| m.max(v)));
                }
            }
            Self::Mean(s, n) => {
                if let Some(v) = micros(record, index, ty).map_err(unusable)? {
                    *s += i128::from(v);
                    *n += 1;
                }
            }
            Self::First(cur) | Self::Last(cur) => {
                let first = matches!(spec.kind, AggKind::First);
                if let Some(value) =
                    Scalar::read(record, index, ty).map_err(|e| err(e.to_string()))?
                {
                    let s = Stamped {
                        time,
                        offset,
                        value,
                    };
                    let replace = match cur {
                        None => true,
                        Some(c) if first => s < *c,
                        Some(c) => s > *c,
                    };
                    if replace {
                        *cur = Some(s);
                    }
                }
            }
            Self::Distinct(set) => {
                if let Some(v) = Scalar::read(record, index, ty).map_err(|e| err(e.to_string()))? {
                    set.insert(v);
                }
            }
            Self::Hll(h) => {
                if let Some(v) = Scalar::read(record, index, ty).map_err(|e| err(e.to_string()))? {
                    h.insert(&v.stable_hash());
                }
            }
            Self::Sketch(s) => {
                let v = match record.f64(index) {
                    Ok(x) if x.is_finite() => Some(x),
                    Ok(x) => return Err(err(format!("value {x} is not a finite number"))),
                    Err(FieldError::Null { .. }) => None,
                    Err(e) => return Err(err(e.to_string())),
                };
                if let Some(v) = v {
                    s.0.add(v);
                }
            }
            Self::Frequencies(m) => {
                if let Some(v) = Scalar::read(record, index, ty).map_err(|e| err(e.to_string()))? {
                    *m.entry(v).or_insert(0) += 1;
                }
            }
            Self::ArgBy { max, best } => {
                let AggKind::ArgBy { values, .. } = &spec.kind else {
                    unreachable!("an arg-by state belongs to a max-by or min-by aggregate")
                };
                if let Some(by) = Scalar::read(record, index, ty).map_err(|e| err(e.to_string()))?
                    && !best.as_ref().is_some_and(|b| b.wins_by(&by, *max))
                {
                    // Only a record that can win reads its value fields
                    // (`check` has checked them already).
                    let values = values
                        .iter()
                        .map(|v| Scalar::read(record, v.index, v.ty))
                        .collect::<Result<_, _>>()
                        .map_err(|e| err(e.to_string()))?;
                    Best::keep(best, Best { by, values }, *max);
                }
            }
        }
        Ok(())
    }

    /// Folds a copy of `other` into this one: without copying it for the
    /// aggregates of a few numbers (a pane merged into each of the windows
    /// it belongs to but the last).
    pub fn merge_ref(&mut self, other: &Self) {
        match (self, other) {
            (Self::Count(a), Self::Count(b)) => *a += b,
            (Self::Sum(a), Self::Sum(b)) => *a += b,
            (Self::Min(a), Self::Min(b)) => *a = opt(*a, *b, i64::min),
            (Self::Max(a), Self::Max(b)) => *a = opt(*a, *b, i64::max),
            (Self::Mean(s, n), Self::Mean(s2, n2)) => {
                *s += s2;
                *n += n2;
            }
            (a, b) => a.merge(b.clone()),
        }
    }

    /// Folds `other` (a state of the same aggregate) into this one.
    pub fn merge(&mut self, other: Self) {
        match (self, other) {
            (Self::ArgBy { max, best: a }, Self::ArgBy { best: b, .. }) => {
                if let Some(b) = b {
                    Best::keep(a, b, *max);
                }
            }
            (Self::Count(a), Self::Count(b)) => *a += b,
            (Self::Sum(a), Self::Sum(b)) => *a += b,
            (Self::Min(a), Self::Min(b)) => *a = opt(*a, b, i64::min),
            (Self::Max(a), Self::Max(b)) => *a = opt(*a, b, i64::max),
            (Self::Mean(s, n), Self::Mean(s2, n2)) => {
                *s += s2;
                *n += n2;
            }
            (Self::First(a), Self::First(b)) => {
                if let Some(b) = b
                    && a.as_ref().is_none_or(|a| b < *a)
                {
                    *a = Some(b);
                }
            }
            (Self::Last(a), Self::Last(b)) => {
                if let Some(b) = b
                    && a.as_ref().is_none_or(|a| b > *a)
                {
                    *a = Some(b);
                }
            }
            (Self::Distinct(a), Self::Distinct(b)) => a.extend(b),
            (Self::Hll(a), Self::Hll(b)) => {
                a.merge(&b).expect("same precision by construction");
            }
            (Self::Sketch(a), Self::Sketch(b)) => {
                a.0.merge(&b.0).expect("same configuration by construction");
            }
            (Self::Frequencies(a), Self::Frequencies(b)) => {
                for (k, n) in b {
                    *a.entry(k).or_insert(0) += n;
                }
            }
            (a, b) => unreachable!("merging different aggregates: {a:?} and {b:?}"),
        }
    }

    /// The output values of this aggregate, in the order of
    /// [`AggSpec::output_fields`].
    pub fn finish(self, spec: &AggSpec) -> Vec<Value> {
        let nullable = spec.field.is_some_and(|f| f.2);
        let wrap = |v: Option<Value>| match (nullable, v) {
            (true, Some(v)) => Value::Union(1, Box::new(v)),
            (true, None) => Value::Union(0, Box::new(Value::Null)),
            (false, Some(v)) => v,
            // A non-nullable field always has a value in a non-empty window.
            (false, None) => Value::Double(f64::NAN),
        };
        let ty = spec.field.map_or(FieldType::Other, |f| f.1);
        match self {
            Self::Count(n) => vec![Value::Long(n as i64)],
            Self::Sum(s) => vec![Value::Double(float(s))],
            Self::Min(m) | Self::Max(m) => vec![wrap(m.map(|m| Value::Double(float(m.into()))))],
            Self::Mean(s, n) => vec![wrap(
                (n > 0).then(|| Value::Double(s as f64 / n as f64 / SCALE as f64)),
            )],
            Self::First(s) | Self::Last(s) => vec![wrap(s.map(|s| s.value.to_avro(ty)))],
            Self::Distinct(set) => vec![Value::Long(set.len() as i64)],
            Self::Hll(mut h) => vec![Value::Long(h.count().round() as i64)],
            Self::Sketch(s) => {
                let AggKind::Quantiles { quantiles, .. } = &spec.kind else {
                    unreachable!("a sketch belongs to a quantiles aggregate")
                };
                quantiles
                    .iter()
                    .map(|q| wrap(s.0.quantile(*q).ok().flatten().map(Value::Double)))
                    .collect()
            }
            Self::ArgBy { best, .. } => {
                let AggKind::ArgBy { values, .. } = &spec.kind else {
                    unreachable!("an arg-by state belongs to a max-by or min-by aggregate")
                };
                values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let value = best
                            .as_ref()
                            .and_then(|b| b.values[i].as_ref())
                            .map(|s| s.to_avro(v.ty));
                        // The output field is always nullable (see
                        // `AggSpec::output_fields`).
                        match value {
                            Some(x) => Value::Union(1, Box::new(x)),
                            None => Value::Union(0, Box::new(Value::Null)),
                        }
                    })
                    .collect()
            }
            Self::Frequencies(m) => {
                let AggKind::TopK { k } = &spec.kind else {
                    unreachable!("frequencies belong to a top-k aggregate")
                };
                let mut v: Vec<(Scalar, u64)> = m.into_iter().collect();
                v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                v.truncate(*k);
                vec![Value::Array(
                    v.into_iter()
                        .map(|(s, n)| {
                            Value::Record(vec![
                                ("value".into(), Value::String(s.label())),
                                ("count".into(), Value::Long(n as i64)),
                            ])
                        })
                        .collect(),
                )]
            }
        }
    }
}

fn opt(a: Option<i64>, b: Option<i64>, f: fn(i64, i64) -> i64) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        (a, b) => a.or(b),
    }
}

/// The states of all aggregates of a pipeline for one window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Aggregates {
    states: Vec<AggState>,
}

impl Aggregates {
    /// Empty states for `specs`.
    pub fn new(specs: &[AggSpec]) -> Self {
        Self {
            states: specs.iter().map(AggState::new).collect(),
        }
    }

    /// Adds one record to every aggregate.
    ///
    /// # Errors
    /// The first aggregate that cannot take the record. The states may
    /// then hold part of the record: callers add to a scratch copy or
    /// discard the partial on error.
    pub fn add(
        &mut self,
        specs: &[AggSpec],
        record: &Record,
        time: i64,
        offset: i64,
    ) -> Result<(), String> {
        for (s, spec) in self.states.iter_mut().zip(specs) {
            s.add(spec, record, time, offset)?;
        }
        Ok(())
    }

    /// Folds another window's states into these.
    pub fn merge(&mut self, other: Self) {
        for (a, b) in self.states.iter_mut().zip(other.states) {
            a.merge(b);
        }
    }

    /// Folds a copy of another window's states into these (see
    /// [`AggState::merge_ref`]).
    pub fn merge_ref(&mut self, other: &Self) {
        for (a, b) in self.states.iter_mut().zip(&other.states) {
            a.merge_ref(b);
        }
    }

    /// Every output value, in output-field order.
    pub fn finish(self, specs: &[AggSpec]) -> Vec<Value> {
        self.states
            .into_iter()
            .zip(specs)
            .flat_map(|(s, spec)| s.finish(spec))
            .collect()
    }

    /// Checks every value `record` would add, without adding it; `names`
    /// are the record's field names by position, for the error.
    ///
    /// # Errors
    /// The first value that cannot be aggregated, naming its field.
    pub fn check(specs: &[AggSpec], record: &Record, names: &[String]) -> Result<(), String> {
        for spec in specs {
            if let Some((index, ty, _)) = spec.field {
                let field = names.get(index).map_or("?", String::as_str);
                let numeric = matches!(
                    spec.kind,
                    AggKind::Sum | AggKind::Min | AggKind::Max | AggKind::Mean
                );
                let problem = if numeric {
                    micros(record, index, ty).err().map(|e| e.describe(field))
                } else if let AggKind::Quantiles { .. } = spec.kind {
                    match record.f64(index) {
                        Ok(x) if !x.is_finite() => {
                            Some(format!("field {field:?}: value {x} is not a finite number"))
                        }
                        Ok(_) | Err(FieldError::Null { .. }) => None,
                        Err(e) => Some(e.in_field(field)),
                    }
                } else {
                    let values = match &spec.kind {
                        AggKind::ArgBy { values, .. } => values.as_slice(),
                        _ => &[],
                    };
                    let read = values.iter().map(|v| (v.index, v.ty, v.name.as_str()));
                    std::iter::once((index, ty, field)).chain(read).find_map(
                        |(index, ty, field)| {
                            Scalar::read(record, index, ty)
                                .err()
                                .map(|e| e.in_field(field))
                        },
                    )
                };
                if let Some(problem) = problem {
                    return Err(format!("aggregate {}: {problem}", spec.name));
                }
            }
        }
        Ok(())
    }
}
