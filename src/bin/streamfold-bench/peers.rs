//! Bytewax and Pathway on the standard q5 and q7 (benches/bytewax/ and
//! benches/pathway/nexmark.py), and the check of their results against
//! streamfold's on the same windows.

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

/// A peer, and how it runs on this machine's cores.
#[derive(Debug, Clone, Copy)]
pub(super) enum Peer {
    /// `processes` local processes (one interpreter each) of `workers`
    /// workers.
    Bytewax { processes: u32, workers: u32 },
    /// `threads` worker threads.
    Pathway { threads: u32 },
}

impl Peer {
    pub(super) fn name(self) -> &'static str {
        match self {
            Peer::Bytewax { .. } => "bytewax",
            Peer::Pathway { .. } => "pathway",
        }
    }
}

/// Runs query `name` (`q5` or `q7`) in `peer` to the end of `input`: its
/// source stops there, it writes every window's result and exits. Returns
/// the sample and the output topic.
pub(super) fn run_peer(
    python: &Path,
    broker: &str,
    peer: Peer,
    name: &str,
    input: &str,
    run: usize,
) -> anyhow::Result<(Sample, String)> {
    let tool = peer.name();
    let output = format!("{input}-{tool}-{name}-{run}-out");
    create_topic(broker, &output, 8)?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("benches/{tool}/nexmark.py"));
    let mut command = Command::new(python);
    command
        .arg(&script)
        .args(["--query", name, "--broker", broker, "--input", input])
        .args(["--output", &output]);
    match peer {
        Peer::Bytewax { processes, workers } => command
            .args(["--processes", &processes.to_string()])
            .args(["--workers", &workers.to_string()]),
        Peer::Pathway { threads } => command
            .args(["--threads", &threads.to_string()])
            .args(["--group", &format!("{tool}-{input}-{name}-{run}")]),
    };
    let started = Instant::now();
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", python.display()))?;
    let pid = libc::pid_t::try_from(child.id())?;
    // `wait4` gives the CPU time of the process and of the cluster
    // members it waited for, and the largest peak RSS of one of them (for
    // a cluster of several processes, one member's, not their sum).
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is valid, and `wait4` fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet waited for; both pointers are
    // to live locals.
    if unsafe { libc::wait4(pid, &mut status, 0, &mut usage) } != pid {
        bail!(
            "waiting for {tool} {name}: {}",
            std::io::Error::last_os_error()
        );
    }
    let secs = started.elapsed().as_secs_f64();
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!(
            "{tool} {name} failed: {}",
            if libc::WIFSIGNALED(status) {
                format!("killed by signal {}", libc::WTERMSIG(status))
            } else {
                format!("exit code {}", libc::WEXITSTATUS(status))
            }
        );
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

/// Compares a peer's results (the rows of topic `peer`) with streamfold's
/// (`ours`, the output of the chained query `name`), window by window;
/// fails on a window that differs or that only one of them has. Returns
/// the number of windows compared.
pub(super) fn check(broker: &str, name: &str, peer: &str, ours: &str) -> anyhow::Result<usize> {
    let theirs = rows(broker, peer, |v| {
        let f = |k: &str| v[k].as_i64();
        Some((
            f("window_end")?,
            match name {
                "q5" => vec![f("auction")?, f("count")?],
                _ => vec![f("auction")?, f("bidder")?, f("price")?],
            },
            // Pathway writes a change stream: a row is added (`diff` 1) and
            // may later be withdrawn (`diff` -1) when an update replaces it.
            v["diff"].as_i64().unwrap_or(1),
        ))
    })?;
    let mine = rows(broker, ours, |v| {
        let f = |k: &str| v[k].as_i64();
        let end: i64 = v["key"].as_str()?.parse().ok()?;
        Some((
            end,
            match name {
                "q5" => vec![
                    v["top_hot_key"].as_str()?.parse().ok()?,
                    f("top_hot_count")?,
                ],
                _ => vec![
                    f("highest_top_auction")?,
                    f("highest_top_bidder")?,
                    f("highest_top_price")?,
                ],
            },
            1,
        ))
    })?;
    // The closers (auction 0, in every partition) make windows of their
    // own, which streamfold computes per partition: left out.
    let closer = |row: &Vec<i64>| row[0] == 0;
    let theirs: Rows = theirs.into_iter().filter(|(_, r)| !closer(r)).collect();
    let mine: Rows = mine.into_iter().filter(|(_, r)| !closer(r)).collect();
    let mut compared = 0;
    for (end, row) in &mine {
        if let Some(other) = theirs.get(end) {
            if other != row {
                bail!(
                    "{name}: the window ending at {end} differs: streamfold {row:?}, \
                     {peer} {other:?}"
                );
            }
            compared += 1;
        }
    }
    let (only_ours, only_theirs) = (mine.len() - compared, theirs.len() - compared);
    if only_ours + only_theirs > 0 || compared == 0 {
        let first = |a: &Rows, b: &Rows| a.keys().find(|k| !b.contains_key(k)).copied();
        bail!(
            "{name}: {compared} windows equal; {only_ours} only in streamfold's output (first \
             ending at {:?}), {only_theirs} only in {peer} (first ending at {:?})",
            first(&mine, &theirs),
            first(&theirs, &mine)
        );
    }
    Ok(compared)
}

/// Each window's result in `topic` as it is now, each value parsed by
/// `row` into (window end, result, change: 1 added, -1 withdrawn). The
/// changes of a (window, result) are summed, in whatever order the
/// topic's partitions give them; a window must be left with one result
/// (a repeat of it, which at-least-once allows, counts once).
fn rows(
    broker: &str,
    topic: &str,
    row: impl Fn(&serde_json::Value) -> Option<(i64, Vec<i64>, i64)>,
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
    let mut changes: BTreeMap<(i64, Vec<i64>), i64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while left > 0 {
        if Instant::now() > deadline {
            bail!("{topic}: not read to its end in two minutes");
        }
        match reader.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap_or_default())
                    .with_context(|| format!("{topic} offset {}: not JSON", m.offset()))?;
                let parsed = row(&v).with_context(|| {
                    format!("{topic} offset {}: unexpected row {v}", m.offset())
                })?;
                let (end, picked, change) = parsed;
                *changes.entry((end, picked)).or_default() += change;
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => left -= 1,
            Some(Err(e)) => bail!("reading {topic}: {e}"),
            None => {}
        }
    }
    let mut out = Rows::new();
    if let Some(((end, picked), n)) = changes.iter().find(|(_, n)| **n < 0) {
        bail!(
            "{topic}: the window ending at {end} withdraws {picked:?} {} more times than it adds it",
            -n
        );
    }
    for ((end, picked), _) in changes.into_iter().filter(|(_, n)| *n > 0) {
        if let Some(before) = out.insert(end, picked.clone()) {
            bail!("{topic}: two results for the window ending at {end}: {before:?}, {picked:?}");
        }
    }
    Ok(out)
}
