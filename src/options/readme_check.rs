//! README.md's "Configuration" tables against [`super::table`]: every row
//! `| `VAR` | default | unit / values | meaning |` must match a declaration
//! in name, default and unit / values, every declaration must have its row,
//! and the exporter forms table must list [`EXPORTER_FORMS`] in order. A
//! failure lists every difference and the row the table would write.
//!
//! Also: every bridge variable named anywhere in `src/` is declared, so no
//! component reads a variable the README does not know.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use super::table::{Entry, ALL, EXPORTER_FORMS, SIGNALS};
use super::PREFIX;

const SETTINGS_HEADER: [&str; 4] = ["variable", "default", "unit / values", "meaning"];
const FORMS_HEADER: [&str; 3] = ["order", "variable form", "example"];

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The "## Configuration" section, up to the next level-2 heading.
fn configuration_section(readme: &str) -> &str {
    let start = readme
        .find("\n## Configuration\n")
        .expect("README.md has a \"## Configuration\" section");
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    &rest[..end]
}

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_owned()).collect()
}

/// The body rows of every table whose header is `header`.
fn tables(section: &str, header: &[&str]) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in section.lines() {
        let is_row = line.trim_start().starts_with('|');
        if !is_row {
            in_table = false;
            continue;
        }
        let c = cells(line);
        if c.iter().map(String::as_str).eq(header.iter().copied()) {
            in_table = true;
        } else if in_table && !c.iter().all(|c| c.chars().all(|ch| ch == '-' || ch == ':')) {
            rows.push(c);
        }
    }
    rows
}

fn expected_row(e: &Entry) -> String {
    format!(
        "| `{}` | {} | {} | {} |",
        e.name(),
        e.default_cell(),
        e.values_cell(),
        e.doc()
    )
}

#[test]
fn readme_configuration_tables_match_the_declarations() {
    let text = readme();
    let section = configuration_section(&text);
    let mut diffs = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for row in tables(section, &SETTINGS_HEADER) {
        let name_cell = row.first().cloned().unwrap_or_default();
        let Some(name) = name_cell
            .strip_prefix('`')
            .and_then(|n| n.strip_suffix('`'))
            .filter(|n| !n.contains('`'))
        else {
            diffs.push(format!(
                "README row {row:?}: the first cell must be one `VARIABLE`"
            ));
            continue;
        };
        *seen.entry(name.to_owned()).or_default() += 1;
        if row.len() != 4 {
            diffs.push(format!(
                "README row of {name}: expected 4 cells, found {}",
                row.len()
            ));
            continue;
        }
        let Some(e) = ALL.iter().find(|e| e.name() == name) else {
            diffs.push(format!(
                "README row of {name}: not declared in src/options/table.rs"
            ));
            continue;
        };
        for (what, readme, table) in [
            ("default", &row[1], e.default_cell()),
            ("unit / values", &row[2], e.values_cell()),
        ] {
            if *readme != table {
                diffs.push(format!(
                    "{name} {what}:\n  - README: {readme}\n  + table:  {table}"
                ));
            }
        }
    }
    for e in ALL {
        match seen.get(e.name()) {
            None => diffs.push(format!(
                "{} is declared but has no README row; add:\n  {}",
                e.name(),
                expected_row(e)
            )),
            Some(n) if *n > 1 => diffs.push(format!("{} has {n} README rows", e.name())),
            Some(_) => {}
        }
    }

    let forms: Vec<Vec<String>> = tables(section, &FORMS_HEADER);
    let expected_forms: Vec<String> = EXPORTER_FORMS
        .iter()
        .map(|(prefix, per_signal)| {
            if *per_signal {
                format!("`{prefix}{{{}}}_<OPTION>`", SIGNALS.join(","))
            } else {
                format!("`{prefix}<OPTION>`")
            }
        })
        .collect();
    let readme_forms: Vec<String> = forms
        .iter()
        .map(|r| r.get(1).cloned().unwrap_or_default())
        .collect();
    if readme_forms != expected_forms {
        diffs.push(format!(
            "exporter forms table (| order | variable form | example |), in order:\n  - README: {readme_forms:?}\n  + table:  {expected_forms:?}"
        ));
    }
    for (i, r) in forms.iter().enumerate() {
        if r.first().map(String::as_str) != Some(&(i + 1).to_string()) {
            diffs.push(format!(
                "exporter forms row {r:?}: order should be {}",
                i + 1
            ));
        }
    }

    assert!(
        diffs.is_empty(),
        "README.md \"## Configuration\" differs from src/options/table.rs:\n{}",
        diffs.join("\n")
    );
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_bridge_variable_named_in_the_source_is_declared() {
    let declared: BTreeSet<String> = ALL.iter().flat_map(|e| e.variables()).collect();
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut unknown = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable source");
        let mut rest = text.as_str();
        while let Some(i) = rest.find(PREFIX) {
            let tail = &rest[i..];
            let len = tail
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(tail.len());
            let name = &tail[..len];
            // `LAMBDA_OTEL_BRIDGE_` alone, or a prefix such as `..._EXPORTER_OTLP_`.
            if !name.ends_with('_') && !declared.contains(name) {
                unknown.insert(format!("{name} ({})", file.display()));
            }
            rest = &tail[len..];
        }
    }
    assert!(
        unknown.is_empty(),
        "named in src/ but not declared in src/options/table.rs: {unknown:#?}"
    );
}
