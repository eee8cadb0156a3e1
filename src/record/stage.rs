//! Where a record was given up: the stage of a dead letter.

/// The step at which a record was given up: the `streamfold.error.stage`
/// header and the `stage` label of `dead_letters_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The value could not be decoded.
    Decode,
    /// A transform (or the `where` filter) rejected it.
    Transform,
    /// Its group key, a value or its event time could not be read.
    Extract,
    /// Its window had already been emitted.
    Late,
}

impl Stage {
    /// The header value and metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decode => "decode",
            Self::Transform => "transform",
            Self::Extract => "extract",
            Self::Late => "late",
        }
    }
}
