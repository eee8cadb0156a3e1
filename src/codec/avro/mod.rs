//! Avro binary: the direct decoder of flat records and the encoder of
//! window results.

mod decode;
mod encode;

pub(super) use encode::{integer, write_avro, write_avro_long, write_avro_str};
