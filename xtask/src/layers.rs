//! The core's layers as a test: imports run one way.
//!
//! `class-oauth-core/src/lib.rs` declares the layers, lowest first, and re-exports their
//! public modules flat (`pub use wire::headers;`). A file belongs to the layer of its
//! first folder under `src/` (or of its own name at the top: `error.rs`). Every
//! `crate::name` in a file's code (comments and `#[cfg(test)]` code aside) must name a
//! module of its own layer or of a layer below; inside a layer the modules' imports must
//! not form a circle.

#![cfg(test)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::project_root;

/// The core's layers, lowest first (docs/ARCHITECTURE.md's code map names them).
const LAYERS: &[&str] = &[
    "primitives",
    "wire",
    "jose",
    "error",
    "step",
    "provider",
    "messages",
    "flow",
];

const CORE_SRC: &str = "crates/class-oauth-core/src";

/// A reference to `crate::target` from `line` of the file `from`.
#[derive(Debug)]
struct Import {
    from: String,
    line: usize,
    target: String,
    /// Reached by `super::` from a sibling in the same layer folder.
    sibling: bool,
}

/// The code of a source file without comments and without its test module.
fn code_lines(source: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    for (i, line) in source.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        let code = line.split(" //").next().unwrap_or(line);
        lines.push((i + 1, code.to_owned()));
    }
    lines
}

/// The first path segments after `crate::` and `super::` (a `crate::{a, b::c}` group
/// gives `a` and `b`).
fn targets(code: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // The first word of each top-level item, up to the group's closing brace.
            let (mut depth, mut first, mut word) = (0usize, true, String::new());
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    c if (c.is_alphanumeric() || c == '_') && first => word.push(c),
                    _ => {}
                }
                // Any other character ends the item's first word; a top-level comma
                // starts the next item.
                let in_word = c.is_alphanumeric() || c == '_';
                if !in_word && !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                    first = false;
                }
                if c == ',' && depth == 0 {
                    first = true;
                }
            }
            if !word.is_empty() {
                out.push(word);
            }
        } else {
            let word: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !word.is_empty() {
                out.push(word);
            }
        }
    }
    out
}

/// lib.rs: the layers in declaration order, and each re-exported module's layer.
fn read_lib(lib: &str) -> (Vec<String>, BTreeMap<String, String>) {
    let mut layers = Vec::new();
    let mut homes = BTreeMap::new();
    for (_, line) in code_lines(lib) {
        let line = line.trim();
        let line = line
            .strip_prefix("pub(crate) ")
            .or_else(|| line.strip_prefix("pub "))
            .unwrap_or(line);
        if let Some(name) = line.strip_prefix("mod ").and_then(|l| l.strip_suffix(';')) {
            layers.push(name.to_owned());
            homes.insert(name.to_owned(), name.to_owned());
        } else if let Some(path) = line.strip_prefix("use ").and_then(|l| l.strip_suffix(';')) {
            let Some((layer, names)) = path.split_once("::") else {
                continue;
            };
            if !LAYERS.contains(&layer) {
                continue;
            }
            for name in names.trim_matches(|c| c == '{' || c == '}').split(',') {
                let name = name.trim();
                if !name.is_empty() {
                    homes.insert(name.to_owned(), layer.to_owned());
                }
            }
        }
    }
    (layers, homes)
}

/// Every `crate::` and `super::` reference in the core's code, by file (relative to
/// `src/`); `super::x` from `layer/unit.rs` is recorded as `crate::x` of the same layer.
fn imports(src: &Path) -> Vec<Import> {
    let mut all = Vec::new();
    for path in crate::tidy::rust_files_in(src) {
        let rel = path
            .strip_prefix(src)
            .expect("under src")
            .to_string_lossy()
            .replace('\\', "/");
        if rel == "lib.rs" || rel.ends_with("tests.rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).expect("source");
        for (line, code) in code_lines(&source) {
            for target in targets(&code, "crate::") {
                all.push(Import {
                    from: rel.clone(),
                    line,
                    target,
                    sibling: false,
                });
            }
            // `super::x` inside `layer/unit.rs` names the sibling unit `x`.
            let depth = rel.matches('/').count();
            if depth == 1 && !rel.ends_with("/mod.rs") {
                for target in targets(&code, "super::") {
                    all.push(Import {
                        from: rel.clone(),
                        line,
                        target,
                        sibling: true,
                    });
                }
            }
        }
    }
    all.sort_by(|a, b| (&a.from, a.line).cmp(&(&b.from, b.line)));
    all
}

/// The layer a file belongs to, and its unit inside the layer (`provider/discovery.rs`
/// is unit `discovery` of `provider`; `error.rs` is unit `error` of `error`).
fn place(rel: &str) -> (String, String) {
    let mut parts = rel.split('/');
    let first = parts.next().expect("a path").trim_end_matches(".rs");
    let unit = parts
        .next()
        .map_or(first, |u| u.trim_end_matches(".rs"))
        .to_owned();
    (first.to_owned(), unit)
}

/// The circles in a graph (each as a path that returns to its start), found by depth-first
/// search.
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        found: &mut Vec<Vec<String>>,
    ) {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_owned());
            found.push(circle);
            return;
        }
        if done.contains(node) {
            return;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, path, done, found);
        }
        path.pop();
        done.insert(node.to_owned());
    }
    let mut found = Vec::new();
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, graph, &mut Vec::new(), &mut done, &mut found);
    }
    found
}

/// What is wrong with the core's imports: back-imports across layers, names the layer
/// map does not know, and circles inside a layer. Empty when imports run one way.
fn violations(src: &Path) -> Vec<String> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let (declared, homes) = read_lib(&lib);
    let mut problems = Vec::new();
    if declared != LAYERS {
        problems.push(format!(
            "lib.rs declares the modules {declared:?}; the layers, lowest first, are {LAYERS:?}"
        ));
    }
    let rank = |layer: &str| LAYERS.iter().position(|l| *l == layer);
    let mut within: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for import in imports(src) {
        let (layer, unit) = place(&import.from);
        let Some(own) = rank(&layer) else {
            problems.push(format!(
                "{}: `{layer}` is not a layer; put the file in one of {LAYERS:?}",
                import.from
            ));
            continue;
        };
        let target = if import.sibling && import.target.starts_with(|c: char| c.is_uppercase()) {
            // An item of the layer folder's own mod.rs.
            &"mod".to_owned()
        } else {
            &import.target
        };
        if target.starts_with(|c: char| c.is_uppercase()) {
            problems.push(format!(
                "{}:{}: `crate::{target}` goes through lib.rs's re-exports; name the module",
                import.from, import.line
            ));
            continue;
        }
        let home = if import.sibling {
            layer.clone()
        } else if let Some(home) = homes.get(target) {
            home.clone()
        } else {
            problems.push(format!(
                "{}:{}: `crate::{target}` is neither a layer nor a module lib.rs re-exports",
                import.from, import.line
            ));
            continue;
        };
        let Some(theirs) = rank(&home) else {
            problems.push(format!(
                "{}:{}: `{target}` is in no layer",
                import.from, import.line
            ));
            continue;
        };
        if theirs > own {
            problems.push(format!(
                "{}:{}: imports `{target}` from the {home} layer, above its own {layer} layer",
                import.from, import.line
            ));
        } else if theirs == own && target != &unit && target != &layer {
            within
                .entry(layer.clone())
                .or_default()
                .entry(unit.clone())
                .or_default()
                .insert(target.clone());
        }
    }
    for (layer, graph) in &within {
        for circle in circles(graph) {
            problems.push(format!(
                "the {layer} layer's modules import each other in a circle: {}",
                circle.join(" -> ")
            ));
        }
    }
    problems
}

/// The core's imports run one way: from each layer only to itself and the layers below,
/// and inside a layer without circles.
#[test]
fn core_imports_run_one_way() {
    let problems = violations(&project_root().join(CORE_SRC));
    assert!(
        problems.is_empty(),
        "the core's layers are {LAYERS:?} (lowest first); imports must run down:\n{}",
        problems.join("\n")
    );
}

/// The test can fail: a copy of the core with one deliberate back-import (the primitives
/// layer reaching up to the flows) is caught, and so is a circle inside a layer.
#[test]
fn a_back_import_is_caught() {
    let copy = std::env::temp_dir().join(format!("core-layers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&copy);
    copy_tree(&project_root().join(CORE_SRC), &copy);
    let secret = copy.join("primitives/secret.rs");
    let source = std::fs::read_to_string(&secret).expect("secret.rs");
    std::fs::write(&secret, format!("use crate::flow::Flow;\n{source}")).expect("write");
    let environment = copy.join("provider/environment.rs");
    let source = std::fs::read_to_string(&environment).expect("environment.rs");
    std::fs::write(
        &environment,
        format!("use crate::discovery::DiscoveryPolicy;\n{source}"),
    )
    .expect("write");
    let problems = violations(&copy);
    let _ = std::fs::remove_dir_all(&copy);
    assert!(
        problems.iter().any(|p| p
            == "primitives/secret.rs:1: imports `flow` from the flow layer, above its own primitives layer"),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("the provider layer's modules import each other in a circle")),
        "{problems:#?}"
    );
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("dir") {
        let path = entry.expect("entry").path();
        let dest = to.join(path.file_name().expect("name"));
        if path.is_dir() {
            copy_tree(&path, &dest);
        } else {
            std::fs::copy(&path, &dest).expect("copy");
        }
    }
}

#[test]
fn targets_reads_groups_and_paths() {
    assert_eq!(
        targets("use crate::{error::Error, text, body::{a, b}};", "crate::"),
        ["error", "text", "body"]
    );
    assert_eq!(
        targets("x: crate::time::add(now), y: my_crate::z", "crate::"),
        ["time"]
    );
}
