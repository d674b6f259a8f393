//! Locations: turns what a user pastes (a local path, `file://`, `/Volumes/...`, `dbfs:/...`,
//! and every Azure URL form) into one `Arc<dyn ObjectStore>` plus a prefix, built in this one
//! place. Everything downstream (discovery, profiling, the Delta warehouse) takes a
//! [`Location`] and never parses paths itself. Secrets (SAS queries) are kept out of every
//! display string.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use url::Url;

use crate::azure::StorageOptions;

#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    #[error("empty location")]
    Empty,
    #[error(
        "unsupported location {0}: use a local path, file://, /Volumes/..., dbfs:/..., or an Azure URL (abfss://, https://<account>.blob|dfs.core.windows.net, wasbs://, az://)"
    )]
    Unsupported(String),
    #[error("invalid location {shown}: {reason}")]
    Invalid { shown: String, reason: String },
    #[error("cannot create directory {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("object store error for {shown}: {source}")]
    Store {
        shown: String,
        source: object_store::Error,
    },
    #[error("{0}")]
    Azure(#[from] crate::azure::AzureError),
    #[error("storage_options apply to Azure locations only, not {0}")]
    OptionsNotApplicable(String),
}

/// What kind of storage a location is on; stored as the default `source_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocationKind {
    Local,
    Volumes,
    Dbfs,
    AzureBlob,
    Adls,
}

impl LocationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Volumes => "volumes",
            Self::Dbfs => "dbfs",
            Self::AzureBlob => "azure_blob",
            Self::Adls => "adls",
        }
    }
}

/// A parsed location: a store, the prefix inside it, and how to name it to users.
#[derive(Debug, Clone)]
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    /// The URL of the store's root, under which DataFusion finds `store`.
    pub store_url: Url,
    pub prefix: ObjPath,
    /// How the location is shown in logs, errors and tables; never holds a secret.
    pub display: String,
    pub kind: LocationKind,
    /// The local directory, for local locations (used to create missing directories).
    pub local_dir: Option<PathBuf>,
    /// For remote stores: the account and the credential method, to name in errors.
    pub remote: Option<Remote>,
    /// The location is one object that may not be listed (a blob SAS, `sr=b`): it is
    /// looked up directly instead.
    pub single_object: bool,
}

/// What a remote location's errors need to say, and its request counters.
#[derive(Debug, Clone)]
pub struct Remote {
    pub account: String,
    pub method: String,
    pub stats: Arc<crate::store::StoreStats>,
}

impl Location {
    /// Full URL of an object in this location's store (for DataFusion / delta-rs).
    pub fn url_of(&self, path: &ObjPath) -> String {
        let base = self.store_url.as_str();
        let base = base.strip_suffix('/').unwrap_or(base);
        format!("{base}/{}", encode_path(path))
    }

    /// URL of a "directory" in this location's store, with the trailing slash DataFusion
    /// needs to treat it as a collection.
    pub fn dir_url_of(&self, path: &ObjPath) -> String {
        let mut u = self.url_of(path);
        if !u.ends_with('/') {
            u.push('/');
        }
        u
    }

    /// How a path in this location is shown to users: relative paths are joined to
    /// [`Location::display`], so a `dbfs:/` source keeps its `dbfs:/` spelling.
    pub fn display_of(&self, path: &ObjPath) -> String {
        let rel = relative(&self.prefix, path);
        if rel.is_empty() {
            self.display.clone()
        } else {
            format!("{}/{}", self.display.trim_end_matches('/'), rel)
        }
    }

    /// A child location (same store).
    pub fn child(&self, name: &str) -> Location {
        let mut c = self.clone();
        c.prefix = self.prefix.clone().join(name);
        c.display = format!("{}/{}", self.display.trim_end_matches('/'), name);
        c.local_dir = self.local_dir.as_ref().map(|d| d.join(name));
        c
    }

    /// Requests made through this location's store so far (zero for local stores).
    pub fn requests(&self) -> crate::store::RequestCounts {
        self.remote
            .as_ref()
            .map(|r| r.stats.snapshot())
            .unwrap_or_default()
    }

    /// Explains a storage error to a user: a refused or missing credential names the
    /// account and the method used, once; nothing secret is shown.
    pub fn explain(&self, e: &object_store::Error) -> String {
        self.explain_text(&e.to_string())
    }

    /// [`Location::explain`] for an error that is already text (delta-rs wraps store errors).
    pub fn explain_text(&self, text: &str) -> String {
        let text = crate::redact::text(text);
        match &self.remote {
            Some(r) if crate::azure::is_auth_error(&text) => {
                let code = error_code(&text)
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default();
                format!(
                    "Azure storage account {:?} refused access using {}{code}: check that the credential is valid, not expired, and allows list/read (and write, for a warehouse)",
                    r.account, r.method
                )
            }
            _ => text,
        }
    }

    /// Creates the directory of a local location; remote stores have no directories.
    pub fn ensure_dir(&self) -> Result<(), LocationError> {
        if let Some(dir) = &self.local_dir {
            std::fs::create_dir_all(dir).map_err(|source| LocationError::CreateDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        Ok(())
    }
}

/// The status and Azure error code of a storage error's text, e.g. `403 AuthenticationFailed`.
fn error_code(text: &str) -> Option<String> {
    let status = ["401", "403"].into_iter().find(|s| text.contains(s));
    let code = text
        .split("<Code>")
        .nth(1)
        .and_then(|r| r.split("</Code>").next());
    match (status, code) {
        (Some(s), Some(c)) => Some(format!("HTTP {s} {c}")),
        (Some(s), None) => Some(format!("HTTP {s}")),
        (None, Some(c)) => Some(c.to_string()),
        (None, None) => None,
    }
}

fn encode_path(path: &ObjPath) -> String {
    // ObjPath parts are already percent-encoded where needed by object_store.
    path.as_ref().to_string()
}

/// `path` relative to `prefix`, as a `/`-joined string ("" when equal).
pub fn relative(prefix: &ObjPath, path: &ObjPath) -> String {
    match path.prefix_match(prefix) {
        Some(parts) => parts
            .map(|p| p.as_ref().to_string())
            .collect::<Vec<_>>()
            .join("/"),
        None => path.as_ref().to_string(),
    }
}

/// Root of the FUSE mount Databricks gives `dbfs:/` paths on a cluster.
fn dbfs_root() -> PathBuf {
    std::env::var_os("NUVYN_DBFS_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/dbfs"))
}

/// Makes a path absolute and removes `.`/`..` without touching the file system (the path
/// may not exist yet, for a warehouse).
fn absolutize(p: &Path) -> Result<PathBuf, std::io::Error> {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Ok(out)
}

fn local(abs: PathBuf, display: String, kind: LocationKind) -> Result<Location, LocationError> {
    let shown = display.clone();
    let prefix = ObjPath::from_absolute_path(&abs).map_err(|e| LocationError::Invalid {
        shown: shown.clone(),
        reason: e.to_string(),
    })?;
    // object_store's from_absolute_path gives a path relative to "/"; the store is rooted there.
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
    Ok(Location {
        store,
        store_url: Url::parse("file:///").expect("static url"),
        prefix,
        display,
        kind,
        local_dir: Some(abs),
        remote: None,
        single_object: false,
    })
}

/// The parts of an Azure location, whatever form it was pasted in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureUrl {
    /// `None` for `az://` (the account comes from configuration).
    pub account: Option<String>,
    pub container: String,
    /// The path inside the container, without leading or trailing slashes.
    pub path: String,
    /// `dfs` (ADLS Gen2) or `blob` endpoint, as the user wrote it.
    pub dfs: bool,
    /// Emulator endpoint (`http://127.0.0.1:10000/devstoreaccount1`), if the URL named one.
    pub endpoint: Option<String>,
    /// The URL's query (a SAS token), kept apart so that it never reaches a display string.
    pub sas: Option<Vec<(String, String)>>,
}

impl AzureUrl {
    /// How the location is shown: the URL without its query.
    pub fn display(&self) -> String {
        let path = if self.path.is_empty() {
            String::new()
        } else {
            format!("/{}", self.path)
        };
        match (&self.endpoint, &self.account) {
            (Some(ep), _) => format!("{ep}/{}{path}", self.container),
            (None, Some(acct)) if self.dfs => {
                format!(
                    "abfss://{}@{acct}.dfs.core.windows.net{path}",
                    self.container
                )
            }
            (None, Some(acct)) => {
                format!(
                    "https://{acct}.blob.core.windows.net/{}{path}",
                    self.container
                )
            }
            (None, None) => format!("az://{}{path}", self.container),
        }
    }

    /// The URL of the container root, under which DataFusion and delta-rs find the store.
    /// Unique per account, endpoint and container, and never holding a secret.
    pub fn store_url(&self, account: &str, endpoint: Option<&str>) -> String {
        match endpoint {
            // A custom endpoint (emulator) keeps its own host space: the same names on Azure
            // are other data, and two emulators are two stores.
            Some(ep) => {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::hash::Hash::hash(ep, &mut h);
                let tag = std::hash::Hasher::finish(&h);
                format!("az://{}@{account}.e{tag:x}/", self.container)
            }
            None => format!("abfss://{}@{account}.dfs.core.windows.net/", self.container),
        }
    }
}

fn azure_err(s: &str, reason: impl Into<String>) -> LocationError {
    LocationError::Invalid {
        shown: crate::redact::url(s),
        reason: reason.into(),
    }
}

fn valid_container(c: &str) -> bool {
    (3..=63).contains(&c.len())
        && c.chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
        && !c.starts_with('-')
        && !c.contains("--")
        || c == "$root"
}

fn valid_account(a: &str) -> bool {
    (3..=24).contains(&a.len())
        && a.chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit())
}

/// Parses every Azure form users paste: `https://acct.blob|dfs.core.windows.net/c/p`,
/// `abfs[s]://c@acct.dfs.core.windows.net/p`, `wasb[s]://c@acct.blob.core.windows.net/p`,
/// `az://c/p`, and emulator URLs `http://127.0.0.1:10000/devstoreaccount1/c/p`; a query is a
/// SAS token.
pub fn parse_azure(s: &str) -> Result<AzureUrl, LocationError> {
    let url = Url::parse(s).map_err(|e| azure_err(s, e.to_string()))?;
    let sas: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let sas = (!sas.is_empty()).then_some(sas);
    let host = url.host_str().unwrap_or("").to_ascii_lowercase();
    let segs: Vec<String> = url
        .path_segments()
        .map(|p| p.filter(|x| !x.is_empty()).map(percent_decode).collect())
        .unwrap_or_default();
    let scheme = url.scheme().to_ascii_lowercase();
    let (account, container, rest, dfs, endpoint) = match scheme.as_str() {
        "abfs" | "abfss" | "wasb" | "wasbs" => {
            let container = percent_decode(url.username());
            if container.is_empty() {
                return Err(azure_err(
                    s,
                    format!("{scheme}:// needs container@account.<endpoint>"),
                ));
            }
            let (acct, suffix) = host
                .split_once('.')
                .ok_or_else(|| azure_err(s, "the host must be <account>.dfs.core.windows.net"))?;
            if !suffix.ends_with("core.windows.net") && !suffix.ends_with("core.chinacloudapi.cn") {
                return Err(azure_err(s, format!("unknown Azure endpoint {suffix}")));
            }
            (
                Some(acct.to_string()),
                container,
                segs,
                suffix.starts_with("dfs"),
                None,
            )
        }
        "az" | "azure" => {
            if !url.username().is_empty() {
                return Err(azure_err(
                    s,
                    "az:// takes az://<container>/<path>; the account comes from AZURE_STORAGE_ACCOUNT_NAME",
                ));
            }
            (None, host.clone(), segs, true, None)
        }
        "https" | "http" => {
            let is_emulator = matches!(host.as_str(), "127.0.0.1" | "localhost" | "[::1]" | "::1")
                || url.port() == Some(10000);
            if is_emulator {
                let mut it = segs.into_iter();
                let acct = it.next().ok_or_else(|| {
                    azure_err(
                        s,
                        "an emulator URL is http://host:port/<account>/<container>/<path>",
                    )
                })?;
                let container = it.next().ok_or_else(|| azure_err(s, "missing container"))?;
                let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
                let endpoint = format!(
                    "{}://{}{port}/{acct}",
                    url.scheme(),
                    url.host_str().unwrap_or("")
                );
                (Some(acct), container, it.collect(), false, Some(endpoint))
            } else {
                let Some((acct, suffix)) = host.split_once('.') else {
                    return Err(azure_err(s, "not an Azure storage URL"));
                };
                let dfs = match suffix {
                    "blob.core.windows.net" => false,
                    "dfs.core.windows.net" => true,
                    _ => {
                        return Err(LocationError::Unsupported(crate::redact::url(s)));
                    }
                };
                if scheme == "http" {
                    return Err(azure_err(s, "use https:// for Azure storage"));
                }
                let mut it = segs.into_iter();
                let container = it
                    .next()
                    .ok_or_else(|| azure_err(s, "missing container after the host"))?;
                (Some(acct.to_string()), container, it.collect(), dfs, None)
            }
        }
        other => return Err(azure_err(s, format!("not an Azure scheme: {other}"))),
    };
    if let Some(a) = &account
        && endpoint.is_none()
        && !valid_account(a)
    {
        return Err(azure_err(
            s,
            format!("invalid storage account name {a:?}: 3-24 lowercase letters and digits"),
        ));
    }
    if !valid_container(&container) {
        return Err(azure_err(
            s,
            format!("invalid container name {container:?}: 3-63 lowercase letters, digits and '-'"),
        ));
    }
    Ok(AzureUrl {
        account,
        container,
        path: rest.join("/"),
        dfs,
        endpoint,
        sas,
    })
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

fn azure_location(a: AzureUrl, opts: &StorageOptions) -> Result<Location, LocationError> {
    use crate::azure;
    let display = a.display();
    let resolved = azure::resolve(&a, opts, &azure::process_env)?;
    let settings = azure::RequestSettings::from_env(&azure::process_env)?;
    let inner = azure::build_store(&a, &resolved, &settings)?;
    let emulator = resolved
        .endpoint
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"));
    let wrapped = crate::store::Instrumented::new(inner, emulator);
    let remote = Remote {
        account: resolved.account.clone(),
        method: resolved.method.clone(),
        stats: wrapped.stats(),
    };
    tracing::debug!(
        location = %a.display(),
        account = %remote.account,
        "Azure credential: {}",
        remote.method
    );
    let store: Arc<dyn ObjectStore> = Arc::new(wrapped);
    let prefix = ObjPath::from(a.path.as_str());
    let store_url = a.store_url(&resolved.account, resolved.endpoint.as_deref());
    Ok(Location {
        store,
        remote: Some(remote),
        single_object: a
            .sas
            .as_ref()
            .is_some_and(|q| q.iter().any(|(k, v)| k == "sr" && v == "b")),
        store_url: Url::parse(&store_url).map_err(|e| LocationError::Invalid {
            shown: display.clone(),
            reason: e.to_string(),
        })?,
        prefix,
        kind: if a.dfs {
            LocationKind::Adls
        } else {
            LocationKind::AzureBlob
        },
        display,
        local_dir: None,
    })
}

/// Parses a location string. No I/O happens here.
pub fn parse(input: &str) -> Result<Location, LocationError> {
    parse_with(input, &StorageOptions::default())
}

/// Checks a location's syntax only, without choosing credentials: a job's sources are
/// checked this way before anything runs, and a source whose credential is missing fails
/// alone when its turn comes.
pub fn check(input: &str) -> Result<(), LocationError> {
    let s = input.trim();
    match s.split_once("://") {
        Some((scheme, _)) if scheme != "file" => {
            if is_azure_scheme(scheme) {
                parse_azure(s).map(|_| ())
            } else {
                Err(LocationError::Unsupported(crate::redact::url(s)))
            }
        }
        _ => parse(s).map(|_| ()),
    }
}

fn is_azure_scheme(scheme: &str) -> bool {
    matches!(
        scheme.to_ascii_lowercase().as_str(),
        "abfs" | "abfss" | "az" | "azure" | "wasb" | "wasbs" | "https" | "http"
    )
}

/// Parses a location string with per-location storage settings (a payload's
/// `storage_options`). No I/O happens here.
pub fn parse_with(input: &str, opts: &StorageOptions) -> Result<Location, LocationError> {
    let s = input.trim();
    let is_azure = s
        .split_once("://")
        .is_some_and(|(scheme, _)| is_azure_scheme(scheme));
    if !opts.is_empty() && !is_azure {
        return Err(LocationError::OptionsNotApplicable(crate::redact::url(s)));
    }
    if s.is_empty() {
        return Err(LocationError::Empty);
    }
    let io_err = |e: std::io::Error| LocationError::Invalid {
        shown: s.to_string(),
        reason: e.to_string(),
    };
    if let Some(rest) = s.strip_prefix("dbfs:") {
        // `dbfs:/Volumes/...` is a Unity Catalog volume, not a DBFS path.
        let rest = format!("/{}", rest.trim_start_matches('/'));
        if rest.starts_with("/Volumes/") {
            let abs = absolutize(Path::new(&rest)).map_err(io_err)?;
            return local(
                abs,
                s.trim_end_matches('/').to_string(),
                LocationKind::Volumes,
            );
        }
        let abs = absolutize(&dbfs_root().join(rest.trim_start_matches('/'))).map_err(io_err)?;
        return local(abs, s.trim_end_matches('/').to_string(), LocationKind::Dbfs);
    }
    if let Some(rest) = s.strip_prefix("file://") {
        let url = Url::parse(s).map_err(|e| LocationError::Invalid {
            shown: s.to_string(),
            reason: e.to_string(),
        })?;
        let path = url.to_file_path().map_err(|_| LocationError::Invalid {
            shown: s.to_string(),
            reason: format!("not an absolute local path: {rest}"),
        })?;
        let abs = absolutize(&path).map_err(io_err)?;
        return local(abs.clone(), abs.display().to_string(), LocationKind::Local);
    }
    if let Some((scheme, _)) = s.split_once("://") {
        let scheme = scheme.to_ascii_lowercase();
        return if is_azure_scheme(&scheme) {
            azure_location(parse_azure(s)?, opts)
        } else {
            Err(LocationError::Unsupported(crate::redact::url(s)))
        };
    }
    let abs = absolutize(Path::new(s)).map_err(io_err)?;
    let kind = if abs.starts_with("/Volumes") {
        LocationKind::Volumes
    } else {
        LocationKind::Local
    };
    local(abs.clone(), abs.display().to_string(), kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_forms() {
        let l = parse("/tmp/x/../data/").unwrap();
        assert_eq!(l.prefix.as_ref(), "tmp/data");
        assert_eq!(l.display, "/tmp/data");
        assert_eq!(l.url_of(&l.prefix), "file:///tmp/data");
        assert_eq!(l.kind, LocationKind::Local);

        let l = parse("file:///tmp/a%20b").unwrap();
        assert_eq!(l.local_dir.unwrap(), PathBuf::from("/tmp/a b"));

        let v = parse("/Volumes/main/raw/vol/x").unwrap();
        assert_eq!(v.kind, LocationKind::Volumes);

        let d = parse("dbfs:/mnt/lake").unwrap();
        assert_eq!(d.kind, LocationKind::Dbfs);
        assert_eq!(d.display, "dbfs:/mnt/lake");
        assert!(d.local_dir.unwrap().ends_with("mnt/lake"));

        let dv = parse("dbfs:/Volumes/c/s/v").unwrap();
        assert_eq!(dv.kind, LocationKind::Volumes);
        assert_eq!(dv.local_dir.unwrap(), PathBuf::from("/Volumes/c/s/v"));

        let rel = parse("some/rel").unwrap();
        assert!(rel.local_dir.unwrap().is_absolute());
    }

    #[test]
    fn display_of_children() {
        let l = parse("dbfs:/mnt/lake").unwrap();
        let p = l.prefix.clone().join("a").join("b.csv");
        assert_eq!(l.display_of(&p), "dbfs:/mnt/lake/a/b.csv");
        assert_eq!(relative(&l.prefix, &p), "a/b.csv");
        assert_eq!(l.display_of(&l.prefix), "dbfs:/mnt/lake");
    }

    #[test]
    fn unsupported_schemes_are_named_without_secrets() {
        let e = parse("s3://bucket/x").unwrap_err();
        assert!(matches!(e, LocationError::Unsupported(_)), "{e}");
        assert!(matches!(parse("  "), Err(LocationError::Empty)));
        let e = parse("https://example.com/c/p?sv=2020&sig=SECRET").unwrap_err();
        assert!(!e.to_string().contains("SECRET"), "{e}");
    }

    #[test]
    fn azure_forms() {
        let cases = [
            (
                "https://acct1.blob.core.windows.net/cont/a/b.csv",
                Some("acct1"),
                "cont",
                "a/b.csv",
                false,
            ),
            (
                "https://acct1.dfs.core.windows.net/cont/dir/",
                Some("acct1"),
                "cont",
                "dir",
                true,
            ),
            (
                "abfss://cont@acct1.dfs.core.windows.net/x/y",
                Some("acct1"),
                "cont",
                "x/y",
                true,
            ),
            (
                "abfs://cont@acct1.dfs.core.windows.net",
                Some("acct1"),
                "cont",
                "",
                true,
            ),
            (
                "wasbs://cont@acct1.blob.core.windows.net/p",
                Some("acct1"),
                "cont",
                "p",
                false,
            ),
            ("az://cont/some/path", None, "cont", "some/path", true),
            (
                "http://127.0.0.1:10000/devstoreaccount1/cont/p/q",
                Some("devstoreaccount1"),
                "cont",
                "p/q",
                false,
            ),
        ];
        for (url, acct, cont, path, dfs) in cases {
            let a = parse_azure(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(a.account.as_deref(), acct, "{url}");
            assert_eq!(a.container, cont, "{url}");
            assert_eq!(a.path, path, "{url}");
            assert_eq!(a.dfs, dfs, "{url}");
        }
        let e = parse_azure("http://127.0.0.1:10000/devstoreaccount1/cont").unwrap();
        assert_eq!(
            e.endpoint.as_deref(),
            Some("http://127.0.0.1:10000/devstoreaccount1")
        );
        assert_eq!(e.display(), "http://127.0.0.1:10000/devstoreaccount1/cont");
    }

    #[test]
    fn azure_sas_never_reaches_display() {
        let a = parse_azure(
            "https://acct1.blob.core.windows.net/cont/f.csv?sv=2022-11-02&sr=b&sig=S3CRET%3D",
        )
        .unwrap();
        assert!(
            a.sas
                .as_ref()
                .unwrap()
                .iter()
                .any(|(k, v)| k == "sig" && v == "S3CRET=")
        );
        assert!(!a.display().contains("S3CRET"));
        assert!(!a.store_url("acct1", None).contains("S3CRET"));
        for bad in [
            "https://acct1.blob.core.windows.net/Bad_Container/x",
            "abfss://acct1.dfs.core.windows.net/x",
            "https://acct1.blob.core.windows.net/",
            "https://example.com/cont/x?sig=S3CRET",
        ] {
            let e = parse_azure(bad).map(|a| format!("{a:?}")).expect_err(bad);
            assert!(!e.to_string().contains("S3CRET"), "{e}");
        }
    }
}
