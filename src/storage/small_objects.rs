//! The wrapper that makes a remote lake of many small files cost about one request per file:
//! the listing's metadata answers HEAD requests (DataFusion asks for each file it was handed),
//! and a small object is fetched whole on its first read and kept, so sniffing, schema
//! inference, the statistics pass and the samples all read the same bytes. What is kept is
//! bounded (`capacity` bytes, oldest first out); a larger object is read as asked.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// An object at most this big is fetched whole on its first read.
pub const SMALL_OBJECT_BYTES: u64 = 8 << 20;
/// Bytes kept at most per source.
pub const DEFAULT_CAPACITY: usize = 64 << 20;

#[derive(Default)]
struct Kept {
    /// What the listing said of each object.
    metas: HashMap<Path, ObjectMeta>,
    bodies: HashMap<Path, Bytes>,
    order: VecDeque<Path>,
    bytes: usize,
}

pub struct SmallObjectStore {
    inner: Arc<dyn ObjectStore>,
    capacity: usize,
    kept: Arc<Mutex<Kept>>,
    /// When `inner` is the local file system: the same store, to find a file's path.
    local: Option<object_store::local::LocalFileSystem>,
}

/// A local file at most this big is read where it is asked for: a hand-off to a blocking
/// thread and back (two per file in `LocalFileSystem`) costs more than the read itself.
const INLINE_READ_BYTES: u64 = 64 * 1024;

impl SmallObjectStore {
    pub fn new(inner: Arc<dyn ObjectStore>, capacity: usize) -> Self {
        Self {
            inner,
            capacity,
            kept: Arc::default(),
            local: None,
        }
    }

    /// `inner` is a `LocalFileSystem` rooted at `/` (as [`crate::storage::location`] makes
    /// them): small files are then read without a blocking thread.
    pub fn over_local_files(mut self) -> Self {
        self.local = Some(object_store::local::LocalFileSystem::new());
        self
    }

    /// A local file's bytes, read here.
    fn read_local(local: &object_store::local::LocalFileSystem, location: &Path) -> Result<Bytes> {
        let path = local.path_to_filesystem(location)?;
        std::fs::read(&path).map(Bytes::from).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                object_store::Error::NotFound {
                    path: location.to_string(),
                    source: e.into(),
                }
            } else {
                object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: e.into(),
                }
            }
        })
    }

    fn meta(&self, location: &Path) -> Option<ObjectMeta> {
        self.kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .metas
            .get(location)
            .cloned()
    }

    fn body(&self, location: &Path) -> Option<Bytes> {
        self.kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .bodies
            .get(location)
            .cloned()
    }

    fn keep(&self, location: &Path, body: Bytes) {
        let mut k = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if body.len() > self.capacity || k.bodies.contains_key(location) {
            return;
        }
        while k.bytes + body.len() > self.capacity {
            let Some(old) = k.order.pop_front() else {
                break;
            };
            if let Some(b) = k.bodies.remove(&old) {
                k.bytes -= b.len();
            }
        }
        k.bytes += body.len();
        k.order.push_back(location.clone());
        k.bodies.insert(location.clone(), body);
    }

    /// Drops what is kept of these objects (their profile is done): on a lake of 100,000
    /// files the listing's metadata alone is tens of megabytes.
    pub fn forget<'a>(&self, locations: impl IntoIterator<Item = &'a Path>) {
        let mut k = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        for l in locations {
            k.metas.remove(l);
            if let Some(b) = k.bodies.remove(l) {
                k.bytes -= b.len();
            }
        }
        // `order` may still name forgotten objects; eviction skips what is no longer kept.
        if k.order.len() > 2 * k.bodies.len() + 1024 {
            let Kept { order, bodies, .. } = &mut *k;
            order.retain(|p| bodies.contains_key(p));
        }
    }

    fn remember(kept: &Mutex<Kept>, m: &ObjectMeta) {
        kept.lock()
            .unwrap_or_else(|e| e.into_inner())
            .metas
            .insert(m.location.clone(), m.clone());
    }

    /// Whether a read of this object may be answered here: a plain read (no conditions)
    /// of an object the listing saw as small.
    fn small(&self, location: &Path, options: &GetOptions) -> Option<ObjectMeta> {
        let plain = super::unconditional(options);
        self.meta(location)
            .filter(|m| plain && m.size <= SMALL_OBJECT_BYTES)
    }
}

impl fmt::Debug for SmallObjectStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmallObjectStore")
            .field("store", &format_args!("{}", self.inner))
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for SmallObjectStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for SmallObjectStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let Some(meta) = self.small(location, &options) else {
            return self.inner.get_opts(location, options).await;
        };
        if options.head {
            return super::serve_kept(meta, Bytes::new(), &GetOptions::default()).map(|mut r| {
                r.range = 0..r.meta.size;
                r
            });
        }
        let body = match self.body(location) {
            Some(b) => b,
            None => {
                let inline = self
                    .local
                    .as_ref()
                    .filter(|_| meta.size <= INLINE_READ_BYTES);
                let b = match inline {
                    Some(local) => Self::read_local(local, location)?,
                    None => {
                        let whole = self.inner.get_opts(location, GetOptions::default()).await?;
                        Self::remember(&self.kept, &whole.meta);
                        whole.bytes().await?
                    }
                };
                self.keep(location, b.clone());
                b
            }
        };
        let meta = self.meta(location).unwrap_or(meta);
        super::serve_kept(meta, body, &options)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        if self.small(location, &GetOptions::default()).is_none() {
            return self.inner.get_ranges(location, ranges).await;
        }
        super::ranges_via_get_opts(self, location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let kept = self.kept.clone();
        self.inner
            .list(prefix)
            .inspect(move |m| {
                if let Ok(m) = m {
                    Self::remember(&kept, m);
                }
            })
            .boxed()
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let kept = self.kept.clone();
        self.inner
            .list_with_offset(prefix, offset)
            .inspect(move |m| {
                if let Ok(m) = m {
                    Self::remember(&kept, m);
                }
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let r = self.inner.list_with_delimiter(prefix).await?;
        for m in &r.objects {
            Self::remember(&self.kept, m);
        }
        Ok(r)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::counting::CountingStore;
    use object_store::memory::InMemory;
    use object_store::{GetRange, ObjectStoreExt};

    #[tokio::test]
    async fn a_listed_small_object_costs_one_read_however_often_it_is_read() {
        let counting = Arc::new(CountingStore::new(Arc::new(InMemory::new()), false));
        let stats = counting.stats();
        for (name, size) in [
            ("a.csv", 1_000),
            ("big.csv", (SMALL_OBJECT_BYTES + 1) as usize),
        ] {
            counting
                .put(&Path::from(name), PutPayload::from(vec![b'x'; size]))
                .await
                .unwrap();
        }
        let s = SmallObjectStore::new(counting.clone(), 1 << 30);
        let listed: Vec<ObjectMeta> = s.list(None).map(|m| m.unwrap()).collect().await;
        assert_eq!(listed.len(), 2);
        let before = stats.snapshot();
        let a = Path::from("a.csv");
        assert_eq!(s.head(&a).await.unwrap().size, 1_000);
        assert_eq!(&s.get_range(&a, 10..20).await.unwrap()[..], &[b'x'; 10]);
        assert_eq!(s.get(&a).await.unwrap().bytes().await.unwrap().len(), 1_000);
        let r = s
            .get_opts(
                &a,
                GetOptions {
                    range: Some(GetRange::Suffix(8)),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(r.range, 992..1_000);
        assert_eq!(s.get_ranges(&a, &[0..2, 5..9]).await.unwrap()[1].len(), 4);
        let after = stats.snapshot();
        assert_eq!((after.get - before.get, after.head - before.head), (1, 0));
        // A big object is read as asked, every time.
        let big = Path::from("big.csv");
        s.get_range(&big, 0..10).await.unwrap();
        s.get_range(&big, 0..10).await.unwrap();
        assert_eq!(stats.snapshot().get - after.get, 2);
        assert!(s.kept.lock().unwrap().bytes <= 1_000);
    }

    #[tokio::test]
    async fn kept_bytes_stay_within_the_capacity() {
        let mem = Arc::new(InMemory::new());
        for i in 0..10 {
            mem.put(
                &Path::from(format!("f{i}")),
                PutPayload::from(vec![0u8; 100]),
            )
            .await
            .unwrap();
        }
        let s = SmallObjectStore::new(mem, 350);
        let _: Vec<_> = s.list(None).collect().await;
        for i in 0..10 {
            s.get(&Path::from(format!("f{i}"))).await.unwrap();
        }
        let k = s.kept.lock().unwrap();
        assert_eq!((k.bytes, k.bodies.len()), (300, 3));
        assert!(k.bodies.contains_key(&Path::from("f9")));
    }

    #[tokio::test]
    async fn a_forgotten_object_is_read_from_the_store_again() {
        let counting = Arc::new(CountingStore::new(Arc::new(InMemory::new()), false));
        let stats = counting.stats();
        let a = Path::from("a.csv");
        counting
            .put(&a, PutPayload::from(vec![b'x'; 100]))
            .await
            .unwrap();
        let s = SmallObjectStore::new(counting.clone(), 1 << 20);
        let _: Vec<ObjectMeta> = s.list(None).map(|m| m.unwrap()).collect().await;
        s.get(&a).await.unwrap().bytes().await.unwrap();
        let before = stats.snapshot();
        s.forget([&a]);
        assert_eq!(s.kept.lock().unwrap().bytes, 0);
        // Neither the size nor the bytes are answered here any more.
        assert_eq!(s.head(&a).await.unwrap().size, 100);
        assert_eq!(s.get(&a).await.unwrap().bytes().await.unwrap().len(), 100);
        let after = stats.snapshot();
        assert_eq!((after.head - before.head, after.get - before.get), (1, 1));
    }

    #[tokio::test]
    async fn small_local_files_are_read_in_place_as_the_store_would() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.csv"), b"id\n1\n").unwrap();
        let local: Arc<dyn ObjectStore> = Arc::new(object_store::local::LocalFileSystem::new());
        let s = SmallObjectStore::new(local, 1 << 20).over_local_files();
        let prefix = Path::from_absolute_path(dir.path()).unwrap();
        let _: Vec<ObjectMeta> = s.list(Some(&prefix)).map(|m| m.unwrap()).collect().await;
        let a = prefix.clone().join("a.csv");
        assert_eq!(
            &s.get(&a).await.unwrap().bytes().await.unwrap()[..],
            b"id\n1\n"
        );
        assert_eq!(&s.get_range(&a, 3..4).await.unwrap()[..], b"1");
        // Gone after the listing: the store's own error.
        std::fs::write(dir.path().join("b.csv"), b"x").unwrap();
        let _: Vec<ObjectMeta> = s.list(Some(&prefix)).map(|m| m.unwrap()).collect().await;
        std::fs::remove_file(dir.path().join("b.csv")).unwrap();
        let err = s.get(&prefix.clone().join("b.csv")).await.unwrap_err();
        assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
    }
}
