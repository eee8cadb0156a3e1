//! Hostile input and faults, against a real nisshi broker with
//! `streamfold run` as a child process: one bad record, one bad timestamp
//! or one long broker outage never stops a pipeline, and a configuration
//! that cannot run stops it before it touches the broker.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use streamfold::generate::{GeneratorOptions, PaymentGenerator};

fn options(seed: u64) -> GeneratorOptions {
    GeneratorOptions {
        seed,
        merchants: 4,
        step_ms: 100,
        jitter_ms: 2_000,
        late_every: 0,
        ..GeneratorOptions::default()
    }
}

/// `n` payments from `from` on, each on partition `merchant % partitions`.
fn payments(o: &GeneratorOptions, from: usize, n: usize, partitions: i32) -> Vec<(i32, Event)> {
    PaymentGenerator::new(o.clone())
        .skip(from)
        .take(n)
        .map(|p| (merchant(&p) % partitions, Event::Payment(p)))
        .collect()
}

/// One payment per partition an hour after payment `n`, closing every
/// window before it.
fn closers(o: &GeneratorOptions, n: usize, partitions: i32) -> Vec<(i32, Event)> {
    (0..partitions)
        .map(|part| {
            let mut p = PaymentGenerator::new(o.clone()).next().unwrap();
            p.merchant_id = format!("m-{part}");
            p.event_time = o.start_ms + n as i64 * o.step_ms + 3_600_000;
            (part, Event::Payment(p))
        })
        .collect()
}

/// Reads the output until every expected window is there (or 60 s pass).
fn all_windows(setup: &Setup, expected: &Expected) -> Vec<WindowRow> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = windows(setup, usize::MAX, Duration::from_secs(1));
        let seen: BTreeSet<_> = rows.iter().map(|r| (r.key.clone(), r.start)).collect();
        if expected.windows.keys().all(|k| seen.contains(k)) || Instant::now() > deadline {
            return rows;
        }
    }
}

fn sigterm(run: &mut Run, setup: &Setup) {
    let exit = run.terminate();
    assert!(exit.success(), "SIGTERM exit: {exit:?}\n{}", logs(setup));
}

fn assert_running(run: &mut Run, setup: &Setup) {
    assert!(
        run.try_wait().unwrap().is_none(),
        "the pipeline exited\n{}",
        logs(setup)
    );
}

/// Regression: an undecodable value of a megabyte could not be written to
/// the dead-letter topic (value plus headers exceed the producer's message
/// size), and the pipeline stopped at it on every restart. Now it is
/// written cut to fit, the records around it are aggregated, and a value
/// in Schema Registry framing says that it looks like one.
#[test]
fn a_megabyte_undecodable_record_is_dead_lettered_cut_to_fit_and_the_records_around_it_count() {
    let setup = Setup::real(2);
    let o = options(21);
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8 | 0x80).collect();
    let mut events = payments(&o, 0, 1_000, 2);
    // A payment in Confluent's wire format: 0x00, schema id 42, the datum.
    let Event::Payment(p) = &events[600].1 else {
        unreachable!()
    };
    let framed = [&[0u8, 0, 0, 0, 42][..], &avro_payment(p)].concat();
    events.insert(300, (0, Event::Poison(big.clone())));
    events.insert(600, (1, Event::Poison(framed)));
    events.extend(closers(&o, 1_000, 2));
    let offsets = publish(&setup.servers(), &setup.input, &events);
    let expected = expected(&events, &offsets, 5_000, |p| p.merchant_id.clone());
    assert_eq!(expected.failed.len(), 2);

    let config = setup.write_config("5s", "");
    let mut run = start(&setup, &config, 0);
    let rows = all_windows(&setup, &expected);
    let dead = read_until(&setup.servers(), &setup.dlq, Duration::from_secs(20), |r| {
        r.len() >= 2
    });
    assert_running(&mut run, &setup);
    sigterm(&mut run, &setup);
    let repeated = assert_complete(&rows, &expected, || logs(&setup));
    assert_eq!(repeated, 0);

    assert_eq!(dead.len(), 2, "{dead:?}");
    let letter = dead
        .iter()
        .find(|r| r.headers.contains_key("streamfold.value.truncated"))
        .unwrap_or_else(|| panic!("no cut dead letter: {:?}", dead[0].headers));
    let (partition, offset) = expected.failed[0];
    let h = &letter.headers;
    assert_eq!(h["streamfold.error.stage"], "decode");
    assert_eq!(h["streamfold.source.partition"], partition.to_string());
    assert_eq!(h["streamfold.source.offset"], offset.to_string());
    assert_eq!(h["streamfold.value.size"], "1000000");
    assert_eq!(
        h["streamfold.value.blake3"],
        blake3_hex(&big),
        "the hash identifies the whole original value"
    );
    assert!(
        letter.payload.len() > 900_000 && big.starts_with(&letter.payload),
        "the value's start is kept: {} bytes",
        letter.payload.len()
    );
    let framed_letter = dead
        .iter()
        .find(|r| r.headers["streamfold.source.offset"] == expected.failed[1].1.to_string())
        .unwrap();
    assert!(
        framed_letter.headers["streamfold.error"].contains(
            "starts with byte 0x00 and schema id 42, and what follows decodes: it looks like \
             Schema Registry framing"
        ),
        "{:?}",
        framed_letter.headers
    );
}

/// A payment as the pipeline reads it: an Avro datum of payment.avsc.
fn avro_payment(p: &streamfold::generate::Payment) -> Vec<u8> {
    let text = std::fs::read_to_string(schema_dir().join("payment.avsc")).unwrap();
    let schema = apache_avro::Schema::parse_str(&text).unwrap();
    apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
        .build()
        .unwrap()
        .write_value_to_vec(p.to_avro_value())
        .unwrap()
}

fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Regression: a record dated in year 9999 moved its partition's
/// watermark, which the committed resume state keeps, so after a restart
/// every current record of that partition was dead-lettered as late.
/// Now it is a dead letter itself and the watermark never sees it.
#[test]
fn a_record_dated_far_ahead_is_dead_lettered_and_never_moves_the_watermark() {
    let setup = Setup::real(2);
    let o = options(22);
    let year_9999 = 253_370_764_800_000;
    let mut first = payments(&o, 0, 800, 2);
    let Event::Payment(mut far) = first[200].1.clone() else {
        unreachable!()
    };
    far.event_time = year_9999;
    let mut before_1970 = far.clone();
    before_1970.event_time = -1;
    first.insert(201, (first[200].0, Event::Payment(far)));
    first.insert(202, (first[200].0, Event::Payment(before_1970)));
    let mut offsets = publish(&setup.servers(), &setup.input, &first);
    let (far_at, old_at) = (offsets[201], offsets[202]);

    let config = setup.write_config("5s", "");
    let mut run = start(&setup, &config, 0);
    let dead = read_until(&setup.servers(), &setup.dlq, Duration::from_secs(30), |r| {
        r.len() >= 2
    });
    // Some windows closed by the records after it, then a graceful stop
    // commits the resume state.
    windows(&setup, 1, Duration::from_secs(30));
    sigterm(&mut run, &setup);
    assert_eq!(dead.len(), 2, "{dead:?}");
    let at = |o: (i32, i64)| {
        dead.iter()
            .find(|r| r.headers["streamfold.source.offset"] == o.1.to_string())
            .unwrap_or_else(|| panic!("offset {o:?} is not a dead letter: {dead:?}"))
    };
    let old = &at(old_at).headers;
    assert_eq!(old["streamfold.error.stage"], "extract");
    assert_eq!(
        old["streamfold.error"],
        "event time -1 ms is before the epoch (1970-01-01T00:00:00Z)"
    );
    let h = &at(far_at).headers;
    assert_eq!(h["streamfold.error.stage"], "extract");
    assert_eq!(h["streamfold.source.offset"], far_at.1.to_string());
    assert!(
        h["streamfold.error"].contains("event time 9999-01-01T00:00:00.000Z is ")
            && h["streamfold.error"].contains("ahead of the wall clock")
            && h["streamfold.error"].contains("pipeline.max_event_time_ahead allows 1h"),
        "{h:?}"
    );
    let group = format!("group-{}", setup.input);
    for point in resume_points(&setup.servers(), &group, &setup.input, 2) {
        assert!(
            point.max_event_time < o.start_ms + 86_400_000,
            "the watermark moved: {point:?}"
        );
    }
    let log = std::fs::read_to_string(setup.dir.join("run-0.log")).unwrap();
    assert_eq!(
        log.matches("partitions drained and committed").count(),
        1,
        "one drain at shutdown, not a second one on leaving the group:\n{log}"
    );

    // After a restart, current records still count.
    let second: Vec<_> = payments(&o, 800, 800, 2)
        .into_iter()
        .chain(closers(&o, 1_600, 2))
        .collect();
    offsets.extend(publish(&setup.servers(), &setup.input, &second));
    let mut events = first;
    // Dead letters, not payments.
    events[201].1 = Event::Poison(Vec::new());
    events[202].1 = Event::Poison(Vec::new());
    events.extend(second);
    let expected = expected(&events, &offsets, 5_000, |p| p.merchant_id.clone());
    assert!(expected.late.is_empty());
    let mut run = start(&setup, &config, 1);
    let rows = all_windows(&setup, &expected);
    assert_running(&mut run, &setup);
    sigterm(&mut run, &setup);
    assert_complete(&rows, &expected, || logs(&setup));
    // Dead letters repeat only as windows do (a replay from the commit):
    // whatever is there is one of the two.
    let dead = read_until(&setup.servers(), &setup.dlq, Duration::from_secs(2), |_| {
        false
    });
    for r in &dead {
        let offset = &r.headers["streamfold.source.offset"];
        assert!(
            [far_at.1.to_string(), old_at.1.to_string()].contains(offset),
            "nothing dead-lettered but the two records: {:?}",
            r.headers
        );
    }
}

/// Regression: a broker outage longer than the session timeout made the
/// process exit once the broker was back (`cannot read the resume state
/// ... BrokerTransportFailure`), with `/readyz` 200 all along. Now the
/// pipeline is unready during the outage, alive, and resumes afterwards
/// with every window present and identical.
#[test]
fn a_broker_outage_longer_than_the_session_timeout_is_waited_out() {
    let dir = std::env::temp_dir().join(format!("streamfold-outage-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    // SQLite storage: the broker's topics and commits survive its restart.
    let storage = "sqlite://nisshi.db";
    let (broker, port) = nisshi(&dir, storage, None, &[]);
    let mut broker = Killed(broker);
    let setup = Setup::on(Broker::Real(format!("127.0.0.1:{port}")), 2);
    let o = options(23);
    let first = payments(&o, 0, 1_000, 2);
    let mut offsets = publish(&setup.servers(), &setup.input, &first);

    let config = setup.write_config("5s", "");
    let admin = free_port();
    let addr = format!("127.0.0.1:{admin}");
    let mut run = start_with(&setup, &config, 0, &["--admin-addr", &addr]);
    windows(&setup, 1, Duration::from_secs(30));
    wait_for(&setup, "ready before the outage", || {
        get(admin, "/readyz").is_some_and(|(s, _)| s == 200)
    });

    broker.stop();
    let stopped = Instant::now();
    wait_for(&setup, "/readyz 503 while no broker is reachable", || {
        get(admin, "/readyz").is_some_and(|(s, body)| s == 503 && body.contains("cannot reach"))
    });
    // Longer than the session timeout (6 s): the group forgets the member.
    while stopped.elapsed() < Duration::from_secs(12) {
        assert_running(&mut run, &setup);
        let (status, _) = get(admin, "/healthz").expect("the admin endpoint answers");
        assert_eq!(status, 200, "alive while waiting for the broker");
        std::thread::sleep(Duration::from_millis(500));
    }
    let (again, _) = nisshi(&dir, storage, Some(port), &[]);
    broker.0 = again;

    let second: Vec<_> = payments(&o, 1_000, 1_000, 2)
        .into_iter()
        .chain(closers(&o, 2_000, 2))
        .collect();
    offsets.extend(publish(&setup.servers(), &setup.input, &second));
    let events: Vec<_> = first.into_iter().chain(second).collect();
    let expected = expected(&events, &offsets, 5_000, |p| p.merchant_id.clone());
    let rows = all_windows(&setup, &expected);
    assert_running(&mut run, &setup);
    wait_for(&setup, "ready again", || {
        get(admin, "/readyz").is_some_and(|(s, _)| s == 200)
    });
    let (_, metrics) = get(admin, "/metrics").unwrap();
    let reconnects: f64 = metrics
        .lines()
        .find(|l| l.starts_with("streamfold_broker_reconnects_total{"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    assert!(reconnects >= 1.0, "{metrics}");
    sigterm(&mut run, &setup);
    assert_complete(&rows, &expected, || logs(&setup));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The broker process, killed when dropped.
struct Killed(std::process::Child);

impl Killed {
    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_for(setup: &Setup, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within 30 s\n{}",
            logs(setup)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Regression: a missing output topic exited 1 (README: a refused
/// configuration exits 2), after `run` had already created the
/// `<group>-resume` topic and committed a probe marker.
#[test]
fn a_missing_output_topic_exits_2_before_anything_is_created_or_committed() {
    let setup = Setup::real(2);
    let config = setup.write_config("5s", "");
    let missing = format!("no-such-topic-{}", fastrand::u32(..));
    edit_config(&config, |c| c.pipeline.output_topic = missing.clone());
    let mut run = start(&setup, &config, 0);
    let status = run.exit_within(Duration::from_secs(30), &setup);
    let log = std::fs::read_to_string(setup.dir.join("run-0.log")).unwrap();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains(&format!("topic {missing:?} (output) does not exist")),
        "{log}"
    );

    let group = format!("group-{}", setup.input);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", setup.servers())
        .set("group.id", format!("{group}.metadata-probe"))
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    let resume = format!("{group}-resume");
    assert!(
        md.topics().iter().all(|t| t.name() != resume),
        "{resume} was created"
    );
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&setup.input, 0);
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        committed.find_partition(&setup.input, 0).unwrap().offset(),
        Offset::Invalid,
        "a probe marker was committed"
    );
}

/// Deletes `topic` on the real broker.
fn delete_topic(servers: &str, topic: &str) {
    let out = Command::new("nisshi")
        .args([
            "topic",
            "delete",
            topic,
            "--broker",
            &format!("tcp://{servers}"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The config of [`Setup::write_config`] with a producer that lets go of a
/// record for a topic that disappeared after 1 s (librdkafka waits 30 s),
/// and never creates one.
fn write_config_failing_fast(setup: &Setup) -> std::path::PathBuf {
    let config = setup.write_config("5s", "");
    edit_config(&config, |c| {
        let p = &mut c.kafka.producer_properties;
        p.insert("topic.metadata.propagation.max.ms".into(), "1000".into());
        p.insert("allow.auto.create.topics".into(), "false".into());
    });
    config
}

/// A partition that cannot go on fails the whole process, so that
/// Kubernetes restarts it: here the dead-letter topic is deleted while the
/// pipeline runs, so a dead letter cannot be delivered, which waiting does
/// not cure. The pipeline fails naming the partition, the record and the
/// cause, logs the reason once, and the process exits 1.
#[test]
fn a_partition_that_fails_fails_the_process_naming_it() {
    let setup = Setup::real(1);
    let o = options(24);
    let config = write_config_failing_fast(&setup);
    let first = payments(&o, 0, 200, 1);
    publish(&setup.servers(), &setup.input, &first);
    let mut run = start(&setup, &config, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(setup.dir.join("run-0.log"))
        .unwrap()
        .contains("partition assigned")
    {
        assert!(
            Instant::now() < deadline,
            "never assigned\n{}",
            logs(&setup)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    delete_topic(&setup.servers(), &setup.dlq);
    let poison = publish(
        &setup.servers(),
        &setup.input,
        &[(0, Event::Poison(b"not a payment".to_vec()))],
    );
    let status = run.exit_within(Duration::from_secs(30), &setup);
    let log = std::fs::read_to_string(setup.dir.join("run-0.log")).unwrap();
    assert_eq!(status.code(), Some(1), "{log}");
    let want = format!(
        "partition 0: dead letter for offset {} was not delivered",
        poison[0].1
    );
    assert!(log.contains(&want), "missing {want:?} in:\n{log}");
    assert_eq!(
        log.matches("pipeline failed").count(),
        1,
        "the reason is logged once:\n{log}"
    );
}

/// Regression: `/healthz` stayed 200 after a partition failed. Seen by a
/// library user: `run` returns the error naming the partition, and the
/// health the admin endpoint serves says the pipeline failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_partition_makes_healthz_fail() {
    let setup = Setup::real(1);
    let o = options(25);
    let config = write_config_failing_fast(&setup);
    without_pseudonymise(&config);
    let loaded = streamfold::config::load(&config).unwrap();
    publish(&setup.servers(), &setup.input, &payments(&o, 0, 200, 1));
    let metrics = streamfold::telemetry::Metrics::new();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let pipeline = {
        let (metrics, shutdown) = (metrics.clone(), shutdown.clone());
        tokio::spawn(async move {
            streamfold::source::run(&loaded, Vec::new(), metrics, shutdown).await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while metrics.health.ready().is_err() {
        assert!(!pipeline.is_finished(), "stopped: {:?}", pipeline.await);
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(metrics.health.live().is_ok());
    let (servers, input, dlq) = (setup.servers(), setup.input.clone(), setup.dlq.clone());
    tokio::task::spawn_blocking(move || {
        delete_topic(&servers, &dlq);
        publish(&servers, &input, &[(0, Event::Poison(b"x".to_vec()))]);
    })
    .await
    .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(30), pipeline)
        .await
        .expect("the pipeline stops by itself")
        .unwrap();
    let error = result.expect_err("the pipeline fails").to_string();
    assert!(
        error.contains("partition 0: dead letter for offset "),
        "{error}"
    );
    let live = metrics.health.live().expect_err("/healthz answers 503");
    assert!(
        live.contains("merchant-stats: failed: partition 0"),
        "{live}"
    );
}
