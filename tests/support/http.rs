// Shared by the HTTP test files: a router served on a fresh loopback port, and a client.

use std::sync::Arc;

use jobworks::{ObjectStoreArtifacts, UrlSigner};
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

pub(crate) struct Server {
    /// The mount's URL (with `{org}` filled in as `acme`).
    pub(crate) base: String,
    pub(crate) client: Client,
    /// The signer of the artifact store the router's engine uses.
    pub(crate) signer: UrlSigner,
}

impl Server {
    /// Serves `make(artifacts)` on a fresh loopback port; the artifacts sign URLs under
    /// `mount` on that port.
    pub(crate) async fn start(
        mount: &str,
        make: impl FnOnce(ObjectStoreArtifacts) -> axum::Router,
    ) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base = format!("http://{addr}{mount}");
        let signer = UrlSigner::new(b"0123456789abcdef0123456789abcdef".to_vec(), &base);
        let artifacts = ObjectStoreArtifacts::new(
            Arc::new(object_store::memory::InMemory::new()),
            signer.clone(),
        );
        let app = make(artifacts);
        tokio::spawn(jobworks::http::Server::new().serve(listener, app));
        Server {
            base: base.replace("{org}", "acme"),
            client: Client::new(),
            signer,
        }
    }

    pub(crate) fn req(&self, method: Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
    }

    /// Sends and reads the answer: status, headers and JSON body (`null` when empty).
    pub(crate) async fn send(
        &self,
        rb: reqwest::RequestBuilder,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let r = rb.send().await.unwrap();
        let (status, headers) = (r.status(), r.headers().clone());
        let body = r.bytes().await.unwrap();
        let json = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or_else(|_| panic!("not JSON: {body:?}"))
        };
        (status, headers, json)
    }
}

/// `body` is the canonical envelope of `code` and `kind`.
pub(crate) fn assert_envelope(body: &Value, code: u16, kind: &str) {
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["type"], kind, "{body}");
    assert!(body["detail"].is_string(), "{body}");
}
