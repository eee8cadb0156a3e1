//! The Schema Registry wire format: which writer schema a record value
//! names, and the value without its frame.
//!
//! Confluent's serializers (and Karapace's, Redpanda's, Apicurio's in
//! compatibility mode) write one of three framings:
//! - magic byte `0x00`, the schema id as a 4-byte big-endian integer, then
//!   the encoded value;
//! - magic byte `0x01`, the schema's 16-byte GUID, then the value;
//! - the bare value, with the id or GUID (framed as above, without a
//!   value after it) in the record header `__value_schema_id`
//!   (`__key_schema_id` for keys).

use std::fmt;

/// The record header that carries a value's schema id or GUID.
pub const VALUE_SCHEMA_HEADER: &str = "__value_schema_id";

const MAGIC_ID: u8 = 0x00;
const MAGIC_GUID: u8 = 0x01;

/// The kind of a registered schema (the registry's `schemaType`; absent
/// means Avro).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaKind {
    Avro,
    Json,
    Protobuf,
}

impl SchemaKind {
    /// From the registry's `schemaType`.
    ///
    /// # Errors
    /// An unknown type, named.
    pub fn parse(v: Option<&str>) -> Result<Self, String> {
        match v {
            None | Some("AVRO") => Ok(Self::Avro),
            Some("JSON") => Ok(Self::Json),
            Some("PROTOBUF") => Ok(Self::Protobuf),
            Some(other) => Err(format!("unknown schemaType {other:?}")),
        }
    }

    /// As the registry writes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Avro => "AVRO",
            Self::Json => "JSON",
            Self::Protobuf => "PROTOBUF",
        }
    }
}

/// A writer schema as a record names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SchemaRef {
    /// The registry's integer id.
    Id(u32),
    /// The registry's GUID.
    Guid([u8; 16]),
}

impl fmt::Display for SchemaRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchemaRef::Id(id) => write!(f, "schema id {id}"),
            SchemaRef::Guid(g) => write!(f, "schema guid {}", guid_text(g)),
        }
    }
}

/// A GUID as the registry's REST API writes it:
/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lower-case hex.
pub fn guid_text(g: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes(*g).hyphenated().to_string()
}

/// Parses [`guid_text`]'s form (hyphens optional).
pub fn parse_guid(text: &str) -> Option<[u8; 16]> {
    uuid::Uuid::parse_str(text).ok().map(|u| *u.as_bytes())
}

/// Why a value is not in the Schema Registry wire format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// Too short for its frame.
    #[error(
        "Schema Registry framing: {len} bytes, too short for magic byte {magic:#04x} and its \
         {need}-byte schema reference"
    )]
    Short { magic: u8, len: usize, need: usize },
    /// The first byte is no magic byte of the wire format.
    #[error(
        "Schema Registry framing: the value starts with byte {0:#04x}, not magic byte 0x00 (schema \
         id) or 0x01 (schema guid), and has no __value_schema_id header: was it written without \
         a registry serializer?"
    )]
    Magic(u8),
    /// The `__value_schema_id` header holds no schema reference.
    #[error(
        "Schema Registry framing: header __value_schema_id holds {len} bytes starting {first:#04x}, \
         not a magic byte and a schema id or guid"
    )]
    Header { len: usize, first: u8 },
}

/// The writer schema `value` names (from `header`, the value of its
/// `__value_schema_id` header when it has one) and the encoded value
/// itself.
///
/// # Errors
/// When neither the header nor the value's first bytes are a frame.
pub fn unframe<'a>(
    value: &'a [u8],
    header: Option<&[u8]>,
) -> Result<(SchemaRef, &'a [u8]), FramingError> {
    if let Some(h) = header {
        return match reference(h) {
            Some((r, [])) => Ok((r, value)),
            _ => Err(FramingError::Header {
                len: h.len(),
                first: h.first().copied().unwrap_or(0),
            }),
        };
    }
    match reference(value) {
        Some(found) => Ok(found),
        None => Err(match value.first() {
            Some(&m @ (MAGIC_ID | MAGIC_GUID)) => FramingError::Short {
                magic: m,
                len: value.len(),
                need: if m == MAGIC_ID { 4 } else { 16 },
            },
            Some(&other) => FramingError::Magic(other),
            None => FramingError::Short {
                magic: MAGIC_ID,
                len: 0,
                need: 4,
            },
        }),
    }
}

/// A schema reference at the start of `bytes`, and what follows it.
fn reference(bytes: &[u8]) -> Option<(SchemaRef, &[u8])> {
    match bytes {
        [MAGIC_ID, rest @ ..] => {
            let (id, rest) = rest.split_first_chunk::<4>()?;
            Some((SchemaRef::Id(u32::from_be_bytes(*id)), rest))
        }
        [MAGIC_GUID, rest @ ..] => {
            let (guid, rest) = rest.split_first_chunk::<16>()?;
            Some((SchemaRef::Guid(*guid), rest))
        }
        _ => None,
    }
}

/// Appends the frame of schema `id` (magic byte 0x00 and the id) to
/// `out`; the encoded value goes after it.
pub fn frame_id(id: u32, out: &mut Vec<u8>) {
    out.push(MAGIC_ID);
    out.extend_from_slice(&id.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_framings_name_their_schema() {
        assert_eq!(
            unframe(&[0, 0, 0, 1, 2, 9, 8], None),
            Ok((SchemaRef::Id(258), &[9u8, 8][..]))
        );
        let guid: [u8; 16] = std::array::from_fn(|i| i as u8 * 17);
        let mut v = vec![1];
        v.extend_from_slice(&guid);
        v.push(7);
        assert_eq!(unframe(&v, None), Ok((SchemaRef::Guid(guid), &[7u8][..])));
        // In a header, the frame has no value after it; the record's value
        // is bare (and may start with any byte).
        assert_eq!(
            unframe(&[0xff, 3], Some(&v[..17])),
            Ok((SchemaRef::Guid(guid), &[0xffu8, 3][..]))
        );
        assert_eq!(
            unframe(&[5], Some(&[0, 0, 0, 0, 42])),
            Ok((SchemaRef::Id(42), &[5u8][..]))
        );
        let mut framed = Vec::new();
        frame_id(77, &mut framed);
        framed.push(4);
        assert_eq!(unframe(&framed, None), Ok((SchemaRef::Id(77), &[4u8][..])));
    }

    #[test]
    fn a_value_that_is_not_framed_says_what_it_starts_with() {
        let e = unframe(b"{\"a\":1}", None).unwrap_err();
        assert_eq!(e, FramingError::Magic(b'{'));
        assert!(e.to_string().contains("0x7b"), "{e}");
        assert_eq!(
            unframe(&[0, 0, 1], None).unwrap_err(),
            FramingError::Short {
                magic: 0,
                len: 3,
                need: 4
            }
        );
        assert!(matches!(
            unframe(&[1; 10], None),
            Err(FramingError::Short { need: 16, .. })
        ));
        assert!(matches!(
            unframe(&[1], Some(&[9, 9])),
            Err(FramingError::Header { len: 2, first: 9 })
        ));
    }

    #[test]
    fn guids_read_and_write_as_the_rest_api_does() {
        let g = parse_guid("6ba7b810-9dad-11d1-80b4-00c04fd430c8").unwrap();
        assert_eq!(guid_text(&g), "6ba7b810-9dad-11d1-80b4-00c04fd430c8");
        assert_eq!(
            SchemaRef::Guid(g).to_string(),
            "schema guid 6ba7b810-9dad-11d1-80b4-00c04fd430c8"
        );
        assert_eq!(parse_guid("6ba7b8109dad11d180b400c04fd430c8"), Some(g));
        assert_eq!(parse_guid("not-a-guid"), None);
    }
}
