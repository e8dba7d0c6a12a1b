//! The shape of the source tree, checked: no two source files import each
//! other, directly or around a circle (test modules aside), and no file has
//! more than 600 lines before its tests. A module reaches its children;
//! a child's use of its own parent is one room and does not count;
//! everything else (`crate::…`, `super::…` paths to a sibling or further)
//! does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 600;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("src readable").flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file under `src/` (`src/export/mod.rs` → `export`).
fn module_of(rel: &str) -> Vec<String> {
    let rel = rel.trim_end_matches(".rs");
    let mut parts: Vec<String> = rel.split('/').map(str::to_owned).collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The text before the file's test module, without comments.
fn code_before_tests(text: &str) -> String {
    let cut = text.find("\n#[cfg(test)]\nmod ").unwrap_or(text.len());
    text[..cut]
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path that follows `prefix` (`crate::` or `super::`), with brace
/// groups expanded one level (`crate::{a::b, c}` → `a::b`, `c`).
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let segs: Vec<String> = item
                    .trim()
                    .split("::")
                    .map(|s| s.trim().to_owned())
                    .take_while(|s| {
                        !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_')
                    })
                    .collect();
                if !segs.is_empty() {
                    out.push(segs);
                }
            }
            continue;
        }
        let segs: Vec<String> = rest
            .split("::")
            .map_while(|s| {
                let word: String = s
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                (!word.is_empty()).then_some(word)
            })
            .collect();
        if !segs.is_empty() {
            out.push(segs);
        }
    }
    out
}

fn graph() -> (BTreeMap<String, BTreeSet<String>>, BTreeMap<String, usize>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let modules: BTreeMap<Vec<String>, String> = files
        .iter()
        .map(|p| {
            let rel = p
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (module_of(&rel), rel)
        })
        .collect();
    let resolve = |path: &[String]| -> Option<&String> {
        (1..=path.len()).rev().find_map(|n| modules.get(&path[..n]))
    };
    let mut edges = BTreeMap::new();
    let mut lengths = BTreeMap::new();
    for (module, rel) in &modules {
        let text = std::fs::read_to_string(root.join(rel)).unwrap();
        let code = code_before_tests(&text);
        lengths.insert(rel.clone(), code.lines().count());
        let mut deps = BTreeSet::new();
        for p in paths_after(&code, "crate::") {
            if let Some(f) = resolve(&p) {
                deps.insert(f.clone());
            }
        }
        for p in paths_after(&code, "super::") {
            let mut full: Vec<String> = module[..module.len().saturating_sub(1)].to_vec();
            full.extend(p);
            if let Some(f) = resolve(&full) {
                deps.insert(f.clone());
            }
        }
        // One room: a module and its own parent.
        let parent = &module[..module.len().saturating_sub(1)];
        if let Some(pf) = modules.get(parent) {
            deps.remove(pf);
        }
        deps.remove(rel);
        // A module reaches its children (it declares and uses them).
        for (child, child_rel) in &modules {
            if child.len() == module.len() + 1 && child.starts_with(module) {
                deps.insert(child_rel.clone());
            }
        }
        edges.insert(rel.clone(), deps);
    }
    (edges, lengths)
}

/// Files that can reach themselves through imports.
fn circles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let reach = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&String> = edges[from].iter().collect();
        while let Some(f) = todo.pop() {
            if seen.insert(f.clone()) {
                todo.extend(edges.get(f).into_iter().flatten());
            }
        }
        seen
    };
    edges
        .keys()
        .filter(|f| reach(f).contains(*f))
        .map(|f| {
            let back: Vec<&String> = edges[f].iter().filter(|d| reach(d).contains(f)).collect();
            format!("{f} → {back:?} → … → {f}")
        })
        .collect()
}

#[test]
fn no_import_circle_between_source_files() {
    let (edges, _) = graph();
    assert!(edges.len() > 30, "found only {} source files", edges.len());
    // The checker sees real imports (the drain uses the shared core, the
    // telemetry listener the exporter).
    assert!(edges["export/drain.rs"].contains("export/core.rs"));
    assert!(edges["telemetry_receiver.rs"].contains("export/mod.rs"));
    let found = circles(&edges);
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn no_source_file_over_600_lines_before_its_tests() {
    let (_, lengths) = graph();
    let long: Vec<String> = lengths
        .iter()
        .filter(|(_, n)| **n > MAX_LINES)
        .map(|(f, n)| format!("src/{f}: {n} lines"))
        .collect();
    assert!(
        long.is_empty(),
        "over {MAX_LINES} lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_checker_finds_a_circle() {
    let mut edges = BTreeMap::new();
    edges.insert("a.rs".to_owned(), BTreeSet::from(["b.rs".to_owned()]));
    edges.insert("b.rs".to_owned(), BTreeSet::from(["a.rs".to_owned()]));
    edges.insert("c.rs".to_owned(), BTreeSet::from(["a.rs".to_owned()]));
    let found = circles(&edges);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(
        paths_after("use crate::{a::b, c};", "crate::"),
        vec![vec!["a".to_owned(), "b".to_owned()], vec!["c".to_owned()]]
    );
}
