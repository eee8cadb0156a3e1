//! q5's end-to-end latency: bids published live, each window timed from
//! its end to its result read back.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::message::Headers as _;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message};
use streamfold::generate::{nexmark_bid_json, nexmark_bids};

use super::{Encoding, create_topic, http_get, output_reader, spawn_query};

/// End-to-end latency of q5 at a steady `rate` (bids/s) for `secs`: bids
/// are published live with event time = wall-clock time; each final
/// window's latency is the time it is read from the output topic minus its
/// end. Windows ending in the first 12 s (not yet full) are left out.
/// Returns (p50, p99, windows) in milliseconds.
pub(super) fn q5_latency(
    streamfold: &Path,
    dir: &Path,
    broker: &str,
    rate: f64,
    secs: u64,
    run: usize,
) -> anyhow::Result<(f64, f64, usize)> {
    let input = format!("bids-live-{run}");
    create_topic(broker, &input, 8)?;
    let (_child, admin, output, _) = spawn_query(
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
