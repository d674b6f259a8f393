//! What can go wrong in a migration, with the file, line and statement where one is known,
//! and a warehouse whose schema a job cannot use, naming the command that fixes it.

use super::history::State;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{script}: invalid migration file name: {reason}")]
    FileName { script: String, reason: String },
    #[error("migration version {version} is given twice: {first} and {second}")]
    Duplicate {
        version: u32,
        first: String,
        second: String,
    },
    #[error("migration versions have a gap: V{missing} is missing (found V{before} and V{after})")]
    Gap {
        missing: u32,
        before: u32,
        after: u32,
    },
    #[error("{script} line {line}: syntax error: {message}")]
    Syntax {
        script: String,
        line: u64,
        message: String,
    },
    #[error("{script} line {line}: {reason}: {statement}")]
    Invalid {
        script: String,
        line: u64,
        statement: String,
        reason: String,
    },
    #[error(
        "{script} (V{version}) was changed after it was applied: checksum applied {applied}, file {file}. Restore the file, or run `migrate repair` to accept it"
    )]
    Checksum {
        version: u32,
        script: String,
        applied: String,
        file: String,
    },
    #[error(
        "the warehouse is at schema V{warehouse}, newer than this executor's V{binary}: upgrade nuvyn-executor"
    )]
    Ahead { warehouse: u32, binary: u32 },
    #[error(
        "another `migrate apply` holds the lock {lock} (since {since}, by {owner}, its lease renewed until {expires}); a lock whose holder died is taken over once its lease runs out"
    )]
    Locked {
        lock: String,
        since: String,
        owner: String,
        expires: String,
    },
    #[error(
        "the migration lock {lock} belongs to a running migration ({owner}: its lease was just renewed, until {expires}); repair changes nothing while it runs"
    )]
    LockLive {
        lock: String,
        owner: String,
        expires: String,
    },
    #[error("{script} line {line} failed: {reason}: {statement}")]
    Failed {
        script: String,
        line: u64,
        statement: String,
        reason: String,
    },
    #[error(transparent)]
    Warehouse(#[from] crate::warehouse::WarehouseError),
    #[error("the warehouse schema is at V{at}, this executor writes V{latest}: {fix}")]
    Behind { at: u32, latest: u32, fix: String },
    #[error(
        "migration V{version} of the warehouse is {}: {fix} (it resumes), or see `nuvyn-executor migrate status`",
        state.as_str()
    )]
    Unfinished {
        version: u32,
        state: State,
        fix: String,
    },
    #[error(
        "the warehouse schema is at V{at}, newer than this executor's V{latest}: upgrade nuvyn-executor"
    )]
    WarehouseAhead { at: u32, latest: u32 },
    #[error("{0}")]
    Other(String),
}

impl MigrateError {
    pub(crate) fn other(e: impl std::fmt::Display) -> Self {
        Self::Other(crate::redact::text(&e.to_string()))
    }
}
