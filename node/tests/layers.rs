//! The layer rule, checked: inside `upsilon-node`, imports point down the data flow only
//! and no two top-level modules import each other, directly or around a loop. Each
//! module has a layer below; a `crate::x` import from a module must name a module of the
//! same or a lower layer. A new module must be added to the table (ARCHITECTURE.md has
//! the same table in words).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bottom to top.
const LAYERS: &[&[&str]] = &[
    // Wire facts and process plumbing.
    &["reading", "time", "ratelimit", "fault", "stop", "fatal"],
    // Pure decisions and plain views.
    &["policy"],
    &["config", "events", "view", "monitor"],
    &["pki", "replicated", "driver", "executor"],
    // The state in words.
    &["wording"],
    // Transport.
    &["tls", "client"],
    // Raft: openraft, sled, network.
    &["cluster"],
    // The node's state and conversions.
    &["shared", "pb_impl"],
    &["staging", "status"],
    // Protocol servers.
    &["api"],
    // Composition root.
    &["node"],
];

fn layer_of(m: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&m))
}

/// Top-level module of every `.rs` file under `src`, and the `crate::x` it imports
/// (test modules left out: they may reach anywhere).
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap();
            let first = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy();
            let module = first.trim_end_matches(".rs").to_string();
            if module == "lib" || module == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            let deps = out.entry(module.clone()).or_default();
            let mut rest = code;
            while let Some(i) = rest.find("crate::") {
                rest = &rest[i + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != module {
                    deps.insert(name);
                }
            }
        }
    }
    out
}

#[test]
fn imports_point_down_the_layers_and_never_loop() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = imports(&src);
    let mut wrong = Vec::new();
    for (m, deps) in &graph {
        let Some(lm) = layer_of(m) else {
            wrong.push(format!(
                "module {m} is not in the layer table (tests/layers.rs)"
            ));
            continue;
        };
        for d in deps {
            match layer_of(d) {
                None => wrong.push(format!("{m} imports {d}, which is not in the layer table")),
                Some(ld) if ld > lm => wrong.push(format!(
                    "{m} (layer {lm}) imports {d} (layer {ld}): imports must point down"
                )),
                _ => {}
            }
        }
    }
    // Same-layer imports are allowed, loops are not.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        loops: &mut Vec<String>,
    ) {
        if let Some(i) = path.iter().position(|p| p == m) {
            loops.push(format!("{} -> {m}", path[i..].join(" -> ")));
            return;
        }
        if !done.insert(m.to_string()) {
            return;
        }
        path.push(m.to_string());
        for d in graph.get(m).into_iter().flatten() {
            visit(d, graph, path, done, loops);
        }
        path.pop();
    }
    let mut loops = Vec::new();
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        visit(m, &graph, &mut Vec::new(), &mut done, &mut loops);
    }
    wrong.extend(loops.into_iter().map(|l| format!("import loop: {l}")));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
