//! Configuration: the serde tree, loading with environment overrides, secrets.

mod load;
mod model;
mod secret;

pub use load::{ConfigError, ENV_PREFIX, LoadedConfig, Problem, load};
pub use model::*;
pub use secret::Secret;
