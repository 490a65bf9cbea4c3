//! OCP recording file names: `{groupId}~{accountId}~{dialogTimestamp}~{dialogId}.wav`.
//!
//! Audio files of an export are named so (Whole Call Recording), and `callrec inspect` reports
//! the facts of a file named so. The parts come from outside, so each is validated (length and
//! character set) before it is reported; a name that does not match is simply not an OCP name.

use crate::ids::is_safe_id;
use serde::Serialize;

/// The facts in an OCP recording's file name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct OcpFileName {
    pub group_id: String,
    pub account_id: String,
    /// The timestamp exactly as written in the name.
    pub dialog_timestamp: String,
    /// The timestamp as RFC 3339 UTC, when it is in a recognized form (epoch seconds or ms,
    /// `YYYYMMDDhhmmss[SSS]`, or ISO 8601 with an offset).
    pub dialog_time: Option<String>,
    pub dialog_id: String,
}

/// Parses a file name (no directories). `None` when it is not an OCP recording name.
pub fn parse(file_name: &str) -> Option<OcpFileName> {
    let stem = file_name
        .strip_suffix(".wav")
        .or_else(|| file_name.strip_suffix(".WAV"))?;
    let mut parts = stem.split('~');
    let (group, account, timestamp, dialog) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || ![group, account, dialog].iter().all(|p| is_safe_id(p)) {
        return None;
    }
    if timestamp.is_empty()
        || timestamp.len() > 40
        || !timestamp
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b':' | b'.' | b'_'))
    {
        return None;
    }
    Some(OcpFileName {
        group_id: group.into(),
        account_id: account.into(),
        dialog_timestamp: timestamp.into(),
        dialog_time: parse_timestamp(timestamp).map(|t| t.to_string()),
        dialog_id: dialog.into(),
    })
}

fn parse_timestamp(text: &str) -> Option<jiff::Timestamp> {
    let all_digits = text.bytes().all(|b| b.is_ascii_digit());
    match text.len() {
        10 if all_digits => jiff::Timestamp::from_second(text.parse().ok()?).ok(),
        13 if all_digits => jiff::Timestamp::from_millisecond(text.parse().ok()?).ok(),
        14 | 17 if all_digits => {
            let civil = jiff::civil::DateTime::strptime("%Y%m%d%H%M%S", &text[..14]).ok()?;
            let millis: i64 = if text.len() == 17 {
                text[14..].parse().ok()?
            } else {
                0
            };
            let ts = civil.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
            ts.checked_add(jiff::SignedDuration::from_millis(millis))
                .ok()
        }
        _ => text.parse::<jiff::Timestamp>().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ocp_names() {
        let n = parse("grp-emea~acct-7~20261124101500123~dlg-0001.wav").unwrap();
        assert_eq!(n.group_id, "grp-emea");
        assert_eq!(n.account_id, "acct-7");
        assert_eq!(n.dialog_id, "dlg-0001");
        assert_eq!(n.dialog_time.as_deref(), Some("2026-11-24T10:15:00.123Z"));
        let epoch = parse("g~a~1764000000~d.wav").unwrap();
        assert_eq!(epoch.dialog_time.as_deref(), Some("2025-11-24T16:00:00Z"));
        let iso = parse("g~a~2026-11-24T10:15:00+01:00~d.wav").unwrap();
        assert_eq!(iso.dialog_time.as_deref(), Some("2026-11-24T09:15:00Z"));
        let odd = parse("g~a~yesterday~d.wav").unwrap();
        assert_eq!(odd.dialog_time, None);
    }

    #[test]
    fn rejects_other_names() {
        for name in [
            "call.wav",
            "a~b~c.wav",
            "a~b~c~d~e.wav",
            "a~b~1~d.mp3",
            "..~b~1~d.wav",
            "a/x~b~1~d.wav",
            "a~b~1~.wav",
            "~b~1~d.wav",
            "a~b~1 2~d.wav",
        ] {
            assert!(parse(name).is_none(), "{name}");
        }
    }
}
