//! A Schema Registry for the framed queries: the one endpoint the
//! pipeline asks (`GET /schemas/ids/{id}`), serving the bid schema as id
//! 1, in this process, started by the first query that needs it.

use std::sync::OnceLock;

use anyhow::Context;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use streamfold::generate::NEXMARK_BID_SCHEMA;

/// The id the framed input's values name.
pub(super) const BID_SCHEMA_ID: u32 = 1;

static URL: OnceLock<String> = OnceLock::new();

/// The registry's base URL, starting it on the first call.
pub(super) fn url() -> anyhow::Result<&'static str> {
    if let Some(u) = URL.get() {
        return Ok(u);
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let url = format!("http://{}", listener.local_addr()?);
    std::thread::Builder::new()
        .name("registry".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the registry");
            runtime.block_on(async move {
                let app = axum::Router::new().route("/schemas/ids/{id}", get(schema));
                let listener =
                    tokio::net::TcpListener::from_std(listener).expect("the registry's listener");
                axum::serve(listener, app)
                    .await
                    .expect("the registry serves");
            });
        })
        .context("starting the registry thread")?;
    Ok(URL.get_or_init(|| url))
}

async fn schema(Path(id): Path<u32>) -> (StatusCode, String) {
    if id == BID_SCHEMA_ID {
        let body = serde_json::json!({ "schema": NEXMARK_BID_SCHEMA });
        (StatusCode::OK, body.to_string())
    } else {
        let body =
            serde_json::json!({ "error_code": 40403, "message": format!("Schema {id} not found") });
        (StatusCode::NOT_FOUND, body.to_string())
    }
}
