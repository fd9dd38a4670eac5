//! The tree's shape holds: no import cycles between the modules of `src/`.
//!
//! Each file under `src/` is a module (`src/admission/room.rs` is `admission::room`, a `mod.rs` is
//! its folder). Every path a file names through `crate::…` or `super::…` (in `use` lines, braces
//! expanded, and inline in code) is an edge to the longest module that path starts with. Doc
//! comments, line comments and a file's trailing `#[cfg(test)]` module are not read: they are not
//! the architecture. A cycle in that graph fails the test with the modules of the cycle in order.
//! `mod` declarations are not edges, so a folder's `mod.rs` that only declares its children and
//! documents them adds none; a `mod.rs` that re-exported a child's item while that child used the
//! folder would be a cycle, and is reported as one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path, `["admission", "room"]`; the crate root is `[]`.
type Module = Vec<String>;

fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).expect("file under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem.to_owned());
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments and without its trailing `#[cfg(test)]` module.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod ") {
        Some(at) => &text[..at],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        // A trailing comment: `//` after code, never the one in a URL (`redis://`).
        let code = match line.find(" //") {
            Some(at) => &line[..at],
            None => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// Reads a use-tree at `s` (after `crate::` or `super::`): `a::b`, `a::{b, c::{d, e}}`, `a::*`,
/// `a as b`. Pushes every leaf path, prefixed by `prefix`; returns how many bytes it read.
fn use_tree(s: &[u8], prefix: &[String], out: &mut Vec<Vec<String>>) -> usize {
    let mut i = 0;
    let mut path = prefix.to_vec();
    loop {
        while i < s.len() && s[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < s.len() && s[i] == b'{' {
            i += 1;
            loop {
                while i < s.len() && (s[i].is_ascii_whitespace() || s[i] == b',') {
                    i += 1;
                }
                if i >= s.len() || s[i] == b'}' {
                    i += 1;
                    return i;
                }
                i += use_tree(&s[i..], &path, out);
            }
        }
        let start = i;
        while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'_' || s[i] == b'*') {
            i += 1;
        }
        let ident = String::from_utf8_lossy(&s[start..i]).into_owned();
        if !ident.is_empty() && ident != "self" && ident != "*" {
            path.push(ident);
        }
        if s[i..].starts_with(b"::") {
            i += 2;
            continue;
        }
        out.push(path);
        // Skip an `as name` rename.
        let rest = &s[i..];
        let trimmed = rest.iter().take_while(|c| c.is_ascii_whitespace()).count();
        if rest[trimmed..].starts_with(b"as ") {
            i += trimmed + 3;
            while i < s.len() && s[i].is_ascii_whitespace() {
                i += 1;
            }
            while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'_') {
                i += 1;
            }
        }
        return i;
    }
}

/// Every module path a file names, resolved against the file's own module for `super::`.
fn named_paths(code: &str, me: &Module, is_folder: bool) -> Vec<Vec<String>> {
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    for (word, up) in [("crate::", None), ("super::", Some(()))] {
        let mut from = 0;
        while let Some(found) = code[from..].find(word) {
            let at = from + found;
            from = at + word.len();
            // `x::crate::` or `my_super::` are not ours.
            if at > 0 {
                let before = bytes[at - 1];
                if before.is_ascii_alphanumeric() || before == b'_' || before == b':' {
                    continue;
                }
            }
            let prefix: Vec<String> = match up {
                None => Vec::new(),
                // `super` of `a::b` (a file) is `a`; of `a` (a folder's mod.rs) the root.
                Some(()) => {
                    let mut p = me.clone();
                    if !is_folder || !p.is_empty() {
                        p.pop();
                    }
                    p
                }
            };
            use_tree(&bytes[from..], &prefix, &mut out);
        }
    }
    out
}

/// The module graph: each module and the modules it names (itself and its ancestors left out
/// only when it names itself).
fn graph(files: &[(Module, bool, String)]) -> BTreeMap<Module, BTreeSet<Module>> {
    let modules: BTreeSet<Module> = files.iter().map(|(m, _, _)| m.clone()).collect();
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (me, is_folder, text) in files {
        let entry = edges.entry(me.clone()).or_default();
        for path in named_paths(&code_of(text), me, *is_folder) {
            let target = (0..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|p| modules.contains(p));
            if let Some(target) = target
                && &target != me
            {
                entry.insert(target);
            }
        }
    }
    edges
}

/// One cycle of the graph, as the modules in order (the first repeated at the end), if any.
fn find_cycle(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Option<Vec<Module>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        m: &Module,
        edges: &BTreeMap<Module, BTreeSet<Module>>,
        marks: &mut BTreeMap<Module, Mark>,
        stack: &mut Vec<Module>,
    ) -> Option<Vec<Module>> {
        marks.insert(m.clone(), Mark::Open);
        stack.push(m.clone());
        for next in edges.get(m).into_iter().flatten() {
            match marks.get(next).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let from = stack.iter().position(|s| s == next).expect("on the stack");
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(next, edges, marks, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks.insert(m.clone(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for m in edges.keys() {
        if marks.get(m).copied().unwrap_or(Mark::New) == Mark::New {
            let mut stack = Vec::new();
            if let Some(c) = visit(m, edges, &mut marks, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

fn show(cycle: &[Module]) -> String {
    cycle
        .iter()
        .map(|m| {
            if m.is_empty() {
                "crate".to_owned()
            } else {
                m.join("::")
            }
        })
        .collect::<Vec<_>>()
        .join(" -> ")
}

fn load(src: &Path) -> Vec<(Module, bool, String)> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files
        .into_iter()
        // main.rs is the binary: another crate that only calls into this one.
        .filter(|f| f.file_name().is_some_and(|n| n != "main.rs"))
        .map(|f| {
            let is_folder = f
                .file_name()
                .is_some_and(|n| n == "mod.rs" || n == "lib.rs");
            let text = std::fs::read_to_string(&f).expect("read a source file");
            (module_of(src, &f), is_folder, text)
        })
        .collect()
}

#[test]
fn src_has_no_import_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = graph(&load(&src));
    assert!(edges.len() > 20, "read too few modules: {}", edges.len());
    if let Some(cycle) = find_cycle(&edges) {
        panic!("an import cycle in src/: {}", show(&cycle));
    }
}

/// The check can fail: a cycle planted through a braced `use` and one through `super::` are
/// both found, and the same files without the back edge are not.
#[test]
fn a_planted_cycle_is_found() {
    let file = |m: &[&str], folder: bool, text: &str| {
        (
            m.iter().map(|s| s.to_string()).collect::<Module>(),
            folder,
            text.to_owned(),
        )
    };
    let clean = vec![
        file(&[], true, "pub mod a;\npub mod b;\n"),
        file(&["a"], true, "//! a\npub mod x;\npub mod y;\n"),
        file(
            &["a", "x"],
            false,
            "use crate::{b::Thing, a::y::{self, Other as O}};\n",
        ),
        file(
            &["a", "y"],
            false,
            "// uses crate::a::x in a comment only\npub struct Other;\n",
        ),
        file(
            &["b"],
            false,
            "pub struct Thing;\n#[cfg(test)]\nmod tests { use crate::a::x; }\n",
        ),
    ];
    assert_eq!(find_cycle(&graph(&clean)), None);

    let mut braced = clean.clone();
    braced[4] = file(
        &["b"],
        false,
        "use crate::{a::{x::run}};\npub struct Thing;\n",
    );
    let cycle = find_cycle(&graph(&braced)).expect("the braced cycle");
    assert_eq!(show(&cycle), "a::x -> b -> a::x");

    let mut through_super = clean.clone();
    through_super[3] = file(&["a", "y"], false, "fn f() { super::x::run() }\n");
    let cycle = find_cycle(&graph(&through_super)).expect("the super:: cycle");
    assert_eq!(show(&cycle), "a::x -> a::y -> a::x");
}
