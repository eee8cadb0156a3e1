//! Bytewax on the standard q5 and q7 (benches/bytewax/nexmark.py), and
//! the check of its results against streamfold's on the same windows.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{Sample, create_topic};

/// How Bytewax runs: `processes` local processes of `workers` workers.
#[derive(Debug, Clone, Copy)]
pub(super) struct Setting {
    pub(super) processes: u32,
    pub(super) workers: u32,
}

/// Runs query `name` (`q5` or `q7`) in Bytewax to the end of `input`: its
/// source stops there, it closes every window still open, writes them
/// and exits. Returns the sample and the output topic.
pub(super) fn run_bytewax(
    python: &Path,
    broker: &str,
    name: &str,
    input: &str,
    setting: Setting,
    run: usize,
) -> anyhow::Result<(Sample, String)> {
    let output = format!("{input}-bytewax-{name}-{run}-out");
    create_topic(broker, &output, 8)?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/bytewax/nexmark.py");
    let started = Instant::now();
    let child = Command::new(python)
        .arg(&script)
        .args(["--query", name, "--broker", broker, "--input", input])
        .args(["--output", &output])
        .args(["--processes", &setting.processes.to_string()])
        .args(["--workers", &setting.workers.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", python.display()))?;
    let pid = libc::pid_t::try_from(child.id())?;
    // `wait4` gives the CPU time of the process and of the cluster
    // members it waited for, and their peak RSS.
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is valid, and `wait4` fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet waited for; both pointers are
    // to live locals.
    if unsafe { libc::wait4(pid, &mut status, 0, &mut usage) } != pid {
        bail!(
            "waiting for bytewax {name}: {}",
            std::io::Error::last_os_error()
        );
    }
    let secs = started.elapsed().as_secs_f64();
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("bytewax {name} failed (wait status {status})");
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok((
        Sample {
            secs,
            cpu_secs: tv(usage.ru_utime) + tv(usage.ru_stime),
            // Kilobytes on Linux.
            peak_rss_mib: usage.ru_maxrss as f64 / 1024.0,
            checkpoint_bytes: None,
        },
        output,
    ))
}

/// One window's result: its end, and what the query picked in it.
type Rows = BTreeMap<i64, Vec<i64>>;

/// Compares the peer's results (`peer`, Bytewax's rows) with streamfold's
/// (`ours`, the output of the chained query `name`) on the windows both
/// have; fails on any that differs. Returns (windows compared, windows
/// only streamfold has, windows only the peer has).
pub(super) fn check(
    broker: &str,
    name: &str,
    peer: &str,
    ours: &str,
) -> anyhow::Result<(usize, usize, usize)> {
    let theirs = rows(broker, peer, |v| {
        let f = |k: &str| v[k].as_i64();
        Some((
            f("window_end")?,
            match name {
                "q5" => vec![f("auction")?, f("count")?],
                _ => vec![f("auction")?, f("bidder")?, f("price")?],
            },
        ))
    })?;
    let mine = rows(broker, ours, |v| {
        let f = |k: &str| v[k].as_i64();
        let end: i64 = v["key"].as_str()?.parse().ok()?;
        Some((
            end,
            match name {
                "q5" => vec![v["hot_key"].as_str()?.parse().ok()?, f("hot_count")?],
                _ => vec![
                    f("highest_top_auction")?,
                    f("highest_top_bidder")?,
                    f("highest_top_price")?,
                ],
            },
        ))
    })?;
    let mut compared = 0;
    for (end, row) in &mine {
        if let Some(other) = theirs.get(end) {
            if other != row {
                bail!(
                    "{name}: the window ending at {end} differs: streamfold {row:?}, \
                     bytewax {other:?}"
                );
            }
            compared += 1;
        }
    }
    Ok((compared, mine.len() - compared, theirs.len() - compared))
}

/// Every record of `topic` as it is now, each value parsed by `row`.
fn rows(
    broker: &str,
    topic: &str,
    row: impl Fn(&serde_json::Value) -> Option<(i64, Vec<i64>)>,
) -> anyhow::Result<Rows> {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", format!("check-{topic}"))
        .set("enable.partition.eof", "true")
        .create()?;
    let timeout = Duration::from_secs(5);
    let md = reader.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = md
        .topics()
        .first()
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    let mut tpl = TopicPartitionList::new();
    let mut left = 0;
    for p in &partitions {
        let (low, high) = reader.fetch_watermarks(topic, *p, timeout)?;
        if high > low {
            tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
            left += 1;
        }
    }
    reader.assign(&tpl)?;
    let mut out = Rows::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while left > 0 {
        if Instant::now() > deadline {
            bail!("{topic}: not read to its end in two minutes");
        }
        match reader.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap_or_default())
                    .with_context(|| format!("{topic} offset {}: not JSON", m.offset()))?;
                let (end, picked) = row(&v).with_context(|| {
                    format!("{topic} offset {}: unexpected row {v}", m.offset())
                })?;
                out.insert(end, picked);
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => left -= 1,
            Some(Err(e)) => bail!("reading {topic}: {e}"),
            None => {}
        }
    }
    Ok(out)
}
