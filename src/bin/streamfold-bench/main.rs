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
//! (benches/quix/nexmark.py), and Bytewax and Pathway on the standard q5
//! and q7 (benches/{bytewax,pathway}/nexmark.py; their results checked
//! against streamfold's `q5-hot` and `q7-bid` of the same run, window by
//! window). `q5-latency` publishes bids live at half of
//! q5's measured rate and reads each window back to time it. Each is run
//! `--runs` times; the table shows the median with min–max of events/s,
//! CPU-seconds per million events, and peak RSS of the measured process.
//!
//! One measurement a module: `ceiling.rs`, `latency.rs` (q5 live),
//! `quix.rs`, `peers.rs`, `restart.rs`; the input in `input.rs`, the
//! queries in `queries.rs`, running streamfold on them in `process.rs`,
//! the table in `report.rs`; here the arguments, the broker and the order
//! of the runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;

mod ceiling;
mod flush;
mod input;
mod latency;
mod peers;
mod process;
mod queries;
mod quix;
mod registry;
mod report;
mod restart;

use input::{Encoding, Publisher, closer, preload};
use process::{
    at_end, committed_to, http_get, metric, output_reader, run_query, spawn_query,
    spawn_streamfold, write_config,
};

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
    /// What to run, comma-separated: ceiling-a, ceiling-b, floor-q5 (read
    /// every bid, decode q5's two fields, one record out per window); q0, q1, q2
    /// (stateless), q5 (bids per auction and window), q7 (per partition),
    /// q5-hot and q7-bid (standard q5 and q7: two chained pipelines)
    /// (streamfold, JSON input; `-avro` after a name: Avro input,
    /// `-avro-framed`: Avro in the Schema Registry's wire format);
    /// q5-latency (after q5: latency at half its rate); quix-q5, quix-q7
    /// (Quix Streams); bytewax-q5, bytewax-q7, pathway-q5, pathway-q7
    /// (Bytewax, Pathway: standard q5 and q7, each checked against q5-hot
    /// and q7-bid when those run); restart (restart time after SIGKILL, with and
    /// without checkpoints, for each of --restart-windows).
    #[arg(
        long,
        default_value = "ceiling-a,ceiling-b,floor-q5,q0,q1,q2,q5,q7,q5-hot,q7-bid,q0-avro,q5-avro,q5-avro-framed,q5-latency,quix-q5,quix-q7,bytewax-q5,bytewax-q7,pathway-q5,pathway-q7,restart"
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
    /// The Python that has the peers: Quix Streams, Bytewax and Pathway
    /// (benches/{quix,bytewax,pathway}/requirements.txt).
    #[arg(long, default_value = "target/bench-venv/bin/python")]
    quix_python: PathBuf,
    /// Bytewax's processes (each one Python interpreter) ...
    #[arg(long, default_value_t = 2)]
    bytewax_processes: u32,
    /// ... and workers per process.
    #[arg(long, default_value_t = 1)]
    bytewax_workers: u32,
    /// Pathway's worker threads.
    #[arg(long, default_value_t = 2)]
    pathway_threads: u32,
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

/// The names of the topics on the broker.
fn topics(broker: &str) -> anyhow::Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Topic {
        name: String,
    }
    let out = Command::new("nisshi")
        .args(["topic", "list", "--broker", &format!("tcp://{broker}")])
        .output()?;
    if !out.status.success() {
        bail!("listing topics: {}", String::from_utf8_lossy(&out.stderr));
    }
    let listed: Vec<Topic> = serde_json::from_slice(&out.stdout).context("nisshi topic list")?;
    Ok(listed.into_iter().map(|t| t.name).collect())
}

/// Deletes every topic but those in `keep`: what measurements wrote. A
/// broker holding every earlier run's output served the next runs slower,
/// by up to half in the third round of five, for streamfold and the
/// ceilings alike.
fn delete_topics_except(broker: &str, keep: &[String]) -> anyhow::Result<()> {
    for topic in topics(broker)? {
        if keep.contains(&topic) {
            continue;
        }
        let out = Command::new("nisshi")
            .args(["topic", "delete", &topic])
            .args(["--broker", &format!("tcp://{broker}")])
            .output()?;
        if !out.status.success() {
            bail!("deleting {topic}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    Ok(())
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

fn stats(samples: &[f64]) -> (f64, f64, f64) {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(which) = &args.ceiling {
        return ceiling::ceiling(
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
    if names.iter().any(|n| n.ends_with("-avro-framed")) {
        encodings.push(Encoding::AvroFramed);
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
    // Peers' results to check against streamfold's once a run is over:
    // (peer query, its query, its output topic, streamfold's query).
    let mut checks: Vec<(&str, &str, String, &str)> = Vec::new();
    // The inputs: every measurement starts from a broker holding only
    // them, and the outputs this round's peer checks read.
    let inputs = topics(&broker)?;
    let mut keep = inputs.clone();
    for run in 0..args.runs {
        // Odd runs go through the list backwards, so that no measurement
        // always runs right after the same other one (what a run leaves
        // behind, on the broker and in the caches, shifts the next one by
        // a few percent).
        let mut order: Vec<(usize, &str)> = names.iter().copied().enumerate().collect();
        if run % 2 == 1 {
            order.reverse();
        }
        for (i, name) in order {
            let sample = match name {
                "ceiling-a" => ceiling::run_ceiling("a", &broker, input, total)?,
                "ceiling-b" => ceiling::run_ceiling("b", &broker, input, total)?,
                "floor-q5" => ceiling::run_ceiling("q5", &broker, input, total)?,
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
                    let (p50, p99, n) = latency::q5_latency(
                        &streamfold,
                        &dir,
                        &broker,
                        rate,
                        args.latency_secs,
                        run,
                    )?;
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
                    quix::run_quix(&args.quix_python, &dir, &broker, &q[5..], input, run)?
                }
                q if q.starts_with("bytewax-") || q.starts_with("pathway-") => {
                    let (tool, query) = q.split_once('-').context("peer-query")?;
                    let peer = match tool {
                        "bytewax" => peers::Peer::Bytewax {
                            processes: args.bytewax_processes,
                            workers: args.bytewax_workers,
                        },
                        _ => peers::Peer::Pathway {
                            threads: args.pathway_threads,
                        },
                    };
                    let (sample, output) =
                        peers::run_peer(&args.quix_python, &broker, peer, query, input, run)?;
                    // Its results beside streamfold's of the same run, once
                    // that has run too.
                    let ours = match query {
                        "q5" => "q5-hot",
                        _ => "q7-bid",
                    };
                    if names.contains(&ours) {
                        checks.push((name, query, output, ours));
                    }
                    sample
                }
                q => {
                    let (base, encoding) = if let Some(b) = q.strip_suffix("-avro-framed") {
                        (b, Encoding::AvroFramed)
                    } else if let Some(b) = q.strip_suffix("-avro") {
                        (b, Encoding::Avro)
                    } else {
                        (q, Encoding::Json)
                    };
                    run_query(&streamfold, &dir, &broker, base, encoding, total, run)?
                }
            };
            eprintln!(
                "run {run} {name}: {:.2}s, {:.0} events/s, {:.2} CPU-s per M events",
                sample.secs,
                total as f64 / sample.secs,
                sample.cpu_secs * 1e6 / total as f64
            );
            results
                .entry(i)
                .or_insert_with(|| (name.to_string(), Vec::new()))
                .1
                .push(sample);
            let checked = ["q5-hot", "q7-bid"].contains(&name)
                || name.starts_with("bytewax-")
                || name.starts_with("pathway-");
            if checked {
                keep = topics(&broker)?;
            } else {
                delete_topics_except(&broker, &keep)?;
            }
        }
        for (name, query, output, ours) in checks.drain(..) {
            let same = peers::check(
                &broker,
                query,
                &output,
                &format!("{input}-{ours}-{run}-out"),
            )?;
            eprintln!("run {run} {name}: all {same} windows equal {ours}'s");
        }
        delete_topics_except(&broker, &inputs)?;
        keep = inputs.clone();
    }
    let table = report::table(
        &args,
        total,
        &results,
        &latencies,
        &restart_inputs,
        &restarts,
    );
    print!("{table}");
    if let Some(out) = &args.out {
        std::fs::write(out, &table)?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
