//! Loading: the TOML file, then `STREAMFOLD__SECTION__KEY` environment
//! variables, then checks that need more than one field.

use std::fmt;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format as _, Toml};

use super::model::{Config, FileConfig};

/// Prefix of environment variables that override the file.
pub const ENV_PREFIX: &str = "STREAMFOLD__";

/// One thing wrong with the configuration, phrased for the person fixing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file or environment variable the value came from.
    pub source: String,
    /// Dotted key, e.g. `pipeline.window.size`.
    pub key: String,
    /// What was expected and what was found.
    pub message: String,
}

impl Problem {
    pub(crate) fn new(
        source: impl Into<String>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            source: source.into(),
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.source, self.key, self.message)
    }
}

/// Everything wrong with a configuration, so a user fixes it in one go.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The problems, in the order found.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{n} configuration problem{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl From<Problem> for ConfigError {
    fn from(p: Problem) -> Self {
        Self { problems: vec![p] }
    }
}

/// A configuration together with where it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The merged configuration.
    pub config: Config,
    /// The file it was read from.
    pub path: PathBuf,
    /// The keys environment variables set (`pipeline.window.size`), each
    /// with its variable, so a problem is blamed on where its value came
    /// from.
    pub env_keys: Vec<(String, String)>,
    /// With `pipeline.input = { pipeline = "NAME" }`: that pipeline, whose
    /// plan gives this one's input schema.
    pub upstream: Option<Box<LoadedConfig>>,
}

impl LoadedConfig {
    /// Where the value of `key` (as a [`Problem`] names it) came from:
    /// `environment variable STREAMFOLD__...` when one set it or a key
    /// under it, else the file.
    pub fn source_of(&self, key: &str) -> String {
        env_source(&self.env_keys, key).unwrap_or_else(|| self.path.display().to_string())
    }

    /// Resolves a path written in the config file relative to that file.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.path.parent().unwrap_or_else(|| Path::new(".")).join(p)
        }
    }
}

/// Loads `path`, applies environment overrides and checks the result.
///
/// # Errors
/// Every problem found, each naming the file or variable and the key.
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
    let mut all = load_all(path)?;
    if all.len() > 1 {
        let names: Vec<_> = all.iter().map(|l| l.config.pipeline.name.clone()).collect();
        return Err(Problem::new(
            path.display().to_string(),
            "pipelines",
            format!(
                "expected one pipeline for this command, found {}: {}; use `run`, `validate` or `schema --pipeline`",
                names.len(),
                names.join(", ")
            ),
        )
        .into());
    }
    Ok(all.remove(0))
}

/// Loads every pipeline of `path`, each as a configuration of its own.
///
/// # Errors
/// Every problem found in any pipeline.
pub fn load_all(path: &Path) -> Result<Vec<LoadedConfig>, ConfigError> {
    let (loaded, problems) = load_lenient(path)?;
    if problems.is_empty() {
        Ok(loaded)
    } else {
        Err(ConfigError { problems })
    }
}

/// Like [`load`], but returns a configuration that parsed together with the
/// problems of its values, so `validate` can go on checking schemas.
///
/// # Errors
/// When the file is missing or does not parse into the configuration tree.
pub fn load_lenient(path: &Path) -> Result<(Vec<LoadedConfig>, Vec<Problem>), ConfigError> {
    let shown = path.display().to_string();
    if !path.is_file() {
        return Err(Problem::new(shown, "-", "file not found (or not a regular file)").into());
    }
    let figment = Figment::new()
        .merge(Toml::file_exact(path))
        .merge(Env::prefixed(ENV_PREFIX).split("__"));
    let env_keys = env_keys();
    let file: FileConfig = figment.extract().map_err(|e| ConfigError {
        problems: e.into_iter().map(|e| figment_problem(&shown, e)).collect(),
    })?;
    let many = !file.pipelines.is_empty();
    let pipelines = match (file.pipeline, many) {
        (Some(p), false) => vec![p],
        (None, true) => file.pipelines,
        (Some(_), true) => {
            return Err(Problem::new(
                shown,
                "pipeline",
                "expected either one [pipeline] or several [[pipelines]], found both",
            )
            .into());
        }
        (None, false) => {
            return Err(Problem::new(
                shown,
                "pipeline",
                "expected a [pipeline] table (or [[pipelines]]), found none",
            )
            .into());
        }
    };
    let mut problems = Vec::new();
    let mut pipelines = pipelines;
    let upstreams = super::chain::chain(&mut pipelines, &shown, &mut problems);
    let mut loaded = Vec::new();
    for (i, p) in pipelines.into_iter().enumerate() {
        let mut kafka = file.kafka.clone();
        if many {
            // Pipelines of one file may read the same topic: each needs
            // every partition, so each has a consumer group of its own.
            kafka.group_id = format!("{}.{}", kafka.group_id, p.name);
            if loaded
                .iter()
                .any(|l: &LoadedConfig| l.config.pipeline.name == p.name)
            {
                problems.push(Problem::new(
                    &shown,
                    format!("pipelines[{i}].name"),
                    format!("expected a name of its own, found {:?} twice", p.name),
                ));
            }
        }
        // TLS files, like schemas, are relative to the config file.
        let mut schema_registry = file.schema_registry.clone();
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        for tls in [
            kafka.tls.as_mut(),
            schema_registry.as_mut().and_then(|r| r.tls.as_mut()),
        ]
        .into_iter()
        .flatten()
        {
            for f in [&mut tls.ca_file, &mut tls.cert_file, &mut tls.key_file]
                .into_iter()
                .flatten()
            {
                if f.is_relative() {
                    *f = dir.join(&*f);
                }
            }
        }
        let config = Config {
            kafka,
            pipeline: p,
            batch: file.batch.clone(),
            commit: file.commit.clone(),
            state: file.state.clone(),
            schema_registry,
            log: file.log.clone(),
        };
        for mut problem in check(&config, &shown) {
            if many && let Some(rest) = problem.key.strip_prefix("pipeline.") {
                problem.key = format!("pipelines[{i}].{rest}");
            }
            if let Some(var) = env_source(&env_keys, &problem.key) {
                problem.source = var;
            }
            if !problems.contains(&problem) {
                problems.push(problem);
            }
        }
        loaded.push(LoadedConfig {
            config,
            path: path.to_path_buf(),
            env_keys: env_keys.clone(),
            upstream: None,
        });
    }
    // Upstreams in chain order, so that an upstream's own upstream is set
    // before it is copied (a chain has at most as many links as pipelines).
    for _ in 0..loaded.len() {
        for (i, up) in upstreams.iter().enumerate() {
            if let Some(j) = *up {
                loaded[i].upstream = Some(Box::new(loaded[j].clone()));
            }
        }
    }
    Ok((loaded, problems))
}

fn figment_problem(file: &str, e: figment::Error) -> Problem {
    let source = match &e.metadata {
        Some(md) if md.name.contains("environment") => {
            let var = format!("{ENV_PREFIX}{}", e.path.join("__").to_uppercase());
            format!("environment variable {var}")
        }
        _ => file.to_string(),
    };
    let key = if e.path.is_empty() {
        "-".to_string()
    } else {
        key_path(&e.path)
    };
    Problem::new(source, key, e.kind.to_string())
}

/// A key path as every [`Problem`] writes it: dotted, with array
/// positions in brackets (`pipeline.aggregates[2].fn`).
fn key_path(parts: &[String]) -> String {
    let mut key = String::new();
    for part in parts {
        if !key.is_empty() && part.parse::<usize>().is_ok() {
            key.push_str(&format!("[{part}]"));
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(part);
        }
    }
    key
}

/// The keys `STREAMFOLD__SECTION__KEY` variables set, as figment reads
/// them (lowercased, `__` between parts), each with its variable.
fn env_keys() -> Vec<(String, String)> {
    std::env::vars()
        .filter_map(|(var, _)| {
            let rest = var.strip_prefix(ENV_PREFIX)?;
            let parts: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
            Some((key_path(&parts), var))
        })
        .collect()
}

/// `environment variable X` when X set `key`, a key under it or a table
/// holding it.
fn env_source(env_keys: &[(String, String)], key: &str) -> Option<String> {
    let within = |outer: &str, inner: &str| {
        inner == outer
            || inner
                .strip_prefix(outer)
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
    };
    env_keys
        .iter()
        .find(|(k, _)| within(k, key) || within(key, k))
        .map(|(_, var)| format!("environment variable {var}"))
}

/// librdkafka properties that typed settings own; setting them in a
/// passthrough table would silently fight the typed value.
const OWNED_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "kafka.bootstrap_servers"),
    ("group.id", "kafka.group_id"),
    ("security.protocol", "kafka.security_protocol"),
    ("sasl.mechanism", "kafka.sasl.mechanism"),
    ("sasl.mechanisms", "kafka.sasl.mechanism"),
    ("sasl.username", "kafka.sasl.username"),
    ("queued.max.messages.kbytes", "kafka.prefetch"),
    ("session.timeout.ms", "kafka.session_timeout"),
    (
        "partition.assignment.strategy",
        "kafka.partition_assignment_strategy",
    ),
    ("auto.offset.reset", "kafka.auto_offset_reset"),
    (
        "enable.auto.commit",
        "nothing: streamfold commits offsets itself",
    ),
    (
        "enable.auto.offset.store",
        "nothing: streamfold stores offsets itself",
    ),
    (
        "enable.idempotence",
        "nothing: the producer is always idempotent",
    ),
    ("acks", "nothing: outputs are always written with acks=all"),
];

/// Properties that carry secrets: only the environment may supply them.
const SECRET_PROPERTIES: &[&str] = &[
    "sasl.password",
    "ssl.key.password",
    "ssl.keystore.password",
    "sasl.oauthbearer.client.secret",
];

fn check(c: &Config, file: &str) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut bad = |key: &str, msg: String| out.push(Problem::new(file, key, msg));
    for (key, msg) in super::registry::check(c) {
        bad(key, msg);
    }

    let k = &c.kafka;
    if k.bootstrap_servers.trim().is_empty() {
        bad(
            "kafka.bootstrap_servers",
            "expected host:port[,host:port...], found an empty string".into(),
        );
    }
    if k.group_id.trim().is_empty() {
        bad(
            "kafka.group_id",
            "expected a consumer group name, found an empty string".into(),
        );
    }
    let tables = [
        ("kafka.properties", &k.properties),
        ("kafka.consumer_properties", &k.consumer_properties),
        ("kafka.producer_properties", &k.producer_properties),
    ];
    for (table, props) in tables {
        for name in props.keys() {
            if let Some((_, owner)) = OWNED_PROPERTIES.iter().find(|(p, _)| p == name) {
                bad(
                    &format!("{table}.\"{name}\""),
                    format!("conflicts with a typed setting; set {owner} instead"),
                );
            }
            if SECRET_PROPERTIES.contains(&name.as_str()) {
                bad(
                    &format!("{table}.\"{name}\""),
                    "secrets are read from the environment only, never from the config file \
                     (for SASL use kafka.sasl.password_env)"
                        .into(),
                );
            }
        }
    }
    if k.prefetch.as_u64() < 1024 {
        bad(
            "kafka.prefetch",
            format!("expected at least 1KiB, found {}", k.prefetch),
        );
    }
    let p = &c.pipeline;
    for (key, topic) in [
        ("pipeline.input_topic", &p.input_topic),
        ("pipeline.output_topic", &p.output_topic),
        ("pipeline.dead_letter_topic", &p.dead_letter_topic),
    ] {
        if topic.trim().is_empty() {
            bad(key, "expected a topic name, found an empty string".into());
        }
    }
    if p.output_topic == p.input_topic {
        bad(
            "pipeline.output_topic",
            format!(
                "expected a topic other than the input, found {:?} (the pipeline would read its own output)",
                p.output_topic
            ),
        );
    }
    if p.dead_letter_topic == p.input_topic || p.dead_letter_topic == p.output_topic {
        bad(
            "pipeline.dead_letter_topic",
            format!(
                "expected a topic of its own, found {:?} (also the input or output topic)",
                p.dead_letter_topic
            ),
        );
    }
    if let Some(topic) = c.repartition_topic()
        && [&p.input_topic, &p.output_topic, &p.dead_letter_topic].contains(&&topic)
    {
        bad(
            "pipeline.repartition_topic",
            format!(
                "expected an internal topic of its own, found {topic:?} (also the input, output or dead-letter topic)"
            ),
        );
    }
    if p.repartition_topic.is_some() && !p.repartition {
        bad(
            "pipeline.repartition_topic",
            "is set but `repartition` is not true; set `repartition = true` or remove it".into(),
        );
    }
    match (p.late_records, &p.late_topic) {
        (super::LatePolicy::SideTopic, None) => bad(
            "pipeline.late_topic",
            "expected the topic late records go to (late_records = \"side-topic\"), found none"
                .into(),
        ),
        (policy @ (super::LatePolicy::DeadLetter | super::LatePolicy::Drop), Some(topic)) => bad(
            "pipeline.late_topic",
            format!(
                "is {topic:?}, but late_records = {:?} never writes there; set late_records = \"side-topic\" or remove late_topic",
                match policy {
                    super::LatePolicy::Drop => "drop",
                    _ => "dead-letter",
                }
            ),
        ),
        _ => {}
    }
    if let Some(topic) = &p.late_topic
        && [&p.input_topic, &p.output_topic].contains(&topic)
    {
        bad(
            "pipeline.late_topic",
            format!("expected a topic other than the input and output, found {topic:?}"),
        );
    }
    // A pipeline without a window forwards records: no aggregates.
    if p.window.is_some() && p.aggregates.is_empty() {
        bad(
            "pipeline.aggregates",
            "expected at least one aggregate, e.g. { fn = \"count\" }, found none".into(),
        );
    }

    let b = &c.batch;
    for (key, v) in [
        ("batch.max_records", b.max_records),
        ("batch.max_in_flight", b.max_in_flight),
        ("batch.queue", b.queue),
        ("batch.max_pending_outputs", b.max_pending_outputs),
    ] {
        if v == 0 {
            bad(key, "expected at least 1, found 0".into());
        }
    }
    if c.commit.interval.is_zero() {
        bad(
            "commit.interval",
            "expected a duration above zero, found 0s".into(),
        );
    }
    if c.commit.drain_deadline >= k.session_timeout {
        bad(
            "commit.drain_deadline",
            format!(
                "expected less than kafka.session_timeout ({}), found {}: a drain that long \
                 would get this member evicted from the group",
                humantime::format_duration(k.session_timeout),
                humantime::format_duration(c.commit.drain_deadline)
            ),
        );
    }
    if c.state.checkpoints && c.state.checkpoint_interval.is_zero() {
        bad(
            "state.checkpoint_interval",
            "expected a duration above zero, found 0s".into(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    pub(crate) const MINIMAL: &str = r#"
[kafka]
bootstrap_servers = "localhost:9092"
group_id = "g"

[pipeline]
name = "p"
input_topic = "in"
input_schema = "in.avsc"
output_topic = "out"
output_schema = "out.avsc"
dead_letter_topic = "dlq"
group_by = "k"
event_time = { source = "field", field = "t" }
window = { kind = "tumbling", size = "1m" }
aggregates = [{ fn = "count" }, { fn = "sum", field = "v" }]
"#;

    #[test]
    fn a_chained_pipeline_takes_its_upstream_s_output_and_names_a_wrong_one() {
        let chained = |second: &str| {
            let text = MINIMAL
                .replace("[pipeline]", "[[pipelines]]")
                .replace("output_schema = \"out.avsc\"\n", "")
                + &format!(
                    "\n[[pipelines]]\nname = \"q\"\n{second}\noutput_topic = \"out2\"\n\
                     dead_letter_topic = \"dlq\"\ngroup_by = \"key\"\n\
                     window = {{ kind = \"tumbling\", size = \"1m\" }}\n\
                     aggregates = [{{ fn = \"count\" }}]\n"
                );
            load_all(&write(&text).path)
        };
        let all = chained("input = { pipeline = \"p\" }").unwrap();
        let q = &all[1];
        assert_eq!(q.config.pipeline.input_topic, "out");
        assert_eq!(
            q.config.pipeline.event_time(),
            crate::config::EventTimeConfig::Field {
                field: "window_end".into()
            }
        );
        assert_eq!(
            q.upstream.as_ref().map(|u| u.config.pipeline.name.as_str()),
            Some("p")
        );
        assert_eq!(q.config.kafka.group_id, "g.q");
        let e = chained("input = { pipeline = \"nope\" }")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("pipelines[1].input.pipeline")
                && e.contains("\"nope\"")
                && e.contains("p, q"),
            "{e}"
        );
        let e = chained("input = { pipeline = \"q\" }")
            .unwrap_err()
            .to_string();
        assert!(e.contains("reads its own output"), "{e}");
        let e = chained("input = { pipeline = \"p\" }\ninput_schema = \"x.avsc\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("pipelines[1].input_schema"), "{e}");
        // Updates of open windows are no results to aggregate.
        let text = MINIMAL.replace("[pipeline]", "[[pipelines]]").replace(
            "output_schema = \"out.avsc\"\n",
            "emit = { mode = \"on-update\" }\n",
        ) + "\n[[pipelines]]\nname = \"q\"\ninput = { pipeline = \"p\" }\n\
               output_topic = \"out2\"\ndead_letter_topic = \"dlq\"\ngroup_by = \"key\"\n\
               window = { kind = \"tumbling\", size = \"1m\" }\n\
               aggregates = [{ fn = \"count\" }]\n";
        let e = load_all(&write(&text).path).unwrap_err().to_string();
        assert!(
            e.contains("on-update") && e.contains("pipelines[1].input.pipeline"),
            "{e}"
        );
    }

    fn write(contents: &str) -> tempfile_lite::TempFile {
        let f = tempfile_lite::TempFile::new("toml");
        std::fs::File::create(&f.path)
            .unwrap()
            .write_all(contents.as_bytes())
            .unwrap();
        f
    }

    /// Just enough of a temporary file for these tests.
    mod tempfile_lite {
        pub struct TempFile {
            pub path: std::path::PathBuf,
        }
        impl TempFile {
            pub fn new(ext: &str) -> Self {
                let path = std::env::temp_dir().join(format!(
                    "streamfold-config-test-{}-{}.{ext}",
                    std::process::id(),
                    fastrand::u64(..)
                ));
                Self { path }
            }
        }
        impl Drop for TempFile {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }

    #[test]
    fn minimal_file_loads_with_defaults() {
        let f = write(MINIMAL);
        let c = load(&f.path).unwrap().config;
        assert_eq!(c.batch.max_records, 1024);
        assert_eq!(c.kafka.prefetch, bytesize::ByteSize::mib(8));
        assert_eq!(
            c.pipeline.window,
            Some(crate::config::WindowConfig::Tumbling {
                size: std::time::Duration::from_secs(60)
            })
        );
    }

    #[test]
    fn human_sizes_and_durations_parse() {
        let f = write(&format!(
            "{MINIMAL}\n[batch]\nmax_wait = \"250ms\"\n[commit]\ninterval = \"5s\"\n"
        ));
        let c = load(&f.path).unwrap().config;
        assert_eq!(c.batch.max_wait, std::time::Duration::from_millis(250));
        assert_eq!(c.commit.interval, std::time::Duration::from_secs(5));
    }

    #[test]
    fn unknown_key_is_named_with_file() {
        let f = write(&MINIMAL.replace("group_id = \"g\"", "group_id = \"g\"\ngroup_idd = 1"));
        let e = load(&f.path).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("group_idd"), "{text}");
        assert!(text.contains(&f.path.display().to_string()), "{text}");
    }

    #[test]
    fn passthrough_conflict_and_secret_are_rejected() {
        let f = write(&format!(
            "{MINIMAL}\n[kafka.properties]\n\"group.id\" = \"x\"\n\"sasl.password\" = \"pw\"\n"
        ));
        let e = load(&f.path).unwrap_err();
        assert_eq!(e.problems.len(), 2, "{e}");
        assert!(e.problems[0].message.contains("kafka.group_id"), "{e}");
        assert!(e.problems[1].message.contains("environment"), "{e}");
        assert!(!e.to_string().contains("pw\""), "{e}");
    }

    #[test]
    fn several_problems_are_all_reported() {
        let f = write(
            &MINIMAL
                .replace("output_topic = \"out\"", "output_topic = \"in\"")
                .replace(
                    "aggregates = [{ fn = \"count\" }, { fn = \"sum\", field = \"v\" }]",
                    "aggregates = []",
                ),
        );
        let e = load(&f.path).unwrap_err();
        let keys: Vec<_> = e.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["pipeline.output_topic", "pipeline.aggregates"]);
    }

    #[test]
    fn missing_file_is_named() {
        let e = load(Path::new("/nonexistent/streamfold.toml")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/streamfold.toml"));
    }
}
