//! Identifiers that come from outside (OCP, HTTP paths, CDRs), validated once at the edge.

use std::fmt;

/// Longest id accepted, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Whether `part` is a safe id: 1–128 bytes of ASCII letters, digits, `-`, `_` and `.`, not
/// starting with `.` (so it can never be `..` or a hidden file), safe in a file name, an S3 key,
/// a URL segment and a query.
pub fn is_safe_id(part: &str) -> bool {
    !part.is_empty()
        && part.len() <= MAX_ID_LEN
        && !part.starts_with('.')
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Why an id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {reason} (1–{MAX_ID_LEN} of A–Z a–z 0–9 - _ ., not starting with '.')")]
pub struct IdError {
    pub what: &'static str,
    pub reason: &'static str,
}

fn validate(what: &'static str, raw: &str) -> Result<(), IdError> {
    if raw.is_empty() {
        return Err(IdError {
            what,
            reason: "empty",
        });
    }
    if raw.len() > MAX_ID_LEN {
        return Err(IdError {
            what,
            reason: "too long",
        });
    }
    if !is_safe_id(raw) {
        return Err(IdError {
            what,
            reason: "character not allowed",
        });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Accepts `raw` only if it is safe in a file name, an S3 key and a query.
            pub fn parse(raw: &str) -> Result<Self, IdError> {
                validate($what, raw)?;
                Ok($name(raw.to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        /// Deserializing validates too: a stored or received id is never trusted unchecked.
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = <String as serde::Deserialize>::deserialize(d)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(raw: &str) -> Result<Self, IdError> {
                Self::parse(raw)
            }
        }
    };
}

id_type!(
    /// OCP's id of one call (its dialog id).
    CallId,
    "call id"
);
id_type!(
    /// The contact center's client (tenant) id from the CDR.
    ClientId,
    "client id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_ids() {
        for raw in ["dlg-0001", "a", "A.b_c-9", &"x".repeat(128)] {
            assert_eq!(CallId::parse(raw).unwrap().as_str(), raw);
        }
        assert_eq!("c-1".parse::<ClientId>().unwrap().to_string(), "c-1");
    }

    #[test]
    fn refuses_anything_that_could_escape_a_path_or_key() {
        for raw in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "a\\b",
            "a b",
            "a%2F",
            "ä",
            "a\0b",
            "a~b",
            &"x".repeat(129),
        ] {
            let err = CallId::parse(raw).unwrap_err();
            assert_eq!(err.what, "call id");
            assert!(err.to_string().contains("invalid call id"), "{err}");
        }
    }
}
