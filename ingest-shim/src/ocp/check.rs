//! `callrec ocp check`: logs in with the configured mode, lists the exports it can see for a
//! small recent range (creating none), and says plainly what works and what does not — DNS,
//! TLS, credentials, each group's whitelisting, and the clock against OCP's `Date`.

use super::auth::Credentials;
use super::error::OcpError;
use super::exports::{HttpOcp, OcpExports};
use super::http::OcpConfig;
use jiff::{SignedDuration, Timestamp, ToSpan as _};
use serde::Serialize;

/// A clock further than this from OCP's fails the check (exports are cut at whole hours and
/// tokens expire by OCP's clock).
pub const MAX_CLOCK_SKEW: SignedDuration = SignedDuration::from_secs(30);

/// One line of the check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// `config`, `dns`, `login`, `group`, `clock`.
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// Everything the check found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub api: String,
    pub token_endpoint: String,
    pub mode: &'static str,
    pub checks: Vec<Check>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    fn push(&mut self, name: &'static str, ok: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name,
            ok,
            detail: detail.into(),
        });
    }
}

/// What went wrong, in the words a platform engineer needs.
fn explain(error: &OcpError) -> String {
    match error {
        OcpError::Untrusted { detail, .. } => format!("TLS: {detail}"),
        OcpError::Credentials { detail, .. } => format!("credentials refused: {detail}"),
        other => other.to_string(),
    }
}

/// Runs the check for `groups` (at least one is needed to see exports).
pub async fn check(config: OcpConfig, groups: &[String]) -> CheckReport {
    let mut report = CheckReport {
        api: config.endpoints.api.to_string(),
        token_endpoint: config.endpoints.token.to_string(),
        mode: config.credentials.mode(),
        checks: Vec::new(),
    };
    // DNS, for each host callrec talks to.
    let mut hosts: Vec<(String, u16)> = Vec::new();
    for url in [&config.endpoints.api, &config.endpoints.token] {
        if let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default())
            && !hosts.iter().any(|(h, p)| h == host && *p == port)
        {
            hosts.push((host.to_string(), port));
        }
    }
    let mut resolved = true;
    for (host, port) in &hosts {
        match tokio::net::lookup_host((host.as_str(), *port)).await {
            Ok(addresses) => {
                let n = addresses.count();
                report.push("dns", true, format!("{host} resolves ({n} addresses)"));
            }
            Err(e) => {
                resolved = false;
                report.push("dns", false, format!("{host} does not resolve: {e}"));
            }
        }
    }
    if !resolved {
        return report;
    }
    let password_mode = matches!(config.credentials, Credentials::Password { .. });
    let ocp = match HttpOcp::new(config) {
        Ok(ocp) => ocp,
        Err(e) => {
            report.push("config", false, explain(&e));
            return report;
        }
    };
    // The login itself (a PAT is checked by the API calls below: there is no login).
    if password_mode {
        match ocp.client().auth_header(false).await {
            Ok(_) => report.push(
                "login",
                true,
                "TLS trusted; the token endpoint accepted the username and password",
            ),
            Err(e) => {
                report.push("login", false, explain(&e));
                return report;
            }
        }
    }
    if groups.is_empty() {
        report.push(
            "group",
            false,
            "no group to check: pass --group G (or set ocp.default_group) to see whether its \
             exports are visible",
        );
    }
    // A small recent range: the last two whole hours.
    let now = Timestamp::now();
    let to = now
        .round(
            jiff::TimestampRound::new()
                .smallest(jiff::Unit::Hour)
                .mode(jiff::RoundMode::Trunc),
        )
        .unwrap_or(now);
    let from = to.checked_sub(2.hours()).unwrap_or(to);
    for group in groups {
        match ocp.list_exports(group, from, to).await {
            Ok(exports) => report.push(
                "group",
                true,
                format!(
                    "group {group}: whitelisted; {} export(s) between {from} and {to}",
                    exports.len()
                ),
            ),
            Err(e) => report.push("group", false, format!("group {group}: {}", explain(&e))),
        }
    }
    match ocp.health().clock_skew() {
        Some(skew) => {
            let ok = skew.abs() <= MAX_CLOCK_SKEW;
            let seconds = skew.as_secs_f64();
            report.push(
                "clock",
                ok,
                if ok {
                    format!("{seconds:+.0} s from OCP's clock")
                } else {
                    format!(
                        "{seconds:+.0} s from OCP's clock (more than {} s): fix this host's time \
                         (NTP)",
                        MAX_CLOCK_SKEW.as_secs()
                    )
                },
            );
        }
        None if report.ok() => report.push("clock", true, "OCP sent no Date header to compare"),
        None => {}
    }
    report
}
