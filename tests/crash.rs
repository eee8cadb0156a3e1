//! Crash test: the test owns the broker and runs `streamfold run` as a
//! child process, kills it with SIGKILL at several points mid-stream,
//! restarts it, and finally stops it with SIGTERM. Every expected window
//! must be in the output, every repeated window identical to the expected
//! one, and none with partial contents.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use streamfold::codec::Decoder;
use streamfold::config::{Format, WindowConfig};
use streamfold::generate::{GeneratorOptions, Payment, PaymentGenerator};
use streamfold::pipeline::Plan;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn fixed(size: i64, advance: i64) -> impl Expect {
    move |e, o| expected_hopping(e, o, 5_000, |p| p.merchant_id.clone(), size, advance)
}

#[test]
fn sigkill_mid_stream_loses_no_window_and_repeats_only_identical_ones() {
    crash_and_restart(
        WindowConfig::Tumbling { size: secs(60) },
        false,
        fixed(60_000, 60_000),
    );
}

#[test]
fn sigkill_mid_stream_with_hopping_windows() {
    crash_and_restart(
        WindowConfig::Hopping {
            size: secs(60),
            advance: secs(15),
        },
        false,
        fixed(60_000, 15_000),
    );
}

#[test]
fn sigkill_mid_stream_with_session_windows() {
    crash_and_restart(WindowConfig::Session { gap: secs(10) }, true, |e, o| {
        expected_sessions(e, o, 5_000, 10_000)
    });
}

#[test]
fn sigkill_mid_stream_with_sliding_windows() {
    crash_and_restart(WindowConfig::Sliding { size: secs(2) }, false, |e, o| {
        expected_sliding(e, o, 5_000, 2_000)
    });
}

/// nisshi drops offset-commit metadata: streamfold detects that at
/// start-up and keeps the resume state in a topic, and the contract holds.
#[test]
fn sigkill_on_a_real_broker_that_drops_commit_metadata() {
    let setup = Setup::real(4);
    run_crashes(
        &setup,
        WindowConfig::Hopping {
            size: secs(60),
            advance: secs(15),
        },
        false,
        fixed(60_000, 15_000),
    );
    let first = std::fs::read_to_string(setup.dir.join("run-0.log")).unwrap();
    assert!(
        first.contains("resume state is kept in a topic"),
        "the missing metadata was not detected:\n{first}"
    );
}

/// A member killed with SIGKILL stays in its group until its session
/// times out, and a rebalance waits for it that long. A member stopped
/// with SIGTERM meanwhile drains and commits, then waits for its group
/// leave at most `commit.drain_deadline`: it exits well before the killed
/// member's session ends (librdkafka's leave alone would wait for it).
#[test]
fn sigterm_while_a_killed_member_holds_up_the_rebalance_exits_within_the_deadline() {
    let setup = Setup::real(4);
    let config = setup.write_config("0s", "");
    let session = secs(45);
    edit_config(&config, |c| c.kafka.session_timeout = session);
    let mut killed = start(&setup, &config, 0);
    wait_for_log(&setup, 0, "partition assigned", secs(30));
    killed.kill().unwrap();
    killed.wait().unwrap();

    let mut stopping = start(&setup, &config, 1);
    wait_for_log(&setup, 1, "subscribed", secs(30));
    // Its join request goes out within milliseconds of subscribing; the
    // rebalance it starts waits for the killed member's session.
    std::thread::sleep(secs(2));
    assert!(
        !run_log(&setup, 1).contains("partition assigned"),
        "the rebalance did not wait for the killed member\n{}",
        logs(&setup)
    );
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &stopping.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    // Drain (nothing assigned), 3 s for the leave, then the partition
    // tasks and the producer flush; far below the 45 s session.
    let status = stopping.exit_within(secs(20), &setup);
    assert!(status.success(), "exit status {status}\n{}", logs(&setup));
    assert!(
        run_log(&setup, 1).contains("did not leave its group within commit.drain_deadline"),
        "{}",
        logs(&setup)
    );
}

fn crash_and_restart(window: WindowConfig, bursty: bool, expect: impl Expect) {
    run_crashes(&Setup::new(4), window, bursty, expect);
}

/// The crash tests' pipeline: `window`, small batches, commits and
/// checkpoints every 500 ms.
fn crash_config(setup: &Setup, window: WindowConfig) -> PathBuf {
    let config = setup.write_config("5s", "[batch]\nmax_records = 100\nmax_wait = \"10ms\"\n");
    edit_config(&config, |c| {
        c.pipeline.window = Some(window);
        c.pipeline.output_schema = None;
        c.commit.interval = Duration::from_millis(500);
        c.state.checkpoint_interval = Duration::from_millis(500);
    });
    config
}

const PHASES: usize = 4;

/// Events as published, and their (partition, offset).
type Published = (Vec<(i32, Event)>, Vec<(i32, i64)>);

/// Publishes 24,000 generated payments (late ones among them; in bursty
/// streams each merchant idles now and then) over four partitions in
/// [`PHASES`] parts, starting `streamfold run` after each and killing it
/// with SIGKILL mid-stream; then one record per partition that closes
/// every window. Returns the events and their (partition, offset).
fn publish_with_kills(
    setup: &Setup,
    config: &Path,
    bursty: bool,
    change: impl Fn(&mut Payment),
) -> Published {
    let options = GeneratorOptions {
        seed: 11,
        merchants: 8,
        step_ms: 25,
        jitter_ms: 4_000,
        late_every: 41,
        late_ms: 90_000,
        ..GeneratorOptions::default()
    };
    let n = 24_000;
    // In bursty streams each merchant is idle now and then, on its own
    // schedule, long enough for its sessions to end while the others go on.
    let idle = |p: &Payment, m: i64| {
        let period = 20_000 + 7_000 * m;
        bursty && (p.event_time - options.start_ms).div_euclid(period) % 3 == 2
    };
    let payments: Vec<(i32, Event)> = PaymentGenerator::new(options.clone())
        .take(n)
        .filter_map(|mut p| {
            change(&mut p);
            let m = merchant(&p);
            (!idle(&p, i64::from(m))).then_some((m % 4, Event::Payment(p)))
        })
        .collect();
    let n = payments.len();
    let mut closers = Vec::new();
    for part in 0..4 {
        let mut p = PaymentGenerator::new(options.clone()).next().unwrap();
        p.merchant_id = format!("m-{part}");
        p.event_time = options.start_ms + 24_000 * options.step_ms + 3_600_000;
        closers.push((part, Event::Payment(p)));
    }

    let mut events = Vec::new();
    let mut offsets = Vec::new();
    let mut seen = 0;
    for (phase, chunk) in payments.chunks(n / PHASES).enumerate() {
        offsets.extend(publish(&setup.servers(), &setup.input, chunk));
        events.extend_from_slice(chunk);
        let mut child = start(setup, config, phase);
        // Kill as soon as this run has written something new: mid-stream,
        // with batches in flight, windows open and commits pending.
        wait_for_new_output(setup, seen, phase);
        if phase == PHASES - 1 {
            // Every run may die before its first commit, and then the last
            // run has none to resume from: the last one killed commits
            // first, unless an earlier one did.
            wait_for_a_commit_past_0(setup, phase);
        }
        // Commits come every 500ms: some kills land before the windows just
        // written were committed (they are emitted again on restart), some
        // after.
        std::thread::sleep(Duration::from_millis(fastrand::u64(0..1_200)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        seen = read_all(setup, &setup.output).len();
    }
    offsets.extend(publish(&setup.servers(), &setup.input, &closers));
    events.extend(closers);
    (events, offsets)
}

/// The offsets committed for the pipeline's group, summed over the input
/// partitions that have a commit.
fn committed_sum(setup: &Setup) -> i64 {
    committed_offsets(
        &setup.servers(),
        &format!("group-{}", setup.input),
        &setup.input,
        setup.partitions,
    )
    .into_iter()
    .flatten()
    .sum()
}

/// Waits up to 30 s until some partition has a commit past offset 0, as
/// [`assert_resumed`] wants of the last run (a partition whose session
/// stayed open since offset 0 commits 0 again and again).
fn wait_for_a_commit_past_0(setup: &Setup, run: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while committed_sum(setup) == 0 {
        assert!(
            Instant::now() < deadline,
            "run {run} committed nothing within 30s\n{}",
            logs(setup)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Checks the last run's log: it resumed from commits, and not all of
/// them at offset 0.
fn assert_resumed(setup: &Setup) {
    let last_run = std::fs::read_to_string(setup.dir.join(format!("run-{PHASES}.log"))).unwrap();
    assert!(
        last_run.contains("resume=Some(CommitPoint"),
        "the last run resumed from no commit:\n{last_run}"
    );
    // A partition can legitimately resume at 0 when a session that began
    // there was still open at every commit; not all four.
    assert!(
        last_run
            .matches("resume=Some(CommitPoint { offset: 0,")
            .count()
            < 4,
        "commits never advanced:\n{last_run}"
    );
}

fn run_crashes(setup: &Setup, window: WindowConfig, bursty: bool, expect: impl Expect) {
    let config = crash_config(setup, window);
    let (events, offsets) = publish_with_kills(setup, &config, bursty, |_| {});
    let expected = expect(&events, &offsets);
    assert!(expected.windows.len() > 30);

    let mut child = start(setup, &config, PHASES);
    let rows = windows_covering(setup, &expected, Duration::from_secs(90));
    // A graceful stop drains and commits, and exits cleanly.
    let exit = child.terminate();
    assert!(exit.success(), "SIGTERM exit: {exit:?}\n{}", logs(setup));
    assert_resumed(setup);

    let repeated = assert_complete(&rows, &expected, || logs(setup));
    eprintln!(
        "{} windows, {} emitted more than once (identical), across {} runs",
        expected.windows.len(),
        repeated,
        PHASES + 1
    );
}

/// Sketches (HyperLogLog, quantiles, top-k) and exact count-distinct
/// restored from checkpoints after SIGKILLs: every window present, every
/// repeat byte-identical to its first emission, every value as an
/// independent computation says.
#[test]
fn sigkill_mid_stream_with_sketches_repeats_them_byte_for_byte() {
    let setup = Setup::new(4);
    let config = crash_config(&setup, WindowConfig::Tumbling { size: secs(60) });
    edit_config(&config, |c| c.pipeline.aggregates = sketches());
    let (events, offsets) = publish_with_kills(&setup, &config, false, vary_country);
    let expected = fixed(60_000, 60_000)(&events, &offsets);
    assert!(expected.members.len() > 30);

    // The output schema, from a copy of the config that needs no
    // pseudonym key to load.
    let copy = setup.dir.join("schema-only.toml");
    std::fs::copy(&config, &copy).unwrap();
    without_pseudonymise(&copy);
    let loaded = streamfold::config::load(&copy).unwrap();
    let schema = Plan::build(&loaded, Vec::new()).unwrap().output_schema();
    let decoder = Decoder::new(schema, Format::Avro);
    let mut child = start(&setup, &config, PHASES);
    let deadline = Instant::now() + secs(90);
    let mut emitted: BTreeMap<(String, i64), Vec<Vec<u8>>> = BTreeMap::new();
    while Instant::now() < deadline && !expected.members.keys().all(|k| emitted.contains_key(k)) {
        emitted.clear();
        for r in read_all(&setup, &setup.output) {
            let (window, _) = decode_fields(&decoder, &r.payload);
            emitted.entry(window).or_default().push(r.payload);
        }
    }
    let exit = child.terminate();
    assert!(exit.success(), "SIGTERM exit: {exit:?}\n{}", logs(&setup));
    assert_resumed(&setup);

    assert_eq!(
        emitted.keys().collect::<Vec<_>>(),
        expected.members.keys().collect::<Vec<_>>(),
        "windows lost or unexpected\n{}",
        logs(&setup)
    );
    let mut repeated = 0;
    let mut hll_worst: f64 = 0.0;
    for (k, payloads) in &emitted {
        assert!(
            payloads.iter().all(|p| p == &payloads[0]),
            "window {k:?} emitted {} times, not all identical",
            payloads.len()
        );
        repeated += payloads.len() - 1;
        let (_, fields) = decode_fields(&decoder, &payloads[0]);
        hll_worst = hll_worst.max(check_sketches(k, &fields, &expected.members[k]));
    }
    assert!(hll_worst < 0.03, "worst HyperLogLog error {hll_worst}");
    eprintln!(
        "{} windows, {repeated} emitted more than once (byte-identical)",
        emitted.len()
    );
}
