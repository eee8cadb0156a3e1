//! The partition driver with no broker: it runs the windowed aggregation
//! and the repartition forwarder over records handed to it, writing
//! through a [`MemorySink`], and publishes commit points that wait for the
//! acknowledgements the at-least-once contract needs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{CheckpointSettings, DrainRequest, Env, PartitionError, PartitionTask};
use crate::checkpoint::{Assembler, Checkpoint};
use crate::config::{AggregateConfig, AggregateFn, LatePolicy, WindowConfig};
use crate::offsets::{CommitBoard, CommitPoint};
use crate::operator::{Operator, Repartition, Windowed};
use crate::pipeline::Plan;
use crate::pipeline::clickstream_plan;
use crate::record::{RawBatch, RawRecord, Stage};
use crate::sink::{MemorySink, Output, Sink};
use crate::telemetry::Metrics;
use crate::window::NO_TIME;

const SECOND: i64 = 1_000;

/// The clickstream example as typed configuration, changed to read JSON
/// clicks into 10-second tumbling windows counted per user.
fn plan(change: impl FnOnce(&mut crate::config::PipelineConfig)) -> Arc<Plan> {
    clickstream_plan(|p| {
        p.window = Some(WindowConfig::Tumbling {
            size: Duration::from_secs(10),
        });
        p.allowed_lateness = Duration::ZERO;
        p.aggregates = vec![AggregateConfig {
            name: Some("clicks".into()),
            function: AggregateFn::Count,
            field: None,
            quantiles: None,
            relative_error: None,
            precision: None,
            exact: None,
            k: None,
            value: None,
        }];
        change(p);
    })
}

fn click(offset: i64, user: &str, event_time: i64) -> RawRecord {
    let json = format!(
        r#"{{"event_id":"e{offset}","user_id":"{user}","page":"/","dwell_ms":1,"event_time":{event_time}}}"#
    );
    RawRecord {
        offset,
        timestamp: Some(event_time),
        key: Some(Bytes::from(user.to_string())),
        payload: Some(Bytes::from(json)),
        schema_header: None,
        window_partition: None,
    }
}

fn poison(offset: i64) -> RawRecord {
    RawRecord {
        offset,
        timestamp: None,
        key: None,
        payload: Some(Bytes::from_static(b"not json")),
        schema_header: None,
        window_partition: None,
    }
}

/// A running partition task and what it writes to.
struct Harness {
    sink: Arc<MemorySink>,
    env: Arc<Env>,
    tx: Option<mpsc::Sender<RawBatch>>,
    drain: Option<oneshot::Sender<DrainRequest>>,
    task: tokio::task::JoinHandle<Result<(), PartitionError>>,
}

const PARTITION: i32 = 3;

impl Harness {
    fn start<O: Operator>(sink: MemorySink, operator: O, resume: Option<CommitPoint>) -> Self {
        Self::start_with(sink, operator, resume, |_| {}, None)
    }

    /// A task in surroundings changed by `env` (checkpoints, a registry),
    /// restored from `checkpoint`.
    fn start_with<O: Operator>(
        sink: MemorySink,
        operator: O,
        resume: Option<CommitPoint>,
        env: impl FnOnce(&mut Env),
        checkpoint: Option<&Checkpoint>,
    ) -> Self {
        let sink = Arc::new(sink);
        let mut surroundings = Env {
            pipeline: "test".into(),
            topic: "clicks".into(),
            sink: Arc::clone(&sink) as Arc<dyn Sink>,
            board: CommitBoard::default(),
            metrics: Metrics::new().pipeline("test"),
            max_in_flight: 2,
            max_pending_outputs: 1_000,
            idle_timeout: None,
            cancel: CancellationToken::new(),
            checkpoints: None,
            schemas: None,
        };
        env(&mut surroundings);
        let env = Arc::new(surroundings);
        let (tx, rx) = mpsc::channel(4);
        let (drain, drain_rx) = oneshot::channel();
        let mut task = PartitionTask::new(PARTITION, Arc::clone(&env), operator, resume);
        if let Some(c) = checkpoint {
            task.restore(c).expect("the checkpoint restores");
        }
        if let Some(point) = resume {
            env.board.publish(PARTITION, point);
            env.board.mark_committed(PARTITION, point);
        }
        let task = tokio::spawn(task.run(rx, drain_rx));
        Self {
            sink,
            env,
            tx: Some(tx),
            drain: Some(drain),
            task,
        }
    }

    fn windowed(sink: MemorySink) -> Self {
        Self::start(sink, Windowed::new(plan(|_| {}), NO_TIME), None)
    }

    async fn send(&self, records: Vec<RawRecord>) {
        self.tx
            .as_ref()
            .unwrap()
            .send(records.into())
            .await
            .unwrap();
    }

    /// Waits until `cond` holds of what was written (10 s at most).
    async fn until(&self, what: &str, cond: impl Fn(&[crate::sink::Written]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond(&self.sink.written()) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; written: {:#?}",
                self.sink.written()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until the published commit point satisfies `cond`.
    async fn commit_point(&self, what: &str, cond: impl Fn(CommitPoint) -> bool) -> CommitPoint {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(p) = self.env.board.get(PARTITION)
                && cond(p)
            {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for a commit point {what}; last: {:?}",
                self.env.board.get(PARTITION)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Commits what the task publishes, as the consumer does, until the
    /// committed point satisfies `cond`.
    async fn committed(&self, what: &str, cond: impl Fn(CommitPoint) -> bool) -> CommitPoint {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for (p, point) in self.env.board.uncommitted(None) {
                self.env.board.mark_committed(p, point);
                if cond(point) {
                    return point;
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for a commit {what}; last: {:?}",
                self.env.board.get(PARTITION)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Drains the task and returns its result.
    async fn drain(mut self) -> Result<(), PartitionError> {
        let (done, done_rx) = std::sync::mpsc::channel();
        let req = DrainRequest {
            deadline: Instant::now() + Duration::from_secs(5),
            done,
        };
        self.drain.take().unwrap().send(req).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the task ends after a drain")
            .expect("the task does not panic");
        assert_eq!(done_rx.try_recv(), Ok(PARTITION), "the drain is signalled");
        result
    }
}

fn finals(written: &[crate::sink::Written]) -> Vec<(String, i64, i64)> {
    written
        .iter()
        .filter_map(|w| match &w.output {
            Output::Final(e) => Some((e.window.key.clone(), e.window.start, e.window.end)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn closed_windows_are_written_and_the_commit_waits_for_their_acknowledgement() {
    let h = Harness::windowed(MemorySink::holding(1_000));
    h.send(vec![
        click(0, "ada", SECOND),
        click(1, "bob", 2 * SECOND),
        poison(2),
        click(3, "ada", 3 * SECOND),
    ])
    .await;
    // Closes [0 s, 10 s) for both users; opens [20 s, 30 s).
    h.send(vec![click(4, "cy", 25 * SECOND)]).await;
    h.until("two window results and a dead letter", |w| {
        finals(w).len() == 2
            && w.iter()
                .any(|w| matches!(w.output, Output::DeadLetter { .. }))
    })
    .await;
    let written = h.sink.written();
    assert_eq!(
        finals(&written),
        vec![("ada".into(), 0, 10_000), ("bob".into(), 0, 10_000)],
        "each closed window once, in key order"
    );
    let count = |key: &str| {
        written.iter().find_map(|w| match &w.output {
            Output::Final(e) if e.window.key == key => {
                Some(String::from_utf8_lossy(&e.payload).into_owned())
            }
            _ => None,
        })
    };
    assert!(
        count("ada").unwrap().contains(r#""clicks":2"#),
        "{:?}",
        count("ada")
    );
    assert!(
        count("bob").unwrap().contains(r#""clicks":1"#),
        "{:?}",
        count("bob")
    );
    let Some(Output::DeadLetter {
        record,
        stage,
        reason,
    }) = written
        .iter()
        .map(|w| &w.output)
        .find(|o| matches!(o, Output::DeadLetter { .. }))
    else {
        unreachable!()
    };
    assert_eq!((record.offset, *stage), (2, Stage::Decode), "{reason}");

    // Nothing acknowledged: a restart must read every record again.
    let held = h
        .commit_point("while nothing is acknowledged", |_| true)
        .await;
    assert_eq!(held.offset, 0, "{held:?}");
    h.sink.acknowledge();
    // Acknowledged: only the open window [20 s, 30 s) is left to rebuild.
    let point = h
        .commit_point("past the acknowledged windows", |p| p.offset == 4)
        .await;
    assert!(
        point.settled >= 10 * SECOND,
        "[0 s, 10 s) is settled: {point:?}"
    );
    assert_eq!(point.max_event_time, 3 * SECOND, "{point:?}");
    h.drain().await.unwrap();
}

#[tokio::test]
async fn a_window_the_broker_refuses_fails_the_partition_naming_it() {
    let sink = MemorySink::new();
    sink.fail_next(KafkaError::MessageProduction(
        RDKafkaErrorCode::TopicAuthorizationFailed,
    ));
    let h = Harness::windowed(sink);
    h.send(vec![click(0, "ada", SECOND), click(1, "ada", 15 * SECOND)])
        .await;
    let result = tokio::time::timeout(Duration::from_secs(10), h.task)
        .await
        .expect("the task stops")
        .unwrap();
    let e = result.expect_err("a refused window result is fatal");
    assert!(
        matches!(
            e,
            PartitionError::Delivery {
                partition: PARTITION,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "partition 3: window [0, 10000) was not delivered: Message production error: \
         TopicAuthorizationFailed (Broker: Topic authorization failed)"
    );
    // Nothing was committed past the refused window.
    assert!(h.env.board.get(PARTITION).is_none_or(|p| p.offset == 0));
}

#[tokio::test]
async fn a_dead_letter_refused_for_a_passing_reason_is_written_again() {
    let sink = MemorySink::new();
    sink.fail_next(KafkaError::MessageProduction(
        RDKafkaErrorCode::RequestTimedOut,
    ));
    let h = Harness::windowed(sink);
    h.send(vec![poison(0), click(1, "ada", SECOND)]).await;
    h.until("the dead letter written twice", |w| {
        w.iter()
            .filter(
                |w| matches!(&w.output, Output::DeadLetter { record, .. } if record.offset == 0),
            )
            .count()
            == 2
    })
    .await;
    // Acknowledged the second time: the commit passes it.
    h.commit_point("past the dead letter", |p| p.offset == 1)
        .await;
    h.drain().await.unwrap();
}

#[tokio::test]
async fn a_full_sink_holds_outputs_back_until_acknowledgements_come() {
    // Room for one unacknowledged record: the second window result waits.
    let h = Harness::windowed(MemorySink::holding(1));
    h.send(vec![
        click(0, "ada", SECOND),
        click(1, "bob", SECOND),
        click(2, "cy", 15 * SECOND),
    ])
    .await;
    h.until("the first window result", |w| finals(w).len() == 1)
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(finals(&h.sink.written()).len(), 1, "the queue is full");
    h.sink.acknowledge();
    h.until("the second window result", |w| finals(w).len() == 2)
        .await;
    h.sink.acknowledge();
    h.commit_point("past both windows", |p| p.offset == 2).await;
    h.drain().await.unwrap();
}

#[tokio::test]
async fn late_records_are_written_as_late_and_dropped_when_the_policy_says_so() {
    for (policy, written) in [(LatePolicy::DeadLetter, 1), (LatePolicy::Drop, 0)] {
        let plan = plan(|p| p.late_records = policy);
        let h = Harness::start(MemorySink::new(), Windowed::new(plan, NO_TIME), None);
        h.send(vec![click(0, "ada", 15 * SECOND), click(1, "ada", SECOND)])
            .await;
        // The open window [10 s, 20 s) holds the commit at its first record.
        h.commit_point("once the batch is folded", |p| p.offset == 0)
            .await;
        let h_sink = Arc::clone(&h.sink);
        h.drain().await.unwrap();
        let late: Vec<_> = h_sink
            .written()
            .into_iter()
            .filter_map(|w| match w.output {
                Output::Late { record, reason } => Some((record.offset, reason)),
                _ => None,
            })
            .collect();
        assert_eq!(late.len(), written, "{policy:?}: {late:?}");
        if let Some((offset, reason)) = late.first() {
            assert_eq!(*offset, 1);
            assert_eq!(
                reason,
                "late: its window had already been emitted (watermark 1970-01-01T00:00:15.000Z)"
            );
        }
    }
}

#[tokio::test]
async fn the_repartition_operator_forwards_each_record_under_its_group_key() {
    let h = Harness::start(MemorySink::new(), Repartition::new(plan(|_| {})), None);
    h.send(vec![
        click(0, "ada", SECOND),
        poison(1),
        click(2, "bob", SECOND),
    ])
    .await;
    h.commit_point("past every record", |p| p.offset == 3).await;
    let sink = Arc::clone(&h.sink);
    h.drain().await.unwrap();
    let outputs: Vec<(i64, String)> = sink
        .written()
        .into_iter()
        .map(|w| match w.output {
            Output::Forward { record, key } => (record.offset, key),
            Output::DeadLetter { record, stage, .. } => (record.offset, format!("{stage:?}")),
            other => panic!("a forwarder writes no {other:?}"),
        })
        .collect();
    assert_eq!(
        outputs,
        vec![(1, "Decode".into()), (0, "ada".into()), (2, "bob".into())],
        "dead letters first, then forwards in offset order"
    );
}

#[tokio::test]
async fn a_restart_from_a_commit_point_skips_windows_already_settled() {
    // The first run emitted and settled [0 s, 10 s); it committed offset 2
    // with a settled bound at its end.
    let resume = CommitPoint {
        offset: 2,
        max_event_time: 3 * SECOND,
        settled: 10 * SECOND,
        checkpoint: None,
    };
    let operator = Windowed::new(plan(|_| {}), resume.max_event_time);
    let h = Harness::start(MemorySink::new(), operator, Some(resume));
    h.send(vec![
        click(2, "ada", 4 * SECOND),
        click(3, "ada", 25 * SECOND),
    ])
    .await;
    h.commit_point("past the replayed record", |p| p.offset == 3)
        .await;
    let sink = Arc::clone(&h.sink);
    h.drain().await.unwrap();
    let written = sink.written();
    assert!(finals(&written).is_empty(), "{written:#?}");
    assert!(
        written
            .iter()
            .all(|w| !matches!(w.output, Output::Late { .. })),
        "a replayed record of a settled window is not late: {written:#?}"
    );
}

/// The final results a task wrote, with their payloads.
fn finals_with_values(sink: &MemorySink) -> Vec<(String, i64, String)> {
    sink.written()
        .into_iter()
        .filter_map(|w| match w.output {
            Output::Final(e) => Some((
                e.window.key,
                e.window.start,
                String::from_utf8_lossy(&e.payload).into_owned(),
            )),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn with_checkpoints_the_commit_passes_open_windows_and_a_restore_goes_on_identically() {
    let plan = plan(|_| {});
    let settings = CheckpointSettings {
        interval: Duration::from_millis(20),
        plan: plan.fingerprint.clone(),
        scope: "test/clicks".into(),
    };
    // [0 s, 10 s) closes at 12 s; [10 s, 20 s) stays open, from offset 2.
    let first = vec![
        click(0, "ada", SECOND),
        click(1, "bob", 2 * SECOND),
        click(2, "ada", 12 * SECOND),
        click(3, "cy", 13 * SECOND),
    ];
    let closer = click(4, "ada", 25 * SECOND);

    let h = Harness::start_with(
        MemorySink::new(),
        Windowed::new(Arc::clone(&plan), NO_TIME),
        None,
        |e| e.checkpoints = Some(settings.clone()),
        None,
    );
    h.send(first.clone()).await;
    let point = h.committed("past the open window", |p| p.offset == 4).await;
    let seq = point.checkpoint.expect("the commit names its checkpoint");
    assert_eq!(point.max_event_time, 13 * SECOND);
    let sink = Arc::clone(&h.sink);
    h.drain().await.unwrap();
    let mut found = Assembler::new("test/clicks");
    for (p, chunk) in sink.checkpoints() {
        assert_eq!(p, PARTITION);
        found.add(chunk.key.as_bytes(), Some(&chunk.value));
    }
    let bytes = found
        .complete(PARTITION)
        .into_iter()
        .find(|(s, _)| *s == seq)
        .expect("the committed checkpoint is whole")
        .1;
    let checkpoint = Checkpoint::decode(&bytes).unwrap();
    assert_eq!((checkpoint.offset, checkpoint.seq), (4, seq));

    // A restart from it reads only what follows offset 4.
    let again = Harness::start_with(
        MemorySink::new(),
        Windowed::new(Arc::clone(&plan), point.max_event_time),
        Some(point),
        |e| e.checkpoints = Some(settings),
        Some(&checkpoint),
    );
    again.send(vec![closer.clone()]).await;
    again
        .until("the open windows closed", |w| finals(w).len() == 2)
        .await;
    let restored = finals_with_values(&again.sink);
    again.drain().await.unwrap();

    // One pass over every record, without checkpoints.
    let one = Harness::windowed(MemorySink::new());
    let mut all = first;
    all.push(closer);
    one.send(all).await;
    one.until("every window closed", |w| finals(w).len() == 4)
        .await;
    let one_pass = finals_with_values(&one.sink);
    one.drain().await.unwrap();
    assert_eq!(
        restored,
        one_pass[2..],
        "the windows open at the checkpoint, byte for byte"
    );
    assert_eq!(restored[0].0, "ada");
    assert!(restored[0].2.contains(r#""clicks":1"#), "{restored:?}");
}

/// A pipeline without a window writes each record's selected fields,
/// renamed and keyed as configured, in offset order; a record that does
/// not decode is a dead letter, one the filter drops writes nothing, and
/// the commit point passes every record once its output is acknowledged.
#[tokio::test]
async fn the_stateless_operator_writes_each_record_s_selected_fields() {
    use crate::config::{OutputKey, SelectConfig};
    use crate::operator::Stateless;
    let plan = clickstream_plan(|p| {
        p.window = None;
        p.group_by = Default::default();
        p.aggregates = Vec::new();
        p.allowed_lateness = Duration::ZERO;
        p.late_records = LatePolicy::DeadLetter;
        p.filter = Some("page != \"/skip\"".into());
        p.select = vec![
            SelectConfig::Field("user_id".into()),
            SelectConfig::Renamed {
                field: "dwell_ms".into(),
                name: "dwell".into(),
            },
        ];
        p.output_key = OutputKey::Field("event_id".into());
    });
    let sink = MemorySink::holding(100);
    let h = Harness::start(sink, Stateless::new(plan, NO_TIME), None);
    let mut skipped = click(3, "cy", 4 * SECOND);
    skipped.payload = Some(Bytes::from(
        r#"{"event_id":"e3","user_id":"cy","page":"/skip","dwell_ms":1,"event_time":4000}"#,
    ));
    h.send(vec![
        click(0, "ada", SECOND),
        poison(1),
        click(2, "bob", 2 * SECOND),
        skipped,
    ])
    .await;
    // Nothing acknowledged yet: the commit point stays at the start.
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.sink.written().len() < 3 {
        assert!(Instant::now() < deadline, "{:?}", h.sink.written());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(h.env.board.get(PARTITION).is_none_or(|p| p.offset == 0));
    h.sink.acknowledge();
    h.commit_point("past every record", |p| p.offset == 4).await;
    let sink = Arc::clone(&h.sink);
    h.drain().await.unwrap();
    let outputs: Vec<(i64, Option<String>, String, Option<i64>)> = sink
        .written()
        .into_iter()
        .map(|w| match w.output {
            Output::Record {
                offset,
                key,
                value,
                timestamp,
            } => (
                offset,
                key.map(|k| String::from_utf8(k).unwrap()),
                String::from_utf8(value).unwrap(),
                timestamp,
            ),
            Output::DeadLetter { record, stage, .. } => {
                (record.offset, None, format!("{stage:?}"), None)
            }
            other => panic!("a stateless pipeline writes no {other:?}"),
        })
        .collect();
    assert_eq!(
        outputs,
        vec![
            (1, None, "Decode".into(), None),
            (
                0,
                Some("e0".into()),
                r#"{"dwell":1,"user_id":"ada"}"#.into(),
                Some(SECOND)
            ),
            (
                2,
                Some("e2".into()),
                r#"{"dwell":1,"user_id":"bob"}"#.into(),
                Some(2 * SECOND)
            ),
        ]
    );
}

/// A click framed as the Schema Registry's serializers frame it, naming
/// schema id `id`.
fn framed_click(offset: i64, user: &str, event_time: i64, id: u32) -> RawRecord {
    let mut r = click(offset, user, event_time);
    let mut value = Vec::new();
    crate::codec::frame_id(id, &mut value);
    value.extend_from_slice(r.payload.as_deref().unwrap_or_default());
    r.payload = Some(Bytes::from(value));
    r
}

/// A revoke while the registry is unreachable: the drain does not wait
/// for the registry. The batch waiting for a schema is dropped (its
/// records are past the commit point, for the partition's next owner)
/// and what came before is committed.
#[tokio::test]
async fn a_drain_while_the_registry_is_unreachable_does_not_wait_for_it() {
    use crate::codec::{SchemaKind, SchemaRef};
    use crate::config::Framing;
    use crate::operator::Stateless;
    use crate::registry::{Auth, Registry};

    let plan = clickstream_plan(|p| {
        p.input_framing = Framing::SchemaRegistry;
        p.window = None;
        p.group_by = Default::default();
        p.aggregates = Vec::new();
        p.allowed_lateness = Duration::ZERO;
        p.late_records = LatePolicy::DeadLetter;
    });
    let writers = Arc::clone(plan.decoder.writers().expect("registry-framed"));
    // Schema 1 is known; schema 2 is not, and the registry (a port
    // nobody listens on) cannot be asked for it.
    writers.learn(SchemaRef::Id(1), Ok((SchemaKind::Json, "{}".into())));
    let registry = Registry::new(
        "http://127.0.0.1:9",
        Auth::None,
        Duration::from_millis(100),
        None,
    )
    .expect("a registry URL");
    let metrics = Metrics::new();
    let h = Harness::start_with(
        MemorySink::new(),
        Stateless::new(Arc::clone(&plan), NO_TIME),
        None,
        |e| {
            e.metrics = metrics.pipeline("test");
            e.schemas = Some(super::SchemaSource {
                registry,
                writers: Arc::clone(&writers),
            });
        },
        None,
    );
    h.send(vec![
        framed_click(0, "ada", SECOND, 1),
        framed_click(1, "bob", 2 * SECOND, 1),
    ])
    .await;
    h.commit_point("past the known schema's records", |p| p.offset == 2)
        .await;
    // The next batch names schema 2 (the consumer notes it as it reads).
    let waiting = framed_click(2, "cy", 3 * SECOND, 2);
    writers.note(waiting.payload.as_deref().unwrap(), None, &mut None);
    h.send(vec![waiting]).await;
    let unreachable = || {
        metrics.value(
            "streamfold_registry_requests_total",
            &[("result", "unreachable")],
        )
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while unreachable() < 1.0 {
        assert!(Instant::now() < deadline, "the registry was never asked");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    let sink = Arc::clone(&h.sink);
    let env = Arc::clone(&h.env);
    // Its deadline is 5 s: a drain that waited for the registry would
    // end with the deadline, or never.
    h.drain().await.expect("the drain succeeds");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the drain waited for the registry ({:?})",
        started.elapsed()
    );
    assert_eq!(
        env.board.get(PARTITION).map(|p| p.offset),
        Some(2),
        "the commit point stops before the record of the unknown schema"
    );
    let offsets: Vec<i64> = sink
        .written()
        .iter()
        .map(|w| match &w.output {
            Output::Record { offset, .. } => *offset,
            other => panic!("only records are written, not {other:?}"),
        })
        .collect();
    assert_eq!(
        offsets,
        [0, 1],
        "the waiting record is neither written nor dead-lettered"
    );
}
