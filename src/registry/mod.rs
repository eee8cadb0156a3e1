//! A Schema Registry client: the REST API of Confluent's Schema Registry
//! (which Karapace, Redpanda and Apicurio's compatibility API also speak),
//! for the writer schemas that registry-framed records name and the output
//! schemas streamfold registers.

mod client;

pub use crate::codec::SchemaKind;
pub use client::{Auth, Registered, Registry, RegistryError};
