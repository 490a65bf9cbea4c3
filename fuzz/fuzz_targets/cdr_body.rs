//! Arbitrary `POST /v1/cdr` bodies (v1 events, OCP's native records as JSON or NDJSON) through
//! the same check the handler runs before any write: a list of checked changes or a message,
//! never a panic. The first byte picks NDJSON and the group's source.
#![no_main]

use callrec_ingest::server::cdr::check_body;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let ndjson = mode & 1 == 1;
    let group = match (mode >> 1) % 3 {
        0 => Ok(("grp-emea-01".to_string(), "?group=")),
        1 => Ok((
            String::from_utf8_lossy(&body[..body.len().min(8)]).into_owned(),
            "X-OCP-Group",
        )),
        _ => Err("no group".to_string()),
    };
    if let Ok(checked) = check_body(body, ndjson, &group) {
        assert!(!checked.is_empty() && checked.len() <= 1000);
    }
});
