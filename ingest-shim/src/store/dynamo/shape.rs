//! The table callrec needs, compared with a table that exists: what `callrec init --check` runs
//! against a table made elsewhere (Terraform: deploy/terraform/dynamodb.tf), so that the two
//! can never drift apart unnoticed.

use super::{DynamoStore, INDEXES, unavailable};
use crate::store::StoreError;
use aws_sdk_dynamodb::types::TableDescription;
use serde::Serialize;
use std::collections::BTreeMap;

/// The parts of a table callrec depends on: its keys and its indexes' keys and projections,
/// each as `name KEYTYPE TYPE` (`pk HASH S`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableShape {
    pub keys: Vec<String>,
    pub indexes: BTreeMap<String, Vec<String>>,
}

/// What `DescribeTable` says of a table: its shape, and the settings production wants.
#[derive(Debug, Clone, Serialize)]
pub struct TableFacts {
    pub name: String,
    pub status: String,
    pub shape: TableShape,
    /// `PAY_PER_REQUEST` or `PROVISIONED`.
    pub billing_mode: String,
    /// `ENABLED` (with its type) or `off` (AWS owned key).
    pub encryption: String,
    pub deletion_protection: bool,
}

fn key(name: &str, key_type: &str) -> String {
    format!("{name} {key_type} S")
}

impl TableShape {
    /// The table `callrec init` creates.
    pub fn expected() -> Self {
        TableShape {
            keys: vec![key("pk", "HASH"), key("sk", "RANGE")],
            indexes: INDEXES
                .iter()
                .map(|name| {
                    let parts = vec![
                        key(&format!("{name}_pk"), "HASH"),
                        key(&format!("{name}_sk"), "RANGE"),
                        format!("projection {}", super::projection_of(name).as_str()),
                    ];
                    (name.to_string(), parts)
                })
                .collect(),
        }
    }

    /// Read from a table's description.
    pub fn of(table: &TableDescription) -> Self {
        let types: BTreeMap<&str, &str> = table
            .attribute_definitions()
            .iter()
            .map(|a| (a.attribute_name(), a.attribute_type().as_str()))
            .collect();
        let keys = |schema: &[aws_sdk_dynamodb::types::KeySchemaElement]| -> Vec<String> {
            schema
                .iter()
                .map(|k| {
                    let name = k.attribute_name();
                    let kind = types.get(name).copied().unwrap_or("?");
                    format!("{name} {} {kind}", k.key_type().as_str())
                })
                .collect()
        };
        TableShape {
            keys: keys(table.key_schema()),
            indexes: table
                .global_secondary_indexes()
                .iter()
                .filter_map(|index| {
                    let mut parts = keys(index.key_schema());
                    let projection = index
                        .projection()
                        .and_then(|p| p.projection_type())
                        .map_or("?", |p| p.as_str());
                    parts.push(format!("projection {projection}"));
                    Some((index.index_name()?.to_string(), parts))
                })
                .collect(),
        }
    }

    /// How `self` differs from what callrec needs, one line each (empty: it is right). Extra
    /// indexes are allowed: callrec never reads them.
    pub fn differences(&self) -> Vec<String> {
        let expected = Self::expected();
        let mut out = Vec::new();
        if self.keys != expected.keys {
            out.push(format!(
                "table keys are [{}], callrec needs [{}]",
                self.keys.join(", "),
                expected.keys.join(", ")
            ));
        }
        for (name, parts) in &expected.indexes {
            match self.indexes.get(name) {
                None => out.push(format!("index {name} is missing ({})", parts.join(", "))),
                Some(have) if have != parts => out.push(format!(
                    "index {name} is [{}], callrec needs [{}]",
                    have.join(", "),
                    parts.join(", ")
                )),
                Some(_) => {}
            }
        }
        out
    }
}

impl DynamoStore {
    /// The table's facts, or `None` when there is no such table.
    pub async fn describe(&self) -> Result<Option<TableFacts>, StoreError> {
        let described = match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(described) => described,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(unavailable(e)),
        };
        let Some(table) = described.table() else {
            return Ok(None);
        };
        let encryption = table
            .sse_description()
            .and_then(|s| {
                let status = s.status()?.as_str();
                Some(match s.sse_type() {
                    Some(kind) => format!("{status} ({})", kind.as_str()),
                    None => status.to_string(),
                })
            })
            .unwrap_or_else(|| "off".to_string());
        Ok(Some(TableFacts {
            name: self.table.clone(),
            status: table.table_status().map_or("?", |s| s.as_str()).to_string(),
            shape: TableShape::of(table),
            billing_mode: table
                .billing_mode_summary()
                .and_then(|b| b.billing_mode())
                .map_or("PROVISIONED", |b| b.as_str())
                .to_string(),
            encryption,
            deletion_protection: table.deletion_protection_enabled().unwrap_or(false),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expected_shape_has_no_differences_and_a_changed_one_is_named() {
        let mut shape = TableShape::expected();
        assert!(shape.differences().is_empty());
        shape.indexes.remove("due");
        shape.indexes.get_mut("work").unwrap().push("x".to_string());
        shape.indexes.insert("extra".into(), vec![]);
        let differences = shape.differences();
        assert_eq!(differences.len(), 2, "{differences:?}");
        assert!(differences[0].starts_with("index due is missing"));
        assert!(differences[1].starts_with("index work is ["));
        shape.keys.reverse();
        assert!(shape.differences()[0].starts_with("table keys are [sk RANGE S, pk HASH S]"));
    }
}
