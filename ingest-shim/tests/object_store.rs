//! The `ObjectStore` conformance suite against the folder store and S3 (moto, started by this
//! test on a free loopback port and stopped afterwards).

mod conformance;
mod support;

use callrec_ingest::objects::folder::FolderStore;
use callrec_ingest::objects::s3::{S3Config, S3Store};
use callrec_ingest::objects::{Body, ObjectStore, PutOutcome};
use conformance::objects::{self, BUCKET, Objects, meta_for};
use std::sync::Arc;
use support::Moto;

fn folder() -> (tempfile::TempDir, Objects) {
    let dir = tempfile::tempdir().unwrap();
    let store = FolderStore::open(dir.path().join("objects")).unwrap();
    (dir, Arc::new(store))
}

async fn s3(moto: &Moto) -> S3Store {
    let store = S3Store::from_sdk_config(
        &support::sdk_config(moto),
        &S3Config {
            force_path_style: true,
            ..S3Config::default()
        },
    );
    assert!(store.ensure_bucket(BUCKET).await.unwrap());
    assert!(!store.ensure_bucket(BUCKET).await.unwrap());
    store
}

#[tokio::test]
async fn folder_create_only() {
    let (_dir, store) = folder();
    objects::create_only(store).await;
}

#[tokio::test]
async fn folder_checksum_is_verified() {
    let (_dir, store) = folder();
    objects::checksum_is_verified(store).await;
}

#[tokio::test]
async fn folder_files_ranges_lists_deletes() {
    let (dir, store) = folder();
    objects::files_ranges_lists_deletes(store, dir.path()).await;
}

#[tokio::test]
async fn folder_scratch_files_are_handed_over() {
    let (dir, store) = folder();
    objects::scratch_files_are_handed_over(store, dir.path()).await;
}

/// The folder store links a scratch file into place (no copy, no new file: the object is the
/// scratch file's inode), and copies it where a link cannot be made (another file system).
#[tokio::test]
async fn folder_links_a_scratch_file_and_copies_it_across_file_systems() {
    use std::os::unix::fs::MetadataExt as _;
    let dir = tempfile::tempdir().unwrap();
    let store = FolderStore::open(dir.path().join("objects")).unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let meta = meta_for(&data);
    let scratch = dir.path().join("output.part");
    std::fs::write(&scratch, &data).unwrap();
    store
        .put_new(
            BUCKET,
            "sales/linked.wav",
            Body::Scratch(scratch.clone()),
            &meta,
        )
        .await
        .unwrap();
    let object = store.object_path(BUCKET, "sales/linked.wav").unwrap();
    let (a, b) = (
        std::fs::metadata(&scratch).unwrap(),
        std::fs::metadata(&object).unwrap(),
    );
    assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()));
    assert_eq!(b.nlink(), 2, "a temporary name was left behind");
    assert_eq!(
        std::fs::read_dir(dir.path().join("objects/.tmp"))
            .unwrap()
            .count(),
        0
    );
    // A plain file body is still copied: the object never shares the caller's file.
    let file = dir.path().join("kept.wav");
    std::fs::write(&file, &data).unwrap();
    store
        .put_new(BUCKET, "sales/copied.wav", Body::File(file.clone()), &meta)
        .await
        .unwrap();
    let copied = store.object_path(BUCKET, "sales/copied.wav").unwrap();
    assert_ne!(
        std::fs::metadata(&file).unwrap().ino(),
        std::fs::metadata(&copied).unwrap().ino()
    );
    // Across file systems (where /dev/shm is one of its own): copied, stored all the same.
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() && std::fs::metadata(shm).unwrap().dev() != a.dev() {
        let other = tempfile::tempdir_in(shm).unwrap();
        let scratch = other.path().join("output.part");
        std::fs::write(&scratch, &data).unwrap();
        store
            .put_new(
                BUCKET,
                "sales/across.wav",
                Body::Scratch(scratch.clone()),
                &meta,
            )
            .await
            .unwrap();
        let object = store.object_path(BUCKET, "sales/across.wav").unwrap();
        assert_eq!(std::fs::read(&object).unwrap(), data);
        assert_eq!(std::fs::metadata(&object).unwrap().nlink(), 1);
    }
}

#[tokio::test]
async fn folder_bad_keys() {
    let (_dir, store) = folder();
    objects::bad_keys(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn folder_racing_writers() {
    let (_dir, store) = folder();
    objects::racing_writers(store).await;
}

#[tokio::test]
async fn folder_never_writes_outside_its_root() {
    let dir = tempfile::tempdir().unwrap();
    let store = FolderStore::open(dir.path().join("objects")).unwrap();
    let _ = store.object_path(BUCKET, "../../etc/passwd").unwrap_err();
    // Everything the suite wrote is under the root.
    objects::create_only(Arc::new(store.clone())).await;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        assert_eq!(entry.unwrap().file_name(), "objects");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_conformance() {
    let moto = Moto::start();
    let store: Objects = Arc::new(s3(&moto).await);
    objects::create_only(Arc::clone(&store)).await;
    objects::checksum_is_verified(Arc::clone(&store)).await;
    let dir = tempfile::tempdir().unwrap();
    objects::files_ranges_lists_deletes(Arc::clone(&store), dir.path()).await;
    objects::scratch_files_are_handed_over(Arc::clone(&store), dir.path()).await;
    objects::bad_keys(Arc::clone(&store)).await;
    objects::racing_writers(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_multipart_with_part_checksums_is_create_only_too() {
    let moto = Moto::start();
    let store = s3(&moto).await.with_multipart(8 << 20, 5 << 20);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.wav");
    let data: Vec<u8> = (0..12u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    let meta = meta_for(&data);
    let key = "sales/long.wav";
    assert_eq!(
        store
            .put_new(BUCKET, key, Body::File(path.clone()), &meta)
            .await
            .unwrap(),
        PutOutcome::Created
    );
    assert_eq!(
        store
            .put_new(BUCKET, key, Body::File(path.clone()), &meta)
            .await
            .unwrap(),
        PutOutcome::AlreadyExists
    );
    let info = store.head(BUCKET, key).await.unwrap().unwrap();
    assert_eq!(info.size, data.len() as u64);
    assert_eq!(info.sha256.as_deref(), Some(meta.sha256.as_str()));
    let middle = store
        .get(BUCKET, key, Some(6_000_000..6_000_100))
        .await
        .unwrap();
    assert_eq!(&middle[..], &data[6_000_000..6_000_100]);
    // Different bytes under the same key: a conflict, the object untouched.
    let other: Vec<u8> = data.iter().map(|b| b.wrapping_add(1)).collect();
    std::fs::write(&path, &other).unwrap();
    let got = store
        .put_new(BUCKET, key, Body::File(path), &meta_for(&other))
        .await;
    assert!(
        matches!(
            got,
            Err(callrec_ingest::objects::ObjectError::Conflict { .. })
        ),
        "{got:?}"
    );
    assert_eq!(
        store.head(BUCKET, key).await.unwrap().unwrap().sha256,
        Some(meta.sha256)
    );
}
