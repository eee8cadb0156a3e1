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
        let out = op.step().run(batch.clone());
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

fn window() -> impl Strategy<Value = WindowConfig> {
    let ms = Duration::from_millis;
    prop_oneof![
        Just(WindowConfig::Tumbling { size: ms(1_000) }),
        Just(WindowConfig::Hopping {
            size: ms(1_000),
            advance: ms(250)
        }),
        Just(WindowConfig::Sliding { size: ms(400) }),
        Just(WindowConfig::Session { gap: ms(300) }),
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
        let mut batches = Vec::new();
        let mut rest = &records[..];
        for cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (b, r) = rest.split_at((*cut).min(rest.len()));
            batches.push(b.to_vec());
            rest = r;
        }
        // A record far ahead closes every window.
        batches.push(vec![click(records.len() as i64, 9, 0, 0, 1_000_000)]);
        let save_after = save_at.min(batches.len() - 1);
        let one_pass = run(&plan, &batches, save_after, false);
        let restored = run(&plan, &batches, save_after, true);
        prop_assert_eq!(&restored, &one_pass);
        prop_assert!(!one_pass.is_empty() || save_after == batches.len() - 1);
    }
}
