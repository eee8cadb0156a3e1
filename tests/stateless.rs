//! Stateless pipelines (no window): every record forwarded, transformed,
//! filtered or dead-lettered as defined, checked against an independent
//! computation; and after SIGKILLs mid-stream every input record's output
//! is there, each repeat identical.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use streamfold::config::{Format, OutputKey, SelectConfig};
use streamfold::generate::{GeneratorOptions, Payment, PaymentGenerator};

/// What the pipeline must write: output value by key (the payment id),
/// and how many records are dead letters.
struct Want {
    outputs: BTreeMap<String, serde_json::Value>,
    dead_letters: usize,
}

/// Payments over four partitions: every 50th of an unknown currency (the
/// conversion fails: a dead letter), every 97th not a payment at all.
fn payments(n: usize) -> (Vec<(i32, Event)>, Want) {
    let options = GeneratorOptions {
        seed: 31,
        merchants: 8,
        step_ms: 20,
        ..GeneratorOptions::default()
    };
    let mut events = Vec::new();
    let mut outputs = BTreeMap::new();
    let mut dead_letters = 0;
    for (i, mut p) in PaymentGenerator::new(options).take(n).enumerate() {
        let partition = merchant(&p) % 4;
        if i % 97 == 13 {
            events.push((partition, Event::Poison(b"not a payment".to_vec())));
            dead_letters += 1;
            continue;
        }
        if i % 50 == 7 {
            p.currency = "XXX".into();
        }
        match euros(&p) {
            None => dead_letters += 1,
            Some(_) if p.country == "GB" => {}
            Some(eur) => {
                outputs.insert(
                    p.payment_id.clone(),
                    serde_json::json!({
                        "payment_id": p.payment_id,
                        "eur": eur,
                        "country": p.country,
                        "event_time": p.event_time,
                    }),
                );
            }
        }
        events.push((partition, Event::Payment(p)));
    }
    (
        events,
        Want {
            outputs,
            dead_letters,
        },
    )
}

/// The test pipeline without a window: four fields (one renamed) of each
/// payment not from GB, as JSON, keyed by the payment id.
fn stateless_config(setup: &Setup) -> PathBuf {
    let config = setup.write_config("5s", "[batch]\nmax_records = 100\nmax_wait = \"10ms\"\n");
    edit_config(&config, |c| {
        let p = &mut c.pipeline;
        p.window = None;
        p.allowed_lateness = Duration::ZERO;
        p.group_by = Default::default();
        p.aggregates = Vec::new();
        p.output_schema = None;
        p.output_format = Format::Json;
        p.filter = Some("country != \"GB\"".into());
        p.select = vec![
            SelectConfig::Field("payment_id".into()),
            SelectConfig::Renamed {
                field: "amount_eur".into(),
                name: "eur".into(),
            },
            SelectConfig::Field("country".into()),
            SelectConfig::Field("event_time".into()),
        ];
        p.output_key = OutputKey::Field("payment_id".into());
        c.commit.interval = Duration::from_millis(300);
    });
    config
}

/// Every output record, as (key, value), checked to be what `want` says
/// for its key; returns how many keys were written more than once (each
/// time identical).
fn check_outputs(read: &[Read], want: &Want) -> usize {
    let mut seen: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for r in read {
        let key = r.key.clone().expect("every output record is keyed");
        let value: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        assert_eq!(
            r.timestamp,
            value["event_time"].as_i64(),
            "{key}: the record's timestamp is its event time"
        );
        seen.entry(key).or_default().push(value);
    }
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        want.outputs.keys().collect::<Vec<_>>(),
        "the records written are not those the filter keeps"
    );
    let mut repeated = 0;
    for (key, values) in &seen {
        let expected = &want.outputs[key];
        for v in values {
            assert_eq!(v, &values[0], "{key}: a repeat differs");
        }
        let v = &values[0];
        for field in ["payment_id", "country", "event_time"] {
            assert_eq!(v[field], expected[field], "{key}: {field}");
        }
        let (got, exp) = (
            v["eur"].as_f64().unwrap(),
            expected["eur"].as_f64().unwrap(),
        );
        assert!(
            (got - exp).abs() <= 1e-9 * exp.abs().max(1.0),
            "{key}: eur {got} vs {exp}"
        );
        assert_eq!(
            v.as_object().unwrap().len(),
            4,
            "{key}: only the selected fields"
        );
        repeated += values.len() - 1;
    }
    repeated
}

/// The output, read until it holds as many records as `want` has keys
/// (or a minute passes).
fn read_outputs(setup: &Setup, want: &Want) -> Vec<Read> {
    read_until(
        &setup.servers(),
        &setup.output,
        Duration::from_secs(60),
        |r| r.len() >= want.outputs.len(),
    )
}

#[test]
fn a_stateless_pipeline_writes_filters_and_dead_letters_each_record_as_defined() {
    let setup = Setup::new(4);
    let (events, want) = payments(3_000);
    assert!(want.outputs.len() > 1_000 && want.dead_letters > 50);
    publish(&setup.servers(), &setup.input, &events);
    let config = stateless_config(&setup);

    let schema = std::process::Command::new(env!("CARGO_BIN_EXE_streamfold"))
        .args(["schema", "--config"])
        .arg(&config)
        .env("STREAMFOLD_PSEUDONYM_KEY", PSEUDONYM_KEY)
        .output()
        .unwrap();
    let schema: serde_json::Value = serde_json::from_slice(&schema.stdout).unwrap();
    let fields: Vec<(&str, &serde_json::Value)> = schema["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), &f["type"]))
        .collect();
    assert_eq!(
        fields,
        [
            ("payment_id", &serde_json::json!("string")),
            ("eur", &serde_json::json!("double")),
            ("country", &serde_json::json!("string")),
            (
                "event_time",
                &serde_json::json!({"type": "long", "logicalType": "timestamp-millis"})
            ),
        ],
        "streamfold schema prints the selected fields"
    );

    let mut child = start(&setup, &config, 0);
    let read = read_outputs(&setup, &want);
    let letters = read_until(&setup.servers(), &setup.dlq, Duration::from_secs(30), |r| {
        r.len() >= want.dead_letters
    });
    assert!(child.terminate().success(), "{}", logs(&setup));
    assert_eq!(check_outputs(&read, &want), 0, "no restart, no repeat");
    assert_eq!(letters.len(), want.dead_letters, "{}", logs(&setup));
    let stages: std::collections::BTreeSet<&str> = letters
        .iter()
        .map(|l| l.headers["streamfold.error.stage"].as_str())
        .collect();
    assert_eq!(stages, ["decode", "transform"].into_iter().collect());
}

/// SIGKILLed three times mid-stream and restarted: every record the
/// filter keeps is in the output, each one written more than once
/// identically.
#[test]
fn sigkill_mid_stream_loses_no_record_of_a_stateless_pipeline() {
    let setup = Setup::new(4);
    let (events, want) = payments(10_000);
    publish(&setup.servers(), &setup.input, &events);
    let config = stateless_config(&setup);
    let mut seen = 0;
    for run in 0..3 {
        let mut child = start(&setup, &config, run);
        wait_for_new_output(&setup, seen, run);
        std::thread::sleep(Duration::from_millis(fastrand::u64(0..800)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        seen = read_all(&setup, &setup.output).len();
    }
    let mut child = start(&setup, &config, 3);
    let read = read_until(
        &setup.servers(),
        &setup.output,
        Duration::from_secs(90),
        |r| {
            let keys: std::collections::BTreeSet<&str> =
                r.iter().filter_map(|x| x.key.as_deref()).collect();
            keys.len() >= want.outputs.len()
        },
    );
    assert!(child.terminate().success(), "{}", logs(&setup));
    let last = std::fs::read_to_string(setup.dir.join("run-3.log")).unwrap();
    assert!(last.contains("resume=Some(CommitPoint"), "{last}");
    let repeated = check_outputs(&read, &want);
    eprintln!(
        "{} records written, {repeated} of them more than once (identical), across 4 runs",
        want.outputs.len()
    );
}

/// Commits `offsets` (partition, offset) for the pipeline's group with no
/// metadata, as another tool of the group's would.
fn commit_plain(setup: &Setup, offsets: &[(i32, i64)]) {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", setup.servers())
        .set("group.id", format!("group-{}", setup.input))
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for &(p, o) in offsets {
        tpl.add_partition_offset(&setup.input, p, rdkafka::Offset::Offset(o))
            .unwrap();
    }
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
}

/// A partition whose committed offset carries no streamfold metadata
/// starts at that offset; one without a committed offset at the earliest
/// record (`auto_offset_reset`'s default).
#[test]
fn a_partition_starts_at_its_committed_offset_or_else_at_the_earliest_record() {
    let setup = Setup::new(4);
    let (events, mut want) = payments(1_200);
    let at = publish(&setup.servers(), &setup.input, &events);
    // Partitions 0 and 1: committed halfway through their records.
    let mut cut = BTreeMap::new();
    for p in 0..2 {
        let offsets: Vec<i64> = at.iter().filter(|(q, _)| *q == p).map(|x| x.1).collect();
        cut.insert(p, offsets[offsets.len() / 2]);
    }
    commit_plain(
        &setup,
        &cut.iter().map(|(&p, &o)| (p, o)).collect::<Vec<_>>(),
    );
    for ((_, e), (p, offset)) in events.iter().zip(&at) {
        if let (Event::Payment(pay), Some(&c)) = (e, cut.get(p))
            && *offset < c
        {
            want.outputs.remove(&pay.payment_id);
        }
    }
    assert!(want.outputs.len() > 300);
    let config = stateless_config(&setup);
    let mut child = start(&setup, &config, 0);
    let read = read_outputs(&setup, &want);
    assert!(child.terminate().success(), "{}", logs(&setup));
    assert_eq!(check_outputs(&read, &want), 0, "no restart, no repeat");
}

/// With `auto_offset_reset = "latest"`, a group without committed offsets
/// reads only what is written after it was assigned its partitions.
#[test]
fn with_latest_a_new_group_reads_only_records_written_after_its_assignment() {
    let setup = Setup::new(4);
    let (before, _) = payments(400);
    publish(&setup.servers(), &setup.input, &before);
    let config = stateless_config(&setup);
    edit_config(&config, |c| {
        c.kafka.auto_offset_reset = streamfold::config::OffsetReset::Latest;
    });
    let mut child = start(&setup, &config, 0);
    let limit = Duration::from_secs(60);
    let deadline = std::time::Instant::now() + limit;
    while run_log(&setup, 0).matches("partition assigned").count() < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "not assigned within {limit:?}\n{}",
            logs(&setup)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Payments of another seed (other ids) that the filter keeps, one a
    // partition a round, until records of every partition are out: the
    // first rounds may land before the consumer found the partitions' ends.
    let after: Vec<Payment> = PaymentGenerator::new(GeneratorOptions {
        seed: 32,
        merchants: 8,
        step_ms: 20,
        ..GeneratorOptions::default()
    })
    .filter(|p| p.country != "GB" && euros(p).is_some())
    .take(400)
    .collect();
    let mut sent = 0;
    let read = loop {
        assert!(
            std::time::Instant::now() < deadline && sent + 4 <= after.len(),
            "no output from every partition\n{}",
            logs(&setup)
        );
        let round: Vec<(i32, Event)> = (0..4)
            .map(|p| (p, Event::Payment(after[sent + p as usize].clone())))
            .collect();
        sent += 4;
        publish(&setup.servers(), &setup.input, &round);
        std::thread::sleep(Duration::from_millis(100));
        let read = read_all(&setup, &setup.output);
        let ids: std::collections::BTreeSet<String> =
            read.iter().filter_map(|r| r.key.clone()).collect();
        let partitions: std::collections::BTreeSet<i32> = after[..sent]
            .iter()
            .enumerate()
            .filter(|(_, p)| ids.contains(&p.payment_id))
            .map(|(i, _)| (i % 4) as i32)
            .collect();
        if partitions.len() == 4 {
            break read;
        }
    };
    assert!(child.terminate().success(), "{}", logs(&setup));
    let before: std::collections::BTreeSet<&str> = before
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Payment(p) => Some(p.payment_id.as_str()),
            Event::Poison(_) => None,
        })
        .collect();
    for r in &read {
        let key = r.key.as_deref().unwrap();
        assert!(
            !before.contains(key),
            "{key} was written before the assignment"
        );
        assert!(key.starts_with("p-32-"), "{key}");
    }
}
