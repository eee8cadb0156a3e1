//! The Nexmark benchmark harness on a few thousand events, so it cannot
//! rot: every system runs to completion and gets a row in the table. (The
//! figures of so short a run mean nothing; benches/RESULTS.md has real ones.)

mod common;

use std::process::Command;

use common::test_python;

#[test]
fn nexmark_harness_runs_every_query_end_to_end() {
    let out = Command::new(env!("CARGO_BIN_EXE_streamfold-bench"))
        .args(["--events", "3000", "--runs", "1", "--partitions", "2"])
        // A rate a debug build keeps up with while the load generator
        // shares its cores (half the catch-up rate does not, here).
        .args(["--latency-secs", "16", "--latency-rate", "1000"])
        .args(["--restart-windows", "1m"])
        // Every system but Pathway (a large install the tests do without);
        // Bytewax's results are checked against q5-hot's and q7-bid's.
        .args([
            "--only",
            "ceiling-a,ceiling-b,floor-q5,q0,q1,q2,q5,q7,q5-hot,q7-bid,q0-avro,q5-avro,\
                q5-avro-framed,q5-latency,quix-q5,quix-q7,bytewax-q5,bytewax-q7,restart",
        ])
        .arg("--streamfold")
        .arg(env!("CARGO_BIN_EXE_streamfold"))
        .arg("--quix-python")
        .arg(test_python())
        .output()
        .expect("running the benchmark harness (needs nisshi: bash .ci/test.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for system in [
        "ceiling-a",
        "ceiling-b",
        "floor-q5",
        "q0",
        "q1",
        "q2",
        "q5",
        "q7",
        "q5-hot",
        "q7-bid",
        "q0-avro",
        "q5-avro",
        "q5-avro-framed",
        "quix-q5",
        "quix-q7",
        "bytewax-q5",
        "bytewax-q7",
    ] {
        assert!(
            stdout.contains(&format!("| {system} |")),
            "no row for {system}:\n{stdout}\n{stderr}"
        );
    }
    assert!(stdout.contains("q0 / ceiling B = "), "{stdout}");
    assert!(stdout.contains("q5 / Quix Streams q5 = "), "{stdout}");
    assert!(stdout.contains("q5 end-to-end latency"), "{stdout}");
    assert!(stdout.contains("q5-avro-framed / q5-avro = "), "{stdout}");
    assert!(stdout.contains("q5-hot / Bytewax q5 = "), "{stdout}");
    for query in ["bytewax-q5", "bytewax-q7"] {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&format!("run 0 {query}: all "))
                    && l.contains("windows equal")),
            "{query}'s results were not checked:\n{stderr}"
        );
    }
    // The restart row: a minute of bids at 10/s, 90% of the window, re-read
    // in full without checkpoints, and with them only the two closers.
    let row = stdout
        .lines()
        .find(|l| l.starts_with("| 1m | 540 |"))
        .unwrap_or_else(|| panic!("no restart row:\n{stdout}"));
    assert!(
        row.contains("s, 542 re-read | ") && row.ends_with("s, 2 re-read |"),
        "{row}"
    );
}
