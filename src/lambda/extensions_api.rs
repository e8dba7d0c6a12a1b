//! Client of the Lambda Extensions API (`2020-01-01`): register, the `/next`
//! long poll, and the init/exit error reports.
//!
//! Only [`crate::lifecycle`] calls `/next`: calling it tells Lambda this
//! extension is done with the current phase, after which the sandbox may be
//! frozen.

use bytes::Bytes;
use http_body_util::Full;
use serde::Deserialize;

use super::{send, snippet, ApiClient, ApiError};

const BASE: &str = "/2020-01-01/extension";

/// What Lambda says about the function when the extension registers.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Registration {
    #[serde(skip)]
    pub extension_id: String,
    pub function_name: Option<String>,
    pub function_version: Option<String>,
    pub handler: Option<String>,
    pub account_id: Option<String>,
}

/// `tracing` of an INVOKE event.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct InvokeTracing {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub value: Option<String>,
}

/// An INVOKE event.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct InvokeEvent {
    pub request_id: String,
    pub deadline_ms: u64,
    pub invoked_function_arn: Option<String>,
    pub tracing: Option<InvokeTracing>,
}

/// A SHUTDOWN event.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ShutdownEvent {
    pub shutdown_reason: Option<String>,
    pub deadline_ms: u64,
}

/// What `/next` returned.
#[derive(Debug, Clone, PartialEq)]
pub enum NextEvent {
    Invoke(InvokeEvent),
    Shutdown(ShutdownEvent),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawNext {
    event_type: String,
}

/// The Extensions API at `http://${AWS_LAMBDA_RUNTIME_API}`.
#[derive(Clone)]
pub struct ExtensionsApi {
    client: ApiClient,
    base: String,
}

impl ExtensionsApi {
    pub fn new(client: ApiClient, runtime_api: &str) -> Self {
        ExtensionsApi {
            client,
            base: format!("http://{runtime_api}{BASE}"),
        }
    }

    /// Registers for INVOKE and SHUTDOWN (only SHUTDOWN on Lambda Managed
    /// Instances, where extensions cannot receive INVOKE) under `name`, which
    /// must be the executable's file name.
    pub async fn register(
        &self,
        name: &str,
        invoke_events: bool,
    ) -> Result<Registration, ApiError> {
        let events: &[&str] = if invoke_events {
            &["INVOKE", "SHUTDOWN"]
        } else {
            &["SHUTDOWN"]
        };
        let body = serde_json::json!({ "events": events }).to_string();
        let req = hyper::Request::post(format!("{}/register", self.base))
            .header("Lambda-Extension-Name", name)
            .header("Lambda-Extension-Accept-Feature", "accountId")
            .header("Content-Type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ApiError::Transport(e.to_string()))?;
        let resp = send(&self.client, req).await?;
        if resp.status != 200 {
            return Err(ApiError::Status {
                what: "register",
                status: resp.status,
                body: snippet(&resp.body),
            });
        }
        let id = resp
            .headers
            .get("Lambda-Extension-Identifier")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .ok_or(ApiError::Protocol {
                what: "register",
                detail: "no Lambda-Extension-Identifier header".into(),
            })?
            .to_owned();
        // The body is informative; a body that does not parse loses nothing essential.
        let mut reg: Registration = serde_json::from_slice(&resp.body).unwrap_or_default();
        reg.extension_id = id;
        Ok(reg)
    }

    /// Blocks until Lambda hands out the next event. No timeout on purpose.
    pub async fn next(&self, extension_id: &str) -> Result<NextEvent, ApiError> {
        let req = hyper::Request::get(format!("{}/event/next", self.base))
            .header("Lambda-Extension-Identifier", extension_id)
            .body(Full::new(Bytes::new()))
            .map_err(|e| ApiError::Transport(e.to_string()))?;
        let resp = send(&self.client, req).await?;
        if resp.status != 200 {
            return Err(ApiError::Status {
                what: "event/next",
                status: resp.status,
                body: snippet(&resp.body),
            });
        }
        parse_next(&resp.body)
    }

    /// Reports a failed initialization (`/init/error`).
    pub async fn init_error(
        &self,
        extension_id: &str,
        error_type: &str,
        message: &str,
    ) -> Result<(), ApiError> {
        self.report_error("init/error", extension_id, error_type, message)
            .await
    }

    /// Reports an unexpected failure before exiting (`/exit/error`).
    pub async fn exit_error(
        &self,
        extension_id: &str,
        error_type: &str,
        message: &str,
    ) -> Result<(), ApiError> {
        self.report_error("exit/error", extension_id, error_type, message)
            .await
    }

    async fn report_error(
        &self,
        path: &'static str,
        extension_id: &str,
        error_type: &str,
        message: &str,
    ) -> Result<(), ApiError> {
        let body = serde_json::json!({
            "errorMessage": message,
            "errorType": error_type,
            "stackTrace": [],
        })
        .to_string();
        let req = hyper::Request::post(format!("{}/{path}", self.base))
            .header("Lambda-Extension-Identifier", extension_id)
            .header("Lambda-Extension-Function-Error-Type", error_type)
            .header("Content-Type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ApiError::Transport(e.to_string()))?;
        let resp = send(&self.client, req).await?;
        if resp.status / 100 != 2 {
            return Err(ApiError::Status {
                what: path,
                status: resp.status,
                body: snippet(&resp.body),
            });
        }
        Ok(())
    }
}

/// Decodes a `/next` body.
pub fn parse_next(body: &[u8]) -> Result<NextEvent, ApiError> {
    let raw: RawNext = serde_json::from_slice(body).map_err(|e| ApiError::Protocol {
        what: "event/next",
        detail: format!("{e}: {}", snippet(body)),
    })?;
    let bad = |e: serde_json::Error| ApiError::Protocol {
        what: "event/next",
        detail: format!("{e}: {}", snippet(body)),
    };
    match raw.event_type.to_ascii_uppercase().as_str() {
        "INVOKE" => Ok(NextEvent::Invoke(
            serde_json::from_slice(body).map_err(bad)?,
        )),
        "SHUTDOWN" => Ok(NextEvent::Shutdown(
            serde_json::from_slice(body).map_err(bad)?,
        )),
        other => Err(ApiError::Protocol {
            what: "event/next",
            detail: format!("unknown eventType {other:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_invoke_and_shutdown() {
        let inv = parse_next(br#"{"eventType":"INVOKE","deadlineMs":1741083333123,"requestId":"8f5e","invokedFunctionArn":"arn:aws:lambda:eu-west-1:123456789012:function:orders-api:live","tracing":{"type":"X-Amzn-Trace-Id","value":"Root=1-67a1b2c3-4d5e6f708192a3b4c5d6e7f8;Parent=9a8b7c6d5e4f3a2b;Sampled=1"}}"#).unwrap();
        match inv {
            NextEvent::Invoke(i) => {
                assert_eq!(i.request_id, "8f5e");
                assert_eq!(i.deadline_ms, 1_741_083_333_123);
                assert!(i
                    .tracing
                    .unwrap()
                    .value
                    .unwrap()
                    .starts_with("Root=1-67a1b2c3"));
            }
            other => panic!("{other:?}"),
        }
        let sd = parse_next(
            br#"{"eventType":"SHUTDOWN","shutdownReason":"spindown","deadlineMs":1741083335456}"#,
        )
        .unwrap();
        assert_eq!(
            sd,
            NextEvent::Shutdown(ShutdownEvent {
                shutdown_reason: Some("spindown".into()),
                deadline_ms: 1_741_083_335_456
            })
        );
        assert!(parse_next(br#"{"eventType":"RESTART"}"#).is_err());
        assert!(parse_next(b"nonsense").is_err());
    }
}
