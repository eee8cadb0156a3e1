//! End to end on the embedded broker: a generated stream with several keys,
//! out-of-order and late events, a poison record and a record no transform
//! can handle. The output topic must hold exactly the windows an
//! independent record-at-a-time computation gives; the dead-letter topic
//! must hold the bad and late records with headers saying why and where.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use apache_avro::types::Value;
use common::*;
use streamfold::config::Secret;
use streamfold::generate::{GeneratorOptions, PaymentGenerator};
use streamfold::record::{FieldType, Layout, Record};
use streamfold::telemetry::Metrics;
use streamfold::transform::{Pseudonymise, Transform, TransformError};
use tokio_util::sync::CancellationToken;

/// A user-defined transform: upper-cases the merchant id and records
/// whether it ran on the rayon pool.
struct UpperMerchant {
    index: usize,
    on_pool: Arc<AtomicU64>,
    off_pool: Arc<AtomicU64>,
}

impl Transform for UpperMerchant {
    fn name(&self) -> &str {
        "upper-merchant"
    }

    fn bind(&mut self, layout: &mut Layout) -> Result<(), String> {
        self.index = layout.index_of("merchant_id").ok_or("no merchant_id")?;
        assert_eq!(layout.field(self.index).ty, FieldType::String);
        Ok(())
    }

    fn apply(&self, record: &mut Record) -> Result<(), TransformError> {
        if rayon::current_thread_index().is_some() {
            self.on_pool.fetch_add(1, Ordering::Relaxed);
        } else {
            self.off_pool.fetch_add(1, Ordering::Relaxed);
        }
        let upper = record
            .str(self.index)
            .map_err(|e| TransformError(e.to_string()))?
            .to_uppercase();
        record.set(self.index, Value::String(upper));
        Ok(())
    }
}

/// Payments for 6 merchants over 3 partitions (each merchant in one, as a
/// producer keying by merchant gives), a poison record, a payment in an
/// unknown currency, and a final far-future payment per partition that
/// closes everything before it.
fn events(n: usize, partitions: i32) -> Vec<(i32, Event)> {
    let options = GeneratorOptions {
        seed: 7,
        merchants: 6,
        step_ms: 40,
        jitter_ms: 5_000,
        late_every: 53,
        late_ms: 120_000,
        ..GeneratorOptions::default()
    };
    let partition_of = |m: &str| m.trim_start_matches("m-").parse::<i32>().unwrap() % partitions;
    let mut out: Vec<(i32, Event)> = PaymentGenerator::new(options.clone())
        .take(n)
        .map(|p| (partition_of(&p.merchant_id), Event::Payment(p)))
        .collect();
    out.insert(n / 3, (0, Event::Poison(b"\x02garbage".to_vec())));
    if let (_, Event::Payment(p)) = &out[n / 2] {
        let mut odd = p.clone();
        odd.currency = "XXX".into();
        let part = partition_of(&odd.merchant_id);
        out.insert(n / 2, (part, Event::Payment(odd)));
    }
    let end = options.start_ms + n as i64 * options.step_ms;
    for part in 0..partitions {
        let mut p = PaymentGenerator::new(options.clone()).next().unwrap();
        p.merchant_id = format!("m-{part}");
        p.event_time = end + 600_000;
        out.push((part, Event::Payment(p)));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_match_an_independent_computation_and_bad_records_are_dead_lettered() {
    end_to_end(Setup::new(3), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_and_dead_letters_on_a_real_broker() {
    end_to_end(Setup::real(3), true).await;
}

/// The pipeline over `setup`, with `state.checkpoints = checkpoints`.
async fn end_to_end(setup: Setup, checkpoints: bool) {
    let events = events(4_000, 3);
    let offsets = publish(&setup.servers(), &setup.input, &events);
    let expected = expected(&events, &offsets, 10_000, |p| p.merchant_id.to_uppercase());
    assert!(
        expected.windows.len() > 20,
        "test data must span many windows"
    );
    assert!(expected.late.len() > 30);

    // The shipped pipeline without its pseudonymise step, which a library
    // user adds back through the API along with their own transform.
    let path = setup.write_config("10s", "[batch]\nmax_records = 300\nmax_wait = \"20ms\"\n");
    without_pseudonymise(&path);
    edit_config(&path, |c| c.state.checkpoints = checkpoints);
    let loaded = streamfold::config::load(&path).unwrap();
    let on_pool = Arc::new(AtomicU64::new(0));
    let off_pool = Arc::new(AtomicU64::new(0));
    let extra: Vec<Box<dyn Transform>> = vec![
        Box::new(Pseudonymise::new("card_id", &Secret::new(PSEUDONYM_KEY))),
        Box::new(UpperMerchant {
            index: 0,
            on_pool: on_pool.clone(),
            off_pool: off_pool.clone(),
        }),
    ];
    let shutdown = CancellationToken::new();
    let pipeline = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            streamfold::source::run(&loaded, extra, Metrics::new(), shutdown).await
        })
    };

    let servers = setup.servers();
    let (output, dlq) = (setup.output.clone(), setup.dlq.clone());
    let want = expected.windows.len();
    let want_dead = expected.late.len() + expected.failed.len();
    let (outputs, dead) = tokio::task::spawn_blocking(move || {
        let outputs = read_until(&servers, &output, Duration::from_secs(60), |r| {
            r.len() >= want
        });
        let dead = read_until(&servers, &dlq, Duration::from_secs(30), |r| {
            r.len() >= want_dead
        });
        (outputs, dead)
    })
    .await
    .unwrap();
    // Let anything extra (wrongly emitted) arrive before stopping.
    tokio::time::sleep(Duration::from_millis(500)).await;
    shutdown.cancel();
    pipeline.await.unwrap().expect("pipeline stops cleanly");

    // The shutdown commit. Without checkpoints each partition resumes at
    // the record that opened its only still-open window (the last one),
    // with its event-time state; with them, after its last record, from
    // the checkpoint that holds that window.
    let points = resume_points(
        &setup.servers(),
        &format!("group-{}", setup.input),
        &setup.input,
        3,
    );
    for (part, point) in points.iter().enumerate() {
        let last = offsets
            .iter()
            .rev()
            .find(|(p, _)| *p == part as i32)
            .unwrap();
        if checkpoints {
            assert_eq!(point.offset, last.1 + 1, "partition {part}");
            assert!(point.checkpoint.is_some(), "{point:?}");
        } else {
            assert_eq!(point.offset, last.1, "partition {part}");
            assert_eq!(point.checkpoint, None);
        }
        assert!(point.max_event_time > 0 && point.settled > 0, "{point:?}");
    }

    // Windows: exactly the expected ones, each once, keyed by the group key
    // with their bounds in headers.
    for r in &outputs {
        let row = decode_window(&r.payload);
        assert_eq!(r.key.as_deref(), Some(row.key.as_str()));
        assert_eq!(r.headers["streamfold.window.start"], row.start.to_string());
        assert_eq!(r.headers["streamfold.window.end"], row.end.to_string());
    }
    assert_exactly(&outputs, &expected);

    // Dead letters: every failed and late record, with its coordinates.
    let mut by_stage: std::collections::BTreeMap<String, Vec<(i32, i64)>> = Default::default();
    for r in &dead {
        let h = &r.headers;
        assert_eq!(h["streamfold.source.topic"], setup.input);
        assert_eq!(h["streamfold.pipeline"], "merchant-stats");
        assert!(h.contains_key("streamfold.source.timestamp"));
        assert!(!h["streamfold.error"].is_empty());
        let at = (
            h["streamfold.source.partition"].parse().unwrap(),
            h["streamfold.source.offset"].parse().unwrap(),
        );
        by_stage
            .entry(h["streamfold.error.stage"].clone())
            .or_default()
            .push(at);
    }
    for v in by_stage.values_mut() {
        v.sort_unstable();
    }
    let poison = offsets[4_000 / 3];
    assert_eq!(by_stage["decode"], vec![poison]);
    let poison_letter = dead
        .iter()
        .find(|r| r.headers["streamfold.error.stage"] == "decode")
        .unwrap();
    assert_eq!(poison_letter.payload, b"\x02garbage", "original bytes kept");
    assert!(poison_letter.headers["streamfold.error"].contains("payment.avsc"));
    let unknown_currency = &by_stage["transform"];
    assert_eq!(unknown_currency.len(), 1);
    let letter = dead
        .iter()
        .find(|r| r.headers["streamfold.error.stage"] == "transform")
        .unwrap();
    assert!(letter.headers["streamfold.error"].contains("\"XXX\""));
    let mut late = expected.late.clone();
    late.sort_unstable();
    assert_eq!(by_stage["late"], late);

    // The user's transform ran on the rayon pool, for every record that
    // reached it (all but the poison and the unknown currency).
    assert_eq!(off_pool.load(Ordering::Relaxed), 0);
    assert_eq!(on_pool.load(Ordering::Relaxed), events.len() as u64 - 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_records_go_to_their_side_topic_with_headers() {
    let setup = Setup::new(3);
    let late_topic = format!("late-{}", setup.input);
    setup.broker.create_topic(&late_topic, 1).unwrap();
    let events = events(1_500, 3);
    let offsets = publish(&setup.servers(), &setup.input, &events);
    let expected = expected(&events, &offsets, 10_000, |p| p.merchant_id.to_uppercase());
    assert!(expected.late.len() > 10);

    let path = setup.write_config("10s", "");
    without_pseudonymise(&path);
    edit_config(&path, |c| {
        c.pipeline.late_records = streamfold::config::LatePolicy::SideTopic;
        c.pipeline.late_topic = Some(late_topic.clone());
    });
    let loaded = streamfold::config::load(&path).unwrap();
    let shutdown = CancellationToken::new();
    let pipeline = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            streamfold::source::run(&loaded, Vec::new(), Metrics::new(), shutdown).await
        })
    };
    let (servers, want, dlq) = (setup.servers(), expected.late.len(), setup.dlq.clone());
    let topic = late_topic.clone();
    let (late, dead) = tokio::task::spawn_blocking(move || {
        let late = read_until(&servers, &topic, Duration::from_secs(60), |r| {
            r.len() >= want
        });
        let dead = read_until(&servers, &dlq, Duration::from_secs(10), |r| r.len() >= 2);
        (late, dead)
    })
    .await
    .unwrap();
    shutdown.cancel();
    pipeline.await.unwrap().unwrap();

    let mut got: Vec<(i32, i64)> = late
        .iter()
        .map(|r| {
            assert_eq!(r.headers["streamfold.error.stage"], "late");
            (
                r.headers["streamfold.source.partition"].parse().unwrap(),
                r.headers["streamfold.source.offset"].parse().unwrap(),
            )
        })
        .collect();
    got.sort_unstable();
    let mut want = expected.late.clone();
    want.sort_unstable();
    assert_eq!(got, want);
    // The dead-letter topic keeps only the records that failed.
    let stages: Vec<_> = dead
        .iter()
        .map(|r| r.headers["streamfold.error.stage"].clone())
        .collect();
    assert_eq!(stages.len(), 2, "{stages:?}");
    assert!(stages.iter().all(|s| s != "late"), "{stages:?}");
}

/// A library user's transform that panics on the payment of one card.
struct PanicsOnCard {
    index: usize,
    card: String,
}

impl Transform for PanicsOnCard {
    fn name(&self) -> &str {
        "panics-on-card"
    }

    fn bind(&mut self, layout: &mut Layout) -> Result<(), String> {
        self.index = layout.index_of("card_id").ok_or("no card_id")?;
        Ok(())
    }

    fn apply(&self, record: &mut Record) -> Result<(), TransformError> {
        let card = record
            .str(self.index)
            .map_err(|e| TransformError(e.to_string()))?;
        assert_ne!(card, self.card, "card {card} is on the block list");
        Ok(())
    }
}

/// Regression: a panic on the rayon pool aborted the process (rayon's
/// global pool has no panic handler), losing the drain and the commit.
/// Now the record it panicked on is a dead letter with the panic message
/// and every other record is aggregated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transform_that_panics_on_one_record_dead_letters_that_record_only() {
    let setup = Setup::new(3);
    let mut events = events(1_500, 3);
    let (victim, card) = events
        .iter()
        .enumerate()
        .find_map(|(i, (_, e))| match e {
            Event::Payment(p) if i > 400 => Some((i, p.card_id.clone())),
            _ => None,
        })
        .unwrap();
    // Only that payment carries the card.
    for (i, (_, e)) in events.iter_mut().enumerate() {
        if let Event::Payment(p) = e
            && p.card_id == card
            && i != victim
        {
            p.card_id = format!("{}-other", p.card_id);
        }
    }
    let offsets = publish(&setup.servers(), &setup.input, &events);
    let mut expect_events = events.clone();
    expect_events[victim].1 = Event::Poison(Vec::new());
    let expected = expected(&expect_events, &offsets, 10_000, |p| p.merchant_id.clone());

    let path = setup.write_config("10s", "[batch]\nmax_records = 300\nmax_wait = \"20ms\"\n");
    without_pseudonymise(&path);
    let loaded = streamfold::config::load(&path).unwrap();
    let extra: Vec<Box<dyn Transform>> = vec![Box::new(PanicsOnCard { index: 0, card })];
    let shutdown = CancellationToken::new();
    let pipeline = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            streamfold::source::run(&loaded, extra, Metrics::new(), shutdown).await
        })
    };
    let (servers, want, output, dlq) = (
        setup.servers(),
        expected.windows.len(),
        setup.output.clone(),
        setup.dlq.clone(),
    );
    let failed = expected.failed.len() + expected.late.len();
    let (read, dead) = tokio::task::spawn_blocking(move || {
        let read = read_until(&servers, &output, Duration::from_secs(60), |r| {
            r.len() >= want
        });
        let dead = read_until(&servers, &dlq, Duration::from_secs(20), |r| {
            r.len() >= failed
        });
        (read, dead)
    })
    .await
    .unwrap();
    assert!(!pipeline.is_finished(), "the pipeline stopped");
    shutdown.cancel();
    pipeline.await.unwrap().expect("pipeline stops cleanly");

    assert_exactly(&read, &expected);
    let letter = dead
        .iter()
        .find(|r| {
            r.headers["streamfold.source.offset"] == offsets[victim].1.to_string()
                && r.headers["streamfold.source.partition"] == offsets[victim].0.to_string()
        })
        .unwrap_or_else(|| panic!("the panicking record is not a dead letter: {dead:?}"));
    assert_eq!(letter.headers["streamfold.error.stage"], "transform");
    assert!(
        letter.headers["streamfold.error"].starts_with("panics-on-card: panicked: ")
            && letter.headers["streamfold.error"].contains("is on the block list"),
        "{:?}",
        letter.headers
    );
}
