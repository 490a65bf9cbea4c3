//! Arbitrary key templates and call facts: a template either fails the load-time check with a
//! message, or every key it makes is valid or a typed error (never a panic in `object_key`,
//! whose placeholders the load-time check vouches for).
#![no_main]

use callrec_ingest::CallId;
use callrec_ingest::routing::{LineOfBusinessConfig, Routing, RoutingConfig, StagingConfig};
use callrec_ingest::store::CdrFacts;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\n');
    let template = parts.next().unwrap_or_default().to_string();
    let group = parts.next().map(str::to_string);
    let account = parts.next().map(str::to_string);
    let seconds = data
        .iter()
        .fold(0i64, |n, &b| n.wrapping_mul(31).wrapping_add(b as i64));
    let routing = RoutingConfig {
        default: "care".into(),
        staging: StagingConfig {
            bucket: "callrec-staging".into(),
            prefix: "staging".into(),
        },
        rules: Vec::new(),
    };
    let lines = BTreeMap::from([(
        "care".to_string(),
        LineOfBusinessConfig {
            bucket: "acme-care".into(),
            key_template: Some(template),
            storage_class: None,
            kms_key_id: None,
        },
    )]);
    let Ok(routing) = Routing::new(&routing, &lines) else {
        return;
    };
    let facts = CdrFacts {
        group_id: group,
        account_id: account,
        ..CdrFacts::default()
    };
    let when = jiff::Timestamp::from_second(seconds.rem_euclid(253_402_300_799))
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let call = CallId::parse("dlg-0001").unwrap();
    let line = routing.route(&facts);
    if let Ok(key) = line.object_key(&call, &facts, when, "flac") {
        assert!(!key.is_empty() && key.len() <= 1024, "{key}");
    }
});
