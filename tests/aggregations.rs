//! Every aggregation end to end on the embedded broker, compared with an
//! independent computation over the same generated records: exact ones
//! exactly, sketches within their stated error.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use apache_avro::types::Value;
use common::*;
use streamfold::codec::Decoder;
use streamfold::config::{AggregateConfig, Format};
use streamfold::generate::{GeneratorOptions, Payment, PaymentGenerator};
use streamfold::pipeline::Plan;
use streamfold::telemetry::Metrics;

const AGGREGATES: &str = r#"aggregates = [
  { fn = "count" },
  { fn = "first", field = "payment_id" },
  { fn = "last", field = "event_time", name = "last_time" },
  { fn = "count-distinct", field = "currency", exact = true, name = "currencies" },
  { fn = "count-distinct", field = "card_id", precision = 14, name = "cards" },
  { fn = "quantiles", field = "amount_eur", quantiles = [0.5, 0.9, 0.99], relative_error = 0.01, name = "amount" },
  { fn = "top-k", field = "country", k = 3, name = "top_countries" },
]"#;

fn field<'a>(fields: &'a [(String, Value)], name: &str) -> &'a Value {
    &fields.iter().find(|(n, _)| n == name).unwrap().1
}

fn top_k(members: &[(Payment, i64)], k: usize) -> Vec<(String, i64)> {
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for (p, _) in members {
        *counts.entry(&p.country).or_default() += 1;
    }
    let mut v: Vec<(String, i64)> = counts
        .into_iter()
        .map(|(c, n)| (c.to_string(), n))
        .collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(k);
    v
}

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
            // Vary the country independently of the currency.
            p.country = ["DE", "FR", "US", "JP", "SE"][p.amount as usize % 5].to_string();
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
    #[derive(serde::Deserialize)]
    struct Aggregates {
        aggregates: Vec<AggregateConfig>,
    }
    let Aggregates { aggregates } = toml::from_str(AGGREGATES).unwrap();
    edit_config(&path, |c| {
        c.pipeline.aggregates = aggregates;
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
    let names: Vec<String> = schema.fields.iter().map(|f| f.name.clone()).collect();
    let mut got: BTreeMap<(String, i64), Vec<(String, Value)>> = BTreeMap::new();
    for r in &read {
        let rec = decoder.batch().unwrap().decode(Some(&r.payload)).unwrap();
        let fields: Vec<(String, Value)> = names.iter().cloned().zip(rec.values).collect();
        let Value::String(key) = field(&fields, "key").clone() else {
            panic!()
        };
        let Value::TimestampMillis(start) = field(&fields, "window_start").clone() else {
            panic!()
        };
        got.insert((key, start), fields);
    }
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.members.keys().collect::<Vec<_>>()
    );

    let mut hll_errors = Vec::new();
    for (k, members) in &expected.members {
        let f = &got[k];
        assert_eq!(
            field(f, "count"),
            &Value::Long(members.len() as i64),
            "{k:?}"
        );
        let first = members
            .iter()
            .min_by_key(|(p, o)| (p.event_time, *o))
            .unwrap();
        assert_eq!(
            field(f, "first"),
            &Value::String(first.0.payment_id.clone()),
            "{k:?}"
        );
        let last = members
            .iter()
            .max_by_key(|(p, o)| (p.event_time, *o))
            .unwrap();
        assert_eq!(
            field(f, "last_time"),
            &Value::TimestampMillis(last.0.event_time),
            "{k:?}"
        );
        let currencies: HashSet<_> = members.iter().map(|(p, _)| &p.currency).collect();
        assert_eq!(
            field(f, "currencies"),
            &Value::Long(currencies.len() as i64),
            "{k:?}"
        );
        let cards: HashSet<_> = members.iter().map(|(p, _)| &p.card_id).collect();
        let Value::Long(est) = field(f, "cards") else {
            panic!()
        };
        hll_errors.push((*est as f64 - cards.len() as f64).abs() / cards.len() as f64);

        let mut amounts: Vec<f64> = members.iter().map(|(p, _)| euros(p).unwrap()).collect();
        amounts.sort_by(f64::total_cmp);
        for (q, name) in [
            (0.5, "amount_p50"),
            (0.9, "amount_p90"),
            (0.99, "amount_p99"),
        ] {
            let exact = amounts[(q * (amounts.len() as f64 - 1.0)) as usize];
            let Value::Double(est) = field(f, name) else {
                panic!("{name}")
            };
            assert!(
                (est - exact).abs() <= 0.01 * exact.abs() + 1e-9,
                "{k:?} {name}: {est} vs exact {exact}"
            );
        }
        let Value::Array(top) = field(f, "top_countries") else {
            panic!()
        };
        let top: Vec<(String, i64)> = top
            .iter()
            .map(|e| match e {
                Value::Record(f) => match (&f[0].1, &f[1].1) {
                    (Value::String(v), Value::Long(c)) => (v.clone(), *c),
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(top, top_k(members, 3), "{k:?}");
    }
    // HyperLogLog at precision 14: standard error 0.8%; small sets are
    // counted almost exactly.
    let worst = hll_errors.iter().cloned().fold(0.0, f64::max);
    assert!(worst < 0.03, "worst HyperLogLog error {worst}");
}
