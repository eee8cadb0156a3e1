//! What a checkpoint's state was built for: the settings that decide its
//! shape (window, group key, event time, aggregates) and what it has
//! closed (the allowed lateness sets the watermark it was closed up to). A checkpoint of a
//! pipeline whose settings have changed since is refused, naming each
//! change, unless the user asks to start that pipeline's state afresh.

use serde::{Deserialize, Serialize};

use crate::config::PipelineConfig;

/// The state-shaping settings of a pipeline, by configuration key, each
/// as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// (key, value as JSON), in a fixed order.
    pub settings: Vec<(String, String)>,
}

impl Fingerprint {
    /// The fingerprint of `pipeline`.
    pub fn of(pipeline: &PipelineConfig) -> Self {
        let json = |v: serde_json::Result<String>| v.unwrap_or_else(|e| format!("<{e}>"));
        Self {
            settings: vec![
                (
                    "pipeline.window".into(),
                    json(serde_json::to_string(&pipeline.window)),
                ),
                (
                    "pipeline.group_by".into(),
                    json(serde_json::to_string(&pipeline.group_by)),
                ),
                (
                    "pipeline.event_time".into(),
                    json(serde_json::to_string(&pipeline.event_time())),
                ),
                (
                    "pipeline.allowed_lateness".into(),
                    json(serde_json::to_string(
                        &humantime::format_duration(pipeline.allowed_lateness).to_string(),
                    )),
                ),
                (
                    "pipeline.aggregates".into(),
                    json(serde_json::to_string(&pipeline.aggregates)),
                ),
            ],
        }
    }

    /// What differs from `saved` (a checkpoint's), one line per setting:
    /// `pipeline.window: {"kind":"tumbling","size":"1h"} in the checkpoint,
    /// {"kind":"tumbling","size":"1m"} now`. Empty when nothing does.
    pub fn changes_since(&self, saved: &Self) -> Vec<String> {
        let mut out = Vec::new();
        for (key, now) in &self.settings {
            let before = saved
                .settings
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v);
            match before {
                Some(b) if b == now => {}
                Some(b) => out.push(format!("{key}: {b} in the checkpoint, {now} now")),
                None => out.push(format!("{key}: not in the checkpoint, {now} now")),
            }
        }
        for (key, before) in &saved.settings {
            if !self.settings.iter().any(|(k, _)| k == key) {
                out.push(format!("{key}: {before} in the checkpoint, not set now"));
            }
        }
        out
    }
}
