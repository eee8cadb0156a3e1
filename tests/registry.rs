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
    let client = Registry::new(&registry.url(), auth, Duration::from_secs(5)).unwrap();
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
    )
    .unwrap();
    let e = wrong.subjects().await.unwrap_err();
    assert!(
        matches!(e, RegistryError::Unauthorized { status: 401, .. }),
        "{e}"
    );
    assert!(!e.to_string().contains("not-the-password"), "{e}");
}
