//! Discovery: lists a source location once and groups its files into tables: single files,
//! folders of part files, Hive-style `key=value` partitioned folders, and Delta tables
//! (folders with `_delta_log`). Formats come from extensions, and from content (magic
//! bytes, text sniffing) where the extension says nothing. Nothing here reads more than the
//! first bytes of a file.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use bytes::Bytes;
use futures::TryStreamExt;
use globset::{Glob, GlobSet, GlobSetBuilder};
use object_store::path::Path as ObjPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use tokio::io::AsyncReadExt;

use crate::redact;
use crate::storage::location::{Location, relative};

/// How many leading bytes are read to sniff a format or a CSV dialect.
const SNIFF_BYTES: u64 = 64 * 1024;
/// Files sniffed at once unless told otherwise: each sniff is one read, mostly waiting on
/// the store.
const SNIFF_CONCURRENCY: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("source path not found: {0}")]
    NotFound(String),
    #[error("cannot list {path}: {reason}")]
    List { path: String, reason: String },
    #[error(
        "{path} holds more than {max} files (--max-files): name a narrower path, or raise the limit"
    )]
    TooManyFiles { path: String, max: usize },
    #[error("invalid glob {glob:?} in {option}: {reason}")]
    Glob {
        option: &'static str,
        glob: String,
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Json,
    Parquet,
    Avro,
    Arrow,
    Delta,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Json => "json",
            Self::Parquet => "parquet",
            Self::Avro => "avro",
            Self::Arrow => "arrow",
            Self::Delta => "delta",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

impl Compression {
    fn from_ext(ext: &str) -> Option<Self> {
        match ext {
            "gz" | "gzip" => Some(Self::Gzip),
            "bz2" => Some(Self::Bzip2),
            "xz" => Some(Self::Xz),
            "zst" | "zstd" => Some(Self::Zstd),
            _ => None,
        }
    }

    fn from_magic(b: &[u8]) -> Option<Self> {
        if b.starts_with(&[0x1f, 0x8b]) {
            Some(Self::Gzip)
        } else if b.starts_with(b"BZh") {
            Some(Self::Bzip2)
        } else if b.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Some(Self::Xz)
        } else if b.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Self::Zstd)
        } else {
            None
        }
    }
}

/// A CSV dialect found by sniffing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CsvDialect {
    pub delimiter: u8,
    pub has_header: bool,
}

/// How the profiler should find a table's files.
#[derive(Debug, Clone, PartialEq)]
pub enum Layout {
    /// Exactly these files.
    Files,
    /// Every file under the root folder whose name ends with `suffix` (partitioned tables,
    /// folders that hold nothing else), so DataFusion can read partition values from paths.
    Folder { suffix: String },
    /// A Delta table rooted at the folder.
    Delta,
}

#[derive(Debug, Clone)]
pub struct DiscoveredTable {
    pub name: String,
    /// The table's folder, or its single file.
    pub root: ObjPath,
    pub format: Format,
    pub compression: Compression,
    pub layout: Layout,
    pub files: Vec<ObjectMeta>,
    /// Hive partition columns in path order, with whether every value is an integer.
    pub partition_cols: Vec<(String, bool)>,
    pub csv: Option<CsvDialect>,
    pub json_array: bool,
    pub size_bytes: u64,
    /// A problem found while discovering, which fails this table only.
    pub problem: Option<String>,
    /// What the table's profile depends on: its files (names, sizes, ETags or modification
    /// times; a Delta table's log files too, so a new version changes it) and the profile
    /// settings given with [`Filters::with_fingerprints`]. Equal fingerprints, equal profiles.
    pub fingerprint: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Discovery {
    pub tables: Vec<DiscoveredTable>,
    pub files_found: u64,
    pub total_size_bytes: u64,
    pub skipped: Vec<Skipped>,
}

/// `--include` / `--exclude` globs, matched against paths relative to the source, and the
/// most files one source may list (`--max-files`).
#[derive(Debug, Clone, Default)]
pub struct Filters {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
    max_files: Option<usize>,
    contained: bool,
    reads_at_once: Option<usize>,
    fingerprint_salt: String,
    unchanged: std::sync::Arc<std::collections::HashSet<String>>,
}

impl Filters {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, DiscoverError> {
        fn build(option: &'static str, globs: &[String]) -> Result<Option<GlobSet>, DiscoverError> {
            if globs.is_empty() {
                return Ok(None);
            }
            let mut b = GlobSetBuilder::new();
            for g in globs {
                let glob = Glob::new(g).map_err(|e| DiscoverError::Glob {
                    option,
                    glob: g.clone(),
                    reason: e.kind().to_string(),
                })?;
                b.add(glob);
            }
            b.build().map(Some).map_err(|e| DiscoverError::Glob {
                option,
                glob: globs.join(","),
                reason: e.to_string(),
            })
        }
        Ok(Self {
            include: build("--include", include)?,
            exclude: build("--exclude", exclude)?,
            max_files: None,
            ..Default::default()
        })
    }

    /// Skips files of a local source reached through a symbolic link that leads outside the
    /// source (the HTTP API's jobs: a link must not take a caller past its allowed root).
    pub fn with_contained(mut self, contained: bool) -> Self {
        self.contained = contained;
        self
    }

    /// Files sniffed at once (each sniff is a round trip to the store); default 64.
    pub fn with_reads_at_once(mut self, n: usize) -> Self {
        self.reads_at_once = Some(n.max(1));
        self
    }

    /// Refuses a source whose listing holds more than `max` objects (checked while listing,
    /// so a huge listing stops there instead of being held whole).
    pub fn with_max_files(mut self, max: Option<usize>) -> Self {
        self.max_files = max;
        self
    }

    /// Fingerprints mix in `settings` (what else a profile depends on); a table whose
    /// fingerprint is in `unchanged` is not sniffed (its profile is carried, not read).
    pub fn with_fingerprints(
        mut self,
        settings: String,
        unchanged: std::sync::Arc<std::collections::HashSet<String>>,
    ) -> Self {
        self.fingerprint_salt = settings;
        self.unchanged = unchanged;
        self
    }

    fn admits(&self, rel: &str) -> bool {
        if let Some(inc) = &self.include
            && !inc.is_match(rel)
        {
            return false;
        }
        !self.exclude.as_ref().is_some_and(|e| e.is_match(rel))
    }
}

/// Files that engines write beside data and that are never data themselves.
fn is_system_name(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('_') || name.ends_with(".crc")
}

/// Format and compression from a file name alone. `None` format: the name does not say.
/// The CSV delimiter hint comes from `.tsv` / `.psv`.
fn format_from_name(name: &str) -> (Option<Format>, Compression, Option<u8>) {
    let lower = name.to_ascii_lowercase();
    let mut parts: Vec<&str> = lower.split('.').skip(1).collect();
    let mut compression = Compression::None;
    if let Some(c) = parts.last().and_then(|e| Compression::from_ext(e)) {
        compression = c;
        parts.pop();
    }
    let (format, hint) = match parts.last().copied() {
        Some("csv") => (Some(Format::Csv), Some(b',')),
        Some("tsv" | "tab") => (Some(Format::Csv), Some(b'\t')),
        Some("psv") => (Some(Format::Csv), Some(b'|')),
        Some("txt" | "dat") => (Some(Format::Csv), None),
        Some("json" | "jsonl" | "ndjson") => (Some(Format::Json), None),
        Some("parquet" | "pq" | "parq") => (Some(Format::Parquet), None),
        Some("avro") => (Some(Format::Avro), None),
        Some("arrow" | "feather" | "ipc" | "arrows") => (Some(Format::Arrow), None),
        _ => (None, None),
    };
    (format, compression, hint)
}

/// The compression of a file whose name says it is a text format (CSV or JSON); `None` for
/// any other file.
pub fn text_compression(name: &str) -> Option<Compression> {
    match format_from_name(name) {
        (Some(Format::Csv | Format::Json), c, _) => Some(c),
        _ => None,
    }
}

/// Decompresses as much of a (possibly truncated) compressed prefix as it can.
async fn decompress_prefix(data: &[u8], c: Compression) -> Vec<u8> {
    use async_compression::tokio::bufread::{BzDecoder, GzipDecoder, XzDecoder, ZstdDecoder};
    let reader = tokio::io::BufReader::new(data);
    let mut dec: Box<dyn tokio::io::AsyncRead + Unpin + Send + '_> = match c {
        Compression::None => return data.to_vec(),
        Compression::Gzip => Box::new(GzipDecoder::new(reader)),
        Compression::Bzip2 => Box::new(BzDecoder::new(reader)),
        Compression::Xz => Box::new(XzDecoder::new(reader)),
        Compression::Zstd => Box::new(ZstdDecoder::new(reader)),
    };
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    // A truncated stream ends in an error; what came before it is what we want.
    while out.len() < SNIFF_BYTES as usize {
        match dec.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

/// Splits sniffed text into complete lines (the last, maybe cut, line is dropped unless the
/// text is the whole file).
fn sample_lines(text: &str, whole: bool) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if !whole && lines.len() > 1 {
        lines.pop();
    }
    lines.truncate(200);
    lines
}

/// Splits one CSV line on `delim`, honouring double quotes.
fn split_csv_line(line: &str, delim: char) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if in_quotes && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => in_quotes = !in_quotes,
            c if c == delim && !in_quotes => fields.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

fn looks_numeric(s: &str) -> bool {
    let t = s.trim();
    !t.is_empty() && t.parse::<f64>().is_ok()
}

/// Finds the delimiter (the candidate that splits every sampled line into the same number
/// of fields, preferring more fields) and whether the first line is a header.
/// `single_column` allows a file without any delimiter (one column) when the name already
/// says it is delimited text; content alone must show at least two columns.
pub fn sniff_csv(
    text: &str,
    whole: bool,
    hint: Option<u8>,
    single_column: bool,
) -> Option<CsvDialect> {
    let lines = sample_lines(text, whole);
    let first = *lines.first()?;
    let delimiter = match hint {
        Some(d) => d,
        None => {
            let mut best: Option<(u8, usize)> = None;
            for d in [b',', b'\t', b';', b'|'] {
                let n = split_csv_line(first, d as char).len();
                if n < 2 {
                    continue;
                }
                let consistent = lines
                    .iter()
                    .all(|l| split_csv_line(l, d as char).len() == n);
                if consistent && best.is_none_or(|(_, m)| n > m) {
                    best = Some((d, n));
                }
            }
            match best {
                Some((d, _)) => d,
                // One column: no delimiter at all is still a valid CSV, if it is text.
                None if single_column => b',',
                None => return None,
            }
        }
    };
    let header = split_csv_line(first, delimiter as char);
    let unique: BTreeSet<&str> = header.iter().map(|s| s.trim()).collect();
    let mut has_header = header
        .iter()
        .all(|h| !h.trim().is_empty() && !looks_numeric(h))
        && unique.len() == header.len();
    // A first row of distinct non-numeric words is a header unless a later row repeats it
    // (a headerless file of words). A file of words only is read with a header, as Spark's
    // `header=true` users expect.
    if has_header {
        let header_repeats = lines[1..].iter().any(|l| {
            split_csv_line(l, delimiter as char)
                .iter()
                .zip(&header)
                .all(|(a, b)| a.trim() == b.trim())
        });
        has_header = !header_repeats;
    }
    Some(CsvDialect {
        delimiter,
        has_header,
    })
}

/// What sniffing a file's first bytes found.
#[derive(Debug, Clone, PartialEq)]
struct Sniffed {
    format: Option<Format>,
    compression: Compression,
    csv: Option<CsvDialect>,
    json_array: bool,
    reason: Option<String>,
}

async fn read_prefix(
    store: &dyn ObjectStore,
    meta: &ObjectMeta,
) -> Result<Bytes, object_store::Error> {
    let len = meta.size.min(SNIFF_BYTES);
    if len == 0 {
        return Ok(Bytes::new());
    }
    // An explicit range, not a suffix: Azure does not serve suffix ranges.
    store.get_range(&meta.location, 0..len).await
}

/// Looks inside a file: magic bytes, then text (JSON or delimited).
async fn sniff(
    store: &dyn ObjectStore,
    meta: &ObjectMeta,
    named: (Option<Format>, Compression, Option<u8>),
) -> Sniffed {
    let (named_format, named_comp, hint) = named;
    let raw = match read_prefix(store, meta).await {
        Ok(b) => b,
        Err(e) => {
            return Sniffed {
                format: None,
                compression: named_comp,
                csv: None,
                json_array: false,
                reason: Some(format!("cannot read: {}", redact::text(&e.to_string()))),
            };
        }
    };
    let mut compression = named_comp;
    let mut format = named_format;
    if format.is_none() && compression == Compression::None {
        if raw.starts_with(b"PAR1") {
            format = Some(Format::Parquet);
        } else if raw.starts_with(b"Obj\x01") {
            format = Some(Format::Avro);
        } else if raw.starts_with(b"ARROW1") {
            format = Some(Format::Arrow);
        } else if let Some(c) = Compression::from_magic(&raw) {
            compression = c;
        }
    }
    let mut out = Sniffed {
        format,
        compression,
        csv: None,
        json_array: false,
        reason: None,
    };
    if matches!(format, Some(Format::Parquet | Format::Avro | Format::Arrow)) {
        return out;
    }
    let whole = meta.size <= SNIFF_BYTES;
    let data = decompress_prefix(&raw, compression).await;
    // A cut may split a UTF-8 character; only the valid prefix matters.
    let text = match std::str::from_utf8(&data) {
        Ok(t) => t,
        Err(e) => {
            let t = std::str::from_utf8(&data[..e.valid_up_to()]).unwrap_or("");
            if e.error_len().is_some() || t.is_empty() && !data.is_empty() {
                out.reason = Some("not text and not a known binary format".into());
                if format.is_none() {
                    return out;
                }
            }
            t
        }
    };
    if text.contains('\0') {
        out.reason = Some("binary content (NUL bytes) in a text format".into());
        out.format = None;
        return out;
    }
    let first = text.trim_start().chars().next();
    match format {
        Some(Format::Json) => out.json_array = first == Some('['),
        Some(Format::Csv) => {
            out.csv = sniff_csv(text, whole, hint, true).or(Some(CsvDialect {
                delimiter: hint.unwrap_or(b','),
                has_header: true,
            }))
        }
        _ => {
            if matches!(first, Some('{' | '[')) {
                out.format = Some(Format::Json);
                out.json_array = first == Some('[');
            } else if let Some(d) = sniff_csv(text, whole, None, false) {
                out.format = Some(Format::Csv);
                out.csv = Some(d);
            } else if text.is_empty() {
                out.reason = Some("empty file".into());
            } else {
                out.reason = Some("text without a consistent delimiter".into());
            }
        }
    }
    out
}

/// Replaces runs of digits and UUIDs in a file stem so that part files share one pattern.
fn stem_pattern(stem: &str) -> String {
    let mut out = String::new();
    let mut prev_hash = false;
    let bytes: Vec<char> = stem.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        // UUID: 8-4-4-4-12 hex.
        if i + 36 <= bytes.len() {
            let cand: String = bytes[i..i + 36].iter().collect();
            let is_uuid = cand.char_indices().all(|(j, ch)| {
                if [8, 13, 18, 23].contains(&j) {
                    ch == '-'
                } else {
                    ch.is_ascii_hexdigit()
                }
            });
            if is_uuid {
                if !prev_hash {
                    out.push('#');
                }
                prev_hash = true;
                i += 36;
                continue;
            }
        }
        if c.is_ascii_digit() {
            if !prev_hash {
                out.push('#');
            }
            prev_hash = true;
        } else {
            out.push(c);
            prev_hash = false;
        }
        i += 1;
    }
    out
}

/// Strips every extension-like suffix that carries no table meaning.
fn bare_stem(name: &str) -> &str {
    let mut stem = name;
    loop {
        let Some((head, ext)) = stem.rsplit_once('.') else {
            return stem;
        };
        let e = ext.to_ascii_lowercase();
        let known = Compression::from_ext(&e).is_some()
            || format_from_name(&format!("x.{e}")).0.is_some()
            || matches!(e.as_str(), "snappy" | "lz4" | "zstd" | "c000" | "gz");
        if !known || head.is_empty() {
            return stem;
        }
        stem = head;
    }
}

fn partition_kv(segment: &str) -> Option<(&str, &str)> {
    let (k, v) = segment.split_once('=')?;
    (!k.is_empty() && !k.starts_with(['.', '_'])).then_some((k, v))
}

struct Candidate {
    meta: ObjectMeta,
    rel: String,
    format: Format,
    compression: Compression,
    hint: Option<u8>,
    sniffed: Option<Sniffed>,
}

/// The last component of a location, used to name a table that is the whole source.
fn location_name(loc: &Location) -> String {
    loc.display
        .trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or("table")
        .to_string()
}

/// Lists `loc` and groups what it finds into tables.
pub async fn discover(loc: &Location, filters: &Filters) -> Result<Discovery, DiscoverError> {
    let store = loc.store.as_ref();
    let reads_at_once = filters.reads_at_once.unwrap_or(SNIFF_CONCURRENCY);
    let mut objects: Vec<ObjectMeta> = Vec::new();
    if !loc.single_object {
        let mut listing = store.list(Some(&loc.prefix));
        while let Some(m) = listing.try_next().await.map_err(|e| list_error(loc, e))? {
            if filters.max_files.is_some_and(|max| objects.len() >= max) {
                return Err(DiscoverError::TooManyFiles {
                    path: loc.display.clone(),
                    max: filters.max_files.unwrap_or_default(),
                });
            }
            objects.push(m);
        }
    }
    let mut source_is_file = false;
    if objects.is_empty() {
        match store.head(&loc.prefix).await {
            Ok(meta) => {
                objects.push(meta);
                source_is_file = true;
            }
            Err(object_store::Error::NotFound { .. }) => {
                return Err(DiscoverError::NotFound(loc.display.clone()));
            }
            Err(e) => return Err(list_error(loc, e)),
        }
    }
    objects.sort_by(|a, b| a.location.cmp(&b.location));
    let rel_of = |m: &ObjectMeta| -> String {
        if source_is_file {
            m.location.filename().unwrap_or_default().to_string()
        } else {
            relative(&loc.prefix, &m.location)
        }
    };

    let mut escaped = Vec::new();
    if filters.contained
        && let Some(root) = loc
            .local_dir
            .as_ref()
            .and_then(|d| std::fs::canonicalize(d).ok())
    {
        objects.retain(|m| {
            let real = std::fs::canonicalize(format!("/{}", m.location));
            let inside = real.as_ref().is_ok_and(|r| r.starts_with(&root));
            if !inside {
                escaped.push(Skipped {
                    path: rel_of(m),
                    reason: "a symbolic link leading outside the source: not followed".into(),
                });
            }
            inside
        });
    }

    // Delta roots first: everything below one belongs to that table. Each path is looked
    // up by its folders (a set lookup per folder), so this stays linear in the objects.
    let mut found_roots: HashSet<String> = HashSet::new();
    for m in &objects {
        let rel = rel_of(m);
        let segs: Vec<&str> = rel.split('/').collect();
        if let Some(i) = segs.iter().position(|s| *s == "_delta_log") {
            found_roots.insert(segs[..i].join("/"));
        }
    }
    // A Delta table inside another one's folder is part of it.
    let delta_roots: BTreeSet<String> = found_roots
        .iter()
        .filter(|r| !folders_above(r).any(|a| found_roots.contains(a)))
        .cloned()
        .collect();
    let delta_root_of = |rel: &str| -> Option<String> {
        if delta_roots.is_empty() {
            return None;
        }
        folders_above(rel)
            .chain(std::iter::once(rel))
            .find(|a| delta_roots.contains(*a))
            .map(str::to_string)
    };

    let mut out = Discovery {
        skipped: escaped,
        ..Default::default()
    };
    let mut delta_files: BTreeMap<String, Vec<ObjectMeta>> = delta_roots
        .iter()
        .map(|r| (r.clone(), Vec::new()))
        .collect();
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut to_sniff: Vec<usize> = Vec::new();
    for m in objects.iter() {
        let rel = rel_of(m);
        if let Some(root) = delta_root_of(&rel) {
            let inner = rel[root.len()..].trim_start_matches('/');
            if !inner.starts_with("_delta_log") && !inner.split('/').any(is_system_name) {
                out.files_found += 1;
                delta_files.get_mut(&root).expect("root").push(m.clone());
            }
            continue;
        }
        if rel.split('/').any(is_system_name) || !filters.admits(&rel) {
            continue;
        }
        out.files_found += 1;
        out.total_size_bytes += m.size;
        let name = rel.rsplit('/').next().unwrap_or(&rel);
        let (format, compression, hint) = format_from_name(name);
        let idx = candidates.len();
        candidates.push(Candidate {
            meta: m.clone(),
            rel: rel.clone(),
            format: format.unwrap_or(Format::Csv),
            compression,
            hint,
            sniffed: None,
        });
        if format.is_none() {
            to_sniff.push(idx);
        } else if matches!(format, Some(Format::Parquet | Format::Avro | Format::Arrow))
            && compression != Compression::None
        {
            candidates[idx].sniffed = Some(Sniffed {
                format: None,
                compression,
                csv: None,
                json_array: false,
                reason: Some(
                    "compressed binary files are not readable; store them uncompressed".into(),
                ),
            });
        }
    }

    // Files whose names say nothing are sniffed, a bounded number at once.
    let sniffed: Vec<(usize, Sniffed)> = futures::stream::iter(to_sniff.into_iter().map(|i| {
        let meta = candidates[i].meta.clone();
        let named = (None, candidates[i].compression, candidates[i].hint);
        async move { (i, sniff(store, &meta, named).await) }
    }))
    .buffer_unordered(reads_at_once)
    .collect()
    .await;
    for (i, s) in sniffed {
        candidates[i].sniffed = Some(s);
    }

    // Group the readable files.
    #[derive(PartialEq, Eq, PartialOrd, Ord, Clone)]
    struct Key {
        root: String,
        partitioned: bool,
        format: Format,
        compression: Compression,
        pattern: String,
    }
    let mut groups: BTreeMap<Key, Vec<usize>> = BTreeMap::new();
    // Per group: the partition keys and values of each file, in path order.
    type KeysAndValues = (Vec<Vec<String>>, Vec<Vec<String>>);
    let mut partition_keys: BTreeMap<Key, KeysAndValues> = BTreeMap::new();
    for (i, c) in candidates.iter_mut().enumerate() {
        if let Some(s) = &c.sniffed {
            match s.format {
                Some(f) if s.reason.is_none() || f != Format::Csv || s.csv.is_some() => {
                    c.format = f;
                    c.compression = s.compression;
                }
                _ => {
                    out.skipped.push(Skipped {
                        path: loc.display_of(&c.meta.location),
                        reason: s
                            .reason
                            .clone()
                            .unwrap_or_else(|| "unrecognised format".into()),
                    });
                    continue;
                }
            }
        }
        let segs: Vec<&str> = c.rel.split('/').collect();
        let dirs = &segs[..segs.len() - 1];
        let file = segs[segs.len() - 1];
        let kv_start = dirs
            .iter()
            .rposition(|s| partition_kv(s).is_none())
            .map(|p| p + 1)
            .unwrap_or(0);
        let partitioned = kv_start < dirs.len();
        let key = Key {
            root: dirs[..kv_start].join("/"),
            partitioned,
            format: c.format,
            compression: c.compression,
            pattern: if partitioned {
                String::new()
            } else {
                stem_pattern(bare_stem(file))
            },
        };
        if partitioned {
            let (ks, vs): (Vec<String>, Vec<String>) = dirs[kv_start..]
                .iter()
                .map(|s| {
                    let (k, v) = partition_kv(s).expect("kv");
                    (k.to_string(), v.to_string())
                })
                .unzip();
            let e = partition_keys.entry(key.clone()).or_default();
            e.0.push(ks);
            e.1.push(vs);
        }
        groups.entry(key).or_default().push(i);
    }

    // Groups per folder, to know whether a folder holds one table only.
    let mut groups_per_dir: BTreeMap<String, usize> = BTreeMap::new();
    for k in groups.keys() {
        *groups_per_dir.entry(k.root.clone()).or_default() += 1;
    }
    let all_rels: Vec<String> = objects.iter().map(rel_of).collect();
    let source_name = location_name(loc);

    for (key, idxs) in groups {
        let files: Vec<ObjectMeta> = idxs.iter().map(|&i| candidates[i].meta.clone()).collect();
        let first = &candidates[idxs[0]];
        let size_bytes = files.iter().map(|f| f.size).sum();
        let single_file = files.len() == 1 && !key.partitioned;
        let (name, root, layout) = if single_file {
            let rel = &first.rel;
            let stem = bare_stem(rel.rsplit('/').next().unwrap_or(rel));
            let dir = rel.rsplit_once('/').map(|(d, _)| d);
            let is_part_file = stem.starts_with("part-") || stem.starts_with("part_");
            let name = match (dir, is_part_file) {
                (Some(d), true) if groups_per_dir.get(d) == Some(&1) => d.to_string(),
                (None, true) if !source_is_file => source_name.clone(),
                (Some(d), _) => format!("{d}/{stem}"),
                (None, _) => stem.to_string(),
            };
            (name, first.meta.location.clone(), Layout::Files)
        } else {
            let root_path = join_obj(&loc.prefix, &key.root);
            let alone = groups_per_dir.get(&key.root) == Some(&1);
            let base = if key.root.is_empty() {
                source_name.clone()
            } else {
                key.root.clone()
            };
            let name = if key.partitioned || alone {
                base
            } else {
                let p = key
                    .pattern
                    .trim_matches(|c: char| c == '#' || c == '_' || c == '-' || c == '.');
                let stem = if p.is_empty() {
                    bare_stem(first.rel.rsplit('/').next().unwrap_or(&first.rel)).to_string()
                } else {
                    p.replace('#', "")
                };
                if key.root.is_empty() {
                    stem
                } else {
                    format!("{}/{stem}", key.root)
                }
            };
            let suffix = common_suffix(&files);
            // A folder can be handed over whole only if every file under it with that suffix
            // is one of ours (DataFusion lists folders recursively).
            let prefix_str = if key.root.is_empty() {
                String::new()
            } else {
                format!("{}/", key.root)
            };
            // The paths under the folder are one run of the sorted list: found by binary
            // search, not by a scan of every path per table.
            let from = all_rels.partition_point(|r| r.as_str() < prefix_str.as_str());
            let under = all_rels[from..]
                .iter()
                .take_while(|r| r.starts_with(&prefix_str))
                .filter(|r| r.ends_with(&suffix))
                .count();
            let layout = if (key.partitioned || under == files.len()) && !suffix.is_empty() {
                Layout::Folder { suffix }
            } else {
                Layout::Files
            };
            (name, root_path, layout)
        };
        let mut table = DiscoveredTable {
            name,
            root,
            format: key.format,
            compression: key.compression,
            layout,
            size_bytes,
            files,
            partition_cols: Vec::new(),
            csv: first.sniffed.as_ref().and_then(|s| s.csv),
            json_array: first.sniffed.as_ref().is_some_and(|s| s.json_array),
            problem: None,
            fingerprint: String::new(),
        };
        if let Some((ks, vs)) = partition_keys.get(&key) {
            let names = &ks[0];
            if ks.iter().any(|k| k != names) {
                table.problem = Some(format!(
                    "inconsistent partition folders under {}: {:?} vs {:?}",
                    loc.display_of(&table.root),
                    names,
                    ks.iter().find(|k| *k != names).expect("differs")
                ));
            }
            table.partition_cols = names
                .iter()
                .enumerate()
                .map(|(j, n)| {
                    let all_int = vs
                        .iter()
                        .all(|v| v.get(j).is_some_and(|x| x.parse::<i64>().is_ok()));
                    (n.clone(), all_int)
                })
                .collect();
        }
        out.tables.push(table);
    }

    for (root, files) in delta_files {
        let name = if root.is_empty() {
            source_name.clone()
        } else {
            root.clone()
        };
        out.total_size_bytes += files.iter().map(|f| f.size).sum::<u64>();
        out.tables.push(DiscoveredTable {
            name,
            root: join_obj(&loc.prefix, &root),
            format: Format::Delta,
            compression: Compression::None,
            layout: Layout::Delta,
            size_bytes: files.iter().map(|f| f.size).sum(),
            files,
            partition_cols: Vec::new(),
            csv: None,
            json_array: false,
            problem: None,
            fingerprint: String::new(),
        });
    }

    for t in &mut out.tables {
        t.fingerprint = fingerprint(&filters.fingerprint_salt, &t.files);
    }

    // CSV dialect and JSON flavour of tables whose files were named, sniffed once a table,
    // many tables at once (each sniff is a round trip to the store).
    let dialects: Vec<(usize, Sniffed)> = futures::stream::iter(
        out.tables
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                matches!(t.format, Format::Csv | Format::Json)
                    && t.csv.is_none()
                    && !t.json_array
                    && !filters.unchanged.contains(&t.fingerprint)
            })
            .map(|(i, t)| {
                let hint = format_from_name(t.files[0].location.filename().unwrap_or_default()).2;
                let (meta, named) = (t.files[0].clone(), (Some(t.format), t.compression, hint));
                async move { (i, sniff(store, &meta, named).await) }
            }),
    )
    .buffer_unordered(reads_at_once)
    .collect()
    .await;
    for (i, s) in dialects {
        let t = &mut out.tables[i];
        if let Some(r) = s.reason.filter(|_| s.format.is_none()) {
            t.problem.get_or_insert(r);
        }
        t.csv = s.csv;
        t.json_array = s.json_array;
    }

    make_names_unique(&mut out.tables);
    out.tables.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

use futures::StreamExt;

/// A table's fingerprint: SHA-256 over `salt` and each file's path, size and ETag (or
/// modification time where the store gives none), in path order; 32 hex digits.
pub fn fingerprint(salt: &str, files: &[ObjectMeta]) -> String {
    use sha2::Digest;
    let mut sorted: Vec<&ObjectMeta> = files.iter().collect();
    sorted.sort_by(|a, b| a.location.cmp(&b.location));
    let mut h = sha2::Sha256::new();
    h.update(salt.as_bytes());
    for f in sorted {
        h.update(b"\0");
        h.update(f.location.as_ref().as_bytes());
        h.update(f.size.to_le_bytes());
        match &f.e_tag {
            Some(tag) => h.update(tag.as_bytes()),
            None => h.update(f.last_modified.timestamp_micros().to_le_bytes()),
        }
    }
    short_digest(h)
}

/// The first 16 bytes of a SHA-256, in hex: the fingerprints' and keys' form.
pub fn short_digest(h: sha2::Sha256) -> String {
    use sha2::Digest;
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn list_error(loc: &Location, e: object_store::Error) -> DiscoverError {
    DiscoverError::List {
        path: loc.display.clone(),
        reason: loc.explain(&e),
    }
}

/// The folders above a relative path, outermost first: `a/b/c` -> "", "a", "a/b".
fn folders_above(rel: &str) -> impl Iterator<Item = &str> {
    let inner = rel.match_indices('/').map(move |(i, _)| &rel[..i]);
    (!rel.is_empty()).then_some("").into_iter().chain(inner)
}

fn join_obj(prefix: &ObjPath, rel: &str) -> ObjPath {
    rel.split('/')
        .filter(|s| !s.is_empty())
        .fold(prefix.clone(), |p, s| p.join(s))
}

/// The longest extension suffix (".csv", ".csv.gz") every file shares; "" if none.
fn common_suffix(files: &[ObjectMeta]) -> String {
    let names: Vec<String> = files
        .iter()
        .map(|f| f.location.filename().unwrap_or_default().to_string())
        .collect();
    let ext_of = |n: &str| -> String {
        let (fmt, comp, _) = format_from_name(n);
        if fmt.is_none() {
            return String::new();
        }
        let parts: Vec<&str> = n.rsplitn(3, '.').collect();
        if comp != Compression::None && parts.len() >= 3 {
            format!(".{}.{}", parts[1], parts[0])
        } else {
            format!(".{}", parts[0])
        }
    };
    let first = ext_of(&names[0]);
    if names.iter().all(|n| ext_of(n) == first) {
        first
    } else {
        String::new()
    }
}

/// Table names must be unique within a source: a clash (`x.csv` beside `x.parquet`) gets the
/// format appended, and any clash left after that a counter.
fn make_names_unique(tables: &mut [DiscoveredTable]) {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for t in tables.iter() {
        *counts.entry(t.name.clone()).or_default() += 1;
    }
    for t in tables.iter_mut() {
        if counts[&t.name] > 1 {
            t.name = format!("{}.{}", t.name, t.format.as_str());
        }
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for t in tables.iter_mut() {
        let n = seen.entry(t.name.clone()).or_default();
        *n += 1;
        if *n > 1 {
            t.name = format!("{}~{}", t.name, n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_above_a_path_outermost_first() {
        assert_eq!(
            folders_above("a/b/c.csv").collect::<Vec<_>>(),
            ["", "a", "a/b"]
        );
        assert_eq!(folders_above("c.csv").collect::<Vec<_>>(), [""]);
        assert_eq!(folders_above("").count(), 0);
    }

    #[test]
    fn names_say_format_and_compression() {
        assert_eq!(
            format_from_name("a.CSV"),
            (Some(Format::Csv), Compression::None, Some(b','))
        );
        assert_eq!(
            format_from_name("a.tsv.gz"),
            (Some(Format::Csv), Compression::Gzip, Some(b'\t'))
        );
        assert_eq!(format_from_name("a.jsonl.zst").0, Some(Format::Json));
        assert_eq!(
            format_from_name("part-0.snappy.parquet").0,
            Some(Format::Parquet)
        );
        assert_eq!(format_from_name("part-00000").0, None);
        assert_eq!(format_from_name("x.feather").0, Some(Format::Arrow));
    }

    #[test]
    fn part_files_share_a_pattern() {
        assert_eq!(
            stem_pattern(bare_stem(
                "part-00000-8a7c3f2e-1b2c-4d5e-9f00-123456789abc-c000.snappy.parquet"
            )),
            stem_pattern(bare_stem(
                "part-00017-0a7c3f2e-1b2c-4d5e-9f00-123456789abd-c000.snappy.parquet"
            ))
        );
        assert_eq!(stem_pattern("events_2024_01"), "events_#_#");
        assert_ne!(stem_pattern("customers"), stem_pattern("orders"));
    }

    #[test]
    fn csv_sniffing() {
        let d = sniff_csv("id;name;score\n1;a;2.5\n2;b;3\n", true, None, false).unwrap();
        assert_eq!(
            d,
            CsvDialect {
                delimiter: b';',
                has_header: true
            }
        );
        let d = sniff_csv("1\t2\t3\n4\t5\t6\n", true, None, false).unwrap();
        assert_eq!(
            d,
            CsvDialect {
                delimiter: b'\t',
                has_header: false
            }
        );
        let d = sniff_csv("a,\"b,c\",d\n1,\"x,y\",2\n", true, None, false).unwrap();
        assert_eq!(d.delimiter, b',');
        assert!(
            sniff_csv(
                "just some prose, with a comma\nand no structure at all\nreally",
                true,
                None,
                false
            )
            .is_none()
        );
    }
}
