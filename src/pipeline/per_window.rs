//! `per_window`: what a windowed pipeline folds each closed window's
//! results into, on each partition, before it writes them.

use crate::aggregate::AggSpec;
use crate::codec::{OutputEncoder, RecordSchema};
use crate::config::{EmitConfig, PipelineConfig, Problem, WindowConfig};
use crate::record::Layout;

/// `per_window`: the aggregates over one window's results on one
/// partition. They read the results as the pipeline would write them
/// without `per_window` (`key`, `window_start`, `window_end`, the key
/// columns, the aggregates' fields), in group-key order; the pipeline
/// writes one record per window instead, of `window_start`,
/// `window_end` and these aggregates' fields, keyed by the window end.
pub struct PerWindow {
    /// The window results' fields, which turns a result into the record
    /// the aggregates read.
    pub results: OutputEncoder,
    /// The results' field names by position, for errors.
    pub names: Vec<String>,
    /// The aggregates, resolved against the results' fields.
    pub aggregates: Vec<AggSpec>,
}

impl PerWindow {
    /// The `per_window` aggregates of `p` over its window results (`results`,
    /// Avro field definitions, `key_columns` of them key parts); `None` when a
    /// problem was reported.
    pub(super) fn build(
        p: &PipelineConfig,
        results: &[serde_json::Value],
        key_columns: usize,
        problems: &mut Vec<Problem>,
        problem: &dyn Fn(&str, String) -> Problem,
    ) -> Option<Self> {
        let before = problems.len();
        // One partition's results of a window close together only for windows
        // that all keys share, and only once.
        if !matches!(
            p.window,
            Some(WindowConfig::Tumbling { .. } | WindowConfig::Hopping { .. })
        ) {
            problems.push(problem(
                "pipeline.per_window",
                "applies to tumbling and hopping windows, whose windows every key shares; \
             sliding windows and sessions are each key's own"
                    .into(),
            ));
        }
        if p.emit != EmitConfig::OnClose {
            problems.push(problem(
                "pipeline.per_window",
                "folds a window's final results, and emit = on-update writes results before \
             they are final: remove one of them"
                    .into(),
            ));
        }
        let results =
            OutputEncoder::with_fields("Results", None, results, key_columns, p.output_format)
                .map_err(|m| problems.push(problem("pipeline.aggregates", m)))
                .ok()?;
        let schema = RecordSchema::parse(
            std::path::Path::new("the window results"),
            &results.schema_text(),
        )
        .expect("a derived schema parses");
        let names: Vec<String> = schema.fields.iter().map(|f| f.name.clone()).collect();
        let layout = Layout::new(schema.fields.clone());
        let mut aggregates = Vec::new();
        for (i, a) in p.per_window.iter().enumerate() {
            match AggSpec::resolve(a, &layout) {
                Ok(spec) => aggregates.push(spec),
                Err(m) => problems.push(problem(
                    &format!("pipeline.per_window[{i}]"),
                    format!(
                        "{m} (the window results have the fields {})",
                        names.join(", ")
                    ),
                )),
            }
        }
        (problems.len() == before).then_some(Self {
            results,
            names,
            aggregates,
        })
    }
}
