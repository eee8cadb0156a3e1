//! Micro-benchmarks of the per-record work on the rayon pool, so that a
//! regression shows before the end-to-end run: Avro decode, a whole batch
//! step of the payments pipeline, what a CEL `where` / `derive` adds to it,
//! window state updates, and sketch merges.
//!
//! `cargo bench --bench micro`; every figure is per batch of 1,024 records.

use std::path::{Path, PathBuf};

use apache_avro::writer::datum::GenericDatumWriter;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use streamfold::aggregate::Aggregates;
use streamfold::codec::{Decoder, RecordSchema};
use streamfold::codec::{SchemaKind, SchemaRef, Writer, frame_id};
use streamfold::config::Format;
use streamfold::generate::{
    GeneratorOptions, NEXMARK_BID_SCHEMA, PaymentGenerator, nexmark_bid_json, nexmark_bids,
};
use streamfold::operator::{Panes, process};
use streamfold::pipeline::Plan;
use streamfold::record::{RawBatch, RawRecord};
use streamfold::window::{WindowStore, Windows};

const BATCH: usize = 1_024;

/// The shipped payments pipeline, with `edit` applied to its text.
fn plan(name: &str, edit: impl Fn(String) -> String) -> Plan {
    // SAFETY: set before any thread of this benchmark reads the environment.
    unsafe {
        std::env::set_var(
            "STREAMFOLD_PSEUDONYM_KEY",
            "bench-key-bench-key-bench-key-32",
        )
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("config/payments.toml"))
        .expect("config/payments.toml")
        .replace("\"../schemas/", &format!("\"{}/schemas/", root.display()));
    let dir: PathBuf = std::env::temp_dir().join("streamfold-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, edit(text)).unwrap();
    let loaded = streamfold::config::load(&path).unwrap();
    Plan::build(&loaded, Vec::new()).unwrap()
}

fn records(plan: &Plan) -> Vec<RawRecord> {
    let writer = GenericDatumWriter::builder(&plan.decoder.schema().schema)
        .build()
        .unwrap();
    PaymentGenerator::new(GeneratorOptions {
        late_every: 0,
        ..GeneratorOptions::default()
    })
    .take(BATCH)
    .enumerate()
    .map(|(i, p)| RawRecord {
        offset: i as i64,
        timestamp: Some(p.event_time),
        key: Some(p.merchant_id.clone().into_bytes().into()),
        payload: Some(writer.write_value_to_vec(p.to_avro_value()).unwrap().into()),
        schema_header: None,
        window_partition: None,
    })
    .collect()
}

fn batch_step(c: &mut Criterion) {
    let base = plan("base", |t| t);
    let input = records(&base);
    let with_where = plan("where", |t| {
        t.replace(
            "group_by = ",
            "where = \"amount_eur > 10.0 && currency != 'JPY'\"\ngroup_by = ",
        )
    });
    let with_derive = plan("derive", |t| {
        t.replace(
            "group_by = ",
            "derive = [{ name = \"size\", expr = \"amount_eur > 1000.0 ? 'large' : 'small'\" }]\ngroup_by = ",
        )
    });
    let sketches = plan("sketches", |t| {
        t.replace(
            "  { fn = \"mean\", field = \"amount_eur\" },",
            "  { fn = \"mean\", field = \"amount_eur\" },\n  { fn = \"quantiles\", field = \"amount_eur\" },\n  { fn = \"count-distinct\", field = \"card_id\" },\n  { fn = \"top-k\", field = \"currency\", k = 3 },",
        )
        .replace("output_schema = ", "# output_schema = ")
    });

    let mut g = c.benchmark_group("batch");
    g.throughput(Throughput::Elements(BATCH as u64));
    let decoder = base.decoder.batch().unwrap();
    g.bench_function("decode_avro", |b| {
        b.iter(|| {
            for r in &input {
                std::hint::black_box(decoder.decode(r.payload.as_deref()).unwrap());
            }
        })
    });
    // The same records in the Schema Registry's wire format, their writer
    // schema (id 1) the reader's: the registry-framed common case.
    let framed_decoder = base.decoder.clone().registry_framed();
    let writers = framed_decoder.writers().unwrap();
    writers.learn(
        SchemaRef::Id(1),
        Ok((
            SchemaKind::Avro,
            base.decoder.schema().schema.canonical_form(),
        )),
    );
    let framed: Vec<RawRecord> = input
        .iter()
        .map(|r| {
            let mut value = Vec::new();
            frame_id(1, &mut value);
            value.extend_from_slice(r.payload.as_deref().unwrap());
            RawRecord {
                payload: Some(value.into()),
                ..r.clone()
            }
        })
        .collect();
    let framed_batch = framed_decoder.batch().unwrap();
    g.bench_function("decode_avro_framed", |b| {
        b.iter(|| {
            for r in &framed {
                std::hint::black_box(
                    framed_batch
                        .decode_record(r.payload.as_deref(), r.schema_header.as_deref())
                        .unwrap(),
                );
            }
        })
    });
    // The same records from an evolved writer (id 2): a field more, which
    // the reader schema does not have. Matched to the reader's fields once,
    // decoded straight into them.
    let mut evolved_schema: serde_json::Value =
        serde_json::from_str(&base.decoder.schema().schema.canonical_form()).unwrap();
    evolved_schema["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({ "name": "channel", "type": "string" }));
    let evolved_decoder = base.decoder.clone().registry_framed();
    let learnt = evolved_decoder.writers().unwrap().learn(
        SchemaRef::Id(2),
        Ok((SchemaKind::Avro, evolved_schema.to_string())),
    );
    assert!(matches!(*learnt, Writer::Resolved { plan: Some(_), .. }));
    let evolved: Vec<RawRecord> = framed
        .iter()
        .map(|r| {
            let mut value = r.payload.as_deref().unwrap().to_vec();
            value[4] = 2;
            // "web": its length 3, zig-zag encoded, then its bytes.
            value.extend_from_slice(&[6, b'w', b'e', b'b']);
            RawRecord {
                payload: Some(value.into()),
                ..r.clone()
            }
        })
        .collect();
    let evolved_batch = evolved_decoder.batch().unwrap();
    g.bench_function("decode_avro_evolved", |b| {
        b.iter(|| {
            for r in &evolved {
                std::hint::black_box(
                    evolved_batch
                        .decode_record(r.payload.as_deref(), r.schema_header.as_deref())
                        .unwrap(),
                );
            }
        })
    });
    for (name, plan) in [
        ("payments", &base),
        ("payments_where", &with_where),
        ("payments_derive", &with_derive),
        ("payments_sketches", &sketches),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || RawBatch::from(input.clone()),
                |records| process(plan, records, Panes::new()),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// JSON decode of Nexmark bids: every field read, and only the two q5
/// reads (`auction`, `date_time`; the strings checked, not copied).
fn decode_json(c: &mut Criterion) {
    let schema = RecordSchema::parse(Path::new("bid.avsc"), NEXMARK_BID_SCHEMA).unwrap();
    let all = Decoder::new(schema, Format::Json);
    let q5 = all
        .clone()
        .reading_only(&[true, false, false, false, false, true, false]);
    let input: Vec<Vec<u8>> = nexmark_bids()
        .take(BATCH)
        .map(|b| nexmark_bid_json(&b, b.date_time).into_bytes())
        .collect();
    let mut g = c.benchmark_group("batch");
    g.throughput(Throughput::Elements(BATCH as u64));
    for (name, decoder) in [("decode_json_bid", &all), ("decode_json_bid_q5", &q5)] {
        let decoder = decoder.batch().unwrap();
        g.bench_function(name, |b| {
            b.iter(|| {
                for r in &input {
                    std::hint::black_box(decoder.decode(Some(r)).unwrap());
                }
            })
        });
    }
    g.finish();
}

fn window_state(c: &mut Criterion) {
    let plan = plan("window", |t| t);
    let out = process(&plan, records(&plan).into(), Panes::new());
    let partials = out.collected.partials;
    let windows = Windows::hopping(10_000, 2_000);
    let mut g = c.benchmark_group("window");
    g.throughput(Throughput::Elements(partials.len() as u64));
    g.bench_function("merge_and_close_hopping", |b| {
        b.iter_batched(
            || partials.clone(),
            |partials| {
                let mut store = WindowStore::default();
                for p in partials {
                    let pane = windows.pane(p.pane_start).unwrap();
                    store.merge(&windows, &p.key, pane.start, pane.last_end, p.aggregates);
                }
                let mut closed = Vec::new();
                store.close_until(
                    &windows,
                    &plan.windowing().aggregates,
                    i64::MAX - 1,
                    i64::MIN,
                    &mut closed,
                );
                closed
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let sketches = self::plan("sketch", |t| {
        t.replace(
            "  { fn = \"mean\", field = \"amount_eur\" },",
            "  { fn = \"quantiles\", field = \"amount_eur\" },\n  { fn = \"count-distinct\", field = \"card_id\" },",
        )
        .replace("output_schema = ", "# output_schema = ")
    });
    let out = process(&sketches, records(&sketches).into(), Panes::new());
    let parts: Vec<Aggregates> = out
        .collected
        .partials
        .into_iter()
        .map(|p| p.aggregates)
        .collect();
    let mut g = c.benchmark_group("sketch");
    g.throughput(Throughput::Elements(parts.len() as u64));
    g.bench_function("merge_quantiles_and_hll", |b| {
        b.iter_batched(
            || parts.clone(),
            |parts| {
                let mut all = Aggregates::new(&sketches.windowing().aggregates);
                for p in parts {
                    all.merge(p);
                }
                all
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, batch_step, decode_json, window_state);
criterion_main!(benches);
