//! Collector headers kept in AWS: a Secrets Manager secret (name or ARN) or
//! an SSM parameter (`ssm:<name>` or its ARN; SecureString decrypted) named
//! by `LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_[SIGNAL_]HEADERS_SECRET`, whose value
//! holds headers as `key=value,key2=value2` or a JSON object. They are
//! merged over the configured headers (a name in the secret wins).
//!
//! The fetch never delays the function: it starts while the function
//! initialises ([`SecretHeaders::start`]); only an export that finds it
//! still running waits, bounded by its deadline and [`FETCH_TIMEOUT`]. A
//! failed fetch leaves the data in the outbox, is logged once with its
//! reason (never the value), counted, and tried again at the next flush
//! point ([`SecretHeaders::retry_if_failed`]). When the collector answers
//! 401 or 403 the secret is fetched again once (keys rotate), then not
//! before [`REFETCH_BACKOFF`] has passed.
//!
//! The AWS calls (`GetSecretValue`, `GetParameter`) are signed with the
//! process's credentials; their endpoints follow the AWS SDKs' variables
//! (`AWS_ENDPOINT_URL_SECRETS_MANAGER`, `AWS_ENDPOINT_URL_SSM`, then
//! `AWS_ENDPOINT_URL`).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tokio::sync::watch;
use tokio::time::Instant;

use super::client::AwsClient;
use super::config::{SecretSpec, Store};
use super::credentials::CredentialProvider;
use super::sigv4::{host_header, sign_request};
use super::target::SigningTarget;
use crate::counters::{Count, Counters};

/// Longest one fetch may take (connection, answer).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest answer read (a secret value is at most 64 KiB; JSON escaping
/// can double it).
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;
/// After a refetch caused by a 401/403, the next one waits this long.
pub const REFETCH_BACKOFF: Duration = Duration::from_secs(60);

/// Where a fetch stands.
#[derive(Clone)]
enum State {
    Idle,
    Fetching,
    Ready(Arc<Vec<(String, String)>>),
    Failed(String),
}

/// The headers of one secret, shared by the signals that name it.
pub struct SecretHeaders {
    spec: SecretSpec,
    credentials: Arc<CredentialProvider>,
    client: AwsClient,
    state: watch::Sender<State>,
    last_refetch: Mutex<Option<Instant>>,
    /// Where failed fetches are counted ([`Count::SecretFetchFailures`]).
    counters: Arc<Counters>,
    /// The current failure has been logged (once per streak).
    logged: AtomicBool,
}

impl fmt::Debug for SecretHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretHeaders({})", self.spec)
    }
}

impl SecretHeaders {
    pub fn new(
        spec: SecretSpec,
        credentials: Arc<CredentialProvider>,
        counters: Arc<Counters>,
    ) -> Arc<SecretHeaders> {
        Arc::new(SecretHeaders {
            spec,
            credentials,
            client: AwsClient::new(),
            state: watch::channel(State::Idle).0,
            last_refetch: Mutex::new(None),
            counters,
            logged: AtomicBool::new(false),
        })
    }

    pub fn spec(&self) -> &SecretSpec {
        &self.spec
    }

    /// Starts a fetch in the background unless one is running.
    pub fn start(self: &Arc<Self>) {
        let started = self.state.send_if_modified(|s| {
            if matches!(s, State::Fetching) {
                false
            } else {
                *s = State::Fetching;
                true
            }
        });
        if !started {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            // Behind what is already queued (at start-up: sending the
            // first /next), on the one-thread runtime.
            tokio::task::yield_now().await;
            let result = me.fetch().await;
            let state = match result {
                Ok(headers) => {
                    if me.logged.swap(false, Ordering::Relaxed) {
                        tracing::info!("collector headers fetched from {}", me.spec);
                    }
                    State::Ready(Arc::new(headers))
                }
                Err(reason) => {
                    me.counters.add(Count::SecretFetchFailures, 1);
                    if !me.logged.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            "collector headers from {} could not be fetched: {reason}; telemetry \
                             waits in the outbox and the fetch is tried again at each flush point",
                            me.spec
                        );
                    }
                    State::Failed(reason)
                }
            };
            me.state.send_replace(state);
        });
    }

    /// At a flush point: fetches again after a failure (or if never started).
    pub fn retry_if_failed(self: &Arc<Self>) {
        if matches!(*self.state.borrow(), State::Failed(_) | State::Idle) {
            self.start();
        }
    }

    /// The headers, waiting for a running fetch until `deadline` at most.
    pub async fn headers(
        self: &Arc<Self>,
        deadline: Instant,
    ) -> Result<Arc<Vec<(String, String)>>, String> {
        let mut rx = self.state.subscribe();
        let until = deadline.min(Instant::now() + FETCH_TIMEOUT);
        loop {
            let state = rx.borrow_and_update().clone();
            match state {
                State::Ready(h) => return Ok(h),
                State::Failed(reason) => {
                    return Err(format!(
                        "headers from {} not available: {reason}",
                        self.spec
                    ))
                }
                State::Idle => self.start(),
                State::Fetching => match tokio::time::timeout_at(until, rx.changed()).await {
                    Ok(Ok(())) => {}
                    _ => {
                        return Err(format!(
                            "headers from {} not available yet (still fetching)",
                            self.spec
                        ))
                    }
                },
            }
        }
    }

    /// The collector refused the headers of `used` (401/403). When a newer
    /// value is already there or being fetched, the request is retried at
    /// once with it; otherwise the secret is fetched again (keys rotate),
    /// unless that was done within [`REFETCH_BACKOFF`]. Returns how long to
    /// wait before the next attempt (`None`: at once).
    pub fn on_refused(self: &Arc<Self>, used: &Arc<Vec<(String, String)>>) -> Option<Duration> {
        match &*self.state.borrow() {
            State::Fetching => return None,
            State::Ready(current) if !Arc::ptr_eq(current, used) => return None,
            _ => {}
        }
        let now = Instant::now();
        let mut last = self.last_refetch.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = *last {
            let since = now.saturating_duration_since(t);
            if since < REFETCH_BACKOFF {
                return Some(REFETCH_BACKOFF - since);
            }
        }
        *last = Some(now);
        drop(last);
        tracing::info!(
            "the collector refused the headers from {}: fetching them again",
            self.spec
        );
        self.start();
        None
    }

    /// One `GetSecretValue` / `GetParameter` call.
    async fn fetch(&self) -> Result<Vec<(String, String)>, String> {
        let credentials = self.credentials.get().await?;
        let (target, body) = self.spec.call();
        let uri: hyper::Uri = self
            .spec
            .endpoint
            .parse()
            .map_err(|_| "the AWS endpoint is not a valid URL".to_owned())?;
        let host = host_header(&uri).ok_or("the AWS endpoint has no host")?;
        let mut headers = vec![
            ("host".to_owned(), host),
            (
                "content-type".to_owned(),
                "application/x-amz-json-1.1".to_owned(),
            ),
            ("x-amz-target".to_owned(), target.to_owned()),
        ];
        let signing = SigningTarget {
            service: self.spec.signing_name().to_owned(),
            region: self.spec.region.clone(),
        };
        let signed = sign_request(
            &credentials,
            &signing,
            "POST",
            &self.spec.endpoint,
            &headers,
            body.as_bytes(),
            std::time::SystemTime::now(),
        )?;
        headers.extend(signed);
        let mut req = hyper::Request::post(&uri);
        for (k, v) in &headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("bad request: {e}"))?;
        let answer = self
            .client
            .call(req, FETCH_TIMEOUT, MAX_ANSWER_BYTES)
            .await?;
        if answer.status != 200 {
            return Err(format!(
                "HTTP {}: {}",
                answer.status,
                aws_error(&answer.body)
            ));
        }
        if answer.truncated {
            return Err(format!("the answer is over {MAX_ANSWER_BYTES} bytes"));
        }
        let value = secret_value(&self.spec.store, &answer.body)?;
        parse_value(&value)
    }
}

/// `__type` and message of an AWS JSON error (they name the resource at
/// most, never a secret value).
fn aws_error(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let kind = v["__type"]
        .as_str()
        .map(|t| t.rsplit('#').next().unwrap_or(t))
        .unwrap_or("error");
    let message = v["message"]
        .as_str()
        .or(v["Message"].as_str())
        .unwrap_or("");
    let message: String = message.chars().take(200).collect();
    if message.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {message}")
    }
}

/// The value in a `GetSecretValue` / `GetParameter` answer.
fn secret_value(store: &Store, body: &[u8]) -> Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "the answer is not JSON".to_owned())?;
    let value = match store {
        Store::SecretsManager => v["SecretString"].as_str(),
        Store::Ssm => v["Parameter"]["Value"].as_str(),
    };
    value.map(str::to_owned).ok_or_else(|| match store {
        Store::SecretsManager => {
            "the secret has no SecretString (binary secrets are not supported)".to_owned()
        }
        Store::Ssm => "the answer has no Parameter.Value".to_owned(),
    })
}

/// `{"k": "v", ...}` or `k=v,k2=v2` (percent-decoded); names lower-cased.
/// Errors never repeat the value.
pub fn parse_value(value: &str) -> Result<Vec<(String, String)>, String> {
    let v = value.trim();
    if v.starts_with('{') {
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(v)
            .map_err(|_| "the value starts with `{` but is not a JSON object".to_owned())?;
        let mut out = Vec::new();
        for (k, val) in map {
            let val = match val {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => return Err(format!("the value of header {k} is not text")),
            };
            let key = k.trim().to_ascii_lowercase();
            if hyper::header::HeaderName::from_bytes(key.as_bytes()).is_err()
                || hyper::header::HeaderValue::from_str(&val).is_err()
            {
                return Err(format!(
                    "header {key:?} cannot be sent (invalid name or value)"
                ));
            }
            out.push((key, val));
        }
        return Ok(out);
    }
    crate::options::read::header_list("the secret's value", v).map_err(|e| e.reason)
}

/// `base` with `over` merged in: a name in `over` replaces every header of
/// that name in `base`.
pub fn merge(base: &[(String, String)], over: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = base
        .iter()
        .filter(|(k, _)| !over.iter().any(|(o, _)| o.eq_ignore_ascii_case(k)))
        .cloned()
        .collect();
    out.extend(over.iter().cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_as_pairs_or_json_and_errors_without_the_value() {
        assert_eq!(
            parse_value("X-Api-Key=abc%2C1, x-team=t").unwrap(),
            [
                ("x-api-key".into(), "abc,1".into()),
                ("x-team".into(), "t".into())
            ]
        );
        assert_eq!(
            parse_value(r#"{"Authorization":"Bearer k","x-n":5}"#).unwrap(),
            [
                ("authorization".into(), "Bearer k".into()),
                ("x-n".into(), "5".into())
            ]
        );
        for bad in [
            "s3cr3tvalue",
            r#"{"a":{"b":"s3cr3tvalue"}}"#,
            "{s3cr3tvalue",
        ] {
            let e = parse_value(bad).unwrap_err();
            assert!(!e.contains("s3cr3tvalue"), "{e}");
        }
        let merged = merge(
            &[
                ("x-api-key".into(), "old".into()),
                ("x-a".into(), "1".into()),
            ],
            &[("X-API-KEY".into(), "new".into())],
        );
        assert_eq!(
            merged,
            [
                ("x-a".into(), "1".into()),
                ("X-API-KEY".into(), "new".into())
            ]
        );
    }

    #[test]
    fn aws_errors_are_named() {
        assert_eq!(
            aws_error(
                br#"{"__type":"com.amazonaws#ResourceNotFoundException","Message":"not found"}"#
            ),
            "ResourceNotFoundException: not found"
        );
        assert_eq!(aws_error(b"<html>"), "error");
    }
}
