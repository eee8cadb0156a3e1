//! The `[schema_registry]` table: where registry-framed input finds its
//! writer schemas.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Config, Framing, Secret, TlsConfig};

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
    /// The subject the output schema is registered under.
    #[serde(default)]
    pub subject_strategy: SubjectStrategy,
    /// TLS for an `https://` URL: a CA file (default: the system's trust
    /// store) and, for mutual TLS, a client certificate and its key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

/// How the output schema's subject is named.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubjectStrategy {
    /// `<output_topic>-value` (Confluent's TopicNameStrategy).
    #[default]
    TopicName,
    /// The output record's full name (RecordNameStrategy).
    RecordName,
}

impl SubjectStrategy {
    /// The subject of the values of `topic`, records named `record`.
    pub fn subject(self, topic: &str, record: &str) -> String {
        match self {
            Self::TopicName => format!("{topic}-value"),
            Self::RecordName => record.to_string(),
        }
    }
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
        self.check_auth()?;
        match (&self.username, &self.password_env, &self.token_env) {
            (Some(user), Some(var), None) => Secret::from_env(var)
                .map(|password| RegistryAuth::Basic {
                    user: user.clone(),
                    password,
                })
                .map_err(|e| ("schema_registry.password_env", e)),
            (None, None, Some(var)) => Secret::from_env(var)
                .map(RegistryAuth::Bearer)
                .map_err(|e| ("schema_registry.token_env", e)),
            _ => Ok(RegistryAuth::None),
        }
    }

    /// Whether the auth keys go together (without reading the secrets,
    /// which only running needs).
    fn check_auth(&self) -> Result<(), (&'static str, String)> {
        match (&self.username, &self.password_env, &self.token_env) {
            (None, None, None) | (Some(_), Some(_), None) | (None, None, Some(_)) => Ok(()),
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
    let p = &c.pipeline;
    match &c.schema_registry {
        None => {
            for (key, framing) in [
                ("pipeline.input_framing", p.input_framing),
                ("pipeline.output_framing", p.output_framing),
            ] {
                if framing == Framing::SchemaRegistry {
                    out.push((
                        key,
                        "\"schema-registry\" needs a [schema_registry] table with its url".into(),
                    ));
                }
            }
        }
        Some(r) => {
            if !(r.url.starts_with("http://") || r.url.starts_with("https://")) {
                out.push((
                    "schema_registry.url",
                    format!(
                        "expected http://host:port or https://host:port, found {:?}",
                        r.url
                    ),
                ));
            } else if r.tls.is_some() && r.url.starts_with("http://") {
                out.push((
                    "schema_registry.tls",
                    format!("set, and the url {:?} is not https://", r.url),
                ));
            }
            if let Some(t) = &r.tls
                && t.cert_file.is_some() != t.key_file.is_some()
            {
                out.push((
                    "schema_registry.tls",
                    "cert_file and key_file go together (mutual TLS needs both)".into(),
                ));
            }
            if r.timeout.is_zero() {
                out.push((
                    "schema_registry.timeout",
                    "expected a duration above zero, found 0s".into(),
                ));
            }
            if let Err(e) = r.check_auth() {
                out.push(e);
            }
        }
    }
    out
}
