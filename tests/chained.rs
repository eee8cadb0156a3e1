//! Two chained pipelines: bids (payments) counted per merchant in hopping
//! windows, then, per window end, the merchant with the most (max-by),
//! how many merchants had results and their total. Each stage runs as a
//! process of its own and both are SIGKILLed mid-stream: the upstream
//! writes some window results twice, and the downstream counts each once.
//! The same again with the downstream's aggregates pre-aggregated
//! upstream (`per_window`): one record per window and partition.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use streamfold::generate::GeneratorOptions;

const ADVANCE_MS: i64 = 5_000;

/// The two pipelines' config: `counts` (hopping 10 s every 5 s per
/// merchant) and `hot`, reading `counts` (its results repartitioned by
/// window end through a one-partition topic, so that one window of `hot`
/// sees every merchant's result).
/// With `pre_aggregate`, `counts` folds each window's results on each
/// partition into the hot merchant, the merchants and their bids
/// (`per_window`), and `hot` merges those partition records.
fn chain_config(setup: &Setup, hot: &str, internal: &str, pre_aggregate: bool) -> PathBuf {
    let (per_window, aggregates) = if pre_aggregate {
        (
            r#"per_window = [
  { fn = "max-by", field = "count", value = ["key", "count"], name = "hot" },
  { fn = "count", name = "merchants" },
  { fn = "sum", field = "count", name = "bids" },
]"#,
            r#"[
  { fn = "max-by", field = "hot_count", value = ["hot_key", "hot_count"], name = "top" },
  { fn = "sum", field = "merchants", name = "merchants" },
  { fn = "sum", field = "bids", name = "bids" },
]"#,
        )
    } else {
        (
            "",
            r#"[
  { fn = "max-by", field = "count", value = ["key", "count"], name = "hot" },
  { fn = "count", name = "merchants" },
  { fn = "sum", field = "count", name = "bids" },
]"#,
        )
    };
    let text = format!(
        r#"
[kafka]
bootstrap_servers = "{servers}"
group_id = "chain-{input}"
session_timeout = "6s"

[[pipelines]]
name = "counts"
input_topic = "{input}"
input_schema = "{schemas}/payment.avsc"
output_topic = "{output}"
dead_letter_topic = "{dlq}"
group_by = "merchant_id"
event_time = {{ source = "field", field = "event_time" }}
window = {{ kind = "hopping", size = "10s", advance = "5s" }}
allowed_lateness = "5s"
aggregates = [{{ fn = "count" }}]
{per_window}

[[pipelines]]
name = "hot"
input = {{ pipeline = "counts" }}
output_topic = "{hot}"
output_format = "json"
dead_letter_topic = "{dlq}"
group_by = "window_end"
window = {{ kind = "tumbling", size = "5s" }}
allowed_lateness = "10m"
repartition = true
repartition_topic = "{internal}"
aggregates = {aggregates}

[commit]
interval = "300ms"
drain_deadline = "3s"

[state]
checkpoint_interval = "500ms"

[batch]
max_records = 100
max_wait = "10ms"
"#,
        servers = setup.servers(),
        input = setup.input,
        output = setup.output,
        dlq = setup.dlq,
        schemas = schema_dir().display(),
    );
    let path = setup.dir.join("chain.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// What `hot` must write, by window end: (hot merchant, its count,
/// merchants with a result, their total), from the upstream windows an
/// independent computation gives.
fn expected_hot(upstream: &Expected, before: i64) -> BTreeMap<i64, (String, i64, i64, f64)> {
    let mut by_end: BTreeMap<i64, Vec<(String, i64)>> = BTreeMap::new();
    for ((key, _), row) in &upstream.windows {
        if row.end < before {
            by_end
                .entry(row.end)
                .or_default()
                .push((key.clone(), row.count));
        }
    }
    by_end
        .into_iter()
        .map(|(end, mut rows)| {
            // The largest count; ties: the smallest key.
            rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let total: i64 = rows.iter().map(|r| r.1).sum();
            (
                end,
                (
                    rows[0].0.clone(),
                    rows[0].1,
                    rows.len() as i64,
                    total as f64,
                ),
            )
        })
        .collect()
}

fn start_stage(setup: &Setup, config: &std::path::Path, stage: &str, run: usize) -> Run {
    start_with(
        setup,
        config,
        run * 10 + usize::from(stage == "hot"),
        &["--pipeline", stage],
    )
}

#[test]
fn two_chained_pipelines_survive_sigkills_of_each_stage_and_count_upstream_repeats_once() {
    chain_survives_sigkills(false);
}

#[test]
fn a_downstream_pre_aggregated_upstream_survives_sigkills_of_each_stage() {
    chain_survives_sigkills(true);
}

fn chain_survives_sigkills(pre_aggregate: bool) {
    let setup = Setup::real(4);
    let hot = format!("hot-{}", setup.input);
    let internal = format!("hot-internal-{}", setup.input);
    setup.broker.create_topic(&hot, 2).unwrap();
    setup.broker.create_topic(&internal, 1).unwrap();
    let config = chain_config(&setup, &hot, &internal, pre_aggregate);

    let options = GeneratorOptions {
        seed: 41,
        merchants: 8,
        step_ms: 40,
        jitter_ms: 2_000,
        late_every: 0,
        ..Default::default()
    };
    let n = 4_000;
    let mut events = payments_with_closers(&options, n, 4);
    // A second wave an hour later closes the windows of the first, whose
    // results move `hot`'s watermark past every window before them.
    let closers: Vec<(i32, Event)> = events[n..]
        .iter()
        .map(|(part, e)| {
            let Event::Payment(p) = e else { unreachable!() };
            let mut p = p.clone();
            p.event_time += 3_600_000;
            (*part, Event::Payment(p))
        })
        .collect();
    events.extend(closers);
    let (body, tail) = events.split_at(n);

    let mut offsets = Vec::new();
    let mut seen = 0;
    for (phase, chunk) in body.chunks(n / 3).enumerate() {
        offsets.extend(publish(&setup.servers(), &setup.input, chunk));
        let mut counts = start_stage(&setup, &config, "counts", phase);
        let mut top = start_stage(&setup, &config, "hot", phase);
        wait_for_new_output(&setup, seen, phase);
        // Killed before its next commit, the upstream writes again what
        // it wrote since the last one.
        std::thread::sleep(Duration::from_millis(fastrand::u64(0..250)));
        counts.kill().unwrap(); // SIGKILL
        counts.wait().unwrap();
        std::thread::sleep(Duration::from_millis(fastrand::u64(200..1_200)));
        top.kill().unwrap();
        top.wait().unwrap();
        seen = read_all(&setup, &setup.output).len();
    }
    // The first wave of closers; the second only once `counts` has
    // written every window before them, so that `hot`, whose one input
    // partition interleaves `counts`'s four, sees them all before its
    // watermark moves an hour on.
    let (wave1, wave2) = tail.split_at(4);
    offsets.extend(publish(&setup.servers(), &setup.input, wave1));
    offsets.extend(wave2.iter().map(|(p, _)| (*p, i64::MAX)));
    let upstream = expected_hopping(
        &events,
        &offsets,
        5_000,
        |p| p.merchant_id.clone(),
        10_000,
        ADVANCE_MS,
    );
    let before = options.start_ms + 1_800_000;
    let want = expected_hot(&upstream, before);
    assert!(want.len() > 20, "{}", want.len());
    // What `counts` writes of them: a result per merchant and window, or
    // (pre-aggregated) a record per window and partition with results.
    let normal = if pre_aggregate {
        upstream
            .windows
            .values()
            .filter(|w| w.end < before)
            .map(|w| {
                (
                    w.end,
                    w.key.trim_start_matches("m-").parse::<i32>().unwrap() % 4,
                )
            })
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    } else {
        upstream.windows.values().filter(|w| w.end < before).count()
    };

    let mut counts = start_stage(&setup, &config, "counts", 9);
    let mut top = start_stage(&setup, &config, "hot", 9);
    let every_window = |r: &[Read]| {
        r.iter()
            .map(|x| &x.payload)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            >= normal
    };
    let written = read_until(
        &setup.servers(),
        &setup.output,
        Duration::from_secs(60),
        every_window,
    );
    assert!(every_window(&written), "{}", logs(&setup));
    // And `hot` has forwarded them all into its one partition: its
    // forwarders read `counts`'s four partitions each at its own pace,
    // and one that forwarded a closer's window first would move the
    // watermark an hour past what another had yet to forward.
    let forwarded = read_until(
        &setup.servers(),
        &internal,
        Duration::from_secs(60),
        every_window,
    );
    assert!(every_window(&forwarded), "{}", logs(&setup));
    publish(&setup.servers(), &setup.input, wave2);
    let read = read_until(&setup.servers(), &hot, Duration::from_secs(90), |r| {
        let keys: std::collections::BTreeSet<&str> =
            r.iter().filter_map(|x| x.key.as_deref()).collect();
        want.keys().all(|e| keys.contains(e.to_string().as_str()))
    });
    assert!(counts.terminate().success(), "{}", logs(&setup));
    assert!(top.terminate().success(), "{}", logs(&setup));

    let upstream_out = read_all(&setup, &setup.output);
    let distinct: std::collections::BTreeSet<&Vec<u8>> =
        upstream_out.iter().map(|r| &r.payload).collect();
    let repeats = upstream_out.len() - distinct.len();

    let mut got: BTreeMap<i64, Vec<serde_json::Value>> = BTreeMap::new();
    for r in &read {
        let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        // Keyed by the upstream window's end (the group key).
        let end: i64 = v["key"].as_str().unwrap().parse().unwrap();
        got.entry(end).or_default().push(v);
    }
    for (end, (hot_key, hot_count, merchants, bids)) in &want {
        let rows = got.get(end).unwrap_or_else(|| {
            panic!(
                "no result for window end {end} ({} read, ends {:?}; keys {:?})\n{}",
                read.len(),
                got.keys().take(5).collect::<Vec<_>>(),
                read.iter()
                    .take(3)
                    .map(|r| (&r.key, String::from_utf8_lossy(&r.payload)))
                    .collect::<Vec<_>>(),
                logs(&setup)
            )
        });
        for v in rows {
            assert_eq!(v, &rows[0], "window end {end}: a repeat differs");
        }
        let v = &rows[0];
        let (key_field, count_field) = match pre_aggregate {
            true => ("top_hot_key", "top_hot_count"),
            false => ("hot_key", "hot_count"),
        };
        assert_eq!(
            (
                v[key_field].as_str().unwrap(),
                v[count_field].as_i64().unwrap(),
                // A count, or (pre-aggregated) a sum of the partitions'.
                v["merchants"].as_f64().unwrap() as i64,
                v["bids"].as_f64().unwrap(),
            ),
            (hot_key.as_str(), *hot_count, *merchants, *bids),
            "window end {end} (upstream wrote {repeats} results twice)"
        );
    }
    eprintln!(
        "{} windows of `hot` as computed; the upstream wrote {repeats} of its {} results twice",
        want.len(),
        distinct.len()
    );
}

/// A global aggregate over every partition, as two stages: the upstream
/// groups each partition's payments under one key (`all`), so it writes
/// one partial count per partition and window, with the same key and
/// bounds; the downstream adds them up per window end. Each partial is
/// counted (the partition it was computed on is part of its identity), so
/// every window's total is the number of payments in it.
#[test]
fn per_partition_partials_of_one_key_are_each_counted_downstream() {
    let setup = Setup::real(4);
    let totals = format!("totals-{}", setup.input);
    let internal = format!("totals-internal-{}", setup.input);
    setup.broker.create_topic(&totals, 1).unwrap();
    setup.broker.create_topic(&internal, 1).unwrap();
    let text = format!(
        r#"
[kafka]
bootstrap_servers = "{servers}"
group_id = "partials-{input}"

[[pipelines]]
name = "partials"
input_topic = "{input}"
input_schema = "{schemas}/payment.avsc"
output_topic = "{output}"
dead_letter_topic = "{dlq}"
derive = [{{ name = "all", expr = "'all'" }}]
group_by = "all"
event_time = {{ source = "field", field = "event_time" }}
window = {{ kind = "tumbling", size = "5s" }}
aggregates = [{{ fn = "count" }}]

[[pipelines]]
name = "totals"
input = {{ pipeline = "partials" }}
output_topic = "{totals}"
output_format = "json"
dead_letter_topic = "{dlq}"
group_by = "window_end"
window = {{ kind = "tumbling", size = "5s" }}
allowed_lateness = "10m"
repartition = true
repartition_topic = "{internal}"
aggregates = [
  {{ fn = "sum", field = "count", name = "payments" }},
  {{ fn = "count", name = "partials" }},
]
"#,
        servers = setup.servers(),
        input = setup.input,
        output = setup.output,
        dlq = setup.dlq,
        schemas = schema_dir().display(),
    );
    let config = setup.dir.join("partials.toml");
    std::fs::write(&config, text).unwrap();

    let options = GeneratorOptions {
        seed: 43,
        merchants: 8,
        step_ms: 20,
        // In order: the upstream allows no lateness.
        jitter_ms: 0,
        late_every: 0,
        ..Default::default()
    };
    let n = 3_000;
    let events = payments_with_closers(&options, n, 4);
    // Payments per window, and the partials the upstream writes for it
    // (one per partition with payments in it).
    let mut want: BTreeMap<i64, (i64, std::collections::BTreeSet<i32>)> = BTreeMap::new();
    for (part, e) in &events[..n] {
        let Event::Payment(p) = e else { unreachable!() };
        let w = want
            .entry(p.event_time.div_euclid(5_000) * 5_000 + 5_000)
            .or_default();
        w.0 += 1;
        w.1.insert(*part);
    }
    let partials: usize = want.values().map(|w| w.1.len()).sum();
    publish(&setup.servers(), &setup.input, &events);
    let mut run = start(&setup, &config, 0);
    // Every partial written, then a second wave of closers an hour on: it
    // closes the first wave's windows, whose partials move the
    // downstream's watermark past every window before them.
    read_until(
        &setup.servers(),
        &setup.output,
        Duration::from_secs(60),
        |r| r.len() >= partials,
    );
    let wave2: Vec<(i32, Event)> = events[n..]
        .iter()
        .map(|(part, e)| {
            let Event::Payment(p) = e else { unreachable!() };
            let mut p = p.clone();
            p.event_time += 3_600_000;
            (*part, Event::Payment(p))
        })
        .collect();
    publish(&setup.servers(), &setup.input, &wave2);
    let written = read_until(&setup.servers(), &totals, Duration::from_secs(60), |r| {
        r.len() >= want.len()
    });
    assert!(run.terminate().success(), "{}", logs(&setup));
    let got: BTreeMap<i64, (i64, i64)> = written
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
            (
                r.key.as_deref().unwrap().parse::<i64>().unwrap(),
                (
                    v["payments"].as_f64().unwrap() as i64,
                    v["partials"].as_i64().unwrap(),
                ),
            )
        })
        .collect();
    for (end, (payments, parts)) in &want {
        assert_eq!(
            got.get(end),
            Some(&(*payments, parts.len() as i64)),
            "window ending {end}"
        );
    }
}
