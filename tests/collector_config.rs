//! Static checks of `collector-config/`: the OpenTelemetry Collector
//! configurations, the docker-compose stack and the Grafana provisioning.
//! Nothing here runs a container; the files are parsed and cross-checked.
//!
//! - every YAML and JSON file parses;
//! - every collector configuration (a YAML file with a top-level `service:`)
//!   only references components it defines, uses every exporter it defines,
//!   and starts each pipeline's processors with `memory_limiter` and ends
//!   them with `batch`;
//! - every component they use is in the pinned collector image (the
//!   distribution and version `docker-compose.yml` pins), under its name in
//!   that version ([`PINNED_COMPONENTS`]);
//! - docker-compose mounts files that exist, publishes ports on 127.0.0.1
//!   only, and runs the collector with a configuration of its own that
//!   sends only to services of the stack;
//! - Grafana's dashboard only uses provisioned data sources, and only metric
//!   names the bridge really emits once the collector (or Prometheus) has
//!   translated them, computed here from `mapping::metrics::DEFINITIONS`,
//!   the instruments in proto-mapping/MAPPING.md and the bridge's own three
//!   metrics, with the OTLP -> Prometheus naming rules.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use lambda_otel_bridge::DEFINITIONS;
use serde_json::Value as Json;
use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlLoader};

// ---------------------------------------------------------------------------
// Files

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("collector-config")
}

/// Path relative to the crate root, for messages.
fn rel(path: &Path) -> String {
    path.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(path)
        .display()
        .to_string()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = fs::read_dir(&d).unwrap_or_else(|e| panic!("read {}: {e}", rel(&d)));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn extension(path: &Path) -> &str {
    path.extension().and_then(|e| e.to_str()).unwrap_or("")
}

fn is_yaml(path: &Path) -> bool {
    matches!(extension(path), "yaml" | "yml")
}

fn parse_yaml(path: &Path) -> Result<Yaml, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", rel(path)))?;
    let mut docs = YamlLoader::load_from_str(&text).map_err(|e| format!("{}: {e}", rel(path)))?;
    match docs.len() {
        1 => Ok(docs.remove(0)),
        n => Err(format!("{}: {n} YAML documents, expected 1", rel(path))),
    }
}

fn load_yaml(path: &Path) -> Yaml {
    parse_yaml(path).unwrap_or_else(|e| panic!("{e}"))
}

fn parse_json(path: &Path) -> Result<Json, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", rel(path)))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", rel(path)))
}

fn load_json(path: &Path) -> Json {
    parse_json(path).unwrap_or_else(|e| panic!("{e}"))
}

fn compose_path() -> PathBuf {
    config_dir().join("docker-compose.yml")
}

fn dashboard_paths() -> Vec<PathBuf> {
    let paths: Vec<PathBuf> = files_under(&config_dir().join("grafana/dashboards"))
        .into_iter()
        .filter(|p| extension(p) == "json")
        .collect();
    assert!(
        !paths.is_empty(),
        "no dashboard in collector-config/grafana/dashboards"
    );
    paths
}

fn datasource_files() -> Vec<PathBuf> {
    let paths: Vec<PathBuf> = files_under(&config_dir().join("grafana/provisioning/datasources"))
        .into_iter()
        .filter(|p| is_yaml(p))
        .collect();
    assert!(!paths.is_empty(), "no datasource provisioning file");
    paths
}

fn yaml_str(y: &Yaml) -> Option<&str> {
    y.as_str()
}

/// Keys of a mapping section; an absent or empty (`null`) section is empty.
fn section_keys(doc: &Yaml, section: &str) -> Result<BTreeSet<String>, String> {
    match &doc[section] {
        Yaml::BadValue | Yaml::Null => Ok(BTreeSet::new()),
        Yaml::Hash(h) => h
            .keys()
            .map(|k| {
                yaml_str(k)
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{section}: non-string component id {k:?}"))
            })
            .collect(),
        other => Err(format!("{section}: expected a mapping, found {other:?}")),
    }
}

/// A list of component ids (`[otlp, batch]`); absent or `null` is empty.
fn id_list(y: &Yaml, what: &str) -> Result<Vec<String>, String> {
    match y {
        Yaml::BadValue | Yaml::Null => Ok(Vec::new()),
        Yaml::Array(items) => items
            .iter()
            .map(|i| {
                yaml_str(i)
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{what}: non-string entry {i:?}"))
            })
            .collect(),
        other => Err(format!("{what}: expected a list, found {other:?}")),
    }
}

/// The type of a component id: `otlp_grpc/tempo` -> `otlp_grpc`.
fn component_type(id: &str) -> &str {
    id.split('/').next().unwrap_or(id)
}

// ---------------------------------------------------------------------------
// Every file parses

#[test]
fn every_yaml_and_json_file_parses() {
    let mut errors = Vec::new();
    let mut parsed = 0;
    for path in files_under(&config_dir()) {
        let result = match extension(&path) {
            "yaml" | "yml" => parse_yaml(&path).map(drop),
            "json" => parse_json(&path).map(drop),
            _ => continue,
        };
        parsed += 1;
        if let Err(e) = result {
            errors.push(e);
        }
    }
    assert!(
        errors.is_empty(),
        "unparsable files:\n{}",
        errors.join("\n")
    );
    // The directory holds the agent, gateway, per-backend and debug collector
    // configs, the compose stack, three backend configs and Grafana's files.
    assert!(
        parsed >= 18,
        "only {parsed} YAML/JSON files under collector-config/"
    );
}

// ---------------------------------------------------------------------------
// Collector configurations

const PIPELINE_TYPES: [&str; 4] = ["traces", "metrics", "logs", "profiles"];

/// Checks one collector configuration; returns the problems found.
fn check_collector_config(name: &str, doc: &Yaml) -> Vec<String> {
    let mut errors = Vec::new();
    let mut err = |m: String| errors.push(format!("{name}: {m}"));

    let mut defined = BTreeMap::new();
    for section in [
        "receivers",
        "processors",
        "exporters",
        "connectors",
        "extensions",
    ] {
        match section_keys(doc, section) {
            Ok(keys) => {
                for k in &keys {
                    let t = component_type(k);
                    if t.is_empty() || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                        err(format!("{section}: malformed component id {k:?}"));
                    }
                }
                defined.insert(section, keys);
            }
            Err(e) => {
                err(e);
                defined.insert(section, BTreeSet::new());
            }
        }
    }
    let connectors = defined.get("connectors").cloned().unwrap_or_default();

    let pipelines = match &doc["service"]["pipelines"] {
        Yaml::Hash(h) if !h.is_empty() => h.clone(),
        other => {
            err(format!(
                "service.pipelines: expected a non-empty mapping, found {other:?}"
            ));
            return errors;
        }
    };

    let mut used_exporters = BTreeSet::new();
    for (pid, pipeline) in &pipelines {
        let Some(pid) = yaml_str(pid) else {
            err(format!("non-string pipeline id {pid:?}"));
            continue;
        };
        if !PIPELINE_TYPES.contains(&component_type(pid)) {
            err(format!(
                "pipeline {pid}: unknown signal {:?}",
                component_type(pid)
            ));
        }
        for (kind, section, required) in [
            ("receivers", "receivers", true),
            ("processors", "processors", false),
            ("exporters", "exporters", true),
        ] {
            let ids = match id_list(&pipeline[kind], &format!("pipeline {pid} {kind}")) {
                Ok(ids) => ids,
                Err(e) => {
                    err(e);
                    continue;
                }
            };
            if required && ids.is_empty() {
                err(format!("pipeline {pid}: no {kind}"));
            }
            for id in &ids {
                // Connectors act as exporters of one pipeline and receivers of another.
                let known = defined[section].contains(id)
                    || (kind != "processors" && connectors.contains(id));
                if !known {
                    err(format!(
                        "pipeline {pid}: {kind} entry {id:?} is not defined in {section}"
                    ));
                }
                if kind == "exporters" {
                    used_exporters.insert(id.clone());
                }
            }
            if kind == "processors" {
                match (ids.first(), ids.last()) {
                    (Some(first), Some(last)) => {
                        if component_type(first) != "memory_limiter" {
                            err(format!(
                                "pipeline {pid}: processors must start with memory_limiter, found {first}"
                            ));
                        }
                        if component_type(last) != "batch" {
                            err(format!(
                                "pipeline {pid}: processors must end with batch, found {last}"
                            ));
                        }
                    }
                    _ => err(format!(
                        "pipeline {pid}: no processors (memory_limiter first and batch last are required)"
                    )),
                }
            }
        }
    }

    for id in &defined["exporters"] {
        if !used_exporters.contains(id) {
            err(format!("exporter {id} is defined but no pipeline uses it"));
        }
    }

    match id_list(&doc["service"]["extensions"], "service.extensions") {
        Ok(enabled) => {
            for id in &enabled {
                if !defined["extensions"].contains(id) {
                    err(format!(
                        "service.extensions entry {id:?} is not defined in extensions"
                    ));
                }
            }
            for id in &defined["extensions"] {
                if !enabled.contains(id) {
                    err(format!(
                        "extension {id} is defined but not in service.extensions"
                    ));
                }
            }
        }
        Err(e) => err(e),
    }
    errors
}

/// Every YAML file under collector-config/ with a top-level `service:` key.
fn collector_configs() -> Vec<(String, Yaml)> {
    files_under(&config_dir())
        .into_iter()
        .filter(|p| is_yaml(p))
        .map(|p| (rel(&p), load_yaml(&p)))
        .filter(|(_, doc)| !doc["service"].is_badvalue())
        .collect()
}

#[test]
fn collector_configs_are_consistent() {
    let configs = collector_configs();
    let names: Vec<&str> = configs.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "collector-config/otelcol-agent.yaml",
        "collector-config/otelcol-compose.yaml",
        "collector-config/otelcol-debug.yaml",
        "collector-config/otelcol-gateway-loadbalancing.yaml",
        "collector-config/otelcol-gateway-backend.yaml",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing or without service: ({names:?})"
        );
    }
    let errors: Vec<String> = configs
        .iter()
        .flat_map(|(name, doc)| check_collector_config(name, doc))
        .collect();
    assert!(
        errors.is_empty(),
        "collector config problems:\n{}",
        errors.join("\n")
    );
}

// ---------------------------------------------------------------------------
// The components of the pinned collector

/// The collector image docker-compose.yml pins; every configuration here is
/// written for it.
const PINNED_IMAGE: &str = "otel/opentelemetry-collector-contrib:0.147.0";

/// The components of [`PINNED_IMAGE`] that these configurations use, as
/// (section, component type, Go module). Where the list comes from:
/// - every module is in the image's build manifest,
///   `distributions/otelcol-contrib/manifest.yaml` at tag v0.147.0 of
///   open-telemetry/opentelemetry-collector-releases (242 modules; the
///   image's Dockerfile copies the binary built from it);
/// - each type is the `type:` of the module's `metadata.yaml`: the
///   `go.opentelemetry.io/collector` modules at tag v0.147.0 of
///   open-telemetry/opentelemetry-collector, the contrib ones in
///   open-telemetry/opentelemetry-collector-contrib (`loadbalancing` became
///   `load_balancing` only in contrib PR #48533, merged 2026-05-19, after
///   0.147.0 was released on 2026-03-02).
///
/// A component missing here may still be in the image: look it up in that
/// manifest and its `metadata.yaml`, and add it with its type.
const PINNED_COMPONENTS: &[(&str, &str, &str)] = &[
    ("receivers", "otlp", "go.opentelemetry.io/collector/receiver/otlpreceiver"),
    ("processors", "batch", "go.opentelemetry.io/collector/processor/batchprocessor"),
    ("processors", "memory_limiter", "go.opentelemetry.io/collector/processor/memorylimiterprocessor"),
    ("processors", "tail_sampling", "github.com/open-telemetry/opentelemetry-collector-contrib/processor/tailsamplingprocessor"),
    ("exporters", "debug", "go.opentelemetry.io/collector/exporter/debugexporter"),
    ("exporters", "otlp_grpc", "go.opentelemetry.io/collector/exporter/otlpexporter"),
    ("exporters", "otlp_http", "go.opentelemetry.io/collector/exporter/otlphttpexporter"),
    ("exporters", "prometheusremotewrite", "github.com/open-telemetry/opentelemetry-collector-contrib/exporter/prometheusremotewriteexporter"),
    ("exporters", "opensearch", "github.com/open-telemetry/opentelemetry-collector-contrib/exporter/opensearchexporter"),
    ("exporters", "awss3", "github.com/open-telemetry/opentelemetry-collector-contrib/exporter/awss3exporter"),
    ("exporters", "loadbalancing", "github.com/open-telemetry/opentelemetry-collector-contrib/exporter/loadbalancingexporter"),
    ("extensions", "health_check", "github.com/open-telemetry/opentelemetry-collector-contrib/extension/healthcheckextension"),
];

/// Names [`PINNED_IMAGE`] still accepts as deprecated aliases (the
/// `WithDeprecatedTypeAlias` of the two OTLP exporters' factories at
/// v0.147.0), with the name to use instead.
const DEPRECATED_NAMES: &[(&str, &str, &str)] = &[
    ("exporters", "otlp", "otlp_grpc"),
    ("exporters", "otlphttp", "otlp_http"),
];

/// Components of `doc` that the pinned image does not have under that name.
fn check_components(name: &str, doc: &Yaml) -> Vec<String> {
    let mut errors = Vec::new();
    for section in [
        "receivers",
        "processors",
        "exporters",
        "connectors",
        "extensions",
    ] {
        for id in section_keys(doc, section).unwrap_or_default() {
            let t = component_type(&id);
            let known = PINNED_COMPONENTS
                .iter()
                .any(|(s, ty, _)| *s == section && *ty == t);
            if known {
                continue;
            }
            let message = match DEPRECATED_NAMES
                .iter()
                .find(|(s, old, _)| *s == section && *old == t)
            {
                Some((_, _, new)) => format!("deprecated name {t}: use {new}"),
                None => format!(
                    "no {t} among the components of {PINNED_IMAGE} listed in tests/collector_config.rs (check the release's manifest and add it)"
                ),
            };
            errors.push(format!("{name}: {section}.{id}: {message}"));
        }
    }
    errors
}

#[test]
fn the_component_list_is_for_the_pinned_image() {
    let compose = load_yaml(&compose_path());
    let images: Vec<String> = compose_services(&compose)
        .values()
        .filter_map(|s| s["image"].as_str())
        .filter(|i| i.contains("opentelemetry-collector"))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        images,
        [PINNED_IMAGE],
        "docker-compose.yml pins another collector: update PINNED_IMAGE and PINNED_COMPONENTS from that release's manifest"
    );
    let version = PINNED_IMAGE.rsplit(':').next().unwrap_or_default();
    for config in ["otelcol-agent.yaml", "otelcol-compose.yaml"] {
        let text = fs::read_to_string(config_dir().join(config)).unwrap();
        assert!(
            text.contains(PINNED_IMAGE),
            "{config} does not say it is written for {PINNED_IMAGE}"
        );
    }
    assert!(collector_readme().contains(&format!("**{version}**")));
}

fn collector_readme() -> String {
    fs::read_to_string(config_dir().join("README.md")).expect("collector-config/README.md")
}

#[test]
fn every_component_is_in_the_pinned_image() {
    let configs = collector_configs();
    let errors: Vec<String> = configs
        .iter()
        .flat_map(|(name, doc)| check_components(name, doc))
        .collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    // The check finds what it is for.
    let doc = YamlLoader::load_from_str(
        "receivers: {otlp: {}}\nexporters: {otlp: {}, otlp_http/x: {}, elasticsearch: {}}\nextensions: {healthcheck: {}}",
    )
    .unwrap()
    .remove(0);
    let errors = check_components("sample", &doc);
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors
            .iter()
            .any(|e| e.ends_with("exporters.otlp: deprecated name otlp: use otlp_grpc")),
        "{errors:?}"
    );
}

#[test]
fn agent_exports_to_every_destination() {
    let doc = load_yaml(&config_dir().join("otelcol-agent.yaml"));
    let exporters = section_keys(&doc, "exporters").unwrap();
    let types: BTreeSet<&str> = exporters.iter().map(|e| component_type(e)).collect();
    for t in [
        "otlp_grpc",
        "otlp_http",
        "prometheusremotewrite",
        "opensearch",
        "awss3",
    ] {
        assert!(
            types.contains(t),
            "otelcol-agent.yaml has no {t} exporter ({exporters:?})"
        );
    }
    for (id, needle) in [
        ("otlp_grpc/jaeger", "${env:JAEGER_ENDPOINT"),
        ("otlp_grpc/tempo", "${env:TEMPO_ENDPOINT"),
        ("otlp_http/loki", "/otlp}"),
    ] {
        let endpoint = doc["exporters"][id]["endpoint"]
            .as_str()
            .unwrap_or_default();
        assert!(
            endpoint.contains(needle),
            "{id} endpoint {endpoint:?} lacks {needle:?}"
        );
    }
    let lb = load_yaml(&config_dir().join("otelcol-gateway-loadbalancing.yaml"));
    assert_eq!(
        lb["exporters"]["loadbalancing"]["routing_key"].as_str(),
        Some("traceID"),
        "the front tier routes spans and logs by trace id"
    );
}

// ---------------------------------------------------------------------------
// docker-compose

fn compose_services(compose: &Yaml) -> Hash {
    match &compose["services"] {
        Yaml::Hash(h) if !h.is_empty() => h.clone(),
        other => panic!("docker-compose.yml: no services ({other:?})"),
    }
}

/// (source, target) of a volume entry; `None` for an anonymous volume.
fn volume_mount(v: &Yaml) -> Result<Option<(String, String)>, String> {
    match v {
        Yaml::String(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            match parts.as_slice() {
                [_target] => Ok(None),
                [source, target] | [source, target, _] => {
                    Ok(Some((source.to_string(), target.to_string())))
                }
                _ => Err(format!("volume {s:?}: cannot parse")),
            }
        }
        Yaml::Hash(_) => {
            let target = v["target"].as_str().ok_or("volume without target")?;
            Ok(v["source"]
                .as_str()
                .map(|s| (s.to_owned(), target.to_owned())))
        }
        other => Err(format!("volume {other:?}: cannot parse")),
    }
}

fn is_bind_source(source: &str) -> bool {
    source.starts_with('.') || source.starts_with('/') || source.starts_with('~')
}

/// Mount target -> host path, for a service's bind mounts.
fn bind_mounts(service: &Yaml) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    if let Some(volumes) = service["volumes"].as_vec() {
        for v in volumes {
            if let Ok(Some((source, target))) = volume_mount(v) {
                if is_bind_source(&source) {
                    out.insert(target, config_dir().join(source));
                }
            }
        }
    }
    out
}

/// The host IP a `ports:` entry binds, or why it cannot tell.
fn published_host_ip(p: &Yaml) -> Result<String, String> {
    match p {
        Yaml::String(s) => {
            let spec = s.split('/').next().unwrap_or(s);
            if let Some(rest) = spec.strip_prefix('[') {
                let end = rest.find(']').ok_or(format!("port {s:?}: unclosed ["))?;
                return Ok(rest[..end].to_owned());
            }
            let parts: Vec<&str> = spec.split(':').collect();
            match parts.as_slice() {
                [ip, _host, _container] => Ok(ip.to_string()),
                _ => Err(format!("port {s:?} binds every interface (no host IP)")),
            }
        }
        Yaml::Hash(_) => p["host_ip"]
            .as_str()
            .map(str::to_owned)
            .ok_or(format!("port {p:?} has no host_ip (binds every interface)")),
        other => Err(format!("port {other:?} binds every interface (no host IP)")),
    }
}

#[test]
fn compose_mounts_exist_and_ports_bind_loopback() {
    let compose = load_yaml(&compose_path());
    let named_volumes = section_keys(&compose, "volumes").unwrap();
    let mut errors = Vec::new();
    let mut published = 0;
    let mut mounted = 0;
    for (name, service) in &compose_services(&compose) {
        let name = name.as_str().unwrap_or("?");
        if let Some(volumes) = service["volumes"].as_vec() {
            for v in volumes {
                match volume_mount(v) {
                    Ok(Some((source, _))) if is_bind_source(&source) => {
                        mounted += 1;
                        let path = config_dir().join(&source);
                        if !path.exists() {
                            errors.push(format!(
                                "{name}: mounted {source} does not exist ({})",
                                rel(&path)
                            ));
                        }
                    }
                    Ok(Some((source, _))) => {
                        if !named_volumes.contains(&source) {
                            errors.push(format!("{name}: volume {source} is not declared"));
                        }
                    }
                    Ok(None) => {}
                    Err(e) => errors.push(format!("{name}: {e}")),
                }
            }
        }
        if let Some(ports) = service["ports"].as_vec() {
            for p in ports {
                published += 1;
                match published_host_ip(p) {
                    Ok(ip) if ip == "127.0.0.1" => {}
                    Ok(ip) => errors.push(format!("{name}: port {p:?} binds {ip}, not 127.0.0.1")),
                    Err(e) => errors.push(format!("{name}: {e}")),
                }
            }
        }
        if service["network_mode"].as_str() == Some("host") {
            errors.push(format!("{name}: network_mode host publishes every port"));
        }
    }
    assert!(
        errors.is_empty(),
        "docker-compose.yml problems:\n{}",
        errors.join("\n")
    );
    assert!(published >= 6, "only {published} published ports");
    assert!(mounted >= 5, "only {mounted} bind mounts");
}

/// Sets `path` (split on `::`, as the collector's `yaml:` provider does) in
/// `doc`; mappings merge, anything else (lists included) is replaced.
fn merge_at(doc: &mut Yaml, path: &[&str], value: Yaml) {
    let Some((first, rest)) = path.split_first() else {
        match (doc, value) {
            (Yaml::Hash(into), Yaml::Hash(from)) => {
                for (k, v) in from {
                    let key = k.as_str().unwrap_or_default().to_owned();
                    merge_at_key(into, &key, &[], v);
                }
            }
            (slot, value) => *slot = value,
        }
        return;
    };
    if !matches!(doc, Yaml::Hash(_)) {
        *doc = Yaml::Hash(Hash::new());
    }
    if let Yaml::Hash(h) = doc {
        merge_at_key(h, first, rest, value);
    }
}

fn merge_at_key(h: &mut Hash, key: &str, rest: &[&str], value: Yaml) {
    let k = Yaml::String(key.to_owned());
    if !h.contains_key(&k) {
        h.insert(k.clone(), Yaml::Null);
    }
    let slot = h.get_mut(&k).expect("just inserted");
    merge_at(slot, rest, value);
}

/// `${env:NAME:-default}` -> `default`; other strings unchanged.
fn env_default(s: &str) -> Option<String> {
    match s.strip_prefix("${env:").and_then(|r| r.strip_suffix('}')) {
        Some(inner) => inner.split_once(":-").map(|(_, d)| d.to_owned()),
        None => Some(s.to_owned()),
    }
}

/// `http://loki:3100/otlp` or `jaeger:4317` -> the host name.
fn endpoint_host(endpoint: &str) -> String {
    let no_scheme = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let authority = no_scheme.split('/').next().unwrap_or(no_scheme);
    authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .to_owned()
}

#[test]
fn compose_runs_the_collector_with_a_consistent_config() {
    let compose = load_yaml(&compose_path());
    let services = compose_services(&compose);
    let service_names: BTreeSet<String> = services
        .keys()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect();
    let mut checked = 0;
    let mut errors = Vec::new();
    for (name, service) in &services {
        let name = name.as_str().unwrap_or("?");
        let Some(command) = service["command"].as_vec() else {
            continue;
        };
        let args: Vec<&str> = command.iter().filter_map(|a| a.as_str()).collect();
        let configs: Vec<&str> = args
            .iter()
            .filter_map(|a| a.strip_prefix("--config="))
            .collect();
        if configs.is_empty() {
            continue;
        }
        let mounts = bind_mounts(service);
        let mut effective = Yaml::Hash(Hash::new());
        for c in configs {
            if let Some(text) = c.strip_prefix("yaml:") {
                let mut docs = YamlLoader::load_from_str(text)
                    .unwrap_or_else(|e| panic!("{name}: --config=yaml: {e}"));
                let Some(Yaml::Hash(h)) = docs.pop() else {
                    panic!("{name}: --config={c}: not a mapping");
                };
                for (k, v) in h {
                    let key = k.as_str().expect("string key").to_owned();
                    let path: Vec<&str> = key.split("::").collect();
                    merge_at(&mut effective, &path, v);
                }
            } else {
                let file = c.strip_prefix("file:").unwrap_or(c);
                let host = mounts
                    .get(file)
                    .unwrap_or_else(|| panic!("{name}: --config={c} is not a mounted file"));
                merge_at(&mut effective, &[], load_yaml(host));
            }
        }
        checked += 1;
        errors.extend(check_collector_config(
            &format!("docker-compose {name} (effective config)"),
            &effective,
        ));
        // Every exporter the stack uses points, by default, at a service of
        // the stack.
        let pipelines = effective["service"]["pipelines"]
            .as_hash()
            .cloned()
            .unwrap_or_default();
        for pipeline in pipelines.values() {
            for id in id_list(&pipeline["exporters"], "exporters").unwrap_or_default() {
                let exporter = &effective["exporters"][id.as_str()];
                let endpoint = exporter["endpoint"]
                    .as_str()
                    .or_else(|| exporter["http"]["endpoint"].as_str());
                let Some(endpoint) = endpoint else {
                    errors.push(format!("{name}: exporter {id} has no endpoint"));
                    continue;
                };
                let Some(resolved) = env_default(endpoint) else {
                    errors.push(format!(
                        "{name}: exporter {id} endpoint {endpoint} has no default"
                    ));
                    continue;
                };
                let host = endpoint_host(&resolved);
                if !service_names.contains(&host) {
                    errors.push(format!(
                        "{name}: exporter {id} sends to {host} ({resolved}), not a compose service"
                    ));
                }
            }
        }
    }
    assert!(checked >= 1, "no service runs a collector with --config=");
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

// ---------------------------------------------------------------------------
// Grafana

/// uid -> (type, url) of every provisioned data source.
fn provisioned_datasources() -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    for path in datasource_files() {
        let doc = load_yaml(&path);
        for ds in doc["datasources"].as_vec().into_iter().flatten() {
            let uid = ds["uid"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: data source without uid: {ds:?}", rel(&path)));
            let typ = ds["type"].as_str().unwrap_or_default().to_owned();
            let url = ds["url"].as_str().unwrap_or_default().to_owned();
            assert!(
                out.insert(uid.to_owned(), (typ, url)).is_none(),
                "{}: duplicate data source uid {uid}",
                rel(&path)
            );
        }
    }
    out
}

fn collect_yaml_key<'a>(y: &'a Yaml, key: &str, out: &mut Vec<&'a Yaml>) {
    match y {
        Yaml::Hash(h) => {
            for (k, v) in h {
                if k.as_str() == Some(key) {
                    out.push(v);
                }
                collect_yaml_key(v, key, out);
            }
        }
        Yaml::Array(items) => items.iter().for_each(|i| collect_yaml_key(i, key, out)),
        _ => {}
    }
}

fn collect_json_key<'a>(j: &'a Json, key: &str, out: &mut Vec<&'a Json>) {
    match j {
        Json::Object(m) => {
            for (k, v) in m {
                if k == key {
                    out.push(v);
                }
                collect_json_key(v, key, out);
            }
        }
        Json::Array(items) => items.iter().for_each(|i| collect_json_key(i, key, out)),
        _ => {}
    }
}

#[test]
fn grafana_references_provisioned_datasources() {
    let datasources = provisioned_datasources();
    for t in ["prometheus", "tempo", "loki", "jaeger"] {
        assert!(
            datasources.values().any(|(typ, _)| typ == t),
            "no {t} data source provisioned"
        );
    }
    let compose = load_yaml(&compose_path());
    let services = compose_services(&compose);
    let mut errors = Vec::new();

    // Data sources point at services of the stack, and their correlations
    // (trace -> logs, logs -> trace, trace -> metrics) at provisioned uids.
    for (uid, (_, url)) in &datasources {
        let host = endpoint_host(url);
        if !services.contains_key(&Yaml::String(host.clone())) {
            errors.push(format!(
                "data source {uid}: url {url} is not a compose service"
            ));
        }
    }
    let mut links = 0;
    for path in datasource_files() {
        let doc = load_yaml(&path);
        let mut refs = Vec::new();
        collect_yaml_key(&doc, "datasourceUid", &mut refs);
        for r in refs {
            links += 1;
            match r.as_str() {
                Some(uid) if datasources.contains_key(uid) => {}
                _ => errors.push(format!(
                    "{}: datasourceUid {r:?} is not provisioned",
                    rel(&path)
                )),
            }
        }
    }
    assert!(
        links >= 4,
        "expected trace <-> logs and trace -> metrics links, found {links}"
    );

    // Every data source reference of the dashboards.
    let mut refs_checked = 0;
    for path in dashboard_paths() {
        let dashboard = load_json(&path);
        let mut refs = Vec::new();
        collect_json_key(&dashboard, "datasource", &mut refs);
        for r in refs {
            refs_checked += 1;
            match r.get("uid").and_then(Json::as_str) {
                Some(uid) if datasources.contains_key(uid) => {}
                _ => errors.push(format!(
                    "{}: data source {r} is not a provisioned uid",
                    rel(&path)
                )),
            }
        }
    }
    assert!(refs_checked > 0, "the dashboards reference no data source");

    // The dashboard provider reads a directory compose mounts from
    // grafana/dashboards, and compose mounts the provisioning directory.
    let grafana = services
        .iter()
        .find(|(_, s)| {
            s["image"]
                .as_str()
                .is_some_and(|i| i.contains("grafana/grafana"))
        })
        .map(|(_, s)| s)
        .expect("a grafana service in docker-compose.yml");
    let mounts = bind_mounts(grafana);
    match mounts.get("/etc/grafana/provisioning") {
        Some(dir) if dir.join("datasources").is_dir() && dir.join("dashboards").is_dir() => {}
        other => errors.push(format!(
            "grafana: /etc/grafana/provisioning mounts {other:?}"
        )),
    }
    for path in files_under(&config_dir().join("grafana/provisioning/dashboards")) {
        let doc = load_yaml(&path);
        for provider in doc["providers"].as_vec().into_iter().flatten() {
            let dir = provider["options"]["path"].as_str().unwrap_or_default();
            match mounts.get(dir) {
                Some(host) if files_under(host).iter().any(|f| extension(f) == "json") => {}
                other => errors.push(format!(
                    "{}: provider path {dir} is mounted from {other:?}, which holds no dashboard",
                    rel(&path)
                )),
            }
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

// ---------------------------------------------------------------------------
// OTLP -> Prometheus metric names

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Instrument {
    /// Monotonic sum.
    Counter,
    Gauge,
    Histogram,
}

/// OTLP unit -> Prometheus unit word, as in prometheus/otlptranslator
/// (`unitMap`) and collector-contrib pkg/translator/prometheus.
fn unit_word(unit: &str) -> &str {
    match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "1" => "",
        "%" => "percent",
        other => other,
    }
}

/// The "per" part of `X/Y` units (`perUnitMap`).
fn per_unit_word(unit: &str) -> &str {
    match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        other => other,
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == ':'
}

/// `cleanUpUnit`: invalid characters to `_`, runs of `_` collapsed, no
/// leading `_`.
fn clean_unit(unit: &str) -> String {
    let mut out = String::new();
    for c in unit.chars() {
        let c = if is_name_char(c) { c } else { '_' };
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    out.trim_start_matches('_').to_owned()
}

/// The Prometheus name of an OTLP metric under the default translation
/// (collector `prometheusremotewrite` with suffixes, Prometheus' OTLP
/// receiver with `UnderscoreEscapingWithSuffixes`), following
/// `normalizeName` in prometheus/otlptranslator:
///
/// 1. split the name into tokens on every character outside `[a-zA-Z0-9:]`
///    (dots and underscores alike), dropping empty tokens;
/// 2. unit: split at the first `/`; a part in `{}` (an annotation such as
///    `{invocation}`) adds nothing; otherwise the main part maps through the
///    unit table (`s` -> `seconds`, `By` -> `bytes`, `1` -> nothing) and the
///    per part becomes `per_<word>` (`/s` -> `per_second`); each is appended
///    unless already one of the tokens;
/// 3. monotonic sums (counters) get `total` (moved last if present);
/// 4. gauges with unit `1` get `ratio`;
/// 5. tokens joined with `_`; a leading digit gets a `_` prefix.
///
/// Histograms are then stored as `<name>_bucket`, `<name>_sum`, `<name>_count`.
fn prometheus_name(name: &str, unit: &str, instrument: Instrument) -> String {
    let mut tokens: Vec<String> = name
        .split(|c: char| !is_name_char(c))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();

    let mut parts = unit.splitn(2, '/');
    let main = parts.next().unwrap_or("").trim();
    let per = parts.next().unwrap_or("").trim();
    let annotation = |u: &str| u.contains('{') || u.contains('}');
    let main_word = if main.is_empty() || annotation(main) {
        String::new()
    } else {
        clean_unit(unit_word(main))
    };
    let per_word = if per.is_empty() || annotation(per) {
        String::new()
    } else {
        clean_unit(&format!("per_{}", per_unit_word(per)))
    };
    let mut main_word = if tokens.contains(&main_word) {
        String::new()
    } else {
        main_word
    };
    let per_word = if per_word == "per_" {
        String::new()
    } else {
        let p = per_word.trim_end_matches('_').to_owned();
        if tokens.contains(&p) {
            String::new()
        } else {
            p
        }
    };
    if !per_word.is_empty() {
        main_word = main_word.trim_end_matches('_').to_owned();
    }
    if !main_word.is_empty() {
        tokens.push(main_word);
    }
    if !per_word.is_empty() {
        tokens.push(per_word);
    }
    if instrument == Instrument::Counter {
        tokens.retain(|t| t != "total");
        tokens.push("total".into());
    }
    if unit == "1" && instrument == Instrument::Gauge {
        tokens.retain(|t| t != "ratio");
        tokens.push("ratio".into());
    }
    let joined = tokens.join("_");
    if joined.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{joined}")
    } else {
        joined
    }
}

/// The series names Prometheus stores for one OTLP metric.
fn prometheus_series(name: &str, unit: &str, instrument: Instrument) -> Vec<String> {
    let base = prometheus_name(name, unit, instrument);
    match instrument {
        Instrument::Histogram => ["bucket", "sum", "count"]
            .iter()
            .map(|s| format!("{base}_{s}"))
            .collect(),
        _ => vec![base],
    }
}

/// Examples from prometheus/otlptranslator's documentation and tests.
#[test]
fn translation_follows_the_otlptranslator_rules() {
    use Instrument::*;
    let cases = [
        (
            "http.server.request.duration",
            "s",
            Histogram,
            "http_server_request_duration_seconds",
        ),
        (
            "http.server.duration",
            "s",
            Histogram,
            "http_server_duration_seconds",
        ),
        ("requests.count", "1", Counter, "requests_count_total"),
        ("memory.usage", "By", Gauge, "memory_usage_bytes"),
        (
            "system.cpu.utilization",
            "1",
            Gauge,
            "system_cpu_utilization_ratio",
        ),
        ("network.io", "By/s", Gauge, "network_io_bytes_per_second"),
        (
            "messages.received",
            "{message}",
            Counter,
            "messages_received_total",
        ),
        ("io.bytes", "By", Counter, "io_bytes_total"),
        ("total.requests", "", Counter, "requests_total"),
        ("2xx.responses", "", Gauge, "_2xx_responses"),
    ];
    for (name, unit, instrument, expected) in cases {
        assert_eq!(
            prometheus_name(name, unit, instrument),
            expected,
            "{name} [{unit}]"
        );
    }
}

/// `| metric | instrument | unit | ...` rows of MAPPING.md's "## Metrics".
fn mapping_instruments() -> BTreeMap<String, (Instrument, String)> {
    let mapping = include_str!("../proto-mapping/MAPPING.md");
    let start = mapping
        .find("\n## Metrics")
        .expect("MAPPING.md has a ## Metrics section");
    let section = &mapping[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    let mut out = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`').to_owned();
        let instrument = match cells[2] {
            i if i.starts_with("histogram") => Instrument::Histogram,
            i if i.starts_with("counter") => Instrument::Counter,
            i if i.starts_with("gauge") => Instrument::Gauge,
            other => panic!("MAPPING.md: unknown instrument {other:?} for {name}"),
        };
        out.insert(name, (instrument, cells[3].trim_matches('`').to_owned()));
    }
    out
}

/// The bridge's own metrics (src/export/self_metrics.rs).
const BRIDGE_METRICS: [(&str, &str, Instrument); 3] = [
    ("lambda_otel_bridge.dropped", "{item}", Instrument::Counter),
    (
        "lambda_otel_bridge.export.failures",
        "{request}",
        Instrument::Counter,
    ),
    ("lambda_otel_bridge.outbox.bytes", "By", Instrument::Gauge),
];

/// Prometheus series name -> OTLP metric name, for everything the bridge emits.
fn emitted_series() -> BTreeMap<String, String> {
    let instruments = mapping_instruments();
    let mut out = BTreeMap::new();
    for d in DEFINITIONS.iter() {
        let (instrument, table_unit) = instruments
            .get(d.name)
            .unwrap_or_else(|| panic!("{} is not in MAPPING.md's metrics table", d.name));
        assert_eq!(
            table_unit, d.unit,
            "{}: unit in MAPPING.md vs DEFINITIONS",
            d.name
        );
        for s in prometheus_series(d.name, d.unit, *instrument) {
            out.insert(s, d.name.to_owned());
        }
    }
    let export_src = include_str!("../src/export/self_metrics.rs");
    for (name, unit, instrument) in BRIDGE_METRICS {
        assert!(
            export_src.contains(&format!("\"{name}\""))
                && export_src.contains(&format!("\"{unit}\"")),
            "src/export/self_metrics.rs no longer emits {name} [{unit}]"
        );
        for s in prometheus_series(name, unit, instrument) {
            out.insert(s, name.to_owned());
        }
    }
    out
}

const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

const FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "deg",
    "delta",
    "deriv",
    "double_exponential_smoothing",
    "end",
    "exp",
    "floor",
    "histogram_avg",
    "histogram_count",
    "histogram_fraction",
    "histogram_quantile",
    "histogram_stddev",
    "histogram_stdvar",
    "histogram_sum",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "info",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "mad_over_time",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_by_label",
    "sort_by_label_desc",
    "sort_desc",
    "sqrt",
    "start",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "vector",
    "year",
];

/// Label lists follow these (`sum by (le) (...)`).
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan",
];

/// Index just past the group opened at `chars[i]`, skipping strings inside.
fn skip_group(chars: &[char], i: usize, open: char, close: char) -> Result<usize, String> {
    let mut depth = 0;
    let mut j = i;
    while j < chars.len() {
        match chars[j] {
            '"' | '\'' | '`' => {
                j = skip_string(chars, j)?;
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return Ok(j + 1);
                }
            }
            _ => {}
        }
        j += 1;
    }
    Err(format!("unbalanced {open}{close}"))
}

fn skip_string(chars: &[char], i: usize) -> Result<usize, String> {
    let quote = chars[i];
    let mut j = i + 1;
    while j < chars.len() {
        if chars[j] == '\\' && quote != '`' {
            j += 2;
            continue;
        }
        if chars[j] == quote {
            return Ok(j + 1);
        }
        j += 1;
    }
    Err("unterminated string".into())
}

/// The metric names a PromQL expression selects: identifiers that are not
/// functions, aggregations, keywords, label names (inside `{}` or after
/// `by`/`on`/...), durations (inside `[]`) or Grafana variables (`$x`).
/// An identifier followed by `(` must be a known function.
fn promql_metric_names(expr: &str) -> Result<Vec<String>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            i = skip_string(&chars, i)?;
        } else if c == '{' {
            i = skip_group(&chars, i, '{', '}')?;
        } else if c == '[' {
            i = skip_group(&chars, i, '[', ']')?;
        } else if c == '$' {
            i += 1;
            if chars.get(i) == Some(&'{') {
                i = skip_group(&chars, i, '{', '}')?;
            } else {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // Numbers and durations (0.95, 1e3, 5m).
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '.' | '_'))
            {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':'))
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let followed_by_paren = chars.get(next) == Some(&'(');
            let lower = word.to_ascii_lowercase();
            if GROUPING.contains(&lower.as_str()) {
                if followed_by_paren {
                    i = skip_group(&chars, next, '(', ')')?;
                }
            } else if KEYWORDS.contains(&lower.as_str()) || AGGREGATIONS.contains(&word.as_str()) {
                // Aggregations may be followed by `by (...)` before their argument.
            } else if followed_by_paren {
                if !FUNCTIONS.contains(&word.as_str()) {
                    return Err(format!("unknown PromQL function {word}()"));
                }
            } else {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    Ok(names)
}

/// Metric names of a Grafana variable query: `label_values(<selector>, <label>)`
/// selects nothing with its label argument.
fn variable_query_metric_names(query: &str) -> Result<Vec<String>, String> {
    let q = query.trim();
    match q
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
    {
        Some(args) => match args.rsplit_once(',') {
            Some((selector, _label)) => promql_metric_names(selector),
            None => Ok(Vec::new()),
        },
        None => promql_metric_names(q),
    }
}

#[test]
fn promql_metric_name_extraction() {
    let names = promql_metric_names(
        r#"histogram_quantile(0.95, sum by (le, job) (rate(a_bucket{job=~"$job", x="y{z}"}[$__rate_interval]))) / on (job) group_left max by (job) (b offset 5m) + ignoring(x) c:rec 1e3 * ${v} - count_values("l", d[5m:1m])"#,
    )
    .unwrap();
    assert_eq!(names, ["a_bucket", "b", "c:rec", "d"]);
    assert!(
        promql_metric_names("rte(x[5m])").is_err(),
        "a misspelt function is an error"
    );
    assert_eq!(
        variable_query_metric_names("label_values(faas_x_total{a=\"b\"}, job)").unwrap(),
        ["faas_x_total"]
    );
}

/// Every PromQL expression Grafana will run: dashboard targets and variables,
/// and the trace -> metrics queries of the data sources.
fn promql_expressions() -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    for path in dashboard_paths() {
        let dashboard = load_json(&path);
        let mut exprs = Vec::new();
        collect_json_key(&dashboard, "expr", &mut exprs);
        for e in exprs {
            out.push((
                rel(&path),
                e.as_str().expect("expr is a string").to_owned(),
                false,
            ));
        }
        for var in dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if var["type"] != "query" {
                continue;
            }
            let query = var["query"]["query"]
                .as_str()
                .or_else(|| var["query"].as_str());
            if let Some(q) = query {
                out.push((rel(&path), q.to_owned(), true));
            }
        }
    }
    for path in datasource_files() {
        let doc = load_yaml(&path);
        let mut blocks = Vec::new();
        collect_yaml_key(&doc, "tracesToMetrics", &mut blocks);
        for block in blocks {
            for q in block["queries"].as_vec().into_iter().flatten() {
                if let Some(query) = q["query"].as_str() {
                    out.push((rel(&path), query.to_owned(), false));
                }
            }
        }
    }
    out
}

#[test]
fn dashboard_uses_only_metrics_the_bridge_emits() {
    let emitted = emitted_series();
    let exprs = promql_expressions();
    assert!(
        exprs.len() >= 10,
        "only {} PromQL expressions found",
        exprs.len()
    );
    let mut errors = Vec::new();
    let mut used_otlp = BTreeSet::new();
    for (file, expr, is_variable) in &exprs {
        let names = if *is_variable {
            variable_query_metric_names(expr)
        } else {
            promql_metric_names(expr)
        };
        match names {
            Ok(names) if names.is_empty() => {
                errors.push(format!("{file}: {expr:?} selects no metric"));
            }
            Ok(names) => {
                for n in names {
                    match emitted.get(&n) {
                        Some(otlp) => {
                            used_otlp.insert(otlp.clone());
                        }
                        None => errors.push(format!(
                            "{file}: {n} (in {expr:?}) is not a metric the bridge emits after translation"
                        )),
                    }
                }
            }
            Err(e) => errors.push(format!("{file}: {expr:?}: {e}")),
        }
    }
    assert!(
        errors.is_empty(),
        "{}\nemitted series: {:?}",
        errors.join("\n"),
        emitted.keys().collect::<Vec<_>>()
    );
    for required in [
        "faas.invoke_duration",
        "faas.errors",
        "faas.coldstarts",
        "faas.mem_usage",
        "lambda_otel_bridge.dropped",
    ] {
        assert!(
            used_otlp.contains(required),
            "the dashboard does not show {required} (shows {used_otlp:?})"
        );
    }
}

#[test]
fn readme_lists_every_translated_name() {
    let readme =
        fs::read_to_string(config_dir().join("README.md")).expect("collector-config/README.md");
    let instruments = mapping_instruments();
    let mut missing = Vec::new();
    let all = DEFINITIONS
        .iter()
        .map(|d| (d.name, d.unit, instruments[d.name].0))
        .chain(BRIDGE_METRICS);
    for (name, unit, instrument) in all {
        let row = format!("| `{name}` |");
        let prom = format!("`{}`", prometheus_name(name, unit, instrument));
        let listed = readme
            .lines()
            .any(|l| l.starts_with(&row) && l.contains(&prom));
        if !listed {
            missing.push(format!("{name} -> {prom}"));
        }
    }
    assert!(
        missing.is_empty(),
        "collector-config/README.md's metric table lacks (as `| `otlp` | ... | `prometheus` |` rows):\n{}",
        missing.join("\n")
    );
}
