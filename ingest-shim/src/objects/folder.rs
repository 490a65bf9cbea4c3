//! The embedded object store: a folder, one subfolder per bucket.
//!
//! `root/{bucket}/{key}` holds the bytes; `root/.meta/{bucket}/{key}.json` the metadata
//! sidecar. A put writes a temporary file under `root/.tmp`, fsyncs it, and publishes it with
//! `link(2)`, which fails if the name exists: create-only and atomic (a reader sees the whole
//! object or none), and concurrent writers of one key cannot both win. The sidecar is written
//! by the winner only (temp + rename); an object whose sidecar was lost to a crash has its
//! checksums computed again when asked. Keys and bucket names are validated
//! ([`super::validate_key`]) so no path ever leaves the root.

use super::{
    Body, Listing, ObjectError, ObjectInfo, ObjectMeta, ObjectStore, PutOutcome, Result,
    checksum_file, validate_bucket, validate_key,
};
use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};

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

    async fn read_sidecar(&self, bucket: &str, key: &str) -> Option<Sidecar> {
        let bytes = tokio::fs::read(self.sidecar_path(bucket, key)).await.ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The object's checksums: from its sidecar, or computed from the bytes.
    async fn info(&self, bucket: &str, key: &str, path: &Path) -> Result<Option<ObjectInfo>> {
        let size = match tokio::fs::metadata(path).await {
            Ok(m) if m.is_file() => m.len(),
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(path)(e)),
        };
        let (meta, size) = match self.read_sidecar(bucket, key).await {
            Some(sidecar) if sidecar.size == size => (sidecar.meta, size),
            _ => {
                let (crc32c, sha256, size) = checksum_file(path).await?;
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
}

/// fsync of a directory, so a link or rename in it survives a crash.
async fn sync_dir(dir: &Path) -> Result<()> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
        .await
        .map_err(|e| ObjectError::Unavailable {
            backend: BACKEND,
            message: e.to_string(),
        })?
        .map_err(|source| ObjectError::Io {
            path: PathBuf::new(),
            source,
        })
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
        let path = self.object_path(bucket, key)?;
        let parent = path.parent().expect("a key has a parent").to_path_buf();
        tokio::fs::create_dir_all(&parent)
            .await
            .map_err(io(&parent))?;
        // Copy into a temp file, checking the checksum on the way.
        let temp = self.temp_path();
        let mut out = tokio::fs::File::create(&temp).await.map_err(io(&temp))?;
        let mut crc = super::Crc32c::new();
        let mut size = 0u64;
        let copied: Result<()> = async {
            match &body {
                Body::Bytes(bytes) => {
                    crc.update(bytes);
                    out.write_all(bytes).await.map_err(io(&temp))?;
                    size = bytes.len() as u64;
                }
                Body::File(source) => {
                    let mut input = tokio::fs::File::open(source).await.map_err(io(source))?;
                    let mut buffer = vec![0u8; 1 << 16];
                    loop {
                        let n = input.read(&mut buffer).await.map_err(io(source))?;
                        if n == 0 {
                            break;
                        }
                        crc.update(&buffer[..n]);
                        out.write_all(&buffer[..n]).await.map_err(io(&temp))?;
                        size += n as u64;
                    }
                }
            }
            out.sync_all().await.map_err(io(&temp))?;
            let actual = crc.base64();
            if actual != meta.crc32c {
                return Err(ObjectError::ChecksumMismatch {
                    key: key.to_string(),
                    expected: meta.crc32c.clone(),
                    actual,
                });
            }
            Ok(())
        }
        .await;
        drop(out);
        if let Err(e) = copied {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(e);
        }
        // Publish: link fails if the key exists.
        let linked = tokio::fs::hard_link(&temp, &path).await;
        let _ = tokio::fs::remove_file(&temp).await;
        match linked {
            Ok(()) => {
                sync_dir(&parent).await?;
                let sidecar = Sidecar {
                    size,
                    meta: meta.clone(),
                };
                let sidecar_path = self.sidecar_path(bucket, key);
                let sidecar_dir = sidecar_path.parent().expect("has a parent").to_path_buf();
                tokio::fs::create_dir_all(&sidecar_dir)
                    .await
                    .map_err(io(&sidecar_dir))?;
                let temp = self.temp_path();
                tokio::fs::write(&temp, serde_json::to_vec(&sidecar).expect("serializes"))
                    .await
                    .map_err(io(&temp))?;
                tokio::fs::rename(&temp, &sidecar_path)
                    .await
                    .map_err(io(&sidecar_path))?;
                Ok(PutOutcome::Created)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let existing = self
                    .info(bucket, key, &path)
                    .await?
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

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectInfo>> {
        let path = self.object_path(bucket, key)?;
        self.info(bucket, key, &path).await
    }

    async fn get(
        &self,
        bucket: &str,
        key: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<Bytes> {
        let path = self.object_path(bucket, key)?;
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ObjectError::NotFound {
                    bucket: bucket.to_string(),
                    key: key.to_string(),
                });
            }
            Err(e) => return Err(io(&path)(e)),
        };
        let size = file.metadata().await.map_err(io(&path))?.len();
        let range = range.unwrap_or(0..size);
        let start = range.start.min(size);
        let end = range.end.clamp(start, size);
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(io(&path))?;
        let mut buffer = vec![0u8; (end - start) as usize];
        file.read_exact(&mut buffer).await.map_err(io(&path))?;
        Ok(Bytes::from(buffer))
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Listing> {
        validate_bucket(bucket)?;
        let limit = limit.clamp(1, 1000) as usize;
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
        let base = self.root.join(bucket);
        // Walk the bucket, keeping keys in order (small buckets: staging, tests, the demo).
        let keys = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<String>> {
            let mut keys = Vec::new();
            let mut stack = vec![base.clone()];
            while let Some(dir) = stack.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                for entry in entries {
                    let entry = entry?;
                    let kind = entry.file_type()?;
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
        })
        .await
        .map_err(|e| ObjectError::Unavailable {
            backend: BACKEND,
            message: e.to_string(),
        })?
        .map_err(io(&self.root.join(bucket)))?;
        let mut selected: Vec<&String> = keys
            .iter()
            .filter(|k| k.starts_with(prefix) && validate_key(k).is_ok())
            .filter(|k| after.as_ref().is_none_or(|a| k.as_str() > a.as_str()))
            .take(limit + 1)
            .collect();
        let more = selected.len() > limit;
        selected.truncate(limit);
        let mut objects = Vec::with_capacity(selected.len());
        for key in &selected {
            if let Some(info) = self.head(bucket, key).await? {
                objects.push(info);
            }
        }
        let next = more.then(|| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(selected.last().expect("more implies some").as_bytes())
        });
        Ok(Listing { objects, next })
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        let path = self.object_path(bucket, key)?;
        for p in [path.clone(), self.sidecar_path(bucket, key)] {
            match tokio::fs::remove_file(&p).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&p)(e)),
            }
        }
        Ok(())
    }
}
