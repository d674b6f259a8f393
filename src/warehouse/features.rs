//! Which Delta table features this binary may write. Databricks turns on features delta-rs
//! cannot write (deletion vectors on every new table, identity columns in the v1.0 document's
//! DDL, column mapping): a table using one is refused before any write, naming the feature,
//! the table and the way out, instead of a commit that fails late or writes what Spark
//! would reject.

use deltalake::DeltaTable;

/// Writer features delta-rs writes correctly for our tables (all we create is reader 1 /
/// writer 2).
const WRITABLE: &[&str] = &[
    "appendOnly",
    "invariants",
    "checkConstraints",
    "changeDataFeed",
    "generatedColumns",
    "timestampNtz",
];

/// A feature of a table that this binary cannot write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unwritable {
    pub feature: String,
    /// What in the table uses it (a column), when known.
    pub detail: Option<String>,
}

impl Unwritable {
    /// What a user does about it, on Databricks, for the table called `name`.
    pub fn way_out(&self, name: &str) -> String {
        let route = "or migrate through the Databricks route (apply_migrations, route=spark)";
        match self.feature.as_str() {
            "deletionVectors" => format!(
                "`ALTER TABLE {name} SET TBLPROPERTIES ('delta.enableDeletionVectors' = false)`, then `ALTER TABLE {name} DROP FEATURE deletionVectors`, {route}"
            ),
            "identityColumns" => format!(
                "re-create {name} without the identity column (`CREATE OR REPLACE TABLE ... AS SELECT`, as migration V2 does), {route}"
            ),
            "columnMapping" => format!("`ALTER TABLE {name} DROP FEATURE columnMapping`, {route}"),
            other => {
                format!("`ALTER TABLE {name} DROP FEATURE {other}` if it can be dropped, {route}")
            }
        }
    }
}

/// The features of `table` this binary cannot write; empty when it may write.
pub fn unwritable(table: &DeltaTable) -> Vec<Unwritable> {
    let Ok(snapshot) = table.snapshot() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let protocol = snapshot.protocol();
    let listed: Vec<String> = protocol
        .writer_features()
        .map(|fs| fs.iter().map(|f| f.to_string()).collect())
        .unwrap_or_default();
    let config = snapshot.metadata().configuration();
    let mut push = |feature: &str, detail: Option<String>| {
        if !out.iter().any(|u: &Unwritable| u.feature == feature) {
            out.push(Unwritable {
                feature: feature.to_string(),
                detail,
            });
        }
    };
    // Identity columns are marked in the schema, also at writer version 6 without a feature
    // list; delta-rs would write rows without generating their values.
    for field in snapshot.schema().fields() {
        if field
            .metadata()
            .keys()
            .any(|k| k.starts_with("delta.identity."))
        {
            push(
                "identityColumns",
                Some(format!(
                    "column `{}` is GENERATED ... AS IDENTITY",
                    field.name()
                )),
            );
        }
    }
    let mode = config
        .get("delta.columnMapping.mode")
        .map(|m| m.to_ascii_lowercase());
    if matches!(mode.as_deref(), Some("name" | "id")) {
        push(
            "columnMapping",
            Some(format!(
                "delta.columnMapping.mode = {}",
                mode.unwrap_or_default()
            )),
        );
    }
    if config
        .get("delta.enableDeletionVectors")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        push(
            "deletionVectors",
            Some("delta.enableDeletionVectors = true".into()),
        );
    }
    for f in listed {
        if !WRITABLE.contains(&f.as_str()) {
            push(&f, None);
        }
    }
    out
}
