//! The extension's lifecycle: register, listen, subscribe, then the `/next`
//! loop, and the flush points that keep telemetry safe across freezes.
//!
//! This is the only module that calls `/next`. Calling it tells Lambda that
//! the extension is done with the current phase, after which the sandbox may
//! be frozen (timers stop, sockets stall) or never thawed again. So, for each
//! INVOKE, the lifecycle waits (bounded) for this invocation's
//! `platform.runtimeDone`, exports what is pending, and only then calls
//! `/next`. On SHUTDOWN it waits (bounded) for the last `platform.report`,
//! exports everything and exits well before the deadline.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{Config, Env};
use crate::export::Exporters;
use crate::lambda::extensions_api::{ExtensionsApi, InvokeEvent, NextEvent, ShutdownEvent};
use crate::lambda::telemetry_api::{self, Subscription};
use crate::lambda::{new_client, ApiClient};
use crate::mapping::invocation::InvokeInfo;
use crate::mapping::resource::{self, ResourceInfo};
use crate::mapping::{Mapper, MapperConfig};
use crate::pipeline::Shared;
use crate::telemetry_receiver;

/// Time kept free before a deadline Lambda gave us.
const DEADLINE_MARGIN: Duration = Duration::from_millis(150);

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

/// Converts a Lambda `deadlineMs` (Unix milliseconds) to an `Instant`, minus
/// the safety margin.
pub fn deadline_instant(deadline_ms: u64) -> Instant {
    let now_ms = crate::time::now() / 1_000_000;
    let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
    Instant::now() + left.saturating_sub(DEADLINE_MARGIN)
}

fn instance_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("{:x}-{}", crate::time::now(), std::process::id()))
}

/// Runs the extension; returns the process exit code.
pub async fn run(env: &dyn Env) -> i32 {
    let Some(runtime_api) = Config::runtime_api(env) else {
        tracing::error!("AWS_LAMBDA_RUNTIME_API is not set: not running as a Lambda extension");
        return 1;
    };
    let config = Config::from_env(env);
    let name = executable_name();
    let lmi = config
        .as_ref()
        .ok()
        .and_then(|c| c.lambda.initialization_type.as_deref())
        .is_some_and(|t| t.eq_ignore_ascii_case("lambda-managed-instances"));

    let client = new_client();
    let api = ExtensionsApi::new(client.clone(), &runtime_api);
    // Resolving the listen address may touch the resolver: do it while registering.
    let listen_ip = tokio::spawn(telemetry_receiver::listen_ip());
    let registration = match api.register(&name, !lmi).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot register with the Extensions API: {e}");
            return 1;
        }
    };
    let id = registration.extension_id.clone();
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("invalid configuration: {e}");
            tracing::error!("{msg}");
            if let Err(e) = api.init_error(&id, "Extension.ConfigInvalid", &msg).await {
                tracing::error!("could not report the init error: {e}");
            }
            return 1;
        }
    };

    let built = resource::build(&ResourceInfo {
        service_name: env.get("OTEL_SERVICE_NAME"),
        resource_attributes: env.get("OTEL_RESOURCE_ATTRIBUTES"),
        function_name: registration
            .function_name
            .clone()
            .or_else(|| config.lambda.function_name.clone()),
        function_version: registration
            .function_version
            .clone()
            .or_else(|| config.lambda.function_version.clone()),
        region: config.lambda.region.clone(),
        account_id: registration.account_id.clone(),
        memory_mb: config.lambda.memory_mb,
        instance_id: instance_id(),
    });
    if let Some(w) = &built.warning {
        tracing::warn!("{w}");
    }
    let mapper_config = MapperConfig {
        temporality: config.export.temporality,
        faas_trigger: config.faas_trigger.clone(),
        platform_log_lines: config.platform_log_lines,
        function_name: registration
            .function_name
            .clone()
            .or_else(|| config.lambda.function_name.clone()),
        function_version: registration
            .function_version
            .clone()
            .or_else(|| config.lambda.function_version.clone()),
    };
    let shared = Arc::new(Shared::new(Mapper::new(built.resource, mapper_config)));

    let ip = listen_ip
        .await
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let listener = match telemetry_receiver::bind(ip, config.telemetry.listener_port).await {
        Ok(l) => l,
        Err(e) => {
            let msg = format!(
                "cannot listen on {ip}:{} for the Telemetry API (LAMBDA_OTEL_BRIDGE_TELEMETRY_PORT): {e}",
                config.telemetry.listener_port
            );
            tracing::error!("{msg}");
            let _ = api.init_error(&id, "Extension.ConfigInvalid", &msg).await;
            return 1;
        }
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    telemetry_receiver::spawn(
        listener,
        telemetry_receiver::router(shared.clone(), config.telemetry.body_limit()),
    );
    let subscribed = subscribe(&client, &runtime_api, &id, &config, port).await;
    // Without a working subscription to platform events no runtimeDone or
    // report will come: waiting for them would only delay the function.
    let platform_events = subscribed && config.telemetry.types.platform;

    let exporters = Exporters::new(&config.export);
    let lifecycle = Lifecycle {
        api,
        id,
        shared,
        exporters,
        config,
        platform_events,
        lmi,
    };
    lifecycle.event_loop().await
}

/// Subscribes; returns whether telemetry will be delivered.
async fn subscribe(
    client: &ApiClient,
    runtime_api: &str,
    id: &str,
    config: &Config,
    port: u16,
) -> bool {
    let dest = telemetry_receiver::destination(port);
    match telemetry_api::subscribe(client, runtime_api, id, &config.telemetry, &dest).await {
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

struct Lifecycle {
    api: ExtensionsApi,
    id: String,
    shared: Arc<Shared>,
    exporters: Exporters,
    config: Config,
    /// Platform events are subscribed and will be delivered.
    platform_events: bool,
    /// Lambda Managed Instances: no INVOKE, no runtimeDone.
    lmi: bool,
}

impl Lifecycle {
    async fn event_loop(self) -> i32 {
        loop {
            match self.api.next(&self.id).await {
                Ok(NextEvent::Invoke(inv)) => self.on_invoke(inv).await,
                Ok(NextEvent::Shutdown(sd)) => {
                    self.on_shutdown(sd).await;
                    return 0;
                }
                Err(e) => {
                    let msg = format!("event/next failed: {e}");
                    tracing::error!("{msg}");
                    let _ = self
                        .api
                        .exit_error(&self.id, "Extension.UnknownReason", &msg)
                        .await;
                    // Last chance to deliver what was received.
                    let deadline = Instant::now() + Duration::from_millis(500);
                    self.flush(deadline).await;
                    return 1;
                }
            }
        }
    }

    async fn on_invoke(&self, inv: InvokeEvent) {
        let request_id = inv.request_id.clone();
        let invocation_deadline = deadline_instant(inv.deadline_ms);
        self.shared.lock().mapper.on_invoke(
            &request_id,
            InvokeInfo {
                deadline_ms: inv.deadline_ms,
                invoked_function_arn: inv.invoked_function_arn,
                xray_header: inv.tracing.and_then(|t| t.value),
            },
        );
        if self.platform_events && !self.lmi {
            let wait_until = (Instant::now() + self.config.invoke_wait).min(invocation_deadline);
            let seen = self
                .shared
                .wait_until(wait_until, |st| st.mapper.runtime_done_seen(&request_id))
                .await;
            if !seen {
                tracing::debug!(%request_id, "runtimeDone not received before the wait ended");
            }
        }
        self.flush(invocation_deadline).await;
    }

    async fn on_shutdown(&self, sd: ShutdownEvent) {
        let deadline = deadline_instant(sd.deadline_ms);
        if self.platform_events {
            let report_wait = (Instant::now() + self.config.shutdown_report_wait).min(deadline);
            self.shared
                .wait_until(report_wait, |st| {
                    st.mapper.invocations.awaiting_report().is_empty()
                })
                .await;
        }
        let output = self.shared.lock().mapper.take_final();
        self.export(output, deadline).await;
        let st = self.shared.lock();
        tracing::info!(
            reason = sd.shutdown_reason.as_deref().unwrap_or("unknown"),
            batches = st.receiver.batches,
            events = st.receiver.events,
            skipped_events = st.receiver.skipped_events,
            rejected_bodies = st.receiver.rejected_bodies,
            log_records = st.mapper.stats.log_records,
            spans = st.mapper.stats.spans,
            reports = st.mapper.stats.reports,
            awaiting_report = st.mapper.invocations.awaiting_report().len(),
            "shutting down"
        );
    }

    async fn flush(&self, deadline: Instant) {
        let output = self.shared.take_output();
        self.export(output, deadline).await;
    }

    async fn export(&self, output: crate::mapping::Output, deadline: Instant) {
        if output.is_empty() {
            return;
        }
        let report = self.exporters.flush(output, deadline).await;
        if report.failed > 0 {
            tracing::warn!(
                failed = report.failed,
                "export failed, data dropped: {}",
                report.errors.join("; ")
            );
        }
    }
}
