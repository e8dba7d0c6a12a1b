//! The Telemetry API listener (axum): Lambda POSTs batches of events here.
//!
//! - A JSON array is always acknowledged with 200, whatever its elements:
//!   each element is decoded on its own and bad ones are counted and skipped
//!   (a non-2xx would make Lambda re-send the batch and eventually drop it).
//! - A body that is not a JSON array gets 400 with a JSON error; a body over
//!   the limit gets 413 with `Connection: close` (the rest of the body is
//!   not read, so the connection cannot carry another request; without the
//!   header a keep-alive client would send its next batch on it and see it
//!   fail). The listener keeps serving either way.
//! - Only `POST /telemetry` exists. Nothing is logged per batch at the default
//!   level: the extension's own output comes back as `extension` events.
//!
//! It listens on the address `sandbox.localdomain` resolves to, which is where
//! Lambda delivers (see `lambda::sandbox_host`), or on `0.0.0.0`, with a warning, when
//! that address cannot be bound here (see [`bind`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;

use crate::counters::Count;
use crate::export::Exporter;
use crate::lambda::events::parse_batch;
use crate::lambda::sandbox_host::SANDBOX_HOST;
use crate::shared_state::Shared;

/// Path of the destination URI.
pub const PATH: &str = "/telemetry";

/// The destination URI to subscribe.
pub fn destination(port: u16) -> String {
    format!("http://{SANDBOX_HOST}:{port}{PATH}")
}

/// Longest time one batch's answer is held back while the outbox drains.
pub const BACKPRESSURE_MAX: std::time::Duration = std::time::Duration::from_millis(250);

#[derive(Clone)]
struct Receiver {
    shared: Arc<Shared>,
    exporter: Option<Arc<Exporter>>,
}

/// The listener's routes. With `exporter`, a batch that arrives while the
/// outbox is backlogged behind a collector that is accepting
/// ([`Exporter::backlogged`]) is ingested at once but answered only once the outbox has drained
/// below half (at most [`BACKPRESSURE_MAX`]): Lambda sends the next batch
/// after the answer, so a burst waits in Lambda's buffer instead of
/// overflowing the outbox. Against a collector that fails or hangs nothing
/// is held back (the function must not wait for it).
pub fn router(shared: Arc<Shared>, body_limit: usize, exporter: Option<Arc<Exporter>>) -> Router {
    Router::new()
        .route(PATH, post(receive))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(Receiver { shared, exporter })
}

async fn receive(
    State(rx): State<Receiver>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            return (
                rejection.status(),
                [(axum::http::header::CONNECTION, "close")],
                rejection.body_text(),
            )
                .into_response()
        }
    };
    let shared = rx.shared.clone();
    let observed = crate::time::now();
    // Ingest first: the lifecycle waits on what a batch carries (its
    // `platform.runtimeDone` ends the function's billed wait in `end` mode);
    // only the answer is held back.
    let response = match parse_batch(&body) {
        Ok(batch) if !batch.events.is_empty() && shared.is_redelivery(&body) => {
            tracing::debug!(bytes = body.len(), "dropped a redelivered telemetry batch");
            return StatusCode::OK.into_response();
        }
        Ok(batch) => {
            if !batch.skipped.is_empty() {
                tracing::debug!(skipped = batch.skipped.len(), first = %batch.skipped[0], "skipped telemetry events");
            }
            shared.ingest(batch, observed, body.len());
            StatusCode::OK.into_response()
        }
        Err(e) => {
            shared.count(Count::RejectedBatches);
            let body = serde_json::json!({
                "errorType": "InvalidTelemetryBatch",
                "errorMessage": e.to_string(),
            });
            return (
                StatusCode::BAD_REQUEST,
                [("content-type", "application/json")],
                body.to_string(),
            )
                .into_response();
        }
    };
    if let Some(exporter) = rx.exporter.as_ref().filter(|e| e.backlogged()) {
        rx.shared.count(Count::HeldBackBatches);
        exporter
            .wait_relieved(tokio::time::Instant::now() + BACKPRESSURE_MAX)
            .await;
    }
    response
}

/// Binds the listener on `ip` (what `sandbox_host::start_lookup` found), falling back to
/// `0.0.0.0` when `ip` cannot be bound here (`sandbox.localdomain` resolving
/// to an address that is not this machine's: `EADDRNOTAVAIL`). Lambda
/// delivers to whatever address the name resolves to for the platform, so
/// listening on every address still receives it. Returns the listener and,
/// after a fallback, a warning naming the address that failed; only a
/// failure to bind the fallback too is an error (naming both attempts).
/// Blocking: it runs before the async runtime exists ([`spawn`] serves it).
pub fn bind(ip: IpAddr, port: u16) -> std::io::Result<(std::net::TcpListener, Option<String>)> {
    let first = match std::net::TcpListener::bind(SocketAddr::new(ip, port)) {
        Ok(listener) => return Ok((listener, None)),
        Err(e) if ip.is_unspecified() => return Err(e),
        Err(e) => e,
    };
    let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
    match std::net::TcpListener::bind(any) {
        Ok(listener) => {
            let warning = format!(
                "cannot listen on {ip}:{port}, the address {SANDBOX_HOST} resolves to ({first}); \
                 listening on {any} instead"
            );
            Ok((listener, Some(warning)))
        }
        Err(e) => Err(std::io::Error::new(
            e.kind(),
            format!("{ip}:{port}: {first}; fallback {any}: {e}"),
        )),
    }
}

/// Serves until the process ends; must be called on the async runtime.
pub fn spawn(listener: std::net::TcpListener, router: Router) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!("telemetry listener stopped: {e}");
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 192.0.2.1 (TEST-NET-1) is assigned to no machine: bind() refuses it
    /// locally with EADDRNOTAVAIL, like a `sandbox.localdomain` entry that
    /// names another host. No packet is sent.
    const NOT_HERE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

    #[test]
    fn an_address_that_is_not_local_falls_back_to_every_address() {
        // The premise: this machine really cannot bind the address.
        let direct = std::net::TcpListener::bind(SocketAddr::new(NOT_HERE, 0));
        assert!(
            direct.is_err(),
            "192.0.2.1 is bindable on this machine; the test needs an address that is not"
        );
        let (listener, warning) = bind(NOT_HERE, 0).expect("fallback binds");
        let addr = listener.local_addr().unwrap();
        assert!(addr.ip().is_unspecified(), "{addr}");
        let warning = warning.expect("a warning");
        assert!(warning.contains("192.0.2.1"), "{warning}");
        assert!(warning.contains("0.0.0.0"), "{warning}");
        // The fallback listener accepts on loopback.
        let connected = std::net::TcpStream::connect(("127.0.0.1", addr.port()));
        connected.expect("connected");
        listener.accept().expect("accepted");
    }

    #[test]
    fn a_bindable_address_is_used_without_warning() {
        let (listener, warning) = bind(IpAddr::V4(Ipv4Addr::LOCALHOST), 0).unwrap();
        assert_eq!(
            listener.local_addr().unwrap().ip(),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(warning, None);
    }

    #[test]
    fn a_failing_fallback_is_an_error_naming_both_addresses() {
        // The port is taken on every address: the fallback fails too.
        let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let e = bind(NOT_HERE, port).expect_err("no address left");
        let text = e.to_string();
        assert!(text.contains(&format!("192.0.2.1:{port}")), "{text}");
        assert!(text.contains(&format!("0.0.0.0:{port}")), "{text}");
    }
}

#[cfg(test)]
mod backpressure_tests {
    use super::*;
    use crate::export::settings::Signal;
    use crate::export::transport::{Outcome, SendFuture, Transport};
    use crate::mapping::{Mapper, MapperSettings};
    use std::time::Duration;
    use tower_service::Service;

    struct Accepting;
    impl Transport for Accepting {
        fn send(self: Arc<Self>, _: Bytes, _: tokio::time::Instant) -> SendFuture {
            Box::pin(async {
                Outcome::Accepted {
                    rejected: 0,
                    message: String::new(),
                }
            })
        }
        fn timeout(&self) -> Duration {
            Duration::from_secs(1)
        }
    }

    /// A body over the limit gets 413 and `Connection: close`: its rest is
    /// not read, so a keep-alive client must not send on that connection
    /// again.
    #[tokio::test]
    async fn a_body_over_the_limit_gets_413_and_closes_the_connection() {
        let shared = Arc::new(Shared::new(
            Mapper::new(Default::default(), MapperSettings::default()),
            Arc::new(crate::counters::Counters::default()),
        ));
        let mut router = router(shared, 1024, None);
        let req = axum::http::Request::post(PATH)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(vec![b' '; 2048]))
            .unwrap();
        let resp = router.call(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            resp.headers().get("connection").map(|v| v.as_bytes()),
            Some(&b"close"[..])
        );
        let ok = axum::http::Request::post(PATH)
            .header("content-type", "application/json")
            .body(axum::body::Body::from("[]"))
            .unwrap();
        let resp = router.call(ok).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers().get("connection"), None);
    }

    /// A batch that arrives while the outbox is backlogged is ingested at
    /// once (the lifecycle sees its runtimeDone) and only its answer waits.
    #[tokio::test]
    async fn a_held_back_batch_is_ingested_before_the_answer() {
        let t = || -> Arc<dyn Transport> { Arc::new(Accepting) };
        let exporter = Arc::new(Exporter::with_transports([t(), t(), t()], 64 * 1024));
        // The collector accepted a moment ago, and more than half the outbox waits.
        exporter.enqueue_raw(Signal::Logs, Bytes::from_static(b"x"), 1);
        exporter
            .flush(tokio::time::Instant::now() + Duration::from_secs(1))
            .await;
        exporter.enqueue_raw(Signal::Logs, Bytes::from(vec![0u8; 40 * 1024]), 1);
        assert!(exporter.backlogged());
        let shared = Arc::new(Shared::new(
            Mapper::new(Default::default(), MapperSettings::default()),
            exporter.counters(),
        ));
        let mut router = router(shared.clone(), 1 << 20, Some(exporter.clone()));
        let batch = r#"[{"time":"2025-03-04T10:15:30.000Z","type":"platform.runtimeDone","record":{"requestId":"r-1","status":"success"}}]"#;
        let req = axum::http::Request::post(PATH)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(batch))
            .unwrap();
        let answer = tokio::spawn(router.call(req));
        // Long before the answer (held up to 250 ms), the event is in.
        let seen = shared
            .wait_until(
                tokio::time::Instant::now() + Duration::from_millis(100),
                |st| st.mapper.runtime_done_seen("r-1"),
            )
            .await;
        assert!(seen, "runtimeDone not ingested while the answer was held");
        assert!(!answer.is_finished(), "the answer was not held back");
        let resp = answer.await.unwrap().unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(shared.counters().get(Count::HeldBackBatches), 1);
    }
}
