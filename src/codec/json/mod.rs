//! JSON: the direct decoder of flat objects, the generic one, Avro values
//! as JSON, and the JSON Schema of that JSON.

mod decode;
mod encode;
mod resolve;
mod scan;
mod schema;

pub use decode::json_to_value;
pub use encode::avro_to_json;
pub use schema::json_schema;
