//! A pipeline resolved against its schemas: every field lookup, type check
//! and transform binding happens here, once, before any record is read.

use crate::aggregate::AggSpec;
use crate::codec::{Decoder, OutputEncoder, RecordSchema, record_name};
use crate::config::{ConfigError, EventTimeConfig, Framing, LatePolicy, LoadedConfig, Problem};
use crate::record::{FieldType, Layout};
use crate::registry::Registry;
use crate::transform::{self, Transform};
use crate::window::{Lateness, WindowKind};

use super::PerWindow;
use super::projection::Projection;

/// Where a record's event time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventTime {
    /// Field at this position (epoch millis).
    Field(usize),
    /// The Kafka record timestamp.
    KafkaTimestamp,
    /// The wall clock when the batch is processed.
    ProcessingTime,
}

/// What happens to a record whose window had already been emitted:
/// `late_records` with its `late_topic`, resolved so that the two cannot
/// disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Late {
    /// Counted and dropped.
    Drop,
    /// Counted and written to the dead-letter topic.
    DeadLetter,
    /// Counted and written to this topic.
    SideTopic(String),
}

impl Late {
    /// The side topic, if late records go to one.
    pub fn topic(&self) -> Option<&str> {
        match self {
            Self::SideTopic(t) => Some(t),
            _ => None,
        }
    }
}

/// Everything the data path needs to process a record, resolved.
pub struct Plan {
    /// Pipeline name (logs, metrics, dead-letter headers).
    pub name: String,
    /// The settings that shape its window state, which a checkpoint must
    /// have been written for.
    pub fingerprint: crate::checkpoint::Fingerprint,
    /// Topic read.
    pub input_topic: String,
    /// Topic the window results go to.
    pub output_topic: String,
    /// Topic for records that could not be processed.
    pub dead_letter_topic: String,
    /// Input decoder.
    pub decoder: Decoder,
    /// Where registry-framed input's writer schemas are looked up.
    pub registry: Option<Registry>,
    /// Transforms in order (configured, derived fields, then the library
    /// user's).
    pub transforms: Vec<Box<dyn Transform>>,
    /// The `where` filter, applied after every transform.
    pub filter: Option<crate::transform::Filter>,
    /// The record's field names by position (after transforms), for
    /// errors that name the field.
    pub field_names: Vec<String>,
    /// Event-time source.
    pub event_time: EventTime,
    /// How far ahead of the wall clock an event time may lie (millis).
    pub max_ahead_ms: i64,
    /// What the pipeline makes of its records: windows, or each record.
    pub shape: Shape,
    /// Output encoder.
    pub encoder: OutputEncoder,
}

/// What a pipeline makes of its records.
pub enum Shape {
    /// Windowed aggregates per group key.
    Windowed(Windowing),
    /// Each record's selected fields, one output record per input record
    /// (a pipeline without a window).
    Stateless(Projection),
}

/// The windows of a windowed pipeline and what they compute.
pub struct Windowing {
    /// Positions of the group-key fields.
    pub key_indexes: Vec<usize>,
    /// Window assignment.
    pub window: std::sync::Arc<dyn WindowKind>,
    /// Watermark and lateness.
    pub lateness: Lateness,
    /// What happens to late records.
    pub late: Late,
    /// Advance event time with the wall clock after this long without records.
    pub idle_timeout: Option<std::time::Duration>,
    /// With `emit = on-update`: least time between two updates of a window.
    pub update_interval: Option<std::time::Duration>,
    /// The aggregates computed.
    pub aggregates: Vec<AggSpec>,
    /// Reading another pipeline's window results: where each record's
    /// identity is, so that a result written twice upstream (after a
    /// restart there) counts once.
    pub dedupe: Option<Dedupe>,
    /// With `per_window`: what each window's results fold into before
    /// they are written.
    pub per_window: Option<Box<PerWindow>>,
}

/// The fields that identify an upstream window result: its group key and
/// window bounds (positions in the record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dedupe {
    pub key: usize,
    pub start: usize,
    pub end: usize,
}

/// A configured duration in millis (durations beyond `i64` millis, some
/// 292 million years, are as good as forever).
fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Plan {
    /// The windows of a windowed pipeline.
    ///
    /// # Panics
    /// On a stateless plan: only the windowed operator (and the
    /// repartition forwarder, which only windowed pipelines have) ask.
    pub fn windowing(&self) -> &Windowing {
        match &self.shape {
            Shape::Windowed(w) => w,
            Shape::Stateless(_) => panic!("pipeline {} has no window", self.name),
        }
    }

    /// The topic late records go to, if the pipeline has one.
    pub fn late_topic(&self) -> Option<&str> {
        match &self.shape {
            Shape::Windowed(w) => w.late.topic(),
            Shape::Stateless(_) => None,
        }
    }

    /// Advance event time with the wall clock after this long without
    /// records (windowed pipelines).
    pub fn idle_timeout(&self) -> Option<std::time::Duration> {
        match &self.shape {
            Shape::Windowed(w) => w.idle_timeout,
            Shape::Stateless(_) => None,
        }
    }

    /// The output schema (derived from the aggregates), for decoding.
    pub fn output_schema(&self) -> RecordSchema {
        RecordSchema::parse(
            std::path::Path::new(&format!("derived output schema of {}", self.name)),
            &self.encoder.schema_text(),
        )
        .expect("a derived schema parses")
    }
}

/// Why a pipeline without `input_schema` has no reader schema.
fn missing_reader(p: &crate::config::PipelineConfig) -> String {
    if p.input_framing == Framing::SchemaRegistry {
        format!(
            "not set, and the latest version of subject {}-value was not fetched (only run, \
             validate and schema ask the registry for it); set it to the input's .avsc",
            p.input_topic
        )
    } else {
        "not set: give the .avsc of the input records, or read registry-framed input \
         (input_framing = \"schema-registry\"), whose reader schema is then the latest version \
         of <input_topic>-value"
            .to_string()
    }
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("name", &self.name)
            .field("input_topic", &self.input_topic)
            .field("output_topic", &self.output_topic)
            .finish_non_exhaustive()
    }
}

impl Plan {
    /// Resolves the pipeline of `loaded`. `extra` transforms (from library
    /// users) run after the configured ones.
    ///
    /// # Errors
    /// Every problem found: unreadable schemas, missing or mistyped fields,
    /// transforms that cannot bind, an output schema that does not match.
    pub fn build(
        loaded: &LoadedConfig,
        extra: Vec<Box<dyn Transform>>,
    ) -> Result<Self, ConfigError> {
        Self::build_with(loaded, extra, None)
    }

    /// [`Plan::build`] with the reader schema `reader` where the pipeline
    /// has no `input_schema` file (see [`super::latest_reader`]).
    ///
    /// # Errors
    /// As [`Plan::build`].
    pub fn build_with(
        loaded: &LoadedConfig,
        extra: Vec<Box<dyn Transform>>,
        reader: Option<RecordSchema>,
    ) -> Result<Self, ConfigError> {
        let file = loaded.path.display().to_string();
        let p = &loaded.config.pipeline;
        let mut problems = Vec::new();

        // A problem is blamed on where its value came from: the file or
        // an environment variable.
        let problem =
            |key: &str, message: String| Problem::new(loaded.source_of(key), key, message);
        let framed = [p.input_framing, p.output_framing].contains(&Framing::SchemaRegistry);
        let registry = match &loaded.config.schema_registry {
            Some(r) if framed => Registry::from_config(r)
                .map_err(|(key, e)| problems.push(problem(key, e)))
                .ok(),
            _ => None,
        };
        // A chained pipeline reads what its upstream writes.
        let reader = match &loaded.upstream {
            Some(up) => match Plan::build(up, Vec::new()) {
                Ok(plan) => Some(plan.output_schema()),
                Err(e) => {
                    problems.push(problem(
                        "pipeline.input.pipeline",
                        format!(
                            "the upstream pipeline {:?} does not build: {e}",
                            up.config.pipeline.name
                        ),
                    ));
                    return Err(ConfigError { problems });
                }
            },
            None => reader,
        };
        let input = match (&p.input_schema, reader) {
            (Some(path), _) => RecordSchema::load(&loaded.resolve(path))
                .map_err(|e| problems.push(problem("pipeline.input_schema", e.to_string())))
                .ok(),
            (None, Some(reader)) => Some(reader),
            (None, None) => {
                problems.push(problem("pipeline.input_schema", missing_reader(p)));
                None
            }
        };
        let output = p.output_schema.as_ref().and_then(|path| {
            RecordSchema::load(&loaded.resolve(path))
                .map_err(|e| problems.push(problem("pipeline.output_schema", e.to_string())))
                .ok()
        });

        let Some(input) = input else {
            return Err(ConfigError { problems });
        };
        let mut layout = Layout::new(input.fields.clone());
        let mut transforms = match transform::build(&p.transforms, &mut layout, &file) {
            Ok(t) => t,
            Err(mut more) => {
                problems.append(&mut more);
                Vec::new()
            }
        };
        for (i, d) in p.derive.iter().enumerate() {
            let made = crate::transform::Derive::new(&d.name, &d.expr).and_then(|mut t| {
                t.bind(&mut layout)?;
                Ok(t)
            });
            match made {
                Ok(t) => transforms.push(Box::new(t)),
                Err(m) => problems.push(problem(&format!("pipeline.derive[{i}]"), m)),
            }
        }
        for mut t in extra {
            match t.bind(&mut layout) {
                Ok(()) => transforms.push(t),
                Err(m) => problems.push(Problem::new(&file, format!("transform {}", t.name()), m)),
            }
        }

        let filter = p.filter.as_ref().and_then(|src| {
            crate::transform::Filter::new(src)
                .and_then(|mut f| {
                    f.bind(&layout)?;
                    Ok(f)
                })
                .map_err(|m| problems.push(problem("pipeline.where", m)))
                .ok()
        });
        let event_time = match &p.event_time() {
            EventTimeConfig::Field { field: name } => bound(
                &layout,
                &input,
                name,
                &[FieldType::TimestampMillis, FieldType::Long],
                "timestamp-millis or long (epoch millis)",
            )
            .map_err(|m| problems.push(problem("pipeline.event_time.field", m)))
            .ok()
            .map(EventTime::Field),
            EventTimeConfig::KafkaTimestamp => Some(EventTime::KafkaTimestamp),
            EventTimeConfig::ProcessingTime => Some(EventTime::ProcessingTime),
        };
        let (name, namespace) = match &output {
            Some(o) => match &o.schema {
                apache_avro::Schema::Record(r) => (
                    r.name.name().to_string(),
                    r.name.namespace().map(str::to_string),
                ),
                _ => (record_name(&p.name), None),
            },
            None => (record_name(&p.name), Some("streamfold".to_string())),
        };
        let shaped = match &p.window {
            Some(window) => windowing(
                p,
                window,
                &layout,
                &input,
                loaded
                    .upstream
                    .as_ref()
                    .is_some_and(|u| u.config.pipeline.window.is_some()),
                &mut problems,
                &problem,
            )
            .map(|(windowing, fields)| {
                let key_columns = match windowing.key_indexes.len() {
                    // `per_window` writes windows, not keys.
                    _ if windowing.per_window.is_some() => 0,
                    1 => 0,
                    n => n,
                };
                (Shape::Windowed(windowing), fields, key_columns)
            }),
            None => {
                super::projection::stateless_problems(p, &mut |key, m| {
                    problems.push(problem(key, m));
                });
                super::projection::Projection::build(p, &layout, &input, &mut |key, m| {
                    problems.push(problem(key, m));
                })
                .map(|(projection, fields)| (Shape::Stateless(projection), fields, 0))
            }
        };
        let encoder = shaped.as_ref().and_then(|(_, fields, key_columns)| {
            let made = OutputEncoder::with_fields(
                &name,
                namespace.as_deref(),
                fields,
                *key_columns,
                p.output_format,
            );
            match made {
                Ok(enc) => {
                    if let Some(o) = &output {
                        for m in enc.differences(o) {
                            problems.push(problem("pipeline.output_schema", m));
                        }
                    }
                    Some(enc)
                }
                Err(m) => {
                    let key = match p.window {
                        // Its fields are what the pipeline writes.
                        Some(_) if !p.per_window.is_empty() => "pipeline.per_window",
                        Some(_) => "pipeline.aggregates",
                        None => "pipeline.select",
                    };
                    problems.push(problem(key, m));
                    None
                }
            }
        });

        // Every step has looked up its fields by now.
        let read = layout.read(input.fields.len());
        let field_names = (0..layout.len())
            .map(|i| layout.field(i).name.clone())
            .collect();
        match (event_time, encoder, shaped) {
            (Some(event_time), Some(encoder), Some((mut shape, _, _))) if problems.is_empty() => {
                if let Shape::Windowed(w) = &mut shape {
                    // Processing-time windows follow the clock even when
                    // no record arrives.
                    w.idle_timeout = w.idle_timeout.or((event_time == EventTime::ProcessingTime)
                        .then_some(std::time::Duration::from_secs(1)));
                }
                Ok(Self {
                    name: p.name.clone(),
                    fingerprint: crate::checkpoint::Fingerprint::of(p),
                    input_topic: p.input_topic.clone(),
                    output_topic: p.output_topic.clone(),
                    dead_letter_topic: p.dead_letter_topic.clone(),
                    decoder: {
                        let d = Decoder::new(input, p.input_format)
                            .reading_only(&read)
                            .with_room_for(layout.len());
                        match p.input_framing {
                            Framing::SchemaRegistry => d.registry_framed(),
                            Framing::None => d,
                        }
                    },
                    registry,
                    transforms,
                    filter,
                    field_names,
                    event_time,
                    max_ahead_ms: millis(p.max_event_time_ahead),
                    shape,
                    encoder,
                })
            }
            _ => Err(ConfigError { problems }),
        }
    }
}

/// Field `name` of the record after transforms, of one of the types
/// `accepts`; the problem names the schema it was looked for in.
fn bound(
    layout: &Layout,
    input: &RecordSchema,
    name: &str,
    accepts: &[FieldType],
    expected: &str,
) -> Result<usize, String> {
    transform::bind_field(layout, name, accepts, expected).map_err(|m| after_transforms(m, input))
}

/// `message` about a field of the record read with `input`, after
/// transforms.
fn after_transforms(message: String, input: &RecordSchema) -> String {
    format!("{message} (in {} after transforms)", input.path.display())
}

/// The windowing of a pipeline with `window`, and its output fields (key,
/// window bounds, key columns, then every aggregate's).
fn windowing(
    p: &crate::config::PipelineConfig,
    window: &crate::config::WindowConfig,
    layout: &Layout,
    input: &RecordSchema,
    reads_windows: bool,
    problems: &mut Vec<Problem>,
    problem: &dyn Fn(&str, String) -> Problem,
) -> Option<(Windowing, Vec<serde_json::Value>)> {
    // The identity of an upstream result: fields every window result has.
    let dedupe = reads_windows
        .then(|| {
            Some(Dedupe {
                key: layout.index_of("key")?,
                start: layout.index_of("window_start")?,
                end: layout.index_of("window_end")?,
            })
        })
        .flatten();
    let key_names = p.group_by.fields();
    if key_names.is_empty() {
        problems.push(problem(
            "pipeline.group_by",
            "expected the field(s) that key the windows, found none (a pipeline without \
             group_by has no window either: it forwards records)"
                .into(),
        ));
    }
    let key_indexes: Option<Vec<usize>> = key_names
        .iter()
        .map(|name| {
            bound(
                layout,
                input,
                name,
                &[
                    FieldType::String,
                    FieldType::Long,
                    FieldType::TimestampMillis,
                ],
                "string, int, long or timestamp-millis",
            )
            .map_err(|m| problems.push(problem("pipeline.group_by", m)))
            .ok()
        })
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    let mut aggregates = Vec::new();
    for (i, a) in p.aggregates.iter().enumerate() {
        match AggSpec::resolve(a, layout) {
            Ok(spec) => aggregates.push(spec),
            Err(m) => problems.push(problem(
                &format!("pipeline.aggregates[{i}]"),
                after_transforms(m, input),
            )),
        }
    }
    for (key, set) in [
        ("pipeline.select", !p.select.is_empty()),
        ("pipeline.output_key", !p.output_key.is_input()),
    ] {
        if set {
            problems.push(problem(
                key,
                "applies to pipelines without a window (the output of a windowed pipeline is \
                 keyed by the group key, its fields are the aggregates)"
                    .into(),
            ));
        }
    }
    let window = crate::window::from_config(window)
        .map_err(|found| {
            for (key, message) in found {
                problems.push(problem(key, message));
            }
        })
        .ok();
    let fields = (aggregates.len() == p.aggregates.len()).then(|| {
        let key_columns: &[String] = if key_names.len() > 1 { &key_names } else { &[] };
        OutputEncoder::window_fields(key_columns, &aggregates)
    });
    let per_window = match &fields {
        Some(results) if !p.per_window.is_empty() => {
            let key_columns = if key_names.len() > 1 {
                key_names.len()
            } else {
                0
            };
            Some(PerWindow::build(p, results, key_columns, problems, problem))
        }
        _ => None,
    };
    let fields = match &per_window {
        Some(Some(per)) => Some(OutputEncoder::window_fields(&[], &per.aggregates)),
        Some(None) => None,
        None => fields,
    };
    let (key_indexes, window, fields) = (key_indexes?, window?, fields?);
    let windowing = Windowing {
        key_indexes,
        window,
        lateness: Lateness::new(millis(p.allowed_lateness)),
        // The configuration check refuses a topic with another policy,
        // and `side-topic` without one.
        late: match (p.late_records, &p.late_topic) {
            (LatePolicy::Drop, _) => Late::Drop,
            (LatePolicy::SideTopic, Some(topic)) => Late::SideTopic(topic.clone()),
            _ => Late::DeadLetter,
        },
        idle_timeout: p.idle_timeout,
        update_interval: match p.emit {
            crate::config::EmitConfig::OnClose => None,
            crate::config::EmitConfig::OnUpdate { min_interval } => Some(min_interval),
        },
        aggregates,
        dedupe,
        per_window: per_window.flatten().map(Box::new),
    };
    Some((windowing, fields))
}

/// The plan of the clickstream example (`config/clickstream.toml`) reading
/// and writing JSON, without an output schema file, as `change` makes it:
/// the broker-less tests of operators and tasks start from it.
#[cfg(test)]
pub(crate) fn clickstream_plan(
    change: impl FnOnce(&mut crate::config::PipelineConfig),
) -> std::sync::Arc<Plan> {
    use crate::config::Format;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/clickstream.toml");
    let mut loaded = crate::config::load(&path).expect("the clickstream example loads");
    let p = &mut loaded.config.pipeline;
    p.input_format = Format::Json;
    p.output_format = Format::Json;
    p.output_schema = None;
    change(p);
    std::sync::Arc::new(Plan::build(&loaded, Vec::new()).expect("the test plan builds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names of the fields of `plan`'s output schema, in order.
    fn output_fields(plan: &Plan) -> Vec<String> {
        serde_json::from_str::<serde_json::Value>(&plan.encoder.schema_text()).unwrap()["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn a_pipeline_without_an_input_schema_is_told_where_one_comes_from() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/clickstream.toml");
        let mut loaded = crate::config::load(&path).expect("the clickstream example loads");
        loaded.config.pipeline.input_schema = None;
        let e = Plan::build(&loaded, Vec::new()).expect_err("no reader schema");
        let said = e.to_string();
        assert!(
            said.contains("pipeline.input_schema") && said.contains("input_framing"),
            "{said}"
        );
        loaded.config.pipeline.input_framing = Framing::SchemaRegistry;
        let e = Plan::build(&loaded, Vec::new()).expect_err("not fetched");
        assert!(e.to_string().contains("clicks-value"), "{e}");
        let reader = RecordSchema::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/click.avsc"),
        )
        .expect("the click schema loads");
        let built = Plan::build_with(&loaded, Vec::new(), Some(reader));
        assert!(built.is_ok(), "{:?}", built.err());
    }

    #[test]
    fn settings_of_the_other_shape_are_named() {
        use crate::config::{OutputKey, SelectConfig};
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/clickstream.toml");
        let mut loaded = crate::config::load(&path).expect("the clickstream example loads");
        loaded.config.pipeline.output_schema = None;
        loaded.config.pipeline.select = vec![SelectConfig::Field("page".into())];
        let e = Plan::build(&loaded, Vec::new()).expect_err("select on a windowed pipeline");
        assert!(
            e.to_string().contains("pipeline.select") && e.to_string().contains("without a window"),
            "{e}"
        );
        let p = &mut loaded.config.pipeline;
        p.select = vec![SelectConfig::Field("nope".into())];
        p.window = None;
        p.output_key = OutputKey::Field("dwell_ms".into());
        let said = Plan::build(&loaded, Vec::new())
            .expect_err("aggregates without a window")
            .to_string();
        for needle in [
            "pipeline.aggregates",
            "pipeline.group_by",
            "pipeline.allowed_lateness",
            "pipeline.select[0]",
            "\"nope\"",
        ] {
            assert!(said.contains(needle), "{needle}: {said}");
        }
        let p = &mut loaded.config.pipeline;
        p.aggregates.clear();
        p.group_by = Default::default();
        p.select.clear();
        p.allowed_lateness = std::time::Duration::ZERO;
        let plan = Plan::build(&loaded, Vec::new()).expect("a stateless pipeline");
        assert!(matches!(plan.shape, Shape::Stateless(_)));
        let fields = output_fields(&plan);
        assert_eq!(
            fields, plan.field_names,
            "every field, in order, by default"
        );
    }

    #[test]
    fn per_window_reads_the_window_results_and_writes_one_record_per_window() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/clickstream.toml");
        let mut loaded = crate::config::load(&path).expect("the clickstream example loads");
        let p = &mut loaded.config.pipeline;
        p.output_schema = None;
        p.per_window = serde_json::from_value(serde_json::json!([
            { "fn": "max-by", "field": "page_views", "value": ["key"], "name": "busiest" },
            { "fn": "sum", "field": "dwell", "name": "nope" },
        ]))
        .expect("per_window aggregates");
        // Sessions are each key's own; and a field the results lack.
        let said = Plan::build(&loaded, Vec::new())
            .expect_err("per_window on sessions")
            .to_string();
        for needle in [
            "pipeline.per_window:",
            "tumbling and hopping",
            "pipeline.per_window[1]",
            "\"dwell\"",
            "key, window_start, window_end, page_views",
        ] {
            assert!(said.contains(needle), "{needle}: {said}");
        }
        let p = &mut loaded.config.pipeline;
        p.per_window.truncate(1);
        p.window = Some(crate::config::WindowConfig::Tumbling {
            size: std::time::Duration::from_secs(60),
        });
        p.emit = crate::config::EmitConfig::OnUpdate {
            min_interval: std::time::Duration::from_secs(1),
        };
        let said = Plan::build(&loaded, Vec::new())
            .expect_err("per_window with on-update")
            .to_string();
        assert!(said.contains("emit = on-update"), "{said}");
        loaded.config.pipeline.emit = crate::config::EmitConfig::OnClose;
        let plan = Plan::build(&loaded, Vec::new()).expect("per_window over tumbling windows");
        let fields = output_fields(&plan);
        assert_eq!(fields, ["key", "window_start", "window_end", "busiest_key"]);
        // A composite key's columns are fields of the results too.
        let p = &mut loaded.config.pipeline;
        p.group_by = serde_json::from_value(serde_json::json!(["user_id", "page"])).unwrap();
        p.per_window = serde_json::from_value(serde_json::json!([
            { "fn": "max-by", "field": "page_views", "value": ["page"], "name": "busiest" },
        ]))
        .unwrap();
        let plan = Plan::build(&loaded, Vec::new()).expect("per_window reading a key column");
        assert_eq!(
            output_fields(&plan),
            ["key", "window_start", "window_end", "busiest_page"]
        );
    }
}
