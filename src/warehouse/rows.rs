//! Rows in and out of the warehouse: batches built column by column against a table's
//! definition, row ids, SQL literals and the replace predicate of a job's rows, and query
//! results as JSON objects.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use serde_json::{Map, Value};

use super::WarehouseError;
use super::catalog::TableDef;

/// Longest accepted `workflow_id` / `source_id` / `tenant_id`.
pub const MAX_ID_LEN: usize = 128;

/// An identifier that cannot go into the warehouse, with the field it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} {value}: {reason}")]
pub struct InvalidId {
    pub field: String,
    /// The value as [`printable`] shows it.
    pub value: String,
    pub reason: String,
}

/// Checks that an identifier is safe as a Delta partition value, in a path, and inside a
/// SQL string literal: ASCII letters, digits, `_`, `-`, `.`; no `..`; 1..=128 chars.
pub fn validate_id(field: &str, value: &str) -> Result<(), InvalidId> {
    let bad = |reason: String| InvalidId {
        field: field.to_string(),
        value: printable(value),
        reason,
    };
    if value.is_empty() {
        return Err(bad("must not be empty".into()));
    }
    if value.len() > MAX_ID_LEN {
        return Err(bad(format!(
            "is {} bytes long; at most {MAX_ID_LEN} are allowed",
            value.len()
        )));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(bad(format!(
            "contains {c:?}; only ASCII letters, digits, '_', '-' and '.' are allowed"
        )));
    }
    if !value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
    {
        return Err(bad("must start with a letter or digit".into()));
    }
    if value.contains("..") {
        return Err(bad("must not contain '..'".into()));
    }
    Ok(())
}

/// Shows a user-supplied value in an error without letting it forge log lines or flood them.
pub fn printable(s: &str) -> String {
    const SHOWN: usize = 64;
    let cut: String = s.chars().take(SHOWN).collect();
    let mut out = format!("{cut:?}");
    if s.chars().count() > SHOWN {
        out.push_str(&format!(" (… {} chars in all)", s.chars().count()));
    }
    out
}

/// A SQL string literal. Ids are validated before they get here; quotes are doubled anyway
/// so that this function alone is safe.
pub fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The predicate selecting the rows of `workflow_id` and the given sources (`None` is a
/// source without a `source_id`).
pub fn replace_predicate(workflow_id: &str, source_ids: &[Option<String>]) -> String {
    let mut named: Vec<String> = source_ids
        .iter()
        .flatten()
        .map(|s| sql_literal(s))
        .collect();
    named.sort();
    named.dedup();
    let mut parts = Vec::new();
    if !named.is_empty() {
        parts.push(format!("source_id IN ({})", named.join(", ")));
    }
    if source_ids.iter().any(Option::is_none) {
        parts.push("source_id IS NULL".to_string());
    }
    let sources = if parts.is_empty() {
        "FALSE".to_string()
    } else {
        parts.join(" OR ")
    };
    format!("workflow_id = {} AND ({sources})", sql_literal(workflow_id))
}

/// Builds a batch for `def` from columns given by name; every column of `def` must be there.
pub struct BatchBuilder {
    def: &'static TableDef,
    columns: HashMap<&'static str, ArrayRef>,
}

impl BatchBuilder {
    pub fn new(def: &'static TableDef) -> Self {
        Self {
            def,
            columns: HashMap::new(),
        }
    }

    pub fn strings<S: AsRef<str>>(
        mut self,
        name: &'static str,
        v: impl IntoIterator<Item = Option<S>>,
    ) -> Self {
        self.columns
            .insert(name, Arc::new(StringArray::from_iter(v)));
        self
    }

    pub fn i64s(mut self, name: &'static str, v: impl IntoIterator<Item = Option<i64>>) -> Self {
        self.columns
            .insert(name, Arc::new(Int64Array::from_iter(v)));
        self
    }

    pub fn i32s(mut self, name: &'static str, v: impl IntoIterator<Item = Option<i32>>) -> Self {
        self.columns
            .insert(name, Arc::new(Int32Array::from_iter(v)));
        self
    }

    pub fn f64s(mut self, name: &'static str, v: impl IntoIterator<Item = Option<f64>>) -> Self {
        self.columns
            .insert(name, Arc::new(Float64Array::from_iter(v)));
        self
    }

    pub fn bools(mut self, name: &'static str, v: impl IntoIterator<Item = Option<bool>>) -> Self {
        self.columns
            .insert(name, Arc::new(BooleanArray::from_iter(v)));
        self
    }

    pub fn binaries<B: AsRef<[u8]>>(
        mut self,
        name: &'static str,
        v: impl IntoIterator<Item = Option<B>>,
    ) -> Self {
        self.columns.insert(
            name,
            Arc::new(datafusion::arrow::array::BinaryArray::from_iter(v)),
        );
        self
    }

    pub fn timestamps(
        mut self,
        name: &'static str,
        v: impl IntoIterator<Item = Option<chrono::DateTime<chrono::Utc>>>,
    ) -> Self {
        let arr = TimestampMicrosecondArray::from_iter(
            v.into_iter().map(|t| t.map(|t| t.timestamp_micros())),
        )
        .with_timezone("UTC");
        self.columns.insert(name, Arc::new(arr));
        self
    }

    pub fn build(mut self) -> Result<RecordBatch, WarehouseError> {
        let schema = self.def.arrow_schema();
        let mut arrays = Vec::with_capacity(self.def.columns.len());
        for c in self.def.columns {
            let a = self
                .columns
                .remove(c.name)
                .ok_or_else(|| WarehouseError::Batch {
                    table: self.def.name,
                    message: format!("column {} not set", c.name),
                })?;
            arrays.push(a);
        }
        if let Some(extra) = self.columns.keys().next() {
            return Err(WarehouseError::Batch {
                table: self.def.name,
                message: format!("unknown column {extra}"),
            });
        }
        RecordBatch::try_new(schema, arrays).map_err(|e| WarehouseError::Batch {
            table: self.def.name,
            message: e.to_string(),
        })
    }
}

/// Unique row ids. delta-rs cannot write Delta identity columns (`GENERATED ALWAYS AS
/// IDENTITY` needs writer features it does not implement, and Spark would then refuse our
/// writes), and reading `max(id)` before writing races with concurrent jobs, which Delta's
/// optimistic concurrency lets commit side by side. So each row gets 63 random bits: with
/// ten million rows in a warehouse the chance of any collision is below one in 100,000,
/// and no coordination between writers is needed.
pub fn new_ids(n: usize) -> Vec<Option<i64>> {
    (0..n)
        .map(|_| {
            let bits = uuid::Uuid::new_v4().as_u128() as u64;
            Some((bits >> 1) as i64)
        })
        .collect()
}

/// Unique row ids that follow one another from a random start (63 bits, as
/// [`new_ids`]): a file of them has a narrow id range, so its statistics tell which ids it
/// may hold (see `Warehouse::delete_ids`).
pub fn new_id_block(n: usize) -> Vec<Option<i64>> {
    let start = (uuid::Uuid::new_v4().as_u128() as u64 >> 1) as i64;
    // Started low enough that the block never wraps.
    let start = start.min(i64::MAX - n as i64);
    (0..n as i64).map(|i| Some(start + i)).collect()
}

/// Rows as JSON objects, one per row.
pub fn to_json_rows(batches: &[RecordBatch]) -> Result<Vec<Map<String, Value>>, WarehouseError> {
    let render = |e: &dyn std::fmt::Display| WarehouseError::Render(e.to_string());
    let mut buf = Vec::new();
    {
        let mut w = datafusion::arrow::json::ArrayWriter::new(&mut buf);
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        w.write_batches(&refs).map_err(|e| render(&e))?;
        w.finish().map_err(|e| render(&e))?;
    }
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    let mut rows: Vec<Map<String, Value>> = serde_json::from_slice(&buf).map_err(|e| render(&e))?;
    // Floats are taken from the arrays themselves: text parsed back is not always the
    // same double (off by one unit in the last place), and statistics must read as stored.
    let mut offset = 0;
    for b in batches {
        for (field, col) in b.schema().fields().iter().zip(b.columns()) {
            use datafusion::arrow::array::{Array, AsArray};
            use datafusion::arrow::datatypes::{DataType, Float64Type};
            if col.data_type() != &DataType::Float64 {
                continue;
            }
            let f = col.as_primitive::<Float64Type>();
            for i in 0..f.len() {
                if f.is_valid(i)
                    && let Some(n) = serde_json::Number::from_f64(f.value(i))
                    && let Some(row) = rows.get_mut(offset + i)
                {
                    row.insert(field.name().clone(), Value::Number(n));
                }
            }
        }
        offset += b.num_rows();
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates() {
        assert_eq!(
            replace_predicate(
                "wf",
                &[Some("b".into()), Some("a".into()), Some("a".into())]
            ),
            "workflow_id = 'wf' AND (source_id IN ('a', 'b'))"
        );
        assert_eq!(
            replace_predicate("wf", &[None, Some("a".into())]),
            "workflow_id = 'wf' AND (source_id IN ('a') OR source_id IS NULL)"
        );
        assert_eq!(sql_literal("a'b"), "'a''b'");
    }

    #[test]
    fn ids_are_unique_and_positive() {
        let ids = new_ids(1000);
        let set: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(set.len(), 1000);
        assert!(ids.iter().all(|i| i.unwrap() >= 0));
    }

    #[test]
    fn id_blocks_are_consecutive_from_a_random_start() {
        let (a, b) = (new_id_block(1000), new_id_block(1000));
        for block in [&a, &b] {
            let ids: Vec<i64> = block.iter().map(|i| i.unwrap()).collect();
            assert!(ids[0] >= 0);
            assert!(ids.windows(2).all(|w| w[1] == w[0] + 1));
        }
        assert_ne!(a[0], b[0]);
        assert!(new_id_block(0).is_empty());
    }
}
