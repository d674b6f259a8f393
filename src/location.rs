//! Locations: turns what a user pastes (a local path, `file://`, `/Volumes/...`, `dbfs:/...`)
//! into one `Arc<dyn ObjectStore>` plus a prefix, built in this one place. Everything
//! downstream (discovery, profiling, the Delta warehouse) takes a [`Location`] and never
//! parses paths itself, so a new backend (Azure) plugs in here only.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    #[error("empty location")]
    Empty,
    #[error("unsupported location {0}: use a local path, file://, /Volumes/..., or dbfs:/...")]
    Unsupported(String),
    #[error("{scheme}:// locations are not supported yet by this build: {shown}")]
    NotYetSupported { scheme: String, shown: String },
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
}

/// What kind of storage a location is on; stored as the default `source_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocationKind {
    Local,
    Volumes,
    Dbfs,
}

impl LocationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Volumes => "volumes",
            Self::Dbfs => "dbfs",
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
}

impl Location {
    /// Full URL of an object in this location's store (for DataFusion / delta-rs).
    pub fn url_of(&self, path: &ObjPath) -> String {
        let base = self.store_url.as_str().trim_end_matches('/');
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
        c.prefix = self.prefix.child(name);
        c.display = format!("{}/{}", self.display.trim_end_matches('/'), name);
        c.local_dir = self.local_dir.as_ref().map(|d| d.join(name));
        c
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

fn encode_path(path: &ObjPath) -> String {
    // ObjPath parts are already percent-encoded where needed by object_store.
    path.as_ref().to_string()
}

/// `path` relative to `prefix`, as a `/`-joined string ("" when equal).
pub fn relative(prefix: &ObjPath, path: &ObjPath) -> String {
    match path.prefix_match(prefix) {
        Some(parts) => parts.map(|p| p.as_ref().to_string()).collect::<Vec<_>>().join("/"),
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
    })
}

/// Parses a location string. No I/O happens here.
pub fn parse(input: &str) -> Result<Location, LocationError> {
    let s = input.trim();
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
            return local(abs, s.trim_end_matches('/').to_string(), LocationKind::Volumes);
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
        return match scheme.as_str() {
            "abfs" | "abfss" | "az" | "azure" | "wasb" | "wasbs" | "https" | "http" | "adl" => {
                Err(LocationError::NotYetSupported {
                    scheme,
                    shown: crate::redact::url(s),
                })
            }
            _ => Err(LocationError::Unsupported(crate::redact::url(s))),
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
        let p = l.prefix.child("a").child("b.csv");
        assert_eq!(l.display_of(&p), "dbfs:/mnt/lake/a/b.csv");
        assert_eq!(relative(&l.prefix, &p), "a/b.csv");
        assert_eq!(l.display_of(&l.prefix), "dbfs:/mnt/lake");
    }

    #[test]
    fn unsupported_schemes_are_named_without_secrets() {
        let e = parse("s3://bucket/x").unwrap_err();
        assert!(matches!(e, LocationError::Unsupported(_)), "{e}");
        assert!(matches!(parse("  "), Err(LocationError::Empty)));
        let e = parse("https://acct.blob.core.windows.net/c/p?sv=2020&sig=SECRET").unwrap_err();
        assert!(!e.to_string().contains("SECRET"), "{e}");
    }
}
