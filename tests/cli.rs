//! The command line as a user meets it: validate, produce, consume, demo.

mod common;

use std::process::{Command, Output};

use common::*;

fn streamfold(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamfold"));
    cmd.args(args).env_remove("STREAMFOLD_PSEUDONYM_KEY");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("running streamfold")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn shipped_config() -> String {
    format!("{}/config/payments.toml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn validate_accepts_the_shipped_examples() {
    let out = streamfold(
        &["validate", "--config", &shipped_config()],
        &[("STREAMFOLD_PSEUDONYM_KEY", "k")],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("ok: pipeline \"merchant-stats\""));
    let clicks = format!("{}/config/clickstream.toml", env!("CARGO_MANIFEST_DIR"));
    let out = streamfold(&["validate", "--config", &clicks], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("ok: pipeline \"user-sessions\""));
}

#[test]
fn validate_lists_every_problem_with_file_and_key_and_never_prints_secrets() {
    let dir = std::env::temp_dir().join(format!("streamfold-cli-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let config = std::fs::read_to_string(shipped_config())
        .unwrap()
        .replace("../schemas/", &format!("{}/", schema_dir().display()))
        .replace("group_by = \"merchant_id\"", "group_by = \"amount_eur\"")
        .replace(
            "{ fn = \"sum\", field = \"amount_eur\" },",
            "{ fn = \"sum\", field = \"amount_usd\" },",
        )
        .replace("  { fn = \"min\", field = \"amount_eur\" },\n", "")
        .replace(
            "[kafka]\n",
            "[kafka]\nsasl = { mechanism = \"PLAIN\", username = \"svc\" }\n",
        );
    let path = dir.join("bad.toml");
    std::fs::write(&path, config).unwrap();
    let out = streamfold(
        &["validate", "--config", path.to_str().unwrap()],
        &[("STREAMFOLD_SASL_PASSWORD", "hunter2-secret")],
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let file = path.display().to_string();
    for needle in [
        // the missing pseudonymisation key, by variable name
        "pipeline.transforms[0]",
        "STREAMFOLD_PSEUDONYM_KEY is not set",
        // a floating-point field used as group key
        "pipeline.group_by: field \"amount_eur\": expected string, int, long or timestamp-millis, found double",
        // an aggregate over a field that does not exist
        "pipeline.aggregates[1]: field \"amount_usd\"",
    ] {
        assert!(shown.contains(needle), "missing {needle:?} in:\n{shown}");
    }
    assert!(
        shown.lines().filter(|l| l.contains(&file)).count() >= 3,
        "{shown}"
    );
    assert!(!shown.contains("hunter2"), "secret printed:\n{shown}");

    // An output schema file that does not match the aggregates.
    let config = std::fs::read_to_string(shipped_config())
        .unwrap()
        .replace("../schemas/", &format!("{}/", schema_dir().display()))
        .replace(
            "  { fn = \"mean\", field = \"amount_eur\" },\n",
            "  { fn = \"mean\", field = \"amount_eur\" },\n  { fn = \"count-distinct\", field = \"card_id\" },\n",
        );
    std::fs::write(&path, config).unwrap();
    let out = streamfold(
        &["validate", "--config", path.to_str().unwrap()],
        &[("STREAMFOLD_PSEUDONYM_KEY", "k")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("pipeline.output_schema: ")
            && text(&out).contains("merchant_window_stats.avsc: field \"count_distinct\": expected \"long\", found no such field"),
        "{}",
        text(&out)
    );

    // Environment overrides are applied and named when wrong.
    let out = streamfold(
        &["validate", "--config", &shipped_config()],
        &[
            ("STREAMFOLD_PSEUDONYM_KEY", "k"),
            ("STREAMFOLD__BATCH__MAX_RECORDS", "lots"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("environment variable STREAMFOLD__BATCH__MAX_RECORDS"),
        "{}",
        text(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn schema_prints_the_derived_output_schema_which_the_shipped_file_matches() {
    let out = streamfold(
        &[
            "schema",
            "--config",
            &shipped_config(),
            "--pipeline",
            "merchant-stats",
        ],
        &[("STREAMFOLD_PSEUDONYM_KEY", "k")],
    );
    assert!(out.status.success(), "{}", text(&out));
    let derived = apache_avro::Schema::parse_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let shipped = apache_avro::Schema::parse_str(
        &std::fs::read_to_string(schema_dir().join("merchant_window_stats.avsc")).unwrap(),
    )
    .unwrap();
    assert_eq!(derived.canonical_form(), shipped.canonical_form());

    let out = streamfold(
        &[
            "schema",
            "--config",
            &shipped_config(),
            "--pipeline",
            "nope",
        ],
        &[("STREAMFOLD_PSEUDONYM_KEY", "k")],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("no pipeline named \"nope\""));
}

/// The shipped payments config with `from` replaced by `to`, written to a
/// file of its own (schemas resolved).
fn shipped_with(dir: &std::path::Path, name: &str, from: &str, to: &str) -> String {
    let config = std::fs::read_to_string(shipped_config())
        .unwrap()
        .replace("../schemas/", &format!("{}/", schema_dir().display()));
    assert!(
        config.contains(from),
        "{from:?} is not in the shipped config"
    );
    let path = dir.join(name);
    std::fs::write(&path, config.replace(from, to)).unwrap();
    path.display().to_string()
}

/// Regression: `validate` panicked ("invalid window") on a hopping window
/// with `advance` above `size` or zero, a day-long window advancing every
/// millisecond used gigabytes on its first records, and broken CEL
/// printed the parser's panic.
#[test]
fn validate_and_run_say_the_same_about_window_geometry_and_broken_expressions_and_never_panic() {
    let dir = std::env::temp_dir().join(format!("streamfold-cli-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let tumbling = "window = { kind = \"tumbling\", size = \"1m\" }";
    let cases = [
        (
            tumbling,
            "window = { kind = \"hopping\", size = \"10s\", advance = \"1m\" }",
            "pipeline.window.advance: expected a whole number of milliseconds from 1ms up to the size (10s), found 1m",
        ),
        (
            tumbling,
            "window = { kind = \"hopping\", size = \"10s\", advance = \"0s\" }",
            "pipeline.window.advance: expected a whole number of milliseconds from 1ms up to the size (10s), found 0s",
        ),
        (
            tumbling,
            "window = { kind = \"hopping\", size = \"1d\", advance = \"1ms\" }",
            "pipeline.window.advance: pipeline.window.size (1day) / pipeline.window.advance (1ms) puts every record in 86400000 windows, expected at most 1000: set advance to at least 1m 26s 400ms",
        ),
        (
            "late_records = \"dead-letter\"",
            "late_records = \"dead-letter\"\nwhere = \"((((\"",
            "pipeline.where: expression \"((((\" does not parse: '(' at line 1, column 4 is not closed",
        ),
        (
            "late_records = \"dead-letter\"",
            "late_records = \"dead-letter\"\nwhere = \"amount_eur > \"",
            "pipeline.where: expression \"amount_eur > \" does not parse: it ends with '>' at line 1, column 12, where an operand should follow",
        ),
        (
            "late_records = \"dead-letter\"",
            "late_records = \"dead-letter\"\nwhere = \"'unterminated\"",
            "pipeline.where: expression \"'unterminated\" does not parse: the string starting at line 1, column 1 is not closed",
        ),
    ];
    for (i, (from, to, want)) in cases.into_iter().enumerate() {
        let path = shipped_with(&dir, &format!("case-{i}.toml"), from, to);
        let key = [("STREAMFOLD_PSEUDONYM_KEY", "k")];
        for command in ["validate", "run"] {
            let out = streamfold(&[command, "--config", &path], &key);
            let shown = text(&out);
            let code = if command == "validate" { 1 } else { 2 };
            assert_eq!(out.status.code(), Some(code), "{command} {to}:\n{shown}");
            let want = format!("{path}: {want}");
            assert!(
                shown.contains(&want),
                "{command} {to}: missing {want:?} in:\n{shown}"
            );
            assert!(
                !shown.contains("panicked") && !shown.contains("unreachable"),
                "{command} {to}:\n{shown}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Regression: `late_records = "dead-letter"` with a `late_topic` sent late
/// records to that topic, and `side-topic` without one silently used the
/// dead-letter topic; `validate` accepted both.
#[test]
fn a_late_policy_and_its_topic_must_agree() {
    let dir = std::env::temp_dir().join(format!("streamfold-cli-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let key = [("STREAMFOLD_PSEUDONYM_KEY", "k")];
    for (to, want) in [
        (
            "late_records = \"dead-letter\"\nlate_topic = \"late\"",
            "pipeline.late_topic: is \"late\", but late_records = \"dead-letter\" never writes there; set late_records = \"side-topic\" or remove late_topic",
        ),
        (
            "late_records = \"drop\"\nlate_topic = \"late\"",
            "pipeline.late_topic: is \"late\", but late_records = \"drop\" never writes there",
        ),
        (
            "late_records = \"side-topic\"",
            "pipeline.late_topic: expected the topic late records go to (late_records = \"side-topic\"), found none",
        ),
    ] {
        let path = shipped_with(&dir, "late.toml", "late_records = \"dead-letter\"", to);
        for (command, code) in [("validate", 1), ("run", 2)] {
            let out = streamfold(&[command, "--config", &path], &key);
            let shown = text(&out);
            assert_eq!(out.status.code(), Some(code), "{command} {to}:\n{shown}");
            assert!(
                shown.contains(&format!("{path}: {want}")),
                "{command} {to}:\n{shown}"
            );
        }
    }
    let path = shipped_with(
        &dir,
        "late.toml",
        "late_records = \"dead-letter\"",
        "late_records = \"side-topic\"\nlate_topic = \"late\"",
    );
    let out = streamfold(&["validate", "--config", &path], &key);
    assert!(out.status.success(), "{}", text(&out));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Settings that are choices are read as such: a value librdkafka does
/// not know is refused naming the key and the choices, and the spellings
/// Kafka's own tools use are accepted.
#[test]
fn kafka_choices_name_the_key_and_the_values_allowed() {
    let dir = std::env::temp_dir().join(format!("streamfold-cli-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let key = [("STREAMFOLD_PSEUDONYM_KEY", "k")];
    let kafka = "group_id = \"streamfold-payments\"";
    for (setting, want) in [
        (
            "partition_assignment_strategy = \"sticky\"",
            "kafka.partition_assignment_strategy: unknown variant: found `sticky`, expected `one of `range`, `roundrobin`, `cooperative-sticky``",
        ),
        (
            "auto_offset_reset = \"smallest\"",
            "kafka.auto_offset_reset: unknown variant: found `smallest`",
        ),
        (
            "security_protocol = \"tls\"",
            "kafka.security_protocol: unknown variant: found `tls`",
        ),
        (
            "sasl = { mechanism = \"SCRAM-SHA-1\", username = \"u\" }",
            "kafka.sasl.mechanism: unknown variant: found `SCRAM-SHA-1`, expected `one of `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512``",
        ),
    ] {
        let path = shipped_with(&dir, "choice.toml", kafka, &format!("{kafka}\n{setting}"));
        let out = streamfold(&["validate", "--config", &path], &key);
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(1), "{setting}:\n{shown}");
        assert!(
            shown.contains(&format!("{path}: {want}")),
            "{setting}:\n{shown}"
        );
    }
    let path = shipped_with(
        &dir,
        "choice.toml",
        kafka,
        &format!("{kafka}\nsecurity_protocol = \"PLAINTEXT\"\nauto_offset_reset = \"latest\""),
    );
    let out = streamfold(&["validate", "--config", &path], &key);
    assert!(out.status.success(), "{}", text(&out));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Regression: a wrong value set by an environment variable was blamed on
/// the file, and figment's parse errors wrote array positions as
/// `aggregates.2.fn` where every other message writes `aggregates[2]`.
#[test]
fn problems_name_the_variable_that_set_the_value_and_one_form_of_key() {
    let key = ("STREAMFOLD_PSEUDONYM_KEY", "k");
    let out = streamfold(
        &["validate", "--config", &shipped_config()],
        &[key, ("STREAMFOLD__PIPELINE__WINDOW__SIZE", "0s")],
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains(
            "environment variable STREAMFOLD__PIPELINE__WINDOW__SIZE: pipeline.window.size: \
             expected a whole number of milliseconds from 1ms to 100years, found 0s"
        ),
        "{shown}"
    );
    assert!(
        !shown.contains("payments.toml: pipeline.window.size"),
        "{shown}"
    );

    let dir = std::env::temp_dir().join(format!("streamfold-cli-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let path = shipped_with(
        &dir,
        "bad-fn.toml",
        "{ fn = \"min\", field = \"amount_eur\" }",
        "{ fn = \"median\", field = \"amount_eur\" }",
    );
    let out = streamfold(&["validate", "--config", &path], &[key]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("pipeline.aggregates[2].fn"), "{shown}");
    assert!(!shown.contains("aggregates.2"), "{shown}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_refuses_to_start_on_bad_config_with_exit_code_2() {
    let out = streamfold(&["run", "--config", "/nonexistent/pipeline.toml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("/nonexistent/pipeline.toml"));
}

#[test]
fn produce_json_lines_then_consume_them_decoded() {
    let setup = Setup::new(2);
    let servers = setup.servers();
    let input = setup.dir.join("payments.jsonl");
    let lines = [
        r#"{"payment_id":"p1","merchant_id":"m-1","card_id":"c1","amount":1250,"currency":"EUR","country":"DE","event_time":1767225600000}"#,
        r#"{"payment_id":"p2","merchant_id":"m-2","card_id":"c2","amount":99,"currency":"USD","country":"US","event_time":1767225601000}"#,
    ];
    std::fs::write(&input, lines.join("\n")).unwrap();
    let schema = schema_dir().join("payment.avsc");
    let schema = schema.to_str().unwrap();
    let out = streamfold(
        &[
            "produce",
            "--bootstrap-servers",
            &servers,
            "--topic",
            &setup.input,
            "--schema",
            schema,
            "--input",
            input.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));

    let out = streamfold(
        &[
            "consume",
            "--bootstrap-servers",
            &servers,
            "--topic",
            &setup.input,
            "--schema",
            schema,
            "--max-records",
            "2",
            "--idle-timeout",
            "10s",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let mut got: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    got.sort_by_key(|v| v["value"]["payment_id"].as_str().unwrap().to_string());
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["key"], "m-1", "keyed by the group-by field");
    assert_eq!(
        got[0]["value"],
        serde_json::from_str::<serde_json::Value>(lines[0]).unwrap()
    );
    assert_eq!(got[1]["value"]["amount"], 99);

    // A bad line names the file and line number.
    std::fs::write(&input, format!("{}\n{{\"payment_id\": 3}}\n", lines[0])).unwrap();
    let out = streamfold(
        &[
            "produce",
            "--bootstrap-servers",
            &servers,
            "--topic",
            &setup.input,
            "--schema",
            schema,
            "--input",
            input.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&format!("{}:2:", input.display())),
        "{}",
        text(&out)
    );
}

#[test]
fn clickstream_demo_prints_visitor_sessions() {
    let out = streamfold(
        &[
            "demo",
            "--example",
            "clickstream",
            "--duration",
            "8s",
            "--rate",
            "400",
        ],
        &[],
    );
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    let sessions = shown
        .lines()
        .filter(|l| l.contains("views") && l.contains("dwell p50") && l.contains("top /"))
        .count();
    assert!(sessions >= 3, "too few sessions:\n{shown}");
}

#[test]
fn demo_prints_windows_and_dead_letters() {
    let out = streamfold(&["demo", "--duration", "8s", "--rate", "400"], &[]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    let windows = shown
        .lines()
        .filter(|l| l.contains("count") && l.contains("EUR"))
        .count();
    assert!(windows >= 5, "too few window lines:\n{shown}");
    assert!(shown.contains("stage=decode"), "{shown}");
    assert!(shown.contains("window results and"), "{shown}");
}

/// Two pipelines in one file and one process, reading the same topic,
/// each with its own output and dead-letter topics.
#[test]
fn several_pipelines_in_one_process() {
    use streamfold::generate::GeneratorOptions;
    let setup = Setup::new(2);
    let second_out = format!("hourly-{}", setup.output);
    let second_dlq = format!("dlq2-{}", setup.output);
    setup.broker.create_topic(&second_out, 1).unwrap();
    setup.broker.create_topic(&second_dlq, 1).unwrap();
    // Each pipeline has a group of its own, and so its own checkpoints.
    for name in ["merchant-stats", "hourly"] {
        let topic = format!("group-{}.{name}-checkpoints", setup.input);
        setup.broker.create_topic(&topic, 2).unwrap();
    }
    let options = GeneratorOptions {
        seed: 8,
        merchants: 4,
        late_every: 0,
        ..GeneratorOptions::default()
    };
    let events = payments_with_closers(&options, 2_000, 2);
    let offsets = publish(&setup.servers(), &setup.input, &events);
    let minute = expected(&events, &offsets, 10_000, |p| p.merchant_id.clone());

    // The single-pipeline file, turned into [[pipelines]] with a second one.
    let path = setup.write_config("10s", "");
    let single = std::fs::read_to_string(&path).unwrap();
    let start = single.find("[pipeline]").unwrap();
    let end = single.find("[commit]").unwrap();
    let first = single[start..end]
        .replace("[pipeline]", "[[pipelines]]")
        .replace("[[pipeline.transforms]]", "[[pipelines.transforms]]");
    let second = first
        .replace("name = \"merchant-stats\"", "name = \"hourly\"")
        .replace(
            &format!("output_topic = \"{}\"", setup.output),
            &format!("output_topic = \"{second_out}\""),
        )
        .replace(
            &format!("dead_letter_topic = \"{}\"", setup.dlq),
            &format!("dead_letter_topic = \"{second_dlq}\""),
        )
        .replace("size = \"1m\"", "size = \"1h\"")
        .replace("output_schema = ", "# output_schema = ");
    std::fs::write(
        &path,
        format!("{}{first}{second}{}", &single[..start], &single[end..]),
    )
    .unwrap();

    let out = streamfold(
        &["validate", "--config", path.to_str().unwrap()],
        &[("STREAMFOLD_PSEUDONYM_KEY", "k")],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("\"merchant-stats\"") && text(&out).contains("\"hourly\""));

    let mut child = Command::new(env!("CARGO_BIN_EXE_streamfold"))
        .args(["run", "--config", path.to_str().unwrap()])
        .env("STREAMFOLD_PSEUDONYM_KEY", PSEUDONYM_KEY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let want = minute.windows.len();
    let minutes = read_until(
        &setup.servers(),
        &setup.output,
        std::time::Duration::from_secs(60),
        |r| r.len() >= want,
    );
    let total: i64 = minute.windows.values().map(|w| w.count).sum();
    let hours = read_until(
        &setup.servers(),
        &second_out,
        std::time::Duration::from_secs(30),
        |r| {
            r.iter()
                .map(|r| decode_window(&r.payload).count)
                .sum::<i64>()
                >= total
        },
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");

    assert_eq!(minutes.len(), want);
    let mut per_merchant: std::collections::BTreeMap<String, i64> = Default::default();
    for w in minute.windows.values() {
        *per_merchant.entry(w.key.clone()).or_default() += w.count;
    }
    // The generated stream spans well under an hour of event time per
    // merchant: one hourly window each (or two across an hour boundary).
    let mut hourly: std::collections::BTreeMap<String, i64> = Default::default();
    for r in &hours {
        let row = decode_window(&r.payload);
        assert_eq!(row.end - row.start, 3_600_000);
        *hourly.entry(row.key).or_default() += row.count;
    }
    assert_eq!(hourly, per_merchant, "both pipelines saw every record");
}

/// The process's transparent-huge-page setting, from `/proc/PID/status`.
#[cfg(target_os = "linux")]
fn thp_enabled(pid: u32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(|v| v.trim().to_string())
}

#[cfg(target_os = "linux")]
#[test]
fn the_process_runs_without_transparent_huge_pages() {
    // This test process has them (the machine's default), so a `0` is
    // streamfold's own doing.
    assert_eq!(
        thp_enabled(std::process::id()).as_deref(),
        Some("1"),
        "the kernel reports THP_enabled (4.18 and later), and nothing that started this test turned huge pages off"
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_streamfold"))
        .args(["dev-broker", "--topics", "t:1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut seen = thp_enabled(child.id());
    while seen.as_deref() != Some("0") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        seen = thp_enabled(child.id());
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(seen.as_deref(), Some("0"), "THP_enabled of streamfold");
}
