//! The `streamfold` command line.

mod consume;
mod demo;
mod produce;
mod registry_check;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{self, LoadedConfig, LogConfig};
use crate::pipeline::Plan;
use crate::telemetry::{self, Metrics};

/// Stream processing for Kafka: windowed aggregates with at-least-once commits.
#[derive(Debug, Parser)]
#[command(name = "streamfold", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Zero-install demo: embedded broker, generated payments, live aggregates.
    Demo(demo::DemoArgs),
    /// Run the pipeline of a config file against a Kafka cluster.
    Run {
        /// The TOML configuration.
        #[arg(long, short)]
        config: PathBuf,
        /// Serve /metrics, /healthz and /readyz on this address
        /// (e.g. 0.0.0.0:9464); off when not given.
        #[arg(long, env = "STREAMFOLD_ADMIN_ADDR")]
        admin_addr: Option<std::net::SocketAddr>,
        /// Run only these pipelines of the file (by name; repeat the flag
        /// for several): stages of a chain can then run, scale and
        /// restart as processes of their own.
        #[arg(long)]
        pipeline: Vec<String>,
    },
    /// Check a configuration and its schemas; print every problem found.
    Validate {
        /// The TOML configuration.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the Avro schema of a pipeline's output, derived from its aggregates.
    Schema {
        /// The TOML configuration.
        #[arg(long, short)]
        config: PathBuf,
        /// The pipeline (default: the only one).
        #[arg(long)]
        pipeline: Option<String>,
    },
    /// Publish JSON-lines events (file or stdin) or generated payments.
    Produce(produce::ProduceArgs),
    /// Read a topic, decode it with its schema, print JSON lines.
    Consume(consume::ConsumeArgs),
    /// Run the embedded broker on loopback until Ctrl-C.
    DevBroker {
        /// Topics to create, as NAME or NAME:PARTITIONS.
        #[arg(long, value_delimiter = ',', default_values = ["payments:4", "merchant-window-stats:4", "payments-dlq:1"])]
        topics: Vec<String>,
    },
}

/// Runs the command line and maps the outcome to an exit code.
pub fn main(cli: Cli) -> ExitCode {
    if let Command::Demo(_) = cli.command {
        demo::ensure_demo_key();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("streamfold-rt")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(dispatch(cli.command));
    // Tasks still running (a drained partition's stragglers) must not hold
    // the process open.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Demo(args) => demo::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Run {
            config,
            admin_addr,
            pipeline,
        } => run(&config, admin_addr, &pipeline).await,
        Command::Validate { config } => Ok(validate(&config).await),
        Command::Schema { config, pipeline } => schema(&config, pipeline.as_deref()).await,
        Command::Produce(args) => produce::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Consume(args) => consume::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::DevBroker { topics } => dev_broker(&topics).await.map(|()| ExitCode::SUCCESS),
    }
}

/// Loads `--config` where given (for produce and consume).
fn optional_config(path: Option<&Path>) -> anyhow::Result<Option<LoadedConfig>> {
    path.map(config::load)
        .transpose()
        .map_err(anyhow::Error::new)
}

/// The broker list: `--bootstrap-servers`, else the config's.
fn servers(flag: Option<&str>, loaded: Option<&LoadedConfig>) -> anyhow::Result<String> {
    flag.map(str::to_string)
        .or_else(|| loaded.map(|l| l.config.kafka.bootstrap_servers.clone()))
        .context("no broker: pass --bootstrap-servers or --config")
}

/// The schema of the pipeline's output topic: the configured file, else
/// the one derived from the aggregates.
async fn output_schema(loaded: &LoadedConfig) -> anyhow::Result<crate::codec::RecordSchema> {
    if let Some(path) = &loaded.config.pipeline.output_schema {
        return Ok(crate::codec::RecordSchema::load(&loaded.resolve(path))?);
    }
    let reader = crate::pipeline::latest_reader(loaded).await?;
    let plan = Plan::build_with(loaded, Vec::new(), reader)?;
    Ok(plan.output_schema())
}

/// The schema of the pipeline's input records: its `input_schema` file,
/// else the latest version of the input subject in the registry.
async fn input_schema(loaded: &LoadedConfig) -> anyhow::Result<crate::codec::RecordSchema> {
    let p = &loaded.config.pipeline;
    if let Some(path) = &p.input_schema {
        return Ok(crate::codec::RecordSchema::load(&loaded.resolve(path))?);
    }
    if let Some(up) = &loaded.upstream {
        // A chained pipeline reads its upstream's output.
        return Ok(Plan::build(up, Vec::new())?.output_schema());
    }
    crate::pipeline::latest_reader(loaded)
        .await?
        .with_context(|| {
            format!(
                "{}: pipeline.input_schema is not set and the input is not registry framed: \
             pass --schema",
                loaded.path.display()
            )
        })
}

async fn run(
    path: &Path,
    admin: Option<std::net::SocketAddr>,
    only: &[String],
) -> anyhow::Result<ExitCode> {
    let mut all = match config::load_all(path) {
        Ok(all) => all,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    if !only.is_empty() {
        let names: Vec<String> = all.iter().map(|l| l.config.pipeline.name.clone()).collect();
        if let Some(missing) = only.iter().find(|n| !names.contains(n)) {
            eprintln!(
                "{}: --pipeline {missing:?}: no such pipeline (it has: {})",
                path.display(),
                names.join(", ")
            );
            return Ok(ExitCode::from(2));
        }
        all.retain(|l| only.contains(&l.config.pipeline.name));
    }
    telemetry::init_tracing(&all[0].config.log);
    let shutdown = CancellationToken::new();
    shutdown_on_signals(shutdown.clone());
    let metrics = Metrics::new();
    if let Some(addr) = admin {
        telemetry::admin::serve(addr, metrics.clone(), shutdown.clone())
            .await
            .map_err(|e| anyhow::anyhow!("cannot serve the admin endpoint on {addr}: {e}"))?;
    }
    // Every pipeline runs with its own consumer; the first to fail stops
    // the others (they drain and commit).
    let runs = all.into_iter().map(|loaded| {
        let (shutdown, metrics) = (shutdown.clone(), metrics.clone());
        tokio::spawn(async move {
            let r = crate::source::run(&loaded, Vec::new(), metrics, shutdown.clone()).await;
            if r.is_err() {
                shutdown.cancel();
            }
            r
        })
    });
    let mut first_error = None;
    for r in futures_util::future::join_all(runs).await {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => anyhow::bail!("a pipeline task failed: {e}"),
        }
    }
    match first_error {
        None => Ok(ExitCode::SUCCESS),
        Some(crate::source::RunError::Config(e)) => {
            eprintln!("{e}");
            Ok(ExitCode::from(2))
        }
        Some(e) => {
            let code = e.exit_code();
            let e = anyhow::Error::new(e).context(format!("running {}", path.display()));
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(code))
        }
    }
}

/// Prints the derived output schema of a pipeline.
async fn schema(path: &Path, pipeline: Option<&str>) -> anyhow::Result<ExitCode> {
    let all = match config::load_all(path) {
        Ok(all) => all,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    let names: Vec<&str> = all
        .iter()
        .map(|l| l.config.pipeline.name.as_str())
        .collect();
    let loaded = match pipeline {
        Some(wanted) => all
            .iter()
            .find(|l| l.config.pipeline.name == wanted)
            .with_context(|| {
                format!(
                    "{}: no pipeline named {wanted:?} (it has: {})",
                    path.display(),
                    names.join(", ")
                )
            })?,
        None if all.len() == 1 => &all[0],
        None => anyhow::bail!(
            "{}: several pipelines ({}): pass --pipeline NAME",
            path.display(),
            names.join(", ")
        ),
    };
    let reader = match crate::pipeline::latest_reader(loaded).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return Ok(ExitCode::from(if e.transient() { 1 } else { 2 }));
        }
    };
    match Plan::build_with(loaded, Vec::new(), reader) {
        Ok(plan) => {
            // What the registry would be given: for JSON output, the JSON
            // Schema of its records.
            let p = &loaded.config.pipeline;
            if p.output_framing == config::Framing::SchemaRegistry
                && p.output_format == config::Format::Json
            {
                println!("{}", plan.encoder.json_schema_text());
            } else {
                println!("{}", plan.encoder.schema_text());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::from(2))
        }
    }
}

/// Prints every problem of a configuration; exit code 1 if there are any.
async fn validate(path: &Path) -> ExitCode {
    let (all, found) = match config::load_lenient(path) {
        Ok(l) => l,
        Err(e) => {
            println!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let many = all.len() > 1;
    let mut problems: Vec<String> = found.iter().map(ToString::to_string).collect();
    let mut ok = Vec::new();
    for (i, loaded) in all.iter().enumerate() {
        let reader = match crate::pipeline::latest_reader(loaded).await {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        match Plan::build_with(loaded, Vec::new(), reader) {
            Ok(plan) => {
                let asked = registry_check::problems(&plan, loaded).await;
                if asked.is_empty() {
                    ok.push(format!(
                        "{}: ok: pipeline {:?} reads {} ({}), writes {} and dead letters to {}",
                        path.display(),
                        plan.name,
                        plan.input_topic,
                        plan.decoder.schema().path.display(),
                        plan.output_topic,
                        plan.dead_letter_topic
                    ));
                }
                problems.extend(
                    asked
                        .into_iter()
                        .map(|p| format!("{}: {p}", path.display())),
                );
            }
            Err(e) => {
                for mut p in e.problems {
                    if many && let Some(rest) = p.key.strip_prefix("pipeline.") {
                        p.key = format!("pipelines[{i}].{rest}");
                    }
                    let p = p.to_string();
                    if !problems.contains(&p) {
                        problems.push(p);
                    }
                }
            }
        }
    }
    if let Err(e) = all[0].config.consumer_config() {
        problems.push(format!("{}: {e}", path.display()));
    }
    if problems.is_empty() {
        for line in ok {
            println!("{line}");
        }
        ExitCode::SUCCESS
    } else {
        println!(
            "{} configuration problem{}:",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
        for p in problems {
            println!("  - {p}");
        }
        ExitCode::FAILURE
    }
}

/// First SIGINT/SIGTERM: graceful drain. Second: exit at once.
pub(crate) fn shutdown_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let mut count = 0;
        loop {
            wait_for_signal().await;
            count += 1;
            if count == 1 {
                tracing::info!(
                    "signal received: draining and committing; send again to exit at once"
                );
                eprintln!("stopping: draining in-flight work (press Ctrl-C again to exit at once)");
                token.cancel();
            } else {
                std::process::exit(130);
            }
        }
    });
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

fn parse_topic_spec(spec: &str) -> anyhow::Result<(String, i32)> {
    match spec.split_once(':') {
        Some((name, n)) => {
            let n: i32 = n
                .parse()
                .with_context(|| format!("topic {spec:?}: partitions must be a number"))?;
            anyhow::ensure!(n > 0, "topic {spec:?}: partitions must be at least 1");
            Ok((name.to_string(), n))
        }
        None => Ok((spec.to_string(), 1)),
    }
}

async fn dev_broker(topics: &[String]) -> anyhow::Result<()> {
    telemetry::init_tracing(&LogConfig::default());
    let broker = crate::broker::EmbeddedBroker::start(1)?;
    for spec in topics {
        let (name, partitions) = parse_topic_spec(spec)?;
        broker.create_topic(&name, partitions)?;
        println!("topic {name} ({partitions} partitions)");
    }
    println!("bootstrap servers: {}", broker.bootstrap_servers());
    println!(
        "e.g. STREAMFOLD__KAFKA__BOOTSTRAP_SERVERS={} streamfold run --config config/payments.toml",
        broker.bootstrap_servers()
    );
    println!("Ctrl-C stops the broker (its data is kept in memory only).");
    let _ = tokio::signal::ctrl_c().await;
    drop(broker);
    Ok(())
}
