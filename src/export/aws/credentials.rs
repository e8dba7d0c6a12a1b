//! The AWS credentials the bridge signs with: those Lambda gives every
//! process of the sandbox. `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
//! `AWS_SESSION_TOKEN` when set; otherwise (SnapStart restores) the
//! container credentials endpoint, `AWS_CONTAINER_CREDENTIALS_FULL_URI`
//! (or `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`) with the header
//! `Authorization: <AWS_CONTAINER_AUTHORIZATION_TOKEN>` (or the content of
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`), whose answer is cached and
//! fetched again [`REFRESH_BEFORE`] its expiry.
//!
//! No key, secret or token ever appears in a log line or an error.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;

use super::client::AwsClient;
use super::config::CredentialSource;

/// A set of credentials. `Debug` shows the key id's first characters only.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// When they stop working (`None`: not said).
    pub expires: Option<SystemTime>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self.access_key_id.chars().take(4).collect();
        f.debug_struct("Credentials")
            .field("access_key_id", &format!("{shown}…"))
            .field("session_token", &self.session_token.is_some())
            .field("expires", &self.expires)
            .finish()
    }
}

/// Credentials from the container endpoint are fetched again this long
/// before they expire.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);
/// Longest wait for the container credentials endpoint.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest answer read from it (a few hundred bytes are expected).
pub const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// The credentials of the process, shared by every signer.
pub struct CredentialProvider {
    source: CredentialSource,
    cache: tokio::sync::Mutex<Option<Credentials>>,
    client: AwsClient,
}

impl fmt::Debug for CredentialProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.source {
            CredentialSource::Static(_) => "CredentialProvider(environment)",
            CredentialSource::Container { .. } => "CredentialProvider(container endpoint)",
            CredentialSource::None => "CredentialProvider(none)",
        })
    }
}

impl CredentialProvider {
    /// Nothing is fetched yet.
    pub fn new(source: CredentialSource) -> Arc<CredentialProvider> {
        Arc::new(CredentialProvider {
            source,
            cache: tokio::sync::Mutex::new(None),
            client: AwsClient::new(),
        })
    }

    /// Forgets fetched credentials (before a SnapStart snapshot: a restored
    /// environment fetches its own).
    pub async fn forget(&self) {
        *self.cache.lock().await = None;
    }

    /// Current credentials, fetched or refreshed when needed.
    pub async fn get(&self) -> Result<Credentials, String> {
        let (uri, token, token_file) = match &self.source {
            CredentialSource::Static(k) => {
                return Ok(Credentials {
                    access_key_id: k.access_key_id.clone(),
                    secret_access_key: k.secret_access_key.clone(),
                    session_token: k.session_token.clone(),
                    expires: None,
                })
            }
            CredentialSource::None => {
                return Err("no AWS credentials: set AWS_ACCESS_KEY_ID and \
                            AWS_SECRET_ACCESS_KEY (Lambda does), or \
                            AWS_CONTAINER_CREDENTIALS_FULL_URI"
                    .into())
            }
            CredentialSource::Container {
                uri,
                token,
                token_file,
            } => (uri, token, token_file),
        };
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref() {
            let fresh = c.expires.is_none_or(|e| {
                e.duration_since(SystemTime::now())
                    .is_ok_and(|left| left > REFRESH_BEFORE)
            });
            if fresh {
                return Ok(c.clone());
            }
        }
        let token = match (token, token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(f)) => Some(
                std::fs::read_to_string(f)
                    .map(|t| t.trim().to_owned())
                    .map_err(|e| {
                        format!("cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: {e}")
                    })?,
            ),
            (None, None) => None,
        };
        let mut req = hyper::Request::get(uri.as_str()).header("accept", "application/json");
        if let Some(t) = &token {
            req = req.header("authorization", t.as_str());
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|_| "AWS_CONTAINER_CREDENTIALS_FULL_URI is not a valid URL".to_owned())?;
        let answer = self.client.call(req, FETCH_TIMEOUT, MAX_ANSWER_BYTES).await;
        let fresh = answer
            .map_err(|e| format!("container credentials endpoint: {e}"))
            .and_then(|a| {
                if a.status != 200 {
                    return Err(format!(
                        "container credentials endpoint answered HTTP {}",
                        a.status
                    ));
                }
                parse_container_answer(&a.body)
            })?;
        *cache = Some(fresh.clone());
        Ok(fresh)
    }
}

/// `{"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}`.
pub fn parse_container_answer(body: &[u8]) -> Result<Credentials, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Answer {
        access_key_id: String,
        secret_access_key: String,
        token: Option<String>,
        expiration: Option<String>,
    }
    let a: Answer = serde_json::from_slice(body).map_err(|_| {
        "container credentials endpoint: the answer is not the expected JSON".to_owned()
    })?;
    let expires = a
        .expiration
        .as_deref()
        .and_then(crate::time::parse_rfc3339)
        .map(|ns| SystemTime::UNIX_EPOCH + Duration::from_nanos(ns));
    Ok(Credentials {
        access_key_id: a.access_key_id,
        secret_access_key: a.secret_access_key,
        session_token: a.token.filter(|t| !t.is_empty()),
        expires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_answers_are_parsed() {
        let c = parse_container_answer(
            br#"{"AccessKeyId":"AK","SecretAccessKey":"SK","Token":"TK","Expiration":"2030-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(c.session_token.as_deref(), Some("TK"));
        assert_eq!(
            c.expires,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_893_456_000))
        );
        let e = parse_container_answer(br#"{"SecretAccessKey":"SK"}"#).unwrap_err();
        assert!(!e.contains("SK"), "{e}");
    }

    /// A container credentials endpoint on loopback: answers with
    /// credentials expiring `expires_in` from now, counts the calls, and
    /// refuses a wrong authorization token.
    async fn endpoint(
        expires_in: Duration,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c = calls.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = vec![0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                let n = c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let expires = crate::time::format_rfc3339_millis(
                    crate::time::now() + expires_in.as_nanos() as u64,
                );
                let (status, body) = if head.contains("authorization: tok3n") {
                    (
                        "200 OK",
                        format!(
                            r#"{{"AccessKeyId":"AK{n}","SecretAccessKey":"SK","Token":"TK","Expiration":"{expires}"}}"#
                        ),
                    )
                } else {
                    ("403 Forbidden", String::new())
                };
                let _ = sock
                    .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).as_bytes())
                    .await;
            }
        });
        (format!("http://{addr}/creds"), calls)
    }

    fn container(uri: &str, token: &str) -> Arc<CredentialProvider> {
        CredentialProvider::new(CredentialSource::Container {
            uri: uri.to_owned(),
            token: Some(token.to_owned()),
            token_file: None,
        })
    }

    #[tokio::test]
    async fn container_credentials_are_cached_until_close_to_expiry() {
        let (uri, calls) = endpoint(Duration::from_secs(3600)).await;
        let p = container(&uri, "tok3n");
        assert_eq!(p.get().await.unwrap().access_key_id, "AK0");
        assert_eq!(p.get().await.unwrap().access_key_id, "AK0");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Forgotten before a snapshot: the restored environment fetches.
        p.forget().await;
        assert_eq!(p.get().await.unwrap().access_key_id, "AK1");
        // Expiring within REFRESH_BEFORE: fetched again each time.
        let (uri, calls) = endpoint(Duration::from_secs(60)).await;
        let p = container(&uri, "tok3n");
        assert_eq!(p.get().await.unwrap().access_key_id, "AK0");
        assert_eq!(p.get().await.unwrap().access_key_id, "AK1");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
        // A wrong token is refused, and the error says so without it.
        let e = container(&uri, "wrong-token").get().await.unwrap_err();
        assert!(e.contains("HTTP 403") && !e.contains("wrong-token"), "{e}");
    }
}
