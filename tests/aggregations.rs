//! Every aggregation end to end on the embedded broker, compared with an
//! independent computation over the same generated records: exact ones
//! exactly, sketches within their stated error.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use apache_avro::types::Value;
use common::*;
use streamfold::codec::Decoder;
use streamfold::config::Format;
use streamfold::generate::{GeneratorOptions, PaymentGenerator};
use streamfold::pipeline::Plan;
use streamfold::telemetry::Metrics;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_aggregation_matches_an_independent_computation() {
    let setup = Setup::new(2);
    let options = GeneratorOptions {
        seed: 3,
        merchants: 4,
        step_ms: 60,
        jitter_ms: 2_000,
        late_every: 0,
        ..GeneratorOptions::default()
    };
    let n = 3_000;
    let mut events: Vec<(i32, Event)> = PaymentGenerator::new(options.clone())
        .take(n)
        .map(|mut p| {
            vary_country(&mut p);
            let m: i32 = p.merchant_id.trim_start_matches("m-").parse().unwrap();
            (m % 2, Event::Payment(p))
        })
        .collect();
    for part in 0..2 {
        let mut p = PaymentGenerator::new(options.clone()).next().unwrap();
        p.merchant_id = format!("m-{part}");
        p.event_time = options.start_ms + n as i64 * options.step_ms + 600_000;
        events.push((part, Event::Payment(p)));
    }
    let offsets = publish(&setup.servers(), &setup.input, &events);
    let expected = expected(&events, &offsets, 5_000, |p| p.merchant_id.clone());
    assert!(
        expected.members.len() > 10,
        "test data must span many windows"
    );

    let path = setup.write_config("5s", "");
    without_pseudonymise(&path);
    edit_config(&path, |c| {
        c.pipeline.aggregates = sketches();
        c.pipeline.output_schema = None;
    });
    let loaded = streamfold::config::load(&path).unwrap();
    let schema = Plan::build(&loaded, Vec::new()).unwrap().output_schema();

    let want = expected.windows.len();
    let read = run_until(
        &loaded,
        Metrics::new(),
        &setup.output.clone(),
        Duration::from_secs(60),
        move |r| r.len() >= want,
    )
    .await;

    let decoder = Decoder::new(schema.clone(), Format::Avro);
    let mut got: BTreeMap<(String, i64), Vec<(String, Value)>> = BTreeMap::new();
    for r in &read {
        let (window, fields) = decode_fields(&decoder, &r.payload);
        got.insert(window, fields);
    }
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.members.keys().collect::<Vec<_>>()
    );

    let hll_errors: Vec<f64> = expected
        .members
        .iter()
        .map(|(k, members)| check_sketches(k, &got[k], members))
        .collect();
    // HyperLogLog at precision 14: standard error 0.8%; small sets are
    // counted almost exactly.
    let worst = hll_errors.iter().cloned().fold(0.0, f64::max);
    assert!(worst < 0.03, "worst HyperLogLog error {worst}");
}
