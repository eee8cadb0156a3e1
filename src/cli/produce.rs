//! `streamfold produce`: JSON lines or generated payments → an input topic,
//! encoded with the input schema, keyed by the group-by field.

use std::io::BufRead;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tokio_util::sync::CancellationToken;

use crate::codec::{RecordSchema, SchemaKind, json_to_value};
use crate::config::{Format, Framing};
use crate::generate::{GeneratorOptions, PaymentGenerator};
use crate::registry::Registry;

/// Arguments of `streamfold produce`.
#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    /// Take broker, topic, schema and key field from this pipeline config.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Broker list (overrides the config).
    #[arg(long)]
    bootstrap_servers: Option<String>,
    /// Topic to publish to (default: the pipeline's input topic).
    #[arg(long)]
    topic: Option<String>,
    /// Avro schema of the records (default: the pipeline's input schema).
    #[arg(long)]
    schema: Option<PathBuf>,
    /// Field whose value becomes the message key (default: the pipeline's group_by).
    #[arg(long)]
    key_field: Option<String>,
    /// Encoding on the wire (default: the pipeline's input format).
    #[arg(long, value_enum)]
    format: Option<WireFormat>,
    /// JSON-lines file to publish; `-` or absent means stdin.
    #[arg(long, conflicts_with = "generate")]
    input: Option<PathBuf>,
    /// Publish this many generated payments instead of reading input.
    #[arg(long)]
    generate: Option<u64>,
    /// Events per second (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Seed for generated payments.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Number of merchants in generated payments.
    #[arg(long, default_value_t = 8)]
    merchants: u32,
}

/// Wire format flag.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum WireFormat {
    Avro,
    Json,
}

/// Where produced records go and how they are encoded.
pub(crate) struct Target {
    pub producer: BaseProducer,
    pub topic: String,
    pub schema: RecordSchema,
    pub format: Format,
    pub key_field: String,
    /// The Schema Registry frame each value starts with, if any.
    pub frame: Vec<u8>,
}

impl Target {
    /// A target for `topic`, connecting to `servers` (plus `extra` settings).
    pub fn new(
        servers: &str,
        extra: &ClientConfig,
        topic: String,
        schema: RecordSchema,
        format: Format,
        key_field: String,
    ) -> anyhow::Result<Self> {
        let mut cfg = extra.clone();
        cfg.set("bootstrap.servers", servers)
            .set("enable.idempotence", "true")
            .set("linger.ms", "5");
        let producer: BaseProducer = cfg
            .create()
            .with_context(|| format!("creating a producer for {servers}"))?;
        Ok(Self {
            producer,
            topic,
            schema,
            format,
            key_field,
            frame: Vec::new(),
        })
    }

    /// Frames every value with the id `registry` gives the schema under
    /// the topic's subject (`<topic>-value`), registering it if needed, as
    /// Confluent's serializers do.
    ///
    /// # Errors
    /// The registry refuses it or cannot be reached.
    pub async fn framed_by(&mut self, registry: &Registry) -> anyhow::Result<()> {
        let subject = format!("{}-value", self.topic);
        let (kind, text) = match self.format {
            // The schema as its file writes it (its canonical form would
            // drop logical types).
            Format::Avro => (
                SchemaKind::Avro,
                std::fs::read_to_string(&self.schema.path)
                    .with_context(|| format!("reading {}", self.schema.path.display()))?,
            ),
            // As the JSON Schema serializer does: the JSON Schema of the
            // records sent.
            Format::Json => (
                SchemaKind::Json,
                crate::codec::json_schema(&self.schema.schema).to_string(),
            ),
        };
        let (id, _) = registry.register(&subject, kind, &text).await?;
        eprintln!("framing values with schema id {id} of subject {subject}");
        self.frame.clear();
        crate::codec::frame_id(id, &mut self.frame);
        Ok(())
    }

    /// Encodes and enqueues one record value (already resolved to the schema).
    pub fn send_value(&self, value: &Value) -> anyhow::Result<()> {
        let Value::Record(fields) = value else {
            bail!("expected a record, found {value:?}");
        };
        let key = fields
            .iter()
            .find(|(n, _)| *n == self.key_field)
            .map(|(_, v)| match v {
                Value::String(s) => s.clone(),
                Value::Union(_, inner) => format!("{:?}", inner),
                other => format!("{other:?}"),
            })
            .with_context(|| format!("the record has no key field {:?}", self.key_field))?;
        let mut payload = self.frame.clone();
        match self.format {
            Format::Avro => payload.extend(
                GenericDatumWriter::builder(&self.schema.schema)
                    .build()?
                    .write_value_to_vec(value.clone())?,
            ),
            Format::Json => {
                serde_json::to_writer(&mut payload, &crate::codec::avro_to_json(value.clone()))?
            }
        }
        self.send_raw(Some(key.as_bytes()), &payload)
    }

    /// Enqueues raw bytes, waiting while the producer queue is full.
    pub fn send_raw(&self, key: Option<&[u8]>, payload: &[u8]) -> anyhow::Result<()> {
        let mut record = BaseRecord::<[u8], [u8]>::to(&self.topic).payload(payload);
        if let Some(k) = key {
            record = record.key(k);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => {
                    self.producer.poll(Duration::ZERO);
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    self.producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => {
                    return Err(e).with_context(|| format!("producing to {}", self.topic));
                }
            }
        }
    }

    /// Waits until everything is delivered.
    pub fn flush(&self) -> anyhow::Result<()> {
        self.producer
            .flush(Duration::from_secs(30))
            .with_context(|| format!("delivering records to {}", self.topic))
    }
}

/// Paces a loop to `rate` iterations per second.
pub(crate) struct Pacer {
    rate: u64,
    start: Instant,
}

impl Pacer {
    pub fn new(rate: u64) -> Self {
        Self {
            rate,
            start: Instant::now(),
        }
    }

    /// Sleeps until event number `n` is due.
    pub async fn wait(&self, n: u64) {
        if self.rate > 0 {
            let due = self.start + Duration::from_secs_f64(n as f64 / self.rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
    }
}

/// Publishes `count` generated payments (unlimited when `None`) until done
/// or cancelled; returns how many were published.
pub(crate) async fn publish_generated(
    target: &Target,
    options: GeneratorOptions,
    count: Option<u64>,
    rate: u64,
    cancel: &CancellationToken,
) -> anyhow::Result<u64> {
    let pacer = Pacer::new(rate);
    let mut sent = 0;
    for p in PaymentGenerator::new(options) {
        if count.is_some_and(|c| sent >= c) || cancel.is_cancelled() {
            break;
        }
        pacer.wait(sent).await;
        target.send_value(&p.to_avro_value())?;
        sent += 1;
    }
    Ok(sent)
}

pub(crate) async fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let loaded = super::optional_config(args.config.as_deref())?;
    let p = loaded.as_ref().map(|l| &l.config.pipeline);
    let servers = super::servers(args.bootstrap_servers.as_deref(), loaded.as_ref())?;
    let topic = args
        .topic
        .clone()
        .or_else(|| p.map(|p| p.input_topic.clone()))
        .context("no topic: pass --topic or --config")?;
    let schema = match (&args.schema, &loaded) {
        (Some(s), _) => RecordSchema::load(s)?,
        (None, Some(l)) => super::input_schema(l).await?,
        (None, None) => bail!("no schema: pass --schema or --config"),
    };
    let key_field = args
        .key_field
        .clone()
        .or_else(|| p.and_then(|p| p.group_by.fields().into_iter().next()))
        .unwrap_or_else(|| "merchant_id".to_string());
    let format = match args.format {
        Some(WireFormat::Avro) => Format::Avro,
        Some(WireFormat::Json) => Format::Json,
        None => p.map_or(Format::Avro, |p| p.input_format),
    };
    let extra = loaded
        .as_ref()
        .map(|l| l.config.producer_config())
        .transpose()?
        .unwrap_or_default();
    let mut target = Target::new(&servers, &extra, topic, schema, format, key_field)?;
    // The pipeline's input topic, framed: values go out as a registry
    // serializer writes them.
    if let Some(l) = &loaded
        && let Some(r) = &l.config.schema_registry
        && l.config.pipeline.input_framing == Framing::SchemaRegistry
        && target.topic == l.config.pipeline.input_topic
    {
        let registry =
            Registry::from_config(r).map_err(|(key, e)| anyhow::anyhow!("{key}: {e}"))?;
        target.framed_by(&registry).await?;
    }
    let cancel = CancellationToken::new();
    super::shutdown_on_signals(cancel.clone());

    let sent = if let Some(n) = args.generate {
        let options = GeneratorOptions {
            seed: args.seed,
            merchants: args.merchants,
            ..GeneratorOptions::default()
        };
        publish_generated(&target, options, Some(n), args.rate, &cancel).await?
    } else {
        let (name, reader): (String, Box<dyn BufRead>) = match &args.input {
            None => ("stdin".into(), Box::new(std::io::stdin().lock())),
            Some(p) if p.as_os_str() == "-" => ("stdin".into(), Box::new(std::io::stdin().lock())),
            Some(p) => (
                p.display().to_string(),
                Box::new(std::io::BufReader::new(
                    std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?,
                )),
            ),
        };
        let pacer = Pacer::new(args.rate);
        let mut sent = 0;
        for (i, line) in reader.lines().enumerate() {
            if cancel.is_cancelled() {
                break;
            }
            let line = line.with_context(|| format!("{name}:{}: cannot read", i + 1))?;
            if line.trim().is_empty() {
                continue;
            }
            let value = json_to_value(line.as_bytes(), &target.schema).map_err(|e| {
                anyhow::anyhow!(
                    "{name}:{}: not a record of {}: {e}",
                    i + 1,
                    target.schema.path.display()
                )
            })?;
            pacer.wait(sent).await;
            target
                .send_value(&value)
                .with_context(|| format!("{name}:{}", i + 1))?;
            sent += 1;
        }
        sent
    };
    target.flush()?;
    eprintln!("published {sent} records to {}", target.topic);
    Ok(())
}
