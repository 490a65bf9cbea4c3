//! The OCP client against `ocp-sim` on a loopback port, over HTTPS with the CA the simulator made
//! at start: trust, redirects, OCP's login (password and refresh grants, personal access
//! tokens), identity-provider faults, whitelisting, retries on 429/503, the one-running-export
//! rule, pagination, streamed downloads and their limits, expiry.

use bytes::Bytes;
use callrec_ingest::intake::{Digesting, Spool};
use callrec_ingest::ocp::{
    Credentials, DataType, ExportFile, ExportStatus, HttpOcp, OcpConfig, OcpError, OcpExports,
    RECOVERY_DATA, RetryPolicy, Secret, Transient,
};
use jiff::{SignedDuration, Timestamp};
use ocp_sim::exports::{Audio, ExportsApi, ExportsConfig, Recording, Served};
use ocp_sim::idp::PersonalAccessToken;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn recordings() -> Vec<Recording> {
    let base = t("2026-11-24T08:00:00Z");
    (0..12)
        .map(|i| Recording {
            group_id: "grp-a".into(),
            account_id: "acct-1".into(),
            dialog_id: format!("dlg-{i:03}"),
            dialog_time: base + SignedDuration::from_mins(10 * i),
            audio: Audio::held(Bytes::from(vec![i as u8; 1000 + i as usize])),
            start_record: Some(serde_json::json!({
                "message_type": "dialog_start", "id": format!("dlg-{i:03}"),
                "time": (base + SignedDuration::from_mins(10 * i)).as_millisecond(),
            })),
            end_record: None,
        })
        .collect()
}

/// The simulator over HTTPS, and its API state.
async fn serve(config: ExportsConfig) -> (Served, ExportsApi) {
    let api = ExportsApi::new(config, recordings());
    let served = ocp_sim::exports::serve(api.clone(), true).await.unwrap();
    (served, api)
}

fn password() -> Credentials {
    Credentials::Password {
        username: "cc".into(),
        password: Secret::new("secret"),
    }
}

/// A client that trusts the simulator's CA, retrying quickly.
fn client(served: &Served, credentials: Credentials) -> HttpOcp {
    let mut config = OcpConfig::new(&served.url, credentials, false)
        .unwrap()
        .trusting(served.ca_pem.as_deref().unwrap());
    config.retry = RetryPolicy {
        attempts: 6,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        max_retry_after: Duration::from_secs(2),
    };
    HttpOcp::new(config).unwrap()
}

async fn wait_completed(ocp: &HttpOcp, id: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while ocp.status(id).await.unwrap() != ExportStatus::Completed {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn https_with_the_simulators_ca_and_not_without_it() {
    let (served, _api) = serve(ExportsConfig::new("cc", "secret")).await;
    assert!(served.url.starts_with("https://"), "{}", served.url);
    let ocp = client(&served, password());
    let exports = ocp
        .list_exports(
            "grp-a",
            t("2026-11-24T08:00:00Z"),
            t("2026-11-24T10:00:00Z"),
        )
        .await
        .unwrap();
    assert!(exports.is_empty());
    // The same request without the CA: the built-in roots do not know it.
    let untrusting = HttpOcp::new(OcpConfig::new(&served.url, password(), false).unwrap()).unwrap();
    let refused = untrusting.status("export-000001").await;
    match refused {
        Err(e @ OcpError::Untrusted { .. }) => {
            assert!(e.needs_person());
            assert!(e.to_string().contains("not trusted"), "{e}");
            let problem = untrusting.health().problem().unwrap();
            assert_eq!(problem.kind, "tls");
        }
        other => panic!("{other:?}"),
    }
    // Plain http to an https-only client is refused before anything is sent.
    assert!(OcpConfig::new("http://127.0.0.1:9", password(), false).is_err());
}

/// A server that answers every request with a 307 to `target`, and one that records whatever
/// reaches it.
async fn redirector(target: String) -> String {
    let app = axum::Router::new().fallback(move || {
        let target = target.clone();
        async move {
            (
                axum::http::StatusCode::TEMPORARY_REDIRECT,
                [(axum::http::header::LOCATION, target)],
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn redirects_to_another_host_are_not_followed_and_carry_no_credentials() {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let capture = {
        let seen = Arc::clone(&seen);
        axum::Router::new().fallback(move |request: axum::extract::Request| {
            let seen = Arc::clone(&seen);
            async move {
                let headers = format!("{:?}", request.headers());
                let body = axum::body::to_bytes(request.into_body(), 1 << 20)
                    .await
                    .unwrap_or_default();
                seen.lock()
                    .unwrap()
                    .push(format!("{headers} {}", String::from_utf8_lossy(&body)));
                "captured"
            }
        })
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    // Another host (a name, not the address the client was given) and another port.
    let elsewhere = format!(
        "http://localhost:{}/steal",
        listener.local_addr().unwrap().port()
    );
    tokio::spawn(async move { axum::serve(listener, capture).await.unwrap() });
    let url = redirector(elsewhere).await;
    for credentials in [
        password(),
        Credentials::PersonalAccessToken(Secret::new("pat-never-leaves")),
    ] {
        let mut config = OcpConfig::new(&url, credentials, true).unwrap();
        config.retry.attempts = 1;
        let ocp = HttpOcp::new(config).unwrap();
        let answer = ocp.status("export-000001").await;
        assert!(
            matches!(
                &answer,
                Err(OcpError::Refused { status: 307, .. }) | Err(OcpError::Credentials { .. })
            ),
            "{answer:?}"
        );
        let text = answer.unwrap_err().to_string();
        assert!(
            !text.contains("secret") && !text.contains("pat-never"),
            "{text}"
        );
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "a credential reached another host: {:?}",
        seen.lock().unwrap()
    );
}

#[tokio::test]
async fn the_refresh_grant_renews_tokens_and_the_password_grant_is_not_repeated() {
    let mut config = ExportsConfig::new("cc", "secret");
    config.token_lifetime = Duration::from_secs(1);
    config.refresh_lifetime = Duration::from_secs(60);
    let (served, api) = serve(config).await;
    let ocp = client(&served, password());
    let (from, to) = (t("2026-11-24T08:00:00Z"), t("2026-11-24T09:00:00Z"));
    for _ in 0..6 {
        ocp.list_exports("grp-a", from, to).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let grants = api.grants();
    assert_eq!(grants.password, 1, "{grants:?}");
    assert!(grants.refresh >= 2, "{grants:?}");
    assert_eq!(grants.refused, 0, "{grants:?}");
}

#[tokio::test]
async fn an_expired_refresh_token_means_a_new_login() {
    let mut config = ExportsConfig::new("cc", "secret");
    config.token_lifetime = Duration::from_secs(1);
    config.refresh_lifetime = Duration::from_secs(1);
    let (served, api) = serve(config).await;
    let ocp = client(&served, password());
    let (from, to) = (t("2026-11-24T08:00:00Z"), t("2026-11-24T09:00:00Z"));
    ocp.list_exports("grp-a", from, to).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    ocp.list_exports("grp-a", from, to).await.unwrap();
    assert_eq!(api.grants().password, 2, "{:?}", api.grants());
}

#[tokio::test]
async fn a_personal_access_token_never_calls_the_token_endpoint() {
    let mut config = ExportsConfig::new("cc", "secret");
    config.personal_access_tokens = vec![PersonalAccessToken {
        token: "pat-grp-a".into(),
        groups: vec!["grp-a".into()],
        expires_at: None,
    }];
    let (served, api) = serve(config).await;
    let ocp = client(
        &served,
        Credentials::PersonalAccessToken(Secret::new("pat-grp-a")),
    );
    let (from, to) = (t("2026-11-24T08:00:00Z"), t("2026-11-24T10:00:00Z"));
    let id = ocp
        .create_export("grp-a", from, to, &RECOVERY_DATA, "pat-1")
        .await
        .unwrap();
    wait_completed(&ocp, &id).await;
    assert_eq!(api.grants(), Default::default());
    assert!(api.pat_requests() >= 2);
    // The token is tied to its group: another group is a credentials problem, not a retry.
    let other = ocp.list_exports("grp-b", from, to).await;
    assert!(
        matches!(other, Err(OcpError::Credentials { ref detail, .. }) if detail.contains("whitelisted")),
        "{other:?}"
    );
    let wrong = client(
        &served,
        Credentials::PersonalAccessToken(Secret::new("nope")),
    );
    assert!(matches!(
        wrong.list_exports("grp-a", from, to).await,
        Err(OcpError::Credentials { .. })
    ));
}

#[tokio::test]
async fn identity_provider_outages_are_transient_and_refusals_are_credentials() {
    let (served, api) = serve(ExportsConfig::new("cc", "secret")).await;
    let (from, to) = (t("2026-11-24T08:00:00Z"), t("2026-11-24T09:00:00Z"));
    api.idp_outage(503, Duration::from_secs(60));
    let ocp = client(&served, password());
    let down = ocp.list_exports("grp-a", from, to).await;
    match &down {
        Err(e @ OcpError::Unavailable { reason, .. }) => {
            assert_eq!(*reason, Transient::Status(503));
            assert!(e.is_transient() && !e.needs_person());
        }
        other => panic!("{other:?}"),
    }
    assert!(ocp.health().problem().is_none());
    api.idp_outage(429, Duration::from_millis(300));
    // Retried through a short 429 outage (Retry-After: 1 s, within the policy's cap).
    ocp.list_exports("grp-a", from, to).await.unwrap();
    assert!(api.grants().unavailable >= 2);
    // Revoked: the held token stops working, the refresh and the password are refused.
    api.revoke_credentials();
    let revoked = ocp.list_exports("grp-a", from, to).await;
    assert!(
        matches!(&revoked, Err(e @ OcpError::Credentials { .. }) if e.needs_person()),
        "{revoked:?}"
    );
    assert_eq!(ocp.health().problem().unwrap().kind, "credentials");
    api.restore_credentials();
    ocp.list_exports("grp-a", from, to).await.unwrap();
    assert!(ocp.health().problem().is_none());
    // A wrong password, a wrong realm: credentials, with what to check.
    let wrong = client(
        &served,
        Credentials::Password {
            username: "cc".into(),
            password: Secret::new("other"),
        },
    );
    let refused = wrong.status("export-000001").await;
    assert!(
        matches!(&refused, Err(OcpError::Credentials { detail, .. }) if detail.contains("invalid_grant")),
        "{refused:?}"
    );
    assert!(!refused.unwrap_err().to_string().contains("other"));
    let mut config = OcpConfig::new(&served.url, password(), false)
        .unwrap()
        .trusting(served.ca_pem.as_deref().unwrap());
    config.endpoints.token = format!(
        "{}/auth/realms/ocp/protocol/openid-connect/token",
        served.url
    )
    .parse()
    .unwrap();
    let realm = HttpOcp::new(config).unwrap().status("export-000001").await;
    assert!(
        matches!(&realm, Err(OcpError::Credentials { detail, .. }) if detail.contains("realm")),
        "{realm:?}"
    );
}

#[tokio::test]
async fn an_export_from_request_to_files_through_faults() {
    let mut config = ExportsConfig::new("cc", "secret");
    // Long enough for the checks below, retries after 429 (Retry-After: 1 s) included.
    config.completion_delay = Duration::from_secs(4);
    config.rate_limit_every = Some(4);
    config.unavailable_every = Some(5);
    config.max_page_size = 5;
    let (served, _api) = serve(config).await;
    let ocp = client(&served, password());
    let (from, to) = (t("2026-11-24T08:00:00Z"), t("2026-11-24T10:00:00Z"));
    let id = ocp
        .create_export("grp-a", from, to, &RECOVERY_DATA, "k1")
        .await
        .unwrap();
    // The same idempotency key again: the same export, not a second one.
    let again = ocp
        .create_export("grp-a", from, to, &RECOVERY_DATA, "k1")
        .await
        .unwrap();
    assert_eq!(again, id);
    // One running export per group.
    let busy = ocp
        .create_export(
            "grp-a",
            t("2026-11-24T10:00:00Z"),
            t("2026-11-24T11:00:00Z"),
            &RECOVERY_DATA,
            "k2",
        )
        .await;
    assert!(matches!(busy, Err(OcpError::GroupBusy(_))), "{busy:?}");
    // Listed by the group, creating nothing.
    let listed = ocp.list_exports("grp-a", from, to).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].export_id, id);
    // Not ready, then completed (the client retried through every 429 and 503 on the way).
    assert!(matches!(
        ocp.files(&id, None).await,
        Err(OcpError::NotReady(_))
    ));
    wait_completed(&ocp, &id).await;
    let mut files = Vec::new();
    let mut page = None;
    loop {
        let got = ocp.files(&id, page.as_deref()).await.unwrap();
        files.extend(got.files);
        match got.next {
            Some(next) => page = Some(next),
            None => break,
        }
    }
    // Dialogs 08:00-09:50: twelve recordings; per hour a dialog_start and a dialog_end file.
    let of = |kind: DataType| files.iter().filter(|f| f.data_type() == Some(kind)).count();
    assert_eq!(of(DataType::Audio), 12);
    assert_eq!(of(DataType::DialogStart), 2);
    assert_eq!(of(DataType::DialogEnd), 2);
    let dir = tempfile::tempdir().unwrap();
    let spool = |limit: u64| {
        let dir = dir.path().to_path_buf();
        async move {
            Spool::create(&dir, "t", limit, Digesting::Recording)
                .await
                .unwrap()
        }
    };
    let first = files
        .iter()
        .find(|f| f.data_type() == Some(DataType::Audio))
        .unwrap();
    let mut into = spool(1 << 20).await;
    let size = ocp.download(&id, first, &mut into).await.unwrap();
    assert_eq!(size, first.size);
    let spooled = into.finish().await.unwrap();
    assert_eq!(std::fs::read(spooled.path()).unwrap(), vec![0u8; 1000]);
    // A CDR batch: OCP's records, one a line.
    let starts = files
        .iter()
        .find(|f| f.data_type() == Some(DataType::DialogStart))
        .unwrap();
    let mut into = spool(1 << 20).await;
    ocp.download(&id, starts, &mut into).await.unwrap();
    let spooled = into.finish().await.unwrap();
    let text = std::fs::read_to_string(spooled.path()).unwrap();
    assert_eq!(text.lines().count(), 6);
    assert!(text.lines().all(|l| l.contains("\"dialog_start\"")));
    // Above the limit, or not the size listed: refused (the file is bad, not OCP).
    let big = ocp.download(&id, first, &mut spool(999).await).await;
    assert!(
        matches!(big, Err(OcpError::Refused { status: 413, .. })),
        "{big:?}"
    );
    let lying = ExportFile {
        size: 400,
        ..first.clone()
    };
    let short = ocp.download(&id, &lying, &mut spool(1 << 20).await).await;
    assert!(
        matches!(short, Err(OcpError::Refused { ref kind, .. }) if kind == "size_mismatch"),
        "{short:?}"
    );
    // A name from a hostile listing stays one path segment of this export's files.
    for hostile in [
        "../../../auth/realms/master",
        "a?page_size=1",
        "x#y",
        "%2e%2e",
    ] {
        let file = ExportFile {
            name: hostile.into(),
            kind: "Audio".into(),
            size: 10,
        };
        let answer = ocp.download(&id, &file, &mut spool(100).await).await;
        assert!(
            matches!(answer, Err(OcpError::Refused { status: 404, .. })),
            "{hostile}: {answer:?}"
        );
    }
    for dots in ["..", ".", ""] {
        let file = ExportFile {
            name: dots.into(),
            kind: "Audio".into(),
            size: 10,
        };
        let answer = ocp.download(&id, &file, &mut spool(100).await).await;
        assert!(
            matches!(answer, Err(OcpError::Refused { status: 400, .. })),
            "{dots:?}: {answer:?}"
        );
    }
    // Ranges OCP does not take are refused, not retried.
    let bad = ocp
        .create_export(
            "grp-b",
            t("2026-11-24T08:30:00Z"),
            t("2026-11-24T10:00:00Z"),
            &RECOVERY_DATA,
            "k3",
        )
        .await;
    assert!(
        matches!(bad, Err(OcpError::Refused { status: 400, .. })),
        "{bad:?}"
    );
}

#[tokio::test]
async fn expired_data_is_typed() {
    let mut config = ExportsConfig::new("cc", "secret");
    config.completion_delay = Duration::from_millis(10);
    config.data_lifetime = Duration::from_millis(200);
    let (served, _api) = serve(config).await;
    let ocp = client(&served, password());
    let id = ocp
        .create_export(
            "grp-a",
            t("2026-11-24T08:00:00Z"),
            t("2026-11-24T09:00:00Z"),
            &[DataType::Audio],
            "k4",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ocp.status(&id).await.unwrap(), ExportStatus::Expired);
    assert!(matches!(
        ocp.files(&id, None).await,
        Err(OcpError::Expired(_))
    ));
}
