//! The embedded object store: a folder, one subfolder per bucket.
//!
//! `root/{bucket}/{key}` holds the bytes; `root/.meta/{bucket}/{key}.json` the metadata
//! sidecar. A put writes a temporary file under `root/.tmp`, fsyncs it, and publishes it with
//! `link(2)`, which fails if the name exists: create-only and atomic (a reader sees the whole
//! object or none), and concurrent writers of one key cannot both win. The sidecar is written
//! by the winner only (temp + rename); an object whose sidecar was lost to a crash has its
//! checksums computed again when asked. Keys and bucket names are validated
//! ([`super::validate_key`]) so no path ever leaves the root.
//!
//! Each operation runs whole as one blocking step on tokio's blocking pool, with `std::fs`: a
//! put of a one-minute call is one hand-off between threads, not one per buffer and syscall
//! (`tokio::fs` makes each read, write, open and fsync a blocking task of its own: the service
//! spent more time handing those over than the engine spent on the audio).

use super::{
    Body, Crc32c, Listing, ObjectError, ObjectInfo, ObjectMeta, ObjectStore, PutOutcome, Result,
    blocking, checksum_file_blocking, crc32c_file_blocking, read_in_pieces, validate_bucket,
    validate_key,
};
use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

const BACKEND: &str = "folder";

/// The folder [`ObjectStore`].
#[derive(Debug, Clone)]
pub struct FolderStore {
    root: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ObjectError + '_ {
    move |source| ObjectError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Sidecar {
    size: u64,
    #[serde(flatten)]
    meta: ObjectMeta,
}

impl FolderStore {
    /// Uses (creating) `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        for dir in [root.clone(), root.join(".tmp"), root.join(".meta")] {
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        }
        Ok(FolderStore { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of `bucket/key`, after validating both.
    pub fn object_path(&self, bucket: &str, key: &str) -> Result<PathBuf> {
        validate_bucket(bucket)?;
        validate_key(key)?;
        Ok(self.root.join(bucket).join(key))
    }

    fn sidecar_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.root
            .join(".meta")
            .join(bucket)
            .join(format!("{key}.json"))
    }

    fn temp_path(&self) -> PathBuf {
        self.root.join(".tmp").join(format!(
            "put-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ))
    }

    fn read_sidecar(&self, bucket: &str, key: &str) -> Option<Sidecar> {
        let bytes = std::fs::read(self.sidecar_path(bucket, key)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The object's checksums: from its sidecar, or computed from the bytes.
    fn info(&self, bucket: &str, key: &str, path: &Path) -> Result<Option<ObjectInfo>> {
        let size = match std::fs::metadata(path) {
            Ok(m) if m.is_file() => m.len(),
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(path)(e)),
        };
        let (meta, size) = match self.read_sidecar(bucket, key) {
            Some(sidecar) if sidecar.size == size => (sidecar.meta, size),
            _ => {
                let (crc32c, sha256, size) = checksum_file_blocking(path)?;
                (
                    ObjectMeta {
                        crc32c,
                        sha256,
                        ..ObjectMeta::default()
                    },
                    size,
                )
            }
        };
        Ok(Some(ObjectInfo {
            key: key.to_string(),
            size,
            crc32c: Some(meta.crc32c),
            sha256: Some(meta.sha256).filter(|s| !s.is_empty()),
            content_type: Some(meta.content_type).filter(|s| !s.is_empty()),
            metadata: meta.metadata,
        }))
    }

    /// Copies the body into `temp` through CRC32C (a scratch file is linked there instead,
    /// where it can be) and fsyncs it; the body's size and CRC32C.
    fn write_temp(&self, body: &Body, temp: &Path) -> Result<(u64, String)> {
        if let Body::Scratch(source) = body
            && std::fs::hard_link(source, temp).is_ok()
        {
            // The same inode under a second name: no copy, no new file. Its bytes are read
            // once more (from the page cache) for the checksum.
            let checked = crc32c_file_blocking(temp)?;
            std::fs::File::open(temp)
                .and_then(|f| f.sync_all())
                .map_err(io(temp))?;
            return Ok(checked);
        }
        let mut out = std::fs::File::create(temp).map_err(io(temp))?;
        let mut crc = Crc32c::new();
        let size = match body {
            Body::Bytes(bytes) => {
                crc.update(bytes);
                out.write_all(bytes).map_err(io(temp))?;
                bytes.len() as u64
            }
            Body::File(source) | Body::Scratch(source) => read_in_pieces(source, |piece| {
                crc.update(piece);
                out.write_all(piece).map_err(io(temp))
            })?,
        };
        out.sync_all().map_err(io(temp))?;
        Ok((size, crc.base64()))
    }

    fn put_new_blocking(
        &self,
        bucket: &str,
        key: &str,
        body: &Body,
        meta: &ObjectMeta,
    ) -> Result<PutOutcome> {
        let path = self.object_path(bucket, key)?;
        let parent = path.parent().expect("a key has a parent").to_path_buf();
        std::fs::create_dir_all(&parent).map_err(io(&parent))?;
        // Copy into a temp file, checking the checksum on the way.
        let temp = self.temp_path();
        let checked = self.write_temp(body, &temp).and_then(|(size, actual)| {
            if actual == meta.crc32c {
                Ok(size)
            } else {
                Err(ObjectError::ChecksumMismatch {
                    key: key.to_string(),
                    expected: meta.crc32c.clone(),
                    actual,
                })
            }
        });
        let size = match checked {
            Ok(size) => size,
            Err(e) => {
                let _ = std::fs::remove_file(&temp);
                return Err(e);
            }
        };
        // Publish: link fails if the key exists.
        let linked = std::fs::hard_link(&temp, &path);
        let _ = std::fs::remove_file(&temp);
        match linked {
            Ok(()) => {
                sync_dir(&parent)?;
                let sidecar = Sidecar {
                    size,
                    meta: meta.clone(),
                };
                let sidecar_path = self.sidecar_path(bucket, key);
                let sidecar_dir = sidecar_path.parent().expect("has a parent").to_path_buf();
                std::fs::create_dir_all(&sidecar_dir).map_err(io(&sidecar_dir))?;
                let temp = self.temp_path();
                std::fs::write(&temp, serde_json::to_vec(&sidecar).expect("serializes"))
                    .map_err(io(&temp))?;
                std::fs::rename(&temp, &sidecar_path).map_err(io(&sidecar_path))?;
                Ok(PutOutcome::Created)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let existing = self
                    .info(bucket, key, &path)?
                    .and_then(|i| i.crc32c)
                    .unwrap_or_default();
                if existing == meta.crc32c {
                    Ok(PutOutcome::AlreadyExists)
                } else {
                    Err(ObjectError::Conflict {
                        bucket: bucket.to_string(),
                        key: key.to_string(),
                        existing_crc32c: existing,
                    })
                }
            }
            Err(e) => Err(io(&path)(e)),
        }
    }

    fn get_blocking(
        &self,
        bucket: &str,
        key: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<Bytes> {
        let path = self.object_path(bucket, key)?;
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ObjectError::NotFound {
                    bucket: bucket.to_string(),
                    key: key.to_string(),
                });
            }
            Err(e) => return Err(io(&path)(e)),
        };
        let size = file.metadata().map_err(io(&path))?.len();
        let range = range.unwrap_or(0..size);
        let start = range.start.min(size);
        let end = range.end.clamp(start, size);
        file.seek(std::io::SeekFrom::Start(start))
            .map_err(io(&path))?;
        let mut buffer = vec![0u8; (end - start) as usize];
        file.read_exact(&mut buffer).map_err(io(&path))?;
        Ok(Bytes::from(buffer))
    }

    /// The keys of `bucket`, in order (small buckets: staging, tests, the demo).
    fn keys(&self, bucket: &str) -> Result<Vec<String>> {
        let base = self.root.join(bucket);
        let mut keys = Vec::new();
        let mut stack = vec![base.clone()];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(&dir)(e)),
            };
            for entry in entries {
                let entry = entry.map_err(io(&dir))?;
                let kind = entry.file_type().map_err(io(&dir))?;
                if kind.is_dir() {
                    stack.push(entry.path());
                } else if kind.is_file()
                    && let Ok(rel) = entry.path().strip_prefix(&base)
                    && let Some(key) = rel.to_str()
                {
                    keys.push(key.replace(std::path::MAIN_SEPARATOR, "/"));
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn list_blocking(
        &self,
        bucket: &str,
        prefix: &str,
        limit: u32,
        after: Option<&str>,
    ) -> Result<Listing> {
        let limit = limit.clamp(1, 1000) as usize;
        let keys = self.keys(bucket)?;
        let mut selected: Vec<&String> = keys
            .iter()
            .filter(|k| k.starts_with(prefix) && validate_key(k).is_ok())
            .filter(|k| after.is_none_or(|a| k.as_str() > a))
            .take(limit + 1)
            .collect();
        let more = selected.len() > limit;
        selected.truncate(limit);
        let mut objects = Vec::with_capacity(selected.len());
        for key in &selected {
            let path = self.object_path(bucket, key)?;
            if let Some(info) = self.info(bucket, key, &path)? {
                objects.push(info);
            }
        }
        let next = more.then(|| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(selected.last().expect("more implies some").as_bytes())
        });
        Ok(Listing { objects, next })
    }

    fn delete_blocking(&self, bucket: &str, key: &str) -> Result<()> {
        let path = self.object_path(bucket, key)?;
        for p in [path.clone(), self.sidecar_path(bucket, key)] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&p)(e)),
            }
        }
        Ok(())
    }
}

/// fsync of a directory, so a link or rename in it survives a crash.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

#[async_trait]
impl ObjectStore for FolderStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn put_new(
        &self,
        bucket: &str,
        key: &str,
        body: Body,
        meta: &ObjectMeta,
    ) -> Result<PutOutcome> {
        let (store, bucket, key, meta) = (
            self.clone(),
            bucket.to_string(),
            key.to_string(),
            meta.clone(),
        );
        blocking(BACKEND, move || {
            store.put_new_blocking(&bucket, &key, &body, &meta)
        })
        .await
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectInfo>> {
        let path = self.object_path(bucket, key)?;
        let (store, bucket, key) = (self.clone(), bucket.to_string(), key.to_string());
        blocking(BACKEND, move || store.info(&bucket, &key, &path)).await
    }

    async fn get(
        &self,
        bucket: &str,
        key: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<Bytes> {
        let (store, bucket, key) = (self.clone(), bucket.to_string(), key.to_string());
        blocking(BACKEND, move || store.get_blocking(&bucket, &key, range)).await
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Listing> {
        validate_bucket(bucket)?;
        let after = match cursor {
            Some(c) => Some(
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(c)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or(ObjectError::BadKey {
                        key: c.chars().take(80).collect(),
                        reason: "not a cursor this store handed out",
                    })?,
            ),
            None => None,
        };
        let (store, bucket, prefix) = (self.clone(), bucket.to_string(), prefix.to_string());
        blocking(BACKEND, move || {
            store.list_blocking(&bucket, &prefix, limit, after.as_deref())
        })
        .await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        let (store, bucket, key) = (self.clone(), bucket.to_string(), key.to_string());
        blocking(BACKEND, move || store.delete_blocking(&bucket, &key)).await
    }
}
