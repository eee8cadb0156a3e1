//! The windowed aggregation saved at any batch boundary and restored into
//! a new operator gives, from there on, exactly the output of one pass:
//! the same window results, byte for byte, for every window kind and the
//! example's aggregates (count, count-distinct, quantiles, first, last,
//! top-k), over random records, batchings and checkpoint points.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::Windowed;
use crate::config::{AggregateConfig, WindowConfig};
use crate::offsets::Frontier;
use crate::operator::{Context, Operator, Step};
use crate::pipeline::Plan;
use crate::pipeline::clickstream_plan;
use crate::record::RawRecord;
use crate::sink::Output;
use crate::telemetry::Metrics;
use crate::window::NO_TIME;

fn plan(window: WindowConfig, hll: bool) -> Arc<Plan> {
    clickstream_plan(|p| {
        p.window = Some(window);
        p.allowed_lateness = Duration::from_millis(300);
        if hll {
            // Approximate distinct count as well as the example's exact one.
            let mut a: AggregateConfig = p.aggregates[1].clone();
            a.name = Some("pages_hll".into());
            a.exact = Some(false);
            a.precision = Some(8);
            p.aggregates.push(a);
        }
    })
}

fn click(offset: i64, user: u8, page: u8, dwell: u16, t: i64) -> RawRecord {
    let json = format!(
        r#"{{"event_id":"e{offset}","user_id":"u{user}","page":"/p{page}","dwell_ms":{dwell},"event_time":{t}}}"#
    );
    RawRecord {
        offset,
        timestamp: Some(t),
        key: None,
        payload: Some(Bytes::from(json)),
        schema_header: None,
        window_partition: None,
    }
}

/// Runs `batches` of records through an operator; with `save_after`,
/// the operator is saved after that many batches and the rest runs on a
/// new operator restored from it. Returns every final result and late
/// record after the save point: (key, start, end, payload) or the offset.
fn run(
    plan: &Arc<Plan>,
    batches: &[Vec<RawRecord>],
    save_after: usize,
    restore: bool,
) -> Vec<String> {
    let metrics = Metrics::new().pipeline("test");
    let mut op = Windowed::new(Arc::clone(plan), NO_TIME);
    let mut frontier = Frontier::new(NO_TIME);
    let mut seen = Vec::new();
    for (i, batch) in batches.iter().enumerate() {
        if i == save_after && restore {
            let state = op.save().expect("the windowed aggregation keeps state");
            let met = op.event_time();
            let settled = frontier.closed();
            op = Windowed::new(Arc::clone(plan), met);
            op.restore(&state, &metrics)
                .expect("its own state restores");
            frontier = Frontier::new(settled);
        }
        let mut outputs = Vec::new();
        let out = op.step().run(batch.clone().into());
        let mut cx = Context::new(0, &mut frontier, &metrics, &mut outputs);
        op.on_batch(out, &mut cx).expect("no operator error");
        if i >= save_after {
            for o in outputs {
                match o {
                    Output::Final(w) => seen.push(format!(
                        "{} [{}, {}) {}",
                        w.window.key,
                        w.window.start,
                        w.window.end,
                        String::from_utf8_lossy(&w.payload)
                    )),
                    Output::Late { record, .. } => seen.push(format!("late {}", record.offset)),
                    _ => {}
                }
            }
        }
    }
    seen
}

/// `records` cut into batches of the sizes `cuts` gives, over and over.
fn batches(records: &[RawRecord], cuts: &[usize]) -> Vec<Vec<RawRecord>> {
    let mut batches = Vec::new();
    let mut rest = records;
    for cut in cuts.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (b, r) = rest.split_at((*cut).min(rest.len()));
        batches.push(b.to_vec());
        rest = r;
    }
    batches
}

/// Tumbling or hopping: windows every key shares.
fn fixed_window() -> impl Strategy<Value = WindowConfig> {
    let ms = Duration::from_millis;
    prop_oneof![
        Just(WindowConfig::Tumbling { size: ms(1_000) }),
        Just(WindowConfig::Hopping {
            size: ms(1_000),
            advance: ms(250)
        }),
    ]
}

fn window() -> impl Strategy<Value = WindowConfig> {
    let ms = Duration::from_millis;
    prop_oneof![
        2 => fixed_window(),
        1 => Just(WindowConfig::Sliding { size: ms(400) }),
        1 => Just(WindowConfig::Session { gap: ms(300) }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_restored_checkpoint_goes_on_exactly_as_one_pass(
        window in window(),
        hll in any::<bool>(),
        records in prop::collection::vec((0u8..4, 0u8..6, 0u16..5_000, 0i64..4_000), 1..120),
        cuts in prop::collection::vec(1usize..30, 1..12),
        save_at in 0usize..12,
    ) {
        let plan = plan(window, hll);
        // Event times drift forward with some disorder (late records too).
        let records: Vec<RawRecord> = records
            .iter()
            .enumerate()
            .map(|(i, &(user, page, dwell, jitter))| {
                click(i as i64, user, page, dwell, i as i64 * 40 + jitter - 2_000 + 10_000)
            })
            .collect();
        let mut batches = batches(&records, &cuts);
        // A record far ahead closes every window.
        batches.push(vec![click(records.len() as i64, 9, 0, 0, 1_000_000)]);
        let save_after = save_at.min(batches.len() - 1);
        let one_pass = run(&plan, &batches, save_after, false);
        let restored = run(&plan, &batches, save_after, true);
        prop_assert_eq!(&restored, &one_pass);
        prop_assert!(!one_pass.is_empty() || save_after == batches.len() - 1);
    }
}

/// The clickstream's windows with `per_window`: the busiest user of each
/// window (most page views; ties: the smallest user id), the views and
/// the users.
fn per_window_plan(window: WindowConfig) -> Arc<Plan> {
    clickstream_plan(|p| {
        p.window = Some(window);
        p.allowed_lateness = Duration::from_millis(300);
        p.per_window = serde_json::from_value(serde_json::json!([
            { "fn": "max-by", "field": "page_views", "value": ["key", "page_views"], "name": "busiest" },
            { "fn": "sum", "field": "page_views", "name": "views" },
            { "fn": "count", "name": "users" },
        ]))
        .expect("per_window aggregates");
    })
}

/// A final result of [`run`]: its key, bounds and fields.
fn parse(line: &str) -> (String, i64, i64, serde_json::Value) {
    let (head, payload) = line.split_once(") ").expect("a final result");
    let (key, bounds) = head.rsplit_once(" [").expect("a final result");
    let (start, end) = bounds.split_once(", ").expect("window bounds");
    (
        key.to_string(),
        start.parse().expect("a start"),
        end.parse().expect("an end"),
        serde_json::from_str(payload).expect("a JSON result"),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn per_window_writes_each_window_once_folded_from_its_results(
        window in fixed_window(),
        records in prop::collection::vec((0u8..12, 0u8..6, 0i64..4_000), 1..150),
        cuts in prop::collection::vec(1usize..30, 1..12),
        save_at in 0usize..12,
    ) {
        let records: Vec<RawRecord> = records
            .iter()
            .enumerate()
            .map(|(i, &(user, page, jitter))| {
                click(i as i64, user, page, 10, i as i64 * 40 + jitter - 2_000 + 10_000)
            })
            .collect();
        let mut batches = batches(&records, &cuts);
        batches.push(vec![click(records.len() as i64, 99, 0, 0, 1_000_000)]);

        // Independently: the plain results, grouped by window.
        let plain = run(&plan(window.clone(), false), &batches, 0, false);
        // (busiest's views, busiest, views, users): sums are doubles.
        let mut expected: std::collections::BTreeMap<(i64, i64), (i64, String, f64, i64)> =
            Default::default();
        for line in plain.iter().filter(|l| !l.starts_with("late ")) {
            let (key, start, end, fields) = parse(line);
            let views = fields["page_views"].as_i64().expect("a count");
            let w = expected.entry((start, end)).or_insert((i64::MIN, String::new(), 0.0, 0));
            if views > w.0 || (views == w.0 && key < w.1) {
                (w.0, w.1) = (views, key);
            }
            w.2 += views as f64;
            w.3 += 1;
        }

        let plan = per_window_plan(window);
        let one_pass = run(&plan, &batches, 0, false);
        let mut found = std::collections::BTreeMap::new();
        for line in one_pass.iter().filter(|l| !l.starts_with("late ")) {
            let (key, start, end, f) = parse(line);
            prop_assert_eq!(key, end.to_string());
            let row = (
                f["busiest_page_views"].as_i64().expect("the busiest's views"),
                f["busiest_key"].as_str().expect("the busiest user").to_string(),
                f["views"].as_f64().expect("views"),
                f["users"].as_i64().expect("users"),
            );
            prop_assert!(found.insert((start, end), row).is_none(), "window [{}, {}) written twice", start, end);
        }
        prop_assert_eq!(&found, &expected);
        // The same late records as without `per_window`.
        let late = |lines: &[String]| lines.iter().filter(|l| l.starts_with("late ")).cloned().collect::<Vec<_>>();
        prop_assert_eq!(late(&one_pass), late(&plain));

        // Saved and restored at any batch, it goes on as one pass.
        let save_after = save_at.min(batches.len() - 1);
        prop_assert_eq!(
            run(&plan, &batches, save_after, true),
            run(&plan, &batches, save_after, false)
        );
    }
}

/// What a fresh operator of `plan` writes for one batch of `records`.
fn one_batch(plan: &Arc<Plan>, records: Vec<RawRecord>) -> Vec<Output> {
    let metrics = Metrics::new().pipeline("test");
    let mut op = Windowed::new(Arc::clone(plan), NO_TIME);
    let mut frontier = Frontier::new(NO_TIME);
    let mut outputs = Vec::new();
    let out = op.step().run(records.into());
    let mut cx = Context::new(0, &mut frontier, &metrics, &mut outputs);
    op.on_batch(out, &mut cx).expect("no operator error");
    outputs
}

/// A downstream stage reading `counts` (JSON results): per upstream window
/// end, the sum of the counts and how many results it took.
fn downstream_plan() -> Arc<Plan> {
    let dir = std::env::temp_dir().join(format!("streamfold-chain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let path = dir.join("chain.toml");
    let text = format!(
        r#"
[kafka]
bootstrap_servers = "localhost:9092"
group_id = "chain"

[[pipelines]]
name = "counts"
input_topic = "payments"
input_schema = "{schemas}/payment.avsc"
output_topic = "counts"
output_format = "json"
dead_letter_topic = "dlq"
group_by = "merchant_id"
event_time = {{ source = "field", field = "event_time" }}
window = {{ kind = "tumbling", size = "10s" }}
aggregates = [{{ fn = "count" }}]

[[pipelines]]
name = "totals"
input = {{ pipeline = "counts" }}
output_topic = "totals"
output_format = "json"
dead_letter_topic = "dlq"
group_by = "window_end"
window = {{ kind = "tumbling", size = "10s" }}
aggregates = [{{ fn = "sum", field = "count", name = "bids" }}, {{ fn = "count", name = "results" }}]
"#,
        schemas = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas"),
    );
    std::fs::write(&path, text).expect("the config is written");
    let loaded = crate::config::load_all(&path).expect("the chain loads");
    let totals = loaded
        .iter()
        .find(|l| l.config.pipeline.name == "totals")
        .expect("the downstream stage");
    Arc::new(Plan::build(totals, Vec::new()).expect("the downstream plan builds"))
}

/// An upstream result of merchant `key` for window `[end - 10 s, end)`,
/// computed on upstream partition `partition` (the header's value).
fn upstream_result(
    offset: i64,
    key: &str,
    end: i64,
    count: i64,
    partition: Option<Result<i32, &'static str>>,
) -> RawRecord {
    let json = format!(
        r#"{{"key":"{key}","window_start":{},"window_end":{end},"count":{count}}}"#,
        end - 10_000
    );
    RawRecord {
        offset,
        timestamp: Some(end),
        key: Some(Bytes::from(key.to_string())),
        payload: Some(Bytes::from(json)),
        schema_header: None,
        window_partition: partition.map(|p| p.map_err(|s| Bytes::from_static(s.as_bytes()))),
    }
}

#[test]
fn an_upstream_result_whose_partition_header_is_malformed_is_a_dead_letter_and_the_rest_count_once()
{
    let plan = downstream_plan();
    let batch = vec![
        upstream_result(0, "m-1", 10_000, 3, Some(Ok(0))),
        // Another partition's result of the same key and window: its own.
        upstream_result(1, "m-1", 10_000, 4, Some(Ok(1))),
        // A copy (the upstream wrote it again after a restart).
        upstream_result(2, "m-1", 10_000, 3, Some(Ok(0))),
        upstream_result(3, "m-2", 10_000, 5, Some(Err("one"))),
        upstream_result(4, "m-3", 10_000, 6, None),
        // Moves the watermark past the window.
        upstream_result(5, "m-1", 1_000_000, 1, Some(Ok(0))),
    ];
    let outputs = one_batch(&plan, batch);
    let mut dead = Vec::new();
    let mut finals = Vec::new();
    for o in outputs {
        match o {
            Output::DeadLetter {
                record,
                stage,
                reason,
            } => dead.push((record.offset, stage, reason)),
            Output::Final(w) => finals.push(String::from_utf8_lossy(&w.payload).into_owned()),
            other => panic!("unexpected output {other:?}"),
        }
    }
    assert_eq!(
        dead,
        [(
            3,
            crate::record::Stage::Decode,
            "upstream result: header streamfold.window.partition holds \"one\", not a partition \
             number"
                .to_string()
        )]
    );
    // m-1 from partitions 0 and 1 (its copy skipped), and m-3.
    assert_eq!(finals.len(), 1, "{finals:?}");
    let total: serde_json::Value = serde_json::from_str(&finals[0]).expect("a JSON result");
    assert_eq!(
        (
            total["key"].as_str(),
            total["bids"].as_f64(),
            total["results"].as_i64()
        ),
        (Some("10000"), Some(13.0), Some(3))
    );
}

#[test]
fn a_result_per_window_cannot_take_is_left_out_of_a_record_marked_incomplete() {
    let plan = clickstream_plan(|p| {
        p.window = Some(WindowConfig::Tumbling {
            size: Duration::from_millis(1_000),
        });
        p.per_window = serde_json::from_value(serde_json::json!([
            { "fn": "count", "name": "users" },
            { "fn": "sum", "field": "dwell_ms_p50", "name": "dwell" },
        ]))
        .expect("per_window aggregates");
    });
    let mut huge = click(1, 2, 0, 0, 10_100);
    // A dwell beyond what a sum holds (in millionths, within an i64).
    huge.payload = Some(Bytes::from(
        r#"{"event_id":"e1","user_id":"u2","page":"/p0","dwell_ms":100000000000000,"event_time":10100}"#,
    ));
    let batch = vec![
        click(0, 1, 0, 10, 10_000),
        huge,
        click(2, 9, 0, 0, 1_000_000),
    ];
    let outputs = one_batch(&plan, batch);
    let finals: Vec<_> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::Final(w) => Some(w),
            _ => None,
        })
        .collect();
    assert_eq!(finals.len(), 1, "one window closed");
    assert!(
        !outputs
            .iter()
            .any(|o| matches!(o, Output::DeadLetter { .. })),
        "the record itself is fine: its window's result is not"
    );
    let w = finals[0];
    let v: serde_json::Value = serde_json::from_slice(&w.payload).expect("a JSON record");
    assert_eq!(
        (w.window.key.as_str(), v["users"].as_i64(), w.complete),
        ("11000", Some(1), false),
        "{v}"
    );
    let dwell = v["dwell"].as_f64().expect("the dwell of the result kept");
    assert!((dwell - 10.0).abs() < 0.2, "{dwell}");
}
