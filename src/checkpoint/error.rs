//! Why a checkpoint cannot be used.

use crate::window::WrongKind;

/// Why a checkpoint cannot be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// Written in a format this build does not read.
    #[error(
        "it was written in checkpoint format {found}, and this streamfold reads format \
         {supported}: run the streamfold version that wrote it, or set \
         state.on_plan_change = \"start-afresh\" to start this pipeline's window state \
         afresh from the committed offsets"
    )]
    Version { found: u16, supported: u16 },
    /// Its bytes are not a checkpoint of this format.
    #[error("it cannot be read: {reason}")]
    Corrupt { reason: String },
    /// The pipeline's window, group key, event time or aggregates changed
    /// since it was written.
    #[error(
        "the pipeline changed since it was written ({}): restore the previous settings, or \
         set state.on_plan_change = \"start-afresh\" to start this pipeline's window state \
         afresh from the committed offsets",
        changes.join("; ")
    )]
    PlanChanged { changes: Vec<String> },
    /// Its windows are of another kind.
    #[error(transparent)]
    WrongKind(#[from] WrongKind),
}
