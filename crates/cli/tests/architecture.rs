//! The Cargo graph against the layers: the allowed edges are written once, in the "Crate dependencies"
//! table of `docs/architecture.md`, and this test reads that table and `cargo metadata`, so a dependency the
//! table does not allow (or a table that no longer names every crate) fails here rather than in review.
//! It also holds the manifest conventions: internal crates come from `[workspace.dependencies]`, and
//! README's layout table names every crate.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A workspace member as `cargo metadata` describes it.
#[derive(Debug)]
struct Member {
    name: String,
    manifest: PathBuf,
    /// Internal dependencies: (crate, kind) where kind is `normal`, `dev` or `build`.
    internal: Vec<(String, String)>,
}

fn members() -> Result<Vec<Member>, Box<dyn std::error::Error>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline", "--manifest-path"])
        .arg(workspace_root().join("Cargo.toml"))
        .output()?;
    assert!(out.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let packages = meta["packages"].as_array().ok_or("no packages in cargo metadata")?;
    let names: BTreeSet<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut members = Vec::new();
    for p in packages {
        let internal = p["dependencies"]
            .as_array()
            .ok_or("no dependencies array")?
            .iter()
            .filter(|d| d["name"].as_str().is_some_and(|n| names.contains(n)))
            .map(|d| {
                let kind = d["kind"].as_str().unwrap_or("normal").to_owned();
                (d["name"].as_str().unwrap_or_default().to_owned(), kind)
            })
            .collect();
        members.push(Member {
            name: p["name"].as_str().ok_or("package without a name")?.to_owned(),
            manifest: PathBuf::from(p["manifest_path"].as_str().ok_or("package without a manifest")?),
            internal,
        });
    }
    Ok(members)
}

/// The rows of a Markdown table that follows `heading` in `text`: each row's cells, trimmed, without the
/// header and the separator.
fn table_after(text: &str, heading: &str) -> Vec<Vec<String>> {
    let Some(start) = text.find(heading) else { return Vec::new() };
    text[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| l.trim().trim_matches('|').split('|').map(|c| c.trim().to_owned()).collect())
        .collect()
}

/// `linkvault-domain, storage` → the full crate names (`—` is none). Short names mean `linkvault-<name>`;
/// the binary crate is `linkvault`.
fn crate_names(cell: &str) -> BTreeSet<String> {
    cell.split(',')
        .map(|n| n.trim().trim_matches('`'))
        .filter(|n| !n.is_empty() && *n != "—")
        .map(|n| if n == "cli" { "linkvault".to_owned() } else { format!("linkvault-{n}") })
        .collect()
}

/// crate → (allowed normal dependencies, additionally allowed dev-dependencies).
type Edges = BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>;

/// The allowed edges, from docs/architecture.md.
fn allowed_edges() -> Result<Edges, Box<dyn std::error::Error>> {
    let doc = std::fs::read_to_string(workspace_root().join("docs/architecture.md"))?;
    let rows = table_after(&doc, "## Crate dependencies");
    assert!(!rows.is_empty(), "docs/architecture.md has no \"## Crate dependencies\" table");
    let mut edges = BTreeMap::new();
    for row in rows {
        assert_eq!(row.len(), 4, "a Crate dependencies row needs 4 cells: {row:?}");
        let name = row[0].trim_matches('`').to_owned();
        edges.insert(name, (crate_names(&row[2]), crate_names(&row[3])));
    }
    Ok(edges)
}

#[test]
fn every_internal_dependency_is_an_edge_the_architecture_allows() -> TestResult {
    let edges = allowed_edges()?;
    let members = members()?;
    let names: BTreeSet<String> = members.iter().map(|m| m.name.clone()).collect();
    let documented: BTreeSet<String> = edges.keys().cloned().collect();
    assert_eq!(documented, names, "the Crate dependencies table must name exactly the workspace's crates");
    let mut violations = Vec::new();
    for m in &members {
        let (normal, dev) = &edges[&m.name];
        for (dep, kind) in &m.internal {
            let allowed = match kind.as_str() {
                "dev" => normal.contains(dep) || dev.contains(dep),
                _ => normal.contains(dep),
            };
            if !allowed {
                violations.push(format!("{} has a {kind} dependency on {dep}", m.name));
            }
        }
    }
    assert!(violations.is_empty(), "edges docs/architecture.md does not allow:\n{}", violations.join("\n"));
    Ok(())
}

#[test]
fn the_table_only_allows_downward_edges() -> TestResult {
    // The layers form no cycle, tests included: an order exists in which every crate comes after all it may
    // use. (A table that allowed `storage → vault` next to `vault → storage` would make the first test moot.)
    let mut remaining = allowed_edges()?;
    let mut placed = BTreeSet::new();
    while !remaining.is_empty() {
        let ready: Vec<String> = remaining
            .iter()
            .filter(|(_, (normal, dev))| normal.iter().chain(dev).all(|d| placed.contains(d)))
            .map(|(name, _)| name.clone())
            .collect();
        assert!(!ready.is_empty(), "the allowed edges form a cycle among {:?}", remaining.keys());
        for name in ready {
            remaining.remove(&name);
            placed.insert(name);
        }
    }
    Ok(())
}

#[test]
fn internal_crates_come_from_workspace_dependencies() -> TestResult {
    let root: toml::Table = std::fs::read_to_string(workspace_root().join("Cargo.toml"))?.parse()?;
    let declared = root["workspace"]["dependencies"].as_table().ok_or("no [workspace.dependencies]")?;
    let members = members()?;
    let mut problems = Vec::new();
    for m in &members {
        // Every library crate is declared once, by path, for the others to inherit.
        let is_library = m.manifest.parent().is_some_and(|dir| dir.join("src/lib.rs").exists());
        if is_library && !declared.contains_key(&m.name) {
            problems.push(format!("{} is not in [workspace.dependencies]", m.name));
        }
        let manifest: toml::Table = std::fs::read_to_string(&m.manifest)?.parse()?;
        for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
            let Some(deps) = manifest.get(section).and_then(toml::Value::as_table) else { continue };
            for (dep, spec) in deps {
                let internal = members.iter().any(|o| &o.name == dep);
                let inherited = spec.get("workspace").and_then(toml::Value::as_bool) == Some(true);
                if internal && !inherited {
                    problems.push(format!("{}: [{section}] {dep} must be `{{ workspace = true }}`", m.name));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}

#[test]
fn readme_layout_table_names_every_crate() -> TestResult {
    let readme = std::fs::read_to_string(workspace_root().join("README.md"))?;
    let listed: BTreeSet<String> = table_after(&readme, "## Layout")
        .into_iter()
        .filter_map(|row| row.first().map(|c| c.trim_matches('`').trim_end_matches('/').to_owned()))
        .collect();
    let root = workspace_root().canonicalize()?;
    let mut missing = Vec::new();
    for m in members()? {
        let dir = m.manifest.parent().ok_or("manifest without a directory")?.canonicalize()?;
        let relative = dir.strip_prefix(&root)?.to_string_lossy().into_owned();
        if !listed.contains(&relative) {
            missing.push(relative);
        }
    }
    assert!(missing.is_empty(), "README's Layout table does not list {missing:?}");
    Ok(())
}
