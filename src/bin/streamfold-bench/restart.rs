//! Restart time: how long after a SIGKILL a pipeline whose windows are
//! open produces its next result, with checkpoints and without.
//!
//! For each window size W and each measurement a topic is pre-loaded with
//! bids at the same rate per second of event time, covering 90% of one
//! tumbling window of W in the past, so that every window is open. A `streamfold run` (bids per
//! auction, tumbling W) reads all of it: with checkpoints (every second)
//! it is killed once its group has committed the log end, without them
//! once it has processed every record (its commit cannot pass the first
//! records of the open windows). It is killed with SIGKILL and started
//! again at once (static membership: the group hands its partitions back
//! without waiting for the killed member's session to time out), and one
//! bid per partition past the window's end is
//! published. Measured from the kill: the first window result read back
//! from the output topic, and the last (every window out); and the records
//! the new process read until it committed up to the closers.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset};
use streamfold::generate::{nexmark_bid_json, nexmark_bids};

use super::{
    Publisher, at_end, closer, committed_to, create_topic, http_get, metric, output_reader,
    spawn_streamfold, write_config,
};

/// The input of one window size: bids filling 90% of one window.
pub struct Input {
    /// The window size as the config writes it (`1m`, `1h`, `1d`).
    pub window: String,
    /// The window's start and end (ms since the epoch).
    start: u64,
    end: u64,
    /// Bids per second of event time.
    rate: f64,
    /// Bids in the window when the pipeline is killed.
    pub records: usize,
    partitions: i32,
}

impl Input {
    /// The input of `window` (humantime) at `rate` bids per second of
    /// event time over `partitions` partitions.
    pub fn new(window: &str, rate: f64, partitions: i32) -> anyhow::Result<Self> {
        let size = humantime::parse_duration(window)
            .with_context(|| format!("restart window {window:?}"))?
            .as_millis() as u64;
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
        // A window that ended a window ago: its closers stay behind the
        // wall clock, as `pipeline.max_event_time_ahead` wants.
        let start = (now.saturating_sub(2 * size) / size) * size;
        Ok(Self {
            window: window.to_string(),
            start,
            end: start + size,
            rate,
            records: ((size as f64 / 1000.0) * 0.9 * rate).ceil() as usize,
            partitions,
        })
    }

    /// Creates `topic` and publishes the bids to it. Each measurement has
    /// its own: the closers of one must not close the windows of the next.
    fn publish(&self, broker: &str, topic: &str) -> anyhow::Result<()> {
        create_topic(broker, topic, self.partitions)?;
        let publisher = Publisher::new(broker, topic)?;
        for (i, b) in nexmark_bids().take(self.records).enumerate() {
            let date_time = self.start + (i as f64 * 1000.0 / self.rate) as u64;
            let value = nexmark_bid_json(&b, date_time);
            publisher.send(None, &b.auction.to_string(), value.as_bytes())?;
        }
        publisher.flush()
    }
}

/// One measured restart.
#[derive(Debug, Clone, Copy)]
pub struct Restart {
    /// SIGKILL to the first result read back.
    pub first: f64,
    /// SIGKILL to the last result read back: every window of the input
    /// out.
    pub last: f64,
    /// Records the new process read, once it committed the log end (its
    /// input's closers among them).
    pub reread: f64,
}

/// Reads, processes, kills and restarts a pipeline on `input`.
pub fn measure(
    streamfold: &Path,
    dir: &Path,
    broker: &str,
    input: &Input,
    checkpoints: bool,
    run: usize,
) -> anyhow::Result<Restart> {
    let mode = if checkpoints { "ckpt" } else { "replay" };
    let tag = format!("{mode}-{run}");
    let topic = format!("bids-restart-{}-{tag}", input.window);
    input.publish(broker, &topic)?;
    let body = format!(
        "group_by = \"auction\"\nwindow = {{ kind = \"tumbling\", size = \"{}\" }}\n\
         aggregates = [{{ fn = \"count\" }}]",
        input.window
    );
    // Static membership: the restarted process takes its partitions back
    // at once, rather than after the killed one's session times out (the
    // same for both modes; it would hide what is measured).
    let extra = format!(
        "\n[kafka.consumer_properties]\n\"group.instance.id\" = \"{topic}\"\n\n\
         [commit]\ninterval = \"1s\"\n\n[state]\ncheckpoints = {checkpoints}\n\
         checkpoint_interval = \"1s\"\n"
    );
    let (config, output, _) =
        write_config(dir, broker, "restart", &topic, "json", &tag, &body, &extra)?;
    let group = format!("bench-{}-restart-{tag}", topic);

    let (mut first, admin) = spawn_streamfold(streamfold, &config)?;
    let checker: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", &group)
        .create()?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if Instant::now() > deadline {
            bail!(
                "restart {} {mode}: not ready to kill after 10 minutes",
                input.window
            );
        }
        let scrape = http_get(admin, "/metrics").unwrap_or_default();
        let processed = metric(&scrape, "streamfold_records_processed_total");
        if processed >= input.records as f64 && (!checkpoints || at_end(&checker, &topic)?) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let killed = Instant::now();
    first.0.kill()?;
    first.0.wait()?;
    let (_second, admin) = spawn_streamfold(streamfold, &config)?;
    let publisher = Publisher::new(broker, &topic)?;
    let closer = nexmark_bid_json(&closer()?, input.end + 1_000);
    for p in 0..input.partitions {
        publisher.send(Some(p), "closer", closer.as_bytes())?;
    }
    publisher.flush()?;

    let reader = output_reader(broker, &format!("{group}-reader"), &output)?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let (mut first_result, mut last_result) = (None, None);
    let mut next_check = Instant::now();
    // Read results until every window is out and committed (the closers
    // open windows of their own: without checkpoints the commit stops at
    // them), then the rest of what was written.
    let mut written: Option<Vec<i64>> = None;
    loop {
        if Instant::now() > deadline {
            bail!(
                "restart {} {mode}: not caught up 10 minutes after the restart",
                input.window
            );
        }
        match reader.poll(Duration::from_millis(5)) {
            Some(Ok(_)) => {
                let now = Instant::now();
                first_result.get_or_insert(now);
                last_result = Some(now);
            }
            Some(Err(e)) => bail!("reading {output}: {e}"),
            None => {}
        }
        if written.is_none() && first_result.is_some() && Instant::now() >= next_check {
            next_check = Instant::now() + Duration::from_millis(100);
            if committed_to(&checker, &topic, i64::from(!checkpoints))? {
                let highs = (0..8)
                    .map(|p| {
                        Ok(reader
                            .fetch_watermarks(&output, p, Duration::from_secs(5))?
                            .1)
                    })
                    .collect::<anyhow::Result<Vec<i64>>>()?;
                written = Some(highs);
            }
        }
        if let Some(highs) = &written {
            let position = reader.position()?;
            let done = highs.iter().enumerate().all(|(p, &high)| {
                high == 0
                    || matches!(
                        position.find_partition(&output, p as i32).map(|e| e.offset()),
                        Some(Offset::Offset(o)) if o >= high
                    )
            });
            if done {
                break;
            }
        }
    }
    let at = |t: Option<Instant>| t.map_or(0.0, |t| (t - killed).as_secs_f64());
    let scrape = http_get(admin, "/metrics").unwrap_or_default();
    let reread = metric(&scrape, "streamfold_records_processed_total");
    Ok(Restart {
        first: at(first_result),
        last: at(last_result),
        reread,
    })
}
