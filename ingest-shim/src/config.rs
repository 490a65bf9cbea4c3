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

/// `[server]`: `callrec serve`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on. Default 127.0.0.1:8080 (put a load balancer in front for more).
    pub listen: String,
    /// Accepted bearer tokens for the write endpoints. Secrets: set them through the
    /// environment (`CALLREC_SERVER__BEARER_TOKENS='["…"]'`), never in a committed file.
    pub bearer_tokens: Vec<String>,
    /// Accepted bearer tokens for the reads (`GET /v1/calls/{id}`, `/metrics`): a read-only
    /// scope for dashboards and people; write tokens read too. Secrets, like the write tokens.
    pub read_tokens: Vec<String>,
    /// A second listener for operations (`/healthz`, `/readyz` with details, `/metrics`), without
    /// tokens: bind it where only the platform reaches (e.g. 127.0.0.1:9090 or the task's
    /// private address). Unset: none.
    pub admin_listen: Option<String>,
    /// Largest accepted recording, bytes (413 above). Default 512 MiB (OCP's are ~1 MB/min).
    pub max_body_bytes: u64,
    /// Whole-request time limit, seconds (an upload slower than this is cut off).
    pub request_timeout_s: u64,
    /// Seconds a connection may take to send a whole request head (the first, or the next on a
    /// kept-alive connection, counted from the last answer: also the idle timeout).
    pub header_timeout_s: u64,
    /// Connections served at once; at the cap the listener waits for one to close.
    pub max_connections: usize,
    /// Where uploads are spooled while their checksums are computed.
    pub spool_dir: PathBuf,
    /// Recordings staged and waiting for (or in) the engine at most; beyond, uploads get 503.
    pub queue_depth: usize,
    /// The `Retry-After` of a 503, seconds.
    pub retry_after_s: u64,
    /// How long an upload that finds the queue full waits for a place before it is refused
    /// with 503, milliseconds (its body unread meanwhile: TCP holds the sender back). A place
    /// that frees within this time is taken, instead of the sender sending the whole recording
    /// again after `Retry-After`. 0 refuses at once; at most half of `request_timeout_s` is
    /// waited, whatever this says.
    pub queue_wait_ms: u64,
    /// Engine worker threads (0: one per core).
    pub engine_threads: usize,
    /// Keep the raw upload in staging after the call is stored (default: remove it).
    pub keep_staged: bool,
    /// Pipeline attempts of a call before it is left for a person (not resumed, not retried).
    pub max_attempts: u32,
    /// A call received and not stored is run again this long after its last attempt, doubling
    /// with each failed attempt (at most an hour); also how often the retrier looks, seconds.
    pub retry_base_s: u64,
    /// The longest recording processed, seconds (longer ones fail as too long, and are stored
    /// as they arrived after the attempts). Default 4 hours.
    pub max_call_length_s: u64,
    /// Memory the engine's recordings in flight may take together, MiB, charged by what each
    /// decodes to and the chain holds while it streams (`callrec_engine::batch::memory_estimate`:
    /// a 4-hour 8 kHz WAV call about 22 MiB); a larger one runs alone. Default 2048.
    pub engine_memory_mb: u64,
    /// Seconds an uploaded recording waits for its call's CDR End before it is routed and
    /// processed anyway (on the facts known then; its sidecar says so). An End that arrives
    /// sooner starts it at once. Default 300; 0 processes every upload at once.
    pub end_wait_s: u64,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field(
                "bearer_tokens",
                &format_args!("[{} redacted]", self.bearer_tokens.len()),
            )
            .field(
                "read_tokens",
                &format_args!("[{} redacted]", self.read_tokens.len()),
            )
            .field("admin_listen", &self.admin_listen)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("request_timeout_s", &self.request_timeout_s)
            .field("header_timeout_s", &self.header_timeout_s)
            .field("max_connections", &self.max_connections)
            .field("spool_dir", &self.spool_dir)
            .field("queue_depth", &self.queue_depth)
            .field("retry_after_s", &self.retry_after_s)
            .field("queue_wait_ms", &self.queue_wait_ms)
            .field("engine_threads", &self.engine_threads)
            .field("keep_staged", &self.keep_staged)
            .field("max_attempts", &self.max_attempts)
            .field("retry_base_s", &self.retry_base_s)
            .field("max_call_length_s", &self.max_call_length_s)
            .field("engine_memory_mb", &self.engine_memory_mb)
            .field("end_wait_s", &self.end_wait_s)
            .finish()
    }
}

/// `[reconcile]`: stage 2, recovering the recordings that never arrived through OCP exports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileConfig {
    /// Run the scanner and the export-job timer loop inside `callrec serve` (they run only
    /// when `[ocp] base_url` is set).
    pub enabled: bool,
    /// Seconds between scans for missing recordings.
    pub scan_interval_s: f64,
    /// Seconds after its End before a call without a recording counts as missing.
    pub grace_s: f64,
    /// Days OCP keeps recordings; a call older than this that is still missing is `lost`.
    pub retention_days: u32,
    /// Seconds an export job may take before it fails loudly.
    pub job_deadline_s: f64,
    /// Seconds a replica's lease on a job lasts (renewed at a third of it while working).
    pub lease_ttl_s: f64,
    /// Export attempts that did not hold a call before it is `lost`.
    pub max_attempts: u32,
    /// Files downloaded (and processed) at once per job.
    pub download_concurrency: usize,
    /// Export jobs worked at once by one replica.
    pub jobs_concurrency: usize,
    /// Polling: the first wait after an export is created, seconds.
    pub poll_initial_s: f64,
    /// Polling: the longest wait, seconds.
    pub poll_max_s: f64,
    /// Polling: each wait is this many times the last.
    pub poll_growth: f64,
    /// Polling: waits vary by up to this share either way.
    pub poll_jitter: f64,
    /// `callrec backfill`: hours per shard (one export job each; 1–48).
    pub backfill_shard_hours: u32,
    /// Seconds a received call may wait for `stored` before a scan takes it over (its replica
    /// died mid-pipeline); processing is idempotent, so a slow replica finishing too is harmless.
    pub stale_after_s: f64,
    /// Longest wait OCP's `Retry-After` may impose on a job, seconds: a longer one reschedules
    /// the job at this cap (its lease given back), never parks it for days.
    pub max_retry_after_s: f64,
    /// Times a range's export may expire before it was fetched, asked again each time; one more
    /// and its job fails loudly (the successor chain is bounded).
    pub max_expiries: u32,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        ReconcileConfig {
            enabled: true,
            scan_interval_s: 300.0,
            grace_s: 900.0,
            retention_days: 60,
            job_deadline_s: 86_400.0,
            lease_ttl_s: 60.0,
            max_attempts: 5,
            download_concurrency: 4,
            jobs_concurrency: 4,
            poll_initial_s: 60.0,
            poll_max_s: 360.0,
            poll_growth: 1.5,
            poll_jitter: 0.2,
            backfill_shard_hours: 48,
            stale_after_s: 600.0,
            max_retry_after_s: 300.0,
            max_expiries: 5,
        }
    }
}

/// `[ocp]`: where OCP is and how to log in (README, "Connecting to OCP"). Unset `region` and
/// `base_url`: no OCP, no stage 2. The password and the personal access token are secrets: only
/// from the environment (`CALLREC_OCP__PASSWORD`, `CALLREC_OCP__PERSONAL_ACCESS_TOKEN`, the way
/// ECS injects Secrets Manager values), never from the file, never logged.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OcpSection {
    /// `eu1`, `us1`, `us2`, `ca1` or `frankfurt`: fills the hosts and the realm.
    pub region: Option<crate::ocp::Region>,
    /// The API's base URL (overrides the region's host).
    pub base_url: Option<String>,
    /// The token endpoint, whole (overrides everything else about it).
    pub auth_url: Option<String>,
    /// Keycloak's realm (`master`; `ocp` on CA1 and Frankfurt).
    pub realm: Option<String>,
    pub username: String,
    pub password: String,
    /// Recommended over the password: OCP makes OTP mandatory, and a personal access token is
    /// what an unattended client uses. When set, the token endpoint is never called.
    pub personal_access_token: String,
    /// Keycloak's client id (`ocp`).
    pub client_id: String,
    /// Extra CA certificates (PEM) to trust besides the built-in roots: a corporate TLS
    /// inspection proxy's, or a simulator's.
    pub ca_file: Option<PathBuf>,
    /// Allows `http://` URLs (a simulator on this machine). Never for a real OCP.
    pub allow_insecure_http: bool,
    /// The OCP group of native CDR records posted without `?group=` or `X-OCP-Group`.
    pub default_group: Option<String>,
    pub connect_timeout_s: f64,
    /// Longest wait for the next bytes of an answer.
    pub read_timeout_s: f64,
    /// Longest total of one API request (downloads have none: only `read_timeout_s` between
    /// bytes, so a large file on a slow link completes and a stalled one fails fast).
    pub request_timeout_s: f64,
    /// Tries per request on transient failures (5xx, 429, timeouts), the first included.
    pub retry_attempts: u32,
    pub retry_max_backoff_s: f64,
}

impl Default for OcpSection {
    fn default() -> Self {
        OcpSection {
            region: None,
            base_url: None,
            auth_url: None,
            realm: None,
            username: String::new(),
            password: String::new(),
            personal_access_token: String::new(),
            client_id: "ocp".into(),
            ca_file: None,
            allow_insecure_http: false,
            default_group: None,
            connect_timeout_s: 10.0,
            read_timeout_s: 60.0,
            request_timeout_s: 60.0,
            retry_attempts: 4,
            retry_max_backoff_s: 10.0,
        }
    }
}

impl std::fmt::Debug for OcpSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = |s: &str| if s.is_empty() { "" } else { "[redacted]" };
        f.debug_struct("OcpSection")
            .field("region", &self.region)
            .field("base_url", &self.base_url)
            .field("auth_url", &self.auth_url)
            .field("realm", &self.realm)
            .field("username", &self.username)
            .field("password", &secret(&self.password))
            .field(
                "personal_access_token",
                &secret(&self.personal_access_token),
            )
            .field("client_id", &self.client_id)
            .field("ca_file", &self.ca_file)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("default_group", &self.default_group)
            .finish_non_exhaustive()
    }
}

impl OcpSection {
    /// Whether OCP is configured (a region or a base URL): stage 2 runs only then.
    pub fn is_configured(&self) -> bool {
        self.region.is_some() || self.base_url.is_some()
    }

    /// The client's configuration, checked (`None`: OCP is not configured). Reads `ca_file`.
    /// Every error names its key.
    pub fn client_config(&self) -> Result<Option<crate::ocp::OcpConfig>, ConfigError> {
        use crate::ocp::{Credentials, OcpConfig, RetryPolicy, Secret, Timeouts};
        let error = |key: &str, message: String| ConfigError {
            key: key.into(),
            message,
        };
        if let Some(group) = &self.default_group
            && !crate::ids::is_safe_id(group)
        {
            return Err(error(
                "ocp.default_group",
                "an OCP group id: 1-128 of A-Z a-z 0-9 - _ .".into(),
            ));
        }
        let place = crate::ocp::region::Where {
            region: self.region,
            base_url: self.base_url.as_deref(),
            auth_url: self.auth_url.as_deref(),
            realm: self.realm.as_deref(),
            allow_insecure_http: self.allow_insecure_http,
        };
        let Some(endpoints) = place.resolve().map_err(|e| error(e.key, e.message))? else {
            return Ok(None);
        };
        let credentials = if !self.personal_access_token.is_empty() {
            let pat = &self.personal_access_token;
            if pat.len() > 8192 || pat.chars().any(|c| c.is_control() || c == ' ') {
                return Err(error(
                    "ocp.personal_access_token",
                    "not a token (spaces or control characters)".into(),
                ));
            }
            Credentials::PersonalAccessToken(Secret::new(pat.clone()))
        } else if !self.username.is_empty() {
            if self.password.is_empty() {
                return Err(error(
                    "ocp.password",
                    "needed with ocp.username: set CALLREC_OCP__PASSWORD".into(),
                ));
            }
            Credentials::Password {
                username: self.username.clone(),
                password: Secret::new(self.password.clone()),
            }
        } else {
            return Err(error(
                "ocp.personal_access_token",
                "OCP needs credentials: a personal access token \
                 (CALLREC_OCP__PERSONAL_ACCESS_TOKEN, recommended) or ocp.username with \
                 CALLREC_OCP__PASSWORD"
                    .into(),
            ));
        };
        if self.client_id.is_empty() || self.client_id.chars().any(char::is_control) {
            return Err(error(
                "ocp.client_id",
                "a client id (OCP's is `ocp`)".into(),
            ));
        }
        let extra_ca_pem = match &self.ca_file {
            None => None,
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| error("ocp.ca_file", format!("{}: {e}", path.display())))?;
                crate::ocp::http::check_ca_pem(&pem)
                    .map_err(|e| error("ocp.ca_file", format!("{}: {e}", path.display())))?;
                Some(pem)
            }
        };
        let seconds = |key: &str, value: f64| {
            if value.is_finite() && value > 0.0 && value < 1e7 {
                Ok(std::time::Duration::from_secs_f64(value))
            } else {
                Err(error(key, "seconds above 0".into()))
            }
        };
        let timeouts = Timeouts {
            connect: seconds("ocp.connect_timeout_s", self.connect_timeout_s)?,
            read_idle: seconds("ocp.read_timeout_s", self.read_timeout_s)?,
            request: seconds("ocp.request_timeout_s", self.request_timeout_s)?,
        };
        if !(1..=20).contains(&self.retry_attempts) {
            return Err(error("ocp.retry_attempts", "1 to 20".into()));
        }
        let retry = RetryPolicy {
            attempts: self.retry_attempts,
            max_backoff: seconds("ocp.retry_max_backoff_s", self.retry_max_backoff_s)?,
            ..RetryPolicy::default()
        };
        Ok(Some(OcpConfig {
            endpoints,
            credentials,
            client_id: self.client_id.clone(),
            extra_ca_pem,
            timeouts,
            retry,
        }))
    }
}

/// `[audit]`: the daily audit against OCP's CDR exports (README, "The daily audit"). Runs in
/// the reconciler, for the groups listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// The OCP groups audited each day (none: no audit).
    pub groups: Vec<String>,
    /// Hours after a day's end (UTC) before it is audited: OCP's late records settle.
    pub settle_hours: f64,
    /// Days back the audit looks (1 to `reconcile.retention_days`).
    pub lookback_days: u32,
    /// Hours after a day has settled by which every call OCP reported should be stored;
    /// `callrec audit` exits 1 for a day past it.
    pub deadline_hours: f64,
}

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection {
            groups: Vec::new(),
            settle_hours: 6.0,
            lookback_days: 7,
            deadline_hours: 24.0,
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub state: StateConfig,
    pub objects: ObjectsConfig,
    pub routing: RoutingConfig,
    pub lines_of_business: BTreeMap<String, LineOfBusinessConfig>,
    pub reconcile: ReconcileConfig,
    pub audit: AuditSection,
    pub ocp: OcpSection,
}

impl Default for Config {
    fn default() -> Self {
        let data = Path::new(DEFAULT_DATA_DIR);
        Config {
            server: ServerConfig {
                listen: "127.0.0.1:8080".into(),
                bearer_tokens: Vec::new(),
                read_tokens: Vec::new(),
                admin_listen: None,
                max_body_bytes: 512 << 20,
                request_timeout_s: 300,
                header_timeout_s: 30,
                max_connections: 1024,
                spool_dir: data.join("spool"),
                queue_depth: 64,
                retry_after_s: 5,
                queue_wait_ms: 1000,
                engine_threads: 0,
                keep_staged: false,
                max_attempts: 5,
                retry_base_s: 120,
                max_call_length_s: 4 * 3600,
                engine_memory_mb: 2048,
                end_wait_s: 300,
            },
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
            reconcile: ReconcileConfig::default(),
            audit: AuditSection::default(),
            ocp: OcpSection::default(),
        }
    }
}

/// The environment variable that may hold the configuration file's contents (TOML) when no
/// file is given: for containers.
pub const CONFIG_TOML_VARIABLE: &str = "CALLREC_CONFIG_TOML";

/// The file's sections: only `CALLREC_{SECTION}__…` variables are configuration (others, like
/// `CALLREC_LOG` or `CALLREC_SIMD`, belong to the logger and the engine).
const SECTIONS: &[&str] = &[
    "server",
    "state",
    "objects",
    "routing",
    "lines_of_business",
    "reconcile",
    "audit",
    "ocp",
];

fn config_env() -> Env {
    Env::prefixed("CALLREC_")
        .filter(|key| {
            let key = key.as_str().to_ascii_lowercase();
            SECTIONS.iter().any(|s| {
                key.strip_prefix(s)
                    .is_some_and(|rest| rest.starts_with("__"))
            })
        })
        .split("__")
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
    ///
    /// Without a file, the file's contents may come from the environment variable
    /// [`CONFIG_TOML_VARIABLE`] (a container's task definition, where there is no file to
    /// mount), with the same rules.
    pub fn load(file: Option<&Path>) -> Result<Loaded, ConfigError> {
        let inline = match file {
            Some(_) => None,
            None => std::env::var(CONFIG_TOML_VARIABLE).ok(),
        };
        Self::load_with_env(file, inline, config_env())
    }

    fn load_with_env(
        file: Option<&Path>,
        inline: Option<String>,
        env: Env,
    ) -> Result<Loaded, ConfigError> {
        let mut defaults = Config::default();
        let mut text = None;
        let mut source = "embedded defaults".to_string();
        let given = match (file, inline) {
            (Some(path), _) => Some((
                path.display().to_string(),
                std::fs::read_to_string(path).map_err(|e| ConfigError {
                    key: "(file)".into(),
                    message: format!("{}: {e}", path.display()),
                })?,
            )),
            (None, Some(inline)) => Some((CONFIG_TOML_VARIABLE.to_string(), inline)),
            (None, None) => None,
        };
        if let Some((from, read)) = given {
            // A file's own lines of business replace the default one instead of joining it.
            let table: toml::Table = toml::from_str(&read).map_err(|e| ConfigError {
                key: "(file)".into(),
                message: format!("{from}: {e}"),
            })?;
            if table.contains_key("lines_of_business") {
                defaults.lines_of_business.clear();
            }
            // Secrets come from the environment only: a file is copied, committed, baked into
            // images.
            if let Some(toml::Value::Table(ocp)) = table.get("ocp") {
                for (key, variable) in [
                    ("password", "CALLREC_OCP__PASSWORD"),
                    (
                        "personal_access_token",
                        "CALLREC_OCP__PERSONAL_ACCESS_TOKEN",
                    ),
                ] {
                    if ocp.contains_key(key) {
                        return Err(ConfigError {
                            key: format!("ocp.{key}"),
                            message: format!(
                                "a secret: set it through the environment ({variable}), never \
                                 in a file"
                            ),
                        });
                    }
                }
            }
            text = Some(read);
            source = from;
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
        if self.server.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(error(
                "server.listen",
                "an address and port, e.g. 127.0.0.1:8080",
            ));
        }
        for (key, tokens) in [
            ("server.bearer_tokens", &self.server.bearer_tokens),
            ("server.read_tokens", &self.server.read_tokens),
        ] {
            if tokens
                .iter()
                .any(|t| t.len() < 16 || t.chars().any(char::is_whitespace))
            {
                return Err(error(
                    key,
                    "each token needs at least 16 characters and no spaces",
                ));
            }
        }
        if let Some(admin) = &self.server.admin_listen
            && admin.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(error(
                "server.admin_listen",
                "an address and port, e.g. 127.0.0.1:9090",
            ));
        }
        if !(1..=3600).contains(&self.server.header_timeout_s) {
            return Err(error("server.header_timeout_s", "1 to 3600 seconds"));
        }
        if !(1..=100).contains(&self.server.max_attempts) {
            return Err(error("server.max_attempts", "1 to 100"));
        }
        if !(1..=86_400).contains(&self.server.retry_base_s) {
            return Err(error("server.retry_base_s", "1 to 86400 seconds"));
        }
        if !(1..=1_000_000).contains(&self.server.max_connections) {
            return Err(error("server.max_connections", "1 to 1000000"));
        }
        if !(1..=7 * 86_400).contains(&self.server.max_call_length_s) {
            return Err(error("server.max_call_length_s", "1 second to 7 days"));
        }
        if !(64..=1 << 20).contains(&self.server.engine_memory_mb) {
            return Err(error("server.engine_memory_mb", "64 MiB to 1 TiB"));
        }
        if self.server.end_wait_s > 86_400 {
            return Err(error("server.end_wait_s", "0 to 86400 seconds"));
        }
        if self.server.max_body_bytes == 0 {
            return Err(error("server.max_body_bytes", "must be above 0"));
        }
        if self.server.queue_depth == 0 {
            return Err(error("server.queue_depth", "must be above 0"));
        }
        if self.server.request_timeout_s == 0 {
            return Err(error("server.request_timeout_s", "must be above 0"));
        }
        if self.server.queue_wait_ms > 60_000 {
            return Err(error("server.queue_wait_ms", "0 to 60000 milliseconds"));
        }
        if self.objects.backend == ObjectsBackend::Folder
            && self.objects.folder_root.as_os_str().is_empty()
        {
            return Err(error("objects.folder_root", "a folder path"));
        }
        self.validate_reconcile()?;
        Routing::new(&self.routing, &self.lines_of_business)
    }

    fn validate_reconcile(&self) -> Result<(), ConfigError> {
        let r = &self.reconcile;
        let error = |key: &str, message: &str| ConfigError {
            key: format!("reconcile.{key}"),
            message: message.into(),
        };
        for (key, value) in [
            ("scan_interval_s", r.scan_interval_s),
            ("job_deadline_s", r.job_deadline_s),
            ("lease_ttl_s", r.lease_ttl_s),
            ("stale_after_s", r.stale_after_s),
            ("max_retry_after_s", r.max_retry_after_s),
        ] {
            if !(value.is_finite() && value > 0.0 && value < 1e9) {
                return Err(error(key, "seconds above 0"));
            }
        }
        if !(r.grace_s.is_finite() && (0.0..1e9).contains(&r.grace_s)) {
            return Err(error("grace_s", "seconds, 0 or more"));
        }
        if r.retention_days == 0 {
            return Err(error("retention_days", "must be above 0"));
        }
        if r.max_attempts == 0 {
            return Err(error("max_attempts", "must be above 0"));
        }
        if !(1..=100).contains(&r.max_expiries) {
            return Err(error("max_expiries", "1 to 100"));
        }
        if r.download_concurrency == 0 || r.download_concurrency > 256 {
            return Err(error("download_concurrency", "1 to 256"));
        }
        if r.jobs_concurrency == 0 || r.jobs_concurrency > 256 {
            return Err(error("jobs_concurrency", "1 to 256"));
        }
        if !(1..=48).contains(&r.backfill_shard_hours) {
            return Err(error(
                "backfill_shard_hours",
                "1 to 48 (an OCP export covers at most 2 days)",
            ));
        }
        self.poll_schedule().validate().map_err(|e| {
            let key = match e.key {
                "initial" => "poll_initial_s",
                "max" => "poll_max_s",
                "growth" => "poll_growth",
                _ => "poll_jitter",
            };
            error(key, e.message)
        })?;
        self.ocp.client_config()?;
        self.validate_audit()
    }

    fn validate_audit(&self) -> Result<(), ConfigError> {
        let a = &self.audit;
        let error = |key: &str, message: String| ConfigError {
            key: format!("audit.{key}"),
            message,
        };
        if let Some(bad) = a.groups.iter().find(|g| !crate::ids::is_safe_id(g)) {
            return Err(error(
                "groups",
                format!("{bad:?}: an OCP group id: 1-128 of A-Z a-z 0-9 - _ ."),
            ));
        }
        if !(a.settle_hours.is_finite() && (0.0..=720.0).contains(&a.settle_hours)) {
            return Err(error("settle_hours", "0 to 720 hours".into()));
        }
        if !(1..=self.reconcile.retention_days).contains(&a.lookback_days) {
            return Err(error(
                "lookback_days",
                format!(
                    "1 to reconcile.retention_days ({}): OCP keeps nothing older",
                    self.reconcile.retention_days
                ),
            ));
        }
        if !(a.deadline_hours.is_finite() && a.deadline_hours > 0.0 && a.deadline_hours < 1e6) {
            return Err(error("deadline_hours", "hours above 0".into()));
        }
        Ok(())
    }

    /// The engine's limits for the service: inputs up to `max_body_bytes`, recordings up to
    /// `max_call_length_s`; compressed inputs decoded past the spill budget, and processed
    /// recordings on their way to the bucket, in the spool folder.
    pub fn engine_process_config(&self) -> callrec_engine::ProcessConfig {
        let mut config = callrec_engine::ProcessConfig::default();
        let limits = &mut config.input.limits;
        limits.max_input_bytes = self.server.max_body_bytes;
        limits.max_duration_ms = self.server.max_call_length_s.saturating_mul(1000);
        config.spill.dir = Some(self.server.spool_dir.clone());
        config
    }

    /// The reconciler's settings (`[reconcile]`, and `[server]`'s spool and size limit) for the
    /// replica named `owner` in leases.
    pub fn worker_config(&self, owner: String) -> crate::reconcile::WorkerConfig {
        let r = &self.reconcile;
        use jiff::SignedDuration;
        let secs = SignedDuration::from_secs_f64;
        crate::reconcile::WorkerConfig {
            owner,
            scan: crate::reconcile::scanner::ScanConfig {
                grace: secs(r.grace_s),
                job_deadline: secs(r.job_deadline_s),
                retention: SignedDuration::from_hours(24 * i64::from(r.retention_days)),
            },
            scan_interval: std::time::Duration::from_secs_f64(r.scan_interval_s),
            poll: self.poll_schedule(),
            lease_ttl: secs(r.lease_ttl_s),
            max_attempts: r.max_attempts,
            max_retry_after: secs(r.max_retry_after_s),
            max_expiries: r.max_expiries,
            download_concurrency: r.download_concurrency,
            jobs_concurrency: r.jobs_concurrency,
            spool_dir: self.server.spool_dir.clone(),
            max_file_bytes: self.server.max_body_bytes,
            stale_after: secs(r.stale_after_s),
            audit: crate::reconcile::audit::AuditConfig {
                groups: self.audit.groups.clone(),
                settle: secs(self.audit.settle_hours * 3600.0),
                lookback_days: self.audit.lookback_days,
                deadline: secs(self.audit.deadline_hours * 3600.0),
            },
        }
    }

    /// The export jobs' polling schedule.
    pub fn poll_schedule(&self) -> crate::reconcile::schedule::PollSchedule {
        let r = &self.reconcile;
        let secs = |s: f64| {
            if s.is_finite() && (0.0..1e9).contains(&s) {
                jiff::SignedDuration::from_secs_f64(s)
            } else {
                jiff::SignedDuration::ZERO
            }
        };
        crate::reconcile::schedule::PollSchedule {
            initial: secs(r.poll_initial_s),
            max: secs(r.poll_max_s),
            growth: r.poll_growth,
            jitter: r.poll_jitter,
        }
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
        let loaded = Config::load_with_env(None, None, no_env()).unwrap();
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
        let loaded = Config::load_with_env(Some(&path), None, no_env()).unwrap();
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
    fn the_file_may_come_from_the_environment_with_the_same_rules() {
        let text = r#"
            [routing]
            default = "care"
            [lines_of_business.care]
            bucket = "acme-care"
            "#;
        let loaded = Config::load_with_env(None, Some(text.into()), no_env()).unwrap();
        assert_eq!(loaded.source, CONFIG_TOML_VARIABLE);
        assert_eq!(
            loaded.config.lines_of_business.keys().collect::<Vec<_>>(),
            ["care"]
        );
        let secret = "[ocp]\npersonal_access_token = \"x\"\n".to_string();
        let err = Config::load_with_env(None, Some(secret), no_env()).unwrap_err();
        assert_eq!(err.key, "ocp.personal_access_token");
        let bad = Config::load_with_env(None, Some("[routing".into()), no_env()).unwrap_err();
        assert!(bad.message.starts_with(CONFIG_TOML_VARIABLE), "{bad:?}");
        // A file given wins over the variable (`load` reads it only without one).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("callrec.toml");
        std::fs::write(&path, "[state]\ndynamodb_table = \"from-file\"\n").unwrap();
        let loaded = Config::load_with_env(Some(&path), Some(text.into()), no_env()).unwrap();
        assert_eq!(loaded.config.state.dynamodb_table, "from-file");
    }

    #[test]
    #[allow(
        clippy::result_large_err,
        reason = "figment::Jail's closure type is figment's"
    )]
    fn the_environment_overrides_the_file() {
        figment::Jail::expect_with(|jail| {
            let env = config_env();
            jail.set_env("CALLREC_LOG", "debug");
            jail.set_env("CALLREC_SIMD", "baseline");
            jail.set_env("CALLREC_STATE__BACKEND", "dynamodb");
            jail.set_env("CALLREC_STATE__DYNAMODB_TABLE", "from-env");
            let loaded = Config::load_with_env(None, None, env.clone()).unwrap();
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
            ("[audit]\ngroups = [\"../g\"]\n", "audit.groups"),
            ("[audit]\nlookback_days = 61\n", "audit.lookback_days"),
            ("[audit]\nsettle_hours = -1.0\n", "audit.settle_hours"),
            ("[audit]\ndeadline_hours = 0.0\n", "audit.deadline_hours"),
            ("[server]\nqueue_wait_ms = 60001\n", "server.queue_wait_ms"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = Config::load_with_env(Some(&path), None, no_env()).unwrap_err();
            assert!(err.key.starts_with(key), "{text}: {err}");
        }
        let err = Config::load_with_env(Some(&dir.path().join("missing.toml")), None, no_env())
            .unwrap_err();
        assert!(err.message.contains("missing.toml"), "{err}");
    }
}
