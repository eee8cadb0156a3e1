//! The `[schema_registry]` table: where registry-framed input finds its
//! writer schemas.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Config, Framing, Secret};

/// A Schema Registry (Confluent's REST API).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistryConfig {
    /// Base URL, `http://host:port` (a path prefix allowed).
    pub url: String,
    /// User for HTTP basic auth (its password from `password_env`).
    #[serde(default)]
    pub username: Option<String>,
    /// Environment variable holding the basic-auth password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Environment variable holding a bearer token (instead of basic auth).
    #[serde(default)]
    pub token_env: Option<String>,
    /// How long one request may take.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// How a request authenticates, with its secret read from the
/// environment.
#[derive(Debug, Clone)]
pub enum RegistryAuth {
    None,
    Basic { user: String, password: Secret },
    Bearer(Secret),
}

impl SchemaRegistryConfig {
    /// The credentials, read from the environment variables named.
    ///
    /// # Errors
    /// A message naming the key and variable (never a value).
    pub fn auth(&self) -> Result<RegistryAuth, (&'static str, String)> {
        match (&self.username, &self.password_env, &self.token_env) {
            (None, None, None) => Ok(RegistryAuth::None),
            (Some(user), Some(var), None) => Secret::from_env(var)
                .map(|password| RegistryAuth::Basic {
                    user: user.clone(),
                    password,
                })
                .map_err(|e| ("schema_registry.password_env", e)),
            (None, None, Some(var)) => Secret::from_env(var)
                .map(RegistryAuth::Bearer)
                .map_err(|e| ("schema_registry.token_env", e)),
            (Some(_), None, _) => Err((
                "schema_registry.password_env",
                "username is set: name the environment variable that holds its password".into(),
            )),
            (None, Some(_), _) => Err((
                "schema_registry.username",
                "password_env is set: give the user it belongs to".into(),
            )),
            (Some(_), Some(_), Some(_)) => Err((
                "schema_registry.token_env",
                "set either username and password_env (basic auth) or token_env (a bearer \
                 token), not both"
                    .into(),
            )),
        }
    }
}

/// Problems of the registry settings, as (key, message).
pub(super) fn check(c: &Config) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    match (&c.schema_registry, c.pipeline.input_framing) {
        (None, Framing::SchemaRegistry) => out.push((
            "pipeline.input_framing",
            "\"schema-registry\" needs a [schema_registry] table with its url".into(),
        )),
        (Some(r), _) => {
            if !r.url.starts_with("http://") {
                out.push((
                    "schema_registry.url",
                    format!(
                        "expected http://host:port, found {:?} (https:// is not supported yet: \
                         put a TLS-terminating proxy on loopback in front of the registry)",
                        r.url
                    ),
                ));
            }
            if r.timeout.is_zero() {
                out.push((
                    "schema_registry.timeout",
                    "expected a duration above zero, found 0s".into(),
                ));
            }
            if let Err(e) = r.auth() {
                out.push(e);
            }
        }
        (None, Framing::None) => {}
    }
    out
}
