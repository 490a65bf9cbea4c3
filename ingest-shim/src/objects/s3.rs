//! The production object store: S3.
//!
//! Every put carries the CRC32C we computed (S3 checks it against the bytes it received, so a
//! body is streamed from its file, never buffered whole) and `If-None-Match: *`, so a key is
//! written at most once. When the key exists (412), the object's recorded SHA-256 (user metadata
//! `callrec-sha256`, or its CRC32C) decides: the same bytes are success, different ones a
//! conflict — never an overwrite. Bodies above the multipart threshold go up in parts, each with
//! its own CRC32C, and the completion is create-only too. Throttling and transient errors are
//! retried by the SDK's standard strategy (backoff with jitter).

use super::{
    Body, Listing, ObjectError, ObjectInfo, ObjectMeta, ObjectStore, PutOutcome, Result,
    validate_bucket, validate_key,
};
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart, ServerSideEncryption,
    StorageClass,
};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use tokio::io::AsyncReadExt as _;

const BACKEND: &str = "s3";
/// User-metadata keys of the body's SHA-256 and CRC32C (S3 prefixes them with `x-amz-meta-`).
/// S3 itself reports the CRC32C it verified; the copy in metadata serves where a store (an
/// emulator, an older S3-compatible server) does not return it.
const SHA256_METADATA: &str = "callrec-sha256";
const CRC32C_METADATA: &str = "callrec-crc32c";
/// Bodies from this size up are uploaded in parts (S3 allows single puts to 5 GiB).
pub const DEFAULT_MULTIPART_THRESHOLD: u64 = 64 << 20;
/// Size of each part (S3's minimum is 5 MiB, except the last).
pub const DEFAULT_PART_SIZE: usize = 16 << 20;
/// Attempts per request for throttling and transient errors.
pub const MAX_ATTEMPTS: u32 = 8;

/// Where the buckets are and how to reach them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Config {
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), for emulators and some endpoints.
    pub force_path_style: bool,
}

/// The S3 [`ObjectStore`].
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    multipart_threshold: u64,
    part_size: usize,
}

fn unavailable<E: ProvideErrorMetadata + std::fmt::Debug>(
    e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> ObjectError {
    // S3 answers some refusals (403 to a HEAD, a bucket policy's deny) without a body: then the
    // HTTP status is all there is to say.
    let status = match &e {
        SdkError::ServiceError(service) => format!("HTTP {}", service.raw().status().as_u16()),
        _ => String::new(),
    };
    let message = match e.as_service_error() {
        Some(service) => match (service.code(), service.message()) {
            (None, None) => format!("{status} without an error code"),
            (code, message) => format!("{}: {}", code.unwrap_or("error"), message.unwrap_or("")),
        },
        None => format!("{e:?}"),
    };
    ObjectError::Unavailable {
        backend: BACKEND,
        message,
    }
}

fn code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    e.as_service_error().and_then(|s| s.code())
}

impl S3Store {
    /// Connects with the standard AWS chain and the given region and endpoint.
    pub async fn connect(config: &S3Config) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &config.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        let shared = loader.load().await;
        S3Store::from_sdk_config(&shared, config)
    }

    /// Builds the client from an already loaded AWS configuration.
    pub fn from_sdk_config(shared: &aws_config::SdkConfig, config: &S3Config) -> Self {
        let mut builder = aws_sdk_s3::config::Builder::from(shared)
            .retry_config(
                aws_config::retry::RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS),
            )
            .force_path_style(config.force_path_style);
        if let Some(url) = &config.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        S3Store {
            client: Client::from_conf(builder.build()),
            multipart_threshold: DEFAULT_MULTIPART_THRESHOLD,
            part_size: DEFAULT_PART_SIZE,
        }
    }

    /// Changes when and how bodies are split into parts (part size at least 5 MiB).
    pub fn with_multipart(mut self, threshold: u64, part_size: usize) -> Self {
        self.multipart_threshold = threshold;
        self.part_size = part_size.max(5 << 20);
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Whether `bucket` exists (and these credentials may see it).
    pub async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        validate_bucket(bucket)?;
        match self.client.head_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Creates `bucket` when missing (for `callrec init` and tests). True if created now.
    pub async fn ensure_bucket(&self, bucket: &str) -> Result<bool> {
        validate_bucket(bucket)?;
        match self.client.head_bucket().bucket(bucket).send().await {
            Ok(_) => return Ok(false),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {}
            Err(e) => return Err(unavailable(e)),
        }
        match self.client.create_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    code(&e),
                    Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    fn user_metadata(meta: &ObjectMeta) -> HashMap<String, String> {
        let mut metadata: HashMap<String, String> = meta
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !meta.sha256.is_empty() {
            metadata.insert(SHA256_METADATA.into(), meta.sha256.clone());
        }
        metadata.insert(CRC32C_METADATA.into(), meta.crc32c.clone());
        metadata
    }

    /// After a 412: the same bytes are already there, or a conflict.
    async fn existing(&self, bucket: &str, key: &str, meta: &ObjectMeta) -> Result<PutOutcome> {
        let info = self
            .head(bucket, key)
            .await?
            .ok_or_else(|| ObjectError::Unavailable {
                backend: BACKEND,
                message: format!("{bucket}/{key} refused as existing, then not found"),
            })?;
        let same = match (&info.sha256, meta.sha256.is_empty()) {
            (Some(sha), false) => *sha == meta.sha256,
            _ => info.crc32c.as_deref() == Some(meta.crc32c.as_str()),
        };
        if same {
            Ok(PutOutcome::AlreadyExists)
        } else {
            Err(ObjectError::Conflict {
                bucket: bucket.to_string(),
                key: key.to_string(),
                existing_crc32c: info.crc32c.unwrap_or_default(),
            })
        }
    }

    async fn put_single(
        &self,
        bucket: &str,
        key: &str,
        body: ByteStream,
        meta: &ObjectMeta,
    ) -> Result<PutOutcome> {
        let mut request = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body)
            .content_type(&meta.content_type)
            .checksum_crc32_c(&meta.crc32c)
            .if_none_match("*")
            .set_metadata(Some(Self::user_metadata(meta)));
        if let Some(class) = &meta.storage_class {
            request = request.storage_class(StorageClass::from(class.as_str()));
        }
        if let Some(kms) = &meta.kms_key_id {
            request = request
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(kms);
        }
        match request.send().await {
            Ok(_) => Ok(PutOutcome::Created),
            Err(e) if code(&e) == Some("PreconditionFailed") => {
                self.existing(bucket, key, meta).await
            }
            Err(e)
                if matches!(
                    code(&e),
                    Some("BadDigest" | "InvalidDigest" | "XAmzContentChecksumMismatch")
                ) =>
            {
                Err(ObjectError::ChecksumMismatch {
                    key: key.to_string(),
                    expected: meta.crc32c.clone(),
                    actual: "(computed by S3)".into(),
                })
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Reads up to `size` bytes (less only at the end of the file).
    async fn read_part(
        file: &mut tokio::fs::File,
        size: usize,
        path: &std::path::Path,
    ) -> Result<Vec<u8>> {
        let mut part = vec![0u8; size];
        let mut filled = 0;
        while filled < size {
            let n = file
                .read(&mut part[filled..])
                .await
                .map_err(|source| ObjectError::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        part.truncate(filled);
        Ok(part)
    }

    async fn put_multipart(
        &self,
        bucket: &str,
        key: &str,
        path: &std::path::Path,
        meta: &ObjectMeta,
    ) -> Result<PutOutcome> {
        if self.head(bucket, key).await?.is_some() {
            return self.existing(bucket, key, meta).await;
        }
        let mut create = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .content_type(&meta.content_type)
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .set_metadata(Some(Self::user_metadata(meta)));
        if let Some(class) = &meta.storage_class {
            create = create.storage_class(StorageClass::from(class.as_str()));
        }
        if let Some(kms) = &meta.kms_key_id {
            create = create
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(kms);
        }
        let upload = create.send().await.map_err(unavailable)?;
        let upload_id = upload.upload_id().unwrap_or_default().to_string();
        let result = self.upload_parts(bucket, key, path, meta, &upload_id).await;
        if result.is_err() {
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }

    async fn upload_parts(
        &self,
        bucket: &str,
        key: &str,
        path: &std::path::Path,
        meta: &ObjectMeta,
        upload_id: &str,
    ) -> Result<PutOutcome> {
        let io = |source| ObjectError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = tokio::fs::File::open(path).await.map_err(io)?;
        let mut whole = super::Crc32c::new();
        let mut parts = Vec::new();
        // One part in memory at a time: memory is bounded by the part size, not the body.
        for number in 1..=10_000i32 {
            let part = Self::read_part(&mut file, self.part_size, path).await?;
            if part.is_empty() && number > 1 {
                break;
            }
            whole.update(&part);
            let checksum = super::Crc32c::of(&part);
            let last = part.len() < self.part_size;
            let uploaded = self
                .client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .checksum_crc32_c(&checksum)
                .body(ByteStream::from(part))
                .send()
                .await
                .map_err(unavailable)?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .e_tag(uploaded.e_tag().unwrap_or_default())
                    .checksum_crc32_c(checksum)
                    .build(),
            );
            if last {
                break;
            }
        }
        let actual = whole.base64();
        if actual != meta.crc32c {
            return Err(ObjectError::ChecksumMismatch {
                key: key.to_string(),
                expected: meta.crc32c.clone(),
                actual,
            });
        }
        let completed = self
            .client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .if_none_match("*")
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        match completed {
            Ok(_) => Ok(PutOutcome::Created),
            Err(e) if code(&e) == Some("PreconditionFailed") => {
                self.existing(bucket, key, meta).await
            }
            Err(e) => Err(unavailable(e)),
        }
    }
}

#[async_trait]
impl ObjectStore for S3Store {
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
        validate_bucket(bucket)?;
        validate_key(key)?;
        match body {
            Body::Bytes(bytes) => {
                let actual = super::Crc32c::of(&bytes);
                if actual != meta.crc32c {
                    return Err(ObjectError::ChecksumMismatch {
                        key: key.to_string(),
                        expected: meta.crc32c.clone(),
                        actual,
                    });
                }
                self.put_single(bucket, key, ByteStream::from(bytes), meta)
                    .await
            }
            Body::File(path) | Body::Scratch(path) => {
                let size = tokio::fs::metadata(&path)
                    .await
                    .map_err(|source| ObjectError::Io {
                        path: path.clone(),
                        source,
                    })?
                    .len();
                if size >= self.multipart_threshold {
                    return self.put_multipart(bucket, key, &path, meta).await;
                }
                // Checked here as well as by S3 (its check of a streamed body's
                // `x-amz-checksum-crc32c` is what an emulator may skip): a file below the
                // multipart threshold is read once more, from the page cache, for that.
                let actual = super::crc32c_file(&path).await?;
                if actual != meta.crc32c {
                    return Err(ObjectError::ChecksumMismatch {
                        key: key.to_string(),
                        expected: meta.crc32c.clone(),
                        actual,
                    });
                }
                let stream = ByteStream::from_path(&path)
                    .await
                    .map_err(|e| ObjectError::Io {
                        path: path.clone(),
                        source: std::io::Error::other(e.to_string()),
                    })?;
                self.put_single(bucket, key, stream, meta).await
            }
        }
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectInfo>> {
        validate_bucket(bucket)?;
        validate_key(key)?;
        let got = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await;
        let head = match got {
            Ok(head) => head,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => return Ok(None),
            Err(e) => return Err(unavailable(e)),
        };
        let mut metadata: BTreeMap<String, String> = head
            .metadata()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let sha256 = metadata.remove(SHA256_METADATA);
        let recorded_crc32c = metadata.remove(CRC32C_METADATA);
        // A multipart object's own checksum is composite ("…-N"); the whole body's is ours.
        let crc32c = head
            .checksum_crc32_c()
            .filter(|c| !c.contains('-'))
            .map(str::to_string)
            .or(recorded_crc32c);
        Ok(Some(ObjectInfo {
            key: key.to_string(),
            size: head.content_length().unwrap_or(0).max(0) as u64,
            crc32c,
            sha256,
            content_type: head.content_type().map(str::to_string),
            metadata,
        }))
    }

    async fn get(
        &self,
        bucket: &str,
        key: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<Bytes> {
        validate_bucket(bucket)?;
        validate_key(key)?;
        if let Some(r) = &range
            && r.end <= r.start
        {
            return Ok(Bytes::new());
        }
        let request = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_range(range.map(|r| format!("bytes={}-{}", r.start, r.end - 1)));
        let got = match request.send().await {
            Ok(got) => got,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Err(ObjectError::NotFound {
                    bucket: bucket.to_string(),
                    key: key.to_string(),
                });
            }
            // A range that starts past the end: nothing there, as the folder store answers.
            Err(e) if code(&e) == Some("InvalidRange") => return Ok(Bytes::new()),
            Err(e) => return Err(unavailable(e)),
        };
        let body = got
            .body
            .collect()
            .await
            .map_err(|e| ObjectError::Unavailable {
                backend: BACKEND,
                message: e.to_string(),
            })?;
        Ok(body.into_bytes())
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Listing> {
        validate_bucket(bucket)?;
        let listed = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .max_keys(limit.clamp(1, 1000) as i32)
            .set_continuation_token(cursor.map(str::to_string))
            .send()
            .await
            .map_err(unavailable)?;
        let objects = listed
            .contents()
            .iter()
            .map(|o| ObjectInfo {
                key: o.key().unwrap_or_default().to_string(),
                size: o.size().unwrap_or(0).max(0) as u64,
                crc32c: None,
                sha256: None,
                content_type: None,
                metadata: BTreeMap::new(),
            })
            .collect();
        Ok(Listing {
            objects,
            next: listed.next_continuation_token().map(str::to_string),
        })
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        validate_bucket(bucket)?;
        validate_key(key)?;
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
