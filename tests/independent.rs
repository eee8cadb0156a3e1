//! Against the real broker, with a client that is not ours: payments are
//! published by Python confluent-kafka with fastavro encoding, `streamfold
//! run` aggregates them, and the aggregates are read back and decoded with
//! fastavro and compared with the Python side's own computation.

mod common;

use std::process::Command;

use common::*;

fn client(setup: &Setup, command: &str, topic: &str, expect: &std::path::Path) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/independent_client.py"
    );
    let out = Command::new(test_python())
        .arg(script)
        .arg(command)
        .args([
            "--bootstrap",
            &setup.servers(),
            "--topic",
            topic,
            "--expect",
        ])
        .arg(expect)
        .output()
        .expect("running the Python client");
    assert!(
        out.status.success(),
        "python {command} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn python_client_publishes_and_reads_back_what_streamfold_aggregated() {
    let setup = Setup::real(4);
    let expect = setup.dir.join("expect.json");
    client(&setup, "produce", &setup.input, &expect);
    let config = setup.write_config("5s", "");
    let mut run = start(&setup, &config, 0);
    client(&setup, "verify", &setup.output, &expect);
    let status = run.terminate();
    assert!(status.success(), "streamfold run exit: {status:?}");
}
