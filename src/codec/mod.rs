//! Codecs: Avro schemas, decoding input records, encoding window results.

mod direct;
mod input;
mod output;
mod schema;

pub use input::{BatchDecoder, DecodeError, Decoder, json_to_value};
pub use output::{
    EncodeError, OutputEncoder, WindowOutput, avro_to_json, join_key, push_key_part, record_name,
    split_key,
};
pub use schema::{RecordSchema, SchemaError};
