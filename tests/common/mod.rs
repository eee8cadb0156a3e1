//! Helpers shared by the integration tests: an embedded broker with random
//! topic names, config files, producing payments, reading topics back, and
//! an independent, record-at-a-time computation of the expected windows.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use apache_avro::Schema;
use apache_avro::types::Value;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use streamfold::broker::EmbeddedBroker;
use streamfold::generate::Payment;

pub const PSEUDONYM_KEY: &str = "test-pseudonym-key";

/// Euro rates used by every test config.
pub const RATES: &[(&str, f64, u32)] = &[
    ("EUR", 1.0, 2),
    ("USD", 0.92, 2),
    ("GBP", 1.17, 2),
    ("CHF", 1.04, 2),
    ("SEK", 0.087, 2),
    ("JPY", 0.0061, 0),
];

pub fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

/// Where a test's topics live: the in-process mock cluster, or the real
/// nisshi broker that `.ci/test.sh` starts.
pub enum Broker {
    Embedded(EmbeddedBroker),
    Real(String),
}

/// The real broker's address from `STREAMFOLD_TEST_BROKER`. A test that
/// needs it fails, never skips, when it is not there.
pub fn real_broker() -> String {
    match std::env::var("STREAMFOLD_TEST_BROKER") {
        Ok(b) if !b.is_empty() => b,
        _ => panic!(
            "this test needs a real Kafka-protocol broker: run the tests with `bash .ci/test.sh`, \
             which installs nisshi and starts one, or start one yourself \
             (see ../shared/TOOLS.md) and set STREAMFOLD_TEST_BROKER=host:port"
        ),
    }
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The Python of the test venv (confluent-kafka, fastavro, Quix Streams,
/// helm-python-sdk, kubernetes-validate); never skipped when missing.
pub fn test_python() -> String {
    match std::env::var("STREAMFOLD_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => p,
        _ => panic!(
            "this test needs the test Python (confluent-kafka, fastavro, Quix Streams, \
             helm-python-sdk): run the tests with `bash .ci/test.sh`, which creates \
             target/test-venv, or set STREAMFOLD_TEST_PYTHON"
        ),
    }
}

/// Starts `nisshi broker` in `dir` on `port` (else a free one) with
/// `storage` and `args`, and waits until it accepts connections.
pub fn nisshi(
    dir: &Path,
    storage: &str,
    port: Option<u16>,
    args: &[&std::ffi::OsStr],
) -> (std::process::Child, u16) {
    use std::process::{Command, Stdio};
    let port = port.unwrap_or_else(free_port);
    let url = format!("tcp://127.0.0.1:{port}");
    let mut child = Command::new("nisshi")
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args([
            "--storage-engine",
            storage,
            "--group-initial-rebalance-delay",
            "0s",
            "--silent",
        ])
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nisshi is installed by .ci/test.sh (see ../shared/TOOLS.md)");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
            panic!("nisshi exited ({status}): {err}");
        }
        assert!(Instant::now() < deadline, "nisshi did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, port)
}

/// A plain HTTP/1.1 GET: (status, body).
pub fn get(port: u16, path_and_query: &str) -> Option<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path_and_query} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((status, body))
}

pub fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

impl Broker {
    pub fn bootstrap_servers(&self) -> String {
        match self {
            Self::Embedded(b) => b.bootstrap_servers().to_string(),
            Self::Real(s) => s.clone(),
        }
    }

    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<(), String> {
        match self {
            Self::Embedded(b) => b.create_topic(name, partitions).map_err(|e| e.to_string()),
            Self::Real(servers) => {
                let out = std::process::Command::new("nisshi")
                    .args(["topic", "create", name, "--partitions"])
                    .arg(partitions.to_string())
                    .args(["--broker", &format!("tcp://{servers}")])
                    .output()
                    .map_err(|e| format!("cannot run nisshi (see .ci/test.sh): {e}"))?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(String::from_utf8_lossy(&out.stderr).into_owned())
                }
            }
        }
    }
}

/// A broker plus three fresh topics.
pub struct Setup {
    pub broker: Broker,
    pub input: String,
    pub output: String,
    pub dlq: String,
    pub partitions: i32,
    pub dir: PathBuf,
}

impl Setup {
    /// Topics on a fresh embedded broker.
    pub fn new(partitions: i32) -> Self {
        Self::on(
            Broker::Embedded(EmbeddedBroker::start(1).expect("embedded broker")),
            partitions,
        )
    }

    /// Topics on the real broker (`STREAMFOLD_TEST_BROKER`).
    pub fn real(partitions: i32) -> Self {
        Self::on(Broker::Real(real_broker()), partitions)
    }

    /// Three fresh topics on `broker`.
    pub fn on(broker: Broker, partitions: i32) -> Self {
        let tag = format!("{:08x}", fastrand::u32(..));
        let input = format!("payments-{tag}");
        let output = format!("stats-{tag}");
        let dlq = format!("dlq-{tag}");
        broker.create_topic(&input, partitions).unwrap();
        // librdkafka's mock cluster keeps at most 5 MiB per partition and
        // drops the oldest batches beyond it: the sliding-window crash test
        // writes about that much, so the output is spread over four.
        broker.create_topic(&output, 4).unwrap();
        broker.create_topic(&dlq, 1).unwrap();
        if let Broker::Embedded(_) = &broker {
            // A `streamfold run` child cannot create topics on the
            // in-process mock cluster (it answers no CreateTopics): its
            // checkpoint topic, for the group `write_config` sets, is made
            // here (a pipeline in this process makes its own).
            broker
                .create_topic(&format!("group-{input}-checkpoints"), partitions)
                .unwrap();
        }
        let dir = std::env::temp_dir().join(format!("streamfold-test-{tag}"));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            broker,
            input,
            output,
            dlq,
            partitions,
            dir,
        }
    }

    pub fn servers(&self) -> String {
        self.broker.bootstrap_servers()
    }

    /// Writes a pipeline config (1-minute windows, `lateness`) and returns its path.
    pub fn write_config(&self, lateness: &str, extra: &str) -> PathBuf {
        let rates: Vec<String> = RATES.iter().map(|(c, r, _)| format!("{c} = {r}")).collect();
        let text = format!(
            r#"
[kafka]
bootstrap_servers = "{servers}"
group_id = "group-{input}"
session_timeout = "6s"

[pipeline]
name = "merchant-stats"
input_topic = "{input}"
input_schema = "{schemas}/payment.avsc"
output_topic = "{output}"
output_schema = "{schemas}/merchant_window_stats.avsc"
dead_letter_topic = "{dlq}"
group_by = "merchant_id"
event_time = {{ source = "field", field = "event_time" }}
window = {{ kind = "tumbling", size = "1m" }}
allowed_lateness = "{lateness}"
late_records = "dead-letter"
aggregates = [
  {{ fn = "count" }},
  {{ fn = "sum", field = "amount_eur" }},
  {{ fn = "min", field = "amount_eur" }},
  {{ fn = "max", field = "amount_eur" }},
  {{ fn = "mean", field = "amount_eur" }},
]

[[pipeline.transforms]]
type = "pseudonymise"
field = "card_id"

[[pipeline.transforms]]
type = "convert-currency"
amount_field = "amount"
currency_field = "currency"
output_field = "amount_eur"
base_currency = "EUR"
rates = {{ {rates} }}
minor_units = {{ JPY = 0 }}

[commit]
interval = "200ms"
drain_deadline = "3s"
{extra}
"#,
            servers = self.servers(),
            input = self.input,
            output = self.output,
            dlq = self.dlq,
            schemas = schema_dir().display(),
            rates = rates.join(", "),
        );
        let path = self.dir.join("pipeline.toml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// Loads the config at `path` as the typed [`Config`] (checked as
/// `streamfold` checks it), changes it, and writes it back.
///
/// [`Config`]: streamfold::config::Config
pub fn edit_config(path: &Path, change: impl FnOnce(&mut streamfold::config::Config)) {
    let mut loaded = streamfold::config::load(path).unwrap();
    change(&mut loaded.config);
    let text = toml::to_string(&loaded.config).expect("a typed config serialises");
    std::fs::write(path, text).unwrap();
}

/// Removes the pseudonymise step from a written config, for in-process
/// runs that must not depend on the environment (tests add it back through
/// the library API where they need it).
pub fn without_pseudonymise(path: &Path) {
    edit_config(path, |c| {
        c.pipeline
            .transforms
            .retain(|t| !matches!(t, streamfold::config::TransformConfig::Pseudonymise { .. }))
    });
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One record the test publishes, and where.
#[derive(Debug, Clone)]
pub enum Event {
    Payment(Payment),
    /// Bytes that are no Avro payment.
    Poison(Vec<u8>),
}

/// `n` generated payments, each on partition `merchant % partitions` (as a
/// producer keying by merchant gives), then one payment per partition an
/// hour past the stream's clock that closes every window before it.
pub fn payments_with_closers(
    options: &streamfold::generate::GeneratorOptions,
    n: usize,
    partitions: i32,
) -> Vec<(i32, Event)> {
    use streamfold::generate::PaymentGenerator;
    let mut out: Vec<(i32, Event)> = PaymentGenerator::new(options.clone())
        .take(n)
        .map(|p| (merchant(&p) % partitions, Event::Payment(p)))
        .collect();
    for part in 0..partitions {
        let mut p = PaymentGenerator::new(options.clone()).next().unwrap();
        p.merchant_id = format!("m-{part}");
        p.event_time = options.start_ms + n as i64 * options.step_ms + 3_600_000;
        out.push((part, Event::Payment(p)));
    }
    out
}

/// The number of a generated merchant id (`m-3` → 3).
pub fn merchant(p: &Payment) -> i32 {
    p.merchant_id.trim_start_matches("m-").parse().unwrap()
}

/// Publishes events to explicit partitions; returns (partition, offset) of each.
pub fn publish(servers: &str, topic: &str, events: &[(i32, Event)]) -> Vec<(i32, i64)> {
    let schema =
        Schema::parse_str(&std::fs::read_to_string(schema_dir().join("payment.avsc")).unwrap())
            .unwrap();
    let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
        .build()
        .unwrap();
    let records: Vec<Outgoing> = events
        .iter()
        .map(|(partition, e)| {
            let (key, value) = match e {
                Event::Payment(p) => (
                    p.merchant_id.clone(),
                    writer.write_value_to_vec(p.to_avro_value()).unwrap(),
                ),
                Event::Poison(b) => ("poison".to_string(), b.clone()),
            };
            Outgoing {
                partition: *partition,
                key,
                value,
                schema_header: None,
            }
        })
        .collect();
    publish_records(servers, topic, &records)
}

/// A record to publish as it is.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub partition: i32,
    pub key: String,
    pub value: Vec<u8>,
    /// A `__value_schema_id` header.
    pub schema_header: Option<Vec<u8>>,
}

/// Publishes `records` in order; returns (partition, offset) of each.
pub fn publish_records(servers: &str, topic: &str, records: &[Outgoing]) -> Vec<(i32, i64)> {
    // Offsets follow publish order per partition (idempotent producer),
    // starting at each partition's end before publishing.
    let consumer = reader(servers);
    let mut next: HashMap<i32, i64> = HashMap::new();
    let offsets = records
        .iter()
        .map(|r| {
            let p = r.partition;
            let o = next.entry(p).or_insert_with(|| {
                consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(5))
                    .unwrap()
                    .1
            });
            *o += 1;
            (p, *o - 1)
        })
        .collect();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        // Room for a poison record of a megabyte.
        .set("message.max.bytes", "2000000")
        .create()
        .unwrap();
    for r in records {
        let mut record = BaseRecord::to(topic)
            .partition(r.partition)
            .key(r.key.as_bytes())
            .payload(&r.value);
        if let Some(h) = &r.schema_header {
            record = record.headers(rdkafka::message::OwnedHeaders::new().insert(
                rdkafka::message::Header {
                    key: "__value_schema_id",
                    value: Some(&h[..]),
                },
            ));
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    offsets
}

fn reader(servers: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", format!("reader-{}", fastrand::u64(..)))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap()
}

/// The resume point of each partition of `topic` for `group`: from the
/// commit metadata, or, where the broker dropped it, from the newest record
/// of the state topic `<group>-resume`.
pub fn resume_points(
    servers: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Vec<streamfold::offsets::CommitPoint> {
    let commits = committed(servers, group, topic, partitions);
    let state = if commits.iter().any(|(_, m)| m.is_empty()) {
        read_until(
            servers,
            &format!("{group}-resume"),
            Duration::from_secs(3),
            |_| false,
        )
    } else {
        Vec::new()
    };
    commits
        .iter()
        .enumerate()
        .map(|(p, (offset, metadata))| {
            if let Some(point) = streamfold::offsets::decode_metadata(*offset, metadata) {
                return point;
            }
            let key = format!("{topic}/{p}");
            let newest = state
                .iter()
                .filter(|r| r.key.as_deref() == Some(key.as_str()))
                .max_by_key(|r| r.offset)
                .unwrap_or_else(|| panic!("partition {p}: no commit metadata and no state record"));
            streamfold::offsets::decode_state(std::str::from_utf8(&newest.payload).unwrap())
                .unwrap_or_else(|| panic!("partition {p}: state {:?}", newest.payload))
        })
        .collect()
}

/// The committed offset and metadata of each partition of `topic` for `group`.
pub fn committed(servers: &str, group: &str, topic: &str, partitions: i32) -> Vec<(i64, String)> {
    committed_entries(servers, group, topic, partitions)
        .into_iter()
        .enumerate()
        .map(|(p, (offset, metadata))| match offset {
            Offset::Offset(o) => (o, metadata),
            other => panic!("partition {p}: no committed offset ({other:?})"),
        })
        .collect()
}

/// The committed offset of each partition of `topic` for `group`, `None`
/// where the group has committed none.
pub fn committed_offsets(
    servers: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Vec<Option<i64>> {
    committed_entries(servers, group, topic, partitions)
        .into_iter()
        .map(|(offset, _)| match offset {
            Offset::Offset(o) => Some(o),
            _ => None,
        })
        .collect()
}

fn committed_entries(
    servers: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Vec<(Offset, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let c = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    (0..partitions)
        .map(|p| {
            let e = c.find_partition(topic, p).unwrap();
            (e.offset(), e.metadata().to_string())
        })
        .collect()
}

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub struct Read {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub payload: Vec<u8>,
    /// Its Kafka timestamp in milliseconds, if it has one.
    pub timestamp: Option<i64>,
}

/// Reads `topic` from the beginning until `done(&records)` holds or the
/// deadline passes; returns what was read.
pub fn read_until(
    servers: &str,
    topic: &str,
    deadline: Duration,
    mut done: impl FnMut(&[Read]) -> bool,
) -> Vec<Read> {
    let consumer = reader(servers);
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let until = Instant::now() + deadline;
    let mut out = Vec::new();
    while Instant::now() < until && !done(&out) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(Read {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                headers,
                payload: m.payload().unwrap_or_default().to_vec(),
                timestamp: m.timestamp().to_millis(),
            });
        }
    }
    out
}

/// Runs the pipeline of `loaded` in this process until `done` holds for
/// what `topic` holds (or `deadline` passes), then stops it gracefully and
/// checks that it stopped cleanly. Returns what was read.
pub async fn run_until(
    loaded: &streamfold::config::LoadedConfig,
    metrics: streamfold::telemetry::Metrics,
    topic: &str,
    deadline: Duration,
    done: impl FnMut(&[Read]) -> bool + Send + 'static,
) -> Vec<Read> {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let pipeline = {
        let (loaded, shutdown) = (loaded.clone(), shutdown.clone());
        tokio::spawn(async move {
            streamfold::source::run(&loaded, Vec::new(), metrics, shutdown).await
        })
    };
    let (servers, topic) = (
        loaded.config.kafka.bootstrap_servers.clone(),
        topic.to_string(),
    );
    let read = tokio::task::spawn_blocking(move || read_until(&servers, &topic, deadline, done))
        .await
        .unwrap();
    shutdown.cancel();
    pipeline.await.unwrap().expect("pipeline stops cleanly");
    read
}

/// One window result, decoded with the output schema.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRow {
    pub key: String,
    pub start: i64,
    pub end: i64,
    pub count: i64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
}

pub fn decode_window(payload: &[u8]) -> WindowRow {
    let schema = Schema::parse_str(
        &std::fs::read_to_string(schema_dir().join("merchant_window_stats.avsc")).unwrap(),
    )
    .unwrap();
    let reader = apache_avro::reader::datum::GenericDatumReader::builder(&schema)
        .build()
        .unwrap();
    let Value::Record(fields) = reader.read_value(&mut &payload[..]).unwrap() else {
        panic!("not a record");
    };
    let f: HashMap<String, Value> = fields.into_iter().collect();
    let num = |k: &str| match &f[k] {
        Value::Double(x) => *x,
        other => panic!("{k}: {other:?}"),
    };
    let int = |k: &str| match &f[k] {
        Value::Long(n) | Value::TimestampMillis(n) => *n,
        other => panic!("{k}: {other:?}"),
    };
    let Value::String(key) = &f["key"] else {
        panic!("key")
    };
    WindowRow {
        key: key.clone(),
        start: int("window_start"),
        end: int("window_end"),
        count: int("count"),
        sum: num("sum"),
        min: num("min"),
        max: num("max"),
        mean: num("mean"),
    }
}

/// Amount in EUR, the straightforward way.
pub fn euros(p: &Payment) -> Option<f64> {
    let (_, rate, digits) = RATES.iter().find(|(c, _, _)| *c == p.currency)?;
    Some(p.amount as f64 / 10f64.powi(*digits as i32) * rate)
}

/// Computes the expectation from the published events and their offsets.
pub trait Expect: Fn(&[(i32, Event)], &[(i32, i64)]) -> Expected {}
impl<F: Fn(&[(i32, Event)], &[(i32, i64)]) -> Expected> Expect for F {}

/// What the pipeline must produce, computed one record at a time in
/// partition order with the documented rules: a record is late when its
/// window's end is at or below (largest event time seen before it in its
/// partition − lateness); a window is emitted once that watermark reaches
/// its end.
#[derive(Debug, Default)]
pub struct Expected {
    pub windows: BTreeMap<(String, i64), WindowRow>,
    /// The records of each closed window with their offsets, in offset order.
    pub members: BTreeMap<(String, i64), Vec<(Payment, i64)>>,
    /// (partition, offset) of late records.
    pub late: Vec<(i32, i64)>,
    /// (partition, offset) of records that cannot be processed.
    pub failed: Vec<(i32, i64)>,
}

pub fn expected(
    events: &[(i32, Event)],
    offsets: &[(i32, i64)],
    lateness_ms: i64,
    key_of: impl Fn(&Payment) -> String,
) -> Expected {
    expected_hopping(events, offsets, lateness_ms, key_of, 60_000, 60_000)
}

/// [`expected`] for windows of `size` starting every `advance`: a record is
/// late when the first window holding it has closed, and then joins none.
pub fn expected_hopping(
    events: &[(i32, Event)],
    offsets: &[(i32, i64)],
    lateness_ms: i64,
    key_of: impl Fn(&Payment) -> String,
    size: i64,
    advance: i64,
) -> Expected {
    let mut out = Expected::default();
    let mut max_seen: HashMap<i32, i64> = HashMap::new();
    // Per partition, per (key, window start): (euros, payment, offset).
    type Open = BTreeMap<(String, i64), Vec<(f64, Payment, i64)>>;
    let mut open: HashMap<i32, Open> = HashMap::new();
    for ((partition, e), (_, offset)) in events.iter().zip(offsets) {
        let Event::Payment(p) = e else {
            out.failed.push((*partition, *offset));
            continue;
        };
        let Some(eur) = euros(p) else {
            out.failed.push((*partition, *offset));
            continue;
        };
        let t = p.event_time;
        let starts: Vec<i64> = (t.div_euclid(advance) - size / advance - 1..=t.div_euclid(advance))
            .map(|i| i * advance)
            .filter(|s| *s <= t && t < s + size)
            .collect();
        let first_end = starts[0] + size;
        if let Some(m) = max_seen.get(partition)
            && first_end <= m - lateness_ms
        {
            out.late.push((*partition, *offset));
            continue;
        }
        for start in starts {
            open.entry(*partition)
                .or_default()
                .entry((key_of(p), start))
                .or_default()
                .push((eur, p.clone(), *offset));
        }
        let m = max_seen.entry(*partition).or_insert(i64::MIN);
        *m = (*m).max(p.event_time);
    }
    for (partition, windows) in open {
        let watermark = max_seen[&partition] - lateness_ms;
        for ((key, start), rows) in windows {
            if start + size > watermark {
                continue; // still open
            }
            let row = row_of(&key, start, start + size, &rows);
            out.members.insert(
                (key.clone(), start),
                rows.into_iter().map(|(_, p, o)| (p, o)).collect(),
            );
            assert!(
                out.windows.insert((key, start), row).is_none(),
                "the test must keep each key in one partition"
            );
        }
    }
    out
}

/// [`expected`] for session windows with inactivity `gap`, one record at a
/// time: a record is late when `t + gap` is at or below the watermark
/// before it; otherwise it merges every open session of its key that
/// overlaps `[t, t + gap)`; sessions close as soon as the watermark reaches
/// their end.
pub fn expected_sessions(
    events: &[(i32, Event)],
    offsets: &[(i32, i64)],
    lateness_ms: i64,
    gap: i64,
) -> Expected {
    struct S {
        key: String,
        start: i64,
        end: i64,
        rows: Vec<(f64, Payment, i64)>,
    }
    let mut out = Expected::default();
    let mut max_seen: HashMap<i32, i64> = HashMap::new();
    let mut open: HashMap<i32, Vec<S>> = HashMap::new();
    let mut closed: Vec<S> = Vec::new();
    for ((partition, e), (_, offset)) in events.iter().zip(offsets) {
        let Event::Payment(p) = e else {
            out.failed.push((*partition, *offset));
            continue;
        };
        let Some(eur) = euros(p) else {
            out.failed.push((*partition, *offset));
            continue;
        };
        let t = p.event_time;
        let m = max_seen.get(partition).copied();
        if m.is_some_and(|m| t + gap <= m - lateness_ms) {
            out.late.push((*partition, *offset));
            continue;
        }
        let sessions = open.entry(*partition).or_default();
        let mut merged = S {
            key: p.merchant_id.clone(),
            start: t,
            end: t + gap,
            rows: vec![(eur, p.clone(), *offset)],
        };
        let mut keep = Vec::new();
        for s in sessions.drain(..) {
            if s.key == merged.key && s.start < t + gap && t < s.end {
                merged.start = merged.start.min(s.start);
                merged.end = merged.end.max(s.end);
                merged.rows.extend(s.rows);
            } else {
                keep.push(s);
            }
        }
        keep.push(merged);
        let m = max_seen.entry(*partition).or_insert(i64::MIN);
        *m = (*m).max(t);
        let watermark = *m - lateness_ms;
        let (done, still): (Vec<S>, Vec<S>) = keep.into_iter().partition(|s| s.end <= watermark);
        closed.extend(done);
        *sessions = still;
    }
    for mut s in closed {
        s.rows.sort_by_key(|r| r.2);
        let row = row_of(&s.key, s.start, s.end, &s.rows);
        out.members.insert(
            (s.key.clone(), s.start),
            s.rows.into_iter().map(|(_, p, o)| (p, o)).collect(),
        );
        assert!(out.windows.insert((s.key, s.start), row).is_none());
    }
    out
}

/// The expected output row of a window holding `rows` (euros, payment,
/// offset).
fn row_of(key: &str, start: i64, end: i64, rows: &[(f64, Payment, i64)]) -> WindowRow {
    let values: Vec<f64> = rows.iter().map(|r| r.0).collect();
    let sum: f64 = values.iter().sum();
    WindowRow {
        key: key.to_string(),
        start,
        end,
        count: values.len() as i64,
        sum,
        min: values.iter().cloned().fold(f64::INFINITY, f64::min),
        max: values.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
        mean: sum / values.len() as f64,
    }
}

/// [`expected`] for Kafka Streams sliding windows of `size` per merchant:
/// for every distinct event time `t` of a key, the window `[t - size, t]`,
/// and `[t + 1, t + 1 + size]` when a record of the key lies in
/// `(t, t + size]`; written half-open (`end` = last instant + 1). A record
/// is late when its own window `[t - size, t]` had closed before it.
pub fn expected_sliding(
    events: &[(i32, Event)],
    offsets: &[(i32, i64)],
    lateness_ms: i64,
    size: i64,
) -> Expected {
    let mut out = Expected::default();
    let mut max_seen: HashMap<i32, i64> = HashMap::new();
    // Per partition, per key: accepted (event time, euros, payment, offset).
    type Accepted = BTreeMap<String, Vec<(i64, f64, Payment, i64)>>;
    let mut accepted: HashMap<i32, Accepted> = HashMap::new();
    for ((partition, e), (_, offset)) in events.iter().zip(offsets) {
        let Event::Payment(p) = e else {
            out.failed.push((*partition, *offset));
            continue;
        };
        let Some(eur) = euros(p) else {
            out.failed.push((*partition, *offset));
            continue;
        };
        let t = p.event_time;
        if max_seen.get(partition).is_some_and(|m| t < m - lateness_ms) {
            out.late.push((*partition, *offset));
            continue;
        }
        accepted
            .entry(*partition)
            .or_default()
            .entry(p.merchant_id.clone())
            .or_default()
            .push((t, eur, p.clone(), *offset));
        let m = max_seen.entry(*partition).or_insert(i64::MIN);
        *m = (*m).max(t);
    }
    for (partition, keys) in accepted {
        let watermark = max_seen[&partition] - lateness_ms;
        for (key, records) in keys {
            let times: std::collections::BTreeSet<i64> = records.iter().map(|r| r.0).collect();
            let mut ends = std::collections::BTreeSet::new();
            for &t in &times {
                ends.insert(t + 1);
                if times.range(t + 1..=t + size).next().is_some() {
                    ends.insert(t + size + 2);
                }
            }
            for end in ends.into_iter().filter(|e| *e <= watermark) {
                let start = end - size - 1;
                let rows: Vec<(f64, Payment, i64)> = records
                    .iter()
                    .filter(|r| start <= r.0 && r.0 < end)
                    .map(|r| (r.1, r.2.clone(), r.3))
                    .collect();
                let row = row_of(&key, start, end, &rows);
                out.members.insert(
                    (key.clone(), start),
                    rows.into_iter().map(|(_, p, o)| (p, o)).collect(),
                );
                assert!(out.windows.insert((key.clone(), start), row).is_none());
            }
        }
    }
    out
}

/// Whether two rows agree: exact counts and bounds, amounts to a millionth
/// of a euro per record.
pub fn same_window(a: &WindowRow, b: &WindowRow) -> bool {
    let close = |x: f64, y: f64| (x - y).abs() <= 1e-6 * (a.count.max(1) as f64) + 1e-9 * x.abs();
    a.key == b.key
        && a.start == b.start
        && a.end == b.end
        && a.count == b.count
        && close(a.sum, b.sum)
        && close(a.min, b.min)
        && close(a.max, b.max)
        && close(a.mean, b.mean)
}

/// A `streamfold run --config` child (log in the setup's directory as
/// `run-<run>.log`) that is killed when dropped, so a failing
/// assertion never leaves it running.
pub struct Run(std::process::Child);

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Run {
    /// Waits up to `limit` for the process to exit by itself.
    pub fn exit_within(&mut self, limit: Duration, setup: &Setup) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {limit:?}\n{}",
                logs(setup)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends SIGTERM (a graceful stop: drain, commit, exit) and waits for
    /// the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM failed");
        self.0.wait().unwrap()
    }
}

impl std::ops::Deref for Run {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Run {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

pub fn start(setup: &Setup, config: &std::path::Path, run: usize) -> Run {
    start_with(setup, config, run, &[])
}

/// [`start`] with more arguments to `streamfold run`.
pub fn start_with(setup: &Setup, config: &std::path::Path, run: usize, args: &[&str]) -> Run {
    start_with_env(setup, config, run, args, &[])
}

/// [`start_with`] with more environment variables.
pub fn start_with_env(
    setup: &Setup,
    config: &std::path::Path,
    run: usize,
    args: &[&str],
    env: &[(&str, &str)],
) -> Run {
    let log = std::fs::File::create(setup.dir.join(format!("run-{run}.log"))).unwrap();
    Run(std::process::Command::new(env!("CARGO_BIN_EXE_streamfold"))
        .args(["run", "--config"])
        .arg(config)
        .args(args)
        .envs(env.iter().copied())
        .env("STREAMFOLD_PSEUDONYM_KEY", PSEUDONYM_KEY)
        .env("RUST_LOG", "streamfold=debug,info")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting streamfold run"))
}

/// The records on `topic` now (read from the start for up to a second).
pub fn read_all(setup: &Setup, topic: &str) -> Vec<Read> {
    read_until(&setup.servers(), topic, Duration::from_secs(1), |_| false)
}

/// Waits up to 45 s until the output topic holds more than `seen`
/// records: run `run` has written something new (a crash test then kills
/// it mid-stream, with batches in flight and commits pending).
pub fn wait_for_new_output(setup: &Setup, seen: usize, run: usize) {
    let now = read_until(
        &setup.servers(),
        &setup.output,
        Duration::from_secs(45),
        |r| r.len() > seen,
    );
    assert!(
        now.len() > seen,
        "run {run} wrote nothing new within 45s\n{}",
        logs(setup)
    );
}

pub fn windows(setup: &Setup, at_least: usize, wait: Duration) -> Vec<WindowRow> {
    read_until(&setup.servers(), &setup.output, wait, |r| {
        r.len() >= at_least
    })
    .iter()
    .map(|r| decode_window(&r.payload))
    .collect()
}

/// The output read from the start, again and again until it holds every
/// window of `expected` or `wait` passes; the last read.
pub fn windows_covering(setup: &Setup, expected: &Expected, wait: Duration) -> Vec<WindowRow> {
    let deadline = Instant::now() + wait;
    let mut rows = Vec::new();
    while Instant::now() < deadline {
        rows = windows(setup, usize::MAX, Duration::from_secs(1));
        let distinct: std::collections::BTreeSet<_> =
            rows.iter().map(|r| (r.key.clone(), r.start)).collect();
        if expected.windows.keys().all(|k| distinct.contains(k)) {
            break;
        }
    }
    rows
}

/// The log of run `run` so far (empty before it has written any).
pub fn run_log(setup: &Setup, run: usize) -> String {
    std::fs::read_to_string(setup.dir.join(format!("run-{run}.log"))).unwrap_or_default()
}

/// Waits up to `limit` until run `run` has logged a line containing
/// `needle`; fails naming it otherwise.
pub fn wait_for_log(setup: &Setup, run: usize, needle: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !run_log(setup, run).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "run {run} did not log {needle:?} within {limit:?}\n{}",
            logs(setup)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn logs(setup: &Setup) -> String {
    let mut out = String::new();
    for run in 0..10 {
        if let Ok(text) = std::fs::read_to_string(setup.dir.join(format!("run-{run}.log"))) {
            let lines: Vec<_> = text.lines().collect();
            for (i, l) in lines.iter().enumerate() {
                if l.contains("panicked at") {
                    out += &format!(
                        "--- run {run} panicked ---\n{l}\n{}\n",
                        lines.get(i + 1).unwrap_or(&"")
                    );
                }
            }
            let tail: Vec<_> = text.lines().rev().take(30).collect();
            out += &format!("--- run {run} (last lines) ---\n");
            for l in tail.into_iter().rev() {
                out += l;
                out.push('\n');
            }
        }
    }
    out
}

/// Checks what a run of crashes or rebalances wrote: every expected window
/// present, none unexpected, every emission (first or repeated) identical
/// to the expectation, so none partial. Returns how many were repeats.
pub fn assert_complete(
    rows: &[WindowRow],
    expected: &Expected,
    context: impl Fn() -> String,
) -> usize {
    let mut by_window: BTreeMap<(String, i64), Vec<&WindowRow>> = BTreeMap::new();
    for r in rows {
        by_window
            .entry((r.key.clone(), r.start))
            .or_default()
            .push(r);
    }
    let missing: Vec<_> = expected
        .windows
        .keys()
        .filter(|k| !by_window.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "windows lost: {missing:?}\n{}",
        context()
    );
    let unexpected: Vec<_> = by_window
        .keys()
        .filter(|k| !expected.windows.contains_key(*k))
        .collect();
    assert!(
        unexpected.is_empty(),
        "windows that should not exist: {unexpected:?}"
    );
    let mut repeated = 0;
    for (k, emitted) in &by_window {
        let want = &expected.windows[k];
        for row in emitted {
            assert!(
                same_window(row, want),
                "partial or wrong window {k:?}: got {row:?}, want {want:?}\n{}",
                context()
            );
        }
        repeated += emitted.len() - 1;
    }
    repeated
}

/// The output holds exactly the expected windows, each once and equal to
/// the expectation.
pub fn assert_exactly(read: &[Read], expected: &Expected) {
    let mut got = BTreeMap::new();
    for r in read {
        let row = decode_window(&r.payload);
        assert!(
            got.insert((row.key.clone(), row.start), row).is_none(),
            "emitted twice"
        );
    }
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.windows.keys().collect::<Vec<_>>()
    );
    for (k, want) in &expected.windows {
        assert!(
            same_window(&got[k], want),
            "{k:?}: got {:?}, want {want:?}",
            got[k]
        );
    }
}

/// Every aggregation that is more than a number: first and last, exact and
/// HyperLogLog count-distinct, quantiles and top-k.
const SKETCHES: &str = r#"aggregates = [
  { fn = "count" },
  { fn = "first", field = "payment_id" },
  { fn = "last", field = "event_time", name = "last_time" },
  { fn = "count-distinct", field = "currency", exact = true, name = "currencies" },
  { fn = "count-distinct", field = "card_id", precision = 14, name = "cards" },
  { fn = "quantiles", field = "amount_eur", quantiles = [0.5, 0.9, 0.99], relative_error = 0.01, name = "amount" },
  { fn = "top-k", field = "country", k = 3, name = "top_countries" },
]"#;

/// The aggregates that [`check_sketches`] checks, for a pipeline config.
pub fn sketches() -> Vec<streamfold::config::AggregateConfig> {
    #[derive(serde::Deserialize)]
    struct Aggregates {
        aggregates: Vec<streamfold::config::AggregateConfig>,
    }
    let Aggregates { aggregates } = toml::from_str(SKETCHES).unwrap();
    aggregates
}

/// Gives a generated payment a country that varies independently of its
/// currency, so that top-k has something to rank.
pub fn vary_country(p: &mut Payment) {
    p.country = ["DE", "FR", "US", "JP", "SE"][p.amount as usize % 5].to_string();
}

/// One output record decoded with `decoder`'s schema: its (key, window
/// start) and its fields by name.
pub fn decode_fields(
    decoder: &streamfold::codec::Decoder,
    payload: &[u8],
) -> ((String, i64), Vec<(String, Value)>) {
    let rec = decoder.batch().unwrap().decode(Some(payload)).unwrap();
    let names = decoder.schema().fields.iter().map(|f| f.name.clone());
    let fields: Vec<(String, Value)> = names.zip(rec.values).collect();
    let Value::String(key) = field(&fields, "key").clone() else {
        panic!("key")
    };
    let Value::TimestampMillis(start) = field(&fields, "window_start").clone() else {
        panic!("window_start")
    };
    ((key, start), fields)
}

/// The value of field `name` of a decoded record.
pub fn field<'a>(fields: &'a [(String, Value)], name: &str) -> &'a Value {
    &fields
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no field {name}"))
        .1
}

/// The `k` most frequent countries of a window's members, by count, then
/// name.
fn top_countries(members: &[(Payment, i64)], k: usize) -> Vec<(String, i64)> {
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for (p, _) in members {
        *counts.entry(&p.country).or_default() += 1;
    }
    let mut v: Vec<(String, i64)> = counts
        .into_iter()
        .map(|(c, n)| (c.to_string(), n))
        .collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(k);
    v
}

/// Checks window `k`'s fields, computed with [`sketches`], against its
/// members (offset order): exact aggregates exactly, quantiles within their
/// relative error. Returns HyperLogLog's relative error, for the caller to
/// bound over many windows.
pub fn check_sketches(
    k: &(String, i64),
    fields: &[(String, Value)],
    members: &[(Payment, i64)],
) -> f64 {
    use std::collections::HashSet;
    let f = fields;
    assert_eq!(
        field(f, "count"),
        &Value::Long(members.len() as i64),
        "{k:?}"
    );
    let first = members
        .iter()
        .min_by_key(|(p, o)| (p.event_time, *o))
        .unwrap();
    assert_eq!(
        field(f, "first"),
        &Value::String(first.0.payment_id.clone()),
        "{k:?}"
    );
    let last = members
        .iter()
        .max_by_key(|(p, o)| (p.event_time, *o))
        .unwrap();
    assert_eq!(
        field(f, "last_time"),
        &Value::TimestampMillis(last.0.event_time),
        "{k:?}"
    );
    let currencies: HashSet<_> = members.iter().map(|(p, _)| &p.currency).collect();
    assert_eq!(
        field(f, "currencies"),
        &Value::Long(currencies.len() as i64),
        "{k:?}"
    );
    let mut amounts: Vec<f64> = members.iter().map(|(p, _)| euros(p).unwrap()).collect();
    amounts.sort_by(f64::total_cmp);
    for (q, name) in [
        (0.5, "amount_p50"),
        (0.9, "amount_p90"),
        (0.99, "amount_p99"),
    ] {
        let exact = amounts[(q * (amounts.len() as f64 - 1.0)) as usize];
        let Value::Double(est) = field(f, name) else {
            panic!("{name}")
        };
        assert!(
            (est - exact).abs() <= 0.01 * exact.abs() + 1e-9,
            "{k:?} {name}: {est} vs exact {exact}"
        );
    }
    let Value::Array(top) = field(f, "top_countries") else {
        panic!("top_countries")
    };
    let top: Vec<(String, i64)> = top
        .iter()
        .map(|e| match e {
            Value::Record(f) => match (&f[0].1, &f[1].1) {
                (Value::String(v), Value::Long(c)) => (v.clone(), *c),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(top, top_countries(members, 3), "{k:?}");
    let cards: HashSet<_> = members.iter().map(|(p, _)| &p.card_id).collect();
    let Value::Long(est) = field(f, "cards") else {
        panic!("cards")
    };
    (*est as f64 - cards.len() as f64).abs() / cards.len() as f64
}

/// The Schema Registry stand-in (`tests/python/registry.py`) on a
/// loopback port; killed when dropped.
pub struct RegistryStandIn {
    child: std::process::Child,
    pub port: u16,
}

impl RegistryStandIn {
    /// Starts it with `args` (`--auth USER:PASSWORD`, `--state FILE`) on
    /// `port` (a free one when `None`), and waits until it listens.
    pub fn start(port: Option<u16>, args: &[&str]) -> Self {
        use std::io::BufRead;
        let port = port.unwrap_or_else(free_port);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/registry.py");
        let mut child = std::process::Command::new(test_python())
            .arg(script)
            .arg(port.to_string())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("starting the registry stand-in");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the registry stand-in did not start");
        Self { child, port }
    }

    /// Its base URL (`http`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its base URL when started with `--tls`.
    pub fn https_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

impl Drop for RegistryStandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate for 127.0.0.1 and its key (PEM, PKCS #8), in
/// `dir`, made with the openssl command.
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(made.success(), "openssl could not make a certificate");
    (cert, key)
}
