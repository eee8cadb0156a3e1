//! The table of one run: every system's events/s, CPU-seconds per million
//! events, peak RSS and checkpoint traffic, the ratios, q5's latency, and
//! restart times.

use std::collections::BTreeMap;

use super::{Args, Sample, restart, stats};

/// The Markdown table of a run of `total` events.
pub(super) fn table(
    args: &Args,
    total: usize,
    results: &BTreeMap<usize, (String, Vec<Sample>)>,
    latencies: &[(f64, f64, usize, f64)],
    restart_inputs: &[restart::Input],
    restarts: &[[Vec<restart::Restart>; 2]],
) -> String {
    let mut table = String::new();
    if !results.is_empty() {
        table += &format!(
            "{} events over {} partitions, {} runs each: median (min–max)\n\n\
         | system | events/s | CPU-s per M events | peak RSS MiB | checkpoint KB/s |\n\
         |---|---|---|---|---|\n",
            total, args.partitions, args.runs
        );
        let mut medians = BTreeMap::new();
        let mut cpu_medians = BTreeMap::new();
        for (name, samples) in results.values() {
            let eps: Vec<f64> = samples.iter().map(|s| total as f64 / s.secs).collect();
            let cpu: Vec<f64> = samples
                .iter()
                .map(|s| s.cpu_secs / total as f64 * 1e6)
                .collect();
            let rss: Vec<f64> = samples.iter().map(|s| s.peak_rss_mib).collect();
            let (e, e0, e1) = stats(&eps);
            let (c, c0, c1) = stats(&cpu);
            let (r, r0, r1) = stats(&rss);
            medians.insert(name.clone(), e);
            cpu_medians.insert(name.clone(), c);
            let ckpt: Option<Vec<f64>> = samples
                .iter()
                .map(|s| Some(s.checkpoint_bytes? / s.secs / 1e3))
                .collect();
            let ckpt = ckpt.map_or("-".to_string(), |k| format!("{:.1}", stats(&k).0));
            table += &format!(
                "| {name} | {e:.0} ({e0:.0}–{e1:.0}) | {c:.2} ({c0:.2}–{c1:.2}) | {r:.0} ({r0:.0}–{r1:.0}) | {ckpt} |\n"
            );
        }
        let ratio = |a: &str, b: &str| match (medians.get(a), medians.get(b)) {
            (Some(x), Some(y)) => format!("{:.2}", x / y),
            _ => "-".into(),
        };
        table += &format!(
            "\nq0 / ceiling B = {}, q5 / ceiling A = {}, \
         q5 / Quix Streams q5 = {}, q7 / Quix Streams q7 = {}\n",
            ratio("q0", "ceiling-b"),
            ratio("q5", "ceiling-a"),
            ratio("q5", "quix-q5"),
            ratio("q7", "quix-q7")
        );
        // Events per CPU-second, streamfold over each peer, on the
        // standard queries.
        let per_cpu = |ours: &str, peer: &str| match (cpu_medians.get(ours), cpu_medians.get(peer))
        {
            (Some(x), Some(y)) => format!("{:.1}", y / x),
            _ => "-".into(),
        };
        table += &format!(
            "CPU-s per M events, q5-hot / floor-q5 = {}\n",
            match (cpu_medians.get("q5-hot"), cpu_medians.get("floor-q5")) {
                (Some(x), Some(y)) => format!("{:.2}", x / y),
                _ => "-".into(),
            }
        );
        table += &format!(
            "events per CPU-second: q5-hot / Bytewax q5 = {}, q7-bid / Bytewax q7 = {}, \
             q5-hot / Pathway q5 = {}, q7-bid / Pathway q7 = {}\n",
            per_cpu("q5-hot", "bytewax-q5"),
            per_cpu("q7-bid", "bytewax-q7"),
            per_cpu("q5-hot", "pathway-q5"),
            per_cpu("q7-bid", "pathway-q7")
        );
        if let (Some(framed), Some(bare)) = (
            cpu_medians.get("q5-avro-framed"),
            cpu_medians.get("q5-avro"),
        ) {
            // Each run measured both back to back: the ratio within a
            // run cancels what shifts a whole run (the broker, the
            // machine's other load) that a ratio of medians keeps.
            let of = |n: &str| results.values().find(|(name, _)| name == n).map(|(_, s)| s);
            let paired: Vec<f64> = of("q5-avro-framed")
                .zip(of("q5-avro"))
                .map(|(f, b)| {
                    f.iter()
                        .zip(b)
                        .map(|(f, b)| f.cpu_secs / b.cpu_secs)
                        .collect()
                })
                .unwrap_or_default();
            let (p, p0, p1) = stats(&paired);
            table += &format!(
                "CPU-s per M events, q5-avro-framed / q5-avro = {:.2} (ratio of medians); \
                 {p:.2} ({p0:.2}–{p1:.2}) median (min–max) of the {} runs' own ratios\n",
                framed / bare,
                paired.len()
            );
        }
    }
    if !latencies.is_empty() {
        let p50: Vec<f64> = latencies.iter().map(|l| l.0).collect();
        let p99: Vec<f64> = latencies.iter().map(|l| l.1).collect();
        let (a, a0, a1) = stats(&p50);
        let (b, b0, b1) = stats(&p99);
        let windows: usize = latencies.iter().map(|l| l.2).sum();
        table += &format!(
            "\nq5 end-to-end latency (window end to result read back) at {:.0} bids/s, \
             {} s per run, {windows} windows: p50 {a:.0} ms ({a0:.0}–{a1:.0}), \
             p99 {b:.0} ms ({b0:.0}–{b1:.0})\n",
            latencies[0].3, args.latency_secs
        );
    }
    if !restart_inputs.is_empty() {
        table += &format!(
            "\nRestart after SIGKILL (bids per auction in tumbling windows, 90% of one \
             window read at {} bids/s of event time, checkpoints every 1 s), medians: \
             seconds from the kill to the first result / the last result read back, and \
             records the restarted process read\n\n\
             | window | records in the open window | without checkpoints | with checkpoints |\n\
             |---|---|---|---|\n",
            args.restart_rate
        );
        for (input, [replay, ckpt]) in restart_inputs.iter().zip(restarts) {
            let cell = |r: &[restart::Restart]| {
                let med = |f: fn(&restart::Restart) -> f64| {
                    stats(&r.iter().map(f).collect::<Vec<f64>>()).0
                };
                format!(
                    "{:.2} s / {:.2} s, {:.0} re-read",
                    med(|r| r.first),
                    med(|r| r.last),
                    med(|r| r.reread)
                )
            };
            table += &format!(
                "| {} | {} | {} | {} |\n",
                input.window,
                input.records,
                cell(replay),
                cell(ckpt)
            );
        }
    }
    table
}
