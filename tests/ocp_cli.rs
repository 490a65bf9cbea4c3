//! `callrec ocp check` against ocp-sim over HTTPS: exit 0 when everything works; exit 1 with the
//! reason for a wrong password, an untrusted certificate, an unreachable host, a group that is
//! not whitelisted, a skewed clock, and a configuration that sends credentials in clear text.

use jiff::SignedDuration;
use ocp_sim::exports::ExportsConfig;
use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::ocp::Ocp;

const PASSWORD: &str = "ocp-check-secret";

fn config() -> ExportsConfig {
    let mut config = ExportsConfig::new("svc-callrec", PASSWORD);
    config.whitelist = Some(vec!["grp-emea-01".into()]);
    config
}

/// Writes `callrec.toml` (and the CA, unless `trust` is false) into `dir`.
fn write_config(dir: &Path, ocp: &Ocp, base_url: &str, trust: bool) {
    std::fs::write(dir.join("ocp-ca.pem"), &ocp.ca_pem).unwrap();
    let ca = if trust {
        "ca_file = \"ocp-ca.pem\""
    } else {
        ""
    };
    std::fs::write(
        dir.join("callrec.toml"),
        format!("[ocp]\nbase_url = \"{base_url}\"\nusername = \"svc-callrec\"\n{ca}\n"),
    )
    .unwrap();
}

fn check(dir: &Path, password: &str, args: &[&str]) -> (Output, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_callrec"))
        .args(["ocp", "check", "--config", "callrec.toml"])
        .args(args)
        .current_dir(dir)
        .env("CALLREC_OCP__PASSWORD", password)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!text.contains(password) || password.is_empty(), "{text}");
    (output, text)
}

#[test]
fn a_working_connection_passes_and_each_broken_part_is_named() {
    let ocp = Ocp::start(config());
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &ocp, &ocp.url, true);

    let (output, text) = check(dir.path(), PASSWORD, &["--group", "grp-emea-01"]);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("ok    login"), "{text}");
    assert!(text.contains("group grp-emea-01: whitelisted"), "{text}");
    assert!(text.contains("ok    clock"), "{text}");
    assert!(text.trim_end().ends_with("OCP check passed"), "{text}");
    // It created nothing.
    assert_eq!(ocp.api.exports_created(), 0);
    // JSON for scripts.
    let (output, text) = check(dir.path(), PASSWORD, &["--group", "grp-emea-01", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{text}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["mode"], "username and password");

    // A group the user is not whitelisted for.
    let (output, text) = check(dir.path(), PASSWORD, &["--group", "grp-amer-01"]);
    assert!(text.contains("ok    clock"), "{text}");
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("whitelisted for this user"), "{text}");
    // No group at all: nothing proves the exports are visible.
    let (output, text) = check(dir.path(), PASSWORD, &[]);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("--group"), "{text}");

    // A wrong password.
    let (output, text) = check(dir.path(), "not-the-password", &["--group", "grp-emea-01"]);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL  login: credentials refused") && text.contains("invalid_grant"),
        "{text}"
    );

    // The certificate not trusted (no ca_file).
    write_config(dir.path(), &ocp, &ocp.url, false);
    let (output, text) = check(dir.path(), PASSWORD, &["--group", "grp-emea-01"]);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("TLS") && text.contains("not trusted"),
        "{text}"
    );

    // Nothing listening there.
    write_config(dir.path(), &ocp, "https://127.0.0.1:1", true);
    let (output, text) = check(dir.path(), PASSWORD, &["--group", "grp-emea-01"]);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("no connection"), "{text}");

    // Clear text is refused before anything is sent, naming the key.
    let plain = ocp.url.replace("https://", "http://");
    write_config(dir.path(), &ocp, &plain, true);
    let (output, text) = check(dir.path(), PASSWORD, &["--group", "grp-emea-01"]);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("ocp.base_url") && text.contains("clear text"),
        "{text}"
    );
}

#[test]
fn a_skewed_clock_fails_the_check() {
    let mut config = config();
    config.clock_offset = SignedDuration::from_mins(5);
    let ocp = Ocp::start(config);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &ocp, &ocp.url, true);
    let (output, text) = check(dir.path(), PASSWORD, &["--group", "grp-emea-01"]);
    assert_eq!(output.status.code(), Some(1), "{text}");
    // Five minutes ahead (to the second; the header has no finer resolution).
    assert!(
        text.contains("FAIL  clock: +") && text.contains("more than 30 s"),
        "{text}"
    );
}

#[test]
fn a_personal_access_token_is_checked_by_the_api_alone() {
    let mut config = config();
    config.personal_access_tokens = vec![ocp_sim::idp::PersonalAccessToken {
        token: "pat-emea".into(),
        groups: vec!["grp-emea-01".into()],
        expires_at: None,
    }];
    let ocp = Ocp::start(config);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ocp-ca.pem"), &ocp.ca_pem).unwrap();
    std::fs::write(
        dir.path().join("callrec.toml"),
        format!(
            "[ocp]\nbase_url = \"{}\"\nca_file = \"ocp-ca.pem\"\ndefault_group = \"grp-emea-01\"\n",
            ocp.url
        ),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_callrec"))
        .args(["ocp", "check", "--config", "callrec.toml"])
        .current_dir(dir.path())
        .env("CALLREC_OCP__PERSONAL_ACCESS_TOKEN", "pat-emea")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains("credentials:    personal access token"),
        "{text}"
    );
    assert_eq!(
        ocp.api.grants(),
        Default::default(),
        "no token endpoint call"
    );
    assert!(!text.contains("pat-emea"));
    // A secret in the file is refused, naming the key and where it belongs.
    std::fs::write(
        dir.path().join("callrec.toml"),
        format!(
            "[ocp]\nbase_url = \"{}\"\npersonal_access_token = \"pat-emea\"\n",
            ocp.url
        ),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_callrec"))
        .args(["ocp", "check", "--config", "callrec.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("ocp.personal_access_token")
            && text.contains("CALLREC_OCP__PERSONAL_ACCESS_TOKEN"),
        "{text}"
    );
}
