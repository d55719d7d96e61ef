//! The crate graph: `docs/architecture.md` opens with a table of which
//! crate depends on which of ours, and the rules the graph keeps. This
//! test reads every crate's `Cargo.toml` and holds both to it, so the
//! page cannot drift from the code and no change breaks a rule unseen.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Each crate under `crates/` (by directory name) and the crates of ours
/// in its `[dependencies]` (not dev- or build-dependencies).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        let manifest = dir.join("Cargo.toml");
        if !manifest.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&manifest).unwrap();
        let table: toml::Table = text.parse().unwrap();
        let name = table["package"]["name"].as_str().unwrap().to_string();
        let short = name.strip_prefix("reprise-").unwrap_or(&name).to_string();
        assert_eq!(
            dir.file_name().unwrap().to_str().unwrap(),
            short,
            "crate {name} lives in crates/{short}"
        );
        let ours = table
            .get("dependencies")
            .and_then(|d| d.as_table())
            .map(|deps| {
                deps.keys()
                    .filter_map(|k| k.strip_prefix("reprise-"))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        graph.insert(short, ours);
    }
    graph
}

/// The table `docs/architecture.md` opens with: `| \`crate\` | deps | job |`.
fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let page = std::fs::read_to_string(root().join("docs/architecture.md")).unwrap();
    let mut table = BTreeMap::new();
    for line in page.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let [_, name, deps, _job, _] = cells[..] else {
            continue;
        };
        let Some(name) = name.strip_prefix('`').and_then(|n| n.strip_suffix('`')) else {
            continue;
        };
        let deps = deps
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty() && *d != "—")
            .map(str::to_string)
            .collect();
        table.insert(name.to_string(), deps);
    }
    table
}

#[test]
fn the_documented_crate_graph_is_the_cargo_graph() {
    let graph = graph();
    let documented = documented();
    assert_eq!(
        documented, graph,
        "docs/architecture.md's crate table (left) differs from the Cargo.tomls (right)"
    );
}

#[test]
fn the_dependency_rules_hold() {
    let graph = graph();
    let deps = |name: &str| -> &BTreeSet<String> { &graph[name] };
    let only = |name: &str, allowed: &[&str]| {
        let extra: Vec<_> = deps(name)
            .iter()
            .filter(|d| !allowed.contains(&d.as_str()))
            .collect();
        assert!(extra.is_empty(), "{name} may not depend on {extra:?}");
    };
    let never = |name: &str, forbidden: &[&str]| {
        for f in forbidden {
            assert!(!deps(name).contains(*f), "{name} may not depend on {f}");
        }
    };
    only("model", &[]);
    only("tape", &["model"]);
    only("compare", &["model", "tape", "wire"]);
    only("mock", &["model", "net", "tape", "wire"]);
    never("tower", &["cli", "replay", "compare", "proxy"]);
    never("proxy", &["replay"]);
    never("replay", &["proxy"]);
    for (name, deps) in &graph {
        assert!(!deps.contains("cli"), "{name} may not depend on cli");
    }
}

/// Compare never opens a socket: nothing networked in its dependencies or
/// its code.
#[test]
fn compare_opens_no_socket() {
    let manifest = std::fs::read_to_string(root().join("crates/compare/Cargo.toml")).unwrap();
    let table: toml::Table = manifest.parse().unwrap();
    let deps = table["dependencies"].as_table().unwrap();
    for networked in [
        "tokio",
        "hyper",
        "hyper-util",
        "tonic",
        "h2",
        "reqwest",
        "reprise-net",
    ] {
        assert!(
            !deps.contains_key(networked),
            "compare may not depend on {networked}"
        );
    }
    for entry in std::fs::read_dir(root().join("crates/compare/src")).unwrap() {
        let path = entry.unwrap().path();
        let code = std::fs::read_to_string(&path).unwrap();
        for socket in ["std::net", "TcpStream", "UdpSocket", "TcpListener"] {
            assert!(
                !code.contains(socket),
                "{} names {socket}: compare never opens a socket",
                path.display()
            );
        }
    }
}
