//! The layer rule, checked. Crates stack one way: `upsilon-core` (pure) <
//! `upsilon-client` (certificates, TLS, gRPC client) < `upsilon-node`; a crate never
//! names one above it, and `upsilon-core` builds without tokio, tonic, openraft, sled or
//! a serial port. Inside each crate, imports point down the data flow only and no two
//! top-level modules import each other, directly or around a loop: each module has a
//! layer, and a `crate::x` import must name a module of the same or a lower layer. A new
//! module must be added to its crate's table (ARCHITECTURE.md has the same tables).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `upsilon-core`, bottom to top.
const CORE: &[&[&str]] = &[
    // Wire facts and plumbing.
    &["reading", "time", "ratelimit", "testing", "store_identity"],
    // Pure decisions.
    &["policy"],
    // Config schema, events, plain views, the monitor, the UPS families' codecs.
    &["config", "events", "view", "monitor", "ups"],
    // The replicated state and the plan.
    &["replicated"],
    // The state in words.
    &["wording"],
    // The status as one node sees it, as plain types.
    &["snapshot"],
];

/// `upsilon-client`, bottom to top.
const CLIENT: &[&[&str]] = &[&["fault", "stop", "pb_impl"], &["pki"], &["tls"], &["rpc"]];

/// `upsilon-node`, bottom to top.
const NODE: &[&[&str]] = &[
    // Process plumbing.
    &["fatal", "ticks", "trace"],
    // Drivers and the executor.
    &["driver", "executor"],
    // Raft: openraft, sled, network.
    &["cluster"],
    // The node's state.
    &["shared", "markers"],
    &["staging", "status", "halted", "endgame"],
    // Protocol servers.
    &["api", "nis"],
    // Composition root.
    &["node"],
];

/// `upsilon-legacy-bridge`, bottom to top.
const BRIDGE: &[&[&str]] = &[
    // Wire codecs: framing, the status text.
    &["nis", "apcaccess", "netdata"],
    // What a host is told, the NIS server and client, the master/slave slave side.
    &[
        "host",
        "nis_server",
        "net_client",
        "ms_slave",
        "ms_master",
        "ms_check",
    ],
    // The bridge daemon.
    &["daemon"],
];

fn crate_src(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).join("src")
}

fn layer_of(layers: &[&[&str]], m: &str) -> Option<usize> {
    layers.iter().position(|l| l.contains(&m))
}

/// Top-level module of every `.rs` file under `src`, and the `crate::x` it imports
/// (test modules left out: they may reach anywhere).
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (p, text) in sources(src) {
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
    out
}

/// Every problem with `src`'s imports against `layers`.
fn check_layers(src: &Path, layers: &[&[&str]]) -> Vec<String> {
    let graph = imports(src);
    let mut wrong = Vec::new();
    for (m, deps) in &graph {
        let Some(lm) = layer_of(layers, m) else {
            wrong.push(format!(
                "module {m} of {} is not in the layer table (node/tests/layers.rs)",
                src.display()
            ));
            continue;
        };
        for d in deps {
            match layer_of(layers, d) {
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
    wrong
}

#[test]
fn imports_point_down_the_layers_and_never_loop() {
    let mut wrong = Vec::new();
    for (dir, layers) in [
        ("core", CORE),
        ("client", CLIENT),
        (".", NODE),
        ("../legacy-bridge", BRIDGE),
    ] {
        wrong.extend(check_layers(&crate_src(dir), layers));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Every `.rs` file under `src`, with its text.
fn sources(src: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                out.push((p, text));
            }
        }
    }
    out
}

#[test]
fn crates_never_name_a_crate_above_them() {
    let mut wrong = Vec::new();
    for (dir, above) in [
        (
            "core",
            &["upsilon_client", "upsilon_node", "upsilon_proto"][..],
        ),
        ("client", &["upsilon_node"][..]),
        ("../legacy-bridge", &["upsilon_node"][..]),
    ] {
        for (path, text) in sources(&crate_src(dir)) {
            for a in above {
                if text.contains(a) {
                    wrong.push(format!("{} names {a}", path.display()));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// `cargo tree` of upsilon-core's normal and build dependencies: none of the daemon's
/// heavy crates may appear, so fuzzing or testing a parser never builds them.
#[test]
fn core_builds_without_the_daemon_s_crates() {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-p",
            "upsilon-core",
            "-e",
            "normal,build",
            "--prefix",
            "none",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let crates: BTreeSet<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(crates.contains("upsilon-core"), "{tree}");
    let heavy = [
        "tokio",
        "tonic",
        "openraft",
        "sled",
        "tokio-serial",
        "serialport",
        "rustls",
    ];
    let found: Vec<_> = heavy.iter().filter(|h| crates.contains(**h)).collect();
    assert!(
        found.is_empty(),
        "upsilon-core depends on {found:?}:\n{tree}"
    );
}

/// The shipped binaries are built without the test-only `fault-injection` feature:
/// neither `upsilond` alone nor a plain `cargo build` of the workspace's default members
/// (what `cargo build --profile dist` and the packages build) turns it on; the test
/// crate does (so the suite's `cargo build --workspace` can partition its nodes).
#[test]
fn fault_injection_is_off_in_what_ships() {
    let tree = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO"))
            .args([
                "tree",
                "--offline",
                "-e",
                "features,normal",
                "--prefix",
                "none",
            ])
            .args(args)
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap())
            .output()
            .expect("run cargo tree");
        assert!(
            out.status.success(),
            "cargo tree failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    for (what, args) in [
        ("upsilond alone", vec!["-p", "upsilon-node"]),
        ("the default members", vec![]),
    ] {
        let t = tree(&args);
        assert!(t.contains("upsilon-node"), "{what}: {t}");
        assert!(
            !t.contains("feature \"fault-injection\""),
            "{what} builds with fault injection on:\n{t}"
        );
    }
    let t = tree(&["--workspace"]);
    assert!(
        t.contains("upsilon-node feature \"fault-injection\""),
        "the test suite's build lost fault injection:\n{t}"
    );
}
