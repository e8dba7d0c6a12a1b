//! Platform events as the log lines CloudWatch shows for them (`START`,
//! `END`, `REPORT`, `INIT_START`, ...), for users who want them next to the
//! function's own lines. Off by default (`LAMBDA_OTEL_BRIDGE_PLATFORM_LOG_LINES`).

use crate::lambda::events::{
    EventKind, InitStart, PhaseDone, PhaseReport, PlatformExtension, Report, RestoreStart,
    RuntimeDone, Start, TelemetrySubscription,
};
use crate::options::read::flag;
use crate::options::table::PLATFORM_LOG_LINES;
use crate::options::{ConfigError, Env};

/// A line and the invocation it names.
pub struct Line {
    pub text: String,
    pub request_id: Option<String>,
}

/// The line of a platform event; none for log records, unknown events and
/// `platform.logsDropped` (the bridge always writes a warning of its own for
/// that one).
pub fn of_event(kind: &EventKind) -> Option<Line> {
    Some(match kind {
        EventKind::InitStart(s) => init_start(s),
        EventKind::RestoreStart(s) => restore_start(s),
        EventKind::InitRuntimeDone(d) | EventKind::RestoreRuntimeDone(d) => {
            phase_done(kind.static_type_name(), d)
        }
        EventKind::InitReport(r) | EventKind::RestoreReport(r) => {
            phase_report(kind.static_type_name(), r)
        }
        EventKind::Start(s) => start(s),
        EventKind::RuntimeDone(d) => runtime_done(d),
        EventKind::Report(r) => report(r),
        EventKind::Extension(e) => extension(e),
        EventKind::TelemetrySubscription(s) => subscription(s),
        EventKind::LogsDropped(_)
        | EventKind::Function(_)
        | EventKind::ExtensionLog(_)
        | EventKind::Unknown { .. } => return None,
    })
}

fn fmt_ms(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Reads `LAMBDA_OTEL_BRIDGE_PLATFORM_LOG_LINES`: whether these lines are emitted.
pub fn enabled(env: &dyn Env) -> Result<bool, ConfigError> {
    flag(env, &PLATFORM_LOG_LINES)
}

pub fn start(s: &Start) -> Line {
    Line {
        text: format!(
            "START RequestId: {} Version: {}",
            s.request_id,
            s.version.as_deref().unwrap_or("$LATEST")
        ),
        request_id: Some(s.request_id.clone()),
    }
}

pub fn runtime_done(d: &RuntimeDone) -> Line {
    let mut text = format!("END RequestId: {}", d.request_id);
    if let Some(status) = d.status.as_deref().filter(|s| *s != "success") {
        text.push_str(&format!(" Status: {status}"));
        if let Some(e) = &d.error_type {
            text.push_str(&format!(" Error Type: {e}"));
        }
    }
    Line {
        text,
        request_id: Some(d.request_id.clone()),
    }
}

pub fn report(r: &Report) -> Line {
    let m = &r.metrics;
    let mut text = format!("REPORT RequestId: {}", r.request_id);
    if let Some(v) = m.duration_ms {
        text.push_str(&format!("\tDuration: {} ms", fmt_ms(v)));
    }
    if let Some(v) = m.billed_duration_ms {
        text.push_str(&format!("\tBilled Duration: {} ms", fmt_ms(v)));
    }
    if let Some(v) = m.memory_size_mb {
        text.push_str(&format!("\tMemory Size: {v} MB"));
    }
    if let Some(v) = m.max_memory_used_mb {
        text.push_str(&format!("\tMax Memory Used: {v} MB"));
    }
    if let Some(v) = m.init_duration_ms {
        text.push_str(&format!("\tInit Duration: {} ms", fmt_ms(v)));
    }
    if let Some(v) = m.restore_duration_ms {
        text.push_str(&format!("\tRestore Duration: {} ms", fmt_ms(v)));
    }
    if let Some(status) = r.status.as_deref().filter(|s| *s != "success") {
        text.push_str(&format!("\tStatus: {status}"));
        if let Some(e) = &r.error_type {
            text.push_str(&format!("\tError Type: {e}"));
        }
    }
    Line {
        text,
        request_id: Some(r.request_id.clone()),
    }
}

pub fn init_start(s: &InitStart) -> Line {
    Line {
        text: format!(
            "INIT_START Runtime Version: {}\tRuntime Version ARN: {}",
            s.runtime_version.as_deref().unwrap_or("unknown"),
            s.runtime_version_arn.as_deref().unwrap_or("unknown")
        ),
        request_id: None,
    }
}

pub fn restore_start(s: &RestoreStart) -> Line {
    Line {
        text: format!(
            "RESTORE_START Runtime Version: {}\tRuntime Version ARN: {}",
            s.runtime_version.as_deref().unwrap_or("unknown"),
            s.runtime_version_arn.as_deref().unwrap_or("unknown")
        ),
        request_id: None,
    }
}

/// `platform.initRuntimeDone` / `platform.restoreRuntimeDone`.
pub fn phase_done(type_name: &str, d: &PhaseDone) -> Line {
    let what = if type_name.contains("restore") {
        "RESTORE_RUNTIME_DONE"
    } else {
        "INIT_RUNTIME_DONE"
    };
    let mut text = format!(
        "{what} Status: {}",
        d.status.as_deref().unwrap_or("unknown")
    );
    if let Some(e) = &d.error_type {
        text.push_str(&format!("\tError Type: {e}"));
    }
    Line {
        text,
        request_id: None,
    }
}

/// `platform.initReport` / `platform.restoreReport`.
pub fn phase_report(type_name: &str, r: &PhaseReport) -> Line {
    let restore = type_name.contains("restore");
    let mut text = format!(
        "{} {} Duration: {} ms",
        if restore {
            "RESTORE_REPORT"
        } else {
            "INIT_REPORT"
        },
        if restore { "Restore" } else { "Init" },
        fmt_ms(r.metrics.duration_ms.unwrap_or(0.0))
    );
    if let Some(p) = &r.phase {
        text.push_str(&format!("\tPhase: {p}"));
    }
    if let Some(s) = &r.status {
        text.push_str(&format!("\tStatus: {s}"));
    }
    if let Some(e) = &r.error_type {
        text.push_str(&format!("\tError Type: {e}"));
    }
    Line {
        text,
        request_id: None,
    }
}

pub fn extension(e: &PlatformExtension) -> Line {
    Line {
        text: format!(
            "EXTENSION Name: {} State: {} Events: [{}]",
            e.name.as_deref().unwrap_or("unknown"),
            e.state.as_deref().unwrap_or("unknown"),
            e.events.join(", ")
        ),
        request_id: None,
    }
}

pub fn subscription(s: &TelemetrySubscription) -> Line {
    Line {
        text: format!(
            "TELEMETRY Name: {} State: {} Types: [{}]",
            s.name.as_deref().unwrap_or("unknown"),
            s.state.as_deref().unwrap_or("unknown"),
            s.types.join(", ")
        ),
        request_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lambda::events::ReportMetrics;

    #[test]
    fn report_line_like_cloudwatch() {
        let r = Report {
            request_id: "r1".into(),
            status: Some("success".into()),
            metrics: ReportMetrics {
                duration_ms: Some(581.66),
                billed_duration_ms: Some(582.0),
                memory_size_mb: Some(512),
                max_memory_used_mb: Some(97),
                init_duration_ms: Some(611.27),
                restore_duration_ms: None,
            },
            ..Default::default()
        };
        assert_eq!(
            report(&r).text,
            "REPORT RequestId: r1\tDuration: 581.66 ms\tBilled Duration: 582 ms\tMemory Size: 512 MB\tMax Memory Used: 97 MB\tInit Duration: 611.27 ms"
        );
    }
}
