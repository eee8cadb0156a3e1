//! streamfold as the bench runs it: each query's config, the
//! `streamfold run` process, its admin endpoint's metrics, and readers of
//! its output.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use streamfold::generate::NEXMARK_BID_SCHEMA;

use super::input::Encoding;
use super::queries::{first_stage_name, query, second_stage};
use super::{Killed, Sample, create_topic, flush, free_port, registry, usage};

pub(super) fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// Sum of a metric's samples in a scrape.
pub(super) fn metric(scrape: &str, name: &str) -> f64 {
    metric_where(scrape, name, &[])
}

/// Sum of the samples of a metric whose labels include every one of
/// `labels` (`pipeline="q5"`).
pub(super) fn metric_where(scrape: &str, name: &str, labels: &[&str]) -> f64 {
    scrape
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        // An empty f64 sum is -0.0.
        .fold(0.0, |a, b| a + b)
}

/// Starts `streamfold run` on one query (its config written under `dir`,
/// its topics named after `input` and `tag`); returns the child, the port
/// of its admin endpoint, its output topic and, for a chained query, the
/// flush result of its second stage.
pub(super) fn spawn_query(
    streamfold: &Path,
    dir: &Path,
    broker: &str,
    name: &str,
    input: &str,
    encoding: Encoding,
    tag: &str,
) -> anyhow::Result<(Killed, u16, String, Option<flush::Flush>)> {
    let body = query(name).context("unknown query")?;
    let (body, extra) = match encoding {
        Encoding::AvroFramed => (
            format!("input_framing = \"schema-registry\"\n{body}"),
            format!("\n[schema_registry]\nurl = \"{}\"\n", registry::url()?),
        ),
        _ => (body.to_string(), String::new()),
    };
    let (config, output, mid) = write_config(
        dir,
        broker,
        name,
        input,
        encoding.format(),
        tag,
        &body,
        &extra,
    )?;
    let flush = mid
        .map(|mid| flush::Flush::prepare(streamfold, &config, &first_stage_name(name), &mid))
        .transpose()?;
    let (child, admin) = spawn_streamfold(streamfold, &config)?;
    Ok((child, admin, output, flush))
}

/// Writes the config of pipeline `name` (`body`: its window and
/// aggregates; `extra`: more tables) reading `input` in `format`, and
/// creates its output and dead-letter topics (named after `input`, `name`
/// and `tag`); returns the config's path, the output topic and, for a
/// chained query, the first stage's output topic.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_config(
    dir: &Path,
    broker: &str,
    name: &str,
    input: &str,
    format: &str,
    tag: &str,
    body: &str,
    extra: &str,
) -> anyhow::Result<(PathBuf, String, Option<String>)> {
    let output = format!("{input}-{name}-{tag}-out");
    let dlq = format!("{input}-{name}-{tag}-dlq");
    create_topic(broker, &output, 8)?;
    create_topic(broker, &dlq, 1)?;
    std::fs::write(dir.join("bid.avsc"), NEXMARK_BID_SCHEMA)?;
    let config = dir.join(format!("{input}-{name}-{tag}.toml"));
    // A chained query: the first stage writes to a topic of its own, of
    // one partition, so that one task of the second stage reads every
    // result of a window; the second writes the output (JSON: a row per
    // window, read back to check a peer's results).
    let (head, first_output, second, mid) = match second_stage(name) {
        Some(stage) => {
            let mid = format!("{input}-{name}-{tag}-mid");
            create_topic(broker, &mid, 1)?;
            (
                format!("[[pipelines]]\nname = \"{}\"", first_stage_name(name)),
                mid.clone(),
                format!(
                    "\n[[pipelines]]\nname = \"{name}\"\ninput = {{ pipeline = \"{}\" }}\n\
                     output_topic = \"{output}\"\noutput_format = \"json\"\n\
                     dead_letter_topic = \"{dlq}\"\n{stage}\n",
                    first_stage_name(name)
                ),
                Some(mid),
            )
        }
        None => (
            format!("[pipeline]\nname = \"{name}\""),
            output.clone(),
            String::new(),
            None,
        ),
    };
    std::fs::write(
        &config,
        format!(
            r#"[kafka]
bootstrap_servers = "{broker}"
group_id = "bench-{input}-{name}-{tag}"

{head}
input_topic = "{input}"
input_schema = "bid.avsc"
input_format = "{format}"
output_topic = "{first_output}"
dead_letter_topic = "{dlq}"
event_time = {{ source = "field", field = "date_time" }}
{body}
{second}
[batch]
max_records = 4096

[log]
level = "warn"
{extra}"#
        ),
    )?;
    Ok((config, output, mid))
}

/// Starts `streamfold run --config <config>` with its admin endpoint on a
/// free port; returns the child and the port.
pub(super) fn spawn_streamfold(streamfold: &Path, config: &Path) -> anyhow::Result<(Killed, u16)> {
    let admin = free_port()?;
    let child = Killed(
        Command::new(streamfold)
            .args([
                "run",
                "--admin-addr",
                &format!("127.0.0.1:{admin}"),
                "--config",
            ])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting streamfold run")?,
    );
    Ok((child, admin))
}

/// How often a run's progress is read from streamfold's `/metrics`. Each
/// scrape costs the process it measures about a quarter of a millisecond
/// of CPU (every series encoded, `/proc` read), which a peer, measured
/// from outside, does not pay; at 20 ms it was about 4% of q7's CPU. At
/// 100 ms it is under 1%.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// How often once nine tenths of the input is processed, so that a run's
/// end is known to within 10 ms rather than 100 (a ceiling's end is its
/// exit, known exactly; at 100 ms a q0 run of 1.5 s was measured 50 ms
/// long on average). The last tenth of a run of a million bids takes
/// about 150 ms: some 15 scrapes, under 0.3% of its CPU.
const END_PROBE_INTERVAL: Duration = Duration::from_millis(10);

/// Runs one streamfold query to completion: every record processed and
/// every output acknowledged.
pub(super) fn run_query(
    streamfold: &Path,
    dir: &Path,
    broker: &str,
    name: &str,
    encoding: Encoding,
    total: usize,
    run: usize,
) -> anyhow::Result<Sample> {
    let started = Instant::now();
    let (mut child, admin, _, flush) = spawn_query(
        streamfold,
        dir,
        broker,
        name,
        encoding.topic(),
        encoding,
        &run.to_string(),
    )?;
    let pid = child.0.id();
    let deadline = started + Duration::from_secs(1800);
    let mut produced = -1.0;
    let mut last = (0.0, (0.0, 0.0));
    // A chained query's first-stage results, and since when that many.
    let mut first_results = (0.0, Instant::now());
    let mut flushed = false;
    loop {
        if Instant::now() > deadline {
            bail!("{name}: not done after 30 minutes");
        }
        if let Some(status) = child.0.try_wait()? {
            bail!("{name}: streamfold exited ({status}) before the run was done; its log is above");
        }
        let Some(scrape) = http_get(admin, "/metrics") else {
            std::thread::sleep(PROBE_INTERVAL);
            continue;
        };
        let (processed, now_produced) = match second_stage(name) {
            None => (
                metric(&scrape, "streamfold_records_processed_total"),
                metric(&scrape, "streamfold_records_produced_total"),
            ),
            // Chained: every bid through the first stage, every result it
            // wrote through the second, and the second's output settled.
            Some(_) => {
                let first = format!("pipeline=\"{}\"", first_stage_name(name));
                let second = format!("pipeline=\"{name}\"");
                let results = metric_where(
                    &scrape,
                    "streamfold_records_produced_total",
                    &[&first, "kind=\"window\""],
                );
                let read = metric_where(&scrape, "streamfold_records_processed_total", &[&second]);
                let bids = metric_where(&scrape, "streamfold_records_processed_total", &[&first]);
                // Once the first stage has written every result (they
                // stopped growing, and the second stage has read them
                // all), the flush result closes the second stage's windows.
                let settled = bids >= total as f64 && read >= results && results > 0.0;
                if !settled || results != first_results.0 {
                    first_results = (results, Instant::now());
                } else if !flushed && first_results.1.elapsed() >= Duration::from_millis(500) {
                    flush
                        .as_ref()
                        .context("a chained query's flush")?
                        .write(broker)?;
                    flushed = true;
                }
                (
                    if flushed && read > results { bids } else { 0.0 },
                    metric_where(&scrape, "streamfold_records_produced_total", &[&second]),
                )
            }
        };
        // Done once every record is processed and the output has not
        // grown for a second (a chained query's second stage writes when
        // the last results reach it); the time and CPU are those of the
        // last output written.
        if now_produced != produced || processed < total as f64 {
            last = (started.elapsed().as_secs_f64(), usage(pid)?);
            produced = now_produced;
        } else if (now_produced > 0.0 || second_stage(name).is_none())
            && started.elapsed().as_secs_f64() - last.0 >= 1.0
        {
            let (secs, (cpu_secs, peak_rss_mib)) = last;
            if second_stage(name).is_some() {
                // What the second stage reads: one record per result.
                eprintln!(
                    "run {run} {name}: its first stage wrote {:.0} results ({:.2} per event)",
                    first_results.0,
                    first_results.0 / total as f64
                );
            }
            return Ok(Sample {
                secs,
                cpu_secs,
                peak_rss_mib,
                checkpoint_bytes: Some(metric(&scrape, "streamfold_checkpoint_bytes_sum")),
            });
        }
        // Near the end, and not yet waiting out the second of no change.
        let ending =
            processed >= total as f64 * 0.9 && started.elapsed().as_secs_f64() - last.0 < 0.1;
        std::thread::sleep(if ending {
            END_PROBE_INTERVAL
        } else {
            PROBE_INTERVAL
        });
    }
}

/// A consumer (of group `group`, which never commits) that reads the 8
/// partitions of an output topic from the start, each record as soon as
/// it is there.
pub(super) fn output_reader(
    broker: &str,
    group: &str,
    output: &str,
) -> anyhow::Result<BaseConsumer> {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", group)
        .set("fetch.wait.max.ms", "5")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..8 {
        tpl.add_partition_offset(output, p, Offset::Beginning)?;
    }
    reader.assign(&tpl)?;
    Ok(reader)
}

/// Whether the checker's group has committed the high watermark of every
/// partition of `topic` (false while the topic does not exist yet).
pub(super) fn at_end(checker: &BaseConsumer, topic: &str) -> anyhow::Result<bool> {
    committed_to(checker, topic, 0)
}

/// Whether the checker's group has committed at most `behind` records
/// short of the high watermark of every partition of `topic`.
pub(super) fn committed_to(
    checker: &BaseConsumer,
    topic: &str,
    behind: i64,
) -> anyhow::Result<bool> {
    let timeout = Duration::from_secs(5);
    let md = checker.fetch_metadata(Some(topic), timeout)?;
    let Some(t) = md.topics().first().filter(|t| !t.partitions().is_empty()) else {
        return Ok(false);
    };
    let mut tpl = TopicPartitionList::new();
    for p in t.partitions() {
        tpl.add_partition(topic, p.id());
    }
    let committed = checker.committed_offsets(tpl, timeout)?;
    for e in committed.elements() {
        let (_, high) = checker.fetch_watermarks(topic, e.partition(), timeout)?;
        let done = match e.offset() {
            Offset::Offset(o) => o >= high - behind,
            _ => high <= behind,
        };
        if !done {
            return Ok(false);
        }
    }
    Ok(true)
}
