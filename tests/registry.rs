//! The Schema Registry stand-in speaks what Confluent's own client speaks,
//! and streamfold's client reads what Confluent's serializers registered
//! and framed.

mod common;

use std::time::Duration;

use common::*;
use streamfold::codec::{SchemaRef, parse_guid, unframe};
use streamfold::config::Secret;
use streamfold::registry::{Auth, Registry, RegistryError, SchemaKind};

fn hex(s: &serde_json::Value) -> Vec<u8> {
    let s = s.as_str().unwrap();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test]
async fn confluents_client_and_streamfolds_agree_on_the_stand_in() {
    let password = "s3cret-registry-password";
    let registry = RegistryStandIn::start(None, &["--auth", &format!("sr-user:{password}")]);
    let out = std::process::Command::new(test_python())
        .arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/registry_check.py"),
        )
        .arg(registry.url())
        .arg(format!("sr-user:{password}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    // What Confluent's client saw: 401 without credentials, compatibility
    // decided as Avro's rules say, 409 for an incompatible registration.
    assert_eq!(got["without_auth"], 401);
    assert_eq!(got["v2_compatible"], true);
    assert_eq!(got["v3_compatible"], false);
    assert_eq!(got["v3_register"], 409);
    assert_eq!(got["subjects"], serde_json::json!(["bids-value"]));
    assert_eq!(got["versions"], serde_json::json!([1, 2]));
    assert_eq!(got["by_guid"], true);

    // Its serializer's framings, as streamfold reads them.
    let v1_id = got["v1_id"].as_u64().unwrap() as u32;
    let guid = parse_guid(got["v1_guid"].as_str().unwrap()).unwrap();
    let framed = hex(&got["framed_v1"]);
    let (schema, body) = unframe(&framed, None).unwrap();
    assert_eq!(schema, SchemaRef::Id(v1_id));
    assert_eq!(body, &[14, 24], "auction 7, price 12 as zig-zag varints");
    let bare = hex(&got["header_value"]);
    let header = hex(&got["header"]);
    assert_eq!(
        unframe(&bare, Some(&header)).unwrap(),
        (SchemaRef::Guid(guid), &bare[..])
    );

    // streamfold's client on the same registry.
    let auth = Auth::Basic {
        user: "sr-user".into(),
        password: Secret::new(password),
    };
    let client = Registry::new(&registry.url(), auth, Duration::from_secs(5), None).unwrap();
    let v1 = got["v1"].as_str().unwrap();
    let v2 = got["v2"].as_str().unwrap();
    let by_id = client.schema(&SchemaRef::Id(v1_id)).await.unwrap();
    assert_eq!((by_id.kind, by_id.schema.as_str()), (SchemaKind::Avro, v1));
    assert_eq!(by_id.guid, Some(guid));
    let by_guid = client.schema(&SchemaRef::Guid(guid)).await.unwrap();
    assert_eq!((by_guid.id, by_guid.schema.as_str()), (v1_id, v1));
    let latest = client.version("bids-value", "latest").await.unwrap();
    assert_eq!(
        (latest.id, latest.version, latest.schema.as_str()),
        (got["v2_id"].as_u64().unwrap() as u32, Some(2), v2)
    );
    // Registering what is there gives its id; compatibility says why not.
    let (again, _) = client
        .register("bids-value", SchemaKind::Avro, v2)
        .await
        .unwrap();
    assert_eq!(again, latest.id);
    let v3 = v2.replace(
        r#"{"name": "channel""#,
        r#"{"name": "bidder", "type": "long"}, {"name": "channel""#,
    );
    let verdict = client
        .compatible("bids-value", "latest", SchemaKind::Avro, &v3)
        .await
        .unwrap();
    let reasons = verdict.unwrap_err();
    assert!(reasons.iter().any(|r| r.contains("bidder")), "{reasons:?}");
    let refused = client
        .register("bids-value", SchemaKind::Avro, &v3)
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, RegistryError::Refused { status: 409, .. })
            && refused.to_string().contains("incompatible"),
        "{refused}"
    );
    assert_eq!(client.subjects().await.unwrap(), ["bids-value"]);

    // Unknown ids are not found (not transient); bad credentials are
    // named without the password.
    let missing = client.schema(&SchemaRef::Id(999)).await.unwrap_err();
    assert!(
        matches!(missing, RegistryError::NotFound { .. }) && !missing.transient(),
        "{missing}"
    );
    assert!(missing.to_string().contains("schema id 999"), "{missing}");
    let wrong = Registry::new(
        &registry.url(),
        Auth::Basic {
            user: "sr-user".into(),
            password: Secret::new("not-the-password"),
        },
        Duration::from_secs(5),
        None,
    )
    .unwrap();
    let e = wrong.subjects().await.unwrap_err();
    assert!(
        matches!(e, RegistryError::Unauthorized { status: 401, .. }),
        "{e}"
    );
    assert!(!e.to_string().contains("not-the-password"), "{e}");
}

const REGISTRY_PASSWORD: &str = "registry-pw-not-to-be-printed";

/// The writer schemas: v2 is the pipeline's input schema (payment.avsc
/// with a field added with a default); v1 lacks that field, has one v2
/// removed, and writes `amount` as an int (promoted to long); v3 writes
/// `amount` as a string, which no reader of a long can read.
fn versions() -> serde_json::Value {
    let mut v2: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(schema_dir().join("payment.avsc")).unwrap())
            .unwrap();
    let fields = v2["fields"].as_array_mut().unwrap();
    fields.push(serde_json::json!({"name": "channel", "type": "string", "default": "web"}));
    let mut v1 = v2.clone();
    let f1 = v1["fields"].as_array_mut().unwrap();
    f1.retain(|f| f["name"] != "channel");
    f1.push(serde_json::json!({"name": "terminal", "type": "string"}));
    for f in f1.iter_mut().filter(|f| f["name"] == "amount") {
        f["type"] = "int".into();
    }
    let mut v3 = v2.clone();
    for f in v3["fields"].as_array_mut().unwrap().iter_mut() {
        if f["name"] == "amount" {
            f["type"] = "string".into();
        }
    }
    serde_json::json!({"v1": v1.to_string(), "v2": v2.to_string(), "v3": v3.to_string()})
}

/// Payments over 4 partitions (and one closer per partition) serialized by
/// Confluent's serializers against `registry`: v1 and v2 interleaved, in
/// all three framings; with `bad`, now and then a record with an unknown
/// schema id, one without a frame, one of v3. Returns what the test
/// expects (bad records as poison) and what to publish.
fn framed_payments(
    setup: &Setup,
    registry: &RegistryStandIn,
    bad: bool,
) -> (Vec<(i32, Event)>, Vec<Outgoing>) {
    let options = streamfold::generate::GeneratorOptions {
        seed: 23,
        merchants: 8,
        step_ms: 40,
        jitter_ms: 2_000,
        late_every: 0,
        ..Default::default()
    };
    let payments: Vec<(i32, Event)> = payments_with_closers(&options, 3_000, 4);
    let schemas = setup.dir.join("versions.json");
    std::fs::write(&schemas, versions().to_string()).unwrap();
    let mut plan = Vec::new();
    let mut lines = String::new();
    for (i, (_, e)) in payments.iter().enumerate() {
        let Event::Payment(p) = e else { unreachable!() };
        let (version, framing) = match i {
            i if bad && i % 97 == 50 => ("v2", "unknown"),
            i if bad && i % 101 == 60 => ("v2", "malformed"),
            i if bad && i % 103 == 70 => ("v3", "id"),
            i => [
                ("v1", "id"),
                ("v2", "id"),
                ("v2", "header"),
                ("v1", "guid"),
                ("v1", "header"),
                ("v2", "guid"),
            ][i % 6],
        };
        let mut json = serde_json::json!({
            "payment_id": p.payment_id, "merchant_id": p.merchant_id, "card_id": p.card_id,
            "amount": p.amount, "currency": p.currency, "country": p.country,
            "event_time": p.event_time, "version": version, "framing": framing,
        });
        match version {
            "v1" => json["terminal"] = "t-1".into(),
            "v3" => json["amount"] = p.amount.to_string().into(),
            _ => json["channel"] = "app".into(),
        }
        lines += &format!("{json}\n");
        plan.push(version == "v3" || framing == "unknown" || framing == "malformed");
    }
    let framed = python_lines(
        "tests/python/registry_produce.py",
        &[
            &registry.url(),
            &format!("sr-user:{REGISTRY_PASSWORD}"),
            &schemas.display().to_string(),
            &setup.input,
        ],
        &lines,
    );
    assert_eq!(framed.len(), payments.len());
    let mut events = Vec::new();
    let mut outgoing = Vec::new();
    for (((partition, e), f), is_bad) in payments.into_iter().zip(&framed).zip(plan) {
        let Event::Payment(p) = &e else {
            unreachable!()
        };
        let value = hex(&f["value"]);
        outgoing.push(Outgoing {
            partition,
            key: p.merchant_id.clone(),
            value: value.clone(),
            schema_header: f["header"].as_str().map(|_| hex(&f["header"])),
        });
        events.push((partition, if is_bad { Event::Poison(value) } else { e }));
    }
    (events, outgoing)
}

/// The test pipeline reading registry-framed payments with v2.
fn framed_config(setup: &Setup, registry: &RegistryStandIn) -> std::path::PathBuf {
    let reader = setup.dir.join("payment-v2.avsc");
    std::fs::write(&reader, versions()["v2"].as_str().unwrap()).unwrap();
    let config = setup.write_config("5s", "");
    edit_config(&config, |c| {
        c.pipeline.input_schema = Some(reader);
        c.pipeline.input_framing = streamfold::config::Framing::SchemaRegistry;
        c.schema_registry = Some(streamfold::config::SchemaRegistryConfig {
            url: registry.url(),
            username: Some("sr-user".into()),
            password_env: Some("TEST_REGISTRY_PASSWORD".into()),
            token_env: None,
            timeout: Duration::from_secs(2),
            subject_strategy: Default::default(),
            tls: None,
        });
    });
    config
}

fn start_framed(setup: &Setup, config: &std::path::Path, run: usize) -> Run {
    start_with_env(
        setup,
        config,
        run,
        &[],
        &[("TEST_REGISTRY_PASSWORD", REGISTRY_PASSWORD)],
    )
}

/// Registry-framed Avro from Confluent's serializers, two schema versions
/// interleaved in all three framings, windowed as an independent
/// computation says; bad frames, unknown ids and an unreadable writer
/// schema are dead letters that say which, and the records around them
/// are aggregated.
#[test]
fn registry_framed_payments_of_two_versions_window_as_computed_independently() {
    let setup = Setup::new(4);
    let registry =
        RegistryStandIn::start(None, &["--auth", &format!("sr-user:{REGISTRY_PASSWORD}")]);
    let (events, outgoing) = framed_payments(&setup, &registry, true);
    let offsets = publish_records(&setup.servers(), &setup.input, &outgoing);
    let expected = expected(&events, &offsets, 5_000, |p| p.merchant_id.clone());
    assert!(expected.windows.len() > 10 && expected.failed.len() >= 3);

    let config = framed_config(&setup, &registry);
    let mut child = start_framed(&setup, &config, 0);
    let rows = windows_covering(&setup, &expected, Duration::from_secs(60));
    let letters = read_until(&setup.servers(), &setup.dlq, Duration::from_secs(30), |r| {
        r.len() >= expected.failed.len()
    });
    assert!(child.terminate().success(), "{}", logs(&setup));
    assert_complete(&rows, &expected, || logs(&setup));

    let mut at: Vec<(i32, i64)> = letters
        .iter()
        .map(|l| {
            assert_eq!(l.headers["streamfold.error.stage"], "decode", "{l:?}");
            (
                l.headers["streamfold.source.partition"].parse().unwrap(),
                l.headers["streamfold.source.offset"].parse().unwrap(),
            )
        })
        .collect();
    at.sort();
    let mut want = expected.failed.clone();
    want.sort();
    assert_eq!(
        at, want,
        "every bad record, and only those, is a dead letter"
    );
    let errors: Vec<&str> = letters
        .iter()
        .map(|l| l.headers["streamfold.error"].as_str())
        .collect();
    for needle in [
        "schema id 999999",
        "0x07",
        "cannot be read with the pipeline's input schema",
    ] {
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "no dead letter says {needle:?}: {errors:#?}"
        );
    }
    let log = std::fs::read_to_string(setup.dir.join("run-0.log")).unwrap();
    assert!(!log.contains(REGISTRY_PASSWORD), "the password was printed");
}

/// A repartitioning pipeline reads registry-framed input in all three
/// framings: the first stage forwards each value framed in band (a value
/// whose schema was named in a header gets the header's frame in front),
/// and the aggregating stage windows them as computed independently.
#[test]
fn registry_framed_input_through_the_repartition_topic_windows_as_computed() {
    let setup = Setup::new(4);
    let registry =
        RegistryStandIn::start(None, &["--auth", &format!("sr-user:{REGISTRY_PASSWORD}")]);
    let (events, mut outgoing) = framed_payments(&setup, &registry, false);
    // The closers (one per partition, an hour later) go in once every
    // other record is through the internal topic, which interleaves the
    // input partitions: the expectation merges them, and allows for it.
    let closers = outgoing.split_off(outgoing.len() - 4);
    let mut offsets = publish_records(&setup.servers(), &setup.input, &outgoing);
    offsets.extend(closers.iter().map(|_| (0, i64::MAX)));
    let merged: Vec<(i32, Event)> = events.iter().map(|(_, e)| (0, e.clone())).collect();
    let expected = expected(&merged, &offsets, 600_000, |p| p.merchant_id.clone());
    assert!(expected.late.is_empty() && expected.windows.len() > 10);

    let internal = format!("internal-{}", setup.input);
    // One partition: any closer closes every merchant's windows.
    setup.broker.create_topic(&internal, 1).unwrap();
    let config = framed_config(&setup, &registry);
    edit_config(&config, |c| {
        c.pipeline.allowed_lateness = Duration::from_secs(600);
        c.pipeline.repartition = true;
        c.pipeline.repartition_topic = Some(internal.clone());
    });
    let mut child = start_framed(&setup, &config, 0);
    let forwarded = read_until(&setup.servers(), &internal, Duration::from_secs(60), |r| {
        r.len() >= outgoing.len()
    });
    assert_eq!(forwarded.len(), outgoing.len(), "{}", logs(&setup));
    for r in &forwarded {
        assert!(
            !r.headers.contains_key("__value_schema_id"),
            "forwarded values are framed in band: {r:?}"
        );
    }
    publish_records(&setup.servers(), &setup.input, &closers);
    let rows = windows_covering(&setup, &expected, Duration::from_secs(60));
    assert!(child.terminate().success(), "{}", logs(&setup));
    assert_complete(&rows, &expected, || logs(&setup));
    assert!(
        read_all(&setup, &setup.dlq).is_empty(),
        "nothing dead-lettered"
    );
}

/// While the registry is down, records naming schemas not seen yet wait
/// (none is dead-lettered); once it is back every window is right.
#[test]
fn records_wait_while_the_registry_is_down_and_none_is_lost() {
    let setup = Setup::new(4);
    let state = setup.dir.join("registry-state.json");
    let state_arg = state.display().to_string();
    let auth = format!("sr-user:{REGISTRY_PASSWORD}");
    let registry = RegistryStandIn::start(None, &["--auth", &auth, "--state", &state_arg]);
    let port = registry.port;
    let (events, outgoing) = framed_payments(&setup, &registry, false);
    let config = framed_config(&setup, &registry);
    drop(registry); // down

    let offsets = publish_records(&setup.servers(), &setup.input, &outgoing);
    let expected = expected(&events, &offsets, 5_000, |p| p.merchant_id.clone());
    let mut child = start_framed(&setup, &config, 0);
    // The pipeline finds the registry unreachable and waits.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(setup.dir.join("run-0.log"))
        .unwrap_or_default()
        .contains("schema registry unreachable")
    {
        assert!(std::time::Instant::now() < deadline, "{}", logs(&setup));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        read_all(&setup, &setup.output).is_empty(),
        "windows came out without the registry"
    );
    let _registry = RegistryStandIn::start(Some(port), &["--auth", &auth, "--state", &state_arg]);
    let rows = windows_covering(&setup, &expected, Duration::from_secs(60));
    assert!(child.terminate().success(), "{}", logs(&setup));
    assert_complete(&rows, &expected, || logs(&setup));
    assert!(
        read_all(&setup, &setup.dlq).is_empty(),
        "a record was dead-lettered while the registry was down"
    );
}

/// Without `input_schema`, the reader schema is the latest version of
/// `<input_topic>-value`: start-up names the subject when it has none yet
/// (validate and run, exit 2), and once Confluent's serializers have
/// registered v1 and v2 the pipeline reads both with v2, as the log says.
#[test]
fn without_an_input_schema_the_latest_version_of_the_subject_reads() {
    let setup = Setup::new(4);
    let auth = format!("sr-user:{REGISTRY_PASSWORD}");
    let registry = RegistryStandIn::start(None, &["--auth", &auth]);
    let config = framed_config(&setup, &registry);
    edit_config(&config, |c| c.pipeline.input_schema = None);
    let subject = format!("{}-value", setup.input);

    let validate = std::process::Command::new(env!("CARGO_BIN_EXE_streamfold"))
        .args(["validate", "--config"])
        .arg(&config)
        .env("TEST_REGISTRY_PASSWORD", REGISTRY_PASSWORD)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&validate.stdout);
    assert!(!validate.status.success(), "{said}");
    assert!(
        said.contains(&format!("has no subject {subject}")) && said.contains("input_schema"),
        "{said}"
    );
    let mut early = start_framed(&setup, &config, 0);
    assert_eq!(
        early.exit_within(Duration::from_secs(30), &setup).code(),
        Some(2)
    );
    let log = std::fs::read_to_string(setup.dir.join("run-0.log")).unwrap();
    assert!(log.contains(&format!("has no subject {subject}")), "{log}");

    let (events, outgoing) = framed_payments(&setup, &registry, false);
    let offsets = publish_records(&setup.servers(), &setup.input, &outgoing);
    let expected = expected(&events, &offsets, 5_000, |p| p.merchant_id.clone());
    let mut child = start_framed(&setup, &config, 1);
    let rows = windows_covering(&setup, &expected, Duration::from_secs(60));
    assert!(child.terminate().success(), "{}", logs(&setup));
    assert_complete(&rows, &expected, || logs(&setup));
    let log = std::fs::read_to_string(setup.dir.join("run-1.log")).unwrap();
    assert!(
        log.contains("reader schema: the latest version of the input subject")
            && log.contains(&format!("version 2 of subject {subject}")),
        "{log}"
    );
    assert!(
        read_all(&setup, &setup.dlq).is_empty(),
        "v1 and v2 both read with the latest version"
    );
}

/// With `output_framing`, the derived output schema is registered under
/// `<output_topic>-value` and Confluent's deserializer reads every result;
/// a schema the subject's compatibility refuses stops start-up (exit 2)
/// with the registry's message.
#[test]
fn the_output_is_registered_and_confluents_deserializer_reads_it() {
    let (setup, registry, auth, config, expected) =
        framed_output(29, streamfold::config::Format::Avro);
    check_windows_as_confluent_reads_them(&setup, &registry, &auth, &config, &expected, "avro");

    // The pipeline changed: one more aggregate, a field (without a
    // default) that the records already in the topic lack.
    let other = setup.dir.join("other.toml");
    std::fs::copy(&config, &other).unwrap();
    edit_config(&other, |c| {
        let mut biggest = c.pipeline.aggregates[3].clone();
        biggest.name = Some("biggest".into());
        c.pipeline.aggregates.push(biggest);
        c.pipeline.output_schema = None;
        c.kafka.group_id = format!("{}-other", c.kafka.group_id);
    });
    // `validate` asks the registry, and says so before a run would.
    let validate = |config: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_streamfold"))
            .args(["validate", "--config"])
            .arg(config)
            .env("TEST_REGISTRY_PASSWORD", REGISTRY_PASSWORD)
            .env("STREAMFOLD_PSEUDONYM_KEY", PSEUDONYM_KEY)
            .output()
            .unwrap()
    };
    let good = validate(&config);
    assert!(
        good.status.success(),
        "{}{}",
        String::from_utf8_lossy(&good.stdout),
        String::from_utf8_lossy(&good.stderr)
    );
    let bad = validate(&other);
    let said = String::from_utf8_lossy(&bad.stdout);
    assert!(!bad.status.success(), "{said}");
    assert!(
        said.contains("pipeline.output_framing")
            && said.contains(&format!("subject {}-value", setup.output))
            && said.contains("biggest"),
        "{said}"
    );
    assert!(!said.contains(REGISTRY_PASSWORD));
    let mut refused = start_framed(&setup, &other, 1);
    let exit = refused.exit_within(Duration::from_secs(30), &setup);
    let log = std::fs::read_to_string(setup.dir.join("run-1.log")).unwrap();
    assert_eq!(exit.code(), Some(2), "{log}");
    assert!(
        log.contains(&format!("subject {}-value", setup.output)) && log.contains("incompatible"),
        "{log}"
    );
    assert!(!log.contains(REGISTRY_PASSWORD));
}

/// Registry-framed JSON output: its JSON Schema is registered (schemaType
/// JSON), every value carries its id, and Confluent's `JSONDeserializer`,
/// which validates each value against the schema its id names, reads
/// every window as computed independently. `schema` prints the JSON
/// Schema registered.
#[test]
fn json_output_registers_its_json_schema_and_confluents_json_deserializer_reads_it() {
    let (setup, registry, auth, config, expected) =
        framed_output(31, streamfold::config::Format::Json);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_streamfold"))
        .args(["schema", "--config"])
        .arg(&config)
        .env("TEST_REGISTRY_PASSWORD", REGISTRY_PASSWORD)
        .env("STREAMFOLD_PSEUDONYM_KEY", PSEUDONYM_KEY)
        .output()
        .unwrap();
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(
        printed["$schema"], "http://json-schema.org/draft-07/schema#",
        "{printed}"
    );
    assert_eq!(
        printed["properties"]["count"]["type"], "integer",
        "{printed}"
    );
    check_windows_as_confluent_reads_them(&setup, &registry, &auth, &config, &expected, "json");
    // What the registry holds under the output's subject is that schema.
    let auth = Auth::Basic {
        user: "sr-user".into(),
        password: Secret::new(REGISTRY_PASSWORD),
    };
    let client = Registry::new(&registry.url(), auth, Duration::from_secs(5), None).unwrap();
    let subject = format!("{}-value", setup.output);
    let latest = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(client.version(&subject, "latest"))
        .unwrap();
    assert_eq!(latest.kind, SchemaKind::Json);
    let text: serde_json::Value = serde_json::from_str(&latest.schema).unwrap();
    assert_eq!(text, printed);
}

/// Payments (generated from `seed`) published bare to a new input topic,
/// the windows an independent computation gives them, and a config that
/// writes registry-framed output in `format` to a registry stand-in with
/// basic auth (its `user:password`).
fn framed_output(
    seed: u64,
    format: streamfold::config::Format,
) -> (Setup, RegistryStandIn, String, std::path::PathBuf, Expected) {
    let setup = Setup::new(4);
    let auth = format!("sr-user:{REGISTRY_PASSWORD}");
    let registry = RegistryStandIn::start(None, &["--auth", &auth]);
    let options = streamfold::generate::GeneratorOptions {
        seed,
        merchants: 4,
        step_ms: 60,
        late_every: 0,
        ..Default::default()
    };
    let events = payments_with_closers(&options, 2_000, 4);
    let offsets = publish(&setup.servers(), &setup.input, &events);
    let expected = expected(&events, &offsets, 5_000, |p| p.merchant_id.clone());
    let config = framed_config(&setup, &registry);
    edit_config(&config, |c| {
        c.pipeline.input_schema = Some(schema_dir().join("payment.avsc"));
        c.pipeline.input_framing = streamfold::config::Framing::None;
        c.pipeline.output_framing = streamfold::config::Framing::SchemaRegistry;
        c.pipeline.output_format = format;
    });
    (setup, registry, auth, config, expected)
}

/// Runs `config` until it has written every window of `expected`, then
/// checks each as Confluent's deserializer of `kind` (`avro` or `json`)
/// reads it: the count and sum of the independent computation.
fn check_windows_as_confluent_reads_them(
    setup: &Setup,
    registry: &RegistryStandIn,
    auth: &str,
    config: &std::path::Path,
    expected: &Expected,
    kind: &str,
) {
    let mut child = start_framed(setup, config, 0);
    let want = expected.windows.len();
    let read = read_until(
        &setup.servers(),
        &setup.output,
        Duration::from_secs(60),
        |r| r.len() >= want,
    );
    assert!(child.terminate().success(), "{}", logs(setup));
    let decoded = confluent_reads(registry, auth, &setup.output, &read, kind);
    let mut got = std::collections::BTreeMap::new();
    for d in &decoded {
        let key = (
            d["key"].as_str().unwrap().to_string(),
            d["window_start"].as_i64().unwrap(),
        );
        got.insert(
            key,
            (d["count"].as_i64().unwrap(), d["sum"].as_f64().unwrap()),
        );
    }
    assert_eq!(got.len(), want, "{decoded:?}");
    for (k, w) in &expected.windows {
        let (count, sum) = got[k];
        assert_eq!(count, w.count, "{k:?}");
        assert!((sum - w.sum).abs() < 1e-6, "{k:?}: {sum} vs {}", w.sum);
    }
}

/// The values of `read` (of `topic`) as Confluent's deserializer of
/// `kind` (`avro`: `AvroDeserializer`, `json`: `JSONDeserializer`) reads
/// them.
fn confluent_reads(
    registry: &RegistryStandIn,
    auth: &str,
    topic: &str,
    read: &[Read],
    kind: &str,
) -> Vec<serde_json::Value> {
    let values: String = read
        .iter()
        .map(|r| format!("{}\n", to_hex(&r.payload)))
        .collect();
    python_lines(
        "tests/python/registry_consume.py",
        &[&registry.url(), auth, topic, kind],
        &values,
    )
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs a test script with `args`, `input` on stdin; its output as JSON lines.
fn python_lines(script: &str, args: &[&str], input: &str) -> Vec<serde_json::Value> {
    let mut child = std::process::Command::new(test_python())
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(script))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Fed from a thread: the script writes while it reads.
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_string();
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(input.as_bytes()).unwrap();
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// An https registry: trusted through `tls.ca_file`, refused (naming the
/// registry) without it.
#[tokio::test]
async fn an_https_registry_is_reached_through_the_configured_ca() {
    let dir = tempdir();
    let (cert, key) = self_signed(&dir);
    let (c, k) = (cert.display().to_string(), key.display().to_string());
    let registry = RegistryStandIn::start(None, &["--tls", &c, &k]);
    let tls = streamfold::config::TlsConfig {
        ca_file: Some(cert.clone()),
        ..Default::default()
    };
    let trusted = Registry::new(
        &registry.https_url(),
        Auth::None,
        Duration::from_secs(5),
        Some(&tls),
    )
    .unwrap();
    assert!(trusted.subjects().await.unwrap().is_empty());
    let untrusted = Registry::new(
        &registry.https_url(),
        Auth::None,
        Duration::from_secs(5),
        None,
    )
    .unwrap();
    let e = untrusted.subjects().await.unwrap_err();
    assert!(
        matches!(e, RegistryError::Tls { .. }) && !e.transient(),
        "an untrusted certificate does not pass by waiting: {e}"
    );
    assert!(
        e.to_string().contains(&registry.https_url()) && e.to_string().contains("certificate"),
        "{e}"
    );
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("streamfold-registry-{:08x}", fastrand::u32(..)));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `streamfold produce` frames the input topic's values as a registry
/// serializer does (Confluent's deserializer reads them), and `consume`
/// unframes and decodes them: Avro, and JSON with its JSON Schema.
#[test]
fn produce_and_consume_speak_the_wire_format() {
    produce_and_consume(streamfold::config::Format::Avro, "avro");
    produce_and_consume(streamfold::config::Format::Json, "json");
}

fn produce_and_consume(format: streamfold::config::Format, kind: &str) {
    let setup = Setup::new(2);
    let auth = format!("sr-user:{REGISTRY_PASSWORD}");
    let registry = RegistryStandIn::start(None, &["--auth", &auth]);
    let config = framed_config(&setup, &registry);
    edit_config(&config, |c| {
        c.pipeline.input_schema = Some(schema_dir().join("payment.avsc"));
        c.pipeline.input_format = format;
    });
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_streamfold"))
            .args(args)
            .arg("--config")
            .arg(&config)
            .env("TEST_REGISTRY_PASSWORD", REGISTRY_PASSWORD)
            .env("STREAMFOLD_PSEUDONYM_KEY", PSEUDONYM_KEY)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    cli(&["produce", "--generate", "20"]);
    let read = read_until(
        &setup.servers(),
        &setup.input,
        Duration::from_secs(10),
        |r| r.len() >= 20,
    );
    assert_eq!(read.len(), 20);
    let decoded = confluent_reads(&registry, &auth, &setup.input, &read, kind);
    assert!(
        decoded.iter().all(|d| d["merchant_id"]
            .as_str()
            .is_some_and(|m| m.starts_with("m-"))),
        "{decoded:?}"
    );
    let shown = cli(&[
        "consume",
        "--topic",
        &setup.input,
        "--max-records",
        "20",
        "--idle-timeout",
        "5s",
    ]);
    let lines: Vec<serde_json::Value> = shown
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 20, "{shown}");
    let ids = |v: Vec<&serde_json::Value>| {
        let mut ids: Vec<String> = v.iter().map(|v| v["payment_id"].to_string()).collect();
        ids.sort();
        ids
    };
    assert_eq!(
        ids(lines.iter().map(|l| &l["value"]).collect()),
        ids(decoded.iter().collect()),
        "{shown}"
    );
}
