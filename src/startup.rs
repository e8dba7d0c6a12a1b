//! The extension's start, up to its first `/next`: register, listen,
//! subscribe, send `/next`. Blocking, before the async runtime exists
//! (src/main.rs builds it afterwards): the first `/next` needs only these,
//! and whatever else the extension builds before it is CPU a cold start
//! waits for; at a 128 MB function's CPU share every millisecond of it is
//! ~14 ms (docs/PERFORMANCE.md, "The first `/next` before the async
//! runtime"). [`crate::lifecycle::run`] takes it from there.

use crate::config::Config;
use crate::lambda::extensions_api::{Bootstrap, FirstNext, Registration};
use crate::lambda::sandbox_host;
use crate::lambda::telemetry_api::{self, Subscription};
use crate::options::{ConfigError, Env};
use crate::otlp_receiver;
use crate::telemetry_receiver;

/// The file name Lambda started us under (`/opt/extensions/<name>`).
pub fn executable_name() -> String {
    let from_arg0 = std::env::args_os().next().and_then(|a| {
        std::path::Path::new(&a)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
    });
    from_arg0
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        })
        .unwrap_or_else(|| "lambda-otel-bridge".to_owned())
}

/// What the extension has done before the async runtime exists: it is
/// registered, listening and subscribed, and (except before a SnapStart
/// snapshot) its first `/next` is sent.
pub struct Started {
    pub(crate) config: Config,
    pub(crate) registration: Registration,
    /// Lambda Managed Instances.
    pub(crate) lmi: bool,
    /// Initialising for a SnapStart snapshot: the first `/next` is not sent.
    pub(crate) snap_start: bool,
    pub(crate) receiver: otlp_receiver::Bound,
    /// The Telemetry API listener, bound, not yet served.
    pub(crate) listener: std::net::TcpListener,
    /// Platform or other telemetry will be delivered.
    pub(crate) subscribed: bool,
    pub(crate) first_next: FirstNext,
}

/// Everything up to the first `/next` (see the module documentation).
/// `Err` carries the process's exit code.
pub fn start(env: &dyn Env, config: Result<Config, ConfigError>) -> Result<Started, i32> {
    let Some(runtime_api) = Config::runtime_api(env) else {
        tracing::error!("AWS_LAMBDA_RUNTIME_API is not set: not running as a Lambda extension");
        return Err(1);
    };
    let name = executable_name();
    // Read on its own: with an invalid setting elsewhere the registration
    // must still be the right one, so Lambda gets the real error.
    let init_type = env.get("AWS_LAMBDA_INITIALIZATION_TYPE");
    let lmi = init_type
        .as_deref()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("lambda-managed-instances"));
    let snap_start = init_type
        .as_deref()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("snap-start"));

    // The local receiver listens before the registration: the function's
    // init code may export as soon as every extension has registered.
    let receiver = match &config {
        Ok(c) => otlp_receiver::bind(&c.receiver),
        Err(_) => otlp_receiver::Bound::default(),
    };
    // Finding the listen address may ask a name server: the question goes
    // out now and is answered while Lambda registers us.
    let lookup = sandbox_host::start_lookup();
    let registered = Bootstrap::connect(&runtime_api).and_then(|mut api| {
        let registration = api.register(&name, !lmi)?;
        Ok((api, registration))
    });
    let (mut api, registration) = match registered {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot register with the Extensions API: {e}");
            return Err(1);
        }
    };
    let id = registration.extension_id.clone();
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("invalid configuration: {e}");
            tracing::error!("{msg}");
            if let Err(e) = api.init_error(&id, "Extension.ConfigInvalid", &msg) {
                tracing::error!("could not report the init error: {e}");
            }
            return Err(1);
        }
    };

    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    if !config.telemetry.types.platform && !lmi {
        tracing::warn!(
            "LAMBDA_OTEL_BRIDGE_TELEMETRY_TYPES has no platform: without platform.runtimeDone the \
             bridge cannot tell when an invocation ends, so its log lines leave one invocation \
             late (at the next INVOKE or at SHUTDOWN)"
        );
    }
    let ip = lookup.finish();
    let listener = match telemetry_receiver::bind(ip, config.telemetry.listener_port) {
        Ok((l, fallback)) => {
            if let Some(w) = fallback {
                tracing::warn!("{w}");
            }
            l
        }
        Err(e) => {
            let msg = format!(
                "cannot listen on {ip}:{} for the Telemetry API (LAMBDA_OTEL_BRIDGE_TELEMETRY_PORT): {e}",
                config.telemetry.listener_port
            );
            tracing::error!("{msg}");
            let _ = api.init_error(&id, "Extension.ConfigInvalid", &msg);
            return Err(1);
        }
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    // Connections Lambda makes before the router serves (after the first
    // `/next`) wait in the listener's backlog.
    let subscribed = subscribe(&mut api, &id, &config, port);
    let first_next = if snap_start {
        api.defer_first_next()
    } else {
        match api.send_first_next(&id) {
            Ok(sent) => sent,
            Err(e) => {
                tracing::error!("event/next failed: {e}");
                return Err(1);
            }
        }
    };
    Ok(Started {
        config,
        registration,
        lmi,
        snap_start,
        receiver,
        listener,
        subscribed,
        first_next,
    })
}

/// Subscribes; returns whether telemetry will be delivered.
fn subscribe(api: &mut Bootstrap, id: &str, config: &Config, port: u16) -> bool {
    let dest = telemetry_receiver::destination(port);
    match telemetry_api::subscribe(api.conn(), id, &config.telemetry, &dest) {
        Ok(Subscription::Subscribed { schema_version }) => {
            tracing::debug!(schema_version, destination = %dest, "subscribed to the Telemetry API");
            true
        }
        Ok(Subscription::NotSupported { body }) => {
            tracing::warn!(
                "the Telemetry API is not supported here (202: {body}); no platform or log telemetry will arrive, the extension keeps running"
            );
            false
        }
        Err(e) => {
            tracing::error!("Telemetry API subscription failed, no telemetry will arrive: {e}");
            false
        }
    }
}
