//! Crash test: the test owns the broker and runs `streamfold run` as a
//! child process, kills it with SIGKILL at several points mid-stream,
//! restarts it, and finally stops it with SIGTERM. Every expected window
//! must be in the output, every repeated window identical to the expected
//! one, and none with partial contents.

mod common;

use std::time::Duration;

use common::*;
use streamfold::config::WindowConfig;
use streamfold::generate::{GeneratorOptions, PaymentGenerator};

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

fn crash_and_restart(window: WindowConfig, bursty: bool, expect: impl Expect) {
    run_crashes(&Setup::new(4), window, bursty, expect);
}

fn run_crashes(setup: &Setup, window: WindowConfig, bursty: bool, expect: impl Expect) {
    let config = setup.write_config("5s", "[batch]\nmax_records = 100\nmax_wait = \"10ms\"\n");
    edit_config(&config, |c| {
        c.pipeline.window = window;
        c.pipeline.output_schema = None;
        c.commit.interval = Duration::from_millis(500);
        c.state.checkpoint_interval = Duration::from_millis(500);
    });
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
    let idle = |p: &streamfold::generate::Payment, m: i64| {
        let period = 20_000 + 7_000 * m;
        bursty && (p.event_time - options.start_ms).div_euclid(period) % 3 == 2
    };
    let payments: Vec<(i32, Event)> = PaymentGenerator::new(options.clone())
        .take(n)
        .filter_map(|p| {
            let m: i32 = p.merchant_id.trim_start_matches("m-").parse().unwrap();
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
    let phases = 4;
    let mut seen = 0;
    for (phase, chunk) in payments.chunks(n / phases).enumerate() {
        offsets.extend(publish(&setup.servers(), &setup.input, chunk));
        events.extend_from_slice(chunk);
        let mut child = start(setup, &config, phase);
        // Kill as soon as this run has written something new: mid-stream,
        // with batches in flight, windows open and commits pending.
        let now = windows(setup, seen + 1, Duration::from_secs(45));
        assert!(
            now.len() > seen,
            "run {phase} produced nothing within 45s\n{}",
            logs(setup)
        );
        // Commits come every 500ms: some kills land before the windows just
        // written were committed (they are emitted again on restart), some
        // after.
        std::thread::sleep(Duration::from_millis(fastrand::u64(0..1_200)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        seen = windows(setup, usize::MAX, Duration::from_millis(500)).len();
    }
    offsets.extend(publish(&setup.servers(), &setup.input, &closers));
    events.extend(closers);

    let expected = expect(&events, &offsets);
    assert!(expected.windows.len() > 30);

    let mut child = start(setup, &config, phases);
    let rows = windows_covering(setup, &expected, Duration::from_secs(90));
    // A graceful stop drains and commits, and exits cleanly.
    let exit = child.terminate();
    assert!(exit.success(), "SIGTERM exit: {exit:?}\n{}", logs(setup));
    // Restarts resumed from commits carrying the event-time state.
    let last_run = std::fs::read_to_string(setup.dir.join(format!("run-{phases}.log"))).unwrap();
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

    let repeated = assert_complete(&rows, &expected, || logs(setup));
    eprintln!(
        "{} windows, {} emitted more than once (identical), across {} runs",
        expected.windows.len(),
        repeated,
        phases + 1
    );
}
