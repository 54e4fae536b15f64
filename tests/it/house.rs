//! The house rules the tools cannot see: every Rust file says what it is for on its first line (`//!`), and nothing
//! in the repository reads or names a directory outside it.

use std::path::{Path, PathBuf};

/// Directories that hold build outputs, installed tools or fetched data, not the project's own files.
const SKIPPED: &[&str] = &["target", ".git", "node_modules", ".venv", "corpus", "artifacts", "chimewatch-data"];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let path = entry.path();
        let name = entry.file_name();
        if entry.file_type().unwrap().is_dir() {
            if !SKIPPED.contains(&name.to_str().unwrap_or_default()) {
                files(&path, out);
            }
        } else {
            out.push(path);
        }
    }
}

fn repository_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    files(Path::new(env!("CARGO_MANIFEST_DIR")), &mut out);
    out
}

#[test]
fn every_rust_file_opens_with_a_line_saying_what_it_is_for() {
    let missing: Vec<_> = repository_files()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .filter(|p| !std::fs::read_to_string(p).unwrap().starts_with("//!"))
        .collect();
    assert!(missing.is_empty(), "these files do not open with a `//!` line: {missing:?}");
}

#[test]
fn nothing_names_a_directory_beside_the_repository() {
    // Spelled in two halves so that this file does not name it either.
    let outside = format!("../{}", "shared");
    let naming: Vec<_> = repository_files()
        .into_iter()
        .filter(|p| std::fs::read(p).is_ok_and(|bytes| String::from_utf8_lossy(&bytes).contains(&outside)))
        .collect();
    assert!(naming.is_empty(), "these files name {outside}, which a clone does not have: {naming:?}");
}
