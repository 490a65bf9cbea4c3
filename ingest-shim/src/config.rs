//! The configuration: one TOML file plus `CALLREC_*` environment overrides, validated at start
//! with errors that name the key. With no file at all, the embedded defaults run everything on
//! this machine: SQLite and a local folder under `callrec-data/`.
//!
//! Environment variables override file values; nested keys are joined with `__`:
//! `CALLREC_STATE__BACKEND=dynamodb`, `CALLREC_STATE__DYNAMODB_TABLE=callrec`,
//! `CALLREC_OBJECTS__BACKEND=s3`. AWS credentials never go here: they come from the standard
//! AWS chain (environment, profile, instance or task role).

use crate::routing::{ConfigError, LineOfBusinessConfig, Routing, RoutingConfig, StagingConfig};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the embedded defaults keep their data (relative to the working directory).
pub const DEFAULT_DATA_DIR: &str = "callrec-data";

/// `[state]`: the call state store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// `sqlite` (embedded default) or `dynamodb`.
    pub backend: StateBackend,
    pub sqlite_path: PathBuf,
    pub dynamodb_table: String,
    /// An endpoint other than AWS's (a local emulator, a VPC endpoint).
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    Sqlite,
    Dynamodb,
}

/// `[objects]`: the object store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectsConfig {
    /// `folder` (embedded default) or `s3`.
    pub backend: ObjectsBackend,
    /// The folder store's root: one subfolder per bucket.
    pub folder_root: PathBuf,
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    /// Path-style S3 addressing (emulators, some S3-compatible endpoints).
    pub force_path_style: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectsBackend {
    Folder,
    S3,
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub state: StateConfig,
    pub objects: ObjectsConfig,
    pub routing: RoutingConfig,
    pub lines_of_business: BTreeMap<String, LineOfBusinessConfig>,
}

impl Default for Config {
    fn default() -> Self {
        let data = Path::new(DEFAULT_DATA_DIR);
        Config {
            state: StateConfig {
                backend: StateBackend::Sqlite,
                sqlite_path: data.join("callrec.db"),
                dynamodb_table: "callrec".into(),
                endpoint_url: None,
                region: None,
            },
            objects: ObjectsConfig {
                backend: ObjectsBackend::Folder,
                folder_root: data.join("objects"),
                endpoint_url: None,
                region: None,
                force_path_style: false,
            },
            routing: RoutingConfig {
                default: "general".into(),
                staging: StagingConfig {
                    bucket: "callrec-staging".into(),
                    prefix: "staging".into(),
                },
                rules: Vec::new(),
            },
            lines_of_business: BTreeMap::from([(
                "general".to_string(),
                LineOfBusinessConfig {
                    bucket: "callrec-general".into(),
                    key_template: None,
                    storage_class: None,
                    kms_key_id: None,
                },
            )]),
        }
    }
}

/// A configuration that was loaded and checked.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub routing: Routing,
    /// Where it came from, for logs: the file, or "embedded defaults".
    pub source: String,
}

impl Config {
    /// Loads `file` (if given; it must exist) over the embedded defaults, then the `CALLREC_*`
    /// environment, and validates the result. A file that sets `lines_of_business` replaces the
    /// default line of business rather than adding to it.
    pub fn load(file: Option<&Path>) -> Result<Loaded, ConfigError> {
        Self::load_with_env(file, Env::prefixed("CALLREC_").split("__"))
    }

    fn load_with_env(file: Option<&Path>, env: Env) -> Result<Loaded, ConfigError> {
        let mut defaults = Config::default();
        let mut text = None;
        let mut source = "embedded defaults".to_string();
        if let Some(path) = file {
            let read = std::fs::read_to_string(path).map_err(|e| ConfigError {
                key: "(file)".into(),
                message: format!("{}: {e}", path.display()),
            })?;
            // A file's own lines of business replace the default one instead of joining it.
            let table: toml::Table = toml::from_str(&read).map_err(|e| ConfigError {
                key: "(file)".into(),
                message: format!("{}: {e}", path.display()),
            })?;
            if table.contains_key("lines_of_business") {
                defaults.lines_of_business.clear();
            }
            text = Some(read);
            source = path.display().to_string();
        }
        let mut figment = Figment::from(Serialized::defaults(defaults));
        if let Some(text) = &text {
            figment = figment.merge(Toml::string(text));
        }
        let config: Config = figment.merge(env).extract().map_err(|e| {
            let key = if e.path.is_empty() {
                "(file)".to_string()
            } else {
                e.path.join(".")
            };
            ConfigError {
                key,
                message: e.kind.to_string(),
            }
        })?;
        let routing = config.validate()?;
        Ok(Loaded {
            config,
            routing,
            source,
        })
    }

    /// Checks what serde cannot: routing, names, paths.
    pub fn validate(&self) -> Result<Routing, ConfigError> {
        let error = |key: &str, message: &str| ConfigError {
            key: key.into(),
            message: message.into(),
        };
        if self.state.backend == StateBackend::Dynamodb {
            let table = &self.state.dynamodb_table;
            let ok = (3..=255).contains(&table.len())
                && table
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if !ok {
                return Err(error(
                    "state.dynamodb_table",
                    "3-255 of A-Z a-z 0-9 _ - . (DynamoDB's table name rule)",
                ));
            }
        }
        for (key, url) in [
            ("state.endpoint_url", &self.state.endpoint_url),
            ("objects.endpoint_url", &self.objects.endpoint_url),
        ] {
            if let Some(url) = url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(error(key, "an http:// or https:// URL"));
            }
        }
        if self.state.backend == StateBackend::Sqlite
            && self.state.sqlite_path.as_os_str().is_empty()
        {
            return Err(error("state.sqlite_path", "a file path"));
        }
        if self.objects.backend == ObjectsBackend::Folder
            && self.objects.folder_root.as_os_str().is_empty()
        {
            return Err(error("objects.folder_root", "a folder path"));
        }
        Routing::new(&self.routing, &self.lines_of_business)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env() -> Env {
        Env::prefixed("CALLREC_TEST_NOTHING_")
    }

    #[test]
    fn no_file_means_the_embedded_defaults() {
        let loaded = Config::load_with_env(None, no_env()).unwrap();
        assert_eq!(loaded.config, Config::default());
        assert_eq!(loaded.source, "embedded defaults");
        assert_eq!(
            loaded.routing.route(&Default::default()).bucket,
            "callrec-general"
        );
    }

    #[test]
    fn a_file_overrides_and_its_lines_of_business_replace_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("callrec.toml");
        std::fs::write(
            &path,
            r#"
            [state]
            backend = "dynamodb"
            dynamodb_table = "callrec-prod"
            region = "eu-west-1"
            [routing]
            default = "care"
            [lines_of_business.care]
            bucket = "acme-care"
            "#,
        )
        .unwrap();
        let loaded = Config::load_with_env(Some(&path), no_env()).unwrap();
        assert_eq!(loaded.config.state.backend, StateBackend::Dynamodb);
        assert_eq!(loaded.config.state.dynamodb_table, "callrec-prod");
        // Unset keys keep their defaults.
        assert_eq!(loaded.config.objects.backend, ObjectsBackend::Folder);
        assert_eq!(loaded.config.routing.staging.bucket, "callrec-staging");
        assert_eq!(
            loaded.config.lines_of_business.keys().collect::<Vec<_>>(),
            ["care"]
        );
    }

    #[test]
    #[allow(
        clippy::result_large_err,
        reason = "figment::Jail's closure type is figment's"
    )]
    fn the_environment_overrides_the_file() {
        let env = Env::prefixed("CALLREC_").split("__");
        figment::Jail::expect_with(|jail| {
            jail.set_env("CALLREC_STATE__BACKEND", "dynamodb");
            jail.set_env("CALLREC_STATE__DYNAMODB_TABLE", "from-env");
            let loaded = Config::load_with_env(None, env.clone()).unwrap();
            assert_eq!(loaded.config.state.dynamodb_table, "from-env");
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        for (text, key) in [
            ("[state]\nbackend = \"postgres\"\n", "state.backend"),
            (
                "[state]\nbackend = \"dynamodb\"\ndynamodb_table = \"a b\"\n",
                "state.dynamodb_table",
            ),
            (
                "[objects]\nendpoint_url = \"localhost:9000\"\n",
                "objects.endpoint_url",
            ),
            ("[routing]\ndefault = \"nowhere\"\n", "routing.default"),
            ("[objects]\nbuckit = \"x\"\n", "objects"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = Config::load_with_env(Some(&path), no_env()).unwrap_err();
            assert!(err.key.starts_with(key), "{text}: {err}");
        }
        let err =
            Config::load_with_env(Some(&dir.path().join("missing.toml")), no_env()).unwrap_err();
        assert!(err.message.contains("missing.toml"), "{err}");
    }
}
