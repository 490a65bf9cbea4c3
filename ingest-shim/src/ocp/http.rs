//! The HTTPS client every request to OCP goes through: TLS, login, retries, limits.
//!
//! - **TLS** by rustls (aws-lc-rs; no OpenSSL): the Mozilla roots built in (webpki-roots, so a
//!   minimal container image needs no CA package) plus the certificates of `ocp.ca_file`, for a
//!   corporate TLS inspection proxy or a test CA. `http://` only with `ocp.allow_insecure_http`.
//! - **No redirect to another origin.** A 307/308 would re-send a password form or a token to
//!   whatever host it names; a redirect is followed only within the origin it came from (at most
//!   five), otherwise it is answered as a refusal. Credentials are only ever attached by this
//!   client to requests it builds from the configured URLs.
//! - **Timeouts**: connect, per-read idle (a stalled transfer fails fast), and a total per API
//!   request; a download has no total, so a large file on a slow link that keeps sending
//!   completes.
//! - **Retries**: transient failures (5xx, 429, timeouts, connection errors, of the API or of the
//!   identity provider) a few times with jittered exponential backoff, honouring `Retry-After` up
//!   to a cap; beyond that the error goes back to the caller, which reschedules (a job keeps its
//!   place, no call is charged). Credentials refused: at once, as [`OcpError::Credentials`].
//! - **Answers are size-capped** before they are parsed.
//!
//! [`OcpHealth`] remembers the last credentials or TLS problem for `/readyz` and logs.

use super::auth::{Credentials, Granted, Next, PAT_HEADER, Secret, TokenState};
use super::error::{OcpError, Transient};
use super::region::Endpoints;
use jiff::Timestamp;
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Response, Url};
use serde::de::DeserializeOwned;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest JSON answer read (listings, status, errors, tokens).
pub const MAX_ANSWER_BYTES: usize = 4 << 20;

/// Timeouts of requests to OCP.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeouts {
    pub connect: Duration,
    /// Longest wait for the next bytes of an answer.
    pub read_idle: Duration,
    /// Longest total of one API request (downloads have no total, only `read_idle`).
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            read_idle: Duration::from_secs(60),
            request: Duration::from_secs(60),
        }
    }
}

/// How transient failures are retried inside one call.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Tries per call, the first included.
    pub attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// A `Retry-After` above this is not waited for here: the error goes back to the caller
    /// (which reschedules) with the wait OCP asked for.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

/// Everything the client needs (from `[ocp]`; secrets from the environment).
#[derive(Debug, Clone)]
pub struct OcpConfig {
    pub endpoints: Endpoints,
    pub credentials: Credentials,
    /// Keycloak's client id: `ocp`.
    pub client_id: String,
    /// Extra trusted certificates (PEM), from `ocp.ca_file`.
    pub extra_ca_pem: Option<Vec<u8>>,
    pub timeouts: Timeouts,
    pub retry: RetryPolicy,
}

impl OcpConfig {
    /// Defaults for everything but where OCP is and who logs in: the token endpoint on the same
    /// host, realm `master`, client `ocp`, the built-in roots only. `http://` only with
    /// `allow_insecure_http` (a simulator on this machine).
    pub fn new(
        base_url: &str,
        credentials: Credentials,
        allow_insecure_http: bool,
    ) -> Result<Self, super::region::EndpointError> {
        let place = super::region::Where {
            base_url: Some(base_url),
            allow_insecure_http,
            ..Default::default()
        };
        let endpoints = place.resolve()?.ok_or(super::region::EndpointError {
            key: "ocp.base_url",
            message: "missing".into(),
        })?;
        Ok(OcpConfig {
            endpoints,
            credentials,
            client_id: "ocp".into(),
            extra_ca_pem: None,
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
        })
    }

    /// Also trusts the CA certificates of `pem` (what `ocp.ca_file` does).
    pub fn trusting(mut self, pem: &str) -> Self {
        self.extra_ca_pem = Some(pem.as_bytes().to_vec());
        self
    }
}

/// A problem that needs a person (credentials, TLS), for `/readyz` and `callrec status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OcpProblem {
    /// `credentials` or `tls`.
    pub kind: &'static str,
    pub message: String,
    pub since: Timestamp,
}

/// How the connection to OCP stands, as the client last saw it.
#[derive(Debug, Default)]
pub struct OcpHealth {
    state: Mutex<HealthState>,
}

#[derive(Debug, Default)]
struct HealthState {
    problem: Option<OcpProblem>,
    last_ok: Option<Timestamp>,
    /// OCP's `Date` minus ours, at the last answer that had one.
    clock_skew: Option<jiff::SignedDuration>,
}

impl OcpHealth {
    /// The current problem, if any.
    pub fn problem(&self) -> Option<OcpProblem> {
        self.lock().problem.clone()
    }

    /// When OCP last answered a request successfully.
    pub fn last_ok(&self) -> Option<Timestamp> {
        self.lock().last_ok
    }

    /// OCP's clock minus ours (from the `Date` of its last answer; 1 s resolution).
    pub fn clock_skew(&self) -> Option<jiff::SignedDuration> {
        self.lock().clock_skew
    }

    fn saw_date(&self, headers: &reqwest::header::HeaderMap) {
        let Some(date) = headers
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_http_date)
        else {
            return;
        };
        // Our clock is read after the answer arrived: the skew is off by at most the
        // request's latency, well under the 1 s resolution of the header.
        // Both to the second, as the header is.
        let now = Timestamp::from_second(Timestamp::now().as_second())
            .unwrap_or_else(|_| Timestamp::now());
        let skew = date.duration_since(now);
        self.lock().clock_skew = Some(skew);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HealthState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ok(&self) {
        let mut state = self.lock();
        state.problem = None;
        state.last_ok = Some(Timestamp::now());
    }

    fn failed(&self, error: &OcpError) {
        if !error.needs_person() {
            return;
        }
        let mut state = self.lock();
        let kind = error.kind();
        if state.problem.as_ref().is_none_or(|p| p.kind != kind) {
            state.problem = Some(OcpProblem {
                kind,
                message: error.to_string(),
                since: Timestamp::now(),
            });
        }
    }
}

/// The client (cheap to share: one connection pool, one token).
pub struct OcpClient {
    http: reqwest::Client,
    config: OcpConfig,
    tokens: tokio::sync::Mutex<TokenState>,
    health: Arc<OcpHealth>,
}

/// The TLS configuration: rustls with the built-in roots plus `extra_ca_pem`.
pub fn tls_config(extra_ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_ca_pem {
        let added = add_pem_roots(&mut roots, pem)?;
        if added == 0 {
            return Err("no PEM certificate in it".into());
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// Adds every certificate of a PEM bundle; returns how many.
fn add_pem_roots(roots: &mut rustls::RootCertStore, pem: &[u8]) -> Result<usize, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let mut added = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("not a PEM certificate bundle: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("a certificate rustls cannot use: {e}"))?;
        added += 1;
    }
    Ok(added)
}

/// Checks a CA bundle as `ocp.ca_file` would use it (for config validation).
pub fn check_ca_pem(pem: &[u8]) -> Result<usize, String> {
    let mut roots = rustls::RootCertStore::empty();
    match add_pem_roots(&mut roots, pem)? {
        0 => Err("no PEM certificate in it".into()),
        n => Ok(n),
    }
}

/// Redirects are followed only within one origin (scheme, host, port), at most five.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().map(Url::origin);
        if attempt.previous().len() > 5 {
            attempt.stop()
        } else if first.is_some_and(|o| o == attempt.url().origin()) {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// The OAuth error of a refused grant (Keycloak: `{"error", "error_description"}`).
#[derive(serde::Deserialize, Default)]
struct OauthError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

/// An API error body (`{"error", "message"}`).
#[derive(serde::Deserialize, Default)]
pub(crate) struct ApiErrorBody {
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub message: String,
}

/// A text from a remote answer, fit for a log line: printable, at most 200 characters.
pub(crate) fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// A grant refused or failed.
enum GrantError {
    /// 400/401 with an OAuth error: the grant (refresh token or password) is not accepted.
    Refused(String),
    Other(OcpError),
}

impl OcpClient {
    pub fn new(config: OcpConfig) -> Result<Self, OcpError> {
        let tls =
            tls_config(config.extra_ca_pem.as_deref()).map_err(|detail| OcpError::Untrusted {
                what: "ocp.ca_file".into(),
                detail,
            })?;
        let insecure =
            config.endpoints.api.scheme() == "http" || config.endpoints.token.scheme() == "http";
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .https_only(!insecure)
            .redirect(same_origin_redirects())
            .connect_timeout(config.timeouts.connect)
            .read_timeout(config.timeouts.read_idle)
            .user_agent(concat!("callrec/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OcpError::from_transport("building the HTTP client", &e))?;
        Ok(OcpClient {
            http,
            config,
            tokens: tokio::sync::Mutex::new(TokenState::default()),
            health: Arc::new(OcpHealth::default()),
        })
    }

    pub fn config(&self) -> &OcpConfig {
        &self.config
    }

    pub fn health(&self) -> Arc<OcpHealth> {
        Arc::clone(&self.health)
    }

    /// A URL under the API's base, from path segments (each percent-encoded: none can point
    /// the request elsewhere; dot segments are refused by the callers that take names from
    /// OCP's answers).
    pub fn api_url(&self, segments: &[&str]) -> Url {
        let mut url = self.config.endpoints.api.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// The header that authenticates a request; `stale`: the last one was refused (401).
    pub async fn auth_header(&self, stale: bool) -> Result<(HeaderName, HeaderValue), OcpError> {
        let bearer = match &self.config.credentials {
            Credentials::PersonalAccessToken(token) => {
                let mut value =
                    HeaderValue::from_str(token.expose()).map_err(|_| OcpError::Credentials {
                        what: "personal access token".into(),
                        detail: "it holds characters a header cannot carry".into(),
                    })?;
                value.set_sensitive(true);
                return Ok((HeaderName::from_static(PAT_HEADER), value));
            }
            Credentials::Password { .. } => self.access_token(stale).await?,
        };
        let mut value = HeaderValue::from_str(&format!("Bearer {}", bearer.expose()))
            .map_err(|_| OcpError::bad_answer("token", "an access token no header can carry"))?;
        value.set_sensitive(true);
        Ok((reqwest::header::AUTHORIZATION, value))
    }

    /// A usable access token for the password mode: held, refreshed, or a new login.
    async fn access_token(&self, stale: bool) -> Result<Secret, OcpError> {
        let Credentials::Password { username, password } = &self.config.credentials else {
            unreachable!("only the password mode has access tokens");
        };
        let mut tokens = self.tokens.lock().await;
        if stale {
            tokens.access_refused();
        }
        loop {
            let now = Instant::now();
            match tokens.next(now, false) {
                Next::Use(token) => return Ok(token),
                Next::Refresh(refresh) => {
                    let form = [
                        ("client_id", self.config.client_id.as_str()),
                        ("grant_type", "refresh_token"),
                        ("refresh_token", refresh.expose()),
                    ];
                    match self.grant(&form).await {
                        Ok(granted) => tokens.granted(&granted, now),
                        // Expired or revoked refresh token: log in again.
                        Err(GrantError::Refused(why)) => {
                            tracing::debug!(reason = %why, "OCP refused the refresh token; logging in again");
                            tokens.refresh_refused();
                        }
                        Err(GrantError::Other(e)) => return Err(e),
                    }
                }
                Next::Password => {
                    let form = [
                        ("client_id", self.config.client_id.as_str()),
                        ("grant_type", "password"),
                        ("username", username.as_str()),
                        ("password", password.expose()),
                    ];
                    match self.grant(&form).await {
                        Ok(granted) => {
                            tokens.granted(&granted, now);
                        }
                        Err(GrantError::Refused(why)) => {
                            return Err(OcpError::Credentials {
                                what: "login".into(),
                                detail: why,
                            });
                        }
                        Err(GrantError::Other(e)) => return Err(e),
                    }
                }
            }
        }
    }

    /// One grant at the token endpoint.
    async fn grant(&self, form: &[(&str, &str)]) -> Result<Granted, GrantError> {
        let what = "token endpoint";
        let response = self
            .http
            .post(self.config.endpoints.token.clone())
            .form(form)
            .timeout(self.config.timeouts.request)
            .send()
            .await
            .map_err(|e| GrantError::Other(OcpError::from_transport(what, &e)))?;
        self.health.saw_date(response.headers());
        let status = response.status().as_u16();
        let retry_after = retry_after(&response);
        if response.status().is_success() {
            return read_json::<Granted>(response, what)
                .await
                .map_err(GrantError::Other);
        }
        if response.status().is_redirection() {
            return Err(GrantError::Other(redirect_refused(what, &response)));
        }
        let body: OauthError = read_json(response, what).await.unwrap_or_default();
        let reason = if body.error.is_empty() {
            format!("{status}")
        } else if body.error_description.is_empty() {
            format!("{status} {}", printable(&body.error))
        } else {
            format!(
                "{status} {}: {}",
                printable(&body.error),
                printable(&body.error_description)
            )
        };
        match status {
            400 | 401 | 403 => Err(GrantError::Refused(reason)),
            404 => Err(GrantError::Other(OcpError::Credentials {
                what: what.into(),
                detail: format!(
                    "{reason}: no such realm or endpoint (check ocp.region, ocp.realm, \
                     ocp.auth_url)"
                ),
            })),
            429 | 500..=599 => Err(GrantError::Other(OcpError::Unavailable {
                what: what.into(),
                reason: Transient::Status(status),
                detail: String::new(),
                retry_after,
            })),
            _ => Err(GrantError::Other(OcpError::Refused {
                what: what.into(),
                status,
                kind: printable(&body.error),
                message: printable(&body.error_description),
            })),
        }
    }

    /// Sends an API request with the credentials and the retry policy; returns a 2xx answer
    /// or a classified error. `timeout`: the request's total (API calls: `timeouts.request`);
    /// `None` for a download, which has only the per-read idle timeout.
    pub async fn send(
        &self,
        what: &str,
        timeout: Option<Duration>,
        request: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync,
    ) -> Result<Response, OcpError> {
        let result = self.send_inner(what, timeout, request).await;
        match &result {
            Ok(_) => self.health.ok(),
            Err(e) => self.health.failed(e),
        }
        result
    }

    async fn send_inner(
        &self,
        what: &str,
        timeout: Option<Duration>,
        request: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync,
    ) -> Result<Response, OcpError> {
        let policy = &self.config.retry;
        let mut backoff = policy.initial_backoff;
        let mut stale = false;
        let mut renewed = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = match self.auth_header(stale).await {
                Ok((name, value)) => {
                    stale = false;
                    let mut builder = request(&self.http).header(name, value);
                    if let Some(total) = timeout {
                        builder = builder.timeout(total);
                    }
                    let sent = builder.send().await;
                    match sent {
                        Ok(response) => self.judge(what, response, &mut renewed).await,
                        Err(e) => Err(OcpError::from_transport(what, &e)),
                    }
                }
                Err(e) => Err(e),
            };
            let error = match outcome {
                Ok(Some(response)) => return Ok(response),
                // A 401 on a token that looked good: renew it once and try again at once.
                Ok(None) => {
                    stale = true;
                    continue;
                }
                Err(e) if !e.is_transient() => return Err(e),
                Err(e) => e,
            };
            if attempt >= policy.attempts.max(1) {
                return Err(error);
            }
            let wait = match error.retry_after() {
                Some(asked) if asked > policy.max_retry_after => return Err(error),
                Some(asked) => asked,
                None => backoff,
            };
            tracing::debug!(what, attempt, error = %error, "OCP call failed; retrying");
            // Jitter (half to all of the wait), so clients do not retry in step.
            tokio::time::sleep(wait.mul_f64(0.5 + rand::random::<f64>() * 0.5)).await;
            backoff = (backoff * 2).min(policy.max_backoff);
        }
    }

    /// A response's meaning: `Some` 2xx, `None` renew the token and retry, or an error.
    async fn judge(
        &self,
        what: &str,
        response: Response,
        renewed: &mut bool,
    ) -> Result<Option<Response>, OcpError> {
        // Every answer of OCP's carries its clock.
        self.health.saw_date(response.headers());
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok(Some(response));
        }
        if response.status().is_redirection() {
            return Err(redirect_refused(what, &response));
        }
        let retry_after = retry_after(&response);
        let body: ApiErrorBody = read_json(response, what).await.unwrap_or_default();
        let detail = if body.error.is_empty() {
            format!("{status}")
        } else {
            format!("{status} {}", printable(&body.error))
        };
        match status {
            401 if !*renewed && matches!(self.config.credentials, Credentials::Password { .. }) => {
                *renewed = true;
                Ok(None)
            }
            401 | 403 => Err(OcpError::Credentials {
                what: what.into(),
                detail: if status == 403 {
                    format!(
                        "{detail}: not allowed (is the group whitelisted for this user or token?)"
                    )
                } else {
                    detail
                },
            }),
            409 if body.error == "export_running" => {
                Err(OcpError::GroupBusy(printable(&body.message)))
            }
            409 => Err(OcpError::NotReady(what.into())),
            410 => Err(OcpError::Expired(what.into())),
            429 | 500..=599 => Err(OcpError::Unavailable {
                what: what.into(),
                reason: Transient::Status(status),
                detail: String::new(),
                retry_after,
            }),
            _ => Err(OcpError::Refused {
                what: what.into(),
                status,
                kind: printable(&body.error),
                message: printable(&body.message),
            }),
        }
    }
}

/// An HTTP date (RFC 9110's preferred form: `Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn parse_http_date(text: &str) -> Option<Timestamp> {
    let civil = jiff::civil::DateTime::strptime("%a, %d %b %Y %H:%M:%S GMT", text.trim()).ok()?;
    civil
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// A redirect the policy did not follow (another origin): refused, saying where it pointed.
fn redirect_refused(what: &str, response: &Response) -> OcpError {
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(printable)
        .unwrap_or_default();
    OcpError::Refused {
        what: what.into(),
        status: response.status().as_u16(),
        kind: "redirect".into(),
        message: format!(
            "redirected to {location:?}, another origin: not followed (credentials go only to \
             the configured hosts)"
        ),
    }
}

/// `Retry-After` in seconds (the form OCP and most APIs use).
fn retry_after(response: &Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Reads an answer of at most [`MAX_ANSWER_BYTES`] and parses it.
pub(crate) async fn read_json<T: DeserializeOwned>(
    response: Response,
    what: &str,
) -> Result<T, OcpError> {
    let bytes = read_capped(response, what, MAX_ANSWER_BYTES).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| OcpError::bad_answer(what, format!("not the JSON the API documents: {e}")))
}

/// Reads at most `cap` bytes of an answer; more is an error (never held).
pub(crate) async fn read_capped(
    mut response: Response,
    what: &str,
    cap: usize,
) -> Result<Vec<u8>, OcpError> {
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Err(OcpError::bad_answer(
            what,
            format!("an answer above {cap} bytes"),
        ));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| OcpError::from_transport(what, &e))?
    {
        if bytes.len() + chunk.len() > cap {
            return Err(OcpError::bad_answer(
                what,
                format!("an answer above {cap} bytes"),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_parse() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some("1994-11-06T08:49:37Z".parse().unwrap())
        );
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn a_ca_bundle_must_hold_certificates() {
        assert!(check_ca_pem(b"").is_err());
        assert!(
            check_ca_pem(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
                .is_err()
        );
        assert!(tls_config(None).is_ok());
    }
}
