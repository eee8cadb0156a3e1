//! JSON: the direct decoder of flat objects, the generic one, and Avro
//! values as JSON.

mod decode;
mod encode;

pub use decode::json_to_value;
pub use encode::avro_to_json;
