//! TLS and SASL against a real nisshi broker serving only TLS: a pipeline
//! runs end to end over TLS with the CA from the config, and over TLS with
//! a SCRAM-SHA-256 login whose password comes from the environment; a
//! client that does not trust the broker, gives a wrong password, or whose
//! SASL login is refused stops at start-up with an error naming the broker
//! and the mechanism instead of retrying forever; the SASL password never
//! appears in logs or in `streamfold validate` output.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

const PASSWORD: &str = "hunter2-do-not-log-me";

/// A nisshi broker serving TLS only, with a fresh self-signed certificate;
/// with `user`, it requires a SASL login and knows that SCRAM-SHA-256 user.
struct TlsBroker {
    child: Child,
    servers: String,
    ca: PathBuf,
    user: Option<(String, String)>,
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tls_broker(dir: &Path, user: Option<(&str, &str)>) -> TlsBroker {
    let (cert, key) = self_signed(dir);
    let mut args = vec![
        "--cert".as_ref(),
        cert.as_os_str(),
        "--key".as_ref(),
        key.as_os_str(),
    ];
    let storage = match user {
        None => "memory://nisshi/".to_string(),
        Some((name, password)) => {
            // SCRAM users live in SQLite storage. nisshi creates them
            // through a broker; `nisshi user` speaks plaintext without a
            // login, so a first broker on the same storage serves that.
            // (A path in a sqlite:// URL is taken relative to the
            // broker's working directory.)
            let storage = "sqlite://nisshi.db".to_string();
            let (mut setup, port) = nisshi(dir, &storage, None, &[]);
            let out = Command::new("nisshi")
                .args(["user", "create", name, password, "--mechanism", "scram256"])
                .args(["--broker", &format!("tcp://127.0.0.1:{port}")])
                .output()
                .unwrap();
            let _ = setup.kill();
            let _ = setup.wait();
            assert!(
                out.status.success(),
                "nisshi user create (nisshi needs the libsql feature: .ci/test.sh installs it): {}",
                String::from_utf8_lossy(&out.stderr)
            );
            args.push("--authentication".as_ref());
            storage
        }
    };
    let (child, port) = nisshi(dir, &storage, None, &args);
    TlsBroker {
        child,
        servers: format!("127.0.0.1:{port}"),
        ca: cert,
        user: user.map(|(n, p)| (n.to_string(), p.to_string())),
    }
}

fn create_topics(b: &TlsBroker, topics: &[(&str, i32)]) {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &b.servers)
        .set("security.protocol", "ssl")
        .set("ssl.ca.location", b.ca.display().to_string());
    if let Some((name, password)) = &b.user {
        client
            .set("security.protocol", "sasl_ssl")
            .set("sasl.mechanism", "SCRAM-SHA-256")
            .set("sasl.username", name)
            .set("sasl.password", password);
    }
    let admin: AdminClient<DefaultClientContext> = client.create().unwrap();
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(t, p)| NewTopic::new(t, *p, TopicReplication::Fixed(1)))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for r in rt
        .block_on(admin.create_topics(&new, &AdminOptions::new()))
        .unwrap()
    {
        r.unwrap();
    }
}

/// The payments pipeline config of `setup`, pointed at `b` with `kafka`
/// settings added.
fn config(setup: &Setup, b: &TlsBroker, kafka: &str) -> PathBuf {
    let path = setup.write_config("5s", "");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(&setup.servers(), &b.servers)
        .replace("[pipeline]", &format!("{kafka}\n\n[pipeline]"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `streamfold ARGS --config CONFIG` with `password` in the SASL
/// password's environment variable.
fn streamfold_with(args: &[&str], config: &Path, password: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_streamfold"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("STREAMFOLD_PSEUDONYM_KEY", PSEUDONYM_KEY)
        .env("STREAMFOLD_SASL_PASSWORD", password)
        .env("RUST_LOG", "debug")
        .output()
        .unwrap()
}

fn streamfold(args: &[&str], config: &Path) -> Output {
    streamfold_with(args, config, PASSWORD)
}

/// Payments produced, a pipeline run and its windows read back, every
/// client (`produce`, `run`, `consume`) connecting with the `kafka`
/// settings of the config.
fn runs_end_to_end(user: Option<(&str, &str)>, kafka: impl Fn(&TlsBroker) -> String) {
    let setup = Setup::new(2);
    let b = tls_broker(&setup.dir, user);
    create_topics(
        &b,
        &[(&setup.input, 2), (&setup.output, 2), (&setup.dlq, 1)],
    );
    let config = config(&setup, &b, &kafka(&b));
    let out = streamfold(&["produce", "--generate", "3000"], &config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut run = Command::new(env!("CARGO_BIN_EXE_streamfold"))
        .args(["run", "--config"])
        .arg(&config)
        .env("STREAMFOLD_PSEUDONYM_KEY", PSEUDONYM_KEY)
        .env("STREAMFOLD_SASL_PASSWORD", PASSWORD)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(setup.dir.join("run.log")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut windows = 0;
    while Instant::now() < deadline && windows == 0 {
        let out = streamfold(
            &["consume", "--topic", &setup.output, "--idle-timeout", "2s"],
            &config,
        );
        windows = String::from_utf8_lossy(&out.stdout).lines().count();
    }
    let _ = Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status();
    let status = run.wait().unwrap();
    let log = std::fs::read_to_string(setup.dir.join("run.log")).unwrap();
    assert!(status.success(), "{log}");
    assert!(windows > 0, "no window arrived\n{log}");
    assert!(!log.contains(PASSWORD), "the password was logged:\n{log}");
}

#[test]
fn a_pipeline_runs_end_to_end_over_tls() {
    runs_end_to_end(None, |b| {
        format!("tls = {{ ca_file = \"{}\" }}", b.ca.display())
    });
}

#[test]
fn a_pipeline_runs_end_to_end_with_a_scram_login_over_tls() {
    runs_end_to_end(Some(("alice", PASSWORD)), |b| {
        format!(
            "tls = {{ ca_file = \"{}\" }}\n\
             sasl = {{ mechanism = \"SCRAM-SHA-256\", username = \"alice\" }}",
            b.ca.display()
        )
    });
}

#[test]
fn a_wrong_password_is_a_clear_error_naming_broker_mechanism_and_user() {
    let setup = Setup::new(1);
    let b = tls_broker(&setup.dir, Some(("alice", PASSWORD)));
    let kafka = format!(
        "tls = {{ ca_file = \"{}\" }}\nsasl = {{ mechanism = \"SCRAM-SHA-256\", username = \"alice\" }}",
        b.ca.display()
    );
    let config = config(&setup, &b, &kafka);
    let wrong = "not-the-password-either";
    let started = Instant::now();
    let out = streamfold_with(&["run"], &config, wrong);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    for needle in [
        b.servers.as_str(),
        "SCRAM-SHA-256",
        "alice",
        "authentication",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in:\n{stderr}");
    }
    for secret in [wrong, PASSWORD] {
        assert!(!stderr.contains(secret), "a password was logged:\n{stderr}");
    }
}

#[test]
fn an_untrusted_broker_certificate_is_a_clear_error_not_a_hang() {
    let setup = Setup::new(1);
    let b = tls_broker(&setup.dir, None);
    let config = config(&setup, &b, "security_protocol = \"ssl\"");
    run_fails_fast(&config, &[&b.servers, "certificate verify failed"]);
}

/// `streamfold run` stops within 30 s (no endless retrying), with an error
/// holding every one of `needles`; returns its stderr.
fn run_fails_fast(config: &Path, needles: &[&str]) -> String {
    let started = Instant::now();
    let out = streamfold(&["run"], config);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    for needle in needles {
        assert!(stderr.contains(needle), "missing {needle:?} in:\n{stderr}");
    }
    stderr
}

#[test]
fn a_login_to_a_broker_without_sasl_names_broker_and_mechanism_and_never_shows_the_password() {
    let setup = Setup::new(1);
    let b = tls_broker(&setup.dir, None);
    let kafka = format!(
        "tls = {{ ca_file = \"{}\" }}\nsasl = {{ mechanism = \"SCRAM-SHA-256\", username = \"alice\" }}",
        b.ca.display()
    );
    let config = config(&setup, &b, &kafka);
    let stderr = run_fails_fast(&config, &[&b.servers, "SCRAM-SHA-256", "alice"]);
    assert!(
        !stderr.contains(PASSWORD),
        "the password was logged:\n{stderr}"
    );

    let validate = streamfold(&["validate"], &config);
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&validate.stdout),
        String::from_utf8_lossy(&validate.stderr)
    );
    assert!(validate.status.success(), "{shown}");
    assert!(
        !shown.contains(PASSWORD),
        "validate showed the password:\n{shown}"
    );
}
