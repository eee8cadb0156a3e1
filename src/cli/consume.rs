//! `streamfold consume`: read a topic from the beginning, decode each value
//! with its schema, print one JSON object per line.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures_util::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::json;

use crate::codec::{Decoder, RecordSchema, avro_to_json};
use crate::config::Format;

/// Arguments of `streamfold consume`.
#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    /// Topic to read.
    #[arg(long, short)]
    topic: String,
    /// Pipeline config: broker, and the schema of its input or output topic.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Broker list (overrides the config).
    #[arg(long)]
    bootstrap_servers: Option<String>,
    /// Avro schema to decode values with (default: from the config, by topic).
    #[arg(long)]
    schema: Option<PathBuf>,
    /// Stop after this many records.
    #[arg(long)]
    max_records: Option<u64>,
    /// Stop once no record arrived for this long (e.g. "5s"); default: run until Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    idle_timeout: Option<Duration>,
}

/// How the values of a topic are shown.
pub(crate) enum ValueView {
    Decoded(Box<Decoder>),
    Raw,
}

impl ValueView {
    fn show(&self, payload: Option<&[u8]>) -> serde_json::Value {
        match (self, payload) {
            (_, None) => serde_json::Value::Null,
            (Self::Decoded(d), Some(p)) => match d.batch().and_then(|b| b.decode(Some(p))) {
                Ok(r) => {
                    let fields = d.schema().fields.iter().map(|f| f.name.clone());
                    serde_json::Value::Object(
                        fields
                            .zip(r.values)
                            .map(|(k, v)| (k, avro_to_json(v)))
                            .collect(),
                    )
                }
                Err(e) => {
                    json!({ "undecodable": e.to_string(), "raw": String::from_utf8_lossy(p) })
                }
            },
            (Self::Raw, Some(p)) => match std::str::from_utf8(p) {
                Ok(s) => serde_json::from_str(s).unwrap_or_else(|_| json!(s)),
                Err(_) => {
                    json!({ "bytes_hex": p.iter().map(|b| format!("{b:02x}")).collect::<String>() })
                }
            },
        }
    }
}

/// A message as a JSON object: coordinates, key, headers, decoded value.
pub(crate) fn message_json<M: Message>(m: &M, view: &ValueView) -> serde_json::Value {
    let headers: serde_json::Map<String, serde_json::Value> = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| {
                    let v = h
                        .value
                        .map(|v| json!(String::from_utf8_lossy(v)))
                        .unwrap_or(serde_json::Value::Null);
                    (h.key.to_string(), v)
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "topic": m.topic(),
        "partition": m.partition(),
        "offset": m.offset(),
        "timestamp": m.timestamp().to_millis(),
        "key": m.key().map(String::from_utf8_lossy),
        "headers": headers,
        "value": view.show(m.payload()),
    })
}

/// A consumer reading every partition of `topic` from the beginning,
/// without joining a group.
pub(crate) fn reader(
    servers: &str,
    topic: &str,
    extra: &ClientConfig,
) -> anyhow::Result<StreamConsumer> {
    let mut cfg = extra.clone();
    cfg.set("bootstrap.servers", servers)
        .set(
            "group.id",
            format!("streamfold-consume-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let consumer: StreamConsumer = cfg
        .create()
        .with_context(|| format!("creating a consumer for {servers}"))?;
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .with_context(|| format!("reading metadata of {topic} from {servers}"))?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .with_context(|| format!("topic {topic:?} does not exist on {servers}"))?;
    let mut tpl = TopicPartitionList::new();
    for p in t.partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    Ok(consumer)
}

pub(crate) async fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let loaded = super::optional_config(args.config.as_deref())?;
    let servers = super::servers(args.bootstrap_servers.as_deref(), loaded.as_ref())?;
    let view = match (&args.schema, &loaded) {
        (Some(s), _) => {
            ValueView::Decoded(Box::new(Decoder::new(RecordSchema::load(s)?, Format::Avro)))
        }
        (None, Some(l)) => {
            let p = &l.config.pipeline;
            if args.topic == p.output_topic {
                let s = super::output_schema(l)?;
                ValueView::Decoded(Box::new(Decoder::new(s, p.output_format)))
            } else if args.topic == p.input_topic {
                let s = RecordSchema::load(&l.resolve(&p.input_schema))?;
                ValueView::Decoded(Box::new(Decoder::new(s, p.input_format)))
            } else {
                ValueView::Raw
            }
        }
        (None, None) => ValueView::Raw,
    };
    let extra = match &loaded {
        Some(l) => l.config.consumer_config()?,
        None => ClientConfig::new(),
    };
    let mut extra = extra;
    for k in [
        "group.id",
        "partition.assignment.strategy",
        "enable.auto.offset.store",
    ] {
        extra.remove(k);
    }
    let consumer = reader(&servers, &args.topic, &extra)?;
    let mut stream = consumer.stream();
    let mut out = std::io::stdout().lock();
    let mut seen = 0u64;
    loop {
        if args.max_records.is_some_and(|m| seen >= m) {
            break;
        }
        let next = match args.idle_timeout {
            Some(t) => match tokio::time::timeout(t, stream.next()).await {
                Ok(n) => n,
                Err(_) => break,
            },
            None => tokio::select! {
                n = stream.next() => n,
                _ = tokio::signal::ctrl_c() => break,
            },
        };
        match next {
            Some(Ok(m)) => {
                writeln!(out, "{}", message_json(&m, &view))?;
                seen += 1;
            }
            Some(Err(e)) => bail!("reading {}: {e}", args.topic),
            None => break,
        }
    }
    out.flush()?;
    Ok(())
}
