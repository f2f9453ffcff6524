//! The layering of docs/architecture.md, checked rather than only described: every
//! `crate::`, `super::`, `self::` (and, in the binary, `socketkit::`) path under `src/` —
//! in `use` trees and inline — is resolved to the module it names and held against the
//! table of allowed imports between the doc's `layers:begin`/`layers:end` markers.
//!
//! It fails when a module imports a layer outside its row (a layer above it: `net` naming
//! `server`, `services` naming `cli`), names another layer's private module past its root
//! (`crate::server::listener::…`), or when sibling modules of one layer import each other
//! in a circle. Test modules (`#[cfg(test)] mod …`) are left out. The check reads paths as
//! written: a circle that runs through a parent's re-export (`super::Item`) is not seen.

mod source;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use crate::support::TestResult;
use source::{clean, libc_calls, paths, rust_files};

/// The binary's modules (`src/main.rs`, `src/cli/`) are one layer, `cli`, of their own crate.
const BINARY: &str = "cli";

#[test]
fn every_module_imports_only_what_docs_architecture_allows() -> TestResult {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let allowed = allowed_imports(&fs::read_to_string(root.join("docs/architecture.md"))?)?;
    let crate_map = CrateMap::read(&root.join("src"))?;
    let mut problems = Vec::new();
    for layer in crate_map.layers() {
        if !allowed.contains_key(&layer) {
            problems.push(format!(
                "module `{layer}` is in no row of docs/architecture.md's table"
            ));
        }
    }
    for file in &crate_map.files {
        for (line, path) in paths(&file.text) {
            if let Some(problem) = crate_map.check(file, &path, &allowed) {
                problems.push(format!("{}:{line}: {problem}", file.shown));
            }
        }
    }
    problems.extend(crate_map.sibling_cycles());
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    Ok(())
}

#[test]
fn raw_libc_calls_are_only_in_src_sys() -> TestResult {
    let crate_map = CrateMap::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))?;
    let calls: Vec<String> = crate_map
        .files
        .iter()
        .filter(|file| file.module.first().is_none_or(|first| first != "sys"))
        .flat_map(|file| {
            libc_calls(&file.text)
                .into_iter()
                .map(move |(line, call)| format!("{}:{line}: libc::{call}(…)", file.shown))
        })
        .collect();
    assert!(
        calls.is_empty(),
        "raw libc calls belong in src/sys:\n{}",
        calls.join("\n")
    );
    assert_eq!(
        libc_calls("let e = libc::EMFILE; let n = libc::c_int::MAX; unsafe { libc::getuid() };"),
        [(1, "getuid".to_owned())]
    );
    Ok(())
}

#[test]
fn the_table_of_allowed_imports_has_no_circle() -> TestResult {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let allowed = allowed_imports(&fs::read_to_string(root.join("docs/architecture.md"))?)?;
    let edges: Vec<(String, String)> = allowed
        .iter()
        .flat_map(|(from, to)| to.iter().map(|to| (from.clone(), to.clone())))
        .collect();
    assert_eq!(find_cycle(&edges), None);
    Ok(())
}

#[test]
fn the_check_catches_what_it_is_for() -> TestResult {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let allowed = allowed_imports(&fs::read_to_string(root.join("docs/architecture.md"))?)?;
    let crate_map = CrateMap::read(&root.join("src"))?;
    let file = |module: &[&str]| SourceFile {
        shown: "planted.rs".into(),
        module: module.iter().map(|m| m.to_string()).collect(),
        binary: false,
        text: String::new(),
    };
    let verdict = |module: &[&str], text: &str| {
        let planted = file(module);
        let found = paths(text);
        assert!(!found.is_empty(), "no path read in {text:?}");
        found
            .iter()
            .find_map(|(_, path)| crate_map.check(&planted, path, &allowed))
    };
    let upward = verdict(&["net", "bind"], "use crate::server::Connection;");
    assert!(upward.is_some_and(|p| p.contains("`net` imports `server`")));
    let services_to_cli = verdict(&["services"], "use crate::cli::args::Cli;");
    assert!(services_to_cli.is_some_and(|p| p.contains("`services` imports `cli`")));
    let internals = verdict(
        &["forward"],
        "use crate::server::{Connection, listener::Listener};",
    );
    assert!(internals.is_some_and(|p| p.contains("private module `server::listener`")));
    let grouped = verdict(
        &["client"],
        "use crate::{error::Error, net::{self, stream::Stream}};",
    );
    assert!(grouped.is_some_and(|p| p.contains("private module `net::stream`")));
    assert_eq!(
        verdict(&["forward"], "use crate::server::{Connection, Handler};"),
        None
    );
    assert_eq!(
        verdict(&["client"], "let s = crate::net::Stream::Tcp(t);"),
        None
    );
    assert_eq!(
        verdict(&["cli"], "use socketkit::services::greeting::Greeting;"),
        None
    );
    let edges = [("a", "b"), ("b", "c"), ("c", "a")].map(|(a, b)| (a.into(), b.into()));
    assert!(find_cycle(&edges).is_some());
    Ok(())
}

/// The table of docs/architecture.md: each module and the modules it may import.
fn allowed_imports(doc: &str) -> Result<BTreeMap<String, BTreeSet<String>>, String> {
    let start = doc
        .find("<!-- layers:begin")
        .ok_or("no layers:begin marker")?;
    let end = doc.find("<!-- layers:end").ok_or("no layers:end marker")?;
    let mut table = BTreeMap::new();
    for row in doc[start..end].lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let names = |cell: &str| -> BTreeSet<String> {
            cell.split(',')
                .map(|name| name.trim().trim_matches('`').to_owned())
                .filter(|name| !name.is_empty() && name != "—")
                .collect()
        };
        let module = cells.get(1).ok_or("a row without a module")?;
        let imports = cells.get(2).ok_or("a row without imports")?;
        table.insert(module.trim_matches('`').to_owned(), names(imports));
    }
    if table.is_empty() {
        return Err("the layers table is empty".into());
    }
    Ok(table)
}

/// One source file: where it is, the module it is, and its text without test modules,
/// comments and string literals.
struct SourceFile {
    shown: String,
    module: Vec<String>,
    binary: bool,
    text: String,
}

/// Every source file, and which modules exist and which are public.
struct CrateMap {
    files: Vec<SourceFile>,
    /// Every module of the library that has a file, by path (`["server", "listener"]`).
    modules: BTreeSet<Vec<String>>,
    /// The modules declared `pub mod`.
    public: BTreeSet<Vec<String>>,
    /// Items the library root re-exports (`crate::Error`), by the module they come from.
    root_items: BTreeMap<String, String>,
}

impl CrateMap {
    fn read(src: &Path) -> std::io::Result<CrateMap> {
        let mut files = Vec::new();
        for path in rust_files(src)? {
            let relative = path.strip_prefix(src).unwrap_or(&path);
            let mut module: Vec<String> = relative
                .with_extension("")
                .iter()
                .map(|part| part.to_string_lossy().into_owned())
                .collect();
            if module
                .last()
                .is_some_and(|last| last == "mod" || last == "lib")
            {
                module.pop();
            }
            let binary = module
                .first()
                .is_some_and(|first| first == BINARY || first == "main");
            if module == ["main"] {
                module = vec![BINARY.to_owned()];
            }
            files.push(SourceFile {
                shown: format!("src/{}", relative.display()),
                module,
                binary,
                text: clean(&fs::read_to_string(&path)?),
            });
        }
        let modules: BTreeSet<Vec<String>> = files
            .iter()
            .filter(|f| !f.binary)
            .map(|f| f.module.clone())
            .collect();
        let mut public = BTreeSet::new();
        let mut root_items = BTreeMap::new();
        for file in files.iter().filter(|f| !f.binary) {
            for line in file.text.lines().map(str::trim) {
                if let Some(name) = line.strip_prefix("pub mod ") {
                    let name = name.trim_end_matches([';', '{', '}', ' ']);
                    let mut module = file.module.clone();
                    module.push(name.to_owned());
                    public.insert(module);
                }
            }
            if file.module.is_empty() {
                for (_, path) in paths(&file.text.replace("pub use ", "use crate::")) {
                    if let [_, from, .., item] = path.as_slice() {
                        root_items.insert(item.clone(), from.clone());
                    }
                }
            }
        }
        Ok(CrateMap {
            files,
            modules,
            public,
            root_items,
        })
    }

    /// The library's top-level modules and the binary.
    fn layers(&self) -> BTreeSet<String> {
        self.files
            .iter()
            .filter_map(|f| f.module.first().cloned())
            .collect()
    }

    /// The problem with `path` written in `file`, if there is one.
    fn check(
        &self,
        file: &SourceFile,
        path: &[String],
        allowed: &BTreeMap<String, BTreeSet<String>>,
    ) -> Option<String> {
        let target = self.resolve(file, path)?;
        let from = file.module.first().map_or("the crate root", String::as_str);
        let to = target.first()?;
        if file.binary && path.first().is_some_and(|p| p == "crate") {
            return None; // the binary's own modules
        }
        if from == to || file.module.is_empty() {
            return None;
        }
        if !allowed.get(from).is_some_and(|row| row.contains(to)) {
            return Some(format!(
                "`{from}` imports `{to}` ({}), which its row of docs/architecture.md does not allow",
                path.join("::")
            ));
        }
        // Past the other layer's root, every module named must be public.
        for depth in 2..=target.len() {
            let module = &target[..depth];
            if self.modules.contains(module) && !self.public.contains(module) {
                return Some(format!(
                    "`{from}` reaches into the private module `{}` ({}); import through `{to}`'s root",
                    module.join("::"),
                    path.join("::")
                ));
            }
        }
        None
    }

    /// The module a path names, as far as it names modules (`crate::net::Stream` names
    /// `net`); `None` for paths outside the crate.
    fn resolve(&self, file: &SourceFile, path: &[String]) -> Option<Vec<String>> {
        let (mut base, rest): (Vec<String>, &[String]) = match path.first()?.as_str() {
            "crate" if file.binary => (vec![BINARY.to_owned()], &path[1..]),
            "crate" | "socketkit" => (Vec::new(), &path[1..]),
            "self" => (file.module.clone(), &path[1..]),
            "super" => {
                let mut base = file.module.clone();
                let mut rest = path;
                while rest.first().is_some_and(|p| p == "super") {
                    base.pop()?;
                    rest = &rest[1..];
                }
                (base, rest)
            }
            _ => return None,
        };
        if (base.is_empty() && !file.binary) || path[0] == "socketkit" {
            // From the library root: a re-exported item stands for its module.
            if let Some(from) = rest.first().and_then(|item| self.root_items.get(item)) {
                return Some(vec![from.clone()]);
            }
        }
        for (at, segment) in rest.iter().enumerate() {
            if segment == "self" {
                break;
            }
            let mut deeper = base.clone();
            deeper.push(segment.clone());
            // A name that ends the path may be an item of the same name as a module
            // (`client::bridge`, the function): only a name with more after it is taken as
            // a submodule. An unknown top-level name is taken as a layer (`crate::cli`).
            let named_into = at + 1 < rest.len();
            if (self.modules.contains(&deeper) && named_into) || deeper.len() == 1 {
                base = deeper;
            } else {
                break;
            }
        }
        Some(base)
    }

    /// Circles among sibling modules (neither an ancestor of the other) of one layer.
    fn sibling_cycles(&self) -> Vec<String> {
        let mut edges = BTreeSet::new();
        for file in self.files.iter().filter(|f| !f.binary) {
            for (_, path) in paths(&file.text) {
                let Some(target) = self.resolve(file, &path) else {
                    continue;
                };
                let related = target.starts_with(&file.module) || file.module.starts_with(&target);
                if !related && target.first() == file.module.first() {
                    edges.insert((file.module.join("::"), target.join("::")));
                }
            }
        }
        let edges: Vec<(String, String)> = edges.into_iter().collect();
        find_cycle(&edges)
            .map(|cycle| {
                format!(
                    "modules import each other in a circle: {}",
                    cycle.join(" → ")
                )
            })
            .into_iter()
            .collect()
    }
}

/// A circle in a directed graph, as the nodes along it, if there is one.
fn find_cycle(edges: &[(String, String)]) -> Option<Vec<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges {
        next.entry(from).or_default().push(to);
    }
    fn visit<'a>(
        node: &'a str,
        next: &BTreeMap<&'a str, Vec<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|&n| n == node) {
            let mut cycle: Vec<String> = path[at..].iter().map(|n| n.to_string()).collect();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if !done.insert(node) {
            return None;
        }
        path.push(node);
        for &to in next.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(to, next, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for &start in next.keys() {
        if let Some(cycle) = visit(start, &next, &mut Vec::new(), &mut done) {
            return Some(cycle);
        }
    }
    None
}
