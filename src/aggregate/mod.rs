//! Aggregates: what each computes, and mergeable partial states.
//!
//! Numeric values are held as integers in millionths ("micros") so that
//! sums are exact: a window computed from any split of its records into
//! batches, in any merge order, gives bit-identical output. Floating-point
//! sums would differ in the last bits between a first emission and a replay.

mod spec;
mod state;

pub use spec::{
    AggKind, AggSpec, DEFAULT_HLL_PRECISION, DEFAULT_RELATIVE_ERROR, ValueField, quantile_field,
};
pub use state::{AggState, Aggregates, Scalar, Stamped};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AggregateConfig, AggregateFn};
    use crate::record::{Field, FieldType, Layout, Record};
    use apache_avro::types::Value;
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

    fn fields() -> Vec<Field> {
        let f = |name: &str, ty| Field {
            name: name.into(),
            ty,
            nullable: false,
        };
        vec![
            f("page", FieldType::String),
            f("n", FieldType::Long),
            f("x", FieldType::Double),
        ]
    }

    fn layout() -> Layout {
        Layout::new(fields())
    }

    fn agg(function: AggregateFn, field: Option<&str>) -> AggregateConfig {
        AggregateConfig {
            name: None,
            function,
            field: field.map(str::to_string),
            quantiles: None,
            relative_error: None,
            precision: None,
            exact: None,
            k: Some(3).filter(|_| function == AggregateFn::TopK),
            value: None,
        }
    }

    /// Every aggregate, max-by and min-by included.
    fn specs() -> Vec<AggSpec> {
        let mut specs = base_specs();
        let mut max_by = agg(AggregateFn::MaxBy, Some("x"));
        max_by.value = Some(vec!["page".into(), "n".into()]);
        let mut min_by = agg(AggregateFn::MinBy, Some("n"));
        min_by.value = Some(vec!["x".into()]);
        specs.extend(
            [max_by, min_by]
                .iter()
                .map(|c| AggSpec::resolve(c, &layout()).unwrap()),
        );
        specs
    }

    /// The aggregates of the first golden bytes.
    fn base_specs() -> Vec<AggSpec> {
        use AggregateFn::*;
        let l = layout();
        let mut exact = agg(CountDistinct, Some("page"));
        exact.exact = Some(true);
        exact.name = Some("pages_exact".into());
        [
            agg(Count, None),
            agg(Sum, Some("x")),
            agg(Min, Some("n")),
            agg(Max, Some("x")),
            agg(Mean, Some("n")),
            agg(First, Some("page")),
            agg(Last, Some("x")),
            agg(CountDistinct, Some("page")),
            exact,
            agg(Quantiles, Some("x")),
            agg(TopK, Some("page")),
        ]
        .iter()
        .map(|c| AggSpec::resolve(c, &l).unwrap())
        .collect()
    }

    fn record(page: u8, n: i64, x: f64) -> Record {
        Record {
            values: vec![
                Value::String(format!("/p{page}")),
                Value::Long(n),
                Value::Double(x),
            ],
        }
    }

    #[test]
    fn known_values() {
        let specs = specs();
        let mut a = Aggregates::new(&specs);
        for (i, (p, n, x)) in [(1, 4, 2.5), (2, -2, 0.5), (1, 10, 1.0), (3, 0, 4.0)]
            .iter()
            .enumerate()
        {
            a.add(&specs, &record(*p, *n, *x), 100 - i as i64, i as i64)
                .unwrap();
        }
        let out = a.finish(&specs);
        assert_eq!(out[0], Value::Long(4));
        assert_eq!(out[1], Value::Double(8.0));
        assert_eq!(out[2], Value::Double(-2.0));
        assert_eq!(out[3], Value::Double(4.0));
        assert_eq!(out[4], Value::Double(3.0));
        // first/last by event time: the last record added has the earliest time
        assert_eq!(out[5], Value::String("/p3".into()));
        assert_eq!(out[6], Value::Double(2.5));
        assert_eq!(out[7], Value::Long(3));
        assert_eq!(out[8], Value::Long(3));
        let Value::Double(p50) = out[9] else { panic!() };
        assert!(
            (p50 - 1.0).abs() <= 0.01 * 1.0 + 1e-9 || (p50 - 2.5).abs() <= 0.025,
            "{p50}"
        );
        let Value::Array(top) = &out[12] else {
            panic!("{:?}", out[12])
        };
        assert_eq!(
            top[0],
            Value::Record(vec![
                ("value".into(), Value::String("/p1".into())),
                ("count".into(), Value::Long(2)),
            ])
        );
        assert_eq!(top.len(), 3);
        // max-by x: the record (3, 0, 4.0); min-by n: (2, -2, 0.5).
        let some = |v: Value| Value::Union(1, Box::new(v));
        assert_eq!(
            out[13..],
            [
                some(Value::String("/p3".into())),
                some(Value::Long(0)),
                some(Value::Double(0.5))
            ]
        );
    }

    /// Records tied on max-by's field: the one whose value fields compare
    /// smallest wins, whatever the order they come in, and wherever they
    /// sit in the partition (offsets and event times play no part).
    #[test]
    fn max_by_and_min_by_break_ties_by_the_values() {
        let specs = specs();
        let rows = [
            (5, 7, 4.0),
            (2, 9, 4.0),
            (2, 3, 4.0),
            (9, -1, 1.0),
            (1, -1, 3.0),
        ];
        let mut outs = Vec::new();
        for order in [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 0, 4, 1, 3]] {
            let mut a = Aggregates::new(&specs);
            for (at, i) in order.iter().enumerate() {
                let (p, n, x) = rows[*i];
                a.add(&specs, &record(p, n, x), at as i64 * 1_000, at as i64)
                    .unwrap();
            }
            outs.push(a.finish(&specs)[13..].to_vec());
        }
        // x = 4.0 three times: "/p2" < "/p5", then n 3 < 9. n = -1 twice:
        // x 1.0 < 3.0.
        let some = |v: Value| Value::Union(1, Box::new(v));
        let want = vec![
            some(Value::String("/p2".into())),
            some(Value::Long(3)),
            some(Value::Double(1.0)),
        ];
        assert!(outs.iter().all(|o| *o == want), "{outs:?}");
        let spec = &specs[11];
        let names: Vec<String> = spec
            .output_fields()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["max_by_page", "max_by_n"]);
        assert_eq!(specs[12].output_fields()[0]["name"], "min_by_x");
    }

    #[test]
    fn max_by_says_what_it_needs() {
        let l = layout();
        let e = AggSpec::resolve(&agg(AggregateFn::MaxBy, Some("x")), &l).unwrap_err();
        assert!(e.contains("needs value = ["), "{e}");
        let mut c = agg(AggregateFn::MinBy, Some("x"));
        c.value = Some(vec!["nope".into()]);
        let e = AggSpec::resolve(&c, &l).unwrap_err();
        assert!(e.contains("\"nope\"") && e.contains("no such field"), "{e}");
        let mut c = agg(AggregateFn::Sum, Some("x"));
        c.value = Some(vec!["n".into()]);
        let e = AggSpec::resolve(&c, &l).unwrap_err();
        assert!(e.contains("value does not apply to sum"), "{e}");
    }

    /// Golden bytes: the Avro and JSON output of every aggregate for a
    /// fixed input. A toolchain or dependency upgrade that would change
    /// them (a hash, a sketch, an encoder) would make a window repeated
    /// after the upgrade differ from its first emission; this test fails
    /// first. Regenerate only for a deliberate, documented format change.
    #[test]
    fn a_value_hashes_the_same_in_every_build() {
        // The documented algorithm (BLAKE3 over a tag byte and the value's
        // bytes, first 8 bytes little-endian), pinned; the values were
        // computed independently with Python's `blake3` package.
        assert_eq!(
            Scalar::Str("m-1".into()).stable_hash(),
            0xfdc6_0e81_6d89_97fd
        );
        assert_eq!(Scalar::Long(42).stable_hash(), 0x3716_75bf_855a_ab95);
        assert_eq!(
            Scalar::Double(1.5f64.to_bits()).stable_hash(),
            0xccf7_f72a_b36b_5eda
        );
    }

    #[test]
    fn golden_output_bytes_of_every_aggregate() {
        let mut specs = base_specs();
        // A coarse sketch over many values: its estimate depends on every
        // bit of the hash.
        let mut coarse = agg(AggregateFn::CountDistinct, Some("n"));
        coarse.precision = Some(4);
        coarse.name = Some("n_distinct_p4".into());
        specs.push(AggSpec::resolve(&coarse, &layout()).unwrap());
        let mut a = Aggregates::new(&specs);
        for i in 0..2_000i64 {
            let r = record(
                (i % 7) as u8,
                (i * 7_919) % 1_009 - 500,
                (i % 113) as f64 / 8.0 - 3.0,
            );
            a.add(&specs, &r, 1_000 + (i * 37) % 500, i).unwrap();
        }
        let (avro, json) = golden_bytes(&specs, a);
        assert_eq!(avro, GOLDEN_AVRO, "Avro output bytes changed");
        assert_eq!(json, GOLDEN_JSON, "JSON output changed");
    }

    /// The golden bytes of max-by and min-by (added after the others):
    /// the largest x is 14.0, held by 17 records, of which page "/p0" with
    /// n = -483 compares smallest; the smallest n, -500, is held by two,
    /// x 0.0 and 13.125 (computed independently in Python).
    #[test]
    fn golden_output_bytes_of_max_by_and_min_by() {
        let specs = specs()[11..].to_vec();
        let mut a = Aggregates::new(&specs);
        for i in 0..2_000i64 {
            let r = record(
                (i % 7) as u8,
                (i * 7_919) % 1_009 - 500,
                (i % 113) as f64 / 8.0,
            );
            a.add(&specs, &r, 1_000 + (i * 37) % 500, i).unwrap();
        }
        let (avro, json) = golden_bytes(&specs, a);
        assert_eq!(avro, GOLDEN_ARG_BY_AVRO, "Avro output bytes changed");
        assert_eq!(json, GOLDEN_ARG_BY_JSON, "JSON output changed");
    }

    /// The Avro (hex) and JSON encodings of a window of `a`.
    fn golden_bytes(specs: &[AggSpec], a: Aggregates) -> (String, String) {
        use crate::codec::{OutputEncoder, WindowOutput};
        use crate::config::Format;
        let out = WindowOutput {
            key: "m-1".into(),
            start: 1_767_225_600_000,
            end: 1_767_225_660_000,
            values: a.finish(specs),
        };
        let encode = |format| {
            OutputEncoder::derive("golden", Some("streamfold"), &[], specs, format)
                .unwrap()
                .encode(&out)
                .unwrap()
        };
        let avro = encode(Format::Avro)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect();
        (avro, String::from_utf8(encode(Format::Json)).unwrap())
    }

    const GOLDEN_ARG_BY_AVRO: &str =
        "066d2d3180a0d5edee66c0c9dcedee6602062f703002c507020000000000000000";
    const GOLDEN_ARG_BY_JSON: &str = r#"{"key":"m-1","max_by_n":-483,"max_by_page":"/p0","min_by_x":0.0,"window_end":1767225660000,"window_start":1767225600000}"#;

    const GOLDEN_AVRO: &str = "066d2d3180a0d5edee66c0c9dcedee66a01f000000002098be400000000000407fc0000000000000264039b4c876be1f1040062f703000000000000011400e0e834c18cef7db0e40397a90a0738e24404a2d35ebdfd3254006062f7030bc04062f7031bc04062f7032bc0400da10";
    const GOLDEN_JSON: &str = r#"{"count":2000,"count_distinct":7,"first":"/p0","key":"m-1","last":4.25,"max":11.0,"mean":4.031,"min":-500.0,"n_distinct_p4":1069,"pages_exact":7,"quantiles_p50":3.857406244389098,"quantiles_p95":10.278225915562063,"quantiles_p99":10.913817739716837,"sum":7832.125,"top_k":[{"count":286,"value":"/p0"},{"count":286,"value":"/p1"},{"count":286,"value":"/p2"}],"window_end":1767225660000,"window_start":1767225600000}"#;

    /// Regression: a dead letter said "field #2 holds ..." instead of
    /// naming the field.
    #[test]
    fn a_value_that_cannot_be_aggregated_names_its_field() {
        let specs = specs();
        let names: Vec<String> = fields().into_iter().map(|f| f.name).collect();
        let bad = Record {
            values: vec![
                Value::String("/p1".into()),
                Value::Long(1),
                Value::String("1.5".into()),
            ],
        };
        let e = Aggregates::check(&specs, &bad, &names).unwrap_err();
        assert!(
            e.starts_with("aggregate sum: field \"x\" holds ") && e.ends_with("expected double"),
            "{e}"
        );
        let huge = record(1, 1, 1e15);
        let e = Aggregates::check(&specs, &huge, &names).unwrap_err();
        assert_eq!(
            e,
            "aggregate sum: field \"x\": value 1000000000000000 is outside the aggregatable range of ±9.2e12"
        );
        assert_eq!(
            Aggregates::check(&specs, &record(1, 1, 1.5), &names),
            Ok(())
        );
    }

    #[test]
    fn resolve_names_the_problem() {
        let l = layout();
        let e = AggSpec::resolve(&agg(AggregateFn::Sum, Some("page")), &l).unwrap_err();
        assert!(e.contains("\"page\"") && e.contains("found string"), "{e}");
        let e = AggSpec::resolve(&agg(AggregateFn::Mean, None), &l).unwrap_err();
        assert!(e.contains("needs a field"), "{e}");
        let mut q = agg(AggregateFn::Quantiles, Some("x"));
        q.quantiles = Some(vec![0.5, 1.0]);
        assert!(
            AggSpec::resolve(&q, &l)
                .unwrap_err()
                .contains("strictly between 0 and 1")
        );
    }

    proptest! {
        /// Any split of a window's records into partials, merged in any
        /// order (by value or by reference), gives exactly the one-pass result, for every aggregate
        /// (sketches included: their state depends only on the set of
        /// values). This is what makes a replayed window identical.
        #[test]
        fn merging_any_split_equals_one_pass(
            rows in prop::collection::vec((0u8..20, -1_000_000i64..1_000_000, -1e6f64..1e6), 1..150),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
            reverse in any::<bool>(),
            by_ref in prop::collection::vec(any::<bool>(), 9),
        ) {
            let specs = specs();
            let records: Vec<_> = rows.iter().map(|(p, n, x)| record(*p, *n, (*x * 1000.0).round() / 1000.0)).collect();
            let times: Vec<i64> = rows.iter().map(|(p, _, _)| i64::from(*p % 7)).collect();
            let mut one = Aggregates::new(&specs);
            for (i, r) in records.iter().enumerate() {
                one.add(&specs, r, times[i], i as i64).unwrap();
            }
            let mut bounds: Vec<usize> = cuts.iter().map(|c| c.index(records.len())).collect();
            bounds.extend([0, records.len()]);
            bounds.sort_unstable();
            let mut parts: Vec<Aggregates> = bounds.windows(2).map(|w| {
                let mut a = Aggregates::new(&specs);
                for i in w[0]..w[1] {
                    a.add(&specs, &records[i], times[i], i as i64).unwrap();
                }
                a
            }).collect();
            if reverse { parts.reverse(); }
            // Some parts merged by reference (as a pane into each window
            // it belongs to but its last).
            let mut merged = Aggregates::new(&specs);
            for (p, by_ref) in parts.into_iter().zip(by_ref.iter().cycle()) {
                if *by_ref { merged.merge_ref(&p) } else { merged.merge(p) }
            }
            prop_assert_eq!(merged.finish(&specs), one.finish(&specs));
        }

        /// The output encoder writes every aggregate's value (unions of
        /// nullable fields with and without a value, top-k records,
        /// composite keys with escapes) exactly as apache-avro's writer.
        #[test]
        fn output_encoding_equals_apache_avro(
            rows in prop::collection::vec(
                (0u8..20, -1_000_000i64..1_000_000, -1e6f64..1e6, prop::option::of(-99i64..99)),
                1..40,
            ),
            key in prop::collection::vec("[a-z|\\\\é]{0,6}", 2),
            start in any::<i64>(),
        ) {
            use crate::codec::{OutputEncoder, WindowOutput, join_key};
            use crate::config::Format;
            let mut fields = fields();
            fields.push(Field { name: "m".into(), ty: FieldType::Long, nullable: true });
            let l = Layout::new(fields);
            let mut specs = specs();
            for f in [AggregateFn::Min, AggregateFn::Mean, AggregateFn::First, AggregateFn::MaxBy] {
                let mut c = agg(f, Some("m"));
                c.name = Some(format!("m_{f:?}"));
                if f == AggregateFn::MaxBy {
                    c.value = Some(vec!["m".into(), "page".into()]);
                }
                specs.push(AggSpec::resolve(&c, &l).unwrap());
            }
            let enc = OutputEncoder::derive(
                "Out", Some("ns"), &["a".into(), "b".into()], &specs, Format::Avro,
            ).unwrap();
            let mut a = Aggregates::new(&specs);
            for (i, (p, n, x, m)) in rows.iter().enumerate() {
                let mut r = record(*p, *n, *x);
                r.values.push(m.map_or(Value::Union(0, Box::new(Value::Null)), |m| {
                    Value::Union(1, Box::new(Value::Long(m)))
                }));
                a.add(&specs, &r, i as i64, i as i64).unwrap();
            }
            let parts: Vec<&str> = key.iter().map(String::as_str).collect();
            let w = WindowOutput {
                key: join_key(&parts),
                start,
                end: start.wrapping_add(60_000),
                values: a.finish(&specs),
            };
            prop_assert_eq!(enc.encode(&w).unwrap(), enc.encode_with_library(&w));
        }
    }
}
