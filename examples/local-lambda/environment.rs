//! What the demo's extension process is given: your own `LAMBDA_OTEL_BRIDGE_*`,
//! `OTEL_*` and `AWS_LAMBDA_*` variables (the emulator passes them through),
//! the demo's defaults where you set nothing, and the one variable the demo
//! always sets itself. Printed before the run, so every value the extension
//! sees can be traced to where it came from.

use std::net::SocketAddr;

use crate::emulator::inherited_env;

/// Name prefixes of the variables passed through from this program's environment.
pub const PASSED_THROUGH: [&str; 3] = ["LAMBDA_OTEL_BRIDGE_", "OTEL_", "AWS_LAMBDA_"];

/// A variable the demo sets, and why.
pub struct DemoSetting {
    pub name: &'static str,
    pub value: String,
    pub why: &'static str,
}

/// The environment of one demo run.
pub struct Plan {
    /// Your variables, as passed through (name order).
    pub yours: Vec<(String, String)>,
    /// The demo's defaults: set only where you set nothing.
    pub defaults: Vec<DemoSetting>,
    /// The collector you configured (a general endpoint), if any.
    pub external_endpoint: Option<String>,
    /// The OTLP protocol the bridge will use for the general endpoint.
    pub protocol: String,
    /// Where the demo's function sends its own OTLP/HTTP (`None`: receiver off).
    pub receiver_http: Option<SocketAddr>,
}

impl Plan {
    /// Reads this program's environment.
    pub fn from_env() -> Plan {
        let prefixes: Vec<String> = PASSED_THROUGH.iter().map(|p| p.to_string()).collect();
        let yours = inherited_env(&prefixes);
        let get = |name: &str| {
            yours
                .iter()
                .find(|(k, v)| k == name && !v.trim().is_empty())
                .map(|(_, v)| v.clone())
        };
        // The bridge's own prefix wins over the standard one (README, "Configuration").
        let external_endpoint = get("LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_ENDPOINT")
            .or_else(|| get("OTEL_EXPORTER_OTLP_ENDPOINT"));
        let protocol = get("LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_PROTOCOL")
            .or_else(|| get("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .unwrap_or_else(|| "http/protobuf".into());

        let mut defaults = Vec::new();
        if get("LAMBDA_OTEL_BRIDGE_INVOCATION_SPAN_ID").is_none() {
            defaults.push(DemoSetting {
                name: "LAMBDA_OTEL_BRIDGE_INVOCATION_SPAN_ID",
                value: "xray-parent".into(),
                why: "the function's own spans nest inside the invocation span",
            });
        }
        let receiver_on = get("LAMBDA_OTEL_BRIDGE_RECEIVER")
            .is_none_or(|v| !matches!(v.to_ascii_lowercase().as_str(), "false" | "0"));
        let receiver_http = match get("LAMBDA_OTEL_BRIDGE_RECEIVER_HTTP_ADDR") {
            _ if !receiver_on => None,
            Some(addr) => loopback_of(&addr),
            None => {
                let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
                defaults.push(DemoSetting {
                    name: "LAMBDA_OTEL_BRIDGE_RECEIVER_HTTP_ADDR",
                    value: addr.to_string(),
                    why: "a free port: where the demo's function sends its own OTLP",
                });
                Some(addr)
            }
        };
        Plan {
            yours,
            defaults,
            external_endpoint,
            protocol,
            receiver_http,
        }
    }

    /// Without a collector of yours, the bridge sends to the demo's embedded
    /// OTLP receiver at `url`.
    pub fn send_to_embedded(&mut self, url: String) {
        self.defaults.insert(
            0,
            DemoSetting {
                name: "OTEL_EXPORTER_OTLP_ENDPOINT",
                value: url,
                why: "this demo's embedded OTLP receiver, which prints what arrives",
            },
        );
    }

    /// What the emulator's `extra_env` gets.
    pub fn extra_env(&self) -> Vec<(String, String)> {
        self.defaults
            .iter()
            .map(|s| (s.name.to_string(), s.value.clone()))
            .collect()
    }

    /// Your value of `name`, if you set one.
    pub fn yours(&self, name: &str) -> Option<&str> {
        self.yours
            .iter()
            .find(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Prints where every variable comes from; `runtime_api` is the emulator's.
    pub fn print(&self, runtime_api: &str) {
        println!("== extension environment");
        println!(
            "passed through from yours ({}):",
            PASSED_THROUGH.map(|p| format!("{p}*")).join(", ")
        );
        if self.yours.is_empty() {
            println!("  (none set)");
        }
        for (name, value) in &self.yours {
            println!("  {name}={}", shown(name, value));
        }
        println!("set by the demo where you set nothing (set one yourself to change it):");
        for s in &self.defaults {
            println!("  {}={}  ({})", s.name, s.value, s.why);
        }
        println!("set by the demo, overriding yours:");
        let overridden = match self.yours("AWS_LAMBDA_RUNTIME_API") {
            Some(v) => format!("; yours, {v}, is not used"),
            None => String::new(),
        };
        println!(
            "  AWS_LAMBDA_RUNTIME_API={runtime_api}  (the emulator's Runtime API{overridden})"
        );
    }
}

/// Header values carry API keys: never printed.
fn shown<'a>(name: &str, value: &'a str) -> &'a str {
    if name.contains("HEADERS") {
        "<set, not shown>"
    } else {
        value
    }
}

/// `127.0.0.1:4318`, `0.0.0.0:4318` → where a local client reaches it; `off` → `None`.
fn loopback_of(addr: &str) -> Option<SocketAddr> {
    let port: u16 = addr.trim().rsplit_once(':')?.1.parse().ok()?;
    (port != 0).then(|| SocketAddr::from(([127, 0, 0, 1], port)))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(4318)
}
