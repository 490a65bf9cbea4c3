//! The `ObjectStore` conformance suite: every backend must pass all of it.

use bytes::Bytes;
use callrec_ingest::objects::{
    Body, ObjectError, ObjectMeta, ObjectStore, PutOutcome, checksum_file,
};
use sha2::Digest as _;
use std::sync::Arc;

pub type Objects = Arc<dyn ObjectStore>;

pub const BUCKET: &str = "calls-sales";

pub fn meta_for(bytes: &[u8]) -> ObjectMeta {
    let mut crc = callrec_ingest::objects::Crc32c::new();
    crc.update(bytes);
    let mut metadata = std::collections::BTreeMap::new();
    metadata.insert("call-id".to_string(), "c-1".to_string());
    metadata.insert("line-of-business".to_string(), "sales".to_string());
    ObjectMeta {
        content_type: "audio/wav".into(),
        crc32c: crc.base64(),
        sha256: hex::encode(sha2::Sha256::digest(bytes)),
        metadata,
        storage_class: None,
        kms_key_id: None,
    }
}

fn body(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Create-only: the same bytes again succeed without a write, different bytes conflict and the
/// object stays as it was.
pub async fn create_only(store: Objects) {
    let a = body(10_000, 1);
    let key = "sales/2026/11/24/c-1.wav";
    let got = store
        .put_new(
            BUCKET,
            key,
            Body::Bytes(Bytes::from(a.clone())),
            &meta_for(&a),
        )
        .await
        .unwrap();
    assert_eq!(got, PutOutcome::Created);
    let again = store
        .put_new(
            BUCKET,
            key,
            Body::Bytes(Bytes::from(a.clone())),
            &meta_for(&a),
        )
        .await
        .unwrap();
    assert_eq!(again, PutOutcome::AlreadyExists);
    let b = body(10_000, 2);
    let conflict = store
        .put_new(
            BUCKET,
            key,
            Body::Bytes(Bytes::from(b.clone())),
            &meta_for(&b),
        )
        .await;
    assert!(
        matches!(conflict, Err(ObjectError::Conflict { .. })),
        "{conflict:?}"
    );
    assert_eq!(
        store.get(BUCKET, key, None).await.unwrap(),
        Bytes::from(a.clone())
    );

    let info = store.head(BUCKET, key).await.unwrap().unwrap();
    assert_eq!(info.size, 10_000);
    assert_eq!(info.crc32c.as_deref(), Some(meta_for(&a).crc32c.as_str()));
    assert_eq!(info.sha256.as_deref(), Some(meta_for(&a).sha256.as_str()));
    assert_eq!(
        info.metadata.get("call-id").map(String::as_str),
        Some("c-1")
    );
    assert_eq!(store.head(BUCKET, "sales/none.wav").await.unwrap(), None);
}

/// A body whose bytes do not match the checksum given with it is refused, nothing written.
pub async fn checksum_is_verified(store: Objects) {
    let a = body(5000, 3);
    let mut wrong = meta_for(&a);
    wrong.crc32c = meta_for(&body(5000, 4)).crc32c;
    let got = store
        .put_new(BUCKET, "sales/bad.wav", Body::Bytes(Bytes::from(a)), &wrong)
        .await;
    assert!(
        matches!(got, Err(ObjectError::ChecksumMismatch { .. })),
        "{got:?}"
    );
    assert_eq!(store.head(BUCKET, "sales/bad.wav").await.unwrap(), None);
}

/// A scratch file handed over: stored whole, the object independent of the scratch file's name
/// once its owner removes it; a wrong checksum first stores nothing (the folder store checks as
/// it links or copies; the S3 store reads the file's CRC32C before sending, as well as S3's own
/// check of `x-amz-checksum-crc32c`, which moto does not emulate for a streamed body).
pub async fn scratch_files_are_handed_over(store: Objects, dir: &std::path::Path) {
    let path = dir.join("spooled.part");
    let data = body(700_000, 11);
    std::fs::write(&path, &data).unwrap();
    let meta = meta_for(&data);
    let key = "staging/scratch-1.wav";
    // A wrong checksum: refused, nothing at the key, the scratch file untouched.
    let mut wrong = meta.clone();
    wrong.crc32c = meta_for(b"other").crc32c;
    let got = store
        .put_new(BUCKET, key, Body::Scratch(path.clone()), &wrong)
        .await;
    assert!(
        matches!(got, Err(ObjectError::ChecksumMismatch { .. })),
        "{got:?}"
    );
    assert_eq!(store.head(BUCKET, key).await.unwrap(), None);
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert_eq!(
        store
            .put_new(BUCKET, key, Body::Scratch(path.clone()), &meta)
            .await
            .unwrap(),
        PutOutcome::Created
    );
    assert_eq!(
        store
            .put_new(BUCKET, key, Body::Scratch(path.clone()), &meta)
            .await
            .unwrap(),
        PutOutcome::AlreadyExists
    );
    std::fs::remove_file(&path).unwrap();
    let info = store.head(BUCKET, key).await.unwrap().unwrap();
    assert_eq!(info.size, data.len() as u64);
    assert_eq!(info.crc32c.as_deref(), Some(meta.crc32c.as_str()));
    assert_eq!(info.sha256.as_deref(), Some(meta.sha256.as_str()));
    assert_eq!(&store.get(BUCKET, key, None).await.unwrap()[..], &data[..]);
}

/// Streamed from a file; ranged reads; listing by prefix across pages; deleting staging.
pub async fn files_ranges_lists_deletes(store: Objects, dir: &std::path::Path) {
    let path = dir.join("upload.wav");
    let data = body(300_000, 5);
    std::fs::write(&path, &data).unwrap();
    let (crc, sha, size) = checksum_file(&path).await.unwrap();
    assert_eq!(size, 300_000);
    let mut meta = meta_for(&data);
    assert_eq!(
        (crc.as_str(), sha.as_str()),
        (meta.crc32c.as_str(), meta.sha256.as_str())
    );
    meta.storage_class = Some("STANDARD_IA".into());
    store
        .put_new(BUCKET, "staging/c-9.wav", Body::File(path.clone()), &meta)
        .await
        .unwrap();
    let part = store
        .get(BUCKET, "staging/c-9.wav", Some(1000..1010))
        .await
        .unwrap();
    assert_eq!(&part[..], &data[1000..1010]);
    let tail = store
        .get(BUCKET, "staging/c-9.wav", Some(299_990..400_000))
        .await
        .unwrap();
    assert_eq!(&tail[..], &data[299_990..]);

    for i in 0..7 {
        let bytes = body(100 + i, i as u8);
        store
            .put_new(
                BUCKET,
                &format!("list/k{i:02}.wav"),
                Body::Bytes(Bytes::from(bytes.clone())),
                &meta_for(&bytes),
            )
            .await
            .unwrap();
    }
    let mut keys = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .list(BUCKET, "list/", 3, cursor.as_deref())
            .await
            .unwrap();
        assert!(page.objects.len() <= 3);
        keys.extend(page.objects.iter().map(|o| o.key.clone()));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let want: Vec<String> = (0..7).map(|i| format!("list/k{i:02}.wav")).collect();
    assert_eq!(keys, want);

    store.delete(BUCKET, "staging/c-9.wav").await.unwrap();
    assert_eq!(store.head(BUCKET, "staging/c-9.wav").await.unwrap(), None);
    store.delete(BUCKET, "staging/c-9.wav").await.unwrap();
    assert!(matches!(
        store.get(BUCKET, "staging/c-9.wav", None).await,
        Err(ObjectError::NotFound { .. })
    ));
}

/// Keys that could escape a folder or are not ours are refused before any I/O.
pub async fn bad_keys(store: Objects) {
    let a = body(10, 0);
    for key in [
        "",
        "/abs.wav",
        "../escape.wav",
        "a/../../b.wav",
        "a//b.wav",
        "a/./b.wav",
        ".hidden",
        "a/b\\c.wav",
        "a b.wav",
        "sales/\u{0}.wav",
        &"x".repeat(1100),
    ] {
        let got = store
            .put_new(
                BUCKET,
                key,
                Body::Bytes(Bytes::from(a.clone())),
                &meta_for(&a),
            )
            .await;
        assert!(
            matches!(got, Err(ObjectError::BadKey { .. })),
            "{key:?}: {got:?}"
        );
        assert!(matches!(
            store.head(BUCKET, key).await,
            Err(ObjectError::BadKey { .. })
        ));
    }
    for bucket in ["..", "a", "UPPER", "-x-", "x/y"] {
        let got = store.head(bucket, "k.wav").await;
        assert!(
            matches!(got, Err(ObjectError::BadKey { .. })),
            "{bucket}: {got:?}"
        );
    }
}

/// Many writers racing on one key with different bytes: exactly one wins, the rest conflict
/// (or find their own identical bytes), and the object is whole.
pub async fn racing_writers(store: Objects) {
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let bytes = body(50_000, i % 2);
            store
                .put_new(
                    BUCKET,
                    "race/one.wav",
                    Body::Bytes(Bytes::from(bytes.clone())),
                    &meta_for(&bytes),
                )
                .await
        }));
    }
    let mut created = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(PutOutcome::Created) => created += 1,
            Ok(PutOutcome::AlreadyExists) | Err(ObjectError::Conflict { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(created, 1);
    let stored = store.get(BUCKET, "race/one.wav", None).await.unwrap();
    assert!(stored[..] == body(50_000, 0)[..] || stored[..] == body(50_000, 1)[..]);
}
