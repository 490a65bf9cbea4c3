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

/// A configuration on the emulator at `endpoint`: DynamoDB `table`, S3 with a staging bucket and
/// one line of business (care).
fn aws_config(endpoint: &str, table: &str, staging: &str, care: &str) -> String {
    format!(
        r#"
        [state]
        backend = "dynamodb"
        dynamodb_table = "{table}"
        endpoint_url = "{endpoint}"
        region = "us-east-1"

        [objects]
        backend = "s3"
        endpoint_url = "{endpoint}"
        region = "us-east-1"
        force_path_style = true

        [routing]
        default = "care"
        staging = {{ bucket = "{staging}" }}

        [lines_of_business.care]
        bucket = "{care}"
        "#
    )
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
    let config = aws_config(&moto.endpoint, "callrec-e2e", "acme-staging", "acme-care");
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

#[test]
fn check_says_whether_the_stores_are_what_callrec_needs_and_creates_nothing() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let config = |table: &str| aws_config(&moto.endpoint, table, "chk-staging", "chk-care");
    std::fs::write(dir.path().join("right.toml"), config("made-by-init")).unwrap();
    std::fs::write(dir.path().join("wrong.toml"), config("made-elsewhere")).unwrap();
    let creds = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    // Nothing there yet: each missing thing named, exit 1, and nothing created.
    let missing = init(dir.path(), &["-c", "right.toml", "--check"], &creds);
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    let text = stdout(&missing);
    for line in [
        "PROBLEM state: DynamoDB table made-by-init does not exist",
        "PROBLEM objects: s3 bucket chk-care does not exist",
        "PROBLEM objects: s3 bucket chk-staging does not exist",
    ] {
        assert!(text.contains(line), "{text}");
    }
    let still = init(dir.path(), &["-c", "right.toml", "--check"], &creds);
    assert_eq!(still.status.code(), Some(1), "--check created something");

    // What init creates passes, and its shape is callrec's.
    let made = init(
        dir.path(),
        &["-c", "right.toml", "--create-buckets"],
        &creds,
    );
    assert!(made.status.success(), "{made:?}");
    let ok = init(
        dir.path(),
        &["-c", "right.toml", "--check", "--json"],
        &creds,
    );
    assert!(ok.status.success(), "{ok:?}");
    let found: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(found["problems"], serde_json::json!([]));
    let shape = &found["table"]["shape"];
    assert_eq!(
        shape["keys"],
        serde_json::json!(["pk HASH S", "sk RANGE S"])
    );
    assert_eq!(
        shape["indexes"]["work"],
        serde_json::json!(["work_pk HASH S", "work_sk RANGE S", "projection ALL"])
    );
    assert_eq!(
        shape["indexes"]["day"],
        serde_json::json!(["day_pk HASH S", "day_sk RANGE S", "projection KEYS_ONLY"])
    );
    assert_eq!(shape["indexes"].as_object().unwrap().len(), 6);
    assert_eq!(found["table"]["billing_mode"], "PAY_PER_REQUEST");

    // A table made elsewhere with one index keyed wrong and one missing: both named.
    let mut attributes = vec![
        serde_json::json!({"AttributeName": "pk", "AttributeType": "S"}),
        serde_json::json!({"AttributeName": "sk", "AttributeType": "S"}),
    ];
    let mut indexes = Vec::new();
    // The calendar with every attribute projected: it works, but costs a write of the index on
    // every write of a call: named too.
    for (name, sort_type) in [("pending", "S"), ("work", "N"), ("open", "S"), ("day", "S")] {
        attributes
            .push(serde_json::json!({"AttributeName": format!("{name}_pk"), "AttributeType": "S"}));
        attributes.push(
            serde_json::json!({"AttributeName": format!("{name}_sk"), "AttributeType": sort_type}),
        );
        indexes.push(serde_json::json!({
            "IndexName": name,
            "KeySchema": [
                {"AttributeName": format!("{name}_pk"), "KeyType": "HASH"},
                {"AttributeName": format!("{name}_sk"), "KeyType": "RANGE"}
            ],
            "Projection": {"ProjectionType": "ALL"}
        }));
    }
    let created = reqwest::blocking::Client::new()
        .post(&moto.endpoint)
        .header("X-Amz-Target", "DynamoDB_20120810.CreateTable")
        .header("Content-Type", "application/x-amz-json-1.0")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=test/20261204/us-east-1/dynamodb/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .json(&serde_json::json!({
            "TableName": "made-elsewhere",
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"}
            ],
            "AttributeDefinitions": attributes,
            "GlobalSecondaryIndexes": indexes,
        }))
        .send()
        .unwrap();
    assert!(created.status().is_success(), "{:?}", created.text());
    let wrong = init(dir.path(), &["-c", "wrong.toml", "--check"], &creds);
    assert_eq!(wrong.status.code(), Some(1), "{wrong:?}");
    let text = stdout(&wrong);
    assert!(
        text.contains("PROBLEM state: DynamoDB table made-elsewhere: index due is missing"),
        "{text}"
    );
    assert!(
        text.contains(
            "index work is [work_pk HASH S, work_sk RANGE N, projection ALL], callrec needs \
             [work_pk HASH S, work_sk RANGE S, projection ALL]"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "index day is [day_pk HASH S, day_sk RANGE S, projection ALL], callrec needs \
             [day_pk HASH S, day_sk RANGE S, projection KEYS_ONLY]"
        ),
        "{text}"
    );
    assert!(!text.contains("index pending"), "{text}");
}
