//! Profiling: reads each discovered table with DataFusion and computes, in one streaming
//! aggregate pass, the row count and per-column null count, approximate distinct count,
//! min and max, and each column's sketch (moments, lengths, frequent values, a random
//! sample: [`sketch`]), then the table's quality ([`quality`]). Parquet and Delta row counts come from
//! metadata (footers, the Delta log) without scanning data. A table that cannot be read
//! fails alone, with its reason.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::catalog::TableProvider;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::arrow::ArrowFormat;
use datafusion::datasource::file_format::avro::AvroFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::SessionState;
use datafusion::functions_aggregate::expr_fn::{approx_distinct, count, max, min};
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, cast,
    ident,
};
use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use parquet::file::metadata::ParquetMetaDataReader;

use crate::discover::{Compression, DiscoveredTable, Format, Layout};
use crate::redact;
use crate::storage::line_limit::{Classify, LineLimitStore, TextCodec};
use crate::storage::location::Location;

pub mod drift;
pub mod limits;
pub mod partitions;
pub mod quality;
pub mod sample;
pub mod semantic;
pub mod sketch;
pub use limits::Limits;
pub use quality::Quality;
pub use sample::SampleSpec;

/// What a job asks of profiling beyond the defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProfileOptions {
    pub samples: SampleMode,
    pub sample: Option<SampleSpec>,
}

/// Above the exactly counted values, a column whose distinct-count estimate is at least
/// this share of the rows (the estimate's error is about 1%) and whose random sample repeats
/// no value is a candidate key.
const KEY_DISTINCT_SHARE: f64 = 0.97;

/// Up to this many distinct non-null sample values per column.
pub const SAMPLE_VALUES: usize = 5;
/// Each sample value is cut to this many characters.
pub const SAMPLE_MAX_CHARS: usize = 256;

/// What a job stores of the profiled values themselves (`--samples`, payload
/// `profile.samples`): sample values, top values and text min/max.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SampleMode {
    /// No sample or top values of any column, and no min/max of personal columns.
    None,
    /// Values of personal columns (e-mail, phone, card, IBAN, national id, IP) masked.
    #[default]
    Masked,
    /// Every value as read.
    Raw,
}

impl std::str::FromStr for SampleMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "masked" => Ok(Self::Masked),
            "raw" => Ok(Self::Raw),
            other => Err(format!(
                "{other:?} is not a samples mode: none, masked or raw"
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("{0}")]
    Discovery(String),
    #[error("cannot read table: {0}")]
    Read(String),
    #[error(
        "profiling the table needs more memory than --memory-limit leaves ({limit} for every table being profiled at once): raise --memory-limit or lower --table-concurrency ({reason})"
    )]
    Memory { limit: String, reason: String },
}

impl ProfileError {
    fn read(e: impl std::fmt::Display) -> Self {
        Self::Read(redact::text(&e.to_string()))
    }

    /// A read error, or the memory pool's refusal told as the option to change.
    fn from_datafusion(e: datafusion::error::DataFusionError, limits: &Limits) -> Self {
        if matches!(
            e.find_root(),
            datafusion::error::DataFusionError::ResourcesExhausted(_)
        ) {
            // DataFusion lists the pool's consumers first; what failed is said last.
            let text = e.find_root().to_string();
            let what = text.rsplit("Error: ").next().unwrap_or(&text).trim();
            return Self::Memory {
                limit: limits::human_bytes(limits.memory_bytes),
                reason: redact::text(what),
            };
        }
        Self::read(e)
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ColumnProfile {
    pub column_name: String,
    pub data_type: String,
    pub position: i32,
    pub is_nullable: bool,
    pub sample_values: Vec<String>,
    pub null_count: i64,
    pub distinct_count: Option<i64>,
    pub min_value: Option<String>,
    pub max_value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub null_fraction: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distinct_fraction: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stddev: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_double: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_double: Option<f64>,
    /// Microseconds since the epoch, UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_timestamp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_timestamp: Option<i64>,
    /// `{"p05": .., "p25": .., "p50": .., "p75": .., "p95": .., "exact": bool}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantiles: Option<JsonText>,
    /// `{"edges": [21 bounds], "counts": [20 counts], "exact": bool}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub histogram: Option<JsonText>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zero_count: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negative_count: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_length: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avg_length: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_length: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blank_count: Option<i64>,
    /// Most frequent values, most frequent first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub top_values: Vec<TopValue>,
    /// How far a top value's count may be from the true one (0: exact counts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_values_error: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub semantic_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub semantic_fraction: Option<f64>,
    pub pii: bool,
    /// The share of the table's rows the statistics were computed over (1: all).
    pub profiled_fraction: f64,
}

/// A statistic kept as its compact JSON text: a job's result holds one per column, and as
/// text it takes a tenth of the memory of a parsed value. Shown as the JSON value it is.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonText(pub String);

impl JsonText {
    fn of(v: serde_json::Value) -> Self {
        Self(v.to_string())
    }
}

impl serde::Serialize for JsonText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde_json::from_str::<serde_json::Value>(&self.0)
            .map_err(serde::ser::Error::custom)?
            .serialize(s)
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TopValue {
    pub value: String,
    pub count: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TableStatus {
    Ok,
    Failed,
}

impl TableStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TableProfile {
    pub table_name: String,
    pub file_path: String,
    pub file_type: String,
    pub compression: Compression,
    pub file_count: usize,
    pub row_count: Option<i64>,
    pub column_count: i32,
    pub size_bytes: i64,
    pub partition_columns: Vec<String>,
    pub status: TableStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Columns whose CSV values contradicted the inferred type and were read as STRING.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub widened_columns: Vec<String>,
    /// Columns whose type differs between the table's files (widened to a common one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mixed_columns: Vec<String>,
    /// Columns with no nulls and a distinct value per row.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub candidate_keys: Vec<String>,
    /// Rows equal to an earlier row (approximate: a distinct count of row hashes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_rows: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<Quality>,
    /// The share of the table read (1: all of it; below, a sample: `--sample-rows`,
    /// `--sample-fraction`). With a sample, the row count of a text table is an estimate.
    pub profiled_fraction: f64,
    /// What the profile depends on (see [`crate::discover::DiscoveredTable::fingerprint`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The run this profile was computed in, when it was carried from an earlier run (the
    /// table's fingerprint did not change): its columns are in the warehouse, not here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carried_from: Option<String>,
    /// Of a table profiled partition by partition: the partitions read and those whose
    /// stored sketches were merged unread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<partitions::PartitionCounts>,
    /// The sketches to store for the next run (see [`partitions`]).
    #[serde(skip)]
    pub partition_sketches: Vec<partitions::PartitionSketch>,
    /// The stored partition sketches this profile merged unread: they stay.
    #[serde(skip)]
    pub kept_sketches: Vec<i64>,
    pub columns: Vec<ColumnProfile>,
}

/// Spark SQL's name for an Arrow type, as Databricks shows it.
pub fn spark_type(dt: &DataType) -> String {
    match dt {
        DataType::Null => "VOID".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 | DataType::UInt8 => "SMALLINT".into(),
        DataType::Int32 | DataType::UInt16 => "INT".into(),
        DataType::Int64 | DataType::UInt32 => "BIGINT".into(),
        DataType::UInt64 => "DECIMAL(20,0)".into(),
        DataType::Float16 | DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal32(p, s) | DataType::Decimal64(p, s) => format!("DECIMAL({p},{s})"),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("DECIMAL({p},{s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "STRING".into(),
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => "BINARY".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMP".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP_NTZ".into(),
        // Spark has no TIME type; readers see these as strings or integers.
        DataType::Time32(_) | DataType::Time64(_) => "STRING".into(),
        DataType::Duration(_) => "INTERVAL DAY TO SECOND".into(),
        DataType::Interval(_) => "INTERVAL".into(),
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _) => format!("ARRAY<{}>", spark_type(f.data_type())),
        DataType::Struct(fields) => {
            let inner: Vec<String> = fields
                .iter()
                .map(|f| format!("{}: {}", f.name(), spark_type(f.data_type())))
                .collect();
            format!("STRUCT<{}>", inner.join(", "))
        }
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => format!(
                "MAP<{}, {}>",
                spark_type(kv[0].data_type()),
                spark_type(kv[1].data_type())
            ),
            other => format!("MAP<{}>", spark_type(other)),
        },
        DataType::Dictionary(_, v) => spark_type(v),
        DataType::RunEndEncoded(_, v) => spark_type(v.data_type()),
        DataType::Union(..) => "STRING".into(),
    }
}

fn is_nested(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::List(_)
            | DataType::LargeList(_)
            | DataType::ListView(_)
            | DataType::LargeListView(_)
            | DataType::FixedSizeList(..)
            | DataType::Struct(_)
            | DataType::Map(..)
            | DataType::Union(..)
    )
}

fn value_type(dt: &DataType) -> &DataType {
    match dt {
        DataType::Dictionary(_, v) => value_type(v),
        other => other,
    }
}

/// Reinterprets float values as integers of the same width, without copying: equal floats
/// have equal bits, so distinct counts over the bits are distinct counts over the floats
/// (DataFusion's `approx_distinct` has no float implementation; a cast to text would cost
/// more than the rest of the pass).
#[derive(Debug, PartialEq, Eq, Hash)]
struct FloatBits {
    signature: Signature,
}

impl FloatBits {
    fn udf() -> ScalarUDF {
        ScalarUDF::from(Self {
            signature: Signature::uniform(
                1,
                vec![DataType::Float32, DataType::Float64],
                Volatility::Immutable,
            ),
        })
    }

    fn reinterpret(a: &ArrayRef) -> datafusion::error::Result<ArrayRef> {
        use datafusion::arrow::array::{AsArray, Int32Array, Int64Array};
        use datafusion::arrow::buffer::ScalarBuffer;
        use datafusion::arrow::datatypes::{Float32Type, Float64Type};
        match a.data_type() {
            DataType::Float64 => {
                let f = a.as_primitive::<Float64Type>();
                let bits = ScalarBuffer::<i64>::from(f.values().inner().clone());
                Ok(Arc::new(Int64Array::new(bits, f.nulls().cloned())))
            }
            DataType::Float32 => {
                let f = a.as_primitive::<Float32Type>();
                let bits = ScalarBuffer::<i32>::from(f.values().inner().clone());
                Ok(Arc::new(Int32Array::new(bits, f.nulls().cloned())))
            }
            other => datafusion::common::exec_err!("float bits of {other}"),
        }
    }
}

impl ScalarUDFImpl for FloatBits {
    fn name(&self) -> &str {
        "nuvyn_float_bits"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(match args.first() {
            Some(DataType::Float32) => DataType::Int32,
            _ => DataType::Int64,
        })
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        match &args.args[0] {
            ColumnarValue::Array(a) => Ok(ColumnarValue::Array(Self::reinterpret(a)?)),
            ColumnarValue::Scalar(s) => {
                let a = Self::reinterpret(&s.to_array()?)?;
                Ok(ColumnarValue::Scalar(
                    datafusion::scalar::ScalarValue::try_from_array(&a, 0)?,
                ))
            }
        }
    }
}

/// The expression whose approximate distinct count stands for the column's.
fn distinct_expr(c: Expr, dt: &DataType) -> Option<Expr> {
    let v = value_type(dt);
    if matches!(v, DataType::Null | DataType::RunEndEncoded(..)) || is_nested(v) {
        return None;
    }
    // A dictionary-encoded column (a pandas category written to Parquet) is counted over
    // its values: `approx_distinct` takes no dictionaries.
    let c = if matches!(dt, DataType::Dictionary(..)) {
        cast(c, v.clone())
    } else {
        c
    };
    match v {
        DataType::Float32 | DataType::Float64 => {
            Some(approx_distinct(FloatBits::udf().call(vec![c])))
        }
        // Half floats: the text form is exact, if slower.
        DataType::Float16 => Some(approx_distinct(cast(c, DataType::Utf8))),
        _ => Some(approx_distinct(c)),
    }
}

fn minmax_ok(dt: &DataType) -> bool {
    let d = value_type(dt);
    !is_nested(d)
        && !matches!(
            d,
            DataType::Null
                | DataType::Binary
                | DataType::LargeBinary
                | DataType::BinaryView
                | DataType::FixedSizeBinary(_)
                | DataType::Interval(_)
        )
}

fn compression_type(c: Compression) -> FileCompressionType {
    match c {
        Compression::None => FileCompressionType::UNCOMPRESSED,
        Compression::Gzip => FileCompressionType::GZIP,
        Compression::Bzip2 => FileCompressionType::BZIP2,
        Compression::Xz => FileCompressionType::XZ,
        Compression::Zstd => FileCompressionType::ZSTD,
    }
}

fn file_format(t: &DiscoveredTable) -> Arc<dyn FileFormat> {
    let ct = compression_type(t.compression);
    match t.format {
        Format::Csv => {
            let d = t.csv.unwrap_or(crate::discover::CsvDialect {
                delimiter: b',',
                has_header: true,
            });
            Arc::new(
                CsvFormat::default()
                    .with_delimiter(d.delimiter)
                    .with_has_header(d.has_header)
                    .with_file_compression_type(ct)
                    .with_truncated_rows(true)
                    .with_schema_infer_max_rec(1000),
            )
        }
        Format::Json => Arc::new(
            JsonFormat::default()
                .with_file_compression_type(ct)
                .with_newline_delimited(!t.json_array)
                .with_schema_infer_max_rec(1000),
        ),
        Format::Parquet | Format::Delta => Arc::new(ParquetFormat::default()),
        Format::Avro => Arc::new(AvroFormat),
        Format::Arrow => Arc::new(ArrowFormat),
    }
}

/// A listing table over the discovered files; `file_schema` forces the schema (after a CSV
/// type contradiction), otherwise it is inferred.
async fn listing_table(
    state: &SessionState,
    loc: &Location,
    t: &DiscoveredTable,
    file_schema: Option<SchemaRef>,
) -> Result<(Arc<ListingTable>, Vec<String>), ProfileError> {
    // A folder is handed over only for its partition values: DataFusion lists a folder again
    // (a stat per file on local disk, for every table), while the discovered files' sizes
    // are known and the store answers their HEADs from the listing.
    let (urls, ext) = match &t.layout {
        Layout::Folder { suffix } if !t.partition_cols.is_empty() => {
            (vec![loc.dir_url_of(&t.root)], suffix.clone())
        }
        _ => (
            t.files.iter().map(|f| loc.url_of(&f.location)).collect(),
            String::new(),
        ),
    };
    let urls = urls
        .iter()
        .map(ListingTableUrl::parse)
        .collect::<Result<Vec<_>, _>>()
        .map_err(ProfileError::read)?;
    let mut opts = ListingOptions::new(file_format(t)).with_file_extension(ext);
    if !t.partition_cols.is_empty() {
        opts = opts.with_table_partition_cols(
            t.partition_cols
                .iter()
                .map(|(n, int)| {
                    (
                        n.clone(),
                        if *int {
                            DataType::Int64
                        } else {
                            DataType::Utf8
                        },
                    )
                })
                .collect(),
        );
    }
    let config =
        ListingTableConfig::new_with_multi_paths(urls.clone()).with_listing_options(opts.clone());
    let file_schema = match file_schema {
        None if t.format == Format::Arrow => arrow_ipc_schema(loc, t).await?,
        other => other,
    };
    let mut mixed = Vec::new();
    // Inferred from every discovered file (DataFusion's own inference lists the folder again,
    // and of several paths reads only the first); empty files say nothing of a schema.
    let inferred = match file_schema {
        Some(s) => Ok(s),
        None => {
            let Some(url) = urls.first() else {
                return Err(ProfileError::Read(format!("{}: no files", t.name)));
            };
            let store = state
                .runtime_env()
                .object_store(url)
                .map_err(ProfileError::read)?;
            let files: Vec<object_store::ObjectMeta> =
                t.files.iter().filter(|f| f.size > 0).cloned().collect();
            opts.format.infer_schema(state, &store, &files).await
        }
    };
    let config = match inferred {
        Ok(s) => config.with_schema(s),
        // Part files of one table often disagree on an inferred type (`30` in one CSV,
        // `10.5` in the next): infer each file alone and widen instead of failing.
        Err(e) => match e {
            e if e.to_string().contains("Fail to merge schema") && t.files.len() > 1 => {
                let (merged, differ) =
                    widen_file_schemas(state, loc, &t.files, &t.partition_cols, &opts).await?;
                tracing::info!(table = %t.name, columns = ?differ, "part files disagree on column types; widened");
                mixed = differ;
                ListingTableConfig::new_with_multi_paths(urls)
                    .with_listing_options(opts)
                    .with_schema(merged)
            }
            e => return Err(ProfileError::read(e)),
        },
    };
    Ok((
        Arc::new(ListingTable::try_new(config).map_err(ProfileError::read)?),
        mixed,
    ))
}

/// The schema of an Arrow IPC file table from its files' footers (two ranged reads each), or
/// `None` for the stream format (no footer; DataFusion reads its first message). DataFusion
/// infers a file's schema from its first message too when a store answers with a byte
/// stream (every remote store, and the small-object reader), which fails on files whose
/// schema message is not right after the magic (arrow-rs pads it): the footer names it.
async fn arrow_ipc_schema(
    loc: &Location,
    t: &DiscoveredTable,
) -> Result<Option<SchemaRef>, ProfileError> {
    use datafusion::arrow::ipc;
    let mut schemas = Vec::new();
    for f in &t.files {
        let bad = |why: String| {
            ProfileError::Read(format!("{}: not an Arrow IPC file: {why}", f.location))
        };
        let size = f.size;
        if size < 16 {
            return Err(bad(format!("{size} bytes")));
        }
        let read = |r: std::ops::Range<u64>| async move {
            loc.store
                .get_range(&f.location, r)
                .await
                .map_err(|e| ProfileError::Read(redact::text(&e.to_string())))
        };
        let tail = read(size - 10..size).await?;
        let tail: [u8; 10] = tail[..]
            .try_into()
            .map_err(|_| bad("short footer".into()))?;
        if &tail[4..] != b"ARROW1" {
            return Ok(None);
        }
        let len = ipc::reader::read_footer_length(tail).map_err(|e| bad(e.to_string()))? as u64;
        if len + 10 > size {
            return Err(bad(format!("footer of {len} bytes in {size}")));
        }
        let footer = read(size - 10 - len..size - 10).await?;
        let footer = ipc::root_as_footer(&footer).map_err(|e| bad(e.to_string()))?;
        let schema = footer
            .schema()
            .ok_or_else(|| bad("the footer has no schema".into()))?;
        schemas.push(ipc::convert::fb_to_schema(schema));
    }
    Ok(Some(Arc::new(
        Schema::try_merge(schemas).map_err(|e| ProfileError::Read(e.to_string()))?,
    )))
}

/// The type two files' inferred types widen to.
fn widen(a: &DataType, b: &DataType) -> DataType {
    use DataType::*;
    match (a, b) {
        (x, y) if x == y => x.clone(),
        (Null, x) | (x, Null) => x.clone(),
        (Int8 | Int16 | Int32 | Int64, Int8 | Int16 | Int32 | Int64) => Int64,
        (
            Int8 | Int16 | Int32 | Int64 | Float32 | Float64,
            Int8 | Int16 | Int32 | Int64 | Float32 | Float64,
        ) => Float64,
        _ => Utf8,
    }
}

/// Infers every file's schema alone and merges them by name, in first-seen order, widening
/// types that disagree; with the names of the columns whose types disagreed.
async fn widen_file_schemas(
    state: &SessionState,
    loc: &Location,
    files: &[object_store::ObjectMeta],
    partition_cols: &[(String, bool)],
    opts: &ListingOptions,
) -> Result<(SchemaRef, Vec<String>), ProfileError> {
    let mut merged: Vec<Field> = Vec::new();
    let mut differ: Vec<String> = Vec::new();
    for f in files {
        let url = ListingTableUrl::parse(loc.url_of(&f.location)).map_err(ProfileError::read)?;
        let single = ListingOptions::new(opts.format.clone()).with_file_extension("");
        let schema = single.infer_schema(state, &url).await.map_err(|e| {
            ProfileError::Read(format!(
                "{}: {}",
                loc.display_of(&f.location),
                redact::text(&e.to_string())
            ))
        })?;
        for field in schema.fields().iter() {
            match merged.iter_mut().find(|m| m.name() == field.name()) {
                Some(m) => {
                    if m.data_type() != field.data_type()
                        && !matches!(field.data_type(), DataType::Null)
                        && !matches!(m.data_type(), DataType::Null)
                        && !differ.contains(m.name())
                    {
                        differ.push(m.name().clone());
                    }
                    *m = Field::new(m.name(), widen(m.data_type(), field.data_type()), true)
                }
                None => merged.push(Field::new(field.name(), field.data_type().clone(), true)),
            }
        }
    }
    // Partition columns come from paths, not files.
    merged.retain(|f| !partition_cols.iter().any(|(n, _)| n == f.name()));
    Ok((Arc::new(Schema::new(merged)), differ))
}

/// The column an arrow-csv type error names ("... for column 3 at line 1001 ...").
fn csv_error_column(msg: &str) -> Option<usize> {
    let at = msg.find("for column ")? + "for column ".len();
    let digits: String = msg[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// One column's aggregates: nulls, approximate distinct count, min, max, and its sketch.
struct ColumnStats {
    nulls: i64,
    distinct: Option<i64>,
    min: Option<String>,
    max: Option<String>,
    sketch: Option<sketch::Sketch>,
}

struct Stats {
    rows: i64,
    /// Distinct rows (approximate), when every column can be hashed.
    distinct_rows: Option<i64>,
    per_column: Vec<ColumnStats>,
}

fn cell_to_string(col: &ArrayRef, row: usize) -> Option<String> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::DataType as T;
    if col.is_null(row) {
        return None;
    }
    // Text is cut where it lies: a multi-megabyte value is never copied whole to be shown.
    match col.data_type() {
        T::Utf8 => return Some(cut(col.as_string::<i32>().value(row))),
        T::LargeUtf8 => return Some(cut(col.as_string::<i64>().value(row))),
        T::Utf8View => return Some(cut(col.as_string_view().value(row))),
        _ => {}
    }
    let opts = FormatOptions::default();
    let f = ArrayFormatter::try_new(col.as_ref(), &opts).ok()?;
    Some(cut(&f.value(row).to_string()))
}

fn cut(s: &str) -> String {
    s.chars().take(SAMPLE_MAX_CHARS).collect()
}

/// A hash of each row's values: equal rows hash equal, so the distinct count of the
/// hashes counts distinct rows.
#[derive(Debug, PartialEq, Eq, Hash)]
struct RowHash {
    signature: Signature,
}

impl RowHash {
    fn udf() -> ScalarUDF {
        ScalarUDF::from(Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        })
    }
}

impl ScalarUDFImpl for RowHash {
    fn name(&self) -> &str {
        "nuvyn_row_hash"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::UInt64)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut hashes = vec![0u64; args.number_rows];
        let state = datafusion::common::hash_utils::RandomState::with_seed(0x6e75_7679);
        datafusion::common::hash_utils::create_hashes(&arrays, &state, &mut hashes)?;
        Ok(ColumnarValue::Array(Arc::new(
            datafusion::arrow::array::UInt64Array::from(hashes),
        )))
    }
}

/// How the aggregate pass is planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// DataFusion plans the query: parallel partial aggregates over split scans (big tables).
    Planned,
    /// The aggregate is built directly over the table's scan, with the same functions and
    /// coercions: on a small table planning a query costs more than reading it.
    Direct,
}

/// The aggregates of one pass (aliased aggregate function calls) over `schema`; `salt` goes
/// into the column sketches' random draws (a partition's path, see [`partitions`]).
fn pass_aggregates(schema: &Schema, salt: Option<&str>) -> Vec<Expr> {
    let mut aggs = vec![count(datafusion::logical_expr::lit(1)).alias("__rows")];
    let profile = sketch::ProfileAggregate::udaf();
    for (i, f) in schema.fields().iter().enumerate() {
        let c = ident(f.name());
        aggs.push(count(c.clone()).alias(format!("nn{i}")));
        if let Some(d) = distinct_expr(c.clone(), f.data_type()) {
            aggs.push(d.alias(format!("d{i}")));
        }
        if minmax_ok(f.data_type()) {
            aggs.push(min(c.clone()).alias(format!("mn{i}")));
            aggs.push(max(c.clone()).alias(format!("mx{i}")));
        }
        if !matches!(f.data_type(), DataType::Null) {
            let args = match salt {
                Some(salt) => vec![c, datafusion::logical_expr::lit(salt)],
                None => vec![c],
            };
            aggs.push(profile.call(args).alias(format!("sk{i}")));
        }
    }
    let hashable = !schema.fields().is_empty()
        && schema
            .fields()
            .iter()
            .all(|f| !is_nested(value_type(f.data_type())));
    if hashable {
        let cols = schema.fields().iter().map(|f| ident(f.name())).collect();
        aggs.push(approx_distinct(RowHash::udf().call(cols)).alias("__distinct_rows"));
    }
    aggs
}

/// The pass's one-row result, by either route.
async fn aggregate_row(
    state: &SessionState,
    provider: Arc<dyn TableProvider>,
    route: Route,
) -> datafusion::error::Result<datafusion::arrow::array::RecordBatch> {
    let aggs = pass_aggregates(&provider.schema(), None);
    let plan = match route {
        Route::Planned => {
            let plan = LogicalPlanBuilder::scan(
                "t",
                datafusion::datasource::provider_as_source(provider),
                None,
            )?
            .aggregate(Vec::<Expr>::new(), aggs)?
            .build()?;
            state.create_physical_plan(&plan).await?
        }
        Route::Direct => direct_aggregate(state, provider, aggs).await?,
    };
    let batches = datafusion::physical_plan::collect(plan, state.task_ctx()).await?;
    batches
        .into_iter()
        .find(|b| b.num_rows() > 0)
        .ok_or_else(|| {
            datafusion::error::DataFusionError::Internal("aggregate returned no row".into())
        })
}

/// One aggregate over the table's scan as a physical plan, without logical planning: each
/// aliased call's arguments become physical expressions (with the session's coercions) and
/// are cast to the types the function's signature coerces them to, as the analyzer would.
async fn direct_aggregate(
    state: &SessionState,
    provider: Arc<dyn TableProvider>,
    aggs: Vec<Expr>,
) -> datafusion::error::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
    use datafusion::physical_plan::ExecutionPlanProperties;
    use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, PhysicalGroupBy};
    use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;

    let mut input = provider.scan(state, None, &[], None).await?;
    if input.output_partitioning().partition_count() > 1 {
        input = Arc::new(CoalescePartitionsExec::new(input));
    }
    let schema = input.schema();
    let built = physical_aggregates(state, aggs, &schema)?;
    let filters = vec![None; built.len()];
    Ok(Arc::new(AggregateExec::try_new(
        AggregateMode::Single,
        PhysicalGroupBy::default(),
        built,
        filters,
        input,
        schema,
    )?))
}

/// The pass's aliased aggregate calls as physical aggregates over `schema`: each call's
/// arguments become physical expressions (with the session's coercions) and are cast to the
/// types the function's signature coerces them to, as the analyzer would.
fn physical_aggregates(
    state: &SessionState,
    aggs: Vec<Expr>,
    schema: &SchemaRef,
) -> datafusion::error::Result<Vec<Arc<datafusion::physical_expr::aggregate::AggregateFunctionExpr>>>
{
    use datafusion::common::{DFSchema, plan_err};
    use datafusion::logical_expr::expr::{AggregateFunction, Alias};
    use datafusion::logical_expr::type_coercion::functions::fields_with_udf;
    use datafusion::physical_expr::aggregate::AggregateExprBuilder;

    let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
    let mut built = Vec::with_capacity(aggs.len());
    for e in aggs {
        let Expr::Alias(Alias { expr, name, .. }) = e else {
            return plan_err!("an aggregate of the pass has no name: {e}");
        };
        let Expr::AggregateFunction(AggregateFunction { func, params }) = *expr else {
            return plan_err!("{name} is not an aggregate call");
        };
        let mut args = params
            .args
            .iter()
            .map(|a| state.create_physical_expr(a.clone(), &df_schema))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let fields = args
            .iter()
            .map(|a| a.return_field(schema))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let coerced = fields_with_udf(&fields, func.as_ref())?;
        for (a, (from, to)) in args.iter_mut().zip(fields.iter().zip(&coerced)) {
            if from.data_type() != to.data_type() {
                *a = datafusion::physical_expr::expressions::cast(
                    a.clone(),
                    schema,
                    to.data_type().clone(),
                )?;
            }
        }
        built.push(Arc::new(
            AggregateExprBuilder::new(func, args)
                .schema(schema.clone())
                .alias(name)
                .build()?,
        ));
    }
    Ok(built)
}

/// One aggregate pass over the whole table: counts, distinct counts, min/max and each
/// column's sketch, and the distinct count of row hashes.
async fn aggregate_pass(
    state: &SessionState,
    provider: Arc<dyn TableProvider>,
    route: Route,
) -> datafusion::error::Result<Stats> {
    let schema = provider.schema();
    let batch = aggregate_row(state, provider, route).await?;
    stats_of(&batch, &schema)
}

/// The statistics in the pass's one-row result (named as [`pass_aggregates`] names them).
fn stats_of(
    batch: &datafusion::arrow::array::RecordBatch,
    schema: &Schema,
) -> datafusion::error::Result<Stats> {
    let int_at = |name: &str| -> Option<i64> {
        let col = batch.column_by_name(name)?;
        let casted = datafusion::arrow::compute::cast(col, &DataType::Int64).ok()?;
        let a = casted
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>()?;
        (!a.is_null(0)).then(|| a.value(0))
    };
    let rows = int_at("__rows").unwrap_or(0);
    let mut per_column = Vec::with_capacity(schema.fields().len());
    for i in 0..schema.fields().len() {
        let non_null = int_at(&format!("nn{i}")).unwrap_or(0);
        let distinct = int_at(&format!("d{i}")).map(|d| d.min(non_null));
        let mn = batch
            .column_by_name(&format!("mn{i}"))
            .and_then(|c| cell_to_string(c, 0));
        let mx = batch
            .column_by_name(&format!("mx{i}"))
            .and_then(|c| cell_to_string(c, 0));
        let sketch = match batch.column_by_name(&format!("sk{i}")) {
            Some(c) => {
                use datafusion::arrow::array::AsArray;
                let b = c.as_binary::<i32>();
                if b.is_null(0) {
                    None
                } else {
                    Some(sketch::Sketch::from_bytes(b.value(0))?)
                }
            }
            None => None,
        };
        per_column.push(ColumnStats {
            nulls: rows - non_null,
            distinct,
            min: mn,
            max: mx,
            sketch,
        });
    }
    let distinct_rows = int_at("__distinct_rows").map(|d| d.min(rows));
    Ok(Stats {
        rows,
        distinct_rows,
        per_column,
    })
}

/// Bytes fetched from a Parquet file's end in the first request: enough for most footers,
/// so a row count usually costs one range read.
const FOOTER_GUESS: u64 = 64 * 1024;

/// The row counts of one Parquet file's row groups, from its footer. Explicit ranges only:
/// Azure does not serve suffix ranges, and the size is known from the listing.
pub async fn parquet_file_rows(
    loc: &Location,
    f: &object_store::ObjectMeta,
) -> Result<Vec<i64>, String> {
    let size = f.size;
    if size < 12 {
        return Err(format!("{size} bytes is too small for a Parquet file"));
    }
    let start = size.saturating_sub(FOOTER_GUESS);
    let tail = loc
        .store
        .get_range(&f.location, start..size)
        .await
        .map_err(|e| redact::text(&e.to_string()))?;
    let n = tail.len();
    if &tail[n - 4..] != b"PAR1" {
        return Err(
            "not a Parquet file (no PAR1 footer magic; encrypted footers are not supported)".into(),
        );
    }
    let len = u32::from_le_bytes(tail[n - 8..n - 4].try_into().expect("4 bytes")) as u64;
    if len + 8 > size {
        return Err(format!(
            "corrupt Parquet footer: metadata length {len} exceeds file size {size}"
        ));
    }
    let metadata = if len + 8 <= n as u64 {
        tail.slice(n - 8 - len as usize..n - 8)
    } else {
        loc.store
            .get_range(&f.location, size - 8 - len..size - 8)
            .await
            .map_err(|e| redact::text(&e.to_string()))?
    };
    let md = ParquetMetaDataReader::decode_metadata(&metadata)
        .map_err(|e| format!("corrupt Parquet footer: {e}"))?;
    Ok(md.row_groups().iter().map(|g| g.num_rows()).collect())
}

/// Each file's row-group row counts from the Parquet footers, a bounded number of files at
/// once, in the table's file order.
async fn parquet_row_groups(
    loc: &Location,
    t: &DiscoveredTable,
) -> Result<Vec<(String, Vec<i64>)>, ProfileError> {
    futures::stream::iter(t.files.iter().cloned().map(|f| {
        let loc = loc.clone();
        async move {
            parquet_file_rows(&loc, &f)
                .await
                .map(|g| (f.location.to_string(), g))
                .map_err(|e| ProfileError::Read(format!("{}: {e}", loc.display_of(&f.location))))
        }
    }))
    .buffered(16)
    .try_collect()
    .await
}

/// Bytes per line at the head of a text table's first file (one ranged read), to turn
/// `--sample-rows` into a share of its bytes.
async fn bytes_per_line(loc: &Location, t: &DiscoveredTable) -> Option<f64> {
    let f = t.files.first()?;
    let head = loc
        .store
        .get_range(&f.location, 0..f.size.min(64 << 10))
        .await
        .ok()?;
    let lines = memchr::memchr_iter(b'\n', &head).count();
    (lines > 1).then(|| head.len() as f64 / lines as f64)
}

/// How a table is cut down for `spec`, and the share of it kept; `None`: read it whole.
async fn plan_sample(
    loc: &Location,
    t: &DiscoveredTable,
    spec: SampleSpec,
    groups: Option<&[(String, Vec<i64>)]>,
) -> Option<(sample::Cut, f64)> {
    let seed = t.name.as_str();
    match (t.format, groups) {
        (Format::Parquet, Some(groups)) => {
            let rows: i64 = groups.iter().flat_map(|(_, g)| g).sum();
            let fraction = match spec {
                SampleSpec::Rows(n) if rows as u64 > n => n as f64 / rows as f64,
                SampleSpec::Fraction(f) if t.size_bytes > sample::FRACTION_ABOVE => f,
                _ => return None,
            };
            let (cut, share) = sample::row_groups(groups, fraction, seed);
            (share < 1.0).then_some((sample::Cut::RowGroups(cut), share))
        }
        (Format::Csv | Format::Json, _)
            if t.compression == Compression::None
                && !(t.format == Format::Json && t.json_array) =>
        {
            let fraction = match spec {
                SampleSpec::Rows(n) => {
                    let rows = t.size_bytes as f64 / bytes_per_line(loc, t).await?;
                    if rows <= n as f64 {
                        return None;
                    }
                    n as f64 / rows
                }
                SampleSpec::Fraction(f) if t.size_bytes > sample::FRACTION_ABOVE => f,
                _ => return None,
            };
            let files: Vec<(String, u64)> = t
                .files
                .iter()
                .map(|f| (f.location.to_string(), f.size))
                .collect();
            let (blocks, share) = sample::text_blocks(&files, fraction, seed);
            (share < 1.0).then_some((sample::Cut::Blocks(blocks), share))
        }
        _ => None,
    }
}

struct Source {
    provider: Arc<dyn TableProvider>,
    row_count: Option<i64>,
    size_bytes: Option<i64>,
    declared_nullability: bool,
}

async fn delta_source(
    state: &SessionState,
    loc: &Location,
    t: &DiscoveredTable,
) -> Result<Source, ProfileError> {
    let url = url::Url::parse(&loc.dir_url_of(&t.root)).map_err(ProfileError::read)?;
    let table = deltalake::DeltaTableBuilder::from_url(url.clone())
        .map_err(ProfileError::read)?
        .with_storage_backend(loc.store.clone(), url)
        .load()
        .await
        .map_err(ProfileError::read)?;
    table
        .update_datafusion_session(state)
        .map_err(ProfileError::read)?;
    let snapshot = table.snapshot().map_err(ProfileError::read)?;
    // With deletion vectors the file statistics over-count; count rows by scanning then.
    let has_dv = snapshot.protocol().min_reader_version() >= 3;
    let mut rows: Option<i64> = Some(0);
    let mut size = 0i64;
    for f in snapshot.log_data().iter() {
        size += f.size();
        rows = match (rows, f.num_records()) {
            (Some(r), Some(n)) if !has_dv => Some(r + n as i64),
            _ => None,
        };
    }
    let provider = table.table_provider().await.map_err(ProfileError::read)?;
    Ok(Source {
        provider,
        row_count: rows,
        size_bytes: Some(size),
        declared_nullability: true,
    })
}

impl TableProfile {
    /// A table that could not be profiled at all.
    /// A table whose fingerprint matches the one `from_run` profiled: not read again; its
    /// profile (the warehouse rows of that run) is carried into this one.
    pub fn carried(
        t: &DiscoveredTable,
        file_path: String,
        row_count: Option<i64>,
        column_count: usize,
        from_run: String,
    ) -> Self {
        Self {
            file_type: t.format.as_str().to_string(),
            compression: t.compression,
            file_count: t.files.len(),
            row_count,
            column_count: column_count as i32,
            size_bytes: t.size_bytes as i64,
            partition_columns: t.partition_cols.iter().map(|(n, _)| n.clone()).collect(),
            status: TableStatus::Ok,
            error_message: None,
            fingerprint: Some(t.fingerprint.clone()),
            carried_from: Some(from_run),
            ..Self::failed(&t.name, &file_path, String::new())
        }
    }

    pub fn failed(name: &str, file_path: &str, reason: String) -> Self {
        Self {
            table_name: name.to_string(),
            file_path: file_path.to_string(),
            file_type: String::new(),
            compression: Compression::None,
            file_count: 0,
            row_count: None,
            column_count: 0,
            size_bytes: 0,
            partition_columns: Vec::new(),
            status: TableStatus::Failed,
            error_message: Some(reason),
            widened_columns: Vec::new(),
            mixed_columns: Vec::new(),
            candidate_keys: Vec::new(),
            duplicate_rows: None,
            quality: None,
            profiled_fraction: 1.0,
            fingerprint: None,
            carried_from: None,
            partitions: None,
            partition_sketches: Vec::new(),
            kept_sketches: Vec::new(),
            columns: Vec::new(),
        }
    }
}

/// Profiles one table. Never fails: a table that cannot be read comes back with
/// `status: failed` and the reason. With `prior` (the sketches its latest profile kept,
/// perhaps none), a `key=value` partitioned table is profiled partition by partition and
/// its sketches are kept in the result ([`partitions`]).
pub async fn profile_table(
    ctx: &SessionContext,
    loc: &Location,
    t: &DiscoveredTable,
    limits: &Limits,
    opts: ProfileOptions,
    prior: Option<&partitions::PriorSketches>,
) -> TableProfile {
    let mut p = TableProfile {
        table_name: t.name.clone(),
        file_path: loc.display_of(&t.root),
        file_type: t.format.as_str().to_string(),
        compression: t.compression,
        file_count: t.files.len(),
        row_count: None,
        column_count: 0,
        size_bytes: t.size_bytes as i64,
        partition_columns: t.partition_cols.iter().map(|(n, _)| n.clone()).collect(),
        status: TableStatus::Ok,
        error_message: None,
        widened_columns: Vec::new(),
        mixed_columns: Vec::new(),
        candidate_keys: Vec::new(),
        duplicate_rows: None,
        quality: None,
        profiled_fraction: 1.0,
        fingerprint: Some(t.fingerprint.clone()),
        carried_from: None,
        partitions: None,
        partition_sketches: Vec::new(),
        kept_sketches: Vec::new(),
        columns: Vec::new(),
    };
    if let Err(e) = profile_into(ctx, loc, t, limits, opts, prior, &mut p).await {
        tracing::warn!(table = %t.name, "table failed: {e}");
        p.status = TableStatus::Failed;
        p.error_message = Some(e.to_string());
        p.columns.clear();
        p.row_count = None;
        p.partitions = None;
        p.partition_sketches.clear();
        p.kept_sketches.clear();
    }
    p
}

async fn profile_into(
    ctx: &SessionContext,
    loc: &Location,
    t: &DiscoveredTable,
    limits: &Limits,
    opts: ProfileOptions,
    prior: Option<&partitions::PriorSketches>,
    p: &mut TableProfile,
) -> Result<(), ProfileError> {
    if let Some(problem) = &t.problem {
        return Err(ProfileError::Discovery(problem.clone()));
    }
    let n_part = t.partition_cols.len();
    if let Some(prior) = prior
        && opts.sample.is_none()
        && partitions::applies(t)
    {
        match partitions::profile(&ctx.state(), loc, t, prior).await {
            Ok(m) => {
                let stats = stats_of(&m.row, &m.schema)
                    .map_err(|e| ProfileError::from_datafusion(e, limits))?;
                p.mixed_columns = m.mixed;
                p.partition_sketches = m.sketches;
                p.kept_sketches = m.kept;
                p.partitions = Some(m.counts);
                let declared = matches!(t.format, Format::Parquet | Format::Avro);
                fill(
                    p,
                    &m.schema,
                    stats,
                    None,
                    declared,
                    None,
                    n_part,
                    opts.samples,
                );
                return Ok(());
            }
            // The whole-table route reports what is wrong with the table itself, and widens
            // a CSV column whose values contradict their inferred type.
            Err(e) => tracing::info!(
                table = %t.name,
                "profiling partition by partition failed ({e}); reading the table whole"
            ),
        }
    }
    // Parquet footers are checked by us first: a corrupt footer must fail the table with a
    // clear reason before any reader library sees it.
    let parquet_groups = if t.format == Format::Parquet {
        Some(parquet_row_groups(loc, t).await?)
    } else {
        None
    };
    let parquet_rows = parquet_groups
        .as_ref()
        .map(|g| g.iter().flat_map(|(_, r)| r).sum::<i64>());
    let cut = match opts.sample {
        Some(spec) => plan_sample(loc, t, spec, parquet_groups.as_deref()).await,
        None => None,
    };
    let share = cut.as_ref().map_or(1.0, |(_, s)| *s);
    // One copy of the session per table: each `ctx.state()` copies every registry.
    let mut state = ctx.state();
    let partitions = state.config().target_partitions();
    // A small table is read as one partition: splitting a few kilobytes across the cores
    // costs more in tasks and merges than it saves, and its neighbours keep the cores busy.
    let route = if small_table(t) && cut.is_none() {
        state.config_mut().options_mut().execution.target_partitions = 1;
        Route::Direct
    } else {
        Route::Planned
    };
    let state = &state;
    let sampled = |provider: Arc<dyn TableProvider>| -> Arc<dyn TableProvider> {
        match &cut {
            Some((c, _)) => Arc::new(sample::Sampled {
                inner: provider,
                cut: c.clone(),
                partitions,
            }),
            None => provider,
        }
    };
    let mut source = match t.format {
        Format::Delta => delta_source(state, loc, t).await?,
        _ => Source {
            provider: {
                let (table, mixed) = listing_table(state, loc, t, None).await?;
                p.mixed_columns = mixed;
                table
            },
            row_count: parquet_rows,
            size_bytes: None,
            declared_nullability: matches!(
                t.format,
                Format::Parquet | Format::Avro | Format::Arrow
            ),
        },
    };
    if let Some(s) = source.size_bytes {
        p.size_bytes = s;
    }
    source.provider = sampled(source.provider);

    // The aggregate pass; a CSV value that contradicts its inferred type turns that
    // column into STRING and the pass runs again.
    let stats = loop {
        match aggregate_pass(state, source.provider.clone(), route).await {
            Ok(s) => break s,
            Err(e) => {
                let msg = e.to_string();
                let col = (t.format == Format::Csv)
                    .then(|| csv_error_column(&msg))
                    .flatten();
                let schema = source.provider.schema();
                let file_fields = schema.fields().len().saturating_sub(n_part);
                match col {
                    Some(i)
                        if i < file_fields && schema.field(i).data_type() != &DataType::Utf8 =>
                    {
                        tracing::info!(
                            table = %t.name,
                            column = %schema.field(i).name(),
                            "values contradict the inferred {} type; reading the column as STRING",
                            spark_type(schema.field(i).data_type())
                        );
                        p.widened_columns.push(schema.field(i).name().clone());
                        let fields: Vec<Field> = schema.fields()[..file_fields]
                            .iter()
                            .enumerate()
                            .map(|(j, f)| {
                                if j == i {
                                    Field::new(f.name(), DataType::Utf8, true)
                                } else {
                                    f.as_ref().clone()
                                }
                            })
                            .collect();
                        source.provider = sampled(
                            listing_table(state, loc, t, Some(Arc::new(Schema::new(fields))))
                                .await?
                                .0,
                        );
                    }
                    _ => return Err(ProfileError::from_datafusion(e, limits)),
                }
            }
        }
    };
    let schema = source.provider.schema();
    let known_rows = source.row_count;
    let share = cut.is_some().then_some(share);
    fill(
        p,
        &schema,
        stats,
        known_rows,
        source.declared_nullability,
        share,
        n_part,
        opts.samples,
    );
    Ok(())
}

/// The table's and its columns' profiles from the pass's statistics. `share`: the share of
/// the table a sample read (`None`: all of it); `known_rows`: the row count where files
/// say it.
#[allow(clippy::too_many_arguments)]
fn fill(
    p: &mut TableProfile,
    schema: &Schema,
    stats: Stats,
    known_rows: Option<i64>,
    declared_nullability: bool,
    share: Option<f64>,
    n_part: usize,
    samples: SampleMode,
) {
    // A sample's counts stand for the whole table: scaled by the share of rows read. A text
    // table's row count is then itself an estimate (rows read / share of bytes read).
    let rows =
        known_rows.unwrap_or_else(|| (stats.rows as f64 / share.unwrap_or(1.0)).round() as i64);
    let read = stats.rows;
    let scale = if share.is_some() && read > 0 && rows > read {
        rows as f64 / read as f64
    } else {
        1.0
    };
    let up = |n: i64| (n as f64 * scale).round() as i64;
    p.profiled_fraction = if scale > 1.0 { 1.0 / scale } else { 1.0 };
    p.row_count = Some(rows);
    p.column_count = schema.fields().len() as i32;
    let mut columns = Vec::with_capacity(schema.fields().len());
    let mut keys = Vec::new();
    for (i, (f, st)) in schema.fields().iter().zip(stats.per_column).enumerate() {
        let is_partition = i >= schema.fields().len() - n_part;
        let mut summary = st
            .sketch
            .map(|s| s.summary(SAMPLE_VALUES))
            .unwrap_or_default();
        if scale > 1.0 {
            summary.scale(scale, read, rows);
        }
        let non_null = read - st.nulls;
        // Few distinct values are counted exactly by the sketch; more are estimated.
        let distinct = summary.exact_distinct.or(st.distinct);
        let fraction = |n: i64, of: i64| (of > 0).then(|| n as f64 / of as f64);
        // A key: no nulls and a value per row, counted exactly while there are few values;
        // above that, an estimate near the row count and no repeat in the random sample.
        let key = scale == 1.0
            && rows > 1
            && st.nulls == 0
            && match summary.exact_distinct {
                Some(d) => d == rows,
                None => {
                    summary.sample_unique
                        && st
                            .distinct
                            .is_some_and(|d| d as f64 >= KEY_DISTINCT_SHARE * rows as f64)
                }
            };
        if key {
            keys.push(f.name().clone());
        }
        columns.push(ColumnProfile {
            column_name: f.name().clone(),
            data_type: spark_type(f.data_type()),
            position: i as i32,
            is_nullable: if declared_nullability && !is_partition {
                f.is_nullable()
            } else {
                st.nulls > 0
            },
            sample_values: summary.sample_values,
            null_count: up(st.nulls),
            distinct_count: distinct,
            min_value: st.min,
            max_value: st.max,
            null_fraction: fraction(st.nulls, read),
            distinct_fraction: distinct.and_then(|d| fraction(d, non_null)),
            mean: summary.mean,
            stddev: summary.stddev,
            min_double: summary.min_double,
            max_double: summary.max_double,
            min_timestamp: summary.min_timestamp,
            max_timestamp: summary.max_timestamp,
            quantiles: summary.quantiles.map(JsonText::of),
            histogram: summary.histogram.map(JsonText::of),
            zero_count: summary.zero_count,
            negative_count: summary.negative_count,
            min_length: summary.min_length,
            avg_length: summary.avg_length,
            max_length: summary.max_length,
            blank_count: summary.blank_count,
            top_values: summary
                .top_values
                .into_iter()
                .map(|(value, count)| TopValue { value, count })
                .collect(),
            top_values_error: summary.top_values_error,
            semantic_type: summary.semantic_type.map(str::to_string),
            semantic_fraction: summary.semantic_fraction,
            pii: summary.personal,
            profiled_fraction: p.profiled_fraction,
        });
    }
    // With a key no row repeats another; otherwise the row hashes' distinct count tells.
    p.duplicate_rows = if keys.is_empty() {
        stats
            .distinct_rows
            .filter(|_| scale == 1.0)
            .map(|d| (stats.rows - d).max(0))
    } else {
        Some(0)
    };
    p.candidate_keys = keys;
    p.columns = columns;
    p.quality = Some(quality::score(p));
    apply_sample_mode(&mut p.columns, samples);
}

/// Tables up to this many bytes (not Delta: its log decides what is read) are small.
pub const SMALL_TABLE_BYTES: u64 = crate::storage::small_objects::SMALL_OBJECT_BYTES;

/// Whether a table is small enough to be read as one partition.
pub fn small_table(t: &DiscoveredTable) -> bool {
    t.format != Format::Delta && t.size_bytes <= SMALL_TABLE_BYTES
}

/// What of the profiled values themselves a job keeps ([`SampleMode`]).
fn apply_sample_mode(columns: &mut [ColumnProfile], mode: SampleMode) {
    for c in columns {
        match mode {
            SampleMode::Raw => {}
            SampleMode::Masked if c.pii => {
                for v in c
                    .sample_values
                    .iter_mut()
                    .chain(&mut c.min_value)
                    .chain(&mut c.max_value)
                {
                    *v = semantic::mask(v);
                }
                for t in &mut c.top_values {
                    t.value = semantic::mask(&t.value);
                }
            }
            SampleMode::Masked => {}
            SampleMode::None => {
                c.sample_values.clear();
                c.top_values.clear();
                c.top_values_error = None;
                if c.pii {
                    c.min_value = None;
                    c.max_value = None;
                }
            }
        }
    }
}

/// A DataFusion session sized for this machine, drawing on the process's memory pool, with
/// the location's store registered behind the line limit of text files (those of `tables`,
/// and any other whose name says CSV or JSON).
pub fn session_for(loc: &Location, limits: &Limits, tables: &[DiscoveredTable]) -> SessionContext {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let mut config = datafusion::prelude::SessionConfig::new()
        .with_target_partitions(cores)
        .with_batch_size(8192)
        .with_information_schema(true);
    // Each scan partition reads its own run of files: a partition read alone (the samples)
    // must not steal its siblings' files in whatever order they come.
    config
        .options_mut()
        .execution
        .enable_file_stream_work_stealing = false;
    // No logical optimizer: every plan here is one aggregate over one whole scan, which the
    // rules cannot improve, and on a lake of small tables optimising each plan cost more
    // than reading the table. The analyzer (type coercion) and physical optimizer still run.
    let state = datafusion::execution::SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(limits.runtime())
        .with_default_features()
        .with_optimizer_rules(Vec::new())
        .build();
    let ctx = SessionContext::new_with_state(state);
    let store = LineLimitStore::new(
        loc.store.clone(),
        limits.max_record_bytes,
        text_files(tables),
    );
    ctx.register_object_store(&loc.store_url, Arc::new(store));
    ctx
}

/// Which files the line limit measures, and how they are encoded: every file of a CSV or
/// JSON table (names need not say so: formats are also sniffed), then names that say so.
fn text_files(tables: &[DiscoveredTable]) -> Classify {
    let codec = |c: Compression| match c {
        Compression::None => TextCodec::Plain,
        Compression::Gzip => TextCodec::Gzip,
        Compression::Bzip2 => TextCodec::Bzip2,
        Compression::Xz => TextCodec::Xz,
        Compression::Zstd => TextCodec::Zstd,
    };
    let known: std::collections::HashMap<object_store::path::Path, TextCodec> = tables
        .iter()
        .filter(|t| matches!(t.format, Format::Csv | Format::Json))
        .flat_map(|t| {
            t.files
                .iter()
                .map(move |f| (f.location.clone(), codec(t.compression)))
        })
        .collect();
    Arc::new(move |p: &object_store::path::Path| {
        known.get(p).copied().or_else(|| {
            crate::discover::text_compression(p.filename().unwrap_or_default()).map(codec)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{Fields, TimeUnit};

    #[test]
    fn spark_names() {
        assert_eq!(spark_type(&DataType::Utf8View), "STRING");
        assert_eq!(spark_type(&DataType::Decimal128(10, 2)), "DECIMAL(10,2)");
        assert_eq!(
            spark_type(&DataType::Timestamp(
                TimeUnit::Microsecond,
                Some("UTC".into())
            )),
            "TIMESTAMP"
        );
        let s = DataType::Struct(Fields::from(vec![
            Field::new("a", DataType::Int64, true),
            Field::new_list("b", Field::new("item", DataType::Utf8, true), true),
        ]));
        assert_eq!(spark_type(&s), "STRUCT<a: BIGINT, b: ARRAY<STRING>>");
    }

    #[test]
    fn samples_are_cut_at_256_characters() {
        let long = "é".repeat(300);
        assert_eq!(cut(&long).chars().count(), SAMPLE_MAX_CHARS);
        assert_eq!(cut("short"), "short");
    }

    #[test]
    fn float_bits_are_distinct_exactly_when_floats_are() {
        use datafusion::arrow::array::{AsArray, Float64Array};
        let a: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(1.5),
            None,
            Some(1.5),
            Some(-2.0),
        ]));
        let bits = FloatBits::reinterpret(&a).unwrap();
        let b = bits.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        assert_eq!(b.value(0), b.value(2));
        assert_ne!(b.value(0), b.value(3));
        assert!(b.is_null(1));
    }

    #[test]
    fn csv_error_column_is_found() {
        let m = "Arrow error: Parser error: Error while parsing value 'x' as type 'Int64' for column 3 at line 1001. Row data: '[..]'";
        assert_eq!(csv_error_column(m), Some(3));
        assert_eq!(csv_error_column("other"), None);
    }
}

#[cfg(test)]
mod route_tests {
    use super::*;
    use datafusion::arrow::array::{
        BooleanArray, Date32Array, Decimal128Array, DictionaryArray, Float32Array, Float64Array,
        Int64Array, ListArray, NullArray, RecordBatch, StringArray, TimestampMicrosecondArray,
    };
    use datafusion::arrow::datatypes::{Int32Type, Int64Type, TimeUnit};
    use datafusion::datasource::MemTable;

    /// Rows `from..to` of a table with a column of every kind the pass treats apart.
    fn batch(schema: &SchemaRef, from: i64, to: i64) -> RecordBatch {
        let n = (to - from) as usize;
        let ids: Vec<i64> = (from..to).collect();
        let maybe = |i: i64| (i % 7 != 0).then_some(i);
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter(ids.iter().map(|&i| maybe(i)))),
            Arc::new(Float64Array::from_iter(
                ids.iter().map(|&i| maybe(i).map(|v| v as f64 / 3.0 - 20.0)),
            )),
            Arc::new(Float32Array::from_iter(
                ids.iter().map(|&i| Some(i as f32 * 0.5)),
            )),
            Arc::new(StringArray::from_iter(ids.iter().map(|&i| {
                maybe(i).map(|v| format!("name-{}@example.com", v % 13))
            }))),
            Arc::new(
                ids.iter()
                    .map(|&i| ["red", "green", "blue"][(i % 3) as usize])
                    .collect::<DictionaryArray<Int32Type>>(),
            ),
            Arc::new(Date32Array::from_iter(
                ids.iter().map(|&i| maybe(i).map(|v| 19000 + v as i32)),
            )),
            Arc::new(
                TimestampMicrosecondArray::from_iter(
                    ids.iter()
                        .map(|&i| Some(1_700_000_000_000_000 + i * 1_000_000)),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(BooleanArray::from_iter(
                ids.iter().map(|&i| maybe(i).map(|v| v % 2 == 0)),
            )),
            Arc::new(
                Decimal128Array::from_iter(ids.iter().map(|&i| Some(i as i128 * 101)))
                    .with_precision_and_scale(12, 2)
                    .unwrap(),
            ),
            Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(
                ids.iter().map(|&i| Some(vec![Some(i), None])),
            )),
            Arc::new(NullArray::new(n)),
        ];
        RecordBatch::try_new(schema.clone(), cols).unwrap()
    }

    /// The direct route builds the same aggregates as the planner (coercions included) and
    /// gives the same row, over one partition or several.
    #[tokio::test]
    async fn direct_and_planned_routes_agree() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("score", DataType::Float64, true),
            Field::new("half", DataType::Float32, true),
            Field::new("email", DataType::Utf8, true),
            Field::new(
                "colour",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                true,
            ),
            Field::new("day", DataType::Date32, true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("flag", DataType::Boolean, true),
            Field::new("amount", DataType::Decimal128(12, 2), true),
            Field::new_list("tags", Field::new("item", DataType::Int64, true), true),
            Field::new("nothing", DataType::Null, true),
        ]));
        let limits = Limits::new(256 << 20, 1 << 20);
        let loc = crate::storage::location::parse_with(
            std::env::temp_dir().to_str().unwrap(),
            &Default::default(),
        )
        .unwrap();
        let ctx = session_for(&loc, &limits, &[]);
        let state = ctx.state();
        for partitions in [
            vec![vec![batch(&schema, 0, 3000)]],
            vec![
                vec![batch(&schema, 0, 1000), batch(&schema, 1000, 1700)],
                vec![batch(&schema, 1700, 3000)],
            ],
        ] {
            let table: Arc<dyn TableProvider> =
                Arc::new(MemTable::try_new(schema.clone(), partitions).unwrap());
            let planned = aggregate_row(&state, table.clone(), Route::Planned)
                .await
                .unwrap();
            let direct = aggregate_row(&state, table.clone(), Route::Direct)
                .await
                .unwrap();
            assert_eq!(planned.schema(), direct.schema());
            for (i, f) in planned.schema().fields().iter().enumerate() {
                let (p, d) = (planned.column(i), direct.column(i));
                if f.name().starts_with("sk") {
                    // A sketch's bytes list its exact counts in hash order: compare what
                    // it says. Its sample values are a random draw, which a merge of
                    // partial sketches (the planned route) draws again: as many, each a
                    // value of the column.
                    use datafusion::arrow::array::AsArray;
                    let say = |a: &ArrayRef| {
                        let b = a.as_binary::<i32>();
                        (!b.is_null(0)).then(|| {
                            let mut s = sketch::Sketch::from_bytes(b.value(0))
                                .unwrap()
                                .summary(SAMPLE_VALUES);
                            let drawn = std::mem::take(&mut s.sample_values);
                            // Moments merged in another order differ in the last bits.
                            let near = |v: Option<f64>| v.map(|x| format!("{x:.9e}"));
                            let moments = (near(s.mean.take()), near(s.stddev.take()));
                            (s, moments, drawn.len())
                        })
                    };
                    assert_eq!(say(p), say(d), "{} differs between the routes", f.name());
                } else {
                    assert_eq!(p, d, "{} differs between the routes", f.name());
                }
            }
            // And what the profile is made of agrees: counts, distinct counts, min/max.
            let s = aggregate_pass(&state, table, Route::Direct).await.unwrap();
            assert_eq!(s.rows, 3000);
            assert_eq!(s.per_column[0].nulls, 429);
            assert_eq!(s.per_column[4].min.as_deref(), Some("blue"));
            assert!(s.per_column[9].min.is_none(), "no min of a list");
            assert!(s.distinct_rows.is_none(), "a list column cannot be hashed");
        }
    }
}
