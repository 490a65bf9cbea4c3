//! Routing: which line of business a call belongs to, and where its audio goes.
//!
//! Ordered rules match CDR fields (IVR channel, application and its type, direction, OCP group;
//! from OCP's records: `channel`, `flow.name`, `flow.type`, `direction`); the first match names
//! the line of business, else the default. Each line of business names its bucket, a key
//! template, and optionally a storage class and an SSE-KMS key. A staging location holds raw
//! uploads until their call is stored. Everything is checked when the configuration is loaded,
//! with errors that name the offending key:
//!
//! ```toml
//! [routing]
//! default = "general"
//! staging = { bucket = "callrec-staging", prefix = "raw" }
//!
//! [[routing.rules]]
//! line_of_business = "sales"
//! application = "sales-*"      # a trailing * matches a prefix
//!
//! [lines_of_business.sales]
//! bucket = "calls-sales"
//! key_template = "{lob}/{yyyy}/{mm}/{dd}/{call_id}.{ext}"
//! storage_class = "STANDARD_IA"
//!
//! [lines_of_business.general]
//! bucket = "calls-general"
//! ```

use crate::objects::{validate_bucket, validate_key};
use crate::store::CdrFacts;
use jiff::Timestamp;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The key template used when a line of business names none.
pub const DEFAULT_KEY_TEMPLATE: &str = "{lob}/{yyyy}/{mm}/{dd}/{call_id}.{ext}";

/// The placeholders a key template may use.
pub const PLACEHOLDERS: &[&str] = &[
    "lob",
    "yyyy",
    "mm",
    "dd",
    "hh",
    "call_id",
    "group_id",
    "account_id",
    "client_id",
    "ext",
];

/// A configuration value that cannot work, and where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key `{key}`: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

fn config_error(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
    }
}

/// `[routing]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// The line of business of calls no rule matches.
    pub default: String,
    pub staging: StagingConfig,
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// Where raw uploads wait until their call is stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StagingConfig {
    pub bucket: String,
    #[serde(default = "default_staging_prefix")]
    pub prefix: String,
}

fn default_staging_prefix() -> String {
    "staging".into()
}

/// One `[[routing.rules]]` entry: every field given must match.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub line_of_business: String,
    pub ivr_channel: Option<String>,
    pub application: Option<String>,
    #[serde(default)]
    pub application_type: Option<String>,
    #[serde(default)]
    pub direction: Option<String>,
    pub group_id: Option<String>,
}

/// `[lines_of_business.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineOfBusinessConfig {
    pub bucket: String,
    pub key_template: Option<String>,
    pub storage_class: Option<String>,
    pub kms_key_id: Option<String>,
}

/// A line of business, ready to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineOfBusiness {
    pub name: String,
    pub bucket: String,
    pub key_template: String,
    pub storage_class: Option<String>,
    pub kms_key_id: Option<String>,
}

/// Why a call's key could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("the key template of {lob} needs {field}, which call {call_id} does not have")]
    MissingField {
        lob: String,
        field: &'static str,
        call_id: String,
    },
    #[error("the key made for call {call_id} is not valid: {reason}")]
    BadKey { call_id: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern(String);

impl Pattern {
    fn matches(&self, value: Option<&str>) -> bool {
        let Some(value) = value else {
            return false;
        };
        match self.0.strip_suffix('*') {
            Some(prefix) => value.starts_with(prefix),
            None => value == self.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    lob: usize,
    ivr_channel: Option<Pattern>,
    application: Option<Pattern>,
    application_type: Option<Pattern>,
    direction: Option<Pattern>,
    group_id: Option<Pattern>,
}

/// The validated routing table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    lines: Vec<LineOfBusiness>,
    default: usize,
    rules: Vec<Rule>,
    pub staging: StagingConfig,
}

/// Checks a key template: known placeholders only, balanced braces, `{call_id}` present (keys
/// must be unique per call), and literal text that is valid in a key.
fn check_template(key: &str, template: &str) -> Result<(), ConfigError> {
    let mut rest = template;
    let mut literal = String::new();
    let mut has_call_id = false;
    while let Some(open) = rest.find('{') {
        literal.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| config_error(key, "a '{' without its '}'"))?;
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(config_error(
                key,
                format!(
                    "unknown placeholder {{{name}}} (known: {})",
                    PLACEHOLDERS.join(", ")
                ),
            ));
        }
        has_call_id |= name == "call_id";
        literal.push('x');
        rest = &after[close + 1..];
    }
    literal.push_str(rest);
    if literal.contains('}') {
        return Err(config_error(key, "a '}' without its '{'"));
    }
    if !has_call_id {
        return Err(config_error(
            key,
            "must contain {call_id}: each call needs its own key",
        ));
    }
    validate_key(&literal).map_err(|e| config_error(key, e.to_string()))
}

impl Routing {
    /// Validates the configuration; every error names its key.
    pub fn new(
        routing: &RoutingConfig,
        lines: &BTreeMap<String, LineOfBusinessConfig>,
    ) -> Result<Self, ConfigError> {
        if lines.is_empty() {
            return Err(config_error(
                "lines_of_business",
                "at least one line of business is needed",
            ));
        }
        let mut built = Vec::new();
        for (name, line) in lines {
            let key = format!("lines_of_business.{name}");
            if !crate::ids::is_safe_id(name) {
                return Err(config_error(&key, "names are 1-128 of A-Z a-z 0-9 - _ ."));
            }
            validate_bucket(&line.bucket)
                .map_err(|e| config_error(format!("{key}.bucket"), e.to_string()))?;
            let template = line
                .key_template
                .clone()
                .unwrap_or_else(|| DEFAULT_KEY_TEMPLATE.to_string());
            check_template(&format!("{key}.key_template"), &template)?;
            if let Some(class) = &line.storage_class {
                const CLASSES: &[&str] = &[
                    "STANDARD",
                    "STANDARD_IA",
                    "ONEZONE_IA",
                    "INTELLIGENT_TIERING",
                    "GLACIER_IR",
                    "GLACIER",
                    "DEEP_ARCHIVE",
                    "REDUCED_REDUNDANCY",
                ];
                if !CLASSES.contains(&class.as_str()) {
                    return Err(config_error(
                        format!("{key}.storage_class"),
                        format!(
                            "unknown storage class {class:?} (one of {})",
                            CLASSES.join(", ")
                        ),
                    ));
                }
            }
            if let Some(kms) = &line.kms_key_id
                && (kms.is_empty() || kms.len() > 2048 || kms.chars().any(char::is_whitespace))
            {
                return Err(config_error(
                    format!("{key}.kms_key_id"),
                    "not a KMS key id or ARN",
                ));
            }
            built.push(LineOfBusiness {
                name: name.clone(),
                bucket: line.bucket.clone(),
                key_template: template,
                storage_class: line.storage_class.clone(),
                kms_key_id: line.kms_key_id.clone(),
            });
        }
        let index_of = |key: &str, name: &str| {
            built
                .iter()
                .position(|l| l.name == name)
                .ok_or_else(|| config_error(key, format!("no [lines_of_business.{name}]")))
        };
        let default = index_of("routing.default", &routing.default)?;
        let mut rules = Vec::new();
        for (i, rule) in routing.rules.iter().enumerate() {
            let key = format!("routing.rules[{i}]");
            let lob = index_of(&format!("{key}.line_of_business"), &rule.line_of_business)?;
            let fields = [
                ("ivr_channel", &rule.ivr_channel),
                ("application", &rule.application),
                ("application_type", &rule.application_type),
                ("direction", &rule.direction),
                ("group_id", &rule.group_id),
            ];
            if fields.iter().all(|(_, value)| value.is_none()) {
                return Err(config_error(
                    &key,
                    "a rule needs at least one of ivr_channel, application, application_type, \
                     direction, group_id",
                ));
            }
            for (field, value) in fields {
                if let Some(v) = value
                    && (v.is_empty() || v.trim_end_matches('*').contains('*'))
                {
                    return Err(config_error(
                        format!("{key}.{field}"),
                        "a value, or a prefix ending in a single '*'",
                    ));
                }
            }
            rules.push(Rule {
                lob,
                ivr_channel: rule.ivr_channel.clone().map(Pattern),
                application: rule.application.clone().map(Pattern),
                application_type: rule.application_type.clone().map(Pattern),
                direction: rule.direction.clone().map(Pattern),
                group_id: rule.group_id.clone().map(Pattern),
            });
        }
        validate_bucket(&routing.staging.bucket)
            .map_err(|e| config_error("routing.staging.bucket", e.to_string()))?;
        validate_key(&format!("{}/x", routing.staging.prefix))
            .map_err(|e| config_error("routing.staging.prefix", e.to_string()))?;
        Ok(Routing {
            lines: built,
            default,
            rules,
            staging: routing.staging.clone(),
        })
    }

    /// The line of business of a call with these CDR facts: the first matching rule's, else the
    /// default.
    pub fn route(&self, cdr: &CdrFacts) -> &LineOfBusiness {
        let matches = |pattern: &Option<Pattern>, value: Option<&str>| {
            pattern.as_ref().is_none_or(|p| p.matches(value))
        };
        let index = self
            .rules
            .iter()
            .find(|r| {
                matches(&r.ivr_channel, cdr.ivr_channel.as_deref())
                    && matches(&r.application, cdr.application.as_deref())
                    && matches(&r.application_type, cdr.application_type.as_deref())
                    && matches(&r.direction, cdr.direction.as_deref())
                    && matches(&r.group_id, cdr.group_id.as_deref())
            })
            .map_or(self.default, |r| r.lob);
        &self.lines[index]
    }

    pub fn lines(&self) -> &[LineOfBusiness] {
        &self.lines
    }

    /// The buckets of the lines of business, each once, in order.
    pub fn buckets(&self) -> Vec<&str> {
        let mut buckets: Vec<&str> = self.lines.iter().map(|l| l.bucket.as_str()).collect();
        buckets.sort_unstable();
        buckets.dedup();
        buckets
    }

    /// The staging key of a call's raw upload with SHA-256 `sha256_hex`: keyed by content, so a
    /// retry finds its own bytes instead of writing twice; flat under the prefix, so the folder
    /// store makes no directory per call (and leaves none behind once the copy is removed).
    pub fn staging_key(&self, call_id: &crate::CallId, sha256_hex: &str) -> String {
        format!("{}/{call_id}.{sha256_hex}.raw", self.staging.prefix)
    }
}

impl LineOfBusiness {
    /// The object key of a call: the template filled from the call's facts; the date fields
    /// from `when` (the call's start, in UTC).
    pub fn object_key(
        &self,
        call_id: &crate::CallId,
        cdr: &CdrFacts,
        when: Timestamp,
        ext: &str,
    ) -> Result<String, RouteError> {
        let utc = when.to_zoned(jiff::tz::TimeZone::UTC);
        let missing = |field| RouteError::MissingField {
            lob: self.name.clone(),
            field,
            call_id: call_id.to_string(),
        };
        let mut key = String::with_capacity(self.key_template.len() + 32);
        let mut rest = self.key_template.as_str();
        while let Some(open) = rest.find('{') {
            key.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let close = after.find('}').expect("templates are checked at load");
            let value = match &after[..close] {
                "lob" => self.name.clone(),
                "yyyy" => format!("{:04}", utc.year()),
                "mm" => format!("{:02}", utc.month()),
                "dd" => format!("{:02}", utc.day()),
                "hh" => format!("{:02}", utc.hour()),
                "call_id" => call_id.to_string(),
                "group_id" => cdr.group_id.clone().ok_or_else(|| missing("group_id"))?,
                "account_id" => cdr
                    .account_id
                    .clone()
                    .ok_or_else(|| missing("account_id"))?,
                "client_id" => cdr
                    .client_id
                    .as_ref()
                    .map(|c| c.to_string())
                    .ok_or_else(|| missing("client_id"))?,
                "ext" => ext.to_string(),
                other => unreachable!("placeholder {other} passed the load-time check"),
            };
            key.push_str(&value);
            rest = &after[close + 1..];
        }
        key.push_str(rest);
        validate_key(&key).map_err(|e| RouteError::BadKey {
            call_id: call_id.to_string(),
            reason: e.to_string(),
        })?;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Routing, ConfigError> {
        #[derive(Deserialize)]
        struct File {
            routing: RoutingConfig,
            lines_of_business: BTreeMap<String, LineOfBusinessConfig>,
        }
        let file: File = toml::from_str(text).map_err(|e| config_error("(file)", e.to_string()))?;
        Routing::new(&file.routing, &file.lines_of_business)
    }

    const GOOD: &str = r#"
        [routing]
        default = "general"
        staging = { bucket = "callrec-staging" }
        [[routing.rules]]
        line_of_business = "sales"
        application = "sales-*"
        [[routing.rules]]
        line_of_business = "care"
        ivr_channel = "voice"
        group_id = "grp-care"
        [lines_of_business.sales]
        bucket = "calls-sales"
        storage_class = "STANDARD_IA"
        [lines_of_business.care]
        bucket = "calls-care"
        key_template = "{lob}/{group_id}/{yyyy}{mm}{dd}/{hh}/{call_id}.{ext}"
        kms_key_id = "arn:aws:kms:eu-west-1:111122223333:key/abcd"
        [lines_of_business.general]
        bucket = "calls-general"
    "#;

    fn cdr(channel: &str, app: &str, group: &str) -> CdrFacts {
        CdrFacts {
            ivr_channel: Some(channel.into()),
            application: Some(app.into()),
            group_id: Some(group.into()),
            ..CdrFacts::default()
        }
    }

    #[test]
    fn first_matching_rule_wins_else_the_default() {
        let routing = load(GOOD).unwrap();
        assert_eq!(
            routing.route(&cdr("voice", "sales-eu", "grp-care")).name,
            "sales"
        );
        assert_eq!(
            routing.route(&cdr("voice", "billing", "grp-care")).name,
            "care"
        );
        assert_eq!(
            routing.route(&cdr("chat", "billing", "grp-care")).name,
            "general"
        );
        assert_eq!(routing.route(&CdrFacts::default()).name, "general");
    }

    #[test]
    fn rules_match_the_flow_type_and_direction_of_ocp_records() {
        let routing = load(
            r#"
            [routing]
            default = "general"
            staging = { bucket = "callrec-staging" }
            [[routing.rules]]
            line_of_business = "outbound"
            direction = "outbound"
            [[routing.rules]]
            line_of_business = "banking"
            application_type = "Banking*"
            [lines_of_business.outbound]
            bucket = "calls-outbound"
            [lines_of_business.banking]
            bucket = "calls-banking"
            [lines_of_business.general]
            bucket = "calls-general"
            "#,
        )
        .unwrap();
        let facts = |direction: &str, kind: &str| CdrFacts {
            direction: Some(direction.into()),
            application_type: Some(kind.into()),
            ..CdrFacts::default()
        };
        assert_eq!(
            routing.route(&facts("outbound", "Banking2")).name,
            "outbound"
        );
        assert_eq!(routing.route(&facts("inbound", "Banking2")).name, "banking");
        assert_eq!(routing.route(&facts("inbound", "Telco")).name, "general");
    }

    #[test]
    fn keys_come_from_the_template() {
        let routing = load(GOOD).unwrap();
        let when: Timestamp = "2026-11-24T09:05:00Z".parse().unwrap();
        let id = crate::CallId::parse("dlg-42").unwrap();
        let care = routing.route(&cdr("voice", "x", "grp-care"));
        assert_eq!(
            care.object_key(&id, &cdr("voice", "x", "grp-care"), when, "wav")
                .unwrap(),
            "care/grp-care/20261124/09/dlg-42.wav"
        );
        let sales = routing.route(&cdr("voice", "sales-1", "g"));
        assert_eq!(
            sales
                .object_key(&id, &CdrFacts::default(), when, "flac")
                .unwrap(),
            "sales/2026/11/24/dlg-42.flac"
        );
        assert!(matches!(
            care.object_key(&id, &CdrFacts::default(), when, "wav"),
            Err(RouteError::MissingField {
                field: "group_id",
                ..
            })
        ));
        assert_eq!(routing.staging_key(&id, "ab12"), "staging/dlg-42.ab12.raw");
    }

    #[test]
    fn bad_configuration_names_the_key() {
        let cases = [
            (
                GOOD.replace("default = \"general\"", "default = \"nope\""),
                "routing.default",
            ),
            (
                GOOD.replace("bucket = \"calls-sales\"", "bucket = \"Calls_Sales\""),
                "lines_of_business.sales.bucket",
            ),
            (
                GOOD.replace("{hh}/{call_id}", "{hour}/{call_id}"),
                "lines_of_business.care.key_template",
            ),
            (
                GOOD.replace("{hh}/{call_id}.{ext}", "{hh}.{ext}"),
                "lines_of_business.care.key_template",
            ),
            (
                GOOD.replace("{lob}/{group_id}", "../{group_id}"),
                "lines_of_business.care.key_template",
            ),
            (
                GOOD.replace("\"STANDARD_IA\"", "\"CHEAP\""),
                "lines_of_business.sales.storage_class",
            ),
            (
                GOOD.replace(
                    "line_of_business = \"care\"",
                    "line_of_business = \"support\"",
                ),
                "routing.rules[1].line_of_business",
            ),
            (
                GOOD.replace("application = \"sales-*\"", "application = \"s*les\""),
                "routing.rules[0].application",
            ),
            (
                GOOD.replace("bucket = \"callrec-staging\"", "bucket = \"x\""),
                "routing.staging.bucket",
            ),
        ];
        for (text, key) in cases {
            let err = load(&text).unwrap_err();
            assert_eq!(err.key, key, "{err}");
        }
        let typo = GOOD.replace(
            "storage_class = \"STANDARD_IA\"",
            "storage_clas = \"STANDARD_IA\"",
        );
        let err = load(&typo).unwrap_err();
        assert!(err.message.contains("storage_clas"), "{err}");
    }
}
