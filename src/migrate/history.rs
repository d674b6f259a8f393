//! The migration history (`_executor_metadata/_schema_history`, like Flyway's): one row per
//! run of a migration, and the states and reports built from it.

use std::collections::BTreeMap;

use super::parse::Migration;

/// One row of `_schema_history`. `success` is empty while a migration runs: a row left like
/// that is an interrupted migration.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct HistoryRow {
    pub version: i32,
    pub description: Option<String>,
    pub script: Option<String>,
    pub checksum: Option<String>,
    pub applied_at: Option<String>,
    pub execution_ms: Option<i64>,
    pub success: Option<bool>,
    pub steps_done: Option<i32>,
    pub table_versions: Option<String>,
    pub error_message: Option<String>,
    pub executor_version: Option<String>,
}

/// Where a migration stands in a warehouse.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Applied,
    Pending,
    Failed,
    Interrupted,
    /// Applied, but the file changed since.
    ChecksumMismatch,
}

impl State {
    /// The name shown in status reports and errors (as serialised).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Pending => "pending",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
            Self::ChecksumMismatch => "checksum_mismatch",
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct MigrationStatus {
    pub version: u32,
    pub description: String,
    pub script: String,
    pub state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table_versions: Option<serde_json::Value>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub warehouse: String,
    /// The highest version applied successfully (0: none).
    pub schema_version: u32,
    pub binary_version: u32,
    pub migrations: Vec<MigrationStatus>,
}

/// What `apply` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Applied {
    pub version: u32,
    pub script: String,
    pub execution_ms: u64,
    pub steps: usize,
    pub steps_skipped: usize,
    pub table_versions: BTreeMap<String, Option<u64>>,
    pub resumed: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ApplyReport {
    pub warehouse: String,
    pub dry_run: bool,
    pub from_version: u32,
    pub to_version: u32,
    pub applied: Vec<Applied>,
    /// With `--dry-run`: the steps that would run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub planned: Vec<Migration>,
}
