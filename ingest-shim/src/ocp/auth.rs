//! OCP's login, as its documentation describes it.
//!
//! Two modes, chosen by what is configured:
//!
//! - **Personal access token** (recommended for an unattended service: OCP makes OTP mandatory,
//!   and a password login stops working once 2FA is on). Created in OCP's Access Management,
//!   tied to a group, optionally expiring; sent as `X-OCP-PERSONAL-ACCESS-TOKEN` with every
//!   request. The token endpoint is never called.
//! - **Username and password**: Keycloak's password grant at the realm token endpoint
//!   (`client_id=ocp`); the answer's `access_token` is sent as a bearer token and renewed through
//!   its `refresh_token` before it expires; the password grant is used again only when the
//!   refresh token is refused (or has expired).
//!
//! [`TokenState`] decides what to do next (a pure function of the tokens held and the time);
//! [`TokenSource`](super::http) does it.

use std::time::{Duration, Instant};

/// A secret: never printed, never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// How callrec logs in to OCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `X-OCP-PERSONAL-ACCESS-TOKEN`.
    PersonalAccessToken(Secret),
    /// Keycloak's password grant, then refresh grants.
    Password { username: String, password: Secret },
}

impl Credentials {
    /// The mode's name for logs and `callrec ocp check`.
    pub fn mode(&self) -> &'static str {
        match self {
            Credentials::PersonalAccessToken(_) => "personal access token",
            Credentials::Password { .. } => "username and password",
        }
    }
}

/// The header a personal access token travels in.
pub const PAT_HEADER: &str = "x-ocp-personal-access-token";

/// Renew an access token this far into its lifetime (80%), so a request never carries one
/// about to expire.
const RENEW_AT: f64 = 0.8;

/// An access token and when to renew it.
#[derive(Debug, Clone)]
struct Access {
    token: Secret,
    renew_at: Instant,
}

/// A refresh token and when it stops working (unknown: until refused).
#[derive(Debug, Clone)]
struct Refresh {
    token: Secret,
    expires_at: Option<Instant>,
}

/// What to do to get a usable access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The held token is good.
    Use(Secret),
    /// Renew it with this refresh token.
    Refresh(Secret),
    /// Log in with the password.
    Password,
}

/// A token endpoint's successful answer (Keycloak's fields).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Granted {
    pub access_token: String,
    /// Seconds.
    pub expires_in: u64,
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Seconds; Keycloak sends it with every grant. 0 or absent: valid until refused.
    #[serde(default)]
    pub refresh_expires_in: Option<u64>,
}

/// The tokens held for the password mode.
#[derive(Debug, Default)]
pub struct TokenState {
    access: Option<Access>,
    refresh: Option<Refresh>,
}

impl TokenState {
    /// What to do at `now`; `stale`: the held access token was just refused (a 401), so it is
    /// not to be used again.
    pub fn next(&self, now: Instant, stale: bool) -> Next {
        if !stale
            && let Some(access) = &self.access
            && now < access.renew_at
        {
            return Next::Use(access.token.clone());
        }
        match &self.refresh {
            Some(refresh) if refresh.expires_at.is_none_or(|t| now < t) => {
                Next::Refresh(refresh.token.clone())
            }
            _ => Next::Password,
        }
    }

    /// Takes a grant's answer received at `now`. A refresh grant may leave out the refresh token
    /// (then the old one stays).
    pub fn granted(&mut self, answer: &Granted, now: Instant) {
        let lifetime = Duration::from_secs(answer.expires_in.max(1)).mul_f64(RENEW_AT);
        self.access = Some(Access {
            token: Secret::new(answer.access_token.clone()),
            renew_at: now + lifetime,
        });
        if let Some(refresh) = &answer.refresh_token {
            let expires_at = answer
                .refresh_expires_in
                .filter(|&s| s > 0)
                // Renew before it lapses, like the access token.
                .map(|s| now + Duration::from_secs(s).mul_f64(RENEW_AT));
            self.refresh = Some(Refresh {
                token: Secret::new(refresh.clone()),
                expires_at,
            });
        }
    }

    /// The refresh token was refused: the next login is a password grant.
    pub fn refresh_refused(&mut self) {
        self.refresh = None;
        self.access = None;
    }

    /// The access token was refused by the API: renew before the next request.
    pub fn access_refused(&mut self) {
        self.access = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(access: &str, expires_in: u64, refresh: Option<(&str, u64)>) -> Granted {
        Granted {
            access_token: access.into(),
            expires_in,
            refresh_token: refresh.map(|(r, _)| r.to_string()),
            refresh_expires_in: refresh.map(|(_, s)| s),
        }
    }

    #[test]
    fn tokens_are_used_then_refreshed_then_replaced_by_a_login() {
        let t0 = Instant::now();
        let mut state = TokenState::default();
        assert_eq!(state.next(t0, false), Next::Password);
        state.granted(&grant("a1", 300, Some(("r1", 1800))), t0);
        // Used until 80% of its 300 s.
        assert_eq!(state.next(t0, false), Next::Use(Secret::new("a1")));
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(state.next(at(239), false), Next::Use(Secret::new("a1")));
        assert_eq!(state.next(at(241), false), Next::Refresh(Secret::new("r1")));
        // A 401 on a fresh token: refresh at once.
        assert_eq!(state.next(at(10), true), Next::Refresh(Secret::new("r1")));
        // A refresh grant that keeps the refresh token.
        state.granted(&grant("a2", 300, None), at(241));
        assert_eq!(state.next(at(242), false), Next::Use(Secret::new("a2")));
        // The refresh token lapses (80% of 1800 s): a password grant.
        assert_eq!(state.next(at(1500), false), Next::Password);
        // Refused refresh: a password grant.
        state.granted(&grant("a3", 300, Some(("r3", 0))), at(1500));
        assert_eq!(
            state.next(at(1800), false),
            Next::Refresh(Secret::new("r3"))
        );
        state.refresh_refused();
        assert_eq!(state.next(at(1800), false), Next::Password);
    }

    #[test]
    fn secrets_never_print() {
        let c = Credentials::Password {
            username: "svc".into(),
            password: Secret::new("hunter2"),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        let p = Credentials::PersonalAccessToken(Secret::new("pat-123"));
        assert!(!format!("{p:?}").contains("pat-123"));
    }
}
