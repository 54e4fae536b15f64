//! The object store port the archiver writes to (S3 in AWS, a directory under `up`), and its local adapter.
//!
//! Every write replaces or creates one whole object atomically: a reader sees the old object, the new one, or none,
//! never a part. `create_new` is the one conditional write the archiver needs to claim a file range exactly once.

use std::fmt::Debug;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("object store {op} {key:?}: {message}")]
    Store { op: &'static str, key: String, message: String },
    #[error("object store {op} {key:?}: {source}")]
    Io {
        op: &'static str,
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("object key {0:?} is not a relative path of plain names")]
    BadKey(String),
}

/// An object as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub last_modified_ms: i64,
}

#[async_trait]
pub trait ObjectStore: Send + Sync + Debug {
    /// Uploads the file at `path` as `key`, replacing any object there; large files are streamed in parts.
    async fn put_file(&self, key: &str, path: &Path) -> Result<(), ObjectError>;
    /// Writes `body` as `key`, replacing any object there.
    async fn put(&self, key: &str, body: Bytes) -> Result<(), ObjectError>;
    /// Writes `body` as `key` only if no object has that key; `false` when one has.
    async fn create_new(&self, key: &str, body: Bytes) -> Result<bool, ObjectError>;
    /// The object's bytes, or `None` when there is no such object.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, ObjectError>;
    /// Copies the object into the file at `to` without holding it in memory.
    async fn download(&self, key: &str, to: &Path) -> Result<(), ObjectError>;
    /// Every object whose key starts with `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ObjectError>;
    /// Deletes the objects; keys that do not exist are not an error.
    async fn delete(&self, keys: &[String]) -> Result<(), ObjectError>;
    /// Where the store is, for messages: `s3://bucket` or a directory.
    fn location(&self) -> String;
}

/// Objects as files under a directory: `<root>/<key>`. Writes go to a hidden temporary file that is synced and
/// renamed into place, so readers (DuckDB globbing `*.parquet`) never see a partial file.
#[derive(Debug, Clone)]
pub struct LocalObjects {
    root: PathBuf,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl LocalObjects {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, ObjectError> {
        let plain = |c: &str| !c.is_empty() && c != "." && c != ".." && !c.starts_with('.');
        if key.split('/').all(plain) { Ok(self.root.join(key)) } else { Err(ObjectError::BadKey(key.to_owned())) }
    }

    /// A hidden temporary path next to `target` (same file system, so the rename is atomic).
    fn temp_for(target: &Path) -> PathBuf {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        target.with_file_name(format!(".{name}.{}-{n}.tmp", std::process::id()))
    }

    fn write_temp(
        target: &Path,
        fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
    ) -> std::io::Result<PathBuf> {
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let temp = Self::temp_for(target);
        let result = std::fs::File::create(&temp).and_then(|mut f| {
            fill(&mut f)?;
            f.sync_all()
        });
        match result {
            Ok(()) => Ok(temp),
            Err(e) => {
                let _ = std::fs::remove_file(&temp);
                Err(e)
            }
        }
    }

    fn sync_parent(target: &Path) -> std::io::Result<()> {
        match target.parent() {
            Some(dir) => std::fs::File::open(dir)?.sync_all(),
            None => Ok(()),
        }
    }

    fn replace(target: &Path, fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>) -> std::io::Result<()> {
        let temp = Self::write_temp(target, fill)?;
        std::fs::rename(&temp, target).inspect_err(|_| {
            let _ = std::fs::remove_file(&temp);
        })?;
        Self::sync_parent(target)
    }

    fn list_into(&self, dir: &Path, prefix: &str, out: &mut Vec<ObjectInfo>) -> std::io::Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let Ok(relative) = path.strip_prefix(&self.root) else { continue };
            let key = relative.to_string_lossy().replace(std::path::MAIN_SEPARATOR, "/");
            let meta = entry.metadata()?;
            if meta.is_dir() {
                // Only descend where keys under the directory can still start with the prefix.
                let dir_key = format!("{key}/");
                if dir_key.starts_with(prefix) || prefix.starts_with(&dir_key) {
                    self.list_into(&path, prefix, out)?;
                }
            } else if key.starts_with(prefix) {
                let modified = meta.modified()?;
                let last_modified_ms = modified
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                    .unwrap_or(0);
                out.push(ObjectInfo { key, size: meta.len(), last_modified_ms });
            }
        }
        Ok(())
    }
}

fn io(op: &'static str, key: &str) -> impl FnOnce(std::io::Error) -> ObjectError {
    let key = key.to_owned();
    move |source| ObjectError::Io { op, key, source }
}

async fn blocking<T: Send + 'static>(
    op: &'static str,
    key: &str,
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, ObjectError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ObjectError::Store { op, key: key.to_owned(), message: e.to_string() })?
        .map_err(io(op, key))
}

#[async_trait]
impl ObjectStore for LocalObjects {
    async fn put_file(&self, key: &str, path: &Path) -> Result<(), ObjectError> {
        let target = self.path(key)?;
        let source = path.to_owned();
        blocking("put", key, move || {
            Self::replace(&target, |f| {
                std::io::copy(&mut std::fs::File::open(&source)?, f)?;
                Ok(())
            })
        })
        .await
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<(), ObjectError> {
        let target = self.path(key)?;
        blocking("put", key, move || Self::replace(&target, |f| f.write_all(&body))).await
    }

    async fn create_new(&self, key: &str, body: Bytes) -> Result<bool, ObjectError> {
        let target = self.path(key)?;
        blocking("create", key, move || {
            let temp = Self::write_temp(&target, |f| f.write_all(&body))?;
            // A hard link fails when the target exists: an atomic create-if-absent of the whole content.
            let linked = std::fs::hard_link(&temp, &target);
            let _ = std::fs::remove_file(&temp);
            match linked {
                Ok(()) => Self::sync_parent(&target).map(|()| true),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, ObjectError> {
        let target = self.path(key)?;
        blocking("get", key, move || match std::fs::read(&target) {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    async fn download(&self, key: &str, to: &Path) -> Result<(), ObjectError> {
        let source = self.path(key)?;
        let to = to.to_owned();
        blocking("get", key, move || std::fs::copy(&source, &to).map(drop)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ObjectError> {
        let this = self.clone();
        let owned = prefix.to_owned();
        let mut found = blocking("list", prefix, move || {
            let mut out = Vec::new();
            let root = this.root.clone();
            this.list_into(&root, &owned, &mut out)?;
            Ok(out)
        })
        .await?;
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    async fn delete(&self, keys: &[String]) -> Result<(), ObjectError> {
        for key in keys {
            let target = self.path(key)?;
            blocking("delete", key, move || match std::fs::remove_file(&target) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            })
            .await?;
        }
        Ok(())
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_objects_replace_create_once_list_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalObjects::new(dir.path());
        store.put("t/dt=2026-11-21/hour=13/a.parquet", Bytes::from_static(b"one")).await.unwrap();
        store.put("t/dt=2026-11-21/hour=13/a.parquet", Bytes::from_static(b"two")).await.unwrap();
        assert_eq!(store.get("t/dt=2026-11-21/hour=13/a.parquet").await.unwrap().unwrap(), "two");
        assert!(store.create_new("m/x.json", Bytes::from_static(b"first")).await.unwrap());
        assert!(!store.create_new("m/x.json", Bytes::from_static(b"second")).await.unwrap(), "exists already");
        assert_eq!(store.get("m/x.json").await.unwrap().unwrap(), "first", "the first claim stands");
        assert_eq!(store.get("m/none.json").await.unwrap(), None);

        let file = dir.path().join("upload");
        std::fs::write(&file, b"from a file").unwrap();
        store.put_file("t/dt=2026-11-21/hour=14/b.parquet", &file).await.unwrap();
        let keys: Vec<_> = store.list("t/").await.unwrap().into_iter().map(|o| (o.key, o.size)).collect();
        assert_eq!(
            keys,
            [("t/dt=2026-11-21/hour=13/a.parquet".to_owned(), 3), ("t/dt=2026-11-21/hour=14/b.parquet".to_owned(), 11)]
        );
        assert_eq!(store.list("t/dt=2026-11-21/hour=14").await.unwrap().len(), 1);
        assert_eq!(store.list("nothing/").await.unwrap(), []);
        let leftovers = std::fs::read_dir(dir.path().join("m")).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary files left behind");

        store.delete(&["m/x.json".into(), "m/never-was.json".into()]).await.unwrap();
        assert_eq!(store.get("m/x.json").await.unwrap(), None);
        assert!(matches!(store.put("../escape", Bytes::new()).await, Err(ObjectError::BadKey(_))));
        assert!(matches!(store.put("a//b", Bytes::new()).await, Err(ObjectError::BadKey(_))));
    }
}
