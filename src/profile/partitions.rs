//! Tables partitioned by `key=value` folders, profiled partition by partition: each
//! partition's files give one mergeable state of the profile aggregate (the partial
//! aggregate's state rows: counts, null counts, min/max, the distinct-count sketch and each
//! column's sketch), kept with the partition's fingerprint. A re-run computes only the
//! partitions whose files changed, drops removed ones, and merges every state into the
//! table's statistics with the same final aggregate a whole-table pass runs, so exact
//! statistics come out the same and sketched ones within their bounds.

use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::common::ScalarValue;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::helpers::parse_partitions_for_path;
use datafusion::datasource::listing::{ListingOptions, ListingTableUrl, PartitionedFile};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::SessionState;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, PhysicalGroupBy};
use datafusion::physical_plan::empty::EmptyExec;
use futures::StreamExt;
use object_store::ObjectMeta;

use super::{ProfileError, file_format, pass_aggregates, physical_aggregates, widen};
use crate::discover::{self, DiscoveredTable, Format, Layout};
use crate::storage::location::Location;

/// One partition's share of a table's profile, or (at [`ROLLUP_PATH`]) the merge of the
/// shares of every partition of the table at the time.
#[derive(Debug, Clone)]
pub struct PartitionSketch {
    /// The partition's folders below the table, e.g. `date=2024-01-01/region=eu`.
    pub path: String,
    /// Its files' names, sizes and ETags or times ([`discover::fingerprint`]); of a rollup,
    /// its partitions' paths and fingerprints ([`members_key`]).
    pub fingerprint: String,
    /// The executor version and table schema the state was computed for: a state is merged
    /// only into a table of the same schema.
    pub schema_key: String,
    pub rows: i64,
    /// The schema inferred from the partition's files (Arrow IPC, no rows).
    pub file_schema: Vec<u8>,
    /// The partial aggregate's state rows (Arrow IPC); empty when it was not fetched.
    pub sketch: Vec<u8>,
    /// The stored row's `id`; `None` for one computed now.
    pub id: Option<i64>,
}

/// The `partition_path` of a table's rollup: the merge of all its partitions' states, so
/// that a run which only adds partitions merges one stored state instead of one per
/// partition. No partition has an empty path.
pub const ROLLUP_PATH: &str = "";

/// The sketches a table's earlier profiles left.
#[derive(Debug, Clone, Default)]
pub struct PriorSketches {
    /// One stored row per partition path (the one whose files match the partition's files
    /// now, where there is one); `sketch` is empty where the rollup stands in for it.
    pub partitions: HashMap<String, PartitionSketch>,
    /// The rollup of exactly the partitions whose files did not change, when one is stored.
    pub rollup: Option<PartitionSketch>,
}

/// The key of a set of partitions (path and fingerprint each), in any order: what a
/// rollup's `fingerprint` holds.
pub fn members_key<'a>(members: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    use sha2::Digest;
    let mut sorted: Vec<(&str, &str)> = members.into_iter().collect();
    sorted.sort_unstable();
    let mut h = sha2::Sha256::new();
    for (path, fingerprint) in sorted {
        h.update(path.as_bytes());
        h.update(b"\0");
        h.update(fingerprint.as_bytes());
        h.update(b"\n");
    }
    discover::short_digest(h)
}

/// Each partition's path and fingerprint, as [`profile`] finds them: what the job needs to
/// fetch only the stored sketches that can be merged.
pub fn fingerprints(
    loc: &Location,
    t: &DiscoveredTable,
) -> Result<Vec<(String, String)>, ProfileError> {
    Ok(partitions_of(loc, t)?
        .into_iter()
        .map(|p| {
            let fp = discover::fingerprint("", &p.files);
            (p.path, fp)
        })
        .collect())
}

/// What a partition-by-partition profile read and reused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PartitionCounts {
    /// Partitions whose files were read (new, changed, or stored for another schema).
    pub read: usize,
    /// Partitions whose stored sketch was merged without reading them.
    pub reused: usize,
    /// Partitions the previous profile had and the table no longer has.
    pub dropped: usize,
}

/// The merged statistics of a table and the sketches to keep.
pub(super) struct Merged {
    /// The final aggregate's one row, as a whole-table pass gives it.
    pub row: RecordBatch,
    /// The table's schema: every partition's file schema merged, then the partition columns.
    pub schema: SchemaRef,
    /// Columns whose type differs between partitions (widened to a common one).
    pub mixed: Vec<String>,
    /// The sketches to store: the partitions read now, and the table's new rollup.
    pub sketches: Vec<PartitionSketch>,
    /// The stored rows merged unread, which stay.
    pub kept: Vec<i64>,
    pub counts: PartitionCounts,
}

/// Whether `t` can be profiled partition by partition: a folder of `key=value` partitions
/// of a format read file by file.
pub fn applies(t: &DiscoveredTable) -> bool {
    !t.partition_cols.is_empty()
        && matches!(t.layout, Layout::Folder { .. })
        && matches!(
            t.format,
            Format::Parquet | Format::Csv | Format::Json | Format::Avro
        )
        && t.problem.is_none()
}

struct Partition {
    path: String,
    values: Vec<ScalarValue>,
    files: Vec<ObjectMeta>,
}

/// The table's files grouped by partition, in path order, with each partition's values
/// parsed as DataFusion parses them for a listing table.
fn partitions_of(loc: &Location, t: &DiscoveredTable) -> Result<Vec<Partition>, ProfileError> {
    let url = ListingTableUrl::parse(loc.dir_url_of(&t.root)).map_err(ProfileError::read)?;
    let names: Vec<&str> = t.partition_cols.iter().map(|(n, _)| n.as_str()).collect();
    let mut parts: BTreeMap<String, Partition> = BTreeMap::new();
    for f in &t.files {
        let outside = || {
            ProfileError::Read(format!(
                "{} is not under the table's {} partition folders",
                loc.display_of(&f.location),
                names.join("/")
            ))
        };
        let values = parse_partitions_for_path(&url, &f.location, names.iter().copied())
            .filter(|v| v.len() == names.len())
            .ok_or_else(outside)?;
        let path = url
            .strip_prefix(&f.location)
            .ok_or_else(outside)?
            .take(names.len())
            .collect::<Vec<_>>()
            .join("/");
        if !parts.contains_key(&path) {
            let values = values
                .iter()
                .zip(&t.partition_cols)
                .map(|(v, (_, int))| {
                    ScalarValue::try_from_string(v.to_string(), &partition_type(*int))
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(ProfileError::read)?;
            parts.insert(
                path.clone(),
                Partition {
                    path: path.clone(),
                    values,
                    files: Vec::new(),
                },
            );
        }
        parts
            .get_mut(&path)
            .expect("inserted above")
            .files
            .push(f.clone());
    }
    Ok(parts.into_values().collect())
}

/// A partition column's type, as the listing table declares it.
pub(super) fn partition_type(int: bool) -> DataType {
    if int { DataType::Int64 } else { DataType::Utf8 }
}

fn ipc_of(schema: &Schema, batch: Option<&RecordBatch>) -> Result<Vec<u8>, ProfileError> {
    let mut buf = Vec::new();
    let mut w = StreamWriter::try_new(&mut buf, schema).map_err(ProfileError::read)?;
    if let Some(b) = batch {
        w.write(b).map_err(ProfileError::read)?;
    }
    w.finish().map_err(ProfileError::read)?;
    drop(w);
    Ok(buf)
}

fn from_ipc(bytes: &[u8]) -> Option<(SchemaRef, Vec<RecordBatch>)> {
    let r = StreamReader::try_new(Cursor::new(bytes), None).ok()?;
    let schema = r.schema();
    let batches = r.collect::<Result<Vec<_>, _>>().ok()?;
    Some((schema, batches))
}

/// What a stored state must have been computed for to be merged: this executor, the
/// sketches' stored form and the table's column names and types. (The package version
/// alone did not change when the form went from JSON to postcard: a stored JSON state then
/// failed the merge and the table was read whole, keeping no sketches.)
fn schema_key(schema: &Schema) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(crate::VERSION.as_bytes());
    h.update(super::sketch::STORED_FORM.as_bytes());
    for f in schema.fields() {
        h.update(b"\0");
        h.update(f.name().as_bytes());
        h.update(b"\0");
        h.update(f.data_type().to_string().as_bytes());
    }
    discover::short_digest(h)
}

/// The schema of one partition's files: inferred together, or each alone and widened when
/// they disagree (as for a whole table).
async fn infer_partition(
    state: &SessionState,
    loc: &Location,
    t: &DiscoveredTable,
    opts: &ListingOptions,
    files: &[ObjectMeta],
) -> Result<SchemaRef, ProfileError> {
    let url = ListingTableUrl::parse(loc.dir_url_of(&t.root)).map_err(ProfileError::read)?;
    let store = state
        .runtime_env()
        .object_store(&url)
        .map_err(ProfileError::read)?;
    let non_empty: Vec<ObjectMeta> = files.iter().filter(|f| f.size > 0).cloned().collect();
    match opts.format.infer_schema(state, &store, &non_empty).await {
        Ok(s) => Ok(s),
        Err(e) if e.to_string().contains("Fail to merge schema") && non_empty.len() > 1 => Ok(
            super::widen_file_schemas(state, loc, &non_empty, &t.partition_cols, opts)
                .await?
                .0,
        ),
        Err(e) => Err(ProfileError::read(e)),
    }
}

/// The partitions' file schemas merged in path order: a column keeps its first place, its
/// type widens to hold every partition's, and it is nullable where any partition lacks it.
fn merge_schemas(
    schemas: &[SchemaRef],
    partition_cols: &[(String, bool)],
) -> (Schema, Vec<String>) {
    let mut merged: Vec<Field> = Vec::new();
    let mut seen_in: Vec<usize> = Vec::new();
    let mut differ: Vec<String> = Vec::new();
    let schemas: Vec<&SchemaRef> = schemas.iter().filter(|s| !s.fields().is_empty()).collect();
    for s in &schemas {
        for field in s.fields().iter() {
            if partition_cols.iter().any(|(n, _)| n == field.name()) {
                continue;
            }
            match merged.iter().position(|m| m.name() == field.name()) {
                Some(i) => {
                    let m = &merged[i];
                    let (a, b) = (m.data_type(), field.data_type());
                    if a != b
                        && !matches!(a, DataType::Null)
                        && !matches!(b, DataType::Null)
                        && !differ.contains(m.name())
                    {
                        differ.push(m.name().clone());
                    }
                    let nullable = m.is_nullable() || field.is_nullable();
                    merged[i] = Field::new(m.name(), widen(a, b), nullable);
                    seen_in[i] += 1;
                }
                None => {
                    merged.push(field.as_ref().clone());
                    seen_in.push(1);
                }
            }
        }
    }
    for (f, n) in merged.iter_mut().zip(&seen_in) {
        if *n < schemas.len() {
            *f = f.clone().with_nullable(true);
        }
    }
    (Schema::new(merged), differ)
}

/// The partial aggregate over one partition's files: its state rows, one per scan
/// partition, in one batch.
#[allow(clippy::too_many_arguments)]
async fn partial_state(
    state: &SessionState,
    format: Arc<dyn FileFormat>,
    store_url: ObjectStoreUrl,
    file_schema: SchemaRef,
    partition_fields: Vec<FieldRef>,
    table_schema: SchemaRef,
    aggs: Vec<Arc<AggregateFunctionExpr>>,
    part: &Partition,
) -> datafusion::error::Result<RecordBatch> {
    let groups_n = part
        .files
        .len()
        .clamp(1, state.config().target_partitions().max(1));
    let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); groups_n];
    for (i, f) in part.files.iter().enumerate() {
        groups[i % groups_n].push(
            PartitionedFile::new_from_meta(f.clone()).with_partition_values(part.values.clone()),
        );
    }
    let source = format.file_source(
        TableSchema::builder(file_schema)
            .with_table_partition_cols(partition_fields)
            .build(),
    );
    let config = FileScanConfigBuilder::new(store_url, source)
        .with_file_groups(groups.into_iter().map(FileGroup::from).collect())
        .build();
    let scan = format.create_physical_plan(state, config).await?;
    let filters = vec![None; aggs.len()];
    let plan: Arc<dyn ExecutionPlan> = Arc::new(AggregateExec::try_new(
        AggregateMode::Partial,
        PhysicalGroupBy::default(),
        aggs,
        filters,
        scan,
        table_schema,
    )?);
    let out = plan.schema();
    let batches = datafusion::physical_plan::collect(plan, state.task_ctx()).await?;
    Ok(datafusion::arrow::compute::concat_batches(&out, &batches)?)
}

/// Profiles `t` partition by partition, merging the states in `prior` whose partition's
/// files and table schema did not change.
pub(super) async fn profile(
    state: &SessionState,
    loc: &Location,
    t: &DiscoveredTable,
    prior: &PriorSketches,
) -> Result<Merged, ProfileError> {
    let parts = partitions_of(loc, t)?;
    let format = file_format(t);
    let opts = ListingOptions::new(format.clone());
    let fingerprints: Vec<String> = parts
        .iter()
        .map(|p| discover::fingerprint("", &p.files))
        .collect();
    let same_files = |i: usize| {
        prior
            .partitions
            .get(&parts[i].path)
            .filter(|s| s.fingerprint == fingerprints[i])
    };
    let unchanged: Vec<usize> = (0..parts.len())
        .filter(|&i| same_files(i).is_some())
        .collect();

    // Each partition's file schema: stored with an unchanged partition's sketch, inferred
    // from the files of the others.
    let mut file_schemas: Vec<Option<SchemaRef>> = (0..parts.len())
        .map(|i| {
            same_files(i)
                .and_then(|s| from_ipc(&s.file_schema))
                .map(|(schema, _)| schema)
        })
        .collect();
    let to_infer: Vec<usize> = (0..parts.len())
        .filter(|i| file_schemas[*i].is_none())
        .collect();
    // Futures collected before they are polled: a stream mapping with a closure that
    // borrows makes the future not `Send` for every lifetime (rust-lang/rust#102211).
    let inferring: Vec<_> = to_infer
        .into_iter()
        .map(|i| {
            let (opts, files) = (&opts, &parts[i].files);
            async move { (i, infer_partition(state, loc, t, opts, files).await) }
        })
        .collect();
    let inferred: Vec<(usize, Result<SchemaRef, ProfileError>)> = futures::stream::iter(inferring)
        .buffer_unordered(16)
        .collect()
        .await;
    for (i, s) in inferred {
        file_schemas[i] = Some(s?);
    }
    let file_schemas: Vec<SchemaRef> = file_schemas.into_iter().flatten().collect();
    let (file_schema, mixed) = merge_schemas(&file_schemas, &t.partition_cols);
    let file_schema = Arc::new(file_schema);
    let partition_fields: Vec<FieldRef> = t
        .partition_cols
        .iter()
        .map(|(n, int)| Arc::new(Field::new(n, partition_type(*int), false)))
        .collect();
    let table_schema: SchemaRef = Arc::new(Schema::new(
        file_schema
            .fields()
            .iter()
            .cloned()
            .chain(partition_fields.iter().cloned())
            .collect::<Vec<_>>(),
    ));
    let key = schema_key(&table_schema);
    let aggs = physical_aggregates(state, pass_aggregates(&table_schema, None), &table_schema)
        .map_err(ProfileError::read)?;
    let state_schema = AggregateExec::try_new(
        AggregateMode::Partial,
        PhysicalGroupBy::default(),
        aggs.clone(),
        vec![None; aggs.len()],
        Arc::new(EmptyExec::new(table_schema.clone())),
        table_schema.clone(),
    )
    .map_err(ProfileError::read)?
    .schema();

    let stored_state = |s: &PartitionSketch| {
        if s.schema_key != key {
            return None;
        }
        let (schema, batches) = from_ipc(&s.sketch)?;
        (schema.fields() == state_schema.fields())
            .then(|| datafusion::arrow::compute::concat_batches(&state_schema, &batches).ok())
            .flatten()
    };
    // The rollup of exactly the unchanged partitions stands in for all of them; else each
    // unchanged partition's own state, where it was computed for this schema.
    let rollup = prior
        .rollup
        .as_ref()
        .filter(|r| {
            !unchanged.is_empty()
                && r.fingerprint
                    == members_key(
                        unchanged
                            .iter()
                            .map(|&i| (parts[i].path.as_str(), fingerprints[i].as_str())),
                    )
        })
        .and_then(stored_state);
    let mut states: Vec<Option<RecordBatch>> = (0..parts.len())
        .map(|i| match &rollup {
            Some(_) => None,
            None => same_files(i).and_then(stored_state),
        })
        .collect();
    let covered = |i: usize| rollup.is_some() && same_files(i).is_some();
    let reused: Vec<usize> = (0..parts.len())
        .filter(|&i| covered(i) || states[i].is_some())
        .collect();
    let store_url = ListingTableUrl::parse(loc.dir_url_of(&t.root))
        .map_err(ProfileError::read)?
        .object_store();
    let to_read: Vec<usize> = (0..parts.len())
        .filter(|&i| !covered(i) && states[i].is_none())
        .collect();
    let computing: Vec<_> = to_read
        .iter()
        .map(|&i| {
            let (format, store_url) = (format.clone(), store_url.clone());
            let (file_schema, table_schema) = (file_schema.clone(), table_schema.clone());
            let partition_fields = partition_fields.clone();
            let part = &parts[i];
            let table = table_schema.clone();
            async move {
                // Each partition draws its sample with its own salt (its path).
                let aggs =
                    physical_aggregates(state, pass_aggregates(&table, Some(&part.path)), &table);
                let s = match aggs {
                    Ok(aggs) => {
                        partial_state(
                            state,
                            format,
                            store_url,
                            file_schema,
                            partition_fields,
                            table_schema,
                            aggs,
                            part,
                        )
                        .await
                    }
                    Err(e) => Err(e),
                };
                (i, s)
            }
        })
        .collect();
    let computed: Vec<(usize, datafusion::error::Result<RecordBatch>)> =
        futures::stream::iter(computing)
            .buffer_unordered(state.config().target_partitions().max(1))
            .collect()
            .await;
    for (i, s) in computed {
        states[i] = Some(s.map_err(|e| {
            ProfileError::Read(format!(
                "partition {}: {}",
                parts[i].path,
                crate::redact::text(&e.to_string())
            ))
        })?);
    }

    // The rollup first, then the partitions in path order: one merge order on every run.
    let mut merging: Vec<RecordBatch> = rollup.into_iter().collect();
    let mut fresh = Vec::with_capacity(to_read.len());
    let mut read_now = vec![false; parts.len()];
    for &i in &to_read {
        read_now[i] = true;
    }
    for (i, state) in states.into_iter().enumerate() {
        if let Some(state) = state {
            if read_now[i] {
                fresh.push((i, merging.len()));
            }
            merging.push(state);
        }
    }
    keep_merged_samples(&mut merging).map_err(ProfileError::read)?;
    let mut sketches = Vec::with_capacity(fresh.len() + 1);
    for (i, at) in fresh {
        sketches.push(PartitionSketch {
            path: parts[i].path.clone(),
            fingerprint: fingerprints[i].clone(),
            schema_key: key.clone(),
            rows: rows_of(&merging[at]),
            file_schema: ipc_of(&file_schemas[i], None)?,
            sketch: ipc_of(&state_schema, Some(&merging[at]))?,
            id: None,
        });
    }
    let kept = reused
        .iter()
        .filter_map(|&i| same_files(i).and_then(|s| s.id))
        .collect();
    let dropped = prior
        .partitions
        .keys()
        .filter(|p| !parts.iter().any(|x| &x.path == *p))
        .count();

    // Every state merged into one (the next run's rollup), then the same final aggregate a
    // whole-table pass ends with.
    let merged = merge_states(&aggs, &state_schema, &merging).map_err(ProfileError::read)?;
    sketches.push(PartitionSketch {
        path: ROLLUP_PATH.to_string(),
        fingerprint: members_key(
            parts
                .iter()
                .zip(&fingerprints)
                .map(|(p, f)| (p.path.as_str(), f.as_str())),
        ),
        schema_key: key.clone(),
        rows: rows_of(&merged),
        file_schema: ipc_of(&file_schema, None)?,
        sketch: ipc_of(&state_schema, Some(&merged))?,
        id: None,
    });
    let input = MemorySourceConfig::try_new_exec(&[vec![merged]], state_schema.clone(), None)
        .map_err(ProfileError::read)?;
    let filters = vec![None; aggs.len()];
    let plan: Arc<dyn ExecutionPlan> = Arc::new(
        AggregateExec::try_new(
            AggregateMode::Final,
            PhysicalGroupBy::default(),
            aggs,
            filters,
            input,
            table_schema.clone(),
        )
        .map_err(ProfileError::read)?,
    );
    let row = datafusion::physical_plan::collect(plan, state.task_ctx())
        .await
        .map_err(ProfileError::read)?
        .into_iter()
        .find(|b| b.num_rows() > 0)
        .ok_or_else(|| ProfileError::Read("the merged aggregate returned no row".into()))?;
    Ok(Merged {
        row,
        schema: table_schema,
        mixed,
        sketches,
        kept,
        counts: PartitionCounts {
            read: to_read.len(),
            reused: reused.len(),
            dropped,
        },
    })
}

/// The states merged into one state row, as the final aggregate merges them (each
/// aggregate's accumulator takes the rows in order), so that the final aggregate over it
/// gives what it gives over them all.
fn merge_states(
    aggs: &[Arc<AggregateFunctionExpr>],
    state_schema: &SchemaRef,
    states: &[RecordBatch],
) -> datafusion::error::Result<RecordBatch> {
    let mut columns = Vec::with_capacity(state_schema.fields().len());
    for agg in aggs {
        let at = columns.len();
        let n = agg.state_fields()?.len();
        let mut acc = agg.create_accumulator()?;
        for b in states {
            acc.merge_batch(&b.columns()[at..at + n])?;
        }
        for (i, v) in acc.state()?.into_iter().enumerate() {
            let to = state_schema.field(at + i).data_type();
            let a = v.to_array()?;
            columns.push(if a.data_type() == to {
                a
            } else {
                datafusion::arrow::compute::cast(&a, to)?
            });
        }
    }
    Ok(RecordBatch::try_new(state_schema.clone(), columns)?)
}

/// Each column's sampled values kept only where the merged sample holds them: with many
/// partitions, each keeps about its share of the table's sample instead of a sample of its
/// own, which makes the stored sketches a hundred times smaller on a hundred partitions.
fn keep_merged_samples(states: &mut [RecordBatch]) -> datafusion::error::Result<()> {
    use super::sketch::{SAMPLE_SIZE, Sketch};
    use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryArray};

    let Some(first) = states.first() else {
        return Ok(());
    };
    let schema = first.schema();
    for (c, field) in schema.fields().iter().enumerate() {
        if !field.name().ends_with("[sketch]") {
            continue;
        }
        let mut sketches: Vec<Vec<Option<Sketch>>> = Vec::with_capacity(states.len());
        for b in states.iter() {
            let col = b.column(c).as_binary::<i32>();
            sketches.push(
                col.iter()
                    .map(|v| v.map(Sketch::from_bytes).transpose())
                    .collect::<datafusion::error::Result<_>>()?,
            );
        }
        let mut priorities: Vec<f64> = sketches
            .iter_mut()
            .flatten()
            .flatten()
            .flat_map(|s| s.priorities())
            .collect();
        if priorities.len() <= SAMPLE_SIZE {
            continue;
        }
        priorities.select_nth_unstable_by(SAMPLE_SIZE - 1, f64::total_cmp);
        let tau = priorities[SAMPLE_SIZE - 1];
        // Strictly below: the k-th itself is kept.
        let tau = f64::from_bits(tau.to_bits() + 1);
        for (b, row) in states.iter_mut().zip(sketches) {
            let trimmed: BinaryArray = row
                .into_iter()
                .map(|s| {
                    s.map(|mut s| {
                        s.keep_below(tau);
                        s.to_bytes()
                    })
                })
                .collect();
            let mut columns: Vec<ArrayRef> = b.columns().to_vec();
            if trimmed.null_count() != columns[c].null_count() {
                return Err(datafusion::error::DataFusionError::Internal(
                    "a trimmed sketch lost a row".into(),
                ));
            }
            columns[c] = Arc::new(trimmed);
            *b = RecordBatch::try_new(b.schema(), columns)?;
        }
    }
    Ok(())
}

/// The rows a partition's state counted (the `__rows` count's state, summed).
fn rows_of(batch: &RecordBatch) -> i64 {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    batch
        .schema()
        .fields()
        .iter()
        .position(|f| f.name().starts_with("__rows"))
        .and_then(|i| batch.column(i).as_primitive_opt::<Int64Type>())
        .map(|a| a.iter().flatten().sum())
        .unwrap_or(0)
}
