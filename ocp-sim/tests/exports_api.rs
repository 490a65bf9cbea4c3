//! The simulated Exports API and identity provider over real HTTP(S) on a loopback port.

use bytes::Bytes;
use jiff::{SignedDuration, Timestamp};
use ocp_sim::exports::{Audio, ExportsApi, ExportsConfig, Recording, router};
use ocp_sim::idp::PersonalAccessToken;

const TOKEN_PATH: &str = "/auth/realms/master/protocol/openid-connect/token";
const ALL: [&str; 3] = ["dialog_start", "dialog_end", "Audio"];
/// The password grant of the simulator's user.
const LOGIN: &[(&str, &str)] = &[
    ("client_id", "ocp"),
    ("grant_type", "password"),
    ("username", "cc"),
    ("password", "secret"),
];
use std::time::Duration;

fn recordings() -> Vec<Recording> {
    let base: Timestamp = "2026-11-24T08:00:00Z".parse().unwrap();
    (0..30)
        .map(|i| Recording {
            group_id: if i % 3 == 0 {
                "grp-b".into()
            } else {
                "grp-a".into()
            },
            account_id: "acct-1".into(),
            dialog_id: format!("dlg-{i:03}"),
            dialog_time: base + SignedDuration::from_mins(10 * i),
            audio: Audio::held(Bytes::from(vec![i as u8; 100 + i as usize])),
            start_record: Some(
                serde_json::json!({"message_type": "dialog_start", "id": format!("dlg-{i:03}")}),
            ),
            end_record: Some(
                serde_json::json!({"message_type": "dialog_end", "id": format!("dlg-{i:03}")}),
            ),
        })
        .collect()
}

async fn start(config: ExportsConfig) -> (String, ExportsApi) {
    let api = ExportsApi::new(config, recordings());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = router(api.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, api)
}

async fn token(client: &reqwest::Client, url: &str) -> String {
    let response = client
        .post(format!("{url}{TOKEN_PATH}"))
        .form(LOGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn exports_list_and_serve_the_recordings_of_their_range() {
    let mut config = ExportsConfig::new("cc", "secret");
    // Long enough that the checks before completion cannot be late on a loaded machine.
    config.completion_delay = Duration::from_millis(1500);
    let (url, api) = start(config).await;
    let client = reqwest::Client::new();
    let bad = client
        .post(format!("{url}{TOKEN_PATH}"))
        .form(&[
            ("grant_type", "password"),
            ("username", "cc"),
            ("password", "wrong"),
            ("client_id", "ocp"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let tok = token(&client, &url).await;
    let create = |group: &str, from: &str, to: &str, auth: bool| {
        let mut request = client
            .post(format!("{url}/exports/v1/groups/{group}/exports"))
            .json(&serde_json::json!({"from": from, "to": to, "data_types": ALL}));
        if auth {
            request = request.bearer_auth(&tok);
        }
        request.send()
    };
    assert_eq!(
        create(
            "grp-a",
            "2026-11-24T08:00:00Z",
            "2026-11-24T10:00:00Z",
            false
        )
        .await
        .unwrap()
        .status(),
        401
    );
    for (from, to) in [
        ("2026-11-24T08:30:00Z", "2026-11-24T10:00:00Z"),
        ("2026-11-24T08:00:00Z", "2026-11-24T08:00:00Z"),
        ("2026-11-24T08:00:00Z", "2026-11-26T09:00:00Z"),
    ] {
        let response = create("grp-a", from, to, true).await.unwrap();
        assert_eq!(response.status(), 400, "{from} {to}");
    }
    let created = create(
        "grp-a",
        "2026-11-24T08:00:00Z",
        "2026-11-24T11:00:00Z",
        true,
    )
    .await
    .unwrap();
    assert_eq!(created.status(), 201);
    let export: serde_json::Value = created.json().await.unwrap();
    let id = export["export_id"].as_str().unwrap().to_string();
    // One running export per group.
    let second = create(
        "grp-a",
        "2026-11-24T12:00:00Z",
        "2026-11-24T13:00:00Z",
        true,
    )
    .await
    .unwrap();
    assert_eq!(second.status(), 409);
    assert_eq!(
        create(
            "grp-b",
            "2026-11-24T08:00:00Z",
            "2026-11-24T09:00:00Z",
            true
        )
        .await
        .unwrap()
        .status(),
        201
    );
    assert_eq!(api.exports_created(), 2);
    // Pending, then completed.
    let status = |id: String| {
        let client = client.clone();
        let url = url.clone();
        let tok = tok.clone();
        async move {
            let body: serde_json::Value = client
                .get(format!("{url}/exports/v1/exports/{id}"))
                .bearer_auth(&tok)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            body["status"].as_str().unwrap().to_string()
        }
    };
    let early = status(id.clone()).await;
    assert!(early == "pending" || early == "running", "{early}");
    let listing = client
        .get(format!("{url}/exports/v1/exports/{id}/files"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(listing.status(), 409, "not ready yet");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while status(id.clone()).await != "completed" {
        assert!(std::time::Instant::now() < deadline, "never completed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Pages of 4 until the end.
    let mut names = Vec::new();
    let mut page_token: Option<String> = None;
    loop {
        let mut request = client
            .get(format!("{url}/exports/v1/exports/{id}/files"))
            .bearer_auth(&tok)
            .query(&[("page_size", "4")]);
        if let Some(t) = &page_token {
            request = request.query(&[("page_token", t.as_str())]);
        }
        let page: serde_json::Value = request.send().await.unwrap().json().await.unwrap();
        for f in page["files"].as_array().unwrap() {
            names.push(f["name"].as_str().unwrap().to_string());
        }
        match page["next_page_token"].as_str() {
            Some(t) => page_token = Some(t.to_string()),
            None => break,
        }
    }
    // grp-a dialogs in [08:00, 11:00): i in 0..18 with i % 3 != 0 → 12 recordings, and per hour
    // (08, 09, 10) a dialog_start and a dialog_end batch, listed first.
    assert_eq!(names.len(), 18);
    assert_eq!(names[0], "grp-a~2026112408~dialog_start.jsonl");
    let batch = client
        .get(format!("{url}/exports/v1/exports/{id}/files/{}", names[0]))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // 08:00-08:50 of grp-a: dialogs 1, 2, 4, 5.
    assert_eq!(batch.lines().count(), 4, "{batch}");
    let audio: Vec<&String> = names.iter().filter(|n| n.ends_with(".wav")).collect();
    assert_eq!(audio.len(), 12);
    assert_eq!(audio[0], "grp-a~acct-1~20261124081000000~dlg-001.wav");
    let file = client
        .get(format!("{url}/exports/v1/exports/{id}/files/{}", audio[0]))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(file, Bytes::from(vec![1u8; 101]));
    // With grp-a's export completed, a new one may start.
    assert_eq!(
        create(
            "grp-a",
            "2026-11-24T12:00:00Z",
            "2026-11-24T13:00:00Z",
            true
        )
        .await
        .unwrap()
        .status(),
        201
    );
}

#[tokio::test]
async fn faults_rate_limits_omissions_and_expiry() {
    let mut config = ExportsConfig::new("cc", "secret");
    config.completion_delay = Duration::from_millis(50);
    config.data_lifetime = Duration::from_millis(600);
    config.rate_limit_every = Some(4);
    config.omit_rate = 0.5;
    let (url, _) = start(config).await;
    let client = reqwest::Client::new();
    let tok = token(&client, &url).await;
    // Every 4th authenticated request is refused with 429 and Retry-After.
    let mut limited = 0;
    let mut id = None;
    for _ in 0..4 {
        let response = client
            .post(format!("{url}/exports/v1/groups/grp-a/exports"))
            .bearer_auth(&tok)
            .json(&serde_json::json!({
                "from": "2026-11-24T08:00:00Z", "to": "2026-11-24T13:00:00Z", "data_types": ALL,
            }))
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            429 => {
                assert_eq!(response.headers()["retry-after"], "1");
                limited += 1;
            }
            201 => {
                let body: serde_json::Value = response.json().await.unwrap();
                id = Some(body["export_id"].as_str().unwrap().to_string());
            }
            409 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(limited, 1);
    let id = id.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut files = None;
    for _ in 0..4 {
        let response = client
            .get(format!("{url}/exports/v1/exports/{id}/files"))
            .bearer_auth(&tok)
            .query(&[("page_size", "100")])
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            let body: serde_json::Value = response.json().await.unwrap();
            let audio = body["files"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["type"] == "Audio")
                .count();
            files = Some(audio);
            break;
        }
    }
    // 20 grp-a recordings in range, about half left out (their CDR records stay).
    let files = files.unwrap();
    assert!(files > 0 && files < 20, "{files}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut expired = false;
    for _ in 0..4 {
        let response = client
            .get(format!("{url}/exports/v1/exports/{id}/files"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap();
        if response.status() == 410 {
            expired = true;
            break;
        }
    }
    assert!(expired);
}

async fn form(
    client: &reqwest::Client,
    url: &str,
    fields: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let response = client
        .post(format!("{url}{TOKEN_PATH}"))
        .form(fields)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test]
async fn the_identity_provider_speaks_keycloak_over_https() {
    let mut config = ExportsConfig::new("cc", "secret");
    config.whitelist = Some(vec!["grp-a".into()]);
    config.personal_access_tokens = vec![PersonalAccessToken {
        token: "pat-b".into(),
        groups: vec!["grp-b".into()],
        expires_at: None,
    }];
    config.clock_offset = SignedDuration::from_secs(-120);
    let api = ExportsApi::new(config, recordings());
    let served = ocp_sim::exports::serve(api.clone(), true).await.unwrap();
    let url = served.url.clone();
    assert!(url.starts_with("https://127.0.0.1:"));
    // Without the CA: no connection; with it: the token endpoint answers.
    assert!(reqwest::Client::new().get(&url).send().await.is_err());
    let ca = reqwest::Certificate::from_pem(served.ca_pem.as_deref().unwrap().as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let (status, body) = form(&client, &url, LOGIN).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["expires_in"].as_u64().unwrap() > 0);
    let refresh = body["refresh_token"].as_str().unwrap().to_string();
    let access = body["access_token"].as_str().unwrap().to_string();
    // The refresh grant rotates: the old refresh token is spent.
    let (status, renewed) = form(
        &client,
        &url,
        &[
            ("client_id", "ocp"),
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_ne!(renewed["refresh_token"].as_str().unwrap(), refresh);
    let (status, spent) = form(
        &client,
        &url,
        &[
            ("client_id", "ocp"),
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
        ],
    )
    .await;
    assert_eq!(
        (status, spent["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // Another client id, another realm.
    let (status, wrong) = form(
        &client,
        &url,
        &[
            ("client_id", "callrec"),
            ("grant_type", "password"),
            ("username", "cc"),
            ("password", "secret"),
        ],
    )
    .await;
    assert_eq!(
        (status, wrong["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let realm = client
        .post(format!(
            "{url}/auth/realms/ocp/protocol/openid-connect/token"
        ))
        .form(&[("client_id", "ocp")])
        .send()
        .await
        .unwrap();
    assert_eq!(realm.status(), 404);
    // Whitelisting: the user may see grp-a, not grp-b; the PAT the other way round.
    let list = |group: &str, header: (&'static str, String)| {
        client
            .get(format!("{url}/exports/v1/groups/{group}/exports"))
            .query(&[
                ("from", "2026-11-24T08:00:00Z"),
                ("to", "2026-11-24T09:00:00Z"),
            ])
            .header(header.0, header.1)
            .send()
    };
    let bearer = ("authorization", format!("Bearer {access}"));
    let pat = ("x-ocp-personal-access-token", "pat-b".to_string());
    let ok = list("grp-a", bearer.clone()).await.unwrap();
    assert_eq!(ok.status(), 200);
    // The skewed clock shows in Date.
    let date = ok.headers()["date"].to_str().unwrap().to_string();
    let parsed = jiff::civil::DateTime::strptime("%a, %d %b %Y %H:%M:%S GMT", &date)
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .unwrap()
        .timestamp();
    let skew = parsed.duration_since(Timestamp::now()).as_secs();
    assert!((-125..=-115).contains(&skew), "{date}: {skew}");
    assert_eq!(list("grp-b", bearer).await.unwrap().status(), 403);
    assert_eq!(list("grp-b", pat.clone()).await.unwrap().status(), 200);
    assert_eq!(list("grp-a", pat.clone()).await.unwrap().status(), 403);
    assert_eq!(api.pat_requests(), 2);
    // Faults: an outage of the token endpoint, then revoked credentials.
    api.idp_outage(503, Duration::from_secs(30));
    let (status, _) = form(&client, &url, LOGIN).await;
    assert_eq!(status, 503);
    api.idp_outage(503, Duration::ZERO);
    api.revoke_credentials();
    let (status, _) = form(&client, &url, LOGIN).await;
    assert_eq!(status, 401);
    assert_eq!(list("grp-b", pat).await.unwrap().status(), 401);
    assert_eq!(api.grants().password, 1);
    assert_eq!(api.grants().refresh, 1);
}
