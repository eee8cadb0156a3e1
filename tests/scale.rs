//! Scale-out on the real broker: several `streamfold run` processes in one
//! consumer group over an 8-partition input. Members join mid-stream, one
//! leaves gracefully (SIGTERM), one is killed (SIGKILL); the union of what
//! they wrote must hold every expected window, repeats identical, none
//! partial. Once with `range`, once with `cooperative-sticky` assignment.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use streamfold::config::AssignmentStrategy;
use streamfold::generate::GeneratorOptions;

#[test]
fn members_join_leave_and_die_with_range_assignment() {
    scale_out(AssignmentStrategy::Range);
}

#[test]
fn members_join_leave_and_die_with_cooperative_sticky_assignment() {
    scale_out(AssignmentStrategy::CooperativeSticky);
}

/// Waits until member `run` has been assigned partitions and the output
/// has grown past `seen` windows; returns the new count.
fn wait_for(setup: &Setup, run: usize, seen: usize) -> usize {
    wait_for_log(setup, run, "partition assigned", Duration::from_secs(60));
    let now = windows(setup, seen + 1, Duration::from_secs(45)).len();
    assert!(
        now > seen,
        "no new output after member {run} joined\n{}",
        logs(setup)
    );
    now
}

fn terminate(run: &mut Run) {
    let status = Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn scale_out(strategy: AssignmentStrategy) {
    let setup = Setup::real(8);
    let config = setup.write_config("5s", "[batch]\nmax_records = 100\nmax_wait = \"10ms\"\n");
    edit_config(&config, |c| {
        c.kafka.partition_assignment_strategy = strategy;
        c.pipeline.output_schema = None;
    });
    let options = GeneratorOptions {
        seed: 3,
        merchants: 16,
        step_ms: 25,
        jitter_ms: 4_000,
        late_every: 53,
        late_ms: 90_000,
        ..GeneratorOptions::default()
    };
    let events = payments_with_closers(&options, 16_000, 8);
    let (payments, closers) = events.split_at(events.len() - 8);
    let chunks: Vec<&[(i32, Event)]> = payments.chunks(payments.len() / 4).collect();
    let mut offsets = Vec::new();
    let mut publish_next = |chunk: &[(i32, Event)]| {
        offsets.extend(publish(&setup.servers(), &setup.input, chunk));
    };

    let mut a = start(&setup, &config, 0);
    publish_next(chunks[0]);
    let seen = wait_for(&setup, 0, 0);
    // Two members, then three: each gets a share of the 8 partitions.
    let mut b = start(&setup, &config, 1);
    publish_next(chunks[1]);
    let seen = wait_for(&setup, 1, seen);
    let mut c = start(&setup, &config, 2);
    publish_next(chunks[2]);
    let seen = wait_for(&setup, 2, seen);
    // B leaves gracefully: drains, commits, exits 0.
    terminate(&mut b);
    let status = b.wait().unwrap();
    assert!(
        status.success(),
        "SIGTERM exit of member 1: {status:?}\n{}",
        logs(&setup)
    );
    publish_next(chunks[3]);
    let _ = windows(&setup, seen + 1, Duration::from_secs(30));
    // C dies: A takes its partitions over once its session expires.
    c.kill().unwrap();
    c.wait().unwrap();
    for chunk in chunks.iter().skip(4) {
        publish_next(chunk);
    }
    publish_next(closers);

    let expected = expected(&events, &offsets, 5_000, |p| p.merchant_id.clone());
    assert!(expected.windows.len() > 100);
    let rows = windows_covering(&setup, &expected, Duration::from_secs(90));
    terminate(&mut a);
    let status = a.wait().unwrap();
    assert!(
        status.success(),
        "SIGTERM exit of member 0: {status:?}\n{}",
        logs(&setup)
    );

    let repeated = assert_complete(&rows, &expected, || logs(&setup));
    // Revoked partitions were drained and committed, with the time it took.
    let first = run_log(&setup, 0);
    assert!(
        first.contains("why=\"revoked\"") && first.contains("drain_ms="),
        "member 0 never drained revoked partitions:\n{first}"
    );
    eprintln!(
        "{strategy:?}: {} windows, {repeated} repeated (identical), 3 members",
        expected.windows.len()
    );
}
