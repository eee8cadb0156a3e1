//! Configuration: the serde tree, loading with environment overrides, secrets.

mod chain;
mod kafka;
mod load;
mod model;
mod registry;
mod secret;

pub use kafka::{ClientConfigError, FETCH_SIZES, RECONNECT_BACKOFF};
pub use load::{ConfigError, ENV_PREFIX, LoadedConfig, Problem, load, load_all, load_lenient};
pub use model::*;
pub use registry::{RegistryAuth, SchemaRegistryConfig, SubjectStrategy};
pub use secret::Secret;
