//! Codecs: Avro schemas, decoding input records, encoding window results;
//! the formats themselves in `avro/` and `json/`, the Schema Registry's
//! framing beside them (`framing.rs`).

mod avro;
mod direct;
mod fields;
mod framing;
mod input;
mod json;
mod output;
mod schema;
mod writers;

pub use fields::{FieldOut, FieldValue};
pub use framing::{
    FramingError, SchemaKind, SchemaRef, VALUE_SCHEMA_HEADER, frame_id, guid_text, parse_guid,
    unframe,
};
pub use input::{BatchDecoder, DecodeError, Decoder};
pub use json::{avro_to_json, json_schema, json_to_value};
pub use output::{
    EncodeError, OutputEncoder, WindowOutput, join_key, push_key_part, record_name, split_key,
};
pub use schema::{RecordSchema, SchemaError};
pub use writers::{Known, Writer, Writers};
