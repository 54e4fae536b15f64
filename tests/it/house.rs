//! The house rules the tools cannot see: every Rust file says what it is for on its first line (`//!`), and nothing
//! in the repository reads or names a directory outside it.

use std::path::{Path, PathBuf};

/// The repository's files as git sees them: tracked, or new and not ignored. `.gitignore` already says what is a build
/// output, an installed tool or fetched data, so this list follows it.
fn repository_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("git")
        .args(["ls-files", "-z", "--cached", "--others", "--exclude-standard"])
        .current_dir(root)
        .output()
        .expect("running git ls-files: the house rules need the repository's git");
    assert!(out.status.success(), "git ls-files: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| root.join(String::from_utf8_lossy(p).as_ref()))
        // A tracked file deleted in the working tree is not there to read.
        .filter(|p| p.is_file())
        .collect()
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
