//! TLS and SASL against a real nisshi broker serving only TLS: a pipeline
//! runs end to end over TLS with the CA from the config; a client that
//! does not trust the broker, or whose SASL login is refused, stops at
//! start-up with an error naming the broker and the mechanism instead of
//! retrying forever; the SASL password never appears in logs or in
//! `streamfold validate` output.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

const PASSWORD: &str = "hunter2-do-not-log-me";

/// A nisshi broker serving TLS only, with a fresh self-signed certificate.
struct TlsBroker {
    child: Child,
    servers: String,
    ca: PathBuf,
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tls_broker(dir: &Path) -> TlsBroker {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
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
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(made.success());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new("nisshi")
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args([
            "--storage-engine",
            "memory://nisshi/",
            "--group-initial-rebalance-delay",
            "0s",
        ])
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .arg("--silent")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nisshi is installed by .ci/test.sh (see ../shared/TOOLS.md)");
    let broker = TlsBroker {
        child,
        servers: format!("127.0.0.1:{port}"),
        ca: cert,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the TLS broker did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    broker
}

fn create_topics(b: &TlsBroker, topics: &[(&str, i32)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &b.servers)
        .set("security.protocol", "ssl")
        .set("ssl.ca.location", b.ca.display().to_string())
        .create()
        .unwrap();
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

fn streamfold(args: &[&str], config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_streamfold"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("STREAMFOLD_PSEUDONYM_KEY", PSEUDONYM_KEY)
        .env("STREAMFOLD_SASL_PASSWORD", PASSWORD)
        .env("RUST_LOG", "debug")
        .output()
        .unwrap()
}

#[test]
fn a_pipeline_runs_end_to_end_over_tls() {
    let setup = Setup::new(2);
    let b = tls_broker(&setup.dir);
    create_topics(
        &b,
        &[(&setup.input, 2), (&setup.output, 2), (&setup.dlq, 1)],
    );
    let tls = format!("tls = {{ ca_file = \"{}\" }}", b.ca.display());
    let config = config(&setup, &b, &tls);
    let out = streamfold(&["produce", "--generate", "3000"], &config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut run = start(&setup, &config, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut windows = 0;
    while Instant::now() < deadline && windows == 0 {
        let out = Command::new(env!("CARGO_BIN_EXE_streamfold"))
            .args([
                "consume",
                "--topic",
                &setup.output,
                "--idle-timeout",
                "2s",
                "--config",
            ])
            .arg(&config)
            .output()
            .unwrap();
        windows = String::from_utf8_lossy(&out.stdout).lines().count();
    }
    let _ = Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status();
    assert!(run.wait().unwrap().success(), "{}", logs(&setup));
    assert!(windows > 0, "no window arrived over TLS\n{}", logs(&setup));
}

#[test]
fn an_untrusted_broker_certificate_is_a_clear_error_not_a_hang() {
    let setup = Setup::new(1);
    let b = tls_broker(&setup.dir);
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
fn a_refused_sasl_login_names_broker_and_mechanism_and_never_shows_the_password() {
    let setup = Setup::new(1);
    let b = tls_broker(&setup.dir);
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
