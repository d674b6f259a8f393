//! Migration files: `V<n>__<what>.sql` names, statements split with their line numbers,
//! each parsed with sqlparser's Databricks dialect into one [`Op`], and the set checked for
//! unique, gap-free versions. The files embedded in the binary are the single source.

use std::collections::{BTreeMap, BTreeSet};

use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::dialect::DatabricksDialect;
use datafusion::sql::sqlparser::parser::Parser;
use sha2::{Digest, Sha256};

use super::MigrateError;
use crate::warehouse::{SCHEMA_NAME, SqlType};

/// The migrations this binary was built with; its schema version is the last one's.
pub const EMBEDDED: &[(&str, &str)] = &[
    (
        "V1__v1_tables.sql",
        include_str!("../../sql/migrations/V1__v1_tables.sql"),
    ),
    (
        "V2__workflow_id.sql",
        include_str!("../../sql/migrations/V2__workflow_id.sql"),
    ),
    (
        "V3__notebook_tables.sql",
        include_str!("../../sql/migrations/V3__notebook_tables.sql"),
    ),
    (
        "V4__statistics_without_values.sql",
        include_str!("../../sql/migrations/V4__statistics_without_values.sql"),
    ),
    (
        "V5__richer_profiles.sql",
        include_str!("../../sql/migrations/V5__richer_profiles.sql"),
    ),
    (
        "V6__profile_history.sql",
        include_str!("../../sql/migrations/V6__profile_history.sql"),
    ),
    (
        "V7__changes_and_fingerprints.sql",
        include_str!("../../sql/migrations/V7__changes_and_fingerprints.sql"),
    ),
    (
        "V8__partition_sketches.sql",
        include_str!("../../sql/migrations/V8__partition_sketches.sql"),
    ),
];

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
    /// The statement as written in the file, whole (what Spark runs on the Databricks route).
    #[serde(skip)]
    pub text: String,
    #[serde(skip)]
    pub op: Op,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Migration {
    pub version: u32,
    pub description: String,
    pub script: String,
    pub checksum: String,
    /// Checksums of earlier texts of this file that are the same migration (an edit that
    /// changed its syntax, not its effect), from `-- accepts-checksum: <sha256>` lines: a
    /// warehouse that applied an earlier text is not told the file changed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accepts: Vec<String>,
    pub steps: Vec<Step>,
}

impl Migration {
    /// Whether `applied` (a checksum in the history) is this file's, now or before an
    /// accepted edit.
    pub fn matches(&self, applied: Option<&str>) -> bool {
        applied.is_some_and(|a| a == self.checksum || self.accepts.iter().any(|c| c == a))
    }
}

/// The `-- accepts-checksum: <sha256>` lines of a script.
fn accepted_checksums(script: &str, text: &str) -> Result<Vec<String>, MigrateError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(rest) = line.trim().strip_prefix("-- accepts-checksum:") else {
            continue;
        };
        let c = rest.trim().to_ascii_lowercase();
        if c.len() != 64 || !c.chars().all(|ch| ch.is_ascii_hexdigit()) {
            return Err(MigrateError::Invalid {
                script: script.to_string(),
                line: i as u64 + 1,
                statement: line.trim().to_string(),
                reason: "accepts-checksum takes the 64 hex digits of a SHA-256".into(),
            });
        }
        out.push(c);
    }
    Ok(out)
}

pub(super) fn checksum(text: &str) -> String {
    // Line endings do not change a migration's meaning (a checkout on Windows).
    let normalised = text.replace("\r\n", "\n");
    let digest = Sha256::digest(normalised.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn shorten(sql: &str) -> String {
    let one: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 160 {
        format!("{}…", one.chars().take(160).collect::<String>())
    } else {
        one
    }
}

/// Splits a script into statements at `;` outside quotes and comments, with the line each
/// statement starts on (its first line that is not blank or a comment).
pub(super) fn split_statements(text: &str) -> Vec<(u64, String)> {
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

pub(super) fn ident(part: &impl std::fmt::Display) -> String {
    part.to_string()
        .trim_matches(|c| c == '`' || c == '"')
        .to_string()
}

/// `hive_metastore._executor_metadata.t`, `_executor_metadata.t` or `t` -> `t`.
pub(super) fn table_name(name: &ast::ObjectName) -> Result<String, String> {
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

pub(super) fn sql_type(dt: &ast::DataType) -> Result<SqlType, String> {
    let t = dt.to_string().to_ascii_uppercase();
    let base = t.split('(').next().unwrap_or("").trim();
    Ok(match base {
        "STRING" | "TEXT" | "VARCHAR" => SqlType::String,
        "BIGINT" | "LONG" => SqlType::BigInt,
        "INT" | "INTEGER" => SqlType::Int,
        "BOOLEAN" | "BOOL" => SqlType::Boolean,
        "TIMESTAMP" => SqlType::Timestamp,
        "DOUBLE" => SqlType::Double,
        "BINARY" => SqlType::Binary,
        _ => {
            return Err(format!(
                "type {t} is not supported (STRING, BIGINT, INT, DOUBLE, BOOLEAN, TIMESTAMP, BINARY)"
            ));
        }
    })
}

pub(super) fn column(def: &ast::ColumnDef) -> Result<Col, String> {
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

pub(super) fn ident_expr(e: &ast::Expr) -> Result<String, String> {
    match e {
        ast::Expr::Identifier(i) => Ok(i.value.clone()),
        other => Err(format!("{other} is not a column name")),
    }
}

pub(super) fn unquote(s: &str) -> String {
    s.trim().trim_matches(|c| c == '\'' || c == '"').to_string()
}

/// Maps one parsed statement onto a step.
pub(super) fn op_of(stmt: &ast::Statement) -> Result<Op, String> {
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
pub(super) fn strip_using_delta(dialect: &DatabricksDialect, sql: &str) -> Result<String, String> {
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

/// Spark's `ALTER TABLE t ADD COLUMNS (a STRING, b INT)` (the form Spark and Databricks
/// accept for several columns) as `ADD COLUMN a STRING, ADD COLUMN b INT`, the form sqlparser
/// reads; whitespace is kept, so lines still count as in the file.
pub(super) fn spark_add_columns(dialect: &DatabricksDialect, sql: &str) -> String {
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let Ok(tokens) = Tokenizer::new(dialect, sql).tokenize() else {
        return sql.to_string();
    };
    let word = |t: &Token, w: &str| matches!(t, Token::Word(x) if x.value.eq_ignore_ascii_case(w) && x.quote_style.is_none());
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|i| !matches!(tokens[*i], Token::Whitespace(_)))
        .collect();
    let starts = |k: usize, w: &str| significant.get(k).is_some_and(|i| word(&tokens[*i], w));
    if !(starts(0, "ALTER") && starts(1, "TABLE")) {
        return sql.to_string();
    }
    let mut out: Vec<String> = tokens.iter().map(|t| t.to_string()).collect();
    let mut k = 0;
    while k + 2 < significant.len() {
        let (add, columns, open) = (significant[k], significant[k + 1], significant[k + 2]);
        if word(&tokens[add], "ADD")
            && word(&tokens[columns], "COLUMNS")
            && tokens[open] == Token::LParen
        {
            out[columns] = "COLUMN".into();
            out[open] = String::new();
            let mut depth = 1;
            for &i in &significant[k + 3..] {
                match &tokens[i] {
                    Token::LParen => depth += 1,
                    Token::RParen => {
                        depth -= 1;
                        if depth == 0 {
                            out[i] = String::new();
                            break;
                        }
                    }
                    Token::Comma if depth == 1 => out[i] = ", ADD COLUMN".into(),
                    _ => {}
                }
            }
        }
        k += 1;
    }
    out.concat()
}

/// Parses one migration script into steps. Errors name the file and line.
pub fn parse_script(script: &str, text: &str) -> Result<Vec<Step>, MigrateError> {
    let dialect = DatabricksDialect {};
    let mut steps = Vec::new();
    for (line, original) in split_statements(text) {
        let shown = shorten(&original);
        let sql = strip_using_delta(&dialect, &spark_add_columns(&dialect, &original)).map_err(
            |reason| MigrateError::Invalid {
                script: script.to_string(),
                line,
                statement: shown.clone(),
                reason,
            },
        )?;
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
            text: original.trim().to_string(),
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
            accepts: accepted_checksums(script, text)?,
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

/// The migrations as the Databricks route runs them (`migrate export`): each with its
/// checksum and whole statements, and the DDL of the history table (`${history_table}` and
/// `${warehouse}` to fill in), so that the notebook applies the very statements this binary
/// would and records them where this binary reads its history.
pub fn export(migrations: &[Migration]) -> serde_json::Value {
    use crate::warehouse::{SCHEMA_HISTORY, SCHEMA_NAME};
    serde_json::json!({
        "binary_version": migrations.last().map(|m| m.version).unwrap_or(0),
        "executor_version": env!("CARGO_PKG_VERSION"),
        "history_table": SCHEMA_HISTORY.name,
        "history_ddl": SCHEMA_HISTORY.create_ddl(
            "${history_table}",
            &format!("${{warehouse}}/{SCHEMA_NAME}/{}", SCHEMA_HISTORY.name),
        ),
        "migrations": migrations.iter().map(|m| serde_json::json!({
            "version": m.version,
            "description": m.description,
            "script": m.script,
            "checksum": m.checksum,
            "accepts": m.accepts,
            "statements": m.steps.iter().map(|s| serde_json::json!({
                "line": s.line,
                "sql": s.text,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// The schema version this binary writes: the last embedded migration.
pub fn binary_version() -> u32 {
    EMBEDDED.len() as u32
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
        assert_eq!(ms.len(), 8);
        assert_eq!(binary_version(), 8);
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
    fn spark_add_columns_is_several_columns() {
        let col = |n: &str, ty| Col {
            name: n.into(),
            ty,
            nullable: true,
        };
        assert_eq!(
            one("ALTER TABLE t ADD COLUMNS (a STRING, b INT,\n c BIGINT)").unwrap(),
            Op::AddColumns {
                table: "t".into(),
                columns: vec![
                    col("a", SqlType::String),
                    col("b", SqlType::Int),
                    col("c", SqlType::BigInt)
                ]
            }
        );
        // A syntax error after the rewrite still names the file's line.
        let e = parse_script(
            "V4__x.sql",
            "-- intro\nALTER TABLE t ADD COLUMNS (a STRING,\n b STRIN G);\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("V4__x.sql line 3:"), "{e}");
    }

    /// V4 gives every table the statistics columns of the catalogue, and those columns exist.
    #[test]
    fn v4_sets_the_catalogues_statistics_columns() {
        use crate::warehouse::catalog::by_name;
        use crate::warehouse::{JOB_TABLES, NOTEBOOK_TABLES};
        let v4 = &embedded()[3];
        let mut set = Vec::new();
        for step in &v4.steps {
            let Op::SetProperties { table, properties } = &step.op else {
                panic!("V4 only sets properties: {}", step.sql);
            };
            let def = by_name(table).unwrap();
            assert_eq!(
                properties,
                &[(
                    "delta.dataSkippingStatsColumns".to_string(),
                    def.stats_columns_property()
                )],
                "{table}"
            );
            set.push(def.name);
        }
        for def in JOB_TABLES.iter().chain(&NOTEBOOK_TABLES) {
            assert!(set.contains(&def.name), "V4 does not cover {}", def.name);
        }
        for def in crate::warehouse::ALL_TABLES {
            for c in def.stats_columns {
                assert!(def.columns.iter().any(|d| d.name == *c), "{}.{c}", def.name);
                assert!(
                    !def.partition_by.contains(c),
                    "{}.{c} is a partition column",
                    def.name
                );
            }
        }
    }

    #[test]
    fn export_carries_whole_statements() {
        let e = export(&embedded());
        assert_eq!(e["binary_version"], 8);
        let v2 = &e["migrations"][1];
        let stmts = v2["statements"].as_array().unwrap();
        assert_eq!(stmts.len(), embedded()[1].steps.len());
        let cols = stmts
            .iter()
            .find(|s| s["sql"].as_str().unwrap().contains("null_count BIGINT"))
            .unwrap();
        assert_eq!(cols["line"], 24);
        assert!(cols["sql"].as_str().unwrap().ends_with("max_value STRING)"));
        assert!(
            e["history_ddl"]
                .as_str()
                .unwrap()
                .starts_with("CREATE TABLE IF NOT EXISTS ${history_table} (\n  `version` INT,")
        );
    }

    #[test]
    fn an_edit_that_names_the_earlier_checksum_is_the_same_migration() {
        let v2 = &embedded()[1];
        let before = "94e372df856594d9f012e3dfa26b227d0e82877f8d6a38a96510798d165237a0";
        assert!(v2.matches(Some(before)) && v2.matches(Some(&v2.checksum)));
        assert!(!v2.matches(Some(&"0".repeat(64))) && !v2.matches(None));
        let e = load(&[(
            "V1__a.sql".into(),
            "-- accepts-checksum: xyz\nSELECT 1;".into(),
        )])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("V1__a.sql line 1") && e.contains("64 hex digits"),
            "{e}"
        );
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
