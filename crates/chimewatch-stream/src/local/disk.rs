//! The file-system steps the embedded log's durability rests on (directory syncs, durable creation of directories
//! and small files), and the failures tests inject into them and into the writer's appends.
//!
//! A new directory entry (a segment, a shard directory, the log's root) survives a crash only once its parent
//! directory is fsynced, so every creation here syncs the parent before it counts as done.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// An operation a test can make fail; in a normal build nothing fails and the checks cost nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Op {
    /// Appending a group commit's frames: half of the bytes land, then the write fails (as on a full disk).
    Write,
    /// Cutting a failed write back to the last good length.
    SetLen,
    /// Syncing a directory after creating an entry in it.
    SyncDir,
}

/// Writes a small file so that it survives a crash: temp file, fsync, rename, fsync the directory.
pub(crate) fn write_durably(path: &Path, bytes: &[u8], faults: &Faults) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    sync_dir(parent(path), faults)
}

pub(crate) fn sync_dir(dir: &Path, faults: &Faults) -> io::Result<()> {
    faults.check(Op::SyncDir)?;
    faults.record_sync(dir);
    File::open(dir)?.sync_all()
}

/// The directory holding `path` (`.` for a bare name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates `dir` and any missing ancestors, syncing each one's parent so the new entries survive a crash. The
/// parent of an existing `dir` is synced too: a crash may have come between an earlier creation and its sync.
pub(crate) fn create_dir_durably(dir: &Path, faults: &Faults) -> io::Result<()> {
    if !dir.is_dir() {
        if let Some(up) = dir.parent().filter(|p| !p.as_os_str().is_empty() && !p.is_dir()) {
            create_dir_durably(up, faults)?;
        }
        match fs::create_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    sync_dir(parent(dir), faults)
}

/// Failures injected by tests (see [`Op`]). Clones share one plan, so a test keeps a handle to the log's.
#[derive(Debug, Clone, Default)]
pub(crate) struct Faults {
    #[cfg(test)]
    plan: std::sync::Arc<std::sync::Mutex<Plan>>,
}

#[cfg(test)]
#[derive(Debug, Default)]
struct Plan {
    /// How many more times each operation fails.
    failing: std::collections::HashMap<Op, u32>,
    /// Every directory synced, in order.
    synced: Vec<std::path::PathBuf>,
}

impl Faults {
    /// Fails when a test asked `op` to fail (with ENOSPC, what a full disk answers).
    pub fn check(&self, op: Op) -> io::Result<()> {
        #[cfg(test)]
        {
            let mut plan = self.plan.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(left) = plan.failing.get_mut(&op).filter(|n| **n > 0) {
                *left -= 1;
                return Err(io::Error::from_raw_os_error(28));
            }
        }
        let _ = op;
        Ok(())
    }

    fn record_sync(&self, dir: &Path) {
        #[cfg(test)]
        self.plan.lock().unwrap_or_else(std::sync::PoisonError::into_inner).synced.push(dir.to_owned());
        let _ = dir;
    }
}

#[cfg(test)]
impl Faults {
    /// Makes the next `times` attempts of `op` fail.
    pub fn fail(&self, op: Op, times: u32) {
        self.plan.lock().unwrap_or_else(std::sync::PoisonError::into_inner).failing.insert(op, times);
    }

    /// Every directory synced so far, in order.
    pub fn synced_dirs(&self) -> Vec<std::path::PathBuf> {
        self.plan.lock().unwrap_or_else(std::sync::PoisonError::into_inner).synced.clone()
    }
}
