//! The checkpoint of one partition: where to resume, and its operator's
//! state at that offset. Versioned: a checkpoint starts with the bytes
//! `SFCK` and the format version (`u16`, little-endian), then the
//! [`Checkpoint`] in postcard (serde's compact binary form). A reader
//! refuses a version it does not know, naming it, rather than misread it.

use serde::{Deserialize, Serialize};

use super::{CheckpointError, Fingerprint};

/// The format this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;

const MAGIC: &[u8; 4] = b"SFCK";

/// One partition's checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The input topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// Its number: one more than the partition's previous checkpoint.
    pub seq: u64,
    /// The next offset to read: the state reflects every record before it
    /// and none after.
    pub offset: i64,
    /// Largest event time before `offset` (`NO_TIME` if none).
    pub max_event_time: i64,
    /// Every window ending at or before this was emitted, and acknowledged
    /// before this checkpoint was committed.
    pub settled: i64,
    /// What the state was built for (window, group key, aggregates).
    pub plan: Fingerprint,
    /// The operator's state, in the operator's own serde form.
    pub state: Vec<u8>,
}

impl Checkpoint {
    /// The bytes of this checkpoint.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.state.len() + 256);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        postcard::to_extend(self, out).expect("a checkpoint serialises into memory")
    }

    /// Reads a checkpoint written by [`Checkpoint::encode`].
    ///
    /// # Errors
    /// [`CheckpointError::Version`] for a format this build does not read,
    /// [`CheckpointError::Corrupt`] for bytes that are no checkpoint.
    pub fn decode(bytes: &[u8]) -> Result<Self, CheckpointError> {
        let corrupt = |reason: String| CheckpointError::Corrupt { reason };
        let rest = bytes
            .strip_prefix(MAGIC)
            .ok_or_else(|| corrupt("it does not start with SFCK".into()))?;
        let (version, body) = rest
            .split_first_chunk::<2>()
            .ok_or_else(|| corrupt("it ends before its version".into()))?;
        let version = u16::from_le_bytes(*version);
        if version != FORMAT_VERSION {
            return Err(CheckpointError::Version {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        postcard::from_bytes(body).map_err(|e| corrupt(e.to_string()))
    }
}
