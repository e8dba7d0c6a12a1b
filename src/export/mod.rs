//! Export: resolved settings ([`settings`]), the OTLP transport ([`otlp`]),
//! and the flush of mapped data at the points the lifecycle chooses.

pub mod otlp;
pub mod settings;

use bytes::Bytes;
use prost::Message;
use tokio::time::Instant;

use crate::mapping::Output;
use otlp::{Outcome, SignalExporter};
use settings::{ExportSettings, Signal};

/// What one flush did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FlushReport {
    pub sent: u32,
    pub failed: u32,
    pub rejected_items: u64,
    pub errors: Vec<String>,
}

/// One exporter per signal, built lazily (no connection before first use).
pub struct Exporters {
    disabled: bool,
    traces: SignalExporter,
    metrics: SignalExporter,
    logs: SignalExporter,
}

impl Exporters {
    pub fn new(settings: &ExportSettings) -> Self {
        Exporters {
            disabled: settings.disabled,
            traces: SignalExporter::new(settings.traces.clone()),
            metrics: SignalExporter::new(settings.metrics.clone()),
            logs: SignalExporter::new(settings.logs.clone()),
        }
    }

    pub fn for_signal(&self, s: Signal) -> &SignalExporter {
        match s {
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
            Signal::Logs => &self.logs,
        }
    }

    /// Exports everything in `output`, giving up at `deadline`.
    pub async fn flush(&self, output: Output, deadline: Instant) -> FlushReport {
        let mut report = FlushReport::default();
        if self.disabled {
            return report;
        }
        let mut requests: Vec<(Signal, Bytes)> = Vec::new();
        if let Some(traces) = output.traces {
            requests.push((Signal::Traces, Bytes::from(traces.encode_to_vec())));
        }
        if let Some(metrics) = output.metrics {
            requests.push((Signal::Metrics, Bytes::from(metrics.encode_to_vec())));
        }
        if let Some(logs) = output.logs {
            requests.push((Signal::Logs, Bytes::from(logs.encode_to_vec())));
        }
        for (signal, body) in requests {
            match self.for_signal(signal).send(body, deadline).await {
                Outcome::Accepted { rejected, .. } => {
                    report.sent += 1;
                    report.rejected_items += rejected;
                }
                Outcome::Retryable { reason, .. } | Outcome::Permanent { reason } => {
                    report.failed += 1;
                    report.errors.push(format!("{signal:?}: {reason}"));
                }
            }
        }
        report
    }
}
