//! The layer rule, checked. Crates stack one way: `upsilon-core` (pure) <
//! `upsilon-client` (certificates, TLS, gRPC client) < `upsilon-node`; a crate never
//! names one above it, and `upsilon-core` builds without tokio, tonic, openraft, sled or
//! a serial port. Inside every crate (core, client, node, bridge, CLI), imports point
//! down the data flow: each top-level module has a layer in its crate's table below,
//! and a file may import only from its own module or from a lower layer. And no two
//! files import each other, directly or around a loop: the import graph is read file
//! by file (`import_graph`: `use` trees grouped and nested, `crate::`, `super::`,
//! `self::` and inline paths, followed through `mod.rs` files that only re-export) and
//! any cycle fails with its files named. A new top-level module must be added to its
//! crate's table (ARCHITECTURE.md has the same tables).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

mod import_graph;
use import_graph::ImportGraph;

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
const CLIENT: &[&[&str]] = &[
    &["fault", "stop", "runtime", "pb_impl"],
    &["pki"],
    &["tls"],
    &["rpc"],
];

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

/// `upsilon-cli`, bottom to top.
const CLI: &[&[&str]] = &[
    // Reaching a node, rendering.
    &["conn", "output"],
    // The commands and the demo.
    &["cmd", "demo"],
];

fn crate_src(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).join("src")
}

fn layer_of(layers: &[&[&str]], m: &str) -> Option<usize> {
    layers.iter().position(|l| l.contains(&m))
}

/// Every problem with a crate's imports: a top-level module missing from its table, an
/// import that points up the table, and any cycle between files.
fn check_crate(src: &Path, layers: &[&[&str]]) -> Vec<String> {
    let g = ImportGraph::read(src);
    let mut wrong = Vec::new();
    let tops: BTreeSet<String> = (0..g.files.len())
        .map(|i| g.top(i))
        .filter(|t| !t.is_empty())
        .collect();
    for t in &tops {
        if layer_of(layers, t).is_none() {
            wrong.push(format!(
                "module {t} of {} is not in the layer table (node/tests/layers.rs)",
                src.display()
            ));
        }
    }
    for (from, to) in &g.edges {
        let (mf, lf) = (g.top(*from), layer_of(layers, &g.top(*from)));
        for t in to {
            let (mt, lt) = (g.top(*t), layer_of(layers, &g.top(*t)));
            if mf.is_empty() || mf == mt {
                continue;
            }
            if let (Some(lf), Some(lt)) = (lf, lt)
                && lt > lf
            {
                wrong.push(format!(
                    "{} ({mf}, layer {lf}) imports {} ({mt}, layer {lt}): imports must point down",
                    g.name(*from),
                    g.name(*t)
                ));
            }
        }
    }
    wrong.extend(
        g.cycles()
            .into_iter()
            .map(|c| format!("import cycle in {}: {c}", src.display())),
    );
    wrong
}

#[test]
fn imports_point_down_the_layers_and_no_two_files_import_each_other() {
    let mut wrong = Vec::new();
    for (dir, layers) in [
        ("core", CORE),
        ("client", CLIENT),
        (".", NODE),
        ("../legacy-bridge", BRIDGE),
        ("../cli", CLI),
    ] {
        wrong.extend(check_crate(&crate_src(dir), layers));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The graph sees what it must: grouped imports through glue reach the defining file.
#[test]
fn the_import_graph_follows_glue_to_the_defining_file() {
    let g = ImportGraph::read(&crate_src("core"));
    let file = |name: &str| {
        (0..g.files.len())
            .find(|i| g.name(*i) == name)
            .unwrap_or_else(|| panic!("{name} not read"))
    };
    let decide = file("replicated/plan/decide.rs");
    let to: BTreeSet<String> = g.edges[&decide].iter().map(|t| g.name(*t)).collect();
    for want in [
        "replicated/endgame.rs",
        "replicated/records.rs",
        "replicated/state/power.rs",
        "replicated/state/command.rs",
        "replicated/plan/model.rs",
        "replicated/plan/supply.rs",
    ] {
        assert!(to.contains(want), "decide.rs -> {want} missing: {to:?}");
    }
    assert!(g.files[file("replicated/state/mod.rs")].glue);
    assert!(!g.files[file("replicated/state/power.rs")].glue);
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
        for (path, text) in import_graph::rust_files(&crate_src(dir)) {
            for a in above {
                if text.contains(a) {
                    wrong.push(format!("{} names {a}", path.display()));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// `cargo tree --offline --prefix none` with `args`, from the workspace root.
fn cargo_tree(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["tree", "--offline", "--prefix", "none"])
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
}

/// `cargo tree` of upsilon-core's normal and build dependencies: none of the daemon's
/// heavy crates may appear, so fuzzing or testing a parser never builds them.
#[test]
fn core_builds_without_the_daemon_s_crates() {
    let tree = cargo_tree(&["-p", "upsilon-core", "-e", "normal,build"]);
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
    let tree = |args: &[&str]| cargo_tree(&[&["-e", "features,normal"], args].concat());
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

/// A cycle between two files, through a grouped import and an inline `super::` path,
/// is found and named.
#[test]
fn a_cycle_between_files_is_named() {
    let dir = std::env::temp_dir().join(format!("upsilon-layers-{}", std::process::id()));
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("m")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod m;\nmod z;\n").unwrap();
    std::fs::write(
        src.join("m/mod.rs"),
        "mod a;\nmod b;\npub use a::*;\npub use b::*;\n",
    )
    .unwrap();
    std::fs::write(src.join("m/a.rs"), "use super::{b::{X}};\npub struct Y;\n").unwrap();
    std::fs::write(
        src.join("m/b.rs"),
        "pub struct X;\nfn f() { let _ = super::Y; }\n",
    )
    .unwrap();
    std::fs::write(src.join("z.rs"), "use crate::m::X;\n").unwrap();
    let g = ImportGraph::read(&src);
    let cycles = g.cycles();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(cycles, ["m/a.rs -> m/b.rs -> m/a.rs"], "{cycles:?}");
}
