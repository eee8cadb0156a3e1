//! Window kinds end to end on the embedded broker, compared with an
//! independent record-at-a-time computation over the same out-of-order
//! records with late ones among them.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use streamfold::config::{DeriveConfig, EmitConfig, EventTimeConfig, GroupBy, WindowConfig};
use streamfold::generate::{GeneratorOptions, PaymentGenerator};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}
use streamfold::telemetry::Metrics;
use tokio_util::sync::CancellationToken;

/// Payments for 4 merchants over 2 partitions, then a far-future payment
/// per partition that closes everything before it.
fn events(n: usize) -> Vec<(i32, Event)> {
    let options = GeneratorOptions {
        seed: 21,
        merchants: 4,
        step_ms: 50,
        jitter_ms: 8_000,
        late_every: 37,
        late_ms: 45_000,
        ..GeneratorOptions::default()
    };
    payments_with_closers(&options, n, 2)
}

async fn run_and_compare(window: WindowConfig, size: i64, advance: i64) {
    let events = events(4_000);
    compare(window, events, |events, offsets| {
        expected_hopping(
            events,
            offsets,
            5_000,
            |p| p.merchant_id.clone(),
            size,
            advance,
        )
    })
    .await;
}

async fn compare(window: WindowConfig, events: Vec<(i32, Event)>, expect: impl Expect) {
    let setup = Setup::new(2);
    let offsets = publish(&setup.servers(), &setup.input, &events);
    let expected = expect(&events, &offsets);
    assert!(expected.windows.len() > 10);
    assert!(!expected.late.is_empty());

    let path = setup.write_config("5s", "[batch]\nmax_records = 200\nmax_wait = \"10ms\"\n");
    without_pseudonymise(&path);
    edit_config(&path, |c| {
        c.pipeline.window = Some(window);
        c.pipeline.output_schema = None;
    });
    let loaded = streamfold::config::load(&path).unwrap();
    let want = expected.windows.len();
    let read = run_until(
        &loaded,
        Metrics::new(),
        &setup.output.clone(),
        Duration::from_secs(60),
        move |r| r.len() >= want,
    )
    .await;

    assert_exactly(&read, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hopping_windows_match_an_independent_computation() {
    run_and_compare(
        WindowConfig::Hopping {
            size: secs(60),
            advance: secs(20),
        },
        60_000,
        20_000,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hopping_windows_with_size_not_a_multiple_of_advance() {
    run_and_compare(
        WindowConfig::Hopping {
            size: secs(50),
            advance: secs(20),
        },
        50_000,
        20_000,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tumbling_windows_match_an_independent_computation() {
    run_and_compare(WindowConfig::Tumbling { size: secs(60) }, 60_000, 60_000).await;
}

/// Sparse activity: merchants pause long enough for sessions to end, and
/// sometimes a record bridges two sessions.
fn bursty(n: usize) -> Vec<(i32, Event)> {
    let mut out = events(n);
    let mut rng = fastrand::Rng::with_seed(9);
    let mut shift = 0;
    for (_, e) in out.iter_mut() {
        if let Event::Payment(p) = e {
            if rng.u32(..40) == 0 {
                shift += rng.i64(20_000..90_000);
            }
            p.event_time += shift;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_windows_match_an_independent_computation() {
    let events = bursty(4_000);
    compare(WindowConfig::Session { gap: secs(15) }, events, |e, o| {
        expected_sessions(e, o, 5_000, 15_000)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_windows_match_an_independent_computation() {
    compare(
        WindowConfig::Sliding { size: secs(10) },
        events(2_000),
        |e, o| expected_sliding(e, o, 5_000, 10_000),
    )
    .await;
}

/// With `idle_timeout`, a partition that stops receiving records still
/// closes its windows as its event time moves on with the wall clock;
/// without it, the last window stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_partitions_close_their_windows_with_idle_timeout() {
    let setup = Setup::new(1);
    let options = GeneratorOptions {
        seed: 2,
        merchants: 1,
        step_ms: 10,
        jitter_ms: 0,
        late_every: 0,
        ..GeneratorOptions::default()
    };
    // 100 payments within the first second of one 2-second window.
    let events: Vec<(i32, Event)> = PaymentGenerator::new(options)
        .take(100)
        .map(|p| (0, Event::Payment(p)))
        .collect();
    publish(&setup.servers(), &setup.input, &events);
    for (idle, want) in [(None, 0), (Some(Duration::from_millis(300)), 1)] {
        let path = setup.write_config("0s", "");
        without_pseudonymise(&path);
        edit_config(&path, |c| {
            c.pipeline.window = Some(WindowConfig::Tumbling { size: secs(2) });
            c.pipeline.idle_timeout = idle;
            c.kafka.group_id = format!("g{want}-{}", c.kafka.group_id);
        });
        let loaded = streamfold::config::load(&path).unwrap();
        let shutdown = CancellationToken::new();
        let pipeline = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                streamfold::source::run(&loaded, Vec::new(), Metrics::new(), shutdown).await
            })
        };
        let (servers, topic) = (setup.servers(), setup.output.clone());
        let read = tokio::task::spawn_blocking(move || {
            read_until(&servers, &topic, Duration::from_secs(8), |r| !r.is_empty())
        })
        .await
        .unwrap();
        shutdown.cancel();
        pipeline.await.unwrap().unwrap();
        assert_eq!(read.len(), want, "idle config {idle:?}");
        if want == 1 {
            assert_eq!(decode_window(&read[0].payload).count, 100);
        }
    }
}

/// `group_by` with several fields: one window per combination, keyed by
/// the joined values, with each part in its own output column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_group_keys() {
    let setup = Setup::new(2);
    let events = events(3_000);
    let offsets = publish(&setup.servers(), &setup.input, &events);
    let key_of = |p: &streamfold::generate::Payment| format!("{}|{}", p.merchant_id, p.country);
    let expected = expected(&events, &offsets, 5_000, key_of);
    assert!(expected.windows.len() > 20);

    let path = setup.write_config("5s", "");
    without_pseudonymise(&path);
    edit_config(&path, |c| {
        c.pipeline.group_by = GroupBy::Many(vec!["merchant_id".into(), "country".into()]);
        c.pipeline.output_schema = None;
    });
    let loaded = streamfold::config::load(&path).unwrap();
    let schema = streamfold::pipeline::Plan::build(&loaded, Vec::new())
        .unwrap()
        .output_schema();
    let names: Vec<_> = schema.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names[..5],
        [
            "key",
            "window_start",
            "window_end",
            "merchant_id",
            "country"
        ]
    );
    let want = expected.windows.len();
    let read = run_until(
        &loaded,
        Metrics::new(),
        &setup.output.clone(),
        Duration::from_secs(60),
        move |r| r.len() >= want,
    )
    .await;

    let decoder = streamfold::codec::Decoder::new(schema, streamfold::config::Format::Avro);
    let mut got = BTreeMap::new();
    for r in &read {
        let rec = decoder.batch().unwrap().decode(Some(&r.payload)).unwrap();
        let key = rec.str(0).unwrap().to_string();
        assert_eq!(r.key.as_deref(), Some(key.as_str()));
        assert_eq!(
            format!("{}|{}", rec.str(3).unwrap(), rec.str(4).unwrap()),
            key
        );
        let count = rec.i64(5).unwrap();
        got.insert((key, rec.i64(1).unwrap()), count);
    }
    let want: BTreeMap<_, _> = expected
        .windows
        .iter()
        .map(|(k, w)| (k.clone(), w.count))
        .collect();
    assert_eq!(got, want);
}

/// Processing-time windows follow the wall clock: every record lands in a
/// window around the time it was processed, and windows close on their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processing_time_windows_follow_the_clock() {
    let setup = Setup::new(1);
    let options = GeneratorOptions {
        seed: 4,
        merchants: 1,
        ..GeneratorOptions::default()
    };
    let events: Vec<(i32, Event)> = PaymentGenerator::new(options)
        .take(300)
        .map(|p| (0, Event::Payment(p)))
        .collect();
    let path = setup.write_config("0s", "");
    without_pseudonymise(&path);
    edit_config(&path, |c| {
        c.pipeline.event_time_config = Some(EventTimeConfig::ProcessingTime);
        c.pipeline.window = Some(WindowConfig::Tumbling { size: secs(2) });
    });
    let loaded = streamfold::config::load(&path).unwrap();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let started = now();
    publish(&setup.servers(), &setup.input, &events);
    let read = run_until(
        &loaded,
        Metrics::new(),
        &setup.output.clone(),
        Duration::from_secs(20),
        move |r| {
            r.iter()
                .map(|r| decode_window(&r.payload).count)
                .sum::<i64>()
                >= 300
        },
    )
    .await;
    let rows: Vec<WindowRow> = read.iter().map(|r| decode_window(&r.payload)).collect();
    assert_eq!(rows.iter().map(|r| r.count).sum::<i64>(), 300, "{rows:?}");
    let finished = now();
    for r in &rows {
        assert!(
            r.end > started && r.start <= finished,
            "{r:?} outside [{started}, {finished}]"
        );
        assert_eq!(r.end - r.start, 2_000);
    }
}

/// `where` drops records before windowing; `derive` computes the group key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_filter_and_derived_group_key() {
    let setup = Setup::new(2);
    let events = events(3_000);
    let offsets = publish(&setup.servers(), &setup.input, &events);
    let (kept_events, kept_offsets): (Vec<_>, Vec<_>) = events
        .iter()
        .cloned()
        .zip(offsets.iter().cloned())
        .filter(|((_, e), _)| match e {
            Event::Payment(p) => p.currency != "JPY",
            Event::Poison(_) => true,
        })
        .unzip();
    let segment = |p: &streamfold::generate::Payment| {
        let big = euros(p).unwrap_or(0.0) > 1000.0;
        format!("{}-{}", p.merchant_id, if big { "big" } else { "small" })
    };
    let expected = expected(&kept_events, &kept_offsets, 5_000, segment);
    assert!(expected.windows.len() > 20);

    let path = setup.write_config("5s", "");
    without_pseudonymise(&path);
    edit_config(&path, |c| {
        let p = &mut c.pipeline;
        p.group_by = GroupBy::One("segment".into());
        p.filter = Some("currency != 'JPY'".into());
        p.derive = vec![DeriveConfig {
            name: "segment".into(),
            expr: "merchant_id + (amount_eur > 1000.0 ? '-big' : '-small')".into(),
        }];
    });
    let loaded = streamfold::config::load(&path).unwrap();
    let metrics = Metrics::new();
    let want = expected.windows.len();
    let read = run_until(
        &loaded,
        metrics.clone(),
        &setup.output.clone(),
        Duration::from_secs(60),
        move |r| r.len() >= want,
    )
    .await;
    assert_exactly(&read, &expected);
    let filtered = events.len() - kept_events.len();
    assert!(filtered > 100);
    assert_eq!(
        metrics.value(
            "streamfold_records_processed_total",
            &[("outcome", "filtered")]
        ),
        filtered as f64
    );
}

/// `emit = on-update`: updates of open windows as records arrive (header
/// `streamfold.emit: update`), then the final result, which equals the
/// on-close result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_update_emits_updates_then_the_final_result() {
    let setup = Setup::new(2);
    let events = events(3_000);
    let offsets = publish(&setup.servers(), &setup.input, &events);
    let expected = expected(&events, &offsets, 5_000, |p| p.merchant_id.clone());
    let path = setup.write_config("5s", "[batch]\nmax_records = 100\nmax_wait = \"5ms\"\n");
    without_pseudonymise(&path);
    edit_config(&path, |c| {
        c.pipeline.emit = EmitConfig::OnUpdate {
            min_interval: Duration::ZERO,
        };
    });
    let loaded = streamfold::config::load(&path).unwrap();
    let want = expected.windows.len();
    let read = run_until(
        &loaded,
        Metrics::new(),
        &setup.output.clone(),
        Duration::from_secs(60),
        move |r| {
            r.iter()
                .filter(|r| r.headers["streamfold.emit"] == "final")
                .count()
                >= want
        },
    )
    .await;
    let mut finals = BTreeMap::new();
    // (partition, offset, row) of each update, by window.
    type Emissions = Vec<(i32, i64, WindowRow)>;
    let mut updates: BTreeMap<(String, i64), Emissions> = BTreeMap::new();
    for r in &read {
        let row = decode_window(&r.payload);
        let k = (row.key.clone(), row.start);
        match r.headers["streamfold.emit"].as_str() {
            "final" => assert!(finals.insert(k, (r.partition, r.offset, row)).is_none()),
            "update" => updates
                .entry(k)
                .or_default()
                .push((r.partition, r.offset, row)),
            other => panic!("emit header {other:?}"),
        }
    }
    assert_eq!(finals.len(), want);
    for (k, want) in &expected.windows {
        assert!(same_window(&finals[k].2, want), "{k:?}");
    }
    assert!(
        updates.len() > want / 2,
        "few windows had updates: {}",
        updates.len()
    );
    for (k, ups) in &updates {
        let Some((partition, offset, fin)) = finals.get(k) else {
            // Still open (the closing records' own windows).
            assert!(
                !expected.windows.contains_key(k),
                "{k:?} has updates but no final"
            );
            continue;
        };
        for (p, o, u) in ups {
            assert_eq!(p, partition, "updates and final of a key share a partition");
            assert!(o < offset, "{k:?}: update after the final");
            assert!(
                u.count <= fin.count,
                "{k:?}: update {u:?} above final {fin:?}"
            );
        }
    }
}

/// With `repartition = true`, records whose producer did not key them by
/// the group key (here: spread round-robin over 3 partitions) are re-keyed
/// through the internal topic, and every window holds all records of its
/// merchant, whichever partition they came in on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repartition_groups_records_spread_over_partitions() {
    let setup = Setup::new(3);
    let options = GeneratorOptions {
        seed: 5,
        merchants: 5,
        step_ms: 40,
        jitter_ms: 8_000,
        late_every: 0,
        ..GeneratorOptions::default()
    };
    let mut events: Vec<(i32, Event)> = PaymentGenerator::new(options.clone())
        .take(3_000)
        .enumerate()
        .map(|(i, p)| ((i % 3) as i32, Event::Payment(p)))
        .collect();
    events.insert(100, (1, Event::Poison(b"not avro".to_vec())));
    // One record per merchant an hour later closes its windows once the
    // rest has gone through the internal topic.
    let closers: Vec<(i32, Event)> = (0..5)
        .map(|m| {
            let mut p = PaymentGenerator::new(options.clone()).next().unwrap();
            p.merchant_id = format!("m-{m}");
            p.event_time = options.start_ms + 3_000 * options.step_ms + 3_600_000;
            (m % 3, Event::Payment(p))
        })
        .collect();
    let mut offsets = publish(&setup.servers(), &setup.input, &events);
    // The expectation ignores partitions: every record of a merchant
    // counts, and the closers come after all of them.
    let merged: Vec<(i32, Event)> = events
        .iter()
        .chain(&closers)
        .map(|(_, e)| (0, e.clone()))
        .collect();
    offsets.extend(closers.iter().map(|_| (0, i64::MAX)));
    // Stage one forwards the input partitions side by side, so the
    // internal topic interleaves them: the lateness allowed covers the
    // whole stream (2 minutes of event time).
    let expected = expected(&merged, &offsets, 600_000, |p| p.merchant_id.clone());
    assert!(expected.late.is_empty());
    assert_eq!(expected.failed.len(), 1);

    let internal = format!("internal-{}", setup.input);
    setup.broker.create_topic(&internal, 3).unwrap();
    let path = setup.write_config("10m", "[batch]\nmax_records = 200\nmax_wait = \"10ms\"\n");
    without_pseudonymise(&path);
    edit_config(&path, |c| {
        c.pipeline.repartition = true;
        c.pipeline.repartition_topic = Some(internal.clone());
    });
    let loaded = streamfold::config::load(&path).unwrap();

    let shutdown = CancellationToken::new();
    let pipeline = {
        let (loaded, shutdown) = (loaded.clone(), shutdown.clone());
        tokio::spawn(async move {
            streamfold::source::run(&loaded, Vec::new(), Metrics::new(), shutdown).await
        })
    };
    let servers = setup.servers();
    let valid = events.len() - expected.failed.len();
    let (s, t) = (servers.clone(), internal.clone());
    let forwarded = tokio::task::spawn_blocking(move || {
        read_until(&s, &t, Duration::from_secs(60), |r| r.len() >= valid)
    })
    .await
    .unwrap();
    assert_eq!(
        forwarded.len(),
        valid,
        "every valid record is forwarded once"
    );
    for r in &forwarded {
        let key = r.key.clone().unwrap_or_default();
        assert!(key.starts_with("m-"), "keyed by merchant, found {key:?}");
    }
    publish(&servers, &setup.input, &closers);
    let want = expected.windows.len();
    let (s, t) = (servers.clone(), setup.output.clone());
    let read = tokio::task::spawn_blocking(move || {
        read_until(&s, &t, Duration::from_secs(60), |r| r.len() >= want)
    })
    .await
    .unwrap();
    let (s, t) = (servers.clone(), setup.dlq.clone());
    let dead = tokio::task::spawn_blocking(move || {
        read_until(&s, &t, Duration::from_secs(20), |r| !r.is_empty())
    })
    .await
    .unwrap();
    shutdown.cancel();
    pipeline.await.unwrap().expect("pipeline stops cleanly");

    assert_eq!(
        dead.len(),
        1,
        "the poison record is dead-lettered by the first stage"
    );
    assert_exactly(&read, &expected);
}
