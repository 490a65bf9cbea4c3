//! OCP's identity provider, simulated: Keycloak's token endpoint and OCP's personal access
//! tokens, with the faults a real one has.
//!
//! - `POST /auth/realms/{realm}/protocol/openid-connect/token`, form `client_id=ocp` and
//!   `grant_type=password` (`username`, `password`) or `grant_type=refresh_token`
//!   (`refresh_token`) → `{"access_token", "expires_in", "refresh_token", "refresh_expires_in",
//!   "token_type": "Bearer"}`. A bad password: 401 `invalid_grant`; an expired, revoked or
//!   unknown refresh token: 400 `invalid_grant` (Keycloak's answers); another client id: 401
//!   `invalid_client`; another realm: 404. A refresh grant rotates the refresh token.
//! - Personal access tokens (`X-OCP-PERSONAL-ACCESS-TOKEN`): configured, each with the groups it
//!   may export (none listed: all) and an optional expiry.
//! - Faults: the token endpoint answering 503 or 429 for a while ([`ExportsApi::idp_outage`]),
//!   refresh tokens that expire (`refresh_lifetime`), and credentials revoked
//!   ([`ExportsApi::revoke_credentials`]: logins refused, tokens and PATs no longer accepted).

use crate::exports::{ExportsApi, error};
use axum::Json;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A personal access token OCP issued (Access Management).
#[derive(Debug, Clone)]
pub struct PersonalAccessToken {
    pub token: String,
    /// The groups it may export; empty: every group.
    pub groups: Vec<String>,
    /// When it stops working, if it expires.
    pub expires_at: Option<Instant>,
}

/// Who a request is from, once authenticated.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// Whitelisted groups; `None`: all.
    groups: Option<Vec<String>>,
}

impl Caller {
    pub(crate) fn may(&self, group: &str) -> bool {
        self.groups
            .as_ref()
            .is_none_or(|groups| groups.iter().any(|g| g == group))
    }
}

/// Token requests by outcome, for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Grants {
    pub password: u64,
    pub refresh: u64,
    /// Refused: bad password, refresh token not active, wrong client, revoked.
    pub refused: u64,
    /// Answered 503/429 during an outage.
    pub unavailable: u64,
}

#[derive(Default)]
pub(crate) struct IdpState {
    /// Access token → its expiry.
    pub access: std::collections::HashMap<String, Instant>,
    /// Refresh token → its expiry.
    pub refresh: std::collections::HashMap<String, Instant>,
    /// The token endpoint answers this status until then.
    pub outage: Option<(Instant, u16)>,
    pub revoked: bool,
    pub grants: Grants,
    /// Requests authenticated by a personal access token.
    pub pat_requests: u64,
}

#[derive(Deserialize)]
pub(crate) struct TokenForm {
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    grant_type: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    refresh_token: String,
}

fn oauth_error(status: StatusCode, kind: &str, description: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"error": kind, "error_description": description})),
    )
        .into_response()
}

pub(crate) async fn token(
    State(api): State<ExportsApi>,
    Path(realm): Path<String>,
    form: Result<Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let config = api.config();
    if realm != config.realm {
        return (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": "Realm does not exist"})),
        )
            .into_response();
    }
    let mut idp = api.idp();
    if let Some((until, status)) = idp.outage {
        if Instant::now() < until {
            idp.grants.unavailable += 1;
            let mut response = oauth_error(
                StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                "temporarily_unavailable",
                "the identity provider is unavailable",
            );
            if status == 429 {
                response
                    .headers_mut()
                    .insert("retry-after", axum::http::HeaderValue::from_static("1"));
            }
            return response;
        }
        idp.outage = None;
    }
    let Ok(Form(form)) = form else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "a form body");
    };
    if form.client_id != config.client_id {
        idp.grants.refused += 1;
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Invalid client or Invalid client credentials",
        );
    }
    let now = Instant::now();
    match form.grant_type.as_str() {
        "password" => {
            if idp.revoked || form.username != config.username || form.password != config.password {
                idp.grants.refused += 1;
                return oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_grant",
                    "Invalid user credentials",
                );
            }
            idp.grants.password += 1;
        }
        "refresh_token" => {
            let active = idp
                .refresh
                .remove(&form.refresh_token)
                .is_some_and(|until| until > now);
            if idp.revoked || !active {
                idp.grants.refused += 1;
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Token is not active",
                );
            }
            idp.grants.refresh += 1;
        }
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Unsupported grant_type",
            );
        }
    }
    let access = format!("ocp-at-{:032x}", api.random());
    let refresh = format!("ocp-rt-{:032x}", api.random());
    idp.access
        .insert(access.clone(), now + config.token_lifetime);
    idp.refresh
        .insert(refresh.clone(), now + config.refresh_lifetime);
    Json(serde_json::json!({
        "access_token": access,
        "expires_in": config.token_lifetime.as_secs().max(1),
        "refresh_token": refresh,
        "refresh_expires_in": config.refresh_lifetime.as_secs().max(1),
        "token_type": "Bearer",
        "scope": "profile email",
    }))
    .into_response()
}

/// Authenticates an API request and applies the injected faults; the caller, or the answer to
/// give instead.
/// A refusal to answer instead (boxed: a response is large).
pub(crate) type Refusal = Box<Response>;

pub(crate) fn gate(api: &ExportsApi, headers: &HeaderMap) -> Result<Caller, Refusal> {
    let config = api.config();
    let now = Instant::now();
    let caller = {
        let mut idp = api.idp();
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let pat = headers
            .get("x-ocp-personal-access-token")
            .and_then(|v| v.to_str().ok());
        if idp.revoked {
            None
        } else if let Some(pat) = pat {
            let found = config
                .personal_access_tokens
                .iter()
                .find(|p| p.token == pat && p.expires_at.is_none_or(|t| t > now));
            if found.is_some() {
                idp.pat_requests += 1;
            }
            found.map(|p| Caller {
                groups: (!p.groups.is_empty()).then(|| p.groups.clone()),
            })
        } else if let Some(token) = bearer {
            idp.access
                .get(token)
                .is_some_and(|until| *until > now)
                .then(|| Caller {
                    groups: config.whitelist.clone(),
                })
        } else {
            None
        }
    };
    let Some(caller) = caller else {
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing, expired or revoked token",
        )));
    };
    if let Some(seconds) = api.faults().throttle_all {
        let mut response = error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "slow down");
        if let Ok(value) = axum::http::HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert("retry-after", value);
        }
        return Err(Box::new(response));
    }
    if let Some(status) = api.faults().fail_all {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Err(Box::new(error(status, "internal", "something went wrong")));
    }
    let n = api.requests().fetch_add(1, Ordering::Relaxed) + 1;
    if config.rate_limit_every.is_some_and(|k| n.is_multiple_of(k)) {
        let mut response = error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "slow down");
        response
            .headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        return Err(Box::new(response));
    }
    if config
        .unavailable_every
        .is_some_and(|k| n.is_multiple_of(k))
    {
        return Err(Box::new(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "try again",
        )));
    }
    Ok(caller)
}

/// [`gate`] for a request about `group`: also refused (403) when the caller may not export it.
pub(crate) fn gate_group(
    api: &ExportsApi,
    headers: &HeaderMap,
    group: &str,
) -> Result<Caller, Refusal> {
    let caller = gate(api, headers)?;
    if !caller.may(group) {
        return Err(Box::new(forbidden(group)));
    }
    Ok(caller)
}

/// The answer for a group the caller may not export.
pub(crate) fn forbidden(group: &str) -> Response {
    error(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("group {group} is not whitelisted for this user or token"),
    )
}

impl ExportsApi {
    /// The token endpoint answers `status` (503 or 429) for `duration` from now.
    pub fn idp_outage(&self, status: u16, duration: Duration) {
        self.idp().outage = Some((Instant::now() + duration, status));
    }

    /// Revokes every credential: logins refused, access and refresh tokens and personal access
    /// tokens no longer accepted (as when OCP disables the user).
    pub fn revoke_credentials(&self) {
        let mut idp = self.idp();
        idp.revoked = true;
        idp.access.clear();
        idp.refresh.clear();
    }

    /// Undoes [`Self::revoke_credentials`] (a person re-enabled the user).
    pub fn restore_credentials(&self) {
        self.idp().revoked = false;
    }

    /// Token requests so far, by outcome.
    pub fn grants(&self) -> Grants {
        self.idp().grants
    }

    /// API requests authenticated by a personal access token so far.
    pub fn pat_requests(&self) -> u64 {
        self.idp().pat_requests
    }
}
