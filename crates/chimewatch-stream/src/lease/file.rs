//! The embedded log's checkpoint store: the in-memory lease store, saved to a JSON file after every change
//! (written to a temporary file, fsynced, renamed), so `up` resumes where it stopped.
//!
//! One process owns a data directory (the embedded log's lock), so owners are not carried across restarts: opening
//! the store frees every lease and the new process takes them at once instead of waiting for the failover time.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::memory::MemoryLeaseStore;
use super::{Checkpoint, Lease, LeaseError, LeaseStore};

#[derive(Debug, Clone)]
pub struct FileLeaseStore {
    inner: Arc<MemoryLeaseStore>,
    path: PathBuf,
    /// Serializes snapshots so that a later state is never overwritten by an earlier one.
    writing: Arc<Mutex<()>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Saved {
    shard_id: String,
    counter: u64,
    /// `TRIM_HORIZON`, `SHARD_END`, or a sequence number.
    checkpoint: String,
    #[serde(default)]
    sub_sequence: u64,
    #[serde(default)]
    parents: Vec<String>,
}

fn io(path: &Path, e: std::io::Error) -> LeaseError {
    LeaseError::Store(format!("{}: {e}", path.display()))
}

impl FileLeaseStore {
    /// Opens (or starts) the store saved at `path`.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, LeaseError> {
        let path = path.into();
        let inner = MemoryLeaseStore::default();
        match fs::read(&path) {
            Ok(bytes) => {
                let saved: Vec<Saved> = serde_json::from_slice(&bytes)
                    .map_err(|e| LeaseError::Store(format!("{}: not a checkpoint file: {e}", path.display())))?;
                inner.restore(saved.into_iter().map(Lease::from));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path, e)),
        }
        Ok(Self { inner: Arc::new(inner), path, writing: Arc::new(Mutex::new(())) })
    }

    async fn save(&self) -> Result<(), LeaseError> {
        let (inner, path, writing) = (self.inner.clone(), self.path.clone(), self.writing.clone());
        tokio::task::spawn_blocking(move || {
            let _guard = writing.lock().map_err(|_| LeaseError::Store("checkpoint file lock poisoned".into()))?;
            let saved: Vec<Saved> = inner.snapshot()?.iter().map(Saved::from).collect();
            let bytes = serde_json::to_vec_pretty(&saved).map_err(|e| LeaseError::Store(e.to_string()))?;
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
            }
            let tmp = path.with_extension("tmp");
            let mut file = fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
            file.write_all(&bytes).and_then(|()| file.sync_data()).map_err(|e| io(&tmp, e))?;
            fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
            // The rename is durable once the directory is synced.
            if let Some(dir) = path.parent() {
                fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io(dir, e))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| LeaseError::Store(format!("saving checkpoints: {e}")))?
    }
}

impl From<Saved> for Lease {
    fn from(s: Saved) -> Self {
        // A checkpoint this store wrote always reads back; one edited into garbage starts the shard over.
        let checkpoint = Checkpoint::from_text(&s.checkpoint, s.sub_sequence).unwrap_or(Checkpoint::TrimHorizon);
        Lease { shard_id: s.shard_id, owner: None, counter: s.counter, checkpoint, parents: s.parents }
    }
}

impl From<&Lease> for Saved {
    fn from(l: &Lease) -> Self {
        let (checkpoint, sub_sequence) = l.checkpoint.to_text();
        Saved { shard_id: l.shard_id.clone(), counter: l.counter, checkpoint, sub_sequence, parents: l.parents.clone() }
    }
}

#[async_trait]
impl LeaseStore for FileLeaseStore {
    async fn list(&self) -> Result<Vec<Lease>, LeaseError> {
        self.inner.list().await
    }

    async fn create_if_absent(&self, lease: Lease) -> Result<bool, LeaseError> {
        let created = self.inner.create_if_absent(lease).await?;
        if created {
            self.save().await?;
        }
        Ok(created)
    }

    async fn take(&self, shard_id: &str, expected: u64, owner: &str) -> Result<Lease, LeaseError> {
        // Owners are not saved, so neither are takes and renewals: only what outlives the process.
        self.inner.take(shard_id, expected, owner).await
    }

    async fn renew(&self, shard_id: &str, owner: &str, expected: u64) -> Result<Lease, LeaseError> {
        self.inner.renew(shard_id, owner, expected).await
    }

    async fn checkpoint(
        &self,
        shard_id: &str,
        owner: &str,
        expected: u64,
        checkpoint: Checkpoint,
    ) -> Result<(), LeaseError> {
        self.inner.checkpoint(shard_id, owner, expected, checkpoint).await?;
        self.save().await
    }

    async fn release(&self, shard_id: &str, owner: &str, expected: u64) -> Result<(), LeaseError> {
        self.inner.release(shard_id, owner, expected).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::contract;

    #[tokio::test]
    async fn keeps_the_store_contract_and_survives_a_reopen_with_owners_freed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("consumer/checkpoints.json");
        let store = FileLeaseStore::open(&path).unwrap();
        contract::check(&store, "").await;
        let before = store.list().await.unwrap();

        let reopened = FileLeaseStore::open(&path).unwrap();
        let after = reopened.list().await.unwrap();
        assert_eq!(after.len(), before.len());
        for (a, b) in after.iter().zip(&before) {
            assert_eq!((&a.shard_id, &a.checkpoint, &a.parents), (&b.shard_id, &b.checkpoint, &b.parents));
            assert_eq!(a.owner, None, "a reopened store frees every lease");
        }
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoints.json");
        fs::write(&path, b"{not json").unwrap();
        let err = FileLeaseStore::open(&path).unwrap_err().to_string();
        assert!(err.contains("checkpoints.json") && err.contains("not a checkpoint file"), "{err}");
    }
}
