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

use crate::codec::{Decoder, RecordSchema, VALUE_SCHEMA_HEADER, avro_to_json};
use crate::config::{Format, Framing, LoadedConfig};
use crate::record::RawRecord;
use crate::registry::Registry;

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
    /// In the Schema Registry's wire format: each writer schema is looked
    /// up in the registry the first time a value names it.
    Framed(Box<(Decoder, Registry)>),
    Raw,
}

impl ValueView {
    /// For a registry-framed topic, learns the writer schema `r` names,
    /// if it is new (a look-up that fails makes the value undecodable,
    /// saying why).
    pub(crate) async fn prepare(&self, r: &RawRecord) {
        let Self::Framed(framed) = self else {
            return;
        };
        let (d, registry) = &**framed;
        let Some(writers) = d.writers() else {
            return;
        };
        if let Some(value) = r.payload.as_deref() {
            writers.note(value, r.schema_header.as_deref(), &mut None);
        }
        for schema in writers.pending() {
            let found = registry
                .schema(&schema)
                .await
                .map(|s| (s.kind, s.schema))
                .map_err(|e| e.to_string());
            writers.learn(schema, found);
        }
    }

    fn show(&self, r: &RawRecord) -> serde_json::Value {
        let Some(p) = r.payload.as_deref() else {
            return serde_json::Value::Null;
        };
        let (decoder, decoded) = match self {
            Self::Decoded(d) => (&**d, d.batch().and_then(|b| b.decode(Some(p)))),
            Self::Framed(framed) => (
                &framed.0,
                framed.0.batch().and_then(|b| {
                    b.decode_record(r.payload.as_deref(), r.schema_header.as_deref())
                }),
            ),
            Self::Raw => {
                return match std::str::from_utf8(p) {
                    Ok(s) => serde_json::from_str(s).unwrap_or_else(|_| json!(s)),
                    Err(_) => json!({
                        "bytes_hex": p.iter().map(|b| format!("{b:02x}")).collect::<String>()
                    }),
                };
            }
        };
        match decoded {
            Ok(rec) => {
                let fields = decoder.schema().fields.iter().map(|f| f.name.clone());
                serde_json::Value::Object(
                    fields
                        .zip(rec.values)
                        .map(|(k, v)| (k, avro_to_json(v)))
                        .collect(),
                )
            }
            Err(e) => json!({ "undecodable": e.to_string(), "raw": String::from_utf8_lossy(p) }),
        }
    }
}

/// A message as read, for decoding.
pub(crate) fn raw_record<M: Message>(m: &M) -> RawRecord {
    RawRecord {
        offset: m.offset(),
        timestamp: m.timestamp().to_millis(),
        key: m.key().map(bytes::Bytes::copy_from_slice),
        payload: m.payload().map(bytes::Bytes::copy_from_slice),
        schema_header: m.headers().and_then(|h| {
            h.iter()
                .find(|h| h.key == VALUE_SCHEMA_HEADER)?
                .value
                .map(bytes::Bytes::copy_from_slice)
        }),
        window_partition: None,
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
        "value": view.show(&raw_record(m)),
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

/// The view of a topic of `framing` decoded with `decoder`.
fn view(l: &LoadedConfig, decoder: Decoder, framing: Framing) -> anyhow::Result<ValueView> {
    Ok(match (framing, &l.config.schema_registry) {
        (Framing::SchemaRegistry, Some(r)) => ValueView::Framed(Box::new((
            decoder.registry_framed(),
            Registry::from_config(r).map_err(|(key, e)| anyhow::anyhow!("{key}: {e}"))?,
        ))),
        _ => ValueView::Decoded(Box::new(decoder)),
    })
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
                let s = super::output_schema(l).await?;
                view(l, Decoder::new(s, p.output_format), p.output_framing)?
            } else if args.topic == p.input_topic {
                let s = super::input_schema(l).await?;
                view(l, Decoder::new(s, p.input_format), p.input_framing)?
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
                view.prepare(&raw_record(&m)).await;
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
