//! A crate's import graph, file by file, from its sources alone (no compiler): every
//! path a file names (`use` trees, grouped and nested, with `crate::`, `super::`,
//! `self::` and child-module prefixes; and paths written inline in code) is resolved to
//! the file that defines what it names. A `mod.rs` (or `lib.rs`) that only declares
//! modules and re-exports is *glue*: a path through it is followed to the file under it
//! that defines the item, and glue files themselves are left out of the graph. Test code
//! (`#[cfg(test)]` sections, `tests.rs` files) is left out: tests may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One source file of a crate.
pub struct SourceFile {
    pub path: PathBuf,
    /// Its module path in the crate (`["replicated", "state", "apply"]`; `[]` for the root).
    pub module: Vec<String>,
    /// Code without comments, string literals and test sections.
    pub code: String,
    /// Names it defines at its top level.
    pub items: BTreeSet<String>,
    /// Declarations and re-exports only.
    pub glue: bool,
}

/// A crate's files and the edges between them (file -> files it imports from).
pub struct ImportGraph {
    pub src: PathBuf,
    pub files: Vec<SourceFile>,
    pub edges: BTreeMap<usize, BTreeSet<usize>>,
}

/// Comments, string and char literals blanked out (so neither a doc comment nor a
/// message that mentions `crate::x` counts), keeping line structure.
fn strip(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if b[i] == '\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !ident_char(b.get(i.wrapping_sub(1)).copied())
        {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                if b[j] == '\n' {
                    out.push('\n');
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    i += 1;
                } else if b[i] == '\n' {
                    out.push('\n');
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}'), not a lifetime ('a).
            let close = if next == Some('\\') {
                (i + 2..b.len().min(i + 12)).find(|&j| b[j] == '\'')
            } else if b.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match close {
                Some(j) => {
                    out.push_str("' '");
                    i = j + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_char(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The code before the first `#[cfg(test)]` (test modules sit at the end of a file).
fn without_tests(code: &str) -> &str {
    code.split("#[cfg(test)]").next().unwrap_or("")
}

/// Top-level names a file defines.
fn items(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in code.lines() {
        if line.starts_with(char::is_whitespace) {
            continue;
        }
        let mut l = line.trim();
        for v in ["pub(crate) ", "pub(super) ", "pub "] {
            if let Some(r) = l.strip_prefix(v) {
                l = r;
                break;
            }
        }
        for q in ["async ", "unsafe "] {
            l = l.strip_prefix(q).unwrap_or(l);
        }
        if let Some(r) = l.strip_prefix("macro_rules! ") {
            l = r;
        } else if let Some(kind) = [
            "struct ",
            "enum ",
            "fn ",
            "trait ",
            "type ",
            "static ",
            "mod ",
            "union ",
            "const fn ",
            "const ",
        ]
        .iter()
        .find(|k| l.starts_with(*k))
        {
            l = l[kind.len()..].trim_start_matches("mut ");
        } else {
            continue;
        }
        let name: String = l.chars().take_while(|c| ident_char(Some(*c))).collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

/// Whether a file only declares modules, re-exports and type aliases.
fn is_glue(code: &str) -> bool {
    let mut in_use = false;
    for line in code.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with("#[") || l.starts_with("#![") {
            continue;
        }
        if in_use {
            in_use = !l.ends_with(';');
            continue;
        }
        let l = l
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub(super) ")
            .trim_start_matches("pub ");
        if l.starts_with("mod ") && l.ends_with(';') {
            continue;
        }
        if l.starts_with("use ") {
            in_use = !l.ends_with(';');
            continue;
        }
        if l.starts_with("type ") && l.ends_with(';') {
            continue;
        }
        return false;
    }
    true
}

/// Every path a `use` statement names, its groups expanded.
fn use_paths(code: &str) -> (Vec<Vec<String>>, String) {
    let mut paths = Vec::new();
    let mut rest_code = String::new();
    let mut rest = code;
    loop {
        let found = find_word(rest, "use");
        let Some(i) = found else {
            rest_code.push_str(rest);
            break;
        };
        rest_code.push_str(&rest[..i]);
        let after = &rest[i + 3..];
        let Some(end) = after.find(';') else {
            break;
        };
        expand(&mut paths, &[], after[..end].trim());
        rest = &after[end + 1..];
    }
    (paths, rest_code)
}

fn find_word(s: &str, w: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = s[from..].find(w) {
        let at = from + i;
        let before = s[..at].chars().last();
        let after = s[at + w.len()..].chars().next();
        if !ident_char(before) && after.is_some_and(char::is_whitespace) {
            return Some(at);
        }
        from = at + w.len();
    }
    None
}

fn expand(out: &mut Vec<Vec<String>>, prefix: &[String], tree: &str) {
    let tree = tree.trim();
    if tree.is_empty() {
        return;
    }
    if let Some(open) = tree.find('{') {
        let head: Vec<String> = tree[..open]
            .trim()
            .trim_end_matches("::")
            .split("::")
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let close = tree.rfind('}').unwrap_or(tree.len());
        let inner = &tree[open + 1..close];
        let mut base = prefix.to_vec();
        base.extend(head);
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(out, &base, &inner[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(out, &base, &inner[start..]);
        return;
    }
    let name = tree.split(" as ").next().unwrap_or(tree).trim();
    let mut p = prefix.to_vec();
    p.extend(
        name.split("::")
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty()),
    );
    if p.last().is_some_and(|l| l == "self") {
        p.pop();
    }
    out.push(p);
}

/// Paths written inline: `crate::a::b`, `super::x`, `self::y`.
fn inline_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            if ident_char(code[..at].chars().last()) || code[..at].ends_with("::") {
                continue;
            }
            let mut p = Vec::new();
            let mut rest = &code[at..];
            loop {
                let seg: String = rest.chars().take_while(|c| ident_char(Some(*c))).collect();
                if seg.is_empty() {
                    break;
                }
                rest = &rest[seg.len()..];
                p.push(seg);
                match rest.strip_prefix("::") {
                    Some(r) => rest = r,
                    None => break,
                }
            }
            out.push(p);
        }
    }
    out
}

/// Every `.rs` file under `src`, with its text.
pub fn rust_files(src: &Path) -> Vec<(PathBuf, String)> {
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

impl ImportGraph {
    /// Reads every `.rs` file under `src` (a crate's `src/`).
    pub fn read(src: &Path) -> ImportGraph {
        let mut files = Vec::new();
        for (p, text) in rust_files(src) {
            let rel = p.strip_prefix(src).unwrap();
            let mut module: Vec<String> = rel
                .components()
                .map(|c| {
                    c.as_os_str()
                        .to_string_lossy()
                        .trim_end_matches(".rs")
                        .to_string()
                })
                .collect();
            if matches!(
                module.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                module.pop();
            }
            if module.last().is_some_and(|m| m == "tests") {
                continue;
            }
            let code = without_tests(&strip(&text)).to_string();
            let root = rel
                .file_name()
                .is_some_and(|n| n == "mod.rs" || n == "lib.rs" || n == "main.rs");
            files.push(SourceFile {
                glue: root && is_glue(&code),
                items: items(&code),
                path: p,
                module,
                code,
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let mut g = ImportGraph {
            src: src.to_path_buf(),
            files,
            edges: BTreeMap::new(),
        };
        for i in 0..g.files.len() {
            if g.files[i].glue {
                continue;
            }
            let (mut paths, rest) = use_paths(&g.files[i].code);
            paths.extend(inline_paths(&rest));
            let mut to = BTreeSet::new();
            for p in paths {
                if let Some(t) = g.resolve(i, &p)
                    && t != i
                    && !g.files[t].glue
                {
                    to.insert(t);
                }
            }
            g.edges.insert(i, to);
        }
        g
    }

    fn file_of(&self, module: &[String]) -> Option<usize> {
        self.files.iter().position(|f| f.module == module)
    }

    /// The file that defines what `path`, named in file `from`, points at (None: outside
    /// the crate).
    fn resolve(&self, from: usize, path: &[String]) -> Option<usize> {
        let here = &self.files[from].module;
        let first = path.first()?;
        let abs: Vec<String> = match first.as_str() {
            "crate" => path[1..].to_vec(),
            "self" => here.iter().chain(&path[1..]).cloned().collect(),
            "super" => {
                let mut base = here.clone();
                let mut i = 0;
                while path.get(i).is_some_and(|s| s == "super") {
                    base.pop();
                    i += 1;
                }
                base.into_iter().chain(path[i..].iter().cloned()).collect()
            }
            // A child module named without a prefix (2018 paths).
            _ => {
                let mut child = here.clone();
                child.push(first.clone());
                self.file_of(&child)?;
                here.iter().chain(path).cloned().collect()
            }
        };
        // The deepest module the path reaches, then the item under it.
        let mut depth = abs.len();
        let module = loop {
            if let Some(f) = self.file_of(&abs[..depth]) {
                break f;
            }
            depth = depth.checked_sub(1)?;
        };
        let item = abs.get(depth);
        if !self.files[module].glue {
            return Some(module);
        }
        // Through glue: the file under it that defines the item.
        let Some(item) = item.filter(|i| *i != "*") else {
            return Some(module);
        };
        let under = &self.files[module].module;
        let mut best: Option<usize> = None;
        for (k, f) in self.files.iter().enumerate() {
            if k != module
                && f.module.starts_with(under)
                && f.items.contains(item)
                && !f.glue
                && best.is_none_or(|b| self.files[b].module.len() > f.module.len())
            {
                best = Some(k);
            }
        }
        Some(best.unwrap_or(module))
    }

    /// A file's name relative to the crate's `src/`.
    pub fn name(&self, i: usize) -> String {
        self.files[i]
            .path
            .strip_prefix(&self.src)
            .unwrap()
            .display()
            .to_string()
    }

    /// Every cycle between files, each named file by file (one per strongly connected
    /// group, as found).
    pub fn cycles(&self) -> Vec<String> {
        fn visit(
            g: &ImportGraph,
            m: usize,
            path: &mut Vec<usize>,
            done: &mut BTreeSet<usize>,
            out: &mut Vec<String>,
        ) {
            if let Some(i) = path.iter().position(|p| *p == m) {
                let names: Vec<String> = path[i..].iter().chain([&m]).map(|f| g.name(*f)).collect();
                out.push(names.join(" -> "));
                return;
            }
            if !done.insert(m) {
                return;
            }
            path.push(m);
            for d in g.edges.get(&m).into_iter().flatten() {
                visit(g, *d, path, done, out);
            }
            path.pop();
        }
        let mut out = Vec::new();
        let mut done = BTreeSet::new();
        for m in self.edges.keys() {
            visit(self, *m, &mut Vec::new(), &mut done, &mut out);
        }
        out
    }

    /// The top-level module of file `i` (`""` for the crate root).
    pub fn top(&self, i: usize) -> String {
        self.files[i].module.first().cloned().unwrap_or_default()
    }
}

/// The parser itself, on the forms the crates use.
#[test]
fn paths_are_read_from_every_form_of_use_and_from_code() {
    let code = strip(
        "use super::{a::{B, c::D as E}, f};\nuse crate::x::y::*;\npub(crate) use self::g::H;\n\
         // use crate::commented::Out;\nfn k() { let s = \"crate::in_a_string\"; crate::m::n(); super::super::p::Q::new(); }\n",
    );
    let (uses, rest) = use_paths(&code);
    let text: Vec<String> = uses.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        text,
        [
            "super::a::B",
            "super::a::c::D",
            "super::f",
            "crate::x::y::*",
            "self::g::H"
        ]
    );
    let inline: Vec<String> = inline_paths(&rest).iter().map(|p| p.join("::")).collect();
    assert_eq!(inline, ["crate::m::n", "super::super::p::Q::new"]);
    assert_eq!(
        items(
            "pub struct A;\npub(crate) fn b() {}\nconst C: u8 = 1;\npub const fn d() {}\n    fn nested() {}\nimpl A {}\n"
        ),
        ["A", "C", "b", "d"].iter().map(|s| s.to_string()).collect()
    );
    assert!(is_glue(&strip(
        "//! doc\nmod a;\npub mod b;\npub use a::*;\npub use b::{\n    C,\n    D,\n};\npub type Id = u64;\n"
    )));
    assert!(!is_glue("mod a;\npub fn f() {}\n"));
}
