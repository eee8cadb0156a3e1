//! Nexmark through Kafka: streamfold beside the ceilings of raw librdkafka,
//! every figure from one run of this command, against one nisshi broker it
//! starts on loopback.
//!
//!     cargo run --release --bin streamfold-bench -- --events 1000000
//!
//! It pre-loads a topic with N Nexmark bids (JSON; and an Avro topic when
//! an `-avro` query is asked for) over P partitions plus one bid per
//! partition far ahead in event time (it closes every window), then times
//! catch-up from the start of the topic to the last output acknowledged,
//! for: ceiling A (raw consumer reading every record), ceiling B (raw
//! consume + produce of every record), streamfold q0, q1, q2, q5, q7 (as
//! `streamfold run` child processes) and Quix Streams q5 and q7
//! (benches/quix/nexmark.py). `q5-latency` publishes bids live at half of
//! q5's measured rate and reads each window back to time it. Each is run
//! `--runs` times; the table shows the median with min–max of events/s,
//! CPU-seconds per million events, and peak RSS of the measured process.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers as _;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use streamfold::generate::{NEXMARK_BID_SCHEMA, nexmark_bid_json, nexmark_bids};

mod restart;

#[derive(Debug, Parser)]
#[command(about = "Nexmark benchmarks: streamfold against raw librdkafka, on a local nisshi")]
struct Args {
    /// Bids per run.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Partitions of the input topic.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Repetitions of each measurement (median reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// What to run, comma-separated: ceiling-a, ceiling-b; q0, q1, q2, q5,
    /// q7 (streamfold, JSON input; `-avro` after a name: Avro input);
    /// q5-latency (after q5: latency at half its rate); quix-q5, quix-q7
    /// (Quix Streams); restart (restart time after SIGKILL, with and
    /// without checkpoints, for each of --restart-windows).
    #[arg(
        long,
        default_value = "ceiling-a,ceiling-b,q0,q1,q2,q5,q7,q0-avro,q5-avro,q5-latency,quix-q5,quix-q7,restart"
    )]
    only: String,
    /// Window sizes of the restart measurement.
    #[arg(long, default_value = "1m,1h,1d", value_delimiter = ',')]
    restart_windows: Vec<String>,
    /// Bids per second of event time in the restart measurement's input,
    /// the same for every window size.
    #[arg(long, default_value_t = 10.0)]
    restart_rate: f64,
    /// Rate (bids/s) of the q5 latency measurement; default half of the
    /// median q5 throughput measured in this run.
    #[arg(long)]
    latency_rate: Option<f64>,
    /// Seconds of live input per q5 latency measurement.
    #[arg(long, default_value_t = 40)]
    latency_secs: u64,
    /// The Python that has Quix Streams (benches/quix/requirements.txt).
    #[arg(long, default_value = "target/bench-venv/bin/python")]
    quix_python: PathBuf,
    /// The streamfold binary (default: beside this one).
    #[arg(long)]
    streamfold: Option<PathBuf>,
    /// Write the table (Markdown) here as well.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Internal: run a ceiling in this process (`a` or `b`).
    #[arg(long, hide = true)]
    ceiling: Option<String>,
    #[arg(long, hide = true)]
    broker: Option<String>,
    #[arg(long, hide = true)]
    topic: Option<String>,
    #[arg(long, hide = true)]
    expect: Option<usize>,
}

/// The pipeline part of each query's config.
fn query(name: &str) -> Option<&'static str> {
    Some(match name {
        // Pass-through: each bid its own 1 ms window per (auction, bidder),
        // so about one output per input through decode, window, encode,
        // produce.
        "q0" => {
            r#"group_by = ["auction", "bidder"]
window = { kind = "tumbling", size = "1ms" }
aggregates = [{ fn = "count" }, { fn = "max", field = "price" }]"#
        }
        // Currency conversion (map).
        "q1" => {
            r#"derive = [{ name = "price_eur", expr = "double(price) * 0.908" }]
group_by = ["auction", "bidder"]
window = { kind = "tumbling", size = "1ms" }
aggregates = [{ fn = "max", field = "price_eur" }]"#
        }
        // Filter.
        "q2" => {
            r#"where = "auction % 123 == 0"
group_by = ["auction", "bidder"]
window = { kind = "tumbling", size = "1ms" }
aggregates = [{ fn = "max", field = "price" }]"#
        }
        // Bids per auction, hopping 10 s every 2 s.
        "q5" => {
            r#"group_by = "auction"
window = { kind = "hopping", size = "10s", advance = "2s" }
aggregates = [{ fn = "count" }]"#
        }
        // Highest bid per tumbling 10 s window: a global aggregate. Each
        // partition computes its window's maximum (no single hot
        // partition), so each window has one partial per partition; the
        // reader takes the maximum of those P rows.
        "q7" => {
            r#"derive = [{ name = "all", expr = "'all'" }]
group_by = "all"
window = { kind = "tumbling", size = "10s" }
aggregates = [{ fn = "max", field = "price" }, { fn = "count" }]"#
        }
        _ => return None,
    })
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_broker() -> anyhow::Result<(Killed, String)> {
    let port = free_port()?;
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new("nisshi")
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://nisshi/"])
        .args(["--group-initial-rebalance-delay", "0s", "--silent"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting nisshi (install: see .ci/test.sh or ../shared/TOOLS.md)")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("nisshi did not start on port {port}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((Killed(child), format!("127.0.0.1:{port}")))
}

fn create_topic(broker: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    // Quix Streams derives its changelog topics' retention from the input's
    // `retention.ms`, which nisshi reports only when it was set.
    let out = Command::new("nisshi")
        .args(["topic", "create", topic, "--partitions"])
        .arg(partitions.to_string())
        .args(["--config", "retention.ms=604800000"])
        .args(["--broker", &format!("tcp://{broker}")])
        .output()?;
    if !out.status.success() {
        bail!("creating {topic}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Input encodings of the pre-loaded topics.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Encoding {
    Json,
    Avro,
}

impl Encoding {
    fn topic(self) -> &'static str {
        match self {
            Encoding::Json => "bids",
            Encoding::Avro => "bids-avro",
        }
    }
}

/// A producer to one topic that waits out a full queue.
struct Publisher {
    producer: ThreadedProducer<DefaultProducerContext>,
    topic: String,
}

impl Publisher {
    fn new(broker: &str, topic: &str) -> anyhow::Result<Self> {
        Ok(Self {
            producer: ClientConfig::new()
                .set("bootstrap.servers", broker)
                .set("linger.ms", "20")
                .set("batch.num.messages", "10000")
                .set("queue.buffering.max.messages", "1000000")
                .create()?,
            topic: topic.to_string(),
        })
    }

    /// Sends one record (to `partition`, or by its key).
    fn send(&self, partition: Option<i32>, key: &str, value: &[u8]) -> anyhow::Result<()> {
        loop {
            let mut record = BaseRecord::to(&self.topic).key(key).payload(value);
            if let Some(p) = partition {
                record = record.partition(p);
            }
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((e, _)) if e.to_string().contains("Queue full") => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => bail!("producing to {}: {e}", self.topic),
            }
        }
    }

    /// Waits until every record sent is acknowledged.
    fn flush(&self) -> anyhow::Result<()> {
        self.producer.flush(Duration::from_secs(120))?;
        Ok(())
    }
}

/// A bid that closes windows: auction, bidder and price 0, channel
/// `closer`.
fn closer() -> anyhow::Result<nexmark::event::Bid> {
    let mut closer = nexmark_bids().next().context("no bid generated")?;
    (closer.auction, closer.bidder, closer.price) = (0, 0, 0);
    closer.channel = "closer".into();
    Ok(closer)
}

/// Publishes `n` Nexmark bids, then one closer per partition, in
/// `encoding`; returns the number of records in the topic.
fn preload(
    broker: &str,
    topic: &str,
    n: usize,
    partitions: i32,
    encoding: Encoding,
) -> anyhow::Result<usize> {
    let publisher = Publisher::new(broker, topic)?;
    let schema = apache_avro::Schema::parse_str(NEXMARK_BID_SCHEMA)?;
    let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&schema).build()?;
    let encode = |b: &nexmark::event::Bid, date_time: u64| -> anyhow::Result<Vec<u8>> {
        Ok(match encoding {
            Encoding::Json => nexmark_bid_json(b, date_time).into_bytes(),
            Encoding::Avro => {
                use apache_avro::types::Value;
                let s = |v: &str| Value::String(v.to_string());
                writer.write_value_to_vec(Value::Record(vec![
                    ("auction".into(), Value::Long(b.auction as i64)),
                    ("bidder".into(), Value::Long(b.bidder as i64)),
                    ("price".into(), Value::Long(b.price as i64)),
                    ("channel".into(), s(&b.channel)),
                    ("url".into(), s(&b.url)),
                    ("date_time".into(), Value::TimestampMillis(date_time as i64)),
                    ("extra".into(), s(&b.extra)),
                ]))?
            }
        })
    };
    let mut last = 0u64;
    for b in nexmark_bids().take(n) {
        last = last.max(b.date_time);
        publisher.send(None, &b.auction.to_string(), &encode(&b, b.date_time)?)?;
    }
    let closer = closer()?;
    // Ten minutes past the last bid closes every window of the queries
    // (none allows lateness) and stays within the hour ahead of the wall
    // clock that `pipeline.max_event_time_ahead` allows by default (the
    // generator's bids start at the wall clock).
    for p in 0..partitions {
        publisher.send(Some(p), "closer", &encode(&closer, last + 600_000)?)?;
    }
    publisher.flush()?;
    Ok(n + partitions as usize)
}

/// What one measured run used.
#[derive(Debug, Clone, Copy)]
struct Sample {
    secs: f64,
    cpu_secs: f64,
    peak_rss_mib: f64,
    /// Checkpoint bytes written (streamfold only).
    checkpoint_bytes: Option<f64>,
}

/// CPU seconds (user + system) and peak RSS of a live process.
fn usage(pid: u32) -> anyhow::Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = &stat[stat.rfind(')').context("stat format")? + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let hwm_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    // Clock ticks are 100 per second on Linux (USER_HZ).
    Ok((ticks / 100.0, hwm_kib / 1024.0))
}

fn http_get(port: u16, path: &str) -> Option<String> {
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
fn metric(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        // An empty f64 sum is -0.0.
        .fold(0.0, |a, b| a + b)
}

/// Starts `streamfold run` on one query (its config written under `dir`,
/// its topics named after `input` and `tag`); returns the child and the
/// port of its admin endpoint.
fn spawn_query(
    streamfold: &Path,
    dir: &Path,
    broker: &str,
    name: &str,
    input: &str,
    encoding: Encoding,
    tag: &str,
) -> anyhow::Result<(Killed, u16, String)> {
    let body = query(name).context("unknown query")?;
    let format = match encoding {
        Encoding::Json => "json",
        Encoding::Avro => "avro",
    };
    let (config, output) = write_config(dir, broker, name, input, format, tag, body, "")?;
    let (child, admin) = spawn_streamfold(streamfold, &config)?;
    Ok((child, admin, output))
}

/// Writes the config of pipeline `name` (`body`: its window and
/// aggregates; `extra`: more tables) reading `input` in `format`, and
/// creates its output and dead-letter topics (named after `input`, `name`
/// and `tag`); returns the config's path and the output topic.
#[allow(clippy::too_many_arguments)]
fn write_config(
    dir: &Path,
    broker: &str,
    name: &str,
    input: &str,
    format: &str,
    tag: &str,
    body: &str,
    extra: &str,
) -> anyhow::Result<(PathBuf, String)> {
    let output = format!("{input}-{name}-{tag}-out");
    let dlq = format!("{input}-{name}-{tag}-dlq");
    create_topic(broker, &output, 8)?;
    create_topic(broker, &dlq, 1)?;
    std::fs::write(dir.join("bid.avsc"), NEXMARK_BID_SCHEMA)?;
    let config = dir.join(format!("{input}-{name}-{tag}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"[kafka]
bootstrap_servers = "{broker}"
group_id = "bench-{input}-{name}-{tag}"

[pipeline]
name = "{name}"
input_topic = "{input}"
input_schema = "bid.avsc"
input_format = "{format}"
output_topic = "{output}"
dead_letter_topic = "{dlq}"
event_time = {{ source = "field", field = "date_time" }}
{body}

[batch]
max_records = 4096

[log]
level = "warn"
{extra}"#
        ),
    )?;
    Ok((config, output))
}

/// Starts `streamfold run --config <config>` with its admin endpoint on a
/// free port; returns the child and the port.
fn spawn_streamfold(streamfold: &Path, config: &Path) -> anyhow::Result<(Killed, u16)> {
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

/// Runs one streamfold query to completion: every record processed and
/// every output acknowledged.
fn run_query(
    streamfold: &Path,
    dir: &Path,
    broker: &str,
    name: &str,
    encoding: Encoding,
    total: usize,
    run: usize,
) -> anyhow::Result<Sample> {
    let started = Instant::now();
    let (child, admin, _) = spawn_query(
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
    loop {
        if Instant::now() > deadline {
            bail!("{name}: not done after 30 minutes");
        }
        let scrape = http_get(admin, "/metrics").unwrap_or_default();
        let processed = metric(&scrape, "streamfold_records_processed_total");
        let now_produced = metric(&scrape, "streamfold_records_produced_total");
        if processed >= total as f64 && now_produced == produced {
            let secs = started.elapsed().as_secs_f64();
            let (cpu_secs, peak_rss_mib) = usage(pid)?;
            return Ok(Sample {
                secs,
                cpu_secs,
                peak_rss_mib,
                checkpoint_bytes: Some(metric(&scrape, "streamfold_checkpoint_bytes_sum")),
            });
        }
        produced = if processed >= total as f64 {
            now_produced
        } else {
            -1.0
        };
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// End-to-end latency of q5 at a steady `rate` (bids/s) for `secs`: bids
/// are published live with event time = wall-clock time; each final
/// window's latency is the time it is read from the output topic minus its
/// end. Windows ending in the first 12 s (not yet full) are left out.
/// Returns (p50, p99, windows) in milliseconds.
fn q5_latency(
    streamfold: &Path,
    dir: &Path,
    broker: &str,
    rate: f64,
    secs: u64,
    run: usize,
) -> anyhow::Result<(f64, f64, usize)> {
    let input = format!("bids-live-{run}");
    create_topic(broker, &input, 8)?;
    let (_child, admin, output) = spawn_query(
        streamfold,
        dir,
        broker,
        "q5",
        &input,
        Encoding::Json,
        "live",
    )?;
    let ready = Instant::now() + Duration::from_secs(60);
    while !http_get(admin, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
        if Instant::now() > ready {
            bail!("q5 (latency) not ready after 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let reader = output_reader(broker, &format!("latency-reader-{run}"), &output)?;
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    };
    let begin = now_ms();
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (broker, input, stop) = (broker.to_string(), input.clone(), stop.clone());
        std::thread::spawn(move || -> anyhow::Result<()> {
            let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
                .set("bootstrap.servers", &broker)
                .set("linger.ms", "1")
                .create()?;
            let started = Instant::now();
            for (i, b) in nexmark_bids().enumerate() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                // Paced: bid i leaves at i / rate seconds.
                let due = started + Duration::from_secs_f64(i as f64 / rate);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let value = nexmark_bid_json(&b, now_ms());
                let key = b.auction.to_string();
                while producer
                    .send(BaseRecord::to(&input).key(&key).payload(&value))
                    .is_err()
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            producer.flush(Duration::from_secs(30))?;
            Ok(())
        })
    };
    let mut latencies = Vec::new();
    let until = Instant::now() + Duration::from_secs(secs);
    // On a loaded machine (or a debug build) the first full window may
    // arrive after `secs`: keep publishing and reading a while longer for
    // it, rather than report nothing.
    let grace = until + Duration::from_secs(30);
    while Instant::now() < until || (latencies.is_empty() && Instant::now() < grace) {
        let Some(m) = reader.poll(Duration::from_millis(50)) else {
            continue;
        };
        let m = m?;
        let read = now_ms();
        let end = m
            .headers()
            .and_then(|h| {
                h.iter()
                    .find(|h| h.key == "streamfold.window.end")
                    .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse::<u64>().ok())
            })
            .context("output without streamfold.window.end")?;
        if end > begin + 12_000 {
            latencies.push(read.saturating_sub(end) as f64);
        }
    }
    stop.store(true, Ordering::Relaxed);
    publisher
        .join()
        .map_err(|_| anyhow::anyhow!("publisher panicked"))??;
    if latencies.is_empty() {
        bail!("q5 (latency): no full window closed in {} s", secs + 30);
    }
    latencies.sort_by(f64::total_cmp);
    let q = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    Ok((q(0.5), q(0.99), latencies.len()))
}

/// A consumer (of group `group`, which never commits) that reads the 8
/// partitions of an output topic from the start, each record as soon as
/// it is there.
fn output_reader(broker: &str, group: &str, output: &str) -> anyhow::Result<BaseConsumer> {
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

/// Runs one query in Quix Streams (benches/quix/nexmark.py) until its
/// group has committed the end of every topic it reads: Quix Streams
/// commits only what it processed and whose output was flushed.
fn run_quix(
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

/// Whether the checker's group has committed the high watermark of every
/// partition of `topic` (false while the topic does not exist yet).
fn at_end(checker: &BaseConsumer, topic: &str) -> anyhow::Result<bool> {
    committed_to(checker, topic, 0)
}

/// Whether the checker's group has committed at most `behind` records
/// short of the high watermark of every partition of `topic`.
fn committed_to(checker: &BaseConsumer, topic: &str, behind: i64) -> anyhow::Result<bool> {
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

/// A ceiling as a child process of this binary, which exits once done.
fn run_ceiling(which: &str, broker: &str, input: &str, total: usize) -> anyhow::Result<Sample> {
    let started = Instant::now();
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--ceiling", which, "--broker", broker, "--topic", input])
        .args(["--expect", &total.to_string()])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut out = String::new();
    child
        .stdout
        .take()
        .context("child stdout")?
        .read_to_string(&mut out)?;
    let status = child.wait()?;
    if !status.success() {
        bail!("ceiling {which} failed: {status}");
    }
    let secs = started.elapsed().as_secs_f64();
    let (cpu, rss) = out.trim().split_once(' ').context("ceiling output")?;
    Ok(Sample {
        secs,
        cpu_secs: cpu.parse()?,
        peak_rss_mib: rss.parse()?,
        checkpoint_bytes: None,
    })
}

/// In the ceiling child: read every record (A), or read and produce every
/// record unchanged and wait for the acknowledgements (B). Prints its CPU
/// seconds and peak RSS.
fn ceiling(which: &str, broker: &str, topic: &str, expect: usize) -> anyhow::Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set(
            "group.id",
            format!("ceiling-{which}-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let producer: Option<ThreadedProducer<DefaultProducerContext>> = (which == "b")
        .then(|| {
            ClientConfig::new()
                .set("bootstrap.servers", broker)
                .set("linger.ms", "5")
                .set("enable.idempotence", "true")
                .create()
        })
        .transpose()?;
    let out = format!("{topic}-ceiling-b-{}", std::process::id());
    if producer.is_some() {
        create_topic(broker, &out, 8)?;
    }
    let mut seen = 0;
    while seen < expect {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                seen += 1;
                if let Some(p) = &producer {
                    loop {
                        let mut r = BaseRecord::to(&out).partition(m.partition());
                        if let Some(k) = m.key() {
                            r = r.key(k);
                        }
                        if let Some(v) = m.payload() {
                            r = r.payload(v);
                        }
                        match p.send(r) {
                            Ok(()) => break,
                            Err(_) => p.poll(Duration::from_millis(1)),
                        }
                    }
                }
            }
            Some(Err(e)) => bail!("consume: {e}"),
            None => {}
        }
    }
    if let Some(p) = &producer {
        p.flush(Duration::from_secs(120))?;
    }
    let (cpu, rss) = usage(std::process::id())?;
    println!("{cpu} {rss}");
    Ok(())
}

fn stats(samples: &[f64]) -> (f64, f64, f64) {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(which) = &args.ceiling {
        return ceiling(
            which,
            args.broker.as_deref().context("--broker")?,
            args.topic.as_deref().context("--topic")?,
            args.expect.context("--expect")?,
        );
    }
    let streamfold = match &args.streamfold {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("binary directory")?
            .join("streamfold"),
    };
    let (_broker, broker) = start_broker()?;
    let dir = std::env::temp_dir().join(format!("streamfold-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let names: Vec<&str> = args.only.split(',').map(str::trim).collect();
    let mut encodings = vec![Encoding::Json];
    if names.iter().any(|n| n.ends_with("-avro")) {
        encodings.push(Encoding::Avro);
    }
    let mut total = 0;
    for encoding in encodings {
        let input = encoding.topic();
        create_topic(&broker, input, args.partitions)?;
        let t = Instant::now();
        total = preload(
            &broker,
            input,
            if names.iter().all(|n| *n == "restart") {
                0
            } else {
                args.events
            },
            args.partitions,
            encoding,
        )?;
        eprintln!(
            "pre-loaded {total} records into {input} ({} partitions) in {:.1}s",
            args.partitions,
            t.elapsed().as_secs_f64()
        );
    }
    let input = Encoding::Json.topic();
    let mut results: BTreeMap<usize, (String, Vec<Sample>)> = BTreeMap::new();
    let mut latencies: Vec<(f64, f64, usize, f64)> = Vec::new();
    let restart_inputs = if names.contains(&"restart") {
        args.restart_windows
            .iter()
            .map(|w| restart::Input::new(w, args.restart_rate, args.partitions))
            .collect::<anyhow::Result<Vec<_>>>()?
    } else {
        Vec::new()
    };
    // Per window: restarts without checkpoints, and with.
    let mut restarts: Vec<[Vec<restart::Restart>; 2]> = restart_inputs
        .iter()
        .map(|_| [Vec::new(), Vec::new()])
        .collect();
    for run in 0..args.runs {
        for (i, &name) in names.iter().enumerate() {
            let sample = match name {
                "ceiling-a" => run_ceiling("a", &broker, input, total)?,
                "ceiling-b" => run_ceiling("b", &broker, input, total)?,
                "q5-latency" => {
                    let q5: Vec<f64> = results
                        .values()
                        .filter(|(n, _)| n == "q5")
                        .flat_map(|(_, s)| s.iter().map(|s| total as f64 / s.secs))
                        .collect();
                    let rate = match args.latency_rate {
                        Some(r) => r,
                        None if q5.is_empty() => {
                            bail!("q5-latency needs q5 before it in --only, or --latency-rate")
                        }
                        None => stats(&q5).0 / 2.0,
                    };
                    let (p50, p99, n) =
                        q5_latency(&streamfold, &dir, &broker, rate, args.latency_secs, run)?;
                    eprintln!(
                        "run {run} q5 latency at {rate:.0} bids/s: p50 {p50:.0} ms, p99 {p99:.0} ms ({n} windows)"
                    );
                    latencies.push((p50, p99, n, rate));
                    continue;
                }
                "restart" => {
                    for (input, measured) in restart_inputs.iter().zip(&mut restarts) {
                        for (checkpoints, samples) in [false, true].into_iter().zip(measured) {
                            let r = restart::measure(
                                &streamfold,
                                &dir,
                                &broker,
                                input,
                                checkpoints,
                                run,
                            )?;
                            eprintln!(
                                "run {run} restart {} (checkpoints {checkpoints}): first result \
                                 {:.2}s, last {:.2}s, {:.0} records re-read",
                                input.window, r.first, r.last, r.reread
                            );
                            samples.push(r);
                        }
                    }
                    continue;
                }
                q if q.starts_with("quix-") => {
                    run_quix(&args.quix_python, &dir, &broker, &q[5..], input, run)?
                }
                q => match q.strip_suffix("-avro") {
                    Some(base) => {
                        run_query(&streamfold, &dir, &broker, base, Encoding::Avro, total, run)?
                    }
                    None => run_query(&streamfold, &dir, &broker, q, Encoding::Json, total, run)?,
                },
            };
            eprintln!(
                "run {run} {name}: {:.2}s, {:.0} events/s",
                sample.secs,
                total as f64 / sample.secs
            );
            results
                .entry(i)
                .or_insert_with(|| (name.to_string(), Vec::new()))
                .1
                .push(sample);
        }
    }
    let mut table = String::new();
    if !results.is_empty() {
        table += &format!(
            "{} events over {} partitions, {} runs each: median (min–max)\n\n\
         | system | events/s | CPU-s per M events | peak RSS MiB | checkpoint KB/s |\n\
         |---|---|---|---|---|\n",
            total, args.partitions, args.runs
        );
        let mut medians = BTreeMap::new();
        for (name, samples) in results.values() {
            let eps: Vec<f64> = samples.iter().map(|s| total as f64 / s.secs).collect();
            let cpu: Vec<f64> = samples
                .iter()
                .map(|s| s.cpu_secs / total as f64 * 1e6)
                .collect();
            let rss: Vec<f64> = samples.iter().map(|s| s.peak_rss_mib).collect();
            let (e, e0, e1) = stats(&eps);
            let (c, c0, c1) = stats(&cpu);
            let (r, r0, r1) = stats(&rss);
            medians.insert(name.clone(), e);
            let ckpt: Option<Vec<f64>> = samples
                .iter()
                .map(|s| Some(s.checkpoint_bytes? / s.secs / 1e3))
                .collect();
            let ckpt = ckpt.map_or("-".to_string(), |k| format!("{:.1}", stats(&k).0));
            table += &format!(
                "| {name} | {e:.0} ({e0:.0}–{e1:.0}) | {c:.2} ({c0:.2}–{c1:.2}) | {r:.0} ({r0:.0}–{r1:.0}) | {ckpt} |\n"
            );
        }
        let ratio = |a: &str, b: &str| match (medians.get(a), medians.get(b)) {
            (Some(x), Some(y)) => format!("{:.2}", x / y),
            _ => "-".into(),
        };
        table += &format!(
            "\nq0 / ceiling B = {}, q5 / ceiling A = {}, \
         q5 / Quix Streams q5 = {}, q7 / Quix Streams q7 = {}\n",
            ratio("q0", "ceiling-b"),
            ratio("q5", "ceiling-a"),
            ratio("q5", "quix-q5"),
            ratio("q7", "quix-q7")
        );
    }
    if !latencies.is_empty() {
        let p50: Vec<f64> = latencies.iter().map(|l| l.0).collect();
        let p99: Vec<f64> = latencies.iter().map(|l| l.1).collect();
        let (a, a0, a1) = stats(&p50);
        let (b, b0, b1) = stats(&p99);
        let windows: usize = latencies.iter().map(|l| l.2).sum();
        table += &format!(
            "\nq5 end-to-end latency (window end to result read back) at {:.0} bids/s, \
             {} s per run, {windows} windows: p50 {a:.0} ms ({a0:.0}–{a1:.0}), \
             p99 {b:.0} ms ({b0:.0}–{b1:.0})\n",
            latencies[0].3, args.latency_secs
        );
    }
    if !restart_inputs.is_empty() {
        table += &format!(
            "\nRestart after SIGKILL (bids per auction in tumbling windows, 90% of one \
             window read at {} bids/s of event time, checkpoints every 1 s), medians: \
             seconds from the kill to the first result / the last result read back, and \
             records the restarted process read\n\n\
             | window | records in the open window | without checkpoints | with checkpoints |\n\
             |---|---|---|---|\n",
            args.restart_rate
        );
        for (input, [replay, ckpt]) in restart_inputs.iter().zip(&restarts) {
            let cell = |r: &[restart::Restart]| {
                let med = |f: fn(&restart::Restart) -> f64| {
                    stats(&r.iter().map(f).collect::<Vec<f64>>()).0
                };
                format!(
                    "{:.2} s / {:.2} s, {:.0} re-read",
                    med(|r| r.first),
                    med(|r| r.last),
                    med(|r| r.reread)
                )
            };
            table += &format!(
                "| {} | {} | {} | {} |\n",
                input.window,
                input.records,
                cell(replay),
                cell(ckpt)
            );
        }
    }
    print!("{table}");
    if let Some(out) = &args.out {
        std::fs::write(out, &table)?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
