//! Checkpoints end to end: 1-hour tumbling windows over 4 partitions and
//! 200,000 records, the `streamfold run` child SIGKILLed 5 times. While
//! hour windows are open the committed offsets, read by an independent
//! client (Python confluent-kafka), reach the log end; a restart resumes
//! from the checkpoint at the committed offset, not from the first record
//! of its open windows; and every window is emitted, every repeat
//! identical to the expected one.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use streamfold::config::WindowConfig;
use streamfold::generate::{GeneratorOptions, PaymentGenerator};

const HOUR: i64 = 3_600_000;
const PARTITIONS: i32 = 4;

/// Each partition's (committed offset, log end) for `group`, from the
/// independent client (-1 when nothing is committed).
/// Runs the independent client's `command` on the input topic of `setup`
/// with `args`; its standard output.
fn independent_client(setup: &Setup, command: &str, args: &[&str]) -> Vec<u8> {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/independent_client.py");
    let out = Command::new(test_python())
        .arg(script)
        .args([
            command,
            "--bootstrap",
            &setup.servers(),
            "--topic",
            &setup.input,
        ])
        .args(args)
        .output()
        .expect("running the independent client");
    assert!(
        out.status.success(),
        "independent client {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn committed_and_ends(setup: &Setup, group: &str, partitions: i32) -> Vec<(i64, i64)> {
    let partitions_arg = partitions.to_string();
    let out = independent_client(
        setup,
        "committed",
        &["--group", group, "--partitions", &partitions_arg],
    );
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    (0..partitions)
        .map(|p| {
            let e = &v[p.to_string()];
            (e[0].as_i64().unwrap(), e[1].as_i64().unwrap())
        })
        .collect()
}

/// The offset each partition resumed from in run `run`'s log (-1 for
/// none), once all are assigned.
fn resumed(setup: &Setup, run: usize) -> Vec<i64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = std::fs::read_to_string(setup.dir.join(format!("run-{run}.log"))).unwrap();
        let mut out = vec![None; PARTITIONS as usize];
        for line in log.lines().filter(|l| l.contains("partition assigned")) {
            let field = |name: &str| {
                let at = line.find(name)? + name.len();
                let digits: String = line[at..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                digits.parse::<i64>().ok()
            };
            let (Some(p), offset) = (
                field("partition="),
                field("resume=Some(CommitPoint { offset: "),
            ) else {
                continue;
            };
            if let Some(slot) = out.get_mut(p as usize) {
                *slot = Some(offset.unwrap_or(-1));
            }
        }
        if out.iter().all(Option::is_some) {
            return out.into_iter().map(Option::unwrap).collect();
        }
        assert!(
            Instant::now() < deadline,
            "run {run} did not assign every partition:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until every partition's committed offset is its log end.
fn wait_committed_to_the_end(setup: &Setup, group: &str, run: usize) -> Vec<i64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = committed_and_ends(setup, group, PARTITIONS);
        if now.iter().all(|(c, end)| c == end) {
            return now.iter().map(|(_, end)| *end).collect();
        }
        assert!(
            Instant::now() < deadline,
            "run {run}: committed offsets never reached the log end while hour windows \
             are open: (committed, end) {now:?}\n{}",
            logs(setup)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn hour_windows_restart_from_checkpoints_and_commits_reach_the_log_end() {
    let setup = Setup::new(PARTITIONS);
    let group = format!("group-{}", setup.input);
    let config = setup.write_config("5s", "[batch]\nmax_records = 500\nmax_wait = \"10ms\"\n");
    edit_config(&config, |c| {
        c.pipeline.window = Some(WindowConfig::Tumbling {
            size: Duration::from_secs(3600),
        });
        c.pipeline.output_schema = None;
        c.commit.interval = Duration::from_millis(200);
        c.state.checkpoint_interval = Duration::from_millis(500);
    });
    // 200,000 payments 90 ms apart: 5 hours of event time, so every
    // partition holds open hour windows at every kill.
    let options = GeneratorOptions {
        seed: 5,
        merchants: 24,
        step_ms: 90,
        jitter_ms: 3_000,
        late_every: 0,
        ..GeneratorOptions::default()
    };
    let n = 200_000;
    let payments: Vec<(i32, Event)> = PaymentGenerator::new(options.clone())
        .take(n)
        .map(|p| (merchant(&p) % PARTITIONS, Event::Payment(p)))
        .collect();

    let mut events = Vec::new();
    let mut offsets = Vec::new();
    let runs = 6;
    // The log end of each partition that the previous run had committed
    // up to (`None` after a kill mid-stream).
    let mut caught_up: Option<Vec<i64>> = Some(vec![0; PARTITIONS as usize]);
    let mut committed_before = vec![0; PARTITIONS as usize];
    for (run, chunk) in payments.chunks(n.div_ceil(runs)).enumerate() {
        let mut child = start(&setup, &config, run);
        let from = resumed(&setup, run);
        match &caught_up {
            // Killed after committing everything: nothing is read again,
            // though hour windows were open.
            Some(ends) if run > 0 => assert_eq!(
                &from, ends,
                "run {run} resumed from {from:?}, the log ends were {ends:?}"
            ),
            // Killed mid-stream: never before what was committed.
            _ => assert!(
                from.iter()
                    .zip(&committed_before)
                    .all(|(f, c)| *c <= 0 || f >= c),
                "run {run} resumed from {from:?}, before the committed {committed_before:?}"
            ),
        }
        offsets.extend(publish(&setup.servers(), &setup.input, chunk));
        events.extend_from_slice(chunk);
        if run + 1 == runs {
            child.kill().unwrap();
            child.wait().unwrap();
            break;
        }
        if run % 2 == 0 {
            let ends = wait_committed_to_the_end(&setup, &group, run);
            committed_before = ends.clone();
            caught_up = Some(ends);
        } else {
            // Mid-stream: batches in flight, a checkpoint maybe half written.
            std::thread::sleep(Duration::from_millis(fastrand::u64(100..1_500)));
            committed_before = committed_and_ends(&setup, &group, PARTITIONS)
                .iter()
                .map(|(c, _)| *c)
                .collect();
            caught_up = None;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }

    // The last run: closers end every hour, then a graceful stop.
    let mut closers = Vec::new();
    for part in 0..PARTITIONS {
        let mut p = PaymentGenerator::new(options.clone()).next().unwrap();
        p.merchant_id = format!("m-{part}");
        p.event_time = options.start_ms + n as i64 * options.step_ms + 2 * HOUR;
        closers.push((part, Event::Payment(p)));
    }
    offsets.extend(publish(&setup.servers(), &setup.input, &closers));
    events.extend(closers);
    let expected = expected_hopping(
        &events,
        &offsets,
        5_000,
        |p| p.merchant_id.clone(),
        HOUR,
        HOUR,
    );
    assert!(expected.windows.len() > 100, "{}", expected.windows.len());
    let mut child = start(&setup, &config, runs);
    let rows = windows_covering(&setup, &expected, Duration::from_secs(90));
    let exit = child.terminate();
    assert!(exit.success(), "SIGTERM exit: {exit:?}\n{}", logs(&setup));
    let repeated = assert_complete(&rows, &expected, || logs(&setup));
    eprintln!(
        "{} hour windows over {} records, {repeated} emitted more than once (identical), \
         {} runs",
        expected.windows.len(),
        events.len(),
        runs + 1
    );
}

/// Runs the pipeline of `config` in this process until every partition
/// has committed a checkpoint after its one in `after` (by partition;
/// none when empty), then stops it; returns the commit points.
async fn run_until_checkpointed(
    setup: &Setup,
    config: &std::path::Path,
    after: &[streamfold::offsets::CommitPoint],
) -> Vec<streamfold::offsets::CommitPoint> {
    let loaded = streamfold::config::load(config).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let pipeline = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            streamfold::source::run(
                &loaded,
                Vec::new(),
                streamfold::telemetry::Metrics::new(),
                shutdown,
            )
            .await
        })
    };
    let group = format!("group-{}", setup.input);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Only once every partition has a commit (`resume_points` wants one).
        let all_committed = committed_and_ends(setup, &group, setup.partitions)
            .iter()
            .all(|(c, _)| *c >= 0);
        let points = all_committed
            .then(|| resume_points(&setup.servers(), &group, &setup.input, setup.partitions));
        if let Some(points) = points
            && points
                .iter()
                .enumerate()
                .all(|(i, p)| p.checkpoint > after.get(i).and_then(|a| a.checkpoint))
        {
            shutdown.cancel();
            pipeline.await.unwrap().expect("the run stops cleanly");
            return points;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint after {after:?} was committed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_of_other_window_settings_is_refused_naming_the_change() {
    let setup = Setup::new(2);
    let options = GeneratorOptions {
        seed: 9,
        merchants: 4,
        step_ms: 100,
        late_every: 0,
        ..GeneratorOptions::default()
    };
    let events: Vec<(i32, Event)> = PaymentGenerator::new(options)
        .take(2_200)
        .map(|p| (merchant(&p) % 2, Event::Payment(p)))
        .collect();
    publish(&setup.servers(), &setup.input, &events[..2_000]);
    let config = setup.write_config("5s", "");
    without_pseudonymise(&config);
    edit_config(&config, |c| {
        c.pipeline.output_schema = None;
        c.commit.interval = Duration::from_millis(100);
        c.state.checkpoint_interval = Duration::from_millis(100);
    });
    let first = run_until_checkpointed(&setup, &config, &[]).await;

    // The window grew from one minute to two: the state does not fit.
    edit_config(&config, |c| {
        c.pipeline.window = Some(WindowConfig::Tumbling {
            size: Duration::from_secs(120),
        });
    });
    let loaded = streamfold::config::load(&config).unwrap();
    let run = streamfold::source::run(
        &loaded,
        Vec::new(),
        streamfold::telemetry::Metrics::new(),
        tokio_util::sync::CancellationToken::new(),
    );
    let e = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the second run stops by itself")
        .expect_err("a checkpoint of other settings is refused");
    let message = e.to_string();
    assert_eq!(e.exit_code(), 2, "{message}");
    for part in [
        r#"pipeline.window: {"kind":"tumbling","size":"1m"} in the checkpoint, {"kind":"tumbling","size":"2m"} now"#,
        "state.on_plan_change = \"start-afresh\"",
        &format!("group-{}-checkpoints", setup.input),
    ] {
        assert!(message.contains(part), "{part:?} not in: {message}");
    }

    // Asked to, it starts afresh and goes on.
    edit_config(&config, |c| {
        c.state.on_plan_change = streamfold::config::OnPlanChange::StartAfresh;
    });
    publish(&setup.servers(), &setup.input, &events[2_000..]);
    let again = run_until_checkpointed(&setup, &config, &first).await;
    assert!(
        again.iter().zip(&first).all(|(a, f)| a.offset > f.offset),
        "{first:?} then {again:?}"
    );
}

/// The value of counter `name` in `metrics`.
fn counter(metrics: &streamfold::telemetry::Metrics, name: &str) -> f64 {
    metrics
        .registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter().map(|m| m.get_counter().get_value()))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_deleted_before_they_were_read_mark_their_windows_incomplete() {
    let setup = Setup::real(1);
    let options = GeneratorOptions {
        seed: 4,
        merchants: 3,
        step_ms: 100,
        jitter_ms: 500,
        late_every: 0,
        ..GeneratorOptions::default()
    };
    // Four minutes of event time, 600 records a minute.
    let events: Vec<(i32, Event)> = PaymentGenerator::new(options.clone())
        .take(2_400)
        .map(|p| (0, Event::Payment(p)))
        .collect();
    let config = setup.write_config("5s", "[batch]\nmax_records = 50\nmax_wait = \"10ms\"\n");
    without_pseudonymise(&config);
    edit_config(&config, |c| {
        c.pipeline.output_schema = None;
        c.commit.interval = Duration::from_millis(100);
        c.state.checkpoint_interval = Duration::from_millis(100);
    });
    // The first minute is read and checkpointed; its window is still open.
    publish(&setup.servers(), &setup.input, &events[..600]);
    let first = run_until_checkpointed(&setup, &config, &[]).await;
    assert_eq!(first[0].offset, 600);
    let (servers, topic) = (setup.servers(), setup.output.clone());
    let before: std::collections::BTreeSet<(Option<String>, String)> =
        tokio::task::spawn_blocking(move || {
            read_until(&servers, &topic, Duration::from_secs(2), |_| false)
        })
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.headers["streamfold.window.start"].clone()))
        .collect();

    // The rest arrives, and half of the second minute is deleted (as
    // retention would) before the pipeline reads it.
    publish(&setup.servers(), &setup.input, &events[600..]);
    independent_client(
        &setup,
        "delete-records",
        &["--partitions", "1", "--before", "900"],
    );
    let mut closer = PaymentGenerator::new(options.clone()).next().unwrap();
    closer.event_time = options.start_ms + 2_400 * options.step_ms + 3_600_000;
    publish(
        &setup.servers(),
        &setup.input,
        &[(0, Event::Payment(closer))],
    );

    let loaded = streamfold::config::load(&config).unwrap();
    let metrics = streamfold::telemetry::Metrics::new();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let pipeline = {
        let (metrics, shutdown) = (metrics.clone(), shutdown.clone());
        tokio::spawn(async move {
            streamfold::source::run(&loaded, Vec::new(), metrics, shutdown).await
        })
    };
    let minute = |t: i64| t.div_euclid(60_000) * 60_000;
    let starts: std::collections::BTreeSet<i64> = events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Payment(p) => Some(minute(p.event_time)),
            Event::Poison(_) => None,
        })
        .collect();
    let (servers, topic) = (setup.servers(), setup.output.clone());
    let want = 3 * starts.len() - 3;
    let rows = tokio::task::spawn_blocking(move || {
        read_until(&servers, &topic, Duration::from_secs(60), |r| {
            r.len() >= want
        })
    })
    .await
    .unwrap();
    shutdown.cancel();
    pipeline.await.unwrap().expect("the pipeline stops cleanly");

    // Windows that held (or may have held) deleted records are marked, and
    // the one open at the checkpoint; windows wholly after the loss are not.
    let time = |i: usize| match &events[i].1 {
        Event::Payment(p) => p.event_time,
        Event::Poison(_) => unreachable!(),
    };
    let lost_until = (600..900).map(|i| minute(time(i))).max().unwrap();
    let clean_from = minute(time(1_100)) + 60_000;
    let mut marked = 0;
    let mut unmarked_after = 0;
    for r in &rows {
        if before.contains(&(r.key.clone(), r.headers["streamfold.window.start"].clone())) {
            // Emitted by the first run, before anything was deleted.
            continue;
        }
        let start: i64 = r.headers["streamfold.window.start"].parse().unwrap();
        let incomplete = r.headers.get("streamfold.complete").map(String::as_str) == Some("false");
        if incomplete {
            marked += 1;
        }
        if start <= lost_until {
            assert!(
                incomplete,
                "window at {start} lost records but is not marked: {:?}",
                r.headers
            );
        } else if start >= clean_from {
            assert!(
                !incomplete,
                "window at {start} is wholly after the loss: {:?}",
                r.headers
            );
            unmarked_after += 1;
        }
    }
    assert!(
        marked >= 3 && unmarked_after >= 3,
        "{marked} marked, {unmarked_after} after"
    );
    assert_eq!(counter(&metrics, "streamfold_records_lost_total"), 300.0);
    assert_eq!(
        counter(&metrics, "streamfold_incomplete_windows_total"),
        f64::from(marked)
    );
}
