//! Two members of one consumer group on the real broker: a member joins
//! mid-stream (its partitions are revoked from the first, drained,
//! checkpointed and committed), later leaves gracefully (they move back).
//! Every window must be emitted, every emission must equal the expected
//! window, and each new owner resumes from the old owner's checkpoint.
//!
//! Not on the embedded broker: librdkafka's mock cluster refuses commits
//! while a rebalance is being prepared (`RebalanceInProgress`), which is
//! when a revoked partition's final commit is made; Kafka's coordinator
//! takes them then, and so does nisshi.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use streamfold::config::AssignmentStrategy;
use streamfold::generate::GeneratorOptions;
use streamfold::telemetry::Metrics;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

struct Member {
    metrics: Metrics,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), streamfold::source::RunError>>,
}

fn member(loaded: &streamfold::config::LoadedConfig) -> Member {
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let task = {
        let (loaded, metrics, shutdown) = (loaded.clone(), metrics.clone(), shutdown.clone());
        tokio::spawn(async move {
            streamfold::source::run(&loaded, Vec::new(), metrics, shutdown).await
        })
    };
    Member {
        metrics,
        shutdown,
        task,
    }
}

async fn rows(setup: &Setup, at_least: usize, wait: Duration) -> Vec<WindowRow> {
    let (servers, topic) = (setup.servers(), setup.output.clone());
    tokio::task::spawn_blocking(move || {
        read_until(&servers, &topic, wait, |r| r.len() >= at_least)
            .iter()
            .map(|r| decode_window(&r.payload))
            .collect()
    })
    .await
    .unwrap()
}

async fn join_and_leave(strategy: AssignmentStrategy) {
    let setup = Setup::real(4);
    let path = setup.write_config("5s", "[batch]\nmax_records = 100\nmax_wait = \"10ms\"\n");
    without_pseudonymise(&path);
    edit_config(&path, |c| c.kafka.partition_assignment_strategy = strategy);
    let loaded = streamfold::config::load(&path).unwrap();

    let options = GeneratorOptions {
        seed: 5,
        merchants: 8,
        step_ms: 25,
        jitter_ms: 4_000,
        late_every: 0,
        ..GeneratorOptions::default()
    };
    let n = 12_000;
    let events = payments_with_closers(&options, n, 4);
    let (first, rest) = events.split_at(n / 3);
    let (second, third) = rest.split_at(n / 3);

    let mut offsets = publish(&setup.servers(), &setup.input, first);
    let a = member(&loaded);
    assert!(
        !rows(&setup, 1, Duration::from_secs(30)).await.is_empty(),
        "member A produced nothing"
    );

    // B joins: partitions move from A to B while A is mid-stream, with
    // windows open. B takes them over from the checkpoints A wrote as it
    // let go.
    let b = member(&loaded);
    let restored = |m: &Metrics| m.value("streamfold_checkpoints_total", &[("event", "restored")]);
    for _ in 0..300 {
        if restored(&b.metrics) > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        restored(&b.metrics) > 0.0,
        "member B restored no checkpoint: A's revoked partitions were committed without one"
    );
    offsets.extend(publish(&setup.servers(), &setup.input, second));
    // Cooperative rebalancing moves partitions in two rounds; wait until
    // B has written windows for those it has.
    for _ in 0..300 {
        if b.metrics.value("streamfold_windows_emitted_total", &[]) > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let restored_by_a = restored(&a.metrics);

    // B leaves gracefully: its partitions drain, commit and move back; A
    // reads the rest of them from B's checkpoints.
    b.shutdown.cancel();
    b.task.await.unwrap().expect("member B stops cleanly");
    offsets.extend(publish(&setup.servers(), &setup.input, third));

    let expected = expected(&events, &offsets, 5_000, |p| p.merchant_id.clone());
    let want: BTreeSet<_> = expected.windows.keys().cloned().collect();
    let mut got = Vec::new();
    for _ in 0..60 {
        got = rows(&setup, usize::MAX, Duration::from_secs(1)).await;
        let have: BTreeSet<_> = got.iter().map(|r| (r.key.clone(), r.start)).collect();
        if want.is_subset(&have) {
            break;
        }
    }
    a.shutdown.cancel();
    a.task.await.unwrap().expect("member A stops cleanly");

    let have: BTreeSet<_> = got.iter().map(|r| (r.key.clone(), r.start)).collect();
    assert_eq!(have, want, "every window, and no others");
    for r in &got {
        let w = &expected.windows[&(r.key.clone(), r.start)];
        assert!(same_window(r, w), "got {r:?}, want {w:?}");
    }
    assert!(a.metrics.value("streamfold_windows_emitted_total", &[]) > 0.0);
    assert!(
        b.metrics.value("streamfold_windows_emitted_total", &[]) > 0.0,
        "member B never owned a partition"
    );
    let commits = a
        .metrics
        .value("streamfold_commits_total", &[("result", "ok")])
        + b.metrics
            .value("streamfold_commits_total", &[("result", "ok")]);
    assert!(commits > 0.0);
    assert!(
        restored(&a.metrics) > restored_by_a,
        "member A restored none of B's checkpoints"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_joins_and_leaves_with_range_assignment() {
    join_and_leave(AssignmentStrategy::Range).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_joins_and_leaves_with_cooperative_sticky_assignment() {
    join_and_leave(AssignmentStrategy::CooperativeSticky).await;
}
