//! Quix Streams on the same queries (benches/quix/nexmark.py).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::consumer::BaseConsumer;

use super::{Killed, Sample, at_end, create_topic, usage};

/// Runs one query in Quix Streams (benches/quix/nexmark.py) until its
/// group has committed the end of every topic it reads: Quix Streams
/// commits only what it processed and whose output was flushed.
pub(super) fn run_quix(
    python: &Path,
    dir: &Path,
    broker: &str,
    name: &str,
    input: &str,
    run: usize,
) -> anyhow::Result<Sample> {
    if !python.exists() {
        bail!(
            "{}: no Python with Quix Streams; create it with\n  python3 -m venv target/bench-venv && \
             target/bench-venv/bin/pip install -r benches/quix/requirements.txt\n\
             or pass --quix-python, or leave quix-* out of --only",
            python.display()
        );
    }
    let group = format!("quix-{input}-{name}-{run}");
    let output = format!("{input}-quix-{name}-{run}-out");
    create_topic(broker, &output, 8)?;
    let mut topics = vec![input.to_string()];
    if name == "q7" {
        // The re-keying step's internal topic (named by Quix Streams).
        topics.push(format!("repartition__{group}--{input}--all"));
    }
    let checker: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", &group)
        .create()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/quix/nexmark.py");
    let started = Instant::now();
    let mut child = Killed(
        Command::new(python)
            .arg(&script)
            .args(["--query", name, "--broker", broker, "--input", input])
            .args(["--output", &output, "--group", &group, "--state-dir"])
            .arg(dir.join(&group))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", python.display()))?,
    );
    let pid = child.0.id();
    let deadline = started + Duration::from_secs(3600);
    loop {
        if Instant::now() > deadline {
            bail!("quix {name}: not done after an hour");
        }
        if let Some(status) = child.0.try_wait()? {
            bail!("quix {name} exited early: {status}");
        }
        let usage_now = usage(pid)?;
        if topics.iter().all(|t| at_end(&checker, t).unwrap_or(false)) {
            return Ok(Sample {
                secs: started.elapsed().as_secs_f64(),
                cpu_secs: usage_now.0,
                peak_rss_mib: usage_now.1,
                checkpoint_bytes: None,
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
