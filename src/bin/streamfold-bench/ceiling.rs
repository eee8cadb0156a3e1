//! The ceilings: raw librdkafka reading every record (A), reading and
//! producing every record (B), and the floor of standard q5 (reading every
//! record, decoding the two JSON fields q5 reads, producing one record per
//! window), each in a child process of this binary.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::{Sample, create_topic, usage};

/// A ceiling as a child process of this binary, which exits once done.
pub(super) fn run_ceiling(
    which: &str,
    broker: &str,
    input: &str,
    total: usize,
) -> anyhow::Result<Sample> {
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

/// The fields of a bid that q5 reads.
#[derive(serde::Deserialize)]
struct Q5Fields {
    #[allow(dead_code)]
    auction: u64,
    date_time: i64,
}

/// In the ceiling child: read every record (A); read and produce every
/// record unchanged and wait for the acknowledgements (B); or (`q5`)
/// read every record, decode the fields q5 reads and produce one record
/// per hop window end, as standard q5 writes one result per window. Prints
/// its CPU seconds and peak RSS.
pub(super) fn ceiling(which: &str, broker: &str, topic: &str, expect: usize) -> anyhow::Result<()> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", broker)
        .set(
            "group.id",
            format!("ceiling-{which}-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false");
    // The fetch sizes streamfold reads with: a floor that fetched larger
    // responses would pay for page faults streamfold does not.
    for (key, v) in streamfold::config::FETCH_SIZES {
        config.set(key, v.to_string());
    }
    // And its connections as streamfold makes them.
    let (key, backoff) = streamfold::config::RECONNECT_BACKOFF;
    config.set(key, backoff);
    let consumer: BaseConsumer = config.create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let producer: Option<ThreadedProducer<DefaultProducerContext>> = (which != "a")
        .then(|| {
            ClientConfig::new()
                .set("bootstrap.servers", broker)
                .set("linger.ms", "5")
                .set("enable.idempotence", "true")
                .set(key, backoff)
                .create()
        })
        .transpose()?;
    let out = format!("{topic}-ceiling-{which}-{}", std::process::id());
    let mut ends = std::collections::HashSet::new();
    if producer.is_some() {
        create_topic(broker, &out, 8)?;
    }
    let mut seen = 0;
    while seen < expect {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) if which == "q5" => {
                seen += 1;
                let bid: Q5Fields = serde_json::from_slice(m.payload().unwrap_or_default())
                    .with_context(|| format!("offset {}: not a bid", m.offset()))?;
                // Hop windows of 10 s every 2 s: the last one it is in.
                let end = (bid.date_time.div_euclid(2_000) + 1) * 2_000;
                if ends.insert(end)
                    && let Some(p) = &producer
                {
                    let key = end.to_string();
                    let r = BaseRecord::to(&out).key(&key).payload(&key);
                    p.send(r).map_err(|(e, _)| e)?;
                }
            }
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
