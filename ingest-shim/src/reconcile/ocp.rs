//! OCP's Exports API, behind a trait so a real OCP adapter (or a different platform) is a small
//! change; [`HttpOcp`] speaks the wire format `ocp-sim` documents.
//!
//! The client takes an OpenID Connect password-grant token and renews it before it expires (or
//! once on a 401); 429 is retried after its `Retry-After`, transient 5xx and connection errors
//! after a jittered exponential backoff, up to [`MAX_ATTEMPTS`]. Downloads stream to a file.

use async_trait::async_trait;
use bytes::Bytes;
use jiff::Timestamp;
use serde::Deserialize;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt as _;

/// Attempts per request before giving up on 429/5xx/connection errors.
pub const MAX_ATTEMPTS: u32 = 8;

/// Where an export is, as OCP says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportStatus {
    Pending,
    Running,
    Completed,
    Expired,
    Failed,
}

/// One file of a completed export.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ExportFile {
    pub name: String,
    /// `audio` or `cdr`.
    #[serde(rename = "type")]
    pub kind: String,
    pub size: u64,
}

/// One page of an export's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePage {
    pub files: Vec<ExportFile>,
    pub next: Option<String>,
}

/// Why an Exports API call failed.
#[derive(Debug, thiserror::Error)]
pub enum OcpError {
    /// OCP refused the request as made (400, 404): retrying will not help.
    #[error("OCP refused ({status} {kind}): {message}")]
    Refused {
        status: u16,
        kind: String,
        message: String,
    },
    /// The group already has a running export (OCP allows one): queue and try later.
    #[error("OCP is running another export of the group: {0}")]
    GroupBusy(String),
    /// The export's data is gone (OCP keeps it a day): create the export again.
    #[error("export {0} has expired")]
    Expired(String),
    /// The export is not completed yet.
    #[error("export {0} is not ready")]
    NotReady(String),
    /// Credentials refused.
    #[error("OCP refused the credentials: {0}")]
    Unauthorized(String),
    /// Still failing after [`MAX_ATTEMPTS`] (429, 5xx, connection).
    #[error("OCP unavailable after {attempts} attempts: {last}")]
    Unavailable { attempts: u32, last: String },
    #[error("writing {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The Exports API.
#[async_trait]
pub trait OcpExports: Send + Sync + 'static {
    /// Asks for an export of `group_id` over `[from, to)` (whole hours, 1 h to 2 days).
    /// `idempotency_key` makes a repeated create (a retry, a replica taking over) answer with the
    /// export the first one made instead of making another.
    async fn create_export(
        &self,
        group_id: &str,
        from: Timestamp,
        to: Timestamp,
        idempotency_key: &str,
    ) -> Result<String, OcpError>;

    async fn status(&self, export_id: &str) -> Result<ExportStatus, OcpError>;

    /// One page of a completed export's files.
    async fn files(&self, export_id: &str, page: Option<&str>) -> Result<FilePage, OcpError>;

    /// Streams one file to `dest`; returns its size. `dest` is a spool file, not fsynced: what
    /// makes a recording durable is its staging write, which follows.
    async fn download(&self, export_id: &str, name: &str, dest: &Path) -> Result<u64, OcpError>;

    /// Reads one small file (a CDR) into memory: at most `limit` + 1 bytes, so a caller can tell
    /// a file above `limit` without holding all of it.
    async fn read(&self, export_id: &str, name: &str, limit: u64) -> Result<Bytes, OcpError>;
}

/// Credentials and endpoint of OCP (secrets: from the environment, never logged).
#[derive(Clone)]
pub struct OcpConfig {
    pub base_url: String,
    pub username: String,
    pub password: String,
    pub client_id: String,
}

impl std::fmt::Debug for OcpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OcpConfig")
            .field("base_url", &self.base_url)
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .field("client_id", &self.client_id)
            .finish()
    }
}

/// [`OcpExports`] over HTTP.
pub struct HttpOcp {
    config: OcpConfig,
    http: reqwest::Client,
    token: tokio::sync::Mutex<Option<(String, Instant)>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

#[derive(Deserialize, Default)]
struct ErrorAnswer {
    #[serde(default)]
    error: String,
    #[serde(default)]
    message: String,
}

impl HttpOcp {
    pub fn new(config: OcpConfig) -> Result<Self, OcpError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| OcpError::Unavailable {
                attempts: 0,
                last: e.to_string(),
            })?;
        Ok(HttpOcp {
            config,
            http,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// A valid token: the cached one unless it is within 20% of its lifetime from expiring.
    async fn token(&self, renew: bool) -> Result<String, OcpError> {
        let mut cached = self.token.lock().await;
        if !renew
            && let Some((token, refresh_at)) = cached.as_ref()
            && Instant::now() < *refresh_at
        {
            return Ok(token.clone());
        }
        let answer = self
            .http
            .post(format!("{}/oauth/token", self.config.base_url))
            .form(&[
                ("grant_type", "password"),
                ("username", self.config.username.as_str()),
                ("password", self.config.password.as_str()),
                ("client_id", self.config.client_id.as_str()),
            ])
            .send()
            .await
            .map_err(|e| OcpError::Unavailable {
                attempts: 1,
                last: e.to_string(),
            })?;
        if !answer.status().is_success() {
            let status = answer.status();
            let body: ErrorAnswer = answer.json().await.unwrap_or_default();
            return Err(OcpError::Unauthorized(format!("{status} {}", body.error)));
        }
        let answer: TokenAnswer = answer.json().await.map_err(|e| OcpError::Unavailable {
            attempts: 1,
            last: e.to_string(),
        })?;
        let refresh_at = Instant::now() + Duration::from_secs(answer.expires_in * 8 / 10);
        *cached = Some((answer.access_token.clone(), refresh_at));
        Ok(answer.access_token)
    }

    /// Sends with the token and the retry policy; returns a 2xx response or a typed error.
    async fn send(
        &self,
        what: &str,
        request: impl Fn(&str) -> reqwest::RequestBuilder + Send + Sync,
    ) -> Result<reqwest::Response, OcpError> {
        let mut renewed = false;
        let mut backoff = Duration::from_millis(200);
        let mut last = String::new();
        for attempt in 1..=MAX_ATTEMPTS {
            let token = self.token(false).await?;
            let wait = match request(&token).send().await {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    let body: ErrorAnswer = response.json().await.unwrap_or_default();
                    last = format!("{what}: {status} {}", body.error);
                    match status {
                        401 if !renewed => {
                            renewed = true;
                            self.token(true).await?;
                            continue;
                        }
                        401 => return Err(OcpError::Unauthorized(last)),
                        409 if body.error == "export_running" => {
                            return Err(OcpError::GroupBusy(body.message));
                        }
                        409 => return Err(OcpError::NotReady(what.to_string())),
                        410 => return Err(OcpError::Expired(what.to_string())),
                        429 => retry_after.map_or(backoff, Duration::from_secs),
                        500..=599 => backoff,
                        _ => {
                            return Err(OcpError::Refused {
                                status,
                                kind: body.error,
                                message: body.message,
                            });
                        }
                    }
                }
                Err(e) => {
                    last = format!("{what}: {e}");
                    backoff
                }
            };
            if attempt < MAX_ATTEMPTS {
                // Full jitter: anywhere up to the wait, so clients do not retry in step.
                let jittered = wait.mul_f64(0.5 + rand::random::<f64>() * 0.5);
                tokio::time::sleep(jittered).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
        Err(OcpError::Unavailable {
            attempts: MAX_ATTEMPTS,
            last,
        })
    }
}

fn unavailable(e: reqwest::Error) -> OcpError {
    OcpError::Unavailable {
        attempts: 1,
        last: e.to_string(),
    }
}

impl HttpOcp {
    /// GET of one file of an export. The export id and the name come from OCP's answers: each
    /// is one percent-encoded path segment, so neither can point the request elsewhere.
    async fn get_file(&self, export_id: &str, name: &str) -> Result<reqwest::Response, OcpError> {
        let refused = |message: String| OcpError::Refused {
            status: 400,
            kind: "bad_name".into(),
            message,
        };
        // Dot segments would be resolved away (`files/..` is the listing): never a file.
        for part in [export_id, name] {
            if matches!(part, "" | "." | "..") {
                return Err(refused(format!("{part:?} is not a file or export name")));
            }
        }
        let mut url = reqwest::Url::parse(&format!("{}/", self.config.base_url))
            .map_err(|e| refused(format!("ocp.base_url: {e}")))?;
        url.path_segments_mut()
            .map_err(|()| refused("ocp.base_url cannot take a path".into()))?
            .pop_if_empty()
            .extend(["exports", "v1", "exports", export_id, "files", name]);
        self.send(export_id, |token| {
            self.http.get(url.clone()).bearer_auth(token)
        })
        .await
    }
}

#[async_trait]
impl OcpExports for HttpOcp {
    async fn create_export(
        &self,
        group_id: &str,
        from: Timestamp,
        to: Timestamp,
        idempotency_key: &str,
    ) -> Result<String, OcpError> {
        let url = format!(
            "{}/exports/v1/groups/{group_id}/exports",
            self.config.base_url
        );
        let body = serde_json::json!({
            "from": from,
            "to": to,
            "data_types": ["audio", "cdr"],
            "idempotency_key": idempotency_key,
        });
        let response = self
            .send("create export", |token| {
                self.http.post(&url).bearer_auth(token).json(&body)
            })
            .await?;
        let answer: serde_json::Value = response.json().await.map_err(unavailable)?;
        answer["export_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| OcpError::Refused {
                status: 200,
                kind: "bad_answer".into(),
                message: "no export_id".into(),
            })
    }

    async fn status(&self, export_id: &str) -> Result<ExportStatus, OcpError> {
        let url = format!("{}/exports/v1/exports/{export_id}", self.config.base_url);
        let response = self
            .send(export_id, |token| self.http.get(&url).bearer_auth(token))
            .await?;
        #[derive(Deserialize)]
        struct Answer {
            status: ExportStatus,
        }
        let answer: Answer = response.json().await.map_err(unavailable)?;
        Ok(answer.status)
    }

    async fn files(&self, export_id: &str, page: Option<&str>) -> Result<FilePage, OcpError> {
        let url = format!(
            "{}/exports/v1/exports/{export_id}/files",
            self.config.base_url
        );
        let response = self
            .send(export_id, |token| {
                let mut request = self
                    .http
                    .get(&url)
                    .bearer_auth(token)
                    .query(&[("page_size", "100")]);
                if let Some(p) = page {
                    request = request.query(&[("page_token", p)]);
                }
                request
            })
            .await?;
        #[derive(Deserialize)]
        struct Answer {
            files: Vec<ExportFile>,
            next_page_token: Option<String>,
        }
        let answer: Answer = response.json().await.map_err(unavailable)?;
        Ok(FilePage {
            files: answer.files,
            next: answer.next_page_token,
        })
    }

    async fn download(&self, export_id: &str, name: &str, dest: &Path) -> Result<u64, OcpError> {
        let mut response = self.get_file(export_id, name).await?;
        let io = |source| OcpError::Io {
            path: dest.to_path_buf(),
            source,
        };
        let mut file = tokio::fs::File::create(dest).await.map_err(io)?;
        let mut size = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(unavailable)? {
            size += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        Ok(size)
    }

    async fn read(&self, export_id: &str, name: &str, limit: u64) -> Result<Bytes, OcpError> {
        let mut response = self.get_file(export_id, name).await?;
        let cap = usize::try_from(limit.saturating_add(1)).unwrap_or(usize::MAX);
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unavailable)? {
            let room = cap - bytes.len();
            bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if bytes.len() == cap {
                break;
            }
        }
        Ok(Bytes::from(bytes))
    }
}
