//! Reading Rust source for the layer check: the files, their text without comments,
//! strings and test modules, and the paths and `libc` calls in it.

use std::fs;
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, sorted.
pub fn rust_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            found.extend(rust_files(&path)?);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// The text with comments, string literals and `#[cfg(test)] mod … { … }` blocks blanked
/// (lines are kept, so line numbers hold).
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if in_string => {
                chars.next();
            }
            '"' => in_string = !in_string,
            '/' if !in_string && chars.peek() == Some(&'/') => {
                while chars.peek().is_some_and(|&n| n != '\n') {
                    chars.next();
                }
            }
            '\n' => out.push('\n'),
            _ if in_string => {}
            _ => out.push(c),
        }
    }
    without_test_modules(&out)
}

fn without_test_modules(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let test_module = line.trim() == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod "));
        if !test_module {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        out.push('\n');
        let mut depth = 0i32;
        let mut opened = false;
        for inner in lines.by_ref() {
            out.push('\n');
            depth += inner.matches('{').count() as i32 - inner.matches('}').count() as i32;
            opened |= inner.contains('{');
            if opened && depth <= 0 {
                break;
            }
        }
    }
    out
}

/// Every path starting with `crate`, `super`, `self` or `socketkit`, with its line; a
/// `use` group (`a::{b, c::{d, e}}`) gives one path per leaf.
pub fn paths(text: &str) -> Vec<(usize, Vec<String>)> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0
            || !(bytes[i - 1].is_ascii_alphanumeric()
                || bytes[i - 1] == b'_'
                || bytes[i - 1] == b':');
        let head = ["crate::", "super::", "self::", "socketkit::"]
            .into_iter()
            // `get`: `i` walks bytes, and may stand inside a character of a raw string.
            .find(|head| text.get(i..).is_some_and(|rest| rest.starts_with(head)));
        if let (true, Some(_)) = (starts_word, head) {
            let line = 1 + text[..i].matches('\n').count();
            let (trees, end) = tree(text, i);
            found.extend(trees.into_iter().map(|path| (line, path)));
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    found
}

/// The leaves of the path tree starting at `start`, and where it ends.
fn tree(text: &str, start: usize) -> (Vec<Vec<String>>, usize) {
    let bytes = text.as_bytes();
    let mut prefix = Vec::new();
    let mut i = start;
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < bytes.len() && bytes[i] == b'{' {
            let mut leaves = Vec::new();
            i += 1;
            loop {
                while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b',') {
                    i += 1;
                }
                if i >= bytes.len() || bytes[i] == b'}' {
                    return (leaves, i + 1);
                }
                let (inner, end) = tree(text, i);
                for leaf in inner.into_iter().filter(|leaf| !leaf.is_empty()) {
                    let mut path = prefix.clone();
                    path.extend(leaf);
                    leaves.push(path);
                }
                // Something that is no path (a stray character) is stepped over.
                i = end.max(i + 1);
            }
        }
        let word_end = text[i..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '*'))
            .map_or(text.len(), |n| i + n);
        if word_end == i {
            return (vec![prefix], i);
        }
        prefix.push(text[i..word_end].to_owned());
        i = word_end;
        if text[i..].starts_with("::") {
            i += 2;
            continue;
        }
        // `x as y`: the path is `x`.
        let rest = text[i..].trim_start();
        if let Some(alias) = rest.strip_prefix("as ") {
            let skipped = text.len() - alias.trim_start().len();
            let alias_end = text[skipped..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(text.len(), |n| skipped + n);
            return (vec![prefix], alias_end);
        }
        return (vec![prefix], i);
    }
}

/// The `libc` functions `text` calls (`libc::name(`), with their lines; constants and types
/// (`libc::EMFILE`, `libc::c_int::MAX`) are not calls.
pub fn libc_calls(text: &str) -> Vec<(usize, String)> {
    text.match_indices("libc::")
        .filter_map(|(at, head)| {
            let rest = &text[at + head.len()..];
            let name_len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let (name, after) = rest.split_at(name_len);
            let call = name.starts_with(|c: char| c.is_ascii_lowercase())
                && after.trim_start().starts_with('(');
            call.then(|| (1 + text[..at].matches('\n').count(), name.to_owned()))
        })
        .collect()
}
