//! The open windows of one partition as a checkpoint holds them: each
//! kind's content in a canonical form (no indexes, no key numbers),
//! restored into empty windows of the same kind. Restoring what was saved
//! and going on gives exactly what going on without the checkpoint gives.

use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregates;

/// One pane of a key (tumbling, hopping).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedPane {
    /// Group key.
    pub key: String,
    /// Pane start.
    pub start: i64,
    /// End of the last window covering the pane.
    pub last_end: i64,
    /// Its aggregates.
    pub aggregates: Aggregates,
}

/// One open session of a key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedSession {
    /// Group key.
    pub key: String,
    /// First event time.
    pub start: i64,
    /// Last event time plus the gap.
    pub end: i64,
    /// Offset of its first record.
    pub first_offset: i64,
    /// Largest event time before its first record.
    pub max_event_time_before_first: i64,
    /// Its aggregates.
    pub aggregates: Aggregates,
}

/// The open windows of a partition, by kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SavedWindows {
    /// Tumbling and hopping windows: their panes, and the watermark up to
    /// which windows were closed.
    Panes {
        closed: Option<i64>,
        panes: Vec<SavedPane>,
    },
    /// Sliding windows: one pane per (key, event time).
    Sliding {
        closed: Option<i64>,
        panes: Vec<(String, i64, Aggregates)>,
    },
    /// Session windows.
    Sessions { sessions: Vec<SavedSession> },
}

impl SavedWindows {
    /// The kind's name, for an error that says what was found.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Panes { .. } => "tumbling or hopping",
            Self::Sliding { .. } => "sliding",
            Self::Sessions { .. } => "session",
        }
    }
}

/// A checkpoint's windows do not fit the windows of the plan (the plan
/// fingerprint should have caught it first).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the checkpoint holds {found} windows, the pipeline has {expected} windows")]
pub struct WrongKind {
    /// What the pipeline has.
    pub expected: &'static str,
    /// What the checkpoint holds.
    pub found: &'static str,
}
