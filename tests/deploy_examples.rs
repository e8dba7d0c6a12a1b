//! Static checks of the deploy examples, `examples/deploy/template.yaml`
//! (AWS SAM) and `examples/deploy/main.tf` (Terraform): nothing is deployed,
//! the files are parsed and checked for what would otherwise only fail in
//! AWS.
//!
//! - the function's handler names a file its code really has (SAM writes
//!   `InlineCode` to a file named `index`; Terraform's `archive_file` holds
//!   the files it lists) and a function that file defines;
//! - the layer is the zip `scripts/build-layer.sh` builds for the function's
//!   architecture, which holds the binary at `extensions/lambda-otel-bridge`;
//! - every environment variable the function gets is a bridge setting
//!   declared in `src/options/table.rs`, and the whole environment (with
//!   parameters and variables at their default or documented example value)
//!   is a configuration the bridge accepts;
//! - a function that exports straight to CloudWatch's OTLP endpoints (its
//!   configuration signs a signal with SigV4) has the IAM permission each
//!   signing name needs in its file, and its logs carry the log group and
//!   stream headers CloudWatch Logs requires. Interpolations (`${AWS::Region}`
//!   in SAM's `!Sub`, `${var.x}` and `${resource.label.attr}` in Terraform)
//!   are resolved to the check's region, samples and attributes first.
//!
//! Terraform has no parser among the dependencies; [`hcl`] reads the subset
//! of HCL these files use (blocks, attributes, strings, heredocs, lists and
//! maps) and fails loudly on anything else.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use lambda_otel_bridge::settings_table::ALL;
use lambda_otel_bridge::Config;
use yaml_rust2::{Yaml, YamlLoader};

fn repo_file(rel: &str) -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
    (path, text)
}

// ---------------------------------------------------------------------------
// What both examples must agree with

/// `dist/lambda-otel-bridge-<arch>.zip` and the path of the binary in it,
/// read from scripts/build-layer.sh.
struct Layer {
    zip_prefix: String,
    entry: String,
}

fn layer_from_build_script() -> Layer {
    let (_, script) = repo_file("scripts/build-layer.sh");
    let zip = script
        .lines()
        .find_map(|l| l.trim().strip_prefix("zip=\""))
        .and_then(|rest| rest.strip_suffix("$arch.zip\""))
        .expect("scripts/build-layer.sh sets zip=\"dist/...-$arch.zip\"");
    let entry = script
        .split("ZipInfo(\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("scripts/build-layer.sh names the zip entry in ZipInfo(\"...\")");
    Layer {
        zip_prefix: zip.to_string(),
        entry: entry.to_string(),
    }
}

#[test]
fn the_layer_holds_the_binary_where_lambda_starts_extensions() {
    let layer = layer_from_build_script();
    // Lambda unpacks layers under /opt and starts every executable in
    // /opt/extensions; the extension registers under its file name.
    assert_eq!(layer.entry, "extensions/lambda-otel-bridge");
    assert_eq!(layer.zip_prefix, "dist/lambda-otel-bridge-");
}

/// The layer zip a deploy file points at must be the one for `arch`.
fn check_layer_path(file: &str, path: &str, arch: &str, errors: &mut Vec<String>) {
    let layer = layer_from_build_script();
    let expected = format!("{}{arch}.zip", layer.zip_prefix);
    let normalised = path.replace("${path.module}/", "");
    if !normalised.ends_with(&format!("../../{expected}")) {
        errors.push(format!(
            "{file}: layer {path} is not {expected} (from scripts/build-layer.sh {arch}) relative to examples/deploy/"
        ));
    }
}

/// Every variable name the bridge reads.
fn bridge_variables() -> Vec<String> {
    ALL.iter().flat_map(|e| e.variables()).collect()
}

/// The region the checks run the bridge's configuration in.
const REGION: &str = "eu-west-1";

/// Checks the function's environment: known names, accepted as a whole;
/// returns the configuration the bridge makes of it.
fn check_environment(
    file: &str,
    env: &BTreeMap<String, String>,
    errors: &mut Vec<String>,
) -> Option<Config> {
    if env.is_empty() {
        errors.push(format!("{file}: the function sets no environment"));
    }
    let known = bridge_variables();
    for name in env.keys() {
        if !known.contains(name) {
            errors.push(format!(
                "{file}: {name} is not a bridge setting (src/options/table.rs)"
            ));
        }
    }
    let mut lambda: HashMap<String, String> = [
        ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
        ("AWS_LAMBDA_FUNCTION_NAME", "orders-api"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"),
        ("AWS_REGION", REGION),
        ("AWS_ACCESS_KEY_ID", "ASIAEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "example"),
        ("AWS_SESSION_TOKEN", "example"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    lambda.extend(env.clone());
    match Config::from_env(&lambda) {
        Ok(c) => Some(c),
        Err(e) => {
            errors.push(format!("{file}: the bridge refuses this environment: {e}"));
            None
        }
    }
}

/// The IAM permission the deploy examples grant for a signing name: the
/// managed policy AWS names for X-Ray's OTLP endpoint, the actions of the
/// CloudWatch Logs and metrics endpoints.
fn permission_for(service: &str) -> Option<&'static str> {
    match service {
        "xray" => Some("AWSXrayWriteOnlyAccess"),
        "logs" => Some("logs:PutLogEvents"),
        "monitoring" => Some("cloudwatch:PutMetricData"),
        _ => None,
    }
}

/// A function whose exports are signed: its file grants what each signing
/// name needs, and logs to CloudWatch Logs name their group and stream.
/// Returns how many signals are signed.
fn check_direct_export(file: &str, config: &Config, text: &str, errors: &mut Vec<String>) -> usize {
    use lambda_otel_bridge::Signal;
    let mut signed = 0;
    for signal in Signal::ALL {
        let s = config.export.signal(signal);
        let Some(target) = &s.sigv4 else { continue };
        signed += 1;
        if target.region != REGION {
            errors.push(format!(
                "{file}: {signal:?} signed for region {}",
                target.region
            ));
        }
        match permission_for(&target.service) {
            Some(p) if text.contains(p) => {}
            Some(p) => errors.push(format!(
                "{file}: {signal:?} goes to {} but {p} is not granted in the file",
                s.endpoint
            )),
            None => errors.push(format!(
                "{file}: {signal:?} is signed for {}: no permission known here",
                target.service
            )),
        }
        if target.service == "logs" {
            for h in ["x-aws-log-group", "x-aws-log-stream"] {
                if !s.headers.iter().any(|(k, v)| k == h && !v.is_empty()) {
                    errors.push(format!("{file}: logs to CloudWatch Logs without {h}"));
                }
            }
        }
    }
    signed
}

/// Replaces each `${name}` in `value` by what `resolve` says, or records an
/// error for a name it does not know.
fn interpolate(
    file: &str,
    value: &str,
    resolve: impl Fn(&str) -> Option<String>,
    errors: &mut Vec<String>,
) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        let name = &rest[start + 2..start + len];
        match resolve(name) {
            Some(v) => out.push_str(&v),
            None => errors.push(format!("{file}: cannot resolve ${{{name}}} in {value:?}")),
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}

/// The function `handler` (`file.function`) names must exist in `code`.
fn check_handler(
    file: &str,
    handler: &str,
    runtime: &str,
    code_files: &BTreeMap<String, String>,
    errors: &mut Vec<String>,
) {
    let Some((module, function)) = handler.rsplit_once('.') else {
        errors.push(format!("{file}: handler {handler:?} is not file.function"));
        return;
    };
    let (extension, definition) = if runtime.starts_with("python") {
        ("py", format!("def {function}("))
    } else if runtime.starts_with("nodejs") {
        ("js", format!("exports.{function}"))
    } else {
        errors.push(format!(
            "{file}: runtime {runtime}: no handler rule here; add one"
        ));
        return;
    };
    let name = format!("{module}.{extension}");
    match code_files.get(&name) {
        None => errors.push(format!(
            "{file}: handler {handler} needs {name}, the code has {:?}",
            code_files.keys().collect::<Vec<_>>()
        )),
        Some(code) if !code.contains(&definition) => errors.push(format!(
            "{file}: {name} does not define {function} ({definition}...)"
        )),
        Some(_) => {}
    }
}

/// A parameter's or variable's value for the check: its default, else the
/// example its description gives (`e.g. <value>`).
fn sample_value(default: Option<&str>, description: &str) -> Option<String> {
    if let Some(d) = default {
        return Some(d.to_string());
    }
    let (_, rest) = description.split_once("e.g. ")?;
    let value = rest.split_whitespace().next()?;
    Some(value.trim_end_matches([',', ')', '.']).to_string())
}

// ---------------------------------------------------------------------------
// AWS SAM

fn yaml_str(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

#[test]
fn sam_template_handler_layer_and_environment_are_consistent() {
    let file = "examples/deploy/template.yaml";
    let (_, text) = repo_file(file);
    let doc = YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .remove(0);
    let mut errors = Vec::new();

    let parameters = doc["Parameters"].as_hash().cloned().unwrap_or_default();
    let resources = doc["Resources"]
        .as_hash()
        .cloned()
        .expect("the template has Resources");
    let mut functions = 0;
    let mut direct = 0;
    for (name, resource) in &resources {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        functions += 1;
        let name = name.as_str().unwrap_or("?");
        let props = &resource["Properties"];
        let runtime = props["Runtime"].as_str().unwrap_or_default();
        let handler = props["Handler"].as_str().unwrap_or_default();

        // SAM passes InlineCode to CloudFormation's Code.ZipFile, which
        // writes it to a file named `index` (index.py, index.js).
        let mut code_files = BTreeMap::new();
        match props["InlineCode"].as_str() {
            Some(code) => {
                let extension = if runtime.starts_with("python") {
                    "py"
                } else {
                    "js"
                };
                code_files.insert(format!("index.{extension}"), code.to_string());
            }
            None => errors.push(format!(
                "{file}: {name} has no InlineCode (a CodeUri needs a check of its own here)"
            )),
        }
        check_handler(
            &format!("{file} {name}"),
            handler,
            runtime,
            &code_files,
            &mut errors,
        );

        let arch = props["Architectures"][0].as_str().unwrap_or("x86_64");
        let layers = props["Layers"].as_vec().cloned().unwrap_or_default();
        if layers.is_empty() {
            errors.push(format!("{file}: {name} has no layer"));
        }
        for layer in layers {
            // `!Ref OtelBridgeLayer`: the loader drops the tag, the name stays.
            let id = yaml_str(&layer).unwrap_or_default();
            let layer_resource = &resources[&Yaml::String(id.clone())];
            match layer_resource["Properties"]["ContentUri"].as_str() {
                Some(uri) => check_layer_path(file, uri, arch, &mut errors),
                None => errors.push(format!(
                    "{file}: layer {id} is not a resource with a ContentUri"
                )),
            }
            let compatible: Vec<&str> = layer_resource["Properties"]["CompatibleArchitectures"]
                .as_vec()
                .map(|v| v.iter().filter_map(Yaml::as_str).collect())
                .unwrap_or_default();
            if !compatible.contains(&arch) {
                errors.push(format!(
                    "{file}: layer {id} is for {compatible:?}, the function runs on {arch}"
                ));
            }
        }

        let mut env = BTreeMap::new();
        let variables = props["Environment"]["Variables"]
            .as_hash()
            .cloned()
            .unwrap_or_default();
        for (k, v) in &variables {
            let k = k.as_str().unwrap_or("?").to_string();
            let mut value = yaml_str(v).unwrap_or_default();
            // `!Ref Parameter`: the loader keeps the name; take the
            // parameter's default or documented example.
            if let Some(p) = parameters.get(&Yaml::String(value.clone())) {
                assert!(
                    text.contains(&format!("!Ref {value}")),
                    "{file}: {k} is the name of a parameter but no !Ref"
                );
                let description = p["Description"].as_str().unwrap_or_default();
                match sample_value(p["Default"].as_str(), description) {
                    Some(sample) => value = sample,
                    None => errors.push(format!(
                        "{file}: parameter {value} has neither a Default nor an \"e.g.\" example"
                    )),
                }
            }
            // `!Sub "...${AWS::Region}..."`: the loader keeps the string.
            let value = interpolate(
                file,
                &value,
                |n| match n {
                    "AWS::Region" => Some(REGION.to_string()),
                    _ => None,
                },
                &mut errors,
            );
            env.insert(k, value);
        }
        if let Some(config) = check_environment(&format!("{file} {name}"), &env, &mut errors) {
            direct += check_direct_export(&format!("{file} {name}"), &config, &text, &mut errors);
        }
    }
    assert!(functions >= 1, "{file}: no AWS::Serverless::Function");
    assert_eq!(
        direct, 3,
        "{file}: a function sending all three signals to CloudWatch"
    );
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

// ---------------------------------------------------------------------------
// Terraform

/// The subset of HCL the deploy example uses.
mod hcl {
    /// An attribute (`name = <expression>`, the expression as written) or a
    /// block (`type "label" ... { body }`).
    #[derive(Debug, Clone)]
    pub enum Item {
        Attribute(String, String),
        Block(Block),
    }

    #[derive(Debug, Clone)]
    pub struct Block {
        pub kind: String,
        pub labels: Vec<String>,
        pub body: Vec<Item>,
    }

    impl Block {
        pub fn attribute(&self, name: &str) -> Option<&str> {
            self.body.iter().find_map(|i| match i {
                Item::Attribute(n, v) if n == name => Some(v.as_str()),
                _ => None,
            })
        }

        pub fn blocks<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Block> + 'a {
            blocks(&self.body, kind)
        }
    }

    pub fn blocks<'a>(items: &'a [Item], kind: &'a str) -> impl Iterator<Item = &'a Block> + 'a {
        items.iter().filter_map(move |i| match i {
            Item::Block(b) if b.kind == kind => Some(b),
            _ => None,
        })
    }

    pub fn parse(text: &str) -> Result<Vec<Item>, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let items = p.body()?;
        p.skip_space();
        if p.i < p.s.len() {
            return Err(p.error("unexpected '}'"));
        }
        Ok(items)
    }

    struct Parser<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn error(&self, what: &str) -> String {
            let line = self.s[..self.i.min(self.s.len())]
                .iter()
                .filter(|&&c| c == b'\n')
                .count()
                + 1;
            format!("line {line}: {what}")
        }

        fn peek(&self) -> Option<u8> {
            self.s.get(self.i).copied()
        }

        /// Skips blanks, newlines and comments (`#`, `//`, `/* */`).
        fn skip_space(&mut self) {
            while let Some(c) = self.peek() {
                if c.is_ascii_whitespace() {
                    self.i += 1;
                } else if c == b'#' || self.s[self.i..].starts_with(b"//") {
                    while self.peek().is_some_and(|c| c != b'\n') {
                        self.i += 1;
                    }
                } else if self.s[self.i..].starts_with(b"/*") {
                    let end = find(&self.s[self.i + 2..], b"*/").map_or(self.s.len(), |e| e + 4);
                    self.i += end;
                } else {
                    return;
                }
            }
        }

        fn skip_blanks(&mut self) {
            while self.peek().is_some_and(|c| c == b' ' || c == b'\t') {
                self.i += 1;
            }
        }

        fn identifier(&mut self) -> Option<String> {
            let start = self.i;
            while self
                .peek()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
            {
                self.i += 1;
            }
            (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
        }

        /// Items up to a closing `}` (not consumed) or the end.
        fn body(&mut self) -> Result<Vec<Item>, String> {
            let mut items = Vec::new();
            loop {
                self.skip_space();
                match self.peek() {
                    None | Some(b'}') => return Ok(items),
                    _ => {}
                }
                let name = self
                    .identifier()
                    .ok_or_else(|| self.error("expected an attribute or a block"))?;
                self.skip_blanks();
                if self.peek() == Some(b'=') {
                    self.i += 1;
                    self.skip_blanks();
                    let value = self.expression()?;
                    items.push(Item::Attribute(name, value));
                    continue;
                }
                let mut labels = Vec::new();
                loop {
                    self.skip_blanks();
                    match self.peek() {
                        Some(b'"') => {
                            let quoted = self.string()?;
                            labels.push(quoted.trim_matches('"').to_string());
                        }
                        Some(b'{') => break,
                        _ => match self.identifier() {
                            Some(label) => labels.push(label),
                            None => {
                                return Err(self.error(&format!("{name}: expected a label or {{")))
                            }
                        },
                    }
                }
                self.i += 1; // {
                let body = self.body()?;
                if self.peek() != Some(b'}') {
                    return Err(self.error(&format!("{name}: block not closed")));
                }
                self.i += 1;
                items.push(Item::Block(Block {
                    kind: name,
                    labels,
                    body,
                }));
            }
        }

        /// A quoted string with its quotes, `${ ... }` interpolations included.
        fn string(&mut self) -> Result<String, String> {
            let start = self.i;
            self.i += 1;
            let mut depth = 0;
            while let Some(c) = self.peek() {
                self.i += 1;
                match c {
                    b'\\' => self.i += 1,
                    b'$' if self.peek() == Some(b'{') => {
                        depth += 1;
                        self.i += 1;
                    }
                    b'}' if depth > 0 => depth -= 1,
                    b'"' if depth == 0 => {
                        return Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
                    }
                    b'\n' if depth == 0 => break,
                    _ => {}
                }
            }
            Err(self.error("string not closed on its line"))
        }

        /// An expression as written, up to the end of its line; brackets,
        /// braces, strings and heredocs may span lines.
        fn expression(&mut self) -> Result<String, String> {
            let start = self.i;
            if self.s[self.i..].starts_with(b"<<") {
                let line_end = find(&self.s[self.i..], b"\n")
                    .map(|e| self.i + e)
                    .ok_or_else(|| self.error("heredoc without a body"))?;
                let marker = String::from_utf8_lossy(&self.s[self.i + 2..line_end])
                    .trim()
                    .trim_start_matches('-')
                    .to_string();
                self.i = line_end + 1;
                loop {
                    let end = find(&self.s[self.i..], b"\n").map_or(self.s.len(), |e| self.i + e);
                    let line = String::from_utf8_lossy(&self.s[self.i..end]);
                    self.i = end;
                    if line.trim() == marker {
                        break;
                    }
                    if end >= self.s.len() {
                        return Err(self.error(&format!("heredoc {marker} not closed")));
                    }
                    self.i += 1;
                }
                return Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned());
            }
            let mut depth = 0i32;
            while let Some(c) = self.peek() {
                match c {
                    b'"' => {
                        self.string()?;
                        continue;
                    }
                    // A comment ends the expression's line.
                    b'#' | b'/' if c == b'#' || self.s[self.i..].starts_with(b"//") => {
                        if depth == 0 {
                            break;
                        }
                        while self.peek().is_some_and(|c| c != b'\n') {
                            self.i += 1;
                        }
                        continue;
                    }
                    b'[' | b'{' | b'(' => depth += 1,
                    b']' | b'}' | b')' if depth == 0 => break,
                    b']' | b'}' | b')' => depth -= 1,
                    b'\n' if depth == 0 => break,
                    _ => {}
                }
                self.i += 1;
            }
            Ok(String::from_utf8_lossy(&self.s[start..self.i])
                .trim()
                .to_string())
        }
    }

    fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack.windows(needle.len()).position(|w| w == needle)
    }

    /// A quoted string's text (escapes of quotes and backslashes undone).
    pub fn string_value(expression: &str) -> Option<String> {
        let inner = expression.strip_prefix('"')?.strip_suffix('"')?;
        Some(inner.replace("\\\"", "\"").replace("\\\\", "\\"))
    }

    /// A heredoc's text, with `<<-`'s common indentation removed.
    pub fn heredoc_value(expression: &str) -> Option<String> {
        let (first, rest) = expression.split_once('\n')?;
        let indented = first.starts_with("<<-");
        let lines: Vec<&str> = rest.lines().collect();
        let body = &lines[..lines.len().saturating_sub(1)];
        let indent = if indented {
            body.iter()
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.len() - l.trim_start().len())
                .min()
                .unwrap_or(0)
        } else {
            0
        };
        Some(
            body.iter()
                .map(|l| l.get(indent..).unwrap_or("").to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        )
    }

    /// `{ KEY = value ... }` → (key, expression) pairs.
    pub fn map_entries(expression: &str) -> Result<Vec<(String, String)>, String> {
        let inner = expression
            .trim()
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .ok_or_else(|| format!("not a map: {expression}"))?;
        parse(inner)?
            .into_iter()
            .map(|item| match item {
                Item::Attribute(k, v) => Ok((k, v)),
                Item::Block(b) => Err(format!("a block {} in a map", b.kind)),
            })
            .collect()
    }

    /// `["a", "b"]` → the strings.
    pub fn string_list(expression: &str) -> Vec<String> {
        expression
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(',')
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| string_value(s).unwrap_or_else(|| s.to_string()))
            .collect()
    }
}

#[test]
fn hcl_subset_parser_reads_blocks_strings_heredocs_and_maps() {
    let items = hcl::parse(
        "# comment\nvariable \"x\" {\n  default = \"a ${b.c} \\\"q\\\"\" // note\n}\nresource \"t\" \"n\" {\n  m = {\n    K = \"v\"\n    L = var.x\n  }\n  h = <<-EOT\n    line 1\n      line 2\n    EOT\n  nested {\n    l = [\"x\", \"y\"]\n  }\n}\n",
    )
    .expect("parses");
    let variable = hcl::blocks(&items, "variable").next().expect("variable");
    assert_eq!(variable.labels, ["x"]);
    assert_eq!(
        hcl::string_value(variable.attribute("default").unwrap()).as_deref(),
        Some("a ${b.c} \"q\"")
    );
    let resource = hcl::blocks(&items, "resource").next().expect("resource");
    assert_eq!(resource.labels, ["t", "n"]);
    assert_eq!(
        hcl::map_entries(resource.attribute("m").unwrap()).unwrap(),
        [
            ("K".to_string(), "\"v\"".to_string()),
            ("L".to_string(), "var.x".to_string())
        ]
    );
    assert_eq!(
        hcl::heredoc_value(resource.attribute("h").unwrap()).as_deref(),
        Some("line 1\n  line 2")
    );
    let nested = resource.blocks("nested").next().expect("nested block");
    assert_eq!(hcl::string_list(nested.attribute("l").unwrap()), ["x", "y"]);
    assert!(hcl::parse("resource \"t\" {\n  a = \"open\n}\n").is_err());
    assert!(hcl::parse("resource \"t\" {\n  a = 1\n").is_err());
}

#[test]
fn terraform_handler_layer_and_environment_are_consistent() {
    use hcl::{blocks, heredoc_value, map_entries, string_list, string_value, Block};

    let file = "examples/deploy/main.tf";
    let (_, text) = repo_file(file);
    let items = hcl::parse(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut errors = Vec::new();

    let labelled = |kind: &str, ty: &str| -> BTreeMap<String, Block> {
        blocks(&items, kind)
            .filter(|b| b.labels.first().map(String::as_str) == Some(ty))
            .map(|b| (b.labels.get(1).cloned().unwrap_or_default(), b.clone()))
            .collect()
    };
    let variables: BTreeMap<String, Option<String>> = blocks(&items, "variable")
        .map(|v| {
            let description = v
                .attribute("description")
                .and_then(string_value)
                .unwrap_or_default();
            let default = v.attribute("default").and_then(string_value);
            (
                v.labels[0].clone(),
                sample_value(default.as_deref(), &description),
            )
        })
        .collect();
    let archives = labelled("data", "archive_file");
    let layers = labelled("resource", "aws_lambda_layer_version");
    let functions = labelled("resource", "aws_lambda_function");
    assert!(!functions.is_empty(), "{file}: no aws_lambda_function");
    let mut direct = 0;

    for (name, function) in &functions {
        let what = format!("{file} aws_lambda_function.{name}");
        let attr = |a: &str| {
            function
                .attribute(a)
                .and_then(string_value)
                .unwrap_or_default()
        };
        let runtime = attr("runtime");
        let handler = attr("handler");

        // filename = data.archive_file.<x>.output_path: the files of that archive.
        let mut code_files = BTreeMap::new();
        let filename = function.attribute("filename").unwrap_or_default();
        match filename
            .strip_prefix("data.archive_file.")
            .and_then(|r| r.strip_suffix(".output_path"))
            .and_then(|archive| archives.get(archive))
        {
            Some(archive) => {
                for source in archive.blocks("source") {
                    let name = source.attribute("filename").and_then(string_value);
                    let content = source
                        .attribute("content")
                        .and_then(|c| heredoc_value(c).or_else(|| string_value(c)));
                    if let (Some(name), Some(content)) = (name, content) {
                        code_files.insert(name, content);
                    }
                }
            }
            None => errors.push(format!(
                "{what}: filename {filename} is not an archive_file of this module"
            )),
        }
        check_handler(&what, &handler, &runtime, &code_files, &mut errors);

        let architectures = string_list(
            function
                .attribute("architectures")
                .unwrap_or("[\"x86_64\"]"),
        );
        let arch = architectures
            .first()
            .cloned()
            .unwrap_or_else(|| "x86_64".into());
        let layer_refs = string_list(function.attribute("layers").unwrap_or_default());
        if layer_refs.is_empty() {
            errors.push(format!("{what}: no layers"));
        }
        for layer_ref in layer_refs {
            let id = layer_ref
                .strip_prefix("aws_lambda_layer_version.")
                .and_then(|r| r.strip_suffix(".arn"));
            let Some(layer) = id.and_then(|id| layers.get(id)) else {
                errors.push(format!(
                    "{what}: layer {layer_ref} is not a layer of this module"
                ));
                continue;
            };
            match layer.attribute("filename").and_then(string_value) {
                Some(path) => check_layer_path(file, &path, &arch, &mut errors),
                None => errors.push(format!("{what}: layer {layer_ref} has no filename")),
            }
            let compatible = string_list(
                layer
                    .attribute("compatible_architectures")
                    .unwrap_or_default(),
            );
            if !compatible.contains(&arch) {
                errors.push(format!(
                    "{what}: layer {layer_ref} is for {compatible:?}, the function runs on {arch}"
                ));
            }
        }

        let mut env = BTreeMap::new();
        let Some(environment) = function.blocks("environment").next() else {
            errors.push(format!("{what}: no environment block"));
            continue;
        };
        let entries = map_entries(environment.attribute("variables").unwrap_or("{}"))
            .unwrap_or_else(|e| panic!("{what}: environment variables: {e}"));
        for (k, expression) in entries {
            let value = match expression.strip_prefix("var.") {
                Some(var) => match variables.get(var) {
                    Some(Some(sample)) => sample.clone(),
                    Some(None) => {
                        errors.push(format!(
                            "{what}: variable {var} has neither a default nor an \"e.g.\" example"
                        ));
                        continue;
                    }
                    None => {
                        errors.push(format!("{what}: {k} uses undeclared variable {var}"));
                        continue;
                    }
                },
                None => string_value(&expression)
                    .unwrap_or_else(|| panic!("{what}: {k} = {expression}: not a string or var.*")),
            };
            // `${var.x}` and `${type.label.attribute}` inside the string.
            let resolve = |name: &str| -> Option<String> {
                if let Some(var) = name.strip_prefix("var.") {
                    return variables.get(var).cloned().flatten();
                }
                let mut parts = name.splitn(3, '.');
                let (ty, label, attribute) = (parts.next()?, parts.next()?, parts.next()?);
                labelled("resource", ty)
                    .get(label)?
                    .attribute(attribute)
                    .and_then(string_value)
            };
            let value = interpolate(file, &value, resolve, &mut errors);
            env.insert(k, value);
        }
        if let Some(config) = check_environment(&what, &env, &mut errors) {
            direct += check_direct_export(&what, &config, &text, &mut errors);
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    assert_eq!(
        direct, 3,
        "{file}: a function sending all three signals to CloudWatch"
    );
}

#[test]
fn the_checks_catch_what_they_are_for() {
    // A handler naming a file the code does not have.
    let mut errors = Vec::new();
    let code: BTreeMap<String, String> = [(
        "index.py".to_string(),
        "def handler(event, context):".to_string(),
    )]
    .into();
    check_handler("t", "app.handler", "python3.13", &code, &mut errors);
    check_handler("t", "index.main", "python3.13", &code, &mut errors);
    check_handler("t", "index.handler", "python3.13", &code, &mut errors);
    assert_eq!(errors.len(), 2, "{errors:?}");

    // A layer for another architecture or another file.
    let mut errors = Vec::new();
    check_layer_path(
        "t",
        "../../dist/lambda-otel-bridge-x86_64.zip",
        "arm64",
        &mut errors,
    );
    check_layer_path("t", "../../dist/other.zip", "x86_64", &mut errors);
    check_layer_path(
        "t",
        "${path.module}/../../dist/lambda-otel-bridge-x86_64.zip",
        "x86_64",
        &mut errors,
    );
    assert_eq!(errors.len(), 2, "{errors:?}");

    // An unknown variable and a value the bridge refuses.
    let mut errors = Vec::new();
    let env = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    check_environment(
        "t",
        &env(&[("LAMBDA_OTEL_BRIDGE_FLUSHING", "end")]),
        &mut errors,
    );
    check_environment(
        "t",
        &env(&[("LAMBDA_OTEL_BRIDGE_FLUSH", "sometimes")]),
        &mut errors,
    );
    check_environment(
        "t",
        &env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318")]),
        &mut errors,
    );
    assert_eq!(errors.len(), 2, "{errors:?}");

    // Logs to CloudWatch Logs without the group header, and no IAM grant.
    let mut errors = Vec::new();
    let config = check_environment(
        "t",
        &env(&[
            (
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                "https://logs.eu-west-1.amazonaws.com/v1/logs",
            ),
            ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "x-aws-log-stream=s"),
        ]),
        &mut errors,
    )
    .expect("accepted");
    assert_eq!(
        check_direct_export("t", &config, "cloudwatch:PutMetricData", &mut errors),
        1
    );
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].contains("logs:PutLogEvents") && errors[1].contains("x-aws-log-group"));
    // An interpolation the check cannot resolve.
    let mut errors = Vec::new();
    interpolate("t", "https://${nope}/", |_| None, &mut errors);
    assert_eq!(errors.len(), 1);
}
