//! The proxy crate's layers hold (DESIGN.md section 10, the diagram at the top of src/lib.rs):
//! a file imports only files of its own layer or of layers below, and no files import each other
//! in a circle. Read from the `crate::`, `super::`, `self::` and child-module paths of every file
//! under src/ (comments, strings, test modules and `pub use` re-exports left out: a re-export is a
//! module's facade, not a use), so it holds for the code, not for what a diagram says.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first: the top-level modules of each. A module not listed fails the test,
/// so a new module has to be placed.
const LAYERS: &[&[&str]] = &[
    &["logfile", "privileges"],
    &["config", "event", "metrics"],
    &["tls", "auth", "extension"],
    &["route"],
    &["upstream"],
    &["hub"],
    &["cmd", "beacon", "client", "http", "admin"],
    &["reload", "server", "cli", "error", "check"],
];

/// Imports allowed against the layers, each naming the file and the file it imports: none. The
/// test fails on any import against the layers not listed here, and on an entry that no longer
/// happens, so an entry is a debt someone chose to take, visible in review.
const NOT_YET: &[(&str, &str)] = &[];

/// One source file: its module path (`client::handler`) and the module paths it names.
struct File {
    module: Vec<String>,
    uses: BTreeSet<Vec<String>>,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "bin") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` and `src/a/b/mod.rs` are `a::b`; `src/lib.rs` is the root.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The source without comments, string literals and `#[cfg(test)]` modules.
fn code_of(text: &str) -> String {
    let mut out = String::new();
    let mut skip_depth: Option<i32> = None;
    let mut depth = 0i32;
    let mut pending_test = false;
    let mut in_reexport = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        // A re-export (`pub use child::Item;`) is a module's facade, not a use of the item.
        if in_reexport || trimmed.starts_with("pub use ") || trimmed.starts_with("pub(crate) use ") {
            in_reexport = !line.contains(';');
            continue;
        }
        if trimmed.starts_with("#[cfg(test)]") {
            pending_test = true;
            continue;
        }
        if pending_test && skip_depth.is_none() && trimmed.starts_with("mod ") {
            pending_test = false;
            if !trimmed.ends_with(';') {
                skip_depth = Some(depth);
            } else {
                continue;
            }
        } else if !trimmed.is_empty() && !trimmed.starts_with("#[") {
            pending_test = false;
        }
        let mut in_string = false;
        let mut prev = ' ';
        let mut kept = String::new();
        for c in line.chars() {
            if c == '"' && prev != '\\' && prev != '\'' {
                in_string = !in_string;
            } else if !in_string {
                if c == '/' && prev == '/' {
                    kept.pop();
                    break;
                }
                if c == '{' {
                    depth += 1;
                } else if c == '}' {
                    depth -= 1;
                }
                kept.push(c);
            }
            prev = c;
        }
        if let Some(d) = skip_depth {
            if depth <= d && line.contains('}') {
                skip_depth = None;
            }
            continue;
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

/// Every path of `code` that starts with `crate::`, `super::` or `self::`, resolved against
/// `module`, including each name of a `use x::{a, b::c}` group.
fn paths_of(module: &[String], code: &str) -> BTreeSet<Vec<String>> {
    let mut out = BTreeSet::new();
    let bytes = code.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    // The child modules this file declares (`mod x;`, `pub mod x;`), as `x::`.
    let children: Vec<String> = code
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub(crate) ").or_else(|| l.strip_prefix("pub ")).unwrap_or(l);
            l.strip_prefix("mod ").and_then(|m| m.strip_suffix(';')).map(|m| format!("{}::", m.trim()))
        })
        .collect();
    let mut i = 0;
    while i < bytes.len() {
        let at_word = i == 0 || !ident(bytes[i - 1]) && bytes[i - 1] != b':';
        let rest = &code[i..];
        let child = children.iter().find(|c| rest.starts_with(c.as_str()));
        if at_word && child.is_some() {
            // A path into a child module declared here (`mod sink;` ... `sink::channel()`).
            let (end, found) = tail_paths(code, i);
            for tail in found {
                let mut p = module.to_vec();
                p.extend(tail);
                out.insert(p);
            }
            i = end.max(i + 1);
            continue;
        }
        let start = ["crate::", "super::", "self::"].iter().find(|p| rest.starts_with(**p));
        if !at_word || start.is_none() {
            i += 1;
            continue;
        }
        // The base: the crate root, this module (`self`) or its parent (`super`, repeatable).
        let mut base: Vec<String> = if rest.starts_with("crate::") { Vec::new() } else { module.to_vec() };
        let mut j = i;
        loop {
            let rest = &code[j..];
            if rest.starts_with("crate::") {
                j += 7;
            } else if rest.starts_with("super::") {
                base.pop();
                j += 7;
            } else if rest.starts_with("self::") {
                j += 6;
            } else {
                break;
            }
        }
        let (end, found) = tail_paths(code, j);
        for tail in found {
            let mut p = base.clone();
            p.extend(tail);
            out.insert(p);
        }
        i = end.max(i + 1);
    }
    out
}

/// The paths after position `j`: `a::b::C`, or the members of a `{...}` group.
fn tail_paths(code: &str, mut j: usize) -> (usize, Vec<Vec<String>>) {
    let bytes = code.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut prefix = Vec::new();
    loop {
        let s = j;
        while j < bytes.len() && ident(bytes[j]) {
            j += 1;
        }
        if s == j {
            break;
        }
        prefix.push(code[s..j].to_string());
        if code[j..].starts_with("::") {
            j += 2;
            if code[j..].starts_with('{') {
                // A group: split at top-level commas.
                let mut depth = 0;
                let mut k = j;
                let mut items = Vec::new();
                let mut item_start = j + 1;
                while k < bytes.len() {
                    match bytes[k] {
                        b'{' => depth += 1,
                        b'}' => {
                            depth -= 1;
                            if depth == 0 {
                                items.push(&code[item_start..k]);
                                break;
                            }
                        }
                        b',' if depth == 1 => {
                            items.push(&code[item_start..k]);
                            item_start = k + 1;
                        }
                        _ => {}
                    }
                    k += 1;
                }
                let mut found = Vec::new();
                for item in items {
                    let item = item.trim();
                    if item.is_empty() || item == "self" {
                        found.push(prefix.clone());
                        continue;
                    }
                    let (_, sub) = tail_paths(item, 0);
                    for s in sub {
                        let mut p = prefix.clone();
                        p.extend(s);
                        found.push(p);
                    }
                }
                return (k, found);
            }
        } else {
            break;
        }
    }
    (j, vec![prefix])
}

/// The file (by module path) a path names: its longest prefix that is a file's module.
fn owner<'a>(path: &[String], modules: &'a BTreeSet<Vec<String>>) -> Option<&'a Vec<String>> {
    (1..=path.len()).rev().find_map(|n| modules.get(&path[..n]))
}

fn layer_of(module: &[String]) -> Option<usize> {
    let top = module.first()?;
    LAYERS.iter().position(|layer| layer.contains(&top.as_str()))
}

fn name(module: &[String]) -> String {
    if module.is_empty() {
        "crate".into()
    } else {
        module.join("::")
    }
}

fn read_crate() -> BTreeMap<Vec<String>, File> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut out = BTreeMap::new();
    for path in files {
        if path.file_name().is_some_and(|n| n == "main.rs" || n == "tests.rs") {
            continue;
        }
        let module = module_of(&src, &path);
        let code = code_of(&std::fs::read_to_string(&path).unwrap());
        let uses = paths_of(&module, &code);
        out.insert(module.clone(), File { module, uses });
    }
    out
}

/// The file-to-file imports: (importer, imported), each once.
fn edges(files: &BTreeMap<Vec<String>, File>) -> BTreeSet<(String, String)> {
    let modules: BTreeSet<Vec<String>> = files.keys().cloned().collect();
    let mut out = BTreeSet::new();
    for file in files.values() {
        for path in &file.uses {
            if let Some(to) = owner(path, &modules) {
                // The root only declares modules and re-exports; a parent declaring its children is
                // not an import.
                if to != &file.module && !to.is_empty() && !file.module.is_empty() {
                    out.insert((name(&file.module), name(to)));
                }
            }
        }
    }
    out
}

/// The strongly connected components of more than one file (Tarjan).
fn circles(edges: &BTreeSet<(String, String)>) -> Vec<Vec<String>> {
    let mut graph: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges {
        graph.entry(a).or_default().push(b);
        graph.entry(b).or_default();
    }
    struct State<'a> {
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(v: &'a str, g: &BTreeMap<&'a str, Vec<&'a str>>, s: &mut State<'a>) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on.insert(v);
        for &w in &g[v] {
            if !s.index.contains_key(w) {
                visit(w, g, s);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for &v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(v, &graph, &mut s);
        }
    }
    s.out
}

#[test]
fn modules_import_only_downwards_and_never_in_a_circle() {
    let files = read_crate();
    let edges = edges(&files);
    assert!(edges.len() > 50, "the scan found only {} imports: it is broken", edges.len());
    let mut problems = Vec::new();
    for file in files.keys().filter(|m| !m.is_empty()) {
        if layer_of(file).is_none() {
            problems.push(format!("{}: a module of no layer (add it to LAYERS)", name(file)));
        }
    }
    let allowed: BTreeSet<(String, String)> = NOT_YET.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    for (from, to) in &edges {
        let parts = |s: &str| s.split("::").map(str::to_string).collect::<Vec<_>>();
        let (lf, lt) = (layer_of(&parts(from)), layer_of(&parts(to)));
        if let (Some(lf), Some(lt)) = (lf, lt) {
            if lt > lf && !allowed.contains(&(from.clone(), to.clone())) {
                problems.push(format!("{from} (layer {lf}) imports {to} (layer {lt}), a layer above it"));
            }
        }
    }
    let within: BTreeSet<(String, String)> = edges.iter().filter(|e| !allowed.contains(*e)).cloned().collect();
    for circle in circles(&within) {
        let inside: Vec<String> = within
            .iter()
            .filter(|(a, b)| circle.contains(a) && circle.contains(b))
            .map(|(a, b)| format!("{a} -> {b}"))
            .collect();
        problems.push(format!("files importing each other in a circle: {} ({})", circle.join(", "), inside.join("; ")));
    }
    for stale in allowed.difference(&edges) {
        problems.push(format!("NOT_YET lists {} -> {}, which no longer happens: remove it", stale.0, stale.1));
    }
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn the_scan_reads_groups_super_and_skips_comments() {
    let module = vec!["client".to_string(), "handler".to_string()];
    let code = code_of(
        "use crate::hub::{Hub, x::{Y, Z}};\n// use crate::nope::X;\nuse super::sink::ToClient;\nlet s = \"crate::str::X\";\n#[cfg(test)]\nmod tests {\n    use crate::intest::X;\n}\nfn f() { crate::after::g(); }\n",
    );
    let found = paths_of(&module, &code);
    let names: BTreeSet<String> = found.iter().map(|p| p.join("::")).collect();
    for want in ["hub::Hub", "hub::x::Y", "hub::x::Z", "client::sink::ToClient", "after::g"] {
        assert!(names.contains(want), "{want} not in {names:?}");
    }
    for unwanted in ["nope::X", "str::X", "intest::X"] {
        assert!(!names.contains(unwanted), "{unwanted} in {names:?}");
    }
    let a_mod_rs = paths_of(&["client".to_string()], "use super::hub::Hub; use self::sink::X;");
    let names: BTreeSet<String> = a_mod_rs.iter().map(|p| p.join("::")).collect();
    assert!(names.contains("hub::Hub") && names.contains("client::sink::X"), "{names:?}");
}
