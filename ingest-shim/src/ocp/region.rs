//! Where OCP is: its regions (learn.ocp.ai, "API Authentication") and the two URLs callrec
//! needs, the API's base and the identity provider's token endpoint.
//!
//! | region | API host | token endpoint |
//! | --- | --- | --- |
//! | `eu1` | `https://eu1-m.ocp.ai` | `https://eu1-m.ocp.ai/auth/realms/master/protocol/openid-connect/token` |
//! | `us1` | `https://us1-m.ocp.ai` | `https://us1-m.ocp.ai/auth/realms/master/…` |
//! | `us2` | `https://us2-m.ocp.ai` (assumed: the docs name only the auth host) | `https://auth.us2-m.ocp.ai/auth/realms/master/…` |
//! | `ca1` | `https://pub.ca1.ocp.ai` | `https://pub.ca1.ocp.ai/auth/realms/ocp/…` |
//! | `frankfurt` | `https://pub.frankfurt.ocp.ai` | `https://pub.frankfurt.ocp.ai/auth/realms/ocp/…` |
//!
//! Explicit settings win over a region: `ocp.base_url` replaces the API host, `ocp.realm` the
//! realm, `ocp.auth_url` the whole token endpoint. With only `ocp.base_url`, the token endpoint
//! is `{base_url}/auth/realms/master/protocol/openid-connect/token`.

use reqwest::Url;
use serde::{Deserialize, Serialize};

/// An OCP region with published hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    Eu1,
    Us1,
    Us2,
    Ca1,
    Frankfurt,
}

impl Region {
    /// The API host.
    pub fn api_host(self) -> &'static str {
        match self {
            Region::Eu1 => "https://eu1-m.ocp.ai",
            Region::Us1 => "https://us1-m.ocp.ai",
            Region::Us2 => "https://us2-m.ocp.ai",
            Region::Ca1 => "https://pub.ca1.ocp.ai",
            Region::Frankfurt => "https://pub.frankfurt.ocp.ai",
        }
    }

    /// The identity provider's host.
    pub fn auth_host(self) -> &'static str {
        match self {
            Region::Us2 => "https://auth.us2-m.ocp.ai",
            other => other.api_host(),
        }
    }

    /// Keycloak's realm: `master` on the Swarm regions, `ocp` on the Kubernetes ones.
    pub fn realm(self) -> &'static str {
        match self {
            Region::Ca1 | Region::Frankfurt => "ocp",
            Region::Eu1 | Region::Us1 | Region::Us2 => "master",
        }
    }
}

/// The URLs callrec talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// The API's base (the Exports API lives under it).
    pub api: Url,
    /// Keycloak's token endpoint (password and refresh grants).
    pub token: Url,
}

/// What is wrong with the settings, and under which key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key `{key}`: {message}")]
pub struct EndpointError {
    pub key: &'static str,
    pub message: String,
}

/// What `[ocp]` says about where OCP is.
#[derive(Debug, Clone, Copy, Default)]
pub struct Where<'a> {
    pub region: Option<Region>,
    pub base_url: Option<&'a str>,
    pub auth_url: Option<&'a str>,
    pub realm: Option<&'a str>,
    pub allow_insecure_http: bool,
}

impl Where<'_> {
    /// Whether OCP is configured at all (no region and no base URL: no stage 2).
    pub fn is_set(&self) -> bool {
        self.region.is_some() || self.base_url.is_some()
    }

    /// The endpoints, or what is wrong (`None`: OCP is not configured).
    pub fn resolve(&self) -> Result<Option<Endpoints>, EndpointError> {
        let api_text = match (self.base_url, self.region) {
            (Some(url), _) => url.to_string(),
            (None, Some(region)) => region.api_host().to_string(),
            (None, None) => return Ok(None),
        };
        let api = self.url("ocp.base_url", &api_text)?;
        let token = match self.auth_url {
            Some(url) => self.url("ocp.auth_url", url)?,
            None => {
                let realm = match (self.realm, self.region) {
                    (Some(realm), _) => realm,
                    (None, Some(region)) => region.realm(),
                    (None, None) => "master",
                };
                if !crate::ids::is_safe_id(realm) {
                    return Err(EndpointError {
                        key: "ocp.realm",
                        message: "a realm name: 1-128 of A-Z a-z 0-9 - _ .".into(),
                    });
                }
                // With an explicit base URL the identity provider is assumed on the same host,
                // as on every region but US2.
                let host = match (self.base_url, self.region) {
                    (None, Some(region)) => region.auth_host().to_string(),
                    _ => api_text.trim_end_matches('/').to_string(),
                };
                let text = format!("{host}/auth/realms/{realm}/protocol/openid-connect/token");
                self.url(
                    if self.base_url.is_some() {
                        "ocp.base_url"
                    } else {
                        "ocp.region"
                    },
                    &text,
                )?
            }
        };
        Ok(Some(Endpoints { api, token }))
    }

    fn url(&self, key: &'static str, text: &str) -> Result<Url, EndpointError> {
        let error = |message: String| EndpointError { key, message };
        let url = Url::parse(text).map_err(|e| error(format!("not a URL: {e}")))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_insecure_http => {}
            "http" => {
                return Err(error(
                    "http:// would send OCP credentials in clear text: use https://, or set \
                     ocp.allow_insecure_http = true for a simulator on this machine"
                        .into(),
                ));
            }
            other => return Err(error(format!("an https:// URL, not {other}://"))),
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(error("a URL with a host".into()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(error(
                "no credentials in the URL (they would be logged): use the ocp keys".into(),
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(error("no query or fragment".into()));
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(w: Where) -> (String, String) {
        let e = w.resolve().unwrap().unwrap();
        (e.api.to_string(), e.token.to_string())
    }

    #[test]
    fn regions_fill_the_hosts_and_realm() {
        let token = |host: &str, realm: &str| {
            format!("{host}/auth/realms/{realm}/protocol/openid-connect/token")
        };
        for (region, api, auth, realm) in [
            (
                Region::Eu1,
                "https://eu1-m.ocp.ai/",
                "https://eu1-m.ocp.ai",
                "master",
            ),
            (
                Region::Us1,
                "https://us1-m.ocp.ai/",
                "https://us1-m.ocp.ai",
                "master",
            ),
            (
                Region::Us2,
                "https://us2-m.ocp.ai/",
                "https://auth.us2-m.ocp.ai",
                "master",
            ),
            (
                Region::Ca1,
                "https://pub.ca1.ocp.ai/",
                "https://pub.ca1.ocp.ai",
                "ocp",
            ),
            (
                Region::Frankfurt,
                "https://pub.frankfurt.ocp.ai/",
                "https://pub.frankfurt.ocp.ai",
                "ocp",
            ),
        ] {
            let w = Where {
                region: Some(region),
                ..Where::default()
            };
            assert_eq!(resolve(w), (api.to_string(), token(auth, realm)));
        }
    }

    #[test]
    fn explicit_urls_override_a_region() {
        // Only a base URL: the realm endpoint on that host, realm master.
        let w = Where {
            base_url: Some("https://ocp.example.test"),
            ..Where::default()
        };
        assert_eq!(
            resolve(w).1,
            "https://ocp.example.test/auth/realms/master/protocol/openid-connect/token"
        );
        // A realm override.
        let w = Where {
            region: Some(Region::Eu1),
            realm: Some("ocp"),
            ..Where::default()
        };
        assert!(resolve(w).1.contains("/realms/ocp/"));
        // An explicit token endpoint wins over everything.
        let w = Where {
            region: Some(Region::Ca1),
            base_url: Some("https://api.example.test"),
            auth_url: Some("https://idp.example.test/token"),
            ..Where::default()
        };
        assert_eq!(
            resolve(w),
            (
                "https://api.example.test/".into(),
                "https://idp.example.test/token".into()
            )
        );
        assert_eq!(Where::default().resolve(), Ok(None));
    }

    #[test]
    fn clear_text_and_odd_urls_are_refused_with_the_key() {
        let w = Where {
            base_url: Some("http://127.0.0.1:9000"),
            ..Where::default()
        };
        let e = w.resolve().unwrap_err();
        assert_eq!(e.key, "ocp.base_url");
        assert!(e.message.contains("clear text"), "{}", e.message);
        let w = Where {
            base_url: Some("http://127.0.0.1:9000"),
            allow_insecure_http: true,
            ..Where::default()
        };
        assert!(w.resolve().is_ok());
        let w = Where {
            region: Some(Region::Eu1),
            auth_url: Some("http://idp.example.test/token"),
            ..Where::default()
        };
        assert_eq!(w.resolve().unwrap_err().key, "ocp.auth_url");
        for bad in [
            "ftp://x",
            "https://user:pw@x",
            "https://x/?token=1",
            "not a url",
        ] {
            let w = Where {
                base_url: Some(bad),
                ..Where::default()
            };
            assert_eq!(w.resolve().unwrap_err().key, "ocp.base_url", "{bad}");
        }
        let w = Where {
            base_url: Some("https://x"),
            realm: Some("../admin"),
            ..Where::default()
        };
        assert_eq!(w.resolve().unwrap_err().key, "ocp.realm");
    }
}
