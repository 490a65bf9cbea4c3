//! `callrec init` end to end: the embedded defaults in a fresh folder, and DynamoDB + S3 on the
//! emulator (started on a free loopback port, stopped afterwards).

use callrec_fixtures::moto::Moto;
use std::path::Path;
use std::process::{Command, Output};

fn init(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_callrec"))
        .arg("init")
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .output()
        .expect("run callrec init")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn embedded_defaults_are_created_once() {
    let dir = tempfile::tempdir().unwrap();
    let first = init(dir.path(), &[], &[]);
    assert!(first.status.success(), "{first:?}");
    let text = stdout(&first);
    assert!(text.contains("configuration: embedded defaults"), "{text}");
    assert!(text.contains("callrec-data/callrec.db created"), "{text}");
    assert!(
        dir.path()
            .join("callrec-data/objects/callrec-general")
            .is_dir()
    );
    let second = stdout(&init(dir.path(), &[], &[]));
    assert!(
        second.contains("already there; schema up to date"),
        "{second}"
    );
    assert!(!second.contains(" created"), "{second}");
}

#[test]
fn a_bad_config_names_the_key_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), "[state]\nbackend = \"mysql\"\n").unwrap();
    let out = init(dir.path(), &["--config", "c.toml"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("state.backend"), "{err}");
}

#[test]
fn dynamodb_and_s3_are_created_and_said() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
        [state]
        backend = "dynamodb"
        dynamodb_table = "callrec-e2e"
        endpoint_url = "{0}"
        region = "us-east-1"

        [objects]
        backend = "s3"
        endpoint_url = "{0}"
        region = "us-east-1"
        force_path_style = true

        [routing]
        default = "care"
        staging = {{ bucket = "acme-staging" }}

        [lines_of_business.care]
        bucket = "acme-care"
        "#,
        moto.endpoint
    );
    std::fs::write(dir.path().join("callrec.toml"), config).unwrap();
    let creds = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    // Buckets are infrastructure: without --create-buckets a missing one is an error.
    let refused = init(dir.path(), &["-c", "callrec.toml"], &creds);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("--create-buckets"), "{err}");

    let out = init(
        dir.path(),
        &["-c", "callrec.toml", "--create-buckets"],
        &creds,
    );
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains("state: DynamoDB table callrec-e2e already there")
            || text.contains("created table callrec-e2e"),
        "{text}"
    );
    assert!(
        text.contains("objects: S3 bucket acme-care created"),
        "{text}"
    );
    assert!(
        text.contains("objects: S3 bucket acme-staging created"),
        "{text}"
    );

    let again = stdout(&init(dir.path(), &["-c", "callrec.toml"], &creds));
    assert!(
        again.contains("state: DynamoDB table callrec-e2e already there"),
        "{again}"
    );
    assert!(
        again.contains("objects: S3 bucket acme-care already there"),
        "{again}"
    );
}
