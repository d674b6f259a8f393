//! Versioned schema migrations of the warehouse. The files `sql/migrations/V<n>__<what>.sql`
//! (Spark SQL, embedded in the binary) are parsed with sqlparser's Databricks dialect into
//! steps, checked against a model of the tables before anything runs, and applied one step at
//! a time as delta-rs operations:
//!
//! | SQL | delta-rs |
//! | --- | --- |
//! | `CREATE TABLE [IF NOT EXISTS] t (...) USING DELTA [PARTITIONED BY (...)]` | create |
//! | `ALTER TABLE t ADD COLUMN c T [, ADD COLUMN ...]` | add columns |
//! | `ALTER TABLE t SET TBLPROPERTIES ('k' = 'v')` | set table properties |
//! | `UPDATE t SET c = expr [WHERE ...]` | update |
//! | `DELETE FROM t [WHERE ...]` | delete |
//! | `CREATE OR REPLACE TABLE t USING DELTA PARTITIONED BY (...) AS SELECT ...` | overwrite with the new schema and partitioning (a full rewrite; time travel keeps the old versions) |
//! | `OPTIMIZE t [ZORDER BY (...)]` | optimize (compact, Z-order) |
//!
//! Every step is idempotent (creating an existing table, adding an existing column, a rewrite
//! that already happened are no-ops; UPDATEs are written to be re-runnable), so a failed or
//! interrupted migration is resumed by applying again. History is the Delta table
//! `_executor_metadata/_schema_history` (like Flyway's); a lock object created with a
//! conditional write serialises concurrent `apply` runs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::dialect::DatabricksDialect;
use datafusion::sql::sqlparser::parser::Parser;
use deltalake::DeltaTable;
use deltalake::kernel::StructField;
use deltalake::operations::optimize::OptimizeType;
use deltalake::protocol::SaveMode;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use sha2::{Digest, Sha256};

use crate::metastore::{self, SCHEMA_NAME, SqlType, Warehouse};

/// The migrations this binary was built with; its schema version is the last one's.
pub const EMBEDDED: &[(&str, &str)] = &[
    (
        "V1__v1_tables.sql",
        include_str!("../sql/migrations/V1__v1_tables.sql"),
    ),
    (
        "V2__workflow_id.sql",
        include_str!("../sql/migrations/V2__workflow_id.sql"),
    ),
    (
        "V3__notebook_tables.sql",
        include_str!("../sql/migrations/V3__notebook_tables.sql"),
    ),
];

/// Name of the history table, beside the metadata tables.
pub const HISTORY_TABLE: &str = "_schema_history";
/// The lock object serialising `apply` runs, beside the tables.
const LOCK_NAME: &str = "_migrate.lock";

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
        "another `migrate apply` holds the lock {lock} (since {since}, by {owner}); if none is running, `migrate repair` removes it"
    )]
    Locked {
        lock: String,
        since: String,
        owner: String,
    },
    #[error("{script} line {line} failed: {reason}: {statement}")]
    Failed {
        script: String,
        line: u64,
        statement: String,
        reason: String,
    },
    #[error(transparent)]
    Metastore(#[from] metastore::MetastoreError),
    #[error("{0}")]
    Other(String),
}

impl MigrateError {
    fn other(e: impl std::fmt::Display) -> Self {
        Self::Other(crate::redact::text(&e.to_string()))
    }
}

/// A column in a table model.
#[derive(Debug, Clone, PartialEq)]
pub struct Col {
    pub name: String,
    pub ty: SqlType,
    pub nullable: bool,
}

/// What one statement does.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Create {
        table: String,
        columns: Vec<Col>,
        partition_by: Vec<String>,
        if_not_exists: bool,
    },
    Rewrite {
        table: String,
        partition_by: Vec<String>,
        query: String,
    },
    AddColumns {
        table: String,
        columns: Vec<Col>,
    },
    Update {
        table: String,
        set: Vec<(String, String)>,
        predicate: Option<String>,
    },
    Delete {
        table: String,
        predicate: Option<String>,
    },
    SetProperties {
        table: String,
        properties: Vec<(String, String)>,
    },
    Optimize {
        table: String,
        zorder: Vec<String>,
    },
}

impl Op {
    pub fn table(&self) -> &str {
        match self {
            Op::Create { table, .. }
            | Op::Rewrite { table, .. }
            | Op::AddColumns { table, .. }
            | Op::Update { table, .. }
            | Op::Delete { table, .. }
            | Op::SetProperties { table, .. }
            | Op::Optimize { table, .. } => table,
        }
    }
}

/// One statement of a migration file.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Step {
    pub line: u64,
    /// The statement as written (one line, shortened), for messages.
    pub sql: String,
    #[serde(skip)]
    pub op: Op,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Migration {
    pub version: u32,
    pub description: String,
    pub script: String,
    pub checksum: String,
    pub steps: Vec<Step>,
}

fn checksum(text: &str) -> String {
    // Line endings do not change a migration's meaning (a checkout on Windows).
    let normalised = text.replace("\r\n", "\n");
    let digest = Sha256::digest(normalised.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn shorten(sql: &str) -> String {
    let one: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 160 {
        format!("{}…", one.chars().take(160).collect::<String>())
    } else {
        one
    }
}

/// Splits a script into statements at `;` outside quotes and comments, with the line each
/// statement starts on (its first line that is not blank or a comment).
fn split_statements(text: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut line = 1u64;
    let mut start: Option<u64> = None;
    let mut chars = text.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            cur.push(c);
            if c == '\n' {
                line += 1;
            }
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '-' if chars.peek() == Some(&'-') => {
                // A line comment: skipped up to the end of the line.
                for n in chars.by_ref() {
                    if n == '\n' {
                        line += 1;
                        cur.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for n in chars.by_ref() {
                    if n == '\n' {
                        line += 1;
                        cur.push('\n');
                    }
                    if prev == '*' && n == '/' {
                        break;
                    }
                    prev = n;
                }
            }
            ';' => {
                if let Some(s) = start.take() {
                    out.push((s, std::mem::take(&mut cur)));
                }
                cur.clear();
            }
            _ => {
                if c == '\n' {
                    line += 1;
                } else if !c.is_whitespace() && start.is_none() {
                    start = Some(line);
                }
                if c == '\'' || c == '"' || c == '`' {
                    quote = Some(c);
                }
                cur.push(c);
            }
        }
    }
    if let Some(s) = start {
        out.push((s, cur));
    }
    out
}

fn ident(part: &impl std::fmt::Display) -> String {
    part.to_string()
        .trim_matches(|c| c == '`' || c == '"')
        .to_string()
}

/// `hive_metastore._executor_metadata.t`, `_executor_metadata.t` or `t` -> `t`.
fn table_name(name: &ast::ObjectName) -> Result<String, String> {
    let parts: Vec<String> = name.0.iter().map(ident).collect();
    let table = match parts.as_slice() {
        [t] => t,
        [schema, t] | [_, schema, t] if schema == SCHEMA_NAME => t,
        _ => {
            return Err(format!(
                "table {name} is not in the {SCHEMA_NAME} schema (write <catalog>.{SCHEMA_NAME}.<table>)"
            ));
        }
    };
    if table.is_empty()
        || !table
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(format!(
            "table name {table:?}: use lowercase letters, digits and '_'"
        ));
    }
    Ok(table.clone())
}

fn sql_type(dt: &ast::DataType) -> Result<SqlType, String> {
    let t = dt.to_string().to_ascii_uppercase();
    let base = t.split('(').next().unwrap_or("").trim();
    Ok(match base {
        "STRING" | "TEXT" | "VARCHAR" => SqlType::String,
        "BIGINT" | "LONG" => SqlType::BigInt,
        "INT" | "INTEGER" => SqlType::Int,
        "BOOLEAN" | "BOOL" => SqlType::Boolean,
        "TIMESTAMP" => SqlType::Timestamp,
        _ => {
            return Err(format!(
                "type {t} is not supported (STRING, BIGINT, INT, BOOLEAN, TIMESTAMP)"
            ));
        }
    })
}

fn column(def: &ast::ColumnDef) -> Result<Col, String> {
    let mut nullable = true;
    for o in &def.options {
        match o.option {
            ast::ColumnOption::NotNull => nullable = false,
            ast::ColumnOption::Null => nullable = true,
            _ => {
                return Err(format!("column option {} is not supported", o.option));
            }
        }
    }
    Ok(Col {
        name: ident(&def.name),
        ty: sql_type(&def.data_type)?,
        nullable,
    })
}

fn ident_expr(e: &ast::Expr) -> Result<String, String> {
    match e {
        ast::Expr::Identifier(i) => Ok(i.value.clone()),
        other => Err(format!("{other} is not a column name")),
    }
}

fn unquote(s: &str) -> String {
    s.trim().trim_matches(|c| c == '\'' || c == '"').to_string()
}

/// Maps one parsed statement onto a step.
fn op_of(stmt: &ast::Statement) -> Result<Op, String> {
    use ast::Statement as S;
    match stmt {
        S::CreateTable(ct) => {
            let table = table_name(&ct.name)?;
            if ct.location.is_some() {
                return Err("LOCATION is not allowed: tables live in the warehouse".into());
            }
            let partition_by = match &ct.hive_distribution {
                ast::HiveDistributionStyle::NONE => Vec::new(),
                ast::HiveDistributionStyle::PARTITIONED { columns } => {
                    columns.iter().map(|c| ident(&c.name)).collect()
                }
                other => return Err(format!("{other:?} is not supported")),
            };
            match (&ct.query, ct.or_replace) {
                (Some(q), true) => {
                    if !ct.columns.is_empty() {
                        return Err(
                            "CREATE OR REPLACE TABLE ... AS SELECT takes its columns from the query"
                                .into(),
                        );
                    }
                    Ok(Op::Rewrite {
                        table,
                        partition_by,
                        query: q.to_string(),
                    })
                }
                (Some(_), false) => Err(
                    "CREATE TABLE ... AS SELECT is not supported; use CREATE OR REPLACE TABLE ... AS SELECT to rewrite a table"
                        .into(),
                ),
                (None, true) => Err(
                    "CREATE OR REPLACE TABLE without AS SELECT would drop the table's rows".into(),
                ),
                (None, false) => {
                    let columns = ct.columns.iter().map(column).collect::<Result<Vec<_>, _>>()?;
                    if columns.is_empty() {
                        return Err("CREATE TABLE needs columns".into());
                    }
                    for p in &partition_by {
                        if !columns.iter().any(|c| &c.name == p) {
                            return Err(format!("partition column {p} is not a column"));
                        }
                    }
                    Ok(Op::Create {
                        table,
                        columns,
                        partition_by,
                        if_not_exists: ct.if_not_exists,
                    })
                }
            }
        }
        S::AlterTable(at) => {
            let table = table_name(&at.name)?;
            let mut columns = Vec::new();
            let mut properties = Vec::new();
            for op in &at.operations {
                match op {
                    ast::AlterTableOperation::AddColumn { column_def, .. } => {
                        let c = column(column_def)?;
                        if !c.nullable {
                            return Err(format!(
                                "ADD COLUMN {} NOT NULL: existing rows have no value for it",
                                c.name
                            ));
                        }
                        columns.push(c);
                    }
                    ast::AlterTableOperation::SetTblProperties { table_properties } => {
                        for p in table_properties {
                            match p {
                                ast::SqlOption::KeyValue { key, value } => properties
                                    .push((unquote(&key.to_string()), unquote(&value.to_string()))),
                                other => {
                                    return Err(format!(
                                        "table property {other} is not key = value"
                                    ));
                                }
                            }
                        }
                    }
                    other => return Err(format!("ALTER TABLE ... {other} is not supported")),
                }
            }
            match (columns.is_empty(), properties.is_empty()) {
                (false, true) => Ok(Op::AddColumns { table, columns }),
                (true, false) => Ok(Op::SetProperties { table, properties }),
                _ => Err("one ALTER TABLE either adds columns or sets properties".into()),
            }
        }
        S::Update(u) => {
            if !u.table.joins.is_empty() || u.from.is_some() || u.returning.is_some() {
                return Err("UPDATE with joins, FROM or RETURNING is not supported".into());
            }
            let ast::TableFactor::Table { name, alias, .. } = &u.table.relation else {
                return Err("UPDATE needs a table name".into());
            };
            if alias.is_some() {
                return Err("UPDATE with a table alias is not supported".into());
            }
            let mut set = Vec::new();
            for a in &u.assignments {
                let ast::AssignmentTarget::ColumnName(c) = &a.target else {
                    return Err("UPDATE of tuples is not supported".into());
                };
                let col = c.0.last().map(ident).unwrap_or_default();
                set.push((col, a.value.to_string()));
            }
            Ok(Op::Update {
                table: table_name(name)?,
                set,
                predicate: u.selection.as_ref().map(|e| e.to_string()),
            })
        }
        S::Delete(d) => {
            let tables = match &d.from {
                ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => t,
            };
            let [twj] = tables.as_slice() else {
                return Err("DELETE from exactly one table".into());
            };
            let ast::TableFactor::Table {
                name, alias: None, ..
            } = &twj.relation
            else {
                return Err("DELETE needs a table name without alias".into());
            };
            if d.using.is_some() || d.returning.is_some() || !twj.joins.is_empty() {
                return Err("DELETE with USING, joins or RETURNING is not supported".into());
            }
            Ok(Op::Delete {
                table: table_name(name)?,
                predicate: d.selection.as_ref().map(|e| e.to_string()),
            })
        }
        S::OptimizeTable {
            name,
            zorder,
            predicate,
            partition,
            ..
        } => {
            if predicate.is_some() || partition.is_some() {
                return Err("OPTIMIZE ... WHERE is not supported".into());
            }
            let zorder = zorder
                .iter()
                .flatten()
                .map(ident_expr)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Op::Optimize {
                table: table_name(name)?,
                zorder,
            })
        }
        other => {
            let kind = other.to_string();
            let kind: String = kind
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            Err(format!(
                "{kind} is not a supported migration statement (CREATE TABLE, CREATE OR REPLACE TABLE ... AS SELECT, ALTER TABLE ADD COLUMN / SET TBLPROPERTIES, UPDATE, DELETE, OPTIMIZE)"
            ))
        }
    }
}

/// Removes `USING DELTA` from a statement: Spark SQL writes it before `PARTITIONED BY`, an
/// order sqlparser does not accept, and Delta is the only format there is here. Any other
/// `USING <format>` in a CREATE TABLE is an error. Whitespace tokens are kept, so lines stay.
fn strip_using_delta(dialect: &DatabricksDialect, sql: &str) -> Result<String, String> {
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let Ok(tokens) = Tokenizer::new(dialect, sql).tokenize() else {
        // The parser reports the problem with its position.
        return Ok(sql.to_string());
    };
    let word = |t: &Token, w: &str| matches!(t, Token::Word(x) if x.value.eq_ignore_ascii_case(w) && x.quote_style.is_none());
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|i| !matches!(tokens[*i], Token::Whitespace(_)))
        .collect();
    let is_create_table = significant
        .first()
        .is_some_and(|i| word(&tokens[*i], "CREATE"))
        && significant
            .iter()
            .take(5)
            .any(|i| word(&tokens[*i], "TABLE"));
    if !is_create_table {
        return Ok(sql.to_string());
    }
    let mut drop = BTreeSet::new();
    let mut depth = 0i32;
    for (k, &i) in significant.iter().enumerate() {
        match &tokens[i] {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            t if depth == 0 && word(t, "USING") => {
                let next = significant.get(k + 1).map(|j| &tokens[*j]);
                match next {
                    Some(n) if word(n, "DELTA") => {
                        drop.insert(i);
                        drop.insert(significant[k + 1]);
                    }
                    Some(n) => return Err(format!("USING {n}: only Delta tables are supported")),
                    None => return Err("USING needs a format (DELTA)".into()),
                }
            }
            Token::Word(w) if depth == 0 && w.value.eq_ignore_ascii_case("AS") => break,
            _ => {}
        }
    }
    Ok(tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| !drop.contains(i))
        .map(|(_, t)| t.to_string())
        .collect())
}

/// Parses one migration script into steps. Errors name the file and line.
pub fn parse_script(script: &str, text: &str) -> Result<Vec<Step>, MigrateError> {
    let dialect = DatabricksDialect {};
    let mut steps = Vec::new();
    for (line, sql) in split_statements(text) {
        let shown = shorten(&sql);
        let sql = strip_using_delta(&dialect, &sql).map_err(|reason| MigrateError::Invalid {
            script: script.to_string(),
            line,
            statement: shown.clone(),
            reason,
        })?;
        let stmts = Parser::parse_sql(&dialect, &sql).map_err(|e| {
            // sqlparser counts lines within the statement: make them the file's.
            let msg = e.to_string();
            let (rel, message) = match msg.rsplit_once(" at Line: ") {
                Some((m, rest)) => (
                    rest.split(',')
                        .next()
                        .and_then(|n| n.trim().parse::<u64>().ok())
                        .unwrap_or(1),
                    m.trim_start_matches("sql parser error: ").to_string(),
                ),
                None => (1, msg.trim_start_matches("sql parser error: ").to_string()),
            };
            // The statement text starts at the beginning of its chunk, which may begin with
            // blank lines before `line`.
            let lead = sql
                .chars()
                .take_while(|c| c.is_whitespace())
                .filter(|c| *c == '\n')
                .count() as u64;
            MigrateError::Syntax {
                script: script.to_string(),
                line: line + rel.saturating_sub(1).saturating_sub(lead),
                message,
            }
        })?;
        let [stmt] = stmts.as_slice() else {
            continue;
        };
        let op = op_of(stmt).map_err(|reason| MigrateError::Invalid {
            script: script.to_string(),
            line,
            statement: shown.clone(),
            reason,
        })?;
        steps.push(Step {
            line,
            sql: shown,
            op,
        });
    }
    Ok(steps)
}

/// Reads `V<n>__<description>.sql` files into migrations, in version order; duplicate
/// versions and gaps are errors.
pub fn load(files: &[(String, String)]) -> Result<Vec<Migration>, MigrateError> {
    let mut out: BTreeMap<u32, Migration> = BTreeMap::new();
    for (script, text) in files {
        let bad = |reason: &str| MigrateError::FileName {
            script: script.clone(),
            reason: reason.to_string(),
        };
        let stem = script
            .strip_suffix(".sql")
            .ok_or_else(|| bad("must end in .sql"))?;
        let (v, description) = stem
            .strip_prefix('V')
            .and_then(|s| s.split_once("__"))
            .ok_or_else(|| bad("must be V<number>__<description>.sql"))?;
        let version: u32 = v
            .parse()
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| bad("the version must be a number from 1"))?;
        let m = Migration {
            version,
            description: description.replace('_', " "),
            script: script.clone(),
            checksum: checksum(text),
            steps: parse_script(script, text)?,
        };
        if let Some(first) = out.get(&version) {
            return Err(MigrateError::Duplicate {
                version,
                first: first.script.clone(),
                second: script.clone(),
            });
        }
        out.insert(version, m);
    }
    let versions: Vec<u32> = out.keys().copied().collect();
    for (i, v) in versions.iter().enumerate() {
        let expected = i as u32 + 1;
        if *v != expected {
            return Err(MigrateError::Gap {
                missing: expected,
                before: expected - 1,
                after: *v,
            });
        }
    }
    Ok(out.into_values().collect())
}

/// The migrations embedded in this binary.
pub fn embedded() -> Vec<Migration> {
    let files: Vec<(String, String)> = EMBEDDED
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    load(&files).expect("embedded migrations are checked by tests")
}

/// Reads the migration files of a directory (`--migrations DIR`).
pub fn read_dir(dir: &std::path::Path) -> Result<Vec<Migration>, MigrateError> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| MigrateError::Other(format!("cannot read {}: {e}", dir.display())))?;
    for e in entries {
        let e = e.map_err(MigrateError::other)?;
        let name = e.file_name().to_string_lossy().to_string();
        if !name.ends_with(".sql") {
            continue;
        }
        let text = std::fs::read_to_string(e.path())
            .map_err(|err| MigrateError::Other(format!("cannot read {name}: {err}")))?;
        files.push((name, text));
    }
    files.sort();
    load(&files)
}

/// The schema version this binary writes: the last embedded migration.
pub fn binary_version() -> u32 {
    EMBEDDED.len() as u32
}

// ---- the table model ------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub struct ModelTable {
    pub columns: Vec<Col>,
    pub partition_by: Vec<String>,
}

impl ModelTable {
    fn arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(&c.name, c.ty.arrow(), c.nullable))
                .collect::<Vec<_>>(),
        ))
    }

    fn col(&self, name: &str) -> Option<&Col> {
        self.columns.iter().find(|c| c.name == name)
    }

    fn of_table(t: &DeltaTable) -> Result<Self, String> {
        let snapshot = t.snapshot().map_err(|e| e.to_string())?;
        let mut columns = Vec::new();
        for f in snapshot.schema().fields() {
            let ty = match f.data_type() {
                d if *d == SqlType::String.delta() => SqlType::String,
                d if *d == SqlType::BigInt.delta() => SqlType::BigInt,
                d if *d == SqlType::Int.delta() => SqlType::Int,
                d if *d == SqlType::Boolean.delta() => SqlType::Boolean,
                d if *d == SqlType::Timestamp.delta() => SqlType::Timestamp,
                other => {
                    return Err(format!(
                        "column {} has unsupported type {other:?}",
                        f.name()
                    ));
                }
            };
            columns.push(Col {
                name: f.name().to_string(),
                ty,
                nullable: f.is_nullable(),
            });
        }
        Ok(Self {
            columns,
            partition_by: snapshot.metadata().partition_columns().to_vec(),
        })
    }
}

fn sql_type_of_arrow(t: &ArrowType) -> Option<SqlType> {
    Some(match t {
        ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View => SqlType::String,
        ArrowType::Int64 => SqlType::BigInt,
        ArrowType::Int32 | ArrowType::Int16 | ArrowType::Int8 => SqlType::Int,
        ArrowType::Boolean => SqlType::Boolean,
        ArrowType::Timestamp(TimeUnit::Microsecond, _) => SqlType::Timestamp,
        _ => return None,
    })
}

/// May a value of arrow type `got` be stored in a column of type `want` without loss?
fn assignable(want: SqlType, got: &ArrowType) -> bool {
    match (want, got) {
        (_, ArrowType::Null) => true,
        (SqlType::BigInt, ArrowType::Int8 | ArrowType::Int16 | ArrowType::Int32) => true,
        (want, got) => sql_type_of_arrow(got) == Some(want),
    }
}

/// A session where `<any catalog>._executor_metadata.<t>` and `<t>` name `tables`.
fn session_with(
    tables: Vec<(String, Arc<dyn TableProvider>)>,
) -> Result<SessionContext, MigrateError> {
    let config = SessionConfig::new()
        .with_default_catalog_and_schema(crate::query::DEFAULT_CATALOG, SCHEMA_NAME)
        .with_create_default_catalog_and_schema(false);
    let ctx = SessionContext::new_with_config(config);
    let schema = Arc::new(MemorySchemaProvider::new());
    for (name, provider) in tables {
        schema
            .register_table(name, provider)
            .map_err(MigrateError::other)?;
    }
    let cat = Arc::new(MemoryCatalogProvider::new());
    cat.register_schema(SCHEMA_NAME, schema)
        .map_err(MigrateError::other)?;
    ctx.register_catalog(crate::query::DEFAULT_CATALOG, cat);
    Ok(ctx)
}

fn model_session(model: &BTreeMap<String, ModelTable>) -> Result<SessionContext, MigrateError> {
    let tables = model
        .iter()
        .map(|(n, t)| {
            let p: Arc<dyn TableProvider> =
                Arc::new(MemTable::try_new(t.arrow_schema(), vec![vec![]]).expect("schema"));
            (n.clone(), p)
        })
        .collect();
    session_with(tables)
}

/// Checks one step against the model and applies it to the model; nothing is touched.
async fn check_step(
    model: &mut BTreeMap<String, ModelTable>,
    m: &Migration,
    step: &Step,
) -> Result<(), MigrateError> {
    let invalid = |reason: String| MigrateError::Invalid {
        script: m.script.clone(),
        line: step.line,
        statement: step.sql.clone(),
        reason,
    };
    let table = step.op.table().to_string();
    let missing = || invalid(format!("table {table} does not exist"));
    match &step.op {
        Op::Create {
            columns,
            partition_by,
            if_not_exists,
            ..
        } => match model.entry(table) {
            std::collections::btree_map::Entry::Occupied(e) => {
                if !if_not_exists {
                    return Err(invalid(format!("table {} already exists", e.key())));
                }
            }
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(ModelTable {
                    columns: columns.clone(),
                    partition_by: partition_by.clone(),
                });
            }
        },
        Op::Rewrite {
            partition_by,
            query,
            ..
        } => {
            if !model.contains_key(&table) {
                return Err(missing());
            }
            let ctx = model_session(model)?;
            let df = ctx
                .sql(query)
                .await
                .map_err(|e| invalid(format!("the query does not plan: {e}")))?;
            let mut columns = Vec::new();
            for f in df.schema().fields() {
                let ty = sql_type_of_arrow(f.data_type()).ok_or_else(|| {
                    invalid(format!(
                        "column {} has unsupported type {}",
                        f.name(),
                        f.data_type()
                    ))
                })?;
                columns.push(Col {
                    name: f.name().clone(),
                    ty,
                    nullable: true,
                });
            }
            for p in partition_by {
                if !columns.iter().any(|c| &c.name == p) {
                    return Err(invalid(format!(
                        "partition column {p} is not in the query's output"
                    )));
                }
            }
            model.insert(
                table,
                ModelTable {
                    columns,
                    partition_by: partition_by.clone(),
                },
            );
        }
        Op::AddColumns { columns, .. } => {
            let t = model.get_mut(&table).ok_or_else(missing)?;
            for c in columns {
                match t.col(&c.name) {
                    Some(old) if old.ty == c.ty => {}
                    Some(old) => {
                        return Err(invalid(format!(
                            "column {} exists as {}, not {}",
                            c.name,
                            old.ty.spark_name(),
                            c.ty.spark_name()
                        )));
                    }
                    None => t.columns.push(c.clone()),
                }
            }
        }
        Op::Update { set, predicate, .. } => {
            let t = model.get(&table).ok_or_else(missing)?.clone();
            let ctx = model_session(model)?;
            for (col, expr) in set {
                let c = t
                    .col(col)
                    .ok_or_else(|| invalid(format!("column {col} does not exist in {table}")))?;
                if t.partition_by.contains(col) {
                    return Err(invalid(format!(
                        "{col} is a partition column; rewrite the table instead"
                    )));
                }
                let q = format!(
                    "SELECT {expr} AS v FROM {table}{}",
                    predicate
                        .as_ref()
                        .map(|p| format!(" WHERE {p}"))
                        .unwrap_or_default()
                );
                let df = ctx
                    .sql(&q)
                    .await
                    .map_err(|e| invalid(format!("does not plan: {e}")))?;
                let got = df.schema().field(0).data_type().clone();
                if !assignable(c.ty, &got) {
                    return Err(invalid(format!(
                        "type mismatch: {col} is {}, the new value is {got}",
                        c.ty.spark_name()
                    )));
                }
            }
        }
        Op::Delete { predicate, .. } => {
            if !model.contains_key(&table) {
                return Err(missing());
            }
            if let Some(p) = predicate {
                let ctx = model_session(model)?;
                ctx.sql(&format!("SELECT 1 FROM {table} WHERE {p}"))
                    .await
                    .map_err(|e| invalid(format!("the predicate does not plan: {e}")))?;
            }
        }
        Op::SetProperties { .. } => {
            if !model.contains_key(&table) {
                return Err(missing());
            }
        }
        Op::Optimize { zorder, .. } => {
            let t = model.get(&table).ok_or_else(missing)?;
            for z in zorder {
                if t.col(z).is_none() {
                    return Err(invalid(format!("column {z} does not exist in {table}")));
                }
                if t.partition_by.contains(z) {
                    return Err(invalid(format!(
                        "{z} is a partition column and cannot be Z-ordered"
                    )));
                }
            }
        }
    }
    Ok(())
}

// ---- history --------------------------------------------------------------------------

/// The history table's definition (not one of the metadata tables jobs write).
pub static HISTORY: metastore::TableDef = metastore::TableDef {
    name: HISTORY_TABLE,
    columns: &[
        metastore::ColumnDef {
            name: "version",
            ty: SqlType::Int,
        },
        metastore::ColumnDef {
            name: "description",
            ty: SqlType::String,
        },
        metastore::ColumnDef {
            name: "script",
            ty: SqlType::String,
        },
        metastore::ColumnDef {
            name: "checksum",
            ty: SqlType::String,
        },
        metastore::ColumnDef {
            name: "applied_at",
            ty: SqlType::Timestamp,
        },
        metastore::ColumnDef {
            name: "execution_ms",
            ty: SqlType::BigInt,
        },
        metastore::ColumnDef {
            name: "success",
            ty: SqlType::Boolean,
        },
        metastore::ColumnDef {
            name: "steps_done",
            ty: SqlType::Int,
        },
        metastore::ColumnDef {
            name: "table_versions",
            ty: SqlType::String,
        },
        metastore::ColumnDef {
            name: "error_message",
            ty: SqlType::String,
        },
        metastore::ColumnDef {
            name: "executor_version",
            ty: SqlType::String,
        },
    ],
    partition_by: &[],
};

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

/// Runs migrations against one warehouse.
pub struct Migrator {
    pub w: Warehouse,
    pub migrations: Vec<Migration>,
    /// How long `apply` waits for another run's lock.
    pub lock_wait: Duration,
}

impl Migrator {
    /// `NUVYN_MIGRATE_LOCK_WAIT_SECS` (default 300) bounds the wait for another run's lock.
    pub fn new(w: Warehouse) -> Self {
        let wait = std::env::var("NUVYN_MIGRATE_LOCK_WAIT_SECS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(300);
        Self {
            w,
            migrations: embedded(),
            lock_wait: Duration::from_secs(wait),
        }
    }

    pub fn with_migrations(mut self, migrations: Vec<Migration>) -> Self {
        self.migrations = migrations;
        self
    }

    fn latest(&self) -> u32 {
        self.migrations.last().map(|m| m.version).unwrap_or(0)
    }

    /// Every history row, oldest first.
    pub async fn history(&self) -> Result<Vec<HistoryRow>, MigrateError> {
        let Some(t) = self.w.open(&HISTORY).await? else {
            return Ok(Vec::new());
        };
        let provider = t.table_provider().await.map_err(MigrateError::other)?;
        let ctx = session_with(vec![(HISTORY_TABLE.to_string(), provider)])?;
        let batches = ctx
            .sql(&format!(
                "SELECT * FROM {HISTORY_TABLE} ORDER BY applied_at, version, success NULLS FIRST"
            ))
            .await
            .map_err(MigrateError::other)?
            .collect()
            .await
            .map_err(MigrateError::other)?;
        let rows = crate::query::to_json_rows(&batches).map_err(MigrateError::other)?;
        rows.into_iter()
            .map(|r| {
                serde_json::from_value(serde_json::Value::Object(r)).map_err(MigrateError::other)
            })
            .collect()
    }

    /// The latest history row of each version.
    fn last_rows(history: &[HistoryRow]) -> BTreeMap<u32, HistoryRow> {
        let mut out = BTreeMap::new();
        for r in history {
            out.insert(r.version as u32, r.clone());
        }
        out
    }

    pub async fn status(&self) -> Result<Status, MigrateError> {
        let history = self.history().await?;
        let last = Self::last_rows(&history);
        let mut migrations = Vec::new();
        for m in &self.migrations {
            let r = last.get(&m.version);
            let state = match r.map(|r| r.success) {
                None => State::Pending,
                Some(None) => State::Interrupted,
                Some(Some(false)) => State::Failed,
                Some(Some(true)) if r.and_then(|r| r.checksum.as_deref()) != Some(&m.checksum) => {
                    State::ChecksumMismatch
                }
                Some(Some(true)) => State::Applied,
            };
            migrations.push(MigrationStatus {
                version: m.version,
                description: m.description.clone(),
                script: m.script.clone(),
                state,
                applied_at: r.and_then(|r| r.applied_at.clone()),
                error: r.and_then(|r| r.error_message.clone()),
                table_versions: r
                    .and_then(|r| r.table_versions.as_deref())
                    .and_then(|t| serde_json::from_str(t).ok()),
            });
        }
        Ok(Status {
            warehouse: self.w.root.display.clone(),
            schema_version: Self::schema_version(&last),
            binary_version: self.latest(),
            migrations,
        })
    }

    fn schema_version(last: &BTreeMap<u32, HistoryRow>) -> u32 {
        last.iter()
            .filter(|(_, r)| r.success == Some(true))
            .map(|(v, _)| *v)
            .max()
            .unwrap_or(0)
    }

    /// Problems that make `apply` refuse: edited applied files, a warehouse newer than the
    /// files.
    pub async fn validate(&self) -> Result<Status, MigrateError> {
        let status = self.status().await?;
        let last = Self::last_rows(&self.history().await?);
        if let Some(max) = last.keys().max()
            && *max > self.latest()
        {
            return Err(MigrateError::Ahead {
                warehouse: *max,
                binary: self.latest(),
            });
        }
        for m in &self.migrations {
            if let Some(r) = last.get(&m.version)
                && r.success == Some(true)
                && r.checksum.as_deref() != Some(m.checksum.as_str())
            {
                return Err(MigrateError::Checksum {
                    version: m.version,
                    script: m.script.clone(),
                    applied: r.checksum.clone().unwrap_or_default(),
                    file: m.checksum.clone(),
                });
            }
        }
        Ok(status)
    }

    /// The migrations `apply --target` would run, each checked against a model of the
    /// warehouse's tables; an error here means nothing would run.
    pub async fn plan(&self, target: Option<u32>) -> Result<Vec<Migration>, MigrateError> {
        self.validate().await?;
        let last = Self::last_rows(&self.history().await?);
        let target = target.unwrap_or(self.latest());
        if target > self.latest() {
            return Err(MigrateError::Other(format!(
                "--target V{target} does not exist (the last migration is V{})",
                self.latest()
            )));
        }
        let pending: Vec<Migration> = self
            .migrations
            .iter()
            .filter(|m| m.version <= target)
            .filter(|m| last.get(&m.version).and_then(|r| r.success) != Some(true))
            .cloned()
            .collect();
        // The model starts from the tables as they are.
        let mut names: BTreeSet<String> = BTreeSet::new();
        for m in &pending {
            for s in &m.steps {
                names.insert(s.op.table().to_string());
            }
        }
        let mut model = BTreeMap::new();
        for n in names {
            if let Some(t) = self.w.open_named(&n).await? {
                let mt = ModelTable::of_table(&t)
                    .map_err(|e| MigrateError::Other(format!("table {n}: {e}")))?;
                model.insert(n, mt);
            }
        }
        for m in &pending {
            for s in &m.steps {
                check_step(&mut model, m, s).await?;
            }
        }
        Ok(pending)
    }

    fn lock_path(&self) -> object_store::path::Path {
        self.w.root.prefix.clone().join(SCHEMA_NAME).join(LOCK_NAME)
    }

    async fn lock(&self) -> Result<(), MigrateError> {
        self.w.root.ensure_dir().map_err(MigrateError::other)?;
        if let Some(d) = &self.w.root.local_dir {
            std::fs::create_dir_all(d.join(SCHEMA_NAME)).map_err(MigrateError::other)?;
        }
        let path = self.lock_path();
        let owner = format!(
            "{}@{} pid {}",
            crate::VERSION,
            hostname(),
            std::process::id()
        );
        let body = serde_json::json!({"owner": owner, "since": chrono::Utc::now().to_rfc3339()});
        let started = Instant::now();
        loop {
            let put = self
                .w
                .root
                .store
                .put_opts(
                    &path,
                    PutPayload::from(body.to_string().into_bytes()),
                    PutOptions::from(PutMode::Create),
                )
                .await;
            match put {
                Ok(_) => return Ok(()),
                Err(object_store::Error::AlreadyExists { .. }) => {
                    if started.elapsed() >= self.lock_wait {
                        let held = self.read_lock().await;
                        return Err(MigrateError::Locked {
                            lock: self.w.root.display_of(&path),
                            since: held["since"].as_str().unwrap_or("?").to_string(),
                            owner: held["owner"].as_str().unwrap_or("?").to_string(),
                        });
                    }
                    tracing::info!("waiting for another `migrate apply` to finish");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(MigrateError::Other(self.w.root.explain(&e))),
            }
        }
    }

    async fn read_lock(&self) -> serde_json::Value {
        match self.w.root.store.get(&self.lock_path()).await {
            Ok(r) => match r.bytes().await {
                Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
                Err(_) => serde_json::Value::Null,
            },
            Err(_) => serde_json::Value::Null,
        }
    }

    async fn unlock(&self) {
        if let Err(e) = self.w.root.store.delete(&self.lock_path()).await {
            tracing::warn!(
                "could not remove the migration lock: {}",
                self.w.root.explain(&e)
            );
        }
    }

    async fn record(&self, rows: Vec<HistoryRow>) -> Result<(), MigrateError> {
        let (table, _) = self.w.ensure(&HISTORY).await?;
        let n = rows.len();
        let b = metastore::BatchBuilder::new(&HISTORY)
            .i32s("version", rows.iter().map(|r| Some(r.version)))
            .strings("description", rows.iter().map(|r| r.description.clone()))
            .strings("script", rows.iter().map(|r| r.script.clone()))
            .strings("checksum", rows.iter().map(|r| r.checksum.clone()))
            .timestamps("applied_at", (0..n).map(|_| Some(chrono::Utc::now())))
            .i64s("execution_ms", rows.iter().map(|r| r.execution_ms))
            .bools("success", rows.iter().map(|r| r.success))
            .i32s("steps_done", rows.iter().map(|r| r.steps_done))
            .strings(
                "table_versions",
                rows.iter().map(|r| r.table_versions.clone()),
            )
            .strings(
                "error_message",
                rows.iter().map(|r| r.error_message.clone()),
            )
            .strings(
                "executor_version",
                (0..n).map(|_| Some(crate::VERSION.to_string())),
            )
            .build()?;
        self.w.append(&HISTORY, table, b, "migrate").await?;
        Ok(())
    }

    /// Applies pending migrations up to `target` (default: all), in order. Re-running is a
    /// no-op; a failed or interrupted migration is resumed from its first step (every step
    /// is idempotent).
    pub async fn apply(
        &self,
        target: Option<u32>,
        dry_run: bool,
    ) -> Result<ApplyReport, MigrateError> {
        let from = Self::schema_version(&Self::last_rows(&self.history().await?));
        let mut report = ApplyReport {
            warehouse: self.w.root.display.clone(),
            dry_run,
            from_version: from,
            to_version: from,
            applied: Vec::new(),
            planned: Vec::new(),
        };
        let pending = self.plan(target).await?;
        if dry_run {
            report.planned = pending;
            return Ok(report);
        }
        if pending.is_empty() {
            // Up to date: no lock taken, so jobs on a current warehouse never wait.
            return Ok(report);
        }
        self.lock().await?;
        let result = self.apply_locked(target, &mut report).await;
        self.unlock().await;
        result.map(|()| report)
    }

    async fn apply_locked(
        &self,
        target: Option<u32>,
        report: &mut ApplyReport,
    ) -> Result<(), MigrateError> {
        // Planned under the lock: another run may have applied everything meanwhile.
        let pending = self.plan(target).await?;
        let last = Self::last_rows(&self.history().await?);
        for m in pending {
            let resumed = last.contains_key(&m.version);
            if resumed {
                tracing::warn!(
                    version = m.version,
                    "resuming {} (its last run did not finish)",
                    m.script
                );
            }
            tracing::info!(version = m.version, "applying {}", m.script);
            let started = Instant::now();
            let row = |success: Option<bool>,
                       done: usize,
                       versions: &BTreeMap<String, Option<u64>>,
                       error: Option<String>| HistoryRow {
                version: m.version as i32,
                description: Some(m.description.clone()),
                script: Some(m.script.clone()),
                checksum: Some(m.checksum.clone()),
                applied_at: None,
                execution_ms: Some(started.elapsed().as_millis() as i64),
                success,
                steps_done: Some(done as i32),
                table_versions: Some(serde_json::to_string(versions).unwrap_or_default()),
                error_message: error,
                executor_version: None,
            };
            let mut versions: BTreeMap<String, Option<u64>> = BTreeMap::new();
            self.record(vec![row(None, 0, &versions, None)]).await?;
            let mut skipped = 0;
            for (i, step) in m.steps.iter().enumerate() {
                match self.run_step(step).await {
                    Ok((ran, version)) => {
                        if !ran {
                            skipped += 1;
                        }
                        versions.insert(step.op.table().to_string(), version);
                    }
                    Err(reason) => {
                        let err = MigrateError::Failed {
                            script: m.script.clone(),
                            line: step.line,
                            statement: step.sql.clone(),
                            reason,
                        };
                        self.record(vec![row(Some(false), i, &versions, Some(err.to_string()))])
                            .await?;
                        return Err(err);
                    }
                }
            }
            self.record(vec![row(Some(true), m.steps.len(), &versions, None)])
                .await?;
            report.to_version = m.version;
            report.applied.push(Applied {
                version: m.version,
                script: m.script.clone(),
                execution_ms: started.elapsed().as_millis() as u64,
                steps: m.steps.len(),
                steps_skipped: skipped,
                table_versions: versions,
                resumed,
            });
        }
        Ok(())
    }

    /// Runs one step; `Ok((false, _))` when it had nothing to do. Returns the table's Delta
    /// version afterwards.
    async fn run_step(&self, step: &Step) -> Result<(bool, Option<u64>), String> {
        let table = step.op.table();
        let open = || async {
            self.w
                .open_named(table)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("table {table} does not exist"))
        };
        let props =
            || metastore::base_commit_properties().with_max_retries(metastore::COMMIT_RETRIES);
        match &step.op {
            Op::Create {
                columns,
                partition_by,
                ..
            } => {
                if let Some(t) = self.w.open_named(table).await.map_err(|e| e.to_string())? {
                    return Ok((false, t.version()));
                }
                self.w
                    .location_of(table)
                    .ensure_dir()
                    .map_err(|e| e.to_string())?;
                let fields: Vec<StructField> = columns
                    .iter()
                    .map(|c| StructField::new(c.name.clone(), c.ty.delta(), c.nullable))
                    .collect();
                let t = self
                    .w
                    .builder_of(table)
                    .and_then(|b| b.build().map_err(|e| self.w.err_named(table, e)))
                    .map_err(|e| e.to_string())?;
                let created = t
                    .create()
                    .with_table_name(table)
                    .with_columns(fields)
                    .with_partition_columns(partition_by.clone())
                    .with_save_mode(SaveMode::Ignore)
                    .with_configuration_property(
                        deltalake::TableProperty::EnableExpiredLogCleanup,
                        Some("false"),
                    )
                    .with_commit_properties(metastore::base_commit_properties().with_max_retries(0))
                    .await;
                match created {
                    Ok(t) => Ok((true, t.version())),
                    Err(e) => match self.w.open_named(table).await.map_err(|e| e.to_string())? {
                        Some(t) => Ok((false, t.version())),
                        None => Err(e.to_string()),
                    },
                }
            }
            Op::AddColumns { columns, .. } => {
                let t = open().await?;
                let model = ModelTable::of_table(&t)?;
                let new: Vec<StructField> = columns
                    .iter()
                    .filter(|c| model.col(&c.name).is_none())
                    .map(|c| StructField::new(c.name.clone(), c.ty.delta(), true))
                    .collect();
                if new.is_empty() {
                    return Ok((false, t.version()));
                }
                let t = t
                    .add_columns()
                    .with_fields(new)
                    .with_commit_properties(props())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((true, t.version()))
            }
            Op::SetProperties { properties, .. } => {
                let t = open().await?;
                let map: std::collections::HashMap<String, String> =
                    properties.iter().cloned().collect();
                let t = t
                    .set_tbl_properties()
                    .with_properties(map)
                    .with_commit_properties(props())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((true, t.version()))
            }
            Op::Update { set, predicate, .. } => {
                let t = open().await?;
                let before = t.version();
                let mut b = t.update().with_commit_properties(props());
                if let Some(p) = predicate {
                    b = b.with_predicate(p.as_str());
                }
                for (c, e) in set {
                    b = b.with_update(c.as_str(), e.as_str());
                }
                let (t, metrics) = b.await.map_err(|e| e.to_string())?;
                Ok((
                    metrics.num_updated_rows > 0 || t.version() != before,
                    t.version(),
                ))
            }
            Op::Delete { predicate, .. } => {
                let t = open().await?;
                let before = t.version();
                let mut b = t.delete().with_commit_properties(props());
                if let Some(p) = predicate {
                    b = b.with_predicate(p.as_str());
                }
                let (t, _) = b.await.map_err(|e| e.to_string())?;
                Ok((t.version() != before, t.version()))
            }
            Op::Optimize { zorder, .. } => {
                let t = open().await?;
                let before = t.version();
                let kind = if zorder.is_empty() {
                    OptimizeType::Compact
                } else {
                    OptimizeType::ZOrder(zorder.clone())
                };
                let (t, _) = t
                    .optimize()
                    .with_type(kind)
                    .with_commit_properties(props())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((t.version() != before, t.version()))
            }
            Op::Rewrite {
                partition_by,
                query,
                ..
            } => self.rewrite(table, partition_by, query).await,
        }
    }

    /// `CREATE OR REPLACE TABLE t ... AS SELECT`: the query's rows replace the table's in one
    /// commit, with the query's columns (nullable) and the new partitioning. Skipped when
    /// the table already has exactly that layout (a resumed migration).
    async fn rewrite(
        &self,
        table: &str,
        partition_by: &[String],
        query: &str,
    ) -> Result<(bool, Option<u64>), String> {
        let mut providers: Vec<(String, Arc<dyn TableProvider>)> = Vec::new();
        let mut current = None;
        for name in self.table_names().await? {
            if let Some(t) = self.w.open_named(&name).await.map_err(|e| e.to_string())? {
                if name == table {
                    current = Some(t.clone());
                }
                providers.push((name, t.table_provider().await.map_err(|e| e.to_string())?));
            }
        }
        let current = current.ok_or_else(|| format!("table {table} does not exist"))?;
        let ctx = session_with(providers).map_err(|e| e.to_string())?;
        ctx.register_object_store(&self.w.root.store_url, self.w.root.store.clone());
        let df = ctx.sql(query).await.map_err(|e| e.to_string())?;
        let target = Arc::new(Schema::new(
            df.schema()
                .fields()
                .iter()
                .map(|f| {
                    let ty = sql_type_of_arrow(f.data_type())
                        .map(SqlType::arrow)
                        .unwrap_or_else(|| f.data_type().clone());
                    Field::new(f.name(), ty, true)
                })
                .collect::<Vec<_>>(),
        ));
        let now = ModelTable::of_table(&current)?;
        let wanted: Vec<(String, ArrowType)> = target
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();
        let have: Vec<(String, ArrowType)> = now
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.ty.arrow()))
            .collect();
        if wanted == have
            && now.partition_by == partition_by
            && now.columns.iter().all(|c| c.nullable)
        {
            return Ok((false, current.version()));
        }
        let batches: Vec<RecordBatch> = df.collect().await.map_err(|e| e.to_string())?;
        let mut batches = batches
            .iter()
            .map(|b| cast_batch(b, &target))
            .collect::<Result<Vec<_>, _>>()?;
        if batches.is_empty() {
            // An empty table is rewritten too: its schema and partitioning change.
            batches.push(RecordBatch::new_empty(target.clone()));
        }
        let t = current
            .write(batches)
            .with_save_mode(SaveMode::Overwrite)
            .with_schema_mode(deltalake::operations::write::SchemaMode::Overwrite)
            .with_partition_columns(partition_by.to_vec())
            .with_commit_properties(metastore::base_commit_properties())
            .await
            .map_err(|e| e.to_string())?;
        Ok((true, t.version()))
    }

    /// Every table any migration names (the ones a query may read).
    async fn table_names(&self) -> Result<BTreeSet<String>, String> {
        Ok(self
            .migrations
            .iter()
            .flat_map(|m| m.steps.iter().map(|s| s.op.table().to_string()))
            .collect())
    }

    /// Removes failed and interrupted attempts from the history (so `status` is clean and
    /// `apply` starts them afresh), accepts the current checksums of edited applied files, and
    /// removes a lock left by a run that died.
    pub async fn repair(&self) -> Result<serde_json::Value, MigrateError> {
        let mut removed_lock = false;
        if self.w.root.store.head(&self.lock_path()).await.is_ok() {
            self.unlock().await;
            removed_lock = true;
        }
        let mut removed_rows = 0;
        let mut realigned = Vec::new();
        if let Some(t) = self.w.open(&HISTORY).await? {
            // The latest successful row of each version stays; unfinished and failed ones go.
            let (t, metrics) = t
                .delete()
                .with_predicate("success IS NULL OR success = false")
                .with_commit_properties(metastore::base_commit_properties())
                .await
                .map_err(MigrateError::other)?;
            removed_rows = metrics.num_deleted_rows.unwrap_or(0);
            let last = Self::last_rows(&self.history().await?);
            let mut t = t;
            for m in &self.migrations {
                if let Some(r) = last.get(&m.version)
                    && r.checksum.as_deref() != Some(m.checksum.as_str())
                {
                    let (nt, _) = t
                        .update()
                        .with_predicate(format!("version = {}", m.version))
                        .with_update("checksum", format!("'{}'", m.checksum))
                        .with_commit_properties(metastore::base_commit_properties())
                        .await
                        .map_err(MigrateError::other)?;
                    t = nt;
                    realigned.push(serde_json::json!({
                        "version": m.version,
                        "script": m.script,
                        "old_checksum": r.checksum,
                        "new_checksum": m.checksum,
                    }));
                }
            }
        }
        Ok(serde_json::json!({
            "warehouse": self.w.root.display,
            "removed_lock": removed_lock,
            "removed_history_rows": removed_rows,
            "realigned_checksums": realigned,
        }))
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

fn cast_batch(b: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch, String> {
    let cols = b
        .columns()
        .iter()
        .zip(target.fields())
        .map(|(c, f)| datafusion::arrow::compute::cast(c, f.data_type()).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(target.clone(), cols).map_err(|e| e.to_string())
}

/// How a warehouse's schema compares with this binary's, for jobs.
#[derive(Debug, Clone, PartialEq)]
pub enum Readiness {
    /// No tables and no history: initialise it with the migrations.
    Fresh,
    Current,
    Behind {
        at: u32,
        latest: u32,
    },
    Ahead {
        at: u32,
        latest: u32,
    },
    /// The last run of a migration failed or did not finish.
    Unfinished {
        version: u32,
        state: State,
    },
}

pub async fn readiness(m: &Migrator) -> Result<Readiness, MigrateError> {
    let history = m.history().await?;
    let last = Migrator::last_rows(&history);
    let latest = m.latest();
    if history.is_empty() {
        let mut any = false;
        for def in metastore::ALL_TABLES {
            any |= m.w.open(def).await?.is_some();
        }
        return Ok(if any {
            Readiness::Behind { at: 0, latest }
        } else {
            Readiness::Fresh
        });
    }
    if let Some((v, r)) = last.iter().find(|(_, r)| r.success != Some(true)) {
        return Ok(Readiness::Unfinished {
            version: *v,
            state: if r.success.is_none() {
                State::Interrupted
            } else {
                State::Failed
            },
        });
    }
    let at = Migrator::schema_version(&last);
    Ok(match at.cmp(&latest) {
        std::cmp::Ordering::Equal => Readiness::Current,
        std::cmp::Ordering::Less => Readiness::Behind { at, latest },
        std::cmp::Ordering::Greater => Readiness::Ahead { at, latest },
    })
}

/// Brings a fresh warehouse to this executor's schema through the migrations, and refuses
/// one whose schema is behind (unless `migrate`) or ahead, naming the command that fixes it.
pub async fn ensure_current(w: &Warehouse, migrate: bool) -> Result<(), String> {
    w.root.ensure_dir().map_err(|e| e.to_string())?;
    let m = Migrator::new(w.clone());
    let fix = format!(
        "run `nuvyn-executor migrate apply --warehouse {}`, or pass --migrate",
        w.root.display
    );
    match readiness(&m).await.map_err(|e| e.to_string())? {
        Readiness::Current => {}
        Readiness::Fresh => {
            tracing::info!(warehouse = %w.root.display, "new warehouse: creating the schema through the migrations");
            m.apply(None, false).await.map_err(|e| e.to_string())?;
        }
        Readiness::Behind { .. } | Readiness::Unfinished { .. } if migrate => {
            let r = m.apply(None, false).await.map_err(|e| e.to_string())?;
            tracing::info!(
                from = r.from_version,
                to = r.to_version,
                "warehouse schema migrated"
            );
        }
        Readiness::Behind { at, latest } => {
            return Err(format!(
                "the warehouse schema is at V{at}, this executor writes V{latest}: {fix}"
            ));
        }
        Readiness::Unfinished { version, state } => {
            return Err(format!(
                "migration V{version} of the warehouse is {}: {fix} (it resumes), or see `nuvyn-executor migrate status`",
                serde_json::to_value(&state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            ));
        }
        Readiness::Ahead { at, latest } => {
            return Err(format!(
                "the warehouse schema is at V{at}, newer than this executor's V{latest}: upgrade nuvyn-executor"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> Result<Op, MigrateError> {
        parse_script("V9__t.sql", sql).map(|mut s| s.remove(0).op)
    }

    #[test]
    fn embedded_migrations_parse_and_match_the_directory() {
        let ms = embedded();
        assert_eq!(ms.len(), 3);
        assert_eq!(binary_version(), 3);
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/migrations");
        let from_disk = read_dir(&dir).unwrap();
        let names: Vec<_> = from_disk
            .iter()
            .map(|m| (m.script.clone(), m.checksum.clone()))
            .collect();
        let embedded: Vec<_> = ms
            .iter()
            .map(|m| (m.script.clone(), m.checksum.clone()))
            .collect();
        assert_eq!(
            names, embedded,
            "every file in sql/migrations is embedded, unchanged"
        );
        assert_eq!(ms[1].description, "workflow id");
        assert!(ms[1].steps.iter().any(|s| matches!(&s.op, Op::Rewrite { partition_by, .. } if partition_by == &["workflow_id"])));
    }

    #[test]
    fn statements_map_to_operations() {
        assert_eq!(
            one("ALTER TABLE hive_metastore._executor_metadata.sources ADD COLUMN workflow_id STRING").unwrap(),
            Op::AddColumns {
                table: "sources".into(),
                columns: vec![Col { name: "workflow_id".into(), ty: SqlType::String, nullable: true }]
            }
        );
        assert_eq!(
            one("UPDATE _executor_metadata.tables SET workflow_id = source_id WHERE workflow_id IS NULL").unwrap(),
            Op::Update {
                table: "tables".into(),
                set: vec![("workflow_id".into(), "source_id".into())],
                predicate: Some("workflow_id IS NULL".into())
            }
        );
        assert_eq!(
            one("OPTIMIZE hive_metastore._executor_metadata.columns ZORDER BY (source_id)")
                .unwrap(),
            Op::Optimize {
                table: "columns".into(),
                zorder: vec!["source_id".into()]
            }
        );
        assert_eq!(
            one("ALTER TABLE sources SET TBLPROPERTIES ('delta.appendOnly' = 'false')").unwrap(),
            Op::SetProperties {
                table: "sources".into(),
                properties: vec![("delta.appendOnly".into(), "false".into())]
            }
        );
        assert!(matches!(
            one("DELETE FROM tables WHERE row_count < 0").unwrap(),
            Op::Delete { .. }
        ));
    }

    #[test]
    fn bad_scripts_name_file_line_and_statement() {
        let e = parse_script("V4__x.sql", "-- intro\n\nALTER TABLE sources ADD COLUMN a STRING;\n\nALTER TABLE sources ADDD COLUMN b STRING;\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("V4__x.sql line 5: syntax error:"), "{e}");
        let e = parse_script(
            "V4__x.sql",
            "SELECT 1;\nDROP TABLE hive_metastore._executor_metadata.sources;",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("V4__x.sql line 1: "), "{e}");
        assert!(e.contains("is not a supported migration statement"), "{e}");
        let e = parse_script(
            "V4__x.sql",
            "\n\nDROP TABLE hive_metastore._executor_metadata.sources;",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("V4__x.sql line 3: DROP TABLE is not a supported"),
            "{e}"
        );
        assert!(
            e.ends_with("DROP TABLE hive_metastore._executor_metadata.sources"),
            "{e}"
        );
        let e = parse_script(
            "V4__x.sql",
            "ALTER TABLE other_schema.sources ADD COLUMN a STRING;",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not in the _executor_metadata schema"), "{e}");
        let e = parse_script(
            "V4__x.sql",
            "ALTER TABLE sources ADD COLUMN a DECIMAL(10, 2);",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("is not supported (STRING, BIGINT"), "{e}");
        let e = parse_script("V4__x.sql", "CREATE TABLE t (a STRING) USING PARQUET;")
            .unwrap_err()
            .to_string();
        assert!(e.contains("USING PARQUET: only Delta tables"), "{e}");
    }

    #[test]
    fn file_sets_need_names_unique_versions_and_no_gaps() {
        let f = |n: &str| {
            (
                n.to_string(),
                "ALTER TABLE t ADD COLUMN a STRING;".to_string(),
            )
        };
        let e = load(&[f("V1__a.sql"), f("V3__c.sql")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "migration versions have a gap: V2 is missing (found V1 and V3)"
        );
        let e = load(&[f("V1__a.sql"), f("V1__b.sql")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "migration version 1 is given twice: V1__a.sql and V1__b.sql"
        );
        let e = load(&[f("1__a.sql")]).unwrap_err().to_string();
        assert!(e.contains("must be V<number>__<description>.sql"), "{e}");
    }

    #[test]
    fn statement_splitting_keeps_lines_and_ignores_semicolons_in_quotes_and_comments() {
        let s = split_statements("-- a; b\nA 'x;y';\n/* c;\n d */ B;\n\n  C");
        assert_eq!(
            s.iter()
                .map(|(l, t)| (*l, t.split_whitespace().collect::<Vec<_>>().join(" ")))
                .collect::<Vec<_>>(),
            [(2, "A 'x;y'".to_string()), (4, "B".into()), (6, "C".into())]
        );
    }
}
