//! The wrapper around every remote object store: counts the requests made (reported per job
//! and by the benchmark, so "a handful of range reads per file" is checked, not assumed) and
//! handles the emulator's one listing quirk in a single place.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// Request counters of one store, shared by every clone of its location.
#[derive(Debug, Default)]
pub struct StoreStats {
    list: AtomicU64,
    get: AtomicU64,
    head: AtomicU64,
    put: AtomicU64,
    delete: AtomicU64,
    copy: AtomicU64,
    bytes_read: AtomicU64,
}

/// A snapshot of [`StoreStats`]. `list` counts listing calls (each may be several pages).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RequestCounts {
    pub list: u64,
    pub get: u64,
    pub head: u64,
    pub put: u64,
    pub delete: u64,
    pub copy: u64,
    pub bytes_read: u64,
}

impl RequestCounts {
    pub fn total(&self) -> u64 {
        self.list + self.get + self.head + self.put + self.delete + self.copy
    }
}

impl std::ops::Add for RequestCounts {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self {
            list: self.list + o.list,
            get: self.get + o.get,
            head: self.head + o.head,
            put: self.put + o.put,
            delete: self.delete + o.delete,
            copy: self.copy + o.copy,
            bytes_read: self.bytes_read + o.bytes_read,
        }
    }
}

impl StoreStats {
    pub fn snapshot(&self) -> RequestCounts {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RequestCounts {
            list: l(&self.list),
            get: l(&self.get),
            head: l(&self.head),
            put: l(&self.put),
            delete: l(&self.delete),
            copy: l(&self.copy),
            bytes_read: l(&self.bytes_read),
        }
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// Counts requests and forwards them to `inner`.
pub struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    stats: Arc<StoreStats>,
    /// Azurite ignores the listing start marker (`startFrom`), so offsets are applied here.
    client_side_offset: bool,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn ObjectStore>, client_side_offset: bool) -> Self {
        Self {
            inner,
            stats: Arc::default(),
            client_side_offset,
        }
    }

    pub fn stats(&self) -> Arc<StoreStats> {
        self.stats.clone()
    }
}

/// Libraries log stores with `{:?}` (delta-rs does at debug level), and the Azure client's
/// `Debug` prints its credential: only the store's `Display` (account, container) is shown.
impl fmt::Debug for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountingStore")
            .field("store", &format_args!("{}", self.inner))
            .finish_non_exhaustive()
    }
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        tracing::trace!(path = %location, mode = ?opts.mode, "storage put");
        bump(&self.stats.put);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        tracing::trace!(path = %location, "storage multipart put");
        bump(&self.stats.put);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let head = options.head;
        tracing::trace!(path = %location, head, range = ?options.range, "storage get");
        bump(if head {
            &self.stats.head
        } else {
            &self.stats.get
        });
        let r = self.inner.get_opts(location, options).await?;
        if !head {
            self.stats
                .bytes_read
                .fetch_add(r.range.end - r.range.start, Ordering::Relaxed);
        }
        Ok(r)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        // What the Azure client does itself, but through `get_opts` so each request counts.
        super::ranges_via_get_opts(self, location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let stats = self.stats.clone();
        self.inner
            .delete_stream(locations)
            .inspect(move |_| bump(&stats.delete))
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        tracing::trace!(prefix = ?prefix.map(Path::as_ref), "storage list");
        bump(&self.stats.list);
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        tracing::trace!(prefix = ?prefix.map(Path::as_ref), %offset, "storage list");
        bump(&self.stats.list);
        if self.client_side_offset {
            let offset = offset.clone();
            self.inner
                .list(prefix)
                .filter(move |m| {
                    let keep = m.as_ref().map_or(true, |m| m.location > offset);
                    futures::future::ready(keep)
                })
                .boxed()
        } else {
            self.inner.list_with_offset(prefix, offset)
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        bump(&self.stats.list);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        bump(&self.stats.copy);
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        bump(&self.stats.copy);
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn counts_requests_and_filters_offsets() {
        let s = CountingStore::new(Arc::new(InMemory::new()), true);
        for name in ["a", "b", "c"] {
            s.put(&Path::from(name), PutPayload::from_static(b"0123456789"))
                .await
                .unwrap();
        }
        let got = s.get_range(&Path::from("b"), 2..5).await.unwrap();
        assert_eq!(&got[..], b"234");
        s.head(&Path::from("c")).await.unwrap();
        // Two ranges close together are one request.
        let parts = s.get_ranges(&Path::from("a"), &[0..2, 4..6]).await.unwrap();
        assert_eq!(
            parts,
            [Bytes::from_static(b"01"), Bytes::from_static(b"45")]
        );
        let after: Vec<_> = s
            .list_with_offset(None, &Path::from("a"))
            .map(|m| m.unwrap().location.to_string())
            .collect()
            .await;
        assert_eq!(after.len(), 2);
        assert!(!after.contains(&"a".to_string()));
        let c = s.stats().snapshot();
        assert_eq!((c.put, c.get, c.head, c.list), (3, 2, 1, 1), "{c:?}");
        assert_eq!(c.bytes_read, 3 + 6);
    }
}
