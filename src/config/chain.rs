//! Chained pipelines: a pipeline of a file that reads another's output
//! (`input = { pipeline = "NAME" }`) takes its input from that pipeline's
//! settings, before the checks of each pipeline run.

use super::{EmitConfig, EventTimeConfig, PipelineConfig, Problem};

/// Resolves `input = { pipeline = "NAME" }`: the upstream's output topic,
/// format and framing become the pipeline's input, and event time its
/// results' `window_end` unless set. Returns each pipeline's upstream (by
/// position); problems (an unknown or circular upstream, an input topic or
/// schema given as well) go to `problems`.
pub(super) fn chain(
    pipelines: &mut [PipelineConfig],
    file: &str,
    problems: &mut Vec<Problem>,
) -> Vec<Option<usize>> {
    let many = pipelines.len() > 1;
    let key = |i: usize, k: &str| {
        if many {
            format!("pipelines[{i}].{k}")
        } else {
            format!("pipeline.{k}")
        }
    };
    let names: Vec<String> = pipelines.iter().map(|p| p.name.clone()).collect();
    let mut ups = vec![None; pipelines.len()];
    for i in 0..pipelines.len() {
        let Some(input) = pipelines[i].input.clone() else {
            continue;
        };
        let Some(j) = names.iter().position(|n| *n == input.pipeline) else {
            problems.push(Problem::new(
                file,
                key(i, "input.pipeline"),
                format!(
                    "expected the name of another pipeline of this file, found {:?} (it has: {})",
                    input.pipeline,
                    names.join(", ")
                ),
            ));
            continue;
        };
        ups[i] = Some(j);
    }
    // No pipeline may reach itself.
    for i in 0..pipelines.len() {
        let mut at = ups[i];
        for _ in 0..pipelines.len() {
            match at {
                Some(j) if j == i => {
                    problems.push(Problem::new(
                        file,
                        key(i, "input.pipeline"),
                        format!(
                            "pipeline {:?} reads its own output (through a chain)",
                            names[i]
                        ),
                    ));
                    ups[i] = None;
                    break;
                }
                Some(j) => at = ups[j],
                None => break,
            }
        }
    }
    for i in 0..pipelines.len() {
        let Some(j) = ups[i] else { continue };
        let (topic, format, framing, windowed) = {
            let u = &pipelines[j];
            (
                u.output_topic.clone(),
                u.output_format,
                u.output_framing,
                u.window.is_some(),
            )
        };
        let u = &pipelines[j];
        if u.input_schema.is_none() && u.input.is_none() {
            problems.push(Problem::new(
                file,
                key(i, "input.pipeline"),
                format!(
                    "reads {:?}, which takes its reader schema from the registry at start-up; a \
                     pipeline can read only one with an input_schema file (set one there)",
                    names[j]
                ),
            ));
        }
        if matches!(u.emit, EmitConfig::OnUpdate { .. }) && pipelines[i].window.is_some() {
            problems.push(Problem::new(
                file,
                key(i, "input.pipeline"),
                format!(
                    "reads {:?}, which writes updates of open windows (emit = \"on-update\"): a \
                     windowed pipeline would fold each update as a result; give {:?} emit = \
                     \"on-close\", or read it without a window",
                    names[j], names[j]
                ),
            ));
        }
        let p = &mut pipelines[i];
        if !p.input_topic.is_empty() && p.input_topic != topic {
            problems.push(Problem::new(
                file,
                key(i, "input_topic"),
                format!(
                    "is {:?}, but input = {{ pipeline = {:?} }} reads {topic:?}: remove input_topic",
                    p.input_topic, names[j]
                ),
            ));
        }
        if p.input_schema.is_some() {
            problems.push(Problem::new(
                file,
                key(i, "input_schema"),
                format!(
                    "is set, but the input schema of a pipeline reading {:?} is that pipeline's \
                     output schema: remove input_schema",
                    names[j]
                ),
            ));
        }
        p.input_topic = topic;
        p.input_format = format;
        p.input_framing = framing;
        if p.event_time_config.is_none() && windowed {
            p.event_time_config = Some(EventTimeConfig::Field {
                field: "window_end".into(),
            });
        }
    }
    ups
}
