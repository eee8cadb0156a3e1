//! `streamfold demo`: embedded broker, generated payments (with a few
//! undecodable and late ones), the example pipeline, and its output printed
//! as it arrives.

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context as _;
use futures_util::StreamExt;
use rdkafka::ClientConfig;
use rdkafka::message::Message;
use tokio_util::sync::CancellationToken;

use super::consume::{ValueView, message_json, reader};
use super::produce::{Pacer, Target};
use crate::broker::EmbeddedBroker;
use crate::codec::Decoder;
use crate::config::{self, Format};
use crate::generate::{ClickGenerator, GeneratorOptions, PaymentGenerator};
use crate::telemetry::{self, Metrics};

const PSEUDONYM_KEY_ENV: &str = "STREAMFOLD_PSEUDONYM_KEY";

/// Arguments of `streamfold demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Stop after this long (e.g. "30s"); default: until Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Payments per second.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Which example pipeline to run.
    #[arg(long, value_enum, default_value_t = Example::Payments)]
    example: Example,
    /// Number of keys: merchants (payments) or visitors (clickstream).
    #[arg(long)]
    keys: Option<u32>,
    /// Every n-th published record is garbage, to show the dead-letter topic.
    #[arg(long, default_value_t = 400)]
    poison_every: u64,
}

/// The example pipelines shipped in `config/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Example {
    /// Card payments → per-merchant 1-minute statistics in EUR.
    Payments,
    /// Page views → per-visitor sessions with distinct pages, dwell-time
    /// quantiles and top pages.
    Clickstream,
}

/// The demo needs a pseudonymisation key; outside the demo it must be set.
pub(super) fn ensure_demo_key() {
    if std::env::var_os(PSEUDONYM_KEY_ENV).is_none() {
        // SAFETY: called from `main` before the runtime or any other thread
        // starts, so nothing reads the environment concurrently.
        unsafe { std::env::set_var(PSEUDONYM_KEY_ENV, "streamfold-demo-key") };
    }
}

const FILES: &[(&str, &str)] = &[
    (
        "config/payments.toml",
        include_str!("../../config/payments.toml"),
    ),
    (
        "config/clickstream.toml",
        include_str!("../../config/clickstream.toml"),
    ),
    (
        "schemas/payment.avsc",
        include_str!("../../schemas/payment.avsc"),
    ),
    (
        "schemas/merchant_window_stats.avsc",
        include_str!("../../schemas/merchant_window_stats.avsc"),
    ),
    (
        "schemas/click.avsc",
        include_str!("../../schemas/click.avsc"),
    ),
    (
        "schemas/user_sessions.avsc",
        include_str!("../../schemas/user_sessions.avsc"),
    ),
];

fn write_example(dir: &Path, example: Example) -> anyhow::Result<PathBuf> {
    for (name, text) in FILES {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap_or(dir))?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(dir.join(match example {
        Example::Payments => "config/payments.toml",
        Example::Clickstream => "config/clickstream.toml",
    }))
}

fn clock(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    let s = humantime::format_rfc3339_seconds(t).to_string();
    s.get(11..19).unwrap_or(&s).to_string()
}

fn print_window(v: &serde_json::Value) {
    let f = |k: &str| v["value"][k].as_f64().unwrap_or(f64::NAN);
    println!(
        "{:<6} {}–{}  count {:>4}  sum {:>11.2} EUR  min {:>8.2}  max {:>8.2}  mean {:>8.2}",
        v["value"]["key"].as_str().unwrap_or("?"),
        clock(v["value"]["window_start"].as_i64().unwrap_or(0)),
        clock(v["value"]["window_end"].as_i64().unwrap_or(0)),
        v["value"]["count"].as_i64().unwrap_or(0),
        f("sum"),
        f("min"),
        f("max"),
        f("mean"),
    );
}

fn print_session(v: &serde_json::Value) {
    let v = &v["value"];
    let secs = |k: &str| v[k].as_f64().unwrap_or(f64::NAN) / 1000.0;
    let top: Vec<String> = v["top_pages"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| format!("{}×{}", e["value"].as_str().unwrap_or("?"), e["count"]))
                .collect()
        })
        .unwrap_or_default();
    println!(
        "{:<6} {}–{}  views {:>3}  pages {}  dwell p50 {:>5.1}s p95 {:>5.1}s p99 {:>5.1}s  {} → {}  top {}",
        v["key"].as_str().unwrap_or("?"),
        clock(v["window_start"].as_i64().unwrap_or(0)),
        clock(v["window_end"].as_i64().unwrap_or(0)),
        v["page_views"].as_i64().unwrap_or(0),
        v["distinct_pages"].as_i64().unwrap_or(0),
        secs("dwell_ms_p50"),
        secs("dwell_ms_p95"),
        secs("dwell_ms_p99"),
        v["landing_page"].as_str().unwrap_or("?"),
        v["exit_page"].as_str().unwrap_or("?"),
        top.join(" "),
    );
}

fn print_dead_letter(v: &serde_json::Value) {
    let h = &v["headers"];
    println!(
        "dead letter  {}[{}]@{}  stage={}  {}",
        h["streamfold.source.topic"].as_str().unwrap_or("?"),
        h["streamfold.source.partition"].as_str().unwrap_or("?"),
        h["streamfold.source.offset"].as_str().unwrap_or("?"),
        h["streamfold.error.stage"].as_str().unwrap_or("?"),
        h["streamfold.error"].as_str().unwrap_or("?"),
    );
}

pub(super) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("streamfold-demo-{}", std::process::id()));
    let path = write_example(&dir, args.example)?;
    let mut loaded = config::load(&path)?;
    loaded.config.log.level = "warn".into();
    telemetry::init_tracing(&loaded.config.log);

    let broker = EmbeddedBroker::start(1)?;
    let servers = broker.bootstrap_servers().to_string();
    let p = loaded.config.pipeline.clone();
    broker.create_topic(&p.input_topic, 4)?;
    broker.create_topic(&p.output_topic, 4)?;
    broker.create_topic(&p.dead_letter_topic, 1)?;
    loaded.config.kafka.bootstrap_servers = servers.clone();
    // The demo's event time runs many times faster than the wall clock (so
    // windows close often): it is soon far ahead of the clock, on purpose.
    loaded.config.pipeline.max_event_time_ahead = Duration::from_secs(100 * 365 * 24 * 3600);
    println!("embedded broker on {servers} (connect any Kafka client to it while the demo runs)");
    // Event time runs faster than the wall clock so windows close often.
    let (keys, speed) = match args.example {
        Example::Payments => (args.keys.unwrap_or(5), 40),
        Example::Clickstream => (args.keys.unwrap_or(50), 1_200),
    };
    match args.example {
        Example::Payments => println!(
            "pipeline {}: {} → pseudonymise card_id → convert to EUR → 1-minute windows per merchant → {}",
            p.name, p.input_topic, p.output_topic
        ),
        Example::Clickstream => println!(
            "pipeline {}: {} → sessions per visitor (30-minute gap) → {}",
            p.name, p.input_topic, p.output_topic
        ),
    }
    println!(
        "publishing {} events/s over {keys} keys; event time runs {speed}× faster than the wall clock\n",
        args.rate
    );

    let shutdown = CancellationToken::new();
    super::shutdown_on_signals(shutdown.clone());
    let pipeline = {
        let loaded = loaded.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            crate::source::run(&loaded, Vec::new(), Metrics::new(), shutdown).await
        })
    };

    let input_schema = super::input_schema(&loaded).await?;
    let target = Target::new(
        &servers,
        &ClientConfig::new(),
        p.input_topic.clone(),
        input_schema,
        Format::Avro,
        p.group_by.fields().remove(0),
    )?;
    let now = crate::telemetry::now_ms();
    let rate = args.rate.max(1);
    let step_ms = (speed * 1_000 / rate as i64).max(1);
    let events: Box<dyn Iterator<Item = apache_avro::types::Value> + Send> = match args.example {
        Example::Payments => Box::new(
            PaymentGenerator::new(GeneratorOptions {
                seed: now as u64,
                merchants: keys,
                start_ms: now - now % 60_000,
                step_ms,
                late_every: 997,
                ..GeneratorOptions::default()
            })
            .map(|p| p.to_avro_value()),
        ),
        Example::Clickstream => Box::new(
            ClickGenerator::new(now as u64, keys, now - now % 60_000, step_ms)
                .map(|c| c.to_avro_value()),
        ),
    };
    let poison_every = args.poison_every;
    let producing = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let pacer = Pacer::new(rate);
            for (n, value) in events.enumerate() {
                if shutdown.is_cancelled() {
                    break;
                }
                pacer.wait(n as u64).await;
                if poison_every > 0 && n as u64 % poison_every == poison_every - 1 {
                    target.send_raw(Some(b"poison"), b"\x00not an avro record")?;
                }
                target.send_value(&value)?;
            }
            target.flush()
        })
    };

    let output_schema = super::output_schema(&loaded).await?;
    let outputs = reader(&servers, &p.output_topic, &ClientConfig::new())?;
    let dead = reader(&servers, &p.dead_letter_topic, &ClientConfig::new())?;
    let out_view = ValueView::Decoded(Box::new(Decoder::new(output_schema, p.output_format)));
    let mut out_stream = outputs.stream();
    let mut dead_stream = dead.stream();
    let stop_at = args.duration.map(|d| tokio::time::Instant::now() + d);
    let (mut windows, mut letters) = (0u64, 0u64);
    loop {
        let stop = async {
            match stop_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(Ok(m)) = out_stream.next() => {
                let v = message_json(&m, &out_view);
                match args.example {
                    Example::Payments => print_window(&v),
                    Example::Clickstream => print_session(&v),
                }
                windows += 1;
            }
            Some(Ok(m)) = dead_stream.next() => {
                print_dead_letter(&message_json(&m, &ValueView::Raw));
                letters += 1;
                let _ = m.offset();
            }
            () = stop => break,
            () = shutdown.cancelled() => break,
        }
    }
    shutdown.cancel();
    let produced = producing.await;
    let ran = pipeline.await;
    println!("\n{windows} window results and {letters} dead letters received");
    let _ = std::fs::remove_dir_all(&dir);
    drop(broker);
    produced.context("publisher task")??;
    ran.context("pipeline task")??;
    Ok(())
}
