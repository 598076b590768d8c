//! No import cycle between the top-level modules of `runtime/src`.
//!
//! A cycle (`api` uses `daemon`, `daemon` uses `api`) means neither module can
//! be read, tested or replaced without the other. This test reads the sources
//! (no compiler help): every path that reaches the crate root names a
//! top-level module, whether it is a `use crate::x::…`, a grouped
//! `use crate::{x::…, y::…}`, an inline `crate::x::y(…)`, a `super::` chain
//! that climbs out of its top-level module, or `jobstack::x` in the binary's
//! modules (`cli`). Comments (doc comments included, so intra-doc links do not
//! count), string and character literals are skipped; `#[cfg(test)]` modules
//! count like any other code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Where one top-level module names another: `from -> to` at these places.
type Edges = BTreeMap<(String, String), Vec<String>>;

#[test]
fn no_import_cycle_between_top_level_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = top_level_edges(&src);
    assert!(
        !edges.is_empty(),
        "the scan found no reference at all: is {} the source directory?",
        src.display()
    );
    let cycles = cycles(&edges);
    let report: Vec<String> = cycles
        .iter()
        .map(|members| {
            let mut text = format!("cycle between {}:", members.join(", "));
            for ((from, to), places) in &edges {
                if members.contains(from) && members.contains(to) {
                    text.push_str(&format!("\n  {from} -> {to}: {}", places.join(", ")));
                }
            }
            text
        })
        .collect();
    assert!(report.is_empty(), "{}", report.join("\n"));
}

#[test]
fn the_scan_sees_every_kind_of_path() {
    let code = r#"
        //! crate::doc must not count: [`crate::docs`]
        use crate::grouped_a::{X, Y};
        use crate::{grouped_b::Z, grouped_c, grouped_d::{self, W}};
        fn f() { let _ = crate::inline::g("crate::in_a_string"); let _c = '{'; let _q = '\''; }
        pub(crate) fn g() {}
        macro_rules! m { () => { $crate::in_a_macro::h() } }
        /* crate::block /* nested */ crate::block_too */
        use super::super::climbed;
        mod tests {
            use super::super::super::{climbed_a, climbed_b::Q};
            use super::super::stays_in_top;
        }
        use super::super::after_the_inline_module;
    "#;
    // The file `top/inner.rs`: module path `top::inner`.
    let names = root_references(code, &["top".into(), "inner".into()], &[]);
    assert_eq!(
        names,
        [
            "grouped_a",
            "grouped_b",
            "grouped_c",
            "grouped_d",
            "inline",
            "climbed",
            "climbed_a",
            "climbed_b",
            "after_the_inline_module"
        ]
    );
    // `jobstack::x` counts only where asked for (the binary's modules).
    let names = root_references("use jobstack::protocol::Lease;", &["cli".into()], &["jobstack"]);
    assert_eq!(names, ["protocol"]);
}

#[test]
fn a_cycle_is_found_and_named() {
    let mut edges = Edges::new();
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "e")] {
        edges.insert((from.into(), to.into()), vec![format!("{from}.rs:1")]);
    }
    assert_eq!(cycles(&edges), [["a", "b", "c"]]);
}

/// Every reference from one top-level module to another under `src`.
fn top_level_edges(src: &Path) -> Edges {
    let mut tops = BTreeSet::new();
    for entry in std::fs::read_dir(src).expect("read src") {
        let path = entry.expect("read src").path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir()
            || (path.extension().is_some_and(|e| e == "rs") && name != "lib" && name != "main")
        {
            tops.insert(name);
        }
    }
    let mut edges = Edges::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).unwrap();
        let mut module: Vec<String> = relative
            .iter()
            .map(|part| part.to_string_lossy().trim_end_matches(".rs").to_string())
            .collect();
        if module.last().is_some_and(|last| last == "mod") {
            module.pop();
        }
        let top = module[0].clone();
        if top == "lib" || top == "main" {
            continue;
        }
        // The binary (`main.rs` and its `cli`) reaches the library by its name.
        let library_names: &[&str] = if top == "cli" { &["jobstack"] } else { &[] };
        let code = std::fs::read_to_string(&file).expect("read source");
        for (name, line) in root_references_at(&code, &module, library_names) {
            if name != top && tops.contains(&name) {
                edges
                    .entry((top.clone(), name))
                    .or_default()
                    .push(format!("{}:{line}", relative.display()));
            }
        }
    }
    edges
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read directory")
        .map(|e| e.expect("read directory").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The top-level modules `code` names through the crate root (see the module
/// documentation), in order of appearance.
fn root_references(code: &str, module: &[String], library_names: &[&str]) -> Vec<String> {
    root_references_at(code, module, library_names).into_iter().map(|(name, _)| name).collect()
}

/// [`root_references`] with the line of each.
fn root_references_at(
    code: &str, module: &[String], library_names: &[&str],
) -> Vec<(String, usize)> {
    let tokens = tokens(code);
    let mut found = Vec::new();
    // Inline modules (`mod tests { … }`) make `super` climb one step less.
    let mut inline_modules: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let (token, line) = (&tokens[i].0, tokens[i].1);
        match token.as_str() {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                if inline_modules.last() == Some(&depth) {
                    inline_modules.pop();
                }
            }
            "mod" if tokens.get(i + 2).is_some_and(|t| t.0 == "{") => {
                inline_modules.push(depth);
            }
            _ => {}
        }
        let starts_path = i == 0 || !matches!(tokens[i - 1].0.as_str(), "::" | "$");
        let followed_by_path = tokens.get(i + 1).is_some_and(|t| t.0 == "::");
        if !(starts_path && followed_by_path) {
            i += 1;
            continue;
        }
        // Resolve the path's prefix to a module depth: 0 is the crate root.
        let mut level = module.len() + inline_modules.len();
        let mut j = i;
        if token == "crate" || library_names.contains(&token.as_str()) {
            level = 0;
            j += 2;
        } else if token == "super" {
            while tokens.get(j).is_some_and(|t| t.0 == "super")
                && tokens.get(j + 1).is_some_and(|t| t.0 == "::")
            {
                level = level.saturating_sub(1);
                j += 2;
            }
        } else {
            i += 1;
            continue;
        }
        if level == 0 {
            match tokens.get(j).map(|t| t.0.as_str()) {
                Some("{") => {
                    // A group: the first name of each item at its own level.
                    let mut group_depth = 0;
                    let mut item_start = true;
                    let mut k = j;
                    while let Some((t, _)) = tokens.get(k) {
                        match t.as_str() {
                            "{" => group_depth += 1,
                            "}" => {
                                group_depth -= 1;
                                if group_depth == 0 {
                                    break;
                                }
                            }
                            "," if group_depth == 1 => item_start = true,
                            name if item_start && group_depth == 1 => {
                                item_start = false;
                                if is_identifier(name) && name != "self" {
                                    found.push((name.to_string(), line));
                                }
                            }
                            _ => {}
                        }
                        k += 1;
                    }
                }
                Some(name) if is_identifier(name) => found.push((name.to_string(), line)),
                _ => {}
            }
        }
        i = j.max(i + 1);
    }
    found
}

fn is_identifier(token: &str) -> bool {
    token.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Identifiers, `::` and single punctuation characters of `code`, with their
/// line; comments and literals dropped.
fn tokens(code: &str) -> Vec<(String, usize)> {
    let chars: Vec<char> = code.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let at = |i: usize, s: &str| s.chars().enumerate().all(|(k, c)| chars.get(i + k) == Some(&c));
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if at(i, "//") {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if at(i, "/*") {
            let mut nesting = 0;
            while i < chars.len() {
                if at(i, "/*") {
                    nesting += 1;
                    i += 2;
                } else if at(i, "*/") {
                    nesting -= 1;
                    i += 2;
                    if nesting == 0 {
                        break;
                    }
                } else {
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if c == '"' || ((c == 'r' || c == 'b') && raw_string_start(&chars, i).is_some()) {
            // A string: plain (with escapes), raw (`r#"…"#`) or byte.
            let (hashes, quote) =
                if c == '"' { (None, i) } else { raw_string_start(&chars, i).unwrap() };
            i = quote + 1;
            while i < chars.len() {
                if chars[i] == '\n' {
                    line += 1;
                }
                match hashes {
                    None if chars[i] == '\\' => i += 1,
                    None if chars[i] == '"' => break,
                    Some(n)
                        if chars[i] == '"' && (1..=n).all(|k| chars.get(i + k) == Some(&'#')) =>
                    {
                        i += n;
                        break;
                    }
                    _ => {}
                }
                i += 1;
            }
            i += 1;
        } else if c == '\'' {
            // A character literal, or a lifetime (left as punctuation).
            let end = if chars.get(i + 1) == Some(&'\\') {
                (i + 3..chars.len()).find(|&k| chars[k] == '\'')
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => i = end + 1,
                None => i += 1,
            }
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push((chars[start..i].iter().collect(), line));
        } else if at(i, "::") {
            tokens.push(("::".into(), line));
            i += 2;
        } else if c.is_whitespace() {
            i += 1;
        } else {
            tokens.push((c.to_string(), line));
            i += 1;
        }
    }
    tokens
}

/// At a `r"`, `r#"`, `br"`, `b"` …: the number of `#` (`Some(0)` for a byte
/// string, which has escapes like a plain one but is handled the same here)
/// and the index of the opening quote.
fn raw_string_start(chars: &[char], i: usize) -> Option<(Option<usize>, usize)> {
    if i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_') {
        return None;
    }
    let mut k = i;
    if chars.get(k) == Some(&'b') {
        k += 1;
        if chars.get(k) == Some(&'"') {
            return Some((None, k));
        }
    }
    if chars.get(k) != Some(&'r') {
        return None;
    }
    k += 1;
    let hashes = (k..chars.len()).take_while(|&m| chars[m] == '#').count();
    (chars.get(k + hashes) == Some(&'"')).then_some((Some(hashes), k + hashes))
}

/// The groups of two or more modules that reach each other (strongly
/// connected components), each sorted, in order of their first member.
fn cycles(edges: &Edges) -> Vec<Vec<String>> {
    let mut graph: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        graph.entry(from).or_default().push(to);
        graph.entry(to).or_default();
    }
    let reaches = |start: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![start];
        while let Some(node) = stack.pop() {
            for &next in &graph[node] {
                if seen.insert(next) {
                    stack.push(next);
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&str, BTreeSet<&str>> = graph.keys().map(|&n| (n, reaches(n))).collect();
    let mut groups: Vec<Vec<String>> = Vec::new();
    for (&node, reached) in &reach {
        if !reached.contains(node) || groups.iter().any(|g| g.iter().any(|m| m == node)) {
            continue;
        }
        let group = reach
            .keys()
            .filter(|&&other| reached.contains(other) && reach[other].contains(node))
            .map(|other| other.to_string())
            .collect();
        groups.push(group);
    }
    groups
}
