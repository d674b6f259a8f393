//! The job payload: parses `NUVYN_JOB_PAYLOAD` (and API bodies), applies the documented
//! `workflow_id`/`source_id` priority rules, and validates every field before any I/O.
//!
//! Fields are read from a `serde_json::Value` by hand rather than derived, so that every
//! error names the exact field (`job_metadata.workflow_id`, `sources[2].data_source_path`).

use serde_json::{Map, Value};

use crate::storage::azure::StorageOptions;

pub use crate::warehouse::{MAX_ID_LEN, printable};

/// Job types the executor knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobType {
    MetadataExtraction,
    SchemaValidation,
}

impl JobType {
    fn parse(field: &str, s: &str) -> Result<Self, PayloadError> {
        match s {
            "metadata_extraction" => Ok(Self::MetadataExtraction),
            "schema_validation" => Ok(Self::SchemaValidation),
            other => Err(PayloadError::UnknownJobType {
                field: field.to_string(),
                value: printable(other),
            }),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PayloadError {
    #[error("NUVYN_JOB_PAYLOAD is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("job payload must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    #[error("payload field `{field}` must be {expected}, got {got}")]
    WrongType {
        field: String,
        expected: &'static str,
        got: &'static str,
    },
    #[error("payload field `{field}` must not be empty")]
    Empty { field: String },
    #[error(
        "unknown job_type {value} in `{field}`: expected one of metadata_extraction, schema_validation"
    )]
    UnknownJobType { field: String, value: String },
    #[error("workflow_id is required: looked in {looked} and found none")]
    MissingWorkflowId { looked: String },
    #[error("invalid {field} {value}: {reason}")]
    InvalidId {
        field: String,
        value: String,
        reason: String,
    },
    #[error(
        "{what} conflict: the command line gives {cli} but the payload's `{field}` gives {payload}"
    )]
    Conflict {
        what: &'static str,
        field: String,
        cli: String,
        payload: String,
    },
    #[error(
        "no data source: give a path on the command line, `data_source_path`, or a `sources` array"
    )]
    NoSource,
    #[error(
        "sources are given both in `sources` and `job_metadata.sources`: give them in one place"
    )]
    SourcesTwice,
    #[error("payload field {0}")]
    StorageOptions(String),
}

impl From<crate::warehouse::InvalidId> for PayloadError {
    fn from(e: crate::warehouse::InvalidId) -> Self {
        Self::InvalidId {
            field: e.field,
            value: e.value,
            reason: e.reason,
        }
    }
}

/// Where the chosen `workflow_id` came from, logged and reported with every job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum IdOrigin {
    #[serde(rename = "job_metadata.workflow_id")]
    JobMetadata,
    #[serde(rename = "workflow_id")]
    TopLevel,
    #[serde(rename = "command_line")]
    CommandLine,
}

impl IdOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JobMetadata => "job_metadata",
            Self::TopLevel => "top-level",
            Self::CommandLine => "command line",
        }
    }
}

/// The raw payload, every field optional; field types already checked.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RawPayload {
    pub job_type: Option<String>,
    pub data_source_path: Option<String>,
    pub data_source_type: Option<String>,
    pub workflow_id: Option<String>,
    pub source_id: Option<String>,
    pub tenant_id: Option<String>,
    pub meta_workflow_id: Option<String>,
    pub meta_source_id: Option<String>,
    pub sources: Option<Vec<RawSource>>,
    /// Where `sources` came from, for error messages.
    pub sources_field: &'static str,
    pub shard: Option<String>,
    /// `profile.samples`.
    pub samples: Option<String>,
    /// `profile.sample`: `{"rows": N}` or `{"fraction": F}`.
    pub sample: Option<crate::profile::SampleSpec>,
    /// `full_refresh`: profile every table, even one whose files did not change.
    pub full_refresh: Option<bool>,
    /// `fail_on`: `breaking` or `warning`.
    pub fail_on: Option<String>,
    /// Storage settings (credentials) for the top-level `data_source_path` only.
    pub storage_options: StorageOptions,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct RawSource {
    pub source_id: Option<String>,
    pub data_source_path: Option<String>,
    pub data_source_type: Option<String>,
    pub storage_options: StorageOptions,
}

/// What the command line contributes to a job.
#[derive(Debug, Default, Clone)]
pub struct CliJobArgs {
    pub shard: Option<String>,
    /// `--full`.
    pub full: bool,
    /// `--fail-on`.
    pub fail_on: Option<String>,
    pub samples: Option<String>,
    pub sample: Option<crate::profile::SampleSpec>,
    pub paths: Vec<String>,
    pub workflow_id: Option<String>,
    pub source_id: Option<String>,
    pub source_type: Option<String>,
    pub tenant_id: Option<String>,
}

/// One data source of a validated job.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SourceSpec {
    pub source_id: Option<String>,
    pub path: String,
    pub source_type: Option<String>,
    /// This source's own storage settings; holds secrets, so never serialised.
    #[serde(skip)]
    pub storage_options: StorageOptions,
}

/// A fully validated job: the only thing the pipeline accepts.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobSpec {
    pub job_type: JobType,
    pub workflow_id: String,
    pub workflow_id_origin: IdOrigin,
    pub source_id: Option<String>,
    pub tenant_id: Option<String>,
    pub sources: Vec<SourceSpec>,
    /// This run's share of each source's tables (`--shard I/N` or the payload's `shard`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// What is kept of profiled values (`--samples` or the payload's `profile.samples`).
    pub samples: crate::profile::SampleMode,
    /// How big tables are sampled (`--sample-rows`, `--sample-fraction` or the payload's
    /// `profile.sample`); `None`: read whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample: Option<crate::profile::SampleSpec>,
    /// Profile every table again (`--full` or the payload's `full_refresh`), instead of
    /// carrying the profile of a table whose fingerprint did not change.
    pub full_refresh: bool,
    /// Changes of this severity or worse make the job exit 4 (`--fail-on` or the payload's
    /// `fail_on`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail_on: Option<crate::profile::drift::Severity>,
}

/// `--since` and the API's `since`: an RFC 3339 time or a date (UTC midnight).
pub fn parse_since(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("{s:?} is not a time (2026-11-01T06:00:00Z) or a date (2026-11-01)"))
}

/// Shard `index` of `count` (0 <= index < count): the tables of a source are split by a stable
/// hash of their name, so every table belongs to exactly one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Parses `I/N`; `field` names the option or payload field in errors.
    pub fn parse(field: &str, s: &str) -> Result<Self, PayloadError> {
        let bad = |reason: &str| PayloadError::InvalidId {
            field: field.to_string(),
            value: printable(s),
            reason: reason.to_string(),
        };
        let (i, n) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| bad("expected I/N, e.g. 0/4"))?;
        let index: u32 = i
            .trim()
            .parse()
            .map_err(|_| bad("I must be a whole number"))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| bad("N must be a whole number"))?;
        if count == 0 || count > 10_000 {
            return Err(bad("N must be from 1 to 10000"));
        }
        if index >= count {
            return Err(bad("I must be from 0 to N-1"));
        }
        Ok(Self { index, count })
    }

    /// Whether this shard owns the table called `name` (FNV-1a: the same on every machine).
    pub fn owns(&self, name: &str) -> bool {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in name.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100000001b3);
        }
        (h % u64::from(self.count)) as u32 == self.index
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn opt_string(
    obj: &Map<String, Value>,
    key: &str,
    prefix: &str,
) -> Result<Option<String>, PayloadError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(PayloadError::WrongType {
            field: format!("{prefix}{key}"),
            expected: "a string",
            got: type_name(other),
        }),
    }
}

/// `storage_options`: an object of strings (booleans allowed for the `use_*` flags), each key
/// one [`crate::storage::azure::OPTION_KEYS`] name.
fn storage_options(obj: &Map<String, Value>, prefix: &str) -> Result<StorageOptions, PayloadError> {
    let field = format!("{prefix}storage_options");
    let map = match obj.get("storage_options") {
        None | Some(Value::Null) => return Ok(StorageOptions::default()),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(PayloadError::WrongType {
                field,
                expected: "an object",
                got: type_name(other),
            });
        }
    };
    let mut pairs = Vec::new();
    for (k, v) in map {
        let v = match v {
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            other => {
                return Err(PayloadError::WrongType {
                    field: format!("{field}.{k}"),
                    expected: "a string",
                    got: type_name(other),
                });
            }
        };
        pairs.push((k.clone(), v));
    }
    StorageOptions::from_pairs(&field, pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|e| PayloadError::StorageOptions(e.to_string()))
}

fn parse_sources(v: &Value, field: &str) -> Result<Vec<RawSource>, PayloadError> {
    let arr = v.as_array().ok_or_else(|| PayloadError::WrongType {
        field: field.to_string(),
        expected: "an array",
        got: type_name(v),
    })?;
    arr.iter()
        .enumerate()
        .map(|(i, item)| {
            let f = format!("{field}[{i}]");
            let obj = item.as_object().ok_or_else(|| PayloadError::WrongType {
                field: f.clone(),
                expected: "an object",
                got: type_name(item),
            })?;
            let prefix = format!("{f}.");
            Ok(RawSource {
                source_id: opt_string(obj, "source_id", &prefix)?,
                data_source_path: opt_string(obj, "data_source_path", &prefix)?,
                data_source_type: opt_string(obj, "data_source_type", &prefix)?,
                storage_options: storage_options(obj, &prefix)?,
            })
        })
        .collect()
}

/// `profile.sample`: `{"rows": N}` (N >= 1) or `{"fraction": F}` (0 < F < 1).
fn sample_spec(v: &Value) -> Result<crate::profile::SampleSpec, PayloadError> {
    use crate::profile::SampleSpec;
    let bad = |field: &str, reason: &str| PayloadError::InvalidId {
        field: field.to_string(),
        value: printable(&v.to_string()),
        reason: reason.to_string(),
    };
    let obj = v.as_object().filter(|o| o.len() == 1).ok_or_else(|| {
        bad(
            "profile.sample",
            "must be {\"rows\": N} or {\"fraction\": F}",
        )
    })?;
    match (obj.get("rows"), obj.get("fraction")) {
        (Some(n), None) => n
            .as_u64()
            .filter(|n| *n >= 1)
            .map(SampleSpec::Rows)
            .ok_or_else(|| {
                bad(
                    "profile.sample.rows",
                    "must be a whole number of at least 1",
                )
            }),
        (None, Some(f)) => f
            .as_f64()
            .filter(|f| *f > 0.0 && *f < 1.0)
            .map(SampleSpec::Fraction)
            .ok_or_else(|| {
                bad(
                    "profile.sample.fraction",
                    "must be a number between 0 and 1",
                )
            }),
        _ => Err(bad(
            "profile.sample",
            "must be {\"rows\": N} or {\"fraction\": F}",
        )),
    }
}

impl RawPayload {
    /// Parses a payload document; checks JSON syntax and field types only.
    pub fn parse(text: &str) -> Result<Self, PayloadError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| PayloadError::InvalidJson(e.to_string()))?;
        Self::from_value(&value)
    }

    pub fn from_value(value: &Value) -> Result<Self, PayloadError> {
        let obj = value
            .as_object()
            .ok_or_else(|| PayloadError::NotAnObject(type_name(value)))?;
        let mut raw = RawPayload {
            job_type: opt_string(obj, "job_type", "")?,
            data_source_path: opt_string(obj, "data_source_path", "")?,
            data_source_type: opt_string(obj, "data_source_type", "")?,
            workflow_id: opt_string(obj, "workflow_id", "")?,
            source_id: opt_string(obj, "source_id", "")?,
            tenant_id: opt_string(obj, "tenant_id", "")?,
            shard: opt_string(obj, "shard", "")?,
            fail_on: opt_string(obj, "fail_on", "")?,
            full_refresh: match obj.get("full_refresh") {
                None | Some(Value::Null) => None,
                Some(Value::Bool(b)) => Some(*b),
                Some(other) => {
                    return Err(PayloadError::WrongType {
                        field: "full_refresh".into(),
                        expected: "true or false",
                        got: type_name(other),
                    });
                }
            },
            storage_options: storage_options(obj, "")?,
            ..Default::default()
        };
        match obj.get("profile") {
            None | Some(Value::Null) => {}
            Some(Value::Object(profile)) => {
                if let Some(k) = profile
                    .keys()
                    .find(|k| !matches!(k.as_str(), "samples" | "sample"))
                {
                    return Err(PayloadError::WrongType {
                        field: format!("profile.{k}"),
                        expected: "absent (profile takes `samples` and `sample`)",
                        got: "a value",
                    });
                }
                raw.samples = opt_string(profile, "samples", "profile.")?;
                raw.sample = match profile.get("sample") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(sample_spec(v)?),
                };
            }
            Some(other) => {
                return Err(PayloadError::WrongType {
                    field: "profile".into(),
                    expected: "an object",
                    got: type_name(other),
                });
            }
        }
        if let Some(s) = obj.get("sources").filter(|v| !v.is_null()) {
            raw.sources = Some(parse_sources(s, "sources")?);
            raw.sources_field = "sources";
        }
        match obj.get("job_metadata") {
            None | Some(Value::Null) => {}
            Some(Value::Object(meta)) => {
                raw.meta_workflow_id = opt_string(meta, "workflow_id", "job_metadata.")?;
                raw.meta_source_id = opt_string(meta, "source_id", "job_metadata.")?;
                if let Some(s) = meta.get("sources").filter(|v| !v.is_null()) {
                    if raw.sources.is_some() {
                        return Err(PayloadError::SourcesTwice);
                    }
                    raw.sources = Some(parse_sources(s, "job_metadata.sources")?);
                    raw.sources_field = "job_metadata.sources";
                }
            }
            Some(other) => {
                return Err(PayloadError::WrongType {
                    field: "job_metadata".into(),
                    expected: "an object",
                    got: type_name(other),
                });
            }
        }
        Ok(raw)
    }
}

/// Checks an identifier (see [`crate::warehouse::validate_id`]), naming `field` in the error.
pub fn validate_id(field: &str, value: &str) -> Result<(), PayloadError> {
    Ok(crate::warehouse::validate_id(field, value)?)
}

fn non_empty(field: &str, v: Option<String>) -> Result<Option<String>, PayloadError> {
    match v {
        Some(s) if s.trim().is_empty() => Err(PayloadError::Empty {
            field: field.to_string(),
        }),
        other => Ok(other),
    }
}

/// Picks an id by priority (`job_metadata.X`, then top-level `X`, then the command line)
/// and refuses a command-line value that contradicts the payload's choice.
fn pick_id(
    what: &'static str,
    meta: Option<String>,
    top: Option<String>,
    cli: Option<String>,
) -> Result<Option<(String, IdOrigin)>, PayloadError> {
    let meta = non_empty(&format!("job_metadata.{what}"), meta)?;
    let top = non_empty(what, top)?;
    let cli = non_empty(&format!("--{}", what.replace('_', "-")), cli)?;
    let chosen = match (meta, top) {
        (Some(m), top) => {
            if let Some(t) = top.filter(|t| *t != m) {
                tracing::warn!(
                    "payload has job_metadata.{what}={} and {what}={}; job_metadata wins",
                    printable(&m),
                    printable(&t)
                );
            }
            Some((m, IdOrigin::JobMetadata))
        }
        (None, Some(t)) => Some((t, IdOrigin::TopLevel)),
        (None, None) => None,
    };
    match (chosen, cli) {
        (Some((p, origin)), Some(c)) if p != c => Err(PayloadError::Conflict {
            what,
            field: match origin {
                IdOrigin::JobMetadata => format!("job_metadata.{what}"),
                _ => what.to_string(),
            },
            cli: printable(&c),
            payload: printable(&p),
        }),
        (Some(chosen), _) => Ok(Some(chosen)),
        (None, Some(c)) => Ok(Some((c, IdOrigin::CommandLine))),
        (None, None) => Ok(None),
    }
}

fn check_type(field: &str, v: Option<String>) -> Result<Option<String>, PayloadError> {
    match non_empty(field, v)? {
        None => Ok(None),
        Some(t) => {
            if t.len() > 64
                || !t
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
            {
                return Err(PayloadError::InvalidId {
                    field: field.to_string(),
                    value: printable(&t),
                    reason: "a source type is a short word such as csv, parquet, azure_blob".into(),
                });
            }
            Ok(Some(t))
        }
    }
}

/// Combines the payload (if any) and the command line into a validated [`JobSpec`].
/// `require_source` is false for jobs that read no data (schema validation).
pub fn resolve(
    payload: Option<&RawPayload>,
    cli: &CliJobArgs,
    require_source: bool,
) -> Result<JobSpec, PayloadError> {
    let empty = RawPayload::default();
    let p = payload.unwrap_or(&empty);
    let job_type = match non_empty("job_type", p.job_type.clone())? {
        Some(t) => JobType::parse("job_type", &t)?,
        None => JobType::MetadataExtraction,
    };

    let Some((workflow_id, origin)) = pick_id(
        "workflow_id",
        p.meta_workflow_id.clone(),
        p.workflow_id.clone(),
        cli.workflow_id.clone(),
    )?
    else {
        let looked = if payload.is_some() {
            "NUVYN_JOB_PAYLOAD `job_metadata.workflow_id`, NUVYN_JOB_PAYLOAD `workflow_id`, and --workflow-id"
        } else {
            "--workflow-id (NUVYN_JOB_PAYLOAD is not set)"
        };
        return Err(PayloadError::MissingWorkflowId {
            looked: looked.into(),
        });
    };
    let wf_field = match origin {
        IdOrigin::JobMetadata => "job_metadata.workflow_id",
        IdOrigin::TopLevel => "workflow_id",
        IdOrigin::CommandLine => "--workflow-id",
    };
    validate_id(wf_field, &workflow_id)?;
    tracing::info!(
        workflow_id = %workflow_id,
        "using workflow_id from {}",
        origin.as_str()
    );

    let source_id = pick_id(
        "source_id",
        p.meta_source_id.clone(),
        p.source_id.clone(),
        cli.source_id.clone(),
    )?;
    if let Some((s, origin)) = &source_id {
        let field = match origin {
            IdOrigin::JobMetadata => "job_metadata.source_id",
            IdOrigin::TopLevel => "source_id",
            IdOrigin::CommandLine => "--source-id",
        };
        validate_id(field, s)?;
    }
    let source_id = source_id.map(|(s, _)| s);

    let tenant_id = match non_empty("tenant_id", p.tenant_id.clone().or(cli.tenant_id.clone()))? {
        Some(t) => {
            validate_id("tenant_id", &t)?;
            Some(t)
        }
        None => None,
    };

    let job_type_field = check_type("data_source_type", p.data_source_type.clone())?;
    let cli_type = check_type("--source-type", cli.source_type.clone())?;
    let default_type = cli_type.or(job_type_field);

    let mut sources = Vec::new();
    if let Some(list) = &p.sources {
        for (i, s) in list.iter().enumerate() {
            let f = |k: &str| format!("{}[{i}].{k}", p.sources_field);
            let path = non_empty(&f("data_source_path"), s.data_source_path.clone())?.ok_or_else(
                || PayloadError::Empty {
                    field: f("data_source_path"),
                },
            )?;
            let sid = match non_empty(&f("source_id"), s.source_id.clone())? {
                Some(id) => {
                    validate_id(&f("source_id"), &id)?;
                    Some(id)
                }
                None => source_id.clone(),
            };
            sources.push(SourceSpec {
                source_id: sid,
                path,
                source_type: check_type(&f("data_source_type"), s.data_source_type.clone())?
                    .or(default_type.clone()),
                storage_options: s.storage_options.clone(),
            });
        }
    }
    if let Some(path) = non_empty("data_source_path", p.data_source_path.clone())? {
        // The command line names the paths itself when it gives any; the payload's path is
        // the one of the job the Databricks task was started for, used when the CLI has none.
        if cli.paths.is_empty() {
            sources.push(SourceSpec {
                source_id: source_id.clone(),
                path,
                source_type: default_type.clone(),
                storage_options: p.storage_options.clone(),
            });
        }
    }
    for (i, path) in cli.paths.iter().enumerate() {
        if path.trim().is_empty() {
            return Err(PayloadError::Empty {
                field: format!("PATH argument {}", i + 1),
            });
        }
        sources.push(SourceSpec {
            source_id: source_id.clone(),
            path: path.clone(),
            source_type: default_type.clone(),
            storage_options: Default::default(),
        });
    }
    if require_source && job_type == JobType::MetadataExtraction && sources.is_empty() {
        return Err(PayloadError::NoSource);
    }
    let shard = match (&cli.shard, &p.shard) {
        (Some(c), Some(p)) => {
            let (c, p) = (Shard::parse("--shard", c)?, Shard::parse("shard", p)?);
            if c != p {
                return Err(PayloadError::Conflict {
                    what: "shard",
                    field: "shard".into(),
                    cli: format!("{}/{}", c.index, c.count),
                    payload: format!("{}/{}", p.index, p.count),
                });
            }
            Some(c)
        }
        (Some(c), None) => Some(Shard::parse("--shard", c)?),
        (None, Some(p)) => Some(Shard::parse("shard", p)?),
        (None, None) => None,
    };
    let parse_samples = |field: &str, v: &str| {
        v.parse::<crate::profile::SampleMode>()
            .map_err(|_| PayloadError::InvalidId {
                field: field.to_string(),
                value: printable(v),
                reason: "must be none, masked or raw".into(),
            })
    };
    let samples = match (&cli.samples, &p.samples) {
        (Some(c), Some(p)) => {
            let (cv, pv) = (
                parse_samples("--samples", c)?,
                parse_samples("profile.samples", p)?,
            );
            if cv != pv {
                return Err(PayloadError::Conflict {
                    what: "samples",
                    field: "profile.samples".into(),
                    cli: c.clone(),
                    payload: p.clone(),
                });
            }
            cv
        }
        (Some(c), None) => parse_samples("--samples", c)?,
        (None, Some(p)) => parse_samples("profile.samples", p)?,
        (None, None) => Default::default(),
    };
    let sample = match (cli.sample, p.sample) {
        (Some(c), Some(q)) if c != q => {
            return Err(PayloadError::Conflict {
                what: "sample",
                field: "profile.sample".into(),
                cli: format!("{c:?}"),
                payload: format!("{q:?}"),
            });
        }
        (c, q) => c.or(q),
    };
    let parse_fail_on = |field: &str, v: &str| match v {
        "breaking" | "warning" => Ok(v.parse::<crate::profile::drift::Severity>().ok()),
        _ => Err(PayloadError::InvalidId {
            field: field.to_string(),
            value: printable(v),
            reason: "must be breaking or warning".into(),
        }),
    };
    let fail_on = match (&cli.fail_on, &p.fail_on) {
        (Some(c), Some(q)) => {
            let (cv, qv) = (parse_fail_on("--fail-on", c)?, parse_fail_on("fail_on", q)?);
            if cv != qv {
                return Err(PayloadError::Conflict {
                    what: "fail_on",
                    field: "fail_on".into(),
                    cli: c.clone(),
                    payload: q.clone(),
                });
            }
            cv
        }
        (Some(c), None) => parse_fail_on("--fail-on", c)?,
        (None, Some(q)) => parse_fail_on("fail_on", q)?,
        (None, None) => None,
    };
    Ok(JobSpec {
        job_type,
        workflow_id,
        workflow_id_origin: origin,
        source_id,
        tenant_id,
        sources,
        shard,
        samples,
        sample,
        full_refresh: cli.full || p.full_refresh.unwrap_or(false),
        fail_on,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> CliJobArgs {
        CliJobArgs::default()
    }

    fn resolve_json(json: &str, cli: &CliJobArgs) -> Result<JobSpec, PayloadError> {
        resolve(Some(&RawPayload::parse(json)?), cli, true)
    }

    #[test]
    fn job_metadata_workflow_id_wins_over_top_level() {
        let spec = resolve_json(
            r#"{"data_source_path":"/d","workflow_id":"top","job_metadata":{"workflow_id":"meta"}}"#,
            &cli(),
        )
        .unwrap();
        assert_eq!(spec.workflow_id, "meta");
        assert_eq!(spec.workflow_id_origin, IdOrigin::JobMetadata);
    }

    #[test]
    fn top_level_used_when_job_metadata_has_none() {
        let spec = resolve_json(
            r#"{"data_source_path":"/d","workflow_id":"top","job_metadata":{"source_id":"s1"}}"#,
            &cli(),
        )
        .unwrap();
        assert_eq!(spec.workflow_id, "top");
        assert_eq!(spec.source_id.as_deref(), Some("s1"));
        assert_eq!(spec.workflow_id_origin, IdOrigin::TopLevel);
    }

    #[test]
    fn cli_used_when_payload_has_none_and_conflict_is_an_error() {
        let mut c = cli();
        c.workflow_id = Some("wf_cli".into());
        let spec = resolve_json(r#"{"data_source_path":"/d"}"#, &c).unwrap();
        assert_eq!(spec.workflow_id, "wf_cli");
        assert_eq!(spec.workflow_id_origin, IdOrigin::CommandLine);

        let err =
            resolve_json(r#"{"data_source_path":"/d","workflow_id":"other"}"#, &c).unwrap_err();
        assert!(matches!(err, PayloadError::Conflict { .. }), "{err}");
        assert!(err.to_string().contains("`workflow_id`"), "{err}");
        // The same value on both sides is no conflict.
        c.workflow_id = Some("other".into());
        assert!(resolve_json(r#"{"data_source_path":"/d","workflow_id":"other"}"#, &c).is_ok());
    }

    #[test]
    fn missing_workflow_id_names_where_it_looked() {
        let err = resolve_json(r#"{"data_source_path":"/d","source_id":"s"}"#, &cli()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("workflow_id is required"), "{msg}");
        assert!(
            msg.contains("job_metadata.workflow_id") && msg.contains("--workflow-id"),
            "{msg}"
        );
        let err = resolve(None, &cli(), true).unwrap_err();
        assert!(err.to_string().contains("NUVYN_JOB_PAYLOAD is not set"));
    }

    #[test]
    fn wrong_types_name_the_field() {
        let cases = [
            (r#"{"workflow_id":5}"#, "workflow_id"),
            (
                r#"{"workflow_id":"w","job_metadata":{"workflow_id":true}}"#,
                "job_metadata.workflow_id",
            ),
            (r#"{"workflow_id":"w","job_metadata":[]}"#, "job_metadata"),
            (
                r#"{"workflow_id":"w","sources":[{"data_source_path":3}]}"#,
                "sources[0].data_source_path",
            ),
            (r#"{"workflow_id":"w","sources":{}}"#, "sources"),
        ];
        for (json, field) in cases {
            let err = RawPayload::parse(json).unwrap_err();
            match &err {
                PayloadError::WrongType { field: f, .. } => assert_eq!(f, field, "{json}"),
                other => panic!("{json}: {other}"),
            }
            assert!(err.to_string().contains(&format!("`{field}`")));
        }
        assert!(matches!(
            RawPayload::parse("[1]"),
            Err(PayloadError::NotAnObject(_))
        ));
        let err = RawPayload::parse("{\"workflow_id\": ").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn unknown_job_type_and_empty_paths_are_rejected() {
        let err = resolve_json(
            r#"{"job_type":"drop_tables","workflow_id":"w","data_source_path":"/d"}"#,
            &cli(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("drop_tables"), "{err}");
        let err =
            resolve_json(r#"{"workflow_id":"w","data_source_path":"  "}"#, &cli()).unwrap_err();
        assert_eq!(
            err,
            PayloadError::Empty {
                field: "data_source_path".into()
            }
        );
        let err = resolve_json(
            r#"{"workflow_id":"w","sources":[{"source_id":"a"}]}"#,
            &cli(),
        )
        .unwrap_err();
        assert_eq!(
            err,
            PayloadError::Empty {
                field: "sources[0].data_source_path".into()
            }
        );
        let err = resolve_json(r#"{"workflow_id":"w"}"#, &cli()).unwrap_err();
        assert_eq!(err, PayloadError::NoSource);
    }

    #[test]
    fn unsafe_ids_are_rejected() {
        let long = "a".repeat(MAX_ID_LEN + 1);
        for bad in [
            "wf'x",
            "wf\"x",
            "a/b",
            "a\\b",
            "..",
            "a..b",
            "a=b",
            "a\nb",
            "a b",
            "",
            "-x",
            ".x",
            "wf';DROP TABLE x;--",
            "é",
            long.as_str(),
        ] {
            let err = validate_id("workflow_id", bad).unwrap_err();
            assert!(matches!(err, PayloadError::InvalidId { .. }), "{bad:?}");
            // The message never carries raw control characters into a log line.
            assert!(!err.to_string().contains('\n'), "{err}");
        }
        for good in ["workflow_abc123", "wf-1.2", "A", &"a".repeat(MAX_ID_LEN)] {
            validate_id("workflow_id", good).unwrap();
        }
        let err = resolve_json(
            r#"{"workflow_id":"x/../../etc","data_source_path":"/d"}"#,
            &cli(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("invalid workflow_id"), "{err}");
        let err = resolve_json(
            r#"{"workflow_id":"w","data_source_path":"/d","job_metadata":{"source_id":"s=1"}}"#,
            &cli(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("job_metadata.source_id"), "{err}");
    }

    #[test]
    fn multi_source_payloads() {
        let spec = resolve_json(
            r#"{"workflow_id":"w","source_id":"dflt","data_source_type":"csv","job_metadata":{"sources":[
                {"source_id":"a","data_source_path":"/a","data_source_type":"parquet"},
                {"data_source_path":"/b"}]}}"#,
            &cli(),
        )
        .unwrap();
        assert_eq!(spec.sources.len(), 2);
        assert_eq!(spec.sources[0].source_id.as_deref(), Some("a"));
        assert_eq!(spec.sources[0].source_type.as_deref(), Some("parquet"));
        assert_eq!(spec.sources[1].source_id.as_deref(), Some("dflt"));
        assert_eq!(spec.sources[1].source_type.as_deref(), Some("csv"));
        let err = resolve_json(
            r#"{"workflow_id":"w","sources":[],"job_metadata":{"sources":[]}}"#,
            &cli(),
        )
        .unwrap_err();
        assert_eq!(err, PayloadError::SourcesTwice);
        let err = resolve_json(
            r#"{"workflow_id":"w","sources":[{"data_source_path":"/a","source_id":"a'b"}]}"#,
            &cli(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("sources[0].source_id"), "{err}");
    }

    #[test]
    fn storage_options_belong_to_their_source_and_stay_secret() {
        let spec = resolve_json(
            r#"{"workflow_id":"w","data_source_path":"abfss://c@acct1.dfs.core.windows.net/x",
                "storage_options":{"azure_storage_account_key":"K3Y"},
                "sources":[{"data_source_path":"az://c/y","storage_options":{"sas_token":"sig=S1G","use_azure_cli":true}},
                           {"data_source_path":"/z"}]}"#,
            &cli(),
        )
        .unwrap();
        let opts: Vec<Vec<&str>> = spec
            .sources
            .iter()
            .map(|s| s.storage_options.secrets().collect())
            .collect();
        assert_eq!(opts, [vec!["sig=S1G"], vec![], vec!["K3Y"]]);
        assert_eq!(
            spec.sources[0].storage_options.get("use_azure_cli"),
            Some("true")
        );
        let shown = format!("{spec:?} {}", serde_json::to_string(&spec).unwrap());
        assert!(!shown.contains("K3Y") && !shown.contains("S1G"), "{shown}");

        let err = resolve_json(
            r#"{"workflow_id":"w","sources":[{"data_source_path":"/a","storage_options":{"acount_key":"x"}}]}"#,
            &cli(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(
                "payload field sources[0].storage_options.acount_key: unknown storage option"
            ),
            "{err}"
        );
        let err = resolve_json(
            r#"{"workflow_id":"w","data_source_path":"/a","storage_options":{"sas_token":5}}"#,
            &cli(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "payload field `storage_options.sas_token` must be a string, got a number"
        );
        let err = resolve_json(
            r#"{"workflow_id":"w","data_source_path":"/a","storage_options":"k"}"#,
            &cli(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "payload field `storage_options` must be an object, got a string"
        );
    }

    #[test]
    fn shards_split_tables_once() {
        let shards: Vec<Shard> = (0..3)
            .map(|i| Shard::parse("--shard", &format!("{i}/3")).unwrap())
            .collect();
        for name in ["a", "orders", "events/day", "x~2", ""] {
            assert_eq!(shards.iter().filter(|s| s.owns(name)).count(), 1, "{name}");
        }
        // The split is spread, not degenerate.
        let per: Vec<usize> = shards
            .iter()
            .map(|s| (0..300).filter(|i| s.owns(&format!("t{i}"))).count())
            .collect();
        assert!(per.iter().all(|n| *n > 60), "{per:?}");
        for bad in ["3/3", "1", "a/2", "0/0"] {
            assert!(Shard::parse("--shard", bad).is_err(), "{bad}");
        }
        let e = resolve_json(
            r#"{"workflow_id":"w","data_source_path":"/d","shard":"1/4"}"#,
            &CliJobArgs {
                shard: Some("2/4".into()),
                ..cli()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("shard conflict"), "{e}");
        let s = resolve_json(
            r#"{"workflow_id":"w","data_source_path":"/d","shard":"1/4"}"#,
            &cli(),
        )
        .unwrap();
        assert_eq!(s.shard, Some(Shard { index: 1, count: 4 }));
    }

    #[test]
    fn printable_escapes_and_truncates() {
        assert_eq!(printable("a\nb"), "\"a\\nb\"");
        let p = printable(&"x".repeat(1000));
        assert!(p.len() < 120 && p.contains("1000 chars"), "{p}");
    }
}
