//! The warehouse's read cache. A Delta table never changes a file once written: a commit
//! (`_delta_log/<version>.json`), a checkpoint and a data file each get a new name, so what
//! was read once can be answered from memory for the rest of the job. delta-rs reads each
//! commit twice when it loads a table and a checkpoint's footer several times, and a job
//! reads the previous run's files to compare, to carry and to settle: at 20 ms a request
//! (a remote store) those repeats were most of a re-run's time. An object up to
//! [`WHOLE_OBJECT_BYTES`] is also fetched whole on its first ranged read (a Parquet footer,
//! then its metadata, then its pages, each a round trip, and again for each query that reads
//! it: a 1.3 MB `partition_sketches` file read by three queries at once took 15 requests one
//! after another); reads of one object at once wait for one whole read. Mutable names
//! (`_last_checkpoint`, the migration lock, anything not shaped like a Delta file) and
//! conditional reads always go to the store. What is kept is bounded (`capacity` bytes,
//! oldest first out).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// An object at most this big is read whole and kept: a ranged read that ends within this
/// many bytes of an object's start is widened to start at 0 (a Parquet footer's read ends at
/// the object's end, so a small file comes whole). An object found bigger is read as asked
/// from then on: at most one widened read per object goes partly unused.
pub const WHOLE_OBJECT_BYTES: u64 = 16 << 20;
/// Bytes kept at most per warehouse.
pub const DEFAULT_CAPACITY: usize = 128 << 20;

/// Whether the object at `path` is a file Delta writes once and never changes: a commit
/// (`00000000000000000007.json`), a checkpoint or data file (`*.parquet`), a checksum
/// (`*.crc`).
pub fn is_immutable(path: &Path) -> bool {
    let Some(name) = path.filename() else {
        return false;
    };
    let commit = name
        .strip_suffix(".json")
        .is_some_and(|v| v.len() == 20 && v.bytes().all(|b| b.is_ascii_digit()));
    commit || name.ends_with(".parquet") || name.ends_with(".crc")
}

#[derive(Default)]
struct Kept {
    objects: HashMap<Path, (ObjectMeta, Bytes)>,
    order: VecDeque<Path>,
    bytes: usize,
    /// Objects found bigger than [`WHOLE_OBJECT_BYTES`]: read as asked.
    big: std::collections::HashSet<Path>,
}

/// What [`ImmutableObjectCache::read_whole`] got.
enum Read {
    /// The whole object, now kept.
    Whole(ObjectMeta, Bytes),
    /// The object's first bytes (it is bigger), enough to answer the read of this range.
    Start(ObjectMeta, Bytes, Range<u64>),
}

#[derive(Clone)]
pub struct ImmutableObjectCache {
    inner: Arc<dyn ObjectStore>,
    capacity: usize,
    kept: Arc<Mutex<Kept>>,
    /// Whole reads under way: a read of the same object meanwhile waits for it rather than
    /// fetching the object again (a job's queries read the same file at once).
    reading: Arc<Mutex<HashMap<Path, WholeRead>>>,
}

/// A whole read under way: `Some` once done, with the object when it came whole.
type WholeRead = tokio::sync::watch::Receiver<Option<Option<(ObjectMeta, Bytes)>>>;

/// Ends a whole read's entry however the read ends (a caller may drop it half-way).
struct Reading<'a> {
    reading: &'a Mutex<HashMap<Path, WholeRead>>,
    location: &'a Path,
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        let mut r = self.reading.lock().unwrap_or_else(|e| e.into_inner());
        r.remove(self.location);
    }
}

impl ImmutableObjectCache {
    pub fn new(inner: Arc<dyn ObjectStore>, capacity: usize) -> Self {
        Self {
            inner,
            capacity,
            kept: Arc::default(),
            reading: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn kept(&self, location: &Path) -> Option<(ObjectMeta, Bytes)> {
        self.lock().objects.get(location).cloned()
    }

    fn keep(&self, meta: ObjectMeta, body: Bytes) {
        if body.len() > self.capacity || body.len() as u64 > WHOLE_OBJECT_BYTES {
            return;
        }
        let mut k = self.lock();
        if k.objects.contains_key(&meta.location) {
            return;
        }
        while k.bytes + body.len() > self.capacity {
            let Some(old) = k.order.pop_front() else {
                break;
            };
            if let Some((_, b)) = k.objects.remove(&old) {
                k.bytes -= b.len();
            }
        }
        k.bytes += body.len();
        k.order.push_back(meta.location.clone());
        k.objects.insert(meta.location.clone(), (meta, body));
    }

    fn forget(&self, location: &Path) {
        forget_in(&self.kept, location);
    }

    fn is_big(&self, location: &Path) -> bool {
        self.lock().big.contains(location)
    }

    fn note_big(&self, location: &Path) {
        let mut k = self.lock();
        // A long-lived warehouse (the server's) must not grow without end.
        if k.big.len() >= 100_000 {
            k.big.clear();
        }
        k.big.insert(location.clone());
    }

    /// Reads `location` whole (for a ranged read ending within [`WHOLE_OBJECT_BYTES`], from
    /// its start to the read's end, which is all of it when the read ends where the object
    /// does) and keeps it; `None` when the read is to be made as asked: the object is known
    /// to be big, the read ends further in, or the store refused the widened read (an empty
    /// object, say).
    async fn read_whole(&self, location: &Path, range: Option<&GetRange>) -> Result<Option<Read>> {
        let widened = match range {
            None => None,
            Some(GetRange::Bounded(r))
                if r.start < r.end && r.end <= WHOLE_OBJECT_BYTES && !self.is_big(location) =>
            {
                Some(GetRange::Bounded(0..r.end))
            }
            Some(_) => return Ok(None),
        };
        let was_widened = widened.is_some();
        let opts = GetOptions {
            range: widened,
            ..Default::default()
        };
        let got = match self.inner.get_opts(location, opts).await {
            Ok(got) => got,
            Err(e) if !was_widened => return Err(e),
            Err(e @ object_store::Error::NotFound { .. }) => return Err(e),
            Err(_) => return Ok(None),
        };
        let (meta, got_range) = (got.meta.clone(), got.range.clone());
        if meta.size > WHOLE_OBJECT_BYTES {
            self.note_big(location);
        }
        let body = got.bytes().await?;
        if got_range.start != 0 || body.len() as u64 != got_range.end {
            return Ok(None);
        }
        if got_range.end != meta.size {
            return Ok(match range {
                Some(GetRange::Bounded(r)) if r.end == got_range.end => {
                    Some(Read::Start(meta, body, r.clone()))
                }
                _ => None,
            });
        }
        self.keep(meta.clone(), body.clone());
        Ok(Some(Read::Whole(meta, body)))
    }
}

fn forget_in(kept: &Mutex<Kept>, location: &Path) {
    let mut k = kept.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, b)) = k.objects.remove(location) {
        k.bytes -= b.len();
    }
    if k.order.len() > 2 * k.objects.len() + 1024 {
        let Kept { order, objects, .. } = &mut *k;
        order.retain(|p| objects.contains_key(p));
    }
}

/// Answers the read of `r` in a bigger object from its first bytes (`start`, up to `r.end`:
/// see [`ImmutableObjectCache::read_whole`]).
fn serve_start(meta: ObjectMeta, start: Bytes, r: Range<u64>) -> GetResult {
    let part = start.slice(r.start as usize..r.end as usize);
    GetResult {
        payload: object_store::GetResultPayload::Stream(
            futures::stream::once(async move { Ok(part) }).boxed(),
        ),
        meta,
        range: r,
        attributes: Default::default(),
    }
}

impl fmt::Debug for ImmutableObjectCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImmutableObjectCache")
            .field("store", &format_args!("{}", self.inner))
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for ImmutableObjectCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for ImmutableObjectCache {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        // A checkpoint may be written again (same state); what was kept of it goes.
        self.forget(location);
        let keep = (is_immutable(location)
            && payload.content_length() as u64 <= WHOLE_OBJECT_BYTES)
            .then(|| Bytes::from(payload.clone()));
        let put = self.inner.put_opts(location, payload, opts).await?;
        // What was written is what a read would get: delta-rs reads each commit it makes
        // right after making it.
        if let Some(body) = keep {
            self.keep(
                ObjectMeta {
                    location: location.clone(),
                    last_modified: chrono::Utc::now(),
                    size: body.len() as u64,
                    e_tag: put.e_tag.clone(),
                    version: put.version.clone(),
                },
                body,
            );
        }
        Ok(put)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.forget(location);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        if !is_immutable(location) || !super::unconditional(&options) {
            return self.inner.get_opts(location, options).await;
        }
        if let Some((meta, body)) = self.kept(location) {
            if options.head {
                let mut r = super::serve_kept(meta, Bytes::new(), &GetOptions::default())?;
                r.range = 0..r.meta.size;
                return Ok(r);
            }
            return super::serve_kept(meta, body, &options);
        }
        if !options.head {
            let started = {
                let mut r = self.reading.lock().unwrap_or_else(|e| e.into_inner());
                match r.get(location) {
                    Some(under_way) => Err(under_way.clone()),
                    None => {
                        let (done, under_way) = tokio::sync::watch::channel(None);
                        r.insert(location.clone(), under_way);
                        Ok(done)
                    }
                }
            };
            match started {
                Err(mut under_way) => {
                    let got = under_way
                        .wait_for(Option::is_some)
                        .await
                        .ok()
                        .and_then(|g| g.clone());
                    if let Some(Some((meta, body))) = got {
                        return super::serve_kept(meta, body, &options);
                    }
                    // Not whole, or it failed: read as asked.
                }
                Ok(done) => {
                    // On a task of its own: the reads waiting for it must not depend on this
                    // caller polling it (a stream may hold a read unpolled while its consumer
                    // reads the same object).
                    let (this, at, range) = (self.clone(), location.clone(), options.range.clone());
                    let read = tokio::spawn(async move {
                        let _entry = Reading {
                            reading: &this.reading,
                            location: &at,
                        };
                        let read = this.read_whole(&at, range.as_ref()).await;
                        let whole = match &read {
                            Ok(Some(Read::Whole(meta, body))) => Some((meta.clone(), body.clone())),
                            _ => None,
                        };
                        done.send_replace(Some(whole));
                        read
                    })
                    .await
                    .map_err(|e| object_store::Error::Generic {
                        store: "kept objects",
                        source: Box::new(e),
                    })?;
                    match read? {
                        Some(Read::Whole(meta, body)) => {
                            return super::serve_kept(meta, body, &options);
                        }
                        Some(Read::Start(meta, start, r)) => {
                            return Ok(serve_start(meta, start, r));
                        }
                        None => {}
                    }
                }
            }
        }
        let got = self.inner.get_opts(location, options).await?;
        if got.meta.size > WHOLE_OBJECT_BYTES {
            self.note_big(location);
        }
        Ok(got)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        if !is_immutable(location) {
            return self.inner.get_ranges(location, ranges).await;
        }
        super::ranges_via_get_opts(self, location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        // Vacuum deletes data files: nothing kept of them should outlive them.
        let kept = self.kept.clone();
        let locations = locations
            .inspect(move |p| {
                if let Ok(p) = p {
                    forget_in(&kept, p);
                }
            })
            .boxed();
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.forget(to);
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.forget(from);
        self.forget(to);
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::counting::CountingStore;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    async fn setup(objects: &[(&str, usize)]) -> (ImmutableObjectCache, Arc<CountingStore>) {
        let counting = Arc::new(CountingStore::new(Arc::new(InMemory::new()), false));
        for (name, size) in objects {
            let body: Vec<u8> = (0..*size).map(|i| (i % 251) as u8).collect();
            counting
                .put(&Path::from(*name), PutPayload::from(body))
                .await
                .unwrap();
        }
        let cache = ImmutableObjectCache::new(counting.clone(), 1 << 30);
        (cache, counting)
    }

    async fn read(cache: &ImmutableObjectCache, p: &Path) -> Bytes {
        cache.get(p).await.unwrap().bytes().await.unwrap()
    }

    fn gets(c: &CountingStore) -> u64 {
        c.stats().snapshot().get
    }

    #[test]
    fn only_delta_files_are_immutable() {
        for p in [
            "t/_delta_log/00000000000000000007.json",
            "t/_delta_log/00000000000000000010.checkpoint.parquet",
            "t/workflow_id=w/part-00000-1.snappy.parquet",
            "t/_delta_log/00000000000000000003.crc",
        ] {
            assert!(is_immutable(&Path::from(p)), "{p}");
        }
        for p in [
            "t/_delta_log/_last_checkpoint",
            "_migrate.lock",
            "t/_delta_log/7.json",
            "t/_delta_log/0000000000000000000x.json",
            "t/_delta_log/00000000000000000007.json.tmp",
        ] {
            assert!(!is_immutable(&Path::from(p)), "{p}");
        }
    }

    #[tokio::test]
    async fn a_small_file_read_as_footer_metadata_and_pages_costs_one_request() {
        // 1.3 MB: a `partition_sketches` file of 100 daily partitions.
        for size in [18_611u64, 1_305_488] {
            let (cache, counting) = setup(&[("t/part-0.parquet", size as usize)]).await;
            let p = Path::from("t/part-0.parquet");
            let footer = cache.get_range(&p, size - 8..size).await.unwrap();
            assert_eq!(footer.len(), 8);
            assert_eq!(footer[0], ((size - 8) % 251) as u8);
            let meta = cache.get_range(&p, 14_178..size - 8).await.unwrap();
            assert_eq!(meta[0], (14_178 % 251) as u8);
            let pages = cache.get_ranges(&p, &[4..100, 5_000..6_000]).await.unwrap();
            assert_eq!(pages[1][0], (5_000 % 251) as u8);
            assert_eq!(read(&cache, &p).await.len() as u64, size);
            let head = cache.head(&p).await.unwrap();
            assert_eq!(head.size, size);
            assert_eq!(gets(&counting), 1, "{size} bytes");
            assert_eq!(counting.stats().snapshot().head, 0);
        }
    }

    #[tokio::test]
    async fn reads_of_one_object_at_once_make_one_request() {
        let p = Path::from("t/part-0.parquet");
        let size = 400_000u64;
        let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let store = InMemory::new();
        store.put(&p, PutPayload::from(body)).await.unwrap();
        // Each request takes 30 ms, so the reads below overlap.
        let slow = object_store::throttle::ThrottledStore::new(
            store,
            object_store::throttle::ThrottleConfig {
                wait_get_per_call: std::time::Duration::from_millis(30),
                ..Default::default()
            },
        );
        let counting = Arc::new(CountingStore::new(Arc::new(slow), false));
        let cache = ImmutableObjectCache::new(counting.clone(), 1 << 30);
        let reads = (0..4).map(|i| {
            let (cache, p) = (&cache, &p);
            async move {
                let at = size - 8 - i * 1000;
                let got = cache.get_range(p, at..at + 8).await.unwrap();
                assert_eq!(got[0], (at % 251) as u8);
            }
        });
        futures::future::join_all(reads).await;
        let s = counting.stats().snapshot();
        assert_eq!((s.get, s.bytes_read), (1, size));
        assert!(cache.reading.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn mutable_names_and_big_files_go_to_the_store_every_time() {
        let big = (WHOLE_OBJECT_BYTES + 10) as usize;
        let (cache, counting) = setup(&[
            ("t/_delta_log/_last_checkpoint", 40),
            ("t/big.parquet", big),
            ("t/_delta_log/00000000000000000001.json", 300),
        ])
        .await;
        let last = Path::from("t/_delta_log/_last_checkpoint");
        cache.get(&last).await.unwrap();
        cache.get(&last).await.unwrap();
        assert_eq!(gets(&counting), 2);
        // A footer read of a big file is read as asked, not widened or kept; so, once the
        // file is known to be big, is a read near its start.
        let p = Path::from("t/big.parquet");
        let end = big as u64;
        cache.get_range(&p, end - 8..end).await.unwrap();
        cache.get_range(&p, end - 8..end).await.unwrap();
        let pages = cache.get_range(&p, 1_000..1_100).await.unwrap();
        assert_eq!(pages[0], (1_000 % 251) as u8);
        let s = counting.stats().snapshot();
        assert_eq!((s.get, s.bytes_read), (5, 80 + 16 + 100));
        // A commit is read once however often it is asked for.
        let commit = Path::from("t/_delta_log/00000000000000000001.json");
        for _ in 0..3 {
            assert_eq!(read(&cache, &commit).await.len(), 300);
        }
        assert_eq!(gets(&counting), 6);
    }

    #[tokio::test]
    async fn a_big_file_first_read_near_its_start_is_answered_from_the_widened_read() {
        let big = (WHOLE_OBJECT_BYTES + 10) as usize;
        let (cache, counting) = setup(&[("t/big.parquet", big)]).await;
        let p = Path::from("t/big.parquet");
        let got = cache
            .get_opts(
                &p,
                GetOptions {
                    range: Some(GetRange::Bounded(2_000..2_050)),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            (got.range.clone(), got.meta.size),
            (2_000..2_050, big as u64)
        );
        let bytes = got.bytes().await.unwrap();
        assert_eq!((bytes.len(), bytes[0]), (50, (2_000 % 251) as u8));
        // Widened once (2,050 bytes read, nothing kept), then read as asked.
        cache.get_range(&p, 3_000..3_010).await.unwrap();
        let s = counting.stats().snapshot();
        assert_eq!((s.get, s.bytes_read), (2, 2_050 + 10));
        assert_eq!(cache.lock().bytes, 0);
    }

    #[tokio::test]
    async fn what_is_written_is_kept_and_what_is_deleted_is_forgotten() {
        let p = Path::from("t/_delta_log/00000000000000000009.checkpoint.parquet");
        let (cache, counting) = setup(&[(p.as_ref(), 50)]).await;
        assert_eq!(read(&cache, &p).await.len(), 50);
        let put = cache
            .put(&p, PutPayload::from(vec![1u8; 70]))
            .await
            .unwrap();
        // The new content, without asking the store.
        let got = cache.get(&p).await.unwrap();
        assert_eq!(got.meta.e_tag, put.e_tag);
        assert_eq!(got.bytes().await.unwrap(), vec![1u8; 70]);
        assert_eq!(cache.head(&p).await.unwrap().size, 70);
        assert_eq!(gets(&counting), 1);
        // A failed write keeps nothing.
        let commit = Path::from("t/_delta_log/00000000000000000010.json");
        cache
            .put(&commit, PutPayload::from_static(b"first"))
            .await
            .unwrap();
        let again = cache
            .put_opts(
                &commit,
                PutPayload::from_static(b"second!"),
                object_store::PutMode::Create.into(),
            )
            .await;
        assert!(matches!(
            again,
            Err(object_store::Error::AlreadyExists { .. })
        ));
        assert_eq!(read(&cache, &commit).await.as_ref(), b"first");
        cache.delete(&p).await.unwrap();
        assert!(matches!(
            cache.get(&p).await,
            Err(object_store::Error::NotFound { .. })
        ));
        assert_eq!(gets(&counting), 3);
    }

    #[tokio::test]
    async fn an_empty_file_and_a_full_cache_still_read_right() {
        let (_, counting) =
            setup(&[("t/a.crc", 0), ("t/b.parquet", 100), ("t/c.parquet", 100)]).await;
        let cache = ImmutableObjectCache::new(counting.clone(), 150);
        assert!(
            cache
                .get(&Path::from("t/a.crc"))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .is_empty()
        );
        for name in ["t/b.parquet", "t/c.parquet", "t/b.parquet"] {
            let r = cache.get_range(&Path::from(name), 10..20).await.unwrap();
            assert_eq!(r[0], 10);
        }
        // b was let go to make room for c, so its second read is a request again.
        assert!(cache.lock().bytes <= 150);
        assert_eq!(gets(&counting), 1 + 3);
    }
}
