//! Nexmark through Kafka: streamfold beside the ceilings of raw librdkafka,
//! every figure from one run of this command, against one nisshi broker it
//! starts on loopback.
//!
//!     cargo run --release --bin streamfold-bench -- --events 1000000
//!
//! For each run it pre-loads a topic with N Nexmark bids (JSON) over P
//! partitions plus one bid per partition far ahead in event time (it
//! closes every window), then times catch-up from the start of the topic
//! to the last output acknowledged, for: ceiling A (raw consumer reading
//! every record), ceiling B (raw consume + produce of every record), and
//! streamfold q0, q1, q2, q5, q7 (as `streamfold run` child processes).
//! Each is run `--runs` times; the table shows the median with min–max of
//! events/s, CPU-seconds per million events, and peak RSS.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

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
    /// What to run, comma-separated: ceiling-a, ceiling-b, q0, q1, q2, q5, q7.
    #[arg(long, default_value = "ceiling-a,ceiling-b,q0,q1,q2,q5,q7")]
    only: String,
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

const BID_SCHEMA: &str = r#"{
  "type": "record", "name": "Bid", "namespace": "nexmark",
  "fields": [
    {"name": "auction", "type": "long"},
    {"name": "bidder", "type": "long"},
    {"name": "price", "type": "long"},
    {"name": "channel", "type": "string"},
    {"name": "url", "type": "string"},
    {"name": "date_time", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "extra", "type": "string"}
  ]
}"#;

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
    let out = Command::new("nisshi")
        .args(["topic", "create", topic, "--partitions"])
        .arg(partitions.to_string())
        .args(["--broker", &format!("tcp://{broker}")])
        .output()?;
    if !out.status.success() {
        bail!("creating {topic}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Publishes `n` Nexmark bids, then one closer per partition; returns the
/// number of records in the topic.
fn preload(broker: &str, topic: &str, n: usize, partitions: i32) -> anyhow::Result<usize> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let config = nexmark::config::NexmarkConfig {
        ..Default::default()
    };
    let bids = nexmark::EventGenerator::new(config)
        .with_type_filter(nexmark::event::EventType::Bid)
        .filter_map(|e| match e {
            nexmark::event::Event::Bid(b) => Some(b),
            _ => None,
        });
    let mut last = 0u64;
    let send = |partition: Option<i32>, key: String, value: String| -> anyhow::Result<()> {
        loop {
            let mut record = BaseRecord::to(topic).key(&key).payload(&value);
            if let Some(p) = partition {
                record = record.partition(p);
            }
            match producer.send(record) {
                Ok(()) => return Ok(()),
                Err((e, _)) if e.to_string().contains("Queue full") => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => bail!("producing to {topic}: {e}"),
            }
        }
    };
    for b in bids.take(n) {
        last = last.max(b.date_time);
        let value = serde_json::json!({
            "auction": b.auction, "bidder": b.bidder, "price": b.price,
            "channel": b.channel, "url": b.url, "date_time": b.date_time, "extra": b.extra,
        })
        .to_string();
        send(None, b.auction.to_string(), value)?;
    }
    for p in 0..partitions {
        let value = serde_json::json!({
            "auction": 0, "bidder": 0, "price": 0, "channel": "closer", "url": "",
            "date_time": last + 3_600_000, "extra": "",
        })
        .to_string();
        send(Some(p), "closer".into(), value)?;
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(n + partitions as usize)
}

/// What one measured run used.
#[derive(Debug, Clone, Copy)]
struct Sample {
    secs: f64,
    cpu_secs: f64,
    peak_rss_mib: f64,
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
        .sum()
}

/// Runs one streamfold query to completion: every record processed and
/// every output acknowledged.
fn run_query(
    streamfold: &Path,
    dir: &Path,
    broker: &str,
    name: &str,
    input: &str,
    total: usize,
    run: usize,
) -> anyhow::Result<Sample> {
    let body = query(name).context("unknown query")?;
    let output = format!("{input}-{name}-{run}-out");
    let dlq = format!("{input}-{name}-{run}-dlq");
    create_topic(broker, &output, 8)?;
    create_topic(broker, &dlq, 1)?;
    std::fs::write(dir.join("bid.avsc"), BID_SCHEMA)?;
    let config = dir.join(format!("{name}-{run}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"[kafka]
bootstrap_servers = "{broker}"
group_id = "bench-{input}-{name}-{run}"

[pipeline]
name = "{name}"
input_topic = "{input}"
input_schema = "bid.avsc"
input_format = "json"
output_topic = "{output}"
dead_letter_topic = "{dlq}"
event_time = {{ source = "field", field = "date_time" }}
{body}

[batch]
max_records = 4096

[log]
level = "warn"
"#
        ),
    )?;
    let admin = free_port()?;
    let started = Instant::now();
    let child = Killed(
        Command::new(streamfold)
            .args([
                "run",
                "--admin-addr",
                &format!("127.0.0.1:{admin}"),
                "--config",
            ])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting streamfold run")?,
    );
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
    let input = "bids".to_string();
    create_topic(&broker, &input, args.partitions)?;
    let t = Instant::now();
    let total = preload(&broker, &input, args.events, args.partitions)?;
    eprintln!(
        "pre-loaded {total} records into {input} ({} partitions) in {:.1}s",
        args.partitions,
        t.elapsed().as_secs_f64()
    );
    let mut results: BTreeMap<usize, (String, Vec<Sample>)> = BTreeMap::new();
    for run in 0..args.runs {
        for (i, name) in args.only.split(',').map(str::trim).enumerate() {
            let sample = match name {
                "ceiling-a" => run_ceiling("a", &broker, &input, total)?,
                "ceiling-b" => run_ceiling("b", &broker, &input, total)?,
                q => run_query(&streamfold, &dir, &broker, q, &input, total, run)?,
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
    let mut table = format!(
        "{} events over {} partitions, {} runs each: median (min–max)\n\n\
         | system | events/s | CPU-s per M events | peak RSS MiB |\n|---|---|---|---|\n",
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
        table += &format!(
            "| {name} | {e:.0} ({e0:.0}–{e1:.0}) | {c:.2} ({c0:.2}–{c1:.2}) | {r:.0} ({r0:.0}–{r1:.0}) |\n"
        );
    }
    let ratio = |a: &str, b: &str| match (medians.get(a), medians.get(b)) {
        (Some(x), Some(y)) => format!("{:.2}", x / y),
        _ => "-".into(),
    };
    table += &format!(
        "\nq0 / ceiling B = {}, q5 / ceiling A = {}\n",
        ratio("q0", "ceiling-b"),
        ratio("q5", "ceiling-a")
    );
    print!("{table}");
    if let Some(out) = &args.out {
        std::fs::write(out, &table)?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
