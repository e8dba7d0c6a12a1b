//! The HTTP client of the bridge's AWS calls (the container credentials
//! endpoint, Secrets Manager, SSM): HTTP/1.1 over the one TLS stack
//! (rustls with ring, Mozilla roots), every call bounded in time and every
//! answer in size.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;

use crate::export::settings::TlsFiles;

use crate::export::tls::{http1_client, HttpClient};

/// A client for http and https URLs, built on first use.
pub struct AwsClient {
    client: std::sync::OnceLock<Result<HttpClient, String>>,
}

impl Default for AwsClient {
    fn default() -> Self {
        Self::new()
    }
}

/// An answer: status and at most the capped body.
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
    /// The body was longer than the cap.
    pub truncated: bool,
}

impl AwsClient {
    pub fn new() -> Self {
        AwsClient {
            client: std::sync::OnceLock::new(),
        }
    }

    fn client(&self) -> Result<&HttpClient, String> {
        self.client
            .get_or_init(|| {
                let mut connector = HttpConnector::new();
                connector.set_nodelay(true);
                connector.set_connect_timeout(Some(Duration::from_secs(2)));
                let tls = crate::export::tls::client_config(&TlsFiles::default())
                    .map_err(|e| e.to_string())?;
                Ok(http1_client(connector, tls, Duration::from_secs(10)))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Sends `req`, reads at most `cap` bytes of the answer, all within
    /// `timeout`. The error names the host only (never a query or body).
    pub async fn call(
        &self,
        req: hyper::Request<Full<Bytes>>,
        timeout: Duration,
        cap: usize,
    ) -> Result<Answer, String> {
        let host = req.uri().host().unwrap_or("the endpoint").to_owned();
        let client = self.client()?;
        let call = async {
            let resp = client
                .request(req)
                .await
                .map_err(|e| format!("connection to {host} failed: {}", error_chain(&e)))?;
            let status = resp.status().as_u16();
            let (body, truncated) = read_capped(resp.into_body(), cap).await;
            Ok(Answer {
                status,
                body,
                truncated,
            })
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "{host} did not answer within {} ms",
                timeout.as_millis()
            )),
        }
    }
}

/// Reads at most `max` bytes of a response body (the rest is not read);
/// whether there was more.
pub async fn read_capped(mut body: hyper::body::Incoming, max: usize) -> (Bytes, bool) {
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Ok(data) = frame.into_data() {
            let room = max.saturating_sub(out.len());
            out.extend_from_slice(&data[..data.len().min(room)]);
            if data.len() > room {
                return (out.freeze(), true);
            }
        }
    }
    (out.freeze(), false)
}

pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
