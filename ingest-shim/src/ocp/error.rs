//! What can go wrong talking to OCP, classified where it happens: what the caller must do about
//! it follows from the variant alone.
//!
//! | variant | examples | what callers do |
//! | --- | --- | --- |
//! | [`OcpError::Unavailable`] | 5xx, 429, timeouts, DNS and connection errors, a garbled answer | wait and try again; nothing is charged to a call |
//! | [`OcpError::Credentials`] | `invalid_grant`, 401 after a fresh token, 403 | needs a person: loud, jobs wait, calls are not charged |
//! | [`OcpError::Untrusted`] | the server's certificate is not trusted | needs a person, as credentials |
//! | [`OcpError::Refused`] | 400, 404, 422 on the request as made | the request cannot work as it is |
//! | [`OcpError::GroupBusy`], [`OcpError::NotReady`], [`OcpError::Expired`] | 409, 410 | the export's own state |
//!
//! No message carries a secret: tokens and passwords travel in headers and form bodies, never in
//! a URL, and answers are quoted only by their OAuth error code and status.

use std::time::Duration;

/// Why a transient failure happened (what `callrec ocp check` reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transient {
    /// The host name did not resolve.
    Dns,
    /// No TCP connection (refused, unreachable, reset).
    Connect,
    /// Connecting, reading or the whole request took too long.
    Timeout,
    /// OCP or its identity provider answered with this status (5xx, 429).
    Status(u16),
    /// An answer that was cut off, too large or not what the API documents.
    BadAnswer,
}

impl std::fmt::Display for Transient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transient::Dns => f.write_str("the host name does not resolve"),
            Transient::Connect => f.write_str("no connection"),
            Transient::Timeout => f.write_str("timed out"),
            Transient::Status(429) => f.write_str("rate limited (429)"),
            Transient::Status(status) => write!(f, "answered {status}"),
            Transient::BadAnswer => f.write_str("a bad answer"),
        }
    }
}

/// Why a call to OCP (its Exports API or its identity provider) failed.
#[derive(Debug, thiserror::Error)]
pub enum OcpError {
    /// OCP cannot answer now; try again later. `retry_after`: what OCP asked for, if it did.
    #[error("{what}: OCP unavailable ({reason}){}", detail_suffix(detail))]
    Unavailable {
        what: String,
        reason: Transient,
        detail: String,
        retry_after: Option<Duration>,
    },
    /// The configured credentials were refused (or lack the rights, e.g. the group is not
    /// whitelisted for the user or token): a person must fix them.
    #[error("{what}: OCP refused the credentials ({detail})")]
    Credentials { what: String, detail: String },
    /// The TLS handshake failed: most often the server's certificate is not trusted (a corporate
    /// TLS inspection proxy needs its CA in `ocp.ca_file`).
    #[error("{what}: TLS failed: {detail}")]
    Untrusted { what: String, detail: String },
    /// OCP refused the request as made (400, 404, 422): retrying it unchanged will not help.
    #[error("{what}: OCP refused ({status} {kind}): {message}")]
    Refused {
        what: String,
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
    /// A local file (a download's spool file, the CA bundle) could not be used.
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

/// A download's spool refused the bytes: too large (the file is bad), or the local disk.
impl From<crate::intake::SpoolError> for OcpError {
    fn from(e: crate::intake::SpoolError) -> Self {
        match e {
            crate::intake::SpoolError::TooLarge { limit } => OcpError::Refused {
                what: "export file".into(),
                status: 413,
                kind: "too_large".into(),
                message: format!("above the {limit}-byte limit"),
            },
            crate::intake::SpoolError::Io { path, source } => OcpError::Io { path, source },
        }
    }
}

impl OcpError {
    /// Whether a person must act (credentials, trust) before anything can work: logged loudly,
    /// counted, and jobs wait without charging their calls.
    pub fn needs_person(&self) -> bool {
        matches!(
            self,
            OcpError::Credentials { .. } | OcpError::Untrusted { .. }
        )
    }

    /// Whether waiting may be all it takes (OCP or its identity provider is down, slow or
    /// rate limiting): retried later, nothing charged.
    pub fn is_transient(&self) -> bool {
        matches!(self, OcpError::Unavailable { .. })
    }

    /// A short name for logs, metrics and `callrec ocp check`.
    pub fn kind(&self) -> &'static str {
        match self {
            OcpError::Unavailable {
                reason: Transient::Dns,
                ..
            } => "dns",
            OcpError::Unavailable {
                reason: Transient::Connect,
                ..
            } => "connect",
            OcpError::Unavailable {
                reason: Transient::Timeout,
                ..
            } => "timeout",
            OcpError::Unavailable { .. } => "unavailable",
            OcpError::Credentials { .. } => "credentials",
            OcpError::Untrusted { .. } => "tls",
            OcpError::Refused { .. } => "refused",
            OcpError::GroupBusy(_) => "group_busy",
            OcpError::Expired(_) => "expired",
            OcpError::NotReady(_) => "not_ready",
            OcpError::Io { .. } => "io",
        }
    }

    /// What OCP asked to wait for, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            OcpError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub(crate) fn unavailable(what: &str, reason: Transient, detail: impl Into<String>) -> Self {
        OcpError::Unavailable {
            what: what.to_string(),
            reason,
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub(crate) fn bad_answer(what: &str, detail: impl Into<String>) -> Self {
        OcpError::unavailable(what, Transient::BadAnswer, detail)
    }

    /// Classifies a transport error from the HTTP client (no answer came back).
    pub(crate) fn from_transport(what: &str, error: &reqwest::Error) -> Self {
        if let Some(tls) = tls_cause(error) {
            return OcpError::Untrusted {
                what: what.to_string(),
                detail: tls,
            };
        }
        let reason = if error.is_timeout() {
            Transient::Timeout
        } else if is_dns(error) {
            Transient::Dns
        } else if error.is_connect() {
            Transient::Connect
        } else if error.is_body() || error.is_decode() {
            Transient::BadAnswer
        } else {
            Transient::Connect
        };
        OcpError::unavailable(what, reason, chain(error))
    }
}

/// The error and its sources, joined, without the URL's query (none carries a secret, but a
/// message should not grow with one either).
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

/// A TLS failure in the chain: what rustls said, in words a person can act on.
fn tls_cause(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(describe_tls(tls));
        }
        // tokio-rustls and hyper wrap it in an io::Error.
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(tls) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(describe_tls(tls));
        }
        // Wrappers that box the error hide its type from `downcast_ref`: rustls's own words
        // still say what it was.
        let text = e.to_string();
        if let Some(rest) = text.strip_prefix("invalid peer certificate: ") {
            return Some(describe_certificate_text(rest));
        }
        source = e.source();
    }
    None
}

fn describe_certificate_text(what: &str) -> String {
    let error = if what.starts_with("UnknownIssuer") {
        rustls::CertificateError::UnknownIssuer
    } else if what.starts_with("NotValidForName") {
        rustls::CertificateError::NotValidForName
    } else if what.starts_with("Expired") {
        rustls::CertificateError::Expired
    } else {
        return format!("the server's certificate is not trusted ({what})");
    };
    describe_tls(&rustls::Error::InvalidCertificate(error))
}

fn describe_tls(error: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match error {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            "the server's certificate is not trusted (unknown issuer; a TLS inspection proxy's \
             CA belongs in ocp.ca_file)"
                .into()
        }
        rustls::Error::InvalidCertificate(C::NotValidForName)
        | rustls::Error::InvalidCertificate(C::NotValidForNameContext { .. }) => {
            "the server's certificate is not valid for this host name".into()
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "the server's certificate has expired".into()
        }
        rustls::Error::InvalidCertificate(other) => {
            format!("the server's certificate is not trusted ({other:?})")
        }
        other => other.to_string(),
    }
}

fn is_dns(error: &(dyn std::error::Error + 'static)) -> bool {
    // hyper-util's resolver reports "dns error: …"; the io error inside names the lookup.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        let text = e.to_string();
        if text.starts_with("dns error") || text.contains("failed to lookup address") {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_callers_do_follows_from_the_variant() {
        let idp_down = OcpError::unavailable("token", Transient::Status(503), "");
        assert!(idp_down.is_transient() && !idp_down.needs_person());
        assert_eq!(idp_down.kind(), "unavailable");
        assert_eq!(
            idp_down.to_string(),
            "token: OCP unavailable (answered 503)"
        );
        let refused = OcpError::Credentials {
            what: "token".into(),
            detail: "invalid_grant".into(),
        };
        assert!(refused.needs_person() && !refused.is_transient());
        let tls = OcpError::Untrusted {
            what: "token".into(),
            detail: describe_tls(&rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
        };
        assert!(tls.needs_person());
        assert!(tls.to_string().contains("not trusted"), "{tls}");
        let dns = OcpError::unavailable("status", Transient::Dns, "");
        assert_eq!(dns.kind(), "dns");
    }
}
