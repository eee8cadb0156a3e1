//! Operations, checked with the real tools: a real Prometheus scrapes a
//! pipeline running on the real broker and answers every dashboard query;
//! promtool lints a live scrape and checks and unit-tests the alert rules;
//! Helm's own library lints and renders the chart, and kubernetes-validate
//! checks what it renders.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use streamfold::generate::GeneratorOptions;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where `prometheus` and `promtool` are (`.ci/test.sh` unpacks them).
fn prometheus_bin(name: &str) -> PathBuf {
    match std::env::var("STREAMFOLD_TEST_PROMETHEUS") {
        Ok(dir) if !dir.is_empty() => Path::new(&dir).join(name),
        _ => panic!(
            "this test needs Prometheus and promtool: run the tests with `bash .ci/test.sh`, \
             which unpacks Debian's prometheus package into target/test-tools, or set \
             STREAMFOLD_TEST_PROMETHEUS to the directory holding them"
        ),
    }
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn dashboard() -> serde_json::Value {
    let text =
        std::fs::read_to_string(root().join("helm/streamfold/dashboards/streamfold.json")).unwrap();
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// (panel title, query) of every panel target.
fn queries(d: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                p["title"].as_str().unwrap().to_string(),
                t["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

#[test]
fn dashboard_has_a_datasource_variable_units_descriptions_and_rate_intervals() {
    let d = dashboard();
    let vars = d["templating"]["list"].as_array().unwrap();
    assert!(
        vars.iter().any(|v| v["type"] == "datasource"),
        "no datasource variable"
    );
    let rows: Vec<&str> = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "row")
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        rows,
        [
            "Overview",
            "Consumer",
            "Processing",
            "Output",
            "Runtime",
            "State"
        ]
    );
    for p in d["panels"].as_array().unwrap() {
        if p["type"] == "row" {
            continue;
        }
        let title = p["title"].as_str().unwrap();
        assert!(
            p["fieldConfig"]["defaults"]["unit"]
                .as_str()
                .is_some_and(|u| !u.is_empty()),
            "panel {title:?} has no unit"
        );
        assert!(
            p["description"].as_str().is_some_and(|s| s.len() > 10),
            "panel {title:?} has no description"
        );
        assert_eq!(p["datasource"]["uid"], "${datasource}", "panel {title:?}");
    }
    for (title, q) in queries(&d) {
        for f in ["rate(", "increase(", "irate("] {
            for (i, _) in q.match_indices(f) {
                let rest = &q[i..];
                let window = &rest[rest.find('[').unwrap()..=rest.find(']').unwrap()];
                assert_eq!(window, "[$__rate_interval]", "panel {title:?}: {q}");
            }
        }
    }
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let rules = root().join("helm/streamfold/rules");
    for args in [
        vec!["check", "rules", "streamfold.rules.yaml"],
        vec!["test", "rules", "streamfold.rules.test.yaml"],
    ] {
        let out = Command::new(prometheus_bin("promtool"))
            .args(&args)
            .current_dir(&rules)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn chart_lints_renders_and_validates_with_helm_and_kubernetes_validate() {
    let python = test_python();
    let out = Command::new(python)
        .arg(root().join("tests/python/check_chart.py"))
        .arg(root().join("helm/streamfold"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn prometheus_scrapes_a_running_pipeline_and_every_dashboard_query_answers() {
    let setup = Setup::real(4);
    let options = GeneratorOptions {
        seed: 8,
        merchants: 8,
        late_every: 29,
        ..GeneratorOptions::default()
    };
    let events = payments_with_closers(&options, 6_000, 4);
    publish(&setup.servers(), &setup.input, &events);
    let mut events = events;
    events.push((0, Event::Poison(b"not a payment".to_vec())));
    publish(&setup.servers(), &setup.input, &events[events.len() - 1..]);
    let config = setup.write_config("5s", "");
    edit_config(&config, |c| {
        c.state.checkpoint_interval = Duration::from_millis(500);
    });

    let admin = free_port();
    let log = std::fs::File::create(setup.dir.join("run-0.log")).unwrap();
    let _run = Killed(
        Command::new(env!("CARGO_BIN_EXE_streamfold"))
            .args([
                "run",
                "--admin-addr",
                &format!("127.0.0.1:{admin}"),
                "--config",
            ])
            .arg(&config)
            .env("STREAMFOLD_PSEUDONYM_KEY", PSEUDONYM_KEY)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(admin, "/readyz").is_none_or(|(s, _)| s != 200) {
        assert!(Instant::now() < deadline, "never ready\n{}", logs(&setup));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(get(admin, "/healthz").map(|r| r.0), Some(200));
    assert!(!windows(&setup, 1, Duration::from_secs(30)).is_empty());

    // A live scrape passes promtool's lint.
    let (status, body) = get(admin, "/metrics").unwrap();
    assert_eq!(status, 200);
    let mut lint = Command::new(prometheus_bin("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    lint.stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let lint = lint.wait_with_output().unwrap();
    assert!(
        lint.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );

    // A real Prometheus scrapes it every second.
    let prom_port = free_port();
    let prom_dir = setup.dir.join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    std::fs::write(
        prom_dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: streamfold\n    \
             static_configs:\n      - targets: ['127.0.0.1:{admin}']\n        labels:\n          \
             namespace: test\n          pod: streamfold-0\n"
        ),
    )
    .unwrap();
    let _prometheus = Killed(
        Command::new(prometheus_bin("prometheus"))
            .arg(format!(
                "--config.file={}",
                prom_dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                prom_dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let query = |q: &str| -> serde_json::Value {
        let (status, body) = get(prom_port, &format!("/api/v1/query?query={}", encode(q)))
            .unwrap_or((0, String::new()));
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("query {q:?}: HTTP {status}: {body}"))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let q = encode("count_over_time(streamfold_records_consumed_total[1m])");
        let samples: Option<serde_json::Value> =
            get(prom_port, &format!("/api/v1/query?query={q}"))
                .and_then(|(_, body)| serde_json::from_str(&body).ok());
        let enough = samples.is_some_and(|s| {
            s["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|n| n >= 12.0)
        });
        if enough {
            break;
        }
        assert!(Instant::now() < deadline, "Prometheus never scraped enough");
        std::thread::sleep(Duration::from_millis(500));
    }

    // Every panel's query: never an error; the core panels have data.
    let core = [
        "Throughput",
        "Consumer lag",
        "Lag per partition",
        "Assigned partitions",
        "Commits",
        "Outcomes",
        "Batch processing latency",
        "Batch size",
        "Late and dead-lettered",
        "Watermark lag",
        "Open windows and keys",
        "Window state held",
        "Checkpoint traffic",
        "Produce rate",
        "Producer queue",
        "CPU",
        "Memory",
    ];
    let mut with_data = std::collections::BTreeSet::new();
    let mut titles = std::collections::BTreeSet::new();
    for (title, q) in queries(&dashboard()) {
        titles.insert(title.clone());
        let q = q
            .replace("$__rate_interval", "1m")
            .replace("$namespace", ".*")
            .replace("$pipeline", ".*")
            .replace("$job", ".*");
        let r = query(&q);
        assert_eq!(r["status"], "success", "panel {title:?}: {q}\n{r}");
        if r["data"]["result"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            with_data.insert(title);
        }
    }
    let empty: Vec<&String> = titles.difference(&with_data).collect();
    let missing: Vec<&&str> = core.iter().filter(|t| !with_data.contains(**t)).collect();
    assert!(
        missing.is_empty(),
        "core panels without data: {missing:?} (all empty: {empty:?})"
    );
}
