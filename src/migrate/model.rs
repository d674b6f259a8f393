//! A model of the warehouse's tables (columns, types, partitioning) that every migration
//! step is checked against before anything runs: a step that names a missing table or
//! column, or whose SQL does not plan against the tables as they will be, is refused with
//! its file, line and statement.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;

use super::MigrateError;
use super::parse::{Col, Migration, Op, Step};
use crate::warehouse::{self, DEFAULT_CATALOG, SqlType};

#[derive(Debug, Clone, PartialEq)]
pub struct ModelTable {
    pub columns: Vec<Col>,
    pub partition_by: Vec<String>,
}

impl ModelTable {
    pub(super) fn arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(&c.name, c.ty.arrow(), c.nullable))
                .collect::<Vec<_>>(),
        ))
    }

    pub(super) fn col(&self, name: &str) -> Option<&Col> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub(super) fn of_table(t: &DeltaTable) -> Result<Self, String> {
        let snapshot = t.snapshot().map_err(|e| e.to_string())?;
        let mut columns = Vec::new();
        for f in snapshot.schema().fields() {
            let ty = match f.data_type() {
                d if *d == SqlType::String.delta() => SqlType::String,
                d if *d == SqlType::BigInt.delta() => SqlType::BigInt,
                d if *d == SqlType::Int.delta() => SqlType::Int,
                d if *d == SqlType::Boolean.delta() => SqlType::Boolean,
                d if *d == SqlType::Timestamp.delta() => SqlType::Timestamp,
                d if *d == SqlType::Double.delta() => SqlType::Double,
                d if *d == SqlType::Binary.delta() => SqlType::Binary,
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

pub(super) fn sql_type_of_arrow(t: &ArrowType) -> Option<SqlType> {
    Some(match t {
        ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View => SqlType::String,
        ArrowType::Int64 => SqlType::BigInt,
        ArrowType::Int32 | ArrowType::Int16 | ArrowType::Int8 => SqlType::Int,
        ArrowType::Boolean => SqlType::Boolean,
        ArrowType::Float64 | ArrowType::Float32 => SqlType::Double,
        ArrowType::Timestamp(TimeUnit::Microsecond, _) => SqlType::Timestamp,
        ArrowType::Binary | ArrowType::LargeBinary | ArrowType::BinaryView => SqlType::Binary,
        _ => return None,
    })
}

/// May a value of arrow type `got` be stored in a column of type `want` without loss?
pub(super) fn assignable(want: SqlType, got: &ArrowType) -> bool {
    match (want, got) {
        (_, ArrowType::Null) => true,
        (SqlType::BigInt, ArrowType::Int8 | ArrowType::Int16 | ArrowType::Int32) => true,
        (want, got) => sql_type_of_arrow(got) == Some(want),
    }
}

pub(super) fn model_session(
    model: &BTreeMap<String, ModelTable>,
) -> Result<SessionContext, MigrateError> {
    let tables = model
        .iter()
        .map(|(n, t)| {
            let p: Arc<dyn TableProvider> =
                Arc::new(MemTable::try_new(t.arrow_schema(), vec![vec![]]).expect("schema"));
            (n.clone(), p)
        })
        .collect();
    Ok(warehouse::session_with(DEFAULT_CATALOG, tables)?)
}

/// Checks one step against the model and applies it to the model; nothing is touched.
pub(super) async fn check_step(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::warehouse::MIGRATED_TABLES;

    /// A schema change that forgets its migration (or a migration the catalogue does not
    /// know of) fails here in seconds: the embedded migrations, replayed on an empty model,
    /// must give exactly the catalogue's tables.
    #[tokio::test]
    async fn the_embedded_migrations_build_the_catalogue() {
        let mut model = BTreeMap::new();
        for m in super::super::embedded() {
            for step in &m.steps {
                check_step(&mut model, &m, step)
                    .await
                    .unwrap_or_else(|e| panic!("{}: {e}", m.script));
            }
        }
        let mut expected: Vec<&str> = MIGRATED_TABLES.iter().map(|d| d.name).collect();
        expected.sort();
        assert_eq!(
            model.keys().map(String::as_str).collect::<Vec<_>>(),
            expected
        );
        for def in MIGRATED_TABLES {
            let t = &model[def.name];
            let got: Vec<(&str, SqlType)> =
                t.columns.iter().map(|c| (c.name.as_str(), c.ty)).collect();
            let want: Vec<(&str, SqlType)> = def.columns.iter().map(|c| (c.name, c.ty)).collect();
            assert_eq!(got, want, "columns of {} after the migrations", def.name);
            assert_eq!(
                t.partition_by, def.partition_by,
                "partitioning of {}",
                def.name
            );
        }
    }
}
