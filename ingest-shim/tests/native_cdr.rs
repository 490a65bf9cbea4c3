//! `POST /v1/cdr` with OCP's own CDR records, over real HTTP on a loopback port, against the
//! SQLite store: the documented `dialog_start` example and how its fields map, `dialog_end`,
//! NDJSON batches of 1,000, the tenant group from the query, the header or the default, and bad
//! records refused with their field named and nothing written.

mod common;

use callrec_ingest::CallId;
use callrec_ingest::objects::folder::FolderStore;
use callrec_ingest::store::CallStore;
use callrec_ingest::store::sqlite::SqliteStore;
use common::service::{InProcess, TOKEN};
use std::sync::Arc;

const DOCUMENTED: &str = include_str!("../../fixtures/ocp/dialog_start.json");

struct Service {
    served: InProcess,
    store: Arc<dyn CallStore>,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Service {
    type Target = InProcess;
    fn deref(&self) -> &InProcess {
        &self.served
    }
}

async fn service(default_group: Option<&str>) -> Service {
    service_with(default_group, None).await
}

async fn service_with(
    default_group: Option<&str>,
    ocp: Option<Arc<dyn callrec_ingest::ocp::OcpExports>>,
) -> Service {
    let dir = tempfile::tempdir().unwrap();
    let mut config = callrec_ingest::config::Config::default();
    config.server.queue_depth = 4;
    config.ocp.default_group = default_group.map(str::to_string);
    let store: Arc<dyn CallStore> =
        Arc::new(SqliteStore::open(dir.path().join("callrec.db")).unwrap());
    let objects = Arc::new(FolderStore::open(dir.path().join("objects")).unwrap());
    let served = common::service::serve(config, store.clone(), objects, ocp).await;
    Service {
        served,
        store,
        _dir: dir,
    }
}

impl Service {
    async fn post(
        &self,
        query: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> (u16, serde_json::Value) {
        let mut request = self
            .http
            .post(format!("{}/v1/cdr{query}", self.url))
            .bearer_auth(TOKEN)
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }

    async fn json(&self, query: &str, value: &serde_json::Value) -> (u16, serde_json::Value) {
        self.post(
            query,
            &[("content-type", "application/json")],
            value.to_string(),
        )
        .await
    }

    async fn record(&self, id: &str) -> Option<callrec_ingest::store::CallRecord> {
        self.store.get(&CallId::parse(id).unwrap()).await.unwrap()
    }
}

fn record(kind: &str, id: &str, time: i64) -> serde_json::Value {
    let mut r = serde_json::json!({
        "message_type": kind, "id": id, "time": time, "channel": "omIVR",
        "direction": "inbound", "flow": {"account_id": "acct-7", "name": "care-ivr", "type": "Banking2"},
    });
    if kind == "dialog_end" {
        r["duration"] = 61_000.into();
    }
    r
}

#[tokio::test]
async fn the_documented_dialog_start_maps_to_the_calls_facts() {
    let service = service(None).await;
    let documented: serde_json::Value = serde_json::from_str(DOCUMENTED).unwrap();
    let (status, body) = service.json("?group=grp-emea-01", &documented).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["calls"][0]["call_id"],
        "0914D425259F0CD31DBFE2E72D3785E0"
    );
    let call = service
        .record("0914D425259F0CD31DBFE2E72D3785E0")
        .await
        .unwrap();
    assert_eq!(
        call.flags.started.unwrap(),
        jiff::Timestamp::from_millisecond(1_683_820_113_249).unwrap()
    );
    assert!(call.flags.ended.is_none());
    // The tenant group from the request, not the record's own `group`.
    assert_eq!(call.cdr.group_id.as_deref(), Some("grp-emea-01"));
    assert_eq!(
        call.cdr.account_id.as_deref(),
        Some("4981c99e-6c51-4bd6-9b68-d3c09791d75")
    );
    assert_eq!(call.cdr.ivr_channel.as_deref(), Some("omIVR"));
    assert_eq!(call.cdr.application.as_deref(), Some("Bank3_Test"));
    assert_eq!(call.cdr.application_type.as_deref(), Some("Banking2"));
    assert_eq!(call.cdr.direction.as_deref(), Some("inbound"));
    assert_eq!(call.cdr.metadata.len(), 3);
    assert_eq!(call.cdr.metadata["key_2"], "value_2");
    // The whole record is kept for the sidecar.
    assert_eq!(call.cdr.ocp_records["dialog_start"], documented);

    // Its dialog_end, the group from the header: `ended`, with the duration.
    let end = record(
        "dialog_end",
        "0914D425259F0CD31DBFE2E72D3785E0",
        1_683_820_174_249,
    );
    let (status, _) = service
        .post(
            "",
            &[
                ("content-type", "application/json"),
                ("x-ocp-group", "grp-emea-01"),
            ],
            end.to_string(),
        )
        .await;
    assert_eq!(status, 200);
    let call = service
        .record("0914D425259F0CD31DBFE2E72D3785E0")
        .await
        .unwrap();
    assert!(call.flags.ended.is_some());
    assert_eq!(call.cdr.duration_ms, Some(61_000));
    assert!(call.cdr.ocp_records.contains_key("dialog_end"));
    // The same records again change nothing.
    let before = call.version;
    service.json("?group=grp-emea-01", &documented).await;
    assert_eq!(
        service
            .record("0914D425259F0CD31DBFE2E72D3785E0")
            .await
            .unwrap()
            .version,
        before
    );
}

#[tokio::test]
async fn ndjson_batches_of_a_thousand_are_all_or_nothing() {
    let service = service(None).await;
    let mut lines = String::new();
    for i in 0..500 {
        let id = format!("dlg-{i:04}");
        let start = 1_764_000_000_000 + i * 1000;
        lines.push_str(&record("dialog_start", &id, start).to_string());
        lines.push('\n');
        lines.push_str(&record("dialog_end", &id, start + 61_000).to_string());
        lines.push('\n');
    }
    let ndjson = [("content-type", "application/x-ndjson")];
    let (status, body) = service
        .post("?group=grp-amer-01", &ndjson, lines.clone())
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["calls"].as_array().unwrap().len(), 1000);
    let funnel = service.store.funnel().await.unwrap();
    assert_eq!((funnel.started, funnel.ended), (500, 500));

    // One bad record among a thousand new ones: 400 naming it and its field, nothing written.
    let mut bad = String::new();
    for i in 0..1000 {
        let mut r = record("dialog_start", &format!("new-{i:04}"), 1_764_100_000_000);
        if i == 617 {
            r.as_object_mut().unwrap().remove("time");
        }
        bad.push_str(&r.to_string());
        bad.push('\n');
    }
    let (status, body) = service.post("?group=grp-amer-01", &ndjson, bad).await;
    assert_eq!(status, 400);
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("record 617: time"), "{message}");
    assert!(
        service.record("new-0000").await.is_none(),
        "nothing written"
    );
    // Over a thousand: refused as a whole.
    let many: String = (0..1001)
        .map(|i| {
            format!(
                "{}\n",
                record("dialog_start", &format!("x-{i}"), 1_764_000_000_000)
            )
        })
        .collect();
    let (status, _) = service.post("?group=grp-amer-01", &ndjson, many).await;
    assert_eq!(status, 400);
    // A line that is not JSON: named.
    let (status, body) = service
        .post(
            "?group=g",
            &ndjson,
            "{\"message_type\": \"dialog_start\"}\n{oops\n",
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("line 2"),
        "{body}"
    );
    let funnel = service.store.funnel().await.unwrap();
    assert_eq!((funnel.started, funnel.ended), (500, 500));
}

#[tokio::test]
async fn the_group_comes_from_the_request_or_the_default_never_the_record() {
    let service = service(None).await;
    let start = record("dialog_start", "dlg-g1", 1_764_000_000_000);
    let (status, body) = service.json("", &start).await;
    assert_eq!(status, 400);
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("?group=") && message.contains("X-OCP-Group"),
        "{message}"
    );
    let (status, body) = service.json("?group=../etc", &start).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("?group="));
    // An array of records, with unknown fields kept, and the default group.
    let service = service_with_default().await;
    let mut odd = record("dialog_start", "dlg-g2", 1_764_000_000_000);
    odd["a_field_ocp_added_later"] = serde_json::json!({"x": 1});
    let batch = serde_json::json!([odd, record("dialog_end", "dlg-g2", 1_764_000_061_000)]);
    let (status, body) = service.json("", &batch).await;
    assert_eq!(status, 200, "{body}");
    let call = service.record("dlg-g2").await.unwrap();
    assert_eq!(call.cdr.group_id.as_deref(), Some("grp-default"));
    assert_eq!(
        call.cdr.ocp_records["dialog_start"]["a_field_ocp_added_later"]["x"],
        1
    );
    // Bad records name their field.
    for (bad, field) in [
        (serde_json::json!({"id": "d", "time": 1}), "message_type"),
        (
            serde_json::json!({"message_type": "dialog_end", "time": 1}),
            "id",
        ),
        (
            serde_json::json!({"message_type": "dialog_end", "id": "d"}),
            "time",
        ),
        (
            serde_json::json!({"message_type": "dialog_start", "id": "d", "time": 1, "flow": {"account_id": "a/b"}}),
            "flow.account_id",
        ),
    ] {
        let (status, body) = service.json("", &bad).await;
        assert_eq!(status, 400, "{bad}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(&format!("record 0: {field}")), "{message}");
    }
    // callrec's own v1 events work as before, on the same endpoint.
    let v1 = serde_json::json!({"type": "start", "call_id": "dlg-v1", "timestamp": "2026-11-24T10:00:00Z", "group_id": "grp-1"});
    let (status, _) = service.json("", &v1).await;
    assert_eq!(status, 200);
    assert_eq!(
        service
            .record("dlg-v1")
            .await
            .unwrap()
            .cdr
            .group_id
            .as_deref(),
        Some("grp-1")
    );
}

async fn service_with_default() -> Service {
    service(Some("grp-default")).await
}

#[tokio::test]
async fn readyz_names_an_ocp_credentials_problem_without_failing_readiness() {
    use callrec_ingest::ocp::{Credentials, HttpOcp, OcpConfig, OcpExports, Secret};
    let api = ocp_sim::exports::ExportsApi::new(
        ocp_sim::exports::ExportsConfig::new("svc", "right"),
        Vec::new(),
    );
    let served = ocp_sim::exports::serve(api, true).await.unwrap();
    let credentials = Credentials::Password {
        username: "svc".into(),
        password: Secret::new("wrong"),
    };
    let config = OcpConfig::new(&served.url, credentials, false)
        .unwrap()
        .trusting(served.ca_pem.as_deref().unwrap());
    let ocp: Arc<dyn OcpExports> = Arc::new(HttpOcp::new(config).unwrap());
    let service = service_with(None, Some(ocp.clone())).await;
    let ready = |service: &Service| {
        let request = service.http.get(format!("{}/readyz", service.admin_url));
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    assert_eq!(ready(&service).await, (200, "ready".to_string()));
    // Stage 2 meets the refusal.
    assert!(ocp.status("export-000001").await.is_err());
    let (status, text) = ready(&service).await;
    assert_eq!(status, 200, "stage 1 stays ready");
    assert!(
        text.starts_with("ready\nOCP: credentials problem since") && text.contains("invalid_grant"),
        "{text}"
    );
    assert!(!text.contains("wrong"), "{text}");
    // The public port's /readyz says only that it is ready: no OCP or store details.
    let public = service
        .http
        .get(format!("{}/readyz", service.url))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status().as_u16(), 200);
    assert_eq!(public.text().await.unwrap(), "ready");
}
