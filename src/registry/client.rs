//! The REST calls, over HTTP/1.1 with hyper.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_tls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value as Json, json};

use crate::codec::{SchemaKind, SchemaRef, guid_text, parse_guid};
pub use crate::config::RegistryAuth as Auth;
use crate::config::{SchemaRegistryConfig, TlsConfig};

/// The registry's media type, for requests and answers.
const MEDIA: &str = "application/vnd.schemaregistry.v1+json";

/// A schema as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// Its id.
    pub id: u32,
    /// Its GUID, where the registry gives one.
    pub guid: Option<[u8; 16]>,
    /// Its version in the subject asked about, where one was.
    pub version: Option<u32>,
    pub kind: SchemaKind,
    /// The schema text.
    pub schema: String,
}

/// Why a registry request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    /// No answer, or a server error: worth retrying.
    #[error("schema registry {url} is unreachable ({what}): {reason}")]
    Unreachable {
        url: String,
        what: String,
        reason: String,
    },
    /// The registry does not have it.
    #[error("schema registry {url} has no {what}: {message}")]
    NotFound {
        url: String,
        what: String,
        message: String,
    },
    /// The TLS handshake failed: an untrusted or wrong certificate, which
    /// waiting does not cure.
    #[error(
        "schema registry {url}: the TLS handshake failed ({what}): {reason}; check \
         schema_registry.tls (ca_file, cert_file, key_file)"
    )]
    Tls {
        url: String,
        what: String,
        reason: String,
    },
    /// The credentials were refused.
    #[error(
        "schema registry {url} refused the credentials ({status}) for {what}: check \
         schema_registry.username and the password or token in its environment variable"
    )]
    Unauthorized {
        url: String,
        what: String,
        status: u16,
    },
    /// Any other refusal (an incompatible schema among them), with the
    /// registry's own message.
    #[error("schema registry {url} refused {what} ({status}, error code {code}): {message}")]
    Refused {
        url: String,
        what: String,
        status: u16,
        code: i64,
        message: String,
    },
    /// An answer that is not what the API documents.
    #[error("schema registry {url} answered {what} with something unexpected: {reason}")]
    Malformed {
        url: String,
        what: String,
        reason: String,
    },
}

impl RegistryError {
    /// Whether trying again later may succeed: the registry is down,
    /// overloaded or restarting.
    pub fn transient(&self) -> bool {
        matches!(self, RegistryError::Unreachable { .. })
    }
}

/// A Schema Registry at one base URL.
#[derive(Clone)]
pub struct Registry {
    base: String,
    auth: Auth,
    timeout: Duration,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("url", &self.base)
            .field("auth", &self.auth)
            .finish()
    }
}

impl Registry {
    /// A client of the registry at `url` (`http://` or `https://`, with a
    /// path prefix if the registry sits behind one), trusting the CA of
    /// `tls` (default: the system's trust store) and presenting its client
    /// certificate, if any. Requests time out after `timeout`.
    ///
    /// # Errors
    /// A URL of another scheme, or TLS files that cannot be read or used,
    /// named.
    pub fn new(
        url: &str,
        auth: Auth,
        timeout: Duration,
        tls: Option<&TlsConfig>,
    ) -> Result<Self, String> {
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!("{url:?}: expected an http:// or https:// URL"));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let tls = tls_connector(tls)?;
        Ok(Self {
            base,
            auth,
            timeout,
            http: Client::builder(TokioExecutor::new())
                .build(HttpsConnector::from((connector, tls.into()))),
        })
    }

    /// The client `[schema_registry]` describes, its secrets read from the
    /// environment.
    ///
    /// # Errors
    /// The key at fault and why.
    pub fn from_config(c: &SchemaRegistryConfig) -> Result<Self, (&'static str, String)> {
        let auth = c.auth()?;
        Self::new(&c.url, auth, c.timeout, c.tls.as_ref()).map_err(|e| ("schema_registry.url", e))
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The schema a record names.
    ///
    /// # Errors
    /// See [`RegistryError`].
    pub async fn schema(&self, r: &SchemaRef) -> Result<Registered, RegistryError> {
        let (path, what) = match r {
            SchemaRef::Id(id) => (format!("/schemas/ids/{id}"), r.to_string()),
            SchemaRef::Guid(g) => (format!("/schemas/guids/{}", guid_text(g)), r.to_string()),
        };
        let body = self.call(Method::GET, &path, None, &what).await?;
        let mut got = self.registered(&body, &what)?;
        match r {
            SchemaRef::Id(id) => got.id = *id,
            SchemaRef::Guid(g) => got.guid = Some(*g),
        }
        Ok(got)
    }

    /// Version `version` (`latest`, or a number) of `subject`.
    ///
    /// # Errors
    /// See [`RegistryError`].
    pub async fn version(&self, subject: &str, version: &str) -> Result<Registered, RegistryError> {
        let what = format!("version {version} of subject {subject}");
        let path = format!("/subjects/{}/versions/{version}", encode(subject));
        let body = self.call(Method::GET, &path, None, &what).await?;
        self.registered(&body, &what)
    }

    /// Registers `schema` (of `kind`) under `subject`, or finds it there;
    /// returns its id (and GUID where the registry gives one).
    ///
    /// # Errors
    /// See [`RegistryError`]; an incompatible schema is
    /// [`RegistryError::Refused`] with the registry's message.
    pub async fn register(
        &self,
        subject: &str,
        kind: SchemaKind,
        schema: &str,
    ) -> Result<(u32, Option<[u8; 16]>), RegistryError> {
        let what = format!("registering a schema under subject {subject}");
        let path = format!("/subjects/{}/versions", encode(subject));
        let body = self
            .call(Method::POST, &path, Some(request(kind, schema)), &what)
            .await?;
        let id = body["id"]
            .as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| self.malformed(&what, "no id"))?;
        Ok((id, body["guid"].as_str().and_then(parse_guid)))
    }

    /// Whether `schema` is compatible with version `version` of `subject`
    /// under the subject's compatibility rule; `Err` holds the registry's
    /// reasons when it is not.
    ///
    /// # Errors
    /// See [`RegistryError`] (a subject without versions is
    /// [`RegistryError::NotFound`]).
    pub async fn compatible(
        &self,
        subject: &str,
        version: &str,
        kind: SchemaKind,
        schema: &str,
    ) -> Result<Result<(), Vec<String>>, RegistryError> {
        let what = format!("the compatibility check against version {version} of {subject}");
        let path = format!(
            "/compatibility/subjects/{}/versions/{version}?verbose=true",
            encode(subject)
        );
        let body = self
            .call(Method::POST, &path, Some(request(kind, schema)), &what)
            .await?;
        match body["is_compatible"].as_bool() {
            Some(true) => Ok(Ok(())),
            Some(false) => Ok(Err(body["messages"]
                .as_array()
                .map(|m| {
                    m.iter()
                        .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_string))
                        .collect()
                })
                .unwrap_or_default())),
            None => Err(self.malformed(&what, "no is_compatible")),
        }
    }

    /// The subjects the registry has.
    ///
    /// # Errors
    /// See [`RegistryError`].
    pub async fn subjects(&self) -> Result<Vec<String>, RegistryError> {
        let what = "the list of subjects".to_string();
        let body = self.call(Method::GET, "/subjects", None, &what).await?;
        body.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .ok_or_else(|| self.malformed(&what, "not an array"))
    }

    fn registered(&self, body: &Json, what: &str) -> Result<Registered, RegistryError> {
        let schema = body["schema"]
            .as_str()
            .ok_or_else(|| self.malformed(what, "no schema"))?
            .to_string();
        let kind =
            SchemaKind::parse(body["schemaType"].as_str()).map_err(|e| self.malformed(what, &e))?;
        Ok(Registered {
            id: body["id"]
                .as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .unwrap_or(0),
            guid: body["guid"].as_str().and_then(parse_guid),
            version: body["version"].as_u64().and_then(|v| u32::try_from(v).ok()),
            kind,
            schema,
        })
    }

    fn malformed(&self, what: &str, reason: &str) -> RegistryError {
        RegistryError::Malformed {
            url: self.base.clone(),
            what: what.to_string(),
            reason: reason.to_string(),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Json>,
        what: &str,
    ) -> Result<Json, RegistryError> {
        let unreachable = |reason: String| RegistryError::Unreachable {
            url: self.base.clone(),
            what: what.to_string(),
            reason,
        };
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(hyper::header::ACCEPT, MEDIA);
        match &self.auth {
            Auth::None => {}
            Auth::Basic { user, password } => {
                let token = base64(format!("{user}:{}", password.expose()).as_bytes());
                req = req.header(hyper::header::AUTHORIZATION, format!("Basic {token}"));
            }
            Auth::Bearer(token) => {
                req = req.header(
                    hyper::header::AUTHORIZATION,
                    format!("Bearer {}", token.expose()),
                );
            }
        }
        let payload = match body {
            Some(b) => {
                req = req.header(hyper::header::CONTENT_TYPE, MEDIA);
                Bytes::from(b.to_string())
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(payload))
            .map_err(|e| self.malformed(what, &e.to_string()))?;
        let exchange = async {
            let resp = self.http.request(req).await.map_err(|e| {
                // hyper-util's error says "client error (Connect)"; its
                // source says why.
                let mut reason = e.to_string();
                let mut tls = false;
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    reason = format!("{reason}: {s}");
                    tls |= s.downcast_ref::<native_tls::Error>().is_some();
                    source = s.source();
                }
                if tls {
                    RegistryError::Tls {
                        url: self.base.clone(),
                        what: what.to_string(),
                        reason,
                    }
                } else {
                    unreachable(reason)
                }
            })?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .to_bytes();
            Ok::<_, RegistryError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {:?}", self.timeout)))??;
        let json: Option<Json> = serde_json::from_slice(&bytes).ok();
        if status.is_success() {
            return json.ok_or_else(|| self.malformed(what, "not JSON"));
        }
        let message = json
            .as_ref()
            .and_then(|j| j["message"].as_str())
            .map_or_else(
                || String::from_utf8_lossy(&bytes).into_owned(),
                str::to_string,
            );
        let code = json
            .as_ref()
            .and_then(|j| j["error_code"].as_i64())
            .unwrap_or(i64::from(status.as_u16()));
        Err(match status {
            StatusCode::NOT_FOUND => RegistryError::NotFound {
                url: self.base.clone(),
                what: what.to_string(),
                message,
            },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => RegistryError::Unauthorized {
                url: self.base.clone(),
                what: what.to_string(),
                status: status.as_u16(),
            },
            s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                unreachable(format!("{status}: {message}"))
            }
            _ => RegistryError::Refused {
                url: self.base.clone(),
                what: what.to_string(),
                status: status.as_u16(),
                code,
                message,
            },
        })
    }
}

/// The TLS settings of the client.
fn tls_connector(tls: Option<&TlsConfig>) -> Result<native_tls::TlsConnector, String> {
    let read = |what: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| format!("{what} {}: {e}", path.display()))
    };
    let mut b = native_tls::TlsConnector::builder();
    if let Some(t) = tls {
        if let Some(ca) = &t.ca_file {
            let pem = read("ca_file", ca)?;
            let cert = native_tls::Certificate::from_pem(&pem)
                .map_err(|e| format!("ca_file {}: not a PEM certificate: {e}", ca.display()))?;
            b.add_root_certificate(cert);
        }
        if let (Some(c), Some(k)) = (&t.cert_file, &t.key_file) {
            let identity = native_tls::Identity::from_pkcs8(
                &read("cert_file", c)?,
                &read("key_file", k)?,
            )
            .map_err(|e| {
                format!(
                    "cert_file {} with key_file {}: not a PEM certificate and PKCS #8 key: {e}",
                    c.display(),
                    k.display()
                )
            })?;
            b.identity(identity);
        }
    }
    b.build().map_err(|e| format!("cannot set up TLS: {e}"))
}

/// The body of a register or compatibility request.
fn request(kind: SchemaKind, schema: &str) -> Json {
    match kind {
        SchemaKind::Avro => json!({ "schema": schema }),
        other => json!({ "schema": schema, "schemaType": other.name() }),
    }
}

/// A subject name as one path segment.
fn encode(subject: &str) -> String {
    // RFC 3986's unreserved characters stay as they are.
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(subject, SEGMENT).to_string()
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_one_path_segment() {
        assert_eq!(encode("bids-value"), "bids-value");
        assert_eq!(encode("com.example/Bid value"), "com.example%2FBid%20value");
    }

    #[test]
    fn only_http_and_https_urls_are_taken() {
        let e =
            Registry::new("ftp://sr:8081", Auth::None, Duration::from_secs(1), None).unwrap_err();
        assert!(e.contains("ftp://sr:8081"), "{e}");
        let missing = TlsConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsConfig::default()
        };
        let e = Registry::new(
            "https://sr:8081",
            Auth::None,
            Duration::from_secs(1),
            Some(&missing),
        )
        .unwrap_err();
        assert!(e.contains("ca_file /nonexistent/ca.pem"), "{e}");
    }

    #[tokio::test]
    async fn a_registry_that_is_not_there_is_unreachable_and_transient() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = Registry::new(
            &format!("http://127.0.0.1:{port}"),
            Auth::None,
            Duration::from_secs(2),
            None,
        )
        .unwrap();
        let e = r.schema(&SchemaRef::Id(1)).await.unwrap_err();
        assert!(e.transient(), "{e}");
        assert!(e.to_string().contains("schema id 1"), "{e}");
    }
}
