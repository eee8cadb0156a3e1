//! Avro binary: the direct decoders of flat records (of the reader schema,
//! and of an evolved writer schema) and the encoder of window results.

mod decode;
mod encode;
mod evolve;

pub(super) use encode::{integer, write_avro, write_avro_long, write_avro_str};
pub(super) use evolve::EvolvedPlan;
