//! Records as the data path holds them: as read from Kafka
//! ([`RawRecord`], and in batches [`RawBatch`]), decoded into values by position ([`Record`]) under a
//! [`Layout`] of named, typed fields, and, when given up, the [`Stage`]
//! that gave up on them. Every other module of the data path builds on
//! these; this one imports none of them.

mod field;
mod raw;
mod stage;
mod values;

pub use field::{Field, FieldType, Layout};
pub use raw::{RawBatch, RawBatchBuilder, RawRecord, RawRef, Recycle};
pub use stage::Stage;
pub use values::{FieldError, Record};
