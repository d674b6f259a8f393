//! Where bytes live: a [`Location`] parsed from what a user pastes (local paths, `/Volumes`,
//! `dbfs:/`, every Azure URL form), the Azure stores and their credentials, and the wrapper
//! that counts every request a store makes. Nothing above this module parses a path or
//! builds an `ObjectStore`.

pub mod azure;
pub mod counting;
pub mod immutable_objects;
pub mod line_limit;
pub mod location;
pub mod small_objects;

pub use location::{Location, LocationError, LocationKind};

use std::path::PathBuf;
use std::sync::{LazyLock, RwLock};

/// Storage settings of the process: where `dbfs:/` is mounted and how requests are retried.
/// The CLI installs them once from its validated configuration ([`configure`]); a library
/// user that does not gets the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Root of the FUSE mount Databricks gives `dbfs:/` paths on a cluster.
    pub dbfs_root: PathBuf,
    pub requests: azure::RequestSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            dbfs_root: PathBuf::from("/dbfs"),
            requests: azure::RequestSettings::default(),
        }
    }
}

static SETTINGS: LazyLock<RwLock<Settings>> = LazyLock::new(Default::default);

/// Installs the process's storage settings; locations parsed afterwards use them.
pub fn configure(settings: Settings) {
    *SETTINGS.write().unwrap_or_else(|e| e.into_inner()) = settings;
}

/// The storage settings in force.
pub fn settings() -> Settings {
    SETTINGS.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// `get_ranges` for a store wrapper: each (coalesced) range through the wrapper's own
/// `get_opts`, so the wrapper sees every read it makes.
pub(crate) async fn ranges_via_get_opts(
    store: &dyn object_store::ObjectStore,
    location: &object_store::path::Path,
    ranges: &[std::ops::Range<u64>],
) -> object_store::Result<Vec<bytes::Bytes>> {
    object_store::coalesce_ranges(
        ranges,
        |r| async move {
            let opts = object_store::GetOptions {
                range: Some(r.into()),
                ..Default::default()
            };
            store.get_opts(location, opts).await?.bytes().await
        },
        object_store::OBJECT_STORE_COALESCE_DEFAULT,
    )
    .await
}

/// A read with no conditions: one a layer keeping bytes may answer (conditions must be
/// checked by the store).
pub(crate) fn unconditional(options: &object_store::GetOptions) -> bool {
    options.if_match.is_none()
        && options.if_none_match.is_none()
        && options.if_modified_since.is_none()
        && options.if_unmodified_since.is_none()
        && options.version.is_none()
}

/// Answers a read from an object's kept bytes, as the store would have.
pub(crate) fn serve_kept(
    meta: object_store::ObjectMeta,
    body: bytes::Bytes,
    options: &object_store::GetOptions,
) -> object_store::Result<object_store::GetResult> {
    use futures::StreamExt;
    use object_store::GetRange;
    let size = body.len() as u64;
    let range = match &options.range {
        None => 0..size,
        Some(GetRange::Bounded(r)) => r.start.min(size)..r.end.min(size),
        Some(GetRange::Offset(o)) => (*o).min(size)..size,
        Some(GetRange::Suffix(n)) => size.saturating_sub(*n)..size,
    };
    if range.start > range.end || (options.range.is_some() && range.start >= size && size > 0) {
        return Err(object_store::Error::Generic {
            store: "kept objects",
            source: format!("range {range:?} is outside the object's {size} bytes").into(),
        });
    }
    let part = body.slice(range.start as usize..range.end as usize);
    let stream = futures::stream::once(async move { Ok(part) }).boxed();
    Ok(object_store::GetResult {
        payload: object_store::GetResultPayload::Stream(stream),
        meta,
        range,
        attributes: object_store::Attributes::default(),
    })
}
