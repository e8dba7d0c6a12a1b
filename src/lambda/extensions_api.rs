//! Client of the Lambda Extensions API (`2020-01-01`): register, the `/next`
//! long poll, and the init/exit error reports. Everything up to the first
//! `/next` is blocking and runs before the async runtime exists
//! ([`Bootstrap`]); the event loop then reads the first `/next`'s answer and
//! makes the later calls ([`ExtensionsApi`]).
//!
//! Only [`crate::lifecycle`] calls `/next`: calling it tells Lambda this
//! extension is done with the current phase, after which the sandbox may be
//! frozen.

use std::time::Duration;

use serde::Deserialize;

use super::connection::{AsyncConn, BlockingConn, SentRequest};
use super::http1::Request;
use super::{snippet, ApiError, ApiResponse};

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

/// Bound on each call made before the first `/next` (registering,
/// subscribing, reporting an init error) and on the exit error report:
/// Lambda's whole init phase is limited to 10 s.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The Extensions API before the async runtime exists: registering (and
/// the calls that need only the registration), blocking, on one connection
/// to `AWS_LAMBDA_RUNTIME_API`, which [`Bootstrap::send_first_next`] then
/// hands to the event loop with the first `/next` sent.
pub struct Bootstrap {
    conn: BlockingConn,
}

impl Bootstrap {
    /// Connects to `runtime_api` (`address:port`).
    pub fn connect(runtime_api: &str) -> Result<Self, ApiError> {
        Ok(Bootstrap {
            conn: BlockingConn::connect(runtime_api, CALL_TIMEOUT)?,
        })
    }

    /// Registers for INVOKE and SHUTDOWN (only SHUTDOWN on Lambda Managed
    /// Instances, where extensions cannot receive INVOKE) under `name`, which
    /// must be the executable's file name.
    pub fn register(&mut self, name: &str, invoke_events: bool) -> Result<Registration, ApiError> {
        let events: &[&str] = if invoke_events {
            &["INVOKE", "SHUTDOWN"]
        } else {
            &["SHUTDOWN"]
        };
        let req = Request::new("POST", format!("{BASE}/register"), "register")
            .header("Lambda-Extension-Name", name)
            .header("Lambda-Extension-Accept-Feature", "accountId")
            .json(serde_json::json!({ "events": events }).to_string());
        let resp = self.conn.call(&req, CALL_TIMEOUT)?;
        if resp.status != 200 {
            return Err(ApiError::Status {
                what: "register",
                status: resp.status,
                body: snippet(&resp.body),
            });
        }
        let id = resp
            .header("Lambda-Extension-Identifier")
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

    /// Reports a failed initialization (`/init/error`).
    pub fn init_error(
        &mut self,
        extension_id: &str,
        error_type: &str,
        message: &str,
    ) -> Result<(), ApiError> {
        let req = error_report("init/error", extension_id, error_type, message);
        error_reply(req.what, self.conn.call(&req, CALL_TIMEOUT)?)
    }

    /// The connection, for other calls before the first `/next` (the
    /// Telemetry API subscription).
    pub fn conn(&mut self) -> &mut BlockingConn {
        &mut self.conn
    }

    /// Sends the first `/next`; its answer is read on the event loop
    /// ([`FirstNext::on_runtime`]).
    pub fn send_first_next(self, extension_id: &str) -> Result<FirstNext, ApiError> {
        let host = self.conn.host().to_owned();
        let sent = self.conn.send(&next_request(extension_id), CALL_TIMEOUT)?;
        Ok(FirstNext::Sent { host, sent })
    }

    /// Leaves the first `/next` to the event loop (SnapStart: the snapshot
    /// is taken once every extension waits in `/next`, and the extension
    /// must export what it holds before that).
    pub fn defer_first_next(self) -> FirstNext {
        FirstNext::NotSent(self.conn)
    }
}

/// The first `/next`: already sent before the async runtime, or to be sent
/// by the event loop.
pub enum FirstNext {
    Sent { host: String, sent: SentRequest },
    NotSent(BlockingConn),
}

impl FirstNext {
    /// The event loop's client; must be called on the async runtime.
    pub fn on_runtime(self) -> ExtensionsApi {
        let conn = match self {
            FirstNext::Sent { host, sent } => AsyncConn::with_answer_pending(host, sent),
            FirstNext::NotSent(conn) => AsyncConn::new(conn),
        };
        ExtensionsApi { conn }
    }
}

/// The Extensions API on the event loop: `/next` and the exit error report.
pub struct ExtensionsApi {
    conn: AsyncConn,
}

impl ExtensionsApi {
    /// Blocks until Lambda hands out the next event. No timeout on purpose.
    pub async fn next(&self, extension_id: &str) -> Result<NextEvent, ApiError> {
        let resp = self.conn.call(&next_request(extension_id), None).await?;
        if resp.status != 200 {
            return Err(ApiError::Status {
                what: "event/next",
                status: resp.status,
                body: snippet(&resp.body),
            });
        }
        parse_next(&resp.body)
    }

    /// Reports an unexpected failure before exiting (`/exit/error`).
    pub async fn exit_error(
        &self,
        extension_id: &str,
        error_type: &str,
        message: &str,
    ) -> Result<(), ApiError> {
        let req = error_report("exit/error", extension_id, error_type, message);
        error_reply(req.what, self.conn.call(&req, Some(CALL_TIMEOUT)).await?)
    }
}

fn next_request(extension_id: &str) -> Request {
    Request::new("GET", format!("{BASE}/event/next"), "event/next")
        .header("Lambda-Extension-Identifier", extension_id)
}

fn error_report(
    path: &'static str,
    extension_id: &str,
    error_type: &str,
    message: &str,
) -> Request {
    let body = serde_json::json!({
        "errorMessage": message,
        "errorType": error_type,
        "stackTrace": [],
    })
    .to_string();
    Request::new("POST", format!("{BASE}/{path}"), path)
        .header("Lambda-Extension-Identifier", extension_id)
        .header("Lambda-Extension-Function-Error-Type", error_type)
        .json(body)
}

fn error_reply(what: &'static str, resp: ApiResponse) -> Result<(), ApiError> {
    if resp.status / 100 != 2 {
        return Err(ApiError::Status {
            what,
            status: resp.status,
            body: snippet(&resp.body),
        });
    }
    Ok(())
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
