//! Codecs: Avro schemas, decoding input records, encoding window results;
//! the formats themselves in `avro/` and `json/` (a framing such as the
//! Schema Registry's goes beside them).

mod avro;
mod direct;
mod input;
mod json;
mod output;
mod schema;

pub use input::{BatchDecoder, DecodeError, Decoder};
pub use json::{avro_to_json, json_to_value};
pub use output::{
    EncodeError, OutputEncoder, WindowOutput, join_key, push_key_part, record_name, split_key,
};
pub use schema::{RecordSchema, SchemaError};
