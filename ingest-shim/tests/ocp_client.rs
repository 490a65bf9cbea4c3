//! The Exports API client against `ocp-sim`'s Exports API on a loopback port: tokens, retries on
//! 429/503, the one-running-export rule, pagination, streamed downloads, expiry.

use bytes::Bytes;
use callrec_ingest::reconcile::ocp::{ExportStatus, HttpOcp, OcpConfig, OcpError, OcpExports};
use jiff::{SignedDuration, Timestamp};
use ocp_sim::exports::{Audio, ExportsApi, ExportsConfig, Recording, router};
use std::time::Duration;

async fn start(config: ExportsConfig) -> HttpOcp {
    let base: Timestamp = "2026-11-24T08:00:00Z".parse().unwrap();
    let recordings = (0..12)
        .map(|i| Recording {
            group_id: "grp-a".into(),
            account_id: "acct-1".into(),
            dialog_id: format!("dlg-{i:03}"),
            dialog_time: base + SignedDuration::from_mins(10 * i),
            audio: Audio::held(Bytes::from(vec![i as u8; 1000 + i as usize])),
            cdr: serde_json::json!({"call_id": format!("dlg-{i:03}")}),
        })
        .collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = router(ExportsApi::new(config, recordings));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    HttpOcp::new(OcpConfig {
        base_url: url,
        username: "cc".into(),
        password: "secret".into(),
        client_id: "callrec".into(),
    })
    .unwrap()
}

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[tokio::test]
async fn an_export_from_request_to_files_through_faults() {
    let mut config = ExportsConfig::new("cc", "secret");
    // Long enough for the checks below, retries after 429 (Retry-After: 1 s) included.
    config.completion_delay = Duration::from_secs(4);
    config.rate_limit_every = Some(4);
    config.unavailable_every = Some(5);
    config.max_page_size = 5;
    let ocp = start(config).await;
    let id = ocp
        .create_export(
            "grp-a",
            t("2026-11-24T08:00:00Z"),
            t("2026-11-24T10:00:00Z"),
            "k1",
        )
        .await
        .unwrap();
    // The same idempotency key again: the same export, not a second one.
    let again = ocp
        .create_export(
            "grp-a",
            t("2026-11-24T08:00:00Z"),
            t("2026-11-24T10:00:00Z"),
            "k1",
        )
        .await
        .unwrap();
    assert_eq!(again, id);
    // One running export per group.
    let busy = ocp
        .create_export(
            "grp-a",
            t("2026-11-24T10:00:00Z"),
            t("2026-11-24T11:00:00Z"),
            "k2",
        )
        .await;
    assert!(matches!(busy, Err(OcpError::GroupBusy(_))), "{busy:?}");
    // Not ready, then completed (the client retried through every 429 and 503 on the way).
    assert!(matches!(
        ocp.files(&id, None).await,
        Err(OcpError::NotReady(_))
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while ocp.status(&id).await.unwrap() != ExportStatus::Completed {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    // Dialogs 08:00-09:50: twelve recordings, each with its CDR.
    assert_eq!(files.iter().filter(|f| f.kind == "audio").count(), 12);
    assert_eq!(files.iter().filter(|f| f.kind == "cdr").count(), 12);
    let dir = tempfile::tempdir().unwrap();
    let first = files.iter().find(|f| f.kind == "audio").unwrap();
    let size = ocp
        .download(&id, &first.name, &dir.path().join("a.wav"))
        .await
        .unwrap();
    assert_eq!(size, first.size);
    assert_eq!(
        std::fs::read(dir.path().join("a.wav")).unwrap(),
        vec![0u8; 1000]
    );
    // Small files (CDRs) are read into memory, never more than the limit + 1 bytes.
    let cdr = files.iter().find(|f| f.kind == "cdr").unwrap();
    let whole = ocp.read(&id, &cdr.name, 4096).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&whole).unwrap();
    assert_eq!(json["call_id"], "dlg-000");
    let capped = ocp.read(&id, &cdr.name, 5).await.unwrap();
    assert_eq!(capped.len(), 6);
    assert_eq!(&capped[..], &whole[..6]);
    // A name from a hostile listing stays one path segment of this export's files.
    for hostile in ["../../../oauth/token", "a?page_size=1", "x#y", "%2e%2e"] {
        let answer = ocp.read(&id, hostile, 100).await;
        assert!(
            matches!(answer, Err(OcpError::Refused { status: 404, .. })),
            "{hostile}: {answer:?}"
        );
    }
    for dots in ["..", ".", ""] {
        let answer = ocp.read(&id, dots, 100).await;
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
            "k3",
        )
        .await;
    assert!(
        matches!(bad, Err(OcpError::Refused { status: 400, .. })),
        "{bad:?}"
    );
}

#[tokio::test]
async fn expired_data_and_bad_credentials_are_typed() {
    let mut config = ExportsConfig::new("cc", "secret");
    config.completion_delay = Duration::from_millis(10);
    config.data_lifetime = Duration::from_millis(200);
    let ocp = start(config).await;
    let id = ocp
        .create_export(
            "grp-a",
            t("2026-11-24T08:00:00Z"),
            t("2026-11-24T09:00:00Z"),
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

    let wrong = start(ExportsConfig::new("cc", "other")).await;
    let refused = wrong.status("export-000001").await;
    assert!(
        matches!(refused, Err(OcpError::Unauthorized(_))),
        "{refused:?}"
    );
}
