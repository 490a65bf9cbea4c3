//! OCP's Exports API (batch exports), behind a trait so adapting to a detail of the real OCP — or
//! another platform — is a small change.
//!
//! What OCP documents: an export covers 1 hour to 2 days of one group at hour granularity; one
//! export runs per group at a time; data is kept one day, then the export is `expired`; files
//! are listed in pages; the API is rate limited; the user (or token) needs the group
//! whitelisted. What it leaves unsaid — the paths, the status values, the listing's fields — is
//! what `ocp-sim` defines and documents (ocp-sim/README.md); [`HttpOcp`] speaks exactly that.

use super::error::OcpError;
use super::http::{OcpClient, OcpConfig, OcpHealth, read_json};
use crate::intake::{Spool, SpoolError};
use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Where an export is, as OCP says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportStatus {
    Pending,
    Running,
    Completed,
    Expired,
    Failed,
}

/// An export's data types, by OCP's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DataType {
    #[serde(rename = "dialog_start")]
    DialogStart,
    #[serde(rename = "dialog_end")]
    DialogEnd,
    /// Whole call recordings.
    Audio,
}

impl DataType {
    /// The data type OCP names so, if callrec knows it.
    pub fn from_name(name: &str) -> Option<Self> {
        [DataType::DialogStart, DataType::DialogEnd, DataType::Audio]
            .into_iter()
            .find(|d| d.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            DataType::DialogStart => "dialog_start",
            DataType::DialogEnd => "dialog_end",
            DataType::Audio => "Audio",
        }
    }

    /// The CDR data types (records, not recordings).
    pub fn is_cdr(self) -> bool {
        matches!(self, DataType::DialogStart | DataType::DialogEnd)
    }
}

/// What the daily audit asks for: both CDR types, no recordings.
pub const AUDIT_DATA: [DataType; 2] = [DataType::DialogStart, DataType::DialogEnd];

/// What recovery asks for: both CDR types and the recordings.
pub const RECOVERY_DATA: [DataType; 3] =
    [DataType::DialogStart, DataType::DialogEnd, DataType::Audio];

/// One file of a completed export.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ExportFile {
    pub name: String,
    /// The data type's name (`Audio`, `dialog_start`, `dialog_end`, …); types callrec does not
    /// know are listed and left alone.
    #[serde(rename = "type")]
    pub kind: String,
    /// Bytes, as OCP declares them.
    pub size: u64,
}

impl ExportFile {
    pub fn data_type(&self) -> Option<DataType> {
        DataType::from_name(&self.kind)
    }
}

/// One page of an export's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePage {
    pub files: Vec<ExportFile>,
    pub next: Option<String>,
}

/// An export as OCP lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ExportSummary {
    pub export_id: String,
    pub status: ExportStatus,
    pub from: Timestamp,
    pub to: Timestamp,
}

/// The Exports API.
#[async_trait]
pub trait OcpExports: Send + Sync + 'static {
    /// Asks for an export of `group_id` over `[from, to)` (whole hours, 1 h to 2 days) holding
    /// `data`. `idempotency_key` makes a repeated create (a retry, a replica taking over) answer
    /// with the export the first one made instead of making another.
    async fn create_export(
        &self,
        group_id: &str,
        from: Timestamp,
        to: Timestamp,
        data: &[DataType],
        idempotency_key: &str,
    ) -> Result<String, OcpError>;

    async fn status(&self, export_id: &str) -> Result<ExportStatus, OcpError>;

    /// One page of a completed export's files.
    async fn files(&self, export_id: &str, page: Option<&str>) -> Result<FilePage, OcpError>;

    /// Streams one file into `into` (the intake's spool, which digests it as it goes); returns
    /// its size. More than the spool's limit, or other than the size the listing declared, is
    /// refused as soon as it shows, nothing past it read.
    async fn download(
        &self,
        export_id: &str,
        file: &ExportFile,
        into: &mut Spool,
    ) -> Result<u64, OcpError>;

    /// The group's exports overlapping `[from, to)`, creating nothing.
    async fn list_exports(
        &self,
        group_id: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<ExportSummary>, OcpError>;

    /// How the connection stands (credentials or TLS problems), for `/readyz`.
    fn health(&self) -> Arc<OcpHealth>;
}

/// [`OcpExports`] over HTTPS.
pub struct HttpOcp {
    client: OcpClient,
}

/// A name from OCP's answers that goes into a URL: one segment, never a dot segment (`files/..`
/// would be the listing).
fn segment<'a>(what: &str, part: &'a str) -> Result<&'a str, OcpError> {
    if matches!(part, "" | "." | "..") || part.len() > 1024 || part.chars().any(char::is_control) {
        return Err(OcpError::Refused {
            what: what.into(),
            status: 400,
            kind: "bad_name".into(),
            message: format!(
                "{:?} is not a file or export name",
                super::http::printable(part)
            ),
        });
    }
    Ok(part)
}

impl HttpOcp {
    pub fn new(config: OcpConfig) -> Result<Self, OcpError> {
        Ok(HttpOcp {
            client: OcpClient::new(config)?,
        })
    }

    pub fn client(&self) -> &OcpClient {
        &self.client
    }

    fn api_timeout(&self) -> std::time::Duration {
        self.client.config().timeouts.request
    }

    /// `/exports/v1/groups/{group}/exports`.
    fn group_exports_url(&self, what: &str, group_id: &str) -> Result<reqwest::Url, OcpError> {
        let group = segment(what, group_id)?;
        Ok(self
            .client
            .api_url(&["exports", "v1", "groups", group, "exports"]))
    }

    /// `/exports/v1/exports/{export}` and `rest` below it (each a checked segment).
    fn export_url(
        &self,
        what: &str,
        export_id: &str,
        rest: &[&str],
    ) -> Result<reqwest::Url, OcpError> {
        let mut parts = vec!["exports", "v1", "exports", segment(what, export_id)?];
        for part in rest {
            parts.push(segment(what, part)?);
        }
        Ok(self.client.api_url(&parts))
    }
}

#[async_trait]
impl OcpExports for HttpOcp {
    async fn create_export(
        &self,
        group_id: &str,
        from: Timestamp,
        to: Timestamp,
        data: &[DataType],
        idempotency_key: &str,
    ) -> Result<String, OcpError> {
        let what = "create export";
        let url = self.group_exports_url(what, group_id)?;
        let body = serde_json::json!({
            "from": from,
            "to": to,
            "data_types": data,
            "idempotency_key": idempotency_key,
        });
        let response = self
            .client
            .send(what, Some(self.api_timeout()), |http| {
                http.post(url.clone()).json(&body)
            })
            .await?;
        #[derive(Deserialize)]
        struct Answer {
            export_id: String,
        }
        let answer: Answer = read_json(response, what).await?;
        segment(what, &answer.export_id)
            .map_err(|_| OcpError::bad_answer(what, "an export id no URL can carry"))?;
        Ok(answer.export_id)
    }

    async fn status(&self, export_id: &str) -> Result<ExportStatus, OcpError> {
        let what = "export status";
        let url = self.export_url(what, export_id, &[])?;
        let response = self
            .client
            .send(what, Some(self.api_timeout()), |http| http.get(url.clone()))
            .await?;
        #[derive(Deserialize)]
        struct Answer {
            status: ExportStatus,
        }
        let answer: Answer = read_json(response, what).await?;
        Ok(answer.status)
    }

    async fn files(&self, export_id: &str, page: Option<&str>) -> Result<FilePage, OcpError> {
        let what = "export files";
        let url = self.export_url(what, export_id, &["files"])?;
        let response = self
            .client
            .send(what, Some(self.api_timeout()), |http| {
                let mut request = http.get(url.clone()).query(&[("page_size", "100")]);
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
        let answer: Answer = read_json(response, what).await?;
        Ok(FilePage {
            files: answer.files,
            next: answer.next_page_token,
        })
    }

    async fn download(
        &self,
        export_id: &str,
        file: &ExportFile,
        into: &mut Spool,
    ) -> Result<u64, OcpError> {
        let what = "export file";
        let url = self.export_url(what, export_id, &["files", &file.name])?;
        let limit = into.limit();
        if file.size > limit {
            return Err(too_large(what, file, limit));
        }
        // No total: the client's per-read idle timeout stops a stalled transfer, and a slow
        // one that keeps sending completes whatever its size.
        let mut response = self
            .client
            .send(what, None, |http| http.get(url.clone()))
            .await?;
        let mut size = 0u64;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| OcpError::from_transport(what, &e))?
        {
            size += chunk.len() as u64;
            if size > file.size {
                return Err(size_mismatch(what, file, "is longer than"));
            }
            into.write(&chunk).await.map_err(|e| match e {
                SpoolError::TooLarge { .. } => too_large(what, file, limit),
                SpoolError::Io { path, source } => OcpError::Io { path, source },
            })?;
        }
        if size != file.size {
            return Err(size_mismatch(what, file, "is shorter than"));
        }
        Ok(size)
    }

    async fn list_exports(
        &self,
        group_id: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<ExportSummary>, OcpError> {
        let what = "list exports";
        let url = self.group_exports_url(what, group_id)?;
        let (from, to) = (from.to_string(), to.to_string());
        let response = self
            .client
            .send(what, Some(self.api_timeout()), |http| {
                http.get(url.clone())
                    .query(&[("from", from.as_str()), ("to", to.as_str())])
            })
            .await?;
        #[derive(Deserialize)]
        struct Answer {
            exports: Vec<ExportSummary>,
        }
        let answer: Answer = read_json(response, what).await?;
        Ok(answer.exports)
    }

    fn health(&self) -> Arc<OcpHealth> {
        self.client.health()
    }
}

/// The file's bytes are not what the listing declared: the file is bad (charged to its call), the
/// export is not.
fn size_mismatch(what: &str, file: &ExportFile, how: &str) -> OcpError {
    OcpError::Refused {
        what: what.into(),
        status: 502,
        kind: "size_mismatch".into(),
        message: format!("{} {how} the {} bytes listed", file.name, file.size),
    }
}

fn too_large(what: &str, file: &ExportFile, limit: u64) -> OcpError {
    OcpError::Refused {
        what: what.into(),
        status: 413,
        kind: "too_large".into(),
        message: format!("{} is above the {limit}-byte limit", file.name),
    }
}
