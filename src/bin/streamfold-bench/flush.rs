//! The end of a chained query's input: one first-stage result, far ahead
//! in event time, written to the first stage's output once every partition
//! of the first stage has written its results.
//!
//! The second stage reads the first stage's partitions merged into one
//! (its repartition topic), and its watermark is the largest event time
//! read minus its lateness: a first-stage partition that finishes early
//! (its closers ten minutes ahead) would move it past results the others
//! have yet to write, and those would be late. So the second stage allows
//! more lateness than the closers' lead, and this record, written when no
//! result is outstanding, moves it past every window.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use apache_avro::Schema;
use apache_avro::types::Value;

use super::input::Publisher;

/// How far ahead of the wall clock the flush result ends: past the
/// closers (at most twenty minutes after the last bid) plus the second
/// stage's lateness, within the hour ahead that
/// `pipeline.max_event_time_ahead` allows.
const AHEAD: Duration = Duration::from_secs(40 * 60);

/// The flush result of one chained query, ready to write.
pub(super) struct Flush {
    /// The first stage's output topic.
    topic: String,
    /// The result, in the first stage's output schema.
    value: Vec<u8>,
}

impl Flush {
    /// The flush result for `topic`, the output of the first stage `stage`
    /// of `config`, in that stage's output schema (as `streamfold schema`
    /// derives it).
    pub(super) fn prepare(
        streamfold: &Path,
        config: &Path,
        stage: &str,
        topic: &str,
    ) -> anyhow::Result<Self> {
        let out = Command::new(streamfold)
            .args(["schema", "--pipeline", stage, "--config"])
            .arg(config)
            .output()
            .context("running streamfold schema")?;
        if !out.status.success() {
            bail!(
                "streamfold schema --pipeline {stage}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(Self {
            topic: topic.to_string(),
            value: encode(&out.stdout, stage)?,
        })
    }

    /// Writes it, and waits for the acknowledgement.
    pub(super) fn write(&self, broker: &str) -> anyhow::Result<()> {
        let publisher = Publisher::new(broker, &self.topic)?;
        publisher.send(Some(0), "flush", &self.value)?;
        publisher.flush()
    }
}

/// A result of stage `stage`, whose output schema is `schema`, for an empty
/// window ending [`AHEAD`] of now.
fn encode(schema: &[u8], stage: &str) -> anyhow::Result<Vec<u8>> {
    let schema = Schema::parse_str(std::str::from_utf8(schema)?)?;
    let Schema::Record(record) = &schema else {
        bail!("{stage}: its output schema is not a record");
    };
    let end = i64::try_from((SystemTime::now().duration_since(UNIX_EPOCH)? + AHEAD).as_millis())?;
    // Every value the first stage would write for an empty window.
    let fields = record
        .fields
        .iter()
        .map(|f| {
            let v = match (f.name.as_str(), &f.schema) {
                ("window_start", _) => Value::TimestampMillis(end - 10_000),
                ("window_end", _) => Value::TimestampMillis(end),
                (_, Schema::String) => Value::String("flush".into()),
                (_, Schema::Long) => Value::Long(0),
                (_, Schema::Double) => Value::Double(0.0),
                (_, Schema::Union(u)) => {
                    let null = u.variants().iter().position(|s| *s == Schema::Null);
                    let null = null.context("a union without null")?;
                    Value::Union(u32::try_from(null)?, Box::new(Value::Null))
                }
                (name, other) => bail!("{stage}: no flush value for field {name} ({other:?})"),
            };
            Ok((f.name.clone(), v))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(
        apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
            .build()?
            .write_value_to_vec(Value::Record(fields))?,
    )
}
