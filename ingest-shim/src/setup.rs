//! Opening the configured stores, and `callrec init`: create what is missing and say what was
//! created.

use crate::config::{Loaded, ObjectsBackend, ObjectsConfig, StateBackend, StateConfig};
use crate::objects::folder::FolderStore;
use crate::objects::s3::{S3Config, S3Store};
use crate::objects::{ObjectError, ObjectStore};
use crate::store::dynamo::{DynamoConfig, DynamoStore};
use crate::store::sqlite::SqliteStore;
use crate::store::{CallStore, StoreError};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Why setting up failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    State(#[from] StoreError),
    #[error(transparent)]
    Objects(#[from] ObjectError),
    #[error("bucket {0} does not exist (create it, or run `callrec init --create-buckets`)")]
    MissingBucket(String),
    #[error(transparent)]
    Config(#[from] crate::routing::ConfigError),
    #[error(transparent)]
    Ocp(#[from] crate::ocp::OcpError),
}

/// The configured state store (SQLite migrations run on open).
pub async fn open_state(config: &StateConfig) -> Result<Arc<dyn CallStore>, StoreError> {
    Ok(match config.backend {
        StateBackend::Sqlite => Arc::new(SqliteStore::open(&config.sqlite_path)?),
        StateBackend::Dynamodb => Arc::new(DynamoStore::connect(&dynamo_config(config)).await),
    })
}

fn dynamo_config(config: &StateConfig) -> DynamoConfig {
    DynamoConfig {
        table: config.dynamodb_table.clone(),
        endpoint_url: config.endpoint_url.clone(),
        region: config.region.clone(),
    }
}

fn s3_config(config: &ObjectsConfig) -> S3Config {
    S3Config {
        endpoint_url: config.endpoint_url.clone(),
        region: config.region.clone(),
        force_path_style: config.force_path_style,
    }
}

/// The configured object store.
pub async fn open_objects(config: &ObjectsConfig) -> Result<Arc<dyn ObjectStore>, ObjectError> {
    Ok(match config.backend {
        ObjectsBackend::Folder => Arc::new(FolderStore::open(&config.folder_root)?),
        ObjectsBackend::S3 => Arc::new(S3Store::connect(&s3_config(config)).await),
    })
}

/// Every bucket the configuration writes to: each line of business's and staging's.
pub fn buckets(loaded: &Loaded) -> BTreeSet<String> {
    let mut buckets: BTreeSet<String> = loaded
        .routing
        .lines()
        .iter()
        .map(|l| l.bucket.clone())
        .collect();
    buckets.insert(loaded.routing.staging.bucket.clone());
    buckets
}

/// Creates the state store's table/schema and checks (or, with `create_buckets`, creates) the
/// buckets. Returns one line per thing, saying what was created and what was there already.
pub async fn init(loaded: &Loaded, create_buckets: bool) -> Result<Vec<String>, SetupError> {
    let config = &loaded.config;
    let mut report = vec![format!("configuration: {}", loaded.source)];
    match config.state.backend {
        StateBackend::Sqlite => {
            let existed = config.state.sqlite_path.is_file();
            SqliteStore::open(&config.state.sqlite_path)?;
            report.push(format!(
                "state: SQLite {} {}",
                config.state.sqlite_path.display(),
                if existed {
                    "already there; schema up to date"
                } else {
                    "created, schema applied"
                }
            ));
        }
        StateBackend::Dynamodb => {
            let store = DynamoStore::connect(&dynamo_config(&config.state)).await;
            let created = store.ensure_table().await?;
            if created.is_empty() {
                report.push(format!(
                    "state: DynamoDB table {} already there",
                    store.table()
                ));
            } else {
                for thing in created {
                    report.push(format!("state: DynamoDB created {thing}"));
                }
            }
        }
    }
    match config.objects.backend {
        ObjectsBackend::Folder => {
            let store = FolderStore::open(&config.objects.folder_root)?;
            for bucket in buckets(loaded) {
                let dir = store.root().join(&bucket);
                let existed = dir.is_dir();
                std::fs::create_dir_all(&dir).map_err(|source| ObjectError::Io {
                    path: dir.clone(),
                    source,
                })?;
                report.push(format!(
                    "objects: folder {} {}",
                    dir.display(),
                    if existed { "already there" } else { "created" }
                ));
            }
        }
        ObjectsBackend::S3 => {
            let store = S3Store::connect(&s3_config(&config.objects)).await;
            for bucket in buckets(loaded) {
                if create_buckets {
                    let created = store.ensure_bucket(&bucket).await?;
                    report.push(format!(
                        "objects: S3 bucket {bucket} {}",
                        if created { "created" } else { "already there" }
                    ));
                } else if store.bucket_exists(&bucket).await? {
                    report.push(format!("objects: S3 bucket {bucket} already there"));
                } else {
                    return Err(SetupError::MissingBucket(bucket));
                }
            }
        }
    }
    Ok(report)
}

/// What `callrec init --check` found: one line per thing looked at, the problems (none: the
/// stores are what callrec needs), and the DynamoDB table's facts when there is one.
#[derive(Debug, serde::Serialize)]
pub struct Check {
    pub report: Vec<String>,
    pub problems: Vec<String>,
    pub table: Option<crate::store::dynamo::TableFacts>,
}

/// Checks, creating nothing, that the state store and every bucket exist as callrec needs them:
/// the DynamoDB table's keys and indexes ([`crate::store::dynamo::TableShape`]), production
/// settings noted (on-demand billing, encryption, deletion protection), each bucket present.
pub async fn check(loaded: &Loaded) -> Result<Check, SetupError> {
    let config = &loaded.config;
    let mut check = Check {
        report: vec![format!("configuration: {}", loaded.source)],
        problems: Vec::new(),
        table: None,
    };
    match config.state.backend {
        StateBackend::Sqlite => {
            let path = &config.state.sqlite_path;
            if path.is_file() {
                SqliteStore::open(path)?;
                check.report.push(format!(
                    "state: SQLite {} (schema up to date)",
                    path.display()
                ));
            } else {
                check
                    .problems
                    .push(format!("state: SQLite {} does not exist", path.display()));
            }
        }
        StateBackend::Dynamodb => {
            let store = DynamoStore::connect(&dynamo_config(&config.state)).await;
            match store.describe().await? {
                None => check.problems.push(format!(
                    "state: DynamoDB table {} does not exist",
                    store.table()
                )),
                Some(facts) => {
                    let differences = facts.shape.differences();
                    if differences.is_empty() {
                        check.report.push(format!(
                            "state: DynamoDB table {} has callrec's keys and its {} indexes",
                            facts.name,
                            facts.shape.indexes.len()
                        ));
                    }
                    for difference in differences {
                        check.problems.push(format!(
                            "state: DynamoDB table {}: {difference}",
                            facts.name
                        ));
                    }
                    check.report.push(format!(
                        "state: billing {}, encryption {}, deletion protection {}",
                        facts.billing_mode,
                        facts.encryption,
                        if facts.deletion_protection {
                            "on"
                        } else {
                            "off"
                        }
                    ));
                    check.table = Some(facts);
                }
            }
        }
    }
    let s3 = match config.objects.backend {
        ObjectsBackend::Folder => None,
        ObjectsBackend::S3 => Some(S3Store::connect(&s3_config(&config.objects)).await),
    };
    for bucket in buckets(loaded) {
        let (backend, present) = match &s3 {
            None => ("folder", config.objects.folder_root.join(&bucket).is_dir()),
            Some(s3) => ("s3", s3.bucket_exists(&bucket).await?),
        };
        if present {
            check
                .report
                .push(format!("objects: {backend} bucket {bucket} is there"));
        } else {
            check
                .problems
                .push(format!("objects: {backend} bucket {bucket} does not exist"));
        }
    }
    Ok(check)
}

/// The OCP Exports API client, when OCP is configured (`None`: no reconciliation).
pub fn open_ocp(
    config: &crate::config::OcpSection,
) -> Result<Option<Arc<dyn crate::ocp::OcpExports>>, SetupError> {
    let Some(client) = config.client_config()? else {
        return Ok(None);
    };
    Ok(Some(Arc::new(crate::ocp::HttpOcp::new(client)?)))
}
