//! Sampling big tables (`--sample-rows N`, `--sample-fraction F`): the scan of a table is
//! cut down to a random share of it before it runs, so only that share is read. Plain CSV
//! and newline-delimited JSON keep random byte blocks (one per stratum, so the whole table
//! is covered; a block is read from the first line starting in it to the end of the line
//! running past it); Parquet keeps random row groups. Other formats (compressed text, JSON
//! arrays, Avro, Arrow, Delta) are read whole.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::physical_plan::parquet::ParquetAccessPlan;
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableType, physical_plan::FileGroup};
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

use super::sketch::Draws;

/// What a job samples of big tables (`--sample-rows`, `--sample-fraction`, payload
/// `profile.sample`). `None`: every row is read.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SampleSpec {
    /// About this many rows of a table that has more.
    Rows(u64),
    /// This share of a table of more than [`FRACTION_ABOVE`] bytes.
    Fraction(f64),
}

/// `--sample-fraction` leaves tables up to this size whole.
pub const FRACTION_ABOVE: u64 = 64 << 20;

/// How a table is cut down.
#[derive(Debug, Clone)]
pub enum Cut {
    /// Byte blocks of text files: (path, start, end).
    Blocks(Vec<(String, u64, u64)>),
    /// Row groups of Parquet files: path -> which row groups of how many.
    RowGroups(std::collections::HashMap<String, (usize, Vec<usize>)>),
}

/// Random byte blocks making up about `fraction` of the files `(path, size)`: the files are
/// cut into blocks (about 32 kept ones, each 64 KiB to 8 MiB), the blocks into equal strata,
/// and one random block is kept per stratum. The share of bytes kept comes back with them.
pub fn text_blocks(
    files: &[(String, u64)],
    fraction: f64,
    seed: &str,
) -> (Vec<(String, u64, u64)>, f64) {
    let total: u64 = files.iter().map(|(_, s)| *s).sum();
    let block = ((total as f64 * fraction / 32.0) as u64).clamp(64 << 10, 8 << 20);
    let mut blocks = Vec::new();
    for (path, size) in files {
        let mut at = 0;
        while at < *size {
            let end = (at + block).min(*size);
            blocks.push((path.clone(), at, end));
            at = end;
        }
    }
    let n = blocks.len();
    let keep = ((n as f64 * fraction).round() as usize).clamp(1, n.max(1));
    let mut draws = Draws::seeded(seed.as_bytes());
    let mut kept = Vec::with_capacity(keep);
    for j in 0..keep {
        let i = ((j as f64 + draws.next_f64()) * n as f64 / keep as f64) as usize;
        kept.push(blocks[i.min(n - 1)].clone());
    }
    kept.dedup();
    let read: u64 = kept.iter().map(|(_, s, e)| e - s).sum();
    let share = if total == 0 {
        1.0
    } else {
        read as f64 / total as f64
    };
    (kept, share)
}

/// Random row groups holding about `fraction` of the rows of the files `(path, row counts
/// of its row groups)`, with the share of rows kept.
pub fn row_groups(
    files: &[(String, Vec<i64>)],
    fraction: f64,
    seed: &str,
) -> (std::collections::HashMap<String, (usize, Vec<usize>)>, f64) {
    let total: i64 = files.iter().flat_map(|(_, g)| g).sum();
    let mut all: Vec<(usize, usize, f64)> = Vec::new();
    let mut draws = Draws::seeded(seed.as_bytes());
    for (f, (_, groups)) in files.iter().enumerate() {
        for g in 0..groups.len() {
            all.push((f, g, draws.next_f64()));
        }
    }
    all.sort_by(|a, b| a.2.total_cmp(&b.2));
    let want = (total as f64 * fraction).ceil() as i64;
    let mut chosen: std::collections::HashMap<String, (usize, Vec<usize>)> = files
        .iter()
        .map(|(p, g)| (p.clone(), (g.len(), Vec::new())))
        .collect();
    let mut rows = 0i64;
    for (f, g, _) in all {
        if rows >= want.max(1) {
            break;
        }
        rows += files[f].1[g];
        chosen.get_mut(&files[f].0).expect("file").1.push(g);
    }
    let share = if total == 0 {
        1.0
    } else {
        rows as f64 / total as f64
    };
    (chosen, share)
}

/// A table whose scans read only the [`Cut`] of it.
#[derive(Debug)]
pub struct Sampled {
    pub inner: Arc<dyn TableProvider>,
    pub cut: Cut,
    pub partitions: usize,
}

#[async_trait::async_trait]
impl TableProvider for Sampled {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // The counts of a sample are scaled by the share planned: a scan that cannot be cut
        // as planned fails the table rather than report a whole read as a share.
        let unplanned = |what: &str| {
            datafusion::error::DataFusionError::Execution(format!(
                "sampling: {what}; profile this table without --sample-rows/--sample-fraction"
            ))
        };
        let plan = self.inner.scan(state, projection, filters, limit).await?;
        let Some(exec) = plan.downcast_ref::<DataSourceExec>() else {
            return Err(unplanned("the table's scan is not a file scan"));
        };
        let Some(config) = exec.data_source().downcast_ref::<FileScanConfig>() else {
            return Err(unplanned("the table's scan is not a file scan"));
        };
        let files: Vec<PartitionedFile> = config
            .file_groups
            .iter()
            .flat_map(|g| g.files().iter().cloned())
            .collect();
        let by_path = |p: &str| files.iter().find(|f| f.object_meta.location.as_ref() == p);
        let mut cut: Vec<PartitionedFile> = Vec::new();
        match &self.cut {
            Cut::Blocks(blocks) => {
                for (path, start, end) in blocks {
                    if let Some(f) = by_path(path) {
                        cut.push(f.clone().with_range(*start as i64, *end as i64));
                    }
                }
            }
            Cut::RowGroups(groups) => {
                for f in &files {
                    match groups.get(f.object_meta.location.as_ref()) {
                        Some((_, keep)) if keep.is_empty() => {}
                        Some((n, keep)) => {
                            let mut plan = ParquetAccessPlan::new_none(*n);
                            for g in keep {
                                plan.scan(*g);
                            }
                            cut.push(f.clone().with_extension(plan));
                        }
                        None => {
                            return Err(unplanned("a file of the table's scan is not in the plan"));
                        }
                    }
                }
            }
        }
        if cut.is_empty() {
            return Err(unplanned(
                "none of the sampled files is in the table's scan",
            ));
        }
        let n = self.partitions.max(1);
        let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); n];
        for (i, f) in cut.into_iter().enumerate() {
            groups[i % n].push(f);
        }
        groups.retain(|g| !g.is_empty());
        let mut config = config.clone();
        config.file_groups = groups.into_iter().map(FileGroup::new).collect();
        Ok(DataSourceExec::from_data_source(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_the_table_in_strata_and_repeat() {
        let files = vec![
            ("a.csv".to_string(), 10 << 20),
            ("b.csv".to_string(), 6 << 20),
        ];
        let (kept, share) = text_blocks(&files, 0.1, "t");
        assert!((0.05..0.2).contains(&share), "{share}");
        assert!(kept.iter().any(|b| b.0 == "a.csv") && kept.iter().any(|b| b.0 == "b.csv"));
        assert_eq!(text_blocks(&files, 0.1, "t").0, kept);
        let (groups, share) = row_groups(&[("p.parquet".to_string(), vec![100; 50])], 0.2, "t");
        assert_eq!(share, 0.2);
        assert_eq!(groups["p.parquet"].1.len(), 10);
    }
}
